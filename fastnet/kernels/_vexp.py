"""``vexp(x)``: e**x for float32/float64 scalars inside numba kernels, written so LLVM vectorises it.

Why: numba from pip has no SVML (pip's llvmlite is not built with it), so ``np.exp`` in a
kernel is a scalar libm call per element and the loop around it stays scalar, while
NumPy's own exp is SIMD. ``vexp`` is plain arithmetic (no calls, no branches) that
LLVM vectorises, one lane per element: 8 float32 lanes in a ymm register where LLVM
uses 256-bit vectors (AVX2, and the AVX-512 CPUs it tunes for 256 bits), about 30
instructions per 8 results.

Method:

    k = round(x / ln2)                          as an integer, from x clamped to a safe range
    r = x - k*C1 - k*C2                         Cody-Waite: C1 + C2 = ln2, C1 short so k*C1 is exact
    e**r    float32: Cephes expf, 1 + r + r^2 P(r), P of degree 5 (6 coefficients)
            float64: fdlibm/FreeBSD exp, c = r - r^2 P(r^2), e**r = 1 - ((lo - r c / (2 - c)) - hi)
                     with r = hi - lo kept in two parts. (Cephes' rational 1 + 2 r P / (Q - r P)
                     is off by up to 1.7 ulp; this form by 0.9 ulp, for the same one division.)
    e**x = e**r * 2**k1 * 2**k2                 k1 = k >> 1, k2 = k - k1; 2**k from integer bits

Scaling in two steps keeps both factors normal numbers, so results in the denormal
range round once, correctly, and e**r * 2**128 (float32, x just below ln(FLT_MAX))
does not overflow early.

Measured error over 10**7 random points (tests/test_vexp.py checks 10**6): float32 at
most 1.01 ulp from the true value (NumPy's own SIMD expf is off by up to 2.5 ulp, so
the two differ by up to 3 ulp, 2.6e-7 relative); float64 at most 0.90 ulp from the
true value, 1 ulp (2.2e-16 relative) from np.exp.

Edges match np.exp without a branch, so the loop still vectorises: x is clamped to
[LO, HI] before the float -> int conversion (LLVM's fptosi of NaN or inf is poison),
and the clamp ends are chosen so that the ordinary formula itself gives +inf for
x >= HI (overflow) and 0 for x <= LO (underflow below half the smallest denormal).
So +inf -> inf, -inf -> 0; a NaN is selected back in at the end.

Type dispatch: ``vexp`` is a Python stub (it calls np.exp when run uncompiled) with a
numba ``@overload`` that picks the float32 or float64 implementation at typing time.

Floating-point flags: the implementations are compiled on their own with
fastmath={'contract'} (FMA allowed, nothing else) and error_model='numpy' (no
zero-division check on the float64 division: that branch stopped the loop
vectorising), and LLVM inlines them into the kernel. LLVM fast-math flags are per
instruction, so the kernels' 'reassoc' never reaches this code. That matters: with
reassoc LLVM may fold k*C1 + k*C2 into k*(C1 + C2) and undo the Cody-Waite split
and fdlibm's hi/lo bookkeeping (compiled with the kernels' flags, the error grows from
1.0 to 4.5 ulp in float32 and from 0.9 to 1.6 ulp in float64). So do not use
numba-level inline='always' here: that compiles this code with the caller's flags.

Cache note: numba's on-disk cache checks only the source file of the kernel it holds, so
after editing this file (or another whose functions kernels inline, such as activations.py)
the cached kernels keep the old code until fastnet's kernel cache is emptied: delete the
folder ``fastnet.kernels.cache_dir()`` names (see _cache.py: $NUMBA_CACHE_DIR when set,
else numba/ in the user cache folder, e.g. ~/.cache/fastnet/numba on Linux), or run with
NUMBA_CACHE_DIR set to an empty folder.
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core.errors import TypingError
from numba.extending import intrinsic, overload

__all__ = ["vexp"]


@intrinsic
def _int_bits_as_float(typingctx, bits):
    """Reinterpret the bits of an int32 as a float32, or of an int64 as a float64 (LLVM bitcast)."""
    if bits == types.int32:
        sig, llty = types.float32(bits), ir.FloatType()
    elif bits == types.int64:
        sig, llty = types.float64(bits), ir.DoubleType()
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llty)

    return sig, codegen


def vexp(x):
    """e**x, the same as np.exp(x) to 1 ulp; inside numba code it compiles to vectorisable arithmetic."""
    return np.exp(x)


# ---- float32: Cephes expf -------------------------------------------------------------

_F = np.float32
F_HI = _F(89.0)  # > ln(FLT_MAX) = 88.72: e**r * 2**128 overflows to inf
F_LO = _F(-104.0)  # < ln(2**-150) = -103.97: below half the smallest denormal, rounds to 0
F_LOG2E = _F(1.44269504088896341)
F_HALF = _F(0.5)
F_ONE = _F(1.0)
F_C1 = _F(0.693359375)  # 355/512: 9 bits, so k*C1 is exact for |k| <= 150
F_C2 = _F(-2.12194440e-4)
F_P0, F_P1, F_P2 = _F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3)
F_P3, F_P4, F_P5 = _F(4.1665795894e-2), _F(1.6666665459e-1), _F(5.0000001201e-1)
F_BIAS = np.int32(127)
F_SHIFT = np.int32(23)


def _vexp_f32(x):
    xc = x if x > F_LO else F_LO  # a NaN fails both tests and becomes F_LO: no NaN reaches the int conversion
    xc = xc if xc < F_HI else F_HI
    kf = np.floor(xc * F_LOG2E + F_HALF)
    r = xc - kf * F_C1
    r = r - kf * F_C2
    r2 = r * r
    p = ((((F_P0 * r + F_P1) * r + F_P2) * r + F_P3) * r + F_P4) * r + F_P5
    er = p * r2 + r + F_ONE
    k = np.int32(kf)
    k1 = np.int32(k >> np.int32(1))  # numba widens int32 arithmetic to int64: cast back each time
    k2 = np.int32(k - k1)
    s1 = _int_bits_as_float(np.int32(np.int32(k1 + F_BIAS) << F_SHIFT))
    s2 = _int_bits_as_float(np.int32(np.int32(k2 + F_BIAS) << F_SHIFT))
    y = er * s1 * s2
    return y if x == x else x


# ---- float64: fdlibm exp ---------------------------------------------------------------

_D = np.float64
D_HI = _D(710.0)  # > ln(DBL_MAX) = 709.78
D_LO = _D(-746.0)  # < ln(2**-1075) = -745.13
D_LOG2E = _D(1.4426950408889634073599)
D_HALF = _D(0.5)
D_ONE = _D(1.0)
D_TWO = _D(2.0)
D_LN2HI = _D(6.93147180369123816490e-01)  # high bits of ln2: k*LN2HI is exact for |k| <= 2**11
D_LN2LO = _D(1.90821492927058770002e-10)
D_P1, D_P2 = _D(1.66666666666666019037e-01), _D(-2.77777777770155933842e-03)
D_P3, D_P4 = _D(6.61375632143793436117e-05), _D(-1.65339022054652515390e-06)
D_P5 = _D(4.13813679705723846039e-08)
D_BIAS = np.int64(1023)
D_SHIFT = np.int64(52)


def _vexp_f64(x):
    xc = x if x > D_LO else D_LO
    xc = xc if xc < D_HI else D_HI
    kf = np.floor(xc * D_LOG2E + D_HALF)
    hi = xc - kf * D_LN2HI  # exact
    lo = kf * D_LN2LO
    r = hi - lo
    r2 = r * r
    c = r - r2 * ((((D_P5 * r2 + D_P4) * r2 + D_P3) * r2 + D_P2) * r2 + D_P1)
    er = D_ONE - ((lo - (r * c) / (D_TWO - c)) - hi)
    k = np.int64(kf)
    k1 = k >> np.int64(1)
    k2 = k - k1
    s1 = _int_bits_as_float((k1 + D_BIAS) << D_SHIFT)
    s2 = _int_bits_as_float((k2 + D_BIAS) << D_SHIFT)
    y = er * s1 * s2
    return y if x == x else x


@overload(vexp, jit_options={"fastmath": {"contract"}, "error_model": "numpy"})
def _vexp_overload(x):
    if x == types.float32:
        return _vexp_f32
    if x == types.float64:
        return _vexp_f64
    raise TypingError(f"vexp() takes a float32 or float64 scalar, not {x}")
