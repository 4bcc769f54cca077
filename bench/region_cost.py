"""What one parallel kernel costs beyond its work: waking numba's threads, under each wait policy.

A parallel kernel that does almost nothing (2 elements) is timed 2,000 times after gaps of 0,
50 µs and 1 ms of busy work on the calling thread, as a training step leaves between kernels.
Each policy runs in its own process, since OpenMP reads it once, at start:

    python bench/region_cost.py [--out region-cost.json]

The medians are written as JSON to --out (default: region-cost.json in
fastnet.bench.output.default_output_dir()).

What it shows: a sleeping thread takes about 100 µs to wake (90–160 µs on an idle 2-vCPU Zen 3 VM),
as long as a 784x128 layer's forward on 32 samples, while a spinning one answers within a few µs. So
fastnet's threads spin briefly after a parallel kernel, then sleep (GOMP_SPINCOUNT=10000, about
0.1 ms; fastnet/threads.py): awake for the next kernel of the same step, asleep before they steal
a busy machine's cores. See docs/performance.md. Not a pytest-benchmark suite: it runs as a script only.
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
    parser.add_argument("--out", metavar="FILE", help="write the results here, as JSON (default: region-cost.json "
                        "in fastnet.bench.output.default_output_dir(), e.g. ~/.local/share/fastnet/bench)")
    args = parser.parse_args()
    base = dict(os.environ)  # before fastnet is imported: nothing its import may set reaches a policy
    from fastnet.bench.output import output_path, write_json
    from fastnet.errors import ConfigError

    try:
        out = output_path(args.out, "region-cost.json")
    except ConfigError as e:
        parser.error(str(e))
    results = {"cpus": os.cpu_count(), "load_before": os.getloadavg(), "policies": {}}
    for name, env in POLICIES.items():
        clean = {k: v for k, v in base.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        proc = subprocess.run([sys.executable, __file__, "--worker"], env={**clean, **env},
                              capture_output=True, text=True, check=True)
        results["policies"][name] = json.loads(proc.stdout)
    results["load_after"] = os.getloadavg()
    print(f"load average {results['load_before'][0]:.2f} -> {results['load_after'][0]:.2f}, {results['cpus']} cpus")
    print(f"{'policy':32} " + " ".join(f"{'gap ' + g + ' µs':>18}" for g in results["policies"]["1 thread"]))
    for name, by_gap in results["policies"].items():
        print(f"{name:32} " + " ".join(f"{v['median_us']:8.1f} (p90 {v['p90_us']:5.0f})" for v in by_gap.values()))
    write_json(out, results, indent=1)
    print(f"\nresults written to {out}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker()
    else:
        main()
