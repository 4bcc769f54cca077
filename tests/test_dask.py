"""Sweeps on Dask: scikit-learn's searches run fastnet fits on dask.distributed workers through joblib."""
import os

import distributed  # the `dask` extra; CI installs it with `.[test]`
import joblib
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, cross_validate

import fastnet as fn
from fastnet.sklearn import MLPClassifier

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """2 single-threaded worker processes on 127.0.0.1, no dashboard; closed after the module's tests.

    The workers are spawned by multiprocessing, which hands them this process's sys.path: they import
    fastnet from wherever the tests do (the repository root, or the installed package as in CI).
    """
    with distributed.LocalCluster(host="127.0.0.1", n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, local_directory=tmp_path_factory.mktemp("dask")) as cluster, \
            distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x[:400] / 16, y[:400]


def fits_done(dask_scheduler) -> int:
    """How many of joblib's batches of scikit-learn fits the scheduler has seen finish."""
    return sum(prefix.state_counts["memory"] for name, prefix in dask_scheduler.task_prefixes.items()
               if "fit_and_score" in name)


def small(cls=MLPClassifier, **kw):
    return cls(**{"hidden_layer_sizes": (16,), "max_iter": 15, "random_state": 0, **kw})


def test_grid_search_on_dask_scores_as_on_one_process(client, digits):
    x, y = digits
    grid = {"alpha": [1e-4, 1e-2], "learning_rate_init": [1e-3, 1e-2]}
    here = GridSearchCV(small(), grid, cv=3, n_jobs=1).fit(x, y)
    before = client.run_on_scheduler(fits_done)
    with joblib.parallel_config(backend="dask"):
        there = GridSearchCV(small(), grid, cv=3).fit(x, y)
    assert client.run_on_scheduler(fits_done) > before  # the fits went to the cluster
    for key in here.cv_results_:  # every score, rank and parameter, exactly; only the timings differ
        if not key.endswith("_time"):
            assert np.array_equal(there.cv_results_[key], here.cv_results_[key]), key
    assert there.best_params_ == here.best_params_


def counting_threads():
    """An MLPClassifier that records numba's thread count and its process id inside fit.

    A local class: it cannot be pickled by reference, so Dask ships it by value (cloudpickle) to workers.
    """
    class Counting(MLPClassifier):
        def _end_epoch(self, *args):
            self.threads_seen_, self.pid_ = fn.get_num_threads(), os.getpid()
            return super()._end_epoch(*args)
    return Counting


@pytest.mark.parametrize("n_threads, expected", [(None, 1), (2, 2)])
def test_fits_on_dask_workers_use_one_numba_thread_unless_told(client, digits, n_threads, expected):
    x, y = digits
    with joblib.parallel_config(backend="dask"):
        out = cross_validate(small(counting_threads(), n_threads=n_threads), x, y, cv=2, return_estimator=True)
    assert {est.pid_ for est in out["estimator"]} <= set(client.run(os.getpid).values())  # fitted on workers
    assert [est.threads_seen_ for est in out["estimator"]] == [expected, expected]
