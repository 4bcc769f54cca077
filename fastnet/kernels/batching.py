"""Moving a mini-batch in and scoring it: gather with scaling, and accuracy hit counts.

    gather_rows      x (N, M) any dtype, idx (B,) -> out (B, M) = x[idx] / divisor
                     images are scaled here (divisor 255 for uint8 pixels), batch by batch, so
                     the dataset never needs a float copy (and the result is bit for bit x / 255).
    argmax_hits      z (B, C), labels (B,) -> number of rows whose argmax is the label
    threshold_hits   z (B, M) logits, target (B, M) in {0,1} -> number of (z > 0) == target
"""
import numpy as np

from ._jit import ELEMENTWISE, jit
from ._spec import check_classes
from .backend import twin


@jit(fastmath=ELEMENTWISE)
def gather_rows(out, x, idx, divisor):
    # x (N, M), idx (B,) -> out (B, M) = x[idx] / divisor, in out's dtype (serial: a memory-bound copy)
    t = out.dtype.type
    d = t(divisor)
    for r in range(idx.shape[0]):
        src = idx[r]
        for c in range(x.shape[1]):
            out[r, c] = t(x[src, c]) / d


@jit
def argmax_hits(z, labels):
    # z (B, C), labels (B,) -> count of argmax(z[r]) == labels[r]
    # As np.argmax: the first maximum wins, and a NaN counts as the maximum.
    hits = 0
    for r in range(z.shape[0]):
        best = 0
        for c in range(z.shape[1]):
            if z[r, c] != z[r, c]:
                best = c
                break
            if z[r, c] > z[r, best]:
                best = c
        hits += best == labels[r]
    return hits


@jit
def threshold_hits(z, target):
    # z (B, M), target (B, M) -> count of (z > 0) == (target > 0.5)
    hits = 0
    half = target.dtype.type(0.5)
    for r in range(z.shape[0]):
        for c in range(z.shape[1]):
            hits += (z[r, c] > 0) == (target[r, c] > half)
    return hits


def gather_rows_np(out, x, idx, divisor):
    if x.dtype == out.dtype and divisor == 1:
        np.take(x, idx, axis=0, out=out)  # float data: a straight copy, no temporary
    else:
        np.divide(x[idx].astype(out.dtype), out.dtype.type(divisor), out=out)


def argmax_hits_np(z, labels):
    return int(np.count_nonzero(z.argmax(axis=1) == labels)) if z.shape[0] else 0


def threshold_hits_np(z, target):
    return int(np.count_nonzero((z > 0) == (target > 0.5)))


def _check_idx(out, x, idx, divisor):
    if idx.size and (idx.min() < 0 or idx.max() >= x.shape[0]):
        raise ValueError(f"gather_rows(): indices must lie in 0..{x.shape[0] - 1}")


TWINS = [
    twin(gather_rows, gather_rows_np, "out[B,M] | x[N,M]:any idx[B]:int64", _check_idx),
    twin(argmax_hits, argmax_hits_np, "z[B,C] labels[B]:int64",
         lambda z, labels: check_classes("argmax_hits", z)),
    twin(threshold_hits, threshold_hits_np, "z[B,M] target[B,M]"),
]
