"""Silently wrong results: NaN and Inf are refused at the door and never pass as results; divergence is
caught by one rule; a file changed while it loads gives one model or none."""
import json
import math
import threading
import warnings

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from test_cli import assert_one_line_error, run

import fastnet as fn
from fastnet.checkpoint_schema import DIGEST_KEY, tensor_digest
from fastnet.cli import Output, main

# --- non-finite model state (set_weights, save, load)
X = np.random.default_rng(0).normal(size=(40, 6))
Y = np.arange(40) % 3


def adam_model(dtype="float32"):
    """A small model with Adam state (m and v), trained one epoch."""
    model = fn.Sequential(fn.Dense(6, 4), fn.Tanh(), fn.Dense(4, 3), loss=fn.SoftmaxCrossEntropy(), backend="numpy",
                          dtype=dtype, seed=0)
    model.fit(X, Y, epochs=1, batch_size=8, optimizer=fn.Adam(lr=0.01), progress=False)
    return model


@pytest.mark.parametrize("name, value", [("layers.0.weight", np.nan), ("layers.0.bias", np.inf),
                                         ("layers.2.weight", -np.inf), ("layers.2.bias", 1e300)])
def test_set_weights_refuses_nan_and_inf_and_leaves_the_weights_as_they_were(name, value):
    model = adam_model()
    before = model.params.copy()
    weights = {k: v.astype(np.float64) for k, v in model.get_weights().items()}
    weights[name].flat[-1] = value  # 1e300 is finite in float64, Inf in the model's float32
    with pytest.raises(fn.ConfigError, match=rf"set_weights\(\): {name} holds 1 NaN or Inf value as float32"):
        model.set_weights(weights)
    assert np.array_equal(model.params, before)


@pytest.mark.parametrize("poison", ["params", "adam m", "adam v"])
def test_save_refuses_a_model_with_non_finite_state_and_writes_nothing(tmp_path, poison):
    model = adam_model()
    array = model.params if poison == "params" else model.optimizer.state[poison[-1]]
    array[3] = np.nan
    with pytest.raises(fn.ConfigError, match="NaN or Inf") as refused:
        model.save(tmp_path / "m.safetensors")
    assert len(str(refused.value).splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def poisoned_file(tmp_path, tensor: str):
    """A model file as fastnet writes it, but for one NaN in ``tensor`` (and a checksum that matches it:
    the checksum catches a file changed while read, not a crafted one)."""
    good = tmp_path / "good.safetensors"
    adam_model().save(good)
    with safe_open(str(good), "np") as f:
        metadata = f.metadata()
    tensors = load_file(good)
    tensors[tensor].flat[0] = np.nan
    metadata[DIGEST_KEY] = tensor_digest(metadata["fastnet"], tensors)
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, bad, metadata=metadata)
    return bad


@pytest.mark.parametrize("tensor", ["layers.0.weight", "layers.2.bias", "optimizer.m", "optimizer.v"])
def test_load_refuses_a_file_with_non_finite_parameters_or_optimizer_state(tmp_path, tensor):
    path = poisoned_file(tmp_path, tensor)
    with pytest.raises(fn.CheckpointError) as refused:
        fn.load(path)
    message = str(refused.value)
    assert str(path) in message and f"{tensor} holds 1 NaN or Inf value" in message and "\n" not in message


@pytest.mark.parametrize("command", ["evaluate", "train --resume", "export"])
def test_the_command_refuses_a_non_finite_model_in_one_line(tmp_path, command):
    path = poisoned_file(tmp_path, "optimizer.m")
    args = {"evaluate": ["evaluate", str(path)], "train --resume": ["train", "--resume", str(path)],
            "export": ["export", str(path), str(tmp_path / "m.onnx")]}[command]
    assert_one_line_error(run(*args), str(path), "optimizer.m holds 1 NaN or Inf value")
    assert not (tmp_path / "m.onnx").exists()


# --- non-finite results and divergence (items 10, 11)
def tiny(hidden=fn.Sigmoid, dtype="float32", n_in=4, n_out=3):
    return fn.Sequential(fn.Dense(n_in, 8), hidden(), fn.Dense(8, n_out), loss=fn.SoftmaxCrossEntropy(),
                         backend="numpy", dtype=dtype, seed=0)


def one_line_error(code, err, *needles):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_evaluate_refuses_a_nonfinite_loss_instead_of_printing_nan(tmp_path, capsys):
    model = fn.Sequential(fn.Dense(784, 10), loss=fn.SoftmaxCrossEntropy(), backend="numpy", seed=0)
    model.dense[0].weight[0], model.dense[0].weight[1] = 1e36, -1e36  # finite, but the logits overflow float32
    path = tmp_path / "big.safetensors"
    model.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        code = main(["evaluate", str(path), "--json", "--backend", "numpy"])
    out, err = capsys.readouterr()
    assert out == ""  # no half-valid JSON on stdout
    one_line_error(code, err, str(path), "the loss is")


def test_json_output_is_valid_json_or_an_error(capsys):
    Output(as_json=True).json({"loss": 0.5})
    assert json.loads(capsys.readouterr().out) == {"loss": 0.5}
    with pytest.raises(fn.InputError, match="NaN or Inf"):
        Output(as_json=True).json({"loss": math.nan})
    assert capsys.readouterr().out == ""


def test_export_refuses_a_model_with_nonfinite_weights(tmp_path):
    pytest.importorskip("onnx")
    model = tiny()
    model.dense[1].bias[1] = np.inf
    path = tmp_path / "m.onnx"
    with pytest.raises(fn.ConfigError, match=r"layers\.2\.bias holds 1 NaN or Inf value"):
        model.to_onnx(path)
    assert not path.exists()


def test_gradcheck_refuses_nan_weights():
    model = tiny(dtype="float64")
    model.params[:] = np.nan
    x, y = np.ones((4, 4)), np.array([0, 1, 2, 0])
    with pytest.raises(fn.ConfigError, match="NaN or Inf"):
        fn.gradcheck(model, x, y, progress=False)


def test_gradcheck_never_reports_success_on_nan_gradients():
    model = fn.Sequential(fn.Dense(4, 3), loss=fn.SoftmaxCrossEntropy(), backend="numpy", dtype="float64", seed=0)
    model.params[:] = 1e308  # finite, but every logit overflows: every gradient is NaN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        worst = fn.gradcheck(model, np.full((4, 4), 10.0), np.array([0, 1, 2, 0]), progress=False)
    assert math.isnan(worst)


def test_fit_stops_on_a_huge_but_finite_loss():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype(np.float32), rng.integers(0, 3, 64)
    model = tiny()
    with pytest.raises(fn.DivergenceError, match="training diverged at epoch 1, batch 2: the loss is .*e\\+"):
        model.fit(x, y, epochs=3, batch_size=16, optimizer=fn.SGD(lr=1e30), progress=False)
    assert np.isfinite(model.params).all() and np.abs(model.params).max() > 1e20  # as before batch 2
    assert len(model.history) == 0


def test_fit_leaves_a_merely_rising_loss_alone():
    growth, watch = fn.divergence.GROWTH, fn.divergence.LossWatch()  # fastnet.divergence, loaded by fastnet
    assert watch.problem(0.001) is None  # the start; below 1, the bound is GROWTH × 1
    assert watch.problem(growth * 0.99) is None
    assert "times its first value" in watch.problem(growth * 1.01)
    assert "nan" in watch.problem(math.nan)


def test_cli_train_stops_on_a_huge_but_finite_loss(capsys):
    code = main(["train", "--lr", "1e30", "--optimizer", "sgd", "--schedule", "none", "--activation", "sigmoid",
                 "--hidden", "8", "--epochs", "1", "--backend", "numpy", "--quiet"])
    one_line_error(code, capsys.readouterr().err, "fastnet train: error: training diverged", "times its first value")



# --- one consistent model per load (item 12)
def two_models(tmp_path):
    """The bytes of two saves of one 784-64-10 architecture with different weights, and their weights."""
    blobs, weights = [], []
    for seed in (1, 2):
        model = fn.Sequential(fn.Dense(784, 64), fn.ReLU(), fn.Dense(64, 10), loss=fn.SoftmaxCrossEntropy(),
                              backend="numpy", seed=seed)
        path = tmp_path / f"m{seed}.safetensors"
        model.save(path)
        blobs.append(path.read_bytes())
        weights.append(model.get_weights())
    assert len(blobs[0]) == len(blobs[1])  # same layout: a rewrite in place keeps every offset
    return blobs, weights


def which(model, weights) -> int | None:
    """Which of ``weights`` the loaded ``model`` holds in full, or None for a mix."""
    got = model.get_weights()
    for i, expected in enumerate(weights):
        if all(np.array_equal(got[name], expected[name]) for name in expected):
            return i
    return None


def test_a_file_holding_one_model_s_header_and_another_s_tensors_is_refused(tmp_path):
    blobs, _ = two_models(tmp_path)
    data_start = 8 + int.from_bytes(blobs[0][:8], "little")
    path = tmp_path / "mixed.safetensors"
    path.write_bytes(blobs[0][:data_start + 100_000] + blobs[1][data_start + 100_000:])  # torn mid-tensor
    with pytest.raises(fn.CheckpointError, match="changed while being read or is corrupt") as err:
        fn.load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_file_rewritten_in_place_while_it_loads_gives_one_model_or_is_refused(tmp_path):
    blobs, weights = two_models(tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(blobs[0])
    stop = threading.Event()

    def rewrite():  # in place, in 16 KB pieces, as `cp` or a careless writer does: no rename
        i = 0
        with open(path, "r+b", buffering=0) as f:
            while not stop.is_set():
                i = 1 - i
                for start in range(0, len(blobs[i]), 16384):
                    f.seek(start)
                    f.write(blobs[i][start:start + 16384])

    writer = threading.Thread(target=rewrite)
    writer.start()
    seen = {0: 0, 1: 0, "refused": 0}
    try:
        for _ in range(150):
            try:
                got = which(fn.load(path), weights)
            except fn.CheckpointError as e:
                assert "changed while being read" in str(e) or "damaged" in str(e) or "not a fastnet" in str(e), e
                seen["refused"] += 1
                continue
            assert got is not None, f"a mix of the two models was loaded ({seen})"
            seen[got] += 1
    finally:
        stop.set()
        writer.join()
    assert seen["refused"] > 0, seen  # the rewrite did overlap the loads
