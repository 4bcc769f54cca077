"""fastnet's exceptions. Each message says what is wrong and how to fix it.

The kernels' own errors (the base class among them) come from fastnet.kernels.errors:
one class under two names, so ``except fn.ShapeError`` catches what a kernel raises.
"""
from fastnet.kernels.errors import ConfigError, DTypeError, FastnetError, ShapeError


class DataError(FastnetError, ValueError):
    """A dataset file is missing, truncated, corrupt or inconsistent."""


class DivergenceError(FastnetError, FloatingPointError):
    """Training diverged: a NaN or Inf loss or weights, or a loss far beyond its start (see fastnet.divergence)."""


class CheckpointError(FastnetError, ValueError):
    """A saved model cannot be read: wrong format, missing tensors or bad metadata."""


class DistributedError(FastnetError, RuntimeError):
    """A data-parallel run failed on some rank; every rank raises it, with the same message."""


class InputError(FastnetError, ValueError):
    """Input values are unusable: NaN or Inf, labels outside the classes, bad targets."""


__all__ = ["CheckpointError", "ConfigError", "DataError", "DistributedError", "DivergenceError", "DTypeError",
           "FastnetError", "InputError", "ShapeError"]
