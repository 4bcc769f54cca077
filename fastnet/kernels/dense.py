"""Dense layer: Y = f(X·Wᵀ + b) forward, and its three backward products.

The weight is stored transposed, as (out, in) like torch.nn.Linear.

    forward      x (B, I), w (O, I), b (O,)      -> y (B, O) = f(x @ w.T + b)
    backward dx  dy (B, O), w (O, I), a (B, I)   -> dx (B, I) = (dy @ w) * f'(a)
    backward dw  dy (B, O), x (B, I)             -> dw (O, I) = dy.T @ x, db (O,) = sum_rows dy

The activation f is fused into the forward, and the derivative of the *previous* layer's
activation (whose output ``a`` is this layer's input) into dx, each as a pass over the
product while it is still in cache. Pass act=identity for a plain GEMM.

The products are the packed GEMMs of ``gemm.py``, which need a packing buffer: the ``*_into``
kernels take it (``work``, at least ``workspace_size`` elements, allocated once by the caller,
as the compiled step does); ``dense_forward`` and friends allocate it per call, for use on
their own. Every output element is computed in an order fixed by the shapes, so results are
bitwise the same whatever the thread count.
"""
import numpy as np

from ._jit import ELEMENTWISE, ORDERED, jit
from .activations import ACTIVATIONS_NP, DERIVATIVES_NP, IDENTITY, act_value, activation_backward, check_act
from .backend import twin
from .gemm import gemm_nn, gemm_nt, gemm_tn, workspace_size


@jit(fastmath=ELEMENTWISE)
def _bias_act(y, b, act, p0, p1):
    # y (B, O), b (O,) -> y = f(y + b), in one pass (serial, as the activations are)
    t = y.dtype.type
    c0, c1 = t(p0), t(p1)
    for r in range(y.shape[0]):
        for o in range(y.shape[1]):
            y[r, o] = act_value(y[r, o] + b[o], act, c0, c1)


# The compiled step calls these, so they compile with ORDERED (see _jit.py). Inlined into their callers
# (numba's inline="always"): each @jit function's callees are optimised again inside it, so fewer levels
# of calls cut the step's cold compile (by about a tenth for an MLP).
@jit(inline="always", fastmath=ORDERED)
def dense_forward_into(y, x, w, b, act, p0, p1, work):
    # x (B, I), w (O, I), b (O,) -> y (B, O) = f(x @ w.T + b); work: the GEMM's packing space
    gemm_nt(y, x, w, work)
    _bias_act(y, b, act, p0, p1)


@jit(inline="always", fastmath=ORDERED)
def dense_backward_dx_into(dx, dy, w, a, act, p0, p1, work):
    # dy (B, O), w (O, I), a (B, I) -> dx (B, I) = (dy @ w) * f'(a)
    gemm_nn(dx, dy, w, work)
    if act != IDENTITY:
        activation_backward(dx, dx, a, act, p0, p1)


@jit(inline="always", fastmath=ORDERED)
def dense_backward_dw_into(dw, db, dy, x, work):
    # dy (B, O), x (B, I) -> dw (O, I) = dy.T @ x, db (O,) = sum over rows of dy, in row order
    gemm_tn(dw, dy, x, work)
    db[:] = 0
    for r in range(dy.shape[0]):
        for o in range(dy.shape[1]):
            db[o] += dy[r, o]


@jit(fastmath=ORDERED)
def dense_forward(y, x, w, b, act, p0, p1):
    # x (B, I), w (O, I), b (O,) -> y (B, O) = f(x @ w.T + b)
    dense_forward_into(y, x, w, b, act, p0, p1, np.empty(workspace_size(x.shape[0], w.shape[0], x.shape[1]), y.dtype))


@jit(fastmath=ORDERED)
def dense_backward_dx(dx, dy, w, a, act, p0, p1):
    # dy (B, O), w (O, I), a (B, I) -> dx (B, I) = (dy @ w) * f'(a)
    work = np.empty(workspace_size(dy.shape[0], w.shape[1], w.shape[0]), dx.dtype)
    dense_backward_dx_into(dx, dy, w, a, act, p0, p1, work)


@jit(fastmath=ORDERED)
def dense_backward_dw(dw, db, dy, x):
    # dy (B, O), x (B, I) -> dw (O, I) = dy.T @ x, db (O,) = sum over rows of dy
    dense_backward_dw_into(dw, db, dy, x, np.empty(workspace_size(dw.shape[0], dw.shape[1], dy.shape[0]), dw.dtype))


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
