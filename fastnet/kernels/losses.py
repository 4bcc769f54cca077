"""Losses, each fused with its gradient: one pass returns the mean loss and writes d(loss)/d(input).

    softmax_ce   z (B, C) logits, labels (B,) int  -> dz (B, C) = (softmax(z) - onehot) / B
                 loss = mean_rows(logsumexp(z) - z[label])        (shifted by the row max)
    mse          p (B, M), t (B, M)                -> dp (B, M) = 2 (p - t) / (B M)
                 loss = mean((p - t)^2)
    sigmoid_bce  z (B, M) logits, t (B, M) in {0,1} -> dz (B, M) = (sigmoid(z) - t) / (B M)
                 loss = mean(max(z, 0) - z t + log(1 + exp(-|z|)))  (the stable form)
    softmax      z (B, C) -> p (B, C), for predictions

Each kernel runs serially: at (B, 10) a thread launch costs more than the work,
and a serial sum gives the same bits whatever the thread count. An empty batch
has loss 0. The compiled step calls them, so they compile with ORDERED (see ``_jit.py``):
the bits must not depend on which copy of a function runs.
"""
import numpy as np

from ._jit import ORDERED, jit
from ._spec import check_classes
from ._vexp import vexp
from .backend import twin


@jit(fastmath=ORDERED)
def softmax_ce(dz, z, labels):
    # z (B, C), labels (B,) -> dz (B, C) = (softmax(z) - onehot) / B; returns the mean loss
    t = z.dtype.type
    n_rows, n_cls = z.shape
    total = t(0)
    if n_rows == 0:
        return total
    inv_n = t(1) / t(n_rows)
    for r in range(n_rows):
        m = z[r, 0]
        for c in range(1, n_cls):
            m = max(m, z[r, c])
        s = t(0)
        for c in range(n_cls):
            e = vexp(z[r, c] - m)
            dz[r, c] = e
            s += e
        total += np.log(s) - (z[r, labels[r]] - m)
        scale = inv_n / s
        for c in range(n_cls):
            dz[r, c] *= scale
        dz[r, labels[r]] -= inv_n
    return total * inv_n


@jit(fastmath=ORDERED)
def softmax(p, z):
    # z (B, C) -> p (B, C) = softmax(z), shifted by the row max
    t = z.dtype.type
    for r in range(z.shape[0]):
        m = z[r, 0]
        for c in range(1, z.shape[1]):
            m = max(m, z[r, c])
        s = t(0)
        for c in range(z.shape[1]):
            p[r, c] = vexp(z[r, c] - m)
            s += p[r, c]
        inv = t(1) / s
        for c in range(z.shape[1]):
            p[r, c] *= inv


@jit(fastmath=ORDERED)
def mse(dp, p, target):
    # p (B, M), target (B, M) -> dp (B, M) = 2 (p - target) / (B M); returns mean((p - target)^2)
    t = p.dtype.type
    total = t(0)
    if p.size == 0:
        return total
    inv_n = t(1) / t(p.size)
    two_inv_n = t(2) * inv_n
    for r in range(p.shape[0]):
        for c in range(p.shape[1]):
            d = p[r, c] - target[r, c]
            total += d * d
            dp[r, c] = two_inv_n * d
    return total * inv_n


@jit(fastmath=ORDERED)
def sigmoid_bce(dz, z, target):
    # z (B, M) logits, target (B, M) -> dz (B, M) = (sigmoid(z) - target) / (B M); returns the mean BCE
    t = z.dtype.type
    one = t(1)
    total = t(0)
    if z.size == 0:
        return total
    inv_n = one / t(z.size)
    for r in range(z.shape[0]):
        for c in range(z.shape[1]):
            x = z[r, c]
            e = vexp(-abs(x))  # in (0, 1]: never overflows
            total += max(x, t(0)) - x * target[r, c] + np.log1p(e)
            sig = one / (one + e) if x >= 0 else e / (one + e)
            dz[r, c] = (sig - target[r, c]) * inv_n
    return total * inv_n


# ---- NumPy twins -----------------------------------------------------------------

def softmax_ce_np(dz, z, labels):
    t = z.dtype.type
    n_rows = z.shape[0]
    if n_rows == 0:
        return t(0)
    rows = np.arange(n_rows)
    shifted = z - z.max(axis=1, keepdims=True)
    np.exp(shifted, out=dz)
    s = dz.sum(axis=1, keepdims=True)
    loss = (np.log(s[:, 0]) - shifted[rows, labels]).sum() / t(n_rows)
    dz *= t(1) / t(n_rows) / s
    dz[rows, labels] -= t(1) / t(n_rows)
    return t(loss)


def softmax_np(p, z):
    np.subtract(z, z.max(axis=1, keepdims=True), out=p)
    np.exp(p, out=p)
    p /= p.sum(axis=1, keepdims=True)


def mse_np(dp, p, target):
    t = p.dtype.type
    if p.size == 0:
        return t(0)
    np.subtract(p, target, out=dp)
    loss = np.vdot(dp, dp) / t(p.size)
    dp *= t(2) / t(p.size)
    return t(loss)


def sigmoid_bce_np(dz, z, target):
    t = z.dtype.type
    if z.size == 0:
        return t(0)
    e = np.exp(-np.abs(z))
    loss = (np.maximum(z, 0) - z * target + np.log1p(e)).sum() / t(z.size)
    sig = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    np.subtract(sig, target, out=dz)
    dz *= t(1) / t(z.size)
    return t(loss)


def _check_labels(dz, z, labels):
    check_classes("softmax_ce", z)
    if labels.size and (labels.min() < 0 or labels.max() >= z.shape[1]):
        bad = labels[(labels < 0) | (labels >= z.shape[1])][0]
        raise ValueError(f"softmax_ce(): label {bad} is outside the classes 0..{z.shape[1] - 1}")


TWINS = [
    twin(softmax_ce, softmax_ce_np, "dz[B,C] | z[B,C] labels[B]:int64", _check_labels),
    twin(softmax, softmax_np, "p[B,C] | z[B,C]", lambda p, z: check_classes("softmax", z)),
    twin(mse, mse_np, "dp[B,M] | p[B,M] target[B,M]"),
    twin(sigmoid_bce, sigmoid_bce_np, "dz[B,M] | z[B,M] target[B,M]"),
]
