"""fastnet evaluate scores a model of every loss the API trains, or explains in one line why it cannot."""
import json
import subprocess
import sys

import numpy as np
import pytest

import fastnet as fn


@pytest.fixture(scope="module")
def digits():
    return fn.datasets.load("mnist-sample")


def evaluate(path):
    return subprocess.run([sys.executable, "-m", "fastnet", "evaluate", str(path), "--json"], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("loss", [fn.MSE, fn.BinaryCrossEntropy])
def test_a_classifier_with_one_output_per_class_is_scored_on_one_hot_targets(tmp_path, digits, loss):
    train, test = digits
    model = fn.Sequential(fn.Dense(784, 10), loss=loss(), backend="numpy", dtype="float64", seed=0)
    model.fit(train.x[:2000], np.eye(10)[train.y[:2000]], epochs=2, optimizer=fn.SGD(lr=0.2), progress=False)
    model.save(tmp_path / "m.safetensors")

    result = evaluate(tmp_path / "m.safetensors")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    predicted = model.predict(test.x).argmax(axis=1)
    assert report["accuracy"] == float((predicted == test.y).mean()) > 0.6
    assert report["loss"] == model.evaluate(test.x, np.eye(10)[test.y])["loss"]
    assert report["per_class"]["3"] == float((predicted[test.y == 3] == 3).mean())


def test_a_model_that_is_no_classifier_gets_a_one_line_explanation(tmp_path):
    model = fn.Sequential(fn.Dense(784, 1), loss=fn.MSE(), backend="numpy", seed=0)
    model.save(tmp_path / "regression.safetensors")
    result = evaluate(tmp_path / "regression.safetensors")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"fastnet evaluate: error: {tmp_path / 'regression.safetensors'} has 1 output and a MSE loss; fastnet "
        "evaluate scores classifiers, which need one output per class (10 for mnist-sample). Evaluate other "
        "models in Python with model.evaluate(x, y)"]
