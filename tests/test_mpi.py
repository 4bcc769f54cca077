"""Data-parallel training over MPI: each guarantee run under `mpiexec -n 2` (mpich's launcher from its wheel).

Every MPI run is a subprocess with a timeout, so a rank left hanging in a collective fails the test
instead of hanging the suite. Ranks use 1 numba thread each (2 ranks share this machine's 2 cores).
"""
import ast
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import fastnet as fn
from fastnet.distributed import shard_slice

ROOT = Path(fn.__file__).resolve().parents[1]  # the source tree under test: the ranks run `python -m fastnet` there
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")


def _missing() -> str | None:
    try:
        import mpi4py  # noqa: F401  (not mpi4py.MPI: that would start MPI in this process)
    except ImportError:
        return "mpi4py is not installed: pip install -e '.[test]' brings it (and mpich)"
    return None if MPIEXEC else "no mpiexec beside this Python or on PATH: pip install mpich"


MISSING = _missing()
if MISSING and os.environ.get("CI"):
    raise RuntimeError(f"CI must run the MPI tests, but {MISSING}")
pytestmark = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))

# A plain run's environment: no MPI launcher's variables (pytest itself may run under one), 1 numba thread.
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("PMI", "OMPI_", "MV2_", "MPI_LOCAL"))}
ENV["NUMBA_NUM_THREADS"] = "1"
SMALL = ["--hidden", "32", "--batch-size", "50", "--schedule", "none", "--seed", "3", "-q"]


def mpirun(n: int, *args, timeout: float = 120, cwd=ROOT) -> subprocess.CompletedProcess:
    """``mpiexec -n n python ARGS`` in ``cwd`` (the source tree: it imports the fastnet under test);
    fails the test if it outlives ``timeout``."""
    env = ENV | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), ENV.get("PYTHONPATH")]))}
    return subprocess.run([MPIEXEC, "-n", str(n), sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def same_on_two_ranks(code: str) -> None:
    """Run the Python ``code`` on 2 ranks, skipping without MPI; each rank must print "same"."""
    if MISSING:
        pytest.skip(MISSING)
    done = mpirun(2, "-c", code)
    assert done.returncode == 0 and done.stdout.count("same") == 2, done.stderr


def train(n: int, *flags, timeout: float = 120) -> subprocess.CompletedProcess:
    """``fastnet train FLAGS`` on n ranks (n = 1: a plain process, no mpiexec)."""
    if n == 1:
        done = subprocess.run([sys.executable, "-m", "fastnet", "train", *flags], cwd=ROOT, env=ENV,
                              capture_output=True, text=True, timeout=timeout)
    else:
        done = mpirun(n, "-m", "fastnet", "train", *flags, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done


def weights(path) -> dict:
    return load_file(str(path))


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


HASH_EVERY_STEP = """
import hashlib
import fastnet as fn
from mpi4py import MPI

comm = MPI.COMM_WORLD
train, _ = fn.datasets.load("mnist-sample")
model = fn.Sequential(fn.Dense(784, 32, l2=1e-3), fn.ReLU(), fn.Dropout(0.3), fn.Dense(32, 10, l1=1e-4),
                      loss=fn.SoftmaxCrossEntropy(), seed=1)

class Hashes(fn.Callback):
    def __init__(self):
        self.digest, self.steps = hashlib.sha256(), 0
    def on_batch_end(self, model, batch, loss):
        self.digest.update(model.params.tobytes())
        self.steps += 1

hashes = Hashes()
model.fit(train.x[:600], train.y[:600], epochs=2, batch_size=37, optimizer=fn.Adam(1e-2), callbacks=[hashes],
          comm=comm, progress=False)
# batches of 2 and 1 samples: a rank's shard is often empty
model.fit(train.x[:3], train.y[:3], epochs=2, batch_size=2, callbacks=[hashes], comm=comm, progress=False)
everyone = comm.gather((hashes.steps, hashes.digest.hexdigest()))  # rank 0 alone prints: lines never interleave
if comm.Get_rank() == 0:
    print(everyone)
"""


@pytest.mark.parametrize("ranks", [2, 3])
def test_weights_are_bit_identical_on_every_rank_after_every_step(ranks):
    """A hash chain of every rank's parameters after every step: equal chains, equal weights at every step.
    3 ranks take the Reduce_scatter + Allgatherv path, 2 the in-place Allreduce."""
    done = mpirun(ranks, "-c", HASH_EVERY_STEP)
    assert done.returncode == 0, done.stderr
    everyone = ast.literal_eval(done.stdout)  # (steps, hash chain) of each rank
    assert len(everyone) == ranks and everyone == [(2 * 17 + 2 * 2, everyone[0][1])] * ranks


ONE_STEP_GRADIENT = """
import sys
import fastnet as fn
from mpi4py import MPI

train, _ = fn.datasets.load("mnist-sample")
model = fn.Sequential(fn.Dense(784, 16, l2=1e-2), fn.Tanh(), fn.Dense(16, 10, l1=1e-3),
                      loss=fn.SoftmaxCrossEntropy(), dtype="float64", seed=2)
model.fit(train.x[:403], train.y[:403], epochs=2, batch_size=50, optimizer=fn.SGD(0.1, momentum=0.9),
          comm=MPI.COMM_WORLD, progress=False)
if MPI.COMM_WORLD.Get_rank() == 0:
    model.save(sys.argv[1])
"""


def test_two_ranks_compute_the_global_batch_gradient(tmp_path):
    """Shards scaled by their share, penalties added once: 2 ranks train as one process does, to rounding."""
    done = mpirun(2, "-c", ONE_STEP_GRADIENT, str(tmp_path / "two.safetensors"))
    assert done.returncode == 0, done.stderr
    two = fn.load(tmp_path / "two.safetensors")
    train, _ = fn.datasets.load("mnist-sample")
    one = fn.Sequential(fn.Dense(784, 16, l2=1e-2), fn.Tanh(), fn.Dense(16, 10, l1=1e-3),
                        loss=fn.SoftmaxCrossEntropy(), dtype="float64", seed=2)
    one.fit(train.x[:403], train.y[:403], epochs=2, batch_size=50, optimizer=fn.SGD(0.1, momentum=0.9),
            progress=False)
    assert np.allclose(two.params, one.params, rtol=1e-9, atol=1e-12)
    for mine, theirs in zip(two.history.records, one.history.records):
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-9)
        assert mine["accuracy"] == theirs["accuracy"]


@pytest.fixture(scope="module")
def two_epochs_on_two_ranks(tmp_path_factory):
    """A 2-epoch run on 2 ranks: its --json output and its checkpoint."""
    path = tmp_path_factory.mktemp("mpi") / "straight.safetensors"
    return train(2, *SMALL, "--epochs", "2", "--save", str(path), "--json"), path


def test_same_ranks_and_seed_give_bit_identical_runs(tmp_path, two_epochs_on_two_ranks):
    first, first_path = two_epochs_on_two_ranks
    again = train(2, *SMALL, "--epochs", "2", "--save", str(tmp_path / "again.safetensors"), "--json")
    assert same_weights(first_path, tmp_path / "again.safetensors")
    histories = [[{k: v for k, v in r.items() if k != "seconds"} for r in json.loads(run.stdout)["history"]]
                 for run in (first, again)]
    assert histories[0] == histories[1] and len(histories[0]) == 2
    assert json.loads(first.stdout)["config"]["ranks"] == 2


def test_evaluate_on_two_ranks_scores_as_one_process(two_epochs_on_two_ranks):
    """fastnet evaluate: each rank scores its share, the counts are summed; the loss agrees to rounding."""
    _, path = two_epochs_on_two_ranks
    one = json.loads(subprocess.run([sys.executable, "-m", "fastnet", "evaluate", str(path), "--json"], cwd=ROOT,
                                    env=ENV, capture_output=True, text=True, timeout=60).stdout)
    done = mpirun(2, "-m", "fastnet", "evaluate", str(path), "--json", "-q", timeout=60)
    assert done.returncode == 0, done.stderr
    two = json.loads(done.stdout)  # one object: rank 0 alone prints
    assert two["accuracy"] == one["accuracy"] and two["per_class"] == one["per_class"]
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-6)


def test_two_ranks_reach_the_accuracy_of_one_process():
    """Same global batch, epochs and seed, on the bundled sample: within 0.5 points of test accuracy."""
    flags = ["--hidden", "128", "--epochs", "5", "--json", "-q"]
    one, two = (json.loads(train(n, *flags).stdout)["test"]["accuracy"] for n in (1, 2))
    assert one > 0.93
    assert abs(two - one) <= 0.005, (one, two)


def test_a_checkpoint_resumes_on_another_number_of_ranks(tmp_path, two_epochs_on_two_ranks):
    """Written by 2 ranks, resumed by 1 process, then by 2 ranks again. (--batch-size is not part of a
    checkpoint between epochs: each resumed run repeats it.)"""
    _, straight = two_epochs_on_two_ranks
    path = tmp_path / "run.safetensors"
    assert json.loads(train(2, *SMALL, "--epochs", "1", "--save", str(path), "--json").stdout)["config"]["ranks"] == 2
    epoch_1 = fn.load(path).history.records[0]
    # on the same 2 ranks, a run resumed between epochs is the uninterrupted run, bit for bit
    shutil.copy(path, tmp_path / "again.safetensors")
    train(2, "--resume", str(tmp_path / "again.safetensors"), "--batch-size", "50", "--epochs", "2", "-q",
          "--save", str(tmp_path / "again.safetensors"))
    assert same_weights(tmp_path / "again.safetensors", straight)
    train(1, "--resume", str(path), "--batch-size", "50", "--epochs", "2", "--save", str(path), "-q")
    train(2, "--resume", str(path), "--batch-size", "50", "--epochs", "3", "--save", str(path), "-q")
    model = fn.load(path)
    assert model.history.records[0] == epoch_1
    assert len(model.history) == 3 and model.optimizer.steps == 3 * 144  # 7,200 samples: 800 are validation
    assert [r["val_accuracy"] > 0.85 for r in model.history.records[1:]] == [True, True]


MID_EPOCH = """
import os, signal, sys
import numpy as np
import fastnet as fn
from mpi4py import MPI

comm = MPI.COMM_WORLD
train, _ = fn.datasets.load("mnist-sample")
x, y = train.x[:400], train.y[:400]

def build():
    return fn.Sequential(fn.Dense(784, 32), fn.ReLU(), fn.Dropout(0.3), fn.Dense(32, 10),
                         loss=fn.SoftmaxCrossEntropy(), seed=7)

class CtrlC(fn.Callback):  # Ctrl-C on rank 0 alone, after batch 4 of the first epoch
    def on_batch_end(self, model, batch, loss):
        if batch == 4 and not model.history and comm.Get_rank() == 0:
            os.kill(os.getpid(), signal.SIGINT)

straight, stopped = build(), build()
straight.fit(x, y, epochs=2, batch_size=30, optimizer=fn.SGD(0.05, momentum=0.9), comm=comm, progress=False)
try:
    stopped.fit(x, y, epochs=2, batch_size=30, optimizer=fn.SGD(0.05, momentum=0.9), callbacks=[CtrlC()],
                comm=comm, progress=False)
except fn.TrainingInterrupted:
    pass
if comm.Get_rank() == 0:
    stopped.save(sys.argv[1])
comm.Barrier()
resumed = fn.load(sys.argv[1])
resumed.fit(x, y, epochs=2, batch_size=30, comm=comm, progress=False)
everyone = comm.gather((stopped.partial_epoch["batch"], np.array_equal(resumed.params, straight.params)))
if comm.Get_rank() == 0:
    print(everyone)
"""


def test_ctrl_c_on_one_rank_stops_all_after_the_same_batch_and_resumes_exactly(tmp_path):
    """Rank 0's Ctrl-C reaches rank 1 through the step's sum: both stop after batch 6 of epoch 1. Resumed from
    rank 0's checkpoint on 2 ranks, the run ends bit for bit where the uninterrupted one did (rank 1 skips the
    dropout draws of the batches already done)."""
    done = mpirun(2, "-c", MID_EPOCH, str(tmp_path / "stopped.safetensors"))
    assert done.returncode == 0, done.stderr
    assert ast.literal_eval(done.stdout) == [(6, True), (6, True)]


RANK_EXIT = """
import os, sys
from fastnet.cli import main
code = main(sys.argv[1:])
with open(os.path.join(os.environ["RANK_EXIT_DIR"], "rank" + os.environ["PMI_RANK"]), "w") as f:
    f.write(str(code))
sys.exit(code)
"""


@pytest.mark.parametrize("bad_ranks", ["all", "rank 1"])
def test_bad_data_ends_every_rank_with_one_line(tmp_path, bad_ranks):
    """A missing --data folder on every rank, or on rank 1 alone (rank 0 is then already waiting to train):
    every rank exits 2 within 30 s, and one line says why."""
    env = ENV | {"RANK_EXIT_DIR": str(tmp_path)}
    bad = ["train", *SMALL, "--data", str(tmp_path / "missing")]
    good = ["train", *SMALL]
    python = [sys.executable, "-c", RANK_EXIT]
    ranks = [*python, *(bad if bad_ranks == "all" else good), ":", "-n", "1", *python, *bad]
    done = subprocess.run([MPIEXEC, "-n", "1", *ranks], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["2", "2"]
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastnet train: error: ") and "missing" in lines[0], lines
    assert ("on rank 1 of 2" in lines[0]) == (bad_ranks == "rank 1")
    assert done.stdout == ""


def test_ranks_that_disagree_on_the_model_stop_before_training():
    done = subprocess.run([MPIEXEC, "-n", "1", sys.executable, "-m", "fastnet", "train", *SMALL, ":", "-n", "1",
                           sys.executable, "-m", "fastnet", "train", *SMALL, "--seed", "4"],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["fastnet train: error: ranks disagree on --seed: rank 0 3, rank 1 4; every "
                                        "rank must build the same model (same flags and seed, or the same checkpoint) "
                                        "and pass the same data and settings"]


def test_divergence_stops_every_rank_with_one_line():
    done = mpirun(2, "-m", "fastnet", "train", *SMALL, "--lr", "1e30", "--optimizer", "sgd", timeout=60)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "training diverged at epoch 1" in lines[0]


ONE_RANK_FAILS = """
import fastnet as fn
from mpi4py import MPI

comm = MPI.COMM_WORLD
train, _ = fn.datasets.load("mnist-sample")
model = fn.Sequential(fn.Dense(784, 16), fn.ReLU(), fn.Dense(16, 10), loss=fn.SoftmaxCrossEntropy(), seed=0)

class Fails(fn.Callback):
    def on_batch_end(self, model, batch, loss):
        if batch == 5 and comm.Get_rank() == 1:
            raise RuntimeError("disk on fire")

model.fit(train.x[:800], train.y[:800], epochs=1, callbacks=[Fails()], comm=comm, progress=False)
"""


def test_an_error_on_one_rank_in_training_ends_every_rank():
    """Rank 0 is waiting in the next step's sum when rank 1 fails: MPI_Abort ends both, after one line."""
    done = mpirun(2, "-c", ONE_RANK_FAILS, timeout=60)
    assert done.returncode == 2, done.stderr
    # a substring: MPICH's own abort notice, written by the launcher, may land in the middle of the line
    assert "fastnet: error on rank 1 of 2, stopping all ranks: disk on fire" in done.stderr, done.stderr


def test_ctrl_c_on_mpiexec_stops_every_rank_and_keeps_a_valid_checkpoint(tmp_path):
    path = tmp_path / "run.safetensors"
    proc = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "-m", "fastnet", "train", *SMALL[:-1],
                             "--epochs", "500", "--save", str(path)],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for line in proc.stdout:  # wait until training runs
            seen.append(line)
            if line.startswith("epoch 1 "):
                break
        proc.send_signal(signal.SIGINT)
        out = "".join(seen) + proc.communicate(timeout=60)[0]
    finally:
        proc.kill()
    assert proc.returncode == 130, out
    assert "2 ranks × 1 threads" in out and out.count(f"interrupted: checkpoint saved to {path}") == 1
    model = fn.load(path)
    assert 1 <= len(model.history) < 500
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    train(1, "--resume", str(path), "--epochs", str(len(model.history) + 1), "-q")


COMM_SELF = """
import numpy as np
import fastnet as fn
from mpi4py import MPI

train, test = fn.datasets.load("mnist-sample")
def fitted(**comm):
    model = fn.Sequential(fn.Dense(784, 32, l2=1e-3), fn.ReLU(), fn.Dropout(0.3), fn.Dense(32, 10),
                          loss=fn.SoftmaxCrossEntropy(), seed=5)
    model.fit(train.x[:500], train.y[:500], epochs=2, batch_size=32, validation_data=(test.x[:300], test.y[:300]),
              progress=False, **comm)
    return model
plain, one_rank = fitted(), fitted(comm=MPI.COMM_SELF)
assert np.array_equal(plain.params, one_rank.params)
assert [{k: v for k, v in r.items() if k != "seconds"} for r in plain.history.records] == \\
       [{k: v for k, v in r.items() if k != "seconds"} for r in one_rank.history.records]
assert plain.dropout_rng.bit_generator.state == one_rank.dropout_rng.bit_generator.state
assert plain.evaluate(test.x, test.y) == one_rank.evaluate(test.x, test.y, comm=MPI.COMM_SELF)
try:
    plain.fit(train.x[:10], train.y[:10], comm="world", progress=False)
except fn.ConfigError as e:
    assert "comm must be an mpi4py communicator such as MPI.COMM_WORLD" in str(e)
else:
    raise AssertionError("fit took comm='world'")
print("same")
"""


def test_one_rank_is_a_plain_fit_bit_for_bit():
    """fit(comm=MPI.COMM_SELF), in a plain process: the same weights, history and generators as fit()."""
    done = subprocess.run([sys.executable, "-c", COMM_SELF], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout == "same\n", done.stderr


def test_a_plain_run_never_imports_mpi4py():
    code = ("import sys; from fastnet.cli import main; "
            "code = main(['train', '--hidden', '8', '--epochs', '1', '-q']); "
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'; sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_mpiexec_without_mpi4py_is_one_line(tmp_path):
    """What a launcher's environment looks like, with mpi4py unimportable: one line, status 2."""
    (tmp_path / "mpi4py").mkdir()
    (tmp_path / "mpi4py" / "__init__.py").write_text("raise ImportError('no mpi4py here')\n")
    env = ENV | {"PMI_RANK": "0", "PMI_SIZE": "2", "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "fastnet", "train", "--epochs", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["fastnet train: error: mpiexec started this process, but mpi4py is not "
                                        "installed: pip install mpi4py mpich"]


def test_bench_under_mpiexec_without_mpi_is_one_line_on_every_rank():
    done = mpirun(2, "-m", "fastnet", "bench", "--quick", "--rounds", "1", timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("fastnet bench: error: fastnet bench starts its contenders") == 1, done.stderr
    assert "--mpi" in done.stderr and "Traceback" not in done.stderr


def test_export_under_mpiexec_writes_the_file_once(tmp_path):
    pytest.importorskip("onnx", reason="the onnx extra is not installed: pip install -e '.[test]' brings it")
    m = fn.Sequential(fn.Dense(784, 16), fn.ReLU(), fn.Dense(16, 10), loss=fn.SoftmaxCrossEntropy(), seed=0)
    m.save(tmp_path / "m.safetensors")
    done = mpirun(2, "-m", "fastnet", "export", str(tmp_path / "m.safetensors"), str(tmp_path / "m.onnx"), timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("exported") == 1, done.stdout
    assert (tmp_path / "m.onnx").stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.safetensors"]  # no temporary files left


@pytest.mark.parametrize("batch,ranks", [(64, 2), (10, 4), (7, 7), (1024, 64)])
def test_shards_are_contiguous_and_cover_the_batch(batch, ranks):
    parts = [shard_slice(batch, r, ranks) for r in range(ranks)]
    assert parts[0].start == 0 and parts[-1].stop == batch
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))
    sizes = [p.stop - p.start for p in parts]
    assert max(sizes) - min(sizes) <= 1 and max(sizes) == math.ceil(batch / ranks)


# ---- convolutional models ---------------------------------------------------------------------

CONV_TWO_RANKS = """
import sys, zlib
import numpy as np
import fastnet as fn
from mpi4py import MPI

comm = MPI.COMM_WORLD
rng = np.random.default_rng(0)
x, y = rng.normal(size=(203, 2, 10, 10)), rng.integers(0, 4, 203)
model = fn.Sequential(fn.Conv2D(2, 6, 3, padding=1, l2=1e-2, input_shape=None if sys.argv[2] == "lazy" else (2, 10, 10)),
                      fn.ReLU(), fn.MaxPool2D(3, stride=2), fn.Conv2D(6, 5, 2, stride=2, l1=1e-3), fn.Tanh(),
                      fn.AvgPool2D(2, stride=1), fn.Flatten(), fn.Dense(5, 4), loss=fn.SoftmaxCrossEntropy(),
                      dtype="float64", seed=2)
comm_or_none = comm if comm.Get_size() > 1 else None
model.fit(x, y, epochs=2, batch_size=25, optimizer=fn.Adam(1e-2), comm=comm_or_none, progress=False,
          validation_data=(x[:41], y[:41]))
crcs = comm.gather(zlib.crc32(model.params.view(np.uint8)))
if comm.Get_rank() == 0:
    model.save(sys.argv[1])
    print(len(set(crcs)))
"""


@pytest.mark.parametrize("first", ["input_shape", "lazy"])
def test_a_conv_model_trains_on_two_ranks_as_one_process_on_the_global_batch(tmp_path, first):
    """Conv2D (padded, strided), max and average pooling, L1/L2, Adam: 2 ranks end where one process ends,
    to rounding, with bit-identical weights on both ranks; a first Conv2D may take its image from the data."""
    runs = {}
    for n in (1, 2):
        path = tmp_path / f"{n}.safetensors"
        done = mpirun(n, "-c", CONV_TWO_RANKS, str(path), first)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "1\n"  # one distinct weight vector over the ranks
        runs[n] = fn.load(path)
    one, two = runs[1], runs[2]
    assert two.input_shape == one.input_shape == (2, 10, 10)
    assert np.allclose(two.params, one.params, rtol=1e-9, atol=1e-12)
    for mine, theirs in zip(two.history.records, one.history.records):
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-9)
        assert mine["val_loss"] == pytest.approx(theirs["val_loss"], rel=1e-9)  # each rank scores its share
        assert mine["accuracy"] == theirs["accuracy"] and mine["val_accuracy"] == theirs["val_accuracy"]


CONV_DIFFERS = """
import sys
import numpy as np
import fastnet as fn
from mpi4py import MPI

comm, case = MPI.COMM_WORLD, sys.argv[1]
other = comm.Get_rank() == 1
rng = np.random.default_rng(0)
size = 9 if other and case == "image" else 8
x, y = rng.random((32, 1, size, size)).astype(np.float32), rng.integers(0, 3, 32)
k = 5 if other and case == "kernel_size" else 3
model = fn.Sequential(fn.Conv2D(1, 4, k, padding=(k - 1) // 2), fn.ReLU(),
                      fn.MaxPool2D(2, stride=1 if other and case == "pool stride" else 2), fn.Flatten(), fn.Dense(3),
                      loss=fn.SoftmaxCrossEntropy(), backend="numpy", seed=0)
try:
    model.fit(x, y, epochs=1, batch_size=8, progress=False, comm=comm)
except fn.DistributedError as e:
    with open(f"{sys.argv[2]}/rank{comm.Get_rank()}", "w") as f:
        f.write(str(e))
    sys.exit(2)
"""


@pytest.mark.parametrize("case, what", [
    ("kernel_size", "layers (item 1): rank 0 Conv2D(in_channels=1, out_channels=4, kernel_size=3, stride=1, padding=1"),
    ("pool stride", "layers (item 3): rank 0 MaxPool2D(size=2, stride=2), rank 1 MaxPool2D(size=2, stride=1)"),
    ("image", "input_shape: rank 0 (1, 8, 8), rank 1 (1, 9, 9)"),
])
def test_ranks_whose_conv_layers_differ_stop_before_training_naming_what_differs(tmp_path, case, what):
    done = mpirun(2, "-c", CONV_DIFFERS, case, str(tmp_path), timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [(tmp_path / f"rank{r}").read_text() for r in (0, 1)]
    assert errors[0] == errors[1] and len(errors[0].splitlines()) == 1, errors
    assert errors[0].startswith(f"ranks disagree on {what}"), errors[0]
