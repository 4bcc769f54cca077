"""The cold start (an empty kernel cache) and the cached start, against numba's own floor.

Each round runs, in fresh processes with an empty NUMBA_CACHE_DIR each, the first batch of
two networks, and times process start to the end of that batch, as ``fastnet bench`` does;
then it runs the same twice more on the cache the first one filled (the cached start), with
SciPy importable and hidden:

* the benchmark's first case, 784-128-10 sigmoid, B=32, plain SGD (``fastnet bench``'s "compile" line);
* the default ``fastnet train`` network, 784-512-10 ReLU with dropout 0.5, B=32, SGD with momentum.

It also times the floor under a cached start, which no fastnet code is in: importing numpy and
numba, and numba's first use (its target's registries, which import scipy.linalg, when SciPy is
installed, to look for a BLAS), with SciPy importable and with it hidden.

    python bench/cold_start.py --rounds 3 [--out cold-start.json]

The runs are written as JSON to --out (default: cold-start.json in
fastnet.bench.output.default_output_dir()). Not a pytest-benchmark suite: it runs as a script only.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # run the fastnet beside this script
NETWORKS = {
    "784-128-10 sigmoid, SGD": "fn.Sequential(fn.Dense(784, 128), fn.Sigmoid(), fn.Dense(128, 10), "
                               "loss=fn.SoftmaxCrossEntropy(), seed=0), fn.SGD(lr=0.01)",
    "784-512-10 relu, dropout, momentum": "fn.Sequential(fn.Dense(784, 512, init='he'), fn.ReLU(), fn.Dropout(0.5), "
                                          "fn.Dense(512, 10), loss=fn.SoftmaxCrossEntropy(), seed=0), "
                                          "fn.SGD(lr=0.05, momentum=0.9)",
}
FIRST_BATCH = ("import sys, time; t0 = float(sys.argv[1]); {hide}import numpy as np; import fastnet as fn; "
               "model, opt = {network}; "
               "x = np.zeros((32, 784), np.uint8); y = np.arange(32) % 10; "
               "model.fit(x, y, batch_size=32, optimizer=opt, progress=False); "
               "print(time.time() - t0)")


HIDE_SCIPY = "sys.modules['scipy'] = None; "  # numba then finds no BLAS to look at
FLOOR = ("import sys, time; {hide}t0 = time.perf_counter(); import numpy; t1 = time.perf_counter(); import numba; "
         "t2 = time.perf_counter(); from numba.core.registry import cpu_target; cpu_target.target_context.refresh(); "
         "print(t1 - t0, t2 - t1, time.perf_counter() - t2)")


def floor(scipy: bool) -> list[float]:
    """Seconds to import numpy, to import numba, and for numba's first use, in a fresh process."""
    code = FLOOR.format(hide="" if scipy else HIDE_SCIPY)
    return [float(t) for t in subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                             check=True).stdout.split()]


def first_batch(network: str) -> tuple[float, float, float]:
    """Seconds from process start to the end of the first batch on an empty cache, then the same
    seconds for later processes on the cache the first one filled, with SciPy importable and hidden
    (fastnet's own install has no SciPy; its test extra brings it)."""
    from fastnet.bench.harness import first_batches

    runs = first_batches([FIRST_BATCH.format(network=NETWORKS[network], hide=hide)
                          for hide in ("", "", HIDE_SCIPY)], cwd=ROOT)
    return float(runs[0][0]), float(runs[1][0]), float(runs[2][0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", metavar="FILE", help="write the runs here, as JSON (default: cold-start.json in "
                        "fastnet.bench.output.default_output_dir(), e.g. ~/.local/share/fastnet/bench)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from fastnet.bench.machine import machine_record
    from fastnet.bench.output import output_path, write_json
    from fastnet.errors import ConfigError

    try:
        out = output_path(args.out, "cold-start.json")
    except ConfigError as e:
        parser.error(str(e))

    results = {"machine": machine_record(vector_width=False), "load_before": os.getloadavg(), "runs": {}}
    for _ in range(args.rounds):
        for network in NETWORKS:
            seconds, cached, cached_no_scipy = first_batch(network)
            results["runs"].setdefault(network, []).append(
                {"seconds": seconds, "cached_seconds": cached, "cached_seconds_scipy_hidden": cached_no_scipy})
        for scipy in (True, False):
            results["runs"].setdefault(f"floor | scipy {'importable' if scipy else 'hidden'}", []).append(floor(scipy))
    results["load_after"] = os.getloadavg()
    m = results["machine"]
    print(f"{m.get('cpu')}, LLVM {m.get('llvm_cpu')}, {os.cpu_count()} cpus; "
          f"load average {results['load_before'][0]:.2f} -> {results['load_after'][0]:.2f}")
    for network in NETWORKS:
        runs = results["runs"][network]
        cold, cached, no_scipy = (statistics.median(r[k] for r in runs)
                                  for k in ("seconds", "cached_seconds", "cached_seconds_scipy_hidden"))
        print(f"{network:38} cold {cold:5.2f} s, cached {cached:4.2f} s, {no_scipy:4.2f} s with SciPy hidden")
    for scipy in ("importable", "hidden"):
        parts = zip(*results["runs"][f"floor | scipy {scipy}"])
        numpy_s, numba_s, first_use = (statistics.median(p) for p in parts)
        print(f"floor, SciPy {scipy:10}  import numpy {numpy_s:.2f} s, numba {numba_s:.2f} s, "
              f"numba's first use {first_use:.2f} s: {numpy_s + numba_s + first_use:.2f} s")
    write_json(out, results, indent=1)
    print(f"\nresults written to {out}")


if __name__ == "__main__":
    main()
