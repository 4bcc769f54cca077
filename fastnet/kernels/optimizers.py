"""Optimizer updates, in place over a flat parameter vector.

The model keeps all parameters in one contiguous vector (and the gradients in
another), so one call updates every layer. The conventions follow PyTorch:

    sgd       w -= lr g
    momentum  v = mu v + g;  w -= lr (g + mu v) if nesterov else lr v
    adam      m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
              w -= lr / bc1 * m / (sqrt(v / bc2) + eps),  bc = 1 - beta^step (from the caller)

Each element is updated independently, so the parallel loop gives the same bits
for any thread count; below PARALLEL_MIN_ELEMENTS the loop runs on one thread.
"""
import numpy as np
from numba import prange

from ._jit import ELEMENTWISE, PARALLEL_MIN_ELEMENTS, jit, pjit
from .backend import twin


@jit(inline="always", fastmath=ELEMENTWISE)
def _sgd_at(i, w, g, step):
    w[i] -= step * g[i]


@pjit(fastmath=ELEMENTWISE)
def sgd(w, g, lr):
    # w (N,), g (N,) -> w -= lr g
    step = w.dtype.type(lr)
    if w.size < PARALLEL_MIN_ELEMENTS:
        for i in range(w.size):
            _sgd_at(i, w, g, step)
    else:
        for i in prange(w.size):
            _sgd_at(i, w, g, step)


@jit(inline="always", fastmath=ELEMENTWISE)
def _momentum_at(i, w, v, g, step, m, nesterov):
    vi = m * v[i] + g[i]
    v[i] = vi
    w[i] -= step * (g[i] + m * vi if nesterov else vi)


@pjit(fastmath=ELEMENTWISE)
def sgd_momentum(w, v, g, lr, mu, nesterov):
    # w (N,), v (N,) velocity, g (N,) -> v, w updated in place
    t = w.dtype.type
    step, m = t(lr), t(mu)
    if w.size < PARALLEL_MIN_ELEMENTS:
        for i in range(w.size):
            _momentum_at(i, w, v, g, step, m, nesterov)
    else:
        for i in prange(w.size):
            _momentum_at(i, w, v, g, step, m, nesterov)


@jit(inline="always", fastmath=ELEMENTWISE)
def _adam_at(i, w, m, v, g, step, b1, b2, e, inv_sqrt_bc2):
    one = type(step)(1)
    gi = g[i]
    mi = b1 * m[i] + (one - b1) * gi
    vi = b2 * v[i] + (one - b2) * gi * gi
    m[i] = mi
    v[i] = vi
    w[i] -= step * mi / (np.sqrt(vi) * inv_sqrt_bc2 + e)


@pjit(fastmath=ELEMENTWISE)
def adam(w, m, v, g, lr, beta1, beta2, eps, bc1, bc2):
    # w (N,), m (N,), v (N,) moments, g (N,) -> w, m, v updated in place
    t = w.dtype.type
    b1, b2, e = t(beta1), t(beta2), t(eps)
    step = t(lr / bc1)
    inv_sqrt_bc2 = t(1.0 / np.sqrt(bc2))
    if w.size < PARALLEL_MIN_ELEMENTS:
        for i in range(w.size):
            _adam_at(i, w, m, v, g, step, b1, b2, e, inv_sqrt_bc2)
    else:
        for i in prange(w.size):
            _adam_at(i, w, m, v, g, step, b1, b2, e, inv_sqrt_bc2)


def sgd_np(w, g, lr):
    w -= w.dtype.type(lr) * g


def sgd_momentum_np(w, v, g, lr, mu, nesterov):
    t = w.dtype.type
    v *= t(mu)
    v += g
    w -= t(lr) * (g + t(mu) * v if nesterov else v)


def adam_np(w, m, v, g, lr, beta1, beta2, eps, bc1, bc2):
    t = w.dtype.type
    b1, b2 = t(beta1), t(beta2)
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * g * g
    w -= t(lr / bc1) * m / (np.sqrt(v) * t(1.0 / np.sqrt(bc2)) + t(eps))


TWINS = [
    twin(sgd, sgd_np, "w[N] | g[N]"),
    twin(sgd_momentum, sgd_momentum_np, "w[N] v[N] | g[N]"),
    twin(adam, adam_np, "w[N] m[N] v[N] | g[N]"),
]
