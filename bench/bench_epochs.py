"""Epoch-level benchmarks: fastnet numba vs the NumPy baseline (1 and 2 BLAS threads) vs PyTorch.

Run: pytest bench/ --benchmark-only          (or `fastnet bench` for the interleaved table)

The contenders are built by fastnet.bench, the same code `fastnet bench` uses.
Each benchmark round is one epoch of 60,000 MNIST-shaped samples; compile time
is spent in the fixture, before timing starts.
"""
import pytest

from fastnet import bench

CONTENDERS = ["numba", "numpy-1", "numpy-2", "torch"]


@pytest.fixture(scope="module")
def data():
    return bench.epoch_data()


def make(kind, case, data):
    x, y = data
    if kind == "numba":
        return bench.fastnet_contender(case, "numba", x, y)
    if kind.startswith("numpy"):
        return bench.fastnet_contender(case, "numpy", x, y, blas_threads=int(kind[-1]))
    available, why = bench.torch_available()
    if not available:
        pytest.skip(why)
    return bench.torch_contender(case, x, y)


@pytest.mark.parametrize("kind", CONTENDERS)
@pytest.mark.parametrize("case", bench.CASES, ids=lambda c: c.name.replace(" ", "_"))
def bench_epoch(benchmark, case, kind, data):
    contender = make(kind, case, data)
    benchmark.group = case.name
    benchmark.extra_info["compile_seconds"] = contender.compile_seconds
    benchmark.extra_info["gflop_per_epoch"] = case.flops_per_epoch() / 1e9
    benchmark.pedantic(contender.epoch, rounds=3, warmup_rounds=1)
