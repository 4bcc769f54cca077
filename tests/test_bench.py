"""The benchmark machinery (timings themselves live in bench/, never in tests)."""
import json
import subprocess
import sys

import pytest

from fastnet import bench


def test_flops_per_epoch_counts_forward_dw_and_dx_except_the_first_layer():
    case = bench.Case((128,), "sigmoid", 128)
    per_sample = 2 * 784 * 128 * 2 + 2 * 128 * 10 * 3
    assert case.flops_per_epoch(60_000) == per_sample * 60_000
    assert abs(case.flops_per_epoch(60_000) / 1e9 - 24.5) < 0.1  # the figure
    deep = bench.Case((512, 256), "relu", 128)
    assert deep.flops_per_epoch(1) == 2 * (784 * 512 * 2 + 512 * 256 * 3 + 256 * 10 * 3)


def test_epoch_data_tiles_the_sample_to_the_requested_size():
    x, y = bench.epoch_data(20_000)
    assert x.shape == (20_000, 784) and x.dtype.name == "uint8" and y.shape == (20_000,)
    assert (x[:8000] == x[8000:16000]).all()


def test_summary_counts_the_faster_numpy_run_as_the_baseline():
    case = bench.Case((16,), "relu", 64)
    cs = [bench.Contender("fastnet-numba", None, times=[1.0, 1.2, 1.1]),
          bench.Contender("fastnet-numpy (1 BLAS thread)", None, times=[2.0, 2.2, 2.1]),
          bench.Contender("fastnet-numpy (2 BLAS threads)", None, times=[4.0, 4.0, 4.0]),
          bench.Contender("torch", None, times=[5.5, 5.5, 5.5])]
    rows = bench.summarise(case, cs, peak=100.0, samples=1000)
    assert [r["baseline"] for r in rows] == [False, True, False, False]
    assert rows[0]["ratios"] == {"numba/numpy": pytest.approx(1.1 / 2.1), "numba/torch": pytest.approx(1.1 / 5.5)}
    assert rows[0]["gflops"] == pytest.approx(case.flops_per_epoch(1000) / 1.1 / 1e9)


def test_interleaved_run_times_every_contender_each_round():
    calls = []
    cs = [bench.Contender(name, lambda name=name: calls.append(name)) for name in "abc"]
    bench.run_interleaved(cs, rounds=2)
    assert calls == list("abc") * 3  # one warm-up round, then two timed rounds, interleaved
    assert all(len(c.times) == 2 for c in cs)


def run_bench(tmp_path, *flags):
    """Run ``fastnet bench --quick --rounds 1 FLAGS``; returns its output and the JSON it wrote."""
    out = tmp_path / "result"
    result = subprocess.run([sys.executable, "-m", "fastnet", "bench", "--quick", "--rounds", "1", *flags,
                             "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result, json.loads((tmp_path / "result.json").read_text())


def test_bench_command_writes_json_and_a_table(tmp_path):
    result, data = run_bench(tmp_path, "--no-torch", "--samples", "2000")
    names = [row["contender"] for row in data["cases"][0]]
    assert names == ["fastnet-numba", "fastnet-numpy (1 BLAS thread)", "fastnet-numpy (2 BLAS threads)"]
    assert data["samples"] == 2000 and data["peak_gflops"] > 0
    assert all(row["median_s"] > 0 for row in data["cases"][0])
    assert "| 784-128-10 sigmoid B=128 | fastnet-numba |" in result.stdout


def test_bench_sklearn_writes_both_contenders_accuracy_and_the_machine(tmp_path):
    result, data = run_bench(tmp_path, "--sklearn", "--threads", "1")
    machine = data["machine"]
    assert machine["cpu"] and machine["llvm_cpu"] and machine["cores"] >= 1 and len(machine["load_average"]) == 3
    assert set(data["contenders"]) == {"scikit-learn (1 thread)", "fastnet (1 thread)"}
    for contender in data["contenders"].values():
        assert contender["blas"][0]["internal_api"] and contender["numba_threads"] >= 1
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
                                     "pip install 'fastnet[sklearn]'")
