"""fastnet.sklearn's MLPs take the rest of scikit-learn's parameters and do with them what scikit-learn does:
learning_rate schedules with power_t, warm_start, solver="lbfgs" with max_fun, and fit's sample_weight."""
import warnings

import numpy as np
import pytest
import scipy.optimize
from sklearn import neural_network
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from fastnet.sklearn import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x[:200] / 16, y[:200]


def ours(cls=MLPClassifier, **kw):
    return cls(**{"hidden_layer_sizes": (8,), "random_state": 0, "backend": "numpy", **kw})


def theirs(cls=MLPClassifier, **kw):
    return getattr(neural_network, cls.__name__)(**{"hidden_layer_sizes": (8,), "random_state": 0, **kw})


def sgd_rates(est) -> list[float]:
    """scikit-learn's learning rate in each epoch of ``est``: fastnet's SGD rate without the loss scale."""
    return [lr / est._loss_scale for lr in est.model_.history["lr"]]


# ---- every parameter scikit-learn has ------------------------------------------------------

@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_every_scikit_learn_parameter_is_taken_with_its_default(cls):
    mine, sk = cls().get_params(), theirs(cls, hidden_layer_sizes=(100,), random_state=None).get_params()
    assert {k: mine[k] for k in sk} == sk


def test_the_regressors_loss_is_squared_error_only(digits):
    x, y = digits
    assert ours(MLPRegressor, loss="squared_error", max_iter=1).fit(x, y / 9.0).n_iter_ == 1
    with pytest.raises(ValueError, match="loss must be 'squared_error'.*Poisson"):
        ours(MLPRegressor, loss="poisson").fit(x, y / 9.0)


@pytest.mark.parametrize("bad", [{"learning_rate": "cyclic"}, {"power_t": -0.5}, {"max_fun": 0},
                                 {"warm_start": "yes"}, {"learning_rate": None}])
def test_bad_values_are_refused_in_fit_as_scikit_learn_refuses_them(digits, bad):
    x, y = digits
    with pytest.raises(ValueError):
        theirs(**bad).fit(x, y)
    with pytest.raises(ValueError, match=next(iter(bad))):
        ours(**bad).fit(x, y)


# ---- learning_rate and power_t -------------------------------------------------------------

def test_invscaling_gives_scikit_learns_rates_per_epoch(digits):
    x, y = digits
    kw = {"solver": "sgd", "learning_rate": "invscaling", "power_t": 0.3, "learning_rate_init": 0.2, "max_iter": 4}
    est, ref = ours(**kw).fit(x, y), theirs(**kw).fit(x, y)
    seen = [0.2] + [0.2 / (len(x) * k + 1) ** 0.3 for k in (1, 2, 3)]  # set after each epoch from t_ samples
    assert sgd_rates(est) == pytest.approx(seen, rel=1e-12)
    assert est._lr == ref._optimizer.learning_rate and est.t_ == ref.t_ == 4 * len(x)


def test_adaptive_divides_the_rate_by_5_until_1e6_then_stops_as_scikit_learn(digits):
    x, y = digits
    # tol=10: every epoch after the first counts as no improvement, whatever the losses
    kw = {"solver": "sgd", "learning_rate": "adaptive", "tol": 10.0, "n_iter_no_change": 2, "max_iter": 100}
    est, ref = ours(**kw).fit(x, y), theirs(**kw).fit(x, y)
    assert est.n_iter_ == ref.n_iter_ == 19 and est._lr == ref._optimizer.learning_rate
    rates = sgd_rates(est)
    assert rates[:4] == [0.001] * 4 and rates[4] == pytest.approx(0.001 / 5) and rates[-1] == pytest.approx(3.2e-7)


@pytest.mark.parametrize("schedule", ["invscaling", "adaptive"])
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_with_momentum_takes_scikit_learns_steps_as_the_rate_changes(digits, schedule, nesterov):
    x, y = digits
    kw = {"solver": "sgd", "learning_rate": schedule, "nesterovs_momentum": nesterov, "learning_rate_init": 0.3,
          "batch_size": len(x), "shuffle": False, "tol": 10.0, "n_iter_no_change": 1, "warm_start": True}
    est, ref = ours(dtype="float64", max_iter=1, **kw).fit(x, y), theirs(max_iter=1, **kw).fit(x, y)
    ref.coefs_ = [c.copy() for c in est.coefs_]  # from here on both from the same weights
    ref.intercepts_ = [b.copy() for b in est.intercepts_]
    est.set_params(max_iter=5).fit(x, y)
    ref.set_params(max_iter=5).fit(x, y)
    assert len(set(sgd_rates(est))) > 1 and est._lr == pytest.approx(ref._optimizer.learning_rate, rel=1e-12)
    for mine, sk in zip(est.coefs_ + est.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(mine, sk, rtol=1e-9, atol=1e-12)


def test_adam_ignores_the_schedule_as_scikit_learn_does(digits):
    x, y = digits
    est = ours(solver="adam", learning_rate="invscaling", max_iter=3).fit(x, y)
    assert est.model_.history["lr"] == [0.001] * 3


# ---- warm_start ----------------------------------------------------------------------------

def test_warm_start_continues_from_the_last_fit_as_scikit_learn(digits):
    x, y = digits
    kw = {"solver": "sgd", "learning_rate_init": 0.1, "max_iter": 3, "warm_start": True}
    est, ref = ours(**kw).fit(x, y), theirs(**kw).fit(x, y)
    before = [c.copy() for c in est.coefs_]
    est.set_params(max_iter=1).fit(x, y)
    ref.set_params(max_iter=1).fit(x, y)
    assert est.n_iter_ == ref.n_iter_ == 1 and est.t_ == ref.t_ == 4 * len(x)
    assert len(est.loss_curve_) == len(ref.loss_curve_) == 4 and est.loss_curve_[3] < est.loss_curve_[0]
    step = np.abs(est.coefs_[0] - before[0]).max()
    assert 0 < step < 0.5 * np.abs(before[0]).max()  # one epoch on from the last solution, not a new network
    cold = ours(**{**kw, "warm_start": False}).fit(x, y).fit(x, y)  # without warm_start: a new network each time
    assert cold.loss_curve_ == ours(**{**kw, "warm_start": False}).fit(x, y).loss_curve_


def test_warm_start_wants_the_same_classes_as_scikit_learn(digits):
    x, y = digits
    est = ours(max_iter=1, warm_start=True).fit(x, y)
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same classes"):
        est.fit(x[y < 5], y[y < 5])
    with pytest.raises(ValueError, match="features"):
        est.fit(x[:, :10], y)


# ---- solver="lbfgs" and max_fun ------------------------------------------------------------

def _lbfgs_pair(cls, x, y, sample_weight=None, **kw):
    """Our lbfgs fit and scikit-learn's, both warm-started from our network after one iteration, in float64."""
    kw = {"solver": "lbfgs", "alpha": 0.01, "warm_start": True, **kw}
    est = ours(cls, max_iter=1, dtype="float64", **kw).fit(x, y, sample_weight=sample_weight)
    ref = theirs(cls, max_iter=1, **kw).fit(x, y, sample_weight=sample_weight)
    ref.coefs_ = [c.copy() for c in est.coefs_]
    ref.intercepts_ = [b.copy() for b in est.intercepts_]
    est.set_params(max_iter=15).fit(x, y, sample_weight=sample_weight)
    ref.set_params(max_iter=15).fit(x, y, sample_weight=sample_weight)
    return est, ref


@pytest.mark.parametrize("task", ["multiclass", "binary", "regression"])
@pytest.mark.parametrize("weighted", [False, True])
def test_lbfgs_follows_scikit_learns_path_from_the_same_start(digits, task, weighted):
    x, y = digits
    cls = MLPRegressor if task == "regression" else MLPClassifier
    y = y % 2 if task == "binary" else (y / 9.0 if task == "regression" else y)
    w = np.random.default_rng(0).integers(0, 4, len(x)).astype(float) if weighted else None
    est, ref = _lbfgs_pair(cls, x, y, w)
    assert est.n_iter_ == ref.n_iter_ == 15
    assert est.loss_ == pytest.approx(ref.loss_, rel=1e-6)
    for mine, sk in zip(est.coefs_ + est.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(mine, sk, rtol=1e-4, atol=1e-6)


def test_lbfgs_converges_with_a_finite_difference_checked_gradient(digits):
    x, y = digits
    x, y, w = x[:60], y[:60], np.arange(60) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = ours(solver="lbfgs", max_iter=2000, dtype="float64", alpha=0.01).fit(x, y, sample_weight=w)
    assert est.n_iter_ < 2000 and est.score(x, y, sample_weight=w) == 1.0
    assert not hasattr(est, "loss_curve_") and est.t_ == 0  # as scikit-learn's lbfgs
    objective = est._lbfgs_objective(x, est._targets(y, False, None, False), w.astype(float))
    p = est.model_.params.copy() + np.random.default_rng(0).normal(0, 0.1, est.model_.n_params)
    error = scipy.optimize.check_grad(lambda q: objective(q)[0], lambda q: objective(q)[1], p)
    assert error < 1e-5 * np.linalg.norm(objective(p)[1])


def test_lbfgs_stops_at_max_fun_and_max_iter_with_scikit_learns_warning(digits):
    x, y = digits
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        est = ours(solver="lbfgs", max_fun=5).fit(x, y)
    assert est.n_iter_ <= 5 and est.loss_ > ours(solver="lbfgs", max_fun=50).fit(x, y).loss_
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        assert ours(solver="lbfgs", max_iter=3).fit(x, y).n_iter_ == 3


def test_lbfgs_has_no_partial_fit_and_no_dropout(digits):
    x, y = digits
    est = ours(solver="lbfgs")
    assert not hasattr(est, "partial_fit") and not hasattr(theirs(solver="lbfgs"), "partial_fit")
    with pytest.raises(ValueError, match="dropout"):
        ours(solver="lbfgs", dropout=0.2).fit(x, y)


# ---- sample_weight -------------------------------------------------------------------------

@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_weights_of_one_are_no_weights_bit_for_bit(digits, solver):
    x, y = digits
    kw = {"solver": solver, "batch_size": 50, "max_iter": 3, "backend": "numba"}
    plain, ones = ours(**kw).fit(x, y), ours(**kw).fit(x, y, sample_weight=np.ones(len(x)))
    assert plain.loss_curve_ == ones.loss_curve_
    assert np.array_equal(plain.predict_proba(x), ones.predict_proba(x))


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-7), ("float32", 1e-4)])  # up to the dtype's rounding
def test_integer_weights_are_repeated_rows_on_full_batches(digits, solver, dtype, rtol):
    x, y = digits[0][:100], digits[1][:100]  # repeated, still one batch of at most 200
    w = np.random.default_rng(1).integers(0, 4, len(x))
    kw = {"solver": solver, "max_iter": 5, "dtype": dtype, "backend": "numba", "shuffle": False,
          "learning_rate_init": 0.1 if solver == "sgd" else 0.01, "alpha": 0.1}
    weighted = ours(**kw).fit(x, y, sample_weight=w)
    repeated = ours(**kw).fit(np.repeat(x, w, axis=0), np.repeat(y, w))
    np.testing.assert_allclose(weighted.predict_proba(x), repeated.predict_proba(x), rtol=rtol, atol=rtol / 1000)
    if solver != "lbfgs":
        assert weighted.loss_curve_ == pytest.approx(repeated.loss_curve_, rel=rtol)
    assert weighted.loss_ == pytest.approx(repeated.loss_, rel=rtol)


def test_sgd_weighted_step_and_loss_are_scikit_learns(digits):
    x, y = digits
    w = np.random.default_rng(2).uniform(0.5, 3.0, len(x))
    kw = {"solver": "sgd", "batch_size": len(x), "shuffle": False, "max_iter": 1, "alpha": 0.1, "warm_start": True}
    est, ref = ours(dtype="float64", **kw).fit(x, y, sample_weight=w), theirs(**kw).fit(x, y, sample_weight=w)
    ref.coefs_ = [c.copy() for c in est.coefs_]  # both take one weighted step from the same weights
    ref.intercepts_ = [b.copy() for b in est.intercepts_]
    est.fit(x, y, sample_weight=w)
    ref.fit(x, y, sample_weight=w)
    assert est.loss_curve_[-1] == pytest.approx(ref.loss_curve_[-1], rel=1e-9)
    for mine, sk in zip(est.coefs_ + est.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(mine, sk, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("weights, why", [(-np.ones(200), "Negative values"), (np.zeros(200), "non-zero"),
                                          (np.ones(199), "shape"), (np.full(200, np.nan), "NaN"),
                                          (np.array(["a"] * 200), "float")])
def test_bad_weights_are_refused(digits, weights, why):
    x, y = digits
    with pytest.raises(ValueError, match=why):
        ours(max_iter=1).fit(x, y, sample_weight=weights)


def test_partial_fit_and_early_stopping_take_weights(digits):
    x, y = digits
    w = np.where(y == 3, 5.0, 1.0)
    est = ours(early_stopping=True, max_iter=3).fit(x, y, sample_weight=w)
    assert len(est.validation_scores_) == est.n_iter_
    part = ours(solver="sgd").partial_fit(x, y, sample_weight=w, classes=np.arange(10)).partial_fit(x, y, w)
    assert part.t_ == 2 * len(x)
    reg = ours(MLPRegressor).partial_fit(x, y / 9.0, sample_weight=w)
    assert reg.n_iter_ == 1


@pytest.mark.parametrize("x_dtype, network", [(np.float32, "float32"), (np.float64, "float64"), (np.int64, "float64")])
def test_dtype_auto_follows_x_as_scikit_learn_does(digits, x_dtype, network):
    """scikit-learn's MLPs keep float32 input in float32 and compute any other in float64; so does "auto",
    the default; an explicit dtype wins."""
    x, y = digits
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(x.astype(x_dtype), y)
    assert est.dtype == "auto" and str(est.model_.dtype) == network
    assert est.predict_proba(x.astype(x_dtype)).dtype == np.dtype(network)
    fixed = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0, dtype="float32").fit(x, y)
    assert str(fixed.model_.dtype) == "float32"
