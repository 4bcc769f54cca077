"""Thread control: numba's pool does the work; BLAS is held to one thread meanwhile.

Numba's threads and a BLAS library's threads would otherwise compete for the same
cores (OpenBLAS threads spin after each call), so while the numba backend trains,
BLAS is capped at 1 thread. The NumPy backend is left to BLAS's own threading.

Waiting: numba's kernels use every core (``set_num_threads`` or ``fastnet train
--threads`` choose fewer), and between parallel kernels its OpenMP threads sleep
rather than spin. ``import fastnet`` sets OMP_WAIT_POLICY=PASSIVE, before numba's OpenMP
runtime starts and reads it, unless OMP_WAIT_POLICY, GOMP_SPINCOUNT or KMP_BLOCKTIME is
already set: a setting of the user's wins. It is set in the process environment, so
child processes, and other OpenMP libraries loaded later in the process, see it too.

Which calls use the threads: waking a sleeping thread is not free. On the 2-vCPU cloud VM
fastnet is benchmarked on it took 90-160 µs when the machine was idle (``python
bench/region_cost.py``), longer than most kernels of a small-batch step. So during training a
``StepTuner`` (fastnet/_thread_tuning.py) times each parallel call of the step on one thread,
and the wake, and runs a call on all threads only where that pays, measuring again every 1000
steps as the load changes. None of this changes results: each thread owns whole output rows,
so they are bitwise the same at any thread count.

Measured with ``python bench/bench_load.py`` (784-128-10 sigmoid, SGD, B=32 and 128, 2 cores,
medians of interleaved rounds, each setting in its own process; raw runs in
bench/results/bench-load-*.json):

* next to 1 or 2 busy processes, libgomp's default of spinning about 300,000 times before
  sleeping made 2-thread epochs 1.9-28x the 1-thread time: a waiting thread holds a core that
  a busy process, or the other numba thread, needs. Waiting passively: 0.28-0.91x (before the
  tuner), 0.93-1.04x with it (2026-11-30, 60,000 samples, load 1.3-2.0);
* on an idle machine, passive waits without the tuner took 1.1-2.9x the 1-thread time, as each
  of about four parallel kernels per step paid a wake; with the tuner, 0.99x at B=32 and 1.01x
  at B=128 (60,000 samples, load 1.3; with a 10% margin instead of 20% it split more calls and
  took 1.10-1.12x), where spinning took 0.67-0.72x. That gap is the price of robustness under
  load: a 2-vCPU VM wakes threads slowly, and no spinning setting measured held under load;
* the other candidates, next to 1 or 2 busy processes: shorter spins (GOMP_SPINCOUNT=10000)
  0.88-2.3x, OMP_WAIT_POLICY=ACTIVE 0.8-28x, the workqueue layer 0.85-2.9x, TBB 0.64-1.23x
  (and TBB is not a dependency); with the tuner, GOMP_SPINCOUNT=10000 took 0.65-0.70x on the
  idle machine but 2.09x next to one busy process (bench-load-tuned-spin-2026-11-30.txt).

On a machine you have to yourself, ``GOMP_SPINCOUNT=300000`` (libgomp's default) makes the
threads spin again; the tuner then finds wakes cheap and splits more calls.
"""
from __future__ import annotations

import contextlib
import functools
import os

import numba
from threadpoolctl import ThreadpoolController

from fastnet.errors import ConfigError
from fastnet.kernels import check_numba_env


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for the numba kernels (at most numba's NUMBA_NUM_THREADS)."""
    check_numba_env()
    top = numba.config.NUMBA_NUM_THREADS
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"threads must be a whole number from 1 to {top}, got {n!r}")
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
    """Call a numba thread function; the first starts numba's threading layer, which may fail to load."""
    try:
        return call(*args)
    except ValueError as e:  # e.g. NUMBA_THREADING_LAYER=tbb without TBB installed
        layer, why = os.environ.get("NUMBA_THREADING_LAYER", "default"), " ".join(str(e).split())
        raise ConfigError(f"numba cannot start its threads with NUMBA_THREADING_LAYER={layer}: {why}; "
                          "choose another layer (omp, workqueue) or unset it") from None


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
