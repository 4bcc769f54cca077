"""The errors the kernels raise. fastnet.errors re-exports them, so ``fn.ShapeError`` is this very class.

They live here, not in fastnet/, because kernels/ never imports the package above it.
"""


class FastnetError(Exception):
    """Base class of every error fastnet raises on purpose."""


class ShapeError(FastnetError, ValueError):
    """An array has the wrong number of dimensions or the wrong size."""


class DTypeError(FastnetError, TypeError):
    """An array has a dtype fastnet cannot use here."""


class ConfigError(FastnetError, ValueError):
    """An unknown option: a backend, activation, dtype, initialiser or similar."""
