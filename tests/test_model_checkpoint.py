"""Save and load: safetensors with JSON metadata, no pickle, atomic writes, exact round trips and resumes."""
import json
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import fastnet as fn
from fastnet import checkpoint

ROOT = Path(__file__).resolve().parents[1]


def data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.normal(0, 1, (n, 5)) + y[:, None], y


def net(dropout=True, **kw):
    layers = [fn.Dense(5, 12, l2=1e-3), fn.ReLU()]
    if dropout:
        layers.append(fn.Dropout(0.25))
    layers += [fn.Dense(12, 3, init="he")]
    return fn.Sequential(*layers, loss=fn.SoftmaxCrossEntropy(), seed=kw.pop("seed", 3), **kw)


def test_file_is_safetensors_with_architecture_and_config_in_metadata(tmp_path):
    x, y = data()
    model = net(dtype="float64")
    model.fit(x, y, epochs=2, batch_size=16, optimizer=fn.SGD(lr=0.05, momentum=0.9, schedule=fn.StepLR(3)),
              progress=False)
    path = tmp_path / "m.safetensors"
    model.save(path)

    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    meta = json.loads(header["__metadata__"]["fastnet"])
    assert [layer["kind"] for layer in meta["layers"]] == ["Dense", "ReLU", "Dropout", "Dense"]
    assert meta["layers"][0]["config"] == {"n_in": 5, "n_out": 12, "init": "xavier", "l1": 0.0, "l2": 1e-3}
    assert meta["layers"][2]["config"] == {"p": 0.25}
    assert meta["loss"] == "SoftmaxCrossEntropy" and meta["dtype"] == "float64" and meta["backend"] == "numba"
    assert meta["optimizer"]["kind"] == "SGD" and meta["optimizer"]["config"]["momentum"] == 0.9
    assert meta["optimizer"]["config"]["schedule"] == {"kind": "StepLR", "step_size": 3, "gamma": 0.1}
    assert len(meta["history"]) == 2

    tensors = load_file(path)  # any safetensors reader can open it
    assert set(tensors) == {"layers.0.weight", "layers.0.bias", "layers.3.weight", "layers.3.bias",
                            "optimizer.velocity"}
    assert np.array_equal(tensors["layers.0.weight"], model.layers[0].weight)
    assert tensors["layers.3.weight"].shape == (3, 12) and tensors["layers.3.weight"].dtype == np.float64
    assert np.array_equal(tensors["optimizer.velocity"], model.optimizer.state["velocity"])


def test_optimizer_state_is_optional(tmp_path):
    x, y = data()
    model = net()
    model.fit(x, y, epochs=1, optimizer=fn.Adam(lr=0.01), progress=False)
    model.save(tmp_path / "with.safetensors")
    model.save(tmp_path / "without.safetensors", include_optimizer=False)
    assert {"optimizer.m", "optimizer.v"} <= set(load_file(tmp_path / "with.safetensors"))
    assert not any(k.startswith("optimizer") for k in load_file(tmp_path / "without.safetensors"))
    with_opt, without = fn.load(tmp_path / "with.safetensors"), fn.load(tmp_path / "without.safetensors")
    assert isinstance(with_opt.optimizer, fn.Adam) and with_opt.optimizer.steps == model.optimizer.steps
    assert np.array_equal(with_opt.optimizer.state["v"], model.optimizer.state["v"])
    assert without.optimizer is None
    assert np.array_equal(without.predict(x), model.predict(x))


def test_no_pickle_anywhere_in_the_sources():
    sources = sorted((ROOT / "fastnet").rglob("*.py")) + sorted((ROOT / "kernels").rglob("*.py"))
    assert len(sources) > 10
    # code that could unpickle: the modules, their calls, or np.load (which can, with allow_pickle)
    unpickling = re.compile(r"^\s*(import|from)\s+(pickle|cPickle|_pickle|dill|joblib|shelve)\b"
                            r"|\b(pickle|dill|joblib|shelve)\.\w+\(|allow_pickle\s*=\s*True|\bnp\.load\(",
                            re.MULTILINE)
    offenders = [f"{path.relative_to(ROOT)}: {m.group(0).strip()}"
                 for path in sources for m in unpickling.finditer(path.read_text())]
    assert offenders == []
    assert unpickling.search("import pickle\nx = pickle.loads(b)") and unpickling.search("np.load(f, allow_pickle=True)")


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_predicts_bit_for_bit_what_the_saved_model_did(tmp_path, backend, dtype):
    x, y = data()
    model = net(backend=backend, dtype=dtype)
    model.fit(x, y, epochs=2, batch_size=16, optimizer=fn.SGD(lr=0.05, momentum=0.9), progress=False)
    path = tmp_path / "m.safetensors"
    model.save(path)
    same = fn.load(path)
    assert same.backend == backend and same.dtype == dtype
    assert repr(same) == repr(model) and same.summary() == model.summary()
    assert np.array_equal(same.predict(x), model.predict(x))
    assert same.evaluate(x, y) == model.evaluate(x, y)
    assert same.history.records == model.history.records
    other = "numpy" if backend == "numba" else "numba"
    assert fn.load(path, backend=other).backend == other


def test_checkpoint_callback_saves_every_epoch(tmp_path):
    x, y = data()
    path = tmp_path / "ckpt" / "m.safetensors"

    class Spy(fn.Callback):
        seen = []

        def on_epoch_end(self, model, record):
            self.seen.append(len(fn.load(path).history))

    model = net()
    model.fit(x, y, epochs=3, callbacks=[fn.Checkpoint(path), Spy()], progress=False)
    assert Spy.seen == [1, 2, 3]
    assert np.array_equal(fn.load(path).params, model.params)


# ---- resume: the same run, interrupted or not ---------------------------------------

@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("make_optimizer", [
    lambda: fn.SGD(lr=0.05, momentum=0.9, nesterov=True, schedule=fn.ExponentialLR(0.8)),
    lambda: fn.Adam(lr=0.01, schedule=fn.CosineLR(5)),
], ids=["sgd_momentum", "adam"])
def test_resume_from_a_checkpoint_ends_bit_for_bit_equal_to_the_uninterrupted_run(tmp_path, backend,
                                                                                  make_optimizer):
    x, y = data(100)  # 100 / 16: a ragged last batch too
    xv, yv = data(30, seed=1)
    fit = dict(batch_size=16, validation_data=(xv, yv), shuffle=True, progress=False)

    straight = net(backend=backend)
    straight.fit(x, y, epochs=5, optimizer=make_optimizer(), **fit)

    first = net(backend=backend)
    first.fit(x, y, epochs=2, optimizer=make_optimizer(), **fit)
    first.save(tmp_path / "epoch2.safetensors")
    del first
    resumed = fn.load(tmp_path / "epoch2.safetensors")
    resumed.fit(x, y, epochs=3, optimizer=None, **fit)

    assert np.array_equal(resumed.params, straight.params)
    for name, state in straight.optimizer.state.items():
        assert np.array_equal(resumed.optimizer.state[name], state)
    assert resumed.optimizer.steps == straight.optimizer.steps
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in straight.history.records]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.history.records] == strip


def test_resume_needs_the_restored_generators(tmp_path):
    """The test above can fail: continuing with fresh shuffle/dropout generators gives other weights."""
    x, y = data(100)
    straight = net()
    straight.fit(x, y, epochs=3, batch_size=16, optimizer=fn.SGD(lr=0.05, momentum=0.9), progress=False)
    first = net()
    first.fit(x, y, epochs=2, batch_size=16, optimizer=fn.SGD(lr=0.05, momentum=0.9), progress=False)
    first.save(tmp_path / "m.safetensors")
    resumed = fn.load(tmp_path / "m.safetensors")
    fresh = net()
    resumed.shuffle_rng.bit_generator.state = fresh.shuffle_rng.bit_generator.state
    resumed.dropout_rng.bit_generator.state = fresh.dropout_rng.bit_generator.state
    resumed.fit(x, y, epochs=1, batch_size=16, progress=False)
    assert not np.array_equal(resumed.params, straight.params)


# ---- atomic writes ------------------------------------------------------------------

@pytest.mark.parametrize("fail_at", ["write", "fsync", "replace"])
def test_an_interrupted_save_leaves_the_previous_file_intact_and_no_temp_file(tmp_path, monkeypatch, fail_at):
    x, y = data()
    model = net()
    path = tmp_path / "m.safetensors"
    model.save(path)
    before = path.read_bytes()
    model.fit(x, y, epochs=1, progress=False)  # the weights change, so a new save would differ

    class Interrupted(Exception):
        pass

    def boom(*args, **kwargs):
        raise Interrupted(fail_at)

    if fail_at == "write":  # half the bytes reach the disk, then the process is interrupted
        real_fdopen = os.fdopen

        class HalfWriter:
            def __init__(self, fd, mode):
                self.f = real_fdopen(fd, mode)

            def write(self, data):
                self.f.write(data[:len(data) // 2])
                self.f.flush()
                raise Interrupted("write")

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

        monkeypatch.setattr(checkpoint.os, "fdopen", HalfWriter)
    else:
        monkeypatch.setattr(checkpoint.os, fail_at, boom)
    with pytest.raises(Interrupted):
        model.save(path)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    assert not np.array_equal(fn.load(path).params, model.params)  # still the old model, and loadable
    model.save(path)
    assert np.array_equal(fn.load(path).params, model.params)


def test_a_saved_model_gets_the_usual_file_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        net().save(tmp_path / "m.safetensors")
    finally:
        os.umask(umask)
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o644  # not a temp file's 0600


# ---- damaged files ------------------------------------------------------------------

def damaged_files(tmp_path) -> dict:
    model = net()
    good = tmp_path / "good.safetensors"
    model.save(good)
    raw = good.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])

    def with_header(change) -> bytes:
        h = json.loads(json.dumps(header))
        change(h)
        text = json.dumps(h).encode()
        text += b" " * (-len(text) % 8)
        return struct.pack("<Q", len(text)) + text + raw[8 + header_len:]

    def set_meta(h, **fields):
        meta = json.loads(h["__metadata__"]["fastnet"])
        meta.update(fields)
        h["__metadata__"]["fastnet"] = json.dumps(meta)

    def drop_tensor(h):
        del h["layers.3.bias"]

    cases = {
        "empty": b"",
        "garbage": b"this is not a model file at all\n" * 10,
        "truncated_data": raw[:len(raw) - 40],
        "truncated_header": raw[:8 + header_len // 2],
        "no_fastnet_metadata": with_header(lambda h: h.pop("__metadata__")),
        "metadata_not_json": with_header(lambda h: h["__metadata__"].update(fastnet="{not json")),
        "future_format": with_header(lambda h: set_meta(h, format=99)),
        "unknown_layer": with_header(lambda h: set_meta(h, layers=[{"kind": "Conv2d", "config": {}}])),
        "unknown_loss": with_header(lambda h: set_meta(h, loss="Hinge")),
        "missing_tensor": with_header(drop_tensor),
    }
    paths = {}
    for name, content in cases.items():
        paths[name] = tmp_path / f"{name}.safetensors"
        paths[name].write_bytes(content)
    return paths


DAMAGE = ["empty", "garbage", "truncated_data", "truncated_header", "no_fastnet_metadata", "metadata_not_json",
          "future_format", "unknown_layer", "unknown_loss", "missing_tensor"]


@pytest.mark.parametrize("case", DAMAGE)
def test_a_damaged_file_raises_checkpoint_error_naming_the_file(tmp_path, case):
    path = damaged_files(tmp_path)[case]
    with pytest.raises(fn.CheckpointError) as err:
        fn.load(path)
    message = str(err.value)
    assert str(path) in message
    assert re.search(r"not a fastnet model file|damaged|format|cannot rebuild", message), message


def test_a_missing_file_raises_checkpoint_error(tmp_path):
    with pytest.raises(fn.CheckpointError, match="cannot read model file"):
        fn.load(tmp_path / "nope.safetensors")
