"""The packed GEMMs (fastnet/kernels/gemm.py) against their NumPy twins, their bits, and their assembly.

Values: every layout (nt, nn, tn) in float32 and float64 on sizes of 1, odd sizes, sizes that
do not divide the tile (12 x 32 on AVX-512, 6 x 16 on AVX2), empty products, the training
step's shapes and random ones, within K·eps·(|a|·|b|) of the twin. Bits: each element is one
chain of FMAs in k order, so the result must not change with the thread count, the path
(serial or parallel, C or C.T), the tile it falls in or the vector width (an AVX2 build against
this host's). Assembly: the micro-kernel's loop keeps its MR x NR accumulators in full-width
registers, with every FMA there and nothing spilled.
"""
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

from fastnet.kernels import gemm

KINDS = ("nt", "nn", "tn")
DTYPES = (np.float32, np.float64)
MR, NR32 = gemm.tile(np.float32)

# (M, N, K): ones, odd sizes, sizes around the tile, empty products, and the step's shapes
EDGES = [(1, 1, 1), (1, 7, 1), (5, 1, 3), (1, 1, 33), (3, 5, 7), (MR - 1, NR32 + 1, 9), (MR + 1, NR32 - 1, 17),
         (2 * MR + 3, 2 * NR32 + 5, 31), (13, 10, 11), (10, 13, 2), (37, 45, 53), (64, 10, 128), (10, 128, 64),
         (0, 5, 3), (5, 0, 3), (0, 0, 0), (4, 6, 0), (1, 1, 0)]
STEP = [(32, 128, 784), (128, 10, 128), (128, 128, 10), (10, 128, 128), (128, 784, 64), (128, 512, 784)]


def host_has(*features) -> bool:
    from numba.core.codegen import get_host_cpu_features

    host = get_host_cpu_features().split(",")
    return all(f"+{f}" in host for f in features)


def operands(kind, m, n, k, dtype, seed=0):
    """a, b laid out as ``kind`` takes them, and c (filled with NaN, so unwritten elements show)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if kind == "tn" else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if kind == "nt" else (k, n)).astype(dtype)
    return a, b, np.full((m, n), np.nan, dtype)


def op(kind, a, b):
    """(op(a), op(b)) as (M, K), (K, N) views."""
    return (a.T if kind == "tn" else a), (b.T if kind == "nt" else b)


def run(kind, a, b, c, work=None):
    if work is None:
        work = np.full(gemm.workspace_size(c.shape[0], c.shape[1], a.shape[0] if kind == "tn" else a.shape[1]),
                       np.nan, c.dtype)
    getattr(gemm, f"gemm_{kind}")(c, a, b, work)
    return c


def assert_matches_twin(kind, m, n, k, dtype, seed=0):
    a, b, c = operands(kind, m, n, k, dtype, seed)
    run(kind, a, b, c)
    want = np.empty_like(c)
    getattr(gemm, f"gemm_{kind}_np")(want, a, b, None)
    assert c.dtype == dtype
    A, B = op(kind, a, b)
    # both sums are within K·eps·(|A|·|B|) of the exact one (FMA chains, BLAS blocks)
    bound = 2 * max(k, 1) * np.finfo(dtype).eps * (np.abs(A).astype(np.float64) @ np.abs(B).astype(np.float64))
    err = np.abs(c.astype(np.float64) - want)
    assert np.isfinite(c).all(), f"gemm_{kind} {m}x{n}x{k}: NaN left in c (an element not written)"
    assert (err <= bound).all(), f"gemm_{kind} {m}x{n}x{k} {np.dtype(dtype).name}: max error {err.max():.3g}"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", EDGES + STEP, ids=lambda s: "x".join(map(str, s)))
def test_matches_the_numpy_twin(kind, shape, dtype):
    assert_matches_twin(kind, *shape, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_matches_the_numpy_twin_on_random_shapes(dtype):
    rng = np.random.default_rng(1)
    for i in range(60):
        m, n, k = (int(v) for v in rng.integers(1, 90, 3))
        assert_matches_twin(KINDS[i % 3], m, n, k, dtype, seed=i)


@pytest.mark.parametrize("kind", KINDS)
def test_k_zero_gives_zeros_and_empty_c_is_left_alone(kind):
    a, b, c = operands(kind, 4, 6, 0, np.float32)
    assert (run(kind, a, b, c) == 0).all()
    for m, n in ((0, 6), (4, 0)):
        a, b, c = operands(kind, m, n, 5, np.float32)
        run(kind, a, b, c)  # nothing to write, nothing to fail


def test_the_output_keeps_its_dtype_and_mixed_dtypes_are_refused():
    for dtype in DTYPES:
        a, b, c = operands("nt", 5, 7, 9, dtype)
        assert run("nt", a, b, c).dtype == dtype
    a, b, c = operands("nt", 5, 7, 9, np.float32)
    with pytest.raises(numba.core.errors.TypingError, match="one dtype"):
        run("nt", a.astype(np.float64), b, c, np.empty(gemm.workspace_size(5, 7, 9), np.float32))
    with pytest.raises(numba.core.errors.TypingError, match="C-contiguous"):
        run("nt", np.asfortranarray(a), b, c)


def test_bad_shapes_and_a_short_work_buffer_are_refused():
    a, b, c = operands("nn", 5, 7, 9, np.float32)
    with pytest.raises(ValueError, match="shapes"):
        run("nn", a, b[:-1], c)
    with pytest.raises(ValueError, match="shapes"):
        run("nn", a, b, c[:, :-1].copy())
    with pytest.raises(ValueError, match="workspace_size"):
        run("nn", a, b, c, np.empty(gemm.workspace_size(5, 7, 9) - 1, np.float32))


def test_workspace_size_covers_both_dtypes_and_grows_with_the_product():
    assert gemm.workspace_size(128, 784, 128) >= (128 + 784) * 128
    assert gemm.workspace_size(1, 1, 1) > 0
    assert gemm.workspace_size(64, 128, 784) <= gemm.workspace_size(65, 128, 784)


def test_callable_from_numba_code():
    @numba.njit
    def step(y, x, w, dy, dx, dw, work):
        gemm.gemm_nt(y, x, w, work)  # y = x @ w.T
        gemm.gemm_nn(dx, dy, w, work)  # dx = dy @ w
        gemm.gemm_tn(dw, dy, x, work)  # dw = dy.T @ x

    rng = np.random.default_rng(2)
    x, w, dy = (rng.standard_normal(s).astype(np.float32) for s in ((33, 70), (10, 70), (33, 10)))
    y, dx, dw = np.empty((33, 10), np.float32), np.empty((33, 70), np.float32), np.empty((10, 70), np.float32)
    work = np.empty(max(gemm.workspace_size(*s) for s in ((33, 10, 70), (33, 70, 10), (10, 70, 33))), np.float32)
    step(y, x, w, dy, dx, dw, work)
    np.testing.assert_allclose(y, x @ w.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx, dy @ w, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw, dy.T @ x, rtol=1e-4, atol=1e-4)


# ---- bits --------------------------------------------------------------------------------------

@pytest.fixture
def restore_threads():
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba has a single thread here")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", KINDS)
def test_bits_are_the_same_on_one_and_two_threads(kind, dtype, restore_threads):
    # above PARALLEL_MIN_MACS (both loops run in parallel), with edge tiles, a narrow C (the C.T path)
    shapes = [(130, 97, 70), (77, 300, 45), (300, 10, 200), (10, 300, 200), (128, 784, 64)]
    assert all(m * n * k >= gemm.PARALLEL_MIN_MACS for m, n, k in shapes)
    for m, n, k in shapes:
        a, b, c1 = operands(kind, m, n, k, dtype)
        numba.set_num_threads(1)
        run(kind, a, b, c1)
        numba.set_num_threads(2)
        c2 = run(kind, a, b, np.full_like(c1, np.nan))
        assert c1.tobytes() == c2.tobytes(), f"gemm_{kind} {m}x{n}x{k}: bits differ between 1 and 2 threads"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", KINDS)
def test_an_element_has_the_same_bits_whatever_else_is_computed(kind, dtype):
    # c[:40, :10] computed alone (on the calling thread, by the C.T path that N = 10 takes) and as
    # part of a large product (both loops in parallel, plain C): each element is one FMA chain over k
    m, n, k = 150, 200, 1200
    a, b, big = operands(kind, m, n, k, dtype)
    run(kind, a, b, big)
    small = np.full((40, 10), np.nan, dtype)
    A, B = op(kind, a, b)
    a40 = np.ascontiguousarray(A[:40].T if kind == "tn" else A[:40])
    b10 = np.ascontiguousarray(B[:, :10].T if kind == "nt" else B[:, :10])
    run(kind, a40, b10, small)
    assert small.tobytes() == big[:40, :10].tobytes()


_BITS = """
import hashlib, json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_kernels_gemm import operands, run
from fastnet.kernels import gemm
out = {{"tile": list(gemm.tile(np.float32)), "digests": {{}}}}
for kind in ("nt", "nn", "tn"):
    for dtype in (np.float32, np.float64):
        for m, n, k in ((37, 45, 53), (128, 10, 128), (130, 97, 700)):
            a, b, c = operands(kind, m, n, k, dtype)
            out["digests"][f"{{kind}} {{np.dtype(dtype).name}} {{m}}x{{n}}x{{k}}"] = hashlib.sha256(
                run(kind, a, b, c).tobytes()).hexdigest()
print(json.dumps(out))
"""


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64") or not host_has("avx2", "fma"),
                    reason="runs AVX2 code")
def test_the_avx2_build_gives_the_same_bits_as_the_host_build(tmp_path):
    # another tile (6 x 16 on AVX2), other vectors, the same FMA chains: the same bits
    def digests(cpu_name):
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / (cpu_name or "host")))
        if cpu_name:
            env.update(NUMBA_CPU_NAME=cpu_name, NUMBA_CPU_FEATURES="")
        done = subprocess.run([sys.executable, "-c", _BITS.format(tests=str(Path(__file__).parent))], env=env,
                              cwd=Path(gemm.__file__).resolve().parents[2], capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    host, avx2 = digests(None), digests("znver3")
    assert avx2["tile"] == [6, 16]
    assert avx2["digests"] == host["digests"]


# ---- assembly ----------------------------------------------------------------------------------

FMA = re.compile(r"^\s+vfn?m(?:add|sub)\w*p[sd]\s+[^\n]*%([xyz])mm\d+\s*$", re.M)  # packed FMAs, by register
WIDTH = {"x": 128, "y": 256, "z": 512}

_PROBE = """
import json, numba, numpy as np
from numba import types
from fastnet.kernels import gemm
out = {"mr": gemm.MR, "nr_vectors": gemm.NR_VECTORS, "vector_bits": gemm.VECTOR_BYTES * 8, "asm": {}}
for dtype in (types.float32, types.float64):
    mat, vec = types.Array(dtype, 2, "C"), types.Array(dtype, 1, "C")
    sig = (mat, mat, mat, vec, types.boolean, types.boolean, types.int64, types.boolean, types.int64, types.int64,
           types.int64)
    gemm._task.compile(sig)  # the micro-kernel is emitted into the task that runs the tiles
    out["asm"][str(dtype)] = gemm._task.inspect_asm(sig)
print(json.dumps(out))
"""


def compile_task(tmp_path, cpu_name=None) -> dict:
    """The assembly of gemm._task for float32 and float64, compiled afresh in a child process (a kernel
    loaded from the cache has none), for this host or for LLVM target ``cpu_name`` with its own features."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    if cpu_name:
        env.update(NUMBA_CPU_NAME=cpu_name, NUMBA_CPU_FEATURES="")
    source_root = Path(gemm.__file__).resolve().parents[2]  # the fastnet this test imported
    done = subprocess.run([sys.executable, "-c", _PROBE], env=env, cwd=source_root, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def loops(asm: str) -> list[str]:
    """The bodies of the innermost loops in ``asm``: from a label to a jump back to it, with no label between."""
    found = []
    for label, chunk in re.findall(r"^(\.?[\w.$]+):[^\n]*\n(.*?)(?=^\.?[\w.$]+:)", asm + "\nEND:", re.M | re.S):
        back = re.search(rf"^\s+j\w+\s+{re.escape(label)}\s*$", chunk, re.M)
        if back:
            found.append(chunk[:back.end()])
    return found


def check_microkernel(report: dict, register: str):
    per_k = report["mr"] * report["nr_vectors"]  # accumulators: one FMA each per k
    for dtype, asm in report["asm"].items():
        kernel_loops = [body for body in loops(asm) if FMA.search(body)]
        assert kernel_loops, f"{dtype}: no loop with packed FMAs"
        for body in kernel_loops:
            registers = FMA.findall(body)
            assert set(registers) == {register}, f"{dtype}: FMAs on {sorted(set(registers))}, want {register}mm only"
            assert len(registers) % per_k == 0, f"{dtype}: {len(registers)} FMAs, not a multiple of MR x NR/lanes"
            assert "(%rsp)" not in body, f"{dtype}: the micro-kernel loop spills to or reloads from the stack"


@pytest.mark.skipif(not host_has("avx2", "fma"), reason="no AVX2 and FMA on this CPU: no ymm/zmm tile to check")
def test_the_microkernel_fills_the_host_registers(tmp_path):
    report = compile_task(tmp_path)
    if report["vector_bits"] == 512:
        assert (report["mr"], report["nr_vectors"]) == (12, 2)
        check_microkernel(report, "z")
    else:
        assert (report["mr"], report["nr_vectors"], report["vector_bits"]) == (6, 2, 256)
        check_microkernel(report, "y")


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="an x86-64 LLVM target")
def test_the_avx2_tile_fits_16_ymm_registers(tmp_path):
    # compiled for Zen 3 (AVX2, 16 ymm registers), whatever this host is; nothing is run
    report = compile_task(tmp_path, "znver3")
    assert (report["mr"], report["nr_vectors"], report["vector_bits"]) == (6, 2, 256)
    check_microkernel(report, "y")
