"""Competing load for ``fastnet bench --busy N``: N processes that each spin one core.

Each busy process is a pure Python spin loop that ignores Ctrl-C (the bench ends it) and exits by
itself if the bench process dies without ending it (its parent changes), so none is ever left behind.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys

_SPIN = """
import os, signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
parent = {parent}
while os.getppid() == parent:
    for _ in range(1_000_000):
        pass
"""


def start_busy(n: int) -> list[subprocess.Popen]:
    """Start ``n`` CPU-bound spinning processes."""
    procs = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", _SPIN.format(parent=os.getpid())],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
    except BaseException:
        stop_busy(procs)
        raise
    return procs


def stop_busy(procs: list[subprocess.Popen]) -> None:
    """Kill the busy processes and reap them."""
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


@contextlib.contextmanager
def busy_processes(n: int):
    """Within this block, ``n`` busy processes compete for the cores; they are killed on the way out,
    whether the block ends, fails or is interrupted. Yields their process ids."""
    procs = start_busy(n)
    try:
        yield [p.pid for p in procs]
    finally:
        stop_busy(procs)
