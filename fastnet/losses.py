"""Losses. Each names its fused loss+gradient kernel and how predictions and accuracy are read.

    SoftmaxCrossEntropy  integer class labels; predict gives class probabilities
    BinaryCrossEntropy   0/1 targets, sigmoid fused on the logits; predict gives probabilities
    MSE                  real targets; predict gives the raw outputs
"""
from __future__ import annotations

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
