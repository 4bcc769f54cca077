"""Where the benchmarks write their results: where the user says (``--out``), else a folder of the user's.

The rule, for ``fastnet bench`` (and ``--sklearn``, ``--mpi``) and every script in ``bench/``: a path given
with ``--out`` is used as given (relative to the working directory); without one, results go to
``default_output_dir()``, the per-user data folder platformdirs names plus ``bench``
(``$XDG_DATA_HOME/fastnet/bench``, by default ``~/.local/share/fastnet/bench``, on Linux;
``~/Library/Application Support/fastnet/bench`` on macOS; ``%LOCALAPPDATA%\\fastnet\\fastnet\\bench`` on
Windows). Never the source tree, wherever the command is run from, and the same folder from anywhere.
Each command prints the path it wrote.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import platformdirs

from fastnet.checkpoint import unwritable, write_atomic
from fastnet.errors import ConfigError


def default_output_dir() -> Path:
    """The folder benchmark results go to when no ``--out`` is given (it may not exist yet)."""
    return Path(platformdirs.user_data_dir("fastnet")) / "bench"


def output_path(out: str | os.PathLike | None, name: str, suffix: str = "") -> str:
    """Where a benchmark writes: ``out`` as the user gave it, or else ``name`` in ``default_output_dir()``,
    which is created. ``suffix`` is what the writer appends to it (".json" to a prefix).

    Raises ConfigError, before anything is measured, when that file could not be written.
    """
    if out is None:
        folder = default_output_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create {folder} for the results ({e.strerror or e}): "
                              "give --out a path to write them to") from None
        out = folder / name
    out = str(out)
    problem = unwritable(out + suffix)
    if problem:
        raise ConfigError(f"--out {out}: cannot write {out}{suffix}: {problem}")
    return out


def write_json(path, data, indent: int = 2) -> None:
    """``data`` as JSON in ``path``, written atomically; missing folders are created."""
    write_atomic(Path(path), json.dumps(data, indent=indent).encode())
