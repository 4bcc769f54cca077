"""The training step as one compiled function: gather, forward, loss, backward, for any stack of layers.

Like llm.c's ``gpt2_forward``/``gpt2_backward``, one function walks the layers, and the
network is data: a table ``prog`` with one row per op (a Dense or convolution layer with its
fused activation, a pooling layer, an activation alone, or dropout) and ``consts`` with its float constants. So
one compiled artifact serves every MLP, and a step is one call (the optimizer's update
is the second).

    prog[i]    KIND, WIDTH, IN_WIDTH, W_OFF, B_OFF, ACT, IN_COL, OUT_COL, GRAD_IN_COL,
               GRAD_COL, PRE, MASK_COL, IN_ACT, N_W, CH_IN, HEIGHT, WIDE, K, STRIDE, PAD, CH_OUT,
               COL_COL, SCR_COL
    consts[i]  P0, P1, DROP_SCALE, L1, L2, IN_P0, IN_P1

A convolution (CONV) or pooling op (MAXPOOL, AVGPOOL) reads its input image's geometry from
CH_IN, HEIGHT, WIDE and its window's from K, STRIDE, PAD (see conv.py and pool.py); a convolution
has CH_OUT maps, its im2col buffer at COL_COL and its transposed output and gradient at SCR_COL,
both in work; max pooling keeps its argmax in ``masks`` at MASK_COL. N_W is the number of weights
of an op with parameters. The input of a Dense layer may be an image: buffers are flat, NCHW.

Every activation buffer lives in ``work``: the buffer of a width-w op whose column is c
is ``work[c·B : (c + w)·B]`` as (B, w), so the table holds for every batch size B. The
batch (B, n_in) is at column 0, the gathered float targets at column ``target_col``, and
the GEMMs' packing space after ``cols · B`` (``cols``: the columns of all the buffers; both
are passed in). W_OFF and B_OFF index the flat ``params`` and ``grads`` vectors.
GRAD_IN_COL is the column of the gradient with respect to the op's input (-1 for the
first op with parameters), and PRE says that the Dense op above already multiplied this
op's gradient by f'.

    loss_and_grad  x (N, n_in) any dtype, idx (B,) -> grads filled, returns (mean loss · scale
                   [+ penalties], accuracy hits)
                   sample_weight (N,), gathered by idx as x is (empty: no weights), weighs each
                   sample's loss and gradient. The reduction is Keras's "sum_over_batch_size":
                   sum over the batch of weight · loss, divided by the batch size B (not by the
                   sum of the weights). The hits stay unweighted, as Keras's ``metrics`` are
                   (only its ``weighted_metrics`` see the weights). A weight of 1 gives exactly
                   the bits of no weight.
    forward        x (N, n_in), idx (B,) -> the last op's output in work, dropout off

Fusions: the bias and activation in one pass after the forward GEMM, f' of the op below
in one pass after the dx GEMM (or col2im), the loss with its gradient. Threads live in the
GEMMs and in the convolution and pooling passes (conv.py, pool.py), each with a split fixed by
the shapes, so the bits never depend on the thread count.
"""
import numpy as np

from ._jit import ORDERED, jit
from .activations import ACTIVATIONS_NP, DERIVATIVES_NP, IDENTITY, activation_backward, activation_forward
from .conv import conv_backward_into, conv_backward_np_step, conv_forward_into, conv_forward_np
from .batching import argmax_hits, argmax_hits_np, gather_rows, gather_rows_np, threshold_hits, threshold_hits_np
from .dense import (dense_backward_dw_into, dense_backward_dw_np, dense_backward_dx_into, dense_backward_dx_np,
                    dense_forward_into, dense_forward_np)
from .pool import (avgpool_backward, avgpool_backward_np, avgpool_forward, avgpool_forward_np, maxpool_backward,
                   maxpool_backward_np, maxpool_forward, maxpool_forward_np)
from .losses import (mse_weighted, mse_weighted_np, sigmoid_bce_weighted, sigmoid_bce_weighted_np,
                     softmax_ce_weighted, softmax_ce_weighted_np)
from .regularization import dropout, dropout_np, penalty, penalty_np

# prog columns
(KIND, WIDTH, IN_WIDTH, W_OFF, B_OFF, ACT, IN_COL, OUT_COL, GRAD_IN_COL, GRAD_COL, PRE, MASK_COL, IN_ACT, N_W,
 CH_IN, HEIGHT, WIDE, K, STRIDE, PAD, CH_OUT, COL_COL, SCR_COL) = range(23)
PROG_COLUMNS = 23
# consts columns
P0, P1, DROP_SCALE, L1, L2, IN_P0, IN_P1 = range(7)
CONST_COLUMNS = 7
# op kinds
DENSE, ACTIVATION, DROPOUT, CONV, MAXPOOL, AVGPOOL = 0, 1, 2, 3, 4, 5
# losses and accuracy counts
LOSS = {"softmax_ce": 0, "sigmoid_bce": 1, "mse": 2}
HITS = {None: 0, "argmax_hits": 1, "threshold_hits": 2}
SOFTMAX_CE, SIGMOID_BCE, MSE = 0, 1, 2
NO_HITS, ARGMAX, THRESHOLD = 0, 1, 2


@jit(inline="always", fastmath=ORDERED)
def _view(work, col, batch, width):
    # the (batch, width) buffer at column col of work
    return work[col * batch:(col + width) * batch].reshape((batch, width))


@jit(inline="always", fastmath=ORDERED)
def _col(work, op, batch):
    # a convolution's im2col buffer (C·K·K, B·P): its width per sample is C·K·K·P = N_W / CH_OUT · P
    q, p = op[N_W] // op[CH_OUT], op[WIDTH] // op[CH_OUT]
    return work[op[COL_COL] * batch:(op[COL_COL] + q * p) * batch].reshape((q, batch * p))


@jit(inline="always", fastmath=ORDERED)
def _scratch(work, op, batch):
    # a convolution's output or gradient in (O, B·P) order
    p = op[WIDTH] // op[CH_OUT]
    return work[op[SCR_COL] * batch:(op[SCR_COL] + op[WIDTH]) * batch].reshape((op[CH_OUT], batch * p))


@jit(inline="always", fastmath=ORDERED)
def _image_forward(op, c, params, work, masks, a, y, batch, pack):
    # one convolution or pooling op: a (B, C·H·W) -> y (B, width)
    if op[KIND] == CONV:
        w = params[op[W_OFF]:op[W_OFF] + op[N_W]].reshape((op[CH_OUT], op[N_W] // op[CH_OUT]))
        conv_forward_into(y, a, w, params[op[B_OFF]:op[B_OFF] + op[CH_OUT]], op[CH_IN], op[HEIGHT], op[WIDE], op[K],
                          op[STRIDE], op[PAD], op[ACT], c[P0], c[P1], _col(work, op, batch), _scratch(work, op, batch),
                          pack)
    elif op[KIND] == MAXPOOL:
        maxpool_forward(y, _view(masks, op[MASK_COL], batch, op[WIDTH]), a, op[CH_IN], op[HEIGHT], op[WIDE], op[K],
                        op[STRIDE])
    else:
        avgpool_forward(y, a, op[CH_IN], op[HEIGHT], op[WIDE], op[K], op[STRIDE])


@jit(inline="always", fastmath=ORDERED)
def _image_backward(op, c, params, grads, work, masks, g, y, a, batch, pack):
    # one convolution or pooling op: g (B, width) -> its input's gradient at GRAD_IN_COL, and a convolution's dw, db
    below = op[GRAD_IN_COL]
    if op[KIND] == CONV:
        shape = (op[CH_OUT], op[N_W] // op[CH_OUT])
        conv_backward_into(_view(work, below, batch, op[IN_WIDTH]) if below >= 0 else a,
                           grads[op[W_OFF]:op[W_OFF] + op[N_W]].reshape(shape), grads[op[B_OFF]:op[B_OFF] + op[CH_OUT]],
                           g, params[op[W_OFF]:op[W_OFF] + op[N_W]].reshape(shape), y, a, _col(work, op, batch),
                           _scratch(work, op, batch), op[CH_IN], op[HEIGHT], op[WIDE], op[K], op[STRIDE], op[PAD],
                           IDENTITY if op[PRE] else op[ACT], c[P0], c[P1], op[IN_ACT], c[IN_P0], c[IN_P1], below >= 0,
                           pack)
    elif op[KIND] == MAXPOOL:
        maxpool_backward(_view(work, below, batch, op[IN_WIDTH]), g, _view(masks, op[MASK_COL], batch, op[WIDTH]),
                         op[CH_IN], op[HEIGHT], op[WIDE], op[K], op[STRIDE])
    else:
        avgpool_backward(_view(work, below, batch, op[IN_WIDTH]), g, op[CH_IN], op[HEIGHT], op[WIDE], op[K],
                         op[STRIDE])


# _image_forward and _image_backward are inlined (see dense.py) for a shorter cold compile.
# ``images`` is None for a network without convolution or pooling: numba then prunes the branches that
# call _image_forward and _image_backward, so an MLP never compiles them (a cold start would take twice
# as long); any other value (True) compiles the variant that runs them.
@jit(fastmath=ORDERED)
def forward(prog, consts, params, work, masks, x, idx, divisor, cols, train, images):
    # x (N, n_in), idx (B,) -> every op's output in work (the last op's is the network's); dropout if train
    batch = idx.shape[0]
    pack = work[cols * batch:]
    gather_rows(_view(work, 0, batch, prog[0, IN_WIDTH]), x, idx, divisor)
    for i in range(prog.shape[0]):
        op, c = prog[i], consts[i]
        a = _view(work, op[IN_COL], batch, op[IN_WIDTH])
        y = _view(work, op[OUT_COL], batch, op[WIDTH])
        if op[KIND] == DENSE:
            w = params[op[W_OFF]:op[W_OFF] + op[N_W]].reshape((op[WIDTH], op[IN_WIDTH]))
            b = params[op[B_OFF]:op[B_OFF] + op[WIDTH]]
            dense_forward_into(y, a, w, b, op[ACT], c[P0], c[P1], pack)
        elif op[KIND] == ACTIVATION:
            activation_forward(y, a, op[ACT], c[P0], c[P1])
        elif op[KIND] == DROPOUT:
            if train:
                dropout(y, a, _view(masks, op[MASK_COL], batch, op[WIDTH]), c[DROP_SCALE])
            else:
                y[:] = a
        elif images is not None:
            _image_forward(op, c, params, work, masks, a, y, batch, pack)


@jit(fastmath=ORDERED)
def loss_and_grad(prog, consts, params, grads, work, masks, labels_buf, weights_buf, x, labels, targets,
                  sample_weight, idx, divisor, target_col, cols, loss_code, hits_code, scale, penalties, train, images):
    # x (N, n_in), labels (N,) or targets (N, M), sample_weight (N,) or (0,), idx (B,) -> (loss, hits);
    # grads (P,) filled when train
    batch = idx.shape[0]
    forward(prog, consts, params, work, masks, x, idx, divisor, cols, train, images)
    pack = work[cols * batch:]
    last = prog.shape[0] - 1
    n_out = prog[last, WIDTH]
    out = _view(work, prog[last, OUT_COL], batch, n_out)
    g_out = _view(work, prog[last, GRAD_COL], batch, n_out)
    tb = _view(work, target_col, batch, n_out if loss_code != SOFTMAX_CE else 0)
    for r in range(batch):
        if loss_code == SOFTMAX_CE:
            labels_buf[r] = labels[idx[r]]
        else:
            for c in range(tb.shape[1]):
                tb[r, c] = targets[idx[r], c]
    lab = labels_buf[:batch]
    w = weights_buf[:batch if sample_weight.shape[0] else 0]
    for r in range(w.shape[0]):
        w[r] = sample_weight[idx[r]]
    if loss_code == SOFTMAX_CE:
        loss = softmax_ce_weighted(g_out, out, lab, w)
    elif loss_code == SIGMOID_BCE:
        loss = sigmoid_bce_weighted(g_out, out, tb, w)
    else:
        loss = mse_weighted(g_out, out, tb, w)
    hits = 0
    if hits_code == ARGMAX:
        hits = argmax_hits(out, lab)
    elif hits_code == THRESHOLD:
        hits = threshold_hits(out, tb)
    if not train:
        return loss, hits
    t = out.dtype.type
    if scale != 1.0:
        loss *= t(scale)
        g_out *= t(scale)  # backward is linear in it: every gradient scales
    first = 0
    while prog[first, KIND] != DENSE and prog[first, KIND] != CONV:
        first += 1
    for i in range(last, first - 1, -1):
        op, c = prog[i], consts[i]
        g = _view(work, op[GRAD_COL], batch, op[WIDTH])
        y = _view(work, op[OUT_COL], batch, op[WIDTH])
        a = _view(work, op[IN_COL], batch, op[IN_WIDTH])
        below = op[GRAD_IN_COL]
        if op[KIND] == DENSE:
            if op[ACT] != IDENTITY and not op[PRE]:
                activation_backward(g, g, y, op[ACT], c[P0], c[P1])
            dw = grads[op[W_OFF]:op[W_OFF] + op[N_W]].reshape((op[WIDTH], op[IN_WIDTH]))
            dense_backward_dw_into(dw, grads[op[B_OFF]:op[B_OFF] + op[WIDTH]], g, a, pack)
            if below >= 0:
                w = params[op[W_OFF]:op[W_OFF] + op[N_W]].reshape((op[WIDTH], op[IN_WIDTH]))
                dense_backward_dx_into(_view(work, below, batch, op[IN_WIDTH]), g, w, a, op[IN_ACT], c[IN_P0],
                                       c[IN_P1], pack)
        elif op[KIND] == ACTIVATION:
            if not op[PRE]:
                activation_backward(_view(work, below, batch, op[IN_WIDTH]), g, y, op[ACT], c[P0], c[P1])
        elif op[KIND] != DROPOUT:
            if images is not None:
                _image_backward(op, c, params, grads, work, masks, g, y, a, batch, pack)
        else:
            dropout(_view(work, below, batch, op[IN_WIDTH]), g, _view(masks, op[MASK_COL], batch, op[WIDTH]),
                    c[DROP_SCALE])
    if penalties:
        for i in range(first, last + 1):
            op, c = prog[i], consts[i]
            if (op[KIND] == DENSE or op[KIND] == CONV) and (c[L1] != 0 or c[L2] != 0):
                n_w = op[N_W]
                loss += penalty(grads[op[W_OFF]:op[W_OFF] + n_w], params[op[W_OFF]:op[W_OFF] + n_w], c[L1], c[L2])
    return loss, hits


# ---- NumPy twins: the same walk over the table, with the NumPy kernels ---------------

def _view_np(work, col, batch, width):
    return work[col * batch:(col + width) * batch].reshape(batch, width)


def forward_np(prog, consts, params, work, masks, x, idx, divisor, cols, train, images):
    batch = len(idx)
    gather_rows_np(_view_np(work, 0, batch, prog[0, IN_WIDTH]), x, idx, divisor)
    t = work.dtype.type
    for op, c in zip(prog, consts):
        a = _view_np(work, op[IN_COL], batch, op[IN_WIDTH])
        y = _view_np(work, op[OUT_COL], batch, op[WIDTH])
        if op[KIND] == DENSE:
            dense_forward_np(y, a, params[op[W_OFF]:op[W_OFF] + op[N_W]].reshape(op[WIDTH], op[IN_WIDTH]),
                             params[op[B_OFF]:op[B_OFF] + op[WIDTH]], op[ACT], c[P0], c[P1])
        elif op[KIND] == CONV:
            conv_forward_np(y, a, params[op[W_OFF]:op[W_OFF] + op[N_W]].reshape(op[CH_OUT], -1),
                            params[op[B_OFF]:op[B_OFF] + op[CH_OUT]], *op[CH_IN:PAD + 1], op[ACT], c[P0], c[P1])
        elif op[KIND] == MAXPOOL:
            maxpool_forward_np(y, _view_np(masks, op[MASK_COL], batch, op[WIDTH]), a, *op[CH_IN:STRIDE + 1])
        elif op[KIND] == AVGPOOL:
            avgpool_forward_np(y, a, *op[CH_IN:STRIDE + 1])
        elif op[KIND] == ACTIVATION:
            ACTIVATIONS_NP[op[ACT]](y, a, t(c[P0]), t(c[P1]))
        elif train:
            dropout_np(y, a, _view_np(masks, op[MASK_COL], batch, op[WIDTH]), c[DROP_SCALE])
        else:
            y[...] = a


def loss_and_grad_np(prog, consts, params, grads, work, masks, labels_buf, weights_buf, x, labels, targets,
                     sample_weight, idx, divisor, target_col, cols, loss_code, hits_code, scale, penalties, train,
                     images):
    batch = len(idx)
    forward_np(prog, consts, params, work, masks, x, idx, divisor, cols, train, images)
    last, t = len(prog) - 1, work.dtype.type
    n_out = prog[last, WIDTH]
    out = _view_np(work, prog[last, OUT_COL], batch, n_out)
    g_out = _view_np(work, prog[last, GRAD_COL], batch, n_out)
    tb = _view_np(work, target_col, batch, n_out if loss_code != SOFTMAX_CE else 0)
    lab = labels_buf[:batch]
    w = weights_buf[:batch if sample_weight.size else 0]
    w[...] = sample_weight[idx[:len(w)]]
    if loss_code == SOFTMAX_CE:
        lab[...] = labels[idx]
        loss = softmax_ce_weighted_np(g_out, out, lab, w)
    else:
        tb[...] = targets[idx]
        loss = (sigmoid_bce_weighted_np if loss_code == SIGMOID_BCE else mse_weighted_np)(g_out, out, tb, w)
    hits = {NO_HITS: lambda: 0, ARGMAX: lambda: argmax_hits_np(out, lab),
            THRESHOLD: lambda: threshold_hits_np(out, tb)}[hits_code]()
    if not train:
        return loss, hits
    if scale != 1.0:
        loss *= t(scale)
        g_out *= t(scale)
    first = int(np.flatnonzero((prog[:, KIND] == DENSE) | (prog[:, KIND] == CONV))[0])
    for i in range(last, first - 1, -1):
        op, c = prog[i], consts[i]
        g = _view_np(work, op[GRAD_COL], batch, op[WIDTH])
        y = _view_np(work, op[OUT_COL], batch, op[WIDTH])
        a = _view_np(work, op[IN_COL], batch, op[IN_WIDTH])
        if op[KIND] == CONV:
            w = params[op[W_OFF]:op[W_OFF] + op[N_W]].reshape(op[CH_OUT], -1)
            dx = _view_np(work, op[GRAD_IN_COL], batch, op[IN_WIDTH]) if op[GRAD_IN_COL] >= 0 else None
            conv_backward_np_step(dx, grads[op[W_OFF]:op[W_OFF] + op[N_W]].reshape(w.shape),
                                  grads[op[B_OFF]:op[B_OFF] + op[CH_OUT]], g, a, w, y, a, *op[CH_IN:PAD + 1],
                                  IDENTITY if op[PRE] else op[ACT], c[P0], c[P1], op[IN_ACT], c[IN_P0], c[IN_P1])
        elif op[KIND] == MAXPOOL:
            maxpool_backward_np(_view_np(work, op[GRAD_IN_COL], batch, op[IN_WIDTH]), g,
                                _view_np(masks, op[MASK_COL], batch, op[WIDTH]), *op[CH_IN:STRIDE + 1])
        elif op[KIND] == AVGPOOL:
            avgpool_backward_np(_view_np(work, op[GRAD_IN_COL], batch, op[IN_WIDTH]), g, *op[CH_IN:STRIDE + 1])
        elif op[KIND] == DENSE:
            if op[ACT] != IDENTITY and not op[PRE]:
                DERIVATIVES_NP[op[ACT]](g, y, t(c[P0]), t(c[P1]))
            n_w = op[N_W]
            dense_backward_dw_np(grads[op[W_OFF]:op[W_OFF] + n_w].reshape(op[WIDTH], op[IN_WIDTH]),
                                 grads[op[B_OFF]:op[B_OFF] + op[WIDTH]], g, a)
            if op[GRAD_IN_COL] >= 0:
                dense_backward_dx_np(_view_np(work, op[GRAD_IN_COL], batch, op[IN_WIDTH]), g,
                                     params[op[W_OFF]:op[W_OFF] + n_w].reshape(op[WIDTH], op[IN_WIDTH]), a,
                                     op[IN_ACT], c[IN_P0], c[IN_P1])
        elif op[KIND] == ACTIVATION:
            if not op[PRE]:
                dx = _view_np(work, op[GRAD_IN_COL], batch, op[IN_WIDTH])
                dx[...] = g
                DERIVATIVES_NP[op[ACT]](dx, y, t(c[P0]), t(c[P1]))
        else:
            dropout_np(_view_np(work, op[GRAD_IN_COL], batch, op[IN_WIDTH]), g,
                       _view_np(masks, op[MASK_COL], batch, op[WIDTH]), c[DROP_SCALE])
    if penalties:
        for op, c in zip(prog[first:], consts[first:]):
            if op[KIND] in (DENSE, CONV) and (c[L1] or c[L2]):
                n_w = op[N_W]
                loss += penalty_np(grads[op[W_OFF]:op[W_OFF] + n_w], params[op[W_OFF]:op[W_OFF] + n_w], c[L1], c[L2])
    return loss, hits


def for_backend(name: str):
    """(loss_and_grad, forward) of backend ``name``: the compiled step, or its NumPy twin."""
    return (loss_and_grad, forward) if name == "numba" else (loss_and_grad_np, forward_np)
