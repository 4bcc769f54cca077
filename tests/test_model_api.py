"""The public API of the model layer: layers, losses, optimizers, schedules, callbacks, Sequential."""
import math

import numpy as np
import pytest

import fastnet as fn


def one_layer(activation, n=3, **kw):
    """Dense(n, n) with identity weights and zero bias, then ``activation``: predict(x) = f(x)."""
    model = fn.Sequential(fn.Dense(n, n), activation, loss=fn.MSE(), dtype="float64", seed=0, **kw)
    model.set_weights({"layers.0.weight": np.eye(n), "layers.0.bias": np.zeros(n)})
    return model


def blobs(n=120, seed=0, classes=3, width=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = rng.normal(0, 3, (classes, width))
    return centres[y] + rng.normal(size=(n, width)), y


# ---- Dense -------------------------------------------------------------------------

def test_dense_stores_weight_out_by_in_and_computes_x_wt_plus_b():
    model = fn.Sequential(fn.Dense(3, 2), loss=fn.MSE(), dtype="float64", seed=0)
    w = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    b = np.array([0.25, -1.0])
    model.set_weights({"layers.0.weight": w, "layers.0.bias": b})
    x = np.array([[1.0, 1.0, 1.0], [2.0, 0.0, -1.0]])
    assert np.allclose(model.predict(x), x @ w.T + b, rtol=1e-14)
    assert model.layers[0].weight.shape == (2, 3) and model.n_params == 8


@pytest.mark.parametrize("init, expected_std", [
    ("xavier", math.sqrt(6 / (400 + 300)) / math.sqrt(3)),  # uniform(-l, l) has std l/√3
    ("he", math.sqrt(2 / 400)),
    ("normal", 0.01),
])
def test_dense_init_has_the_documented_spread_and_zero_bias(init, expected_std):
    model = fn.Sequential(fn.Dense(400, 300, init=init), loss=fn.MSE(), dtype="float64", seed=1)
    w = model.layers[0].weight
    assert w.std() == pytest.approx(expected_std, rel=0.02)
    assert abs(w.mean()) < 0.05 * expected_std
    assert not model.layers[0].bias.any()
    if init == "xavier":
        limit = math.sqrt(6 / 700)
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit


def test_dense_l1_l2_add_their_penalty_to_the_training_gradient():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 4)), rng.normal(size=(10, 2))
    grads = {}
    for l1, l2 in ((0.0, 0.0), (0.3, 0.0), (0.0, 0.5)):
        model = fn.Sequential(fn.Dense(4, 2, l1=l1, l2=l2), loss=fn.MSE(), dtype="float64", seed=3)
        model.loss_and_grad(x, y)
        grads[l1, l2] = (model.layers[0].dw.copy(), model.layers[0].db.copy(), model.layers[0].weight.copy())
    (g0, db0, w), (g1, db1, _), (g2, db2, _) = grads[0, 0], grads[0.3, 0], grads[0, 0.5]
    assert np.allclose(g1 - g0, 0.3 * np.sign(w), rtol=1e-12, atol=1e-14)
    assert np.allclose(g2 - g0, 0.5 * w, rtol=1e-12, atol=1e-14)
    assert np.array_equal(db0, db1) and np.array_equal(db0, db2)  # biases are not penalised


# ---- activations -------------------------------------------------------------------

X3 = np.array([[-3.0, -0.5, 0.0], [0.5, 2.0, 7.0]])


@pytest.mark.parametrize("a, b", [(1.0, 1.0), (2.0, 0.5), (3.0, 4.0)])
def test_sigmoid_is_the_generalised_logistic_a_over_1_plus_exp_minus_x_over_b(a, b):
    assert np.allclose(one_layer(fn.Sigmoid(a, b)).predict(X3), a / (1 + np.exp(-X3 / b)), rtol=1e-14)


@pytest.mark.parametrize("layer, f", [
    (fn.Tanh(), np.tanh),
    (fn.ReLU(), lambda x: np.maximum(x, 0)),
    (fn.LeakyReLU(alpha=0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    (fn.LeakyReLU(), lambda x: np.where(x > 0, x, 0.01 * x)),
])
def test_activation_forward_matches_its_formula(layer, f):
    assert np.allclose(one_layer(layer).predict(X3), f(X3), rtol=1e-14, atol=0)


def test_activation_by_name_builds_the_layer():
    assert isinstance(fn.layers.activation("relu"), fn.ReLU)
    assert fn.layers.activation("leaky-relu", alpha=0.3).alpha == 0.3
    assert fn.layers.activation("Sigmoid", a=2).a == 2


# ---- losses ------------------------------------------------------------------------

def test_softmax_cross_entropy_predict_gives_probabilities_and_evaluate_its_mean_nll():
    x, y = blobs()
    model = fn.Sequential(fn.Dense(4, 8), fn.Tanh(), fn.Dense(8, 3), loss=fn.SoftmaxCrossEntropy(),
                          dtype="float64", seed=2)
    p = model.predict(x)
    assert p.shape == (120, 3) and (p > 0).all()
    assert np.allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    result = model.evaluate(x, y)
    assert set(result) == {"loss", "accuracy"}
    assert result["loss"] == pytest.approx(-np.log(p[np.arange(120), y]).mean(), rel=1e-10)
    assert result["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y))


def test_mse_predict_gives_raw_outputs_and_evaluate_the_mean_square():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)), rng.normal(size=(50, 2))
    model = fn.Sequential(fn.Dense(3, 2), loss=fn.MSE(), dtype="float64", seed=0)
    out = model.predict(x)
    w, b = model.layers[0].weight, model.layers[0].bias
    assert np.allclose(out, x @ w.T + b, rtol=1e-13)
    assert model.evaluate(x, y) == {"loss": pytest.approx(np.mean((out - y) ** 2), rel=1e-12)}


def test_binary_cross_entropy_fuses_the_sigmoid_and_takes_0_1_targets():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)), rng.integers(0, 2, (50, 2))
    model = fn.Sequential(fn.Dense(3, 2), loss=fn.BinaryCrossEntropy(), dtype="float64", seed=0)
    z = x @ model.layers[0].weight.T + model.layers[0].bias
    p = model.predict(x)
    assert np.allclose(p, 1 / (1 + np.exp(-z)), rtol=1e-13)
    result = model.evaluate(x, y)
    assert result["loss"] == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)), rel=1e-12)
    assert result["accuracy"] == pytest.approx(np.mean((p > 0.5) == y))
    with pytest.raises(fn.InputError, match="0 or 1"):
        model.evaluate(x, y * 0.5)


# ---- optimizers --------------------------------------------------------------------

def reference_updates(kind, g_seq, lr, **kw):
    """PyTorch's update rules, written out in plain NumPy, applied to w0 = 1."""
    w = np.ones_like(g_seq[0])
    v = np.zeros_like(w)
    m = np.zeros_like(w)
    for t, g in enumerate(g_seq, start=1):
        if kind == "sgd":
            mu, nesterov = kw.get("momentum", 0.0), kw.get("nesterov", False)
            v = mu * v + g
            w = w - lr * ((g + mu * v) if nesterov else v)
        else:
            b1, b2 = kw["betas"]
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            w = w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + kw["eps"])
    return w


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("kind, kw", [
    ("sgd", {}),
    ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.8, "nesterov": True}),
    ("adam", {"betas": (0.9, 0.999), "eps": 1e-8}),
    ("adam", {"betas": (0.5, 0.9), "eps": 1e-3}),
])
def test_optimizer_step_follows_the_pytorch_update_rule(backend, kind, kw):
    rng = np.random.default_rng(0)
    g_seq = [rng.normal(size=6) for _ in range(5)]
    opt = fn.SGD(lr=0.1, **kw) if kind == "sgd" else fn.Adam(lr=0.1, **kw)
    w = np.ones(6)
    for g in g_seq:
        opt.step(w, g.copy(), backend=backend)
    assert np.allclose(w, reference_updates(kind, g_seq, 0.1, **kw), rtol=1e-12, atol=1e-14)
    assert opt.steps == 5


@pytest.mark.parametrize("schedule, factor", [
    (fn.StepLR(step_size=2, gamma=0.5), lambda e: 0.5 ** (e // 2)),
    (fn.ExponentialLR(gamma=0.8), lambda e: 0.8**e),
    (fn.CosineLR(t_max=4, min_factor=0.1), lambda e: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(e, 4) / 4))),
])
def test_history_lr_per_epoch_follows_the_schedule(schedule, factor):
    x, y = blobs(40)
    model = fn.Sequential(fn.Dense(4, 3), loss=fn.SoftmaxCrossEntropy(), seed=0)
    history = model.fit(x, y, epochs=6, batch_size=8, optimizer=fn.SGD(lr=0.2, schedule=schedule), progress=False)
    assert history["lr"] == pytest.approx([0.2 * factor(e) for e in range(6)], rel=1e-12)
    assert history["lr"][0] == pytest.approx(0.2)


def test_the_scheduled_lr_is_the_one_the_update_uses():
    x, y = blobs(16)
    targets = np.eye(3)[y]

    def model():
        return fn.Sequential(fn.Dense(4, 3), loss=fn.MSE(), dtype="float64", seed=0)

    scheduled = model()
    scheduled.fit(x, targets, epochs=2, batch_size=16, progress=False,
                  optimizer=fn.SGD(lr=0.1, schedule=fn.StepLR(1, 0.25)))
    by_hand = model()
    by_hand.fit(x, targets, epochs=1, batch_size=16, optimizer=fn.SGD(lr=0.1), progress=False)
    by_hand.fit(x, targets, epochs=1, batch_size=16, optimizer=fn.SGD(lr=0.025), progress=False)
    unscheduled = model()
    unscheduled.fit(x, targets, epochs=2, batch_size=16, optimizer=fn.SGD(lr=0.1), progress=False)
    assert np.allclose(scheduled.params, by_hand.params, rtol=1e-14, atol=0)
    assert not np.allclose(scheduled.params, unscheduled.params, rtol=1e-6, atol=0)


# ---- EarlyStopping -------------------------------------------------------------------

class KeepEveryEpoch(fn.Callback):
    def __init__(self):
        self.weights, self.val_loss = [], []

    def on_epoch_end(self, model, record):
        self.weights.append(model.params.copy())
        self.val_loss.append(record["val_loss"])


@pytest.mark.parametrize("patience", [1, 3])
def test_early_stopping_stops_after_patience_and_restores_the_best_epochs_weights(patience):
    # a wide net on few noisy labels overfits: val_loss turns upwards early
    rng = np.random.default_rng(0)
    x, xv = rng.normal(size=(40, 10)), rng.normal(size=(200, 10))
    y, yv = rng.integers(0, 3, 40), rng.integers(0, 3, 200)
    model = fn.Sequential(fn.Dense(10, 64), fn.ReLU(), fn.Dense(64, 3), loss=fn.SoftmaxCrossEntropy(), seed=0)
    keep, stop = KeepEveryEpoch(), fn.EarlyStopping(patience=patience)
    history = model.fit(x, y, epochs=100, batch_size=8, optimizer=fn.Adam(lr=0.01), validation_data=(xv, yv),
                        callbacks=[keep, stop], progress=False)
    best = int(np.argmin(keep.val_loss))
    assert len(history) < 100
    assert len(history) == best + 1 + patience  # the best epoch, then `patience` epochs without improvement
    assert all(v >= keep.val_loss[best] for v in keep.val_loss[best + 1:])
    assert stop.best_epoch == best + 1 and stop.stopped_epoch == len(history)
    assert not np.array_equal(keep.weights[-1], keep.weights[best])
    assert np.array_equal(model.params, keep.weights[best])
    assert model.evaluate(xv, yv)["loss"] == pytest.approx(min(keep.val_loss), rel=1e-6)


def test_early_stopping_without_validation_data_says_to_pass_it():
    x, y = blobs(20)
    model = fn.Sequential(fn.Dense(4, 3), loss=fn.SoftmaxCrossEntropy(), seed=0)
    with pytest.raises(fn.ConfigError, match="validation_data"):
        model.fit(x, y, epochs=2, callbacks=[fn.EarlyStopping()], progress=False)


# ---- Sequential: fit, evaluate, predict, summary ----------------------------------------

def test_fit_returns_history_with_per_epoch_metrics_and_it_accumulates():
    x, y = blobs(120)
    model = fn.Sequential(fn.Dense(4, 16), fn.ReLU(), fn.Dense(16, 3), loss=fn.SoftmaxCrossEntropy(), seed=0)
    history = model.fit(x[:90], y[:90], epochs=4, batch_size=16, optimizer=fn.SGD(lr=0.05, momentum=0.9),
                        validation_data=(x[90:], y[90:]), progress=False)
    assert isinstance(history, fn.History) and len(history) == 4
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds", "lr"):
        values = history[key]
        assert len(values) == 4 and all(math.isfinite(v) for v in values)
    assert history["epoch"] == [1, 2, 3, 4]
    assert all(0 <= a <= 1 for a in history["accuracy"] + history["val_accuracy"])
    assert all(s >= 0 for s in history["seconds"])
    assert history["loss"][-1] < history["loss"][0]
    final = model.evaluate(x[90:], y[90:])
    assert final == {"loss": pytest.approx(history["val_loss"][-1]), "accuracy": history["val_accuracy"][-1]}
    assert history.history["loss"] == history["loss"]

    model.fit(x[:90], y[:90], epochs=2, progress=False)
    assert len(model.history) == 6 and model.history["epoch"][-1] == 6
    with pytest.raises(KeyError, match="val_loss"):
        fn.History([{"loss": 1.0}])["val_loss"]


def test_training_loss_is_the_mean_over_the_epochs_batches():
    x, y = blobs(48)
    model = fn.Sequential(fn.Dense(4, 3), loss=fn.SoftmaxCrossEntropy(), dtype="float64", seed=0)
    twin = fn.Sequential(fn.Dense(4, 3), loss=fn.SoftmaxCrossEntropy(), dtype="float64", seed=0)
    losses = []
    for start in range(0, 48, 16):  # no shuffle: batches in order, each evaluated before its update
        losses.append(twin.evaluate(x[start:start + 16], y[start:start + 16])["loss"])
        twin.fit(x[start:start + 16], y[start:start + 16], epochs=1, batch_size=16, shuffle=False,
                 optimizer=twin.optimizer or fn.SGD(lr=0.1), progress=False)
    history = model.fit(x, y, epochs=1, batch_size=16, shuffle=False, optimizer=fn.SGD(lr=0.1), progress=False)
    assert history["loss"][0] == pytest.approx(np.mean(losses), rel=1e-12)
    assert np.array_equal(model.params, twin.params)


def test_predict_handles_more_rows_than_one_evaluation_batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2500, 4))
    model = fn.Sequential(fn.Dense(4, 5), fn.Tanh(), fn.Dense(5, 3), loss=fn.SoftmaxCrossEntropy(), seed=0)
    full = model.predict(x)
    assert full.shape == (2500, 3) and full.dtype == np.float32
    assert np.array_equal(full[2000:2100], model.predict(x[2000:2100]))


def test_summary_lists_layers_output_shapes_and_parameter_counts():
    model = fn.Sequential(fn.Dense(784, 128), fn.Sigmoid(), fn.Dropout(0.2), fn.Dense(128, 10),
                          loss=fn.SoftmaxCrossEntropy(), seed=0)
    text = model.summary()
    lines = text.splitlines()
    for layer, shape, params in (("Dense(n_in=784, n_out=128", "(None, 128)", "100480"),
                                 ("Sigmoid(", "(None, 128)", "0"),
                                 ("Dropout(p=0.2)", "(None, 128)", "0"),
                                 ("Dense(n_in=128, n_out=10", "(None, 10)", "1290")):
        row = next(line for line in lines if line.startswith(layer))
        assert shape in row and row.split()[-1] == params
    assert "total params: 101,770" in text
    assert "SoftmaxCrossEntropy" in text and "numba" in text and "float32" in text


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_is_kept_through_parameters_predictions_and_optimizer_state(dtype):
    x, y = blobs(32)
    model = fn.Sequential(fn.Dense(4, 6), fn.Sigmoid(), fn.Dense(6, 3), loss=fn.SoftmaxCrossEntropy(),
                          dtype=dtype, seed=0)
    model.fit(x, y, epochs=1, batch_size=8, optimizer=fn.Adam(), progress=False)
    assert model.params.dtype == dtype and model.predict(x).dtype == dtype
    assert all(s.dtype == dtype for s in model.optimizer.state.values())


# ---- inputs ------------------------------------------------------------------------

def train_twice(first, second, y, width=12):
    """Train the same model on two inputs; (weights, loss history, predictions, evaluation) of each."""
    runs = []
    for x in (first, second):
        model = fn.Sequential(fn.Dense(width, 8), fn.ReLU(), fn.Dense(8, 3), loss=fn.SoftmaxCrossEntropy(),
                              dtype="float64", seed=5)
        history = model.fit(x, y, epochs=2, batch_size=16, progress=False)
        runs.append((model.params.copy(), history["loss"], model.predict(x), model.evaluate(x, y)))
    return runs


def assert_same_runs(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    np.testing.assert_array_equal(a[2], b[2])
    assert a[3] == b[3]


def test_images_are_scaled_to_0_1_and_match_float_inputs_divided_by_255():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (64, 12), dtype=np.uint8)
    y = rng.integers(0, 3, 64)
    images = fn.datasets.Images(pixels)
    assert images.scale == 1 / 255 and images.dtype == np.uint8
    scaled, floats = train_twice(images, pixels / 255.0, y)
    # the gather divides each uint8 batch by 255, so training is bit for bit the float run's
    assert_same_runs(scaled, floats)
    # and not as 0..255: raw floats of the same values give a different model
    raw = fn.Sequential(fn.Dense(12, 8), fn.ReLU(), fn.Dense(8, 3), loss=fn.SoftmaxCrossEntropy(),
                        dtype="float64", seed=5)
    assert not np.allclose(raw.predict(pixels.astype(np.float64)), scaled[2])


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64])
def test_plain_integer_arrays_are_numbers_used_as_they_are(dtype):
    """Digits 0..16 stored as uint8 (as sklearn's 8x8 digits) train exactly as the same numbers in float64."""
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 17, (64, 12)).astype(dtype)
    y = rng.integers(0, 3, 64)
    integers, floats = train_twice(digits, digits.astype(np.float64), y)
    assert_same_runs(integers, floats)


def test_images_keep_their_scale_through_slicing_indexing_and_reshaping():
    images = fn.datasets.Images(np.arange(24, dtype=np.uint8).reshape(4, 6), scale=1 / 16)
    for view in (images[1:], images[[0, 2]], images[images[:, 0] > 0], images.reshape(2, 12), images.copy(),
                 images.T):
        assert isinstance(view, fn.datasets.Images) and view.scale == 1 / 16
    # arithmetic and reductions are numbers, no longer pixels
    assert type(images / 16) is np.ndarray and type(images.mean()) is np.float64
    model = fn.Sequential(fn.Dense(6, 1), loss=fn.MSE(), dtype="float64", seed=0)
    model.set_weights({"layers.0.weight": np.ones((1, 6)), "layers.0.bias": np.zeros(1)})
    np.testing.assert_array_equal(model.predict(images[2:]), images[2:].sum(axis=1, keepdims=True) / 16)


def test_dataset_and_benchmark_images_are_plain_floats_in_0_1():
    from fastnet.bench.contenders import epoch_data

    train, test = fn.datasets.load("mnist-sample")
    for x in (train.x, test.x, epoch_data(100)[0]):
        assert type(x) is np.ndarray and x.dtype == np.float32  # no hidden scale to lose
        assert x.min() == 0 and x.max() == 1


@pytest.mark.parametrize("pixels, scale, error", [
    (np.zeros((2, 3)), 1 / 255, fn.DTypeError),
    (np.zeros((2, 3), np.int16), 1 / 255, fn.DTypeError),
    (np.zeros((2, 3), np.uint8), 0.0, fn.ConfigError),
    (np.zeros((2, 3), np.uint8), math.inf, fn.ConfigError),
    (np.zeros((2, 3), np.uint8), "1/255", fn.ConfigError),
])
def test_images_are_uint8_with_a_finite_positive_scale(pixels, scale, error):
    with pytest.raises(error):
        fn.datasets.Images(pixels, scale=scale)


def test_float_inputs_are_used_as_they_are():
    x = np.array([[300.0, -2.0]])  # far outside [0, 1]: nothing rescales it
    model = fn.Sequential(fn.Dense(2, 1), loss=fn.MSE(), dtype="float64", seed=0)
    model.set_weights({"layers.0.weight": np.array([[1.0, 1.0]]), "layers.0.bias": np.zeros(1)})
    assert model.predict(x)[0, 0] == 298.0
    assert model.predict(x.astype(np.float32))[0, 0] == 298.0


@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.uint8])
def test_integer_labels_of_any_integer_dtype_are_accepted(label_dtype):
    x, y = blobs(30)
    model = fn.Sequential(fn.Dense(4, 3), loss=fn.SoftmaxCrossEntropy(), seed=0)
    reference = model.evaluate(x, y)
    assert model.evaluate(x, y.astype(label_dtype)) == reference


def test_numpy_scalar_hyperparameters_are_accepted_and_saved(tmp_path):
    model = fn.Sequential(fn.Dense(4, 3, l1=np.float32(1e-3), l2=np.int64(0)), fn.Dropout(np.float32(0.25)),
                          loss=fn.MSE(), seed=0)
    x = np.random.default_rng(0).normal(size=(8, 4))
    model.fit(x, x[:, :3], optimizer=fn.SGD(lr=np.float32(0.1), momentum=np.float64(0.5)), progress=False)
    model.save(tmp_path / "m.safetensors")
    same = fn.load(tmp_path / "m.safetensors")
    assert same.layers[0].l1 == pytest.approx(1e-3) and same.layers[1].p == 0.25
    assert same.optimizer.lr == pytest.approx(0.1)


def test_history_keeps_metrics_that_later_fits_did_not_record():
    x, y = blobs(30)
    model = fn.Sequential(fn.Dense(4, 3), loss=fn.SoftmaxCrossEntropy(), seed=0)
    model.fit(x, y, epochs=2, validation_data=(x, y), progress=False)
    model.fit(x, y, epochs=1, progress=False)  # no validation this time
    val = model.history["val_loss"]
    assert len(val) == 3 and all(math.isfinite(v) for v in val[:2]) and math.isnan(val[2])
    assert set(model.history.history) >= {"loss", "val_loss", "val_accuracy", "seconds"}
    with pytest.raises(KeyError, match="no metric 'f1'.*val_loss"):
        model.history["f1"]


def test_one_optimizer_cannot_train_two_models():
    x = np.random.default_rng(0).random((8, 3))
    y = np.arange(8) % 2
    opt = fn.SGD(lr=0.1, momentum=0.9)
    first = fn.Sequential(fn.Dense(3, 2), loss=fn.SoftmaxCrossEntropy(), seed=0)
    second = fn.Sequential(fn.Dense(3, 2), loss=fn.SoftmaxCrossEntropy(), seed=1)
    first.fit(x, y, optimizer=opt, progress=False)
    first.fit(x, y, optimizer=opt, progress=False)  # the same model may keep using it
    with pytest.raises(fn.ConfigError, match="already trains another model"):
        second.fit(x, y, optimizer=opt, progress=False)
