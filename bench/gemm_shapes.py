"""fastnet.kernels.gemm against OpenBLAS (np.matmul) on the GEMMs of the compiled training step.

    python bench/gemm_shapes.py [--rounds 10] [--threads 1 2] [--dtype float32] [--out FILE]
    python bench/gemm_shapes.py --cpu znver3 --blas-coretype Zen    # AVX2 kernels on both sides

Shapes: 784-128-10 at B = 32, 64, 128, 256 and 784-512-256-10 at B = 128; for each layer the
forward product (gemm_nt, y = x @ W.T), the input gradient (gemm_nn, dx = dy @ W, not for the
first layer) and the weight gradient (gemm_tn, dW = dy.T @ x). Then LeNet-5's at B = 64 (``--only
LeNet``): each convolution's three products over the batch, and its Dense layers'.

Method. Each contender runs in its own process (fastnet.bench.workers), so the two thread pools
never share one: fastnet with numba's threads as fastnet sets them (fastnet.threads), NumPy with
OpenBLAS limited to the same thread count by threadpoolctl and started without OPENBLAS_CORETYPE
and the other variables that force a BLAS kernel (if they are set here). Rounds alternate the
order of the two; in each round a contender runs a burst of calls on one shape and reports the
median of its samples (each sample times enough back-to-back calls to take about 0.2 ms). The
table gives the median over rounds. After a NumPy burst the parent waits 0.15 s: OpenBLAS threads
spin about 0.1 s after a call. fastnet is called the way the compiled step calls it, from a numba
loop; the "from Python" column adds the dispatcher's per-call cost. The sgemm peak is np.matmul
on 2048 x 2048 float32 at the same thread count, timed the same way.

``--cpu NAME`` compiles fastnet for LLVM target NAME with that CPU's own features (e.g. znver3:
AVX2, the 6 x 16 tile), and ``--blas-coretype TYPE`` sets OPENBLAS_CORETYPE for the NumPy process
(e.g. Zen: OpenBLAS's AVX2 kernels): together they run another machine's kernels on this one's
cores, a stand-in, not a measurement of that machine.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the fastnet beside this script

PEAK_SIZE = 2048
SAMPLE_SECONDS = 2e-4
BURST_SECONDS = 0.03
BLAS_SPIN_SECONDS = 0.15


def shapes() -> list[dict]:
    """The step's products: {name, kind, m, n, k}, c (m, n) = op(a) (m, k) @ op(b) (k, n)."""
    out = []

    def net(label, widths, batch):
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
            layer = f"{label} B={batch} L{i + 1}"
            out.append({"name": f"{layer} forward", "kind": "nt", "m": batch, "n": fan_out, "k": fan_in})
            if i > 0:
                out.append({"name": f"{layer} dx", "kind": "nn", "m": batch, "n": fan_in, "k": fan_out})
            out.append({"name": f"{layer} dW", "kind": "tn", "m": fan_out, "n": fan_in, "k": batch})

    for batch in (32, 64, 128, 256):
        net("784-128-10", (784, 128, 10), batch)
    net("784-512-256-10", (784, 512, 256, 10), 128)
    # LeNet-5 at B = 64: each convolution is one GEMM over the batch (fastnet/kernels/conv.py), with O maps,
    # Q = C·K·K and P output positions: forward (O, B·P) = W (O, Q) @ col (Q, B·P), dW = gc (O, B·P) @ col.T,
    # dcol (Q, B·P) = W.T @ gc (not for the first layer); then its Dense layers
    for label, o, q, p, first in (("conv1", 6, 25, 784, True), ("conv2", 16, 150, 100, False)):
        layer, n = f"LeNet-5 B=64 {label}", 64 * p
        out.append({"name": f"{layer} forward", "kind": "nn", "m": o, "n": n, "k": q})
        out.append({"name": f"{layer} dW", "kind": "nt", "m": o, "n": q, "k": n})
        if not first:
            out.append({"name": f"{layer} dcol", "kind": "tn", "m": q, "n": n, "k": o})
    net("LeNet-5 dense", (400, 120, 84, 10), 64)
    return out


def operands(shape: dict, dtype: str):
    """Random a, b as the kernel takes them (nt: a (M, K), b (N, K); nn: b (K, N); tn: a (K, M)), and c."""
    import numpy as np

    m, n, k, kind = shape["m"], shape["n"], shape["k"], shape["kind"]
    rng = np.random.default_rng(m * 1_000_003 + n * 1009 + k)
    a = rng.standard_normal((k, m) if kind == "tn" else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if kind == "nt" else (k, n)).astype(dtype)
    return a, b, np.empty((m, n), dtype)


def samples(call, seconds: float) -> float:
    """Median seconds per call of ``call(n)`` (n back-to-back calls) over a burst of ``seconds``."""
    n, t = 1, 0.0
    while t < SAMPLE_SECONDS:  # calls per sample, and warm-up
        n *= 2
        t0 = time.perf_counter()
        call(n)
        t = time.perf_counter() - t0
    per_sample = max(1, int(n * SAMPLE_SECONDS / t))
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t0 = time.perf_counter()
        call(per_sample)
        times.append((time.perf_counter() - t0) / per_sample)
    return statistics.median(times)


# ---- the two workers (each in its own process) ---------------------------------------------------

def fastnet_job(spec: dict):
    import numba
    import numpy as np

    from fastnet.kernels import gemm
    from fastnet.threads import set_num_threads

    set_num_threads(max(spec["threads"]))  # start numba's pool before compiling a caller of the cached kernels
    kernels = {"nt": gemm.gemm_nt, "nn": gemm.gemm_nn, "tn": gemm.gemm_tn}

    def make_loop(kernel):
        @numba.njit
        def loop(c, a, b, work, n):
            for _ in range(n):
                kernel(c, a, b, work)
        return loop

    loops = {kind: make_loop(f) for kind, f in kernels.items()}
    cases = {}
    for s in spec["shapes"]:
        a, b, c = operands(s, spec["dtype"])
        work = np.empty(gemm.workspace_size(s["m"], s["n"], s["k"]), spec["dtype"])
        cases[s["name"]] = (s["kind"], a, b, c, work)
        loops[s["kind"]](c, a, b, work, 1)  # compile (or load from the cache) before any timing

    def handle(request):
        set_num_threads(request["threads"])
        kind, a, b, c, work = cases[request["name"]]
        loop, kernel = loops[kind], kernels[kind]

        def from_python(n):
            for _ in range(n):
                kernel(c, a, b, work)
        return {"seconds": samples(lambda n: loop(c, a, b, work, n), BURST_SECONDS),
                "python_seconds": samples(from_python, BURST_SECONDS / 3)}

    import llvmlite.binding as llvm

    return {"tile_float32": gemm.tile(np.float32), "tile_float64": gemm.tile(np.float64),
            "vector_bits": gemm.VECTOR_BYTES * 8, "llvm_cpu": numba.config.CPU_NAME or llvm.get_host_cpu_name(),
            "numba": numba.__version__}, handle


def numpy_job(spec: dict):
    import numpy as np
    from threadpoolctl import threadpool_limits

    cases = {}
    for s in spec["shapes"]:
        a, b, c = operands(s, spec["dtype"])
        a = a.T if s["kind"] == "tn" else a
        b = b.T if s["kind"] == "nt" else b
        cases[s["name"]] = (a, b, c)
        np.matmul(a, b, out=c)
    big = np.random.default_rng(0).standard_normal((2, PEAK_SIZE, PEAK_SIZE)).astype(np.float32)
    peak_out = np.empty((PEAK_SIZE, PEAK_SIZE), np.float32)

    def handle(request):
        with threadpool_limits(request["threads"], user_api="blas"):
            if request["name"] == "peak":
                np.matmul(big[0], big[1], out=peak_out)
                times = []
                for _ in range(request.get("repeat", 5)):
                    t0 = time.perf_counter()
                    np.matmul(big[0], big[1], out=peak_out)
                    times.append(time.perf_counter() - t0)
                return {"seconds": statistics.median(times)}
            a, b, c = cases[request["name"]]

            def call(n):
                for _ in range(n):
                    np.matmul(a, b, out=c)
            return {"seconds": samples(call, BURST_SECONDS)}

    return {"numpy": np.__version__}, handle


# ---- the parent ----------------------------------------------------------------------------------

def machine() -> dict:
    import llvmlite.binding as llvm

    from fastnet.bench.machine import cpu_model

    return {"cpu": cpu_model(), "llvm_host_cpu": llvm.get_host_cpu_name(), "cores": os.cpu_count(),
            "load_average_start": list(os.getloadavg())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--only", help="run only the shapes whose name contains this")
    parser.add_argument("--out", help="also write the table and the raw medians (JSON) to FILE and FILE.json")
    parser.add_argument("--cpu", help="compile fastnet for this LLVM target (NUMBA_CPU_NAME), with its own features")
    parser.add_argument("--blas-coretype", help="OPENBLAS_CORETYPE for the NumPy process (default: unset)")
    args = parser.parse_args()

    from fastnet.bench.workers import Worker, native_blas_env, rotation, worker_pool

    todo = [s for s in shapes() if not args.only or args.only in s["name"]]
    spec = {"shapes": todo, "dtype": args.dtype, "threads": args.threads}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    blas_env, removed = native_blas_env(env)
    fast_env = {**env, "NUMBA_CPU_NAME": args.cpu, "NUMBA_CPU_FEATURES": ""} if args.cpu else env
    if args.blas_coretype:
        blas_env["OPENBLAS_CORETYPE"] = args.blas_coretype
    record = {"machine": machine(), "removed_from_numpy_env": removed, "args": vars(args), "results": []}
    lines = []

    def say(line=""):
        print(line, flush=True)
        lines.append(line)

    with worker_pool() as pool:
        fast = Worker("fastnet", "gemm_shapes:fastnet_job", spec, fast_env)
        pool.append(fast)
        blas = Worker("numpy", "gemm_shapes:numpy_job", spec, blas_env)
        pool.append(blas)
        info = {"fastnet": fast.info, "numpy": blas.info}
        record["workers"] = info
        m = record["machine"]
        blas_kernel = ", ".join(f"{b['internal_api']} {b['version']} {b['architecture']}" for b in blas.info["blas"])
        say(f"CPU {m['cpu']} ({m['cores']} cores, LLVM host CPU {m['llvm_host_cpu']}), fastnet compiled for LLVM "
            f"target {fast.info['llvm_cpu']}, "
            f"fastnet vectors {fast.info['vector_bits']}-bit, tile MR x NR = {fast.info['tile_float32'][0]} x "
            f"{fast.info['tile_float32'][1]} float32 ({fast.info['tile_float64'][0]} x {fast.info['tile_float64'][1]}"
            f" float64); numba {fast.info['numba']}, NumPy {blas.info['numpy']} on {blas_kernel}")
        say(f"NumPy process started without {sorted(removed)}" if removed else
            "no BLAS-forcing variables (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE, ...) were set")
        if args.cpu or args.blas_coretype:
            say(f"emulating: fastnet compiled for {args.cpu or 'this host'}, "
                f"OPENBLAS_CORETYPE={args.blas_coretype or '(unset)'}")
        say(f"load average at start {m['load_average_start'][0]:.2f}; dtype {args.dtype}; {args.rounds} rounds")

        peaks = {}
        for threads in args.threads:
            runs = []
            for _ in range(3):
                runs.append(blas.request(name="peak", threads=threads)["seconds"])
                time.sleep(BLAS_SPIN_SECONDS)
            peaks[threads] = 2 * PEAK_SIZE ** 3 / statistics.median(runs) / 1e9
        say("sgemm peak (OpenBLAS, 2048^3): " + ", ".join(f"{p:.1f} GFLOP/s on {t} thread{'s' * (t > 1)}"
                                                          for t, p in peaks.items()))
        record["peak_gflops"] = peaks
        one = peaks.get(1)
        for threads, peak in peaks.items():
            if one and threads > 1 and peak < 0.75 * threads * one:
                say(f"warning: {threads} threads reach only {peak / one:.2f}x one thread's peak: other processes are "
                    f"using the cores, so the {threads}-thread rows measure that contention more than the kernels")

        times = {(s["name"], t): {"fastnet": [], "python": [], "numpy": []} for s in todo for t in args.threads}
        for r in range(args.rounds):
            for s in todo:
                for threads in args.threads:
                    got = times[s["name"], threads]
                    for who in rotation(["fastnet", "numpy"], r):
                        if who == "fastnet":
                            answer = fast.request(name=s["name"], threads=threads)
                            got["fastnet"].append(answer["seconds"])
                            got["python"].append(answer["python_seconds"])
                        else:
                            got["numpy"].append(blas.request(name=s["name"], threads=threads)["seconds"])
                            time.sleep(BLAS_SPIN_SECONDS)
            record.setdefault("load_average_per_round", []).append(os.getloadavg()[0])
            print(f"round {r + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.2f}", file=sys.stderr,
                  flush=True)

    say()
    say("| shape | op | M x N x K | thr | fastnet µs | from Python µs | OpenBLAS µs | fastnet GFLOP/s | OpenBLAS "
        "GFLOP/s | fastnet % peak | OpenBLAS % peak | time vs OpenBLAS |")
    say("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    total = {t: [0.0, 0.0] for t in args.threads}
    for s in todo:
        for threads in args.threads:
            got = {who: statistics.median(v) for who, v in times[s["name"], threads].items()}
            flops = 2 * s["m"] * s["n"] * s["k"]
            gf = {who: flops / sec / 1e9 for who, sec in got.items()}
            total[threads][0] += got["fastnet"]
            total[threads][1] += got["numpy"]
            say(f"| {s['name']} | {s['kind']} | {s['m']} x {s['n']} x {s['k']} | {threads} | "
                f"{got['fastnet'] * 1e6:.1f} | {got['python'] * 1e6:.1f} | {got['numpy'] * 1e6:.1f} | "
                f"{gf['fastnet']:.1f} | {gf['numpy']:.1f} | {100 * gf['fastnet'] / peaks[threads]:.0f} | "
                f"{100 * gf['numpy'] / peaks[threads]:.0f} | {got['fastnet'] / got['numpy']:.2f} |")
            record["results"].append({**s, "threads": threads, "seconds": got,
                                      "samples": times[s["name"], threads]})
    say()
    for threads, (mine, theirs) in total.items():
        say(f"sum over the shapes, {threads} thread{'s' * (threads > 1)}: fastnet {mine * 1e6:.0f} µs, "
            f"OpenBLAS {theirs * 1e6:.0f} µs, ratio {mine / theirs:.2f}")
    record["machine"]["load_average_end"] = list(os.getloadavg())
    say(f"load average at end {record['machine']['load_average_end'][0]:.2f}")
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
        Path(args.out + ".json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
