"""What a benchmark ran on: the CPU, LLVM's target, the dense kernels' vector width, versions, load.

The CPU decides how the kernels compile (256-bit vectors on AVX2 and on the AVX-512 CPUs LLVM tunes
for 256 bits, 512-bit ones on others such as Zen 5), and a shared or cloud machine can land on another
CPU from one run to the next, so every benchmark records what it ran on.
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from importlib import metadata

DENSE_KERNELS = ("gemm_nt", "gemm_nn", "gemm_tn")
"""The GEMMs under every dense layer's forward (nt) and backward (nn for dx, tn for dW)."""
REGISTER_BITS = {"zmm": 512, "ymm": 256, "xmm": 128}

# Run in a fresh process with an empty numba cache: code loaded from the cache keeps no assembly.
# It compiles the float32 GEMMs (with the micro-kernels they link in) without running them, so any
# NUMBA_CPU_NAME works.
_ASM_PROBE = """
import json
import numba, numpy as np
from fastnet.kernels import gemm
from fastnet.bench.machine import DENSE_KERNELS, register_counts
mat, vec = (numba.typeof(np.zeros(shape, np.float32)) for shape in ((2, 2), 2))
out = {}
for name in DENSE_KERNELS:
    kernel = getattr(gemm, name)
    kernel.compile((mat, mat, mat, vec))
    out[name] = register_counts(kernel.inspect_asm((mat, mat, mat, vec)))
print(json.dumps(out))
"""


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                        platform.processor())
    except OSError:
        return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return set(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), []))
    except OSError:
        return set()


def llvm_cpu() -> str:
    """The CPU name numba's LLVM compiles for: NUMBA_CPU_NAME when set, else the host's."""
    import llvmlite.binding as llvm
    import numba

    return numba.config.CPU_NAME or llvm.get_host_cpu_name()


def register_counts(asm: str) -> dict:
    """How many vector fused multiply-adds use each register class in ``asm`` (AT&T syntax), and every
    mention of each class. The multiply-adds are the GEMM loops; other code (spills, masks, tails) may
    use wider registers without the work being done in them."""
    fma = re.findall(r"\bvfn?m(?:add|sub)\w*\s+[^\n]*?%(zmm|ymm|xmm)\d+\s*$", asm, re.M)
    return {"fma": {r: fma.count(r) for r in REGISTER_BITS},
            "all": {r: len(re.findall(rf"%{r}\d+\b", asm)) for r in REGISTER_BITS}}


def vector_bits(counts: dict) -> int:
    """The widest register class the multiply-adds use (every register mention, if there is no FMA)."""
    used = counts["fma"] if any(counts["fma"].values()) else counts["all"]
    return max((REGISTER_BITS[r] for r, n in used.items() if n), default=0)


def dense_kernel_registers(cpu_name: str | None = None, features: str = "", timeout: float = 600) -> dict:
    """{kernel: register_counts} for the float32 GEMMs, compiled afresh in a child process (for
    ``cpu_name``'s LLVM target with ``features``, e.g. "+avx512f,+fma", if given; nothing is run)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        if cpu_name:
            env.update(NUMBA_CPU_NAME=cpu_name, NUMBA_CPU_FEATURES=features)
        result = subprocess.run([sys.executable, "-c", _ASM_PROBE], env=env, capture_output=True, text=True,
                                timeout=timeout)
    if result.returncode:
        raise RuntimeError(f"compiling the dense kernels to read their assembly failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def kernel_vector_width(cpu_name: str | None = None, features: str = "") -> int:
    """Bits per vector (512 = zmm, 256 = ymm, 128 = xmm) the dense kernels' GEMMs compile to on this
    host, or for LLVM target ``cpu_name``: the widest register class their multiply-adds use.
    Compiles the kernels in a fresh process (tens of seconds)."""
    return max(vector_bits(c) for c in dense_kernel_registers(cpu_name, features).values())


def version(package: str) -> str | None:
    """An installed package's version, without importing it (None when it is not installed)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_record(vector_width: bool = True) -> dict:
    """CPU, LLVM target, cores, the dense kernels' vector width (unless ``vector_width`` is False: it
    takes a compile), versions, and the load average now."""
    import numba
    import numpy as np

    record = {"cpu": cpu_model(), "llvm_cpu": llvm_cpu(), "avx512f": "avx512f" in cpu_flags(),
              "cores": os.cpu_count(), "numba_threads_max": numba.config.NUMBA_NUM_THREADS,
              "load_average": list(os.getloadavg()), "python": platform.python_version(),
              "numpy": np.__version__, "numba": numba.__version__,
              **{p: version(p) for p in ("jax", "jaxlib", "torch", "scikit-learn")}}
    if vector_width:
        registers = dense_kernel_registers()
        record["dense_kernel_registers"] = registers
        record["dense_vector_bits"] = max(vector_bits(c) for c in registers.values())
    return record
