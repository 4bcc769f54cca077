"""Convolution and pooling kernels, in both backends: the textbook maths, finite differences, threads.

The twin and door tests (test_kernels_twins.py, test_kernels_door.py) cover these kernels through
kernel_cases like every other; this file checks what they cannot:

* both backends against float64 reference formulas written independently of the kernels
  (kernel_cases.conv_ref and friends), so twins that agree on a wrong answer fail;
* every backward against central finite differences in float64: conv dx/dw/db with each
  activation fused into the output and with each activation of the input (in_act), max and
  average pooling, with stride 2, padding and overlapping windows (stride < size);
* the kernels at a LeNet-sized geometry, large enough for the GEMMs' multi-threaded path, give
  the same bits with 1 and 2 numba threads (``kernel_digests``, run by test_conv_model.py in the
  same two processes as a conv model's training, to start them once).
"""
import hashlib

import numpy as np
import pytest

import kernel_cases as kc
from fastnet.kernels import ACT, get_backend
from test_kernels_gradients import assert_matches, central_difference

BACKENDS = ["numba", "numpy"]
IDENTITY = (ACT["identity"], 0.0, 0.0)
# stride 2 and padding 1 on an odd, non-square image the 3x3 window does not divide
GEO = kc.ConvGeometry(batch=2, c_in=2, c_out=3, h=7, wd=6, k=3, stride=2, pad=1)


def _conv_args(rng, geo, scale=1.0):
    x = scale * rng.standard_normal((geo.batch, geo.c_in * geo.h * geo.wd))
    w = rng.standard_normal((geo.c_out, geo.c_in * geo.k * geo.k)) / geo.k
    b = 0.1 * rng.standard_normal(geo.c_out)
    return x, w, b


def _w4(w, geo):
    return w.reshape(geo.c_out, geo.c_in, geo.k, geo.k)


def _x4(x, geo):
    return x.reshape(geo.batch, geo.c_in, geo.h, geo.wd)


def _out_width(geo):
    oh, ow = geo.out_hw
    return geo.c_out * oh * ow


# ---- the maths, against float64 reference formulas ------------------------------------------

@pytest.mark.parametrize("geo", [GEO, kc.ConvGeometry(1, 1, 1, 1, 1, 1, 1, 0), kc.ConvGeometry(3, 3, 4, 9, 5, 5, 3, 4),
                                 kc.ConvGeometry(2, 1, 2, 6, 8, 2, 1, 0)],
                         ids=["stride2_pad1", "all_ones", "stride3_pad4", "even_kernel"])
@pytest.mark.parametrize("variant", list(kc.ACT_VARIANTS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_forward_is_the_cross_correlation_of_pytorch(backend, variant, geo):
    act, p0, p1 = kc.ACT_VARIANTS[variant]
    x, w, b = _conv_args(np.random.default_rng(0), geo)
    y = np.full((geo.batch, _out_width(geo)), np.nan)
    get_backend(backend).conv_forward(y, x, w, b, *geo.args, act, p0, p1)
    ref = kc.act_ref(kc.conv_ref(_x4(x, geo), _w4(w, geo), b, geo.stride, geo.pad), act, p0, p1)
    np.testing.assert_allclose(y, ref.reshape(y.shape), rtol=1e-12, atol=1e-13)


def test_conv_ref_matches_a_hand_computed_convolution():
    # The reference itself: a 1-channel 3x3 image, 2x2 kernel, padding 1, stride 2.
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    out = kc.conv_ref(x, w, np.array([0.5]), stride=2, pad=1)
    # windows at (-1,-1), (-1,1), (1,-1), (1,1) of the padded image
    expected = np.array([[4 * 1, 3 * 2 + 4 * 3], [2 * 4 + 4 * 7, 1 * 5 + 2 * 6 + 3 * 8 + 4 * 9]]) + 0.5
    np.testing.assert_array_equal(out[0, 0], expected)


@pytest.mark.parametrize("variant", list(kc.CONV_BACKWARD_VARIANTS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_backward_is_the_reference_gradient(backend, variant):
    (act, p0, p1), (in_act, in_p0, in_p1) = kc.CONV_BACKWARD_VARIANTS[variant]
    geo = GEO
    rng = np.random.default_rng(1)
    z, w, b = _conv_args(rng, geo)
    x = kc.act_ref(z, in_act, in_p0, in_p1)
    y = kc.act_ref(kc.conv_ref(_x4(x, geo), _w4(w, geo), b, geo.stride, geo.pad), act, p0, p1).reshape(geo.batch, -1)
    g = rng.standard_normal(y.shape)
    dx, dw, db = np.full_like(x, np.nan), np.full_like(w, np.nan), np.full_like(b, np.nan)
    get_backend(backend).conv_backward(dx, dw, db, g, x, w, y, x.copy(), *geo.args, act, p0, p1, in_act, in_p0, in_p1)
    gz = np.empty_like(g)
    get_backend("numpy").activation_backward(gz, g, y, act, p0, p1)  # g f'(y), from the tested activation kernel
    oh, ow = geo.out_hw
    ref_dx, ref_dw, ref_db = kc.conv_grads_ref(gz.reshape(geo.batch, geo.c_out, oh, ow), _x4(x, geo), _w4(w, geo),
                                               geo.stride, geo.pad)
    ref_dx = ref_dx.reshape(x.shape)
    get_backend("numpy").activation_backward(ref_dx, ref_dx.copy(), x, in_act, in_p0, in_p1)
    np.testing.assert_allclose(dw, ref_dw.reshape(w.shape), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(db, ref_db, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-12)


POOLS = [kc.ConvGeometry(2, 3, 3, 7, 6, 3, 2, 0), kc.ConvGeometry(1, 2, 2, 5, 5, 2, 2, 0),
         kc.ConvGeometry(2, 1, 1, 6, 7, 2, 3, 0), kc.ConvGeometry(1, 1, 1, 1, 1, 1, 1, 0)]
POOL_IDS = ["overlapping_3_by_2", "tiling_2_by_2_odd_image", "gaps_2_by_3", "all_ones"]


@pytest.mark.parametrize("geo", POOLS, ids=POOL_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_pooling_forward_is_the_window_max_and_mean(backend, geo):
    k = get_backend(backend)
    x = np.random.default_rng(2).standard_normal((geo.batch, geo.c_in * geo.h * geo.wd))
    win = kc.pool_windows_ref(_x4(x, geo), geo.k, geo.stride)
    n_out = win[..., 0].size // geo.batch
    y, arg = np.full((geo.batch, n_out), np.nan), np.full((geo.batch, n_out), 255, np.uint8)
    k.maxpool_forward(y, arg, x, *geo.args[:5])
    np.testing.assert_array_equal(y, win.max(axis=-1).reshape(y.shape))
    np.testing.assert_array_equal(arg, win.argmax(axis=-1).reshape(arg.shape))
    k.avgpool_forward(y, x, *geo.args[:5])
    np.testing.assert_allclose(y, win.mean(axis=-1).reshape(y.shape), rtol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_maxpool_keeps_the_first_maximum_and_a_nan(backend):
    # ties go to the first place in (i, j) order, as np.argmax; a NaN wins, so divergence shows
    x = np.array([[1, 3, 3, 0,
                   3, 2, 0, 0,
                   0, 0, 2, np.nan,
                   5, 5, 1, np.nan]], np.float32)
    y, arg = np.zeros((1, 4), np.float32), np.zeros((1, 4), np.uint8)
    get_backend(backend).maxpool_forward(y, arg, x, 1, 4, 4, 2, 2)
    np.testing.assert_array_equal(arg, [[1, 0, 2, 1]])
    assert y[0, 0] == 3 and y[0, 1] == 3 and y[0, 2] == 5 and np.isnan(y[0, 3])


# ---- finite differences in float64 ---------------------------------------------------------

def _away_from_kinks(pre, what):
    assert np.abs(pre).min() > 1e-4, f"{what} must sit away from the relu kink for a finite difference"


def test_conv_backward_dw_db_dx_with_the_output_activation_fused_match_finite_differences(kernels_and_activation):
    # L = sum(f(conv(x, w) + b) * r); conv_backward applies f'(y) to r itself
    k, (act, p0, p1) = kernels_and_activation
    geo = GEO
    rng = np.random.default_rng(3)
    x, w, b = _conv_args(rng, geo)
    r = rng.standard_normal((geo.batch, _out_width(geo)))
    y = np.empty_like(r)
    pre = np.empty_like(r)
    k.conv_forward(pre, x, w, b, *geo.args, *IDENTITY)
    _away_from_kinks(pre, "pre-activations")

    def loss():
        k.conv_forward(y, x, w, b, *geo.args, act, p0, p1)
        return np.sum(y * r)

    loss()
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    k.conv_backward(dx, dw, db, r, x, w, y, x, *geo.args, act, p0, p1, *IDENTITY)
    assert_matches(dw, central_difference(loss, w))
    assert_matches(db, central_difference(loss, b))
    assert_matches(dx, central_difference(loss, x))


def test_conv_backward_dx_through_the_input_activation_matches_finite_differences(kernels_and_activation):
    # x = f_in(z) is the layer below's output; L = sum(conv(x, w) * r); dL/dz = col2im(w.T r) * f_in'(z),
    # which conv_backward computes fused (in_act) from a = x
    k, (act, p0, p1) = kernels_and_activation
    geo = GEO
    rng = np.random.default_rng(4)
    z, w, b = _conv_args(rng, geo, scale=2.0)
    _away_from_kinks(z, "the input's pre-activations")
    r = rng.standard_normal((geo.batch, _out_width(geo)))
    x, y = np.empty_like(z), np.empty_like(r)

    def loss():
        k.activation_forward(x, z, act, p0, p1)
        k.conv_forward(y, x, w, b, *geo.args, *IDENTITY)
        return np.sum(y * r)

    loss()
    dz, dw, db = np.empty_like(z), np.empty_like(w), np.empty_like(b)
    k.conv_backward(dz, dw, db, r, x, w, y, x, *geo.args, *IDENTITY, act, p0, p1)
    assert_matches(dz, central_difference(loss, z))
    assert_matches(dw, central_difference(loss, w))


@pytest.mark.parametrize("geo", POOLS[:3], ids=POOL_IDS[:3])
@pytest.mark.parametrize("backend", BACKENDS)
def test_pooling_backward_matches_finite_differences(backend, geo):
    k = get_backend(backend)
    rng = np.random.default_rng(5)
    # distinct values, far apart compared with the step: each window's maximum stays put
    x = rng.permutation(geo.batch * geo.c_in * geo.h * geo.wd).reshape(geo.batch, -1) / 10.0
    n_out = geo.c_in * geo.out_hw[0] * geo.out_hw[1]
    r = rng.standard_normal((geo.batch, n_out))
    y, arg = np.empty_like(r), np.empty(r.shape, np.uint8)

    def max_loss():
        k.maxpool_forward(y, arg, x, *geo.args[:5])
        return np.sum(y * r)

    def avg_loss():
        k.avgpool_forward(y, x, *geo.args[:5])
        return np.sum(y * r)

    max_loss()
    dx = np.full_like(x, np.nan)
    k.maxpool_backward(dx, r, arg, *geo.args[:5])
    assert_matches(dx, central_difference(max_loss, x))
    k.avgpool_backward(dx, r, *geo.args[:5])
    assert_matches(dx, central_difference(avg_loss, x))


@pytest.mark.parametrize("dtype", kc.DTYPES, ids=lambda d: d.__name__)
def test_twins_agree_on_the_multithreaded_gemm_path(dtype):
    # kernel_cases' geometries stay small; LeNet's first layer on a batch of 64 takes the GEMMs'
    # multi-threaded path, with a stride and padding
    geo = kc.ConvGeometry(64, 1, 6, 28, 27, 5, 2, 2)
    rng = np.random.default_rng(7)
    x, w, b = (a.astype(dtype) for a in _conv_args(rng, geo))
    g = rng.standard_normal((geo.batch, _out_width(geo))).astype(dtype)
    results = {}
    for backend in BACKENDS:
        k = get_backend(backend)
        y = np.full(g.shape, np.nan, dtype)
        k.conv_forward(y, x, w, b, *geo.args, ACT["relu"], 0.0, 0.0)
        dx, dw, db = np.full_like(x, np.nan), np.full_like(w, np.nan), np.full_like(b, np.nan)
        k.conv_backward(dx, dw, db, g, x, w, y, x, *geo.args, ACT["relu"], 0.0, 0.0, ACT["tanh"], 0.0, 0.0)
        results[backend] = (y, dx, dw, db)
    # error bounds: the same sums over absolute values (see kernel_cases)
    ax, aw = np.abs(_x4(x, geo).astype(np.float64)), np.abs(_w4(w, geo).astype(np.float64))
    sx, sw, sb = kc.conv_grads_ref(np.abs(g.astype(np.float64)).reshape(geo.batch, geo.c_out, *geo.out_hw), ax, aw,
                                   geo.stride, geo.pad)
    scales = (kc.conv_ref(ax, aw, np.abs(b), geo.stride, geo.pad).reshape(g.shape),
              sx.reshape(x.shape) * kc.act_grad_terms(x, ACT["tanh"], 0.0, 0.0), sw.reshape(w.shape), sb)
    for name, got, ref, scale in zip(("y", "dx", "dw", "db"), results["numba"], results["numpy"], scales):
        problem = kc.mismatch(got, ref, kc.RTOL[dtype], kc.ATOL[dtype], scale)
        assert problem is None, f"{name}: {problem}"


# ---- the same bits at any thread count ---------------------------------------------------------

# LeNet's first layer on a batch of 64: 6 x 25 x 64·784 = 7.5M multiply-adds, above the GEMMs'
# multi-threaded threshold; the second layer with stride 2, padding and an overlapping pool.
THREAD_GEOS = [kc.ConvGeometry(64, 1, 6, 28, 28, 5, 1, 2), kc.ConvGeometry(33, 6, 16, 15, 13, 5, 2, 2)]


def kernel_digests() -> dict:
    """sha256 of every output of the convolution and pooling kernels at THREAD_GEOS, per dtype."""
    import numba

    out = {"threads": numba.get_num_threads()}
    k = get_backend("numba")
    for n, geo in enumerate(THREAD_GEOS):
        for dtype in kc.DTYPES:
            rng = np.random.default_rng(n)
            x, w, b = (a.astype(dtype) for a in _conv_args(rng, geo))
            y = np.empty((geo.batch, _out_width(geo)), dtype)
            k.conv_forward(y, x, w, b, *geo.args, ACT["relu"], 0.0, 0.0)
            g = rng.standard_normal(y.shape).astype(dtype)
            dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
            k.conv_backward(dx, dw, db, g, x, w, y, x, *geo.args, ACT["relu"], 0.0, 0.0, ACT["tanh"], 0.0, 0.0)
            pool = kc.ConvGeometry(geo.batch, geo.c_out, geo.c_out, *geo.out_hw, 3, 2, 0)
            py = np.empty((geo.batch, geo.c_out * pool.out_hw[0] * pool.out_hw[1]), dtype)
            arg = np.empty(py.shape, np.uint8)
            k.maxpool_forward(py, arg, y, *pool.args[:5])
            pdx = np.empty_like(y)
            k.maxpool_backward(pdx, py, arg, *pool.args[:5])
            ady = np.empty_like(y)
            k.avgpool_backward(ady, py, *pool.args[:5])
            h = hashlib.sha256()
            for a in (y, dx, dw, db, py, arg, pdx, ady):
                h.update(a.tobytes())
            out[f"{n}-{np.dtype(dtype).name}"] = h.hexdigest()
    return out

