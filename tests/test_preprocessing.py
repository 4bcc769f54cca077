"""Preprocessing travels with the model (issue 23, deliverable 3): scalers fitted on the training data,
column names and class labels, applied by fit, evaluate, predict and to_onnx, saved and loaded with it."""
import json
import pickle

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from sklearn.preprocessing import MinMaxScaler, StandardScaler

import fastnet as fn
from fastnet import checkpoint_schema, preprocessing
from fastnet.checkpoint_schema import DIGEST_KEY, tensor_digest
from fastnet.preprocessing import fit_scaler

RNG = np.random.default_rng(0)
X = RNG.normal(loc=[0.0, 50.0, -3.0, 1e4], scale=[1.0, 20.0, 0.01, 3e3], size=(120, 4))
LABELS = np.array(["cat", "dog", "emu"])
Y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 50)


def model(n_out=3, loss=fn.SoftmaxCrossEntropy, dtype="float32", backend="numpy"):
    return fn.Sequential(fn.Dense(4, 8), fn.Tanh(), fn.Dense(8, n_out), loss=loss(), dtype=dtype, seed=0,
                         backend=backend)


def carrying(kind="standard", classes=LABELS, dtype="float32"):
    """A model with a scaler fitted on X, column names and ``classes``, trained one epoch on raw X."""
    m = model(dtype=dtype)
    m.set_preprocessing(fit_scaler(kind, X, dtype), columns=["a", "b", "c", "d"], classes=classes)
    m.fit(X, Y, epochs=1, batch_size=16, progress=False)
    return m


# ---- the scalers --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, reference", [("standard", StandardScaler), ("minmax", MinMaxScaler)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scalers_match_scikit_learn(kind, reference, dtype):
    got = fit_scaler(kind, X, dtype).transform(X)
    assert got.dtype == np.dtype(dtype) and got.shape == X.shape
    np.testing.assert_allclose(got, reference().fit_transform(X), rtol=1e-6 if dtype == "float32" else 1e-12,
                               atol=1e-6 if dtype == "float32" else 1e-12)


def test_standard_scaler_is_numpys_formula_bit_for_bit():
    want = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)
    scaler = fit_scaler("standard", X)
    np.testing.assert_allclose(scaler.shift, X.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(scaler.scale, X.std(axis=0), rtol=1e-14)
    assert np.abs(scaler.transform(X).view(np.int32) - want.view(np.int32)).max() <= 1  # at most 1 ulp


def test_divide_and_none():
    pixels = RNG.integers(0, 256, size=(10, 4), dtype=np.uint8)
    assert np.array_equal(fit_scaler("divide", pixels).transform(pixels), pixels.astype(np.float32) / 255)
    assert np.array_equal(fit_scaler("divide", X, divisor=4).transform(X), (X / 4).astype(np.float32))
    assert np.array_equal(fit_scaler("none", X, "float64").transform(X), X)


def test_chunked_statistics_equal_whole_ones(monkeypatch):
    big = RNG.normal(3.0, 2.0, size=(1000, 4))
    whole = {kind: fit_scaler(kind, big) for kind in ("standard", "minmax")}
    whole_out = {kind: s.transform(big) for kind, s in whole.items()}
    monkeypatch.setattr(preprocessing, "CHUNK", 12)  # 3 rows at a time
    for kind, scaler in whole.items():
        chunked = fit_scaler(kind, big)
        np.testing.assert_allclose(chunked.shift, scaler.shift, rtol=1e-13)
        np.testing.assert_allclose(chunked.scale, scaler.scale, rtol=1e-13)
        assert np.array_equal(scaler.transform(big), whole_out[kind])  # rows are independent: the same bits


def test_a_constant_column_becomes_exactly_zero():
    x = np.column_stack([np.full(50, 0.1), RNG.normal(size=50), np.full(50, -7.0)])
    for kind in ("standard", "minmax"):
        out = fit_scaler(kind, x).transform(x)
        assert np.all(out[:, [0, 2]] == 0) and np.isfinite(out).all()


def test_statistics_do_not_copy_a_large_x_as_float64():
    import tracemalloc

    x = np.ones((200_000, 10), np.float32)  # 8 MB; a float64 copy would be 16 MB
    x[::2] = 3
    tracemalloc.start()
    try:
        fit_scaler("standard", x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes, f"{peak:,} bytes"  # a float64 copy is twice x


@pytest.mark.parametrize("call, error, match", [
    (lambda: fit_scaler("robust", X), fn.ConfigError, "standard, minmax, none, divide"),
    (lambda: fit_scaler("standard", X[:, 0]), fn.ShapeError, "2-D"),
    (lambda: fit_scaler("standard", np.array([["a", "b"]])), fn.DTypeError, "numbers"),
    (lambda: fit_scaler("standard", np.where(np.arange(4) == 2, np.nan, X)), fn.InputError, "row 0"),
    (lambda: fit_scaler("minmax", X[:0]), fn.InputError, "empty"),
    (lambda: fit_scaler("divide", X, divisor=0), fn.ConfigError, "divisor"),
    (lambda: fit_scaler("standard", X).transform(X[:, :3]), fn.ShapeError, "fitted on 4"),
    (lambda: fit_scaler("standard", X, dtype="float16"), fn.ConfigError, "float32 or float64"),
    (lambda: fit_scaler("standard", X, dtype="nonsense"), fn.ConfigError, "float32 or float64"),
])
def test_fit_scaler_refuses_bad_input_in_one_line(call, error, match):
    with pytest.raises(error, match=match) as refused:
        call()
    assert "\n" not in str(refused.value)


# ---- the model applies it -----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_fit_on_raw_x_equals_fit_on_prescaled_x(backend):
    scaler = fit_scaler("standard", X)
    raw = model(backend=backend)
    raw.set_preprocessing(scaler)
    plain = model(backend=backend)
    x_val = X[:30] * 1.5
    for m, x, xv in ((raw, X, x_val), (plain, scaler.transform(X), scaler.transform(x_val))):
        m.fit(x, Y, epochs=2, batch_size=16, validation_data=(xv, Y[:30]), progress=False)
    assert np.array_equal(raw.params, plain.params)
    assert raw.history.records == [{**r, "seconds": a["seconds"]} for r, a in
                                   zip(plain.history.records, raw.history.records)]
    assert np.array_equal(raw.predict(x_val), plain.predict(scaler.transform(x_val)))
    assert raw.evaluate(x_val, Y[:30]) == plain.evaluate(scaler.transform(x_val), Y[:30])
    assert raw.loss_and_grad(X[:8], Y[:8]) == plain.loss_and_grad(scaler.transform(X[:8]), Y[:8])
    assert np.array_equal(raw.grads, plain.grads)
    raw.train_step(X[:8], Y[:8])
    plain.train_step(scaler.transform(X[:8]), Y[:8])
    assert np.array_equal(raw.params, plain.params)


def test_a_divide_scaler_gives_the_same_model_for_pixels_their_float_copy_and_images():
    """The issue's trap: ``train.x.astype(np.float32)`` dropped the 1/255 Images carry. With the scaler
    in the model, every form of the same pixels trains the same weights."""
    pixels = RNG.integers(0, 256, size=(64, 4), dtype=np.uint8)
    forms = [pixels, pixels.astype(np.float32), fn.datasets.Images(pixels)]
    fitted = []
    for x in forms:
        m = model()
        m.set_preprocessing(fit_scaler("divide", pixels))
        m.fit(x, Y[:64], epochs=1, progress=False)
        fitted.append(m.params)
    reference = model()
    reference.fit(fn.datasets.Images(pixels), Y[:64], epochs=1, progress=False)  # today's path, no scaler
    for params in fitted:
        np.testing.assert_allclose(params, reference.params, rtol=1e-6, atol=1e-7)
        assert np.array_equal(params, fitted[0])


def test_predict_in_pieces_equals_predict_whole():
    m = carrying()
    assert np.array_equal(np.concatenate([m.predict(X[:7]), m.predict(X[7:])]), m.predict(X))


def test_predict_labels_gives_back_the_original_labels():
    m = carrying()
    p = m.predict(X)
    assert np.array_equal(m.predict_labels(X), LABELS[p.argmax(axis=1)])
    m.set_preprocessing(m.preprocessing)  # no classes: the indices
    assert np.array_equal(m.predict_labels(X), p.argmax(axis=1))
    binary = model(n_out=1, loss=fn.BinaryCrossEntropy)
    binary.set_preprocessing(classes=[10, 20])
    assert np.array_equal(binary.predict_labels(X), np.where(binary.predict(X)[:, 0] > 0.5, 20, 10))
    with pytest.raises(fn.ConfigError, match="use predict"):
        model(n_out=2, loss=fn.MSE).predict_labels(X)


@pytest.mark.parametrize("kwargs, match", [
    ({"scaler": fit_scaler("standard", X[:, :3])}, "fitted on 3 columns but the model takes 4"),
    ({"scaler": StandardScaler().fit(X)}, "fit_scaler"),
    ({"columns": ["a", "b"]}, "2 column names for 4 inputs"),
    ({"columns": "abcd"}, "list of column names"),
    ({"columns": 4}, "list of column names"),
    ({"classes": ["a", "b"]}, "2 classes for a model of 3"),
    ({"classes": ["a", "b", "a"]}, "same label twice"),
    ({"classes": [1.0, np.nan, 2.0]}, "NaN"),
    ({"classes": [[1, 2, 3]]}, "1-D"),
    ({"classes": ["a", "b", "c" * 1025]}, "at most 1,024 characters"),
    ({"columns": ["a", "b", "c", "d" * 1025]}, "longer than 1,024"),
])
def test_set_preprocessing_refuses_what_does_not_fit_the_model_in_one_line(kwargs, match):
    m = model()
    with pytest.raises(fn.ConfigError, match=match) as refused:
        m.set_preprocessing(**kwargs)
    assert "\n" not in str(refused.value)
    assert m.preprocessing is None and m.columns is None and m.classes is None


def test_a_model_without_an_input_width_takes_the_scalers():
    m = fn.Sequential(fn.Dense(8, activation="tanh"), fn.Dense(3), loss=fn.SoftmaxCrossEntropy(), seed=0,
                      backend="numpy")
    with pytest.raises(fn.ConfigError, match="the scaler was fitted on 4 columns but the model takes 3|"
                                             "3 column names for 4 inputs"):
        m.set_preprocessing(fit_scaler("standard", X), columns=["a", "b", "c"])
    assert m.n_in is None
    m.set_preprocessing(fit_scaler("standard", X), columns=["a", "b", "c", "d"])
    assert m.n_in == 4
    m.fit(X, Y, epochs=1, progress=False)
    assert m.predict(X).shape == (len(X), 3)


def test_a_model_with_a_scaler_refuses_bad_x_as_one_without_does():
    m = carrying()
    for bad in (X[0], X[:, :3], X[None]):
        with pytest.raises(fn.ShapeError) as refused:
            m.predict(bad)
        with pytest.raises(fn.ShapeError) as plain:
            model().predict(bad)
        assert str(refused.value) == str(plain.value)
    with pytest.raises(fn.InputError, match="row 3"):
        m.predict(np.where(np.arange(len(X))[:, None] == 3, np.nan, X))
    with pytest.raises(fn.DTypeError, match="numbers"):
        m.predict(X.astype(str))


def test_classes_are_for_classifiers():
    with pytest.raises(fn.ConfigError, match="classifiers"):
        model(n_out=2, loss=fn.MSE).set_preprocessing(classes=["a", "b"])


# ---- saved and loaded with the model ------------------------------------------------------------------

@pytest.mark.parametrize("classes", [LABELS, np.array([3, 1, 2]), np.array([0.5, 1.5, 2.5])],
                         ids=["strings", "integers", "floats"])
@pytest.mark.parametrize("kind", ["standard", "minmax", "divide", "none"])
def test_save_and_load_keep_scaler_columns_and_classes(tmp_path, kind, classes):
    m = carrying(kind, classes)
    m.save(tmp_path / "m.safetensors")
    for back in (fn.load(tmp_path / "m.safetensors"), pickle.loads(pickle.dumps(m))):
        assert back.preprocessing.config() == m.preprocessing.config()
        for name, tensor in m.preprocessing.to_tensors().items():
            assert np.array_equal(back.preprocessing.to_tensors()[name], tensor)
        assert back.columns == ["a", "b", "c", "d"]
        assert back.classes.dtype == classes.dtype and np.array_equal(back.classes, classes)
        assert np.array_equal(back.predict(X), m.predict(X))
        assert np.array_equal(back.predict_labels(X), m.predict_labels(X))


def test_a_model_without_preprocessing_is_saved_as_before_and_loads_with_none(tmp_path):
    plain = model()
    plain.save(tmp_path / "old.safetensors")
    with safe_open(str(tmp_path / "old.safetensors"), "np") as f:
        meta = json.loads(f.metadata()["fastnet"])
        names = set(f.keys())
    assert not {"preprocessing", "columns", "classes"} & set(meta)
    assert names == {"layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"}
    back = fn.load(tmp_path / "old.safetensors")
    assert back.preprocessing is None and back.columns is None and back.classes is None


def test_resume_keeps_the_preprocessing_and_ends_bit_for_bit(tmp_path):
    straight = carrying()
    straight.fit(X, Y, epochs=1, batch_size=16, progress=False)
    resumed = carrying()
    resumed.save(tmp_path / "m.safetensors")
    resumed = fn.load(tmp_path / "m.safetensors")
    resumed.fit(X, Y, epochs=1, batch_size=16, progress=False)
    assert np.array_equal(resumed.params, straight.params)
    assert list(resumed.classes) == list(LABELS) and resumed.preprocessing.kind == "standard"


def test_a_float64_copy_scales_in_float64():
    from fastnet.checkpoint import copy_model

    twin = copy_model(carrying(), dtype="float64")
    assert twin.preprocessing.dtype == np.float64 and twin.predict(X).dtype == np.float64
    assert fn.gradcheck(twin, X[:4], Y[:4], progress=False) < 1e-6


def crafted(tmp_path, change, digest=True):
    """A file fastnet wrote for ``carrying()``, then ``change(meta, tensors)``d, with a checksum that matches
    (unless not ``digest``): the checksum catches a file changed while read, not a crafted one."""
    good = tmp_path / "good.safetensors"
    carrying(classes=LABELS).save(good)
    with safe_open(str(good), "np") as f:
        metadata = f.metadata()
    tensors = load_file(good)
    meta = json.loads(metadata["fastnet"])
    change(meta, tensors)
    text = json.dumps(meta)
    metadata["fastnet"] = text
    if digest:
        metadata[DIGEST_KEY] = tensor_digest(text, tensors)
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, bad, metadata=metadata)
    return bad


def _set(key, value):
    return lambda meta, tensors: meta.__setitem__(key, value)


def _tensor(name, value):
    return lambda meta, tensors: tensors.__setitem__(name, value)


@pytest.mark.parametrize("change, match", [
    (_set("columns", ["a", "b"]), "columns lists 2 names but the model has 4 inputs"),
    (_set("columns", ["a", "b", "c", 4]), "columns must be strings"),
    (_set("classes", ["x"] * 1_000_000), "classes lists 1,000,000 names but the model has 3 classes"),
    (_set("classes", ["x", "y", "z" * 5000]), "at most 1,024 characters"),
    (_set("classes", ["x", "y", "x"]), "same label twice"),
    (_set("classes", {"dtype": "int64"}), "tensor classes is missing"),
    (_set("preprocessing", {"kind": "standard", "n_features": 5, "dtype": "float32"}),
     "scaler takes 5 columns but the model 4"),
    (_set("preprocessing", {"kind": "robust", "n_features": 4, "dtype": "float32"}), "preprocessing must be"),
    (_tensor("preprocessing.shift", np.zeros(5)), "preprocessing.shift is F64 of shape [5]"),
    (_tensor("preprocessing.scale", np.array([1.0, np.nan, 1.0, 1.0])), "scale holds NaN or Inf (column 1)"),
    (_tensor("preprocessing.scale", np.array([1.0, 0.0, 1.0, 1.0])), "scale must be > 0"),
    (_tensor("preprocessing.shift", np.array([np.inf, 0.0, 1.0, 1.0])), "shift holds NaN or Inf (column 0)"),
])
def test_crafted_files_are_refused_in_one_line(tmp_path, change, match):
    path = crafted(tmp_path, change)
    with pytest.raises(fn.CheckpointError) as refused:
        fn.load(path)
    message = str(refused.value)
    assert str(path) in message and match in message and "\n" not in message, message


def test_string_class_labels_are_bounded_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_schema, "MAX_LABEL_BYTES", 3 * 4 * 100)
    path = crafted(tmp_path, _set("classes", ["x", "y", "z" * 101]))
    with pytest.raises(fn.CheckpointError, match="3 class labels of up to 101 characters"):
        fn.load(path)


def test_classes_on_a_regressor_are_refused(tmp_path):
    def regressor(meta, tensors):
        meta["loss"] = "MSE"
    with pytest.raises(fn.CheckpointError, match="MSE model with 3 outputs is no classifier"):
        fn.load(crafted(tmp_path, regressor))


@pytest.mark.parametrize("change", [_set("classes", ["cat", "emu", "dog"]),
                                    _tensor("preprocessing.scale", np.full(4, 2.0))], ids=["classes", "scale"])
def test_the_checksum_covers_preprocessing(tmp_path, change):
    with pytest.raises(fn.CheckpointError, match="checksum"):
        fn.load(crafted(tmp_path, change, digest=False))


# ---- ONNX takes raw features --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["standard", "minmax", "divide", "none"])
def test_onnx_graph_on_raw_features_gives_what_predict_gives(tmp_path, kind, dtype):
    ort = pytest.importorskip("onnxruntime")
    m = carrying(kind, dtype=dtype)
    m.to_onnx(tmp_path / "m.onnx")
    x = RNG.normal(loc=[0.0, 50.0, -3.0, 1e4], scale=[2.0, 40.0, 0.02, 6e3], size=(50, 4)).astype(dtype)
    got = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    ref = m.predict(x)
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert got.dtype == ref.dtype
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.abs(ref).max())


# ---- data-parallel: two ranks apply the scaler as one process does ---------------------------------------

_TWO_RANKS = """
import numpy as np
from mpi4py import MPI
import fastnet as fn
from fastnet.preprocessing import fit_scaler
rng = np.random.default_rng(0)
x, y = rng.normal(100.0, 30.0, (50, 6)), rng.integers(0, 3, 50)
two, one = [fn.Sequential(fn.Dense(6, 5), fn.Tanh(), fn.Dense(5, 3), loss=fn.SoftmaxCrossEntropy(), dtype="float64",
                          backend="numpy", seed=0) for _ in range(2)]
for m in (two, one):
    m.set_preprocessing(fit_scaler("standard", x, "float64"), classes=["a", "b", "c"])
two.fit(x, y, epochs=2, batch_size=10, validation_data=(x[:20], y[:20]), comm=MPI.COMM_WORLD, progress=False)
one.fit(x, y, epochs=2, batch_size=10, validation_data=(x[:20], y[:20]), progress=False)
assert np.allclose(two.params, one.params, rtol=1e-9, atol=1e-12)
assert np.isclose(two.evaluate(x, y, comm=MPI.COMM_WORLD)["loss"], one.evaluate(x, y)["loss"], rtol=1e-9)
print("same")
"""


def test_two_ranks_apply_the_scaler_as_one_process():
    from test_mpi import same_on_two_ranks
    same_on_two_ranks(_TWO_RANKS)
