"""The public training step: loss_and_grad fills model.grads, train_step also updates, update applies."""
import numpy as np
import pytest

import fastnet as fn


def make(seed=0, l2=0.0, dtype="float64", backend="numba"):
    return fn.Sequential(fn.Dense(5, 7, l2=l2), fn.Tanh(), fn.Dense(7, 3, l1=l2), loss=fn.SoftmaxCrossEntropy(),
                         dtype=dtype, backend=backend, seed=seed)


@pytest.fixture
def batch():
    rng = np.random.default_rng(1)
    return rng.normal(size=(12, 5)), rng.integers(0, 3, 12)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_train_step_is_what_fit_does_on_one_batch(batch, backend):
    x, y = batch
    stepped, fitted = make(backend=backend), make(backend=backend)
    optimizer = fn.SGD(lr=0.3, momentum=0.9)
    losses = [stepped.train_step(x, y, optimizer) for _ in range(3)]
    fitted.fit(x, y, epochs=3, batch_size=len(x), shuffle=False, optimizer=fn.SGD(lr=0.3, momentum=0.9),
               progress=False)
    assert np.array_equal(stepped.params, fitted.params)
    assert losses == pytest.approx(fitted.history["loss"], rel=1e-15)  # fit records (loss · n) / n


def test_loss_and_grad_fills_grads_and_leaves_the_weights(batch):
    x, y = batch
    model = make(l2=0.1)
    before = model.params.copy()
    model.grads[...] = np.nan
    loss = model.loss_and_grad(x, y)
    assert np.array_equal(model.params, before)
    assert np.isfinite(model.grads).all() and np.abs(model.grads).sum() > 0
    penalty = sum(0.1 * np.abs(d.weight).sum() if d.l1 else 0.5 * 0.1 * (d.weight ** 2).sum() for d in model.dense)
    assert loss == pytest.approx(model.evaluate(x, y)["loss"] + penalty, rel=1e-12)


def test_shards_scaled_by_their_share_sum_to_the_global_batch_gradient(batch):
    """What a data-parallel step relies on: shard gradients scaled by n_shard / n_global, penalties added
    by one shard only, sum to the whole batch's gradient (and the losses to its loss)."""
    x, y = batch
    model = make(l2=0.05)
    whole_loss = model.loss_and_grad(x, y)
    whole = model.grads.copy()
    total, summed = 0.0, np.zeros_like(whole)
    for k, rows in enumerate((slice(0, 5), slice(5, 12))):
        total += model.loss_and_grad(x[rows], y[rows], scale=len(x[rows]) / len(x), penalties=k == 0)
        summed += model.grads
    assert np.allclose(summed, whole, rtol=1e-12, atol=1e-15)
    assert total == pytest.approx(whole_loss, rel=1e-12)


def test_scale_multiplies_the_data_gradient(batch):
    x, y = batch
    model = make(l2=0.05)
    model.loss_and_grad(x, y, penalties=False)
    plain = model.grads.copy()
    model.loss_and_grad(x, y, scale=0.25, penalties=False)
    assert np.allclose(model.grads, 0.25 * plain, rtol=1e-12, atol=0)


def test_update_applies_the_optimizer_at_the_scheduled_rate(batch):
    x, y = batch
    model = make()
    model.fit(x, y, epochs=2, optimizer=fn.SGD(lr=0.5, schedule=fn.StepLR(1, gamma=0.1)), progress=False)
    model.loss_and_grad(x, y)
    before, grads = model.params.copy(), model.grads.copy()
    model.update()
    assert np.allclose(model.params, before - 0.5 * 0.01 * grads, rtol=1e-12)  # epoch 2 runs at 0.5·0.1²


def test_a_diverging_step_raises_and_leaves_the_weights(batch):
    x, y = batch
    model = fn.Sequential(fn.Dense(5, 1), loss=fn.MSE(), dtype="float32", seed=0)
    before = model.params.copy()
    with pytest.raises(fn.errors.DivergenceError, match="loss is inf"):
        model.train_step(x * 1e30, np.ones((12, 1)), fn.SGD(lr=0.1))
    assert np.array_equal(model.params, before)


@pytest.mark.parametrize("call, error, message", [
    (lambda m, x, y: m.loss_and_grad(x, y, scale=float("nan")), fn.errors.ConfigError, "scale"),
    (lambda m, x, y: m.loss_and_grad(x, y, penalties="no"), fn.errors.ConfigError, "penalties"),
    (lambda m, x, y: m.loss_and_grad(x[:0], y[:0]), fn.errors.InputError, "empty"),
    (lambda m, x, y: m.loss_and_grad(x[:, :4], y), fn.errors.ShapeError, "5"),
    (lambda m, x, y: m.train_step(x, y, optimizer="rmsprop"), fn.errors.ConfigError, "optimizer"),
])
def test_bad_arguments_to_a_step_are_one_clear_error(batch, call, error, message):
    model = make()
    with pytest.raises(error, match=message):
        call(model, *batch)


def test_compiling_kernels_leaves_the_optimizer_state_alone(batch):
    x, y = batch
    model = make()
    model.fit(x, y, epochs=2, optimizer=fn.Adam(lr=0.01), progress=False)
    state = {k: v.copy() for k, v in model.optimizer.state.items()}
    steps = model.optimizer.steps
    model.compile_kernels(x.dtype)
    assert model.optimizer.steps == steps
    assert all(np.array_equal(model.optimizer.state[k], v) for k, v in state.items())
