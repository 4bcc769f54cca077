"""Bad input is refused at the door, before any kernel runs, with a fastnet error that says what to fix."""
import re

import numpy as np
import pytest

import fastnet as fn
from fastnet.kernels import BACKENDS


@pytest.fixture
def no_kernel_may_run(monkeypatch):
    """Make every kernel of both backends fail the test if it is called."""

    def forbidden(name):
        def kernel(*args):
            raise AssertionError(f"kernel {name} ran before the input was validated")
        return kernel

    for backend in BACKENDS.values():
        for name in vars(backend.raw):
            monkeypatch.setattr(backend.raw, name, forbidden(name))
            monkeypatch.setattr(backend, name, forbidden(name))


def classifier(backend="numba"):
    return fn.Sequential(fn.Dense(6, 8), fn.ReLU(), fn.Dense(8, 4), loss=fn.SoftmaxCrossEntropy(),
                         backend=backend, seed=0)


GOOD_X = np.random.default_rng(0).normal(size=(10, 6))
GOOD_Y = np.arange(10) % 4
NAN_X = GOOD_X.copy()
NAN_X[7, 2] = np.nan
INF_X = GOOD_X.copy()
INF_X[3, 0] = -np.inf

# (x, y, exception, phrases the message must contain)
BAD_INPUTS = {
    "x_1d": (GOOD_X[0], GOOD_Y[:1], fn.ShapeError, ["2-D", "(6,)"]),
    "x_3d_images": (GOOD_X.reshape(10, 2, 3), GOOD_Y, fn.ShapeError, ["2-D", "(10, 2, 3)", "reshape"]),
    "width_mismatch": (GOOD_X[:, :5], GOOD_Y, fn.ShapeError, ["5 features", "expects 6"]),
    "label_too_big": (GOOD_X, np.where(GOOD_Y == 3, 4, GOOD_Y), fn.InputError, ["label 4", "0..3"]),
    "label_negative": (GOOD_X, np.where(GOOD_Y == 1, -1, GOOD_Y), fn.InputError, ["label -1", "0..3"]),
    "float_labels": (GOOD_X, GOOD_Y.astype(float), fn.DTypeError, ["integers", "astype"]),
    "length_mismatch": (GOOD_X, GOOD_Y[:9], fn.ShapeError, ["10 samples", "y has 9", "same length"]),
    "nan_in_x": (NAN_X, GOOD_Y, fn.InputError, ["NaN or Inf", "row 7"]),
    "inf_in_x": (INF_X, GOOD_Y, fn.InputError, ["NaN or Inf", "row 3"]),
    "string_x": (GOOD_X.astype(str), GOOD_Y, fn.DTypeError, ["dtype", "uint8", "float"]),
}


def check_message(err, phrases):
    assert isinstance(err.value, fn.FastnetError)
    for phrase in phrases:
        assert phrase in str(err.value), f"{phrase!r} not in {str(err.value)!r}"


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_to_fit_raises_a_fastnet_error_before_any_kernel(case, backend, no_kernel_may_run):
    x, y, exc, phrases = BAD_INPUTS[case]
    model = classifier(backend)
    before = model.params.copy()
    with pytest.raises(exc) as err:
        model.fit(x, y, epochs=1, progress=False)
    check_message(err, phrases)
    assert np.array_equal(model.params, before) and len(model.history) == 0


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_to_evaluate_and_as_validation_data_is_refused_too(case, no_kernel_may_run):
    x, y, exc, phrases = BAD_INPUTS[case]
    model = classifier()
    with pytest.raises(exc) as err:
        model.evaluate(x, y)
    check_message(err, phrases)
    with pytest.raises(exc) as err:
        model.fit(GOOD_X, GOOD_Y, epochs=1, validation_data=(x, y), progress=False)
    check_message(err, phrases)


@pytest.mark.parametrize("case", ["x_1d", "x_3d_images", "width_mismatch", "nan_in_x", "inf_in_x", "string_x"])
def test_bad_x_to_predict_is_refused(case, no_kernel_may_run):
    x, _, exc, phrases = BAD_INPUTS[case]
    with pytest.raises(exc) as err:
        classifier().predict(x)
    check_message(err, phrases)


def test_nan_in_regression_targets_and_non_binary_bce_targets_are_refused(no_kernel_may_run):
    y = np.zeros((10, 4))
    y[5, 1] = np.nan
    mse = fn.Sequential(fn.Dense(6, 4), loss=fn.MSE(), seed=0)
    with pytest.raises(fn.InputError) as err:
        mse.fit(GOOD_X, y, progress=False)
    check_message(err, ["NaN or Inf", "row 5"])
    with pytest.raises(fn.ShapeError) as err:
        mse.fit(GOOD_X, np.zeros((10, 3)), progress=False)
    check_message(err, ["(n, 4)", "(10, 3)"])
    bce = fn.Sequential(fn.Dense(6, 1), loss=fn.BinaryCrossEntropy(), seed=0)
    with pytest.raises(fn.InputError) as err:
        bce.fit(GOOD_X, np.full(10, 2.0), progress=False)
    check_message(err, ["0 or 1"])


def test_unknown_activation_names_it_and_lists_the_choices():
    with pytest.raises(fn.ConfigError) as err:
        fn.layers.activation("swish")
    check_message(err, ["'swish'", "sigmoid", "tanh", "relu", "leaky_relu"])


def test_unknown_backend_names_it_and_lists_the_choices():
    with pytest.raises(fn.ConfigError) as err:
        fn.Sequential(fn.Dense(2, 2), loss=fn.MSE(), backend="torch")
    check_message(err, ["'torch'", "'numba'", "'numpy'"])


@pytest.mark.parametrize("build, phrases", [
    (lambda: fn.Sequential(fn.Dense(2, 2), loss=fn.MSE(), dtype="float16"), ["'float16'", "float32", "float64"]),
    (lambda: fn.Sequential(fn.Dense(4, 3), fn.Dense(2, 1), loss=fn.MSE()), ["takes 2 inputs", "gives 3"]),
    (lambda: fn.Sequential(loss=fn.MSE()), ["at least one layer"]),
    (lambda: fn.Sequential(fn.Dense(2, 1), loss=fn.SoftmaxCrossEntropy()), ["at least 2 outputs"]),
    (lambda: fn.Dense(3, 2, init="glorot"), ["'glorot'", "xavier", "he", "normal"]),
    (lambda: fn.Dense(3, 2, l2=-1.0), ["l2", ">= 0"]),
    (lambda: fn.Dense(0, 2), ["n_in", "positive"]),
    (lambda: fn.Dropout(1.0), ["[0, 1)"]),
    (lambda: fn.Sigmoid(a=0), ["a > 0"]),
    (lambda: fn.SGD(lr=-0.1), ["learning rate", "> 0"]),
    (lambda: fn.SGD(lr=0.1, nesterov=True), ["nesterov", "momentum"]),
    (lambda: fn.Adam(betas=(1.0, 0.9)), ["betas"]),
])
def test_bad_configuration_raises_config_error_explaining_it(build, phrases):
    with pytest.raises(fn.ConfigError) as err:
        build()
    check_message(err, phrases)


def test_bad_fit_arguments_are_refused(no_kernel_may_run):
    model = classifier()
    for kwargs, phrase in (({"epochs": -1}, "epochs"), ({"batch_size": 0}, "batch_size"),
                           ({"optimizer": 3}, "SGD(...) or Adam(...)"), ({"callbacks": [print]}, "Callback")):
        with pytest.raises(fn.ConfigError, match=re.escape(phrase)):
            model.fit(GOOD_X, GOOD_Y, progress=False, **kwargs)


# ---- divergence ---------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_a_huge_learning_rate_raises_divergence_error_naming_epoch_and_batch(backend):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8))
    y = x @ rng.normal(size=(8, 2))
    model = fn.Sequential(fn.Dense(8, 16), fn.Tanh(), fn.Dense(16, 2), loss=fn.MSE(), backend=backend, seed=0)
    with pytest.raises(fn.DivergenceError) as err:
        model.fit(x, y, epochs=5, batch_size=16, optimizer=fn.SGD(lr=1e6), progress=False)
    message = str(err.value)
    match = re.search(r"epoch (\d+), batch (\d+)", message)
    assert match, message
    epoch, batch = map(int, match.groups())
    assert 1 <= epoch <= 5 and 1 <= batch <= 16
    assert "learning rate" in message
    assert np.isfinite(model.params).all()
    assert len(model.history) == epoch - 1  # the diverged epoch is not recorded
    # the model is still usable
    assert np.isfinite(model.predict(x)).all()


def test_divergence_reports_the_batch_where_the_loss_first_broke_the_rule():
    from fastnet.divergence import GROWTH

    x = np.ones((4, 1))
    y = np.ones((4, 1))
    model = fn.Sequential(fn.Dense(1, 1), loss=fn.MSE(), dtype="float64", seed=0)
    # each full step multiplies the error by (1 - lr·4) = -3999: |error| grows ~4000x per batch, from 1
    # (the first loss, 1, is the start) past GROWTH times the start in the square after a few batches of 1 sample
    model.set_weights({"layers.0.weight": np.array([[0.0]]), "layers.0.bias": np.array([0.0])})
    steps = 0
    error = 1.0
    while error * error <= GROWTH:
        error *= -3999
        steps += 1
    with pytest.raises(fn.DivergenceError) as err:
        model.fit(x, y, epochs=100, batch_size=1, shuffle=False, optimizer=fn.SGD(lr=1000.0), progress=False)
    epoch, batch = steps // 4 + 1, steps % 4 + 1
    assert f"epoch {epoch}, batch {batch}:" in str(err.value)
    assert np.isfinite(model.params).all()


def test_the_no_kernel_guard_does_catch_a_kernel_call(no_kernel_may_run):
    with pytest.raises(AssertionError, match="ran before the input was validated"):
        classifier().fit(GOOD_X, GOOD_Y, epochs=1, progress=False)
