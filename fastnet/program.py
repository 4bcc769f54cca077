"""The layer list as the compiled step's table (see ``fastnet/kernels/step.py``), and its buffers.

``build_ops`` decides once how layers fuse:

* an activation right after a Dense or Conv2D layer runs in that layer's GEMM epilogue;
* the derivative of an activation whose output feeds a Dense or Conv2D layer runs in that
  layer's dx epilogue, so the gradient handed down is already with respect
  to the activation's input;
* Flatten is no op: every buffer is flat, images in NCHW order;
* dropout is an op of its own, and evaluation passes its input on.

``Program`` turns the ops into the table ``prog``/``consts`` and places every buffer at a
column of one work vector, so one table serves every batch size; ``Program.buffers(B)``
allocates the vectors for batch size B once, and a step then allocates nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fastnet._memory import aligned_zeros
from fastnet.kernels import ACT, step
from fastnet.kernels.conv import conv_workspace
from fastnet.kernels.gemm import workspace_size
from fastnet.layers import Activation, AvgPool2D, Conv2D, Dense, Dropout, MaxPool2D, Weighted

IDENTITY = (ACT["identity"], 0.0, 0.0)
KINDS = {"dense": step.DENSE, "act": step.ACTIVATION, "dropout": step.DROPOUT, "conv": step.CONV,
         "maxpool": step.MAXPOOL, "avgpool": step.AVGPOOL}
WEIGHTED = ("dense", "conv")  # the ops with parameters; each applies f' of the op below in its dx pass


@dataclass
class Op:
    """One fused stage: a Dense or Conv2D layer (with its output activation), a pooling layer, an
    activation alone, or dropout."""

    kind: str  # a key of KINDS
    layer: object
    width: int  # output width: the product of ``shape``
    in_shape: tuple = ()  # one sample's input: (width,) or (channels, height, width)
    act: tuple = IDENTITY  # activation applied to the output
    grad_is_pre_act: bool = False  # the next weighted op already applied this op's activation derivative


def build_ops(layers, input_shape: tuple) -> list[Op]:
    """The layers as ops, for one sample of ``input_shape``; Flatten is none (buffers are flat already)."""
    ops: list[Op] = []
    shape = tuple(input_shape)
    for layer in layers:
        in_shape, shape = shape, layer.out_shape(shape)
        width = math.prod(shape)
        if isinstance(layer, (Dense, Conv2D)):
            ops.append(Op("dense" if isinstance(layer, Dense) else "conv", layer, width, in_shape))
        elif isinstance(layer, (MaxPool2D, AvgPool2D)):
            ops.append(Op("maxpool" if isinstance(layer, MaxPool2D) else "avgpool", layer, width, in_shape))
        elif isinstance(layer, Activation):
            if ops and ops[-1].kind in WEIGHTED and ops[-1].act == IDENTITY:
                ops[-1].act = layer.act
            else:
                ops.append(Op("act", layer, width, in_shape, act=layer.act))
        elif isinstance(layer, Dropout):
            ops.append(Op("dropout", layer, width, in_shape))
    for op, nxt in zip(ops, ops[1:]):
        op.grad_is_pre_act = op.act != IDENTITY and nxt.kind in WEIGHTED
    return ops


@dataclass
class Buffers:
    """The vectors one batch size needs: activations and gradients (``work``), dropout masks and labels."""

    work: np.ndarray  # model dtype: every (B, width) buffer, then the GEMMs' packing space
    masks: np.ndarray  # uint8: the dropout masks, drawn before each training step
    uniform: np.ndarray  # float32 scratch the masks are drawn through
    labels: np.ndarray  # int64 (B,): the batch's class labels
    weights: np.ndarray  # model dtype (B,): the batch's sample weights, when there are any


class Program:
    """A model's layers as the step's table, with buffers per batch size.

    ``backend`` picks the compiled step or its NumPy twin; both read the same table.
    """

    def __init__(self, layers, loss, dtype, input_shape: tuple, rng: np.random.Generator, backend: str):
        self.ops = build_ops(layers, input_shape)
        n_in = math.prod(input_shape)
        self.dtype, self.n_in, self.rng = np.dtype(dtype), n_in, rng
        self.loss_code, self.hits_code = step.LOSS[loss.kernel], step.HITS[loss.hits]
        self.loss_and_grad_kernel, self.forward_kernel = step.for_backend(backend)
        self.prog, self.consts = self._table(layers)
        # None prunes the image ops from the compiled step (see step.py): an MLP does not compile them
        self.images = True if any(op.kind in ("conv", "maxpool", "avgpool") for op in self.ops) else None
        self._cache: dict[int, Buffers] = {}
        n_out = self.ops[-1].width
        self.no_labels = np.zeros(0, np.int64)
        self.no_targets = np.zeros((0, n_out), self.dtype)
        self.no_weights = np.zeros(0, self.dtype)

    def _table(self, layers):
        ops = self.ops
        prog = np.zeros((len(ops), step.PROG_COLUMNS), np.int64)
        consts = np.zeros((len(ops), step.CONST_COLUMNS), np.float64)
        offsets, offset = {}, 0  # each weighted layer's weight and bias in the flat vectors, as the model lays them out
        for layer in layers:
            if isinstance(layer, Weighted):
                offsets[id(layer)] = (offset, offset + math.prod(layer.weight_shape))
                offset += layer.n_params
        col = self.n_in  # column 0 holds the batch
        in_col, in_width, grad_in_col, mask_col = 0, self.n_in, -1, 0
        first_weighted = next(i for i, op in enumerate(ops) if op.kind in WEIGHTED)
        for i, op in enumerate(ops):
            row, c = prog[i], consts[i]
            row[step.KIND], row[step.WIDTH], row[step.IN_WIDTH] = KINDS[op.kind], op.width, in_width
            row[step.ACT], c[step.P0], c[step.P1] = op.act
            row[step.IN_COL], row[step.OUT_COL], row[step.PRE] = in_col, col, op.grad_is_pre_act
            col += op.width
            if len(op.in_shape) == 3:
                row[step.CH_IN], row[step.HEIGHT], row[step.WIDE] = op.in_shape
            if op.kind in WEIGHTED:
                row[step.W_OFF], row[step.B_OFF] = offsets[id(op.layer)]
                row[step.N_W] = math.prod(op.layer.weight_shape)
                c[step.L1], c[step.L2] = op.layer.l1, op.layer.l2
                below = ops[i - 1] if i else None
                in_act = below.act if below is not None and below.grad_is_pre_act else IDENTITY
                row[step.IN_ACT], c[step.IN_P0], c[step.IN_P1] = in_act
            if op.kind == "conv":
                layer = op.layer
                row[step.K], row[step.STRIDE], row[step.PAD] = layer.kernel_size, layer.stride, layer.padding
                row[step.CH_OUT] = layer.out_channels
                row[step.COL_COL] = col  # im2col: C·K·K·P values per sample
                col += row[step.N_W] // layer.out_channels * (op.width // layer.out_channels)
                row[step.SCR_COL] = col  # the output, and then its gradient, as (O, B·P)
                col += op.width
            elif op.kind in ("maxpool", "avgpool"):
                row[step.K], row[step.STRIDE] = op.layer.size, op.layer.stride
            if op.kind in ("dropout", "maxpool"):  # the dropout mask, or max pooling's argmax
                row[step.MASK_COL] = mask_col
                mask_col += op.width
            if op.kind == "dropout":
                c[step.DROP_SCALE] = 1.0 / (1.0 - op.layer.p)
            row[step.GRAD_IN_COL] = grad_in_col if i > first_weighted else -1
            pass_through = op.kind == "act" and op.grad_is_pre_act  # the weighted op above applied f' already
            if pass_through and i > first_weighted:
                row[step.GRAD_COL] = grad_in_col
            else:
                row[step.GRAD_COL] = col
                col += op.width
            in_col, in_width, grad_in_col = row[step.OUT_COL], op.width, row[step.GRAD_COL]
        self.target_col = col
        self.cols = col + (0 if self.loss_code == step.SOFTMAX_CE else ops[-1].width)
        self.mask_cols = mask_col
        return prog, consts

    def workspace(self, batch: int) -> int:
        """Elements of the GEMMs' packing space for batch size ``batch``: the largest any product needs."""
        need = 0
        for op in self.prog[self.prog[:, step.KIND] == step.DENSE]:
            o, i = int(op[step.WIDTH]), int(op[step.IN_WIDTH])
            need = max(need, workspace_size(batch, o, i), workspace_size(o, i, batch), workspace_size(batch, i, o))
        for op in self.prog[self.prog[:, step.KIND] == step.CONV]:
            need = max(need, conv_workspace(batch, int(op[step.CH_OUT]), *(int(v) for v in op[step.CH_IN:step.PAD + 1])))
        return need

    def bytes_per_row(self) -> int:
        """About what ``buffers`` allocates per sample of a batch (its columns and weight, masks, label)."""
        return (self.cols + 1) * self.dtype.itemsize + self.mask_cols * 5 + 8

    def buffers(self, batch: int) -> Buffers:
        """The buffers for batch size ``batch``, allocated on first use and then reused."""
        if batch not in self._cache:
            if len(self._cache) >= 4:  # odd sizes from evaluate(): keep memory bounded
                self._cache.clear()
            self._cache[batch] = Buffers(aligned_zeros(self.cols * batch + self.workspace(batch), self.dtype),
                                         np.zeros(self.mask_cols * batch, np.uint8),
                                         np.zeros(self.mask_cols * batch, np.float32),
                                         np.zeros(batch, np.int64), np.zeros(batch, self.dtype))
        return self._cache[batch]

    def _draw_masks(self, buf: Buffers) -> None:
        """Keep each unit with probability 1 - p, per dropout op; drawn in float32 so every backend and
        dtype sees one mask."""
        batch = len(buf.labels)
        for op, row in zip(self.ops, self.prog):
            if op.kind == "dropout":
                span = slice(row[step.MASK_COL] * batch, (row[step.MASK_COL] + op.width) * batch)
                self.rng.random(dtype=np.float32, out=buf.uniform[span])
                np.greater_equal(buf.uniform[span], np.float32(op.layer.p), out=buf.masks[span].view(np.bool_))

    def run(self, x, y, idx, divisor, *, train: bool, scale: float = 1.0, penalties: bool = True,
            weights: np.ndarray | None = None):
        """One batch, ``x[idx]`` (scaled by 1/``divisor``) against ``y[idx]``: (mean loss, hits). With ``train``,
        dropout masks are drawn and the gradient fills the model's ``grads``. ``weights`` (N,), in the model's
        dtype, weighs each sample's loss: the loss is sum(weights[idx] · loss) / len(idx), Keras's
        "sum_over_batch_size"; hits are not weighted. None is no weights, bit for bit as before."""
        buf = self.buffers(len(idx))
        if train:
            self._draw_masks(buf)
        labels, targets = (y, self.no_targets) if self.loss_code == step.SOFTMAX_CE else (self.no_labels, y)
        loss, hits = self.loss_and_grad_kernel(
            self.prog, self.consts, self.params, self.grads, buf.work, buf.masks, buf.labels, buf.weights, x, labels,
            targets, self.no_weights if weights is None else weights, idx, divisor, self.target_col, self.cols,
            self.loss_code, self.hits_code, scale, penalties, train, self.images)
        return float(loss), int(hits)

    def outputs(self, x, idx, divisor) -> np.ndarray:
        """The network's outputs (B, n_out) for ``x[idx]``, dropout off: a view into the work buffer."""
        buf = self.buffers(len(idx))
        self.forward_kernel(self.prog, self.consts, self.params, buf.work, buf.masks, x, idx, divisor, self.cols,
                            False, self.images)
        last = self.prog[-1]
        start = last[step.OUT_COL] * len(idx)
        return buf.work[start:start + last[step.WIDTH] * len(idx)].reshape(len(idx), last[step.WIDTH])

    def bind(self, params: np.ndarray, grads: np.ndarray) -> None:
        """The model's flat parameter and gradient vectors, which the table's offsets index."""
        self.params, self.grads = params, grads
