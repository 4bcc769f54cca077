"""Compute kernels: numba forward/backward kernels, each with a NumPy twin.

Each op lives in one file with its forward and backward side by side, the numba
kernel above its NumPy twin:

    step.py            the training step: one compiled walk over any stack of layers, built from the rest
    gemm.py            packed GEMMs with register-tiled micro-kernels
    dense.py           Y = f(X·Wᵀ + b) and its dx, dw/db products
    conv.py            2-D convolution as im2col and one packed GEMM per batch, bias and activation fused
    pool.py            2-D max pooling (its argmax kept for the backward) and average pooling
    activations.py     sigmoid (generalised), tanh, relu, leaky relu
    losses.py          softmax+cross-entropy, MSE, sigmoid+BCE, each fused with its gradient
    regularization.py  dropout, L1/L2 penalty gradients
    optimizers.py      SGD, momentum/Nesterov, Adam updates
    batching.py        gather a mini-batch (scaling uint8 images), count accuracy hits

``get_backend("numba")`` and ``get_backend("numpy")`` give the two sets. Compiled kernels
are cached in ``cache_dir()``, a per-user folder (or $NUMBA_CACHE_DIR), never in the package.
"""
from ._env import check_jit, check_numba_env  # first, keep it so: it reads numba's settings before numba does
from . import activations, batching, conv, dense, losses, optimizers, pool, regularization
from ._cache import cache_dir, caching
from ._pool import start_pool
from .activations import ACT
from .backend import Backend, Twin, lookup, make_backends

TWINS: list[Twin] = [
    t for module in (dense, conv, pool, activations, losses, regularization, optimizers, batching) for t in module.TWINS
]
BACKENDS: dict[str, Backend] = make_backends(TWINS)


def get_backend(name: str) -> Backend:
    """The kernels of backend ``name`` ("numba" or "numpy"); ConfigError for anything else,
    and for "numba" when numba's thread settings in the environment are unusable."""
    backend = lookup(BACKENDS, name)
    if backend.name == "numba":
        check_numba_env()
        check_jit()
        # numba's threads before any kernel runs: a kernel loaded from the cache over the parallel GEMM,
        # in a process that had not launched them, crashed ('Symbol not found: allocate_sched')
        start_pool()
    return backend


__all__ = ["ACT", "BACKENDS", "Backend", "TWINS", "cache_dir", "caching", "check_numba_env",
           "get_backend"]
