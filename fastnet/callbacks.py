"""Training history and callbacks (early stopping, per-epoch checkpoints)."""
from __future__ import annotations

import math

import numpy as np

from fastnet.errors import ConfigError


class History:
    """Per-epoch records of a model's training: loss, accuracy, val_loss, val_accuracy, lr, seconds.

    ``history.records`` is a list of dicts, one per epoch; ``history["loss"]`` is
    one metric as a list, ready to plot; ``history.history`` is all metrics as lists.
    """

    def __init__(self, records: list[dict] | None = None):
        self.records: list[dict] = list(records or [])

    def append(self, record: dict) -> None:
        self.records.append(dict(record))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: str) -> list:
        if not any(key in r for r in self.records):  # epochs without it (e.g. no validation data) give NaN
            known = ", ".join(dict.fromkeys(k for r in self.records for k in r)) or "nothing yet"
            raise KeyError(f"no metric {key!r} in the history; recorded: {known}")
        return [r.get(key, math.nan) for r in self.records]

    @property
    def history(self) -> dict[str, list]:
        keys = dict.fromkeys(k for r in self.records for k in r)
        return {k: self[k] for k in keys}

    def __repr__(self) -> str:
        return f"History({len(self)} epochs)"


class Callback:
    """Hooks called by ``fit``. Set ``model.stop_training = True`` to stop after this epoch."""

    def on_train_begin(self, model) -> None:
        pass

    def on_batch_end(self, model, batch: int, loss: float) -> None:
        """After the update of ``batch`` (0-based, within the epoch), whose mean loss was ``loss``."""

    def on_epoch_end(self, model, record: dict) -> None:
        pass

    def on_train_end(self, model) -> None:
        pass


class EarlyStopping(Callback):
    """Stop when ``monitor`` (default val_loss) has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best=True`` the weights of the best epoch are put back at the end.
    """

    def __init__(self, patience: int = 3, monitor: str = "val_loss", min_delta: float = 0.0,
                 restore_best: bool = True):
        if patience < 0 or min_delta < 0:
            raise ConfigError(f"EarlyStopping needs patience >= 0 and min_delta >= 0, got {patience}, {min_delta}")
        self.patience, self.monitor, self.min_delta, self.restore_best = patience, monitor, min_delta, restore_best
        self.mode = "max" if "acc" in monitor else "min"

    def on_train_begin(self, model):
        self.best, self.best_epoch, self.best_params, self.wait = None, None, None, 0
        self.stopped_epoch = None

    def on_epoch_end(self, model, record):
        if self.monitor not in record:
            raise ConfigError(f"EarlyStopping monitors {self.monitor!r}, which fit did not record; "
                              "pass validation_data=(x_val, y_val) to fit")
        value = record[self.monitor]
        better = self.best is None or (value < self.best - self.min_delta if self.mode == "min"
                                       else value > self.best + self.min_delta)
        if better:
            self.best, self.best_epoch, self.wait = value, record["epoch"], 0
            if self.restore_best:
                self.best_params = model.params.copy()
        else:
            self.wait += 1
            if self.wait >= self.patience:  # `patience` epochs in a row without improvement, as Keras
                self.stopped_epoch = record["epoch"]
                model.stop_training = True

    def on_train_end(self, model):
        if self.restore_best and self.best_params is not None:
            np.copyto(model.params, self.best_params)


class Checkpoint(Callback):
    """Save the model (with optimizer state, so training can resume) after every epoch, atomically.

    To also keep the batches of an epoch cut short by Ctrl-C, save the model once more when ``fit``
    raises ``TrainingInterrupted`` (a KeyboardInterrupt): that file resumes exactly, mid-epoch.
    """

    def __init__(self, path, include_optimizer: bool = True):
        self.path, self.include_optimizer = path, include_optimizer

    def on_epoch_end(self, model, record):
        model.save(self.path, include_optimizer=self.include_optimizer)
