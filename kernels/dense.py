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
"""
import numpy as np
from numba import prange

from ._jit import pjit
from .activations import ACTIVATIONS_NP, DERIVATIVES_NP, IDENTITY, act_grad, act_value, check_act
from .backend import twin


@pjit
def dense_forward(y, x, w, b, act, p0, p1):
    # x (B, I), w (O, I), b (O,) -> y (B, O) = f(x @ w.T + b)
    t = y.dtype.type
    c0, c1 = t(p0), t(p1)
    n_in, n_out = x.shape[1], w.shape[0]
    for r in prange(x.shape[0]):
        for o in range(n_out):
            s = t(0)
            for i in range(n_in):
                s += x[r, i] * w[o, i]
            y[r, o] = act_value(s + b[o], act, c0, c1)


@pjit
def dense_backward_dx(dx, dy, w, a, act, p0, p1):
    # dy (B, O), w (O, I), a (B, I) -> dx (B, I) = (dy @ w) * f'(a)
    t = dx.dtype.type
    c0, c1 = t(p0), t(p1)
    n_in, n_out = w.shape[1], w.shape[0]
    for r in prange(dy.shape[0]):
        for i in range(n_in):
            dx[r, i] = 0
        for o in range(n_out):
            d = dy[r, o]
            for i in range(n_in):
                dx[r, i] += d * w[o, i]
        if act != IDENTITY:
            for i in range(n_in):
                dx[r, i] *= act_grad(a[r, i], act, c0, c1)


@pjit
def dense_backward_dw(dw, db, dy, x):
    # dy (B, O), x (B, I) -> dw (O, I) = dy.T @ x, db (O,) = sum over rows of dy
    t = dw.dtype.type
    n_rows, n_in = x.shape
    for o in prange(dw.shape[0]):  # one thread owns each output row: no shared reduction
        for i in range(n_in):
            dw[o, i] = 0
        s = t(0)
        for r in range(n_rows):
            d = dy[r, o]
            s += d
            for i in range(n_in):
                dw[o, i] += d * x[r, i]
        db[o] = s


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
