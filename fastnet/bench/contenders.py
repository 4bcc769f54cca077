"""The contenders of ``fastnet bench``, and the worker job that runs one of them in its own process.

Every contender trains the same network from the same initial weights (a fastnet model's, seed 0) with
plain SGD (lr 0.01) and softmax cross-entropy, in float32, on the same MNIST-shaped float32 images in
[0, 1] (what ``fn.datasets.load`` gives), reshuffled every epoch:

    numba      fastnet on its numba kernels (``fit``), numba's default threads unless told
    numpy      fastnet's NumPy baseline backend (``backend="numpy"``): the same model on the NumPy twins
    torch      PyTorch eager: the ordinary ``nn.Sequential`` / ``optim.SGD`` loop
    jax-scan   JAX with the whole epoch under one ``jax.jit``: ``lax.scan`` over the batches
    jax-step   JAX with one ``jax.jit`` per training step, batches gathered by NumPy

``contender(kind, case, x, y)`` builds one, ready to train; ``epoch_job`` is the worker job
(see ``fastnet.bench.workers``) that ``fastnet bench`` runs each contender in.
"""
from __future__ import annotations

import os
import re
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

import fastnet as fn
from fastnet.bench.machine import llvm_cpu, version
from fastnet.bench.workers import Unavailable, blas_info

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

    def to_json(self) -> list:
        return [list(self.hidden), self.activation, self.batch]

    @classmethod
    def from_json(cls, value) -> Case:
        hidden, activation, batch = value
        return cls(tuple(hidden), activation, batch)


def epoch_data(samples: int = SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """The bundled sample's training digits tiled to ``samples`` rows: float32 in [0, 1], every contender's."""
    train, _ = fn.datasets.load("mnist-sample")
    reps = -(-samples // len(train))
    return np.tile(train.x, (reps, 1))[:samples], np.tile(train.y, reps)[:samples]


def fastnet_model(case: Case, backend: str, seed: int = 0) -> fn.Sequential:
    layers = []
    for a, b in zip(case.widths[:-2], case.widths[1:-1]):
        layers += [fn.Dense(a, b), fn.layers.activation(case.activation)]
    layers.append(fn.Dense(case.widths[-2], case.widths[-1]))
    return fn.Sequential(*layers, loss=fn.SoftmaxCrossEntropy(), backend=backend, dtype="float32", seed=seed)


def initial_weights(case: Case) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every contender's starting point: the fastnet model's (weight (out, in), bias) per Dense layer."""
    w = fastnet_model(case, "numpy").get_weights()
    return [(w[f"layers.{2 * i}.weight"], w[f"layers.{2 * i}.bias"]) for i in range(len(case.widths) - 1)]


@dataclass
class Contender:
    """Something that trains one epoch per call of ``epoch()``; ``weights()`` gives its parameters as
    [(weight (out, in), bias)] per layer; ``compile_seconds`` is what was spent compiling before the
    first epoch (fastnet: its first step, which compiles or loads its kernels; JAX: ``jit``)."""

    name: str
    epoch: Callable[[], None]
    weights: Callable[[], list] = lambda: []
    compile_seconds: float | None = None
    times: list = field(default_factory=list)


def fastnet_contender(case: Case, backend: str, x, y) -> Contender:
    """fastnet's own ``fit``, one epoch per call; its first step is timed as compile time."""
    model = fastnet_model(case, backend)
    start_weights = model.get_weights()
    opt = fn.SGD(lr=LR)
    start = time.perf_counter()  # one step on a slice: every kernel of a training step compiles or loads
    model.fit(x[:case.batch], y[:case.batch], batch_size=case.batch, optimizer=opt, progress=False)
    compile_seconds = time.perf_counter() - start
    model.set_weights(start_weights)

    def weights():
        w = model.get_weights()
        return [(w[f"layers.{2 * i}.weight"], w[f"layers.{2 * i}.bias"]) for i in range(len(case.widths) - 1)]

    return Contender(f"fastnet {backend}", lambda: model.fit(x, y, batch_size=case.batch, optimizer=opt,
                                                              progress=False), weights, compile_seconds)


def torch_contender(case: Case, x, y) -> Contender:
    """The ordinary PyTorch training loop, from fastnet's initial weights, on torch's default threads."""
    torch = _import_torch()
    layers = []
    for i, (w, b) in enumerate(initial_weights(case)):
        linear = torch.nn.Linear(*w.shape[::-1])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if i < len(case.widths) - 2:
            layers.append({"sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[case.activation]())
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    # float32 in [0, 1], as every contender gets it; torch's loss wants int64 labels
    xt, yt = torch.from_numpy(np.asarray(x)), torch.from_numpy(np.asarray(y)).long()
    gen = torch.Generator().manual_seed(0)

    def epoch():
        perm = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), case.batch):
            idx = perm[start:start + case.batch]
            xb = xt[idx]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(xb), yt[idx]).backward()
            opt.step()

    def weights():
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        return [(m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()) for m in linears]

    return Contender(f"PyTorch {torch.__version__} eager", epoch, weights)


def _import_torch():
    try:
        import torch
    except ImportError as e:
        raise Unavailable(f"PyTorch is not installed ({e}): pip install torch==2.13.0") from None
    return torch


def _import_jax():
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # a CPU benchmark: no probing for accelerators
    try:
        import jax
    except ImportError as e:
        raise Unavailable(f"JAX is not installed ({e}): pip install jax") from None
    return jax


def jax_step_function(case: Case):
    """The JAX training step: (params, float32 batch, labels) -> params after one SGD step."""
    jax = _import_jax()
    jnp = jax.numpy
    act = {"sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "tanh": jnp.tanh}[case.activation]

    def loss(params, xb, yb):
        h = xb
        for i, (w, b) in enumerate(params):
            h = h @ w.T + b
            if i < len(params) - 1:
                h = act(h)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(h), yb[:, None], axis=1))

    def step(params, xb, yb):
        grads = jax.grad(loss)(params, xb, yb)
        return jax.tree.map(lambda p, g: p - jnp.float32(LR) * g, params, grads)

    return step


def jax_contender(case: Case, x, y, whole_epoch: bool) -> Contender:
    """JAX from fastnet's initial weights: the whole epoch under one ``jax.jit`` (``lax.scan`` over the
    full batches, then the ragged last batch, if any, in the same compiled function), or one ``jax.jit``
    per step. The permutation comes from NumPy each epoch; compile time is ``lower().compile()``."""
    jax = _import_jax()
    jnp = jax.numpy
    step = jax_step_function(case)
    n, b = len(x), case.batch
    full = n // b * b
    state = {"params": [(jnp.asarray(w), jnp.asarray(bias)) for w, bias in initial_weights(case)]}
    rng = np.random.default_rng(0)
    x_host, y_host = np.asarray(x), np.asarray(y).astype(np.int32)
    start = time.perf_counter()
    if whole_epoch:
        def train_epoch(params, xs, ys, perm):
            def body(p, idx):
                return step(p, xs[idx], ys[idx]), None

            params, _ = jax.lax.scan(body, params, perm[:full].reshape(-1, b))
            if full < n:
                params = step(params, xs[perm[full:]], ys[perm[full:]])
            return params

        xs, ys = jnp.asarray(x_host), jnp.asarray(y_host)
        compiled = jax.jit(train_epoch, donate_argnums=0).lower(state["params"], xs, ys,
                                                                 np.arange(n, dtype=np.int32)).compile()

        def epoch():
            state["params"] = compiled(state["params"], xs, ys, rng.permutation(n).astype(np.int32))
            jax.block_until_ready(state["params"])
    else:
        jitted = jax.jit(step, donate_argnums=0)
        shapes = {size: jitted.lower(state["params"], x_host[:size], y_host[:size]).compile()
                  for size in {b, n - full} if size}

        def epoch():
            perm, params = rng.permutation(n), state["params"]
            for s in range(0, n, b):
                idx = perm[s:s + b]
                params = shapes[len(idx)](params, x_host[idx], y_host[idx])
            state["params"] = jax.block_until_ready(params)
    compile_seconds = time.perf_counter() - start

    def weights():
        return [(np.asarray(w), np.asarray(bias)) for w, bias in state["params"]]

    form = "whole epoch in one jit (lax.scan)" if whole_epoch else "jit per step"
    return Contender(f"JAX {jax.__version__}, {form}", epoch, weights, compile_seconds)


BUILDERS = {
    "numba": lambda case, x, y: fastnet_contender(case, "numba", x, y),
    "numpy": lambda case, x, y: fastnet_contender(case, "numpy", x, y),
    "torch": torch_contender,
    "jax-scan": lambda case, x, y: jax_contender(case, x, y, whole_epoch=True),
    "jax-step": lambda case, x, y: jax_contender(case, x, y, whole_epoch=False),
}


def contender(kind: str, case: Case, x, y) -> Contender:
    """Contender ``kind`` (a key of BUILDERS) for ``case``, ready to train on (x, y)."""
    return BUILDERS[kind](case, x, y)


def sgemm_peak(n: int = 2048, repeats: int = 7, threads: int = 2) -> float:
    """The float32 matmul rate of NumPy's BLAS in GFLOP/s: the median of large square GEMMs."""
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


def _library(kind: str) -> dict:
    """Import the contender's library (Unavailable when it is missing): its version, and what computes
    the products ("kernels"): numba's LLVM target, NumPy's BLAS kernel type, torch's BLAS and CPU
    capability, XLA."""
    if kind == "torch":
        torch = _import_torch()
        blas = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
        return {"torch": torch.__version__, "kernels": f"{blas.group(1) if blas else 'its own BLAS'} "
                f"(built into torch), ATen CPU capability {torch.backends.cpu.get_cpu_capability()}"}
    if kind.startswith("jax"):
        jax = _import_jax()
        return {"jax": jax.__version__, "kernels": f"XLA on {jax.default_backend().upper()} (jaxlib "
                f"{version('jaxlib')})"}
    import numba
    if kind == "numba":
        return {"numba": numba.__version__, "kernels": f"numba {numba.__version__} kernels, LLVM target {llvm_cpu()}"}
    blas = (blas_info() or [{}])[0]
    return {"numpy": np.__version__, "kernels": f"{blas.get('internal_api', 'no BLAS found')} "
            f"{blas.get('version') or ''}, {blas.get('architecture') or '?'} kernels"}


def _set_threads(kind: str, threads: int | None) -> int | str:
    """Hold this worker's contender to ``threads`` (None: its library's default); returns the count."""
    if kind == "numpy":
        threadpool_limits(limits=threads, user_api="blas")  # for the whole process: it runs nothing else
        return threads
    if kind == "numba":
        if threads:
            fn.set_num_threads(threads)
        return fn.get_num_threads()
    if kind == "torch":
        torch = _import_torch()
        if threads:
            torch.set_num_threads(threads)
        return torch.get_num_threads()
    return threads or "XLA's default (all cores)"


def epoch_job(spec: dict):
    """Worker job: one contender, spec {"kind", "threads", "samples"}. Requests: {"case": Case.to_json()}
    builds it and trains a first epoch (answers its name, compile and warm-up seconds), {"epoch": 1} times
    one epoch, {"weights": 1} gives its parameters, {"sgemm": threads} measures NumPy's BLAS (GFLOP/s)."""
    kind = spec["kind"]
    versions = _library(kind)
    threads = _set_threads(kind, spec.get("threads"))
    x, y = epoch_data(spec["samples"])
    current = {}

    def handle(request: dict) -> dict:
        if "case" in request:
            current["c"] = c = contender(kind, Case.from_json(request["case"]), x, y)
            start = time.perf_counter()
            c.epoch()
            return {"name": c.name, "compile_s": c.compile_seconds, "warmup_s": time.perf_counter() - start}
        if "epoch" in request:
            start = time.perf_counter()
            current["c"].epoch()
            return {"seconds": time.perf_counter() - start}
        if "weights" in request:  # to check that the contenders train alike
            return {"weights": [[w.tolist(), b.tolist()] for w, b in current["c"].weights()]}
        if "sgemm" in request:
            return {"gflops": sgemm_peak(threads=request["sgemm"], n=request.get("n", 2048))}
        raise ValueError(f"unknown request {request!r}")

    return {"kind": kind, "threads": threads, **versions}, handle
