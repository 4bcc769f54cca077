"""Epoch-level benchmarks: fastnet (numba) against its NumPy baseline and PyTorch on the CPU.

One piece of code builds and times the contenders for both ``fastnet bench`` and
the pytest-benchmark suites under ``bench/``. Every contender trains the same
network from the same initial weights with plain SGD and softmax cross-entropy,
on 60,000 MNIST-shaped uint8 images (the bundled sample, tiled), in float32.
Contenders run interleaved, one epoch at a time, and medians are reported.
Compile time is measured apart from the epochs.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

import fastnet as fn

SAMPLES = 60_000
LR = 0.01


@dataclass(frozen=True)
class Case:
    """A network and batch size: hidden widths, hidden activation, batch size."""

    hidden: tuple[int, ...]
    activation: str
    batch: int

    @property
    def widths(self) -> list[int]:
        return [784, *self.hidden, 10]

    @property
    def name(self) -> str:
        return f"{'-'.join(map(str, self.widths))} {self.activation} B={self.batch}"

    def flops_per_epoch(self, samples: int = SAMPLES) -> float:
        """Forward, dW for every layer, and dX for every layer but the first: 2·in·out each."""
        pairs = list(zip(self.widths, self.widths[1:]))
        per_sample = sum(2 * a * b * (2 if i == 0 else 3) for i, (a, b) in enumerate(pairs))
        return per_sample * samples


CASES = [Case((128,), act, b) for act in ("sigmoid", "relu") for b in (32, 64, 128, 256)] + \
        [Case((512, 256), "relu", 128)]


def epoch_data(samples: int = SAMPLES) -> tuple[fn.datasets.Images, np.ndarray]:
    """The bundled sample's training digits tiled to ``samples`` rows: uint8 Images, scaled in each batch."""
    train, _ = fn.datasets.load("mnist-sample")
    reps = -(-samples // len(train))
    return fn.datasets.Images(np.tile(train.x, (reps, 1))[:samples]), np.tile(train.y, reps)[:samples]


def fastnet_model(case: Case, backend: str, seed: int = 0) -> fn.Sequential:
    layers = []
    for a, b in zip(case.widths[:-2], case.widths[1:-1]):
        layers += [fn.Dense(a, b), fn.layers.activation(case.activation)]
    layers.append(fn.Dense(case.widths[-2], case.widths[-1]))
    return fn.Sequential(*layers, loss=fn.SoftmaxCrossEntropy(), backend=backend, dtype="float32", seed=seed)


@dataclass
class Contender:
    """Something that trains one epoch per call of ``epoch()``."""

    name: str
    epoch: object
    compile_seconds: float = 0.0
    times: list = field(default_factory=list)


def fastnet_contender(case: Case, backend: str, x, y, blas_threads: int | None = None) -> Contender:
    model = fastnet_model(case, backend)
    opt = fn.SGD(lr=LR)
    model.optimizer = opt
    opt.bind(model.params.size, model.dtype, owner=model)
    compile_seconds = model.compile_kernels()

    def epoch():
        if blas_threads is None:
            model.fit(x, y, epochs=1, batch_size=case.batch, progress=False)
        else:
            with threadpool_limits(limits=blas_threads, user_api="blas"):
                model.fit(x, y, epochs=1, batch_size=case.batch, progress=False)

    name = f"fastnet-{backend}" + (f" ({blas_threads} BLAS thread{'s' * (blas_threads > 1)})" if blas_threads else "")
    return Contender(name, epoch, compile_seconds)


def torch_available() -> tuple[bool, str]:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False, "PyTorch is not installed (pip install 'fastnet[torch]', i.e. torch==2.13.0)"
    return True, ""


def torch_contender(case: Case, x, y, threads: int = 2) -> Contender:
    """The ordinary PyTorch training loop, from fastnet's initial weights."""
    import torch

    torch.set_num_threads(threads)
    init = fastnet_model(case, "numpy").get_weights()
    layers = []
    for i, (a, b) in enumerate(zip(case.widths, case.widths[1:])):
        linear = torch.nn.Linear(a, b)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(init[f"layers.{2 * i}.weight"]))
            linear.bias.copy_(torch.from_numpy(init[f"layers.{2 * i}.bias"]))
        layers.append(linear)
        if i < len(case.widths) - 2:
            layers.append({"sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[case.activation]())
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    # plain uint8, divided per batch below; torch's loss wants int64 labels
    xt, yt = torch.from_numpy(np.asarray(x)), torch.from_numpy(y).long()
    gen = torch.Generator().manual_seed(0)

    def epoch():
        perm = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), case.batch):
            idx = perm[start:start + case.batch]
            xb = xt[idx].float().div_(255.0)
            opt.zero_grad(set_to_none=True)
            loss_fn(net(xb), yt[idx]).backward()
            opt.step()

    return Contender(f"torch {torch.__version__} ({threads} threads)", epoch)


def contenders_for(case: Case, x, y, with_torch: bool = True) -> list[Contender]:
    """Every contender for one case: numba, the NumPy baseline on 1 and 2 BLAS threads, and torch."""
    out = [fastnet_contender(case, "numba", x, y),
           fastnet_contender(case, "numpy", x, y, blas_threads=1),
           fastnet_contender(case, "numpy", x, y, blas_threads=2)]
    if with_torch and torch_available()[0]:
        out.append(torch_contender(case, x, y))
    return out


def run_interleaved(contenders: list[Contender], rounds: int) -> None:
    """One warm-up epoch each, then ``rounds`` rounds of one epoch per contender, in turn."""
    for c in contenders:
        c.epoch()
    for _ in range(rounds):
        for c in contenders:
            start = time.perf_counter()
            c.epoch()
            c.times.append(time.perf_counter() - start)


def sgemm_peak(n: int = 2048, repeats: int = 7, threads: int = 2) -> float:
    """The machine's float32 matmul rate in GFLOP/s: the median of large square GEMMs through BLAS."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), np.float32), rng.random((n, n), np.float32)
    out = np.empty((n, n), np.float32)
    times = []
    with threadpool_limits(limits=threads, user_api="blas"):
        np.matmul(a, b, out=out)
        for _ in range(repeats):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def compile_times(case: Case) -> dict:
    """Seconds from process start to the first batch, with numba's cache empty (cold) and filled (cached).

    Each is a fresh Python process; the cold run uses an empty NUMBA_CACHE_DIR.
    """
    import tempfile

    code = ("import time, sys; t0 = float(sys.argv[1]); "
            "from fastnet.bench import Case, fastnet_model; import fastnet as fn; "
            f"m = fastnet_model(Case({case.hidden!r}, {case.activation!r}, {case.batch}), 'numba'); "
            "m.optimizer = fn.SGD(lr=0.01); m.optimizer.bind(m.n_params, m.dtype); m.compile_kernels(); "
            "print(time.time() - t0)")
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("cold", "cached"):
            result = subprocess.run([sys.executable, "-c", code, repr(time.time())], env=env,
                                    capture_output=True, text=True, check=True)
            out[label] = float(result.stdout.strip().splitlines()[-1])
    return out


def peak_rss_mb(case: Case, samples: int = SAMPLES) -> float:
    """Peak resident memory (MB) of a fresh process that trains ``case`` for one epoch with numba.

    Read from VmHWM in /proc: getrusage's ru_maxrss would carry over the parent's peak
    across fork and exec, and the parent here holds every contender.
    """
    code = ("from fastnet.bench import Case, epoch_data, fastnet_model, vm_hwm_mb; import fastnet as fn; "
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


def summarise(case: Case, contenders: list[Contender], peak: float, samples: int = SAMPLES) -> list[dict]:
    """One row per contender, with the NumPy baseline counted at its faster thread count."""
    rows = []
    numpy_best = min((c for c in contenders if c.name.startswith("fastnet-numpy")),
                     key=lambda c: statistics.median(c.times))
    numba = next(c for c in contenders if c.name == "fastnet-numba")
    torch_c = next((c for c in contenders if c.name.startswith("torch")), None)
    for c in contenders:
        median = statistics.median(c.times)
        gflops = case.flops_per_epoch(samples) / median / 1e9
        rows.append({"case": case.name, "contender": c.name, "median_s": median, "gflops": gflops,
                     "pct_peak": 100 * gflops / peak, "rounds": len(c.times),
                     "baseline": c is numpy_best})
    med = {c.name: statistics.median(c.times) for c in contenders}
    ratios = {"numba/numpy": med[numba.name] / med[numpy_best.name]}
    if torch_c is not None:
        ratios["numba/torch"] = med[numba.name] / med[torch_c.name]
    rows[0]["ratios"] = ratios
    return rows


def format_table(results: dict) -> str:
    lines = [f"sgemm peak: {results['peak_gflops']:.0f} GFLOP/s (2048² float32, 2 BLAS threads); "
             f"{results['samples']:,} samples per epoch, median of {results['rounds']} interleaved epochs", "",
             "| case | contender | median s/epoch | GFLOP/s | % of peak | numba ÷ this |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for case_rows in results["cases"]:
        numba_s = case_rows[0]["median_s"]
        for row in case_rows:
            mark = " (baseline)" if row["baseline"] else ""
            lines.append(f"| {row['case']} | {row['contender']}{mark} | {row['median_s']:.3f} | "
                         f"{row['gflops']:.0f} | {row['pct_peak']:.0f}% | {numba_s / row['median_s']:.2f} |")
    if "compile" in results:
        c = results["compile"]
        lines += ["", f"compile, process start to first batch: cold {c['cold']:.2f} s, cached {c['cached']:.2f} s"]
    if "peak_rss_mb" in results:
        lines.append(f"peak resident memory, training 784-128-10 on {SAMPLES:,} samples: {results['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


def run(cases=CASES, rounds: int = 5, with_torch: bool = True, extras: bool = True, samples: int = SAMPLES,
        say=print) -> dict:
    """Run the whole benchmark and return its results as a JSON-able dict."""
    x, y = epoch_data(samples)
    peak = sgemm_peak()
    say(f"sgemm peak {peak:.0f} GFLOP/s")
    results = {"peak_gflops": peak, "samples": samples, "rounds": rounds, "cases": [],
               "numba_threads": fn.get_num_threads()}
    if with_torch and not torch_available()[0]:
        results["torch_skipped"] = torch_available()[1]
        say(f"skipping PyTorch: {results['torch_skipped']}")
    for case in cases:
        contenders = contenders_for(case, x, y, with_torch)
        run_interleaved(contenders, rounds)
        rows = summarise(case, contenders, peak, samples)
        results["cases"].append(rows)
        say(f"{case.name}: " + ", ".join(f"{r['contender']} {r['median_s']:.3f} s" for r in rows))
    if extras:
        results["compile"] = compile_times(CASES[0])
        results["peak_rss_mb"] = peak_rss_mb(Case((128,), "sigmoid", 128))
    return results


def write_outputs(results: dict, json_path, png_path=None) -> None:
    from pathlib import Path

    from fastnet.checkpoint import write_atomic

    write_atomic(Path(json_path), json.dumps(results, indent=2).encode())
    if png_path:
        try:
            import matplotlib
        except ImportError:
            return
        matplotlib.use("Agg")
        import io

        import matplotlib.pyplot as plt

        names = [rows[0]["case"] for rows in results["cases"]]
        contenders = [r["contender"] for r in results["cases"][0]]
        fig, ax = plt.subplots(figsize=(12, 5))
        width = 0.8 / len(contenders)
        for j, name in enumerate(contenders):
            values = [next((r["median_s"] for r in rows if r["contender"] == name), np.nan) for rows in results["cases"]]
            ax.bar(np.arange(len(names)) + j * width, values, width, label=name)
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=20, ha="right")
        ax.set(ylabel="median seconds per epoch (60,000 samples)", title="fastnet epoch time")
        ax.legend()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        write_atomic(Path(png_path), buf.getvalue())


# ---- against scikit-learn: `fastnet bench --sklearn` --------------------------------------------------
#
# Each contender (a library on a thread count) lives in its own worker process, started once and sent one
# fit at a time, so rounds interleave without any contender sharing a process, a BLAS or numba's pool.
# The worker times ``fit`` alone: the data is made, split and scaled before, and a one-epoch warm-up fit
# (numba's compile or cache load) is timed apart.

SKLEARN_DATASETS = ("digits", "breast_cancer", "classification-100k")
SKLEARN_EPOCHS = {"digits": 200, "breast_cancer": 200, "classification-100k": 10}
SKLEARN_SETTINGS = {"hidden_layer_sizes": (100,), "activation": "relu", "solver": "adam", "alpha": 1e-4,
                    "batch_size": 200, "learning_rate_init": 1e-3, "random_state": 0}
# OpenBLAS variables this environment may set to force slower kernels: scikit-learn's process runs without them
FORCED_BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def sklearn_data(name: str, quick: bool = False):
    """(X_train, X_test, y_train, y_test) in float32: a stratified 75/25 split, scaled by a StandardScaler
    fitted on the training part (fastnet never rescales). ``quick`` shrinks the generated set to 2,000 rows."""
    from sklearn.datasets import load_breast_cancer, load_digits, make_classification
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if name == "digits":
        x, y = load_digits(return_X_y=True)
    elif name == "breast_cancer":
        x, y = load_breast_cancer(return_X_y=True)
    elif name == "classification-100k":
        x, y = make_classification(2_000 if quick else 100_000, 50, n_informative=20, n_classes=5, random_state=0)
    else:
        raise ValueError(f"unknown dataset {name!r}: use one of {', '.join(SKLEARN_DATASETS)}")
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(x_train)
    return scaler.transform(x_train).astype(np.float32), scaler.transform(x_test).astype(np.float32), y_train, y_test


def sklearn_estimator(library: str, threads: int, epochs: int):
    """The classifier under test: the same settings for both, a fixed number of epochs (no early stop)."""
    fixed = {**SKLEARN_SETTINGS, "max_iter": epochs, "tol": 0.0, "n_iter_no_change": epochs}
    if library == "sklearn":
        from sklearn.neural_network import MLPClassifier
        return MLPClassifier(**fixed)
    from fastnet.sklearn import MLPClassifier
    return MLPClassifier(**fixed, n_threads=threads)


def sklearn_worker() -> None:
    """A contender's process: argv[1] is JSON {library, threads, quick, epochs}; reads dataset names on stdin,
    fits, and answers one JSON line each. Stray output (warnings, C libraries) goes to stderr."""
    import hashlib
    import warnings

    spec = json.loads(sys.argv[1])
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    warnings.simplefilter("ignore")  # max_iter is reached on purpose: ConvergenceWarning says nothing here
    threads = spec["threads"]
    threadpool_limits(limits=threads, user_api="blas")
    fn.set_num_threads(min(threads, fn.get_num_threads()))
    data = {name: sklearn_data(name, spec["quick"]) for name in SKLEARN_DATASETS}
    from threadpoolctl import threadpool_info

    warmup = {}
    for name, (x_train, _, y_train, _) in data.items():
        start = time.perf_counter()
        sklearn_estimator(spec["library"], threads, 1).fit(x_train, y_train)
        warmup[name] = time.perf_counter() - start
    digest = hashlib.sha256(b"".join(a.tobytes() for parts in data.values() for a in parts)).hexdigest()[:16]
    # NumPy's BLAS first: scikit-learn's MLP multiplies with NumPy (SciPy may load a second OpenBLAS)
    blas = sorted(({k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "filepath")}
                   for i in threadpool_info() if i["user_api"] == "blas"), key=lambda i: "numpy" not in i["filepath"])
    print(json.dumps({"blas": blas, "warmup_s": warmup, "data_sha256": digest,
                      "numba_threads": fn.get_num_threads()}), file=answer, flush=True)
    for line in sys.stdin:
        name = line.strip()
        x_train, x_test, y_train, y_test = data[name]
        est = sklearn_estimator(spec["library"], threads, spec["epochs"][name])
        start = time.perf_counter()
        est.fit(x_train, y_train)
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "accuracy": float(est.score(x_test, y_test)),
                          "n_iter": int(est.n_iter_)}), file=answer, flush=True)


class Worker:
    """One contender's process (see ``sklearn_worker``), driven one fit at a time."""

    def __init__(self, library: str, threads: int, quick: bool, epochs: dict):
        self.library, self.threads = library, threads
        self.name = f"{'fastnet' if library == 'fastnet' else 'scikit-learn'} ({threads} thread{'s' * (threads > 1)})"
        env = dict(os.environ)
        if library == "sklearn":  # its MLP runs on NumPy's BLAS: let OpenBLAS pick its native kernels
            for var in FORCED_BLAS_VARS:
                env.pop(var, None)
        spec = json.dumps({"library": library, "threads": threads, "quick": quick, "epochs": epochs})
        self.proc = subprocess.Popen([sys.executable, "-c", "from fastnet.bench import sklearn_worker; sklearn_worker()",
                                      spec], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} benchmark process exited (status {self.proc.wait()}); "
                               "its error is printed above")
        return json.loads(line)

    def fit(self, dataset: str) -> dict:
        """Fit on ``dataset`` in the worker; {"seconds", "accuracy", "n_iter"}."""
        self.proc.stdin.write(dataset + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def machine_info() -> dict:
    """What a reader needs to weigh the figures: CPU, numba's LLVM target, cores, load, versions."""
    import platform

    import llvmlite.binding as llvm
    import numba
    import sklearn

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "llvm_cpu": numba.config.CPU_NAME or llvm.get_host_cpu_name(), "cores": os.cpu_count(),
            "numba_threads_max": numba.config.NUMBA_NUM_THREADS, "load_average": list(os.getloadavg()),
            "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "scikit-learn": sklearn.__version__, "fastnet": fn.__version__,
            "forced_blas_env": {v: os.environ[v] for v in FORCED_BLAS_VARS if v in os.environ}}


def run_sklearn(rounds: int = 3, quick: bool = False, threads: int | None = None, say=print) -> dict:
    """fastnet's MLPClassifier against scikit-learn's, each on 1 thread and on all cores, interleaved;
    returns a JSON-able dict with one row per dataset and contender (median seconds) and the ratios."""
    import numba

    threads = threads or numba.config.NUMBA_NUM_THREADS
    epochs = {name: 5 if quick else SKLEARN_EPOCHS[name] for name in SKLEARN_DATASETS}
    results = {"machine": machine_info(), "rounds": rounds, "quick": quick, "epochs": epochs,
               "settings": {**SKLEARN_SETTINGS, "tol": 0.0, "n_iter_no_change": "max_iter", "dtype": "float32",
                            "split": "stratified 75/25, random_state=0, StandardScaler on the training part"}}
    workers = []
    try:
        for library in ("sklearn", "fastnet"):
            for n in sorted({1, threads}):
                workers.append(Worker(library, n, quick, epochs))  # one at a time: the first compiles for the next
                blas = workers[-1].info["blas"][:1]
                say(f"started {workers[-1].name}" + "".join(f": NumPy's BLAS {b['internal_api']} {b['version']}, "
                                                         f"{b['architecture']} kernels" for b in blas))
        if len({w.info["data_sha256"] for w in workers}) != 1:
            raise RuntimeError("the contenders' processes made different data: the comparison would be unfair")
        fits = {(w.name, d): [] for w in workers for d in SKLEARN_DATASETS}
        for r in range(rounds):
            for dataset in SKLEARN_DATASETS:
                for w in workers[r % len(workers):] + workers[:r % len(workers)]:  # rotate who goes first
                    fits[w.name, dataset].append(w.fit(dataset))
            say(f"round {r + 1}/{rounds} done")
    finally:
        for w in workers:
            w.close()
    results["machine"]["load_average_end"] = list(os.getloadavg())
    results["contenders"] = {w.name: {"library": w.library, "threads": w.threads, **w.info} for w in workers}
    results["datasets"] = [summarise_sklearn(d, fits, workers, threads) for d in SKLEARN_DATASETS]
    return results


def summarise_sklearn(dataset: str, fits: dict, workers: list, threads: int) -> dict:
    """Median seconds and accuracy per contender, and scikit-learn ÷ fastnet on 1 thread and on all cores
    (against scikit-learn's faster thread count, as a user would pick it)."""
    rows = {}
    for w in workers:
        runs = fits[w.name, dataset]
        rows[w.name] = {"library": w.library, "threads": w.threads,
                        "median_s": statistics.median(r["seconds"] for r in runs), "times": [r["seconds"] for r in runs],
                        "accuracy": statistics.median(r["accuracy"] for r in runs), "n_iter": runs[0]["n_iter"]}
    by = {(r["library"], r["threads"]): r for r in rows.values()}
    sk_best = min(by["sklearn", 1]["median_s"], by["sklearn", threads]["median_s"])
    gap = 100 * abs(by["fastnet", 1]["accuracy"] - by["sklearn", 1]["accuracy"])
    return {"dataset": dataset, "rows": rows, "accuracy_gap_points": gap, "equal_accuracy": gap <= 1.0,
            "speedup_1_thread": by["sklearn", 1]["median_s"] / by["fastnet", 1]["median_s"],
            "speedup_all_cores": sk_best / by["fastnet", threads]["median_s"]}


def _target(value: float, target: float, equal_accuracy: bool) -> str:
    met = value >= target and equal_accuracy
    return f"{value:.1f}× (≥ {target:g}×) {'✓' if met else '✗'}"


def format_sklearn_table(results: dict) -> str:
    """The machine line, then one row per dataset: seconds, accuracy, speed-ups against the targets
    (a target counts as met only at equal accuracy, within 1 point)."""
    m = results["machine"]
    blas = next(c["blas"] for c in results["contenders"].values() if c["library"] == "sklearn")
    blas = blas[0] if blas else {"internal_api": "no BLAS found", "version": "", "architecture": "?"}
    forced = m["forced_blas_env"]
    lines = [f"{m['cpu']} (LLVM target {m['llvm_cpu']}), {m['cores']} cores, load average "
             f"{m['load_average'][0]:.2f} at the start, {m['load_average_end'][0]:.2f} at the end; "
             f"scikit-learn {m['scikit-learn']} on {blas['internal_api']} {blas['version']} "
             f"({blas['architecture']} kernels{', ' + ' and '.join(forced) + ' unset for it' if forced else ''}); "
             f"median of {results['rounds']} interleaved fits each, float32, fit time only", "",
             "| data | epochs | scikit-learn 1 thr. | scikit-learn all | fastnet 1 thr. | fastnet all "
             "| accuracy sklearn / fastnet | speed-up 1 thr. | speed-up all cores |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for d in results["datasets"]:
        by = {}
        for r in d["rows"].values():  # 1 thread first, then the most threads
            by.setdefault((r["library"], "1" if r["threads"] == 1 else "all"), r)
            by[r["library"], "all"] = r
        ok = d["equal_accuracy"]
        every = _target(d["speedup_all_cores"], 10, ok) if d["dataset"] == "classification-100k" \
            else f"{d['speedup_all_cores']:.1f}×"
        lines.append(f"| {d['dataset']} | {results['epochs'][d['dataset']]} | {by['sklearn', '1']['median_s']:.3f} s | "
                     f"{by['sklearn', 'all']['median_s']:.3f} s | {by['fastnet', '1']['median_s']:.3f} s | "
                     f"{by['fastnet', 'all']['median_s']:.3f} s | {by['sklearn', '1']['accuracy']:.3f} / "
                     f"{by['fastnet', '1']['accuracy']:.3f} | {_target(d['speedup_1_thread'], 5, ok)} | {every} |")
    return "\n".join(lines)
