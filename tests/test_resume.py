"""Resume means resume: Ctrl-C mid-epoch, more epochs, contradicting flags, killed writers, output paths."""
import fcntl
import json
import math
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import fastnet as fn
from fastnet import model as fn_model  # fn_model.TrainingInterrupted: Ctrl-C between batches
from test_cli import assert_one_line_error, run, sigint_as_usual  # the command run as users run it


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.normal(0, 1, (n, 5)) + y[:, None], y


X, Y = data(100)  # 100 samples in batches of 16: 7 batches, the last one ragged
FIT = dict(batch_size=16, validation_data=data(30, seed=1), progress=False)


def net():
    return fn.Sequential(fn.Dense(5, 12, l2=1e-3), fn.ReLU(), fn.Dropout(0.25), fn.Dense(12, 3, init="he"),
                         loss=fn.SoftmaxCrossEntropy(), seed=3)


def adam():
    return fn.Adam(lr=0.01, schedule=fn.CosineLR(3))


def without_seconds(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history.records]


class CtrlC(fn.Callback):
    """Press Ctrl-C (a real SIGINT) ``times`` times right after batch ``batch`` of epoch ``epoch`` (0-based)."""

    def __init__(self, epoch, batch, times=1):
        self.epoch, self.batch, self.times = epoch, batch, times

    def on_batch_end(self, model, batch, loss):
        if len(model.history) == self.epoch and batch == self.batch:
            for _ in range(self.times):
                signal.raise_signal(signal.SIGINT)


@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """Python's own SIGINT handler, even when this process inherited SIGINT ignored (a background job)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def straight():
    model = net()
    model.fit(X, Y, epochs=3, optimizer=adam(), **FIT)
    return model


# ---- Ctrl-C in the Python API -------------------------------------------------------

@pytest.mark.parametrize("epoch, batch", [(0, 0), (0, 3), (1, 5), (1, 6), (2, 2)],
                         ids=["first-batch", "mid-epoch-1", "before-the-ragged-batch", "epoch-end", "mid-epoch-3"])
def test_ctrl_c_then_save_load_and_fit_ends_bit_for_bit_like_the_uninterrupted_run(tmp_path, straight, epoch, batch):
    model = net()
    with pytest.raises(fn_model.TrainingInterrupted):
        model.fit(X, Y, epochs=3, optimizer=adam(), callbacks=[CtrlC(epoch, batch)], **FIT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    at_epoch_end = batch == 6
    assert len(model.history) == epoch + at_epoch_end
    assert (model.partial_epoch is None) == at_epoch_end
    model.save(tmp_path / "m.safetensors")
    resumed = fn.load(tmp_path / "m.safetensors")
    assert resumed.partial_epoch == model.partial_epoch

    resumed.fit(X, Y, epochs=3 - len(resumed.history), **FIT)  # the cut epoch counts as one
    assert np.array_equal(resumed.params, straight.params)
    assert resumed.optimizer.steps == straight.optimizer.steps
    for name, state in straight.optimizer.state.items():
        assert np.array_equal(resumed.optimizer.state[name], state)
    assert without_seconds(resumed.history) == without_seconds(straight.history)
    assert resumed.partial_epoch is None


def test_an_interrupted_model_in_memory_just_fits_on(straight):
    model = net()
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, epochs=3, optimizer=adam(), callbacks=[CtrlC(1, 2)], **FIT)
    model.fit(X, Y, epochs=2, **FIT)
    assert np.array_equal(model.params, straight.params)
    assert without_seconds(model.history) == without_seconds(straight.history)


def test_a_second_ctrl_c_interrupts_at_once():
    model = net()
    with pytest.raises(KeyboardInterrupt) as err:
        model.fit(X, Y, epochs=3, optimizer=adam(), callbacks=[CtrlC(0, 2, times=2)], **FIT)
    assert not isinstance(err.value, fn_model.TrainingInterrupted)  # raised inside the callback, not between batches
    assert model.partial_epoch is None
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_interrupted_epoch_is_finished_on_the_same_data_and_batches_or_not_at_all():
    model = net()
    with pytest.raises(fn_model.TrainingInterrupted):
        model.fit(X, Y, epochs=3, optimizer=adam(), callbacks=[CtrlC(0, 2)], **FIT)
    before = model.params.copy()
    with pytest.raises(fn.ConfigError, match=r"middle of epoch 1 at batch_size=16; pass batch_size=16"):
        model.fit(X, Y, epochs=1, batch_size=32, progress=False)
    with pytest.raises(fn.ConfigError, match=r"on 100 samples; fit it on the same data .* not on 50 samples"):
        model.fit(X[:50], Y[:50], epochs=1, batch_size=16, progress=False)
    assert np.array_equal(model.params, before) and model.partial_epoch["batch"] == 3


def interrupted_file(tmp_path):
    model = net()
    with pytest.raises(fn_model.TrainingInterrupted):
        model.fit(X, Y, epochs=3, optimizer=adam(), callbacks=[CtrlC(1, 2)], **FIT)
    path = tmp_path / "cut.safetensors"
    model.save(path)
    return path


def with_resume(path, change):
    """Rewrite the "resume" metadata of the file at ``path`` with ``change(resume)``."""
    with safe_open(path, "np") as f:
        meta = json.loads(f.metadata()["fastnet"])
    tensors = load_file(path)
    meta["resume"] = change(meta["resume"])
    save_file(tensors, path, metadata={"fastnet": json.dumps(meta)})
    return path


@pytest.mark.parametrize("change", [
    lambda r: "mid-epoch",
    lambda r: {k: v for k, v in r.items() if k != "order"},
    lambda r: {**r, "batch": 0},
    lambda r: {**r, "batch": 7},
    lambda r: {**r, "batch": 2.5},
    lambda r: {**r, "batch_size": True},
    lambda r: {**r, "epoch": 0},
    lambda r: {**r, "hits": 10**6},
    lambda r: {**r, "loss": math.nan},
    lambda r: {**r, "seconds": -1.0},
    lambda r: {**r, "order": {"bit_generator": "MT19937"}},
    lambda r: {**r, "order": {**r["order"], "state": {"state": 2**200, "inc": 1}}},
], ids=["not-an-object", "missing-key", "batch-0", "batch-past-the-end", "float-batch", "bool-batch-size",
        "epoch-not-after-history", "more-hits-than-samples", "nan-loss", "negative-seconds", "other-generator",
        "state-overflow"])
def test_a_nonsense_resume_point_is_refused_naming_the_file(tmp_path, change):
    path = with_resume(interrupted_file(tmp_path), change)
    with pytest.raises(fn.CheckpointError, match="mid-epoch resume point is invalid") as err:
        fn.load(path)
    assert str(path) in str(err.value)


# ---- learning rate 0 ----------------------------------------------------------------

def test_fit_refuses_to_train_an_epoch_at_learning_rate_zero():
    model = net()
    model.fit(X, Y, epochs=2, optimizer=fn.SGD(lr=0.1, schedule=fn.CosineLR(2)), **FIT)
    before = model.params.copy()
    with pytest.raises(fn.ConfigError, match=r"epoch 3 would train at learning rate 0: CosineLR.*"
                                             r"optimizer\.schedule\.t_max = 4"):
        model.fit(X, Y, epochs=2, **FIT)
    assert np.array_equal(model.params, before) and len(model.history) == 2  # refused before training
    model.optimizer.schedule.t_max = 4  # the fix the message gives
    model.fit(X, Y, epochs=2, **FIT)
    assert all(lr > 0 for lr in model.history["lr"]) and not np.array_equal(model.params, before)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """Two epochs with every default but the width and batch size, saved and reported in JSON."""
    path = tmp_path_factory.mktemp("resume") / "r.safetensors"
    result = run("train", "--hidden", "16", "--epochs", "2", "--batch-size", "128", "--save", str(path), "--json")
    assert result.returncode == 0, result.stderr
    return path, json.loads(result.stdout)


def test_resume_with_more_epochs_stretches_the_cosine_schedule_to_the_new_total(first_run, tmp_path):
    path, _ = first_run
    out = tmp_path / "more.safetensors"
    result = run("train", "--resume", str(path), "--epochs", "4", "--save", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert "stretching the cosine schedule from 2 to 4 epochs" in result.stderr
    lrs = [record["lr"] for record in json.loads(result.stdout)["history"]]
    assert lrs[2:] == [0.05 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in (2, 3)]  # not 0.0
    assert not np.array_equal(fn.load(out).params, fn.load(path).params)  # the weights moved


def test_resume_without_epochs_ends_where_the_cosine_run_was_planned_to(first_run, tmp_path):
    path, _ = first_run  # a finished 2-epoch run: nothing is left to train, and nothing is stretched
    out = tmp_path / "same.safetensors"
    result = run("train", "--resume", str(path), "--save", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert "stretching" not in result.stderr
    assert len(json.loads(result.stdout)["history"]) == 2 and json.loads(result.stdout)["config"]["epochs"] == 2
    assert np.array_equal(fn.load(out).params, fn.load(path).params)


# ---- flags that contradict the checkpoint ---------------------------------------------

@pytest.mark.parametrize("flag, value, saved", [
    ("--hidden", "32", "--hidden 16"), ("--activation", "tanh", "relu"), ("--optimizer", "adam", "momentum"),
    ("--dtype", "float64", "float32"), ("--lr", "0.1", "0.05"), ("--schedule", "none", "cosine"),
    ("--l1", "0.001", "0.0"), ("--l2", "0.001", "0.0"), ("--dropout", "0.2", "0.5"), ("--seed", "5", "0"),
])
def test_a_flag_that_contradicts_the_checkpoint_is_refused_naming_it(first_run, flag, value, saved):
    path, _ = first_run
    result = run("train", "--resume", str(path), flag, value)
    assert_one_line_error(result, f"{flag} {value} contradicts {path}", saved)


def test_a_fresh_run_reports_its_learning_rate(first_run):
    _, report = first_run
    assert report["config"]["lr"] == 0.05 and report["config"]["optimizer"] == "momentum"


def test_resume_reports_the_checkpoints_configuration_and_accepts_agreeing_flags(tmp_path):
    path = tmp_path / "adam.safetensors"
    first = ["--hidden", "16", "--optimizer", "adam", "--lr", "0.003", "--schedule", "step", "--dropout", "0.25"]
    assert run("train", *first, "--epochs", "1", "--batch-size", "128", "--save", str(path)).returncode == 0
    # agreeing flags, another batch size between epochs, and another backend are all fine
    result = run("train", "--resume", str(path), "--epochs", "2", "--hidden", "16", "--seed", "0", "--batch-size", "256",
                 "--backend", "numpy", "--json")
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)["config"]
    assert {k: config[k] for k in ("optimizer", "lr", "schedule", "dropout", "hidden", "batch_size", "backend")} == \
        {"optimizer": "adam", "lr": 0.003, "schedule": "step", "dropout": 0.25, "hidden": [16], "batch_size": 256,
         "backend": "numpy"}
    assert "--optimizer adam --lr 0.003 --schedule step --batch-size 256" in result.stderr  # the header line


# ---- Ctrl-C on the command line -------------------------------------------------------

CTRL_C_FLAGS = ["train", "--hidden", "16", "--epochs", "3", "--batch-size", "2", "--seed", "1"]  # long epochs


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    path = tmp_path_factory.mktemp("ctrl-c") / "full.safetensors"
    result = run(*CTRL_C_FLAGS, "--save", str(path))
    assert result.returncode == 0, result.stderr
    return fn.load(path)


class Terminal:
    """A pseudo-terminal for a child's stderr, drained by a thread (so the child never blocks on it)."""

    def __init__(self):
        self.controller, self.child_end = pty.openpty()
        fcntl.ioctl(self.child_end, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 0 columns: no bar
        self.chunks, self.done = [], threading.Event()
        self.reader = threading.Thread(target=self._drain)
        self.reader.start()

    def _drain(self):
        while not self.done.is_set():
            if select.select([self.controller], [], [], 0.1)[0]:
                try:
                    self.chunks.append(os.read(self.controller, 65536))
                except OSError:  # the child has gone and closed its end
                    return

    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")

    def close(self):
        self.done.set()
        self.reader.join(timeout=10)
        os.close(self.child_end)
        os.close(self.controller)


def signal_in_epoch(args, epoch: int, signum=signal.SIGINT) -> tuple[int, str, str]:
    """Run ``fastnet *args`` and send it ``signum`` as soon as the progress bar of epoch ``epoch`` (1-based)
    is on its terminal: inside that epoch however fast or loaded the machine is (a fixed delay after the
    previous epoch's line could miss a 0.1 s epoch). Returns (exit status, stdout, terminal text)."""
    terminal = Terminal()
    proc = subprocess.Popen([sys.executable, "-m", "fastnet", *args],
                            stdout=subprocess.PIPE, stderr=terminal.child_end, text=True, preexec_fn=sigint_as_usual)
    try:
        deadline = time.monotonic() + 240
        while f"epoch {epoch}:" not in terminal.text():
            assert proc.poll() is None and time.monotonic() < deadline, terminal.text()[-2000:]
            time.sleep(0.005)
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
        terminal.close()
    return proc.returncode, out, terminal.text()


@pytest.mark.parametrize("epoch", [1, 2])
def test_a_real_ctrl_c_mid_epoch_then_resume_is_bit_for_bit_the_uninterrupted_run(tmp_path, uninterrupted, epoch):
    path = tmp_path / "cut.safetensors"
    code, out, err = signal_in_epoch([*CTRL_C_FLAGS, "--save", str(path)], epoch + 1)  # Ctrl-C in the next epoch
    assert code == 130, err
    assert "checkpoint saved" in out and "Traceback" not in err
    cut = fn.load(path)
    assert cut.partial_epoch is not None and cut.partial_epoch["epoch"] == epoch  # stopped inside the next epoch

    result = run(*CTRL_C_FLAGS, "--resume", str(path), "--save", str(path))
    assert result.returncode == 0, result.stderr
    assert f"resuming from {path} in epoch {epoch + 1}, after batch {cut.partial_epoch['batch']}" in result.stdout
    resumed = fn.load(path)
    assert np.array_equal(resumed.params, uninterrupted.params)
    assert np.array_equal(resumed.optimizer.state["velocity"], uninterrupted.optimizer.state["velocity"])
    assert without_seconds(resumed.history) == without_seconds(uninterrupted.history)


def test_resuming_mid_epoch_with_another_batch_size_is_refused(tmp_path):
    result = run("train", "--resume", str(interrupted_file(tmp_path)), "--batch-size", "32")
    assert_one_line_error(result, "--batch-size 32 contradicts", "middle of epoch 2 at --batch-size 16")


# ---- temporary files of killed writers --------------------------------------------------

def dead_pid():
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_a_save_removes_the_temp_files_of_dead_writers_only(tmp_path):
    path = tmp_path / "m.safetensors"
    stale = [f".m.safetensors.{'a' * 16}.{dead_pid()}.tmp", f".m.safetensors.{'b' * 16}.tmp"]  # the old name too
    alive = [f".m.safetensors.{'c' * 16}.{os.getpid()}.tmp",  # a writer still at work: this process
             f".m.safetensors.5.{'d' * 16}.tmp",  # another file's temp file: m.safetensors.5
             f".other.safetensors.{'e' * 16}.{dead_pid()}.tmp"]
    for name in stale + alive:
        (tmp_path / name).write_bytes(b"half a model")
    net().save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(alive + ["m.safetensors"])


KILLED_WRITER = """
import sys, time
import fastnet as fn
from fastnet import checkpoint

def stuck(src, dst):  # the temp file is written and synced: be killed before it is moved into place
    print("written", flush=True)
    time.sleep(600)

checkpoint.os.replace = stuck
fn.Sequential(fn.Dense(4, 2), loss=fn.MSE()).save(sys.argv[1])
"""


def test_a_temp_file_left_by_sigkill_is_gone_after_the_next_save(tmp_path):
    path = tmp_path / "m.safetensors"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "written\n"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # the kill left one
    net().save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


# ---- output paths are checked before the work -----------------------------------------------

@pytest.mark.parametrize("flag", ["--save", "--plot"])
@pytest.mark.parametrize("where", ["under-a-file", "a-folder"])
def test_an_unwritable_output_path_is_refused_before_training(tmp_path, flag, where):
    (tmp_path / "file").write_text("a regular file")
    (tmp_path / "folder").mkdir()
    target = tmp_path / ("file/deeper/out" if where == "under-a-file" else "folder")
    result = run("train", "--hidden", "16", "--epochs", "1", flag, str(target))
    assert_one_line_error(result, f"{flag} {target}: cannot write there")
    assert "preparing kernels" not in result.stdout + result.stderr  # refused before any training


def test_a_failed_save_names_the_path_asked_for_not_the_temp_file(tmp_path, monkeypatch):
    from fastnet import checkpoint

    def refused(name, *args):
        raise PermissionError(13, "Permission denied", name)

    monkeypatch.setattr(checkpoint.os, "open", refused)  # as in a read-only folder, which root could write
    with pytest.raises(PermissionError) as err:
        net().save(tmp_path / "m.safetensors")
    assert err.value.filename == str(tmp_path / "m.safetensors")
