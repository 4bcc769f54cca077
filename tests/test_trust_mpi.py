"""Issue 22, item 9: ranks that cannot train together stop together, every one with status 2, after one line.

A bad flag on one rank only must not leave the others waiting in their first collective, and ranks that
built different models or read different data must not train on silently. Every run has a timeout, so a
hang fails the test. The kernels do not matter here: the ranks run the numpy backend, tiny nets, 1 epoch.
"""
import subprocess
import sys

import numpy as np
import pytest

from hostile import idx_header
from test_mpi import ENV, MISSING, MPIEXEC, RANK_EXIT, ROOT

pytestmark = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))

FLAGS = ["--hidden", "8", "--epochs", "1", "--batch-size", "50", "--backend", "numpy", "-q"]
TIMEOUT = 60  # a rank left waiting in a collective would wait for ever


def two_ranks(tmp_path, rank0: list, rank1: list) -> tuple[str, list[str]]:
    """``fastnet ARGS`` with rank 0's and rank 1's own arguments, under mpiexec: the one line of stderr
    (failing unless there is exactly one) and each rank's exit status."""
    python = [sys.executable, "-c", RANK_EXIT]
    done = subprocess.run([MPIEXEC, "-n", "1", *python, *rank0, ":", "-n", "1", *python, *rank1], cwd=ROOT,
                          env=ENV | {"RANK_EXIT_DIR": str(tmp_path)}, capture_output=True, text=True,
                          timeout=TIMEOUT)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2 and done.stdout == "", (done.returncode, done.stdout)
    return lines[0], [(tmp_path / f"rank{r}").read_text() for r in (0, 1)]


@pytest.mark.parametrize("bad_rank", [0, 1])
def test_a_bad_flag_on_one_rank_ends_every_rank_with_one_line(tmp_path, bad_rank):
    ranks = [["train", *FLAGS], ["train", *FLAGS]]
    ranks[bad_rank].append("--bogus")
    line, codes = two_ranks(tmp_path, *ranks)
    assert codes == ["2", "2"]
    assert line.startswith("fastnet train: error: ") and f"on rank {bad_rank} of 2" in line, line
    assert "unrecognized argument: --bogus" in line, line


def test_help_on_one_rank_ends_every_rank(tmp_path):
    """--help prints and stops; on one rank only, the others must not be left waiting for it."""
    python = [sys.executable, "-c", RANK_EXIT]
    done = subprocess.run([MPIEXEC, "-n", "1", *python, "train", *FLAGS, ":", "-n", "1", *python, "train", "--help"],
                          cwd=ROOT, env=ENV | {"RANK_EXIT_DIR": str(tmp_path)}, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 2 and done.stdout.startswith("usage: fastnet train"), done.stderr
    assert done.stderr.splitlines() == ["fastnet train: error: on rank 1 of 2: it was given --help or --version, which "
                                        "print and stop; give them to every rank or to none"]
    assert (tmp_path / "rank0").read_text() == "2"


def test_a_different_command_on_one_rank_ends_every_rank_with_one_line(tmp_path):
    line, codes = two_ranks(tmp_path, ["train", *FLAGS], ["evaluate", str(tmp_path / "m.safetensors")])
    assert codes == ["2", "2"]
    assert "ranks disagree on command: rank 0 train, rank 1 evaluate" in line, line


@pytest.mark.parametrize("flag,rank0,rank1", [
    ("--activation", "relu", "leaky-relu"),  # both initialised by He: the weights alone cannot tell them apart
    ("--dropout", "0.5", "0.2"),
    ("--l2", "0", "0.01"),
    ("--hidden", "8", "6"),
    ("--lr", "0.05", "0.1"),
    ("--dtype", "float32", "float64"),
])
def test_ranks_given_different_training_flags_stop_before_training(tmp_path, flag, rank0, rank1):
    line, codes = two_ranks(tmp_path, ["train", *FLAGS, flag, rank0], ["train", *FLAGS, flag, rank1])
    assert codes == ["2", "2"]
    assert line.startswith(f"fastnet train: error: ranks disagree on {flag}: rank 0 "), line
    assert rank1 in line.split("rank 1 ", 1)[1], line


def idx_folder(path, images: np.ndarray, labels: np.ndarray):
    """MNIST's four IDX files in ``path``: the same images and labels for the train and the test split."""
    path.mkdir()
    for split in ("train", "t10k"):
        (path / f"{split}-images-idx3-ubyte").write_bytes(idx_header(3, *images.shape) + images.tobytes())
        (path / f"{split}-labels-idx1-ubyte").write_bytes(idx_header(1, len(labels)) + labels.tobytes())
    return path


@pytest.mark.parametrize("change", ["one pixel", "one label"])
def test_ranks_reading_different_data_stop_before_training(tmp_path, change):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (100, 4, 4), dtype=np.uint8), np.arange(100, dtype=np.uint8) % 10
    other_images, other_labels = images.copy(), labels.copy()
    if change == "one pixel":
        other_images[37, 2, 1] ^= 1
    else:
        other_labels[99] = (other_labels[99] + 1) % 10
    a = idx_folder(tmp_path / "a", images, labels)
    b = idx_folder(tmp_path / "b", other_images, other_labels)
    line, codes = two_ranks(tmp_path, ["train", *FLAGS, "--data", str(a)], ["train", *FLAGS, "--data", str(b)])
    assert codes == ["2", "2"]
    assert line.startswith("fastnet train: error: ranks disagree on training "), line
    assert "every rank must build the same model" in line, line
    if change != "one pixel":
        return
    # No disagreement: the same data from two folders, a flag given on one rank as its default, and the
    # flags each rank may set for itself (--threads, --json)
    c = idx_folder(tmp_path / "c", images, labels)
    python = [sys.executable, "-m", "fastnet", "train", *FLAGS, "--data"]
    done = subprocess.run([MPIEXEC, "-n", "1", *python, str(a), "--activation", "relu", "--threads", "1", "--json",
                           ":", "-n", "1", *python, str(c)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr


DIFFERENT_FIT = """
import sys
import numpy as np
import fastnet as fn
from mpi4py import MPI

comm, case = MPI.COMM_WORLD, sys.argv[1]
other = comm.Get_rank() == 1
rng = np.random.default_rng(0)
x, y = rng.random((64, 6)).astype(np.float32), rng.integers(0, 3, 64)
layers = [fn.Dense(6, 8, l2=0.1 if other and case == "l2" else 0.0), fn.Tanh() if other and case == "activation"
          else fn.ReLU(), fn.Dense(8, 3)]
if other and case == "dropout":
    layers.insert(2, fn.Dropout(0.5))
if other and case == "data":
    x[5, 2] += 1
model = fn.Sequential(*layers, loss=fn.SoftmaxCrossEntropy(), backend="numpy", seed=0)
weights = np.full(64, 2.0 if other else 1.0) if "weights" in case else None
try:
    if case.startswith("evaluate"):
        model.evaluate(x if not other or case == "evaluate weights" else x[::-1], y, comm=comm, sample_weight=weights)
    else:
        model.fit(x, y, epochs=1, batch_size=16, progress=False, comm=comm, sample_weight=weights)
except fn.DistributedError as e:
    with open(f"{sys.argv[2]}/rank{comm.Get_rank()}", "w") as f:
        f.write(str(e))
    sys.exit(2)
print("trained on")
"""


@pytest.mark.parametrize("case,what", [("activation", "layers (item 2): rank 0 ReLU(), rank 1 Tanh()"),
                                       ("dropout", "layers (item 3): rank 0 Dense(n_in=8, n_out=3"),
                                       ("l2", "layers (item 1): rank 0 Dense(n_in=6, n_out=8"),
                                       ("data", "training x: rank 0 64x6 float32"), ("evaluate data", "x: rank 0"),
                                       ("weights", "sample_weight: rank 0 64 float"),
                                       ("evaluate weights", "sample_weight: rank 0 64 float")])
def test_fit_refuses_ranks_whose_models_or_data_differ(tmp_path, case, what):
    """In Python, fit(comm=...) and evaluate(comm=...) raise the same DistributedError on every rank."""
    python = [sys.executable, "-c", DIFFERENT_FIT, case, str(tmp_path)]
    done = subprocess.run([MPIEXEC, "-n", "2", *python], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [(tmp_path / f"rank{r}").read_text() for r in (0, 1)]
    assert errors[0] == errors[1] and len(errors[0].splitlines()) == 1, errors
    assert errors[0].startswith(f"ranks disagree on {what}"), errors[0]


STOPS_ON_ONE_RANK = """
import numpy as np
import fastnet as fn
from mpi4py import MPI

class Stop(fn.Callback):
    def on_epoch_end(self, model, record):
        model.stop_training = True

comm = MPI.COMM_WORLD
rng = np.random.default_rng(0)
x, y = rng.random((64, 6)).astype(np.float32), rng.integers(0, 3, 64)
model = fn.Sequential(fn.Dense(6, 8), fn.ReLU(), fn.Dense(8, 3), loss=fn.SoftmaxCrossEntropy(), backend="numpy",
                      seed=0)
model.fit(x, y, epochs=3, batch_size=16, progress=False, comm=comm, callbacks=[Stop()] if comm.Get_rank() else [])
epochs = comm.gather(len(model.history))
if comm.Get_rank() == 0:
    print(epochs)
"""


def test_a_callback_that_stops_training_on_one_rank_stops_every_rank():
    """Rank 1 alone runs a callback that stops after epoch 1: rank 0 must stop there too, not wait in epoch 2."""
    done = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", STOPS_ON_ONE_RANK], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[1, 1]\n", done.stdout
