"""vexp, the vectorisable exp of kernels/_vexp.py, against np.exp and against a more precise exp.

The loops here are compiled with the kernels' fastmath flags (so 'reassoc' is on in
the caller, as in every kernel) but without cache=True, so that an edit of _vexp.py
is always what gets tested.
"""
import re

import numpy as np
import pytest
from numba import njit, types
from numba.core.errors import TypingError

from fastnet.kernels._jit import FASTMATH
from fastnet.kernels._vexp import vexp


@njit(fastmath=FASTMATH)
def vexp_loop(y, x):
    for i in range(x.shape[0]):
        y[i] = vexp(x[i])


@njit(fastmath=FASTMATH)
def vexp_scalar(x):
    return vexp(x)


def run(x):
    y = np.empty_like(x)
    vexp_loop(y, x)
    return y


def ulps(got, ref):
    """|got - ref| in units of the spacing of `got`'s dtype at ref (ref may be more precise); inf == inf is 0."""
    dtype = got.dtype
    ref_in_dtype = np.asarray(ref).astype(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(got.astype(np.longdouble) - np.asarray(ref, np.longdouble))
        err = err / np.spacing(np.abs(ref_in_dtype)).astype(np.longdouble)
    return np.where(got == ref_in_dtype, 0, err).astype(np.float64)


# Ranges: the whole domain where exp is finite and non-zero, a little beyond on both
# sides, and near 0 where most activations live.
RANGES = {np.float32: [(-110.0, 95.0), (-100.0, 100.0), (-1.0, 1.0), (-104.0, -87.0)],
          np.float64: [(-760.0, 720.0), (-100.0, 100.0), (-1.0, 1.0), (-746.0, -708.0)]}


@pytest.mark.parametrize("lo, hi", RANGES[np.float32])
def test_float32_is_within_1_ulp_of_the_true_value_and_close_to_np_exp(lo, hi):
    x = np.random.default_rng(0).uniform(lo, hi, 10**6).astype(np.float32)
    y = run(x)
    assert y.dtype == np.float32
    true = np.exp(x.astype(np.float64))  # exact to far below a float32 ulp
    finite = true < np.finfo(np.float32).max
    assert np.isinf(y[~finite]).all()
    assert ulps(y[finite], true[finite]).max() <= 1.5  # measured 1.01; NumPy's SIMD expf is off by up to 2.5
    with np.errstate(over="ignore"):
        ref = np.exp(x)
    assert ulps(y, ref).max() <= 4  # measured 3: the two errors can add
    normal = ref >= np.finfo(np.float32).tiny
    np.testing.assert_allclose(y[normal], ref[normal], rtol=1e-6, atol=0)  # measured 2.6e-7


@pytest.mark.parametrize("lo, hi", RANGES[np.float64])
def test_float64_agrees_with_np_exp_to_an_ulp(lo, hi):
    x = np.random.default_rng(1).uniform(lo, hi, 10**6)
    y = run(x)
    assert y.dtype == np.float64
    with np.errstate(over="ignore"):
        ref = np.exp(x)
    assert ulps(y, ref).max() <= 2  # measured 1 over 2e7 points
    normal = (ref >= np.finfo(np.float64).tiny) & np.isfinite(ref)
    np.testing.assert_allclose(y[normal], ref[normal], rtol=5e-16, atol=0)  # measured 2.2e-16
    assert ((y == 0) == (ref == 0)).all() and (np.isinf(y) == np.isinf(ref)).all()


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 60, reason="needs an 80-bit long double for a reference")
def test_float64_is_within_1_ulp_of_the_true_value():
    x = np.random.default_rng(2).uniform(-745.0, 709.7, 10**6)
    true = np.exp(x.astype(np.longdouble))
    assert ulps(run(x), true).max() <= 1.0  # measured 0.90


def _around(dtype, centre, n=40):
    """n representable values on each side of `centre`, centre included."""
    c = dtype(centre)
    up, down = [c], [c]
    for _ in range(n):
        up.append(np.nextafter(up[-1], dtype(np.inf)))
        down.append(np.nextafter(down[-1], dtype(-np.inf)))
    return np.array(down[::-1] + up[1:], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_edges_match_np_exp(dtype):
    fi = np.finfo(dtype)
    special = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, np.inf, -np.inf, np.nan, -np.nan,
                        1e-30, -1e-30, 1e3, -1e3, 1e30, -1e30], dtype)
    special = np.concatenate([special, np.array([fi.tiny, -fi.tiny, fi.smallest_subnormal, -fi.smallest_subnormal,
                                                 fi.eps, -fi.eps, fi.max, -fi.max], dtype)])
    y = run(special)
    with np.errstate(over="ignore"):
        ref = np.exp(special)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    ok = ~np.isnan(ref)
    assert ulps(y[ok], ref[ok]).max() <= 1
    np.testing.assert_array_equal(y[[0, 1, 10, 11, 16, 17, 18, 19]], 1)  # e**0 and e**tiny are exactly 1
    assert y[6] == np.inf and y[7] == 0 and y[15] == 0 and y[-2] == np.inf and y[-1] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_overflow_and_underflow_boundaries_match_np_exp(dtype):
    # ln(max) is where exp overflows; ln(smallest denormal / 2) where it rounds to 0;
    # ln(tiny) where results turn denormal. Around each, inf/0 must appear exactly where np.exp has them.
    fi = np.finfo(dtype)
    for centre in (np.log(float(fi.max)), np.log(float(fi.smallest_subnormal)) - np.log(2.0),
                   np.log(float(fi.tiny))):
        x = _around(dtype, centre)
        y = run(x)
        with np.errstate(over="ignore", under="ignore"):
            true = np.exp(x.astype(np.longdouble))  # float64 cannot hold float64's boundary values
            ref = np.exp(x)
        np.testing.assert_array_equal(np.isinf(y), np.isinf(ref), err_msg=f"overflow near {centre}")
        np.testing.assert_array_equal(y == 0, ref == 0, err_msg=f"underflow near {centre}")
        finite = np.isfinite(y)
        if np.finfo(np.longdouble).nmant >= 60 or dtype == np.float32:
            assert ulps(y[finite], true[finite]).max() <= 1.5, f"near {centre}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_denormal_results_are_right_not_flushed(dtype):
    fi = np.finfo(dtype)
    x = np.linspace(np.log(float(fi.tiny)), np.log(float(fi.smallest_subnormal)), 10001).astype(dtype)
    y = run(x)
    assert (y[:-1] > 0).all() and (y < fi.tiny).sum() > 9000
    with np.errstate(under="ignore"):
        assert ulps(y, np.exp(x.astype(np.longdouble))).max() <= 1


@pytest.mark.parametrize("dtype, nbtype", [(np.float32, types.float32), (np.float64, types.float64)])
def test_dtype_is_preserved(dtype, nbtype):
    out = vexp_scalar(dtype(0.25))
    assert out == pytest.approx(np.exp(0.25), rel=1e-6)
    sigs = [s for s in vexp_scalar.nopython_signatures if s.args == (nbtype,)]
    assert sigs and sigs[0].return_type == nbtype
    assert run(np.zeros(3, dtype)).dtype == dtype


def test_non_float_arguments_are_a_typing_error():
    with pytest.raises(TypingError, match="float32 or float64"):
        vexp_scalar(3)


def test_uncompiled_stub_is_np_exp():
    assert vexp(np.float32(1.5)) == np.exp(np.float32(1.5))
    assert vexp(1.5) == np.exp(1.5)


@pytest.mark.parametrize("dtype, llty", [(np.float32, "float"), (np.float64, "double")])
def test_loop_is_vectorised_and_calls_no_exp(dtype, llty):
    # The point of vexp: the loop compiles to SIMD code (vector floor, no libm exp call).
    x = np.zeros(64, dtype)
    vexp_loop(np.empty_like(x), x)
    sig = [s for s in vexp_loop.signatures if str(s[0].dtype) == np.dtype(dtype).name][0]
    ir = vexp_loop.inspect_llvm(sig)
    assert re.search(rf"@llvm\.floor\.v\d+f{np.dtype(dtype).itemsize * 8}\(<\d+ x {llty}>", ir)
    assert "@llvm.exp." not in ir and "@exp" not in ir
