"""Thread control: numba's pool does the work; BLAS is held to one thread meanwhile.

Numba's threads and a BLAS library's threads would otherwise compete for the same
cores (OpenBLAS threads spin after each call), so while the numba backend trains,
BLAS is capped at 1 thread. The NumPy backend is left to BLAS's own threading.
"""
from __future__ import annotations

import contextlib

import numba
from threadpoolctl import threadpool_limits

from fastnet.errors import ConfigError


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for the numba kernels (at most numba's NUMBA_NUM_THREADS)."""
    top = numba.config.NUMBA_NUM_THREADS
    if not isinstance(n, int) or not 1 <= n <= top:
        raise ConfigError(f"threads must be between 1 and {top} on this machine, got {n!r}")
    numba.set_num_threads(n)


def get_num_threads() -> int:
    return numba.get_num_threads()


@contextlib.contextmanager
def kernel_threads(backend: str):
    """Within this block, cap BLAS at one thread if the numba backend is doing the work."""
    if backend == "numba":
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    else:
        yield
