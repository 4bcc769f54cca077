"""Training history and callbacks (early stopping, per-epoch checkpoints)."""
from __future__ import annotations

import difflib
import math

import numpy as np

from fastnet.errors import ConfigError
from fastnet.inputs import as_path, is_number, is_whole


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
    """Hooks called by ``fit``. Set ``model.stop_training = True`` to stop after this epoch.

    Before ``on_train_begin``, fit sets ``params``: ``{"epochs", "batch_size", "metrics"}``,
    where ``metrics`` names what each epoch will record (loss, accuracy, val_loss, val_accuracy).
    """

    params: dict = {}

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

    METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")

    def __init__(self, patience: int = 3, monitor: str = "val_loss", min_delta: float = 0.0,
                 restore_best: bool = True):
        if not (is_whole(patience) and patience >= 0 and is_number(min_delta) and min_delta >= 0):
            raise ConfigError(f"EarlyStopping needs a whole patience >= 0 and a finite min_delta >= 0, "
                              f"got {patience!r}, {min_delta!r}")
        if not isinstance(monitor, str):
            raise ConfigError(f"EarlyStopping monitor must be a metric's name, e.g. 'val_loss', got {monitor!r}")
        if not isinstance(restore_best, bool):
            raise ConfigError(f"EarlyStopping restore_best must be True or False, got {restore_best!r}")
        self.patience, self.monitor, self.min_delta, self.restore_best = int(patience), monitor, min_delta, restore_best
        self.mode = "max" if "acc" in monitor else "min"

    def on_train_begin(self, model):
        recorded = self.params.get("metrics")
        if recorded is not None and self.monitor not in recorded:
            raise ConfigError(self._unrecorded(recorded))
        self.best, self.best_epoch, self.best_params, self.wait = None, None, None, 0
        self.stopped_epoch = None

    def _unrecorded(self, recorded) -> str:
        """Why ``monitor`` will not be recorded, naming what will be and the likely fix."""
        message = (f"EarlyStopping monitors {self.monitor!r}, which fit does not record "
                   f"(it records {', '.join(recorded) or 'nothing'}).")
        name = self.monitor
        if name not in self.METRICS:
            close = difflib.get_close_matches(name, self.METRICS, n=1)
            if not close:
                return message
            name = close[0]
            message += f" Did you mean {name!r}?"
        if name not in recorded and name.startswith("val_") and name[4:] in recorded:
            message += " Pass validation_data=(x_val, y_val) to fit to record it."
        return message

    def on_epoch_end(self, model, record):
        if self.monitor not in record:
            raise ConfigError(self._unrecorded([k for k in self.METRICS if k in record]))
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
        as_path(path, "Checkpoint")  # fit checks that it can be written before training
        if not isinstance(include_optimizer, bool):
            raise ConfigError(f"Checkpoint include_optimizer must be True or False, got {include_optimizer!r}")
        self.path, self.include_optimizer = path, include_optimizer

    def on_epoch_end(self, model, record):
        model.save(self.path, include_optimizer=self.include_optimizer)
