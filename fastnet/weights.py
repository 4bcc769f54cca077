"""Per-sample weights for ``fit`` and ``evaluate``: Keras's ``sample_weight`` and ``class_weight``, checked at the door.

A sample's weight multiplies its loss and its gradient inside the loss kernels (see
``fastnet/kernels/step.py``); no row is copied. A batch's loss is Keras 3's default reduction,
"sum_over_batch_size": the sum of weight · loss over the batch, divided by the batch size (not
by the sum of the weights), so a weight of 2 counts a sample as twice its loss, and weights of
1 give exactly the unweighted result. Accuracy stays unweighted, as Keras's ``metrics`` do (only
its ``weighted_metrics`` see the weights).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fastnet.errors import ConfigError, DTypeError, InputError, ShapeError
from fastnet.inputs import is_number, is_whole
from fastnet.losses import BinaryCrossEntropy, Loss


def sample_weights(sample_weight, class_weight, y: np.ndarray, loss: Loss, n_out: int,
                   dtype) -> np.ndarray | None:
    """Each sample's weight, shape (len(y),) in ``dtype``, or None when neither argument is given.

    ``y`` is the checked targets (``inputs.check_y``), ``n_out`` the model's outputs. ``sample_weight``
    is one weight per sample; ``class_weight`` a dict {class label: weight} over the model's classes
    (those it leaves out weigh 1, as in Keras), for class labels only: SoftmaxCrossEntropy, or
    BinaryCrossEntropy with one output (classes 0 and 1). Both at once are refused, as Keras 3 refuses them. Raises a one-line
    ConfigError, ShapeError, DTypeError or InputError for weights that are unusable.
    """
    if sample_weight is None and class_weight is None:
        return None
    if sample_weight is not None and class_weight is not None:
        raise ConfigError("pass sample_weight or class_weight, not both; fold the class weights into sample_weight, "
                          "e.g. sample_weight * np.array([class_weight[c] for c in y])")
    if class_weight is not None:
        return _checked(_from_classes(class_weight, y, loss, n_out), dtype, "class_weight")
    return _checked(_vector(sample_weight, len(y)), dtype, "sample_weight")


def _vector(sample_weight, n: int) -> np.ndarray:
    """``sample_weight`` as a (n,) array of numbers, or a one-line error."""
    w = sample_weight if isinstance(sample_weight, np.ndarray) else np.asarray(sample_weight)
    if w.dtype.kind not in "iuf":
        raise DTypeError(f"sample_weight must be numbers, one per sample, got dtype {w.dtype}")
    if w.shape != (n,):
        hint = "; flatten it with np.ravel(sample_weight)" if w.size == n else ""
        raise ShapeError(f"sample_weight must have shape ({n},), one weight per sample of x, got shape {w.shape}{hint}")
    return w


def _from_classes(class_weight, y: np.ndarray, loss: Loss, n_out: int) -> np.ndarray:
    """The weight of each sample's class, from the dict ``class_weight``."""
    if not isinstance(class_weight, Mapping):
        raise ConfigError(f"class_weight must be a dict {{class label: weight}}, e.g. {{0: 1.0, 1: 5.0}}, "
                          f"got {type(class_weight).__name__}")
    if loss.integer_targets:
        labels, n_classes = y, n_out
    elif isinstance(loss, BinaryCrossEntropy) and y.shape[1] == 1:
        labels, n_classes = y[:, 0].astype(np.int64), 2
    else:
        raise ConfigError(f"class_weight needs class labels, and {type(loss).__name__} with {y.shape[1]} output(s) "
                          "has none; weigh the samples with sample_weight instead")
    table = np.ones(n_classes)
    for label, weight in class_weight.items():
        if not is_whole(label) or not 0 <= label < n_classes:
            raise ConfigError(f"class_weight has key {label!r}, which is not a class of this model; "
                              f"the classes are 0..{n_classes - 1}")
        if not is_number(weight) or weight < 0:
            raise InputError(f"class_weight[{label!r}] must be a finite number >= 0, got {weight!r}")
        table[int(label)] = weight
    return table[labels]


def _checked(w: np.ndarray, dtype, name: str) -> np.ndarray:
    """``w`` in ``dtype``, once every weight is finite and >= 0 and some weight is not 0."""
    with np.errstate(over="ignore", invalid="ignore"):  # a weight too large for float32 is reported below
        converted = np.ascontiguousarray(w, dtype=dtype)
    finite = np.isfinite(converted)
    if not finite.all():
        row = int(np.argmin(finite))
        if np.isfinite(w[row]):
            raise InputError(f"{name} at row {row} ({w[row].item()!r}) overflows {np.dtype(dtype)}; "
                             "scale the weights down")
        raise InputError(f"{name} is NaN or Inf at row {row}; give every sample a finite weight")
    if (converted < 0).any():
        row = int(np.argmax(converted < 0))
        raise InputError(f"{name} is negative at row {row} ({w[row].item()!r}); weights must be >= 0")
    if converted.size and not converted.any():  # no samples (evaluate on empty x) is not this mistake
        raise InputError(f"{name} gives every sample weight 0, so nothing would be learned; "
                         "give some samples a weight > 0")
    return converted
