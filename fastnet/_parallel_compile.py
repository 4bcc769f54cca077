"""A cold start on two cores: a helper process compiles half of a model's kernels.

numba compiles one kernel at a time, on one core, under a global lock, and a first run
compiles seven or eight of them (13-18 s on the 2-core benchmark VM). So when
``Sequential.compile_kernels`` finds a kernel missing from the cache, and the run has
more than one thread, it starts a helper process (``_helper`` below) on a copy of the
model. The helper records the kernel calls of the same step without
running them, then compiles them from the last one backwards, each into numba's cache,
while this process compiles from the first one forwards. Before compiling a call, each
side claims it, by creating a file named after it (``O_EXCL``); this process waits for a
call the helper claimed, then loads it from the cache, and the helper passes over the
calls this process claimed. They meet in the middle. (A ``Blocked`` dense kernel is two
compiles, its block and its loop; this process compiles the blocks as the step is built.)

What is computed does not change: a kernel loaded from the cache is the code this process
would have compiled (see ORDERED in kernels/_jit.py; a test trains through both paths).
If the helper cannot start or dies, this process compiles what is left itself.

It costs a second process (about 210 MB at its peak) on cold starts only, and took the first
batch of the default ``fastnet train`` from 12.2 s to 7.4 s on the 2-core VM
(``python bench/cold_start.py``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numba
import numpy as np
from numba.core.dispatcher import Dispatcher

from fastnet import checkpoint
from fastnet.kernels._blocks import Blocked, argument_types

ENABLED = True
"""Whether a cold ``compile_kernels`` may start a helper (tests compare both ways)."""

HELPER = ("import sys; from fastnet.model import load; from fastnet._parallel_compile import _helper; "
          "_helper(load, *sys.argv[1:])")
POLL_SECONDS = 0.005  # how often this process looks for the helper's "done" file


last = None
"""The latest cold start shared with a helper (a ``_Split``), or None."""
_lock = threading.Lock()  # one split at a time: the hook below is installed on shared dispatchers


def _kernels() -> dict:
    """The numba backend's kernels by name (a namespace tests may patch: only dispatchers are hooked)."""
    from fastnet.kernels import BACKENDS
    return vars(BACKENDS["numba"].raw)


def _dispatchers() -> list:
    """Every numba dispatcher a step may compile: the kernels, and a Blocked kernel's loop and block."""
    found = []
    for kernel in _kernels().values():
        if isinstance(kernel, Dispatcher):
            found.append(kernel)
        elif isinstance(kernel, Blocked):
            found += [kernel.kernel, kernel.block]
    return found


def _compile_units(kernel, arg_types: tuple) -> list[tuple]:
    """(dispatcher, argument types) for each compile a call of ``kernel`` with ``arg_types`` needs."""
    return kernel.compile_units(arg_types) if isinstance(kernel, Blocked) else [(kernel, arg_types)]


def _key(dispatcher, sig) -> str:
    """A file name for one compiled call: the kernel and its argument types."""
    name = f"{dispatcher.py_func.__module__}.{dispatcher.py_func.__qualname__}{tuple(sig)}"
    return hashlib.sha1(name.encode()).hexdigest()


def _take(folder: str, key: str) -> bool:
    """Claim a call; False if the other side has."""
    try:
        os.close(os.open(os.path.join(folder, key), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return True
    except FileExistsError:
        return False


def _cached(dispatcher, sig) -> bool:
    """Whether numba's cache holds ``sig`` (reads the index only, not the compiled code)."""
    try:
        cache = dispatcher._cache
        return cache._index_key(sig, dispatcher.targetctx.codegen()) in cache._cache_file._load_index()
    except Exception:  # numba's private cache API changed, or no cache: never start a helper
        return True


@contextlib.contextmanager
def helper_compiles(model, x_dtype):
    """Around ``model.compile_kernels``: a helper process compiles part of a cold start."""
    global last
    if (not ENABLED or model.backend != "numba" or numba.get_num_threads() < 2
            or getattr(sys, "frozen", False)  # a bundled app's executable is not a Python that runs -c
            or not _lock.acquire(blocking=False)):
        yield
        return
    last = split = _Split(model, np.dtype(x_dtype))
    kernels = _dispatchers()
    for dispatcher in kernels:
        dispatcher.compile = split.hook(dispatcher)
    try:
        yield
    finally:
        for dispatcher in kernels:
            del dispatcher.compile
        split.finish()
        _lock.release()


class _Split:
    """One cold start shared with a helper; ``last`` keeps the latest, for tests and benchmarks."""

    def __init__(self, model, x_dtype: np.dtype):
        self.model, self.x_dtype = model, x_dtype
        self.folder: str | None = None  # the claims, made when the first call misses the cache
        self.helper: subprocess.Popen | None = None
        self.helper_error = ""  # the end of the helper's output, if it failed
        self.from_helper = 0  # calls the helper claimed and compiled, then loaded here from the cache

    @property
    def helper_started(self) -> bool:
        return self.helper is not None

    def hook(self, dispatcher):
        """``dispatcher.compile``, claiming each new call first, or waiting for the helper's."""
        compile_here = dispatcher.compile

        def compile(sig):
            if tuple(sig) not in dispatcher.overloads:
                key = _key(dispatcher, sig)
                if self.folder is None and not _cached(dispatcher, sig):
                    self._start_helper()
                if self.helper is not None and not _take(self.folder, key):  # the helper has it: wait
                    done = os.path.join(self.folder, key + ".done")
                    while not os.path.exists(done) and self.helper.poll() is None:
                        time.sleep(POLL_SECONDS)
                    self.from_helper += os.path.exists(done)  # else it died: compiled here
            return compile_here(sig)  # from the cache if the helper compiled it, else compiled here
        return compile

    def _start_helper(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="fastnet-compile-")
        model, folder = self.model, self.folder
        try:
            model.save(os.path.join(folder, "model.safetensors"), include_optimizer=False)  # its state may be unbound
            if model.optimizer is not None:
                with open(os.path.join(folder, "optimizer.json"), "w") as f:
                    json.dump(checkpoint.optimizer_spec(model.optimizer), f)
            package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
            command = [sys.executable, "-c", HELPER, folder, self.x_dtype.str, str(os.getpid())]
            with open(os.path.join(folder, "helper.log"), "wb") as log:
                self.helper = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": path},
                                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        except Exception as error:  # no helper: everything compiles here, as without one
            self.helper_error = f"{type(error).__name__}: {error}"

    def finish(self) -> None:
        """Stop the helper and remove the claims. Everything this process needed is compiled or
        loaded by now, so the helper is exiting or still recording; its cache writes are atomic."""
        if self.helper is not None:
            if self.helper.poll() is None:
                self.helper.kill()
            code = self.helper.wait()
            if code > 0:
                with open(os.path.join(self.folder, "helper.log"), "rb") as log:
                    output = log.read()[-2000:].decode(errors="replace")
                self.helper_error = f"exit code {code}: {output}"
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _helper(load, folder: str, x_dtype: str, parent: str) -> None:
    """The helper process: record the step's calls, then compile those unclaimed, from the last,
    while the process that started it (pid ``parent``) lives. ``load`` reads a model file
    (``fastnet.load``, passed in by HELPER so that this module never imports the model)."""
    global ENABLED

    ENABLED = False  # its own compile_kernels below must not start a helper of its own
    kernels = _kernels()
    real = dict(kernels)
    calls: dict[tuple[str, tuple], None] = {}  # (kernel name, argument types), in call order

    def recorder(name):
        def record(*args):
            calls[name, argument_types(args)] = None
            return 0  # what a loss or hit count would return; nothing reads it here
        return record

    kernels.update({name: recorder(name) for name in real})
    try:  # the model is built on the recording kernels, so its step records instead of running
        model = load(os.path.join(folder, "model.safetensors"))
        if os.path.exists(os.path.join(folder, "optimizer.json")):
            with open(os.path.join(folder, "optimizer.json")) as f:
                model.optimizer = checkpoint.optimizer_from_spec(json.load(f))
        model.compile_kernels(np.dtype(x_dtype))
    finally:
        kernels.update(real)
    units = [unit for name, arg_types in calls for unit in _compile_units(real[name], arg_types)]
    for dispatcher, sig in reversed(units):
        key = _key(dispatcher, sig)
        if os.getppid() != int(parent):  # the run was killed: nobody needs the rest, or the claims
            shutil.rmtree(folder, ignore_errors=True)
            break
        if not _take(folder, key):  # the run has it (a Blocked kernel's blocks come first there)
            continue
        dispatcher.compile(sig)
        with open(os.path.join(folder, key + ".done"), "wb"):
            pass

