"""The same seed and backend give the same bits whether numba's kernel cache is cold or warm.

numba compiles a kernel's helper functions twice: once on their own, and again inside each
kernel that calls them (the copy the cache keeps). A cold process runs the first copy, a warm
one the second, so any freedom LLVM has to reorder arithmetic shows up as a first run whose
weights differ from every later run's. Each run here is a fresh process sharing one cache folder.
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
    import fastnet.kernels
    from numba.extending import is_jitted
    from fastnet.kernels import ACT, get_backend

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
    out = {}
    for name, (layers, optimizer) in nets.items():
        model = fn.Sequential(*layers, loss=fn.SoftmaxCrossEntropy(), backend="numba", dtype="float32", seed=0)
        model.fit(x, y, epochs=1, batch_size=64, optimizer=optimizer, progress=False)
        out[name] = digest(model.params)

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

    modules = [m for name, m in vars(fastnet.kernels).items() if type(m) is type(fastnet.kernels)]
    dispatchers = {id(d): d for m in modules for d in vars(m).values() if is_jitted(d)}.values()
    hits = sum(sum(d.stats.cache_hits.values()) for d in dispatchers)
    misses = sum(sum(d.stats.cache_misses.values()) for d in dispatchers)
    print(json.dumps({"hashes": out, "cache_hits": hits, "cache_misses": misses}))
""")


def train_in_fresh_process(cache: Path) -> dict:
    """Train in a new process with numba's cache in ``cache``, on 2 threads."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), NUMBA_NUM_THREADS="2")
    source_root = Path(fn.__file__).resolve().parents[1]  # run the fastnet this test imported
    done = subprocess.run([sys.executable, "-c", TRAIN_AND_HASH], env=env,
                          cwd=source_root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """A cold run that compiled every kernel, then two runs on the cache it filled."""
    cache = tmp_path_factory.mktemp("numba-cache")
    return tuple(train_in_fresh_process(cache) for _ in range(3))


def test_a_cold_kernel_cache_gives_the_same_weights_as_a_warm_one(warm):
    cold, warm, again = warm
    # the first run compiled (and filled the cache); the later ones loaded every kernel from it
    assert cold["cache_misses"] > 0 and cold["cache_hits"] == 0
    assert warm["cache_misses"] == 0 and warm["cache_hits"] > 0
    assert warm["hashes"] == again["hashes"]
    differ = {name: (h, warm["hashes"][name]) for name, h in cold["hashes"].items() if h != warm["hashes"][name]}
    assert not differ, f"cold vs warm cache (sha256 prefixes): {differ}"
