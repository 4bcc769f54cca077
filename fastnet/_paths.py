"""Output paths checked before any work: each writable, none the same file as an input or another output."""
from __future__ import annotations

import os

from fastnet.checkpoint import unwritable
from fastnet.errors import ConfigError


def same_file(a, b) -> bool:
    """Whether paths ``a`` and ``b`` name one file: through symlinks and hard links for files that exist,
    by their real paths (``./m`` is ``m``) for those that do not exist yet."""
    return _identity(a) == _identity(b)


def _identity(path) -> tuple:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return ("path", os.path.normcase(os.path.realpath(path)))
    return ("file", st.st_dev, st.st_ino)


def check_outputs(outputs, inputs=(), replaces=()) -> None:
    """Refuse, with a ConfigError, an output that could not be written, or that is the same file as an input
    or as an earlier output: writing it would destroy what the command reads, or another of its results.

    ``outputs`` and ``inputs`` are (label, path) pairs, the label naming the flag ("--save") or the
    argument ("OUT") and a path of None standing for none. ``replaces`` holds the (output label, input
    label) pairs that may be one file, e.g. ("--save", "--resume"): a resumed run's own checkpoint.
    """
    outputs = [(label, path) for label, path in outputs if path is not None]
    inputs = [(label, path) for label, path in inputs if path is not None]
    for i, (label, path) in enumerate(outputs):
        problem = unwritable(path)
        if problem:
            raise ConfigError(f"{_named(label, path)}: cannot write there: {problem}")
        for other, other_path in inputs:
            if (label, other) not in replaces and same_file(path, other_path):
                raise ConfigError(f"{_named(label, path)} is the same file as {other} {other_path}, which this "
                                  f"command reads: writing it would destroy it; give {label} another path")
        for other, other_path in outputs[:i]:
            if same_file(path, other_path):
                raise ConfigError(f"{_named(label, path)} is the same file as {other} {other_path}: one output "
                                  f"would overwrite the other; give {label} another path")


def _named(label: str, path) -> str:
    """A flag's path with its flag ("--save m.safetensors"), a positional argument's path alone."""
    return f"{label} {path}" if label.startswith("-") else str(path)
