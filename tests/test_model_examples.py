"""Worked examples from issue 3, each checked against a hand computation or a known answer."""
import math

import numpy as np
import pytest

import fastnet as fn


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def batch_gradient(model, x, y) -> np.ndarray:
    """Backprop's gradient of the training loss at one batch (the whole of x), as a flat copy."""
    model.loss_and_grad(np.asarray(x, model.dtype), np.asarray(y))
    return model.grads.copy()


# ---- a single neuron learns Celsius -> Fahrenheit -----------------------------------

def test_single_neuron_learns_celsius_to_fahrenheit():
    celsius = np.arange(-50.0, 50.0).reshape(-1, 1)  # 100 values in [-50, 50)
    fahrenheit = 1.8 * celsius + 32.0
    model = fn.Sequential(fn.Dense(1, 1), loss=fn.MSE(), dtype="float64", seed=0)
    # Full-batch descent on unscaled inputs: the curvature is 2·mean(c²) ≈ 1667 along w but 2 along b,
    # so lr must stay below ~1e-3 and plain SGD would need ~4000 steps for b; momentum 0.9 needs ~800.
    model.fit(celsius, fahrenheit, epochs=800, batch_size=100, optimizer=fn.SGD(lr=1e-3, momentum=0.9),
              progress=False)
    w, b = model.layers[0].weight[0, 0], model.layers[0].bias[0]
    assert w == pytest.approx(1.8, abs=1e-2)
    assert b == pytest.approx(32.0, abs=1e-2)
    assert model.predict(np.array([[100.0]]))[0, 0] == pytest.approx(212.0, abs=0.1)


# ---- the 2-2-1 sigmoid network, by the chain rule ------------------------------------

@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_2_2_1_sigmoid_network_forward_loss_and_chain_rule_gradient(backend):
    model = fn.Sequential(fn.Dense(2, 2), fn.Sigmoid(), fn.Dense(2, 1), fn.Sigmoid(), loss=fn.MSE(),
                          backend=backend, dtype="float64", seed=0)
    model.set_weights({"layers.0.weight": np.ones((2, 2)), "layers.0.bias": np.zeros(2),
                       "layers.2.weight": np.ones((1, 2)), "layers.2.bias": np.zeros(1)})
    x, t = np.array([[-2.0, 5.0]]), np.array([[1.0]])

    # forward by hand
    h = sigmoid(1 * -2.0 + 1 * 5.0)  # both hidden units see the same sum, 3
    o = sigmoid(1 * h + 1 * h)
    loss = (o - 1.0) ** 2  # the model's MSE is mean((o - t)²); one output
    assert h == pytest.approx(0.952574, abs=1e-6)
    assert o == pytest.approx(0.870473, abs=1e-6)
    assert loss == pytest.approx(0.016777, abs=1e-6)
    assert model.predict(x)[0, 0] == pytest.approx(o, rel=1e-12)
    assert model.evaluate(x, t)["loss"] == pytest.approx(loss, rel=1e-12)

    # dL/dw1, w1 = weight from input 1 (x = -2) to hidden 1, stored at layers.0.weight[0, 0] (out, in)
    dl_do = 2 * (o - 1.0)
    do_dz = o * (1 - o)
    dz_dh1 = 1.0  # output weight from hidden 1
    dh1_dz1 = h * (1 - h)
    dz1_dw1 = -2.0
    chain = dl_do * do_dz * dz_dh1 * dh1_dz1 * dz1_dw1
    assert chain == pytest.approx(0.0026391, abs=1e-7)

    grad = batch_gradient(model, x, t)
    backprop = model.layers[0].dw[0, 0]
    assert grad[0] == backprop  # the flat vector starts with layer 0's weight, row-major
    assert backprop == pytest.approx(chain, rel=1e-9)

    h_step = 1e-5
    w = model.layers[0].weight
    w[0, 0] = 1 + h_step
    up = model.evaluate(x, t)["loss"]
    w[0, 0] = 1 - h_step
    down = model.evaluate(x, t)["loss"]
    w[0, 0] = 1
    assert backprop == pytest.approx((up - down) / (2 * h_step), rel=1e-6)


# ---- gradient descent on a bowl through the optimizer API ------------------------------

@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_sgd_step_descends_x2_plus_y2_to_the_origin(backend):
    opt = fn.SGD(lr=0.03)
    p = np.array([50.0, 43.0])
    norms = []
    for _ in range(300):
        opt.step(p, 2 * p, backend=backend)
        norms.append(np.hypot(*p))
    # each step multiplies p by exactly 1 - 2·0.03 = 0.94
    assert norms[0] == pytest.approx(0.94 * np.hypot(50.0, 43.0), rel=1e-12)
    assert all(b < a for a, b in zip(norms, norms[1:]))
    assert np.abs(p).max() < 1e-6


# ---- binary classification: noisy XOR -------------------------------------------------

def noisy_xor(n, rng):
    x = rng.uniform(-1, 1, (n, 2))
    y = ((x[:, 0] > 0) != (x[:, 1] > 0)).astype(np.float64)
    return x + rng.normal(0, 0.05, x.shape), y


def test_sigmoid_output_with_binary_cross_entropy_learns_noisy_xor():
    rng = np.random.default_rng(0)
    x, y = noisy_xor(800, rng)
    xt, yt = noisy_xor(400, rng)
    model = fn.Sequential(fn.Dense(2, 16), fn.Tanh(), fn.Dense(16, 1), loss=fn.BinaryCrossEntropy(), seed=1)
    model.fit(x, y, epochs=60, batch_size=16, optimizer=fn.Adam(lr=0.02), progress=False)
    result = model.evaluate(xt, yt)
    assert result["accuracy"] >= 0.95
    prob = model.predict(xt)
    assert prob.shape == (400, 1) and (prob > 0).all() and (prob < 1).all()
    assert np.mean((prob[:, 0] > 0.5) == yt) == pytest.approx(result["accuracy"])


# ---- L1 makes weights sparse, L2 does not -----------------------------------------------

def near_zero_fraction(penalty: str) -> float:
    """Fraction of |w| < 0.01 after fitting y = 1.5·x0 - 2·x1 + x2 + noise with 17 useless inputs."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 20))
    y = x[:, :3] @ np.array([1.5, -2.0, 1.0]) + rng.normal(size=200)
    dense = fn.Dense(20, 1, **{penalty: 0.3})
    model = fn.Sequential(dense, loss=fn.MSE(), dtype="float64", seed=0)
    model.fit(x, y, epochs=500, batch_size=200, optimizer=fn.SGD(lr=0.01), progress=False)
    assert np.all(np.abs(dense.weight[0, :3]) > 0.5)  # the useful inputs survive either penalty
    return float(np.mean(np.abs(dense.weight) < 1e-2))


def test_l1_leaves_clearly_more_near_zero_weights_than_l2():
    l1, l2 = near_zero_fraction("l1"), near_zero_fraction("l2")
    # The noise gives each useless weight a least-squares value ~0.1. L1 (gradient l1·sign(w),
    # larger than the noise's pull) holds them within lr·l1 of 0; L2 only scales them by ~0.87.
    assert l1 >= 0.7
    assert l1 - l2 >= 0.4


# ---- dropout: training-time only -------------------------------------------------------

def test_dropout_changes_training_forward_but_not_evaluate_or_predict():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6)), rng.integers(0, 3, 64)
    with_drop = fn.Sequential(fn.Dense(6, 32), fn.ReLU(), fn.Dropout(0.5), fn.Dense(32, 3),
                              loss=fn.SoftmaxCrossEntropy(), seed=4)
    without = fn.Sequential(fn.Dense(6, 32), fn.ReLU(), fn.Dense(32, 3), loss=fn.SoftmaxCrossEntropy(), seed=9)
    without.set_weights({k.replace("layers.3", "layers.2"): v for k, v in with_drop.get_weights().items()})

    assert np.array_equal(with_drop.predict(x), without.predict(x))
    assert with_drop.evaluate(x, y) == without.evaluate(x, y)
    assert np.array_equal(with_drop.predict(x), with_drop.predict(x))

    # a training step draws masks: its loss differs from the dropout-free net's, and between draws
    losses = [model.loss_and_grad(x.astype(np.float32), y) for model in (with_drop, with_drop, without)]
    assert losses[0] != losses[2] and losses[0] != losses[1]
    assert losses[2] == pytest.approx(without.evaluate(x, y)["loss"], rel=1e-6)  # no dropout: the same forward


# ---- gradcheck for every layer, activation and loss -----------------------------------

ACTIVATIONS = {
    "sigmoid": fn.Sigmoid, "sigmoid_a2_b05": lambda: fn.Sigmoid(a=2, b=0.5), "tanh": fn.Tanh,
    "relu": fn.ReLU, "leaky_relu": lambda: fn.LeakyReLU(alpha=0.1),
}
LOSSES = {"softmax_ce": fn.SoftmaxCrossEntropy, "mse": fn.MSE, "bce": fn.BinaryCrossEntropy}
VARIANTS = ("plain", "l1_l2", "dropout", "act_after_dropout", "act_on_output")


def gradcheck_model(act, loss, variant, backend):
    penalty = {"l1": 1e-3, "l2": 1e-2} if variant == "l1_l2" else {}
    layers = [fn.Dense(5, 4, **penalty), ACTIVATIONS[act]()]
    if variant == "dropout":
        layers.append(fn.Dropout(0.3))
    if variant == "act_after_dropout":  # an activation that is not fused into a Dense epilogue
        layers = [fn.Dense(5, 4), fn.Dropout(0.3), ACTIVATIONS[act]()]
    layers.append(fn.Dense(4, 3, **penalty))
    if variant == "act_on_output":
        layers.append(ACTIVATIONS[act]())
    return fn.Sequential(*layers, loss=LOSSES[loss](), backend=backend, seed=7)


def targets(loss, rng, n):
    if loss == "softmax_ce":
        return rng.integers(0, 3, n)
    if loss == "bce":
        return rng.integers(0, 2, (n, 3)).astype(np.float64)
    return rng.normal(size=(n, 3))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_gradcheck_below_1e_6_in_float64(act, loss, variant):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(8, 5))
    for backend in ("numba", "numpy"):
        model = gradcheck_model(act, loss, variant, backend)
        error = fn.gradcheck(model, x, targets(loss, rng, 8), max_params=None)
        assert error < 1e-6, f"{backend}: max relative error {error:.3g}"


UNUSUAL_ORDERS = {
    "input_dropout": lambda: [fn.Dropout(0.3), fn.Dense(5, 4), fn.Tanh(), fn.Dense(4, 3)],
    "activation_first": lambda: [fn.Tanh(), fn.Dense(5, 4), fn.ReLU(), fn.Dense(4, 3)],
    "two_activations": lambda: [fn.Dense(5, 4), fn.Tanh(), fn.Sigmoid(2, 0.5), fn.Dense(4, 3)],
    "dense_dense": lambda: [fn.Dense(5, 4), fn.Dense(4, 4, l1=0.01), fn.LeakyReLU(0.2), fn.Dropout(0.5),
                            fn.Dense(4, 3)],
    "deep": lambda: [fn.Dense(5, 6), fn.Sigmoid(), fn.Dropout(0.2), fn.Dense(6, 6), fn.Tanh(), fn.Dense(6, 4),
                     fn.ReLU(), fn.Dense(4, 3), fn.Tanh()],
}


@pytest.mark.parametrize("order", list(UNUSUAL_ORDERS))
def test_gradcheck_below_1e_6_for_unusual_layer_orders(order):
    """Orders that change how the plan fuses: nothing to fuse into, unfused activations, chained Dense."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 5)), rng.integers(0, 3, 8)
    for backend in ("numba", "numpy"):
        model = fn.Sequential(*UNUSUAL_ORDERS[order](), loss=fn.SoftmaxCrossEntropy(), backend=backend, seed=1)
        error = fn.gradcheck(model, x, y, max_params=None)
        assert error < 1e-6, f"{backend}: max relative error {error:.3g}"


def test_gradcheck_detects_a_wrong_gradient(monkeypatch):
    model = gradcheck_model("tanh", "mse", "plain", "numpy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 5)), rng.normal(size=(8, 3))
    assert fn.gradcheck(model, x, y) < 1e-6
    from fastnet.kernels import step

    real = step.dense_backward_dw_np  # what the NumPy twin of the step calls for dW

    def off_by_ten_percent(dw, db, dy, a):
        real(dw, db, dy, a)
        dw *= 1.1

    monkeypatch.setattr(step, "dense_backward_dw_np", off_by_ten_percent)
    assert fn.gradcheck(model, x, y) > 1e-2
