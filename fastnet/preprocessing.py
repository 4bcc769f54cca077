"""STAND-IN for h10's preprocessing (to be replaced at merge): the contract's names, minimal behaviour.

fit_scaler(kind, x) -> Scaler; Scaler.transform, to_tensors, config, from_checkpoint.
"""
from __future__ import annotations

import numpy as np

from fastnet.errors import ConfigError

KINDS = ("standard", "minmax", "none", "divide")


class Scaler:
    """(x - shift) / scale, column by column."""

    def __init__(self, kind: str, shift, scale, dtype="float32"):
        self.kind, self.dtype = kind, np.dtype(dtype)
        self.shift = np.asarray(shift, self.dtype)
        self.scale = np.asarray(scale, self.dtype)

    def transform(self, x, out=None) -> np.ndarray:
        result = (np.asarray(x, self.dtype) - self.shift) / self.scale
        if out is not None:
            out[...] = result
            return out
        return result

    def to_tensors(self) -> dict:
        return {"preprocessing.shift": self.shift, "preprocessing.scale": self.scale}

    def config(self) -> dict:
        return {"kind": self.kind}

    @classmethod
    def from_checkpoint(cls, config, tensors) -> "Scaler":
        shift, scale = tensors["preprocessing.shift"], tensors["preprocessing.scale"]
        return cls(config["kind"], shift, scale, shift.dtype)


def fit_scaler(kind: str, x, dtype="float32", divisor: float = 255.0) -> Scaler:
    if kind not in KINDS:
        raise ConfigError(f"unknown scaling {kind!r}; choose one of {', '.join(KINDS)}")
    x = np.asarray(x, np.float64)
    d = x.shape[1]
    if kind == "standard":
        std = x.std(axis=0)
        return Scaler(kind, x.mean(axis=0), np.where(std > 0, std, 1.0), dtype)
    if kind == "minmax":
        low, span = x.min(axis=0), x.max(axis=0) - x.min(axis=0)
        return Scaler(kind, low, np.where(span > 0, span, 1.0), dtype)
    if kind == "divide":
        return Scaler(kind, np.zeros(d), np.full(d, divisor), dtype)
    return Scaler(kind, np.zeros(d), np.ones(d), dtype)
