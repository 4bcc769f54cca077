"""Losses. Each names its fused loss+gradient kernel and how predictions and accuracy are read.

    SoftmaxCrossEntropy  integer class labels; predict gives class probabilities
    BinaryCrossEntropy   0/1 targets, sigmoid fused on the logits; predict gives probabilities
    MSE                  real targets; predict gives the raw outputs
"""
from __future__ import annotations

from fastnet.errors import ConfigError
from fastnet.kernels import ACT


class Loss:
    kernel = ""  # loss kernel: (grad_out, outputs, targets) -> mean loss
    output = None  # (activation code, p0, p1) that turns outputs into predictions, or "softmax"
    hits = None  # accuracy kernel, or None where accuracy does not apply
    integer_targets = False

    def config(self) -> dict:
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SoftmaxCrossEntropy(Loss):
    """Softmax fused with cross-entropy on integer labels; the stable, one-pass form."""

    kernel = "softmax_ce"
    output = "softmax"
    hits = "argmax_hits"
    integer_targets = True


class BinaryCrossEntropy(Loss):
    """Sigmoid fused with binary cross-entropy on the logits, for 0/1 targets."""

    kernel = "sigmoid_bce"
    output = (ACT["sigmoid"], 1.0, 1.0)
    hits = "threshold_hits"


class MSE(Loss):
    """Mean squared error, mean((prediction - target)²) over every element."""

    kernel = "mse"
    output = (ACT["identity"], 0.0, 0.0)


LOSSES = {cls.__name__: cls for cls in (SoftmaxCrossEntropy, BinaryCrossEntropy, MSE)}

# Keras's loss names (as strings, in either spelling) for the losses that mean here what they mean there
KERAS_LOSSES = {"sparse_categorical_crossentropy": SoftmaxCrossEntropy, "binary_crossentropy": BinaryCrossEntropy,
                "mse": MSE, "mean_squared_error": MSE}
_DIFFERENT = {"categoricalcrossentropy": "fastnet's SoftmaxCrossEntropy takes integer labels, not one-hot rows: pass "
                                         "loss='sparse_categorical_crossentropy' and y.argmax(axis=1)"}


def loss_named(name: str) -> Loss:
    """A new loss by name: Keras's ("sparse_categorical_crossentropy" or "SparseCategoricalCrossentropy",
    "binary_crossentropy", "mse"/"mean_squared_error") or fastnet's ("SoftmaxCrossEntropy").

    fastnet's losses take the last layer's raw outputs (Keras's ``from_logits=True``); ``predict``
    applies the softmax or sigmoid. ConfigError, in one line, for other names.
    """
    table = {_key(k): cls for k, cls in [*KERAS_LOSSES.items(), *LOSSES.items()]}
    key = _key(name)
    if key in _DIFFERENT:
        raise ConfigError(f"loss {name!r}: {_DIFFERENT[key]}")
    if key not in table:
        raise ConfigError(f"unknown loss {name!r}; known names: {', '.join([*KERAS_LOSSES, *LOSSES])}")
    return table[key]()


def _key(name: str) -> str:
    """Keras spells a loss sparse_categorical_crossentropy or SparseCategoricalCrossentropy."""
    return name.replace("_", "").lower()
