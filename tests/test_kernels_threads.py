"""Numba kernels give the same bits whatever the thread count.

Each thread owns whole output rows (DESIGN.md), so NUMBA_NUM_THREADS=1 and =2
must produce byte-identical outputs. Two subprocesses run every kernel case on
fixed inputs, with batches such as 257 that do not split evenly, and print a
sha256 per output; the digests must match.
"""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import kernel_cases as kc

# (rows, cols, inner): for dense, B x O x I. The first is far above the size where the
# GEMMs switch from one thread to many; the others are small, odd and lopsided.
SHAPES = [kc.Sizes(257, 67, 200), kc.Sizes(257, 33, 19), kc.Sizes(64, 10, 784), kc.Sizes(3, 129, 7)]


def digests() -> dict:
    """sha256 of every output of every numba kernel case, plus the thread count used."""
    import numba

    from fastnet.kernels import get_backend

    numba_kernels = get_backend("numba")
    out = {"threads": numba.get_num_threads(), "kernels": {}}
    for name, variant in kc.all_variants():
        for dtype in kc.DTYPES:
            for sizes in SHAPES:
                seed = int.from_bytes(hashlib.sha256(f"{name}{variant}".encode()).digest()[:4], "little")
                case = kc.build(name, variant, np.random.default_rng(seed), dtype, sizes)
                written, rets = case.run(getattr(numba_kernels, name))
                h = hashlib.sha256()
                for array in written:
                    h.update(array.tobytes())
                h.update(repr(rets).encode())
                out["kernels"][f"{name}[{variant}]-{np.dtype(dtype).name}-{sizes}"] = h.hexdigest()
    return out


def run_with_threads(n: int, module: str = "test_kernels_threads", function: str = "digests",
                     timeout: float = 300) -> dict:
    """``function()`` of the test module ``module`` in a fresh process with NUMBA_NUM_THREADS=n, as JSON."""
    env = dict(os.environ, NUMBA_NUM_THREADS=str(n))
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import json, {module} as t; "
              f"print(json.dumps(t.{function}()))")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_largest_shape_takes_the_parallel_gemm_path():
    from fastnet.kernels import dense

    biggest = max(s.rows * s.cols * s.inner for s in SHAPES)
    assert biggest >= 2 * getattr(dense, "PARALLEL_MIN_MACS", 0)


def test_numba_kernels_give_identical_bits_with_1_and_2_threads():
    one, two = run_with_threads(1), run_with_threads(2)
    assert (one["threads"], two["threads"]) == (1, 2)
    names = {key.split("[")[0] for key in one["kernels"]}
    assert names == set(kc.CASES), "every kernel must be in the comparison"
    differ = sorted(k for k in one["kernels"] if one["kernels"][k] != two["kernels"].get(k))
    assert one["kernels"].keys() == two["kernels"].keys()
    assert not differ, f"outputs depend on the thread count: {differ}"


CALL_ONE_KERNEL = """
import sys
import numpy as np
from fastnet.kernels import get_backend
k = get_backend("numba")
x, w, b = np.ones((3, 4), np.float32), np.ones((5, 4), np.float32), np.ones(5, np.float32)
if sys.argv[1] == "dense_forward":
    k.dense_forward(np.empty((3, 5), np.float32), x, w, b, 0, 0.0, 0.0)
else:
    k.dense_backward_dx(np.empty((3, 4), np.float32), np.ones((3, 5), np.float32), w, x, 0, 0.0, 0.0)
print("ok")
"""


def test_a_kernel_compiled_over_a_cached_gemm_loads_in_the_next_process(tmp_path):
    # process 1 caches the GEMM with dense_forward; process 2 compiles dense_backward_dx over the cached
    # GEMM; process 3 loads dense_backward_dx from the cache, as any later run would
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    for name in ("dense_forward", "dense_backward_dx", "dense_backward_dx"):
        proc = subprocess.run([sys.executable, "-c", CALL_ONE_KERNEL, name], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0 and proc.stdout.strip() == "ok", f"{name}: {proc.stderr[-300:]}"
