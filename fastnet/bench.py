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
