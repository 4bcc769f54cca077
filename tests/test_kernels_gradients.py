"""Every backward kernel, in both backends, matches central finite differences in float64.

    d f / d x_i  ~  (f(x + h e_i) - f(x - h e_i)) / 2h,   h = 1e-6

For an array output y the scalar objective is sum(y * r) with a random r, so the
backward kernel is fed dy = r. Points sit away from the relu kink and from w = 0
for the L1 penalty, where the derivative does not exist.
"""
import numpy as np
import pytest

from fastnet.kernels import ACT, get_backend

H = 1e-6
RTOL, ATOL = 1e-6, 1e-8
BACKENDS = ["numba", "numpy"]


def central_difference(objective, x):
    """Numerical gradient of objective() with respect to array x, which it reads."""
    grad = np.empty_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + H
        up = objective()
        x[i] = old - H
        down = objective()
        x[i] = old
        grad[i] = (up - down) / (2 * H)
    return grad


def assert_gradient(analytic, objective, x):
    assert_matches(analytic, central_difference(objective, x))


def assert_matches(analytic, numerical):
    np.testing.assert_allclose(analytic, numerical, rtol=RTOL, atol=ATOL)


def away_from_zero(rng, shape, low=0.2, high=2.0):
    return rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)


def test_dense_backward_dw_db_and_activation_backward_match_finite_differences(kernels_and_activation):
    # L = sum(f(x w^T + b) * r): dz = activation_backward(r, y), then dw, db = dense_backward_dw(dz, x)
    k, (act, p0, p1) = kernels_and_activation
    rng = np.random.default_rng(1)
    x, w, r = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((3, 5))
    b = np.zeros(5)
    b[:] = 0.5 - (x @ w.T).mean(axis=0)
    assert np.abs(x @ w.T + b).min() > 1e-3, "pre-activations must sit away from the relu kink"
    y = np.empty((3, 5))

    def loss():
        k.dense_forward(y, x, w, b, act, p0, p1)
        return np.sum(y * r)

    loss()
    dz, dw, db = np.empty_like(y), np.empty_like(w), np.empty_like(b)
    k.activation_backward(dz, r, y, act, p0, p1)
    k.dense_backward_dw(dw, db, dz, x)
    assert_gradient(dw, loss, w)
    assert_gradient(db, loss, b)


def test_dense_backward_dx_and_activation_backward_match_finite_differences(kernels_and_activation):
    # x = f(z) is the previous layer's output; L = sum((x w^T + b) * r); dL/dz = (r @ w) * f'(z),
    # which dense_backward_dx computes fused and activation_backward computes from dy = r @ w.
    k, (act, p0, p1) = kernels_and_activation
    rng = np.random.default_rng(2)
    z, w, b, r = away_from_zero(rng, (3, 4), high=4.0), rng.standard_normal((5, 4)), rng.standard_normal(5), rng.standard_normal((3, 5))
    x, y = np.empty_like(z), np.empty((3, 5))

    def loss():
        k.activation_forward(x, z, act, p0, p1)
        k.dense_forward(y, x, w, b, ACT["identity"], 0.0, 0.0)
        return np.sum(y * r)

    loss()
    fused, alone = np.empty_like(z), np.empty_like(z)
    k.dense_backward_dx(fused, r, w, x, act, p0, p1)
    k.activation_backward(alone, r @ w, x, act, p0, p1)
    numerical = central_difference(loss, z)
    assert_matches(fused, numerical)
    assert_matches(alone, numerical)


def _fused_loss_case(name, rng):
    """(x, extra args) for a loss kernel computing loss(x) and d loss / dx."""
    z = 3 * rng.standard_normal((4, 5))
    if name == "softmax_ce":
        return z, (np.array([0, 4, 2, 2]),)
    if name == "mse":
        return z, (rng.standard_normal(z.shape),)
    return z, (rng.integers(0, 2, z.shape).astype(np.float64),)  # sigmoid_bce


@pytest.mark.parametrize("name", ["softmax_ce", "mse", "sigmoid_bce"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_loss_gradient_matches_finite_differences_of_its_loss(backend, name):
    kernel = getattr(get_backend(backend), name)
    x, extra = _fused_loss_case(name, np.random.default_rng(4))
    scratch = np.empty_like(x)
    grad = np.empty_like(x)
    kernel(grad, x, *extra)
    assert_gradient(grad, lambda: kernel(scratch, x, *extra), x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_penalty_gradient_matches_finite_differences_of_its_value(backend):
    k = get_backend(backend)
    w = away_from_zero(np.random.default_rng(5), 12)
    scratch = np.zeros_like(w)
    grad = np.zeros_like(w)
    k.penalty(grad, w, 0.03, 0.2)
    assert_gradient(grad, lambda: k.penalty(scratch, w, 0.03, 0.2), w)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_backward_is_the_same_product_and_matches_finite_differences(backend):
    k = get_backend(backend)
    rng = np.random.default_rng(6)
    x, r = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    mask = (rng.random(x.shape) >= 0.5).astype(np.uint8)
    assert 0 < mask.sum() < mask.size
    y = np.empty_like(x)

    def loss():
        k.dropout(y, x, mask, 2.0)
        return np.sum(y * r)

    dx = np.empty_like(x)
    k.dropout(dx, r, mask, 2.0)
    assert_gradient(dx, loss, x)


def test_finite_differences_catch_a_wrong_gradient():
    # The checker itself can fail: a gradient off by 1e-4 relative does not pass.
    x = np.linspace(0.5, 2.0, 6)
    with pytest.raises(AssertionError):
        assert_gradient(3 * x**2 * (1 + 1e-4), lambda: np.sum(x**3), x)
    assert_gradient(3 * x**2, lambda: np.sum(x**3), x)
