import sys
from pathlib import Path

import pytest

# kernel_cases.py, shared by the test_kernels_* files, is imported as a sibling module;
# pytest's importlib import mode does not put this folder on sys.path.
sys.path.insert(0, str(Path(__file__).parent))

import kernel_cases as kc  # noqa: E402 (after the path it is found on)


@pytest.fixture(params=[(b, v) for b in ("numba", "numpy") for v in kc.ACT_VARIANTS], ids="-".join)
def kernels_and_activation(request):
    """(backend kernels, (act, p0, p1)) for every backend and activation variant: the finite-difference tests'."""
    from fastnet.kernels import get_backend

    backend, variant = request.param
    return get_backend(backend), kc.ACT_VARIANTS[variant]
