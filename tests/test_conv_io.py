"""Convolutional models in files: save/load, exact resume and pickling, and the file checks for their layers.

The hostile files are written by the fixtures below (``craft``), so this module also reproduces them.
"""
import copy
import json
import math
import pickle

import numpy as np
import pytest
from safetensors.numpy import save as st_save

import fastnet as fn
from fastnet import checkpoint
from fastnet.checkpoint_schema import DIGEST_KEY, tensor_digest
from fastnet.kernels.pool import MAX_WINDOW
from test_hostile_files import refused, run_evaluate
from test_resume import CtrlC, ctrl_c_raises, without_seconds  # noqa: F401  (ctrl_c_raises: an autouse fixture)
from fastnet import model as fn_model  # fn_model.TrainingInterrupted: Ctrl-C between batches

SHAPE = (2, 9, 9)


def data(n, seed=0):
    """Images (n, 2, 9, 9) whose class shows in them, so training moves the weights."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 1, (n, *SHAPE)) + y[:, None, None, None] * np.linspace(-1, 1, 9)[None, None, None, :]
    return x.astype(np.float32), y


X, Y = data(70)  # in batches of 16: 5 batches, the last one ragged
FIT = dict(batch_size=16, validation_data=data(20, seed=1), progress=False)


def net(backend="numba", dtype="float32", input_shape=SHAPE):
    """Every new layer, with dropout between images and L2 on both kinds of weighted layer:
    (2, 9, 9) -> conv 3x3 same -> (4, 9, 9) -> max 3/2 -> (4, 4, 4) -> conv 2x2 stride 2 pad 1 -> (5, 3, 3)
    -> avg 2/1 -> (5, 2, 2) -> flatten 20 -> 3."""
    return fn.Sequential(
        fn.Conv2D(2, 4, 3, padding="same", l2=1e-3, input_shape=input_shape), fn.ReLU(), fn.Dropout(0.2),
        fn.MaxPool2D(3, stride=2), fn.Conv2D(4, 5, 2, stride=2, padding=1, init="he", activation="tanh"),
        fn.AvgPool2D(2, stride=1), fn.Flatten(), fn.Dense(20, 3, l1=1e-4),
        loss=fn.SoftmaxCrossEntropy(), backend=backend, dtype=dtype, seed=5)


def adam():
    return fn.Adam(lr=0.01, schedule=fn.CosineLR(3))


@pytest.fixture(scope="module", params=["numba", "numpy"])
def straight(request):
    model = net(request.param)
    model.fit(X, Y, epochs=3, optimizer=adam(), **FIT)
    return model


def assert_same_run(model, straight):
    assert np.array_equal(model.params, straight.params)
    assert model.optimizer.steps == straight.optimizer.steps
    for name, state in straight.optimizer.state.items():
        assert np.array_equal(model.optimizer.state[name], state)
    assert without_seconds(model.history) == without_seconds(straight.history)


# ---- save, load, resume, pickle ------------------------------------------------------

@pytest.mark.parametrize("input_shape", [SHAPE, None], ids=["input_shape", "from-4-D-data"])
def test_a_conv_model_saved_and_loaded_predicts_the_same(tmp_path, input_shape):
    model = net("numpy", input_shape=input_shape)
    model.fit(X, Y, epochs=1, optimizer=adam(), **FIT)
    model.save(tmp_path / "m.safetensors")
    same = fn.load(tmp_path / "m.safetensors")
    assert same.input_shape == SHAPE and same.layers[0].weight.shape == (4, 2, 3, 3)
    assert [repr(layer) for layer in same.layers] == [repr(layer) for layer in model.layers]
    assert all(np.array_equal(a, b) for a, b in zip(same.get_weights().values(), model.get_weights().values()))
    assert np.array_equal(same.predict(X), model.predict(X))
    assert np.array_equal(same.predict(X.reshape(len(X), -1)), model.predict(X))  # flat rows too


@pytest.mark.parametrize("epoch, batch", [(0, 1), (1, 3), (1, 4), (2, 0)],
                         ids=["mid-epoch-1", "before-the-ragged-batch", "epoch-end", "first-batch-of-3"])
def test_ctrl_c_then_save_load_and_fit_ends_bit_for_bit_like_the_uninterrupted_run(tmp_path, straight, epoch, batch):
    model = net(straight.backend)
    with pytest.raises(fn_model.TrainingInterrupted):
        model.fit(X, Y, epochs=3, optimizer=adam(), callbacks=[CtrlC(epoch, batch)], **FIT)
    assert (model.partial_epoch is None) == (batch == 4)
    model.save(tmp_path / "m.safetensors")
    resumed = fn.load(tmp_path / "m.safetensors")
    resumed.fit(X, Y, epochs=3 - len(resumed.history), **FIT)
    assert_same_run(resumed, straight)


def test_a_model_built_from_4_d_data_resumes_between_epochs(tmp_path, straight):
    model = net(straight.backend, input_shape=None)  # its first Conv2D takes (2, 9, 9) from X
    model.fit(X, Y, epochs=1, optimizer=adam(), **FIT)
    model.save(tmp_path / "m.safetensors")
    resumed = fn.load(tmp_path / "m.safetensors")
    resumed.fit(X, Y, epochs=2, **FIT)
    assert_same_run(resumed, straight)


def test_a_pickled_conv_model_trains_on_bit_identically(straight):
    model = net(straight.backend, input_shape=None)
    model.fit(X, Y, epochs=2, optimizer=adam(), **FIT)
    same = pickle.loads(pickle.dumps(model))
    assert same.input_shape == SHAPE and np.array_equal(same.predict(X), model.predict(X))
    same.fit(X, Y, epochs=1, **FIT)
    assert_same_run(same, straight)


def test_an_mlp_on_images_keeps_its_image_input(tmp_path):
    """Flatten first: the Dense's width alone would not say that the model takes (2, 9, 9) images."""
    model = fn.Sequential(fn.Flatten(), fn.Dense(3), loss=fn.SoftmaxCrossEntropy(), backend="numpy", seed=0)
    model.fit(X, Y, epochs=1, progress=False)
    model.save(tmp_path / "m.safetensors")
    same = fn.load(tmp_path / "m.safetensors")
    assert same.input_shape == SHAPE and np.array_equal(same.predict(X), model.predict(X))


def test_a_conv_model_with_a_scaler_saves_and_loads_it(tmp_path):
    """The scaler takes the flat rows (C·H·W columns) before the images are formed, as in predict."""
    raw = 100 + 30 * X
    model = net("numpy")
    model.set_preprocessing(fn.preprocessing.fit_scaler("standard", raw.reshape(len(raw), -1)))
    model.fit(raw, Y, epochs=1, progress=False)
    model.save(tmp_path / "m.safetensors")
    same = fn.load(tmp_path / "m.safetensors")
    assert same.preprocessing.n_features == math.prod(SHAPE)
    assert np.array_equal(same.predict(raw), model.predict(raw))


def test_a_dense_file_written_before_input_shape_was_saved_loads_unchanged(tmp_path):
    model = fn.Sequential(fn.Dense(6, 4), fn.ReLU(), fn.Dense(4, 3), loss=fn.SoftmaxCrossEntropy(), seed=0)
    x = np.random.default_rng(0).normal(size=(40, 6))
    model.fit(x, Y[:40], epochs=1, optimizer=fn.SGD(0.1, momentum=0.9), progress=False)
    meta, tensors = checkpoint.describe(model)
    assert meta.pop("input_shape") == [6]  # what files written before convolutional layers lack
    text = json.dumps(meta)
    path = tmp_path / "old.safetensors"
    path.write_bytes(st_save(tensors, metadata={"fastnet": text, DIGEST_KEY: tensor_digest(text, tensors)}))
    old = fn.load(path)
    assert old.input_shape == (6,) and np.array_equal(old.params, model.params)
    assert np.array_equal(old.optimizer.state["velocity"], model.optimizer.state["velocity"])


# ---- hostile files ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def good():
    """The metadata and tensors of the model of ``net``, trained a little with Adam (numpy backend)."""
    model = net("numpy")
    model.fit(X, Y, epochs=1, optimizer=adam(), progress=False)
    return checkpoint.describe(model)


def config(i, **changes):
    """A change to layer ``i``'s config."""
    return lambda m, t: m["layers"][i]["config"].update(changes)


def with_tensors(i, weight_shape):
    """Layer ``i``'s weight and bias replaced by zeros of ``weight_shape`` (and the Adam state resized),
    so that only the geometry, not a tensor that differs, can be wrong."""
    def change(m, t):
        old = t[f"layers.{i}.weight"].size + t[f"layers.{i}.bias"].size
        t[f"layers.{i}.weight"] = np.zeros(weight_shape, np.float32)
        t[f"layers.{i}.bias"] = np.zeros(weight_shape[0], np.float32)
        n = t["optimizer.m"].size - old + math.prod(weight_shape) + weight_shape[0]
        t.update({name: np.zeros(n, np.float32) for name in ("optimizer.m", "optimizer.v")})
    return change


def both(*changes):
    def change(m, t):
        for one in changes:
            one(m, t)
    return change


def huge_images(shape):
    """A model of images of ``shape`` whose tensors are tiny: one 3x3 window of each image, strided past
    the rest, then Dense(4, 3); the tensors are those it declares, so only its buffers can be refused."""
    def change(m, t):
        conv, dense = m["layers"][0]["config"], m["layers"][8]["config"]
        m.update(input_shape=shape, layers=[
            {"kind": "Conv2D", "config": {**conv, "in_channels": shape[0], "stride": 10**6, "padding": 0,
                                          "input_shape": shape}},
            {"kind": "Flatten", "config": {}}, {"kind": "Dense", "config": {**dense, "n_in": 4}}])
        n = 4 * shape[0] * 9 + 4 + 3 * 4 + 3
        t.clear()
        t.update({"layers.0.weight": np.zeros((4, shape[0], 3, 3), np.float32), "layers.0.bias": np.zeros(4, np.float32),
                  "layers.2.weight": np.zeros((3, 4), np.float32), "layers.2.bias": np.zeros(3, np.float32),
                  "optimizer.m": np.zeros(n, np.float32), "optimizer.v": np.zeros(n, np.float32)})
    return change


GIGAPIXEL = [1, 31_623, 31_623]  # 10^9 pixels: 3.7 GiB a sample in float32
# name: (change(meta, tensors) -> None or the metadata's text, what the message says)
CRAFTED = {
    "Conv2D 10^6 x 10^6 channels": (
        both(config(0, in_channels=10**6, out_channels=10**6, input_shape=[10**6, 9, 9]),
             config(4, in_channels=10**6), lambda m, t: m.update(input_shape=[10**6, 9, 9])),
        "tensor layers.0.weight is F32 of shape [4, 2, 3, 3], but the model's architecture needs F32 of shape "
        "[1000000, 1000000, 3, 3]"),
    "out_channels 2^40": (both(config(0, out_channels=2**40), config(4, in_channels=2**40)),
                          "needs F32 of shape [1099511627776, 2, 3, 3]"),
    "kernel bigger than its image": (both(config(0, kernel_size=11, padding=0), with_tensors(0, (4, 2, 11, 11))),
                                     "a 11x11 kernel does not fit images of shape (2, 9, 9)"),
    "pool window bigger than its image": (config(6, size=4), "a 4x4 window does not fit images of shape (5, 3, 3)"),
    "pool window of 16": (config(3, size=16), f"windows are at most {MAX_WINDOW}x{MAX_WINDOW}, got 16"),
    "kernel_size -3": (config(0, kernel_size=-3), "kernel_size must be a positive integer, got -3"),
    "kernel_size 0": (config(0, kernel_size=0), "kernel_size must be a positive integer, got 0"),
    "kernel_size 3.0": (config(0, kernel_size=3.0), "kernel_size must be a positive integer, got 3.0"),
    "kernel_size true": (config(0, kernel_size=True), "kernel_size must be a positive integer, got True"),
    "stride 0": (config(4, stride=0), "stride must be a positive integer, got 0"),
    "padding -1": (config(4, padding=-1), "padding must be 'valid', 'same' or a whole number"),
    "padding 1.0": (config(4, padding=1.0), "padding must be 'valid', 'same' or a whole number"),
    "out_channels 0": (config(0, out_channels=0), "out_channels must be a positive integer, got 0"),
    "pool size false": (config(3, size=False), "size must be a positive integer, got False"),
    "pool stride -2": (config(6, stride=-2), "stride must be a positive integer, got -2"),
    "channels that do not follow": (both(config(4, in_channels=3), with_tensors(4, (5, 3, 2, 2))),
                                    "takes 3 channels but gets images of shape (4, 4, 4)"),
    "Dense width after Flatten": (config(8, n_in=21), "layer 8 (Dense) takes 21 inputs but the layer before it "
                                                      "gives 20"),
    "input_shape of two numbers": (lambda m, t: m.update(input_shape=[9, 9]), "input_shape must be [width] or "
                                                                              "[channels, height, width]"),
    "input_shape of four numbers": (lambda m, t: m.update(input_shape=[2, 9, 9, 1]), "input_shape must be"),
    "input_shape of floats": (lambda m, t: m.update(input_shape=[2.0, 9.0, 9.0]), "input_shape must be"),
    "input_shape with a 0": (lambda m, t: m.update(input_shape=[2, 0, 9]), "input_shape must be"),
    "Conv2D input_shape of two numbers": (config(0, input_shape=[9, 9]), "input_shape=(channels, height, width)"),
    "two input shapes that differ": (lambda m, t: m.update(input_shape=[2, 10, 10]),
                                     "its input_shape [2, 10, 10] differs from the [2, 9, 9] its first layer takes"),
    "an unknown Conv2D keyword": (config(0, dilation=2), "unexpected keyword argument 'dilation'"),
    "a Conv2D without in_channels": (lambda m, t: m["layers"][0]["config"].pop("in_channels"), "in_channels"),
    "no Dense layer": (lambda m, t: m.update(layers=m["layers"][:7]), "the model needs at least one Dense layer"),
    "no input shape at all": (both(config(0, input_shape=None), lambda m, t: m.pop("input_shape")),
                              "it gives no input_shape"),
    # tensors that fit, but one sample's buffers would not: 3·10^10 pixels, 111.8 GiB a sample in float32
    "a 3x10^10-pixel input_shape": (huge_images([3, 10**5, 10**5]), "111.8 GiB of buffers for one sample) needs"),
}


def craft(tmp_path, good, case) -> str:
    meta, tensors = copy.deepcopy(good)
    text = CRAFTED[case][0](meta, tensors)
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(st_save(tensors, metadata={"fastnet": text if isinstance(text, str) else json.dumps(meta)}))
    return path


@pytest.mark.parametrize("case", CRAFTED)
def test_a_crafted_conv_model_file_is_refused_in_one_line_before_anything_is_allocated(tmp_path, good, case):
    path = craft(tmp_path, good, case)
    message, peak = refused(path)
    assert str(path) in message and "\n" not in message
    assert CRAFTED[case][1] in message, message
    assert peak < 4 * path.stat().st_size + (2 << 20), f"{peak:,} bytes allocated to refuse it"


def test_the_good_conv_file_loads(tmp_path, good):
    path = tmp_path / "good.safetensors"
    path.write_bytes(st_save(good[1], metadata={"fastnet": json.dumps(good[0])}))
    assert np.array_equal(fn.load(path).get_weights()["layers.4.weight"], good[1]["layers.4.weight"])


def test_a_gigapixel_input_is_refused_where_its_buffers_do_not_fit(tmp_path, good):
    """10^9 pixels (4 GB a sample) with a few weights: ``fastnet evaluate`` under a 2 GB address space refuses
    it in one line, as not fitting, before reading its tensors."""
    meta, tensors = copy.deepcopy(good)
    huge_images(GIGAPIXEL)(meta, tensors)
    path = tmp_path / "gigapixel.safetensors"
    path.write_bytes(st_save(tensors, metadata={"fastnet": json.dumps(meta)}))
    result = run_evaluate(path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "parameters, 3.7 GiB of buffers for one sample) needs about" in lines[0], lines
