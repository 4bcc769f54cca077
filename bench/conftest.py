"""Benchmark setup: numba on 2 threads, like the machines these numbers are quoted for.

BLAS keeps its own 2 threads, so NumPy's ``@`` gets the same two cores the numba
kernels get. Run: /work/venv/bin/pytest bench/bench_kernels.py --benchmark-only
"""
import numba
import pytest

THREADS = 2


@pytest.fixture(autouse=True, scope="session")
def _numba_threads():
    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
