"""The contenders of ``fastnet bench``, and the worker job that runs one of them in its own process.

Every contender trains the same network from the same initial weights (a fastnet model's, seed 0) with
plain SGD (lr 0.01) and softmax cross-entropy, in float32, on the same MNIST-shaped float32 images in
[0, 1] (what ``fn.datasets.load`` gives), reshuffled every epoch. A case (``Case``) is an MLP on the 784
pixels or, with convolution blocks in front, a small CNN on 1x28x28 images such as LeNet-5 (``LENET5``):

    numba      fastnet on its numba kernels (``fit``), numba's default threads unless told
    numpy      fastnet's NumPy baseline backend (``backend="numpy"``): the same model on the NumPy twins
               (a convolution's twin is im2col + a BLAS matmul: the NumPy im2col baseline)
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


IMAGE = (1, 28, 28)  # what a convolutional case sees of each 784-pixel row: NCHW, one channel


@dataclass(frozen=True)
class Case:
    """A network and batch size: convolution blocks, hidden widths, hidden activation, batch size.

    ``convs`` holds one (out_channels, kernel, padding) per block Conv2D -> activation -> MaxPool2D(2)
    that runs on the 1x28x28 images before the dense layers; empty (an MLP on the 784 pixels) by default.
    """

    hidden: tuple[int, ...]
    activation: str
    batch: int
    convs: tuple[tuple[int, int, int], ...] = ()

    def conv_shapes(self) -> list[tuple[int, int, int, int, int]]:
        """(in_channels, out_channels, kernel, padding, output side) of each convolution, stride 1."""
        channels, side, out = IMAGE[0], IMAGE[1], []
        for co, k, pad in self.convs:
            conv_side = side + 2 * pad - k + 1
            out.append((channels, co, k, pad, conv_side))
            channels, side = co, conv_side // 2  # the 2x2 max pool
        return out

    @property
    def widths(self) -> list[int]:
        """The dense layers' widths, from the flattened input (784 pixels, or the last pool's C·H·W) to 10."""
        flat = 784
        if self.convs:
            _, co, _, _, side = self.conv_shapes()[-1]
            flat = co * (side // 2) ** 2
        return [flat, *self.hidden, 10]

    @property
    def name(self) -> str:
        if self.convs == LENET5_CONVS and self.hidden == LENET5_HIDDEN:
            return f"LeNet-5 {self.activation} B={self.batch}"
        convs = "".join(f"c{co}k{k}" + (f"p{pad}" if pad else "") + "-" for co, k, pad in self.convs)
        return f"{convs}{'-'.join(map(str, self.widths))} {self.activation} B={self.batch}"

    def flops_per_epoch(self, samples: int = SAMPLES) -> float:
        """Counted FLOPs: per layer 2·MACs for the forward pass, as many for dW, and as many for dX in
        every layer but the first (its input needs no gradient); pools and activations are not counted.

        A dense layer's MACs are in·out a sample, a convolution's Ci·Co·K²·Ho·Wo. 784-128-10 costs
        2·(784·128·2 + 128·10·3) = 409,088 a sample, 24.5 GFLOP an epoch of 60,000. LeNet-5 (conv 1->6
        5x5 pad 2 on 28x28, conv 6->16 5x5 on 14x14, dense 400-120-84-10) has 117,600 + 240,000 conv MACs
        and 48,000 + 10,080 + 840 dense MACs: 2·(117,600·2 + (240,000 + 58,920)·3) = 2,263,920 a sample,
        135.8 GFLOP an epoch.
        """
        macs = [ci * co * k * k * side * side for ci, co, k, _, side in self.conv_shapes()]
        macs += [a * b for a, b in zip(self.widths, self.widths[1:])]
        return sum(2 * m * (2 if i == 0 else 3) for i, m in enumerate(macs)) * samples

    def to_json(self) -> list:
        """[hidden, activation, batch], and the convolutions after them if any (an MLP's stays as it was)."""
        return [list(self.hidden), self.activation, self.batch] + ([[list(c) for c in self.convs]] if self.convs else [])

    @classmethod
    def from_json(cls, value) -> Case:
        hidden, activation, batch, *convs = value
        return cls(tuple(hidden), activation, batch, tuple(tuple(c) for c in (convs[0] if convs else ())))


LENET5_CONVS = ((6, 5, 2), (16, 5, 0))
LENET5_HIDDEN = (120, 84)
LENET5 = Case(LENET5_HIDDEN, "relu", 64, LENET5_CONVS)


def epoch_data(samples: int = SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """The bundled sample's training digits tiled to ``samples`` rows: float32 in [0, 1], every contender's."""
    train, _ = fn.datasets.load("mnist-sample")
    reps = -(-samples // len(train))
    return np.tile(train.x, (reps, 1))[:samples], np.tile(train.y, reps)[:samples]


def fastnet_model(case: Case, backend: str, seed: int = 0) -> fn.Sequential:
    """The case's fastnet model: conv blocks (Conv2D, activation, MaxPool2D(2)) and a Flatten if any, then
    Dense layers with the activation between them."""
    layers = []
    for i, (ci, co, k, pad, _) in enumerate(case.conv_shapes()):
        first = {"input_shape": IMAGE} if i == 0 else {}
        layers += [fn.Conv2D(ci, co, k, padding=pad, **first), fn.layers.activation(case.activation), fn.MaxPool2D(2)]
    if case.convs:
        layers.append(fn.Flatten())
    for a, b in zip(case.widths[:-2], case.widths[1:-1]):
        layers += [fn.Dense(a, b), fn.layers.activation(case.activation)]
    layers.append(fn.Dense(case.widths[-2], case.widths[-1]))
    return fn.Sequential(*layers, loss=fn.SoftmaxCrossEntropy(), backend=backend, dtype="float32", seed=seed)


def layer_weights(case: Case, weights: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) per conv and dense layer, in order, from a fastnet model's ``get_weights()``: a
    conv block is 3 layers, the Flatten 1, a dense layer and its activation 2."""
    first_dense = 3 * len(case.convs) + (1 if case.convs else 0)
    index = [3 * i for i in range(len(case.convs))] + [first_dense + 2 * i for i in range(len(case.widths) - 1)]
    return [(weights[f"layers.{i}.weight"], weights[f"layers.{i}.bias"]) for i in index]


def initial_weights(case: Case) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every contender's starting point: the fastnet model's (weight, bias) per layer, weight (out, in) for
    a dense layer and (Co, Ci, K, K) for a convolution."""
    return layer_weights(case, fastnet_model(case, "numpy").get_weights())


@dataclass
class Contender:
    """Something that trains one epoch per call of ``epoch()``; ``weights()`` gives its parameters as
    [(weight, bias)] per layer in fastnet's shapes; ``compile_seconds`` is what was spent compiling before the
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
        return layer_weights(case, model.get_weights())

    return Contender(f"fastnet {backend}", lambda: model.fit(x, y, batch_size=case.batch, optimizer=opt,
                                                              progress=False), weights, compile_seconds)


def torch_contender(case: Case, x, y) -> Contender:
    """The ordinary PyTorch training loop, from fastnet's initial weights, on torch's default threads:
    nn.Conv2d / nn.MaxPool2d blocks (on the rows unflattened to 1x28x28) if any, then nn.Linear layers."""
    torch = _import_torch()
    nn = torch.nn
    act = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}[case.activation]
    start = iter(initial_weights(case))

    def loaded(module):
        w, b = next(start)
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(w))
            module.bias.copy_(torch.from_numpy(b))
        return module

    layers = [nn.Unflatten(1, IMAGE)] if case.convs else []
    for ci, co, k, pad, _ in case.conv_shapes():
        layers += [loaded(nn.Conv2d(ci, co, k, padding=pad)), act(), nn.MaxPool2d(2)]
    if case.convs:
        layers.append(nn.Flatten())
    for i, (a, b) in enumerate(zip(case.widths, case.widths[1:])):
        layers.append(loaded(nn.Linear(a, b)))
        if i < len(case.widths) - 2:
            layers.append(act())
    net = nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
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
        return [(m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy())
                for m in net if isinstance(m, (nn.Linear, nn.Conv2d))]

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
    """The JAX training step: (params, float32 batch, labels) -> params after one SGD step. Convolutions
    are ``lax.conv_general_dilated`` in NCHW / OIHW (cross-correlation, as torch and fastnet), pools
    ``lax.reduce_window`` max over 2x2 windows."""
    jax = _import_jax()
    jnp, lax = jax.numpy, jax.lax
    act = {"sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "tanh": jnp.tanh}[case.activation]
    pads = [pad for _, _, pad in case.convs]

    def loss(params, xb, yb):
        h = xb.reshape(-1, *IMAGE) if pads else xb
        for (w, b), pad in zip(params, pads):
            h = lax.conv_general_dilated(h, w, (1, 1), [(pad, pad)] * 2, dimension_numbers=("NCHW", "OIHW", "NCHW"))
            h = act(h + b[None, :, None, None])
            h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        h = h.reshape(h.shape[0], -1)
        dense = params[len(pads):]
        for i, (w, b) in enumerate(dense):
            h = h @ w.T + b
            if i < len(dense) - 1:
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
