"""Checks at the door: validate kernel arguments in Python before numba sees them.

Each kernel declares its arrays once, as a small spec string, for example::

    "y[B,O] x[B,I] w[O,I] b[O]"

meaning: y, x, w and b are C-contiguous float arrays of one dtype (float32 or
float64) with those dimensions, where equal letters must be equal sizes.
A suffix ``:int64`` or ``:uint8`` fixes an array's dtype instead, e.g. ``labels[B]:int64``,
and ``:any`` accepts any integer dtype, float32 or float64 (for data that is cast on the way in).
Arrays named first up to the first ``|`` are outputs and must be writeable.
One spec serves both backends, so the NumPy twins are checked exactly like the
numba kernels.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import DTypeError, ShapeError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_ARRAY = re.compile(r"^(\w+)\[([\w,]*)\](?::(\w+))?$")


@dataclass(frozen=True)
class _Arg:
    name: str
    dims: tuple[str, ...]
    dtype: np.dtype | str | None  # None: the kernel's float dtype; "any": any numeric dtype


@dataclass(frozen=True)
class Spec:
    """The parsed array signature of one kernel."""

    kernel: str
    outputs: tuple[_Arg, ...]
    inputs: tuple[_Arg, ...]

    @classmethod
    def parse(cls, kernel: str, text: str) -> "Spec":
        out_text, _, in_text = text.partition("|") if "|" in text else ("", "", text)
        return cls(kernel, _parse_args(out_text), _parse_args(in_text))

    def check(self, args: tuple) -> None:
        """Raise ShapeError/DTypeError if ``args`` (positional, arrays first) break the spec."""
        params = self.outputs + self.inputs
        if len(args) < len(params):
            raise TypeError(f"{self.kernel}() takes arrays {', '.join(p.name for p in params)}; got {len(args)} arguments")
        sizes: dict[str, tuple[int, str]] = {}
        float_dtype = None
        for param, value in zip(params, args):
            where = f"{self.kernel}(): argument '{param.name}'"
            if not isinstance(value, np.ndarray):
                raise DTypeError(f"{where} must be a numpy array, got {type(value).__name__}")
            if value.ndim != len(param.dims):
                raise ShapeError(f"{where} must be {len(param.dims)}-D with shape ({', '.join(param.dims)}), got shape {value.shape}")
            if param.dtype is None:
                if value.dtype not in FLOAT_DTYPES:
                    raise DTypeError(f"{where} must be float32 or float64, got {value.dtype}; convert with .astype(np.float32)")
                if float_dtype is None:
                    float_dtype = value.dtype
                elif value.dtype != float_dtype:
                    raise DTypeError(f"{where} is {value.dtype} but earlier arrays are {float_dtype}; use one float dtype for all")
            elif param.dtype == "any":
                if value.dtype.kind not in "ui" and value.dtype not in FLOAT_DTYPES:  # numba has no float16
                    raise DTypeError(f"{where} must be an integer, float32 or float64 array, got {value.dtype}")
            elif value.dtype != param.dtype:
                raise DTypeError(f"{where} must be {param.dtype}, got {value.dtype}; convert with .astype(np.{param.dtype})")
            if not value.flags.c_contiguous:
                raise ShapeError(f"{where} must be C-contiguous; pass np.ascontiguousarray(...) instead of a strided view")
            for letter, size in zip(param.dims, value.shape):
                if letter not in sizes:
                    sizes[letter] = (size, param.name)
                elif sizes[letter][0] != size:
                    size0, name0 = sizes[letter]
                    raise ShapeError(
                        f"{where} has {letter}={size} (shape {value.shape}) but '{name0}' has {letter}={size0}; "
                        "the sizes must agree"
                    )
        for param, value in zip(self.outputs, args):
            if not value.flags.writeable:
                raise ValueError(f"{self.kernel}(): output '{param.name}' is read-only; pass a writeable array")


def check_classes(kernel: str, z: np.ndarray) -> None:
    """Value check shared by kernels over (B, C) class scores: they read z[r, 0], so C >= 1."""
    if z.shape[1] == 0:
        raise ShapeError(f"{kernel}(): argument 'z' needs at least one class column, got shape {z.shape}")


def _parse_args(text: str) -> tuple[_Arg, ...]:
    args = []
    for token in text.split():
        match = _ARRAY.match(token)
        if not match:
            raise ValueError(f"bad kernel spec token {token!r}")
        name, dims, dtype = match.groups()
        args.append(_Arg(name, tuple(d for d in dims.split(",") if d), _dtype(dtype)))
    return tuple(args)


def _dtype(text: str | None) -> np.dtype | str | None:
    return text if text in (None, "any") else np.dtype(text)
