"""fn.datasets.load gives what the model sees: float32 pixels / 255, which ordinary NumPy operations keep."""
import gzip
import json
from importlib.resources import files

import numpy as np
import pytest

import fastnet as fn
from fastnet import datasets
from fastnet.cli import main

N = 256  # samples trained on: enough for several batches, fast on either backend


@pytest.fixture(scope="module")
def sample():
    return datasets.load()


def stored_pixels(stem):
    """The bundled sample's uint8 pixels as the IDX file holds them, flattened."""
    blob = gzip.decompress((files("fastnet") / "data" / "mnist-sample" / f"{stem}.gz").read_bytes())
    n, rows, cols = np.frombuffer(blob[4:16], ">u4")
    return np.frombuffer(blob[16:], np.uint8).reshape(n, rows * cols)


def trained(x, y, backend="numpy"):
    model = fn.Sequential(fn.Dense(784, 8), fn.ReLU(), fn.Dense(8, 10), loss=fn.SoftmaxCrossEntropy(),
                          backend=backend, seed=3)
    model.fit(x, y, epochs=1, batch_size=32, progress=False)
    return model.params.copy()


def test_load_gives_plain_float32_pixels_over_255(sample):
    for split, stem in zip(sample, ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")):
        x = split.x
        assert type(x) is np.ndarray and x.dtype == np.float32 and x.flags.c_contiguous
        assert x.min() == 0 and x.max() == 1
        np.testing.assert_array_equal(x, stored_pixels(stem).astype(np.float32) / np.float32(255))


@pytest.mark.parametrize("change", [
    lambda x: x.astype(np.float32),
    np.asarray,
    lambda x: x.astype(np.float64),
    lambda x: np.concatenate([x[: N // 3], x[N // 3:]]),
], ids=["astype", "asarray", "astype_float64", "slices_concatenated"])
def test_numpy_operations_keep_the_values_a_model_trains_on(sample, change):
    train, _ = sample
    x, y = train.x[:N], train.y[:N]
    np.testing.assert_array_equal(trained(change(x), y), trained(x, y))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_training_on_load_gives_the_weights_images_gave(sample, backend):
    """load's floats are the bits the batch gather made of Images(pixels): the same model, bit for bit."""
    train, _ = sample
    pixels, _ = datasets.load(pixels=True)
    np.testing.assert_array_equal(trained(train.x[:N], train.y[:N], backend),
                                  trained(fn.datasets.Images(pixels.x[:N]), train.y[:N], backend))


def test_pixels_true_gives_the_uint8_pixels_as_stored():
    train, test = datasets.load(pixels=True)
    for split, stem in ((train, "train-images-idx3-ubyte"), (test, "t10k-images-idx3-ubyte")):
        assert type(split.x) is np.ndarray and split.x.dtype == np.uint8  # no hidden scale
        np.testing.assert_array_equal(split.x, stored_pixels(stem))
    assert train.y.dtype == np.uint8


def test_the_memory_check_counts_four_bytes_a_pixel_for_floats(monkeypatch):
    asked = []
    monkeypatch.setattr(datasets, "check_fits", lambda needed, *args: asked.append(needed))
    datasets.load(pixels=True)
    datasets.load()
    pixels = (8000 + 2000) * 784
    assert asked[1] - asked[0] >= 3 * pixels  # float32 instead of uint8


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_python_model_on_load_scores_the_same_from_the_command_line(sample, tmp_path, capsys, dtype):
    """The command line loads uint8 pixels; a model without its own scaler gets them as load gives them."""
    train, test = sample
    model = fn.Sequential(fn.Dense(784, 8), fn.ReLU(), fn.Dense(8, 10), loss=fn.SoftmaxCrossEntropy(),
                          backend="numpy", dtype=dtype, seed=3)
    model.fit(train.x[:N].astype(np.float32), train.y[:N], epochs=1, progress=False)
    model.save(tmp_path / "m.safetensors")
    assert main(["evaluate", str(tmp_path / "m.safetensors"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = model.evaluate(test.x, test.y)
    assert (report["accuracy"], report["loss"]) == (expected["accuracy"], expected["loss"])
    assert report["accuracy"] > 0.2  # above chance: the scale was kept


def test_the_command_line_keeps_the_division_by_255_in_the_model(tmp_path, capsys):
    path = tmp_path / "m.safetensors"
    assert main(["train", "--hidden", "8", "--epochs", "1", "--backend", "numpy", "--save", str(path)]) == 0
    capsys.readouterr()
    model = fn.load(path)
    assert model.preprocessing.kind == "divide"
    raw, _ = datasets.load(pixels=True)
    train, _ = datasets.load()
    # raw pixels through the stored scaler, and load's floats as they are in a model without one
    bare = fn.load(path)
    bare.set_preprocessing()
    assert bare.preprocessing is None
    np.testing.assert_array_equal(model.predict(raw.x[:50]), bare.predict(train.x[:50]))
