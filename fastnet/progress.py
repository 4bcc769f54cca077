"""Progress on stderr: a compile notice, a tqdm bar within each epoch, one line per epoch."""
from __future__ import annotations

import sys

from tqdm.auto import tqdm


class Progress:
    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr

    def compiling(self, compile_fn) -> float:
        """Run ``compile_fn`` (which returns seconds), telling the user when it is slow."""
        if self.enabled:
            print("fastnet: preparing kernels (compiled once, then cached)...", file=self.stream, flush=True)
        seconds = compile_fn()
        if self.enabled:
            print(f"fastnet: kernels ready in {seconds:.2f} s", file=self.stream, flush=True)
        return seconds

    def bar(self, epoch: int, n_batches: int) -> "Bar":
        return Bar(tqdm(total=n_batches, desc=f"epoch {epoch + 1}", unit="batch", leave=False,
                        file=self.stream, mininterval=0.25)) if self.enabled else _NO_BAR

    def epoch(self, record: dict) -> None:
        if self.enabled:
            tqdm.write(format_record(record), file=self.stream)


class Bar:
    def __init__(self, bar):
        self._bar, self._n = bar, 0

    def update(self, loss: float) -> None:
        self._n += 1
        self._bar.update(1)
        if self._n % 50 == 0:
            self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def close(self) -> None:
        self._bar.close()


class _NoBar:
    def update(self, loss: float) -> None:
        pass

    def close(self) -> None:
        pass


_NO_BAR = _NoBar()


def format_record(record: dict) -> str:
    """One line per epoch: 'epoch 3  loss 0.2154  accuracy 93.81%  val_loss ...  1.23 s'."""
    parts = [f"epoch {record['epoch']}"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if key in record:
            value = record[key]
            parts.append(f"{key} {value:.2%}" if "accuracy" in key else f"{key} {value:.4f}")
    parts.append(f"{record['seconds']:.2f} s")
    return "  ".join(parts)
