"""numba's thread settings, read before numba reads them, so a bad one is a one-line ConfigError.

numba will not even import with NUMBA_NUM_THREADS below 1 (a ValueError deep in its
import), and an unknown NUMBA_THREADING_LAYER fails at the first parallel kernel. The
first would stop ``import fastnet``, and with it the ``fastnet`` command's own error
handling. So kernels/__init__.py imports this module before anything imports numba: it
checks both variables, imports numba with a bad NUMBA_NUM_THREADS hidden from it (numba
then sizes its pool by the cores, and the variable is put back at once), and the numba
backend refuses to run with the problem as its message (``check_numba_env``). The NumPy
backend needs no numba threads and still works.

It also chooses how OpenMP threads wait, unless the user did (OMP_WAIT_POLICY, GOMP_SPINCOUNT
or KMP_BLOCKTIME is set): numba's OpenMP layer reads these when it starts, at the first parallel
kernel. GNU OpenMP (libgomp, numba's on Linux) spins ``SPIN_COUNT`` times after a parallel kernel,
then sleeps; other runtimes read OMP_WAIT_POLICY=PASSIVE and sleep at once (libgomp lets an
explicit spin count win over the policy). libgomp's own default, spinning 300,000 times, made a
2-thread epoch 5-28x slower than 1 thread when other processes were busy (bench/bench_load.py);
see fastnet/threads.py for the measurements that chose the short spin.
"""
from __future__ import annotations

import os

from .errors import ConfigError

THREADING_LAYERS = ("default", "safe", "threadsafe", "forksafe", "tbb", "omp", "workqueue")
"""The values numba accepts for NUMBA_THREADING_LAYER (any case)."""


WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
"""The variables by which a user says how OpenMP threads wait: any of them set, fastnet sets none."""

SPIN_COUNT = 10_000
"""How long libgomp's threads spin after a parallel kernel before they sleep: about 0.1 ms by
libgomp's own estimate of 100,000 spins per ms, so the threads are still awake for the next
kernel of the same step, and asleep soon after the step. On the 2-vCPU VM a sleeping thread
took 90-160 µs to wake; 30,000 spins took 2.3x the 1-thread time next to a busy process."""


def set_wait_policy(environ) -> bool:
    """Set OMP_WAIT_POLICY=PASSIVE and GOMP_SPINCOUNT=SPIN_COUNT in ``environ``, unless one of
    WAIT_SETTINGS is there; True if it did."""
    if any(name in environ for name in WAIT_SETTINGS):
        return False
    environ.update(OMP_WAIT_POLICY="PASSIVE", GOMP_SPINCOUNT=str(SPIN_COUNT))
    return True


def unset_wait_policy(environ=os.environ) -> None:
    """Take back the wait settings this process's ``import fastnet`` made (if it made them), before
    another library's OpenMP runtime loads: a benchmark's PyTorch worker, whose own defaults are measured.
    (With OMP_WAIT_POLICY=PASSIVE, PyTorch eager trained 784-128-10 at B=32 2.4-3.3x slower.)"""
    if SET_WAIT_POLICY:
        for name in WAIT_SETTINGS:
            environ.pop(name, None)


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
SET_WAIT_POLICY = set_wait_policy(os.environ)  # before numba's OpenMP runtime loads and reads it
"""True when fastnet set the wait variables itself: a benchmark can drop them from other libraries' processes."""
PROBLEM = _threads or _layer_problem(os.environ.get("NUMBA_THREADING_LAYER"))
"""What is wrong with numba's thread settings, in one line; None when nothing is."""
_import_numba(hide_threads=_threads is not None)


def check_numba_env() -> None:
    """Raise ConfigError if numba's thread settings (environment variables) are unusable."""
    if PROBLEM is not None:
        raise ConfigError(PROBLEM)
