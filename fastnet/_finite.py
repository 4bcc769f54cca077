"""NaN and Inf in a model's state: set_weights, save, load, export and gradcheck refuse them (a diverged
model is no model)."""
from __future__ import annotations

import numpy as np

from fastnet.errors import ConfigError

CHUNK = 1 << 20  # elements tested at a time, so the test of a large tensor needs no tensor-sized mask


def nonfinite(tensors: dict) -> str | None:
    """Which of ``tensors`` (name -> array) holds NaN or Inf, and how many: e.g. "layers.0.weight holds
    3 NaN or Inf values", for the first that does; None when every value is finite."""
    for name, array in tensors.items():
        flat = np.asarray(array).reshape(-1)
        if flat.dtype.kind not in "fc":
            continue
        bad = sum(int(np.count_nonzero(~np.isfinite(flat[i:i + CHUNK]))) for i in range(0, flat.size, CHUNK))
        if bad:
            return f"{name} holds {bad:,} NaN or Inf value{'s' * (bad != 1)}"
    return None


def refuse_nonfinite(model, action: str) -> None:
    """ConfigError, in one line, if ``model`` has a NaN or Inf parameter: ``action`` (e.g. "export the
    model") would compute nothing meaningful with it."""
    bad = nonfinite(model.get_weights())
    if bad:
        raise ConfigError(f"cannot {action}: {bad} (training diverged?); retrain it, e.g. with a lower "
                          "learning rate, or set finite weights")
