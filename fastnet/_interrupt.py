"""Ctrl-C or SIGTERM during ``fit``: stop at the next batch boundary, where the model can be saved and resumed."""
from __future__ import annotations

import signal
import threading

# The signals fit defers, each with the handler it takes over: Ctrl-C, and the polite kill of `kill`,
# `timeout` and job schedulers, which would otherwise end the process with the epoch's batches lost.
DEFERRED = ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL))


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by ``fit`` after Ctrl-C (or SIGTERM), between two batches: save the model now and a later
    ``fit`` (after ``fn.load``) continues exactly where this one stopped, even in the middle of an epoch.

    ``signum`` is the signal that stopped it.
    """

    signum: int = signal.SIGINT


class DeferredInterrupt:
    """While active, the first SIGINT or SIGTERM only sets ``requested`` (and ``signum``); a second one
    interrupts at once, with a KeyboardInterrupt whose ``signum`` is that signal.

    Active only in the main thread, and for each signal only while it has Python's default handler, so
    a handler the user installed (or an ignored SIGTERM) is left alone. The previous handlers are
    restored on exit, and a TrainingInterrupted leaving the block gets the ``signum`` that asked for it.
    """

    def __init__(self):
        self.requested = False
        self.signum = None
        self._previous = {}

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            for signum, default in DEFERRED:
                if signal.getsignal(signum) == default:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        if isinstance(exc, TrainingInterrupted) and self.signum is not None:
            exc.signum = self.signum

    def _handle(self, signum, frame) -> None:
        if self.requested:  # the second signal: stop here and now
            stop = KeyboardInterrupt()
            stop.signum = signum
            raise stop
        self.requested, self.signum = True, signum


def exit_status(stop: KeyboardInterrupt) -> int:
    """The exit status a shell reports for the signal that stopped training: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + getattr(stop, "signum", signal.SIGINT)


def stopped_by(stop: KeyboardInterrupt) -> str:
    """How training was stopped, for a message: "interrupted" (Ctrl-C) or "stopped by SIGTERM"."""
    signum = getattr(stop, "signum", signal.SIGINT)
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
