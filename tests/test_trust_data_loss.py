"""Nothing lost: an output never destroys an input or another output, an empty path is an error, no save
writes a diverged model over a file, an overwritten file keeps its mode, and SIGTERM saves like Ctrl-C."""
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

import fastnet as fn
from fastnet import cli
from fastnet import model as fn_model
from fastnet.callbacks import History
from test_cli import run
from test_resume import signal_in_epoch, without_seconds

TINY = ["--hidden", "8", "--epochs", "1", "--backend", "numpy"]  # refused before training; quick if not
SAMPLE = Path(str(files("fastnet") / "data" / "mnist-sample"))
STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def fastnet(capsys, *argv):
    """The command run in this process: (exit status, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(result, *needles):
    code, _, err = result
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def tiny_model(seed=0):
    return fn.Sequential(fn.Dense(6, 4), fn.ReLU(), fn.Dense(4, 3), loss=fn.SoftmaxCrossEntropy(), backend="numpy",
                         seed=seed)


def trained(seed=0):
    model = tiny_model(seed)
    rng = np.random.default_rng(seed)
    model.fit(rng.normal(size=(40, 6)), np.arange(40) % 3, epochs=1, batch_size=8,
              optimizer=fn.SGD(lr=0.1, momentum=0.9), progress=False)
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A model file written by `fastnet train --save`, which --resume continues."""
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    assert cli.main(["train", *TINY, "--save", str(path), "-q"]) == 0
    return path


@pytest.fixture
def data(tmp_path):
    """An MNIST-format folder: the bundled sample, its training labels unpacked (a raw file beside .gz ones)."""
    folder = tmp_path / "data"
    folder.mkdir()
    for stem in STEMS:
        shutil.copy(SAMPLE / f"{stem}.gz", folder)
    with gzip.open(folder / "train-labels-idx1-ubyte.gz") as packed:
        (folder / "train-labels-idx1-ubyte").write_bytes(packed.read())
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    return folder


def contents(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# ---- 1. an output that is also an input, or another output, is refused before any work ----------------

@pytest.mark.parametrize("spelling", ["same", "dot", "symlink", "hardlink"])
def test_export_onto_its_own_model_is_refused_however_the_path_is_spelled(tmp_path, capsys, saved, spelling):
    model = tmp_path / "m.safetensors"
    shutil.copy(saved, model)
    out = {"same": model, "dot": Path(tmp_path / "." / "m.safetensors"), "symlink": tmp_path / "m.onnx",
           "hardlink": tmp_path / "m.onnx"}[spelling]
    if spelling == "symlink":
        out.symlink_to(model)
    elif spelling == "hardlink":
        os.link(model, out)
    assert_refused(fastnet(capsys, "export", model, out), str(out), "same file as MODEL", "another path")
    assert model.read_bytes() == saved.read_bytes()


@pytest.mark.parametrize("flags", [[*TINY, "--save", "x", "--plot", "x"], [*TINY, "--save", "x", "--plot", "./x"],
                                   ["--resume", "m", "--epochs", "2", "--plot", "m"],
                                   ["--resume", "m", "--epochs", "2", "--plot", "link"]])
def test_train_outputs_never_overwrite_each_other_or_the_resumed_checkpoint(tmp_path, capsys, saved, flags,
                                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(saved, "m")
    os.symlink("m", "link")
    assert_refused(fastnet(capsys, "train", *flags), "--plot", "is the same file as", "another path")
    assert Path("m").read_bytes() == saved.read_bytes() and not Path("x").exists()


@pytest.mark.parametrize("flag", ["--save", "--plot"])
@pytest.mark.parametrize("target", ["train-labels-idx1-ubyte", "t10k-images-idx3-ubyte.gz",
                                    "train-images-idx3-ubyte",  # not there, but read before the .gz if it were
                                    "hardlink", "via-symlinked-folder"])
def test_train_never_writes_over_its_data(tmp_path, capsys, data, flag, target):
    before = contents(data)
    if target == "hardlink":
        os.link(data / "t10k-labels-idx1-ubyte.gz", tmp_path / "labels.gz")
        path = tmp_path / "labels.gz"
    elif target == "via-symlinked-folder":
        (tmp_path / "alias").symlink_to(data)
        path = tmp_path / "alias" / "train-labels-idx1-ubyte"
    else:
        path = data / target
    assert_refused(fastnet(capsys, "train", *TINY, "--data", data, flag, path), f"{flag} {path}", "data file")
    assert contents(data) == before


def test_train_never_writes_over_a_named_datasets_files(tmp_path, capsys, data):
    raw = tmp_path / "root" / "MNIST" / "raw"  # torchvision's layout under --data ROOT
    shutil.copytree(data, raw)
    before = contents(raw)
    target = raw / "t10k-labels-idx1-ubyte.gz"
    assert_refused(fastnet(capsys, "train", *TINY, "--dataset", "mnist", "--data", tmp_path / "root",
                           "--save", target), f"--save {target}", "data file")
    assert contents(raw) == before


# ---- 2. an empty path is an error, not "no path" ------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["train", *TINY, "--resume", ""], ["train", *TINY, "--save", ""], ["train", *TINY, "--plot", ""],
    ["train", *TINY, "--data", ""], ["evaluate", ""], ["evaluate", "m.safetensors", "--data", ""],
    ["export", "", "m.onnx"], ["export", "m.safetensors", ""],
], ids=lambda argv: " ".join(repr(a) if a == "" else a for a in argv if a not in TINY))
def test_an_empty_path_is_refused_in_one_line(tmp_path, capsys, saved, argv, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(saved, "m.safetensors")
    code, out, err = fastnet(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "the path is empty" in err, err
    assert sorted(os.listdir()) == ["m.safetensors"] and out == ""


# ---- 3. no save writes non-finite parameters or optimizer state over a file ---------------------------

@pytest.mark.parametrize("poison", ["inf weight", "nan bias", "nan velocity"])
@pytest.mark.parametrize("how", ["model.save", "Checkpoint"])
def test_a_diverged_model_is_not_saved_over_a_good_file(tmp_path, saved, poison, how):
    path = tmp_path / "m.safetensors"
    shutil.copy(saved, path)
    model = trained()
    {"inf weight": lambda: model.dense[0].weight.__setitem__((0, 0), np.inf),
     "nan bias": lambda: model.dense[1].bias.__setitem__(2, np.nan),
     "nan velocity": lambda: model.optimizer.state["velocity"].__setitem__(5, np.nan)}[poison]()
    with pytest.raises(fn.ConfigError, match="NaN or Inf") as refused:
        model.save(path) if how == "model.save" else fn.Checkpoint(path).on_epoch_end(model, {})
    assert str(path) in str(refused.value) and "left as it was" in str(refused.value)
    assert path.read_bytes() == saved.read_bytes() and os.listdir(tmp_path) == ["m.safetensors"]


@pytest.fixture
def python_sigint():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class CtrlCAtTheStart(fn_model.DeferredInterrupt):
    """A real Ctrl-C as fit's first batch begins: training stops after that batch."""

    def __enter__(self):
        entered = super().__enter__()
        signal.raise_signal(signal.SIGINT)
        return entered


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_ctrl_c_after_a_diverging_batch_saves_nothing_and_says_why(tmp_path, capsys, saved, monkeypatch,
                                                                   python_sigint):
    path = tmp_path / "m.safetensors"
    shutil.copy(saved, path)
    monkeypatch.setattr(fn_model, "DeferredInterrupt", CtrlCAtTheStart)
    # lr 1e300 is Inf in float32: the first update makes the weights Inf and NaN, though its loss was finite
    code, out, err = fastnet(capsys, "train", *TINY, "--optimizer", "sgd", "--lr", "1e300", "--save", path)
    assert code == 130, err
    assert path.read_bytes() == saved.read_bytes()
    line = err.strip().splitlines()[-1]
    assert line.startswith("interrupted: not saved to") and "NaN or Inf" in line and "left as it was" in line
    assert "checkpoint saved" not in out


# ---- 4. a file overwritten keeps its permissions; a new one follows the umask --------------------------

def write_plot(path):
    from fastnet.plot import training_report
    training_report(History([{"epoch": 1, "loss": 1.0, "accuracy": 0.5}]), np.array([0, 1]), np.array([0, 1]),
                    ["0", "1"], path)


def write_bench_json(path):
    from fastnet.bench.output import write_json
    write_json(path, {"a": 1})


WRITERS = {"model.save": lambda path: tiny_model().save(path), "to_onnx": lambda path: tiny_model().to_onnx(path),
           "plot": write_plot, "bench json": write_bench_json}


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.mark.parametrize("writer", WRITERS)
def test_every_atomic_writer_keeps_the_mode_of_the_file_it_replaces(tmp_path, writer, umask_022):
    if writer in ("to_onnx", "plot"):
        pytest.importorskip("onnx" if writer == "to_onnx" else "matplotlib")
    path = tmp_path / "out"
    for mode in (0o600, 0o640, 0o604):
        path.write_bytes(b"old")
        path.chmod(mode)
        WRITERS[writer](path)
        assert path.read_bytes() != b"old" and oct(path.stat().st_mode & 0o777) == oct(mode)
    path.unlink()
    previous = os.umask(0o077)  # a new file: the umask's mode
    try:
        WRITERS[writer](path)
    finally:
        os.umask(previous)
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


def test_train_save_onto_a_private_checkpoint_keeps_it_private(tmp_path, capsys, saved, umask_022, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = ["train", "--hidden", "8", "--epochs", "1", "--backend", "numpy", "--seed", "1"]
    assert fastnet(capsys, *first, "--save", "m.safetensors", "-q")[0] == 0
    os.chmod("m.safetensors", 0o600)
    # the same file under another spelling: a resumed run overwrites its own checkpoint, as --save asks
    result = fastnet(capsys, "train", "--resume", "m.safetensors", "--epochs", "2", "--save", "./m.safetensors", "-q")
    assert result[0] == 0, result[2]
    assert len(fn.load("m.safetensors").history) == 2
    assert oct(os.stat("m.safetensors").st_mode & 0o777) == oct(0o600)


# ---- 5. SIGTERM (kill, timeout, a job scheduler) saves like Ctrl-C and exits 143 -----------------------

SIGTERM_FLAGS = ["train", "--hidden", "8", "--epochs", "2", "--batch-size", "2", "--seed", "1", "--backend", "numpy"]


def test_sigterm_mid_epoch_saves_exits_143_and_the_run_resumes_bit_for_bit(tmp_path):
    full = tmp_path / "full.safetensors"
    assert run(*SIGTERM_FLAGS, "--save", str(full)).returncode == 0
    path = tmp_path / "cut.safetensors"
    code, out, err = signal_in_epoch([*SIGTERM_FLAGS, "--save", str(path)], 2, signal.SIGTERM)
    assert code == 143, err[-2000:]
    assert f"stopped by SIGTERM: checkpoint saved to {path}" in out and "Traceback" not in err
    cut = fn.load(path)
    assert cut.partial_epoch is not None and cut.partial_epoch["epoch"] == 1  # the partial epoch is kept

    result = run(*SIGTERM_FLAGS, "--resume", str(path), "--save", str(path))
    assert result.returncode == 0, result.stderr
    resumed, uninterrupted = fn.load(path), fn.load(full)
    assert np.array_equal(resumed.params, uninterrupted.params)
    assert np.array_equal(resumed.optimizer.state["velocity"], uninterrupted.optimizer.state["velocity"])
    assert without_seconds(resumed.history) == without_seconds(uninterrupted.history)


FIT_UNDER_SIGTERM = """
import json, signal, sys
import numpy as np
import fastnet as fn

class Term(fn.Callback):
    def on_batch_end(self, model, batch, loss):
        if batch == 2:
            for _ in range(int(sys.argv[1])):
                signal.raise_signal(signal.SIGTERM)

model = fn.Sequential(fn.Dense(4, 3), loss=fn.SoftmaxCrossEntropy(), backend="numpy", seed=0)
x, y = np.random.default_rng(0).normal(size=(64, 4)), np.arange(64) % 3
try:
    model.fit(x, y, epochs=2, batch_size=8, progress=False, callbacks=[Term()])
except fn.TrainingInterrupted as stop:
    outcome = {"stop": "between batches", "signum": stop.signum, "batch": model.partial_epoch["batch"]}
except KeyboardInterrupt as stop:
    outcome = {"stop": "at once", "signum": stop.signum}
outcome["handler restored"] = signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
print(json.dumps(outcome))
"""


@pytest.mark.parametrize("times, outcome", [
    (1, {"stop": "between batches", "signum": 15, "batch": 3}),  # after the batch under way, resumable
    (2, {"stop": "at once", "signum": 15}),  # a second SIGTERM stops at once, as a second Ctrl-C does
])
def test_fit_defers_sigterm_to_the_end_of_the_batch(times, outcome):
    result = subprocess.run([sys.executable, "-c", FIT_UNDER_SIGTERM, str(times)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {**outcome, "handler restored": True}


# ---- 13 (part). errors from atomic writes name the user's path, never the temporary file ----------------

@pytest.mark.parametrize("write", ["model.save", "to_onnx"])
def test_a_failed_atomic_write_names_the_path_asked_for(tmp_path, write):
    if write == "to_onnx":
        pytest.importorskip("onnx")
    folder = tmp_path / "taken"
    (folder / "inside").mkdir(parents=True)  # os.replace cannot put a file over a folder
    with pytest.raises(OSError) as failed:
        WRITERS[write](folder)
    assert failed.value.filename == str(folder) and failed.value.filename2 is None
    assert ".tmp" not in str(failed.value) and str(folder) in str(failed.value)
    assert os.listdir(tmp_path) == ["taken"]  # no temporary file left behind
