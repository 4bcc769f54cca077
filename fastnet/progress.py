"""Progress: a compile notice, a tqdm bar within each epoch, one line per epoch.

The notice is given only when numba compiles something: not when every kernel comes from the
cache or was compiled earlier in the process (a second ``fit`` in a notebook).

The notice and the epoch lines go to ``stream`` (stderr by default). Bars always go
to stderr, and only when it is a terminal: a redirected log holds whole lines, no
``\\r`` frames, and stdout never carries a bar.
"""
from __future__ import annotations

import io
import sys

from numba.core import event
from tqdm.auto import tqdm

from fastnet.kernels import caching


class Discard(io.TextIOBase):
    """A text stream that drops what it is given; Progress on it shows nothing at all (``--quiet``)."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)


class Progress:
    def __init__(self, enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled and not isinstance(self.stream, Discard)

    def compiling(self, compile_fn) -> float:
        """Run ``compile_fn`` (which returns seconds), telling the user when it is slow: when numba compiles."""
        notice = _CompileNotice(self.stream if self.enabled else None)
        with event.install_listener("numba:compile", notice):
            seconds = compile_fn()
        if notice.given:
            print(f"fastnet: kernels ready in {seconds:.2f} s", file=self.stream, flush=True)
        return seconds

    def bar(self, epoch: int, n_batches: int) -> "Bar":
        if not (self.enabled and _is_terminal(sys.stderr)):
            return _NO_BAR
        return Bar(tqdm(total=n_batches, desc=f"epoch {epoch + 1}", unit="batch", leave=False,
                        file=sys.stderr, mininterval=0.25))

    def epoch(self, record: dict) -> None:
        if self.enabled:
            tqdm.write(format_record(record), file=self.stream)


class _CompileNotice(event.Listener):
    """Says "preparing kernels" to ``stream`` (None: to no one) as numba starts its first compile;
    loading a kernel from the cache, or finding it compiled already, is no compile. A listener of
    numba's documented event API (``numba.core.event``), for its "numba:compile" events."""

    def __init__(self, stream):
        self.stream, self.given = stream, False

    def on_start(self, _event) -> None:
        if self.stream is not None and not self.given:
            self.given = True
            how = "compiled once, then cached" if caching() else "compiled on every run: no writable cache"
            print(f"fastnet: preparing kernels ({how})...", file=self.stream, flush=True)

    def on_end(self, _event) -> None:
        pass


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


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
