# --- non-finite results and divergence (items 10, 11)
"""Silently wrong results: NaN and Inf never pass as results, and divergence is caught by one rule."""
import json
import math
import warnings

import numpy as np
import pytest

import fastnet as fn
from fastnet.cli import Output, main


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
    with pytest.raises(fn.ConfigError, match=r"layers\.2\.bias holds NaN or Inf"):
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
