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

import numpy as np
from numba.core import event
from tqdm.auto import tqdm

from fastnet.errors import ConfigError
from fastnet.kernels import caching


class Discard(io.TextIOBase):
    """A text stream that drops what it is given; Progress on it shows nothing at all (``--quiet``)."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)


class Progress:
    def __init__(self, enabled: bool = True, stream=None, bars: bool = True):
        self.stream = stream or sys.stderr
        self.enabled = enabled and not isinstance(self.stream, Discard)
        self.bars = bars  # False: the epoch lines without the bars (Keras's verbose=2)

    def compiling(self, compile_fn) -> float:
        """Run ``compile_fn`` (which returns seconds), telling the user when it is slow: when numba compiles."""
        notice = _CompileNotice(self.stream if self.enabled else None)
        with event.install_listener("numba:compile", notice):
            seconds = compile_fn()
        if notice.given:
            print(f"fastnet: kernels ready in {seconds:.2f} s", file=self.stream, flush=True)
        return seconds

    def bar(self, epoch: int, n_batches: int) -> "Bar":
        if not (self.enabled and self.bars and _is_terminal(sys.stderr)):
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
    return "  ".join([f"epoch {record['epoch']}", format_scores(record), f"{record['seconds']:.2f} s"])


def format_scores(scores: dict) -> str:
    """'loss 0.2154  accuracy 93.81%', with val_loss and val_accuracy when ``scores`` has them."""
    parts = []
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if key in scores:
            value = scores[key]
            parts.append(f"{key} {value:.2%}" if "accuracy" in key else f"{key} {value:.4f}")
    return "  ".join(parts)


VERBOSE = {0: "silent", 1: "progress bars and one line per epoch", 2: "one line per epoch"}


def verbosity(verbose) -> int:
    """Keras's ``verbose`` as 0, 1 or 2 ("auto" is 1, as in Keras); ConfigError for anything else."""
    if verbose == "auto":
        return 1
    if not isinstance(verbose, (int, np.integer)) or int(verbose) not in VERBOSE:
        shown = ", ".join(f"{k} ({v})" for k, v in VERBOSE.items())
        raise ConfigError(f"verbose must be {shown} or 'auto', got {verbose!r}")
    return int(verbose)


def from_verbose(progress, verbose):
    """``fit``'s ``progress`` (None: on), given Keras's ``verbose`` too (None: not given): the
    ``progress`` to use. Both given must agree on whether anything is shown."""
    if verbose is None:
        return True if progress is None else progress
    level = verbosity(verbose)
    if progress is not None:
        shown = progress.enabled if isinstance(progress, Progress) else bool(progress)
        if shown != (level > 0):
            raise ConfigError(f"progress={progress!r} and verbose={verbose!r} disagree; pass one of them")
        if isinstance(progress, Progress):
            return progress
    return Progress(enabled=level > 0, bars=level == 1)
