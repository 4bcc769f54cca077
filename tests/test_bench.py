"""The benchmark machinery (timings themselves live in bench/, never in tests)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import platformdirs
import pytest

from fastnet.bench.busy import busy_processes
from fastnet.bench.contenders import LENET5, Case, contender, epoch_data, initial_weights
from fastnet.bench.harness import CASES, start_worker, summarise, targets, time_case, worker_env
from fastnet.bench.machine import kernel_vector_width, register_counts, vector_bits
from fastnet.bench.output import default_output_dir, output_path
from fastnet.bench.workers import native_blas_env
from fastnet.errors import ConfigError
from test_cli import sigint_as_usual  # Ctrl-C reaches the child even when this process ignores it

FORCED = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512", "GOTOBLAS_CORETYPE": "Haswell",
          "MKL_DEBUG_CPU_TYPE": "5", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def test_flops_per_epoch_counts_forward_dw_and_dx_except_the_first_layer():
    case = Case((128,), "sigmoid", 128)
    per_sample = 2 * 784 * 128 * 2 + 2 * 128 * 10 * 3
    assert case.flops_per_epoch(60_000) == per_sample * 60_000
    assert abs(case.flops_per_epoch(60_000) / 1e9 - 24.5) < 0.1  # the figure docs/performance.md quotes
    deep = Case((512, 256), "relu", 128)
    assert deep.flops_per_epoch(1) == 2 * (784 * 512 * 2 + 512 * 256 * 3 + 256 * 10 * 3)


def test_lenet_flops_are_the_counted_macs_of_its_layers():
    # shapes worked out here: conv 1->6 5x5 pad 2 keeps 28x28, pool to 14; conv 6->16 5x5 gives 10x10, pool to 5
    conv1, conv2 = 28 * 28 * 6 * 1 * 5 * 5, 10 * 10 * 16 * 6 * 5 * 5
    dense = [16 * 5 * 5 * 120, 120 * 84, 84 * 10]
    forward = conv1 + conv2 + sum(dense)
    backward = conv1 + 2 * (conv2 + sum(dense))  # dW everywhere, dX everywhere but the first conv
    assert LENET5.flops_per_epoch(1000) == 2 * (forward + backward) * 1000
    assert LENET5.widths == [400, 120, 84, 10]
    # the count scales with the convolutions' output area: padding changes it
    unpadded = Case((120, 84), "relu", 64, ((6, 5, 0), (16, 5, 0)))
    assert unpadded.widths == [16 * 4 * 4, 120, 84, 10]
    assert unpadded.flops_per_epoch(1) < LENET5.flops_per_epoch(1)


def test_a_case_round_trips_through_json_and_an_mlp_keeps_its_old_form():
    for case in (LENET5, Case((128,), "sigmoid", 32), Case((8,), "tanh", 16, ((4, 3, 1),))):
        assert Case.from_json(json.loads(json.dumps(case.to_json()))) == case
    assert Case((128,), "sigmoid", 32).to_json() == [[128], "sigmoid", 32]  # what older runs sent and wrote
    assert LENET5.to_json() == [[120, 84], "relu", 64, [[6, 5, 2], [16, 5, 0]]]
    assert LENET5.name == "LeNet-5 relu B=64"
    assert Case((8,), "tanh", 16, ((4, 3, 1),)).name == "c4k3p1-784-8-10 tanh B=16"


def test_epoch_data_tiles_the_sample_to_the_requested_size():
    x, y = epoch_data(20_000)
    assert x.shape == (20_000, 784) and x.dtype.name == "float32" and y.shape == (20_000,)
    assert (x[:8000] == x[8000:16000]).all()


def test_cases_are_the_rows_the_targets_are_set_for():
    assert [c.name for c in CASES] == [
        "784-128-10 sigmoid B=32", "784-128-10 sigmoid B=64", "784-128-10 sigmoid B=128",
        "784-128-10 sigmoid B=256", "784-512-256-10 relu B=128", "LeNet-5 relu B=64"]
    assert targets(CASES[0]) == {"numpy": 0.5, "jax-scan": 0.75, "torch": 0.3}
    assert targets(CASES[3]) == {"numpy": 0.65, "jax-scan": 0.8, "torch": 0.5}
    assert targets(CASES[4]) == {"numpy": 0.75, "jax-scan": 0.85, "torch": 0.75}
    assert targets(CASES[5]) == {"jax-scan": 1.0, "torch": 0.7}
    assert targets(Case((64,), "relu", 32)) == {}
    assert targets(Case((120, 84), "relu", 32, LENET5.convs)) == {}


# ---- a fair NumPy baseline: its process runs without the variables that force BLAS kernels ----------


def test_native_blas_env_leaves_out_every_kernel_forcing_variable_and_nothing_else():
    given = {**FORCED, "PATH": "/bin", "OPENBLAS_NUM_THREADS": "2", "HOME": "/home/x"}
    before = dict(given)
    env, removed = native_blas_env(given)
    assert env == {"PATH": "/bin", "OPENBLAS_NUM_THREADS": "2", "HOME": "/home/x"}
    assert removed == FORCED
    assert given == before  # a copy: the caller's mapping (os.environ in use) is untouched


def test_only_the_numpy_baseline_runs_without_the_forcing_variables():
    given = {**FORCED, "PATH": "/bin"}
    for key in ("numpy-1", "numpy-2"):
        env, removed = worker_env(key, given)
        assert env == {"PATH": "/bin"} and removed == FORCED
    for key in ("numba", "numba-1", "jax-scan", "jax-step", "torch"):
        assert worker_env(key, given) == (None, {})  # this process's environment, as it is


# ---- the machine record: vector width from the dense kernels' assembly -------------------------------


def test_register_counts_read_the_width_of_the_multiply_adds():
    asm = ("\tvfmadd231ps\t(%rax), %ymm2, %ymm3\n\tvfmadd213ss\t%xmm1, %xmm2, %xmm0\n"
           "\tvmovups\t%zmm0, (%rsp)\n\tvfnmadd231ps\t%ymm4, %ymm5, %ymm6\n")
    counts = register_counts(asm)
    assert counts == {"fma": {"zmm": 0, "ymm": 2, "xmm": 1}, "all": {"zmm": 1, "ymm": 5, "xmm": 3}}
    assert vector_bits(counts) == 256  # a zmm spill is not 512-bit arithmetic
    assert vector_bits(register_counts("\tvaddps\t%zmm1, %zmm2, %zmm3\n")) == 512  # no FMA at all


# On the host itself, tests/test_kernels_gemm.py checks that the micro-kernel fills the register file.


def test_the_gemms_compile_to_512_bit_code_for_zen5():
    # compiled (not run) for LLVM's znver5 target, whatever this host is: the width regression check
    # runs on every machine, not only on AVX-512 ones
    avx512 = "+avx512f,+avx512vl,+avx512bw,+avx512dq,+avx2,+avx,+fma,+f16c,+bmi,+bmi2,+popcnt,+sse4.2"
    assert kernel_vector_width("znver5", avx512) == 512
    assert kernel_vector_width("znver3", "+avx2,+avx,+fma,+f16c,+bmi,+bmi2,+popcnt,+sse4.2") == 256


# ---- contenders: the same network, initial weights, loss and SGD step -------------------------------


def trained_weights(key: str, case, samples: int, epochs: int) -> list:
    """[(weight, bias)] of contender ``key`` after ``epochs`` epochs, trained in its worker process (JAX and
    torch stay out of the test process), or a skip when its library is missing."""
    worker = start_worker(key, samples)
    if not worker.available:
        pytest.skip(worker.info["unavailable"])
    try:
        worker.request(case=case.to_json())  # builds the contender and trains one epoch
        for _ in range(epochs - 1):
            worker.request(epoch=1)
        return [(np.array(w, np.float32), np.array(b, np.float32)) for w, b in worker.request(weights=1)["weights"]]
    finally:
        worker.close()


@pytest.mark.parametrize("key", ["numba", "torch", "jax-scan", "jax-step"])
def test_every_contender_takes_the_same_first_step_as_the_numpy_baseline(key):
    case = Case((16,), "sigmoid", 64)  # one batch of all the data: the shuffle cannot matter
    start = contender("numpy", case, *epoch_data(64)).weights()
    ref, other = trained_weights("numpy-1", case, 64, 1), trained_weights(key, case, 64, 1)
    assert_same_step(ref, other, start)


def assert_same_step(ref: list, other: list, start: list) -> None:
    """Both contenders' [(weight, bias)] after the same step agree, and the step moved the weights."""
    for (w_ref, b_ref), (w, b), (w0, _) in zip(ref, other, start, strict=True):
        assert np.abs(w_ref - w0).max() > 1e-5
        np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-6)
        np.testing.assert_allclose(b, b_ref, rtol=0, atol=1e-6)


def test_jax_epoch_jit_handles_a_ragged_last_batch_like_the_step_jit():
    case = Case((16,), "relu", 32)  # 3 full batches and one of 4, over two epochs
    scan, step = (trained_weights(key, case, 100, 2) for key in ("jax-scan", "jax-step"))
    for (a, _), (b, _) in zip(scan, step):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("key", ["torch", "jax-scan", "jax-step"])
def test_lenet_contenders_train_a_tiny_epoch_into_fastnets_shapes(key):
    start = initial_weights(LENET5)
    trained = trained_weights(key, LENET5, 256, 1)
    shapes = [((6, 1, 5, 5), (6,)), ((16, 6, 5, 5), (16,)), ((120, 400), (120,)), ((84, 120), (84,)), ((10, 84), (10,))]
    assert [(w.shape, b.shape) for w, b in trained] == shapes
    for (w, b), (w0, _) in zip(trained, start):
        assert np.isfinite(w).all() and np.isfinite(b).all() and np.abs(w - w0).max() > 1e-5


@pytest.mark.parametrize("key", ["jax-scan", "jax-step"])
def test_lenet_jax_takes_the_same_first_step_as_torch(key):
    # one batch of all the data, from the same start (fastnet's, seed 0)
    start = initial_weights(LENET5)
    ref, other = trained_weights("torch", LENET5, 64, 1), trained_weights(key, LENET5, 64, 1)
    assert_same_step(ref, other, start)


@pytest.mark.parametrize("key", ["numba", "torch", "jax-scan", "jax-step"])
def test_every_lenet_contender_takes_the_same_first_step_as_the_numpy_im2col_baseline(key):
    start = initial_weights(LENET5)
    ref, other = trained_weights("numpy-1", LENET5, 64, 1), trained_weights(key, LENET5, 64, 1)
    assert_same_step(ref, other, start)


# ---- interleaving and the summary ---------------------------------------------------------------------


class FakeWorker:
    def __init__(self, name, log, seconds):
        self.name, self.log, self.seconds = name, log, seconds

    def request(self, **request):
        self.log.append((self.name, next(iter(request))))
        if "case" in request:
            return {"name": self.name, "compile_s": 0.5, "warmup_s": 1.0}
        return {"seconds": self.seconds}


def test_rounds_alternate_between_contenders_with_who_goes_first_rotating():
    log = []
    workers = {k: FakeWorker(k, log, 1.0) for k in "abc"}
    timed = time_case(CASES[0], workers, rounds=3, settle=0)
    assert log[:3] == [("a", "case"), ("b", "case"), ("c", "case")]  # built, compiled and warmed up first
    assert [name for name, _ in log[3:]] == list("abc" "bca" "cab")  # one epoch each per round
    assert all(t["times"] == [1.0] * 3 and t["compile_s"] == 0.5 for t in timed.values())


def timed_rows(seconds: dict) -> dict:
    return {k: {"name": k, "compile_s": None, "warmup_s": 0, "times": [s, s * 1.1, s * 0.9]} for k, s in seconds.items()}


def test_summary_divides_fastnet_by_the_faster_numpy_run_jax_and_torch_against_the_targets():
    case = Case((128,), "sigmoid", 32)  # targets 0.5, 0.75, 0.3
    row = summarise(case, timed_rows({"numba": 1.0, "numpy-1": 2.5, "numpy-2": 1.8, "jax-scan": 1.25,
                                            "jax-step": 3.0, "torch": 3.0}), peak=100.0, samples=1000, busy=0)
    assert row["numpy_best"] == "numpy-2"
    r = row["ratios"]
    assert r["numpy"] == {"value": pytest.approx(1 / 1.8), "target": 0.5, "met": False}
    assert r["jax-scan"] == {"value": pytest.approx(0.8), "target": 0.75, "met": False}
    assert r["torch"] == {"value": pytest.approx(1 / 3), "target": 0.3, "met": False}
    assert "numba-1" not in r
    assert row["contenders"]["numba"]["gflops"] == pytest.approx(case.flops_per_epoch(1000) / 1e9)
    assert row["contenders"]["numba"]["pct_peak"] == pytest.approx(case.flops_per_epoch(1000) / 1e9)  # of 100


def test_summary_under_load_holds_fastnet_to_its_own_one_thread_time():
    rows = timed_rows({"numba": 1.2, "numba-1": 1.0, "numpy-1": 3.0, "numpy-2": 4.0})
    row = summarise(Case((128,), "sigmoid", 128), rows, peak=100.0, samples=1000, busy=2)
    assert row["ratios"]["numba-1"] == {"value": pytest.approx(1.2), "target": 1.25, "met": True}
    assert row["ratios"]["numpy"]["met"] is True and "torch" not in row["ratios"]
    other = summarise(Case((128,), "sigmoid", 64), rows, peak=100.0, samples=1000, busy=2)
    assert other["ratios"]["numba-1"]["target"] is None  # the under-load target is set at B=32 and 128


# ---- competing busy processes are always ended ---------------------------------------------------------


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_busy_processes_spin_during_the_block_and_are_gone_after_it_even_after_an_error():
    with busy_processes(2) as pids:
        assert len(pids) == 2 and all(running(p) for p in pids)
    assert not any(running(p) for p in pids)
    with pytest.raises(RuntimeError, match="boom"):
        with busy_processes(1) as pids:
            raise RuntimeError("boom")
    assert not any(running(p) for p in pids)


def test_busy_process_ends_itself_when_the_bench_is_killed():
    code = ("from fastnet.bench.busy import busy_processes; import time\n"
            "with busy_processes(1) as pids:\n    print(pids[0], flush=True); time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    assert running(pid)
    parent.kill()  # no finally runs: the busy process must notice on its own
    parent.wait()
    deadline = time.monotonic() + 60
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(pid)


# ---- the command, on a tiny run -------------------------------------------------------------------------


def run_bench(tmp_path, *flags, env=None):
    """Run ``fastnet bench --quick --rounds 1 FLAGS``; returns its output and the JSON it wrote."""
    out = tmp_path / "result"
    result = subprocess.run([sys.executable, "-m", "fastnet", "bench", "--quick", "--rounds", "1", *flags,
                             "--out", str(out)], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    return result, json.loads((tmp_path / "result.json").read_text())


def test_bench_command_writes_the_machine_every_contender_and_the_ratios(tmp_path):
    result, data = run_bench(tmp_path, "--samples", "600")
    m = data["machine"]
    assert m["cpu"] and m["llvm_cpu"] and m["cores"] >= 1 and m["numpy"] and m["numba"]
    assert len(m["load_average"]) == len(m["load_average_end"]) == 3 and data["busy_processes"] == 0
    expected = ["numba", "numpy-1", "numpy-2", "jax-scan", "jax-step", "torch"]
    assert sorted([*data["contenders"], *data["skipped"]]) == sorted(expected)
    for key, c in data["contenders"].items():
        assert c["threads"] and c["kernels"] and isinstance(c["blas"], list) and not running(c["pid"])
    assert data["contenders"]["numpy-1"]["threads"] == 1 and data["contenders"]["numpy-2"]["threads"] == 2
    assert data["sgemm_gflops"]["2"] > 0
    [row] = data["cases"]
    assert row["case"] == "784-128-10 sigmoid B=128" and row["numpy_best"] in ("numpy-1", "numpy-2")
    assert all(len(c["times"]) == 1 and c["median_s"] > 0 for c in row["contenders"].values())
    assert row["ratios"]["numpy"]["target"] == 0.65 and isinstance(row["ratios"]["numpy"]["met"], bool)
    [eff] = data["efficiency"]
    assert eff["target_pct"] == 70 and eff["pct"] > 0
    out = result.stdout
    assert f"LLVM target {m['llvm_cpu']}" in out and "load average" in out and "0 busy processes" in out
    assert "| case | fastnet | NumPy (best of 1/2 thr.) |" in out and "| 784-128-10 sigmoid B=128 |" in out
    assert "(≤ 0.65)" in out and "efficiency at 784-128-10 sigmoid B=128" in out
    if "jax-scan" in data["contenders"]:
        assert data["contenders"]["jax-scan"]["name"].endswith("whole epoch in one jit (lax.scan)")
        assert row["contenders"]["jax-scan"]["compile_s"] > 0 and "(≤ 0.8)" in out


def test_bench_skips_a_missing_library_with_the_reason_and_runs_under_load(tmp_path):
    hidden = tmp_path / "hidden"
    for name in ("jax", "torch"):
        (hidden / name).mkdir(parents=True)
        (hidden / name / "__init__.py").write_text(f"raise ImportError('{name} hidden by the test')\n")
    env = {**os.environ, "PYTHONPATH": str(hidden)}
    result, data = run_bench(tmp_path, "--samples", "600", "--busy", "1", env=env)
    assert set(data["skipped"]) == {"jax-scan", "jax-step", "torch"}
    assert "JAX is not installed (jax hidden by the test): pip install jax" in data["skipped"]["jax-scan"]
    assert "PyTorch is not installed (torch hidden by the test)" in data["skipped"]["torch"]
    assert "skipping PyTorch eager: PyTorch is not installed" in result.stdout
    assert "skipped JAX epoch jit: JAX is not installed" in result.stdout
    # under load: fastnet on 1 thread too, and the ratio against the under-load target
    assert data["busy_processes"] == 1 and len(data["busy_pids"]) == 1
    assert data["contenders"]["numba-1"]["threads"] == 1
    assert data["cases"][0]["ratios"]["numba-1"]["target"] == 1.25
    assert "÷ 1 thr. under load" in result.stdout and "(≤ 1.25)" in result.stdout
    assert not running(data["busy_pids"][0])
    assert not any(running(c["pid"]) for c in data["contenders"].values())


def test_ctrl_c_ends_the_bench_its_workers_and_its_busy_processes(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "fastnet", "bench", "--quick", "--no-torch", "--no-jax",
                             "--busy", "1", "--rounds", "50", "--samples", "600", "--out", str(tmp_path / "r")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_as_usual)
    pids = []
    for line in proc.stdout:  # wait until the busy process and the first worker run
        if line.startswith("started"):
            pids.append(int(line.split("pid ")[1].split(")")[0]))
        if len(pids) == 2:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip().endswith("interrupted"), err
    assert not any(running(p) for p in pids)
    assert not (tmp_path / "r.json").exists()


def test_bench_sklearn_writes_both_contenders_accuracy_and_the_machine(tmp_path):
    result, data = run_bench(tmp_path, "--sklearn", "--threads", "1")
    machine = data["machine"]
    assert machine["cpu"] and machine["llvm_cpu"] and machine["cores"] >= 1 and len(machine["load_average"]) == 3
    assert set(data["contenders"]) == {"scikit-learn (1 thread)", "fastnet (1 thread)"}
    for contender_ in data["contenders"].values():
        assert contender_["blas"][0]["internal_api"] and contender_["numba_threads"] >= 1
    assert [d["dataset"] for d in data["datasets"]] == ["digits", "breast_cancer", "classification-100k"]
    for d in data["datasets"]:
        for row in d["rows"].values():
            assert 0 < row["accuracy"] <= 1 and row["median_s"] > 0 and row["n_iter"] == 5  # no early stop
        assert d["speedup_1_thread"] > 0
    assert "| digits | 5 |" in result.stdout and "LLVM target" in result.stdout


def test_bench_sklearn_without_scikit_learn_says_what_to_install():
    hide = "import sys; sys.modules['sklearn'] = None; from fastnet.cli import main; sys.exit(main(%r))"
    result = subprocess.run([sys.executable, "-c", hide % ["bench", "--sklearn", "--quick"]], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == ("fastnet bench: error: fastnet bench --sklearn needs scikit-learn: "
                                     "pip install 'scikit-learn>=1.6'")


# ---- where results go: --out, else the user's data folder, never the source tree -------------------------

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def data_home(monkeypatch, tmp_path):
    """A user data folder of the test's own (platformdirs reads XDG_DATA_HOME on Linux)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("XDG_DATA_HOME moves the user data folder on Linux only")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data" / "fastnet" / "bench"


def test_the_default_output_folder_is_the_users_data_folder_outside_the_source_tree():
    folder = default_output_dir()
    assert folder == Path(platformdirs.user_data_dir("fastnet")) / "bench"
    assert REPO not in folder.resolve().parents


def test_output_path_uses_out_as_given_else_creates_the_default_folder(data_home, tmp_path):
    assert output_path(str(tmp_path / "new" / "mine"), "fastnet-bench", ".json") == str(tmp_path / "new" / "mine")
    assert not data_home.exists()  # a given path never touches the default folder
    assert output_path(None, "fastnet-bench", ".json") == str(data_home / "fastnet-bench")
    assert data_home.is_dir()


def test_output_path_refuses_what_cannot_be_written_before_anything_runs(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"--out .*: cannot write .*x\.json: .* is not a folder"):
        output_path(str(blocker / "x"), "unused", ".json")
    monkeypatch.setenv("XDG_DATA_HOME", str(blocker))  # the default folder cannot be made
    if sys.platform.startswith("linux"):
        with pytest.raises(ConfigError, match="give --out a path"):
            output_path(None, "fastnet-bench", ".json")


def test_bench_command_without_out_writes_to_the_default_folder_and_says_where(data_home, monkeypatch, capsys):
    from fastnet.bench import command
    from fastnet.cli import main

    written = []
    monkeypatch.setattr(command, "run", lambda cases, **kwargs: {"cases": []})
    monkeypatch.setattr(command, "format_table", lambda results: "the table")
    monkeypatch.setattr(command, "write_outputs", lambda results, *paths: written.append(paths))
    assert main(["bench", "--quick", "--rounds", "1"]) == 0
    prefix = data_home / "fastnet-bench"
    assert written == [(f"{prefix}.json", f"{prefix}.png")] and data_home.is_dir()
    assert f"results written to {prefix}.json" in capsys.readouterr().out


def test_bench_lenet_runs_the_lenet_case_alone_with_every_contender(tmp_path, monkeypatch):
    from fastnet.bench import command
    from fastnet.cli import main

    calls = []
    monkeypatch.setattr(command, "run", lambda cases, **kwargs: calls.append((cases, kwargs)) or {"cases": []})
    monkeypatch.setattr(command, "format_table", lambda results: "the table")
    monkeypatch.setattr(command, "write_outputs", lambda results, *paths: None)
    assert main(["bench", "--lenet", "--rounds", "1", "--out", str(tmp_path / "r")]) == 0
    [(cases, kwargs)] = calls
    assert [c.name for c in cases] == ["LeNet-5 relu B=64"] and cases == [CASES[-1]]  # the full run's last case
    assert kwargs["with_torch"] and kwargs["with_jax"] and not kwargs["extras"]


def test_bench_sklearn_without_out_writes_to_the_default_folder(data_home, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    from fastnet.bench import command
    from fastnet.cli import main

    written = []
    monkeypatch.setattr(command, "run_sklearn", lambda **kwargs: {})
    monkeypatch.setattr(command, "format_sklearn_table", lambda results: "the table")
    monkeypatch.setattr(command, "write_outputs", lambda results, *paths: written.append(paths))
    assert main(["bench", "--sklearn", "--quick"]) == 0
    assert written == [(f"{data_home / 'fastnet-bench-sklearn'}.json",)]
    assert f"results written to {data_home / 'fastnet-bench-sklearn'}.json" in capsys.readouterr().out


def test_bench_command_refuses_an_unwritable_out_before_measuring(tmp_path, monkeypatch, capsys):
    from fastnet.bench import command
    from fastnet.cli import main

    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(command, "run", lambda *a, **k: pytest.fail("measured before checking --out"))
    assert main(["bench", "--quick", "--out", str(tmp_path / "a-file" / "r")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_bench_mpi_defaults_to_the_same_folder():
    from fastnet.bench import mpi as bench_mpi

    parser = bench_mpi.build_parser()
    assert parser.parse_args([]).out is None  # resolved by output_path in main
    out = next(action for action in parser._actions if "--out" in action.option_strings)
    assert str(default_output_dir() / "fastnet-bench-mpi") in out.help


@pytest.mark.parametrize("script", ["bench_load.py", "cold_start.py", "region_cost.py"])
def test_bench_scripts_take_out_and_refuse_an_unwritable_one_before_measuring(script, tmp_path):
    (tmp_path / "a-file").write_text("")
    result = subprocess.run([sys.executable, str(REPO / "bench" / script), "--out", str(tmp_path / "a-file" / "r.json")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "is not a folder" in result.stderr, result.stderr
    assert "load average" not in result.stdout  # nothing was measured
