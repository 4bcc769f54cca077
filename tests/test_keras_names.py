"""The names Keras users type (issue 23, deliverable 5): each works as the fastnet form it stands for,
giving exactly the same weights, or is refused in one line that names the fastnet way."""
from __future__ import annotations

import numpy as np
import pytest

import fastnet as fn

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 5))
Y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)


def model(*layers, loss=None, **kw):
    kw = {"backend": "numpy", "seed": 3, **kw}
    return fn.Sequential(*layers, loss=loss or fn.SoftmaxCrossEntropy(), **kw)


def explicit():
    return model(fn.Dense(5, 8), fn.ReLU(), fn.Dense(8, 2))


def same_weights(a, b) -> bool:
    wa, wb = a.get_weights(), b.get_weights()
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


def one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    return text


# ---- string names ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, cls", [("adam", fn.Adam), ("Adam", fn.Adam), ("sgd", fn.SGD), ("SGD", fn.SGD)])
def test_an_optimizer_by_name_is_the_class_with_its_defaults(name, cls):
    a, b = explicit(), explicit()
    a.fit(X, Y, epochs=2, batch_size=8, optimizer=name, progress=False)
    b.fit(X, Y, epochs=2, batch_size=8, optimizer=cls(), progress=False)
    assert type(a.optimizer) is cls and a.optimizer.config() == b.optimizer.config()
    assert same_weights(a, b)


def test_an_unknown_optimizer_name_is_one_line_listing_the_known_ones():
    with pytest.raises(fn.ConfigError) as e:
        explicit().fit(X, Y, optimizer="rmsprop", progress=False)
    assert "'rmsprop'" in one_line(e) and "'sgd'" in str(e.value) and "'adam'" in str(e.value)


@pytest.mark.parametrize("name, cls", [
    ("sparse_categorical_crossentropy", fn.SoftmaxCrossEntropy), ("SparseCategoricalCrossentropy", fn.SoftmaxCrossEntropy),
    ("SoftmaxCrossEntropy", fn.SoftmaxCrossEntropy), ("binary_crossentropy", fn.BinaryCrossEntropy),
    ("mse", fn.MSE), ("mean_squared_error", fn.MSE), ("MeanSquaredError", fn.MSE)])
def test_a_loss_by_name(name, cls):
    n_out = 2 if cls is fn.SoftmaxCrossEntropy else 1
    assert type(model(fn.Dense(5, n_out), loss=name).loss) is cls


def test_a_named_loss_trains_as_the_class():
    a = model(fn.Dense(5, 1), loss="binary_crossentropy")
    b = model(fn.Dense(5, 1), loss=fn.BinaryCrossEntropy())
    for m in (a, b):
        m.fit(X, Y.reshape(-1, 1), epochs=1, batch_size=8, progress=False)
    assert same_weights(a, b)


@pytest.mark.parametrize("name, says", [("categorical_crossentropy", "sparse_categorical_crossentropy"),
                                        ("CategoricalCrossentropy", "y.argmax(axis=1)"),
                                        ("mae", "known names: sparse_categorical_crossentropy")])
def test_a_loss_name_fastnet_lacks_is_one_line_naming_the_fastnet_way(name, says):
    with pytest.raises(fn.ConfigError) as e:
        model(fn.Dense(5, 2), loss=name)
    assert says in one_line(e)


@pytest.mark.parametrize("name, layer", [("relu", fn.ReLU()), ("tanh", fn.Tanh()), ("sigmoid", fn.Sigmoid()),
                                         ("leaky_relu", fn.LeakyReLU(alpha=0.2)), ("ReLU", fn.ReLU())])
def test_dense_activation_is_the_explicit_layers_with_the_same_weights(name, layer):
    a = model(fn.Dense(5, 8, activation=name), fn.Dense(8, 2))
    b = model(fn.Dense(5, 8), layer, fn.Dense(8, 2))
    assert repr(a) == repr(b)  # so checkpoints and ONNX see the same layers
    for m in (a, b):
        m.fit(X, Y, epochs=1, batch_size=8, progress=False)
    assert same_weights(a, b)


def test_linear_activation_adds_no_layer():
    assert repr(model(fn.Dense(5, 2, activation="linear"))) == repr(model(fn.Dense(5, 2)))


@pytest.mark.parametrize("name, says", [("softmax", "SoftmaxCrossEntropy applies softmax itself"),
                                        ("gelu", "choose one of linear, relu, sigmoid, tanh, leaky_relu"),
                                        (3, "activation must be a name")])
def test_an_activation_fastnet_lacks_is_one_line(name, says):
    with pytest.raises(fn.ConfigError) as e:
        fn.Dense(8, activation=name)
    assert says in one_line(e)


def test_keras_sigmoid_before_binary_crossentropy_is_refused_as_it_would_apply_twice():
    with pytest.raises(fn.ConfigError) as e:
        model(fn.Dense(8, activation="relu"), fn.Dense(1, activation="sigmoid"), loss="binary_crossentropy")
    assert "leave activation='sigmoid' off the last Dense" in one_line(e)


def test_an_activation_as_the_second_positional_argument_is_one_line():
    with pytest.raises(fn.ConfigError) as e:
        fn.Dense(64, "relu")
    assert "activation='relu'" in one_line(e)


# ---- Dense(n_out): the input width from the data ---------------------------------------------

def lazy():
    return model(fn.Dense(8, activation="relu"), fn.Dense(2))


def test_dense_without_input_width_takes_it_from_fit_with_the_explicit_forms_weights():
    a, b = lazy(), explicit()
    for m in (a, b):
        m.fit(X, Y, epochs=2, batch_size=8, progress=False)
    assert a.n_in == 5 and repr(a) == repr(b) and same_weights(a, b)
    assert a.history.records[-1]["loss"] == b.history.records[-1]["loss"]


@pytest.mark.parametrize("first", [
    lambda m: m.predict(X), lambda m: m.evaluate(X, Y), lambda m: m.loss_and_grad(X[:4], Y[:4]),
    lambda m: m.train_step(X[:4], Y[:4]), lambda m: m.build(5)])
def test_dense_without_input_width_is_built_by_the_first_data_it_meets(first):
    a, b = lazy(), explicit()
    first(a)
    first(b)
    assert same_weights(a, b) and np.array_equal(a.predict(X), b.predict(X))


def test_gradcheck_builds_it_too():
    a, b = lazy(), explicit()
    assert fn.gradcheck(a, X[:4], Y[:4], progress=False) == fn.gradcheck(b, X[:4], Y[:4], progress=False)
    assert same_weights(a, b)


def test_keras_input_shape_gives_the_input_width():
    a = model(fn.Dense(8, activation="relu", input_shape=(5,)), fn.Dense(2))
    assert a.n_in == 5 and repr(a) == repr(explicit()) and same_weights(a, explicit())


@pytest.mark.parametrize("make, says", [
    (lambda: fn.Dense(8, input_shape=(28, 28)), "Dense takes input_shape=(n_in,), one sample's flat width"),
    (lambda: fn.Dense(5, 8, input_shape=(5,)), "give Dense's input width once")])
def test_a_bad_input_shape_is_one_line(make, says):
    with pytest.raises(fn.ConfigError) as e:
        make()
    assert says in one_line(e)


def test_a_model_built_from_the_data_saves_and_loads_as_the_explicit_form(tmp_path):
    a = lazy()
    a.fit(X, Y, epochs=1, batch_size=8, progress=False)
    a.save(tmp_path / "m.safetensors")
    back = fn.load(tmp_path / "m.safetensors")
    assert repr(back) == repr(explicit()) and same_weights(a, back)


@pytest.mark.parametrize("use, what", [(lambda m: m.summary(), "summary()"),
                                       (lambda m: m.save("never.safetensors"), "save()"),
                                       (lambda m: m.get_weights(), "get_weights()"),
                                       (lambda m: m.n_params, "n_params")])
def test_a_model_without_input_width_says_so_in_one_line(use, what, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(fn.ConfigError) as e:
        use(lazy())
    assert one_line(e).startswith(f"{what}: the model has no input width yet; fit it")
    assert "Dense(n_in, n_out)" in str(e.value) and not list(tmp_path.iterdir())


def test_build_refuses_another_width_and_data_of_another_width():
    m = lazy()
    m.build(5)
    m.build(5)  # the same width again is fine
    with pytest.raises(fn.ConfigError, match=r"build\(6\): the model takes 5 inputs already"):
        m.build(6)
    with pytest.raises(fn.ShapeError, match="x has 6 features per sample but the first layer expects 5"):
        m.predict(np.zeros((2, 6)))


def test_dense_without_input_width_refuses_data_that_is_not_2d_in_one_line():
    with pytest.raises(fn.ShapeError) as e:
        lazy().fit(X[:, 0], Y, progress=False)
    assert "takes its input width from it" in one_line(e)


# ---- validation_split ---------------------------------------------------------------------------

def test_validation_split_holds_out_the_last_fraction_before_shuffling():
    a, b = explicit(), explicit()
    w = RNG.uniform(0.5, 2, size=len(X))
    a.fit(X, Y, epochs=2, batch_size=8, validation_split=0.25, sample_weight=w, progress=False)
    b.fit(X[:30], Y[:30], epochs=2, batch_size=8, sample_weight=w[:30], progress=False)
    assert same_weights(a, b)
    assert a.history.records[-1]["val_loss"] == b.evaluate(X[30:], Y[30:], sample_weight=w[30:])["loss"]
    assert a.history.records[-1]["val_accuracy"] == b.evaluate(X[30:], Y[30:])["accuracy"]


@pytest.mark.parametrize("kw, says", [
    ({"validation_split": 0.2, "validation_data": (X, Y)}, "pass validation_data or validation_split, not both"),
    ({"validation_split": 1.0}, "validation_split must be a number in [0, 1), got 1.0"),
    ({"validation_split": -0.1}, "validation_split must be a number in [0, 1)"),
    ({"validation_split": "0.1"}, "validation_split must be a number in [0, 1)"),
    ({"validation_split": 1e-20}, "leaves 40 to train on and 0 to validate"),
    ({"validation_split": 0.99}, "leaves 0 to train on and 40 to validate")])
def test_a_bad_validation_split_is_one_line(kw, says):
    with pytest.raises(fn.ConfigError) as e:
        explicit().fit(X, Y, progress=False, **kw)
    assert says in one_line(e)


# ---- verbose ----------------------------------------------------------------------------------

def test_verbose_0_is_silent_and_2_one_line_per_epoch(capsys):
    a, b = explicit(), explicit()
    a.fit(X, Y, epochs=2, batch_size=8, verbose=0)
    assert capsys.readouterr().err == ""
    b.fit(X, Y, epochs=2, batch_size=8, verbose=2)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and same_weights(a, b)


def test_evaluate_and_predict_take_verbose(capsys):
    m = explicit()
    scores = m.evaluate(X, Y, verbose=1)
    assert capsys.readouterr().err.strip() == f"loss {scores['loss']:.4f}  accuracy {scores['accuracy']:.2%}"
    m.evaluate(X, Y, verbose=0)
    m.predict(X, verbose=2)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("call, says", [
    (lambda m: m.fit(X, Y, progress=False, verbose=1), "progress=False and verbose=1 disagree"),
    (lambda m: m.fit(X, Y, progress=True, verbose=0), "progress=True and verbose=0 disagree"),
    (lambda m: m.fit(X, Y, verbose=3), "verbose must be 0 (silent), 1 (progress bars"),
    (lambda m: m.evaluate(X, Y, verbose="loud"), "verbose must be 0"),
    (lambda m: m.predict(X, verbose=-1), "verbose must be 0")])
def test_a_bad_or_contradicting_verbose_is_one_line(call, says):
    with pytest.raises(fn.ConfigError) as e:
        call(explicit())
    assert says in one_line(e)


# ---- dtype as a NumPy type -------------------------------------------------------------------

@pytest.mark.parametrize("dtype, name", [(np.float64, "float64"), (np.float32, "float32")])
def test_dtype_as_a_numpy_type(dtype, name):
    a = model(fn.Dense(5, 2), dtype=dtype)
    b = model(fn.Dense(5, 2), dtype=name)
    assert a.dtype == np.dtype(name) and a.params.dtype == np.dtype(name)
    assert repr(a) == repr(b) and same_weights(a, b)


@pytest.mark.parametrize("dtype", [np.int32, np.float16, None, "double-ish", 3])
def test_another_dtype_is_one_line_naming_the_ways_to_give_one(dtype):
    with pytest.raises(fn.ConfigError) as e:
        model(fn.Dense(5, 2), dtype=dtype)
    assert "choose float32 or float64 (as \"float32\", np.float32" in one_line(e)


# ---- data-parallel: the same habits on two ranks ------------------------------------------------

_TWO_RANKS = """
import numpy as np
from mpi4py import MPI
import fastnet as fn
rng = np.random.default_rng(0)
x, y = rng.standard_normal((50, 6)), rng.integers(0, 3, 50)
two, one = [fn.Sequential(fn.Dense(5, activation="tanh"), fn.Dense(3), loss="sparse_categorical_crossentropy",
                          dtype=np.float64, backend="numpy", seed=0) for _ in range(2)]
two.fit(x, y, epochs=2, batch_size=10, optimizer="adam", validation_split=0.2, comm=MPI.COMM_WORLD, verbose=0)
one.fit(x, y, epochs=2, batch_size=10, optimizer="adam", validation_split=0.2, verbose=0)
assert two.n_in == 6 and np.allclose(two.params, one.params, rtol=1e-9, atol=1e-12)
assert np.allclose(two.history["val_loss"], one.history["val_loss"], rtol=1e-9)
print("same")
"""


def test_two_ranks_take_the_keras_names_as_one_process():
    from test_mpi import same_on_two_ranks
    same_on_two_ranks(_TWO_RANKS)
