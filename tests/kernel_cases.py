"""Case builders shared by the kernel tests.

For every kernel in ``fastnet.kernels.TWINS`` this module says how to build
realistic arguments of given sizes, which arguments the kernel writes, and how
large the rounding error of each written value may honestly be. The twin test,
the thread-count test and the door test all start from these cases, and
``test_every_kernel_has_a_case_builder`` fails when a kernel has none.

The reference maths here (``act_ref`` and friends) is written from the
textbook formulas, independently of the kernels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from fastnet.kernels import ACT

DTYPES = (np.float32, np.float64)
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
# Only there so that underflowed results (exp(-80) in float32) compare equal; far
# below any value a kernel computes from O(1) inputs.
ATOL = {np.float32: 1e-35, np.float64: 1e-300}

# Every activation code, plus the parameters that change the maths: the generalised
# sigmoid a / (1 + exp(-z / b)) with a != 1, b != 1 (the kernels take p0 = a, p1 = 1/b)
# and a leaky relu slope.
ACT_VARIANTS: dict[str, tuple[int, float, float]] = {
    "identity": (ACT["identity"], 0.0, 0.0),
    "sigmoid": (ACT["sigmoid"], 1.0, 1.0),
    "sigmoid_a2.5_b0.5": (ACT["sigmoid"], 2.5, 1 / 0.5),
    "tanh": (ACT["tanh"], 0.0, 0.0),
    "relu": (ACT["relu"], 0.0, 0.0),
    "leaky_relu_0.1": (ACT["leaky_relu"], 0.1, 0.0),
}
assert {code for code, _, _ in ACT_VARIANTS.values()} == set(ACT.values()), "a new activation code needs a variant"


# ---- reference maths (float64, textbook formulas) ------------------------------------

def act_ref(z, act, p0, p1):
    """f(z) in float64 (for the sigmoid, p0 = a and p1 = 1/b)."""
    z = np.asarray(z, np.float64)
    if act == ACT["sigmoid"]:
        a, b = p0, 1.0 / p1
        with np.errstate(over="ignore"):
            return a / (1.0 + np.exp(-z / b))
    if act == ACT["tanh"]:
        return np.tanh(z)
    if act == ACT["relu"]:
        return np.where(z > 0, z, 0.0)
    if act == ACT["leaky_relu"]:
        return np.where(z > 0, z, p0 * z)
    return z.copy()


def act_lipschitz(act, p0, p1):
    """max |f'(z)|: how much an error in z can grow through f."""
    if act == ACT["sigmoid"]:
        return p0 * p1 / 4  # a / (4 b)
    if act == ACT["leaky_relu"]:
        return max(1.0, p0)
    return 1.0


def act_grad_terms(y, act, p0, p1):
    """Size of the terms the derivative-from-output formula combines.

    sigmoid's y (1 - y/a) (1/b) and tanh's 1 - y^2 subtract nearly equal numbers where
    the activation saturates, so their rounding error is relative to these terms, not
    to the (small) result.
    """
    y = np.abs(np.asarray(y, np.float64))
    if act == ACT["sigmoid"]:
        return y * (1 + y / p0) * p1
    if act == ACT["tanh"]:
        return 1 + y * y
    return np.full_like(y, act_lipschitz(act, p0, p1))


# ---- cases -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Sizes:
    """rows: the batch (may be 0); cols and inner: the other dimensions (>= 1)."""

    rows: int
    cols: int
    inner: int


@dataclass
class Case:
    """One call (or a few steps) of a kernel.

    args     positional arguments, arrays first; ``run`` works on copies
    writes   indices of the arrays the kernel writes: outputs and in-place state
    scale    per written index, the magnitude of the terms that were summed to get
             each element; the allowed error is rtol * (|reference| + scale)
    returns  what the kernel returns: None, "float" (a loss) or "count" (an int)
    ret_scale  for a returned float, the size of the terms summed into it
    steps    calls in a row (optimizers); ``before_step(args, k)`` sets up call k
    """

    args: tuple
    writes: tuple[int, ...]
    scale: dict[int, Any] = field(default_factory=dict)
    returns: str | None = None
    ret_scale: float = 0.0
    steps: int = 1
    before_step: Callable[[list, int], None] | None = None

    def fresh_args(self) -> list:
        return [a.copy() if isinstance(a, np.ndarray) else a for a in self.args]

    def run(self, kernel) -> tuple[list[np.ndarray], list]:
        """Call ``kernel`` on copies of the arguments; return (written arrays, returned values)."""
        args = self.fresh_args()
        rets = []
        for k in range(self.steps):
            if self.before_step is not None:
                self.before_step(args, k)
            rets.append(kernel(*args))
        return [args[i] for i in self.writes], rets


@dataclass(frozen=True)
class KernelCases:
    build: Callable[[np.random.Generator, type, Sizes, Any], Case]
    variants: dict[str, Any]


CASES: dict[str, KernelCases] = {}


def builds(name: str, variants: dict[str, Any] | None = None):
    """Register a case builder for kernel ``name``."""
    def register(fn):
        assert name not in CASES, f"two builders for {name}"
        CASES[name] = KernelCases(fn, variants or {"default": None})
        return fn
    return register


def all_variants() -> list[tuple[str, str]]:
    """(kernel, variant) pairs, for parametrize."""
    return [(name, v) for name, kc in CASES.items() for v in kc.variants]


def build(name: str, variant: str, rng: np.random.Generator, dtype, sizes: Sizes) -> Case:
    kc = CASES[name]
    return kc.build(rng, dtype, sizes, kc.variants[variant])


def _normal(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _unwritten(shape, dtype):
    """An output buffer full of NaN, so an element the kernel forgets to write shows up."""
    return np.full(shape, np.nan, dtype)


def _away_from_zero(rng, n, dtype):
    """Values in ±[1, 2]: small optimizer updates never cancel them."""
    return (rng.uniform(1, 2, n) * rng.choice([-1.0, 1.0], n)).astype(dtype)


@builds("dense_forward", ACT_VARIANTS)
def _dense_forward(rng, dtype, s, variant):
    act, p0, p1 = variant
    b_, o_, i_ = s.rows, s.cols, s.inner
    x, w, b = _normal(rng, (b_, i_), dtype), _normal(rng, (o_, i_), dtype), _normal(rng, o_, dtype)
    # The GEMM error bound: a sum of I products computed in any order is off by at most
    # about I * eps * sum_i |x_i w_i|, so each element of x @ w.T + b is compared against
    # (|x| @ |w|.T + |b|), not against its own (possibly cancelled, tiny) value. The
    # activation then stretches that error by at most max|f'|.
    gemm = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T + np.abs(b)
    y = _unwritten((b_, o_), dtype)
    return Case((y, x, w, b, act, p0, p1), writes=(0,), scale={0: act_lipschitz(act, p0, p1) * gemm})


@builds("dense_backward_dx", ACT_VARIANTS)
def _dense_backward_dx(rng, dtype, s, variant):
    act, p0, p1 = variant
    b_, o_, i_ = s.rows, s.cols, s.inner
    dy, w = _normal(rng, (b_, o_), dtype), _normal(rng, (o_, i_), dtype)
    a = act_ref(_normal(rng, (b_, i_), np.float64, 2.0), act, p0, p1).astype(dtype)  # a real activation output
    # GEMM bound for dy @ w (see dense_forward), times the size of f'(a)'s terms.
    gemm = np.abs(dy.astype(np.float64)) @ np.abs(w.astype(np.float64))
    dx = _unwritten((b_, i_), dtype)
    return Case((dx, dy, w, a, act, p0, p1), writes=(0,), scale={0: gemm * act_grad_terms(a, act, p0, p1)})


@builds("dense_backward_dw")
def _dense_backward_dw(rng, dtype, s, _):
    b_, o_, i_ = s.rows, s.cols, s.inner
    dy, x = _normal(rng, (b_, o_), dtype), _normal(rng, (b_, i_), dtype)
    ady = np.abs(dy.astype(np.float64))
    scale = {0: ady.T @ np.abs(x.astype(np.float64)), 1: ady.sum(axis=0)}  # GEMM bound, see dense_forward
    return Case((_unwritten((o_, i_), dtype), _unwritten(o_, dtype), dy, x), writes=(0, 1), scale=scale)


@builds("activation_forward", ACT_VARIANTS)
def _activation_forward(rng, dtype, s, variant):
    act, p0, p1 = variant
    z = _normal(rng, (s.rows, s.cols), dtype, 3.0)
    return Case((_unwritten(z.shape, dtype), z, act, p0, p1), writes=(0,))


@builds("activation_backward", ACT_VARIANTS)
def _activation_backward(rng, dtype, s, variant):
    act, p0, p1 = variant
    dy = _normal(rng, (s.rows, s.cols), dtype)
    y = act_ref(_normal(rng, dy.shape, np.float64, 2.0), act, p0, p1).astype(dtype)
    scale = np.abs(dy.astype(np.float64)) * act_grad_terms(y, act, p0, p1)
    return Case((_unwritten(dy.shape, dtype), dy, y, act, p0, p1), writes=(0,), scale={0: scale})


@builds("softmax_ce")
def _softmax_ce(rng, dtype, s, _):
    z = _normal(rng, (s.rows, s.cols), dtype, 3.0)
    labels = rng.integers(0, s.cols, s.rows).astype(np.int64)
    onehot = np.zeros(z.shape)
    onehot[np.arange(s.rows), labels] = 1
    n = max(s.rows, 1)
    # dz[label] = (p - 1) / B cancels when p -> 1: its error is relative to 1/B.
    # Each row's loss is log(sum exp(z - max)) - (z[label] - max): the log is off by
    # about eps (the sum is >= 1), the difference by eps |z[label] - max|.
    z64 = z.astype(np.float64)
    gap = np.abs(z64[np.arange(s.rows), labels] - z64.max(axis=1)) if s.rows else np.zeros(0)
    return Case((_unwritten(z.shape, dtype), z, labels), writes=(0,), scale={0: onehot / n},
                returns="float", ret_scale=float((1 + gap).sum() / n))


@builds("softmax")
def _softmax(rng, dtype, s, _):
    z = _normal(rng, (s.rows, s.cols), dtype, 3.0)
    return Case((_unwritten(z.shape, dtype), z), writes=(0,))


@builds("mse")
def _mse(rng, dtype, s, _):
    p, t = _normal(rng, (s.rows, s.cols), dtype), _normal(rng, (s.rows, s.cols), dtype)
    return Case((_unwritten(p.shape, dtype), p, t), writes=(0,), returns="float")  # a sum of squares


@builds("sigmoid_bce")
def _sigmoid_bce(rng, dtype, s, _):
    z = _normal(rng, (s.rows, s.cols), dtype, 3.0)
    t = rng.integers(0, 2, z.shape).astype(dtype)
    n = max(z.size, 1)
    # sigmoid(z) - 1 cancels where the target is 1; each loss term max(z,0) - z t + log1p(.)
    # subtracts numbers as large as |z|.
    return Case((_unwritten(z.shape, dtype), z, t), writes=(0,), scale={0: t.astype(np.float64) / n},
                returns="float", ret_scale=float((np.abs(z.astype(np.float64)) + 1).sum() / n))



def _weighted(name: str):
    """Register ``name + "_weighted"``: ``name``'s case with per-row weights in [0, 3) appended. Row r's
    loss terms and gradient are w[r] times the unweighted ones, and so is their rounding error."""
    unweighted = CASES[name].build

    @builds(name + "_weighted")
    def build(rng, dtype, s, variant):
        case = unweighted(rng, dtype, s, variant)
        w = (3 * rng.random(s.rows)).astype(dtype)
        scale = {i: v * w.astype(np.float64)[:, None] for i, v in case.scale.items()}
        return Case(case.args + (w,), case.writes, scale, case.returns, 3 * case.ret_scale)
    return build


for _name in ("softmax_ce", "mse", "sigmoid_bce"):
    _weighted(_name)

@builds("dropout")
def _dropout(rng, dtype, s, _):
    x = _normal(rng, (s.rows, s.cols), dtype)
    mask = (rng.random(x.shape) >= 0.3).astype(np.uint8)
    return Case((_unwritten(x.shape, dtype), x, mask, 1 / (1 - 0.3)), writes=(0,))


@builds("penalty")
def _penalty(rng, dtype, s, _):
    n = s.rows * s.cols
    dw, w = _normal(rng, n, dtype), _normal(rng, n, dtype)  # dw accumulates: it starts as a gradient
    l1, l2 = 0.01, 0.1
    # dw + l1 sign(w) + l2 w may cancel; the loss is a sum of non-negative terms.
    scale = np.abs(dw.astype(np.float64)) + l1 + l2 * np.abs(w.astype(np.float64))
    return Case((dw, w, l1, l2), writes=(0,), scale={0: scale}, returns="float")


def _gradients(rng, n, dtype, steps):
    return [_normal(rng, n, dtype) for _ in range(steps)]


def _set_gradient(index, grads):
    def before_step(args, k):
        args[index][...] = grads[k]
    return before_step


# Optimizers: a few steps with a fresh gradient each; weights sit in ±[1, 2] and the
# updates are small, so a weight never cancels to near zero. Running averages
# (velocity, first moment) can cancel: their error is relative to the sum of the
# magnitudes that went into them.

@builds("sgd")
def _sgd(rng, dtype, s, _):
    n, steps = s.rows * s.cols, 3
    grads = _gradients(rng, n, dtype, steps)
    return Case((_away_from_zero(rng, n, dtype), grads[0].copy(), 0.05), writes=(0,), steps=steps,
                before_step=_set_gradient(1, grads))


@builds("sgd_momentum", {"heavy_ball": False, "nesterov": True})
def _sgd_momentum(rng, dtype, s, nesterov):
    n, steps, mu = s.rows * s.cols, 3, 0.9
    grads = _gradients(rng, n, dtype, steps)
    v = _normal(rng, n, dtype, 0.1)
    v_scale = np.abs(v.astype(np.float64))
    for g in grads:
        v_scale = mu * v_scale + np.abs(g)
    return Case((_away_from_zero(rng, n, dtype), v, grads[0].copy(), 0.01, mu, nesterov), writes=(0, 1),
                scale={1: v_scale}, steps=steps, before_step=_set_gradient(2, grads))


@builds("adam")
def _adam(rng, dtype, s, _):
    n, steps, b1, b2 = s.rows * s.cols, 3, 0.9, 0.999
    grads = _gradients(rng, n, dtype, steps)
    m = _normal(rng, n, dtype, 0.1)
    v = (0.01 * rng.random(n)).astype(dtype)
    m_scale = np.abs(m.astype(np.float64))
    for g in grads:
        m_scale = b1 * m_scale + (1 - b1) * np.abs(g)

    def before_step(args, k):
        args[3][...] = grads[k]
        args[8], args[9] = 1 - b1 ** (k + 1), 1 - b2 ** (k + 1)  # bias corrections of step k + 1

    args = (_away_from_zero(rng, n, dtype), m, v, grads[0].copy(), 1e-3, b1, b2, 1e-8, 1.0, 1.0)
    return Case(args, writes=(0, 1, 2), scale={1: m_scale}, steps=steps, before_step=before_step)


@builds("gather_rows", {"uint8_scaled": (np.uint8, 255.0), "same_dtype_copy": (None, 1.0),
                        "other_float_scaled": ("other", 3.0), "int64_scaled": (np.int64, 7.0)})
def _gather_rows(rng, dtype, s, variant):
    source, divisor = variant
    source = {None: dtype, "other": np.float64 if dtype == np.float32 else np.float32}.get(source, source)
    n = s.inner  # rows in the data set
    if np.dtype(source).kind == "f":
        x = _normal(rng, (n, s.cols), source)
    else:
        x = rng.integers(0, 256, (n, s.cols)).astype(source)
    idx = rng.integers(0, n, s.rows).astype(np.int64)
    return Case((_unwritten((s.rows, s.cols), dtype), x, idx, divisor), writes=(0,))


@builds("argmax_hits", {"random": False, "ties": True})
def _argmax_hits(rng, dtype, s, ties):
    # With ties (small integers) the first maximum must win, as in np.argmax.
    z = rng.integers(0, 3, (s.rows, s.cols)).astype(dtype) if ties else _normal(rng, (s.rows, s.cols), dtype)
    labels = rng.integers(0, s.cols, s.rows).astype(np.int64)
    half = rng.random(s.rows) < 0.5
    labels[half] = z.argmax(axis=1)[half]  # about half the rows are hits
    return Case((z, labels), writes=(), returns="count")


@builds("threshold_hits")
def _threshold_hits(rng, dtype, s, _):
    z = _normal(rng, (s.rows, s.cols), dtype)
    z[rng.random(z.shape) < 0.1] = 0  # z = 0 is not > 0
    t = rng.integers(0, 2, z.shape).astype(dtype)
    return Case((z, t), writes=(), returns="count")


# ---- comparing -------------------------------------------------------------------------

def mismatch(got, ref, rtol, atol, scale=0.0) -> str | None:
    """None if |got - ref| <= rtol * (|ref| + scale) + atol everywhere (NaN only where ref is NaN)."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return f"shape {got.shape} != {ref.shape}"
    with np.errstate(invalid="ignore"):
        err = np.abs(got - ref)
        tol = rtol * (np.abs(ref) + scale) + atol
        ok = (err <= tol) | (got == ref) | (np.isnan(got) & np.isnan(ref))
    if ok.all():
        return None
    i = np.unravel_index(np.argmax(~ok), ok.shape) if ok.ndim else ()
    return (f"{(~ok).sum()} of {ok.size} elements differ; e.g. at {i}: got {got[i]!r}, reference {ref[i]!r}, "
            f"|diff| {err[i]:.3g} > allowed {np.broadcast_to(tol, ok.shape)[i]:.3g}")
