"""How much of a training step is Python and numba dispatch: the machinery around the compiled step.

    python bench/dispatch_cost.py [--threads 1] [--rounds 7]

Prints the per-step cost of the machinery alone: ``fit`` on a 2-2-2 network, whose kernels do
almost no arithmetic, divided by its steps (medians of rounds). The figures and what they decided
are in docs/performance.md. It prints only: redirect its output to keep it.
"""
import argparse
import os
import statistics
import time

import numpy as np

import fastnet as fn
from fastnet.threads import set_num_threads


def machinery_us_per_step(batch: int = 32, samples: int = 8000, rounds: int = 7) -> float:
    rng = np.random.default_rng(0)
    x, y = rng.random((samples, 2), dtype=np.float32), rng.integers(0, 2, samples)
    model = fn.Sequential(fn.Dense(2, 2), fn.Sigmoid(), fn.Dense(2, 2), loss=fn.SoftmaxCrossEntropy(), seed=0)
    times = []
    for _ in range(rounds + 1):
        start = time.perf_counter()
        model.fit(x, y, epochs=1, batch_size=batch, optimizer=fn.SGD(lr=0.01), progress=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) / (samples // batch) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    set_num_threads(args.threads)
    load = os.getloadavg()[0]
    print(f"numba threads {args.threads}, load average at start {load:.2f}")
    print(f"machinery per step (2-2-2 net, B=32): {machinery_us_per_step(rounds=args.rounds):.1f} µs")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
