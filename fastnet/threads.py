"""Thread control: numba's pool does the work; BLAS is held to one thread meanwhile.

Numba's threads and a BLAS library's threads would otherwise compete for the same
cores (OpenBLAS threads spin after each call), so while the numba backend trains,
BLAS is capped at 1 thread. The NumPy backend is left to BLAS's own threading.

How many: the compiled step's GEMMs use every core that other processes leave free, read at
each epoch's start (``threads_for_load``); ``set_num_threads`` or ``fastnet train --threads``
choose fewer.

Waiting: between GEMMs, numba's OpenMP threads spin briefly, about 0.1 ms, then sleep, so that
a busy machine does not make two threads slower than one: a thread that spins holds a core that
another process, or the other numba thread, needs. libgomp reads how long to spin from
GOMP_SPINCOUNT (other OpenMP runtimes from OMP_WAIT_POLICY) once, when it loads, which is when
numba starts its pool. So ``start_pool`` sets those variables for that moment only and puts the
environment back at once: a child process or a runtime loaded later does not see them. A library
that shares numba's OpenMP runtime (PyTorch's CPU wheel uses the system libgomp too) runs with the
same spin count; PyTorch eager measured no slower with it. A user's own OMP_WAIT_POLICY,
GOMP_SPINCOUNT or KMP_BLOCKTIME wins, and a pool that someone else started first is left as it is.
docs/performance.md has the measurements.
"""
from __future__ import annotations

import contextlib
import functools
import numbers
import os
import time

import numba
from threadpoolctl import ThreadpoolController

from fastnet.errors import ConfigError
from fastnet.kernels import check_numba_env
from fastnet.kernels._pool import SPIN_COUNT, WAIT_SETTINGS, layer_error, start_pool  # noqa: F401 (re-exported)

def set_num_threads(n: int) -> None:
    """Use ``n`` threads for the numba kernels (at most numba's NUMBA_NUM_THREADS)."""
    check_numba_env()
    top = numba.config.NUMBA_NUM_THREADS
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:  # np.int64(2) is a whole number too
        raise ConfigError(f"threads must be a whole number from 1 to {top}, got {n!r}")
    n = int(n)
    if n > top:
        raise ConfigError(f"cannot use {n} threads: {_pool_limit(n, top)}")
    _start_threads(numba.set_num_threads, n)


def get_num_threads() -> int:
    """How many threads the numba kernels use."""
    check_numba_env()
    return _start_threads(numba.get_num_threads)


def _pool_limit(n: int, top: int) -> str:
    """Why numba's pool holds only ``top`` threads, and how to get ``n``: numba sizes it once, at start-up."""
    if "NUMBA_NUM_THREADS" in os.environ:
        return (f"this process was started with NUMBA_NUM_THREADS={os.environ['NUMBA_NUM_THREADS']}, which caps "
                f"numba at {top}; ask for at most {top}, or start it with NUMBA_NUM_THREADS={n} (or unset it)")
    return (f"numba starts one thread per available core, {top} here; ask for at most {top}, "
            f"or start the process with NUMBA_NUM_THREADS={n}")




def _start_threads(call, *args):
    """Call a numba thread function, starting numba's pool first (see ``start_pool``)."""
    start_pool()
    try:
        return call(*args)
    except ValueError as e:
        raise layer_error(e) from None


def busy_cores(samples: int = 5, gap: float = 0.001) -> int:
    """How many other threads are running or ready to run right now: the fewest of ``samples`` readings of
    Linux's /proc/loadavg, ``gap`` seconds apart, less this one (0 where there is no such file). The
    fewest, so that a process that wakes for an instant does not count."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]))
        except (OSError, ValueError, IndexError):
            return 0
        if i + 1 < samples:
            time.sleep(gap)
    return max(0, min(counts) - 1)


READ_EVERY = 1.0
"""Seconds a reading of the free cores stands: short epochs (a scikit-learn fit runs hundreds) share one."""

_reading: tuple[float, int] | None = None  # (when, free cores) of the last reading


def _free_cores() -> int:
    """The cores other processes leave free, at least one; read again once READ_EVERY has passed."""
    global _reading
    now = time.monotonic()
    if _reading is None or now - _reading[0] > READ_EVERY:
        _reading = (now, max(1, _cores() - busy_cores()))
    return _reading[1]


def _cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def threads_for_load(backend: str):
    """Within this block, the numba kernels use only the cores that other processes leave free (at least
    one), read once as the block starts (``busy_cores``). A GEMM split onto a core that a busy process
    holds waits for that process's time slice at every join: on a 2-core machine next to two busy
    processes, two threads trained 1.7-2.2x slower than one. The bits do not depend on the thread count."""
    if backend != "numba":
        yield
        return
    start_pool()
    chosen = numba.get_num_threads()
    free = _free_cores() if chosen > 1 else 1
    if free < chosen:
        numba.set_num_threads(free)
    try:
        yield
    finally:
        numba.set_num_threads(chosen)


@contextlib.contextmanager
def kernel_threads(backend: str):
    """Within this block, cap BLAS at one thread if the numba backend is doing the work.

    Nested blocks cost nothing, and the BLAS libraries are found once per process:
    threadpoolctl's search of the loaded libraries took 2.8 ms a call.
    """
    global _depth
    if backend != "numba" or _depth:
        yield
        return
    _start_threads(lambda: None)
    _depth += 1
    try:
        with _blas_controller().limit(limits=1, user_api="blas"):
            yield
    finally:
        _depth -= 1


_depth = 0  # kernel_threads blocks open in this process


@functools.cache
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()
