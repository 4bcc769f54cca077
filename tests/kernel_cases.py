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


# ---- convolution and pooling -----------------------------------------------------------
#
# Sizes map onto image geometry: rows is the batch; cols and inner choose the channels, the
# window and the image, so that Sizes(1, 1, 1) is one 1x1 image with one channel and a 1x1
# kernel, and larger sizes give odd, non-square images that the window does not divide. The
# rng picks stride (up to 3) and padding (up to k - 1, what Conv2D accepts), so the hypothesis
# seed covers them. Images are flat per sample, NCHW, as the kernels take them.

def conv_ref(x, w, b, stride, pad):
    """Cross-correlation in float64, as torch.nn.functional.conv2d: x (B, C, H, W), w (O, C, K, K) -> (B, O, OH, OW)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    k = w.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (xp.shape[2] - k) // stride + 1, (xp.shape[3] - k) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], oh, ow)) + np.asarray(b, np.float64)[None, :, None, None]
    for i in range(k):
        for j in range(k):
            patch = xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
            out += np.einsum("bchw,oc->bohw", patch, w[:, :, i, j])
    return out


def conv_grads_ref(g, x, w, stride, pad):
    """(dx, dw, db) of sum(conv_ref(x, w, b) * g) in float64, written from the same sums backwards."""
    x, w, g = np.asarray(x, np.float64), np.asarray(w, np.float64), np.asarray(g, np.float64)
    k = w.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = g.shape[2], g.shape[3]
    dxp, dw = np.zeros_like(xp), np.zeros(w.shape)
    for i in range(k):
        for j in range(k):
            window = (slice(None), slice(None), slice(i, i + stride * oh, stride), slice(j, j + stride * ow, stride))
            dw[:, :, i, j] = np.einsum("bohw,bchw->oc", g, xp[window])
            dxp[window] += np.einsum("bohw,oc->bchw", g, w[:, :, i, j])
    dx = dxp[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]]
    return dx, dw, g.sum(axis=(0, 2, 3))


def pool_windows_ref(x, size, stride):
    """(B, C, OH, OW, size·size) float64 windows of images x (B, C, H, W), in (i, j) order."""
    x = np.asarray(x, np.float64)
    oh, ow = (x.shape[2] - size) // stride + 1, (x.shape[3] - size) // stride + 1
    return np.stack([x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
                     for i in range(size) for j in range(size)], axis=-1)


def pool_scatter_ref(values, image_shape, size, stride):
    """The adjoint of pool_windows_ref: values (B, C, OH, OW, size·size) added back into images."""
    out = np.zeros(image_shape)
    oh, ow = values.shape[2], values.shape[3]
    for i in range(size):
        for j in range(size):
            out[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += values[..., i * size + j]
    return out


@dataclass(frozen=True)
class ConvGeometry:
    batch: int
    c_in: int
    c_out: int
    h: int
    wd: int
    k: int
    stride: int
    pad: int

    @property
    def out_hw(self) -> tuple[int, int]:
        return ((self.h + 2 * self.pad - self.k) // self.stride + 1, (self.wd + 2 * self.pad - self.k) // self.stride + 1)

    @property
    def args(self) -> tuple:
        """The kernels' geometry arguments, after the arrays: c_in, h, wd, k, stride, pad."""
        return (self.c_in, self.h, self.wd, self.k, self.stride, self.pad)


def conv_geometry(rng, s: Sizes) -> ConvGeometry:
    k = 1 if min(s.cols, s.inner) == 1 else 1 + (s.cols + s.inner) % 5
    pad = int(rng.integers(0, k))
    # at least one output position; (cols - 1) and (inner - 1) grow the image past the window
    h = max(1, k - 2 * pad) + (s.cols - 1) % 9
    wd = max(1, k - 2 * pad) + (s.inner - 1) % 7
    return ConvGeometry(s.rows, 1 + (s.inner - 1) % 3, 1 + (s.cols - 1) % 6, h, wd, k,
                        int(rng.choice([1, 1, 2, 3])), pad)


def pool_geometry(rng, s: Sizes) -> ConvGeometry:
    """k is the window; stride may be below it (overlapping windows), equal, or above (gaps); no padding."""
    size = 1 + (s.cols - 1) % 4
    c = 1 + (s.inner - 1) % 4
    stride = int(rng.choice([size, size, max(size - 1, 1), size + 1]))
    # (cols - 1) and (inner - 1) add whole strides (more windows) and a remainder the windows leave out
    h = size + stride * ((s.cols - 1) % 6) + (s.cols - 1) % 3
    wd = size + stride * ((s.inner - 1) % 5) + (s.inner - 1) % 2
    return ConvGeometry(s.rows, c, c, h, wd, size, stride, 0)


def _images(rng, geo: ConvGeometry, dtype, scale=1.0):
    return _normal(rng, (geo.batch, geo.c_in, geo.h, geo.wd), dtype, scale)


def _flat(a):
    return np.ascontiguousarray(a.reshape(a.shape[0], int(np.prod(a.shape[1:]))))  # -1 fails for B = 0


# conv_backward takes two activations: f of its own output (act) and f_in of its input (in_act,
# when the op below left its derivative to this one). Each code appears in both places.
_ACT_NAMES = list(ACT_VARIANTS)
CONV_BACKWARD_VARIANTS = {f"{a}-in_{b}": (ACT_VARIANTS[a], ACT_VARIANTS[b])
                          for a, b in zip(_ACT_NAMES, _ACT_NAMES[1:] + _ACT_NAMES[:1])}


@builds("conv_forward", ACT_VARIANTS)
def _conv_forward(rng, dtype, s, variant):
    act, p0, p1 = variant
    geo = conv_geometry(rng, s)
    x = _images(rng, geo, dtype)
    w = _normal(rng, (geo.c_out, geo.c_in * geo.k * geo.k), dtype)
    b = _normal(rng, geo.c_out, dtype)
    # GEMM bound as for dense_forward: the same sums over |x| and |w|
    absw = np.abs(w.astype(np.float64)).reshape(geo.c_out, geo.c_in, geo.k, geo.k)
    gemm = conv_ref(np.abs(x.astype(np.float64)), absw, np.abs(b), geo.stride, geo.pad)
    oh, ow = geo.out_hw
    y = _unwritten((geo.batch, geo.c_out * oh * ow), dtype)
    return Case((y, _flat(x), w, b, *geo.args, act, p0, p1), writes=(0,),
                scale={0: act_lipschitz(act, p0, p1) * _flat(gemm)})


@builds("conv_backward", CONV_BACKWARD_VARIANTS)
def _conv_backward(rng, dtype, s, variant):
    (act, p0, p1), (in_act, in_p0, in_p1) = variant
    geo = conv_geometry(rng, s)
    oh, ow = geo.out_hw
    # x is the output of the activation below (a = x), y that of this layer's own activation
    x = act_ref(_images(rng, geo, np.float64, 2.0), in_act, in_p0, in_p1).astype(dtype)
    w = _normal(rng, (geo.c_out, geo.c_in * geo.k * geo.k), dtype)
    b = _normal(rng, geo.c_out, dtype)
    w4 = w.reshape(geo.c_out, geo.c_in, geo.k, geo.k)
    y = act_ref(conv_ref(x, w4, b, geo.stride, geo.pad), act, p0, p1).astype(dtype)
    g = _normal(rng, y.shape, dtype)
    # g f'(y) is off by eps times the size of f'(y)'s terms; the sums then add such terms up
    gz = np.abs(g.astype(np.float64)) * act_grad_terms(y, act, p0, p1)
    dx_s, dw_s, db_s = conv_grads_ref(gz, np.abs(x.astype(np.float64)), np.abs(w4.astype(np.float64)),
                                      geo.stride, geo.pad)
    x_flat = _flat(x)
    dx_s = _flat(dx_s) * act_grad_terms(x_flat, in_act, in_p0, in_p1)
    args = (_unwritten(x_flat.shape, dtype), _unwritten(w.shape, dtype), _unwritten(geo.c_out, dtype), _flat(g),
            x_flat, w, _flat(y), x_flat.copy(), *geo.args, act, p0, p1, in_act, in_p0, in_p1)
    return Case(args, writes=(0, 1, 2), scale={0: dx_s, 1: dw_s.reshape(w.shape), 2: db_s})


@builds("maxpool_forward", {"random": False, "ties": True})
def _maxpool_forward(rng, dtype, s, ties):
    geo = pool_geometry(rng, s)
    # with ties (small integers) the first maximum in (i, j) order must win, as in np.argmax
    x = rng.integers(0, 3, (geo.batch, geo.c_in, geo.h, geo.wd)).astype(dtype) if ties else _images(rng, geo, dtype)
    oh, ow = geo.out_hw
    shape = (geo.batch, geo.c_in * oh * ow)
    return Case((_unwritten(shape, dtype), np.full(shape, 255, np.uint8), _flat(x), *geo.args[:5]), writes=(0, 1))


@builds("maxpool_backward")
def _maxpool_backward(rng, dtype, s, _):
    geo = pool_geometry(rng, s)
    oh, ow = geo.out_hw
    g = _normal(rng, (geo.batch, geo.c_in, oh, ow), dtype)
    arg = rng.integers(0, geo.k * geo.k, g.shape).astype(np.uint8)
    # overlapping windows add several g into one element, in another order in each twin
    picked = np.abs(g.astype(np.float64))[..., None] * (arg[..., None] == np.arange(geo.k * geo.k))
    scale = pool_scatter_ref(picked, (geo.batch, geo.c_in, geo.h, geo.wd), geo.k, geo.stride)
    return Case((_unwritten((geo.batch, geo.c_in * geo.h * geo.wd), dtype), _flat(g), _flat(arg), *geo.args[:5]),
                writes=(0,), scale={0: _flat(scale)})


@builds("avgpool_forward")
def _avgpool_forward(rng, dtype, s, _):
    geo = pool_geometry(rng, s)
    x = _images(rng, geo, dtype)
    oh, ow = geo.out_hw
    scale = pool_windows_ref(np.abs(x.astype(np.float64)), geo.k, geo.stride).mean(axis=-1)
    return Case((_unwritten((geo.batch, geo.c_in * oh * ow), dtype), _flat(x), *geo.args[:5]), writes=(0,),
                scale={0: _flat(scale)})


@builds("avgpool_backward")
def _avgpool_backward(rng, dtype, s, _):
    geo = pool_geometry(rng, s)
    oh, ow = geo.out_hw
    g = _normal(rng, (geo.batch, geo.c_in, oh, ow), dtype)
    share = np.repeat(np.abs(g.astype(np.float64))[..., None] / geo.k ** 2, geo.k * geo.k, axis=-1)
    scale = pool_scatter_ref(share, (geo.batch, geo.c_in, geo.h, geo.wd), geo.k, geo.stride)
    return Case((_unwritten((geo.batch, geo.c_in * geo.h * geo.wd), dtype), _flat(g), *geo.args[:5]), writes=(0,),
                scale={0: _flat(scale)})


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
