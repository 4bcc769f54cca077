"""Bad arguments are caught at the door, in both backends, with a clear Python error.

``get_backend(name).kernel(...)`` checks its arguments before numba sees them, so a
wrong shape, dtype, layout, read-only output or out-of-range value raises
ValueError/TypeError (ShapeError and DTypeError are subclasses) naming the
argument, and never a numba typing error. Each mutation starts from a valid case
of kernel_cases and breaks one thing.
"""
import numpy as np
import pytest
from numba.core.errors import NumbaError

import kernel_cases as kc
from fastnet.errors import ConfigError
from fastnet.kernels import ACT, TWINS, get_backend

BACKENDS = ["numba", "numpy"]
KERNELS = [t.name for t in TWINS]
SPECS = {t.name: t.spec for t in TWINS}


def valid_args(name, dtype=np.float32):
    """Arguments that pass the door: every dimension >= 2, so a strided view is really strided."""
    variant = next(iter(kc.CASES[name].variants))
    return kc.build(name, variant, np.random.default_rng(0), dtype, kc.Sizes(3, 4, 5)).fresh_args()


def arrays(name):
    """(position, spec arg) for every array argument, outputs first."""
    spec = SPECS[name]
    return list(enumerate(spec.outputs + spec.inputs))


def assert_rejected(backend, name, args, *mention):
    """The checked kernel raises ValueError/TypeError, not from numba, mentioning each of ``mention``."""
    with pytest.raises((ValueError, TypeError)) as info:
        getattr(get_backend(backend), name)(*args)
    error = info.value
    assert not isinstance(error, NumbaError), f"numba error leaked through the door: {error}"
    assert not type(error).__module__.startswith("numba")
    message = str(error)
    for word in mention:
        assert word in message, f"{name}: message {message!r} should mention {word!r}"
    return error


def replaced(args, i, value):
    args = list(args)
    args[i] = value
    return args


def test_valid_arguments_pass_the_door():
    # The mutations below break exactly one thing; the unbroken cases must run.
    for backend in BACKENDS:
        for name in KERNELS:
            getattr(get_backend(backend), name)(*valid_args(name))


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_shape_mismatch_is_rejected(backend, name):
    args = valid_args(name)
    shared = [d for _, p in arrays(name) for d in p.dims]
    tried = 0
    for i, param in arrays(name):
        for axis, letter in enumerate(param.dims):
            if shared.count(letter) < 2:
                continue  # a size no other array constrains
            shape = list(args[i].shape)
            shape[axis] += 1
            assert_rejected(backend, name, replaced(args, i, np.zeros(shape, args[i].dtype)), f"'{param.name}'")
            tried += 1
    assert tried


def _wrong_dtypes(param):
    if param.dtype is None:  # the kernel's float dtype
        return [np.float16, np.int64, np.int32, np.complex128]
    if param.dtype == "any":  # cast on the way in: integers, float32 and float64 only
        return [np.float16, np.bool_, np.complex64]
    return [np.float64, np.int32, np.bool_] if param.dtype != np.float64 else [np.float32]


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_dtype_is_rejected(backend, name):
    args = valid_args(name)
    for i, param in arrays(name):
        for bad in _wrong_dtypes(param):
            error = assert_rejected(backend, name, replaced(args, i, np.zeros(args[i].shape, bad)), f"'{param.name}'")
            assert isinstance(error, TypeError)


@pytest.mark.parametrize("name", [n for n in KERNELS if sum(p.dtype is None for _, p in arrays(n)) >= 2])
@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_float32_and_float64_is_rejected(backend, name):
    for dtype, other in [(np.float32, np.float64), (np.float64, np.float32)]:
        args = valid_args(name, dtype)
        floats = [(i, p) for i, p in arrays(name) if p.dtype is None]
        for i, param in floats[1:]:  # the first float array sets the dtype; each later one breaks it
            assert_rejected(backend, name, replaced(args, i, args[i].astype(other)), f"'{param.name}'", "float")


def _strided(array):
    """Same shape and values, not C-contiguous: a ::2 slice or a transposed view."""
    if array.ndim == 2:
        view = np.empty(array.shape[::-1], array.dtype).T
    else:
        view = np.empty(array.shape[0] * 2, array.dtype)[::2]
    view[...] = array
    assert view.shape == array.shape and not view.flags.c_contiguous
    return view


BREAKERS = {  # name: (array -> a broken stand-in, words the message must hold besides the argument)
    "one_dimension_too_many": (lambda a: np.ascontiguousarray(a[..., None]), ()),
    "zero_dimensions": (lambda a: a.ravel()[:1].reshape(()), ()),
    "strided_view": (_strided, ("contiguous",)),
    "python_list": (lambda a: a.tolist(), ("numpy array",)),
}


@pytest.mark.parametrize("breaker", BREAKERS)
@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_broken_array_argument_is_rejected(backend, name, breaker):
    breaks, words = BREAKERS[breaker]
    args = valid_args(name)
    for i, param in arrays(name):
        assert_rejected(backend, name, replaced(args, i, breaks(args[i])), f"'{param.name}'", *words)


@pytest.mark.parametrize("name", [n for n in KERNELS if SPECS[n].outputs])
@pytest.mark.parametrize("backend", BACKENDS)
def test_read_only_output_is_rejected(backend, name):
    args = valid_args(name)
    for i, param in enumerate(SPECS[name].outputs):
        frozen = args[i].copy()
        frozen.setflags(write=False)
        assert_rejected(backend, name, replaced(args, i, frozen), f"'{param.name}'", "read-only")


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_non_number_scalar_arguments_are_rejected(backend, name):
    args = valid_args(name)
    for i in range(len(arrays(name)), len(args)):
        assert_rejected(backend, name, replaced(args, i, "0.5"))
        assert_rejected(backend, name, replaced(args, i, None))


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_number_of_arguments_is_rejected(backend, name):
    args = valid_args(name)
    assert_rejected(backend, name, args[:-1], f"{name}()")
    assert_rejected(backend, name, args + [args[-1]], f"{name}()")


@pytest.mark.parametrize("backend", BACKENDS)
def test_scalar_argument_error_names_the_argument(backend):
    w, g = np.ones(4, np.float32), np.ones(4, np.float32)
    assert_rejected(backend, "sgd", [w, g, "0.1"], "'lr'")
    assert_rejected(backend, "adam", [w, w.copy(), w.copy(), g, 1e-3, 0.9, 0.999, [1e-8], 0.1, 0.1], "'eps'")


# ---- values -----------------------------------------------------------------------

@pytest.mark.parametrize("bad_label", [-1, 4, 1000])
@pytest.mark.parametrize("backend", BACKENDS)
def test_label_out_of_range_is_rejected(backend, bad_label):
    dz, z, labels = valid_args("softmax_ce")  # 4 classes
    labels[1] = bad_label
    assert_rejected(backend, "softmax_ce", [dz, z, labels], "label", str(bad_label))


@pytest.mark.parametrize("bad_index", [-1, 5])
@pytest.mark.parametrize("backend", BACKENDS)
def test_gather_index_out_of_range_is_rejected(backend, bad_index):
    out, x, idx, scale = valid_args("gather_rows")  # 5 rows of data
    idx[0] = bad_index
    assert_rejected(backend, "gather_rows", [out, x, idx, scale], "indices")


ACT_KERNELS = sorted({n for n, _ in kc.all_variants() if kc.CASES[n].variants is kc.ACT_VARIANTS})


def test_every_kernel_taking_an_activation_code_is_door_tested():
    assert ACT_KERNELS == ["activation_backward", "activation_forward", "conv_forward", "dense_backward_dx",
                           "dense_forward"]
    assert kc.CASES["conv_backward"].variants is kc.CONV_BACKWARD_VARIANTS  # its two codes: tested below


@pytest.mark.parametrize("code", [5, -1, 1.0, True, "relu", None])
@pytest.mark.parametrize("name", ACT_KERNELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_activation_code_is_rejected(backend, name, code):
    args = valid_args(name)
    assert_rejected(backend, name, args[:-3] + [code, 0.0, 0.0], "'act'")


@pytest.mark.parametrize("params", [(ACT["sigmoid"], 0.0, 1.0), (ACT["sigmoid"], 1.0, -2.0),
                                    (ACT["sigmoid"], float("nan"), 1.0), (ACT["leaky_relu"], -0.1, 0.0)],
                         ids=["sigmoid_a0", "sigmoid_b_negative", "sigmoid_a_nan", "leaky_alpha_negative"])
@pytest.mark.parametrize("name", ACT_KERNELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_activation_parameters_are_rejected(backend, name, params):
    args = valid_args(name)
    assert_rejected(backend, name, args[:-3] + list(params), "sigmoid" if params[0] == ACT["sigmoid"] else "alpha")


@pytest.mark.parametrize("rows", [0, 3])
@pytest.mark.parametrize("name", ["softmax_ce", "softmax", "argmax_hits"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_classes_are_rejected(backend, name, rows):
    # The kernels start each row's maximum at z[r, 0]: with no columns that reads out of bounds.
    z = np.zeros((rows, 0), np.float32)
    labels = np.zeros(rows, np.int64)
    args = {"softmax_ce": [z.copy(), z, labels], "softmax": [z.copy(), z], "argmax_hits": [z, labels]}[name]
    assert_rejected(backend, name, args, "class")


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_dropout_scale_and_mask_are_rejected(backend):
    y, x, mask, _ = valid_args("dropout")
    assert_rejected(backend, "dropout", [y, x, mask, 0.5], "scale")
    mask[0, 0] = 2
    assert_rejected(backend, "dropout", [y, x, mask, 2.0], "'mask'")


@pytest.mark.parametrize("strengths", [(-0.1, 0.0), (0.0, -1.0), (float("nan"), 0.0)])
@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_penalty_strengths_are_rejected(backend, strengths):
    dw, w, _, _ = valid_args("penalty")
    assert_rejected(backend, "penalty", [dw, w, *strengths], "l1 and l2")


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="torch"):
        get_backend("torch")
    with pytest.raises(ConfigError):
        get_backend(None)
    assert get_backend("numba") is not get_backend("numpy")


# ---- convolution and pooling: both activations, and the geometry ------------------------

CONV_ACTS = {"act": slice(-6, -3), "in_act": slice(-3, None)}  # conv_backward's (code, p0, p1) triples


@pytest.mark.parametrize("code", [5, -1, 1.0, True, "relu", None])
@pytest.mark.parametrize("which", CONV_ACTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_backward_rejects_unknown_codes_for_its_own_and_its_input_activation(backend, which, code):
    args = valid_args("conv_backward")
    args[CONV_ACTS[which]] = [code, 0.0, 0.0]
    assert_rejected(backend, "conv_backward", args, "act")


@pytest.mark.parametrize("which", CONV_ACTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_backward_rejects_bad_activation_parameters_for_both_activations(backend, which):
    args = valid_args("conv_backward")
    args[CONV_ACTS[which]] = [ACT["sigmoid"], 0.0, 1.0]
    assert_rejected(backend, "conv_backward", args, "sigmoid")


GEOMETRY = ["c_in", "h", "wd", "k", "stride", "pad"]  # the scalars after the arrays, in this order


def _geometry_at(name):
    """Index of c_in in ``name``'s arguments: right after its arrays."""
    return len(arrays(name))


@pytest.mark.parametrize("name", ["conv_forward", "conv_backward", "maxpool_forward", "maxpool_backward",
                                  "avgpool_forward", "avgpool_backward"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_geometry_is_rejected(backend, name):
    args = valid_args(name)
    at = _geometry_at(name)
    names = GEOMETRY if name.startswith("conv") else GEOMETRY[:5]
    for i, arg in enumerate(names):
        low = 0 if arg == "pad" else 1
        for bad in (low - 1, 2.0, True):
            assert_rejected(backend, name, replaced(args, at + i, bad), f"'{arg}'")
    # a window larger than the (padded) image: no output position
    c_in, h, wd, k = args[at:at + 4]
    big = replaced(args, at + 3, max(h, wd) + 2 * (args[at + 5] if name.startswith("conv") else 0) + 1)
    assert_rejected(backend, name, big, "does not fit")


@pytest.mark.parametrize("name", ["maxpool_forward", "maxpool_backward", "avgpool_forward", "avgpool_backward"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_pooling_windows_above_15_are_rejected(backend, name):
    # max pooling keeps each window's argmax in a uint8; every pooling kernel shares the limit
    batch = 2
    x = np.zeros((batch, 16 * 16), np.float32)
    y = np.zeros((batch, 1), np.float32)
    arg = np.zeros((batch, 1), np.uint8)
    geo = [1, 16, 16, 16, 16]
    args = {"maxpool_forward": [y, arg, x], "maxpool_backward": [x, y, arg], "avgpool_forward": [y, x],
            "avgpool_backward": [x, y]}[name]
    assert_rejected(backend, name, args + geo, "15")


@pytest.mark.parametrize("backend", BACKENDS)
def test_maxpool_backward_rejects_a_place_outside_the_window(backend):
    dx, g, arg, *geo = valid_args("maxpool_backward")
    size = geo[3]
    arg[0, 0] = size * size  # one past the last place: the kernel would write outside the window
    assert_rejected(backend, "maxpool_backward", [dx, g, arg, *geo], "'arg'")


@pytest.mark.parametrize("name", ["conv_forward", "conv_backward", "maxpool_forward", "maxpool_backward",
                                  "avgpool_forward", "avgpool_backward"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_arrays_whose_width_does_not_fit_the_geometry_are_rejected(backend, name):
    # the image widths (C·H·W, O·OH·OW, C·K·K) are no letters the spec shares: the geometry sets them
    args = valid_args(name)
    for i, param in arrays(name):
        if args[i].ndim != 2:
            continue
        wider = np.zeros((args[i].shape[0], args[i].shape[1] + 1), args[i].dtype)
        with pytest.raises(ValueError) as info:
            getattr(get_backend(backend), name)(*replaced(args, i, wider))
        assert not isinstance(info.value, NumbaError), f"{name} '{param.name}': numba error leaked through"
