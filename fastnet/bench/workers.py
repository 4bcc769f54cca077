"""Benchmark worker processes: each contender lives in its own process, driven one request at a time.

The parent starts a worker with a *job*, named "module:function" and imported in the child only, and a
JSON spec. ``job(spec)`` sets the contender up and returns ``(info, handle)``: ``info`` (a dict) is sent
back at once, with the BLAS the worker loaded, and every request (one JSON line on stdin) is answered
with ``handle(request)`` (one JSON line on the worker's real stdout; stray output from libraries goes
to stderr). A job that cannot run here (a library missing) raises ``Unavailable`` and the worker
answers {"unavailable": reason} and exits. So rounds can interleave without two contenders ever
sharing a process, a BLAS or a thread pool; ``fastnet bench`` and ``fastnet bench --sklearn`` both
use it.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys

# Variables that force a BLAS onto a kernel type or a cache size other than its own choice for this CPU
# (OpenBLAS, its GotoBLAS ancestor, MKL). An environment that sets them slows the NumPy baseline down.
FORCED_BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "GOTOBLAS_CORETYPE", "MKL_DEBUG_CPU_TYPE",
                    "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR")


class Unavailable(Exception):
    """Raised by a job that cannot run here; its message says why and what to install."""


def native_blas_env(environ) -> tuple[dict, dict]:
    """A copy of ``environ`` without the variables that force BLAS kernels, and the ones it left out.
    ``environ`` itself is not changed."""
    removed = {k: environ[k] for k in FORCED_BLAS_VARS if k in environ}
    return {k: v for k, v in environ.items() if k not in removed}, removed


def blas_info() -> list[dict]:
    """Every BLAS this process loaded (threadpoolctl): its API, version, kernel type, threads; NumPy's first."""
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "version", "architecture", "num_threads", "filepath")
    return sorted(({k: i.get(k) for k in keys} for i in threadpool_info() if i["user_api"] == "blas"),
                  key=lambda i: "numpy" not in (i["filepath"] or ""))


class Worker:
    """One contender's process, running ``job`` ("module:function") with ``spec`` in ``env``
    (default: this process's environment). ``info`` is the job's first answer; when it holds
    "unavailable", the worker has already exited."""

    def __init__(self, name: str, job: str, spec: dict, env: dict | None = None):
        self.name, self.spec = name, spec
        # -c, not -m: run as __main__, this module's Unavailable would not be the one the jobs raise
        self.proc = subprocess.Popen([sys.executable, "-c", "from fastnet.bench.workers import main; main()", job,
                                      json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        try:
            self.info = self._read()
        except BaseException:
            self.close(abort=True)
            raise
        if "unavailable" in self.info:
            self.close()

    @property
    def available(self) -> bool:
        return "unavailable" not in self.info

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} benchmark process exited (status {self.proc.wait()}); "
                               "its error is printed above")
        return json.loads(line)

    def request(self, **request) -> dict:
        """Send one request to the job and return its answer."""
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self, abort: bool = False) -> None:
        """End the worker: it exits when its stdin closes; ``abort`` kills it at once."""
        if abort:
            self.proc.kill()
        try:
            self.proc.stdin.close()
        except OSError:  # a broken pipe: it is gone already
            pass
        try:
            self.proc.wait(timeout=None if abort else 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


@contextlib.contextmanager
def worker_pool():
    """A list to start workers into; on the way out every one is closed, or killed if the block failed
    (or was interrupted)."""
    workers = []
    try:
        yield workers
    except BaseException:
        for w in workers:
            w.close(abort=True)
        raise
    for w in workers:
        w.close()


def rotation(items: list, round_: int) -> list:
    """``items`` rotated by ``round_``, so each goes first in turn from round to round."""
    k = round_ % len(items)
    return items[k:] + items[:k]


def main(argv=None) -> None:
    """A worker's main loop: argv is JOB SPEC."""
    job_name, spec = (argv or sys.argv[1:])[:2]
    # Ctrl-C reaches the whole process group: the parent decides, and ends its workers itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    module, function = job_name.split(":")
    try:
        try:
            info, handle = getattr(importlib.import_module(module), function)(json.loads(spec))
        except Unavailable as e:
            print(json.dumps({"unavailable": str(e)}), file=answer, flush=True)
            return
        print(json.dumps({**info, "blas": blas_info()}), file=answer, flush=True)
        for line in sys.stdin:
            print(json.dumps(handle(json.loads(line))), file=answer, flush=True)
    except BrokenPipeError:  # the parent stopped (e.g. Ctrl-C) while this worker was answering: end quietly
        os._exit(0)

