"""Pairs each numba kernel with its NumPy twin and groups them into two backends.

``get_backend("numba")`` and ``get_backend("numpy")`` have the same kernels under
the same names and signatures. Calling ``backend.dense_forward(...)`` checks the
arguments first (see ``_spec``); ``backend.raw.dense_forward(...)`` skips the
check, for the model layer's hot loop, whose buffers it allocated itself.
"""
from __future__ import annotations

import inspect
import numbers
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import numpy as np

from ._spec import Spec
from .errors import ConfigError, DTypeError


@dataclass(frozen=True)
class Twin:
    """One op: its numba kernel, its NumPy twin, and the door check both share."""

    name: str
    numba: Callable
    numpy: Callable
    spec: Spec
    check: Callable | None = None  # extra value checks on the args, e.g. label range

    def checked(self, fn: Callable) -> Callable:
        spec, extra, name = self.spec, self.check, self.name
        params = tuple(inspect.signature(self.numpy).parameters)  # both twins share one signature
        scalars = tuple(enumerate(params))[len(spec.outputs) + len(spec.inputs):]

        def kernel(*args):
            if len(args) != len(params):
                raise TypeError(f"{name}() takes {len(params)} arguments ({', '.join(params)}); got {len(args)}")
            spec.check(args)
            for i, param in scalars:  # numba would raise a typing error deep inside instead
                if not isinstance(args[i], (numbers.Real, np.bool_)):
                    raise DTypeError(f"{name}(): argument '{param}' must be a number, got {type(args[i]).__name__}")
            if extra is not None:
                extra(*args)
            return fn(*args)

        kernel.__name__ = kernel.__qualname__ = self.name
        kernel.__doc__ = fn.__doc__
        kernel.__wrapped__ = fn
        return kernel


def twin(numba_fn: Callable, numpy_fn: Callable, spec: str, check: Callable | None = None) -> Twin:
    """Declare that ``numpy_fn`` computes what ``numba_fn`` computes, with arrays as in ``spec``."""
    name = numba_fn.__name__
    if numpy_fn.__name__ != name + "_np":
        raise AssertionError(f"twin of {name} should be named {name}_np, not {numpy_fn.__name__}")
    return Twin(name, numba_fn, numpy_fn, Spec.parse(name, spec), check)


class Backend:
    """A complete set of kernels: checked as attributes, unchecked under ``.raw``."""

    def __init__(self, name: str, twins: list[Twin]):
        self.name = name
        self.twins = {t.name: t for t in twins}
        self.raw = SimpleNamespace(**{t.name: getattr(t, name) for t in twins})
        for t in twins:
            setattr(self, t.name, t.checked(getattr(t, name)))

    def __repr__(self) -> str:
        return f"<fastnet backend {self.name!r}: {len(self.twins)} kernels>"


def make_backends(twins: list[Twin]) -> dict[str, Backend]:
    return {name: Backend(name, twins) for name in ("numba", "numpy")}


def lookup(backends: dict[str, Backend], name: str) -> Backend:
    try:
        return backends[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(map(repr, backends))}") from None
