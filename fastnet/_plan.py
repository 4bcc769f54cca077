"""The layer list compiled into kernel calls.

``Plan`` decides once how layers fuse:

* an activation right after a Dense layer runs in that layer's GEMM epilogue;
* the derivative of an activation whose output feeds a Dense layer runs in that
  Dense layer's dx epilogue, so the gradient handed down is already with respect
  to the activation's input;
* dropout runs as its own pass, and evaluation skips it.

``Plan.steps(B)`` returns the buffers for batch size B and the kernel calls bound
to them, so a training step is a loop over ready calls that allocates nothing. With
the numba backend, a ``StepTuner`` chooses by measurement which of a training step's
calls run on all threads (see ``_thread_tuning``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np

from fastnet._memory import aligned_zeros
from fastnet._thread_tuning import StepTuner
from fastnet.kernels import ACT, bind
from fastnet.layers import Activation, Dense, Dropout

IDENTITY = (ACT["identity"], 0.0, 0.0)


@dataclass
class Op:
    """One fused stage: a Dense layer (with its output activation), an activation alone, or dropout."""

    kind: str  # "dense" | "act" | "dropout"
    layer: object
    width: int  # output width
    act: tuple = IDENTITY  # activation applied to the output
    grad_is_pre_act: bool = False  # the next Dense already applied this op's activation derivative


def build_ops(layers, n_in: int) -> list[Op]:
    ops: list[Op] = []
    width = n_in
    for layer in layers:
        width = layer.out_width(width)
        if isinstance(layer, Dense):
            ops.append(Op("dense", layer, width))
        elif isinstance(layer, Activation):
            if ops and ops[-1].kind == "dense" and ops[-1].act == IDENTITY:
                ops[-1].act = layer.act
            else:
                ops.append(Op("act", layer, width, act=layer.act))
        elif isinstance(layer, Dropout):
            ops.append(Op("dropout", layer, width))
    for op, nxt in zip(ops, ops[1:]):
        op.grad_is_pre_act = op.act != IDENTITY and nxt.kind == "dense"
    return ops


@dataclass
class Steps:
    """Buffers and bound kernel calls for one batch size."""

    x: np.ndarray  # (B, n_in) input batch, in the model dtype
    target: np.ndarray  # (B,) int64 labels or (B, M) targets
    out: np.ndarray  # (B, M) network output (logits)
    grad_out: np.ndarray  # (B, M) d loss / d output
    gather: object  # gather_rows(x, data, idx, divisor): fills x with a batch
    update: object  # update(optimizer, lr): the optimizer's step on the model's parameters
    tuner: StepTuner | None  # which training calls run on all threads; None: leave it to the kernels
    forward_train: list = field(default_factory=list)
    forward_eval: list = field(default_factory=list)
    backward: list = field(default_factory=list)
    draw_masks: list = field(default_factory=list)
    eval_out: np.ndarray | None = None


class Plan:
    def __init__(self, layers, loss, kernels, dtype, n_in: int, rng: np.random.Generator, update, tune: bool):
        self.ops = build_ops(layers, n_in)
        self.loss, self.k, self.dtype, self.n_in = loss, kernels, np.dtype(dtype), n_in
        self.update = update  # the model's update(optimizer, lr)
        self.tune = tune  # measure which training calls to run on all threads (numba backend)
        self.rng = rng  # draws the dropout masks
        self._cache: dict[int, Steps] = {}

    def steps(self, batch: int) -> Steps:
        """Buffers and calls for batch size ``batch``, built on first use and then reused."""
        if batch not in self._cache:
            if len(self._cache) >= 4:  # odd sizes from evaluate(): keep memory bounded
                self._cache.clear()
            self._cache[batch] = self._build(batch)
        return self._cache[batch]

    def _build(self, B: int) -> Steps:
        k, dt, ops = self.k, self.dtype, self.ops
        x = aligned_zeros((B, self.n_in), dt)
        outs = [aligned_zeros((B, op.width), dt) for op in ops]
        grads = [aligned_zeros((B, op.width), dt) for op in ops]
        for i in range(len(ops) - 1, 0, -1):
            if ops[i].kind == "act" and ops[i].grad_is_pre_act:
                grads[i - 1] = grads[i]  # the Dense above applied f' already: the gradient passes through
        target = np.zeros(B, np.int64) if self.loss.integer_targets else np.zeros((B, ops[-1].width), dt)
        tuner = StepTuner() if self.tune else None
        site = tuner.site if tuner else (lambda call: call)
        steps = Steps(x, target, outs[-1], grads[-1], site(k.gather_rows), site(self.update), tuner)

        inputs, masks = [], {}
        a_train = a_eval = x  # evaluation skips dropout: its input passes on
        for i, (op, y) in enumerate(zip(ops, outs)):
            inputs.append(a_train)
            if op.kind == "dropout":
                uniform = np.zeros((B, op.width), np.float32)
                keep = np.zeros((B, op.width), np.bool_)
                masks[i] = keep.view(np.uint8)
                steps.draw_masks.append(partial(_draw_mask, self.rng, uniform, keep, op.layer.p))
                steps.forward_train.append(bind(k.dropout, y, a_train, masks[i], 1.0 / (1.0 - op.layer.p)))
                a_train = y
                continue
            if op.kind == "dense":
                w, b = op.layer.weight, op.layer.bias
                steps.forward_train.append(bind(k.dense_forward, y, a_train, w, b, *op.act))
                steps.forward_eval.append(bind(k.dense_forward, y, a_eval, w, b, *op.act))
            else:
                steps.forward_train.append(bind(k.activation_forward, y, a_train, *op.act))
                steps.forward_eval.append(bind(k.activation_forward, y, a_eval, *op.act))
            a_train = a_eval = y
        steps.eval_out = a_eval

        # backward, from the output down to the first layer with parameters
        first = next(i for i, op in enumerate(ops) if op.kind == "dense")
        for i in range(len(ops) - 1, first - 1, -1):
            op, g, y, a = ops[i], grads[i], outs[i], inputs[i]
            if op.kind == "dense":
                if op.act != IDENTITY and not op.grad_is_pre_act:
                    steps.backward.append(bind(k.activation_backward, g, g, y, *op.act))
                steps.backward.append(bind(k.dense_backward_dw, op.layer.dw, op.layer.db, g, a))
                if i > first:
                    below = ops[i - 1]
                    in_act = below.act if below.grad_is_pre_act else IDENTITY
                    steps.backward.append(bind(k.dense_backward_dx, grads[i - 1], g, op.layer.weight, a, *in_act))
            elif op.kind == "act":
                if not op.grad_is_pre_act:
                    steps.backward.append(bind(k.activation_backward, grads[i - 1], g, y, *op.act))
            else:
                steps.backward.append(bind(k.dropout, grads[i - 1], g, masks[i], 1.0 / (1.0 - op.layer.p)))
        steps.forward_train[:] = map(site, steps.forward_train)
        steps.backward[:] = map(site, steps.backward)
        return steps


def _draw_mask(rng: np.random.Generator, uniform: np.ndarray, keep: np.ndarray, p: float) -> None:
    """Keep each unit with probability 1 - p; drawn in float32 so both backends and dtypes see one mask."""
    rng.random(dtype=np.float32, out=uniform)
    np.greater_equal(uniform, np.float32(p), out=keep)
