"""When training has diverged: the one rule fit, train_step and the ``fastnet`` command share.

The rule: a batch loss diverged when it is NaN or Inf, or when it exceeds ``GROWTH`` times
``max(start, 1)``, ``start`` being the first batch loss of the ``fit`` call. fastnet's losses are
means per sample (and per output), so an untrained network starts near 1 on sensibly scaled
data (ln(classes) for softmax cross-entropy, about the targets' variance for MSE) and training
only lowers them. A loss a million times above both its start and 1 means logits a million times
too large (cross-entropy grows linearly with them) or outputs a thousand times too large (MSE
grows with their square): no further step recovers, and the next ones overflow. Below that, a
loss that grows is left to EarlyStopping and the user: it may still turn round.
"""
from __future__ import annotations

import math

GROWTH = 1e6


class LossWatch:
    """The divergence rule over one ``fit`` call: remembers the first batch loss, judges every other."""

    def __init__(self):
        self.start: float | None = None

    def problem(self, loss: float) -> str | None:
        """Why ``loss`` means training diverged (a phrase for a message), or None; the first finite
        loss seen becomes the start."""
        why = diverged(loss, self.start)
        if why is None and self.start is None:
            self.start = loss
        return why


def diverged(loss: float, start: float | None = None) -> str | None:
    """Why ``loss`` means training diverged, by the module's rule (``start`` None: only NaN and Inf count)."""
    if not math.isfinite(loss):
        return f"the loss is {loss}"
    if start is not None and loss > GROWTH * max(start, 1.0):
        return (f"the loss is {loss:.3g}, over {GROWTH:,.0f} times its first value in this fit "
                f"({start:.3g}, counted as at least 1)")
    return None
