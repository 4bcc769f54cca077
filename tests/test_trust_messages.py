"""Crashes and poor messages: each becomes one line that says what is wrong and what to do, naming the path
where there is one."""
import hashlib
import io
import logging
import os
import resource
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files

import numpy as np
import pytest

import fastnet as fn
from fastnet import cli, datasets
from fastnet.callbacks import History
from fastnet.cli import main

# --- one-line messages (item 13)
TINY = ["--hidden", "8", "--epochs", "1", "--backend", "numpy"]


def run(*args, env=None):
    """``python -m fastnet ARGS`` with extra environment variables."""
    return subprocess.run([sys.executable, "-m", "fastnet", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def assert_one_line_error(result, *needles):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def tiny_digits_model():
    return fn.Sequential(fn.Dense(784, 8), fn.ReLU(), fn.Dense(8, 10), loss=fn.SoftmaxCrossEntropy(),
                         backend="numpy", seed=0)


@pytest.mark.parametrize("records", [[{"foo": 1.0}], [{"epoch": 1e308, "loss": 1e308, "accuracy": -1e308},
                                                      {"epoch": -1e308, "loss": -1e308}]])
def test_plot_draws_a_crafted_history_from_a_checkpoint(tmp_path, records):
    pytest.importorskip("matplotlib")
    model = tiny_digits_model()
    model.history = History(records)
    path, png = tmp_path / "m.safetensors", tmp_path / "curves.png"
    model.save(path)
    code = main(["train", "--resume", str(path), "--epochs", str(len(records)), "--plot", str(png), "--quiet",
                 "--backend", "numpy"])
    assert code == 0 and png.read_bytes().startswith(b"\x89PNG")


def test_numba_disable_jit_is_refused_in_one_line_and_the_numpy_backend_still_runs():
    assert_one_line_error(run("train", "--hidden", "8", "--epochs", "1", env={"NUMBA_DISABLE_JIT": "1"}),
                          "NUMBA_DISABLE_JIT", "--backend numpy")
    result = run("train", *TINY, "--quiet", env={"NUMBA_DISABLE_JIT": "1"})
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_a_non_ascii_path_under_a_strict_ascii_stdout(tmp_path, monkeypatch):
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict")
    monkeypatch.setattr(sys, "stdout", stdout)
    path = tmp_path / "modèle.safetensors"
    assert main(["train", *TINY, "--save", str(path)]) == 0
    assert path.is_file()
    stdout.flush()
    assert "mod\\xe8le.safetensors" in stdout.buffer.getvalue().decode("ascii")


def test_a_non_ascii_flag_under_a_strict_ascii_stderr_is_one_line(monkeypatch):
    stderr = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict")
    monkeypatch.setattr(sys, "stderr", stderr)
    assert main(["train", "--bogus-é"]) == 2
    stderr.flush()
    assert stderr.buffer.getvalue().decode("ascii").splitlines() == [
        "fastnet train: unrecognized argument: --bogus-\\xe9 (see 'fastnet train --help')"]


def test_no_writable_temp_or_config_folder_blocks_only_what_needs_one(tmp_path):
    pytest.importorskip("matplotlib")
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    # The kernel cache gets a folder of its own: without one, a notice says the kernels compile on every run
    # (tests/test_install.py checks that case); this test is about the temp and config folders.
    env = {"HOME": str(blocked / "home"), "MPLCONFIGDIR": "", "XDG_CACHE_HOME": "", "XDG_CONFIG_HOME": "",
           "TMPDIR": str(blocked / "tmp"), "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    code = ("import sys, tempfile; tempfile.tempdir = sys.argv[1]; from fastnet.cli import main; "
            "sys.exit(main(sys.argv[2:]))")

    def fastnet(*args):
        return subprocess.run([sys.executable, "-c", code, str(blocked / "tmp"), *args], capture_output=True,
                              text=True, timeout=300, env={**os.environ, **env})

    assert fastnet("train", *TINY, "--quiet").returncode == 0
    assert_one_line_error(fastnet("train", *TINY, "--plot", str(tmp_path / "p.png")), "matplotlib", "MPLCONFIGDIR")


def test_none_as_a_path_is_a_config_error():
    with pytest.raises(fn.ConfigError, match="load needs a file path .* got None"):
        fn.load(None)
    model = fn.Sequential(fn.Dense(2, 2), loss=fn.MSE(), backend="numpy", seed=0)
    with pytest.raises(fn.ConfigError, match="save needs a file path .* got None"):
        model.save(None)
    pytest.importorskip("onnx")
    with pytest.raises(fn.ConfigError, match="to_onnx needs a file path .* got None"):
        model.to_onnx(None)


def test_checkpoint_into_a_folder_is_refused_before_training(tmp_path):
    x, y = np.ones((4, 2)), np.ones((4, 2))
    model = fn.Sequential(fn.Dense(2, 2), loss=fn.MSE(), backend="numpy", seed=0)
    with pytest.raises(fn.ConfigError, match="cannot write there: it is a folder"):
        model.fit(x, y, epochs=1, callbacks=[fn.Checkpoint(tmp_path)], progress=False)
    assert len(model.history) == 0
    with pytest.raises(fn.ConfigError, match="Checkpoint needs a file path"):
        fn.Checkpoint(None)


def test_exponential_lr_that_overflows_is_refused_before_training():
    assert fn.ExponentialLR(1e10).factor(100) == np.inf
    model = fn.Sequential(fn.Dense(2, 2), loss=fn.MSE(), backend="numpy", seed=0)
    with pytest.raises(fn.ConfigError, match="epoch 32 would train at an infinite learning rate"):
        model.fit(np.ones((4, 2)), np.ones((4, 2)), epochs=40, progress=False,
                  optimizer=fn.SGD(lr=0.1, schedule=fn.ExponentialLR(1e10)))
    assert len(model.history) == 0


def test_1e300_is_named_as_beyond_float32_not_as_nan_and_works_in_float64():
    x = np.full((2, 3), 1e300)
    with pytest.raises(fn.InputError, match=r"x holds 1e\+300 \(row 0\), beyond the range of float32"):
        fn.Sequential(fn.Dense(3, 2), loss=fn.MSE(), backend="numpy").predict(x)
    assert fn.Sequential(fn.Dense(3, 2), loss=fn.MSE(), backend="numpy", dtype="float64").predict(x).shape == (2, 2)


def test_set_num_threads_takes_numpy_integers_and_refuses_bools_and_floats():
    before = fn.get_num_threads()
    try:
        fn.set_num_threads(np.int64(1))
        assert fn.get_num_threads() == 1
        for bad in (True, 1.0, np.float64(1)):
            with pytest.raises(fn.ConfigError, match="whole number"):
                fn.set_num_threads(bad)
    finally:
        fn.set_num_threads(before)


@pytest.fixture
def mirror(monkeypatch):
    """Serve the bundled sample's .gz files from 127.0.0.1 as the mnist mirror, with their checksums."""
    sample = files("fastnet") / "data" / "mnist-sample"
    names = [f"{stem}.gz" for stem in datasets.FILES]

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(sample)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setitem(datasets.MIRRORS, "mnist", [f"http://127.0.0.1:{httpd.server_address[1]}/"])
    monkeypatch.setitem(datasets.CHECKSUMS, "mnist", {
        name: "sha256:" + hashlib.sha256((sample / name).read_bytes()).hexdigest() for name in names})
    yield
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_download_quiet_prints_nothing(tmp_path, mirror, capfd):
    pooch = pytest.importorskip("pooch")
    said = logging.Handler()  # pooch's handler may hold a stream from before this test's capture: count records too
    said.emit = lambda record: records.append(record.getMessage())
    records = []
    pooch.get_logger().addHandler(said)
    try:
        assert main(["train", *TINY, "--dataset", "mnist", "--data", str(tmp_path), "--download", "--quiet"]) == 0
    finally:
        pooch.get_logger().removeHandler(said)
    assert (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").is_file()
    out, err = capfd.readouterr()
    assert out == "" and err == "" and records == []


@pytest.mark.parametrize("param", [{"shuffle": "no"}, {"nesterovs_momentum": "maybe"}, {"momentum": 1.5},
                                   {"early_stopping": "yes"}])
def test_sklearn_estimators_refuse_what_scikit_learn_refuses(param):
    from fastnet.sklearn import MLPClassifier

    X, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    with pytest.raises(ValueError, match=f"^{next(iter(param))} must be"):
        MLPClassifier(max_iter=1, backend="numpy", **param).fit(X, y)



# --- load and import messages
TIGHT = 250 << 20  # bytes of address space: numpy loads, numba and llvmlite cannot


def under_tight_limit(*args):
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (TIGHT, TIGHT))

    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, preexec_fn=limit)


def test_the_command_under_a_tight_ulimit_v_prints_one_line_and_exits_2(tmp_path):
    result = under_tight_limit("-m", "fastnet", "evaluate", str(tmp_path / "m.safetensors"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("fastnet evaluate: error: ") and "ulimit -v" in result.stderr


def test_import_fastnet_under_a_tight_ulimit_v_is_an_import_error_of_one_line():
    code = "try:\n    import fastnet\nexcept ImportError as e:\n    print(type(e).__name__, '|', e)"
    result = under_tight_limit("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ImportError | ") and result.stdout.count("\n") == 1, result.stdout
    assert "250 MiB" in result.stdout and "ulimit -v" in result.stdout


def test_a_folder_given_as_a_model_is_named_in_the_message(tmp_path, capsys):
    folder = tmp_path / "models"
    folder.mkdir()
    with pytest.raises(fn.CheckpointError, match=f"cannot read model file {folder}: it is a folder"):
        fn.load(folder)
    assert cli.main(["evaluate", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err == f"fastnet evaluate: error: cannot read model file {folder}: it is a folder, not a file\n"
