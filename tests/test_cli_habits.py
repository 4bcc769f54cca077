"""Small habits of the command (issue 23): a resumed run keeps its work, the kernel notice only when
something compiles, and --plot writes the format its extension names."""
import io
import shutil
import signal

import numba
import pytest

import fastnet as fn
from fastnet.progress import Progress
from test_cli import run
from test_resume import signal_in_epoch  # a real signal, sent inside a given epoch
from test_trust_data_loss import TINY, assert_refused, fastnet  # the command in this process: (status, out, err)


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A checkpoint after one epoch (NumPy backend: the kernels do not matter here)."""
    path = tmp_path_factory.mktemp("habits") / "one.safetensors"
    result = run("train", *TINY, "--batch-size", "128", "--save", str(path), "-q")
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture
def checkpoint(tmp_path, one_epoch):
    path = tmp_path / "model.safetensors"
    shutil.copy(one_epoch, path)
    return path


# ---- 1. --resume without --save saves back to the checkpoint -----------------------------------------

def test_resume_without_save_saves_back_and_says_so_on_stderr(checkpoint):
    result = run("train", "--resume", str(checkpoint), "--epochs", "2", "--batch-size", "128")
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "saving to" in line]
    assert notes == [f"saving to {checkpoint} after every epoch, as --resume does without --save"], result.stderr
    assert len(fn.load(checkpoint).history) == 2  # the work is kept


def test_resume_with_nothing_left_says_how_many_epochs_and_writes_nothing(checkpoint):
    before, stat = checkpoint.read_bytes(), checkpoint.stat()
    for epochs in ("1", None):  # at the epochs done, and without --epochs (the planned cosine run has ended)
        result = run("train", "--resume", str(checkpoint), *(["--epochs", epochs] if epochs else []))
        assert result.returncode == 0, result.stderr
        assert f"nothing to train: {checkpoint} has done 1 epoch," in result.stdout
        assert "--epochs 2 or more" in result.stdout and "epoch 2" not in result.stdout
        assert "saving to" not in result.stderr and "saved to" not in result.stdout
    assert checkpoint.read_bytes() == before and checkpoint.stat().st_mtime_ns == stat.st_mtime_ns


def test_sigterm_in_a_resumed_run_without_save_saves_back_where_it_stopped(checkpoint):
    code, out, err = signal_in_epoch(["train", "--resume", str(checkpoint), "--epochs", "3", "--batch-size", "2"],
                                     2, signal.SIGTERM)
    assert code == 143, err
    assert f"checkpoint saved to {checkpoint}" in out and "Traceback" not in err
    stopped = fn.load(checkpoint)
    assert len(stopped.history) == 1 and stopped.partial_epoch["epoch"] == 1  # inside epoch 2, kept


def test_resume_without_save_in_a_folder_it_cannot_write_is_refused_before_training(checkpoint, capsys, monkeypatch):
    from fastnet import cli

    # as root every folder is writable: the check is made to answer as it does for a user's read-only folder
    monkeypatch.setattr(cli, "unwritable", lambda path: f"the folder {checkpoint.parent} is not writable",
                        raising=False)
    before = checkpoint.read_bytes()
    result = fastnet(capsys, "train", "--resume", checkpoint, "--epochs", "2", "--batch-size", "128")
    assert_refused(result, f"--resume {checkpoint} saves back to that file without --save", "not writable",
                   "give --save PATH")
    assert "epoch 2" not in result[1] and checkpoint.read_bytes() == before


# ---- 2. the kernel notice only when something compiles -----------------------------------------------

def test_the_notice_is_given_when_something_compiles_and_only_then():
    stream = io.StringIO()
    Progress(stream=stream).compiling(numba.njit(lambda: 0.0))  # a fresh numba function: it compiles
    assert "preparing kernels" in stream.getvalue() and "kernels ready" in stream.getvalue()
    stream = io.StringIO()
    assert Progress(stream=stream).compiling(lambda: 0.0) == 0.0  # nothing compiles
    assert stream.getvalue() == ""


def test_a_second_fit_in_a_process_and_a_numpy_fit_print_no_notice(capfd):
    x, y = fn.datasets.load("mnist-sample")[1].x[:64], fn.datasets.load("mnist-sample")[1].y[:64]

    def fit(backend):
        model = fn.Sequential(fn.Dense(784, 8), fn.ReLU(), fn.Dense(8, 10), loss=fn.SoftmaxCrossEntropy(),
                              backend=backend, seed=0)
        model.fit(x, y, epochs=1, batch_size=32)

    fit("numba")  # compiled or loaded from the cache: either way, compiled now
    capfd.readouterr()
    fit("numba")
    fit("numpy")
    err = capfd.readouterr().err
    assert "epoch 1" in err and "kernels" not in err, err


def test_a_run_with_every_kernel_cached_prints_no_notice():
    flags = ["train", "--hidden", "8", "--epochs", "1", "--batch-size", "128", "--backend", "numba"]
    assert run(*flags).returncode == 0  # fills the cache, if it had not these kernels yet
    result = run(*flags)
    assert result.returncode == 0, result.stderr
    assert "epoch 1" in result.stdout and "kernels" not in result.stdout + result.stderr


# ---- 3. --plot writes the format its extension names ------------------------------------------------

@pytest.mark.parametrize("name, magic", [("curves.jpg", b"\xff\xd8\xff"), ("curves.PDF", b"%PDF-"),
                                         ("curves.svg", b"<?xml")])  # .png: test_cli.py
def test_plot_writes_the_format_its_extension_names(tmp_path, capsys, name, magic):
    pytest.importorskip("matplotlib")
    code, _, err = fastnet(capsys, "train", *TINY, "-q", "--plot", tmp_path / name)
    assert code == 0, err
    assert (tmp_path / name).read_bytes().startswith(magic)


def test_plot_refuses_an_extension_matplotlib_cannot_write_before_training(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.txt"
    result = fastnet(capsys, "train", *TINY, "--save", tmp_path / "m.safetensors", "--plot", path)
    assert_refused(result, f"--plot {path}: matplotlib cannot write .txt files", ".png", ".pdf", ".svg")
    assert "epoch" not in result[1] and not path.exists() and not (tmp_path / "m.safetensors").exists()


def test_plot_in_a_format_whose_writer_is_missing_is_one_line_before_training(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    def no_pillow(*args, **kwargs):  # as matplotlib fails where pillow cannot write JPEG
        raise ImportError("No module named 'PIL'")

    monkeypatch.setattr(FigureCanvasAgg, "print_jpg", no_pillow)
    path = tmp_path / "curves.jpg"
    result = fastnet(capsys, "train", *TINY, "--save", tmp_path / "m.safetensors", "--plot", path)
    assert_refused(result, f"--plot {path}: matplotlib cannot write .jpg files here", "PIL", ".png")
    assert "epoch" not in result[1] and not path.exists() and not (tmp_path / "m.safetensors").exists()
