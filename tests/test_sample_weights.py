"""Per-sample weights (fit's sample_weight and class_weight, evaluate's sample_weight), applied in the loss
kernels: the compiled step against its NumPy twin, finite differences, the bits of weights of one, integer
weights against duplicated rows, class weights against sample weights, thread counts, and the door."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_kernels_step import LOSSES
from test_kernels_step import data as _data

import fastnet as fn
from fastnet import inputs
from fastnet.kernels import get_backend

BACKENDS = ("numba", "numpy")


def data(loss, n, n_out, rng, n_in=6):
    return _data(loss, n, n_in, n_out, rng)


def model(loss, backend="numba", dtype="float64", n_out=None, dropout=False, seed=0):
    make, width = LOSSES[loss]
    middle = [fn.Dropout(0.25)] if dropout else []
    return fn.Sequential(fn.Dense(6, 5), fn.Tanh(), *middle, fn.Dense(5, n_out or width), loss=make(),
                         backend=backend, dtype=dtype, seed=seed)


def step(m, x, y, weights, rows=None):
    """One weighted training step on x[rows] (all rows by default): (loss, grads)."""
    xs, divisor = inputs.check_x(x, m.n_in, m.dtype)
    ys = inputs.check_y(y, len(xs), m.n_out, m.loss, m.dtype)
    w = None if weights is None else np.asarray(weights, m.dtype)
    rows = np.arange(len(xs)) if rows is None else rows
    loss, _ = m._program.run(xs, ys, rows, divisor, train=True, weights=w)
    return loss, m.grads.copy()


def fitted(loss, backend, dtype, x, y, **weights):
    m = model(loss, backend, dtype, dropout=True, seed=3)
    history = m.fit(x, y, epochs=2, batch_size=7, progress=False, **weights)
    return m, history


# 1. the weighted loss kernels and the weighted step agree with their NumPy twins ----------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("rows, cols", [(0, 3), (1, 1), (1, 5), (7, 3), (33, 10)])
@pytest.mark.parametrize("name", ["softmax_ce_weighted", "mse_weighted", "sigmoid_bce_weighted"])
def test_weighted_loss_kernels_match_their_numpy_twins(name, rows, cols, dtype):
    rng = np.random.default_rng(rows * 31 + cols)
    z = (3 * rng.standard_normal((rows, cols))).astype(dtype)
    target = rng.integers(0, cols, rows) if name.startswith("softmax") else \
        rng.integers(0, 2, (rows, cols)).astype(dtype)
    w = (3 * rng.random(rows)).astype(dtype)
    results = []
    for backend in BACKENDS:
        grad = np.full_like(z, np.nan)
        results.append((getattr(get_backend(backend), name)(grad, z, target, w), grad))
    (l1, g1), (l2, g2) = results
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert l1 == pytest.approx(l2, rel=tol, abs=tol)
    np.testing.assert_allclose(g1, g2, rtol=tol, atol=tol / max(rows, 1))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [0, 1, 7, 33])
@pytest.mark.parametrize("loss", LOSSES)
def test_the_weighted_step_matches_its_numpy_twin(loss, batch, dtype):
    rng = np.random.default_rng(batch)
    x, y = data(LOSSES[loss][0], max(batch, 3), LOSSES[loss][1], rng)
    w = 3 * rng.random(len(x))
    rows = rng.permutation(len(x))[:batch]
    (l1, g1), (l2, g2) = (step(model(loss, b, dtype), x, y, w, rows) for b in BACKENDS)
    tol = 2e-5 if dtype == "float32" else 1e-12
    assert l1 == pytest.approx(l2, rel=tol, abs=tol)
    np.testing.assert_allclose(g1, g2, rtol=tol * 10, atol=tol * max(1.0, np.abs(g2).max()))
    if batch == 0:
        assert (l1, l2) == (0.0, 0.0) and not g1.any() and not g2.any()


# 2. the weighted gradient is the derivative of the weighted loss (float64, central differences) -----

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss", LOSSES)
def test_the_weighted_gradient_matches_central_differences_in_float64(loss, backend):
    rng = np.random.default_rng(7)
    m = model(loss, backend)
    x, y = data(LOSSES[loss][0], 9, m.n_out, rng)
    w = 3 * rng.random(len(x))
    _, analytic = step(m, x, y, w)
    h = 1e-5
    numeric = np.empty_like(analytic)
    for i in range(m.n_params):
        keep = m.params[i]
        m.params[i] = keep + h
        up = step(m, x, y, w)[0]
        m.params[i] = keep - h
        down = step(m, x, y, w)[0]
        m.params[i] = keep
        numeric[i] = (up - down) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


# 3. weights of one are no weights, to the bit ----------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss", LOSSES)
def test_weights_of_one_give_exactly_the_unweighted_bits(loss, backend, dtype):
    x, y = data(LOSSES[loss][0], 30, LOSSES[loss][1], np.random.default_rng(1))
    plain, h_plain = fitted(loss, backend, dtype, x, y)
    ones, h_ones = fitted(loss, backend, dtype, x, y, sample_weight=np.ones(len(x)))
    assert plain.params.tobytes() == ones.params.tobytes()
    assert h_plain["loss"] == h_ones["loss"]
    assert plain.evaluate(x, y) == ones.evaluate(x, y, sample_weight=np.ones(len(x)))


# 4. an integer weight k is the row k times over (up to the divisor: B rows against sum(k)) ---------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss", LOSSES)
def test_integer_weights_equal_duplicated_rows(loss, backend):
    rng = np.random.default_rng(2)
    x, y = data(LOSSES[loss][0], 11, LOSSES[loss][1], rng)
    k = rng.integers(0, 4, len(x))
    k[0] = 1
    m = model(loss, backend)
    l_w, g_w = step(m, x, y, k)
    l_d, g_d = step(m, np.repeat(x, k, axis=0), np.repeat(y, k, axis=0), None)
    # Keras's sum_over_batch_size divides by the batch size: B rows weighted, sum(k) rows duplicated
    assert l_w * len(x) == pytest.approx(l_d * k.sum(), rel=1e-12)
    np.testing.assert_allclose(g_w * len(x), g_d * k.sum(), rtol=1e-10, atol=1e-13)


def test_weighted_evaluate_is_the_sum_of_weighted_losses_over_the_samples():
    rng = np.random.default_rng(3)
    m = model("softmax")
    x, y = data(fn.SoftmaxCrossEntropy, 600, m.n_out, rng)  # more than one evaluation batch
    w = 2 * rng.random(len(x))
    each = np.array([m.evaluate(x[i:i + 1], y[i:i + 1])["loss"] for i in range(len(x))])
    got = m.evaluate(x, y, sample_weight=w)
    assert got["loss"] == pytest.approx((w * each).sum() / len(x), rel=1e-10)
    assert got["accuracy"] == m.evaluate(x, y)["accuracy"]  # accuracy is not weighted, as Keras's metrics


# 5. class_weight is the sample_weight it stands for, exactly ------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss, n_out", [("softmax", 4), ("bce", 1)])
def test_class_weight_equals_the_equivalent_sample_weight_exactly(loss, n_out, backend):
    x, y = data(LOSSES[loss][0], 30, n_out, np.random.default_rng(4))
    classes = {0: 0.5, 1: 3.0} if loss == "bce" else {0: 0.5, 2: 3.0, 3: 0.0}  # class 1 left out: weight 1
    labels = y[:, 0].astype(int) if loss == "bce" else y
    sample = np.array([classes.get(c, 1.0) for c in labels])
    results = []
    for weights in ({"class_weight": classes}, {"sample_weight": sample}):
        m = model(loss, backend, "float32", n_out=n_out, dropout=True, seed=5)
        history = m.fit(x, y, epochs=2, batch_size=8, progress=False, **weights)
        results.append((m.params.tobytes(), history["loss"]))
    assert results[0] == results[1]
    unweighted = model(loss, backend, "float32", n_out=n_out, dropout=True, seed=5)
    unweighted.fit(x, y, epochs=2, batch_size=8, progress=False)
    assert unweighted.params.tobytes() != results[0][0]


# 6. the same bits on 1 and 2 threads ---------------------------------------------------------------

_THREADS = """
import json, sys
import numpy as np, numba
sys.path.insert(0, {tests!r})
import test_sample_weights as t
out = {{"threads": numba.get_num_threads()}}
rng = np.random.default_rng(0)
for loss in t.LOSSES:
    m = t.fn.Sequential(t.fn.Dense(200, 67), t.fn.ReLU(), t.fn.Dense(67, t.LOSSES[loss][1]),
                        loss=t.LOSSES[loss][0](), dtype="float32", seed=0)
    x, y = t.data(t.LOSSES[loss][0], 257, m.n_out, rng, n_in=200)
    value, grads = t.step(m, x, y, 3 * rng.random(len(x)))
    out[loss] = [float(value), grads.tobytes().hex()]
print(json.dumps(out))
"""


def test_weighted_step_gives_identical_bits_with_1_and_2_threads():
    runs = []
    for n in (1, 2):
        env = dict(os.environ, NUMBA_NUM_THREADS=str(n))
        code = _THREADS.format(tests=str(Path(__file__).parent))
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert (runs[0].pop("threads"), runs[1].pop("threads")) == (1, 2)
    assert runs[0] == runs[1]


_TWO_RANKS = """
import numpy as np
from mpi4py import MPI
import fastnet as fn
rng = np.random.default_rng(0)
x, y, w = rng.standard_normal((61, 6)), rng.integers(0, 4, 61), 3 * rng.random(61)
models = [fn.Sequential(fn.Dense(6, 5), fn.Tanh(), fn.Dense(5, 4), loss=fn.SoftmaxCrossEntropy(), dtype="float64",
                        seed=0) for _ in range(3)]
two, one, plain = models
two.fit(x, y, epochs=2, batch_size=10, sample_weight=w, comm=MPI.COMM_WORLD, progress=False)
one.fit(x, y, epochs=2, batch_size=10, sample_weight=w, progress=False)
plain.fit(x, y, epochs=2, batch_size=10, progress=False)
assert np.allclose(two.params, one.params, rtol=1e-9, atol=1e-12) and not np.allclose(plain.params, one.params)
assert np.allclose(two.history["loss"], one.history["loss"], rtol=1e-9)
scores = two.evaluate(x, y, sample_weight=w, comm=MPI.COMM_WORLD), one.evaluate(x, y, sample_weight=w)
assert abs(scores[0]["loss"] - scores[1]["loss"]) <= 1e-9 * scores[1]["loss"], scores
print("same")
"""


def test_two_ranks_train_and_evaluate_with_weights_as_one_process():
    from test_mpi import same_on_two_ranks
    same_on_two_ranks(_TWO_RANKS)

# 7. bad weights: one line that says what is wrong -------------------------------------------------

N = 10
BAD = [
    ({"sample_weight": np.ones(N - 1)}, fn.ShapeError, "shape (10,)"),
    ({"sample_weight": np.ones((N, 1))}, fn.ShapeError, "np.ravel"),
    ({"sample_weight": ["a"] * N}, fn.DTypeError, "numbers"),
    ({"sample_weight": np.r_[np.ones(N - 1), np.nan]}, fn.InputError, "row 9"),
    ({"sample_weight": np.r_[np.ones(N - 1), np.inf]}, fn.InputError, "finite"),
    ({"sample_weight": np.r_[-1.0, np.ones(N - 1)]}, fn.InputError, ">= 0"),
    ({"sample_weight": np.zeros(N)}, fn.InputError, "weight 0"),
    ({"sample_weight": np.full(N, 1e300)}, fn.InputError, "overflows float32"),
    ({"class_weight": [1.0, 2.0]}, fn.ConfigError, "dict"),
    ({"class_weight": {4: 1.0}}, fn.ConfigError, "0..3"),
    ({"class_weight": {"cat": 1.0}}, fn.ConfigError, "not a class"),
    ({"class_weight": {0: -2.0}}, fn.InputError, ">= 0"),
    ({"class_weight": {0: float("nan")}}, fn.InputError, "finite"),
    ({"class_weight": {0: 0.0, 1: 0, 2: 0, 3: 0}}, fn.InputError, "weight 0"),
    ({"class_weight": {0: 1.0}, "sample_weight": np.ones(N)}, fn.ConfigError, "not both"),
]


@pytest.mark.parametrize("kwargs, error, words", BAD, ids=[f"{i}" for i in range(len(BAD))])
def test_bad_weights_are_one_line_errors_before_training(kwargs, error, words):
    m = model("softmax", "numpy", "float32")
    x, y = data(fn.SoftmaxCrossEntropy, N, m.n_out, np.random.default_rng(0))
    before = m.params.copy()
    with pytest.raises(error) as e:
        m.fit(x, y, progress=False, **kwargs)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert np.array_equal(m.params, before) and len(m.history) == 0
    if "class_weight" not in kwargs:
        with pytest.raises(error):
            m.evaluate(x, y, **kwargs)


@pytest.mark.parametrize("loss, n_out", [("mse", 2), ("bce", 3)])
def test_class_weight_without_class_labels_names_sample_weight(loss, n_out):
    m = model(loss, "numpy", n_out=n_out)
    x, y = data(LOSSES[loss][0], N, n_out, np.random.default_rng(0))
    with pytest.raises(fn.ConfigError, match="sample_weight instead"):
        m.fit(x, y, progress=False, class_weight={0: 1.0})


def test_evaluate_on_no_samples_with_no_weights_is_nan_not_an_error():
    m = model("softmax", "numpy")
    x, y = data(fn.SoftmaxCrossEntropy, 0, m.n_out, np.random.default_rng(0))
    scores = m.evaluate(x, y, sample_weight=np.ones(0))
    assert np.isnan(scores["loss"]) and np.isnan(scores["accuracy"])
