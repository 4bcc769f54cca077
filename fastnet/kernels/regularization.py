"""Dropout and weight penalties.

    dropout      x (N, M), mask (N, M) uint8 in {0,1}  -> y (N, M) = x * mask * scale
                 scale = 1 / (1 - p): inverted dropout, so inference needs no rescaling.
                 The backward is the same product: dx = dy * mask * scale.
                 The mask is drawn by the caller from a seeded numpy Generator, so both
                 backends see the same mask and runs are reproducible.
    penalty      w (N,) -> dw (N,) += l1 sign(w) + l2 w; returns l1 sum|w| + l2/2 sum w^2
"""
import numpy as np

from ._jit import ELEMENTWISE, ORDERED, jit
from .backend import twin


@jit(fastmath=ELEMENTWISE)
def dropout(y, x, mask, scale):
    # x (N, M), mask (N, M) -> y (N, M) = x * mask * scale   (also the backward: dx = dy * mask * scale)
    # serial, as the activations are: a memory-bound pass inside the compiled step
    s = y.dtype.type(scale)
    zero = y.dtype.type(0)
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            y[r, c] = x[r, c] * (s if mask[r, c] else zero)  # a dropped NaN stays NaN, as in the twin


@jit(fastmath=ORDERED)  # called from the compiled step: ORDERED, see _jit.py
def penalty(dw, w, l1, l2):
    # w (N,) -> dw (N,) += l1 sign(w) + l2 w; returns l1 sum|w| + l2/2 sum w^2
    t = w.dtype.type
    c1, c2 = t(l1), t(l2)
    sum_abs, sum_sq = t(0), t(0)
    for i in range(w.size):
        v = w[i]
        sum_abs += abs(v)
        sum_sq += v * v
        dw[i] += c1 * np.sign(v) + c2 * v
    return c1 * sum_abs + c2 * t(0.5) * sum_sq


def dropout_np(y, x, mask, scale):
    np.multiply(x, mask, out=y)
    y *= y.dtype.type(scale)


def penalty_np(dw, w, l1, l2):
    t = w.dtype.type
    c1, c2 = t(l1), t(l2)
    dw += c1 * np.sign(w) + c2 * w
    return t(c1 * np.abs(w).sum() + c2 * t(0.5) * np.vdot(w, w))


def _check_dropout(y, x, mask, scale):
    if not scale >= 1:
        raise ValueError(f"dropout(): scale must be 1/(1-p) >= 1, got {scale}")
    if mask.size and mask.max() > 1:  # the kernel reads any nonzero as 1, the twin multiplies by it
        raise ValueError(f"dropout(): argument 'mask' must hold 0 or 1, got {mask.max()}")


def _check_strengths(dw, w, l1, l2):
    if not (l1 >= 0 and l2 >= 0):
        raise ValueError(f"penalty(): l1 and l2 must be >= 0, got l1={l1}, l2={l2}")


TWINS = [
    twin(dropout, dropout_np, "y[N,M] | x[N,M] mask[N,M]:uint8", _check_dropout),
    twin(penalty, penalty_np, "dw[N] | w[N]", _check_strengths),
]
