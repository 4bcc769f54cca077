"""Backends agree, runs reproduce bit for bit (also across thread counts), and training steps allocate nothing."""
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numba
import numpy as np
import pytest
from numba.core.runtime import _nrt_python, rtsys

import fastnet as fn


@pytest.fixture(scope="module")
def mnist():
    return fn.datasets.load("mnist-sample")


def small_mnist_net(backend, dtype, seed=0, dropout=False):
    layers = [fn.Dense(784, 32), fn.Sigmoid()] + ([fn.Dropout(0.2)] if dropout else []) + [fn.Dense(32, 10)]
    return fn.Sequential(*layers, loss=fn.SoftmaxCrossEntropy(), backend=backend, dtype=dtype, seed=seed)


def max_relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max|b| over one tensor: the error relative to the tensor's scale, not per element
    (per-element ratios blow up on weights that happen to sit near zero)."""
    return float(np.abs(a.astype(np.float64) - b).max() / np.abs(b.astype(np.float64)).max())


def without_seconds(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history.records]


# ---- numba vs numpy ------------------------------------------------------------------

@pytest.mark.parametrize("dtype, bound", [("float32", 1e-4), ("float64", 1e-10)])
def test_numba_and_numpy_backends_give_the_same_weights_after_2_mnist_epochs(mnist, dtype, bound):
    train, _ = mnist
    weights = {}
    for backend in ("numba", "numpy"):
        model = small_mnist_net(backend, dtype)
        model.fit(train.x, train.y, epochs=2, batch_size=64, optimizer=fn.SGD(lr=0.1, momentum=0.9),
                  progress=False)
        weights[backend] = model.get_weights()
        assert model.history["accuracy"][-1] > 0.8  # it really trained
    start = small_mnist_net("numpy", dtype).get_weights()
    for name, reference in weights["numpy"].items():
        assert reference.dtype == dtype
        moved = max_relative_difference(start[name], reference)
        difference = max_relative_difference(weights["numba"][name], reference)
        assert difference <= bound, f"{name}: {difference:.3g} > {bound:g}"
        assert moved > 1e3 * bound  # the bound is tight compared to how far training moved the tensor


# ---- reproducibility ----------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_same_seed_and_backend_give_bit_identical_weights_and_history(mnist, backend):
    train, test = mnist
    runs = []
    for _ in range(2):
        model = small_mnist_net(backend, "float32", seed=42, dropout=True)
        model.fit(train.x[:2000], train.y[:2000], epochs=2, batch_size=50,
                  optimizer=fn.Adam(lr=1e-3, schedule=fn.ExponentialLR(0.5)),
                  validation_data=(test.x[:500], test.y[:500]), progress=False)
        runs.append(model)
    a, b = runs
    assert a.params.tobytes() == b.params.tobytes()
    assert without_seconds(a.history) == without_seconds(b.history)
    other = small_mnist_net(backend, "float32", seed=43, dropout=True)
    assert other.params.tobytes() != a.params.tobytes()


def test_a_model_without_seed_records_one_that_reproduces_it():
    a = small_mnist_net("numba", "float32", seed=None)
    b = small_mnist_net("numba", "float32", seed=a.seed)
    assert a.params.tobytes() == b.params.tobytes()


TRAIN_AND_HASH = textwrap.dedent("""
    import hashlib, json
    import numba
    import fastnet as fn
    train, test = fn.datasets.load("mnist-sample")
    model = fn.Sequential(fn.Dense(784, 64), fn.ReLU(), fn.Dropout(0.2), fn.Dense(64, 10),
                          loss=fn.SoftmaxCrossEntropy(), seed=7)
    model.fit(train.x[:3000], train.y[:3000], epochs=2, batch_size=128, optimizer=fn.SGD(lr=0.1, momentum=0.9),
              validation_data=(test.x[:500], test.y[:500]), progress=False)
    history = [{k: v for k, v in r.items() if k != "seconds"} for r in model.history.records]
    print(json.dumps({"threads": numba.get_num_threads(), "weights": hashlib.sha256(model.params.tobytes()).hexdigest(),
                      "history": history}))
""")


def test_weights_are_bit_identical_with_1_and_2_numba_threads():
    results = {}
    for threads in (1, 2):
        env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
        done = subprocess.run([sys.executable, "-c", TRAIN_AND_HASH], env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        results[threads] = json.loads(done.stdout.strip().splitlines()[-1])
        assert results[threads]["threads"] == threads
    assert results[1]["weights"] == results[2]["weights"]
    assert results[1]["history"] == results[2]["history"]
    assert results[1]["history"][-1]["accuracy"] > 0.8


# ---- no allocation in the hot loop ---------------------------------------------------

@pytest.fixture(scope="module")
def hot_loop(mnist):
    """A warmed-up numba model and a function running one training step as fit does: gather, forward,
    loss, backward, penalties, update."""
    train, _ = mnist
    batch = 1024  # big buffers, so Python's own small churn (~4 KB at peak) cannot hide one
    model = fn.Sequential(fn.Dense(784, 32, l2=1e-4), fn.Sigmoid(), fn.Dropout(0.2), fn.Dense(32, 10),
                          loss=fn.SoftmaxCrossEntropy(), backend="numba", seed=0)
    model.fit(train.x[:batch * 2], train.y[:batch * 2], epochs=1, batch_size=batch,
              optimizer=fn.SGD(lr=0.1, momentum=0.9), progress=False)
    order = np.random.default_rng(0).permutation(len(train.x))

    def step(i):
        i %= len(order) // batch
        idx = order[i * batch:(i + 1) * batch]
        model._loss_and_grad(train.x, train.y, idx, 1.0)  # what fit runs on floats: no checks, no copy of x
        model.optimizer.update(model.kernels.raw, model.params, model.grads, 0.1)

    for i in range(3):
        step(i)
    smallest = batch * min(op.width for op in model._program.ops)  # a (1024, 10) buffer: 40 KB in float32
    return model, step, smallest


def measure(step, n_steps=30):
    """(tracemalloc peak above baseline, growth of current, numba runtime allocations) over n_steps."""
    tracemalloc.start()
    _nrt_python.memsys_enable_stats()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        before = rtsys.get_allocation_stats()
        for i in range(n_steps):
            step(i)
        after = rtsys.get_allocation_stats()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        _nrt_python.memsys_disable_stats()
        tracemalloc.stop()
    assert after.alloc - before.alloc == after.free - before.free  # everything allocated was freed
    return peak - base, current - base, after.alloc - before.alloc


def test_numba_training_steps_allocate_no_arrays(hot_loop):
    """Two independent checks after a warm-up:

    * tracemalloc (which sees every NumPy allocation): the peak above the baseline over 30 steps stays
      below half the smallest buffer a step uses, so no step created even one activation-sized array;
    * numba's runtime counters: a numba call allocates one small MemInfo per array it is passed (the
      wrapper around the caller's buffer), so the allocations per step must equal the array arguments
      exactly; an array created inside a kernel would add one.
    """
    model, step, smallest = hot_loop
    peak, growth, nrt_allocs = measure(step)
    assert peak < smallest / 2, f"a step allocated {peak} bytes at its peak"
    assert growth < 4096  # nothing accumulates either
    per_step = 13 + 3  # the compiled step's array arguments (sample weights and their buffer among them), then sgd's
    assert nrt_allocs == 30 * per_step


def test_the_allocation_checks_catch_a_step_that_allocates(hot_loop, monkeypatch):
    model, step, smallest = hot_loop
    clean_peak, _, clean_allocs = measure(step)
    program, run = model._program, model._program.run

    # an activation-sized temporary made in Python (e.g. a step that returned a new array)
    monkeypatch.setattr(program, "run", lambda *a, **k: (np.zeros((1024, 32), np.float32), run(*a, **k))[1])
    assert measure(step)[0] >= smallest
    monkeypatch.undo()

    # an array created inside compiled code: invisible to tracemalloc, counted by numba's runtime
    @numba.njit
    def kernel_with_scratch(y):
        scratch = np.empty_like(y)
        scratch[:] = y
        return scratch[0, 0]

    out = program.buffers(1024).work[:1024 * 10].reshape(1024, 10)
    kernel_with_scratch(out)
    monkeypatch.setattr(program, "run", lambda *a, **k: (kernel_with_scratch(out), run(*a, **k))[1])
    assert measure(step)[2] == clean_allocs + 30 * 2  # one MemInfo for the argument, one for the scratch
    assert clean_peak < smallest / 2
