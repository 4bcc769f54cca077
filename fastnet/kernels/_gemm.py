"""Register-blocked micro-kernels shared by the dense GEMMs in ``dense.py``.

There are two shapes of inner loop, both running along a contiguous row (index i),
so that LLVM vectorises them (8 float32 lanes in a ymm register on AVX2/AVX-512):

* **dot tile** (``nt``, for ``x @ w.T``): a 4xNT block of outputs, each a dot
  product of an x row with a w row. 4·NT scalar accumulators become vector
  accumulators once LLVM vectorises the i loop (which the 'reassoc' fastmath flag
  allows); each step loads 4 x and NT w vectors for 4·NT FMAs, and the sums are
  folded horizontally once at the end. The accumulators must stay in registers:
  with 32 vector registers (AVX-512, whether LLVM picks ymm or zmm) the tile is 4x4;
  with 16 (AVX2) a 4x4 tile spilled 6 of its 16 accumulators to the stack in the
  inner loop, and 4x3 (12 accumulators) ran 1.4-1.6x faster (forward GEMMs on an AVX2 Zen 3).
* **axpy rows** (``nn``, for ``a @ m`` with m row-major): rows of the output are
  built as sums of scaled rows of m, c[j, :] += a[j, k] * m[k, :]. Four k's are
  folded into each pass over c, so every load/store of c is shared by 4 FMAs.
  The i loop is not a reduction, so it vectorises without 'reassoc': the sums are
  written in the order the FMAs run, c + a0*m0 + a1*m1 + ..., and the callers
  compile them with 'contract' alone (see ORDERED in ``_jit.py``).

Each output element is always computed by the same code path, in the same order,
whatever thread runs it: results do not depend on the thread count.

Timings that chose these shapes are in bench/KERNELS.md.
"""
from numba.core import config
from numba.core.codegen import get_host_cpu_features

from ._jit import jit


def vector_registers() -> int:
    """How many vector registers numba compiles for: 32 with AVX-512 (AVX-512VL also gives ymm16-31), else 16.

    The features are numba's own view of the CPU, NUMBA_CPU_FEATURES and NUMBA_ENABLE_AVX included."""
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return 32 if "+avx512f" in features.split(",") else 16


MR = 4  # rows per tile (x rows in nt, output rows in nn)
NR = 4  # k's folded per pass in nn
NT = 4 if vector_registers() == 32 else 3  # w rows per dot tile in nt: 4·NT accumulators, no spills


@jit(inline="always")
def dot(x, r, w, o):
    # x (B, I) row r . w (O, I) row o -> scalar; the remainder path of the dot tile
    s = x.dtype.type(0)
    for i in range(x.shape[1]):
        s += x[r, i] * w[o, i]
    return s


@jit(inline="always")
def dot_tile_4x4(y, x, r, w, o):
    # x (B, I), w (O, I) -> y[r:r+4, o:o+4] = x[r:r+4] @ w[o:o+4].T
    t = y.dtype.type
    s00 = s01 = s02 = s03 = t(0)
    s10 = s11 = s12 = s13 = t(0)
    s20 = s21 = s22 = s23 = t(0)
    s30 = s31 = s32 = s33 = t(0)
    for i in range(x.shape[1]):
        x0, x1, x2, x3 = x[r, i], x[r + 1, i], x[r + 2, i], x[r + 3, i]
        w0, w1, w2, w3 = w[o, i], w[o + 1, i], w[o + 2, i], w[o + 3, i]
        s00 += x0 * w0; s01 += x0 * w1; s02 += x0 * w2; s03 += x0 * w3  # noqa: E702
        s10 += x1 * w0; s11 += x1 * w1; s12 += x1 * w2; s13 += x1 * w3  # noqa: E702
        s20 += x2 * w0; s21 += x2 * w1; s22 += x2 * w2; s23 += x2 * w3  # noqa: E702
        s30 += x3 * w0; s31 += x3 * w1; s32 += x3 * w2; s33 += x3 * w3  # noqa: E702
    y[r, o], y[r, o + 1], y[r, o + 2], y[r, o + 3] = s00, s01, s02, s03
    y[r + 1, o], y[r + 1, o + 1], y[r + 1, o + 2], y[r + 1, o + 3] = s10, s11, s12, s13
    y[r + 2, o], y[r + 2, o + 1], y[r + 2, o + 2], y[r + 2, o + 3] = s20, s21, s22, s23
    y[r + 3, o], y[r + 3, o + 1], y[r + 3, o + 2], y[r + 3, o + 3] = s30, s31, s32, s33


@jit(inline="always")
def dot_tile_4x3(y, x, r, w, o):
    # x (B, I), w (O, I) -> y[r:r+4, o:o+3] = x[r:r+4] @ w[o:o+3].T
    t = y.dtype.type
    s00 = s01 = s02 = t(0)
    s10 = s11 = s12 = t(0)
    s20 = s21 = s22 = t(0)
    s30 = s31 = s32 = t(0)
    for i in range(x.shape[1]):
        x0, x1, x2, x3 = x[r, i], x[r + 1, i], x[r + 2, i], x[r + 3, i]
        w0, w1, w2 = w[o, i], w[o + 1, i], w[o + 2, i]
        s00 += x0 * w0; s01 += x0 * w1; s02 += x0 * w2  # noqa: E702
        s10 += x1 * w0; s11 += x1 * w1; s12 += x1 * w2  # noqa: E702
        s20 += x2 * w0; s21 += x2 * w1; s22 += x2 * w2  # noqa: E702
        s30 += x3 * w0; s31 += x3 * w1; s32 += x3 * w2  # noqa: E702
    y[r, o], y[r, o + 1], y[r, o + 2] = s00, s01, s02
    y[r + 1, o], y[r + 1, o + 1], y[r + 1, o + 2] = s10, s11, s12
    y[r + 2, o], y[r + 2, o + 1], y[r + 2, o + 2] = s20, s21, s22
    y[r + 3, o], y[r + 3, o + 1], y[r + 3, o + 2] = s30, s31, s32


dot_tile = dot_tile_4x4 if NT == 4 else dot_tile_4x3  # chosen once per process, for the CPU numba compiles for


@jit(inline="always")
def nt_rows(y, x, w, r0, r1):
    # x (B, I), w (O, I) -> y[r0:r1, :] = x[r0:r1] @ w.T, for r1 - r0 <= MR
    n_out = w.shape[0]
    o_full = n_out - n_out % NT
    if r1 - r0 == MR:
        for o in range(0, o_full, NT):
            dot_tile(y, x, r0, w, o)
    else:  # the last, partial block of rows: plain dot products
        o_full = 0
    for r in range(r0, r1):  # remainder: columns past the last full tile (every column, in a partial block)
        for o in range(o_full, n_out):
            y[r, o] = dot(x, r, w, o)


@jit(inline="always")
def nn_rows(c, a, m, j0, j1):
    # a (J, K), m (K, N) -> c[j0:j1, :] = a[j0:j1] @ m, for j1 - j0 <= MR
    # a may be a transposed view (dy.T for dW); m must have contiguous rows.
    n_k, n = m.shape
    for j in range(j0, j1):
        for i in range(n):
            c[j, i] = 0
    k_full = n_k - n_k % NR
    if j1 - j0 == MR:
        for k in range(0, k_full, NR):
            # 4x4 block of coefficients a[j0:j0+4, k:k+4], held in registers
            a00, a01, a02, a03 = a[j0, k], a[j0, k + 1], a[j0, k + 2], a[j0, k + 3]
            a10, a11, a12, a13 = a[j0 + 1, k], a[j0 + 1, k + 1], a[j0 + 1, k + 2], a[j0 + 1, k + 3]
            a20, a21, a22, a23 = a[j0 + 2, k], a[j0 + 2, k + 1], a[j0 + 2, k + 2], a[j0 + 2, k + 3]
            a30, a31, a32, a33 = a[j0 + 3, k], a[j0 + 3, k + 1], a[j0 + 3, k + 2], a[j0 + 3, k + 3]
            for i in range(n):
                m0, m1, m2, m3 = m[k, i], m[k + 1, i], m[k + 2, i], m[k + 3, i]
                c[j0, i] = c[j0, i] + a00 * m0 + a01 * m1 + a02 * m2 + a03 * m3
                c[j0 + 1, i] = c[j0 + 1, i] + a10 * m0 + a11 * m1 + a12 * m2 + a13 * m3
                c[j0 + 2, i] = c[j0 + 2, i] + a20 * m0 + a21 * m1 + a22 * m2 + a23 * m3
                c[j0 + 3, i] = c[j0 + 3, i] + a30 * m0 + a31 * m1 + a32 * m2 + a33 * m3
    else:  # the last, partial block of rows: one row at a time, still 4 k's per pass
        for j in range(j0, j1):
            for k in range(0, k_full, NR):
                a0, a1, a2, a3 = a[j, k], a[j, k + 1], a[j, k + 2], a[j, k + 3]
                for i in range(n):
                    c[j, i] = c[j, i] + a0 * m[k, i] + a1 * m[k + 1, i] + a2 * m[k + 2, i] + a3 * m[k + 3, i]
    for j in range(j0, j1):  # remainder: k's past the last full block, one at a time
        for k in range(k_full, n_k):
            s = a[j, k]
            for i in range(n):
                c[j, i] += s * m[k, i]
