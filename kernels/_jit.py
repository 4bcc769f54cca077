"""The numba decorators every kernel uses, so cache and fastmath settings live in one place."""
from functools import partial

from numba import njit

# Reductions (dot products, sums) need reassociation to vectorise. We do not allow
# 'nnan'/'ninf': a NaN must stay a NaN so training can detect divergence.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

jit = partial(njit, cache=True, fastmath=FASTMATH)
"""Serial kernel: small or reduction-bound work where a thread launch costs more than it saves."""

pjit = partial(njit, cache=True, fastmath=FASTMATH, parallel=True)
"""Parallel kernel: each thread owns whole output rows, so results never depend on thread count."""
