"""fastnet.bench.mpi: the α–β fit, the prediction's arithmetic, and one real run under mpiexec -n 2."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnet
from fastnet.bench import mpi as bench_mpi
from fastnet.errors import ConfigError

ROOT = Path(fastnet.__file__).resolve().parent.parent


def ring_time(n, p, alpha, beta):
    """The ring all-reduce's cost, written out here rather than taken from the module under test."""
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * n * beta


@pytest.mark.parametrize("ranks", [2, 4, 64])
def test_alpha_beta_fit_recovers_known_values_from_exact_times(ranks):
    alpha, beta = 12e-6, 1 / 9e9
    sizes = [4096 * 2 ** k for k in range(13)]
    fit = bench_mpi.fit_alpha_beta(sizes, [ring_time(n, ranks, alpha, beta) for n in sizes], ranks)
    assert fit["alpha_s"] == pytest.approx(alpha, rel=1e-9)
    assert fit["beta_s_per_byte"] == pytest.approx(beta, rel=1e-9)
    assert fit["bandwidth_GB_s"] == pytest.approx(9.0, rel=1e-9)
    assert fit["r2"] == pytest.approx(1.0) and fit["max_rel_err"] < 1e-9 and not fit["clamped"]


def test_alpha_beta_fit_is_close_under_a_few_percent_of_noise():
    alpha, beta, ranks = 5e-6, 8 / 100e9, 2
    sizes = np.array([4096 * 2 ** k for k in range(13)])
    noise = 1 + 0.03 * np.random.default_rng(0).uniform(-1, 1, sizes.size)
    fit = bench_mpi.fit_alpha_beta(sizes, ring_time(sizes, ranks, alpha, beta) * noise, ranks)
    assert fit["alpha_s"] == pytest.approx(alpha, rel=0.1)
    assert fit["beta_s_per_byte"] == pytest.approx(beta, rel=0.1)
    assert 0 < fit["max_rel_err"] <= 0.06


def test_a_negative_intercept_is_clamped_to_zero_and_said():
    fit = bench_mpi.fit_alpha_beta([1000, 2000, 4000], [1e-6, 3e-6, 7e-6], 2)  # the line crosses 0 at n = 500
    assert fit["clamped"] and fit["alpha_s"] == 0 and fit["beta_s_per_byte"] > 0


def test_fits_refuse_what_cannot_be_fitted():
    with pytest.raises(ConfigError, match="at least 2 ranks"):
        bench_mpi.fit_alpha_beta([1, 2], [1.0, 2.0], 1)
    with pytest.raises(ConfigError, match="two distinct"):
        bench_mpi.fit_compute([8, 8], [1.0, 2.0])


def test_compute_fit_recovers_overhead_and_per_sample_time():
    batches = [1, 2, 4, 8, 16, 64, 256, 1024]
    fit = bench_mpi.fit_compute(batches, [3e-4 + 2.5e-6 * b for b in batches])
    assert fit["overhead_s"] == pytest.approx(3e-4, rel=1e-9)
    assert fit["per_sample_s"] == pytest.approx(2.5e-6, rel=1e-9)


def test_ring_allreduce_seconds_by_hand():
    # 4 ranks: 6 messages of 1e-5 s, and 2·3/4 of a megabyte at 1 ns per byte
    assert bench_mpi.ring_allreduce_seconds(1e6, 4, 1e-5, 1e-9) == pytest.approx(6e-5 + 1.5e-3)
    assert bench_mpi.ring_allreduce_seconds(1e6, 1, 1e-5, 1e-9) == 0


def test_predict_by_hand():
    # 8 ranks share a batch of 256: 32 samples each at 10 µs plus 200 µs, against 256 samples on one rank
    row = bench_mpi.predict(per_sample_s=1e-5, overhead_s=2e-4, grad_bytes=400_000, batch=256, ranks=8,
                            alpha=1e-5, beta=8e-10)
    one = 2e-4 + 256 * 1e-5                  # 2.76 ms
    compute = 2e-4 + 32 * 1e-5               # 0.52 ms
    allreduce = 14 * 1e-5 + 14 / 8 * 400_000 * 8e-10   # 0.14 ms + 0.56 ms
    step = compute + allreduce               # 1.22 ms
    assert row["compute_s"] == pytest.approx(compute)
    assert row["allreduce_s"] == pytest.approx(allreduce)
    assert row["step_s"] == pytest.approx(1.22e-3)
    assert row["samples_per_s"] == pytest.approx(256 / 1.22e-3)
    assert row["speedup"] == pytest.approx(one / step)
    assert row["efficiency"] == pytest.approx(2.76 / 1.22 / 8)


def test_predict_charges_the_largest_shard_and_one_rank_has_no_allreduce():
    row = bench_mpi.predict(1e-3, 0.0, 1e6, batch=10, ranks=4, alpha=1.0, beta=0.0)
    assert row["compute_s"] == pytest.approx(3e-3)  # shards of 3, 3, 2, 2
    assert row["allreduce_s"] == pytest.approx(6.0)
    alone = bench_mpi.predict(1e-3, 1e-4, 1e6, batch=10, ranks=1, alpha=1.0, beta=1.0)
    assert alone["allreduce_s"] == 0 and alone["speedup"] == 1 and alone["efficiency"] == 1


def test_local_batch_sizes_are_what_the_predictions_need():
    assert bench_mpi.local_batch_sizes([64, 100], [2, 4]) == [16, 25, 32, 50, 64, 100]


@pytest.mark.parametrize("text", ["784-10", "100-128-10:relu", "784-128-10", "784-128-10:swish", "784-x-10:relu"])
def test_a_bad_net_is_a_clear_error(text):
    with pytest.raises(ConfigError, match="784-128-10:sigmoid"):
        bench_mpi.parse_net(text)


def test_parse_net():
    case = bench_mpi.parse_net("784-512-256-10:relu")
    assert case.hidden == (512, 256) and case.activation == "relu"


def _mpiexec() -> str:
    pytest.importorskip("mpi4py", reason="mpi4py is not installed: pip install mpi4py mpich")
    found = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if not found:
        pytest.skip("no mpiexec found beside this Python or on PATH: pip install mpi4py mpich")
    return found


QUICK = ["--net", "784-16-10:relu", "--batches", "8,16", "--ranks", "2,4", "--steps", "2", "--rounds", "1",
         "--sweep", "4096,65536", "--reps", "3"]


def test_a_quick_run_on_two_ranks_writes_the_json(tmp_path):
    mpiexec = _mpiexec()
    out = tmp_path / "scaling"
    proc = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "fastnet.bench.mpi", *QUICK, "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("results written to") == 1  # rank 0 alone prints
    results = json.loads(out.with_suffix(".json").read_text())
    assert set(results) == {"config", "machine", "measured", "compute", "allreduce", "networks", "predicted"}
    assert results["config"]["ranks"] == 2 and results["machine"]["llvm_cpu"]
    assert len(results["measured"]) == 2
    for row in results["measured"]:
        assert row["ranks"] == 2 and row["grad_bytes"] == 4 * (784 * 16 + 16 + 16 * 10 + 10)
        for stat in ("median", "p10"):
            alone, p = row[stat]["alone"], row[stat]["parallel"]
            assert alone["step_s"] > 0 and alone["blas_cap_s"] > 0
            assert p["step_s"] > 0 and p["compute_s"] > 0 and p["allreduce_s"] > 0 and p["wait_s"] >= 0
            assert row[stat]["speedup"] == pytest.approx(alone["step_s"] / p["step_s"])
    (compute,) = results["compute"]
    assert compute["local_batches"] == [2, 4, 8, 16]
    assert all(s > 0 for stat in ("median", "p10") for s in compute[stat]["seconds"])
    sweep = results["allreduce"]
    assert sweep["bytes"] == [4096, 65536] and all(s > 0 for s in sweep["median"]["seconds"] + sweep["p10"]["seconds"])
    assert sweep["median"]["fit"]["ranks"] == 2
    assert len(results["networks"]) == 3  # 10 and 100 Gb/s, and the one this run measured
    assert len(results["predicted"]) == 2 * 3 * 2 * 3  # statistics × networks × batches × (1, 2, 4 ranks)
    assert all(r["samples_per_s"] > 0 for r in results["predicted"])

def test_one_process_without_mpiexec_measures_compute_and_predicts(tmp_path):
    _mpiexec()
    out = tmp_path / "single"
    proc = subprocess.run([sys.executable, "-m", "fastnet.bench.mpi", *QUICK, "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no all-reduce to measure (run under mpiexec -n 2 or more)" in proc.stdout
    results = json.loads(out.with_suffix(".json").read_text())
    assert "allreduce" not in results and list(results["networks"]) == list(bench_mpi.NETWORKS)
    assert all("parallel" not in row["median"] for row in results["measured"])
    assert len(results["predicted"]) == 2 * 2 * 2 * 3  # statistics × networks × batches × (1, 2, 4 ranks)


def test_bad_arguments_exit_2_with_one_line(tmp_path):
    _mpiexec()
    proc = subprocess.run([sys.executable, "-m", "fastnet.bench.mpi", "--net", "784-10", "--out", str(tmp_path / "x")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "fastnet bench --mpi: error: --net '784-10': give the widths from 784 to 10 and the hidden activation, "
        "e.g. 784-128-10:sigmoid (activations: sigmoid, tanh, relu, leaky-relu)"]
    assert not (tmp_path / "x.json").exists()


def test_an_unwritable_out_folder_is_refused_before_measuring(tmp_path):
    _mpiexec()
    proc = subprocess.run([sys.executable, "-m", "fastnet.bench.mpi", "--out", str(tmp_path / "missing" / "x")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "is not a writable folder" in proc.stderr and "Traceback" not in proc.stderr


def test_main_returns_argparse_exit_codes(capsys):
    assert bench_mpi.main(["--help"]) == 0
    assert bench_mpi.main(["--steps", "0"]) == 2
    assert "give whole numbers ≥ 1" in capsys.readouterr().err


def test_fastnet_bench_mpi_runs_bench_mpi_with_the_flags_it_shares(monkeypatch):
    from fastnet.bench import mpi as bench_mpi
    from fastnet.cli import main

    seen = []
    monkeypatch.setattr(bench_mpi, "main", lambda argv: seen.append(argv) or 0)
    assert main(["bench", "--mpi"]) == 0
    assert main(["bench", "--mpi", "--rounds", "2", "--out", "mine", "--threads", "1"]) == 0
    assert seen == [[], ["--rounds", "2", "--out", "mine", "--threads", "1"]]
