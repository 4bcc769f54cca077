"""numba's thread pool, started once per process before any kernel runs, with threads that wait politely.

It lives with the kernels because the kernels' backend starts it (``get_backend("numba")``); fastnet.threads,
which holds the rest of fastnet's thread settings, re-exports it.
"""
import os

import numba

from .errors import ConfigError

WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
"""The variables by which a user says how OpenMP threads wait: with any of them set, fastnet sets none."""

SPIN_COUNT = 10_000
"""How long libgomp's threads spin after a parallel region before they sleep: about 0.1 ms (libgomp
counts about 100,000 spins per ms), so the threads are still awake for the next GEMM of a step and
asleep soon after it. A sleeping thread takes about 100 µs to wake; spinning 3x longer cost 2x the
one-thread time next to a busy process."""


def start_pool() -> None:
    """Start numba's thread pool (once per process) with threads that spin briefly, then sleep.

    The wait variables are in the environment only while the pool starts, and only when the
    user set none of WAIT_SETTINGS. ConfigError if numba's threading layer cannot load."""
    global _pool_started
    if _pool_started:
        return
    chosen = {} if any(name in os.environ for name in WAIT_SETTINGS) else {
        "OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": str(SPIN_COUNT)}
    os.environ.update(chosen)
    try:
        numba.get_num_threads()  # starts the threading layer, which loads the OpenMP runtime
    except ValueError as e:
        raise layer_error(e) from None
    finally:
        for name in chosen:
            del os.environ[name]
    _pool_started = True


_pool_started = False


def layer_error(e: ValueError) -> ConfigError:
    """What numba raises when its threading layer cannot load (e.g. NUMBA_THREADING_LAYER=tbb without
    TBB installed), as one line."""
    layer, why = os.environ.get("NUMBA_THREADING_LAYER", "default"), " ".join(str(e).split())
    return ConfigError(f"numba cannot start its threads with NUMBA_THREADING_LAYER={layer}: {why}; "
                       "choose another layer (omp, workqueue) or unset it")
