"""Epoch-level benchmarks: fastnet numba vs the NumPy baseline (1 and 2 BLAS threads), JAX and PyTorch.

Run: pytest bench/bench_epochs.py --benchmark-only [--bench-quick]   (or `fastnet bench` for the
interleaved table with ratios, targets and the machine record)

The contenders are fastnet.bench's worker processes, the same `fastnet bench` uses: each in its own
process (the NumPy baseline's without variables that force BLAS kernels), set up for a case before
timing starts (compile time goes to extra_info). A benchmark round is one epoch of 60,000
MNIST-shaped samples, run in the worker; a missing library skips its contender with the reason.
"""
import pytest

from fastnet.bench.contenders import SAMPLES
from fastnet.bench.harness import CASES, contender_keys, start_worker

KEYS = contender_keys()


@pytest.fixture(scope="module", params=KEYS)
def worker(request, quick):
    w = start_worker(request.param, samples=2_000 if quick else SAMPLES)
    if not w.available:
        pytest.skip(w.info["unavailable"])
    yield w
    w.close()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name.replace(" ", "_"))
def bench_epoch(benchmark, case, worker, quick):
    setup = worker.request(case=case.to_json())
    benchmark.group = case.name
    benchmark.extra_info.update(contender=setup["name"], compile_seconds=setup["compile_s"],
                                gflop_per_epoch=case.flops_per_epoch() / 1e9, threads=worker.info["threads"],
                                kernels=worker.info["kernels"])
    benchmark.pedantic(lambda: worker.request(epoch=1), rounds=1 if quick else 3, warmup_rounds=0)
