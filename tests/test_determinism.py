"""The same seed and backend give the same bits whether numba's kernel cache is cold or warm.

numba compiles a kernel's helper functions twice: once on their own, and again inside each
kernel that calls them (the copy the cache keeps). A cold process runs the first copy, a warm
one the second, so any freedom LLVM has to reorder arithmetic shows up as a first run whose
weights differ from every later run's. Each run here is a fresh process sharing one cache folder.
A cold start shared with the compile helper (fastnet/_parallel_compile.py) runs a mix of both.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fastnet as fn

TRAIN_AND_HASH = textwrap.dedent("""
    import hashlib, json, sys
    import numpy as np
    import fastnet as fn
    from fastnet import _parallel_compile
    from fastnet.kernels import ACT, TWINS, Blocked, get_backend

    _parallel_compile.ENABLED = sys.argv[1] == "helper"

    def digest(*arrays):
        return hashlib.sha256(b"".join(a.tobytes() for a in arrays)).hexdigest()[:12]

    train, _ = fn.datasets.load("mnist-sample")
    x, y = train.x[:640], train.y[:640]
    nets = {
        "784-128-10 sigmoid, SGD": ((fn.Dense(784, 128), fn.Sigmoid(), fn.Dense(128, 10)), fn.SGD(lr=0.1)),
        "784-64-32-10 relu, dropout, momentum": (
            (fn.Dense(784, 64), fn.ReLU(), fn.Dropout(0.2), fn.Dense(64, 32), fn.ReLU(), fn.Dense(32, 10)),
            fn.SGD(lr=0.1, momentum=0.9)),
    }
    out, from_helper = {}, []
    for name, (layers, optimizer) in nets.items():
        model = fn.Sequential(*layers, loss=fn.SoftmaxCrossEntropy(), backend="numba", dtype="float32", seed=0)
        model.fit(x, y, epochs=1, batch_size=64, optimizer=optimizer, progress=False)
        out[name] = digest(model.params)
        split = _parallel_compile.last
        from_helper.append(None if split is None else [split.helper_started, split.from_helper, split.helper_error])

    # every activation in the dense kernels' epilogues, on the serial and the multi-threaded path
    k, rng = get_backend("numba").raw, np.random.default_rng(0)
    for B, I, O in ((8, 40, 12), (64, 300, 100)):
        xb, w, b, dy = (rng.standard_normal(s).astype(np.float32) for s in ((B, I), (O, I), O, (B, O)))
        a = rng.random((B, I), dtype=np.float32)
        for act, p0, p1 in ((ACT["sigmoid"], 1.7, 0.6), (ACT["tanh"], 0.0, 0.0), (ACT["leaky_relu"], 0.1, 0.0)):
            y, dx = np.zeros((B, O), np.float32), np.zeros((B, I), np.float32)
            k.dense_forward(y, xb, w, b, act, p0, p1)
            k.dense_backward_dx(dx, dy, w, a, act, p0, p1)
            out[f"dense kernels {B}x{I}x{O}, act {act}"] = digest(y, dx)
        dw, db = np.zeros((O, I), np.float32), np.zeros(O, np.float32)
        k.dense_backward_dw(dw, db, dy, xb)
        out[f"dense_backward_dw {B}x{I}x{O}"] = digest(dw, db)

    dispatchers = [d for t in TWINS for d in ((t.numba.kernel, t.numba.block) if isinstance(t.numba, Blocked) else (t.numba,))]
    hits = sum(sum(d.stats.cache_hits.values()) for d in dispatchers)
    misses = sum(sum(d.stats.cache_misses.values()) for d in dispatchers)
    print(json.dumps({"hashes": out, "cache_hits": hits, "cache_misses": misses, "from_helper": from_helper}))
""")


def train_in_fresh_process(cache: Path, helper: bool) -> dict:
    """Train in a new process with numba's cache in ``cache``, letting a cold start use the compile helper
    or not. 2 threads, so that the helper may start even on 1 core."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), NUMBA_NUM_THREADS="2")
    source_root = Path(fn.__file__).resolve().parents[1]  # run the fastnet this test imported
    done = subprocess.run([sys.executable, "-c", TRAIN_AND_HASH, "helper" if helper else "alone"], env=env,
                          cwd=source_root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """A cold run that compiled every kernel itself, then two runs on the cache it filled."""
    cache = tmp_path_factory.mktemp("numba-cache")
    return train_in_fresh_process(cache, helper=False), *(train_in_fresh_process(cache, helper=True) for _ in range(2))


def test_a_cold_kernel_cache_gives_the_same_weights_as_a_warm_one(warm):
    cold, warm, again = warm
    # the first run compiled (and filled the cache); the later ones loaded every kernel from it
    assert cold["cache_misses"] > 0 and cold["cache_hits"] == 0
    assert warm["cache_misses"] == 0 and warm["cache_hits"] > 0
    assert warm["from_helper"] == [[False, 0, ""]] * 2  # nothing to compile: no helper
    assert warm["hashes"] == again["hashes"]
    differ = {name: (h, warm["hashes"][name]) for name, h in cold["hashes"].items() if h != warm["hashes"][name]}
    assert not differ, f"cold vs warm cache (sha256 prefixes): {differ}"


def test_a_cold_start_shared_with_the_compile_helper_gives_the_same_weights(warm, tmp_path):
    shared = train_in_fresh_process(tmp_path, helper=True)
    # each fit found kernels missing and started a helper, which compiled some of them, loaded here from the cache
    assert [split[0] for split in shared["from_helper"]] == [True, True], shared["from_helper"]
    assert sum(split[1] for split in shared["from_helper"]) > 0, shared["from_helper"]
    assert not any(split[2] for split in shared["from_helper"]), shared["from_helper"]
    assert shared["cache_hits"] > 0 and shared["cache_misses"] > 0
    assert shared["hashes"] == warm[1]["hashes"]
