"""Ctrl-C during ``fit``: stop at the next batch boundary, where the model can be saved and resumed exactly."""
from __future__ import annotations

import signal
import threading


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by ``fit`` after Ctrl-C, between two batches: save the model now and a later ``fit``
    (after ``fn.load``) continues exactly where this one stopped, even in the middle of an epoch."""


class DeferredInterrupt:
    """While active, the first SIGINT only sets ``requested``; a second one interrupts at once, as usual.

    Active only in the main thread and when SIGINT has Python's default handler, so a handler the
    user installed is left alone. The previous handler is restored on exit.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            signal.default_int_handler(signum, frame)  # the second Ctrl-C: KeyboardInterrupt here and now
        self.requested = True
