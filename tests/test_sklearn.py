"""fastnet.sklearn: drop-in scikit-learn estimators that pass scikit-learn's own checks and work in its tools."""
import importlib
import pickle
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn import neural_network
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastnet as fn
import fastnet.model
from fastnet.sklearn import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Small and fast, yet accurate enough for the checks' accuracy (> 0.83) and R² (> 0.5) floors; dtype left at its
# default, "auto", which computes the checks' float64 data in float64 (the check that integer sample weights
# equal repeated rows compares predictions at rtol 1e-7, below float32's rounding).
CHECKED = [MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.03, max_iter=20, random_state=0),
           MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.03, max_iter=20, random_state=0)]


@parametrize_with_checks(CHECKED)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x[:600], y[:600]


def small(cls=MLPClassifier, **kw):
    return cls(**{"hidden_layer_sizes": (32,), "learning_rate_init": 0.01, "batch_size": 50, "max_iter": 10,
                  "random_state": 0, **kw})


def test_clone_keeps_parameters_and_drops_the_fit(digits):
    x, y = digits
    est = small(dropout=0.1, n_threads=1).fit(x / 16, y)
    copy = clone(est)
    assert copy.get_params() == est.get_params() and not hasattr(copy, "model_")
    assert copy.set_params(alpha=0.5).alpha == 0.5


def test_pipeline_grid_search_and_cross_validation_on_digits(digits):
    x, y = digits
    pipe = make_pipeline(StandardScaler(), small())
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-2], "mlpclassifier__activation": ["tanh"]},
                        cv=2).fit(x, y)
    assert grid.best_score_ > 0.8 and len(grid.cv_results_["params"]) == 2
    assert grid.best_estimator_[-1].activation == "tanh"
    search = RandomizedSearchCV(make_pipeline(MinMaxScaler(), small()),
                                {"mlpclassifier__hidden_layer_sizes": [(16,), (32, 16)]}, n_iter=2, cv=2,
                                random_state=0).fit(x, y)
    assert search.best_estimator_.score(x, y) > 0.8
    scores = cross_val_score(pipe, x, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8


def test_parallel_cross_validation_scores_equal_the_serial_ones(digits):
    x, y = digits
    pipe = make_pipeline(StandardScaler(), small())
    serial = cross_val_score(pipe, x, y, cv=2)
    parallel = cross_val_score(pipe, x, y, cv=2, n_jobs=2)  # loky worker processes: the estimator pickles
    assert np.array_equal(serial, parallel)


@pytest.mark.parametrize("labels", [np.array(["cat", "dog", "emu"]), np.array([-3, 10, 42])])
def test_any_label_type_comes_back_as_it_went_in(digits, labels):
    x, y = digits
    keep = y < 3
    est = small().fit(x[keep] / 16, labels[y[keep]])
    assert list(est.classes_) == list(labels) and est.predict(x[:5] / 16).dtype == labels.dtype
    assert est.score(x[keep] / 16, labels[y[keep]]) > 0.9
    proba = est.predict_proba(x[keep] / 16)
    assert proba.shape == (keep.sum(), 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-6)


def test_two_classes_use_one_logistic_output(digits):
    x, y = digits
    est = small().fit(x / 16, np.where(y < 5, "low", "high"))
    assert est.out_activation_ == "logistic" and est.n_outputs_ == 1 and est.coefs_[-1].shape == (32, 1)
    proba = est.predict_proba(x / 16)
    assert np.array_equal(est.classes_[(proba[:, 1] > 0.5).astype(int)], est.predict(x / 16))


def test_fitted_attributes_follow_scikit_learn(digits):
    x, y = digits
    est = small(hidden_layer_sizes=(32, 16)).fit(x / 16, y)
    assert est.n_features_in_ == 64 and est.n_layers_ == 4 and est.n_outputs_ == 10
    assert [c.shape for c in est.coefs_] == [(64, 32), (32, 16), (16, 10)]
    assert [b.shape for b in est.intercepts_] == [(32,), (16,), (10,)]
    assert len(est.loss_curve_) == est.n_iter_ == 10 and est.loss_curve_[-1] < est.loss_curve_[0]
    assert est.validation_scores_ is None and est.best_validation_score_ is None
    assert est.best_loss_ == min(est.loss_curve_)
    # coefs_ are views of the network's weights, in scikit-learn's (n_in, n_out) layout
    assert np.shares_memory(est.coefs_[0], est.model_.params)
    assert np.array_equal(est.coefs_[0], est.model_.get_weights()["layers.0.weight"].T)


def test_feature_names_come_from_data_frames(digits):
    import pandas as pd  # in the test extra: scikit-learn reads names from pandas (or polars) frames
    x, y = digits
    frame = pd.DataFrame(x / 16, columns=[f"px{i}" for i in range(64)])
    est = small().fit(frame, y)
    assert list(est.feature_names_in_) == list(frame.columns)
    with pytest.warns(UserWarning, match="feature names"):
        est.predict(x / 16)


def test_integer_inputs_are_used_as_numbers_never_rescaled(digits):
    x, y = digits  # digits' pixels are integers 0..16
    as_ints = small().fit(x.astype(np.int64), y)
    as_floats = small().fit(x.astype(np.float64), y)
    assert np.array_equal(as_ints.predict_proba(x), as_floats.predict_proba(x))


def test_seeded_fits_repeat_bit_for_bit(digits):
    x, y = digits
    a, b = small(dropout=0.2).fit(x / 16, y), small(dropout=0.2).fit(x / 16, y)
    assert np.array_equal(a.predict_proba(x / 16), b.predict_proba(x / 16)) and a.loss_curve_ == b.loss_curve_


def test_stops_when_the_loss_stalls_exactly_when_scikit_learn_does(digits):
    x, y = digits
    kw = {"hidden_layer_sizes": (16,), "tol": 10.0, "n_iter_no_change": 3, "random_state": 0, "max_iter": 50}
    ours = MLPClassifier(**kw).fit(x / 16, y)
    theirs = neural_network.MLPClassifier(**kw).fit(x / 16, y)
    assert ours.n_iter_ == theirs.n_iter_ == 5  # improvements under tol: epochs 2..5 do not count, stop after 5


def test_early_stopping_keeps_the_best_validation_epoch(digits):
    x, y = digits
    est = small(early_stopping=True, n_iter_no_change=2, max_iter=40, learning_rate_init=0.05).fit(x / 16, y)
    assert len(est.validation_scores_) == est.n_iter_ and est.best_loss_ is None
    assert est.best_validation_score_ == max(est.validation_scores_)
    with pytest.raises(ValueError, match="early_stopping"):
        est.partial_fit(x, y)


def test_alpha_is_scikit_learns_penalty_per_batch(digits):
    x, y = digits
    est = small(alpha=0.3, batch_size=50).fit(x / 16, y)
    assert all(layer.l2 == pytest.approx(0.3 / 50) for layer in est.model_.dense)
    weak = small(alpha=0.0, batch_size=50).fit(x / 16, y)
    assert np.linalg.norm(est.coefs_[0]) < np.linalg.norm(weak.coefs_[0])


def test_partial_fit_needs_the_classes_first_and_then_trains_on(digits):
    x, y = digits
    est = small()
    with pytest.raises(ValueError, match="classes must be passed"):
        est.partial_fit(x, y)
    est.partial_fit(x[:300] / 16, y[:300], classes=np.arange(10))
    est.partial_fit(x[300:] / 16, y[300:])
    assert len(est.loss_curve_) == 2 and len(est.model_.history) == 2 and list(est.classes_) == list(range(10))
    with pytest.raises(ValueError, match="classes not in"):
        est.partial_fit(x[:10] / 16, y[:10] + 10)


def test_regressor_single_and_multi_output(digits):
    x, y = digits
    est = small(MLPRegressor, learning_rate_init=0.01).fit(x / 16, y / 9)
    pred = est.predict(x / 16)
    assert pred.shape == (600,) and pred.dtype == np.float64 and est.score(x / 16, y / 9) > 0.5
    two = small(MLPRegressor).fit(x / 16, np.c_[y, -y] / 9)
    assert two.predict(x / 16).shape == (600, 2) and two.n_outputs_ == 2


def test_parameters_are_checked_in_fit_not_in_init(digits):
    x, y = digits
    est = MLPClassifier(solver="lbfgs", hidden_layer_sizes=(0,))  # stored unchanged, as scikit-learn wants
    assert est.solver == "lbfgs"
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        est.fit(x, y)
    with pytest.raises(ValueError, match="solver"):
        MLPClassifier(solver="newton").fit(x, y)
    with pytest.raises(ValueError, match="dropout|Dropout"):
        small(dropout=1.5).fit(x, y)


def test_estimator_pickles_and_predicts_bit_identically(digits):
    x, y = digits
    for est in (small().fit(x / 16, y), small(MLPRegressor).fit(x / 16, y / 9)):
        same = pickle.loads(pickle.dumps(est))
        assert np.array_equal(same.predict(x / 16), est.predict(x / 16))
        assert same.get_params() == est.get_params() and same.loss_curve_ == est.loss_curve_


def test_fits_in_worker_threads_use_one_numba_thread_and_restore_it(digits, monkeypatch):
    x, y = digits
    seen = []
    real_fit = fastnet.model.Sequential.fit

    def recording_fit(self, *args, **kwargs):
        seen.append(fn.get_num_threads())
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(fastnet.model.Sequential, "fit", recording_fit)
    before = fn.get_num_threads()
    small(n_threads=1).fit(x / 16, y)
    assert seen == [1] and fn.get_num_threads() == before  # set for the fit, restored after

    worker = threading.Thread(target=lambda: small().fit(x / 16, y))  # as joblib's threads and Dask run fits
    worker.start()
    worker.join()
    assert seen == [1, 1]
    small().fit(x / 16, y)  # in the main thread, None leaves the setting alone
    assert seen == [1, 1, before]


def test_without_scikit_learn_the_import_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.base", None)  # as if scikit-learn were not installed
    monkeypatch.delitem(sys.modules, "fastnet.sklearn")
    with pytest.raises(ImportError, match=r"pip install 'scikit-learn>=1.6'"):
        importlib.import_module("fastnet.sklearn")


def test_max_iter_without_convergence_warns_as_scikit_learn_does(digits):
    x, y = digits
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        with pytest.raises(ConvergenceWarning, match="Maximum iterations \\(2\\)"):
            small(max_iter=2).fit(x / 16, y)


def test_joblib_workers_fit_and_return_estimators(digits):
    x, y = digits
    fitted = joblib.Parallel(n_jobs=2)(joblib.delayed(small(random_state=s).fit)(x / 16, y) for s in (0, 1))
    here = small(random_state=1).fit(x / 16, y)
    assert np.array_equal(fitted[1].predict_proba(x / 16), here.predict_proba(x / 16))


def test_fastnet_itself_never_imports_scikit_learn():
    code = "import sys, fastnet; assert not any(m.split('.')[0] == 'sklearn' for m in sys.modules), 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)
