"""Losses, each fused with its gradient: one pass returns the mean loss and writes d(loss)/d(input).

    softmax_ce   z (B, C) logits, labels (B,) int  -> dz (B, C) = (softmax(z) - onehot) / B
                 loss = mean_rows(logsumexp(z) - z[label])        (shifted by the row max)
    mse          p (B, M), t (B, M)                -> dp (B, M) = 2 (p - t) / (B M)
                 loss = mean((p - t)^2)
    sigmoid_bce  z (B, M) logits, t (B, M) in {0,1} -> dz (B, M) = (sigmoid(z) - t) / (B M)
                 loss = mean(max(z, 0) - z t + log(1 + exp(-|z|)))  (the stable form)
    softmax      z (B, C) -> p (B, C), for predictions

Each loss has a ``_weighted`` form with one more argument, w (B,): row r's loss and gradient
times w[r], still divided by B (Keras's "sum_over_batch_size"). The compiled step calls these,
with w empty for no weights, which gives exactly the bits of the plain form: the plain form is
the weighted one with w empty, and a weight of 1 multiplies exactly.

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
    return softmax_ce_weighted(dz, z, labels, np.empty(0, z.dtype))


@jit(fastmath=ORDERED)
def softmax_ce_weighted(dz, z, labels, w):
    # as softmax_ce, with row r's loss and gradient times w[r]; w empty: no weights (a weight of 1, the same bits)
    t = z.dtype.type
    n_rows, n_cls = z.shape
    total = t(0)
    if n_rows == 0:
        return total
    inv_n = t(1) / t(n_rows)
    weighted = w.shape[0] != 0
    for r in range(n_rows):
        wr = w[r] if weighted else t(1)
        m = z[r, 0]
        for c in range(1, n_cls):
            m = max(m, z[r, c])
        s = t(0)
        for c in range(n_cls):
            e = vexp(z[r, c] - m)
            dz[r, c] = e
            s += e
        total += wr * (np.log(s) - (z[r, labels[r]] - m))
        scale = inv_n * wr / s
        for c in range(n_cls):
            dz[r, c] *= scale
        dz[r, labels[r]] -= inv_n * wr
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
    return mse_weighted(dp, p, target, np.empty(0, p.dtype))


@jit(fastmath=ORDERED)
def mse_weighted(dp, p, target, w):
    # as mse, with row r's loss and gradient times w[r]; w empty: no weights (a weight of 1, the same bits)
    t = p.dtype.type
    total = t(0)
    if p.size == 0:
        return total
    inv_n = t(1) / t(p.size)
    two_inv_n = t(2) * inv_n
    weighted = w.shape[0] != 0
    for r in range(p.shape[0]):
        wr = w[r] if weighted else t(1)
        two_w = two_inv_n * wr
        for c in range(p.shape[1]):
            d = p[r, c] - target[r, c]
            total += (wr * d) * d
            dp[r, c] = two_w * d
    return total * inv_n


@jit(fastmath=ORDERED)
def sigmoid_bce(dz, z, target):
    # z (B, M) logits, target (B, M) -> dz (B, M) = (sigmoid(z) - target) / (B M); returns the mean BCE
    return sigmoid_bce_weighted(dz, z, target, np.empty(0, z.dtype))


@jit(fastmath=ORDERED)
def sigmoid_bce_weighted(dz, z, target, w):
    # as sigmoid_bce, with row r's loss and gradient times w[r]; w empty: no weights (a weight of 1, the same bits)
    t = z.dtype.type
    one = t(1)
    total = t(0)
    if z.size == 0:
        return total
    inv_n = one / t(z.size)
    weighted = w.shape[0] != 0
    for r in range(z.shape[0]):
        wr = w[r] if weighted else one
        w_inv_n = inv_n * wr
        for c in range(z.shape[1]):
            x = z[r, c]
            e = vexp(-abs(x))  # in (0, 1]: never overflows
            total += wr * (max(x, t(0)) - x * target[r, c] + np.log1p(e))
            sig = one / (one + e) if x >= 0 else e / (one + e)
            dz[r, c] = (sig - target[r, c]) * w_inv_n
    return total * inv_n


# ---- NumPy twins -----------------------------------------------------------------

def softmax_ce_np(dz, z, labels):
    return softmax_ce_weighted_np(dz, z, labels, np.empty(0, z.dtype))


def softmax_ce_weighted_np(dz, z, labels, w):
    t = z.dtype.type
    n_rows = z.shape[0]
    if n_rows == 0:
        return t(0)
    rows = np.arange(n_rows)
    shifted = z - z.max(axis=1, keepdims=True)
    np.exp(shifted, out=dz)
    s = dz.sum(axis=1, keepdims=True)
    inv_n = t(1) / t(n_rows)
    row_loss = np.log(s[:, 0]) - shifted[rows, labels]
    if w.size:  # each row's loss and gradient times its weight
        row_loss *= w
        inv_n = inv_n * w
    loss = row_loss.sum() / t(n_rows)
    dz *= (inv_n[:, None] if w.size else inv_n) / s
    dz[rows, labels] -= inv_n
    return t(loss)


def softmax_np(p, z):
    np.subtract(z, z.max(axis=1, keepdims=True), out=p)
    np.exp(p, out=p)
    p /= p.sum(axis=1, keepdims=True)


def mse_np(dp, p, target):
    return mse_weighted_np(dp, p, target, np.empty(0, p.dtype))


def mse_weighted_np(dp, p, target, w):
    t = p.dtype.type
    if p.size == 0:
        return t(0)
    np.subtract(p, target, out=dp)
    scale = t(2) / t(p.size)
    if w.size:  # each row's loss and gradient times its weight
        loss = np.vdot(dp * w[:, None], dp) / t(p.size)
        dp *= scale * w[:, None]
    else:
        loss = np.vdot(dp, dp) / t(p.size)
        dp *= scale
    return t(loss)


def sigmoid_bce_np(dz, z, target):
    return sigmoid_bce_weighted_np(dz, z, target, np.empty(0, z.dtype))


def sigmoid_bce_weighted_np(dz, z, target, w):
    t = z.dtype.type
    if z.size == 0:
        return t(0)
    e = np.exp(-np.abs(z))
    each = np.maximum(z, 0) - z * target + np.log1p(e)
    scale = t(1) / t(z.size)
    if w.size:  # each row's loss and gradient times its weight
        each *= w[:, None]
        scale = scale * w[:, None]
    loss = each.sum() / t(z.size)
    sig = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    np.subtract(sig, target, out=dz)
    dz *= scale
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
    twin(softmax_ce_weighted, softmax_ce_weighted_np, "dz[B,C] | z[B,C] labels[B]:int64 w[B]",
         lambda dz, z, labels, w: _check_labels(dz, z, labels)),
    twin(mse_weighted, mse_weighted_np, "dp[B,M] | p[B,M] target[B,M] w[B]"),
    twin(sigmoid_bce_weighted, sigmoid_bce_weighted_np, "dz[B,M] | z[B,M] target[B,M] w[B]"),
]
