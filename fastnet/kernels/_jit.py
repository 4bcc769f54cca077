"""The numba decorators every kernel uses, so cache and fastmath settings live in one place."""
from numba import njit

from ._cache import cache_kernel

# Reductions (dot products, sums) need reassociation to vectorise. We do not allow
# 'nnan'/'ninf': a NaN must stay a NaN so training can detect divergence.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


def _kernel_jit(**defaults):
    """``njit(**defaults)``, cached in fastnet's kernel cache folder (see _cache), not beside the source."""
    def decorate(fn=None, **options):
        if fn is None:  # with arguments: @pjit(fastmath=ELEMENTWISE)
            return lambda f: decorate(f, **options)
        return cache_kernel(njit(fn, **{**defaults, **options}))
    return decorate


# error_model="numpy": x / 0 gives inf or nan as in NumPy (and in the twins), instead of
# a Python ZeroDivisionError check whose branch stops a loop from vectorising.
jit = _kernel_jit(fastmath=FASTMATH, error_model="numpy")
"""Serial kernel: small or reduction-bound work where a thread launch costs more than it saves."""

pjit = _kernel_jit(fastmath=FASTMATH, error_model="numpy", parallel=True)
"""Parallel kernel: each thread owns whole output rows, so results never depend on thread count."""

# Element-wise kernels vectorise without fastmath, and must not have it: with 'reassoc'
# and 'contract', LLVM rewrote Adam's b2·v + (1-b2)·g² into a form that cancels,
# costing 2e-5 relative error in float32. They compile with IEEE semantics instead,
# e.g. ``@pjit(fastmath=ELEMENTWISE)``, and round exactly as their NumPy twins do.
ELEMENTWISE = False

# A helper that a kernel calls (rather than inlines) is compiled twice by numba: on its
# own, and again inside the kernel, whose object code is what the cache keeps. A process
# that compiled the kernel runs the first copy, one that loaded it from the cache runs the
# second, and 'reassoc' lets LLVM order a sum or product anew each time it optimises (it
# did: dx·y·(1 - y/a)·(1/b) came out in two orders, and a cold cache trained other weights
# than a warm one). So helpers that need no reduction compile with ORDERED: 'contract'
# alone fuses a multiply into the add written after it and reorders nothing, so both
# copies round alike. Usage: ``@jit(fastmath=ORDERED)``.
ORDERED = {"contract"}

PARALLEL_MIN_ELEMENTS = 1 << 15
"""Element-wise kernels below this size run on one thread: a parallel launch costs about
1.5 µs on a quiet machine (far more on a busy one), as much as the work itself
(SGD on 32k float32: 2.9 µs serial, 3.2 µs on 2 threads; 100k: 9.6 vs 6.7 µs)."""
