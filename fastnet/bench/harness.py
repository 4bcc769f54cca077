"""Epoch-level benchmarks: fastnet against its NumPy baseline, JAX and PyTorch, each in its own process.

``fastnet bench`` and the pytest-benchmark suites under ``bench/`` share this code. Every contender
(``fastnet.bench.contenders``) trains the same network from the same initial weights with plain SGD and
softmax cross-entropy, on 60,000 MNIST-shaped images in [0, 1] (the bundled sample, tiled), in float32. Each
runs in its own worker process (``fastnet.bench.workers``); rounds alternate between them, one epoch per
contender per round (who goes first rotates), and medians are reported, with compile time apart. The
NumPy baseline's processes run without the variables that force BLAS kernels (``native_blas_env``). The
machine is recorded with the results (``fastnet.bench.machine``), and ``busy`` competing processes can
load it (``fastnet.bench.busy``). The method is written up in docs/performance.md.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from fastnet.bench.busy import busy_processes
from fastnet.bench.contenders import LENET5, LR, SAMPLES, Case
from fastnet.bench.machine import machine_record
from fastnet.bench.output import write_json
from fastnet.bench.workers import Worker, native_blas_env, rotation, worker_pool
from fastnet.checkpoint import write_atomic

# The cases the targets are set for (docs/performance.md): 784-128-10 sigmoid at B = 32, 64, 128 and 256;
# 784-512-256-10 ReLU at B = 128; LeNet-5 ReLU at B = 64 (issue 24)
CASES = [Case((128,), "sigmoid", b) for b in (32, 64, 128, 256)] + [Case((512, 256), "relu", 128), LENET5]
QUICK_CASES = [Case((128,), "sigmoid", 128)]
LENET_CASES = [LENET5]
EFFICIENCY_CASE = Case((128,), "sigmoid", 128)
# % of the 2-thread sgemm peak that fastnet's counted GFLOP/s must reach, per case
EFFICIENCY_TARGETS = {EFFICIENCY_CASE: 70, LENET5: 50}
UNDER_LOAD_TARGET = 1.25  # default threads ÷ 1 thread, under the same load
UNDER_LOAD_BATCHES = (32, 128)

# key: (worker kind, threads (None: the library's default), column title)
CONTENDERS = {
    "numba": ("numba", None, "fastnet"),
    "numba-1": ("numba", 1, "fastnet 1 thr."),
    "numpy-1": ("numpy", 1, "NumPy 1 thr."),
    "numpy-2": ("numpy", 2, "NumPy 2 thr."),
    "jax-scan": ("jax-scan", None, "JAX epoch jit"),
    "jax-step": ("jax-step", None, "JAX step jit"),
    "torch": ("torch", None, "PyTorch eager"),
}
NUMPY = ("numpy-1", "numpy-2")
# what fastnet's time is divided by: (key, column title); "numpy" is the faster of NUMPY
RATIOS = (("numpy", "÷ NumPy"), ("jax-scan", "÷ JAX epoch jit"), ("torch", "÷ PyTorch"))


def targets(case: Case) -> dict:
    """The targets for fastnet ÷ each contender in ``case`` (empty for a case without targets); they are
    the speed targets docs/performance.md lists."""
    if case.convs:
        return {"jax-scan": 1.0, "torch": 0.7} if case == LENET5 else {}
    if case.widths == [784, 128, 10] and case.batch in (32, 64) and case.activation == "sigmoid":
        return {"numpy": 0.5, "jax-scan": 0.75, "torch": 0.3}
    if case.widths == [784, 128, 10] and case.batch in (128, 256):
        return {"numpy": 0.65, "jax-scan": 0.8, "torch": 0.5}
    if case.widths == [784, 512, 256, 10] and case.activation == "relu" and case.batch == 128:
        return {"numpy": 0.75, "jax-scan": 0.85, "torch": 0.75}
    return {}


def contender_keys(busy: int = 0, with_torch: bool = True, with_jax: bool = True) -> list[str]:
    """The contenders of a run: fastnet, the NumPy baseline on 1 and 2 BLAS threads, JAX, PyTorch; with
    competing ``busy`` processes, fastnet on 1 thread as well."""
    skip = set()
    if not busy:
        skip.add("numba-1")
    if not with_torch:
        skip.add("torch")
    if not with_jax:
        skip |= {"jax-scan", "jax-step"}
    return [k for k in CONTENDERS if k not in skip]


def worker_env(key: str, environ) -> tuple[dict | None, dict]:
    """The environment contender ``key``'s process runs in (None: this one's) and the variables left out
    of it: the NumPy baseline's runs without those that force BLAS kernels, the others as they are."""
    if CONTENDERS[key][0] == "numpy":
        return native_blas_env(environ)
    return None, {}


def start_worker(key: str, samples: int, numba_threads: int | None = None) -> Worker:
    """Contender ``key``'s process; the NumPy baseline's runs with its BLAS's native kernels."""
    kind, threads, title = CONTENDERS[key]
    env, removed = worker_env(key, os.environ)
    if key == "numba":
        threads = numba_threads
    worker = Worker(title, "fastnet.bench.contenders:epoch_job", {"kind": kind, "threads": threads,
                                                                    "samples": samples}, env)
    worker.info.update(env_removed=removed, pid=worker.proc.pid)
    return worker


def _describe(info: dict) -> str:
    """A contender's threads and kernels, and the variables its process runs without."""
    removed = info.get("env_removed")
    return (f"threads: {info['threads']}; {info['kernels']}"
            + (f"; without {', '.join(f'{k}={v}' for k, v in removed.items())}" if removed else ""))


def time_case(case: Case, workers: dict, rounds: int, settle: float) -> dict:
    """Build ``case`` in every worker (compile and warm-up epoch), then ``rounds`` rounds of one timed
    epoch per contender, in rotating order, with a ``settle`` pause before each so that the last
    contender's spinning threads have gone to sleep. {key: {name, compile_s, warmup_s, times}}."""
    out = {}
    for key, w in workers.items():
        out[key] = {**w.request(case=case.to_json()), "times": []}
    keys = list(workers)
    for r in range(rounds):
        for key in rotation(keys, r):
            time.sleep(settle)
            out[key]["times"].append(workers[key].request(epoch=1)["seconds"])
    return out


def summarise(case: Case, timed: dict, peak: float, samples: int, busy: int) -> dict:
    """Medians, GFLOP/s and % of the sgemm peak per contender; the faster NumPy run as the baseline;
    fastnet ÷ each of NumPy, JAX's epoch jit and PyTorch against the case's targets, and with ``busy``
    processes fastnet ÷ itself on 1 thread against the under-load target."""
    flops = case.flops_per_epoch(samples)
    rows = {}
    for key, t in timed.items():
        median = statistics.median(t["times"])
        rows[key] = {**t, "median_s": median, "gflops": flops / median / 1e9,
                     "pct_peak": 100 * flops / median / 1e9 / peak}
    numpy_best = min((k for k in NUMPY if k in rows), key=lambda k: rows[k]["median_s"])
    goal = targets(case)
    ratios = {}
    for key, _ in RATIOS:
        other = numpy_best if key == "numpy" else key
        if other in rows:
            value = rows["numba"]["median_s"] / rows[other]["median_s"]
            ratios[key] = {"value": value, "target": goal.get(key), "met": value <= goal[key] if key in goal else None}
    if "numba-1" in rows:
        value = rows["numba"]["median_s"] / rows["numba-1"]["median_s"]
        target = UNDER_LOAD_TARGET if busy and case.widths == [784, 128, 10] and case.batch in UNDER_LOAD_BATCHES \
            else None
        ratios["numba-1"] = {"value": value, "target": target, "met": None if target is None else value <= target}
    convs = {"convs": [list(c) for c in case.convs]} if case.convs else {}
    return {"case": case.name, "hidden": list(case.hidden), "activation": case.activation, "batch": case.batch, **convs,
            "gflop_per_epoch": flops / 1e9, "numpy_best": numpy_best, "contenders": rows, "ratios": ratios}


def efficiency(cases: list[dict], peak: float) -> list[dict]:
    """fastnet's GFLOP/s as % of the 2-thread sgemm peak, against the target, for each case run that has
    one (EFFICIENCY_TARGETS: 784-128-10 B=128 and LeNet-5)."""
    goals = {case.name: pct for case, pct in EFFICIENCY_TARGETS.items()}
    out = []
    for row in cases:
        if row["case"] in goals:
            numba, target = row["contenders"]["numba"], goals[row["case"]]
            out.append({"case": row["case"], "gflops": numba["gflops"], "peak_gflops": peak, "pct": numba["pct_peak"],
                        "target_pct": target, "met": numba["pct_peak"] >= target})
    return out


def run(cases=CASES, rounds: int = 5, samples: int = SAMPLES, busy: int = 0, numba_threads: int | None = None,
        with_torch: bool = True, with_jax: bool = True, extras: bool = True, vector_width: bool = True,
        settle: float = 0.15, say=print) -> dict:
    """Run the whole benchmark and return its results as a JSON-able dict (see ``format_table``)."""
    say("recording the machine" + (" (compiling the dense kernels afresh to read their vector width)"
                                   if vector_width else ""))
    machine = machine_record(vector_width)
    results = {"machine": machine, "samples": samples, "rounds": rounds, "lr": LR, "busy_processes": busy,
               "forced_blas_env": native_blas_env(os.environ)[1], "contenders": {}, "skipped": {}, "cases": []}
    with busy_processes(busy) as pids:
        if busy:
            say(f"started {busy} busy process{'es' * (busy > 1)} (pid {', '.join(map(str, pids))})")
            machine["load_average_busy_start"] = list(os.getloadavg())
            results["busy_pids"] = pids
        with worker_pool() as pool:
            workers = {}
            for key in contender_keys(busy, with_torch, with_jax):
                w = start_worker(key, samples, numba_threads)  # in turn: the first one compiles for the next
                pool.append(w)
                if w.available:
                    workers[key] = w
                    results["contenders"][key] = {"title": w.name, **w.info}
                    say(f"started {w.name} (pid {w.proc.pid}): {_describe(w.info)}")
                else:
                    results["skipped"][key] = w.info["unavailable"]
                    say(f"skipping {w.name}: {w.info['unavailable']}")
            results["sgemm_gflops"] = {str(n): workers[f"numpy-{n}"].request(sgemm=n)["gflops"] for n in (1, 2)}
            peak = results["sgemm_gflops"]["2"]
            say(f"sgemm peak (NumPy's BLAS, 2048² float32): {peak:.0f} GFLOP/s on 2 threads, "
                f"{results['sgemm_gflops']['1']:.0f} on 1")
            for case in cases:
                timed = time_case(case, workers, rounds, settle)
                results["cases"].append(summarise(case, timed, peak, samples, busy))
                say(f"{case.name}: " + ", ".join(f"{CONTENDERS[k][2]} {statistics.median(t['times']):.3f} s"
                                                  for k, t in timed.items()))
            for key, w in workers.items():
                results["contenders"][key]["name"] = results["cases"][-1]["contenders"][key]["name"]
        machine["load_average_end"] = list(os.getloadavg())
    results["efficiency"] = efficiency(results["cases"], peak)
    if extras:  # in fresh processes, with the busy processes gone
        results["compile"] = compile_times(CASES[0])
        results["peak_rss_mb"] = peak_rss_mb(EFFICIENCY_CASE)
    return results


_FIRST_BATCH = ("import time, sys; t0 = float(sys.argv[1]); import fastnet as fn; "
                "from fastnet.bench.contenders import Case, epoch_data, fastnet_model; "
                "c = Case({hidden!r}, {act!r}, {batch}); x, y = epoch_data({samples}); m = fastnet_model(c, 'numba'); "
                "m.fit(x[:c.batch], y[:c.batch], batch_size=c.batch, optimizer=fn.SGD(lr=0.01), progress=False); "
                "print(time.time() - t0)")


def compile_times(case: Case) -> dict:
    """Seconds from process start to the end of the first batch of ``case``, with numba's cache empty
    (cold) and filled (cached)."""
    code = _FIRST_BATCH.format(hidden=case.hidden, act=case.activation, batch=case.batch, samples=case.batch)
    cold, cached = (float(out[0]) for out in first_batches([code, code]))
    return {"cold": cold, "cached": cached}


def first_batches(codes: list[str], cwd=None) -> list[list[str]]:
    """Run each of ``codes`` in a fresh Python process, one after the other, on one numba cache folder
    that starts empty (so the first run is cold); each gets the start time (``time.time()``) as its
    first argument. Returns the words of each one's last line of output."""
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        return [subprocess.run([sys.executable, "-c", code, repr(time.time())], env=env, cwd=cwd,
                               capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1].split()
                for code in codes]


def peak_rss_mb(case: Case, samples: int = SAMPLES) -> float:
    """Peak resident memory (MB) of a fresh process that trains ``case`` for one epoch with numba.

    Read from VmHWM in /proc: getrusage's ru_maxrss would carry over the parent's peak
    across fork and exec.
    """
    code = ("from fastnet.bench.contenders import Case, epoch_data, fastnet_model; "
            "from fastnet.bench.harness import vm_hwm_mb; import fastnet as fn; "
            f"x, y = epoch_data({samples}); m = fastnet_model(Case({case.hidden!r}, {case.activation!r}, "
            f"{case.batch}), 'numba'); m.fit(x, y, epochs=1, batch_size={case.batch}, optimizer=fn.SGD(lr=0.01), "
            "progress=False); print(vm_hwm_mb())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def vm_hwm_mb() -> float:
    """This process's peak resident set size in MB (Linux: VmHWM in /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise OSError("no VmHWM in /proc/self/status: peak memory is measured on Linux only")


# ---- the report -------------------------------------------------------------------------------------


def _mark(ratio: dict) -> str:
    text = f"{ratio['value']:.2f}"
    if ratio["target"] is None:
        return text
    return f"{text} (≤ {ratio['target']:g}) {'✓' if ratio['met'] else '✗'}"


def format_machine(results: dict) -> str:
    """The lines above the table: the machine, versions, load, BLAS and threads of each contender."""
    m = results["machine"]
    bits = m.get("dense_vector_bits")
    width = (f"dense kernels compiled to {bits}-bit vectors "
             f"({ {512: 'zmm', 256: 'ymm', 128: 'xmm'}.get(bits, '?') }, read from their multiply-adds' registers)"
             if bits else "dense kernels' vector width not checked")
    load = (f"load average {m['load_average'][0]:.2f} at the start, {m['load_average_end'][0]:.2f} at the end; "
            f"{results['busy_processes']} busy processes")
    versions = ", ".join(f"{p} {m[p]}" for p in ("numpy", "numba", "jax", "torch") if m.get(p))
    lines = [f"{m['cpu']} (LLVM target {m['llvm_cpu']}, AVX-512 {'yes' if m['avx512f'] else 'no'}), "
             f"{m['cores']} cores; {width}", f"{versions}; Python {m['python']}", load]
    forced = results["forced_blas_env"]
    lines.append(f"NumPy baseline runs without {', '.join(f'{k}={v}' for k, v in forced.items())} (they force "
                 "BLAS kernels), so its BLAS picks its native kernels" if forced
                 else "no BLAS-forcing variables set (OPENBLAS_CORETYPE etc.): every BLAS picks its native kernels")
    peak = results["sgemm_gflops"]
    lines.append(f"sgemm peak (NumPy's BLAS, 2048² float32): {peak['2']:.0f} GFLOP/s on 2 threads, "
                 f"{peak['1']:.0f} on 1")
    for key, c in results["contenders"].items():
        lines.append(f"  {c['title']} ({c.get('name', 'no case run')}): {_describe(c)}")
    for key, why in results["skipped"].items():
        lines.append(f"  skipped {CONTENDERS[key][2]}: {why}")
    lines.append(f"{results['samples']:,} samples per epoch, median of {results['rounds']} interleaved epochs "
                 "per contender, each contender in its own process; seconds per epoch")
    return "\n".join(lines)


def format_table(results: dict) -> str:
    """The machine lines, then one row per case: median seconds per contender, fastnet's GFLOP/s (% of
    the sgemm peak) and fastnet ÷ each contender against the targets; then compile time and efficiency."""
    keys = [k for k in CONTENDERS if k not in NUMPY and k in results["contenders"]]
    keys.insert(1, "numpy")
    titles = {**{k: v[2] for k, v in CONTENDERS.items()}, "numpy": "NumPy (best of 1/2 thr.)"}
    ratio_keys = [(k, t) for k, t in RATIOS if k == "numpy" or k in results["contenders"]]
    if "numba-1" in results["contenders"]:
        ratio_keys.append(("numba-1", "÷ 1 thr. under load"))
    head = ["case", *(titles[k] for k in keys), "fastnet GFLOP/s (% of peak)", *(t for _, t in ratio_keys)]
    lines = [format_machine(results), "", "| " + " | ".join(head) + " |",
             "| --- |" + " ---: |" * (len(head) - 1)]
    for row in results["cases"]:
        cells = [row["case"]]
        for k in keys:
            c = row["contenders"][row["numpy_best"] if k == "numpy" else k]
            cells.append(f"{c['median_s']:.3f}" + (f" ({row['numpy_best'][-1]})" if k == "numpy" else ""))
        numba = row["contenders"]["numba"]
        cells.append(f"{numba['gflops']:.0f} ({numba['pct_peak']:.0f}%)")
        cells += [_mark(row["ratios"][k]) if k in row["ratios"] else "–" for k, _ in ratio_keys]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    compile_cells = []
    for k in ("numba", "jax-scan", "jax-step"):
        if k in results["contenders"]:
            per_case = [row["contenders"][k]["compile_s"] for row in results["cases"]]
            spread = f"{min(per_case):.2f}" + (f"–{max(per_case):.2f}" if len(per_case) > 1 else "")
            compile_cells.append(f"{titles[k]} {spread} s")
    lines.append("compile, per case, before its first epoch (not in the times above): " + ", ".join(compile_cells)
                 + " (fastnet: its first step, kernels compiled or loaded from numba's cache)")
    for e in results.get("efficiency") or []:
        lines.append(f"efficiency at {e['case']}: {e['gflops']:.0f} GFLOP/s = {e['pct']:.0f}% of the 2-thread "
                     f"sgemm peak (target ≥ {e['target_pct']}%) {'✓' if e['met'] else '✗'}")
    if "compile" in results:
        c = results["compile"]
        lines.append(f"compile, process start to the end of the first batch: cold {c['cold']:.2f} s, "
                     f"cached {c['cached']:.2f} s")
    if "peak_rss_mb" in results:
        lines.append(f"peak resident memory, training 784-128-10 on {SAMPLES:,} samples: "
                     f"{results['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


def write_outputs(results: dict, json_path, png_path=None) -> None:
    """The results as JSON (atomically), and with matplotlib a bar chart of the medians."""
    write_json(json_path, results)
    if not png_path:
        return
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    names = [row["case"] for row in results["cases"]]
    keys = list(results["contenders"])
    fig, ax = plt.subplots(figsize=(12, 5))
    width = 0.8 / len(keys)
    for j, key in enumerate(keys):
        values = [row["contenders"][key]["median_s"] for row in results["cases"]]
        ax.bar(np.arange(len(names)) + j * width, values, width, label=CONTENDERS[key][2])
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=20, ha="right")
    ax.set(ylabel=f"median seconds per epoch ({results['samples']:,} samples)", title="fastnet epoch time")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_atomic(Path(png_path), buf.getvalue())
