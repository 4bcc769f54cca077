"""Thread control: numba's pool does the work; BLAS is held to one thread meanwhile.

Numba's threads and a BLAS library's threads would otherwise compete for the same
cores (OpenBLAS threads spin after each call), so while the numba backend trains,
BLAS is capped at 1 thread. The NumPy backend is left to BLAS's own threading.

Waiting: numba's kernels use every core (``set_num_threads`` or ``fastnet train
--threads`` choose fewer). After a parallel kernel its OpenMP threads spin briefly, about
0.1 ms, then sleep: ``import fastnet`` sets GOMP_SPINCOUNT=10000 for GNU OpenMP (numba's
runtime on Linux) and OMP_WAIT_POLICY=PASSIVE for any other runtime, before numba's OpenMP
runtime starts and reads them, unless OMP_WAIT_POLICY, GOMP_SPINCOUNT or KMP_BLOCKTIME is
already set: a setting of the user's wins. They are set in the process environment, so child
processes, and other OpenMP libraries loaded later in the process, see them too.

Which calls use the threads: waking a sleeping thread is not free. On the 2-vCPU cloud VM
fastnet is benchmarked on it took 90-160 µs when the machine was idle (``python
bench/region_cost.py``), longer than most kernels of a small-batch step; a thread still
spinning took 2 µs. So during training a ``StepTuner`` (fastnet/_thread_tuning.py) times each
parallel call of the step on one thread and on all threads, and runs a call on all threads
only where that pays; then it times whole steps with that choice, and keeps it only if they are
faster than on one thread, since spinning threads cost the rest of the step (and other
processes) time that no call's own time shows. It measures again every 1000 steps, as the
load changes, and at once when a split's steps slow down by a quarter. None of this changes
results: each thread owns whole output rows, so they are bitwise the same at any thread count.

Measured with ``python bench/bench_load.py`` (784-128-10 sigmoid, SGD, B=32 and 128, 2 cores,
medians of interleaved rounds, each setting in its own process; raw runs in
bench/results/bench-load-*.json), as the epoch time ÷ 1 thread's under the same load:

* libgomp's default, spinning about 300,000 times before sleeping: 1.9-28x next to 1 or 2 busy
  processes, as a waiting thread holds a core that a busy process, or the other numba thread,
  needs (2026-11-30);
* sleeping at once (OMP_WAIT_POLICY=PASSIVE, fastnet's default until 2026-12-01): 0.93-1.04x
  next to busy processes with the tuner, but 0.99-1.01x on an idle machine too: every split call
  paid a wake, so the tuner split almost none (2026-11-30);
* the default (2026-12-01, 5 rounds, bench-load-spin-watch-2026-12-01): 0.89x (B=32) and 0.75x
  (B=128) idle, 1.02x and 1.09x next to one busy process, 1.06x and 1.06x next to two. Each part
  was needed: without the whole-step check, 10,000 spins took 2.09x next to one busy process at
  B=128 (bench-load-tuned-spin-2026-11-30.txt); without the early re-measurement, 1.72x there,
  for the up to 1000 steps that the idle machine's choice lasted (bench-load-spin-2026-12-01);
  30,000 spins took 2.34x there with the whole-step check, and 3,000 gained nothing idle at B=128
  (bench-load-spin-guard-2026-12-01);
* the other candidates, next to 1 or 2 busy processes, before the tuner: OMP_WAIT_POLICY=ACTIVE
  0.8-28x, the workqueue layer 0.85-2.9x, TBB 0.64-1.23x (and TBB is not a dependency).

On a machine you have to yourself, ``GOMP_SPINCOUNT=300000`` (libgomp's default) keeps the
threads spinning longer; the tuner then finds wakes cheap and splits more calls.
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
