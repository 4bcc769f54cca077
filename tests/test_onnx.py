"""ONNX export: the exported graph, run in onnxruntime on unseen data, gives what ``model.predict`` gives."""
import math
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import fastnet as fn
from fastnet import onnx_export
from test_cli import assert_one_line_error

ACTIVATIONS = {
    "sigmoid": fn.Sigmoid,
    "sigmoid(a=1.7,b=0.6)": lambda: fn.Sigmoid(a=1.7, b=0.6),
    "tanh": fn.Tanh,
    "relu": fn.ReLU,
    "leaky_relu(alpha=0.2)": lambda: fn.LeakyReLU(alpha=0.2),  # 0.2 is no float32: float64 must not round it
}
LOSSES = {"softmax_ce": fn.SoftmaxCrossEntropy, "bce": fn.BinaryCrossEntropy, "mse": fn.MSE}
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}  # relative, as issue 10 asks
N_IN, N_OUT = 8, 3


def targets(loss, x):
    """Targets for ``loss`` that depend on ``x``, so training has something to learn."""
    score = np.tanh(x[:, :N_OUT] + x[:, N_OUT:2 * N_OUT])
    if loss is fn.SoftmaxCrossEntropy:
        return score.argmax(axis=1)
    return (score > 0).astype(float) if loss is fn.BinaryCrossEntropy else score


def trained(activation, loss, dtype, dropout=0.0):
    """A small two-hidden-layer model, fitted briefly so its weights are not the initial draw."""
    layers = [fn.Dense(N_IN, 16), activation(), fn.Dense(16, 12), activation()]
    if dropout:
        layers.insert(2, fn.Dropout(dropout))
    model = fn.Sequential(*layers, fn.Dense(12, N_OUT), loss=loss(), dtype=dtype, seed=0)
    x = np.random.default_rng(0).normal(size=(256, N_IN))
    model.fit(x, targets(loss, x), epochs=2, batch_size=32, optimizer=fn.SGD(lr=0.05), progress=False)
    return model


def unseen(dtype, n=300):
    """Data drawn apart from the training set, wider, so the activations saturate too."""
    return np.random.default_rng(1).normal(scale=3.0, size=(n, N_IN)).astype(dtype)


def run_onnx(path_or_bytes, x):
    session = ort.InferenceSession(path_or_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def assert_close(got, ref, dtype):
    """Within TOLERANCE relative to the size of the outputs: an output that cancels to near 0 (a raw MSE
    output, say) cannot keep its own relative error when the sums run in another order."""
    assert got.dtype == ref.dtype == np.dtype(dtype) and got.shape == ref.shape
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.abs(ref).max())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", LOSSES.values(), ids=LOSSES.keys())
@pytest.mark.parametrize("activation", ACTIVATIONS.values(), ids=ACTIVATIONS.keys())
def test_onnx_graph_gives_what_predict_gives(tmp_path, activation, loss, dtype):
    model = trained(activation, loss, dtype)
    model.to_onnx(tmp_path / "model.onnx")
    x = unseen(dtype)
    assert_close(run_onnx(str(tmp_path / "model.onnx"), x), model.predict(x), dtype)


def test_dropout_is_left_out_of_the_graph(tmp_path):
    model = trained(fn.ReLU, fn.SoftmaxCrossEntropy, "float32", dropout=0.5)
    model.to_onnx(tmp_path / "model.onnx")
    graph = onnx.load(tmp_path / "model.onnx").graph
    assert [node.op_type for node in graph.node] == ["Gemm", "Relu", "Gemm", "Relu", "Gemm", "Softmax"]
    x = unseen("float32")
    assert_close(run_onnx(str(tmp_path / "model.onnx"), x), model.predict(x), "float32")


def test_graph_has_opset_17_a_dynamic_batch_and_the_models_dtype(tmp_path):
    model = trained(fn.Tanh, fn.MSE, "float64")
    model.to_onnx(tmp_path / "model.onnx")
    proto = onnx.load(tmp_path / "model.onnx")
    onnx.checker.check_model(proto, full_check=True)
    assert [(op.domain, op.version) for op in proto.opset_import] == [("", 17)]
    for value, width in ((proto.graph.input[0], N_IN), (proto.graph.output[0], N_OUT)):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
        assert [(d.dim_param, d.dim_value) for d in value.type.tensor_type.shape.dim] == [("batch", 0), ("", width)]
    for n in (1, 7):  # any batch size runs
        x = unseen("float64", n)
        assert_close(run_onnx(str(tmp_path / "model.onnx"), x), model.predict(x), "float64")


def test_images_are_fed_to_the_graph_already_scaled(tmp_path):
    """A model fitted on uint8 images (which carry their 1/255 scale) takes pixels / 255 in ONNX."""
    rng = np.random.default_rng(2)
    pixels = fn.datasets.Images(rng.integers(0, 256, size=(64, N_IN), dtype=np.uint8))
    model = fn.Sequential(fn.Dense(N_IN, 6), fn.Sigmoid(), fn.Dense(6, N_OUT), loss=fn.SoftmaxCrossEntropy(), seed=0)
    model.fit(pixels, rng.integers(0, N_OUT, 64), epochs=1, progress=False)
    model.to_onnx(tmp_path / "model.onnx")
    test = fn.datasets.Images(rng.integers(0, 256, size=(50, N_IN), dtype=np.uint8))
    got = run_onnx(str(tmp_path / "model.onnx"), (test / 255).astype(np.float32))
    assert_close(got, model.predict(test), "float32")


def test_to_onnx_without_the_onnx_package_says_what_to_install(tmp_path, monkeypatch):
    model = trained(fn.ReLU, fn.MSE, "float32")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(fn.ConfigError, match=r"pip install onnx onnxruntime"):
        model.to_onnx(tmp_path / "model.onnx")
    assert not list(tmp_path.iterdir())


def test_the_core_never_imports_onnx():
    code = ("import sys, fastnet, fastnet.cli; "
            "assert not {'onnx', 'onnxruntime', 'fastnet.onnx_export'} & set(sys.modules), sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# ---- the command line: fastnet export MODEL OUT ------------------------------------------------

def fastnet(*args, setup="pass"):
    """``python -m fastnet ARGS``, after ``setup`` (code run first in the same process)."""
    code = f"import sys; {setup}; from fastnet.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "model.safetensors"
    trained(fn.LeakyReLU, fn.BinaryCrossEntropy, "float32", dropout=0.2).save(path)
    return path


def test_export_command_round_trip(saved, tmp_path):
    out = tmp_path / "sub" / "model.onnx"
    result = subprocess.run([sys.executable, "-m", "fastnet", "export", str(saved), str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "opset 17" in result.stdout and str(out) in result.stdout
    x = unseen("float32")
    assert_close(run_onnx(str(out), x), fn.load(saved).predict(x), "float32")


def test_export_command_without_onnx_says_what_to_install(saved, tmp_path):
    result = fastnet("export", saved, tmp_path / "model.onnx", setup="sys.modules['onnx'] = None")
    assert_one_line_error(result, "fastnet export", "pip install onnx onnxruntime")
    assert not (tmp_path / "model.onnx").exists()


def test_export_command_refuses_a_missing_model_and_a_folder_as_output(saved, tmp_path):
    assert_one_line_error(fastnet("export", tmp_path / "none.safetensors", tmp_path / "m.onnx"), "none.safetensors")
    assert_one_line_error(fastnet("export", saved, tmp_path), "cannot write there", "folder")


def test_a_model_too_large_for_one_onnx_file_is_refused(tmp_path, monkeypatch):
    from fastnet import onnx_export

    model = trained(fn.ReLU, fn.MSE, "float32")
    monkeypatch.setattr(onnx_export, "MAX_BYTES", model.params.nbytes - 1)  # instead of building a 2 GB model
    with pytest.raises(fn.ConfigError, match="2 GB"):
        model.to_onnx(tmp_path / "model.onnx")
    assert not list(tmp_path.iterdir())


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")  # 5 epochs: a small net, not a converged one
@pytest.mark.parametrize("estimator, y", [
    ("MLPClassifier", lambda x: np.where(x[:, 0] > 0, "yes", "no")),  # binary: one logistic output, two columns
    ("MLPClassifier", lambda x: np.digitize(x[:, 0], [-0.5, 0.5])),  # three classes: softmax
    ("MLPRegressor", lambda x: x[:, :2] @ np.array([1.0, -2.0])),
])
def test_estimators_export_what_predict_proba_or_predict_gives(tmp_path, estimator, y):
    from fastnet import sklearn as fsk

    x = np.random.default_rng(0).normal(size=(200, 12)).astype(np.float32)
    model = getattr(fsk, estimator)(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(x, y(x))
    model.to_onnx(tmp_path / "m.onnx")
    # the regressor's predict widens its float32 network's outputs to float64, exactly, as scikit-learn's do
    ref = model.predict_proba(x) if estimator == "MLPClassifier" else model.predict(x).astype(np.float32)[:, None]
    assert_close(run_onnx(str(tmp_path / "m.onnx"), x), ref, "float32")


# ---- convolutional models: Conv, MaxPool, AveragePool, Flatten, the flat input reshaped in the graph --------

CONV_NETS = {  # name: (one sample's image, the layers)
    "lenet": ((1, 28, 28), lambda dtype: [
        fn.Conv2D(1, 6, 5, padding=2, input_shape=(1, 28, 28)), fn.ReLU(), fn.MaxPool2D(2),
        fn.Conv2D(6, 16, 5), fn.ReLU(), fn.MaxPool2D(2), fn.Flatten(),
        fn.Dense(400, 120), fn.ReLU(), fn.Dense(120, 84), fn.ReLU(), fn.Dense(84, N_OUT)]),
    # stride 2 with padding, overlapping max windows (3, stride 2), average pooling, leaky ReLU and dropout
    "strided": ((3, 13, 11), lambda dtype: [
        fn.Conv2D(3, 5, 3, stride=2, padding=1, input_shape=(3, 13, 11), activation="leaky_relu"),
        fn.MaxPool2D(3, stride=2), fn.Dropout(0.3), fn.Conv2D(5, 4, 2, padding=1), fn.Tanh(),
        fn.AvgPool2D(2, stride=1), fn.Flatten(), fn.Dense(4 * 3 * 2, N_OUT)]),
}


def trained_conv(name, dtype, scaler=None):
    """A conv net of CONV_NETS fitted briefly on random images (n, C, H, W), raw when ``scaler`` is given."""
    shape, layers = CONV_NETS[name]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, *shape))
    model = fn.Sequential(*layers(dtype), loss=fn.SoftmaxCrossEntropy(), dtype=dtype, seed=0)
    if scaler:
        x = 40 + 9 * x  # raw data far from the scale the model trains at
        model.set_preprocessing(fn.preprocessing.fit_scaler(scaler, x.reshape(len(x), -1), dtype))
    y = (x[:, 0, 0, :4].sum(axis=1) > x[:, 0, 0, :4].sum(axis=1).mean()).astype(int) + (x[:, 0, 1, 1] > 0)
    model.fit(x, y, epochs=2, batch_size=16, optimizer=fn.SGD(lr=0.05, momentum=0.9), progress=False)
    return model, shape


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", CONV_NETS)
def test_a_conv_graph_gives_what_predict_gives_on_flat_rows(tmp_path, name, dtype):
    model, shape = trained_conv(name, dtype)
    model.to_onnx(tmp_path / "model.onnx")
    images = np.random.default_rng(1).normal(scale=2.0, size=(50, *shape)).astype(dtype)
    flat = images.reshape(len(images), -1)  # the graph takes what predict takes: (batch, C·H·W) rows
    got = run_onnx(str(tmp_path / "model.onnx"), flat)
    assert_close(got, model.predict(images), dtype)
    assert_close(got, model.predict(flat), dtype)


def test_a_conv_graph_reshapes_its_flat_input_and_uses_onnx_s_own_operators(tmp_path):
    model, shape = trained_conv("strided", "float32")
    model.to_onnx(tmp_path / "model.onnx")
    graph = onnx.load(tmp_path / "model.onnx").graph
    assert [node.op_type for node in graph.node] == ["Reshape", "Conv", "LeakyRelu", "MaxPool", "Conv", "Tanh",
                                                     "AveragePool", "Flatten", "Gemm", "Softmax"]
    conv, pool = graph.node[1], graph.node[3]
    attrs = {a.name: list(a.ints) for a in conv.attribute}
    assert attrs == {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]}
    assert {a.name: list(a.ints) for a in pool.attribute} == {"kernel_shape": [3, 3], "strides": [2, 2]}
    dims = [(d.dim_param, d.dim_value) for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == [("batch", 0), ("", math.prod(shape))]
    weight = next(t for t in graph.initializer if t.name == "layers.0.weight")
    assert list(weight.dims) == [5, 3, 3, 3]  # (O, C, K, K), as PyTorch and ONNX's Conv lay it out


def test_a_float64_conv_graph_spells_out_what_onnxruntime_runs_in_float32_only():
    """onnxruntime has no float64 Conv or AveragePool: the float64 graph computes them from other operators
    (and runs: test_a_conv_graph_gives_what_predict_gives_on_flat_rows)."""
    model, _ = trained_conv("strided", "float64")
    ops = {node.op_type for node in onnx_export.to_model_proto(model).graph.node}
    assert not {"Conv", "AveragePool"} & ops and {"Reshape", "MaxPool", "Slice", "MatMul", "Sum"} <= ops


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_conv_graph_scales_raw_rows_before_reshaping_them(tmp_path, dtype):
    model, shape = trained_conv("strided", dtype, scaler="standard")
    model.to_onnx(tmp_path / "model.onnx")
    ops = [node.op_type for node in onnx.load(tmp_path / "model.onnx").graph.node]
    assert ops.index("Sub") < ops.index("Div") < ops.index("Reshape") < ops.index("MaxPool")  # scaled, then images
    raw = (40 + 9 * np.random.default_rng(1).normal(size=(30, math.prod(shape)))).astype(dtype)
    assert_close(run_onnx(str(tmp_path / "model.onnx"), raw), model.predict(raw), dtype)


def test_export_command_exports_a_saved_conv_model(tmp_path):
    model, shape = trained_conv("lenet", "float32")
    model.save(tmp_path / "lenet.safetensors")
    result = subprocess.run([sys.executable, "-m", "fastnet", "export", str(tmp_path / "lenet.safetensors"),
                             str(tmp_path / "lenet.onnx")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    x = np.random.default_rng(1).random((20, math.prod(shape)), dtype=np.float32)
    assert_close(run_onnx(str(tmp_path / "lenet.onnx"), x), model.predict(x), "float32")
