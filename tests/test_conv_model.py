"""Convolutional models through the public API: fit, evaluate, predict, loss_and_grad, train_step.

Small conv stacks on a learnable toy task (a bright patch whose place is the class) check that
both backends agree, that 4-D images and flat rows with input_shape are the same model, that
bad models and bad data get one-line ConfigError/ShapeError messages, that dropout, L1/L2,
every optimizer and a schedule train, that gradcheck passes, what summary() shows, that float32
stays float32, that prediction in bounded evaluation batches is row-by-row prediction, and that
the weights after a few steps are the same bits with 1 and 2 numba threads.
"""
import numpy as np
import pytest

import fastnet as fn
from fastnet.checkpoint import copy_model
from fastnet.errors import ConfigError
from fastnet.inputs import ShapeError
from test_conv_kernels import THREAD_GEOS, kernel_digests
from test_kernels_threads import run_with_threads

SHAPE = (2, 9, 8)  # channels, height, width: odd and not square


def patches(n, seed=0, shape=SHAPE, dtype=np.float32):
    """Images (n, C, H, W) of noise with a bright 3x3 patch in the top left, top right or bottom half:
    the class, 0, 1 or 2, is where the patch is."""
    rng = np.random.default_rng(seed)
    x = 0.3 * rng.random((n,) + shape)
    y = rng.integers(0, 3, n)
    h, w = shape[1:]
    for i, label in enumerate(y):
        top = rng.integers(0, h // 2 - 2) if label < 2 else rng.integers(h // 2, h - 2)
        left = rng.integers(0, w // 2 - 2) if label != 1 else rng.integers(w // 2, w - 2)
        x[i, :, top:top + 3, left:left + 3] += 1.0
    return x.astype(dtype), y


def small_conv(backend="numba", dtype="float32", input_shape=SHAPE, dropout=0.0, l1=0.0, l2=0.0, seed=0):
    """Conv (stride 2, padding 1) -> relu -> overlapping max pool -> conv -> tanh -> avg pool -> dense."""
    layers = [fn.Conv2D(SHAPE[0], 4, 3, stride=2, padding=1, input_shape=input_shape, l1=l1, l2=l2), fn.ReLU(),
              fn.MaxPool2D(2, stride=1)]
    if dropout:
        layers.append(fn.Dropout(dropout))
    layers += [fn.Conv2D(4, 5, 2, padding=1), fn.Tanh(), fn.AvgPool2D(2), fn.Flatten(), fn.Dense(3)]
    return fn.Sequential(*layers, loss=fn.SoftmaxCrossEntropy(), backend=backend, dtype=dtype, seed=seed)


X, Y = patches(96)


def fit(model, x=X, y=Y, epochs=3, optimizer=None, **kw):
    return model.fit(x, y, epochs=epochs, batch_size=16, optimizer=optimizer or fn.SGD(lr=0.1, momentum=0.9),
                     progress=False, **kw)


def everything(model, x=X, y=Y):
    """What each API call gives on the same model: loss_and_grad, train_step, fit, evaluate, predict."""
    out = {"loss_and_grad": model.loss_and_grad(x[:16], y[:16]), "grads": model.grads.copy()}
    out["train_step"] = model.train_step(x[16:32], y[16:32], optimizer=fn.SGD(lr=0.1))
    out["fit"] = fit(model, x[:90], y[:90], epochs=2).history["loss"]  # a last batch of 10, not 16
    out["evaluate"] = model.evaluate(x, y)
    out["predict"] = model.predict(x)
    out["params"] = model.params.copy()
    return out


def assert_same(a, b, rtol=0.0):
    assert a.keys() == b.keys()
    for key in a:
        got, ref = a[key], b[key]
        if isinstance(got, dict):
            got, ref = [got[k] for k in sorted(got)], [ref[k] for k in sorted(ref)]
        if rtol:
            np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol, err_msg=key)
        else:
            np.testing.assert_array_equal(got, ref, err_msg=key)


# ---- the same model, whatever the backend and the form of x ---------------------------------

@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-10), ("float32", 2e-4)])
def test_numba_and_numpy_backends_agree_to_rounding(dtype, rtol):
    x = X.astype(dtype)
    numba, numpy = everything(small_conv("numba", dtype), x), everything(small_conv("numpy", dtype), x)
    assert numba["evaluate"]["accuracy"] == numpy["evaluate"]["accuracy"]
    assert_same(numba, numpy, rtol)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_4d_images_and_flat_rows_with_input_shape_are_the_same_model(backend):
    four_d = everything(small_conv(backend), X)
    flat = everything(small_conv(backend), X.reshape(len(X), -1))
    assert_same(four_d, flat)


def test_strided_views_lists_and_validation_images_are_the_same_data():
    model = small_conv()
    nchw_view = np.ascontiguousarray(X.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # NHWC data seen as NCHW
    assert not nchw_view.flags.c_contiguous
    np.testing.assert_array_equal(model.predict(nchw_view), model.predict(X))
    np.testing.assert_array_equal(model.predict(X[:3].tolist()), model.predict(X[:3]))
    xv, yv = patches(20, seed=8)
    histories = [fit(small_conv(), epochs=2, validation_data=val).history
                 for val in ((xv, yv), (xv.reshape(len(xv), -1), yv))]
    assert histories[0]["val_loss"] == histories[1]["val_loss"] and len(histories[0]["val_loss"]) == 2


def test_a_first_conv2d_without_input_shape_builds_from_4d_data():
    model = small_conv(input_shape=None)
    assert model.input_shape is None and model.n_in is None
    lazy = everything(model)
    assert model.input_shape == SHAPE and model.n_in == 2 * 9 * 8
    assert_same(lazy, everything(small_conv()))  # the same initial weights as with input_shape
    # once built, flat rows of the right width are the same images
    np.testing.assert_array_equal(model.predict(X.reshape(len(X), -1)), model.predict(X))


def test_build_takes_an_image_shape():
    model = small_conv(input_shape=None)
    model.build(SHAPE)
    assert model.input_shape == SHAPE
    model.build(list(SHAPE))  # the same shape again: nothing to do
    with pytest.raises(ConfigError, match="already"):
        model.build((2, 9, 9))


def test_keras_activation_argument_of_conv2d_is_the_activation_layer_after_it():
    def stack(keras):
        first = fn.Conv2D(2, 3, 3, input_shape=SHAPE, activation="tanh" if keras else None)
        return fn.Sequential(*([first] if keras else [first, fn.Tanh()]), fn.Flatten(), fn.Dense(3),
                             loss=fn.SoftmaxCrossEntropy(), seed=0)
    keras, plain = stack(True), stack(False)
    assert [type(layer).__name__ for layer in keras.layers] == ["Conv2D", "Tanh", "Flatten", "Dense"]
    assert_same(everything(keras), everything(plain))


# ---- clear errors ------------------------------------------------------------------------------

def _one_line(error):
    message = str(error.value)
    assert "\n" not in message and len(message) < 400, message
    return message


@pytest.mark.parametrize("call", ["fit", "predict", "gradcheck"])
def test_flat_x_to_a_conv_model_without_input_shape_says_what_to_give(call):
    model, x = small_conv(input_shape=None), X.reshape(len(X), -1)
    run = {"fit": lambda: fit(model, x), "predict": lambda: model.predict(x),
           "gradcheck": lambda: fn.gradcheck(model, x[:4], Y[:4], progress=False)}[call]
    with pytest.raises(ConfigError) as info:
        run()
    message = _one_line(info)
    assert "input_shape=(channels, height, width)" in message and "(n, channels, height, width)" in message
    assert model.input_shape is None


@pytest.mark.parametrize("x", [np.zeros((4, 2, 8, 9), np.float32), np.zeros((4, 1, 9, 8), np.float32),
                               np.zeros((4, 2, 9, 8, 1), np.float32), np.zeros((4, 2 * 9 * 8 + 1), np.float32)],
                         ids=["height_width_swapped", "channels", "5d", "flat_too_wide"])
@pytest.mark.parametrize("call", ["fit", "evaluate", "predict", "loss_and_grad", "train_step"])
def test_images_of_the_wrong_shape_are_a_shape_error(call, x):
    model = small_conv()
    y = np.zeros(len(x), np.int64)
    run = {"fit": lambda: fit(model, x, y), "evaluate": lambda: model.evaluate(x, y),
           "predict": lambda: model.predict(x), "loss_and_grad": lambda: model.loss_and_grad(x, y),
           "train_step": lambda: model.train_step(x, y)}[call]
    before = model.params.copy()
    with pytest.raises(ShapeError) as info:
        run()
    _one_line(info)
    assert np.array_equal(model.params, before)


def _model(*layers):
    return lambda: fn.Sequential(*layers, loss=fn.SoftmaxCrossEntropy())


BAD_MODELS = {
    "dense_after_images_without_flatten": (_model(fn.Conv2D(1, 2, 3, input_shape=(1, 6, 6)), fn.Dense(3)),
                                           ["Flatten()"]),
    "channel_mismatch_with_input_shape": (_model(fn.Conv2D(1, 2, 3, input_shape=(3, 6, 6)), fn.Flatten(),
                                                 fn.Dense(3)), ["1 channels", "(3, 6, 6)"]),
    "channel_mismatch_between_convs": (_model(fn.Conv2D(1, 2, 3, input_shape=(1, 6, 6)), fn.Conv2D(3, 2, 3),
                                              fn.Flatten(), fn.Dense(3)), ["3 channels", "(2, 4, 4)"]),
    "kernel_larger_than_the_image": (_model(fn.Conv2D(1, 2, 7, input_shape=(1, 6, 6)), fn.Flatten(), fn.Dense(3)),
                                     ["7x7", "does not fit"]),
    "kernel_larger_than_a_later_image": (_model(fn.Conv2D(1, 2, 3, input_shape=(1, 6, 6)), fn.MaxPool2D(2),
                                                fn.Conv2D(2, 2, 5, padding=1), fn.Flatten(), fn.Dense(3)),
                                         ["5x5", "does not fit"]),
    "pool_window_larger_than_the_image": (_model(fn.Conv2D(1, 2, 3, input_shape=(1, 6, 6)), fn.MaxPool2D(5),
                                                 fn.Flatten(), fn.Dense(3)), ["5x5", "does not fit"]),
    "output_layer_giving_images": (_model(fn.Conv2D(1, 2, 3, input_shape=(1, 6, 6)), fn.Flatten(), fn.Dense(8),
                                          fn.Conv2D(1, 2, 3)), ["images", "before any Flatten or Dense"]),
    "pool_after_flatten": (_model(fn.Conv2D(1, 2, 3, input_shape=(1, 6, 6)), fn.Flatten(), fn.MaxPool2D(2),
                                  fn.Dense(3)), ["images", "before any Flatten or Dense"]),
    "conv_only_no_dense": (_model(fn.Conv2D(1, 2, 3, input_shape=(1, 6, 6))), ["Dense"]),
}


@pytest.mark.parametrize("name", BAD_MODELS)
def test_a_model_that_cannot_take_its_shapes_is_a_config_error(name):
    make, words = BAD_MODELS[name]
    with pytest.raises(ConfigError) as info:
        make()
    message = _one_line(info)
    for word in words:
        assert word in message, message


def test_a_lazy_model_gets_the_same_errors_when_the_data_arrive():
    model = fn.Sequential(fn.Conv2D(1, 2, 3), fn.Flatten(), fn.Dense(3), loss=fn.SoftmaxCrossEntropy())
    with pytest.raises(ConfigError, match="1 channels") as info:
        model.predict(np.zeros((2, 3, 6, 6), np.float32))
    _one_line(info)
    with pytest.raises(ConfigError, match="does not fit"):
        model.predict(np.zeros((2, 1, 2, 2), np.float32))
    assert model.input_shape is None  # a failed build leaves the model unbuilt
    assert model.predict(np.zeros((2, 1, 5, 4), np.float32)).shape == (2, 3)


BAD_LAYERS = {
    "kernel_size_0": (lambda: fn.Conv2D(1, 2, 0), "kernel_size"),
    "kernel_size_string": (lambda: fn.Conv2D(1, 2, "3"), "kernel_size"),
    "kernel_size_float": (lambda: fn.Conv2D(1, 2, 2.5), "kernel_size"),
    "kernel_size_bool": (lambda: fn.Conv2D(1, 2, True), "kernel_size"),
    "kernel_non_square_tuple": (lambda: fn.Conv2D(1, 2, (3, 2)), "square"),
    "kernel_three_tuple": (lambda: fn.Conv2D(1, 2, (3, 3, 3)), "square"),
    "in_channels_0": (lambda: fn.Conv2D(0, 2, 3), "in_channels"),
    "out_channels_string": (lambda: fn.Conv2D(1, "2", 3), "out_channels"),
    "stride_0": (lambda: fn.Conv2D(1, 2, 3, stride=0), "stride"),
    "padding_equal_to_kernel": (lambda: fn.Conv2D(1, 2, 3, padding=3), "padding"),
    "padding_negative": (lambda: fn.Conv2D(1, 2, 3, padding=-1), "padding"),
    "padding_unknown_string": (lambda: fn.Conv2D(1, 2, 3, padding="full"), "padding"),
    "padding_same_even_kernel": (lambda: fn.Conv2D(1, 2, 4, padding="same"), "same"),
    "padding_same_stride_2": (lambda: fn.Conv2D(1, 2, 3, stride=2, padding="same"), "same"),
    "input_shape_2d": (lambda: fn.Conv2D(1, 2, 3, input_shape=(28, 28)), "input_shape"),
    "input_shape_zero": (lambda: fn.Conv2D(1, 2, 3, input_shape=(1, 0, 28)), "input_shape"),
    "conv_unknown_init": (lambda: fn.Conv2D(1, 2, 3, init="glorot"), "init"),
    "conv_negative_l2": (lambda: fn.Conv2D(1, 2, 3, l2=-1.0), "l2"),
    "pool_size_0": (lambda: fn.MaxPool2D(0), "size"),
    "pool_size_string": (lambda: fn.MaxPool2D("2"), "size"),
    "pool_non_square_tuple": (lambda: fn.MaxPool2D((2, 3)), "size"),
    "pool_window_16": (lambda: fn.MaxPool2D(16), "15"),
    "avgpool_window_16": (lambda: fn.AvgPool2D(16), "15"),
    "pool_stride_0": (lambda: fn.MaxPool2D(2, stride=0), "stride"),
    "pool_stride_float": (lambda: fn.AvgPool2D(2, stride=1.5), "stride"),
}


@pytest.mark.parametrize("name", BAD_LAYERS)
def test_bad_conv_and_pool_arguments_are_config_errors(name):
    make, word = BAD_LAYERS[name]
    with pytest.raises(ConfigError) as info:
        make()
    assert word in _one_line(info)


def test_square_tuples_and_same_padding_are_accepted():
    conv = fn.Conv2D(1, 2, (3, 3), padding="same")
    assert conv.kernel_size == 3 and conv.padding == 1
    assert conv.out_shape((1, 7, 5)) == (2, 7, 5)
    assert fn.Conv2D(1, 2, 3, padding="valid").padding == 0
    assert fn.MaxPool2D((2, 2)).size == 2 and fn.MaxPool2D(3).stride == 3


# ---- dropout, penalties, optimizers, schedules ----------------------------------------------------

def _first_and_last_loss(model, epochs=6, optimizer=None):
    losses = fit(model, epochs=epochs, optimizer=optimizer).history["loss"]
    assert np.isfinite(losses).all()
    return losses[0], losses[-1]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_dropout_between_conv_layers_trains(backend):
    first, last = _first_and_last_loss(small_conv(backend, dropout=0.3))
    assert last < 0.8 * first


def test_dropout_between_conv_layers_is_off_in_evaluation():
    model = small_conv(dropout=0.5)
    fit(model, epochs=1)
    np.testing.assert_array_equal(model.predict(X), model.predict(X))  # no mask drawn at prediction
    assert model.evaluate(X, Y) == model.evaluate(X, Y)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_conv_l1_l2_add_their_penalty_to_the_loss_and_the_gradient(backend):
    x, y = X[:16].astype(np.float64), Y[:16]
    out = {}
    for l1, l2 in ((0.0, 0.0), (0.3, 0.0), (0.0, 0.5)):
        model = small_conv(backend, "float64", l1=l1, l2=l2, seed=3)
        loss = model.loss_and_grad(x, y)
        conv = model.layers[0]
        out[l1, l2] = (loss, conv.dw.copy(), conv.db.copy(), conv.weight.copy(), model.grads.copy())
    (loss0, g0, db0, w, all0), (loss1, g1, db1, _, all1), (loss2, g2, db2, _, all2) = out.values()
    assert w.shape == (4, 2, 3, 3)
    assert loss1 - loss0 == pytest.approx(0.3 * np.abs(w).sum(), rel=1e-10)
    assert loss2 - loss0 == pytest.approx(0.5 / 2 * (w ** 2).sum(), rel=1e-10)
    np.testing.assert_allclose(g1 - g0, 0.3 * np.sign(w), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g2 - g0, 0.5 * w, rtol=1e-10, atol=1e-12)
    assert np.array_equal(db0, db1) and np.array_equal(db0, db2)  # biases are not penalised
    n_conv = w.size + db0.size  # and no other layer is
    assert np.array_equal(all0[n_conv:], all1[n_conv:]) and np.array_equal(all0[n_conv:], all2[n_conv:])


def test_l2_on_conv2d_shrinks_its_weights():
    plain, decayed = small_conv(), small_conv(l2=0.05)
    fit(plain, epochs=4), fit(decayed, epochs=4)
    assert np.abs(decayed.layers[0].weight).sum() < np.abs(plain.layers[0].weight).sum()


OPTIMIZERS = {
    "sgd": lambda: fn.SGD(lr=0.2),
    "momentum": lambda: fn.SGD(lr=0.05, momentum=0.9),
    "nesterov": lambda: fn.SGD(lr=0.05, momentum=0.9, nesterov=True),
    "adam": lambda: fn.Adam(lr=0.01),
    "sgd_step_schedule": lambda: fn.SGD(lr=0.2, schedule=fn.StepLR(2, gamma=0.5)),
    "adam_cosine_schedule": lambda: fn.Adam(lr=0.01, schedule=fn.CosineLR(6)),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_and_schedule_trains_a_conv_model(name):
    first, last = _first_and_last_loss(small_conv(), optimizer=OPTIMIZERS[name]())
    assert last < 0.8 * first


def test_the_schedule_sets_the_learning_rate_of_each_epoch():
    history = fit(small_conv(), epochs=4, optimizer=OPTIMIZERS["sgd_step_schedule"]()).history
    assert history["lr"] == pytest.approx([0.2, 0.2, 0.1, 0.1])


# ---- gradcheck ---------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_gradcheck_passes_on_a_conv_model(backend):
    # smooth activations (no relu kink within the step), stride 2, padding, an overlapping max
    # pool, average pooling, dropout held fixed, and L1/L2 penalties
    model = fn.Sequential(
        fn.Conv2D(2, 3, 3, stride=2, padding=1, input_shape=SHAPE, l1=0.01, l2=0.1), fn.Tanh(),
        fn.MaxPool2D(3, stride=1), fn.Dropout(0.25), fn.Conv2D(3, 4, 2, padding=1), fn.Sigmoid(),
        fn.AvgPool2D(2, stride=1), fn.Flatten(), fn.Dense(3), loss=fn.SoftmaxCrossEntropy(), backend=backend, seed=1)
    x, y = patches(6, seed=2)
    # every parameter with numba; a sample of them with the slower NumPy twins
    assert fn.gradcheck(model, x, y, max_params=None if backend == "numba" else 80, progress=False) < 1e-6
    assert fn.gradcheck(model, x.reshape(len(x), -1), y, progress=False) < 1e-6  # flat rows too


ODD_STACKS = {
    # an activation op of its own after pooling, fused into the next conv's dx (in_act), and a Dense
    # taking the derivative of an activation through a Flatten
    "act_after_pool_then_conv": lambda: [
        fn.Conv2D(2, 3, 3, padding=1), fn.MaxPool2D(3, stride=2), fn.Tanh(), fn.Conv2D(3, 4, 3, stride=2, padding=1),
        fn.AvgPool2D(2, stride=1), fn.LeakyReLU(0.1), fn.Flatten(), fn.Dense(6), fn.Sigmoid(), fn.Dense(3)],
    # layers before the first weighted one: no gradient flows below it
    "dropout_and_pool_first": lambda: [  # the pool keeps the image it was built for
        fn.Dropout(0.2), fn.AvgPool2D(2, stride=1), fn.Conv2D(2, 3, 2, stride=2), fn.Tanh(), fn.Flatten(),
        fn.Dense(3)],
    # pooling windows with gaps between them (stride > size), and a conv whose stride skips columns
    "gaps": lambda: [fn.Conv2D(2, 3, 2, padding=1), fn.ReLU(), fn.MaxPool2D(2, stride=3), fn.Conv2D(3, 2, 1, stride=2),
                     fn.Flatten(), fn.Dense(3)],
    # dropout right after a fused activation: the conv applies its own f' (the op above is no weighted one)
    "dropout_after_activations": lambda: [
        fn.Conv2D(2, 3, 3, stride=2), fn.Tanh(), fn.Dropout(0.3), fn.Conv2D(3, 2, 2), fn.Sigmoid(), fn.Dropout(0.2),
        fn.Flatten(), fn.Dense(3)],
    "activation_first": lambda: [fn.Sigmoid(), fn.Conv2D(2, 2, 3, stride=3, padding=2), fn.Flatten(), fn.Dense(3)],
}


@pytest.mark.parametrize("name", ODD_STACKS)
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_gradcheck_passes_on_unusual_conv_stacks_built_from_4d_data(backend, name):
    model = fn.Sequential(*ODD_STACKS[name](), loss=fn.SoftmaxCrossEntropy(), backend=backend, seed=2)
    x, y = patches(5, seed=4)
    assert fn.gradcheck(model, x, y, max_params=60, progress=False) < 1e-6
    assert model.input_shape == SHAPE


def test_gradcheck_builds_a_lazy_conv_model_from_4d_data():
    model = small_conv(input_shape=None)
    x, y = patches(4, seed=3)
    assert fn.gradcheck(model, x, y, progress=False) < 1e-5  # relu: at most a rare kink
    assert model.input_shape == SHAPE


# ---- summary, dtypes, evaluation batches ----------------------------------------------------------

def test_summary_shows_image_shapes_and_parameter_counts():
    model = fn.Sequential(
        fn.Conv2D(1, 6, 5, padding=2, input_shape=(1, 28, 28)), fn.ReLU(), fn.MaxPool2D(2),
        fn.Conv2D(6, 16, 5), fn.ReLU(), fn.AvgPool2D(2), fn.Flatten(),
        fn.Dense(400, 120), fn.ReLU(), fn.Dense(120, 10), loss=fn.SoftmaxCrossEntropy(), seed=0)
    lines = model.summary().splitlines()
    expected = [("Conv2D(in_channels=1, out_channels=6", "(None, 6, 28, 28)", "156"),
                ("ReLU(", "(None, 6, 28, 28)", "0"),
                ("MaxPool2D(size=2, stride=2)", "(None, 6, 14, 14)", "0"),
                ("Conv2D(in_channels=6, out_channels=16", "(None, 16, 10, 10)", str(16 * 6 * 25 + 16)),
                ("AvgPool2D(size=2, stride=2)", "(None, 16, 5, 5)", "0"),
                ("Flatten(", "(None, 400)", "0"),
                ("Dense(n_in=400, n_out=120", "(None, 120)", "48120")]
    for layer, shape, params in expected:
        row = next(line for line in lines if line.startswith(layer))
        assert shape in row and row.split()[-1] == params, row
    total = 156 + 2416 + 48120 + 1210
    assert f"total params: {total:,}" in model.summary()
    assert model.params.size == total


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_is_kept_through_a_conv_model(backend, dtype):
    model = small_conv(backend, dtype)
    x = X.astype(np.float64)  # float64 data into a float32 model: the model's dtype wins
    loss = model.train_step(x[:16], Y[:16])
    assert np.isfinite(loss)
    fit(model, x, epochs=1)
    for array in (model.params, model.grads, model.predict(x), model.layers[0].weight, model.layers[0].dw,
                  model.get_weights()["layers.0.weight"]):
        assert array.dtype == dtype
    assert model.get_weights()["layers.0.weight"].shape == (4, 2, 3, 3)


def big_conv(backend="numba"):
    """32 maps of 28 x 28: about 1 MB of buffers per sample, so an evaluation batch is a few hundred."""
    return fn.Sequential(fn.Conv2D(1, 32, 3, padding=1, input_shape=(1, 28, 28)), fn.ReLU(), fn.MaxPool2D(4),
                         fn.Flatten(), fn.Dense(10), loss=fn.SoftmaxCrossEntropy(), backend=backend, seed=0)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_predict_in_bounded_evaluation_batches_is_predict_row_by_row(backend):
    model = big_conv(backend)
    n = model.eval_batch + 37  # one full evaluation batch and a part of the next
    assert 1 <= model.eval_batch < 1024  # bounded by memory, below the dense models' 1024 rows
    assert model._batch_bytes(model.eval_batch) <= 2 * (64 << 20)
    rng = np.random.default_rng(0)
    x, y = rng.random((n, 1, 28, 28), np.float32), rng.integers(0, 10, n)
    full = model.predict(x)
    picks = [0, 1, model.eval_batch - 1, model.eval_batch, n - 1]
    rows = np.concatenate([model.predict(x[i:i + 1]) for i in picks])
    if backend == "numba":  # each output is one fixed chain of sums, whatever the batch
        np.testing.assert_array_equal(full[picks], rows)
    else:
        np.testing.assert_allclose(full[picks], rows, rtol=1e-5, atol=1e-7)
    result = model.evaluate(x, y)
    p = full[np.arange(n), y].astype(np.float64)
    assert result["loss"] == pytest.approx(-np.log(p).mean(), rel=1e-5)
    assert result["accuracy"] == pytest.approx((full.argmax(axis=1) == y).mean())


# ---- the same bits at any thread count ---------------------------------------------------------------

def weights_after_a_few_steps() -> dict:
    """sha256 of a conv model's weights after a few training steps, numba backend (run in a subprocess)."""
    import hashlib

    import numba

    # batches of 64 of 16 x 16 images: the first conv's GEMM (8 x 9 x 64·256) is multi-threaded
    x, y = patches(256, seed=5, shape=(1, 16, 16))
    model = fn.Sequential(fn.Conv2D(1, 8, 3, padding=1), fn.ReLU(), fn.MaxPool2D(3, stride=2), fn.Dropout(0.2),
                          fn.Conv2D(8, 16, 3, stride=2, padding=1), fn.Tanh(), fn.AvgPool2D(2), fn.Flatten(),
                          fn.Dense(3), loss=fn.SoftmaxCrossEntropy(), backend="numba", seed=0)
    # train_step, not fit: fit's epochs drop to the cores other processes leave free, which on a busy
    # machine would make both runs single-threaded
    optimizer = fn.SGD(lr=0.1, momentum=0.9)
    for step in range(8):
        batch = slice(64 * (step % 4), 64 * (step % 4 + 1))
        model.train_step(x[batch], y[batch], optimizer)
    return {"threads": numba.get_num_threads(), "params": hashlib.sha256(model.params.tobytes()).hexdigest(),
            "predict": hashlib.sha256(model.predict(x).tobytes()).hexdigest()}


def digests() -> dict:
    """The model's digests and the convolution and pooling kernels' (test_conv_kernels), in one process."""
    return {"model": weights_after_a_few_steps(), "kernels": kernel_digests()}


def test_conv_model_weights_and_conv_kernels_are_the_same_bits_with_1_and_2_threads():
    from fastnet.kernels.gemm import PARALLEL_MIN_MACS

    geo = THREAD_GEOS[0]  # the kernels' case takes the GEMMs' multi-threaded path
    assert geo.c_out * geo.c_in * geo.k ** 2 * geo.batch * geo.out_hw[0] * geo.out_hw[1] >= 4 * PARALLEL_MIN_MACS
    one, two = (run_with_threads(n, "test_conv_model", "digests", timeout=600) for n in (1, 2))
    assert [one[part].pop("threads") for part in one] == [1, 1]
    assert [two[part].pop("threads") for part in two] == [2, 2]
    assert len(one["kernels"]) == len(THREAD_GEOS) * 2  # float32 and float64
    assert one == two


def test_a_conv_model_built_from_4d_data_keeps_its_image_shape_in_its_copies():
    model = small_conv(input_shape=None)
    fit(model, epochs=1)
    assert model.layers[0].input_shape == SHAPE  # as a lazy Dense keeps the n_in it was built for
    again = copy_model(model)  # what gradcheck's float64 twin and checkpoints rebuild from
    assert again.input_shape == SHAPE
    np.testing.assert_array_equal(again.predict(X), model.predict(X))


def test_a_conv_model_saves_and_loads_with_its_optimizer(tmp_path):
    model = small_conv(input_shape=None)
    fit(model, epochs=1)
    model.save(tmp_path / "conv.safetensors")
    again = fn.load(tmp_path / "conv.safetensors")
    assert again.input_shape == SHAPE
    np.testing.assert_array_equal(again.predict(X), model.predict(X))


@pytest.mark.parametrize("images", [True, False], ids=["4d_images", "flat_rows"])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_an_mlp_with_flatten_first_saves_loads_and_gradchecks(backend, images, tmp_path):
    # Flatten keeps the input it was built for in its config, so the model rebuilds from its file
    x = X if images else X.reshape(len(X), -1)
    shape = SHAPE if images else (144,)
    model = fn.Sequential(fn.Flatten(), fn.Dense(8), fn.ReLU(), fn.Dense(3), loss=fn.SoftmaxCrossEntropy(),
                          backend=backend, seed=0)
    fit(model, x, epochs=1)
    assert model.layers[0].input_shape == shape and model.layers[0].config() == {"input_shape": list(shape)}
    assert fn.gradcheck(model, x[:4], Y[:4], max_params=50, progress=False) < 1e-6
    model.save(tmp_path / "mlp.safetensors")
    again = fn.load(tmp_path / "mlp.safetensors")
    assert again.input_shape == shape
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_flatten_and_pooling_take_keras_input_shape_as_the_first_layer():
    for first in (fn.Flatten(input_shape=SHAPE), fn.MaxPool2D(2, stride=1, input_shape=list(SHAPE))):
        model = fn.Sequential(first, fn.Flatten(), fn.Dense(3), loss=fn.SoftmaxCrossEntropy(), seed=0)
        assert model.input_shape == SHAPE and model.n_in == 144
        assert model.predict(X.reshape(len(X), -1)).shape == (len(X), 3)  # flat rows need no build
        assert type(first)(**first.config()).input_shape == SHAPE
    assert repr(fn.Flatten()) == "Flatten()" and repr(fn.AvgPool2D(3)) == "AvgPool2D(size=3, stride=3)"
    for bad in ((28, 28), (1, 0, 28), "1x28x28"):
        with pytest.raises(ConfigError, match="input_shape"):
            fn.Flatten(input_shape=bad)
        with pytest.raises(ConfigError, match="input_shape"):
            fn.AvgPool2D(2, input_shape=bad)
