"""What one parallel kernel costs beyond its work: waking numba's threads, under each wait policy.

A parallel kernel that does almost nothing (2 elements) is timed 2,000 times after gaps of 0,
50 µs and 1 ms of busy work on the calling thread, as a training step leaves between kernels.
Each policy runs in its own process, since OpenMP reads it once, at start:

    python bench/region_cost.py
    python bench/region_cost.py --json bench/results/region-cost.json

fastnet's default is a short spin, then sleep (GOMP_SPINCOUNT=10000; fastnet/threads.py). On a
2-vCPU cloud VM (AMD EPYC Zen 3, idle) a passive wake cost 90-160 µs, against 2-13 µs for
libgomp's spinning default: this is the figure fastnet/_thread_tuning.py weighs a call's time
against. Not a pytest-benchmark suite: it runs as a script only.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

POLICIES = {  # name -> environment; "1 thread" is the floor: a parallel kernel run on one thread
    "spin 10k (fastnet's default)": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin 300k (libgomp's default)": {"GOMP_SPINCOUNT": "300000"},
    "1 thread": {"OMP_WAIT_POLICY": "PASSIVE", "NUMBA_NUM_THREADS": "1"},
}
GAPS = (0.0, 50e-6, 1e-3)


def worker() -> None:
    import time

    import numpy as np
    from numba import njit, prange

    @njit(parallel=True)
    def region(a):
        for i in prange(a.shape[0]):
            a[i] += 1.0

    a = np.zeros(2, np.float32)
    region(a)  # compile
    out = {}
    for gap in GAPS:
        times = []
        for _ in range(2000):
            start = time.perf_counter()
            while time.perf_counter() - start < gap:
                pass
            start = time.perf_counter()
            region(a)
            times.append(time.perf_counter() - start)
        times.sort()
        out[f"{gap * 1e6:.0f}"] = {"median_us": times[len(times) // 2] * 1e6, "p90_us": times[9 * len(times) // 10] * 1e6}
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = {"cpus": os.cpu_count(), "load_before": os.getloadavg(), "policies": {}}
    for name, env in POLICIES.items():
        clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        proc = subprocess.run([sys.executable, __file__, "--worker"], env={**clean, **env},
                              capture_output=True, text=True, check=True)
        results["policies"][name] = json.loads(proc.stdout)
    results["load_after"] = os.getloadavg()
    print(f"load average {results['load_before'][0]:.2f} -> {results['load_after'][0]:.2f}, {results['cpus']} cpus")
    print(f"{'policy':32} " + " ".join(f"{'gap ' + g + ' µs':>18}" for g in results["policies"]["1 thread"]))
    for name, by_gap in results["policies"].items():
        print(f"{name:32} " + " ".join(f"{v['median_us']:8.1f} (p90 {v['p90_us']:5.0f})" for v in by_gap.values()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker()
    else:
        main()
