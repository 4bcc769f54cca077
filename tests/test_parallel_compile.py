"""The compile helper (fastnet/_parallel_compile.py): when it fails, a cold start still compiles
everything and trains the same bits; when it cannot help, it is not started.

That a cold start shared with a working helper trains the same bits as a warm one is in
test_determinism.py.
"""
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numba
import numpy as np
import pytest

import fastnet as fn
from fastnet import _parallel_compile


def train_small(backend="numba"):
    train, _ = fn.datasets.load("mnist-sample")
    model = fn.Sequential(fn.Dense(784, 16), fn.Sigmoid(), fn.Dense(16, 10), loss=fn.SoftmaxCrossEntropy(),
                          backend=backend, seed=0)
    model.fit(train.x[:256], train.y[:256], epochs=1, batch_size=32, optimizer=fn.SGD(lr=0.1, momentum=0.9),
              progress=False)
    return model


DIES_HOLDING_A_CLAIM = textwrap.dedent("""
    import hashlib, json, sys
    import fastnet as fn
    from fastnet import _parallel_compile
    from tests.test_parallel_compile import train_small

    # the helper records the step's calls, claims the last one, and exits as it starts compiling it
    _parallel_compile.HELPER = ("import os, sys; from numba.core.dispatcher import Dispatcher; "
                                "Dispatcher.compile = lambda self, sig: os._exit(3); "
                                "from fastnet.model import load; from fastnet._parallel_compile import _helper; "
                                "_helper(load, *sys.argv[1:])")
    model = train_small()
    split = _parallel_compile.last
    print(json.dumps([hashlib.sha256(model.params.tobytes()).hexdigest(), split.helper_started,
                      split.from_helper, split.helper_error]))
""")


def test_a_helper_that_dies_holding_a_claim_costs_nothing_but_time(tmp_path):
    root = Path(fn.__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", DIES_HOLDING_A_CLAIM], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_NUM_THREADS": "2"},
                          timeout=600)
    assert done.returncode == 0, done.stderr
    digest, started, from_helper, error = json.loads(done.stdout.strip().splitlines()[-1])
    assert started and from_helper == 0
    assert error.startswith("exit code 3")
    assert digest == hashlib.sha256(train_small().params.tobytes()).hexdigest()  # this process, this cache


def test_a_helper_that_cannot_start_leaves_the_compiling_here(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    split = _parallel_compile._Split(train_small(), np.dtype(np.uint8))
    split._start_helper()  # as the first call that misses the cache does
    assert not split.helper_started and split.helper_error.startswith("FileNotFoundError")
    split.finish()
    assert not os.path.exists(split.folder)  # the model copy and the claims are gone


@pytest.mark.parametrize("how", ["numpy backend", "1 thread", "disabled"])
def test_no_helper_where_it_cannot_help(how, monkeypatch):
    monkeypatch.setattr(_parallel_compile, "_cached", lambda dispatcher, sig: False)
    monkeypatch.setattr(_parallel_compile, "last", None)
    if how == "disabled":
        monkeypatch.setattr(_parallel_compile, "ENABLED", False)
    if how == "1 thread":
        monkeypatch.setattr(numba, "get_num_threads", lambda: 1)
    train_small("numpy" if how == "numpy backend" else "numba")
    assert _parallel_compile.last is None
    assert not any("compile" in vars(d) for d in _parallel_compile._dispatchers())  # no hook left behind


def helper_of(parent: int) -> tuple[int, str] | None:
    """(pid, claims folder) of the compile helper ``parent`` started, found in /proc; None if there is none."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().decode().split("\0")[:-1]
        except OSError:  # it exited meanwhile
            continue
        if any("_parallel_compile" in a for a in args) and args[-1] == str(parent):
            return int(pid), args[-3]
    return None


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


def claims(folder: str) -> set[str]:
    try:
        return {name for name in os.listdir(folder) if len(name) == 40}  # a call's sha1, not its ".done"
    except FileNotFoundError:
        return set()


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the helper through /proc (Linux)")
def test_a_helper_whose_run_is_killed_claims_nothing_more(tmp_path):
    run = subprocess.Popen([sys.executable, "-m", "fastnet", "train", "--epochs", "1", "--quiet"],
                           cwd=Path(fn.__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path),
                                                           "NUMBA_NUM_THREADS": "2"})
    deadline = time.monotonic() + 120
    helper = None
    while run.poll() is None and time.monotonic() < deadline:  # until the helper compiles its first call
        helper = helper or helper_of(run.pid)
        if helper and len(claims(helper[1])) >= 2:  # the run's first call, the helper's first
            break
        time.sleep(0.02)
    run.kill()
    run.wait()
    assert helper, "the cold start started no helper"
    pid, folder = helper
    at_kill, seen = claims(folder), set()
    deadline = time.monotonic() + 120
    while running(pid) and time.monotonic() < deadline:
        seen |= claims(folder)
        time.sleep(0.02)
    assert not running(pid)  # it stopped
    assert seen <= at_kill  # after the call it was compiling, it took no other
    assert not os.path.exists(folder)  # and removed the claims the run could not
