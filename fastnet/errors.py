"""fastnet's exceptions. Each message says what is wrong and how to fix it."""


class FastnetError(Exception):
    """Base class of every error fastnet raises on purpose."""


class ShapeError(FastnetError, ValueError):
    """An array has the wrong number of dimensions or the wrong size."""


class DTypeError(FastnetError, TypeError):
    """An array has a dtype fastnet cannot use here."""


class DataError(FastnetError, ValueError):
    """A dataset file is missing, truncated, corrupt or inconsistent."""


class ConfigError(FastnetError, ValueError):
    """An unknown option: a backend, activation, dtype, initialiser or similar."""


class DivergenceError(FastnetError, FloatingPointError):
    """Training produced a NaN or Inf loss."""


class CheckpointError(FastnetError, ValueError):
    """A saved model cannot be read: wrong format, missing tensors or bad metadata."""


class InputError(FastnetError, ValueError):
    """Input values are unusable: NaN or Inf, labels outside the classes, bad targets."""
