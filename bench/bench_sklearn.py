"""fastnet's MLPClassifier against scikit-learn's: fit time per dataset and contender.

Run: pytest bench/bench_sklearn.py --benchmark-only [--bench-quick]   (or `fastnet bench --sklearn` for the interleaved table)

The contenders are fastnet.bench's worker processes, the same `fastnet bench --sklearn` uses: each library
on 1 thread and on all cores in its own process (scikit-learn's without this environment's forced
OpenBLAS kernels). A benchmark round is one fit, sent to the worker; accuracy goes to extra_info.
"""
import numba
import pytest

from fastnet.bench.versus_sklearn import SKLEARN_DATASETS, SKLEARN_EPOCHS, sklearn_worker

THREADS = sorted({1, numba.config.NUMBA_NUM_THREADS})


@pytest.fixture(scope="module", params=[(lib, n) for lib in ("sklearn", "fastnet") for n in THREADS],
                ids=lambda p: f"{p[0]}-{p[1]}thr")
def worker(request, quick):
    pytest.importorskip("sklearn")
    epochs = {name: 5 for name in SKLEARN_DATASETS} if quick else SKLEARN_EPOCHS
    w = sklearn_worker(*request.param, quick=quick, epochs=epochs)
    yield w
    w.close()


@pytest.mark.parametrize("dataset", SKLEARN_DATASETS)
def bench_sklearn_fit(benchmark, worker, dataset, quick):
    benchmark.group = dataset
    benchmark.extra_info.update(worker.info)
    fits = []
    benchmark.pedantic(lambda: fits.append(worker.request(dataset=dataset)), rounds=1 if quick else 3, warmup_rounds=0)
    benchmark.extra_info["accuracy"] = fits[-1]["accuracy"]
    benchmark.extra_info["fit_seconds_in_worker"] = [f["seconds"] for f in fits]
