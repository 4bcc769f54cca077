"""Validation at the Python boundary: every user array is checked here, once, before any kernel runs."""
from __future__ import annotations

import numpy as np

from fastnet.errors import DTypeError, InputError, ShapeError
from fastnet.losses import Loss


def check_x(x, n_features: int, dtype: np.dtype) -> tuple[np.ndarray, float]:
    """Return x ready for the kernels and the divisor the batch gather applies.

    uint8 images stay uint8 (scaled to [0, 1] batch by batch, so no float copy
    of the dataset is made); float inputs are used as they are, in the model's dtype.
    """
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.ndim != 2:
        hint = " Flatten images with x.reshape(len(x), -1)." if x.ndim > 2 else ""
        raise ShapeError(f"x must be 2-D (samples, features), got shape {x.shape}.{hint}")
    if x.shape[1] != n_features:
        raise ShapeError(f"x has {x.shape[1]} features per sample but the first layer expects {n_features}")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x), 255.0
    if x.dtype.kind != "f":
        raise DTypeError(f"x has dtype {x.dtype}; pass uint8 images (scaled to [0, 1]) or floats")
    x = np.ascontiguousarray(x, dtype=dtype)
    if not np.isfinite(x).all():
        raise InputError(f"x contains NaN or Inf (first at row {_first_bad_row(x)}); clean or drop those samples")
    return x, 1.0


def check_y(y, n: int, n_outputs: int, loss: Loss, dtype: np.dtype) -> np.ndarray:
    """Return targets as the loss kernel wants them: integer labels (any integer dtype), or (n, n_outputs) floats."""
    if not isinstance(y, np.ndarray):
        y = np.asarray(y)
    if len(y) != n:
        raise ShapeError(f"x has {n} samples but y has {len(y)}; they must have the same length")
    if loss.integer_targets:
        if y.ndim != 1:
            raise ShapeError(f"{type(loss).__name__} takes integer class labels of shape (n,), got shape {y.shape}")
        if y.dtype.kind not in "iu":
            raise DTypeError(f"labels must be integers, got {y.dtype}; use y.astype(np.int64)")
        if n and (y.min() < 0 or y.max() >= n_outputs):
            bad = y[(y < 0) | (y >= n_outputs)][0]
            raise InputError(f"label {bad} is outside the classes 0..{n_outputs - 1} of the output layer; "
                             f"make the last Dense layer wider or fix the labels")
        return np.ascontiguousarray(y)  # in range, so exact in int64: the batch gather widens them
    if y.ndim == 1 and n_outputs == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != n_outputs:
        raise ShapeError(f"{type(loss).__name__} needs targets of shape (n, {n_outputs}), got {y.shape}")
    if y.dtype.kind not in "biuf":
        raise DTypeError(f"targets must be numbers, got {y.dtype}")
    y = np.ascontiguousarray(y, dtype=dtype)
    if not np.isfinite(y).all():
        raise InputError(f"y contains NaN or Inf (first at row {_first_bad_row(y)}); clean or drop those samples")
    if loss.hits == "threshold_hits" and not np.isin(y, (0, 1)).all():
        raise InputError("BinaryCrossEntropy targets must be 0 or 1")
    return y


def _first_bad_row(a: np.ndarray) -> int:
    return int(np.argmax(~np.isfinite(a).all(axis=1)))
