# --- non-finite model state (set_weights, save, load)
"""Nothing silently wrong: a model with NaN or Inf in its state is refused at the door, in one line."""
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import fastnet as fn
from test_cli import assert_one_line_error, run

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
    """A model file as fastnet writes it, but for one NaN in ``tensor``."""
    good = tmp_path / "good.safetensors"
    adam_model().save(good)
    with safe_open(str(good), "np") as f:
        metadata = f.metadata()
    tensors = load_file(good)
    tensors[tensor].flat[0] = np.nan
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
