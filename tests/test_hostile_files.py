"""Hostile model files: each is a one-line CheckpointError, refused before anything big is allocated.

The fixtures below write the crafted files, so this module also reproduces them.
"""
import copy
import json
import math
import os
import resource
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from safetensors.numpy import save as st_save

import fastnet as fn
from fastnet import checkpoint

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture(scope="module")
def good():
    """The metadata and tensors of a small trained 784-8-3 model with Adam on a StepLR schedule."""
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (64, 784), dtype=np.uint8), rng.integers(0, 3, 64)
    model = fn.Sequential(fn.Dense(784, 8), fn.ReLU(), fn.Dense(8, 3), loss=fn.SoftmaxCrossEntropy(),
                          backend="numpy", seed=0)
    model.fit(x, y, epochs=1, optimizer=fn.Adam(lr=0.01, schedule=fn.StepLR(2)), progress=False)
    return checkpoint.describe(model)


def deep_history(meta):
    return json.dumps({**meta, "history": "DEEP"}).replace('"DEEP"', DEEP)


def widths(meta, hidden, n_in=784):
    """The metadata with the hidden layer declared ``hidden`` wide (its tensors stay 8 wide)."""
    meta["layers"][0]["config"].update(n_in=n_in, n_out=hidden)
    meta["layers"][2]["config"]["n_in"] = hidden


def schedule(meta, **config):
    meta["optimizer"]["config"]["schedule"] = config


# name: change(meta, tensors) -> the metadata's text (or None: json.dumps of the changed meta)
CRAFTED = {
    # the files that ended in a traceback
    "metadata []": lambda m, t: "[]",
    "metadata null": lambda m, t: "null",
    "metadata 1": lambda m, t: "1",
    'metadata "x"': lambda m, t: '"x"',
    "metadata nested 100,000 deep": lambda m, t: DEEP,
    "history nested 100,000 deep": lambda m, t: deep_history(m),
    "infinite step_size": lambda m, t: schedule(m, kind="StepLR", step_size=math.inf, gamma=0.1),
    "infinite t_max": lambda m, t: schedule(m, kind="CosineLR", t_max=math.inf, min_factor=0.0),
    "n_out 10^30": lambda m, t: m["layers"][2]["config"].update(n_out=10**30),
    "widths 10^6": lambda m, t: widths(m, 10**6, n_in=10**6),
    "widths 2^40": lambda m, t: widths(m, 2**40),
    # the file that allocated 2.87 GB before it was refused, scaled to 30,000 (280 MB on main)
    "n_out 30,000": lambda m, t: widths(m, 30_000),
    # bad metadata accepted silently
    'steps "abc"': lambda m, t: m["optimizer"].update(steps="abc"),
    "Adam state of shape (1,)": lambda m, t: t.update({"optimizer.m": t["optimizer.m"][:1]}),
    "history a string": lambda m, t: m.update(history="abc"),
    "int64 weights": lambda m, t: t.update({"layers.0.weight": t["layers.0.weight"].astype(np.int64)}),
    "uint8 weights": lambda m, t: t.update({"layers.2.weight": t["layers.2.weight"].astype(np.uint8)}),
    "bool biases": lambda m, t: t.update({"layers.0.bias": t["layers.0.bias"].astype(bool)}),
    # more of the same kind
    "a tensor nothing uses": lambda m, t: t.update({"layers.1.weight": np.zeros((8, 8), np.float32)}),
    "float64 tensors in a float32 model": lambda m, t: t.update({k: v.astype(np.float64) for k, v in t.items()}),
    "seed 1.5": lambda m, t: m.update(seed=1.5),
    "rng state garbage": lambda m, t: m["rng"].update(shuffle={"bit_generator": "PCG64", "state": "x"}),
    "layers an object": lambda m, t: m.update(layers={"kind": "Dense"}),
    "history of strings": lambda m, t: m.update(history=[{"loss": "low"}]),
    "optimizer steps 10^400": lambda m, t: m["optimizer"].update(steps=10**400),
    "an unknown optimizer keyword": lambda m, t: m["optimizer"]["config"].update(warmup=3),
}


def craft(tmp_path, good, case) -> str:
    meta, tensors = copy.deepcopy(good)
    text = CRAFTED[case](meta, tensors)
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(st_save(tensors, metadata={"fastnet": text if isinstance(text, str) else json.dumps(meta)}))
    return path


def refused(path):
    """The message of the CheckpointError ``fn.load(path)`` raises, and the peak bytes allocated meanwhile."""
    tracemalloc.start()
    try:
        with pytest.raises(fn.CheckpointError) as info:
            fn.load(path)
        return str(info.value), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("case", CRAFTED)
def test_a_crafted_model_file_is_refused_before_anything_is_allocated(tmp_path, good, case):
    path = craft(tmp_path, good, case)
    message, peak = refused(path)
    assert str(path) in message and "\n" not in message
    assert peak < 4 * path.stat().st_size + (2 << 20), f"{peak:,} bytes allocated to refuse it"


def test_the_good_file_loads(tmp_path, good):
    path = tmp_path / "good.safetensors"
    path.write_bytes(st_save(good[1], metadata={"fastnet": json.dumps(good[0])}))
    assert np.array_equal(fn.load(path).get_weights()["layers.2.weight"], good[1]["layers.2.weight"])


def header_file(tmp_path, length: int, header: bytes) -> str:
    path = tmp_path / "header.safetensors"
    path.write_bytes(length.to_bytes(8, "little") + header)
    return path


@pytest.mark.parametrize("length, header", [
    (2**63, b"{}"),  # a header length past the end of the file
    (2 + 2 * 100_000 + 20, b'{"a": ' + DEEP.encode() + b"}"),  # nested too deep for any reader
    (30, b'{"__metadata__": {"a": "b"}}  '),  # no fastnet metadata
], ids=["length 2^63", "header nested 100,000 deep", "no fastnet metadata"])
def test_a_crafted_header_is_refused(tmp_path, length, header):
    path = header_file(tmp_path, length, header)
    message, _ = refused(path)
    assert "not a fastnet model file" in message and str(path) in message


def run_evaluate(model_path, timeout=30):
    """``fastnet evaluate MODEL`` in a subprocess limited to 2 GB of address space (a fastnet that read
    /dev/zero would then fail fast) and 30 s (one that opened a FIFO would wait forever)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run([sys.executable, "-m", "fastnet", "evaluate", str(model_path)], capture_output=True,
                          text=True, timeout=timeout, preexec_fn=limit)


def test_dev_zero_and_a_fifo_are_refused_without_being_read(tmp_path):
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)  # nobody ever writes to it: opening it for reading would wait forever
    for path in ("/dev/zero", fifo):
        result = run_evaluate(path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == f"fastnet evaluate: error: cannot read model file {path}: " \
                                        "it is not a regular file"


def test_the_command_prints_a_crafted_file_s_error_in_one_line(tmp_path, good):
    for case in ("metadata []", "widths 2^40"):
        result = run_evaluate(craft(tmp_path, good, case))
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
