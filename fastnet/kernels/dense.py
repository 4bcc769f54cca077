"""Dense layer: Y = f(X·Wᵀ + b) forward, and its three backward products.

The weight is stored transposed, as (out, in) like torch.nn.Linear, so that the
forward GEMM is a dot product of two contiguous rows.

    forward      x (B, I), w (O, I), b (O,)      -> y (B, O) = f(x @ w.T + b)
    backward dx  dy (B, O), w (O, I), a (B, I)   -> dx (B, I) = (dy @ w) * f'(a)
    backward dw  dy (B, O), x (B, I)             -> dw (O, I) = dy.T @ x, db (O,) = sum_rows dy

The activation f is fused into the forward epilogue, and the derivative of the
*previous* layer's activation (whose output ``a`` is this layer's input) is fused
into the dx epilogue, so neither costs an extra pass over memory. Pass
act=identity for a plain GEMM.

Speed: the products are register-blocked (see ``_gemm.py``) and split across
threads by blocks of 4 output rows, and small products run serially, where a
thread launch would cost more than it saves. Every output element is computed by
one thread, in an order fixed by the shapes alone, so results are bitwise the same
whatever the thread count. Timings are in bench/KERNELS.md.
"""
import numpy as np
from numba import prange

from ._blocks import Blocked, block_at
from ._gemm import MR, nn_rows, nt_rows
from ._jit import ORDERED, jit, pjit
from .activations import ACTIVATIONS_NP, DERIVATIVES_NP, IDENTITY, act_grad, act_value, check_act
from .backend import twin

# Below this many multiply-adds a product runs on one thread: at 128x128x10 a
# launch costs more than it saves (bench/KERNELS.md, "serial vs parallel").
PARALLEL_MIN_MACS = 1 << 20


# Each kernel is a loop over blocks of rows that calls its block function by address
# (_blocks.py): numba compiles the block once, not again into every layer its parallel loop
# is lowered to, and the serial and the parallel loop share it. prange hands its body a
# uint64 index and range an int64; the block takes an int64. The dx and dW blocks need no
# 'reassoc' (their vector loops are not reductions; db's strided column sums do not
# vectorise) and compile with ORDERED; the forward block keeps it, as its dot products
# need it to vectorise.
@jit
def _forward_block(y, x, w, b, act, p0, p1, rb):
    # rows r0:r1 of y (B, O) = f(x[r0:r1] @ w.T + b), the bias and activation applied while the rows are in cache
    t = y.dtype.type
    c0, c1 = t(p0), t(p1)
    r0 = rb * MR
    r1 = min(r0 + MR, x.shape[0])
    nt_rows(y, x, w, r0, r1)
    for r in range(r0, r1):
        for o in range(w.shape[0]):
            y[r, o] = act_value(y[r, o] + b[o], act, c0, c1)


@pjit
def _dense_forward(block, y, x, w, b, act, p0, p1):
    # x (B, I), w (O, I), b (O,) -> y (B, O) = f(x @ w.T + b); block: _forward_block's address
    run = block_at(block, (y, x, w, b, act, p0, p1))
    n_blocks = (x.shape[0] + MR - 1) // MR  # blocks of 4 rows of y, the last maybe partial
    if x.shape[0] * x.shape[1] * w.shape[0] < PARALLEL_MIN_MACS:
        for rb in range(n_blocks):
            run(y, x, w, b, act, p0, p1, rb)
    else:
        for rb in prange(n_blocks):
            run(y, x, w, b, act, p0, p1, np.int64(rb))


dense_forward = Blocked("dense_forward", _dense_forward, _forward_block)


@jit(fastmath=ORDERED)
def _dx_block(dx, dy, w, a, act, p0, p1, rb):
    # rows r0:r1 of dx (B, I) = (dy[r0:r1] @ w) * f'(a[r0:r1])
    t = dx.dtype.type
    c0, c1 = t(p0), t(p1)
    r0 = rb * MR
    r1 = min(r0 + MR, dy.shape[0])
    nn_rows(dx, dy, w, r0, r1)
    if act != IDENTITY:
        for r in range(r0, r1):
            for i in range(dx.shape[1]):
                dx[r, i] *= act_grad(a[r, i], act, c0, c1)


@pjit
def _dense_backward_dx(block, dx, dy, w, a, act, p0, p1):
    # dy (B, O), w (O, I), a (B, I) -> dx (B, I) = (dy @ w) * f'(a); block: _dx_block's address
    run = block_at(block, (dx, dy, w, a, act, p0, p1))
    n_blocks = (dy.shape[0] + MR - 1) // MR  # blocks of 4 rows of dx
    if dy.shape[0] * w.shape[0] * w.shape[1] < PARALLEL_MIN_MACS:
        for rb in range(n_blocks):
            run(dx, dy, w, a, act, p0, p1, rb)
    else:
        for rb in prange(n_blocks):
            run(dx, dy, w, a, act, p0, p1, np.int64(rb))


dense_backward_dx = Blocked("dense_backward_dx", _dense_backward_dx, _dx_block)


@jit(fastmath=ORDERED)
def _dw_block(dw, db, dy, x, ob):
    # rows o0:o1 of dw (O, I) = dy[:, o0:o1].T @ x, and db[o0:o1] = column sums of dy
    t = dw.dtype.type
    o0 = ob * MR
    o1 = min(o0 + MR, dw.shape[0])
    nn_rows(dw, dy.T, x, o0, o1)  # dy.T (O, B) is a strided view: no copy
    for o in range(o0, o1):
        s = t(0)
        for r in range(dy.shape[0]):
            s += dy[r, o]
        db[o] = s


@pjit
def _dense_backward_dw(block, dw, db, dy, x):
    # dy (B, O), x (B, I) -> dw (O, I) = dy.T @ x, db (O,) = sum over rows of dy; block: _dw_block's address
    run = block_at(block, (dw, db, dy, x))
    n_blocks = (dw.shape[0] + MR - 1) // MR  # blocks of 4 rows of dw: one thread owns each, no shared reduction
    if x.shape[0] * x.shape[1] * dw.shape[0] < PARALLEL_MIN_MACS:
        for ob in range(n_blocks):
            run(dw, db, dy, x, ob)
    else:
        for ob in prange(n_blocks):
            run(dw, db, dy, x, np.int64(ob))


dense_backward_dw = Blocked("dense_backward_dw", _dense_backward_dw, _dw_block)


# ---- NumPy twins -----------------------------------------------------------------

def dense_forward_np(y, x, w, b, act, p0, p1):
    t = y.dtype.type
    np.matmul(x, w.T, out=y)
    y += b
    ACTIVATIONS_NP[act](y, y, t(p0), t(p1))


def dense_backward_dx_np(dx, dy, w, a, act, p0, p1):
    t = dx.dtype.type
    np.matmul(dy, w, out=dx)
    DERIVATIVES_NP[act](dx, a, t(p0), t(p1))


def dense_backward_dw_np(dw, db, dy, x):
    np.matmul(dy.T, x, out=dw)
    np.sum(dy, axis=0, out=db)


TWINS = [
    twin(dense_forward, dense_forward_np, "y[B,O] | x[B,I] w[O,I] b[O]", lambda y, x, w, b, *a: check_act(*a)),
    twin(dense_backward_dx, dense_backward_dx_np, "dx[B,I] | dy[B,O] w[O,I] a[B,I]",
         lambda dx, dy, w, a, *act: check_act(*act)),
    twin(dense_backward_dw, dense_backward_dw_np, "dw[O,I] db[O] | dy[B,O] x[B,I]"),
]
