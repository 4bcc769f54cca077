"""2-D convolution (cross-correlation, as torch.nn.Conv2d), as im2col and one packed GEMM per batch.

Images are NCHW and flat per sample, as every buffer of the step is (B, width): x (B, C·H·W), y (B, O·P)
with P = OH·OW output positions, OH = (H + 2·pad - K) // stride + 1 (OW alike). The weight (O, C, K, K) is
passed as its (O, Q) view, Q = C·K·K.

    im2col       x (B, C·H·W)                    -> col (Q, B·P): col[(c·K + i)·K + j, b·P + oy·OW + ox]
                                                    = x[b, c, oy·s + i - pad, ox·s + j - pad], 0 outside
    forward      x (B, C·H·W), w (O, Q), b (O,)  -> y (B, O·P) = f(conv(x, w) + b)
    backward     g (B, O·P), w, col, y, a        -> dw (O, Q), db (O,), dx (B, C·H·W)

The batch is one GEMM: yc (O, B·P) = w @ col, then one pass adds the bias, applies f and writes yc
back in NCHW order (the epilogue). The backward turns g into gc (O, B·P) in one pass that also
multiplies by f'(y) (unless the op above did), then dw = gc @ col.T, db = row sums of gc, and
dcol = w.T @ gc, written over col (no longer needed), which col2im adds back into dx (B, C·H·W)
and multiplies by the derivative f_in'(a) of the activation below, when the op below left it
to this one. col (C·K·K, B·P) and gc (O, B·P) are scratch of the caller.

Threads: the GEMMs split their work by the shapes (see gemm.py); im2col gives each thread whole rows
of col, and col2im and the two transposing passes whole samples. Each output element is computed by
one thread in an order fixed by the shapes (col2im adds a sample's contributions in (c, i, j, oy, ox)
order), so results do not depend on the thread count. On threads these passes make a LeNet-5 epoch
about a fifth shorter on 2 quiet cores and cost nothing beside a busy process (docs/performance.md).
"""
import numpy as np

from numba import prange

from ._jit import ORDERED, jit, pjit
from .activations import ACTIVATIONS_NP, DERIVATIVES_NP, IDENTITY, act_grad, act_value, check_act
from .backend import twin
from .gemm import gemm_nn, gemm_nt, gemm_tn, workspace_size


@jit(inline="always")
def out_size(size, k, stride, pad):
    """Output positions along one axis: (size + 2·pad - k) // stride + 1 (0 when the kernel does not fit)."""
    return max((size + 2 * pad - k) // stride + 1, 0)


@jit(inline="always")
def _valid(k_off, pad, stride, size, n_out):
    # the output positions o in [lo, hi) whose input o·stride + k_off - pad lies in [0, size)
    lo = max(0, (pad - k_off + stride - 1) // stride)
    hi = min(n_out, (size - 1 + pad - k_off) // stride + 1)
    return lo, max(hi, lo)


# Row copies with unsigned indices: numba wraps negative indices around, and that check on every
# element kept LLVM from vectorising these loops (im2col of 28 x 28 images took 2.7x as long).
@jit(inline="always")
def _copy(dst, d0, src, s0, n, stride):
    # dst[d0 + e] = src[s0 + e·stride] for e < n
    d, s = np.uint64(d0), np.uint64(s0)
    if stride == 1:
        for e in range(np.uint64(n)):
            dst[d + e] = src[s + e]
    else:
        st = np.uint64(stride)
        for e in range(np.uint64(n)):
            dst[d + e] = src[s + e * st]


@jit(inline="always")
def _add(dst, d0, src, s0, n, stride):
    # dst[d0 + e·stride] += src[s0 + e] for e < n
    d, s = np.uint64(d0), np.uint64(s0)
    if stride == 1:
        for e in range(np.uint64(n)):
            dst[d + e] += src[s + e]
    else:
        st = np.uint64(stride)
        for e in range(np.uint64(n)):
            dst[d + e * st] += src[s + e]


@jit(inline="always")
def _zero(dst, d0, n):
    d = np.uint64(d0)
    for e in range(np.uint64(n)):
        dst[d + e] = 0


@pjit(fastmath=ORDERED)
def im2col(col, x, c_in, h, wd, k, stride, pad):
    # x (B, C·H·W) -> col (C·K·K, B·P), zeros where the window hangs over the padding
    oh, ow = out_size(h, k, stride, pad), out_size(wd, k, stride, pad)
    p, batch = oh * ow, x.shape[0]
    for r in prange(c_in * k * k):
        c, i, j = r // (k * k), r // k % k, r % k
        y_lo, y_hi = _valid(i, pad, stride, h, oh)
        x_lo, x_hi = _valid(j, pad, stride, wd, ow)
        row = col[r]
        for b in range(batch):
            src = x[b]
            _zero(row, b * p, y_lo * ow)
            for oy in range(y_lo, y_hi):
                dst = b * p + oy * ow
                _zero(row, dst, x_lo)
                _copy(row, dst + x_lo, src, (c * h + oy * stride + i - pad) * wd + x_lo * stride + j - pad,
                      x_hi - x_lo, stride)
                _zero(row, dst + x_hi, ow - x_hi)
            _zero(row, b * p + y_hi * ow, (oh - y_hi) * ow)


@pjit(fastmath=ORDERED)
def col2im(dx, dcol, a, c_in, h, wd, k, stride, pad, act, p0, p1):
    # dcol (C·K·K, B·P) -> dx (B, C·H·W) = the sum of each input's window contributions, times f'(a)
    oh, ow = out_size(h, k, stride, pad), out_size(wd, k, stride, pad)
    p = oh * ow
    t = dx.dtype.type
    c0, c1 = t(p0), t(p1)
    for b in prange(dx.shape[0]):
        dst = dx[b]
        dst[:] = 0
        for c in range(c_in):
            for i in range(k):
                y_lo, y_hi = _valid(i, pad, stride, h, oh)
                for j in range(k):
                    x_lo, x_hi = _valid(j, pad, stride, wd, ow)
                    row = dcol[(c * k + i) * k + j]
                    for oy in range(y_lo, y_hi):
                        _add(dst, (c * h + oy * stride + i - pad) * wd + x_lo * stride + j - pad, row,
                             b * p + oy * ow + x_lo, x_hi - x_lo, stride)
        if act != IDENTITY:
            src_a = a[b]
            for e in range(dst.shape[0]):
                dst[e] *= act_grad(src_a[e], act, c0, c1)


@jit(inline="always", fastmath=ORDERED)
def conv_forward_into(y, x, w, b, c_in, h, wd, k, stride, pad, act, p0, p1, col, yc, work):
    # x (B, C·H·W), w (O, C·K·K), b (O,) -> y (B, O·P) = f(conv(x, w) + b);
    # col (C·K·K, B·P), yc (O, B·P) scratch; work: the GEMM's packing space
    p = out_size(h, k, stride, pad) * out_size(wd, k, stride, pad)
    im2col(col, x, c_in, h, wd, k, stride, pad)
    gemm_nn(yc, w, col, work)
    _bias_act_nchw(y, yc, b, p, act, p0, p1)


@pjit(fastmath=ORDERED)
def _bias_act_nchw(y, yc, b, p, act, p0, p1):
    # yc (O, B·P) -> y (B, O·P) = f(yc + b), NCHW; a thread per sample
    t = y.dtype.type
    c0, c1 = t(p0), t(p1)
    for r in prange(y.shape[0]):
        for o in range(b.shape[0]):
            src, dst, bias = yc[o, r * p:(r + 1) * p], y[r, o * p:(o + 1) * p], b[o]
            for e in range(p):
                dst[e] = act_value(src[e] + bias, act, c0, c1)


@pjit(fastmath=ORDERED)
def _grad_cnhw(gc, g, y, p, act, p0, p1):
    # g (B, O·P) -> gc (O, B·P) = g · f'(y); a thread per sample
    t = g.dtype.type
    c0, c1 = t(p0), t(p1)
    for r in prange(g.shape[0]):
        for o in range(gc.shape[0]):
            src, yo, dst = g[r, o * p:(o + 1) * p], y[r, o * p:(o + 1) * p], gc[o, r * p:(r + 1) * p]
            if act == IDENTITY:
                for e in range(p):
                    dst[e] = src[e]
            else:
                for e in range(p):
                    dst[e] = src[e] * act_grad(yo[e], act, c0, c1)


@jit(inline="always", fastmath=ORDERED)
def conv_backward_into(dx, dw, db, g, w, y, a, col, gc, c_in, h, wd, k, stride, pad, act, p0, p1,
                       in_act, in_p0, in_p1, need_dx, work):
    # g (B, O·P) gradient of the output y (B, O·P), times f'(y) here unless act is identity;
    # col (C·K·K, B·P) from the forward, overwritten; gc (O, B·P) scratch ->
    # dw (O, C·K·K) = gc @ col.T, db (O,), and if need_dx: dx (B, C·H·W) = col2im(w.T @ gc) * f_in'(a)
    p = out_size(h, k, stride, pad) * out_size(wd, k, stride, pad)
    t = g.dtype.type
    _grad_cnhw(gc, g, y, p, act, p0, p1)
    for o in range(w.shape[0]):
        s = t(0)
        for e in range(gc.shape[1]):
            s += gc[o, e]
        db[o] = s
    gemm_nt(dw, gc, col, work)
    if need_dx:
        gemm_tn(col, w, gc, work)
        col2im(dx, col, a, c_in, h, wd, k, stride, pad, in_act, in_p0, in_p1)


def conv_workspace(batch, n_out, c_in, h, wd, k, stride, pad):
    """Elements of packing space the three GEMMs of a batch need."""
    q, n = c_in * k * k, batch * out_size(h, k, stride, pad) * out_size(wd, k, stride, pad)
    return max(workspace_size(n_out, n, q), workspace_size(n_out, q, n), workspace_size(q, n, n_out))


@jit(fastmath=ORDERED)
def conv_forward(y, x, w, b, c_in, h, wd, k, stride, pad, act, p0, p1):
    # x (B, C·H·W), w (O, C·K·K), b (O,) -> y (B, O·P) = f(conv(x, w) + b), scratch allocated here
    batch, n_out = x.shape[0], w.shape[0]
    n = batch * out_size(h, k, stride, pad) * out_size(wd, k, stride, pad)
    conv_forward_into(y, x, w, b, c_in, h, wd, k, stride, pad, act, p0, p1,
                      np.empty((w.shape[1], n), y.dtype), np.empty((n_out, n), y.dtype),
                      np.empty(workspace_size(n_out, n, w.shape[1]), y.dtype))


@jit(fastmath=ORDERED)
def conv_backward(dx, dw, db, g, x, w, y, a, c_in, h, wd, k, stride, pad, act, p0, p1, in_act, in_p0, in_p1):
    # g (B, O·P) with the output y, x (B, C·H·W) the input and a its activation's output (for f_in') ->
    # dw (O, C·K·K), db (O,), dx (B, C·H·W)
    batch, n_out, q = x.shape[0], w.shape[0], w.shape[1]
    n = batch * out_size(h, k, stride, pad) * out_size(wd, k, stride, pad)
    col = np.empty((q, n), y.dtype)
    im2col(col, x, c_in, h, wd, k, stride, pad)
    work = np.empty(max(workspace_size(n_out, q, n), workspace_size(q, n, n_out)), y.dtype)
    conv_backward_into(dx, dw, db, g, w, y, a, col, np.empty((n_out, n), y.dtype), c_in, h, wd, k, stride, pad,
                       act, p0, p1, in_act, in_p0, in_p1, True, work)


# ---- NumPy twins: im2col as a strided view, and BLAS matmuls --------------------------------------

def _geometry(c_in, h, wd, k, stride, pad):
    return out_size.py_func(h, k, stride, pad), out_size.py_func(wd, k, stride, pad)


def im2col_np(col, x, c_in, h, wd, k, stride, pad):
    oh, ow = _geometry(c_in, h, wd, k, stride, pad)
    batch = x.shape[0]
    padded = np.pad(x.reshape(batch, c_in, h, wd), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))  # (B, C, H', W', K, K)
    windows = windows[:, :, ::stride, ::stride][:, :, :oh, :ow]  # (B, C, OH, OW, K, K)
    col.reshape(c_in, k, k, batch, oh, ow)[...] = windows.transpose(1, 4, 5, 0, 2, 3)


def col2im_np(dx, dcol, a, c_in, h, wd, k, stride, pad, act, p0, p1):
    oh, ow = _geometry(c_in, h, wd, k, stride, pad)
    batch = dx.shape[0]
    padded = np.zeros((batch, c_in, h + 2 * pad + stride * k, wd + 2 * pad + stride * k), dx.dtype)
    blocks = dcol.reshape(c_in, k, k, batch, oh, ow)
    for i in range(k):
        for j in range(k):
            padded[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += blocks[:, i, j].transpose(1, 0, 2, 3)
    dx[...] = padded[:, :, pad:pad + h, pad:pad + wd].reshape(dx.shape)
    t = dx.dtype.type
    DERIVATIVES_NP[act](dx, a, t(p0), t(p1))


def conv_forward_np(y, x, w, b, c_in, h, wd, k, stride, pad, act, p0, p1):
    oh, ow = _geometry(c_in, h, wd, k, stride, pad)
    batch, n_out, p = x.shape[0], w.shape[0], oh * ow
    col = np.empty((w.shape[1], batch * p), y.dtype)
    im2col_np(col, x, c_in, h, wd, k, stride, pad)
    yc = (w @ col).reshape(n_out, batch, p) + b[:, None, None]
    y[...] = yc.transpose(1, 0, 2).reshape(batch, n_out * p)
    t = y.dtype.type
    ACTIVATIONS_NP[act](y, y, t(p0), t(p1))


def conv_backward_np(dx, dw, db, g, x, w, y, a, c_in, h, wd, k, stride, pad, act, p0, p1, in_act, in_p0, in_p1):
    conv_backward_np_step(dx, dw, db, g, x, w, y, a, c_in, h, wd, k, stride, pad, act, p0, p1, in_act, in_p0, in_p1)


def conv_backward_np_step(dx, dw, db, g, x, w, y, a, c_in, h, wd, k, stride, pad, act, p0, p1, in_act, in_p0,
                          in_p1):
    """``conv_backward_np``, where dx None skips the input's gradient (the step's first layer)."""
    oh, ow = _geometry(c_in, h, wd, k, stride, pad)
    batch, n_out, p = x.shape[0], w.shape[0], oh * ow
    t = g.dtype.type
    gz = g.copy()
    DERIVATIVES_NP[act](gz, y, t(p0), t(p1))
    gc = gz.reshape(batch, n_out, p).transpose(1, 0, 2).reshape(n_out, batch * p)
    col = np.empty((w.shape[1], batch * p), y.dtype)
    im2col_np(col, x, c_in, h, wd, k, stride, pad)
    np.sum(gc, axis=1, out=db)
    np.matmul(gc, col.T, out=dw)
    if dx is not None:
        col2im_np(dx, w.T @ gc, a, c_in, h, wd, k, stride, pad, in_act, in_p0, in_p1)


def check_geometry(c_in, h, wd, k, stride, pad):
    """Value check shared by the convolution and pooling kernels: whole sizes, a window that fits."""
    for name, value, low in (("c_in", c_in, 1), ("h", h, 1), ("wd", wd, 1), ("k", k, 1), ("stride", stride, 1),
                             ("pad", pad, 0)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"argument '{name}' must be a whole number >= {low}, got {value!r}")
    if out_size.py_func(h, k, stride, pad) < 1 or out_size.py_func(wd, k, stride, pad) < 1:
        raise ValueError(f"a {k}x{k} window does not fit a {h}x{wd} image with padding {pad}")


def _check_forward(y, x, w, b, c_in, h, wd, k, stride, pad, act, p0, p1):
    check_geometry(c_in, h, wd, k, stride, pad)
    check_act(act, p0, p1)
    oh, ow = _geometry(c_in, h, wd, k, stride, pad)
    if x.shape[1] != c_in * h * wd or w.shape[1] != c_in * k * k or y.shape[1] != w.shape[0] * oh * ow:
        raise ValueError(f"conv: x must be (B, {c_in * h * wd}), w (O, {c_in * k * k}), y (B, O·{oh * ow}); "
                         f"got x {x.shape}, w {w.shape}, y {y.shape}")


def _check_backward(dx, dw, db, g, x, w, y, a, c_in, h, wd, k, stride, pad, act, p0, p1, in_act, in_p0, in_p1):
    _check_forward(g, x, w, db, c_in, h, wd, k, stride, pad, act, p0, p1)
    check_act(in_act, in_p0, in_p1)


TWINS = [
    twin(conv_forward, conv_forward_np, "y[B,Y] | x[B,X] w[O,Q] b[O]", _check_forward),
    twin(conv_backward, conv_backward_np, "dx[B,X] dw[O,Q] db[O] | g[B,Y] x[B,X] w[O,Q] y[B,Y] a[B,X]",
         _check_backward),
]
