"""The compiled step (fastnet/kernels/step.py) against its NumPy twin, on networks of every kind of op:
Dense with each activation fused, activations alone (after another activation or after dropout),
dropout, L1/L2, each loss; batch sizes of 1, odd sizes and empty batches; float32 and float64."""
import numpy as np
import pytest

import fastnet as fn

NETWORKS = {
    "sigmoid": lambda n_in, n_out: [fn.Dense(n_in, 7), fn.Sigmoid(), fn.Dense(7, n_out)],
    "tanh, relu alone, leaky": lambda n_in, n_out: [fn.Dense(n_in, 5), fn.Tanh(), fn.ReLU(), fn.Dense(5, 9),
                                                    fn.LeakyReLU(0.1), fn.Dense(9, n_out)],
    "dropout then activation": lambda n_in, n_out: [fn.Dense(n_in, 6, l1=1e-3, l2=1e-2), fn.Dropout(0.3),
                                                    fn.Sigmoid(), fn.Dense(6, n_out, l2=1e-3)],
    "activation first": lambda n_in, n_out: [fn.Tanh(), fn.Dense(n_in, 3), fn.ReLU(), fn.Dropout(0.5),
                                             fn.Dense(3, n_out)],
    "one layer": lambda n_in, n_out: [fn.Dense(n_in, n_out, l1=1e-2)],
}
LOSSES = {"softmax": (fn.SoftmaxCrossEntropy, 4), "bce": (fn.BinaryCrossEntropy, 3), "mse": (fn.MSE, 2)}


def data(loss, n, n_in, n_out, rng):
    x = rng.standard_normal((n, n_in))
    if loss is fn.SoftmaxCrossEntropy:
        return x, rng.integers(0, n_out, n)
    if loss is fn.BinaryCrossEntropy:
        return x, (rng.random((n, n_out)) < 0.5).astype(np.float64)
    return x, rng.standard_normal((n, n_out))


def twins(network, loss, dtype, seed=0):
    make, n_out = LOSSES[loss]
    return [fn.Sequential(*NETWORKS[network](11, n_out), loss=make(), backend=b, dtype=dtype, seed=seed)
            for b in ("numba", "numpy")]


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 5, 33])
def test_the_compiled_step_matches_its_numpy_twin(network, loss, dtype, batch):
    compiled, twin = twins(network, loss, dtype)
    x, y = data(LOSSES[loss][0], batch, 11, compiled.n_out, np.random.default_rng(batch))
    results = []
    for model in (compiled, twin):
        loss_value = model.loss_and_grad(x, y, scale=0.5)
        results.append((loss_value, model.grads.copy(), model.predict(x), model.evaluate(x, y)))
        assert model.grads.dtype == np.dtype(dtype) and model.predict(x).dtype == np.dtype(dtype)
    tol = 2e-5 if dtype == "float32" else 1e-12
    (l1, g1, p1, e1), (l2, g2, p2, e2) = results
    assert l1 == pytest.approx(l2, rel=tol, abs=tol)
    np.testing.assert_allclose(g1, g2, rtol=tol * 10, atol=tol * max(1.0, np.abs(g2).max()))
    np.testing.assert_allclose(p1, p2, rtol=tol * 10, atol=tol)
    assert e1["loss"] == pytest.approx(e2["loss"], rel=tol, abs=tol)
    assert e1.get("accuracy") == e2.get("accuracy")


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_an_empty_batch_runs_and_gives_zero_loss_and_gradient(backend):
    model = fn.Sequential(fn.Dense(11, 6), fn.Sigmoid(), fn.Dropout(0.2), fn.Dense(6, 4),
                          loss=fn.SoftmaxCrossEntropy(), backend=backend, seed=0)
    model.grads[...] = 1
    x, y = np.zeros((3, 11), np.float32), np.zeros(3, np.int64)
    loss, hits = model._program.run(x, y, np.arange(0), 1.0, train=True, penalties=False)
    assert (loss, hits) == (0.0, 0)
    assert not model.grads.any()


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("loss", LOSSES)
def test_the_compiled_steps_gradient_matches_central_differences_in_float64(network, loss):
    model = twins(network, loss, "float64", seed=3)[0]
    x, y = data(LOSSES[loss][0], 6, 11, model.n_out, np.random.default_rng(1))
    assert fn.gradcheck(model, x, y, progress=False) < 1e-6  # dropout masks held fixed by gradcheck
