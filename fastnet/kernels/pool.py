"""2-D max and average pooling over NCHW images, flat per sample: x (B, C·H·W) -> y (B, C·OH·OW).

A size x size window moves by ``stride``, with no padding; OH = (H - size) // stride + 1 (OW alike), as
torch.nn.MaxPool2d / AvgPool2d with their defaults (floor mode; the average counts size² values).

    maxpool_forward   x -> y = the window's maximum, arg (B, C·OH·OW) uint8 = its place i·size + j
                      in the window (the first maximum; a NaN counts as the maximum, as in np.argmax)
    maxpool_backward  g (B, C·OH·OW), arg -> dx (B, C·H·W): each g added at its window's argmax
    avgpool_forward   x -> y = the window's mean (summed in (i, j) order, times 1/size²)
    avgpool_backward  g -> dx: g / size² added over each window

The argmax kept by the forward is what the backward needs, so it never reads x again; uint8 holds it
(windows of at most 15 x 15, which the layer checks). Each thread takes whole samples; overlapping
windows (stride < size) add up in (channel, oy, ox) order, so the bits never depend on the thread count.
"""
import numpy as np

from numba import prange

from ._jit import ORDERED, jit, pjit
from .backend import twin
from .conv import check_geometry, out_size

MAX_WINDOW = 15  # size·size must fit uint8's 0..255


@jit(inline="always")
def _takes(v, best):
    # v replaces the running maximum: keep the first maximum, or the first NaN
    return best == best and (v > best or v != v)


@jit(inline="always")
def _max_windows(dst, at, src, c_in, h, wd, size, stride, oh, ow):
    # one sample: any window
    for c in range(c_in):
        for oy in range(oh):
            for ox in range(ow):
                corner = (c * h + oy * stride) * wd + ox * stride
                best, where = src[corner], 0
                for i in range(size):
                    for j in range(size):
                        v = src[corner + i * wd + j]
                        if _takes(v, best):
                            best, where = v, i * size + j
                out = (c * oh + oy) * ow + ox
                dst[out], at[out] = best, where


@jit(inline="always")
def _max_2x2(dst, at, src, c_in, h, wd, oh, ow):
    # one sample, 2 x 2 windows at stride 2: the same comparisons without branches, on unsigned indices,
    # which LLVM vectorises (2.4x the speed of the general loop on 6 x 28 x 28 images)
    one = np.uint64(1)
    for c in range(c_in):
        for oy in range(oh):
            r0 = np.uint64((c * h + oy * 2) * wd)
            r1 = r0 + np.uint64(wd)
            o0 = np.uint64((c * oh + oy) * ow)
            for ox in range(np.uint64(ow)):
                e = ox + ox
                best, where = src[r0 + e], np.uint8(0)
                for place, v in ((1, src[r0 + e + one]), (2, src[r1 + e]), (3, src[r1 + e + one])):
                    take = _takes(v, best)
                    best = v if take else best
                    where = np.uint8(place) if take else where
                dst[o0 + ox], at[o0 + ox] = best, where


@pjit(fastmath=ORDERED)
def maxpool_forward(y, arg, x, c_in, h, wd, size, stride):
    # x (B, C·H·W) -> y (B, C·OH·OW), arg (B, C·OH·OW) uint8
    oh, ow = out_size(h, size, stride, 0), out_size(wd, size, stride, 0)
    for b in prange(x.shape[0]):
        if size == 2 and stride == 2:
            _max_2x2(y[b], arg[b], x[b], c_in, h, wd, oh, ow)
        else:
            _max_windows(y[b], arg[b], x[b], c_in, h, wd, size, stride, oh, ow)


@pjit(fastmath=ORDERED)
def maxpool_backward(dx, g, arg, c_in, h, wd, size, stride):
    # g (B, C·OH·OW), arg (B, C·OH·OW) -> dx (B, C·H·W)
    oh, ow = out_size(h, size, stride, 0), out_size(wd, size, stride, 0)
    for b in prange(g.shape[0]):
        src, dst, at = g[b], dx[b], arg[b]
        dst[:] = 0
        for c in range(c_in):
            for oy in range(oh):
                for ox in range(ow):
                    out = (c * oh + oy) * ow + ox
                    i, j = at[out] // size, at[out] % size
                    dst[(c * h + oy * stride + i) * wd + ox * stride + j] += src[out]


@pjit(fastmath=ORDERED)
def avgpool_forward(y, x, c_in, h, wd, size, stride):
    # x (B, C·H·W) -> y (B, C·OH·OW) = the mean of each window
    oh, ow = out_size(h, size, stride, 0), out_size(wd, size, stride, 0)
    t = y.dtype.type
    inv = t(1) / t(size * size)
    for b in prange(x.shape[0]):
        src, dst = x[b], y[b]
        for c in range(c_in):
            for oy in range(oh):
                for ox in range(ow):
                    corner = (c * h + oy * stride) * wd + ox * stride
                    s = t(0)
                    for i in range(size):
                        for j in range(size):
                            s += src[corner + i * wd + j]
                    dst[(c * oh + oy) * ow + ox] = s * inv


@pjit(fastmath=ORDERED)
def avgpool_backward(dx, g, c_in, h, wd, size, stride):
    # g (B, C·OH·OW) -> dx (B, C·H·W): g / size² over each window
    oh, ow = out_size(h, size, stride, 0), out_size(wd, size, stride, 0)
    t = dx.dtype.type
    inv = t(1) / t(size * size)
    for b in prange(g.shape[0]):
        src, dst = g[b], dx[b]
        dst[:] = 0
        for c in range(c_in):
            for oy in range(oh):
                for ox in range(ow):
                    share = src[(c * oh + oy) * ow + ox] * inv
                    corner = (c * h + oy * stride) * wd + ox * stride
                    for i in range(size):
                        for j in range(size):
                            dst[corner + i * wd + j] += share


# ---- NumPy twins ---------------------------------------------------------------------------------

def _windows(x, c_in, h, wd, size, stride):
    """(B, C, OH, OW, size·size) view of the windows of x (B, C·H·W)."""
    oh, ow = out_size.py_func(h, size, stride, 0), out_size.py_func(wd, size, stride, 0)
    images = x.reshape(x.shape[0], c_in, h, wd)
    win = np.lib.stride_tricks.sliding_window_view(images, (size, size), axis=(2, 3))[:, :, ::stride, ::stride]
    return win[:, :, :oh, :ow].reshape(x.shape[0], c_in, oh, ow, size * size)


def _scatter(dx, values, c_in, h, wd, size, stride, where=None):
    """dx (B, C·H·W) = the sum of values (B, C, OH, OW[, size·size]) put back at their window places."""
    batch = dx.shape[0]
    oh, ow = out_size.py_func(h, size, stride, 0), out_size.py_func(wd, size, stride, 0)
    image = np.zeros((batch, c_in, h, wd), dx.dtype)
    for i in range(size):
        for j in range(size):
            part = values if where is None else values * (where == i * size + j)
            image[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride][:, :, :oh, :ow] += part
    dx[...] = image.reshape(dx.shape)


def maxpool_forward_np(y, arg, x, c_in, h, wd, size, stride):
    win = _windows(x, c_in, h, wd, size, stride)
    arg[...] = np.argmax(win, axis=-1).reshape(arg.shape)
    y[...] = np.take_along_axis(win, arg.reshape(win.shape[:-1] + (1,)).astype(np.intp), axis=-1).reshape(y.shape)


def maxpool_backward_np(dx, g, arg, c_in, h, wd, size, stride):
    oh, ow = out_size.py_func(h, size, stride, 0), out_size.py_func(wd, size, stride, 0)
    shape = (len(g), c_in, oh, ow)
    _scatter(dx, g.reshape(shape), c_in, h, wd, size, stride, arg.reshape(shape))


def avgpool_forward_np(y, x, c_in, h, wd, size, stride):
    t = y.dtype.type
    y[...] = _windows(x, c_in, h, wd, size, stride).sum(axis=-1).reshape(y.shape) * (t(1) / t(size * size))


def avgpool_backward_np(dx, g, c_in, h, wd, size, stride):
    t = dx.dtype.type
    oh, ow = out_size.py_func(h, size, stride, 0), out_size.py_func(wd, size, stride, 0)
    _scatter(dx, g.reshape(len(g), c_in, oh, ow) * (t(1) / t(size * size)), c_in, h, wd, size, stride)


def check_pool(c_in, h, wd, size, stride):
    """Value check shared by the pooling kernels: a window that fits, and whose places fit uint8."""
    check_geometry(c_in, h, wd, size, stride, 0)
    if size > MAX_WINDOW:
        raise ValueError(f"pooling windows are at most {MAX_WINDOW}x{MAX_WINDOW}, got {size}x{size}")


def _check_shapes(x, y, c_in, h, wd, size, stride):
    check_pool(c_in, h, wd, size, stride)
    oh, ow = out_size.py_func(h, size, stride, 0), out_size.py_func(wd, size, stride, 0)
    if x.shape[1] != c_in * h * wd or y.shape[1] != c_in * oh * ow:
        raise ValueError(f"pooling: the input must be (B, {c_in * h * wd}) and the output (B, {c_in * oh * ow}); "
                         f"got {x.shape} and {y.shape}")


def _check_places(dx, g, arg, c_in, h, wd, size, stride):
    _check_shapes(dx, g, c_in, h, wd, size, stride)
    if arg.size and arg.max() >= size * size:  # the kernel would write outside the window
        raise ValueError(f"maxpool_backward(): argument 'arg' holds {arg.max()}, not a place in a {size}x{size} window")


TWINS = [
    twin(maxpool_forward, maxpool_forward_np, "y[B,Y] arg[B,Y]:uint8 | x[B,X]",
         lambda y, arg, x, *geo: _check_shapes(x, y, *geo)),
    twin(maxpool_backward, maxpool_backward_np, "dx[B,X] | g[B,Y] arg[B,Y]:uint8", _check_places),
    twin(avgpool_forward, avgpool_forward_np, "y[B,Y] | x[B,X]", lambda y, x, *geo: _check_shapes(x, y, *geo)),
    twin(avgpool_backward, avgpool_backward_np, "dx[B,X] | g[B,Y]", lambda dx, g, *geo: _check_shapes(dx, g, *geo)),
]
