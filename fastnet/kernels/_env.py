"""numba's thread settings, read before numba reads them, so a bad one is a one-line ConfigError.

numba will not even import with NUMBA_NUM_THREADS below 1 (a ValueError deep in its
import), and an unknown NUMBA_THREADING_LAYER fails at the first parallel kernel. The
first would stop ``import fastnet``, and with it the ``fastnet`` command's own error
handling. So kernels/__init__.py imports this module before anything imports numba: it
checks both variables, imports numba with a bad NUMBA_NUM_THREADS hidden from it (numba
then sizes its pool by the cores, and the variable is put back at once), and the numba
backend refuses to run with the problem as its message (``check_numba_env``). The NumPy
backend needs no numba threads and still works.

It writes nothing: how the threads wait is set while numba's pool starts (fastnet/threads.py).
"""
from __future__ import annotations

import os

from .errors import ConfigError

THREADING_LAYERS = ("default", "safe", "threadsafe", "forksafe", "tbb", "omp", "workqueue")
"""The values numba accepts for NUMBA_THREADING_LAYER (any case)."""


def _threads_problem(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        if int(value) >= 1:
            return None
    except ValueError:
        pass
    return (f"NUMBA_NUM_THREADS={value!r} is not a number of threads: set it to a whole number of at least 1 "
            f"({os.cpu_count()} cores here), or unset it to use every core")


def _layer_problem(value: str | None) -> str | None:
    if value is None or value.lower() in THREADING_LAYERS:
        return None
    return (f"NUMBA_THREADING_LAYER={value!r} is not a numba threading layer: set it to one of "
            f"{', '.join(THREADING_LAYERS)}, or unset it")


def _import_numba(hide_threads: bool) -> None:
    if not hide_threads:
        import numba  # noqa: F401
        return
    value = os.environ.pop("NUMBA_NUM_THREADS")
    try:
        import numba  # noqa: F401,F811
    finally:
        os.environ["NUMBA_NUM_THREADS"] = value


_threads = _threads_problem(os.environ.get("NUMBA_NUM_THREADS"))
PROBLEM = _threads or _layer_problem(os.environ.get("NUMBA_THREADING_LAYER"))
"""What is wrong with numba's thread settings, in one line; None when nothing is."""
_import_numba(hide_threads=_threads is not None)


def check_jit() -> None:
    """Raise ConfigError if NUMBA_DISABLE_JIT turned numba's compiler off: the numba backend's kernels
    use intrinsics that only exist compiled. (The NumPy backend runs without it.)"""
    import numba

    if numba.config.DISABLE_JIT:
        raise ConfigError("NUMBA_DISABLE_JIT=1 turns off numba's compiler, which the numba backend needs: "
                          "unset it, or use the NumPy backend (backend='numpy', --backend numpy)")


def check_numba_env() -> None:
    """Raise ConfigError if numba's thread settings (environment variables) are unusable."""
    if PROBLEM is not None:
        raise ConfigError(PROBLEM)
