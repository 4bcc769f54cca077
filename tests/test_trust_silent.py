# --- one consistent model per load (item 12)
"""A model file rewritten in place while it loads gives one of the two models whole, or is refused."""
import threading

import numpy as np
import pytest

import fastnet as fn


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
