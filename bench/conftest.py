"""Benchmark setup: numba on 2 threads, like the machines these numbers are quoted for, and --bench-quick.

BLAS keeps its own 2 threads, so NumPy's ``@`` gets the same two cores the numba
kernels get. Run: pytest bench/ --benchmark-only [--bench-quick]

--bench-quick shrinks every suite so the whole of bench/ runs in a few minutes, to check that it
works (the figures are then meaningless): epochs of 2,000 samples, the small scikit-learn data and
5 epochs, 1 round each, and fewer kernel calls.

Saved runs (--benchmark-save, --benchmark-autosave) go to --benchmark-storage, which defaults here to
pytest-benchmark/ in fastnet.bench.output.default_output_dir() rather than pytest-benchmark's
./.benchmarks, which is inside the repository when run from it. --benchmark-json takes a path of its own.
"""
import numba
import pytest

from fastnet.bench.output import default_output_dir

THREADS = 2
PYTEST_BENCHMARK_STORAGE = "file://./.benchmarks"  # pytest-benchmark's own default


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark's pytest_configure opens the storage
def pytest_configure(config):
    if getattr(config.option, "benchmark_storage", None) == PYTEST_BENCHMARK_STORAGE:
        config.option.benchmark_storage = f"file://{default_output_dir() / 'pytest-benchmark'}"


def pytest_addoption(parser):
    parser.addoption("--bench-quick", action="store_true",
                     help="tiny benchmark settings: check that the suites run, not how fast")


@pytest.fixture(scope="session")
def quick(request) -> bool:
    return request.config.getoption("--bench-quick")


@pytest.fixture(autouse=True, scope="session")
def _numba_threads():
    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
