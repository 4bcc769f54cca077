"""Activations, forward and backward, as scalar functions shared by every kernel.

Codes (``ACT``) select the activation inside a kernel, so one compiled kernel
serves all of them and the dense kernel can fuse any of them into its epilogue.
Two float parameters p0, p1 carry the activation's constants:

    identity     y = z
    sigmoid      y = a / (1 + exp(-z / b))        p0 = a, p1 = 1/b (a = b = 1: the logistic;
                                                  passing 1/b saves a division per element)
    tanh         y = tanh(z)
    relu         y = max(z, 0)
    leaky_relu   y = z if z > 0 else alpha * z    p0 = alpha >= 0

Every derivative is computed from the saved output y, never from z:
    sigmoid      dy/dz = y (1 - y / a) · (1/b)    (a = b = 1: sigma (1 - sigma))
    tanh         dy/dz = 1 - y^2
    relu         dy/dz = 1 if y > 0 else 0
    leaky_relu   dy/dz = 1 if y > 0 else alpha
"""
import numpy as np
from ._jit import ELEMENTWISE, jit
from ._vexp import vexp
from .backend import twin

ACT = {"identity": 0, "sigmoid": 1, "tanh": 2, "relu": 3, "leaky_relu": 4}
IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU = (ACT[k] for k in ACT)


@jit(inline="always")
def act_value(z, act, p0, p1):
    """y = f(z) for one element; p0, p1 already cast to z's dtype."""
    if act == SIGMOID:
        return p0 / (type(z)(1) + vexp(-z * p1))  # exp overflow gives inf, so y -> 0: no NaN
    if act == TANH:
        return np.tanh(z)
    if act == RELU:
        return type(z)(0) if z <= 0 else z  # a NaN fails z <= 0 and passes through, as in np.maximum
    if act == LEAKY_RELU:
        return z if z > 0 else p0 * z
    return z


@jit(inline="always")
def act_grad(y, act, p0, p1):
    """dy/dz for one element, from the output y."""
    one = type(y)(1)
    if act == SIGMOID:
        return y * (one - y / p0) * p1
    if act == TANH:
        return one - y * y
    if act == RELU:
        return one if y > 0 else type(y)(0)
    if act == LEAKY_RELU:
        return one if y > 0 else p0
    return one


# Serial: inside the compiled step a thread launch per activation would cost more than the pass
# itself (memory-bound, one read and one write per element), and every launch is a point where
# a busy machine can hold the step up. Only the GEMMs use threads.
@jit(fastmath=ELEMENTWISE)
def activation_forward(y, z, act, p0, p1):
    # z (N, M) -> y (N, M) = f(z); y may be z itself
    t = z.dtype.type
    c0, c1 = t(p0), t(p1)
    for r in range(z.shape[0]):
        for c in range(z.shape[1]):
            y[r, c] = act_value(z[r, c], act, c0, c1)


@jit(fastmath=ELEMENTWISE)
def activation_backward(dz, dy, y, act, p0, p1):
    # dy (N, M), y (N, M) saved output -> dz (N, M) = dy * f'(z); dz may be dy itself
    t = y.dtype.type
    c0, c1 = t(p0), t(p1)
    for r in range(y.shape[0]):
        for c in range(y.shape[1]):
            dz[r, c] = dy[r, c] * act_grad(y[r, c], act, c0, c1)


# ---- NumPy twins: the same math, vectorised, in place ----------------------------

def _sigmoid_np(y, z, a, inv_b):
    np.multiply(z, -inv_b, out=y)
    with np.errstate(over="ignore"):  # exp(+large) = inf gives y = 0, as in the kernel
        np.exp(y, out=y)
    y += 1
    np.divide(a, y, out=y)


def _leaky_np(y, z, alpha, _):
    np.multiply(z, np.where(z > 0, z.dtype.type(1), alpha), out=y)


ACTIVATIONS_NP = {
    IDENTITY: lambda y, z, p0, p1: np.copyto(y, z),
    SIGMOID: _sigmoid_np,
    TANH: lambda y, z, p0, p1: np.tanh(z, out=y),
    RELU: lambda y, z, p0, p1: np.maximum(z, 0, out=y),
    LEAKY_RELU: _leaky_np,
}

DERIVATIVES_NP = {  # dz *= f'(z), computed from the output y
    IDENTITY: lambda dz, y, p0, p1: None,
    SIGMOID: lambda dz, y, a, inv_b: np.multiply(dz, y * (1 - y / a) * inv_b, out=dz),
    TANH: lambda dz, y, p0, p1: np.multiply(dz, 1 - y * y, out=dz),
    RELU: lambda dz, y, p0, p1: np.multiply(dz, y > 0, out=dz),
    LEAKY_RELU: lambda dz, y, alpha, _: np.multiply(dz, np.where(y > 0, y.dtype.type(1), alpha), out=dz),
}


def activation_forward_np(y, z, act, p0, p1):
    t = z.dtype.type
    ACTIVATIONS_NP[act](y, z, t(p0), t(p1))


def activation_backward_np(dz, dy, y, act, p0, p1):
    t = y.dtype.type
    np.copyto(dz, dy)
    DERIVATIVES_NP[act](dz, y, t(p0), t(p1))


def check_act(act, p0, p1):
    """Value check shared by every kernel that takes an activation code."""
    if isinstance(act, (bool, np.bool_)) or not isinstance(act, (int, np.integer)) or act not in ACTIVATIONS_NP:
        raise ValueError(f"argument 'act' is {act!r}, not an activation code; use one of fastnet.kernels.ACT: {ACT}")
    if act == SIGMOID and (not p0 > 0 or not p1 > 0):
        raise ValueError(f"sigmoid needs a > 0 and 1/b > 0, got a={p0}, 1/b={p1}")
    if act == LEAKY_RELU and not p0 >= 0:
        raise ValueError(f"leaky_relu needs alpha >= 0, got {p0}")


TWINS = [
    twin(activation_forward, activation_forward_np, "y[N,M] | z[N,M]", lambda y, z, *a: check_act(*a)),
    twin(activation_backward, activation_backward_np, "dz[N,M] | dy[N,M] y[N,M]", lambda dz, dy, y, *a: check_act(*a)),
]
