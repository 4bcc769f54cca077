"""What the dense kernels compile to: one copy of each helper, called by address from the
loops, the host's full vector width, and a GEMM tile that fits the host's vector registers (both tile shapes are checked here).

Cold start is mostly numba compiling the dense kernels (README, "Compiled kernels"), so a kernel
must not compile its helpers more often than it needs. And the GEMMs are only fast when LLVM
vectorises them at the widest width it uses on this CPU (zmm on Zen 4/5, ymm on AVX2), so a
change that narrows them, or leaves them scalar, must fail here rather than show up as a slow
benchmark.

A kernel loaded from numba's cache brings neither its helpers nor its assembly, so the
kernels are compiled afresh in a subprocess with an empty cache folder.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba import njit
from numba.core.registry import CPUDispatcher

from fastnet.kernels import _gemm, dense

# (B, O, I): the first is below dense.PARALLEL_MIN_MACS (the serial loop), the second above (prange)
SERIAL, PARALLEL = (8, 12, 40), (64, 130, 300)
PACKED_FMA = re.compile(r"\bvfn?m(?:add|sub)\w*ps\b[^\n]*%([xyz])mm")  # packed float32 fused multiply-adds
WIDTH = {"x": 128, "y": 256, "z": 512}


def run_dense_kernels(shape, dtype=np.float32):
    """Each dense kernel once on random float arrays of this (B, O, I)."""
    B, O, I = shape
    rng = np.random.default_rng(0)
    x, w, b, dy = (rng.standard_normal(s).astype(dtype) for s in ((B, I), (O, I), O, (B, O)))
    dense.dense_forward(np.empty((B, O), dtype), x, w, b, 3, 0.0, 0.0)
    dense.dense_backward_dx(np.empty((B, I), dtype), dy, w, x, 3, 0.0, 0.0)
    dense.dense_backward_dw(np.empty((O, I), dtype), np.empty(O, dtype), dy, x)


def compile_report() -> dict:
    """Compile the float32 dense kernels on both loops; say what was compiled (run in a fresh cache)."""
    run_dense_kernels(SERIAL)
    run_dense_kernels(PARALLEL)
    helpers = {name: f for name, f in vars(dense).items() if isinstance(f, CPUDispatcher) and name.endswith("_block")}
    kernels = (dense.dense_forward, dense.dense_backward_dx, dense.dense_backward_dw)
    asm = {k.__name__: "\n".join(k.block.inspect_asm().values()) for k in kernels}  # the GEMM is in the block
    bits = host_vector_width()
    return {
        "helper_signatures": {name: [str(s) for s in f.signatures] for name, f in helpers.items()},
        "host_bits": bits,
        "kernel_fma_bits": {name: widest_packed_fma(text) for name, text in asm.items()},
        "kernel_fmas_per_block": {name: densest_block(text, bits) for name, text in asm.items()},
        "loop_fmas": {k.__name__: len(PACKED_FMA.findall("\n".join(k.kernel.inspect_asm().values()))) for k in kernels},
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path_factory.mktemp("numba-cache")))
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
              "import json, test_kernels_compile as t; print(json.dumps(t.compile_report()))")
    source_root = Path(dense.__file__).resolve().parents[1]  # the fastnet this test imported
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=source_root,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_serial_and_the_parallel_loop_share_one_compiled_block(report):
    # prange hands its loop body a uint64 index, range an int64: a helper called from both
    # compiled twice (a third of the dense kernels' cold compile time) until the index was cast
    assert SERIAL[0] * SERIAL[1] * SERIAL[2] < dense.PARALLEL_MIN_MACS < PARALLEL[0] * PARALLEL[1] * PARALLEL[2]
    helpers = report["helper_signatures"]
    assert sorted(helpers) == ["_dw_block", "_dx_block", "_forward_block"]
    assert all(len(sigs) == 1 for sigs in helpers.values()), helpers


def test_the_loops_call_their_block_rather_than_compile_it_in(report):
    # linked in, a block was optimised and emitted again in each layer of the parallel loop
    # (kernels/_blocks.py): the loops' own code must hold none of its FMAs
    assert report["loop_fmas"] == {name: 0 for name in report["loop_fmas"]}


def widest_packed_fma(asm: str) -> int:
    """The widest register (bits) any packed float32 FMA in ``asm`` works on; 0 if there is none."""
    return max((WIDTH[m] for m in PACKED_FMA.findall(asm)), default=0)


def densest_block(asm: str, bits: int) -> int:
    """The most packed float32 FMAs on ``bits``-bit registers in one basic block of ``asm``: a GEMM tile
    vectorised along its rows has one per accumulator in its loop body (12 or 16 here), where packing
    a few scalar accumulators together (LLVM's SLP vectoriser, without 'reassoc') gives one or two."""
    blocks = re.split(r"^\S+:", asm, flags=re.M)  # labels start a line; instructions are indented
    return max((sum(WIDTH[m] == bits for m in PACKED_FMA.findall(b)) for b in blocks), default=0)


@njit(fastmath=True)
def _axpy(y, a, x):
    for i in range(x.size):
        y[i] += a * x[i]


def host_vector_width() -> int:
    """The width LLVM vectorises a plain float32 loop to on this host (its own choice: on some
    AVX-512 Xeons it prefers 256 bits; on Zen 4/5 it takes 512)."""
    x = np.ones(64, np.float32)
    _axpy(x.copy(), np.float32(2), x)
    return widest_packed_fma(next(iter(_axpy.inspect_asm().values())))


def test_a_scalar_function_has_no_packed_fma():  # the check above can fail
    @njit
    def scalar_dot(x, y):
        s = x[0] * y[0]
        for i in range(1, x.size):
            s += x[i] * y[i]  # no fastmath: a reduction stays scalar, in order
        return s

    x = np.ones(64, np.float32)
    scalar_dot(x, x)
    assert widest_packed_fma(next(iter(scalar_dot.inspect_asm().values()))) == 0


@pytest.mark.parametrize("kernel", ["dense_forward", "dense_backward_dx", "dense_backward_dw"])
def test_dense_kernels_use_the_full_vector_width_of_the_host(report, kernel):
    width = report["host_bits"]
    if width < 256:
        pytest.skip(f"LLVM vectorises to {width} bits here: no AVX2 or AVX-512 to check against")
    got = report["kernel_fma_bits"][kernel]
    assert got == width, f"{kernel} computes with {got}-bit packed FMAs; a plain loop gets {width} bits on this host"
    fmas = report["kernel_fmas_per_block"][kernel]
    assert fmas >= 4 * 3, f"{kernel}: at most {fmas} {width}-bit FMAs in a loop body; its 4x3, 4x4 tile needs 12, 16"


# ---- both dot tiles: the host compiles one of them into the kernels (NT), tested here directly ----

@njit
def _tile_product(tile, x, w, n_cols):
    # y (4, O) = x (4, I) @ w.T, tile by tile; O a multiple of n_cols
    y = np.zeros((4, w.shape[0]), x.dtype)
    for o in range(0, w.shape[0], n_cols):
        tile(y, x, 0, w, o)
    return y


@pytest.mark.parametrize("n_cols", [4, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("inner", [1, 7, 8, 33])
def test_either_dot_tile_computes_its_block_of_the_product(n_cols, dtype, inner):
    tile = getattr(_gemm, f"dot_tile_4x{n_cols}")
    rng = np.random.default_rng(inner)
    x, w = rng.standard_normal((4, inner)).astype(dtype), rng.standard_normal((2 * n_cols, inner)).astype(dtype)
    got = _tile_product(tile, x, w, n_cols)
    np.testing.assert_allclose(got, x.astype(np.float64) @ w.T.astype(np.float64), rtol=1e-5, atol=1e-5 * inner)
    assert got.dtype == dtype


def test_the_tile_fits_the_register_file():
    # 4·NT accumulators plus the loads: 16 of them spilled with 16 vector registers (AVX2)
    assert _gemm.NT == (4 if _gemm.vector_registers() == 32 else 3)
    assert _gemm.dot_tile is (_gemm.dot_tile_4x4 if _gemm.NT == 4 else _gemm.dot_tile_4x3)
