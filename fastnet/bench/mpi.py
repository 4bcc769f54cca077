"""Measure and model data-parallel scaling over MPI: ``mpiexec -n N python -m fastnet.bench.mpi``.

Three measurements, then a prediction:

1. **The step, split.** For each network and global batch size, rounds interleave
   one rank training the whole batch alone (on ``--baseline-threads`` numba threads, the
   other ranks asleep) with all N ranks training it data-parallel (``--threads`` each):
   every rank computes ``loss_and_grad`` on its contiguous shard with
   ``scale = shard / batch`` (penalties on rank 0 only), one sum over the ranks
   of ``model.grads`` (``distributed.sum_over_ranks``, the collective ``fit`` uses), then every rank updates. A second, instrumented pass puts a
   ``Barrier`` before the all-reduce, so that the time spent waiting for the slowest
   rank is reported apart from the all-reduce itself. Steps are timed as ``fit`` runs them,
   with BLAS capped once (see ``steps_as_fit_runs_them``).
2. **The all-reduce alone,** on message sizes from 4 KB to 16 MB, fitted to the α–β cost
   of a ring all-reduce, ``T(n, p) = 2(p−1)·α + 2(p−1)/p · n·β`` (n bytes on p ranks).
3. **Compute on one core:** rank 0 alone on one thread, at every local batch size the
   prediction needs, fitted to ``overhead + per_sample · local_batch``.

The prediction puts 2 to 64 ranks, one core each, on a network given by its α and β:
a step costs ``overhead + per_sample · ⌈batch/p⌉ + T(gradient bytes, p)`` (the all-reduce
does not overlap the compute, as in the step above). Scaling efficiency is the one-core
step time over ``p`` times that.

Every time is summarised by its median and its 10th percentile (``STATISTICS``), and the load
average is recorded before and after each measurement. Rank 0 prints the tables and writes the JSON
(``--out``, by default in ``fastnet.bench.output.default_output_dir()``); ``fastnet bench --mpi`` runs the
same. docs/scaling.md explains the cost model.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time

import numba
import numpy as np

import fastnet as fn
from fastnet.bench.contenders import LR, Case, epoch_data, fastnet_model
from fastnet.bench.harness import write_outputs
from fastnet.bench.machine import machine_record
from fastnet.bench.output import default_output_dir, output_path
from fastnet.distributed import shard_slice, sum_over_ranks
from fastnet.errors import ConfigError, FastnetError
from fastnet.threads import kernel_threads

RANKS = (2, 4, 8, 16, 32, 64)
# Every time is summarised twice: by its median, and by its 10th percentile, the quietest tenth of the steps.
# Other jobs on a shared machine only ever add time, so the low percentile is nearer an idle core's speed.
STATISTICS = {"median": 50, "p10": 10}
NETS = ("784-128-10:sigmoid", "784-512-256-10:relu")
BATCHES = (64, 256, 1024)
SWEEP_BYTES = tuple(4096 * 2 ** k for k in range(13))  # 4 KB .. 16 MB
# Assumed networks: β is the line rate; α the per-message latency of MPI over the link. About 10 µs
# half-round-trip is the best a tuned MPI over TCP gets (J. Squyres, "Ain't your father's TCP",
# blogs.cisco.com/performance/aint-your-fathers-tcp); 20 µs allows for an untuned stack. Kernel-bypass
# Ethernet (RoCE, usNIC) reaches about 2 µs (blogs.cisco.com/performance/mpi-over-40gb-ethernet); 5 µs
# allows for MPI's own software path.
NETWORKS = {
    "10 Gb/s Ethernet, TCP": {"alpha_s": 20e-6, "beta_s_per_byte": 8 / 10e9},
    "100 Gb/s Ethernet, RoCE": {"alpha_s": 5e-6, "beta_s_per_byte": 8 / 100e9},
}


# ---- the model: pure arithmetic ----------------------------------------------------------------------

def ring_allreduce_seconds(n_bytes: float, ranks: int, alpha: float, beta: float) -> float:
    """α–β time of a ring all-reduce of ``n_bytes`` on ``ranks`` ranks: 2(p−1)·α + 2(p−1)/p · n·β.

    A ring sends 2(p−1) messages per rank (reduce-scatter, then all-gather), each of n/p bytes.
    One rank has nothing to reduce: 0 s.
    """
    steps = 2 * (ranks - 1)
    return steps * alpha + steps / ranks * n_bytes * beta


def fit_line(x, y) -> dict:
    """Least squares ``y ≈ intercept + slope·x`` on relative errors (each point weighted by 1/y),
    so that the small points, where the intercept shows, count as much as the large ones.

    A negative intercept (noise at the small end) is refitted as 0 and flagged ``clamped``.
    Returns intercept, slope, r2 (of y, unweighted) and max_rel_err (largest |fit − y| / y).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 2 or x.size != y.size or np.ptp(x) == 0 or np.any(y <= 0):
        raise ConfigError("fitting a line needs at least two distinct x values and positive times")
    w = 1 / y
    (intercept, slope), *_ = np.linalg.lstsq(np.stack([w, x * w], axis=1), np.ones_like(y), rcond=None)
    clamped = bool(intercept < 0)
    if clamped:
        intercept, slope = 0.0, float(np.sum(x * w) / np.sum((x * w) ** 2))
    fit = intercept + slope * x
    total = np.sum((y - y.mean()) ** 2)
    return {"intercept": float(intercept), "slope": float(slope),
            "r2": float(1 - np.sum((y - fit) ** 2) / total) if total > 0 else 1.0,
            "max_rel_err": float(np.max(np.abs(fit - y) / y)), "clamped": clamped}


def fit_alpha_beta(n_bytes, seconds, ranks: int) -> dict:
    """Fit α (s) and β (s/byte) of ``ring_allreduce_seconds`` to all-reduce times measured on ``ranks`` ranks."""
    if ranks < 2:
        raise ConfigError("an all-reduce needs at least 2 ranks to measure: run under mpiexec -n 2 or more")
    line = fit_line(n_bytes, seconds)
    steps = 2 * (ranks - 1)
    beta = line["slope"] * ranks / steps
    return {"ranks": ranks, "alpha_s": line["intercept"] / steps, "beta_s_per_byte": beta,
            "bandwidth_GB_s": 1e-9 / beta if beta > 0 else math.inf,
            **{k: line[k] for k in ("r2", "max_rel_err", "clamped")}}


def fit_compute(local_batches, seconds) -> dict:
    """Fit a step's compute time (loss_and_grad + update) to ``overhead + per_sample · local_batch``."""
    line = fit_line(local_batches, seconds)
    return {"overhead_s": line["intercept"], "per_sample_s": line["slope"],
            **{k: line[k] for k in ("r2", "max_rel_err", "clamped")}}


def predict(per_sample_s: float, overhead_s: float, grad_bytes: float, batch: int, ranks: int,
            alpha: float, beta: float) -> dict:
    """Predicted data-parallel step on ``ranks`` ranks of one core each, for a global ``batch``.

    The slowest rank computes ⌈batch/ranks⌉ samples, then the gradients are all-reduced (no overlap).
    Speed-up and efficiency are against one rank computing the whole batch, with no all-reduce.
    """
    one = overhead_s + per_sample_s * batch
    compute = overhead_s + per_sample_s * math.ceil(batch / ranks)
    allreduce = ring_allreduce_seconds(grad_bytes, ranks, alpha, beta)
    step = compute + allreduce
    return {"ranks": ranks, "compute_s": compute, "allreduce_s": allreduce, "step_s": step,
            "samples_per_s": batch / step, "speedup": one / step, "efficiency": one / (ranks * step)}


# ---- measuring under MPI -----------------------------------------------------------------------------

def parse_net(text: str) -> Case:
    """``784-128-10:sigmoid`` -> the network (batch filled in later): MNIST-shaped, 784 in and 10 out."""
    widths, _, activation = text.partition(":")
    try:
        sizes = [int(w) for w in widths.split("-")]
    except ValueError:
        sizes = []
    if len(sizes) < 3 or sizes[0] != 784 or sizes[-1] != 10 or min(sizes) < 1 or \
            activation not in ("sigmoid", "tanh", "relu", "leaky-relu"):
        raise ConfigError(f"--net {text!r}: give the widths from 784 to 10 and the hidden activation, "
                          "e.g. 784-128-10:sigmoid (activations: sigmoid, tanh, relu, leaky-relu)")
    return Case(tuple(sizes[1:-1]), activation, 0)


def idle_barrier(comm) -> None:
    """A barrier that sleeps: MPICH's blocking one polls a core, which a rank sitting out would steal."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(0.0005)


def _slowest(comm, rows: list) -> np.ndarray:
    """Per step (row) and column, the largest value over the ranks: the slowest rank sets the pace."""
    from mpi4py import MPI

    rows = np.ascontiguousarray(rows, dtype=np.float64)
    comm.Allreduce(MPI.IN_PLACE, rows, op=MPI.MAX)
    return rows


def blas_cap_seconds() -> float:
    """The time of one ``kernel_threads`` block, which ``fit`` enters once per fit to cap BLAS (the
    public step does not enter it; a loop of one's own can, around the loop)."""
    t0 = time.perf_counter()
    with kernel_threads("numba"):
        pass
    return time.perf_counter() - t0


@contextlib.contextmanager
def steps_as_fit_runs_them():
    """Within this block BLAS is capped once, as ``fit`` caps it around its whole run.

    threadpoolctl's search of the loaded libraries takes milliseconds (1–8 ms a search), so a BLAS cap
    belongs around a loop of steps, not inside each (``fastnet.threads.kernel_threads`` finds the libraries
    once per process); ``blas_cap_seconds``, measured beside each step, is what a cap per step would add.
    """
    with kernel_threads("numba"):
        yield


def time_alone(comm, model, opt, x, y, steps: int, threads: int) -> list[tuple[float, float]]:
    """Rank 0 trains the whole batch alone on ``threads`` threads; the others sleep.
    Per step: the step's seconds (loss_and_grad + update), and ``blas_cap_seconds()`` beside it."""
    rows = []
    if comm.rank == 0:
        fn.set_num_threads(threads)
        for _ in range(steps):
            t0 = time.perf_counter()
            model.loss_and_grad(x, y)
            model.update(opt)
            rows.append((time.perf_counter() - t0, blas_cap_seconds()))
    idle_barrier(comm)
    return rows


def time_parallel(comm, model, opt, x, y, steps: int, threads: int, split: bool) -> np.ndarray:
    """Data-parallel steps on all ranks. Per step (rows), each the slowest rank's, in seconds: compute, wait,
    all-reduce, whole step, and ``blas_cap_seconds()`` beside it. ``split`` puts a Barrier before the
    all-reduce, so that waiting for the slowest rank is not counted in it."""
    fn.set_num_threads(threads)
    part = shard_slice(len(x), comm.rank, comm.size)
    xs, ys, scale = x[part], y[part], (part.stop - part.start) / len(x)
    rows = []
    comm.Barrier()
    for _ in range(steps):
        t0 = time.perf_counter()
        model.loss_and_grad(xs, ys, scale=scale, penalties=comm.rank == 0)
        t1 = time.perf_counter()
        if split:
            comm.Barrier()
        t2 = time.perf_counter()
        sum_over_ranks(comm, model.grads)  # the collective fit uses
        t3 = time.perf_counter()
        model.update(opt)
        t4 = time.perf_counter()
        rows.append((t1 - t0 + t4 - t3, t2 - t1, t3 - t2, t4 - t0, blas_cap_seconds()))
    return _slowest(comm, rows)


def _percentile(values, q: float) -> float:
    return float(np.percentile(values, q))


def measure_case(comm, net: Case, batch: int, steps: int, rounds: int, threads: int,
                 baseline_threads: int) -> dict:
    """One network at one global batch: one rank alone against all ranks, in interleaved rounds.
    The summary (on rank 0) has one part per entry of STATISTICS."""
    case = Case(net.hidden, net.activation, batch)
    model = fastnet_model(case, "numba")
    opt = fn.SGD(lr=LR)
    x, y = epoch_data(batch)
    load_before = os.getloadavg()
    alone, plain, split = [], [], []
    for r in range(rounds + 1):  # round 0 warms up (compiles or loads the kernels for both shapes)
        n = steps if r else 2
        a = time_alone(comm, model, opt, x, y, n, baseline_threads)
        if comm.size > 1:
            p = time_parallel(comm, model, opt, x, y, n, threads, split=False)
            s = time_parallel(comm, model, opt, x, y, n, threads, split=True)
        if r:
            alone += a
            if comm.size > 1:
                plain.append(p)
                split.append(s)
    if comm.rank != 0:
        return {}
    row = {"net": "-".join(map(str, case.widths)), "activation": case.activation, "batch": batch,
           "grad_bytes": int(model.grads.nbytes), "steps": steps * rounds, "ranks": comm.size, "threads": threads,
           "baseline_threads": baseline_threads,
           "load_average_before": list(load_before), "load_average_after": list(os.getloadavg())}
    alone = np.array(alone)
    if comm.size > 1:
        plain, split = np.concatenate(plain), np.concatenate(split)
    for stat, q in STATISTICS.items():
        row[stat] = summarise_case(batch, alone, plain, split, q) if comm.size > 1 else \
            summarise_case(batch, alone, None, None, q)
    return row


def summarise_case(batch: int, alone, plain, split, q: float) -> dict:
    """Percentile ``q`` of each time, and the speed-up of all ranks over one."""
    step = _percentile(alone[:, 0], q)
    out = {"alone": {"step_s": step, "samples_per_s": batch / step, "blas_cap_s": _percentile(alone[:, 1], q)}}
    if plain is not None:
        step = _percentile(plain[:, 3], q)
        compute, wait, allreduce, step_split = (_percentile(v, q) for v in split[:, :4].T)
        out["parallel"] = {"step_s": step, "samples_per_s": batch / step, "compute_s": compute, "wait_s": wait,
                           "allreduce_s": allreduce, "step_with_barrier_s": step_split,
                           "blas_cap_s": _percentile(np.concatenate([plain[:, 4], split[:, 4]]), q)}
        out["speedup"] = out["alone"]["step_s"] / step
    return out


def measure_compute(comm, net: Case, local_batches, steps: int, rounds: int) -> dict:
    """Rank 0 alone on one thread: compute (loss_and_grad + update) per local batch size, and its fit to
    overhead + per-sample time, for each of STATISTICS. ``overhead_public_step_s`` adds a BLAS cap per
    step, what a loop that capped BLAS around every step would pay (see ``steps_as_fit_runs_them``)."""
    # one model per size: a model keeps buffers for a few batch sizes only, and would rebuild them in the loop
    models = {b: fastnet_model(Case(net.hidden, net.activation, b), "numba") for b in local_batches}
    opts = {b: fn.SGD(lr=LR) for b in local_batches}  # an optimizer trains one model
    x, y = epoch_data(max(local_batches))
    times = {b: [] for b in local_batches}
    load_before = os.getloadavg()
    for r in range(rounds + 1):  # round 0 warms up
        for b, model in models.items():
            t = time_alone(comm, model, opts[b], x[:b], y[:b], steps if r else 2, threads=1)
            if r:
                times[b] += t
    if comm.rank != 0:
        return {}
    row = {"net": "-".join(map(str, [784, *net.hidden, 10])), "activation": net.activation,
           "grad_bytes": int(models[local_batches[0]].grads.nbytes), "local_batches": list(local_batches),
           "load_average_before": list(load_before), "load_average_after": list(os.getloadavg())}
    for stat, q in STATISTICS.items():
        seconds = [_percentile([step for step, _ in times[b]], q) for b in local_batches]
        cap = _percentile([cap for b in local_batches for _, cap in times[b]], q)
        fit = fit_compute(local_batches, seconds)
        row[stat] = {"seconds": seconds, "blas_cap_s": cap, **fit, "overhead_public_step_s": fit["overhead_s"] + cap}
    return row


def measure_allreduce(comm, sizes, reps: int, rounds: int) -> dict:
    """Times of the gradient sum ``fit`` uses (``sum_over_ranks``) on float32 vectors of each size (bytes),
    a Barrier before each, and their α–β fit, for each of STATISTICS."""
    buffers = {n: np.ones(n // 4, dtype=np.float32) for n in sizes}
    times = {n: [] for n in sizes}
    load_before = os.getloadavg()
    for r in range(rounds + 1):  # round 0 warms up
        for n in sizes:
            rows = []
            for _ in range(reps if r else 2):
                comm.Barrier()
                t0 = time.perf_counter()
                sum_over_ranks(comm, buffers[n])
                rows.append((time.perf_counter() - t0,))
            if r:
                times[n] += list(_slowest(comm, rows)[:, 0])
    out = {"bytes": list(sizes), "load_average_before": list(load_before), "load_average_after": list(os.getloadavg())}
    for stat, q in STATISTICS.items():
        seconds = [_percentile(times[n], q) for n in sizes]
        out[stat] = {"seconds": seconds, "fit": fit_alpha_beta(sizes, seconds, comm.size)}
    return out


# ---- the run: measure, predict, print, write ---------------------------------------------------------

def local_batch_sizes(batches, ranks) -> list[int]:
    """Every per-rank batch the predictions need: ⌈B/p⌉ for each global B and p (p = 1 included)."""
    return sorted({math.ceil(b / p) for b in batches for p in (1, *ranks)})


def predictions(compute: list[dict], networks: dict, batches, ranks) -> list[dict]:
    """The predicted rows for every statistic, network, net and global batch size, from 1 to max(ranks) ranks."""
    rows = []
    for stat in STATISTICS:
        for name, link in networks.items():
            for c in compute:
                for b in batches:
                    for p in (1, *ranks):
                        rows.append({"statistic": stat, "network": name, "net": c["net"], "batch": b,
                                     **predict(c[stat]["per_sample_s"], c[stat]["overhead_s"], c["grad_bytes"], b,
                                               p, link["alpha_s"], link["beta_s_per_byte"])})
    return rows


def measure_steps(comm, results: dict, nets, batches, ranks, steps: int, rounds: int, threads: int,
                  baseline_threads: int, say) -> None:
    """The step, one rank against all, for each net and batch; then one core's compute at every local batch."""
    results["measured"] = []
    for net in nets:
        for b in batches:
            results["measured"].append(measure_case(comm, net, b, steps, rounds, threads, baseline_threads))
            say(f"  measured {'-'.join(map(str, net.widths))} B={b}")
    results["compute"] = [measure_compute(comm, net, local_batch_sizes(batches, ranks), steps, rounds)
                          for net in nets]
    say("  measured compute on one core")


def run(comm, nets, batches, ranks, steps: int, rounds: int, threads: int, baseline_threads: int,
        sweep, reps: int, say=print) -> dict:
    """Every measurement, then the predictions; the JSON-able results (complete on rank 0)."""
    results = {"config": {"ranks": comm.size, "threads": threads, "baseline_threads": baseline_threads,
                          "steps_per_round": steps, "rounds": rounds, "nets": [f"{'-'.join(map(str, n.widths))}:"
                                                                             f"{n.activation}" for n in nets],
                          "batches": list(batches), "predict_ranks": list(ranks),
                          "statistics": {k: f"percentile {q}" for k, q in STATISTICS.items()}}}
    results["machine"] = machine_info(comm)
    say(f"fastnet bench --mpi: {comm.size} rank{'s' * (comm.size > 1)} × {threads} thread(s) against 1 rank × "
        f"{baseline_threads}, {rounds} interleaved rounds of {steps} steps; load average "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    with steps_as_fit_runs_them():
        measure_steps(comm, results, nets, batches, ranks, steps, rounds, threads, baseline_threads, say)
    networks = dict(NETWORKS)
    if comm.size > 1:
        results["allreduce"] = measure_allreduce(comm, sweep, reps, rounds)
        fit = results["allreduce"]["median"]["fit"]
        networks[f"this run's interconnect ({comm.size} ranks, median fit)"] = \
            {"alpha_s": fit["alpha_s"], "beta_s_per_byte": fit["beta_s_per_byte"]}
        say("  measured the all-reduce")
    else:
        say("  one rank: no all-reduce to measure (run under mpiexec -n 2 or more); predicting for the assumed networks")
    results["networks"] = networks
    if comm.rank == 0:
        results["predicted"] = predictions(results["compute"], networks, batches, ranks)
    return results


def machine_info(comm) -> dict:
    """bench's machine description, plus MPI's library and the ranks' hosts."""
    from mpi4py import MPI

    info = machine_record(vector_width=False)
    hosts = comm.allgather(MPI.Get_processor_name())
    return {**info, "mpi": " ".join(MPI.Get_library_version().splitlines()[0].split()),
            "mpi4py": __import__("mpi4py").__version__, "hosts": sorted(set(hosts)), "ranks": comm.size}


def format_tables(results: dict) -> str:
    """The measured step split, the fits and the predicted throughput, as Markdown tables."""
    m, config = results["machine"], results["config"]
    lines = [f"machine: {m.get('cpu', '?')} (LLVM target {m['llvm_cpu']}), {m['cores']} cores; "
             f"{m['mpi']}; {config['ranks']} rank(s) on {', '.join(m['hosts'])}"]
    for stat in STATISTICS:
        lines += ["", f"measured, {stat} of {config['steps_per_round'] * config['rounds']} steps, BLAS capped once "
                      "as fit does (the public loss_and_grad adds the second last column on every call):", "",
                  "| net | global batch | 1 rank: step | N ranks: step | speed-up | N ranks: compute | wait "
                  "| all-reduce | BLAS cap per call | load avg (1 min) |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for row in results["measured"]:
            a, p = row[stat]["alone"], row[stat].get("parallel")
            par = (f"{row['ranks']} × {row['threads']} thr: {_ms(p['step_s'])} | {row[stat]['speedup']:.2f}× | "
                   f"{_ms(p['compute_s'])} | {_ms(p['wait_s'])} | {_ms(p['allreduce_s'])}") if p else "– | – | – | – | –"
            lines.append(f"| {row['net']} {row['activation']} | {row['batch']} | 1 × {row['baseline_threads']} thr: "
                         f"{_ms(a['step_s'])} | {par} | {_ms(a['blas_cap_s'])} | "
                         f"{row['load_average_before'][0]:.1f}–{row['load_average_after'][0]:.1f} |")
    lines += ["", "compute on one core (loss_and_grad + update), fitted to overhead + per-sample × local batch; "
                  "the overhead as fit runs the step, with the public step's (plus its BLAS cap) in brackets:", "",
              "| net | statistic | gradient | overhead | per sample | R² | max error | load avg (1 min) |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in results["compute"]:
        for stat in STATISTICS:
            f = c[stat]
            lines.append(f"| {c['net']} {c['activation']} | {stat} | {c['grad_bytes'] / 1e6:.3f} MB | "
                         f"{_us(f['overhead_s'])} ({_us(f['overhead_public_step_s'])}) | {_us(f['per_sample_s'])} | "
                         f"{f['r2']:.4f} | {100 * f['max_rel_err']:.0f}% | "
                         f"{c['load_average_before'][0]:.1f}–{c['load_average_after'][0]:.1f} |")
    if "allreduce" in results:
        sweep = results["allreduce"]
        lines += ["", f"all-reduce on {config['ranks']} ranks, {len(sweep['bytes'])} sizes from "
                      f"{sweep['bytes'][0] / 1024:.0f} KB to {sweep['bytes'][-1] / 2**20:.0f} MB, load average "
                      f"{sweep['load_average_before'][0]:.1f}–{sweep['load_average_after'][0]:.1f}:"]
        for stat in STATISTICS:
            f = sweep[stat]["fit"]
            lines.append(f"  {stat}: α = {_us(f['alpha_s'])}, β = {f['beta_s_per_byte'] * 1e12:.1f} ps/byte "
                         f"({f['bandwidth_GB_s']:.2f} GB/s); R² = {f['r2']:.4f}, largest error "
                         f"{100 * f['max_rel_err']:.0f}%" + (" (intercept clamped to 0)" if f["clamped"] else ""))
    ranks = [1, *config["predict_ranks"]]
    for stat in STATISTICS:
        for name, link in results["networks"].items():
            lines += ["", f"predicted from the {stat} compute, {name} (α = {_us(link['alpha_s'])}, "
                          f"β = {link['beta_s_per_byte'] * 1e12:.1f} ps/byte): samples/s (efficiency)", "",
                      "| net | batch | " + " | ".join(f"p={p}" for p in ranks) + " |",
                      "| --- | ---: |" + " ---: |" * len(ranks)]
            for c in results["compute"]:
                for b in config["batches"]:
                    cells = [r for r in results["predicted"] if r["statistic"] == stat and r["network"] == name
                             and r["net"] == c["net"] and r["batch"] == b]
                    lines.append(f"| {c['net']} | {b} | " + " | ".join(
                        f"{r['samples_per_s']:,.0f} ({100 * r['efficiency']:.0f}%)" for r in cells) + " |")
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} µs"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fastnet.bench.mpi",
        description="Measure data-parallel training under MPI (1 rank alone against all ranks), fit the α–β "
                    "cost of the all-reduce, and predict throughput on 2 to 64 ranks. "
                    "Run as: mpiexec -n N python -m fastnet.bench.mpi")
    parser.add_argument("--net", action="append", metavar="WIDTHS:ACT",
                        help=f"network, e.g. 784-128-10:sigmoid; repeat for more (default: {', '.join(NETS)})")
    parser.add_argument("--batches", type=_ints, default=BATCHES, metavar="B,B,...",
                        help="global batch sizes (default: %(default)s)")
    parser.add_argument("--ranks", type=_ints, default=RANKS, metavar="P,P,...",
                        help="rank counts to predict (default: %(default)s)")
    parser.add_argument("--steps", type=_int, default=20, metavar="N", help="steps per round (default: %(default)s)")
    parser.add_argument("--rounds", type=_int, default=5, metavar="N", help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--threads", type=_int, default=1, metavar="N",
                        help="numba threads per rank in the data-parallel run (default: %(default)s)")
    parser.add_argument("--baseline-threads", type=_int, metavar="N",
                        help="numba threads of the single rank it is measured against (default: --threads "
                             "times the ranks on rank 0's host, at most numba's thread count)")
    parser.add_argument("--sweep", type=_ints, default=SWEEP_BYTES, metavar="BYTES,...",
                        help="all-reduce message sizes in bytes, multiples of 4 (default: 4096 to 16 MiB, doubling)")
    parser.add_argument("--reps", type=_int, default=20, metavar="N",
                        help="all-reduces per size and round (default: %(default)s)")
    parser.add_argument("--out", metavar="PREFIX",
                        help=f"write PREFIX.json (default: {default_output_dir() / 'fastnet-bench-mpi'})")
    return parser


def _int(text: str) -> int:
    values = _ints(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give one whole number ≥ 1")
    return values[0]


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers ≥ 1, separated by commas")
    return values


def main(argv=None) -> int:
    """``python -m fastnet.bench.mpi`` (under ``mpiexec -n N``): measure, predict, print, write the JSON.
    Returns the exit code: 0, or 2 with a one-line error."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse has printed: an exit code, as promised
        return int(e.code or 0)
    try:
        from mpi4py import MPI
    except ImportError:
        print("fastnet bench --mpi: error: it needs mpi4py and an MPI library: pip install mpi4py mpich",
              file=sys.stderr)
        return 2
    comm = MPI.COMM_WORLD
    say = print if comm.rank == 0 else (lambda *_: None)
    try:
        nets = [parse_net(n) for n in (args.net or NETS)]
        if any(n % 4 for n in args.sweep):
            raise ConfigError("--sweep sizes are bytes of float32 vectors: give multiples of 4")
        threads, top = args.threads, numba.config.NUMBA_NUM_THREADS
        node_ranks = comm.Split_type(MPI.COMM_TYPE_SHARED).size
        baseline = args.baseline_threads if args.baseline_threads else min(threads * node_ranks, top)
        if max(threads, baseline) > top:
            raise ConfigError(f"numba has {top} threads here; ask for at most {top} with --threads and "
                              "--baseline-threads, or start with NUMBA_NUM_THREADS set higher")
        args.out = output_path(args.out, "fastnet-bench-mpi", ".json")
        folder = os.path.dirname(os.path.abspath(args.out))
        if not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
            raise ConfigError(f"--out {args.out}: cannot write {args.out}.json, {folder} is not a writable folder")
        if min(args.batches) < comm.size:
            raise ConfigError(f"a global batch of {min(args.batches)} cannot be split over {comm.size} ranks: "
                              f"use batches of at least {comm.size}")
    except FastnetError as e:  # the same arguments on every rank: every rank stops here, rank 0 says why
        if comm.rank == 0:
            print(f"fastnet bench --mpi: error: {e}", file=sys.stderr)
        return 2
    try:
        results = run(comm, nets, args.batches, args.ranks, args.steps, args.rounds, threads, baseline,
                      args.sweep, args.reps, say)
    except Exception as e:  # on one rank only, maybe: end them all rather than leave the others in a collective
        print(f"fastnet bench --mpi: error on rank {comm.rank}: {e}", file=sys.stderr, flush=True)
        if comm.size > 1:
            comm.Abort(2)
        return 2
    if comm.rank == 0:
        say("")
        say(format_tables(results))
        write_outputs(results, f"{args.out}.json")
        say(f"\nresults written to {args.out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
