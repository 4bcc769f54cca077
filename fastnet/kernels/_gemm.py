"""The register file numba compiles for, which sizes the GEMM's register tile (``gemm.py``)."""
from numba.core import config
from numba.core.codegen import get_host_cpu_features


def vector_registers() -> int:
    """How many vector registers numba compiles for: 32 with AVX-512 (AVX-512VL also gives ymm16-31), else 16.

    The features are numba's own view of the CPU, NUMBA_CPU_FEATURES and NUMBA_ENABLE_AVX included."""
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return 32 if "+avx512f" in features.split(",") else 16
