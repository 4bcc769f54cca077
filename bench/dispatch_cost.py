"""How much of a training step is Python and numba dispatch, and what one compiled call per epoch would save.

    python bench/dispatch_cost.py [--threads 1] [--rounds 7]

Prints two figures:

* the per-step cost of the machinery alone: ``fit`` on a 2-2-2 network, whose kernels do
  almost no arithmetic, divided by its steps;
* for 784-128-10 sigmoid SGD at B = 32 and 128, a ``fit`` epoch against the same epoch as one
  numba call (a loop over batches calling the same kernels, written by hand for this network),
  interleaved, medians. The compile time of that call is reported apart.

Together they measure what fusing a step's kernel calls into one compiled call saves: the Python and
numba dispatch cost of its calls (tens of µs a step), set against the step's arithmetic. The figures
and what they decided are in docs/performance.md. It prints only: redirect its output to keep it.
"""
import argparse
import os
import statistics
import time

import numba
import numpy as np

import fastnet as fn
from fastnet.kernels import batching, dense, losses, optimizers
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


@numba.njit
def _epoch_as_one_call(blocks, order, x, y, batch, xb, tb, h, out, g_out, g_h, w0, b0, w1, b1, dw0, db0, dw1, db1,
                       params, grads, lr, act, p0, p1):
    # 784-128-10 with a fused activation: what Plan's calls do for one batch, looped over the epoch;
    # blocks: the addresses of the dense kernels' blocks (kernels/_blocks.py)
    forward, dx, dw = blocks
    total = 0.0
    for start in range(0, order.shape[0] - batch + 1, batch):
        idx = order[start:start + batch]
        batching.gather_rows(xb, x, idx, 1 / 255)
        for r in range(batch):
            tb[r] = y[idx[r]]
        dense._dense_forward(forward, h, xb, w0, b0, act, p0, p1)
        dense._dense_forward(forward, out, h, w1, b1, 0, 0.0, 0.0)
        total += losses.softmax_ce(g_out, out, tb)
        batching.argmax_hits(out, tb)
        dense._dense_backward_dw(dw, dw1, db1, g_out, h)
        dense._dense_backward_dx(dx, g_h, g_out, w1, h, act, p0, p1)
        dense._dense_backward_dw(dw, dw0, db0, g_h, xb)
        optimizers.sgd(params, grads, lr)
    return total


def epoch_ms(batch: int, rounds: int) -> dict:
    train, _ = fn.datasets.load("mnist-sample")
    x, y = train.x, train.y
    model = fn.Sequential(fn.Dense(784, 128), fn.Sigmoid(), fn.Dense(128, 10), loss=fn.SoftmaxCrossEntropy(), seed=0)
    model.fit(x[:batch], y[:batch], batch_size=batch, optimizer=fn.SGD(lr=0.01), progress=False)
    steps = model._plan.steps(batch)  # the same buffers the fit loop uses
    d0, d1 = model.dense
    forward, backward = steps.forward_train[0].fn, steps.backward[1].fn  # partials, inside the step tuner's Sites
    h, g_h = forward.args[1], backward.args[1]  # after the block's address
    act = forward.args[5:]
    blocks = (forward.args[0], backward.args[0], steps.backward[0].fn.args[0])
    order = np.random.default_rng(0).permutation(len(x))
    args = (blocks, order, np.asarray(x), np.asarray(y), batch, steps.x, steps.target, h, steps.out, steps.grad_out, g_h,
            d0.weight, d0.bias, d1.weight, d1.bias, d0.dw, d0.db, d1.dw, d1.db, model.params, model.grads,
            np.float32(0.01), *act)
    start = time.perf_counter()
    _epoch_as_one_call(*args)
    compile_s = time.perf_counter() - start

    def fit_epoch():
        model.fit(x, y, epochs=1, batch_size=batch, progress=False)

    times = {"fit": [], "one call": []}
    for rnd in range(rounds):
        pair = [("fit", fit_epoch), ("one call", lambda: _epoch_as_one_call(*args))]
        for name, run in pair if rnd % 2 == 0 else pair[::-1]:
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    return {**med, "compile_s": compile_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    set_num_threads(args.threads)
    load = os.getloadavg()[0]
    print(f"numba threads {args.threads}, load average at start {load:.2f}")
    print(f"machinery per step (2-2-2 net, B=32): {machinery_us_per_step(rounds=args.rounds):.1f} µs")
    for batch in (32, 128):
        r = epoch_ms(batch, args.rounds)
        print(f"784-128-10 B={batch}, 8,000-sample epoch: fit {r['fit']:.1f} ms, one numba call {r['one call']:.1f} ms "
              f"({r['one call'] / r['fit']:.2f}×), that call compiled in {r['compile_s']:.1f} s")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
