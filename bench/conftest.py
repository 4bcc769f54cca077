"""Benchmark setup: numba on 2 threads, like the machines these numbers are quoted for, and --bench-quick.

BLAS keeps its own 2 threads, so NumPy's ``@`` gets the same two cores the numba
kernels get. Run: /work/venv/bin/pytest bench/ --benchmark-only [--bench-quick]

--bench-quick shrinks every suite so the whole of bench/ runs in a few minutes, to check that it
works (the figures are then meaningless): epochs of 2,000 samples, the small scikit-learn data and
5 epochs, 1 round each, and fewer kernel calls.
"""
import numba
import pytest

THREADS = 2


def pytest_addoption(parser):
    parser.addoption("--bench-quick", action="store_true",
                     help="tiny benchmark settings: check that the suites run, not how fast")


@pytest.fixture(scope="session")
def quick(request) -> bool:
    return request.config.getoption("--bench-quick")


@pytest.fixture(autouse=True, scope="session")
def _numba_threads():
    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
