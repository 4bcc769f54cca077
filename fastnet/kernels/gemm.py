"""Packed GEMMs for the compiled training step: C = op(A)·op(B) with a BLIS-style micro-kernel.

    gemm_nt(c, a, b, work)   a (M, K), b (N, K)  -> c (M, N) = a @ b.T    forward:   y  = x @ W.T
    gemm_nn(c, a, b, work)   a (M, K), b (K, N)  -> c (M, N) = a @ b      backward:  dx = dy @ W
    gemm_tn(c, a, b, work)   a (K, M), b (K, N)  -> c (M, N) = a.T @ b    backward:  dW = dy.T @ x

float32 or float64, all four arrays of one dtype; c, a and b C-contiguous 2-D, ``work`` 1-D with at
least ``workspace_size(M, N, K)`` elements, allocated once by the caller; c must not overlap a, b or
work. They are ordinary numba functions, callable from Python and from numba code; one compiled
copy per dtype serves every shape and all three layouts.

Register tile. The micro-kernel holds an MR x NR block of C in vector registers. For each k it
loads NR/lanes vectors of packed B, broadcasts MR scalars of packed A, and issues MR·NR/lanes
fused multiply-adds, one per accumulator. The tile is as large as the register file allows, so
every loaded vector feeds many FMAs and there are enough independent accumulators to cover the
FMA latency (4 cycles, 2 FMAs per cycle):

    AVX-512 (32 zmm)  MR x NR = 12 x 2 vectors: 24 accumulators + 2 B vectors + 1 broadcast = 27
                      registers; float32 12 x 32, float64 12 x 16
    AVX2    (16 ymm)  6 x 2 vectors: 12 accumulators + 2 B + 1 broadcast = 15 registers (BLIS's
                      haswell sgemm/dgemm shape); float32 6 x 16, float64 6 x 8

The tile follows the CPU features numba compiles for (``_gemm.vector_registers``), so
NUMBA_CPU_NAME / NUMBA_CPU_FEATURES choose it too. The FMAs are explicit ``llvm.fma`` calls on
LLVM vectors, emitted by an ``@intrinsic``: LLVM's own vectoriser does not find this tile.

Narrow products. When C is much narrower than a tile (the 10-wide output layer: N = 10 fills 10
of 32 columns), the kernel computes c.T = op(B).T @ op(A).T instead, into work, and copies it
into c: N then runs down a 12-row panel (10 of 12 used) and M along the vectors. The choice
depends on the shapes only: C.T when it pads fewer than 4/5 as many elements to whole tiles.

Packing. op(A) is copied into row panels of MR rows and op(B) into column panels of NR columns,
k-major, so that the micro-kernel reads both with unit stride:

    A panel p:  work[a0 + p·MRP·KP + k·MRP + i] = op(A)[p·MR + i, k]     i < MR
    B panel q:  work[b0 + q·NR·KP + k·NR + j]  = op(B)[k, q·NR + j]

Rows and columns past M or N are zeros. MRP (A's panel stride per k) and KP (rows of k per panel)
are MR and K rounded up to whole blocks of T = 32 bytes / itemsize (8 float32, 4 float64), so the
packing loops store whole vectors and need no masked stores (slow on AMD's AVX2: with 6-row panels
stored masked, packing 128 x 784 took 4x as long); the padding is never read. Where the source
runs along k (a of nt and nn, b of nt) a panel is a transpose, made T x T at a time in registers:
T half-rows are loaded as T/2 vectors (row i in the low 128 bits, row i + T/2 in the high), and
in-lane interleaves transpose them. Otherwise it is a copy of contiguous rows. a0 is the first
element of ``work`` on a 64-byte boundary. One case is not packed: when M fits in one panel (dW
of the 10-wide layer, M = 10) and op(B) = b has rows along N, each B panel would be read once, so
the micro-kernel reads b in place (whole panels; the edge panel is packed): 30% off dW there.

K blocking. The micro-kernel runs over at most KC = 2 KiB / itemsize values of k at a time
(K cut into equal blocks, 784 = 2 x 392), stores its tile of C and continues from it with the
next block, so that the slice of an A panel that consecutive tiles re-read stays in cache
(16 x 392 float32 = 25 KiB, the L1 holds 32). Measured, KC hardly matters here (see KC_BYTES).

Threads. One parallel loop, run twice (numba compiles its body once), split by the shapes only:

    1. packing: at most PACK_UNITS units, each packing one slice of K of every A and every B
       panel, so that they cost the same; op(B) is packed once and shared by all threads
    2. tiles: the MR x NR tiles in at most TILE_CHUNKS runs of consecutive tiles (every tile
       costs the same, edge tiles included, so the runs balance), in row-major order, or
       column-major when the B panels are at least twice the A panels: consecutive tiles share
       the larger panel and the smaller one streams (dW = dy.T @ x of 784-128-10: 3-4% faster
       on 2 threads)

Products under PARALLEL_MIN_MACS multiply-adds run both phases on the calling thread.

Bits. Every element of C is one chain of fused multiply-adds in k order from zero,
c = fma(a[i,K-1], b[K-1,j], ... fma(a[i,0], b[0,j], 0)); between K blocks the running sum is
stored in C at full precision and loaded back, which rounds nothing. So C depends on a and b
only: not on the thread count, the split, the tile, the K blocking, the C.T path, the compile
path (no fast-math flag can reorder an ``llvm.fma`` call) or the vector width (the AVX2 and the
AVX-512 builds agree bitwise). BLAS sums in another order, so the NumPy twins agree to rounding,
not bitwise.

Why IR for the packing loops too: numba checks each index of ``work`` for a negative value
(wraparound), and with those checks LLVM turned the packing copies into gathers and scatters.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core.errors import TypingError
from numba.extending import intrinsic

from ._gemm import vector_registers
from ._jit import jit, pjit

if vector_registers() == 32:  # AVX-512
    VECTOR_BYTES, MR, NR_VECTORS = 64, 12, 2
else:  # AVX2 (and, slowly, anything older: LLVM splits the vectors and calls fma())
    VECTOR_BYTES, MR, NR_VECTORS = 32, 6, 2

BLOCK_BYTES = 32
"""The packing loops move T = BLOCK_BYTES / itemsize elements at a time (a T x T block when transposing)."""

KC_BYTES = 2048
"""K block: at most KC_BYTES / itemsize values of k (512 float32, 256 float64) per micro-kernel call.
For 128 x 128 x 784 float32 on one Zen 4 thread, 640, 1024, 2048 and 3136 bytes took 276, 270,
266 and 264 µs: the A slice stays in L1 or L2 either way."""

PACK_UNITS, PACK_MIN_K = 8, 16
"""The parallel packing loop has at most PACK_UNITS units, each a slice of at least PACK_MIN_K k's."""

TILE_CHUNKS = 32
"""The parallel loop over tiles runs at most this many runs of consecutive tiles: enough for an even
split over a few threads, few enough that each run's own cost (~0.1 µs) stays small (one task per
tile, 275 of them for 128 x 784 x 32, took 15% longer)."""

PARALLEL_MIN_MACS = 1 << 19
"""Products under this many multiply-adds run on the calling thread, as two parallel loops cost a few
µs: 64 x 64 x 128 (2^19) took 13.3 µs on 2 threads and 12.8 on 1, 64 x 128 x 128 22.3 and 24.3,
128 x 128 x 128 32.7 and 42.3 (Zen 4, idle)."""

ALIGN_BYTES = 64  # packed panels start on a cache line

__all__ = ["gemm_nn", "gemm_nn_np", "gemm_nt", "gemm_nt_np", "gemm_tn", "gemm_tn_np", "tile", "workspace_size"]


def tile(dtype) -> tuple[int, int]:
    """The register tile (MR, NR) for ``dtype`` on this CPU: NR is NR_VECTORS vectors of VECTOR_BYTES."""
    return MR, NR_VECTORS * VECTOR_BYTES // np.dtype(dtype).itemsize


# ---- LLVM IR helpers ---------------------------------------------------------------------------
# Offsets and sizes are in elements, as i64.

_I1, _I32, _I64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)


def _float_type(dtype):
    if dtype == types.float32:
        return ir.FloatType()
    if dtype == types.float64:
        return ir.DoubleType()
    raise TypingError(f"fastnet gemm: float32 or float64 arrays only, not {dtype}")


def _check_arrays(arrays):
    """Typing-time check of an intrinsic's arrays: C-contiguous, one float dtype, which it returns."""
    dtype = arrays[0].dtype
    for arr in arrays:
        if not isinstance(arr, types.Array) or arr.layout != "C":
            raise TypingError(f"fastnet gemm: arrays must be C-contiguous, got {arr}")
        if arr.dtype != dtype:
            raise TypingError(f"fastnet gemm: all arrays must have one dtype, got {dtype} and {arr.dtype}")
    _float_type(dtype)
    return dtype


def _declare(module, name, fnty):
    fn = module.globals.get(name)
    return fn if fn is not None else ir.Function(module, fnty, name)


class _Emit:
    """IR for vectors of one float type: plain, masked and fused operations on element pointers."""

    def __init__(self, builder, dtype):
        self.b, self.fty = builder, _float_type(dtype)
        self.size = dtype.bitwidth // 8

    def vty(self, lanes):
        return ir.VectorType(self.fty, lanes)

    def _name(self, base, vty):  # llvm.fma.v16f32 and the like
        return f"{base}.v{vty.count}f{self.size * 8}"

    def at(self, ptr, offset):  # &ptr[offset]
        return self.b.gep(ptr, [offset], source_etype=self.fty)

    def load(self, ptr, lanes):
        vty = self.vty(lanes)
        return self.b.load(self.b.bitcast(ptr, vty.as_pointer()), typ=vty, align=self.size)

    def store(self, vec, ptr):
        self.b.store(vec, self.b.bitcast(ptr, vec.type.as_pointer()), align=self.size)

    def _masked(self, op, vty):
        ptr = vty.as_pointer()
        suffix = "p0" if ptr.is_opaque else "p0" + self._name("", vty)[1:]
        mty = ir.VectorType(_I1, vty.count)
        fnty = (ir.FunctionType(vty, [ptr, _I32, mty, vty]) if op == "load" else
                ir.FunctionType(ir.VoidType(), [vty, ptr, _I32, mty]))
        return _declare(self.b.module, f"{self._name(f'llvm.masked.{op}', vty)}.{suffix}", fnty)

    def masked_load(self, ptr, mask):  # lanes off in the mask read nothing and give 0
        vty = self.vty(mask.type.count)
        return self.b.call(self._masked("load", vty), [self.b.bitcast(ptr, vty.as_pointer()), _I32(self.size), mask,
                                                       ir.Constant(vty, [0.0] * vty.count)])

    def masked_store(self, vec, ptr, mask):  # lanes off in the mask write nothing
        self.b.call(self._masked("store", vec.type), [vec, self.b.bitcast(ptr, vec.type.as_pointer()),
                                                      _I32(self.size), mask])

    def fma(self, x, y, z):  # x·y + z rounded once
        fn = _declare(self.b.module, self._name("llvm.fma", x.type), ir.FunctionType(x.type, [x.type] * 3))
        return self.b.call(fn, [x, y, z])

    def splat(self, value, lanes):
        vty = ir.VectorType(value.type, lanes)
        one = self.b.insert_element(ir.Constant(vty, ir.Undefined), value, _I32(0))
        return self.b.shuffle_vector(one, ir.Constant(vty, ir.Undefined),
                                     ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes))

    def below(self, n, lanes, start=0):
        """Mask of the lanes whose index start + lane is below n (an i64)."""
        iota = ir.Constant(ir.VectorType(_I64, lanes), [start + i for i in range(lanes)])
        return self.b.icmp_signed("<", iota, self.splat(n, lanes))


def _loop(builder, start, stop, step, body):
    """for (i = start; i < stop; i += step) body(i); leaves the builder after the loop."""
    head = builder.block
    loop = builder.append_basic_block("gemm.loop")
    after = builder.append_basic_block("gemm.after")
    builder.cbranch(builder.icmp_signed("<", start, stop), loop, after)
    builder.position_at_end(loop)
    i = builder.phi(_I64)
    i.add_incoming(start, head)
    body(i)
    nxt = builder.add(i, step)
    i.add_incoming(nxt, builder.block)
    builder.cbranch(builder.icmp_signed("<", nxt, stop), loop, after)
    builder.position_at_end(after)


def _branch(builder, cond, then, otherwise):
    """The values that then() or otherwise() returns (lists of like types), as the i1 cond chooses."""
    with builder.if_else(cond) as (yes, no):
        with yes:
            a, a_block = then(), builder.block
        with no:
            b, b_block = otherwise(), builder.block
    out = []
    for x, y in zip(a, b):
        phi = builder.phi(x.type)
        phi.add_incoming(x, a_block)
        phi.add_incoming(y, b_block)
        out.append(phi)
    return out


def _ge(builder, x, n):
    return builder.icmp_signed(">=", x, _I64(n))


def _data(context, builder, arrty, value):
    return context.make_array(arrty)(context, builder, value).data


def _row_length(context, builder, arrty, value):  # elements per row of a C-contiguous 2-D array
    return builder.extract_value(context.make_array(arrty)(context, builder, value).shape, 1)


def _ints(context, builder, sig, args, which):
    """The integer arguments at positions ``which``, as i64."""
    return [context.cast(builder, args[i], sig.args[i], types.int64) for i in which]


def _concat(builder, x, y):
    n = x.type.count
    return builder.shuffle_vector(x, y, ir.Constant(ir.VectorType(_I32, 2 * n), list(range(2 * n))))


def _transpose_lanes(builder, rows):
    """Transpose the h x h block in each 128-bit lane of h vectors (h = 4 float32, 2 float64) by log2(h)
    rounds of in-lane interleaving (unpcklps/unpckhps), shuffles that never cross a lane."""
    t, h = rows[0].type.count, len(rows)
    lo = [j // h * h + j % h // 2 + (t if j % 2 else 0) for j in range(t)]
    hi = [j // h * h + h // 2 + j % h // 2 + (t if j % 2 else 0) for j in range(t)]
    lo, hi = (ir.Constant(ir.VectorType(_I32, t), mask) for mask in (lo, hi))
    for _ in range(h.bit_length() - 1):
        rows = [v for i in range(h // 2) for v in (builder.shuffle_vector(rows[i], rows[i + h // 2], lo),
                                                    builder.shuffle_vector(rows[i], rows[i + h // 2], hi))]
    return rows


def _panel_rows(dtype):
    """MRP: an A panel's stride per k, MR rounded up to a whole block (16, 8; float64 12, 8)."""
    t = BLOCK_BYTES * 8 // dtype.bitwidth
    return (MR + t - 1) // t * t


# ---- the micro-kernel --------------------------------------------------------------------------

@intrinsic
def _kernel(typingctx, kc, work, a_off, b_addr, ldb, c, c_off, m_valid, n_valid, accumulate):
    """One MR x NR tile of C from a packed A panel (MRP elements per k) and NR-wide rows of B, ldb apart
    (a packed B panel, ldb = NR, or op(B) itself, b_addr the address of its element at (k0, j0)):

        c.flat[c_off + i·ldc + j] (+)= sum over k < kc of work[a_off + k·MRP + i] · B[k·ldb + j]

    for i < min(MR, m_valid), j < min(NR, n_valid); the sum starts from C with ``accumulate``, else from 0."""
    dtype = _check_arrays((work, c))
    lanes = VECTOR_BYTES * 8 // dtype.bitwidth
    nv, mr, mrp, nr = NR_VECTORS, MR, _panel_rows(dtype), NR_VECTORS * lanes
    sig = types.void(kc, work, a_off, b_addr, ldb, c, c_off, m_valid, n_valid, accumulate)

    def codegen(context, builder, signature, args):
        kc, a_off, b_addr, ldb, c_off, m_valid, n_valid = _ints(context, builder, signature, args,
                                                                (0, 2, 3, 4, 6, 7, 8))
        accumulate = context.cast(builder, args[9], signature.args[9], types.boolean)
        e = _Emit(builder, dtype)
        pa = e.at(_data(context, builder, signature.args[1], args[1]), a_off)
        pb = builder.inttoptr(b_addr, e.fty.as_pointer())
        ldc = _row_length(context, builder, signature.args[5], args[5])
        pc = e.at(_data(context, builder, signature.args[5], args[5]), c_off)
        rows = [[e.at(pc, builder.add(builder.mul(_I64(i), ldc), _I64(v * lanes))) for v in range(nv)]
                for i in range(mr)]

        # C: a whole tile loads and stores its rows plainly; an edge tile masks them to the part
        # inside C (a row at or past m_valid gets an empty mask), so nothing outside C is touched
        whole = builder.and_(_ge(builder, m_valid, mr), _ge(builder, n_valid, nr))

        def masks():
            none = ir.Constant(ir.VectorType(_I1, lanes), [0] * lanes)
            cols = [e.below(n_valid, lanes, v * lanes) for v in range(nv)]
            return [[builder.select(builder.icmp_signed("<", _I64(i), m_valid), cols[v], none) for v in range(nv)]
                    for i in range(mr)]

        def load_c():
            return _branch(builder, whole, lambda: [e.load(p, lanes) for row in rows for p in row],
                           lambda: [e.masked_load(p, mask) for row, mrow in zip(rows, masks())
                                    for p, mask in zip(row, mrow)])

        zero = ir.Constant(e.vty(lanes), [0.0] * lanes)
        flat = _branch(builder, accumulate, load_c, lambda: [zero] * (mr * nv))
        start = [flat[i * nv:(i + 1) * nv] for i in range(mr)]

        # the k loop; the accumulators are phis, which LLVM keeps in registers
        entry = builder.block
        loop = builder.append_basic_block("ukernel.k")
        done = builder.append_basic_block("ukernel.done")
        builder.cbranch(builder.icmp_signed(">", kc, _I64(0)), loop, done)
        builder.position_at_end(loop)
        k = builder.phi(_I64)
        k.add_incoming(_I64(0), entry)
        acc = [[builder.phi(e.vty(lanes)) for _ in range(nv)] for _ in range(mr)]
        pb_k, pa_k = e.at(pb, builder.mul(k, ldb)), e.at(pa, builder.mul(k, _I64(mrp)))
        b_vecs = [e.load(e.at(pb_k, _I64(v * lanes)), lanes) for v in range(nv)]
        new = []
        for i in range(mr):
            a_i = e.splat(builder.load(e.at(pa_k, _I64(i)), typ=e.fty), lanes)
            new.append([e.fma(a_i, b_vecs[v], acc[i][v]) for v in range(nv)])
        k_next = builder.add(k, _I64(1))
        k.add_incoming(k_next, loop)
        for i in range(mr):
            for v in range(nv):
                acc[i][v].add_incoming(start[i][v], entry)
                acc[i][v].add_incoming(new[i][v], loop)
        builder.cbranch(builder.icmp_signed("<", k_next, kc), loop, done)

        builder.position_at_end(done)
        final = []
        for i in range(mr):
            for v in range(nv):
                phi = builder.phi(e.vty(lanes))
                phi.add_incoming(start[i][v], entry)
                phi.add_incoming(new[i][v], loop)
                final.append((phi, rows[i][v], i, v))
        with builder.if_else(whole) as (plain, edge):
            with plain:
                for phi, p, _, _ in final:
                    e.store(phi, p)
            with edge:
                mask = masks()
                for phi, p, i, v in final:
                    e.masked_store(phi, p, mask[i][v])
        return context.get_dummy_value()

    return sig, codegen


# ---- packing -----------------------------------------------------------------------------------

@intrinsic
def _pack_rows(typingctx, work, off, src, k0, first, n_k, valid, width):
    """Copy rows (op(A) = a.T into A panels, op(B) = b into B panels), ``width`` a multiple of T:

        work[off + r·width + j] = src[k0 + r, first + j]  for r < n_k, j < width;  0 where j >= valid"""
    dtype = _check_arrays((work, src))
    t = BLOCK_BYTES * 8 // dtype.bitwidth
    sig = types.void(work, off, src, k0, first, n_k, valid, width)

    def codegen(context, builder, signature, args):
        off, k0, first, n_k, valid, width = _ints(context, builder, signature, args, (1, 3, 4, 5, 6, 7))
        e = _Emit(builder, dtype)
        dst = e.at(_data(context, builder, signature.args[0], args[0]), off)
        ld = _row_length(context, builder, signature.args[2], args[2])
        src = e.at(_data(context, builder, signature.args[2], args[2]), builder.add(builder.mul(k0, ld), first))

        def row(r):
            s_row, d_row = e.at(src, builder.mul(r, ld)), e.at(dst, builder.mul(r, width))

            def chunk(j):  # elements j:j+T of the row
                s, left = e.at(s_row, j), builder.sub(valid, j)
                vec, = _branch(builder, _ge(builder, left, t), lambda: [e.load(s, t)],
                               lambda: [e.masked_load(s, e.below(left, t))])
                e.store(vec, e.at(d_row, j))
            _loop(builder, _I64(0), width, _I64(t), chunk)
        _loop(builder, _I64(0), n_k, _I64(1), row)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _pack_columns(typingctx, work, off, src, k0, first, n_k, valid, height, room):
    """Transpose rows that run along k (op(A) = a into A panels, op(B) = b.T into B panels):

        work[off + k·height + r] = src[first + r, k0 + k]  for k < n_k, r < height;  0 where r >= valid

    T x T blocks: whole ones with plain loads and stores; at the edges the loads are masked (zeros
    past ``valid`` rows and ``n_k`` columns), and the stores too unless they fit: whole T-row blocks
    of ``height`` with ``room`` rows of k in work (a panel's KP - k0: a block may write its zeros
    past n_k into the panel's padding)."""
    dtype = _check_arrays((work, src))
    t = BLOCK_BYTES * 8 // dtype.bitwidth
    h = t // 2
    sig = types.void(work, off, src, k0, first, n_k, valid, height, room)

    def codegen(context, builder, signature, args):
        off, k0, first, n_k, valid, height, room = _ints(context, builder, signature, args, (1, 3, 4, 5, 6, 7, 8))
        e = _Emit(builder, dtype)
        dst = e.at(_data(context, builder, signature.args[0], args[0]), off)
        ld = _row_length(context, builder, signature.args[2], args[2])
        src = e.at(_data(context, builder, signature.args[2], args[2]), builder.add(builder.mul(first, ld), k0))

        def row_block(r0):  # rows r0:r0+T, along all of k
            rows_valid, rows_left = builder.sub(valid, r0), builder.sub(height, r0)
            s_rows = e.at(src, builder.mul(r0, ld))

            def column_block(k):  # columns k:k+T; vector i of half g: row i low, row i + h high
                cols = builder.sub(n_k, k)

                def at(r, g):
                    return e.at(s_rows, builder.add(builder.mul(_I64(r), ld), builder.add(k, _I64(g * h))))

                def plain():
                    return [_concat(builder, e.load(at(i, g), h), e.load(at(i + h, g), h))
                            for g in range(2) for i in range(h)]

                def masked():
                    row_ok = e.below(rows_valid, t)
                    out = []
                    for g in range(2):
                        col_ok = e.below(builder.sub(cols, _I64(g * h)), h)

                        def half(r, g=g, col_ok=col_ok):
                            return e.masked_load(at(r, g), builder.and_(
                                col_ok, e.splat(builder.extract_element(row_ok, _I32(r)), h)))
                        out += [_concat(builder, half(i), half(i + h)) for i in range(h)]
                    return out

                whole_load = builder.and_(_ge(builder, rows_valid, t), _ge(builder, cols, t))
                vecs = _branch(builder, whole_load, plain, masked)
                columns = _transpose_lanes(builder, vecs[:h]) + _transpose_lanes(builder, vecs[h:])
                ptrs = [e.at(dst, builder.add(builder.mul(builder.add(k, _I64(j)), height), r0)) for j in range(t)]
                whole_store = builder.and_(_ge(builder, rows_left, t), _ge(builder, builder.sub(room, k), t))
                with builder.if_else(whole_store) as (fits, edge):
                    with fits:
                        for vec, p in zip(columns, ptrs):
                            e.store(vec, p)
                    with edge:
                        inside = e.below(rows_left, t)
                        k_ok = e.below(builder.sub(room, k), t)
                        for j, (vec, p) in enumerate(zip(columns, ptrs)):
                            keep = e.splat(builder.extract_element(k_ok, _I32(j)), t)
                            e.masked_store(vec, p, builder.and_(inside, keep))
            _loop(builder, _I64(0), n_k, _I64(t), column_block)
        _loop(builder, _I64(0), height, _I64(t), row_block)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _require(typingctx, c, a, b, work):
    """At typing time: c, a, b C-contiguous 2-D and work 1-D, all of one float dtype (else a TypingError)."""
    _check_arrays((c, a, b, work))
    if (c.ndim, a.ndim, b.ndim, work.ndim) != (2, 2, 2, 1):
        raise TypingError(f"fastnet gemm: c, a, b must be 2-D and work 1-D, got {c}, {a}, {b}, {work}")
    return types.void(c, a, b, work), lambda context, builder, signature, args: context.get_dummy_value()


@intrinsic
def _address(typingctx, arr):
    """The address of an array's first element, as an int64."""
    sig = types.int64(arr)

    def codegen(context, builder, signature, args):
        return builder.ptrtoint(_data(context, builder, signature.args[0], args[0]), _I64)

    return sig, codegen


# ---- numba: the plan, the tasks, the driver ----------------------------------------------------
# Constants passed to a jit function are wrapped (np.int64(0), np.bool_(True)): numba would
# otherwise type them as literals and compile the callee once more for each literal value.

@jit(inline="always")
def _panels(m, n, k, itemsize):
    # o (m, n) = op(x) (m, k) @ op(y) (k, n) -> (MRP, NR, KP, row panels, column panels): see the docstring
    t = BLOCK_BYTES // itemsize
    mrp, nr = (MR + t - 1) // t * t, NR_VECTORS * VECTOR_BYTES // itemsize
    kp = (k + 7) // 8 * 8
    return mrp, nr, kp, (m + MR - 1) // MR, (n + nr - 1) // nr


@jit(inline="always")
def _plan(m, n, k, itemsize):
    # c (m, n), inner size k -> (swap, elements of work needed). swap: compute c.T = op(b).T @ op(a).T
    # (into work) when c is far narrower than a tile, so that it pads fewer elements to whole tiles
    nr = NR_VECTORS * VECTOR_BYTES // itemsize
    plain = (m + MR - 1) // MR * MR * ((n + nr - 1) // nr * nr)
    swapped = (n + MR - 1) // MR * MR * ((m + nr - 1) // nr * nr)
    swap = 5 * swapped < 4 * plain
    rows, cols = (n, m) if swap else (m, n)
    mrp, nr, kp, n_ip, n_jp = _panels(rows, cols, k, itemsize)
    return swap, ALIGN_BYTES // itemsize + (n_ip * mrp + n_jp * nr) * kp + (m * n if swap else 0)


@jit(inline="always")
def _starts(work, m, n, k):
    # -> (a0, b0, end): where the A panels, the B panels and what follows them start in work
    mrp, nr, kp, n_ip, n_jp = _panels(m, n, k, work.itemsize)
    align = ALIGN_BYTES // work.itemsize
    a0 = (align - (_address(work) // work.itemsize) % align) % align
    return a0, a0 + n_ip * mrp * kp, a0 + (n_ip * mrp + n_jp * nr) * kp


@jit
def _task(o, x, y, work, x_along_k, y_along_k, k, packing, ku, lo, hi):
    # Units lo:hi of one of the two loops for o (M, N) = op(x) (M, K) @ op(y) (K, N), where x is
    # (M, K) if x_along_k else (K, M), and y is (N, K) if y_along_k else (K, N):
    #   packing: unit u packs k's u·ku:(u+1)·ku of every A panel and every B panel
    #   else:    unit u computes tile u over all of K, a K block at a time
    m, n = o.shape
    mrp, nr, kp, n_ip, n_jp = _panels(m, n, k, o.itemsize)
    a0, b0, _ = _starts(work, m, n, k)
    if packing:
        for u in range(lo, hi):
            k0 = u * ku
            n_k = min(ku, k - k0)
            for p in range(n_ip + n_jp):
                if p < n_ip:  # A panel p: rows p·MR.. of op(x)
                    src, along_k, first, size, off = x, x_along_k, p * MR, mrp, a0 + p * mrp * kp + k0 * mrp
                    valid = m - first
                else:  # B panel p - n_ip: columns (p - n_ip)·NR.. of op(y)
                    q = p - n_ip
                    src, along_k, first, size, off = y, y_along_k, q * nr, nr, b0 + q * nr * kp + k0 * nr
                    valid = n - first
                    if _b_in_place(n_ip, y_along_k, valid, nr):
                        continue
                if along_k:
                    _pack_columns(work, off, src, k0, first, n_k, valid, size, kp - k0)
                else:
                    _pack_rows(work, off, src, k0, first, n_k, valid, size)
        return
    n_kb = (k * o.itemsize + KC_BYTES - 1) // KC_BYTES
    kc = (k + n_kb - 1) // n_kb  # K in equal blocks of at most KC
    down = n_jp * nr >= 2 * n_ip * mrp  # tiles column by column when A's panels are the smaller stream
    work_at, y_at, ld_y, size = _address(work), _address(y), y.shape[1], o.itemsize
    for u in range(lo, hi):
        ip, jp = (u % n_ip, u // n_ip) if down else (u // n_jp, u % n_jp)
        i, j = ip * MR, jp * nr
        in_place = _b_in_place(n_ip, y_along_k, n - j, nr)
        for p in range(0, k, kc):
            if in_place:  # op(y)[p, j] = y[p, j]
                b_at, ldb = y_at + (p * ld_y + j) * size, ld_y
            else:
                b_at, ldb = work_at + (b0 + jp * nr * kp + p * nr) * size, nr
            _kernel(min(kc, k - p), work, a0 + ip * mrp * kp + p * mrp, b_at, ldb, o, i * n + j, m - i, n - j, p > 0)


@jit(inline="always")
def _b_in_place(n_ip, y_along_k, valid, nr):
    # whether the micro-kernel reads a B panel from y itself: when one row of tiles uses it (a
    # packed copy would be read once) and y's rows hold it as they are, all NR columns of it
    return n_ip == 1 and not y_along_k and valid >= nr


@pjit
def _gemm(c, a, b, work, a_trans, b_trans):
    # c (M, N) = op(a) @ op(b), op(a) = a.T if a_trans else a, op(b) = b.T if b_trans else b
    m, n = c.shape
    k = a.shape[0] if a_trans else a.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        c[:] = 0
        return
    swap = _plan(m, n, k, c.itemsize)[0]
    if swap:  # c.T (N, M) = op(b).T @ op(a).T, computed into work after the panels
        end = _starts(work, n, m, k)[2]
        o, x, x_along_k, y, y_along_k = work[end:end + n * m].reshape((n, m)), b, b_trans, a, not a_trans
    else:
        o, x, x_along_k, y, y_along_k = c, a, not a_trans, b, b_trans
    n_ip, n_jp = _panels(o.shape[0], o.shape[1], k, c.itemsize)[3:]
    n_tiles = n_ip * n_jp
    yes, no, zero = np.bool_(True), np.bool_(False), np.int64(0)
    if m * n * k < PARALLEL_MIN_MACS:
        _task(o, x, y, work, x_along_k, y_along_k, k, yes, k, zero, np.int64(1))
        _task(o, x, y, work, x_along_k, y_along_k, k, no, k, zero, n_tiles)
    else:
        ku = max(PACK_MIN_K, (k + 8 * PACK_UNITS - 1) // (8 * PACK_UNITS) * 8)  # a multiple of 8, like KP
        n_units = (k + ku - 1) // ku
        for phase in range(2):  # one parallel loop, run twice: numba compiles its body once
            packing = np.bool_(phase == 0)
            items, runs = (n_units, n_units) if packing else (n_tiles, min(n_tiles, TILE_CHUNKS))
            for u in prange(runs):
                _task(o, x, y, work, x_along_k, y_along_k, k, packing, ku, np.int64(u * items // runs),
                      np.int64((u + 1) * items // runs))
    if swap:  # c[i, j] = o[j, i]
        _pack_columns(c.reshape(m * n), zero, o, zero, zero, m, n, n, m)


@jit
def workspace_size(m, n, k):
    # elements of work (same dtype as c) that gemm_nt/nn/tn need for c (m, n) and inner size k: the
    # A and B panels padded to whole tiles and blocks, room to align them, and c.T when the product
    # is computed transposed; the larger need of the two dtypes, so one rule serves both
    return max(_plan(m, n, k, 4)[1], _plan(m, n, k, 8)[1])


@jit
def _check(c, work, shapes_match, m, n, k):
    if not shapes_match or c.shape[0] != m or c.shape[1] != n:
        raise ValueError("gemm: shapes do not match (nt: a (M, K), b (N, K); nn: a (M, K), b (K, N); "
                         "tn: a (K, M), b (K, N); c (M, N))")
    if work.size < workspace_size(m, n, k):
        raise ValueError("gemm: work is smaller than workspace_size(M, N, K)")


# ---- the kernels ---------------------------------------------------------------------------------

@jit
def gemm_nt(c, a, b, work):
    # a (M, K), b (N, K) -> c (M, N) = a @ b.T
    _require(c, a, b, work)
    _check(c, work, b.shape[1] == a.shape[1], a.shape[0], b.shape[0], a.shape[1])
    _gemm(c, a, b, work, np.bool_(False), np.bool_(True))


@jit
def gemm_nn(c, a, b, work):
    # a (M, K), b (K, N) -> c (M, N) = a @ b
    _require(c, a, b, work)
    _check(c, work, b.shape[0] == a.shape[1], a.shape[0], b.shape[1], a.shape[1])
    _gemm(c, a, b, work, np.bool_(False), np.bool_(False))


@jit
def gemm_tn(c, a, b, work):
    # a (K, M), b (K, N) -> c (M, N) = a.T @ b
    _require(c, a, b, work)
    _check(c, work, b.shape[0] == a.shape[0], a.shape[1], b.shape[1], a.shape[0])
    _gemm(c, a, b, work, np.bool_(True), np.bool_(False))


# ---- NumPy twins ---------------------------------------------------------------------------------

def gemm_nt_np(c, a, b, work):
    np.matmul(a, b.T, out=c)


def gemm_nn_np(c, a, b, work):
    np.matmul(a, b, out=c)


def gemm_tn_np(c, a, b, work):
    np.matmul(a.T, b, out=c)
