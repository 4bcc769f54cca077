"""The fastnet command end to end, run as a subprocess the way users run it."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib.resources import files

import numpy as np
import pytest

import fastnet as fn

SMALL = ["--hidden", "16", "--epochs", "2", "--batch-size", "128"]


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "fastnet", *args], capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result, *needles):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small training run with --save and --json, shared by the tests that read its outputs."""
    path = tmp_path_factory.mktemp("cli") / "model.safetensors"
    result = run("train", *SMALL, "--save", str(path), "--json")
    assert result.returncode == 0, result.stderr
    return path, result


def test_train_json_holds_config_history_and_test_result(trained):
    _, result = trained
    report = json.loads(result.stdout)  # stdout is exactly one JSON object
    assert report["config"]["hidden"] == [16] and report["config"]["epochs"] == 2
    assert [r["epoch"] for r in report["history"]] == [1, 2]
    for record in report["history"]:
        assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= set(record)
    assert 0.5 < report["test"]["accuracy"] <= 1.0  # a 16-unit net learns the digits in 2 epochs


def test_train_human_output_goes_to_stderr_with_json(trained):
    _, result = trained
    assert "data: mnist-sample" in result.stderr  # the run's header
    assert "epoch 2" in result.stderr and "test accuracy" in result.stderr


def test_train_without_json_prints_epochs_and_final_accuracy_on_stdout(tmp_path):
    result = run("train", *SMALL)
    assert result.returncode == 0, result.stderr
    assert "epoch 1" in result.stdout and "epoch 2" in result.stdout
    assert "test accuracy" in result.stdout.splitlines()[-1]


def test_saved_checkpoint_evaluates_to_the_reported_accuracy(trained):
    path, train_result = trained
    result = run("evaluate", str(path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["accuracy"] == json.loads(train_result.stdout)["test"]["accuracy"]
    assert set(report["per_class"]) == {str(d) for d in range(10)}
    assert all(0 <= acc <= 1 for acc in report["per_class"].values())


def test_evaluate_prints_accuracy_per_class(trained):
    path, _ = trained
    result = run("evaluate", str(path))
    assert result.returncode == 0, result.stderr
    assert "accuracy" in result.stdout and "class 9" in result.stdout


def test_resume_is_exact_without_a_schedule(tmp_path):
    full, part = tmp_path / "full.safetensors", tmp_path / "part.safetensors"
    common = ["--hidden", "16", "--batch-size", "128", "--seed", "3", "--schedule", "none", "--dropout", "0.2"]
    assert run("train", *common, "--epochs", "3", "--save", str(full)).returncode == 0
    assert run("train", *common, "--epochs", "1", "--save", str(part)).returncode == 0
    assert run("train", *common, "--epochs", "3", "--resume", str(part), "--save", str(part)).returncode == 0
    a, b = fn.load(full).get_weights(), fn.load(part).get_weights()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_plot_writes_a_png(tmp_path):
    png = tmp_path / "report.png"
    result = run("train", *SMALL, "--plot", str(png))
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install(tmp_path):
    blocker = tmp_path / "matplotlib"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('blocked for this test')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "fastnet", "train", *SMALL, "--plot", str(tmp_path / "p.png")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert_one_line_error(result, "matplotlib", "pip install")


def test_torchvision_folder_layout_is_read_as_is(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in files("fastnet").joinpath("data/mnist-sample").iterdir():
        if f.name.endswith(".gz"):
            shutil.copy(f, raw / f.name)
    result = run("train", *SMALL, "--dataset", "mnist", "--data", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["test"]["accuracy"] > 0.5


@pytest.mark.parametrize("args, needles", [
    (["train", "--activation", "swish"], ["--activation", "swish"]),
    (["train", "--optimizer", "rmsprop"], ["--optimizer"]),
    (["train", "--epochs", "0"], ["--epochs", ">= 1"]),
    (["train", "--lr", "-0.1"], ["--lr", "> 0"]),
    (["train", "--dropout", "1.5"], ["--dropout"]),
    (["train", "--batch-size", "many"], ["--batch-size", "integer"]),
    (["train", "--threads", "999"], ["threads"]),
    (["train", "--frobnicate"], ["--frobnicate"]),
    (["evaluate"], ["MODEL"]),
])
def test_bad_flags_exit_2_with_one_line(args, needles):
    assert_one_line_error(run(*args), *needles)


def test_missing_data_directory_exits_2(tmp_path):
    assert_one_line_error(run("train", "--data", str(tmp_path / "nowhere")), "nowhere")


def test_missing_dataset_without_download_says_to_download(tmp_path):
    assert_one_line_error(run("train", "--dataset", "mnist", "--data", str(tmp_path)), "--download")


def test_corrupt_data_file_exits_2_naming_it(tmp_path):
    for f in files("fastnet").joinpath("data/mnist-sample").iterdir():
        if f.name.endswith(".gz"):
            shutil.copy(f, tmp_path / f.name)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    assert_one_line_error(run("train", "--data", str(tmp_path)), "t10k-labels-idx1-ubyte.gz")


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"\x08\x00\x00\x00\x00\x00\x00\x00{}"])
def test_unreadable_model_exits_2(tmp_path, content):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    assert_one_line_error(run("evaluate", str(path)), str(path))


def test_missing_model_exits_2(tmp_path):
    assert_one_line_error(run("evaluate", str(tmp_path / "none.safetensors")), "none.safetensors")


def sigint_as_usual():
    """For a child process: SIGINT not ignored, whatever this process inherited, so Python handles it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
    path = tmp_path / "model.safetensors"
    proc = subprocess.Popen([sys.executable, "-m", "fastnet", "train", "--hidden", "16", "--epochs", "10000",
                             "--save", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_usual)
    try:
        deadline = time.monotonic() + 240
        while not path.exists():  # the first epoch's checkpoint: training is under way
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "checkpoint saved" in out  # without --json, people read stdout
    assert "Traceback" not in err
    model = fn.load(path)
    assert len(model.history) >= 1 and model.optimizer is not None


def test_default_train_command_reaches_95_percent_on_the_bundled_sample():
    """README's first command, as written: `fastnet train` with every default."""
    result = run("train", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["config"]["dataset"] == "mnist-sample" and report["config"]["backend"] == "numba"
    assert report["test"]["accuracy"] >= 0.95
