"""Kernel benchmarks: each numba kernel against its NumPy twin and against NumPy's own ``@``.

Run:  pytest bench/bench_kernels.py --benchmark-only [--bench-quick]
      (bench/ is outside pyproject's testpaths, so name the file)

Every case is a (op, B) group of contenders, adjacent in the run:
    numba    the numba kernel, unchecked (``backend.raw``), output preallocated
    twin     its NumPy twin, the same call on the numpy backend
    matmul   NumPy's plain ``@`` on the same shapes (no bias, no activation): BLAS, the bar to meet

The compact table with ratios (docs/performance.md, "Kernels") comes from bench/kernel_table.py,
which times the same cases with the contenders interleaved.
"""
import numpy as np
import pytest

from fastnet.kernels import ACT, get_backend

BATCHES = (32, 64, 128, 256)
SIGMOID = ACT["sigmoid"]
IDENTITY = ACT["identity"]


def _dense_forward(n_in, n_out, act):
    # x (B, IN), w (OUT, IN), b (OUT,) -> y (B, OUT) = f(x @ w.T + b)
    def setup(B, rng):
        x = rng.standard_normal((B, n_in), dtype=np.float32)
        w = rng.standard_normal((n_out, n_in), dtype=np.float32) * np.float32(0.05)
        b = rng.standard_normal(n_out, dtype=np.float32)
        y = np.empty((B, n_out), np.float32)
        return {
            "numba": lambda k: k.dense_forward(y, x, w, b, act, 1.0, 1.0),
            "twin": lambda k: k.dense_forward(y, x, w, b, act, 1.0, 1.0),
            "matmul": lambda k: np.matmul(x, w.T, out=y),
        }
    return setup


def _dense_dw(n_in, n_out):
    # dy (B, OUT), x (B, IN) -> dw (OUT, IN) = dy.T @ x, db (OUT,)
    def setup(B, rng):
        x = rng.standard_normal((B, n_in), dtype=np.float32)
        dy = rng.standard_normal((B, n_out), dtype=np.float32)
        dw = np.empty((n_out, n_in), np.float32)
        db = np.empty(n_out, np.float32)
        return {
            "numba": lambda k: k.dense_backward_dw(dw, db, dy, x),
            "twin": lambda k: k.dense_backward_dw(dw, db, dy, x),
            "matmul": lambda k: np.matmul(dy.T, x, out=dw),
        }
    return setup


def _dense_dx(n_in, n_out, act):
    # dy (B, OUT), w (OUT, IN), a (B, IN) -> dx (B, IN) = (dy @ w) * f'(a)
    def setup(B, rng):
        dy = rng.standard_normal((B, n_out), dtype=np.float32)
        w = rng.standard_normal((n_out, n_in), dtype=np.float32)
        a = rng.random((B, n_in), dtype=np.float32)
        dx = np.empty((B, n_in), np.float32)
        return {
            "numba": lambda k: k.dense_backward_dx(dx, dy, w, a, act, 1.0, 1.0),
            "twin": lambda k: k.dense_backward_dx(dx, dy, w, a, act, 1.0, 1.0),
            "matmul": lambda k: np.matmul(dy, w, out=dx),
        }
    return setup


def _activation(n, act):
    # z (B, N) -> y (B, N) = f(z): the cost a fused epilogue saves
    def setup(B, rng):
        z = rng.standard_normal((B, n), dtype=np.float32)
        y = np.empty_like(z)
        return {
            "numba": lambda k: k.activation_forward(y, z, act, 1.0, 1.0),
            "twin": lambda k: k.activation_forward(y, z, act, 1.0, 1.0),
        }
    return setup


def _softmax_ce(n_cls):
    # z (B, C), labels (B,) -> dz (B, C), mean loss
    def setup(B, rng):
        z = rng.standard_normal((B, n_cls), dtype=np.float32)
        labels = rng.integers(0, n_cls, B, dtype=np.int64)
        dz = np.empty_like(z)
        return {
            "numba": lambda k: k.softmax_ce(dz, z, labels),
            "twin": lambda k: k.softmax_ce(dz, z, labels),
        }
    return setup


# op id -> setup(B, rng) giving {contender: call(kernels)}; the order here is the report's order
CASES = {
    "fwd784x128": _dense_forward(784, 128, SIGMOID),
    "fwd128x10": _dense_forward(128, 10, IDENTITY),
    "dw784x128": _dense_dw(784, 128),
    "dw128x10": _dense_dw(128, 10),
    "dx128x10": _dense_dx(128, 10, SIGMOID),
    "sigmoid128": _activation(128, SIGMOID),
    "softmaxce10": _softmax_ce(10),
}
TITLES = {
    "fwd784x128": "forward (Bx784)(784x128) + bias + sigmoid",
    "fwd128x10": "forward (Bx128)(128x10) + bias",
    "dw784x128": "dW (784xB)(Bx128) + db",
    "dw128x10": "dW (128xB)(Bx10) + db",
    "dx128x10": "dx (Bx10)(10x128) * sigmoid'",
    "sigmoid128": "sigmoid alone on (B,128) (activation_forward)",
    "softmaxce10": "softmax-CE on (B,10), loss + gradient",
}


def contenders(op, B, seed=0):
    """{contender: zero-argument callable} for one case, every call compiled and warmed up."""
    calls = CASES[op](B, np.random.default_rng(seed))
    bound = {}
    for who, call in calls.items():
        kernels = None if who == "matmul" else get_backend("numba" if who == "numba" else "numpy").raw
        bound[who] = (lambda call=call, kernels=kernels: call(kernels))
        for _ in range(3):
            bound[who]()  # compile (or load from cache) and warm up
    return bound


PARAMS = [
    pytest.param(op, B, who, id=f"{op}-B{B}-{who}")
    for op in CASES
    for B in BATCHES
    for who in CASES[op](1, np.random.default_rng(0))
]


@pytest.mark.parametrize("op, B, who", PARAMS)
def test_kernel(benchmark, op, B, who, quick):
    fn = contenders(op, B)[who]
    benchmark.group = f"{TITLES[op]}, B={B}"
    benchmark.extra_info.update(op=op, B=B, contender=who)
    benchmark.pedantic(fn, rounds=10 if quick else 300, iterations=5, warmup_rounds=20)
