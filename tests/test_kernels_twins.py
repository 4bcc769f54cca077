"""Every numba kernel computes what its NumPy twin computes, in float32 and float64.

Shapes come from hypothesis, with the awkward ones pinned by @example: a batch of
0 and of 1, sizes of 1, odd sizes and sizes off the 4/8/16 block multiples.
Elementwise results are compared with a plain relative tolerance; sums (GEMMs,
losses, running averages) against the size of the terms summed (see kernel_cases).
"""
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import kernel_cases as kc
from fastnet.kernels import TWINS, get_backend

NUMBA, NUMPY = get_backend("numba"), get_backend("numpy")

odd_or_blocky = st.sampled_from([1, 2, 3, 5, 7, 9, 15, 16, 17, 31, 33])
batch = st.one_of(st.just(0), odd_or_blocky, st.integers(0, 70))
dim = st.one_of(odd_or_blocky, st.integers(1, 70))
sizes = st.builds(kc.Sizes, rows=batch, cols=dim, inner=dim)


def test_every_kernel_has_a_case_builder():
    assert set(kc.CASES) == {t.name for t in TWINS}


def run_both(name, case):
    """(numba, numpy) results of the checked kernels: (written arrays, returned values)."""
    return case.run(getattr(NUMBA, name)), case.run(getattr(NUMPY, name))


def assert_twins_agree(name, case, dtype):
    rtol, atol = kc.RTOL[dtype], kc.ATOL[dtype]
    (got, got_ret), (ref, ref_ret) = run_both(name, case)
    for index, g, r in zip(case.writes, got, ref):
        # float outputs in the case's dtype; others (max pooling's uint8 argmax) keep their own
        expected = dtype if case.args[index].dtype.kind == "f" else case.args[index].dtype
        assert g.dtype == r.dtype == expected
        assert np.isfinite(r).all(), f"{name}: the NumPy twin left non-finite values in argument {index}"
        problem = kc.mismatch(g, r, rtol, atol, case.scale.get(index, 0.0))
        assert problem is None, f"{name} argument {index}: {problem}"
    if case.returns is None:
        assert got_ret == ref_ret == [None] * case.steps
    elif case.returns == "count":
        assert got_ret == ref_ret and all(isinstance(r, int) for r in got_ret + ref_ret)
    else:
        problem = kc.mismatch(got_ret, ref_ret, rtol, atol, case.ret_scale)
        assert problem is None, f"{name} returned value: {problem}"


@pytest.mark.parametrize("dtype", kc.DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name, variant", kc.all_variants())
@settings(deadline=None, max_examples=25)
@given(sizes=sizes, seed=st.integers(0, 2**32 - 1))
@example(sizes=kc.Sizes(0, 3, 5), seed=0)
@example(sizes=kc.Sizes(1, 1, 1), seed=1)
@example(sizes=kc.Sizes(1, 17, 9), seed=2)
@example(sizes=kc.Sizes(7, 15, 33), seed=3)
@example(sizes=kc.Sizes(33, 10, 65), seed=4)
@example(sizes=kc.Sizes(129, 131, 130), seed=5)  # 2.2M multiply-adds: the GEMMs' multi-threaded path
def test_numba_kernel_matches_numpy_twin(name, variant, dtype, sizes, seed):
    case = kc.build(name, variant, np.random.default_rng(seed), dtype, sizes)
    assert_twins_agree(name, case, dtype)


# ---- float32 stays float32 -------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("name, variant", kc.all_variants())
def test_float32_inputs_give_float32_outputs_and_scalars(backend, name, variant):
    case = kc.build(name, variant, np.random.default_rng(0), np.float32, kc.Sizes(5, 7, 3))
    args = case.fresh_args()
    before = {i: (args[i], args[i].dtype) for i in case.writes}
    ret = getattr(get_backend(backend), name)(*args)
    for i, (array, dtype) in before.items():
        assert args[i] is array and array.dtype == dtype
        assert dtype == np.float32 or dtype.kind != "f"  # max pooling's argmax output is uint8
    if case.returns is None:
        assert ret is None
    elif case.returns == "count":
        assert isinstance(ret, int)
    else:
        # A float32 result is exactly representable in float32; a value computed in
        # float64 and returned as such almost never is.
        assert np.float32(ret) == ret, f"{name} returned {ret!r}, not a float32 value"
        assert np.asarray(ret).dtype == (np.float32 if backend == "numpy" else np.float64)  # numba boxes a Python float


def test_numba_scalar_kernels_are_compiled_to_return_float32_for_float32_arrays():
    from numba import types

    for name, variant in kc.all_variants():
        case = kc.build(name, variant, np.random.default_rng(0), np.float32, kc.Sizes(2, 3, 4))
        kernel = getattr(NUMBA.raw, name)
        case.run(kernel)
        sigs = [s for s in kernel.nopython_signatures
                if all(a.dtype != types.float64 for a in s.args if isinstance(a, types.Array))]
        assert sigs, name
        for sig in sigs:
            expected = {None: types.none, "count": types.intp, "float": types.float32}[case.returns]
            assert sig.return_type == expected, f"{name}{sig.args} -> {sig.return_type}"


# ---- extreme inputs ------------------------------------------------------------------

def _extreme_logits(dtype):
    z = np.array([[1000, -1000, 0], [-1000, -1000, -1000], [1000, 1000, -1000], [0, 0, 1000]], dtype)
    return z, np.array([1, 0, 2, 0], np.int64)


@pytest.mark.parametrize("dtype", kc.DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_large_logits_give_finite_losses_and_gradients(backend, dtype):
    k = get_backend(backend)
    z, labels = _extreme_logits(dtype)
    dz = np.empty_like(z)
    loss = k.softmax_ce(dz, z, labels)
    assert np.isfinite(loss) and np.isfinite(dz).all()
    assert loss == pytest.approx((2000 + np.log(3) + (2000 + np.log(2)) + 1000) / 4, rel=1e-6)

    p = np.empty_like(z)
    k.softmax(p, z)
    assert np.isfinite(p).all() and np.allclose(p.sum(axis=1), 1)

    t = (np.arange(z.size).reshape(z.shape) % 2).astype(dtype)
    loss = k.sigmoid_bce(dz, z, t)
    assert np.isfinite(loss) and np.isfinite(dz).all()
    expected = np.where(t == 1, np.maximum(-z, 0), np.maximum(z, 0)).astype(np.float64)  # the hinge part
    expected[z == 0] = np.log(2)
    assert loss == pytest.approx(expected.mean(), rel=1e-6)


@pytest.mark.parametrize("dtype", kc.DTYPES, ids=lambda d: d.__name__)
def test_large_logits_twins_agree(dtype):
    z, labels = _extreme_logits(dtype)
    t = (np.arange(z.size).reshape(z.shape) % 2).astype(dtype)
    for name, args in [("softmax_ce", (labels,)), ("softmax", ()), ("sigmoid_bce", (t,))]:
        case = kc.Case((np.empty_like(z), z, *args), writes=(0,), returns=None if name == "softmax" else "float")
        assert_twins_agree(name, case, dtype)


@pytest.mark.parametrize("dtype", kc.DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("variant", list(kc.ACT_VARIANTS))
def test_activations_of_huge_inputs_are_finite_and_agree(variant, dtype):
    act, p0, p1 = kc.ACT_VARIANTS[variant]
    z = np.array([[-1e4, -1000, -89, -20, 0, 20, 89, 1000, 1e4]], dtype)
    case = kc.Case((np.empty_like(z), z, act, p0, p1), writes=(0,))
    assert_twins_agree("activation_forward", case, dtype)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("variant", list(kc.ACT_VARIANTS))
def test_nan_stays_nan_through_every_activation(backend, variant):
    # A NaN must survive, so that training can detect divergence (DESIGN.md).
    act, p0, p1 = kc.ACT_VARIANTS[variant]
    k = get_backend(backend)
    z = np.array([[np.nan, 1.0, -1.0]])
    y = np.zeros_like(z)
    k.activation_forward(y, z, act, p0, p1)
    assert np.isnan(y[0, 0]) and not np.isnan(y[0, 1:]).any()
    x, w, b = np.array([[np.nan, 1.0]]), np.ones((2, 2)), np.zeros(2)
    y = np.zeros((1, 2))
    k.dense_forward(y, x, w, b, act, p0, p1)
    assert np.isnan(y).all()


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_nan_input_gives_nan_loss(backend):
    k = get_backend(backend)
    z = np.array([[0.5, np.nan, -1.0], [1.0, 2.0, 3.0]])
    dz = np.empty_like(z)
    assert np.isnan(k.softmax_ce(dz, z, np.array([0, 1])))
    assert np.isnan(k.mse(dz, z, np.zeros_like(z)))
    assert np.isnan(k.sigmoid_bce(dz, z, np.ones_like(z)))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_dropout_keeps_a_dropped_nan_a_nan(backend):
    # x * 0 is NaN for x = NaN: the dropout product must not hide a diverged unit.
    x = np.array([[np.nan, np.nan, 2.0]], np.float32)
    y = np.zeros_like(x)
    get_backend(backend).dropout(y, x, np.array([[0, 1, 0]], np.uint8), 2.0)
    assert np.isnan(y[0, :2]).all() and y[0, 2] == 0


# ---- the maths itself, against textbook formulas ----------------------------------------

@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_kernels_compute_the_textbook_formulas(backend):
    k = get_backend(backend)
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((4, 3)), rng.standard_normal((5, 3)), rng.standard_normal(5)
    for act, p0, p1 in kc.ACT_VARIANTS.values():
        y = np.empty((4, 5))
        k.dense_forward(y, x, w, b, act, p0, p1)
        np.testing.assert_allclose(y, kc.act_ref(x @ w.T + b, act, p0, p1), rtol=1e-12, atol=1e-14)
    z, labels = rng.standard_normal((4, 5)), np.array([0, 4, 2, 2])
    dz = np.empty_like(z)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert k.softmax_ce(dz, z, labels) == pytest.approx(-np.log(p[np.arange(4), labels]).mean(), rel=1e-12)
    k.softmax(dz, z)
    np.testing.assert_allclose(dz, p, rtol=1e-12)
    t = rng.integers(0, 2, z.shape).astype(np.float64)
    s = 1 / (1 + np.exp(-z))
    assert k.sigmoid_bce(dz, z, t) == pytest.approx(-(t * np.log(s) + (1 - t) * np.log(1 - s)).mean(), rel=1e-12)
    assert k.mse(dz, z, t) == pytest.approx(((z - t) ** 2).mean(), rel=1e-12)
    g = np.zeros(5)
    v = np.array([-2.0, -0.5, 0.0, 0.5, 3.0])
    assert k.penalty(g, v, 0.1, 0.2) == pytest.approx(0.1 * 6 + 0.1 * (v**2).sum(), rel=1e-12)
    np.testing.assert_allclose(g, 0.1 * np.sign(v) + 0.2 * v, rtol=1e-12)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_optimizers_follow_the_pytorch_update_rules(backend):
    k = get_backend(backend)
    g = np.array([0.5, -1.0, 2.0])
    w = np.ones(3)
    k.sgd(w, g, 0.1)
    np.testing.assert_allclose(w, 1 - 0.1 * g, rtol=1e-14)
    for nesterov in (False, True):
        w, v = np.ones(3), np.full(3, 0.2)
        k.sgd_momentum(w, v, g, 0.1, 0.9, nesterov)
        v_ref = 0.9 * 0.2 + g
        np.testing.assert_allclose(v, v_ref, rtol=1e-14)
        np.testing.assert_allclose(w, 1 - 0.1 * (g + 0.9 * v_ref if nesterov else v_ref), rtol=1e-14)
    w, m, v = np.ones(3), np.zeros(3), np.zeros(3)
    for step in (1, 2):
        k.adam(w, m, v, g, 0.01, 0.9, 0.999, 1e-8, 1 - 0.9**step, 1 - 0.999**step)
    m_ref = 0.9 * 0.1 * g + 0.1 * g
    v_ref = 0.999 * 0.001 * g * g + 0.001 * g * g
    np.testing.assert_allclose(m, m_ref, rtol=1e-14)
    np.testing.assert_allclose(v, v_ref, rtol=1e-14)
    # With a constant gradient both Adam steps move each weight by lr * sign(g).
    np.testing.assert_allclose(w, 1 - 2 * 0.01 * np.sign(g), rtol=1e-6)


def test_argmax_hits_treats_nan_as_the_maximum_like_np_argmax():
    z = np.array([[1, np.nan, 3], [np.nan, 0, 0], [2, 5, 5], [0, 1, np.nan]], np.float32)
    labels = np.array([1, 0, 1, 2])
    expected = int((np.argmax(z, axis=1) == labels).sum())
    assert expected == 4
    for name in ("numba", "numpy"):
        assert get_backend(name).argmax_hits(z, labels) == expected
