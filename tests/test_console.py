"""What the command prints, and where: --version, --quiet, progress bars, typo'd flags, the plot."""
import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import threading

import numpy as np
import pytest

import fastnet as fn
from test_cli import SMALL, assert_one_line_error, run


def test_version_prints_the_package_version():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"fastnet {fn.__version__}"


def test_quiet_prints_nothing_and_with_json_only_the_json(tmp_path):
    path = tmp_path / "m.safetensors"
    quiet = run("train", *SMALL, "--quiet")
    assert quiet.returncode == 0 and (quiet.stdout, quiet.stderr) == ("", "")
    report = run("train", *SMALL, "--quiet", "--json", "--save", str(path))
    assert report.returncode == 0 and report.stderr == ""
    assert json.loads(report.stdout)["history"][-1]["epoch"] == 2
    evaluated = run("evaluate", str(path), "-q")
    assert evaluated.returncode == 0 and (evaluated.stdout, evaluated.stderr) == ("", "")
    evaluated = run("evaluate", str(path), "-q", "--json")
    assert evaluated.stderr == "" and "accuracy" in json.loads(evaluated.stdout)


def test_quiet_bench_writes_its_results_and_prints_nothing(tmp_path):
    result = run("bench", "--quick", "--no-torch", "--rounds", "1", "--samples", "256", "--quiet",
                 "--out", str(tmp_path / "b"))
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    assert json.loads((tmp_path / "b.json").read_text())["rounds"] == 1


def run_bytes(*args):
    """The command's output as bytes: text mode would turn a progress bar's \\r into \\n."""
    return subprocess.run([sys.executable, "-m", "fastnet", *args], capture_output=True, timeout=300)


@pytest.mark.parametrize("flags, stream", [([], "stdout"), (["--json"], "stderr")])
def test_redirected_output_holds_whole_lines_and_no_progress_frames(flags, stream):
    result = run_bytes("train", *SMALL, *flags)
    assert result.returncode == 0, result.stderr
    text = getattr(result, stream)
    assert b"epoch 1  loss" in text and b"epoch 2  loss" in text  # the per-epoch lines are still printed
    assert b"\r" not in result.stdout + result.stderr


def test_progress_bars_go_to_a_terminal_on_stderr_and_never_to_stdout():
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 0 columns would hide a bar
    chunks, done = [], threading.Event()

    def drain():  # read the terminal as the run goes, and what is left once it has ended
        while True:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if ready:
                chunks.append(os.read(controller, 65536))
            elif done.is_set():
                return

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        proc = subprocess.run([sys.executable, "-m", "fastnet", "train", *SMALL], stdout=subprocess.PIPE,
                              stderr=terminal, timeout=300)
    finally:
        done.set()
        reader.join(timeout=10)
        os.close(terminal)
        os.close(controller)
    on_terminal = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, on_terminal
    assert "batch" in on_terminal and "\r" in on_terminal  # tqdm's frames, on the terminal
    assert b"\r" not in proc.stdout and b"epoch 2  loss" in proc.stdout


@pytest.mark.parametrize("args, needles", [
    (["train", "--epocs", "3"], ["fastnet train:", "--epocs", "did you mean --epochs?"]),
    (["train", "--hiden=16"], ["fastnet train:", "--hiden=16", "did you mean --hidden?"]),
    (["evaluate", "m.safetensors", "--jsn"], ["fastnet evaluate:", "did you mean --json?"]),
])
def test_a_typo_d_flag_names_the_command_and_the_nearest_flag(args, needles):
    assert_one_line_error(run(*args), *needles)


def test_a_network_too_big_for_memory_is_one_line():
    assert_one_line_error(run("train", "--hidden", "1000000000"), "784-1000000000-10", "memory", "narrower")


def test_the_plot_has_a_title_and_accuracy_in_percent():
    import matplotlib.pyplot as plt

    from fastnet.plot import report_figure

    history = fn.History([{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.45},
                          {"epoch": 2, "loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.75}])
    predicted, actual = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])
    fig = report_figure(history, predicted, actual, ["0", "1"], title="mnist-sample, 784-16-10 ReLU")
    try:
        assert fig._suptitle.get_text() == "mnist-sample, 784-16-10 ReLU: test accuracy 75.00%"
        accuracy_axis = next(ax for ax in fig.axes if ax.get_title() == "accuracy")
        fig.canvas.draw()
        labels = [t.get_text() for t in accuracy_axis.get_yticklabels() if t.get_text()]
        assert labels and all(label.endswith("%") for label in labels)
        assert float(labels[-1].rstrip("%")) > 1  # 80%, not 0.8%
    finally:
        plt.close(fig)


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path):
    path = tmp_path / "m.safetensors"
    fn.Sequential(fn.Dense(784, 10), loss=fn.SoftmaxCrossEntropy(), seed=0).save(path)
    proc = subprocess.Popen([sys.executable, "-m", "fastnet", "evaluate", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # as `| head` does once it has its lines: the command's next write finds no reader
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and stderr == "", stderr
