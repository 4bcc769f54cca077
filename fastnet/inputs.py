"""Validation at the Python boundary: every user value is checked here, once, before any kernel runs."""
from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

import numpy as np

from fastnet.errors import ConfigError, DTypeError, InputError, ShapeError
from fastnet.losses import Loss


def is_number(value) -> bool:
    """A finite real number (Python or NumPy), not a bool: True is no learning rate."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def is_whole(value) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def float_dtype(dtype) -> np.dtype:
    """float32 or float64, given by name ("float32"), as a NumPy type (np.float32) or as a np.dtype;
    ConfigError for any other dtype, and for None, which NumPy would read as float64."""
    try:
        found = None if dtype is None else np.dtype(dtype)
    except (TypeError, ValueError):
        found = None
    if found is None or found.name not in ("float32", "float64"):
        raise ConfigError(f"unknown dtype {dtype!r}; choose float32 or float64 (as \"float32\", np.float32 "
                          f"or np.dtype(\"float32\"))")
    return found


def as_path(path, what: str) -> Path:
    """``path`` as a Path; ConfigError, saying what ``what`` needs, for anything but a str or os.PathLike."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"{what} needs a file path (a str or pathlib.Path), got {path!r}")
    return Path(path)


class Images(np.ndarray):
    """uint8 pixels that carry their scale: a model sees ``pixels * scale``.

    ``fn.datasets.Images(x)`` marks a user's uint8 array as 0..255 images, to be
    scaled to [0, 1] (the datasets' ``x`` is float32 in [0, 1] already; ``load(...,
    pixels=True)`` gives their uint8 pixels, plain, to wrap in Images). Each batch is
    scaled as it is gathered, so the data is never copied to floats. Slicing,
    indexing, reshaping and copying keep the scale; arithmetic, reductions and
    ``np.concatenate`` give plain arrays (wrap the result in Images again), and
    ``astype`` the pixels' numbers, 0..255, unscaled. A plain uint8 (or any integer)
    array is numbers, used as they are.

    Parameters
    ----------
    pixels : array_like of uint8
    scale : float
        What one unit of a pixel is worth: 1/255 maps 0..255 onto [0, 1].
    """

    def __new__(cls, pixels, scale: float = 1 / 255):
        array = np.asarray(pixels)
        if array.dtype != np.uint8:
            raise DTypeError(f"Images are uint8 pixels, got dtype {array.dtype}; "
                             f"pass floats as they are, or convert with x.astype(np.uint8)")
        if not (is_number(scale) and scale > 0):
            raise ConfigError(f"Images scale must be a finite number > 0, got {scale!r}")
        images = array.view(cls)
        images.scale = float(scale)
        return images

    def __array_finalize__(self, obj):
        self.scale = getattr(obj, "scale", 1 / 255)

    def __array_wrap__(self, array, context=None, return_scalar=False):
        # a ufunc's or reduction's result is numbers, no longer pixels
        array = array.view(np.ndarray)
        return array[()] if return_scalar else array


def flat_images(x, input_shape: tuple | None):
    """Images ``x`` (n, channels, height, width) as the flat rows (n, channels·height·width) every kernel
    takes (a view when x is contiguous), for a model whose input is ``input_shape``; any other x as it is.
    ShapeError for images of another shape."""
    shape = np.shape(x)
    if input_shape is None or len(shape) <= 2:
        return x
    if tuple(shape[1:]) == tuple(input_shape):
        return (x if isinstance(x, np.ndarray) else np.asarray(x)).reshape(len(x), math.prod(input_shape))
    what = "images (channels, height, width)" if len(input_shape) == 3 else "flat rows"
    raise ShapeError(f"x has samples of shape {tuple(shape[1:])} but the model takes {what} of shape "
                     f"{tuple(input_shape)}")


def check_shape(x, n_features: int) -> np.ndarray:
    """``x`` as an array (Images stay Images) of shape (samples, ``n_features``); ShapeError, with a hint, if not."""
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.ndim != 2:
        hint = ""
        if x.ndim == 1:
            hint = " For one sample use x[None] (or x.reshape(1, -1))." if n_features > 1 else \
                " Use x.reshape(-1, 1)."
        elif x.ndim > 2:
            hint = " Flatten images with x.reshape(len(x), -1)."
        raise ShapeError(f"x must be 2-D (samples, features), got shape {x.shape}.{hint}")
    if x.shape[1] != n_features:
        raise ShapeError(f"x has {x.shape[1]} features per sample but the first layer expects {n_features}")
    return x


def check_x(x, n_features: int, dtype: np.dtype) -> tuple[np.ndarray, float]:
    """Return x ready for the kernels and the divisor the batch gather applies.

    Images (uint8 pixels with their scale) and other integer arrays stay as they
    are and are converted batch by batch, so no float copy of the dataset is made;
    only Images are scaled. Floats are used as they are, in the model's dtype.
    """
    x = check_shape(x, n_features)
    if isinstance(x, Images) and x.dtype == np.uint8:
        return np.ascontiguousarray(x), 1.0 / x.scale
    if x.dtype.kind in "biu":
        return np.ascontiguousarray(x), 1.0
    if x.dtype.kind != "f":
        raise DTypeError(f"x has dtype {x.dtype}; pass numbers (floats or integers), or uint8 images "
                         f"as fastnet.datasets.Images(x) to scale them to [0, 1]")
    return _finite("x", x, dtype), 1.0


def check_y(y, n: int, n_outputs: int, loss: Loss, dtype: np.dtype) -> np.ndarray:
    """Return targets as the loss kernel wants them: integer labels (any integer dtype), or (n, n_outputs) floats."""
    if not isinstance(y, np.ndarray):
        y = np.asarray(y)
    if y.ndim == 0:
        raise ShapeError(f"y must hold one target per sample, {n} in all, got the single value {y.item()!r}")
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
    y = _finite("y", y, dtype)
    if loss.hits == "threshold_hits" and not np.isin(y, (0, 1)).all():
        raise InputError("BinaryCrossEntropy targets must be 0 or 1")
    return y


def _finite(name: str, values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` as a contiguous ``dtype`` array; InputError if it holds NaN or Inf, or numbers that
    become Inf in ``dtype`` (1e300 in float32), each said as what it is."""
    with np.errstate(over="ignore"):  # an overflowing cast is reported below, not warned about
        cast = np.ascontiguousarray(values, dtype=dtype)
    if np.isfinite(cast).all():
        return cast
    row = _first_bad_row(cast)
    if np.isfinite(values[row]).all():
        raise InputError(f"{name} holds {np.abs(values[row]).max():.3g} (row {row}), beyond the range of "
                         f"{np.dtype(dtype)} (±{np.finfo(dtype).max:.3g}); scale the data down, or use a float64 model")
    raise InputError(f"{name} contains NaN or Inf (first at row {row}); clean or drop those samples")


def _first_bad_row(a: np.ndarray) -> int:
    return int(np.argmax(~np.isfinite(a).all(axis=1)))
