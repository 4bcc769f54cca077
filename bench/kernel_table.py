"""Print the kernel comparison table (as in docs/performance.md, "Kernels") as Markdown, on stdout only.

    python bench/kernel_table.py [--rounds 40] [--burst 15] [> table.md]

Times the cases of bench_kernels.py with the contenders interleaved: each round
runs every contender for a short burst (in alternating order), and the first
calls of each burst are dropped, so that one contender's thread pool (numba's
OpenMP threads, OpenBLAS's pthreads) has gone quiet before the other is timed.
Medians over all rounds. Ratios above 1 mean numba is faster.
"""
import argparse
import os
import sys
import time

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_kernels import BATCHES, CASES, TITLES, contenders  # noqa: E402

from fastnet.bench.machine import cpu_model, kernel_vector_width, llvm_cpu  # noqa: E402


def interleaved_medians(calls, rounds, burst, drop=3):
    """{contender: median seconds} over `rounds` alternating bursts of `burst` calls each."""
    times = {who: [] for who in calls}
    order = list(calls)
    clock = time.perf_counter
    for rnd in range(rounds):
        for who in (order if rnd % 2 == 0 else order[::-1]):
            fn = calls[who]
            for j in range(burst):
                t0 = clock()
                fn()
                if j >= drop:
                    times[who].append(clock() - t0)
    return {who: float(np.median(ts)) for who, ts in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--burst", type=int, default=15)
    ap.add_argument("--ops", nargs="*", default=list(CASES), choices=list(CASES))
    args = ap.parse_args()
    numba.set_num_threads(2)

    print(f"numba {numba.__version__} ({numba.get_num_threads()} threads, layer set on first parallel call), "
          f"numpy {np.__version__}, {cpu_model()} (LLVM target {llvm_cpu()}, dense kernels compiled to "
          f"{kernel_vector_width()}-bit vectors), load average at start {os.getloadavg()[0]:.2f}\n")
    print("| op | B | numba µs | twin µs | NumPy @ µs | numba vs @ | numba vs twin |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for op in args.ops:
        for B in BATCHES:
            med = interleaved_medians(contenders(op, B), args.rounds, args.burst)
            us = {who: t * 1e6 for who, t in med.items()}
            at = f"{us['matmul']:.1f}" if "matmul" in us else "–"
            vs_at = f"{us['matmul'] / us['numba']:.2f}×" if "matmul" in us else "–"
            print(f"| {TITLES[op]} | {B} | {us['numba']:.1f} | {us['twin']:.1f} | {at} | {vs_at} | "
                  f"{us['twin'] / us['numba']:.2f}× |", flush=True)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
