"""Bad arguments get a fastnet error that says what to fix, never a plain TypeError or a traceback deep inside;
models and training too big for memory are refused before anything is allocated."""
import math
import os
import tracemalloc

import numba
import numpy as np
import pytest

import fastnet as fn
from fastnet import _memory
from test_model_errors import GOOD_X, GOOD_Y, check_message, classifier, no_kernel_may_run  # noqa: F401

MiB = 2**20


# ---- memory ---------------------------------------------------------------------------

@pytest.fixture
def memory(monkeypatch):
    """Pretend the machine has ``memory.available`` bytes free."""

    class Memory:
        available = 100 * MiB

    monkeypatch.setattr(_memory, "available_bytes", lambda: Memory.available)
    return Memory


def test_a_model_too_big_for_memory_is_refused_before_anything_is_allocated(memory):
    tracemalloc.start()
    try:
        with pytest.raises(fn.ConfigError) as err:  # 78.5 M float32 parameters and gradients: 628 MB
            fn.Sequential(fn.Dense(784, 100_000), fn.ReLU(), fn.Dense(100_000, 10), loss=fn.SoftmaxCrossEntropy())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    check_message(err, ["784-100000-10", "GiB", "100.0 MiB available", "narrower"])
    assert peak < MiB
    fn.Sequential(fn.Dense(784, 1000), fn.ReLU(), fn.Dense(1000, 10), loss=fn.SoftmaxCrossEntropy())  # 6 MB fits


def test_a_model_larger_than_any_machine_is_refused_on_this_one():
    with pytest.raises(fn.ConfigError, match="memory"):  # 784 billion parameters: 6.3 TB with gradients
        fn.Sequential(fn.Dense(784, 10**9), fn.ReLU(), fn.Dense(10**9, 10), loss=fn.SoftmaxCrossEntropy())


def test_training_that_does_not_fit_is_refused_before_any_kernel_runs(memory, no_kernel_may_run):
    model = classifier()
    before = model.params.copy()
    memory.available = 1024  # the model exists; its Adam state and batches cannot be allocated
    optimizer = fn.Adam()
    with pytest.raises(fn.ConfigError) as err:
        model.fit(GOOD_X, GOOD_Y, optimizer=optimizer, progress=False)
    check_message(err, ["Adam state", "1.0 KiB available", "batch_size"])
    assert np.array_equal(model.params, before) and not optimizer.state


def test_available_memory_is_read_from_meminfo_capped_by_the_cgroup(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:          100000 kB\nMemAvailable:    2048 kB\n")
    monkeypatch.setattr(_memory, "MEMINFO", str(meminfo))
    monkeypatch.setattr(_memory, "CGROUP", str(tmp_path / "no-cgroup"))
    assert _memory.available_bytes() == 2 * MiB
    (tmp_path / "memory.max").write_text("1048576\n")
    (tmp_path / "memory.current").write_text("524288\n")
    monkeypatch.setattr(_memory, "CGROUP", str(tmp_path))
    assert _memory.available_bytes() == MiB // 2


def test_without_meminfo_the_free_pages_are_used_and_without_either_nothing_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(_memory, "MEMINFO", str(tmp_path / "none"))
    monkeypatch.setattr(_memory, "CGROUP", str(tmp_path / "none"))
    pages = {"SC_AVPHYS_PAGES": 10, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name])
    assert _memory.available_bytes() == 40960

    def unsupported(name):
        raise ValueError(f"unrecognized configuration name {name}")

    monkeypatch.setattr(os, "sysconf", unsupported)
    assert _memory.available_bytes() is None
    _memory.check_fits(10**15, "a petabyte", "")  # unknown: not refused


# ---- plain Python errors become fastnet errors -------------------------------------------

@pytest.mark.parametrize("seed", [-1, 1.5, "abc", True, [1, 2]])
def test_a_bad_seed_is_a_config_error(seed):
    with pytest.raises(fn.ConfigError) as err:
        fn.Sequential(fn.Dense(2, 2), loss=fn.MSE(), seed=seed)
    check_message(err, ["seed", ">= 0", repr(seed)])


def test_a_scalar_target_is_a_shape_error(no_kernel_may_run):
    with pytest.raises(fn.ShapeError) as err:
        classifier().fit(GOOD_X, 3, progress=False)
    check_message(err, ["one target per sample", "10", "3"])


@pytest.mark.parametrize("validation_data, got", [(GOOD_X, "ndarray"), ((GOOD_X, GOOD_Y, GOOD_Y), "tuple of 3"),
                                                  ([GOOD_X], "list of 1")])
def test_validation_data_must_be_a_pair(validation_data, got, no_kernel_may_run):
    with pytest.raises(fn.ConfigError) as err:
        classifier().fit(GOOD_X, GOOD_Y, validation_data=validation_data, progress=False)
    check_message(err, ["(x_val, y_val)", got])


@pytest.mark.parametrize("callbacks", [fn.EarlyStopping(), 3])
def test_callbacks_must_be_a_list(callbacks, no_kernel_may_run):
    with pytest.raises(fn.ConfigError) as err:
        classifier().fit(GOOD_X, GOOD_Y, callbacks=callbacks, progress=False)
    check_message(err, ["callbacks must be a list", "callbacks=[EarlyStopping"])


@pytest.mark.parametrize("kwargs", [{"epochs": True}, {"batch_size": 2.0}, {"epochs": "3"}])
def test_epochs_and_batch_size_are_whole_numbers(kwargs, no_kernel_may_run):
    with pytest.raises(fn.ConfigError, match="whole number"):
        classifier().fit(GOOD_X, GOOD_Y, progress=False, **kwargs)


BAD_CONSTRUCTORS = {
    "StepLR(inf)": (lambda: fn.StepLR(math.inf), "step_size"),
    "StepLR(nan)": (lambda: fn.StepLR(math.nan), "step_size"),
    "StepLR('3')": (lambda: fn.StepLR("3"), "step_size"),
    "StepLR(2.5)": (lambda: fn.StepLR(2.5), "step_size"),
    "StepLR(gamma=inf)": (lambda: fn.StepLR(2, gamma=math.inf), "gamma"),
    "StepLR(gamma=True)": (lambda: fn.StepLR(2, gamma=True), "gamma"),
    "ExponentialLR(inf)": (lambda: fn.ExponentialLR(math.inf), "gamma"),
    "ExponentialLR('0.9')": (lambda: fn.ExponentialLR("0.9"), "gamma"),
    "CosineLR(inf)": (lambda: fn.CosineLR(math.inf), "t_max"),
    "CosineLR(min_factor='0')": (lambda: fn.CosineLR(10, min_factor="0"), "min_factor"),
    "SGD(lr=True)": (lambda: fn.SGD(lr=True), "learning rate"),
    "SGD(momentum='0.9')": (lambda: fn.SGD(momentum="0.9"), "momentum"),
    "SGD(momentum=nan)": (lambda: fn.SGD(momentum=math.nan), "momentum"),
    "SGD(nesterov='yes')": (lambda: fn.SGD(momentum=0.9, nesterov="yes"), "nesterov"),
    "Adam(betas=0.9)": (lambda: fn.Adam(betas=0.9), "betas"),
    "Adam(betas=(0.9,))": (lambda: fn.Adam(betas=(0.9,)), "betas"),
    "Adam(betas=('a', 'b'))": (lambda: fn.Adam(betas=("a", "b")), "betas"),
    "Adam(eps=inf)": (lambda: fn.Adam(eps=math.inf), "eps"),
    "EarlyStopping(patience='3')": (lambda: fn.EarlyStopping(patience="3"), "patience"),
    "EarlyStopping(patience=1.5)": (lambda: fn.EarlyStopping(patience=1.5), "patience"),
    "EarlyStopping(min_delta=nan)": (lambda: fn.EarlyStopping(min_delta=math.nan), "min_delta"),
    "EarlyStopping(monitor=None)": (lambda: fn.EarlyStopping(monitor=None), "monitor"),
    "EarlyStopping(restore_best='no')": (lambda: fn.EarlyStopping(restore_best="no"), "restore_best"),
    "Dense(True, 3)": (lambda: fn.Dense(True, 3), "n_in"),
    "Dense(l1=True)": (lambda: fn.Dense(3, 2, l1=True), "l1"),
    "Dense(init=None)": (lambda: fn.Dense(3, 2, init=None), "init"),
    "Sigmoid(a='1')": (lambda: fn.Sigmoid(a="1"), "a="),
    "Sigmoid(b=None)": (lambda: fn.Sigmoid(b=None), "b="),
    "LeakyReLU(alpha='0.1')": (lambda: fn.LeakyReLU(alpha="0.1"), "alpha"),
    "Dropout(nan)": (lambda: fn.Dropout(math.nan), "[0, 1)"),
}


@pytest.mark.parametrize("case", list(BAD_CONSTRUCTORS))
def test_bad_constructor_arguments_are_config_errors(case):
    build, phrase = BAD_CONSTRUCTORS[case]
    with pytest.raises(fn.ConfigError) as err:
        build()
    check_message(err, [phrase])


# ---- gradcheck ----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, phrase", [
    ({"eps": 0}, fn.ConfigError, "eps"),
    ({"eps": math.nan}, fn.ConfigError, "eps"),
    ({"max_params": 0}, fn.ConfigError, "max_params"),
    ({"max_params": -5}, fn.ConfigError, "max_params"),
    ({"seed": "x"}, fn.ConfigError, "seed"),
])
def test_gradcheck_refuses_arguments_that_make_no_check(kwargs, error, phrase, no_kernel_may_run):
    with pytest.raises(error, match=phrase):
        fn.gradcheck(classifier(), GOOD_X, GOOD_Y, **kwargs)


def test_gradcheck_refuses_empty_x_instead_of_a_perfect_score(no_kernel_may_run):
    with pytest.raises(fn.InputError, match="empty"):
        fn.gradcheck(classifier(), GOOD_X[:0], GOOD_Y[:0])


def test_gradcheck_refuses_what_is_not_a_model():
    with pytest.raises(fn.ConfigError, match="Sequential"):
        fn.gradcheck("model.safetensors", GOOD_X, GOOD_Y)


def test_gradcheck_says_it_is_compiling_unless_told_not_to(capfd, monkeypatch):
    compile_kernels = fn.Sequential.compile_kernels
    # as in a first run, something compiles (the notice is given only then): a fresh numba function
    monkeypatch.setattr(fn.Sequential, "compile_kernels",
                        lambda self, x_dtype: numba.njit(lambda: 0.0)() + compile_kernels(self, x_dtype))
    model = fn.Sequential(fn.Dense(6, 4), fn.Tanh(), fn.Dense(4, 4), loss=fn.SoftmaxCrossEntropy(), seed=0)
    assert fn.gradcheck(model, GOOD_X, GOOD_Y) < 1e-6
    err = capfd.readouterr().err
    assert "preparing kernels" in err and "kernels ready" in err
    assert fn.gradcheck(model, GOOD_X, GOOD_Y, progress=False) < 1e-6
    assert capfd.readouterr().err == ""


# ---- clearer messages -----------------------------------------------------------------------

def test_a_list_of_layers_is_taken_as_the_layers():
    listed = fn.Sequential([fn.Dense(6, 8), fn.ReLU(), fn.Dense(8, 4)], loss=fn.SoftmaxCrossEntropy(), seed=0)
    spread = fn.Sequential(fn.Dense(6, 8), fn.ReLU(), fn.Dense(8, 4), loss=fn.SoftmaxCrossEntropy(), seed=0)
    assert repr(listed) == repr(spread) and np.array_equal(listed.params, spread.params)


def test_a_layer_class_in_place_of_a_layer_says_to_call_it():
    with pytest.raises(fn.ConfigError) as err:
        fn.Sequential(fn.Dense(6, 8), fn.ReLU, fn.Dense(8, 4), loss=fn.SoftmaxCrossEntropy())
    check_message(err, ["ReLU()"])


def test_predict_on_one_1d_sample_says_how_to_reshape(no_kernel_may_run):
    with pytest.raises(fn.ShapeError) as err:
        classifier().predict(GOOD_X[0])
    check_message(err, ["(6,)", "x[None]", "x.reshape(1, -1)"])


@pytest.mark.parametrize("monitor, validation, phrases", [
    ("val_acc", True, ["'val_acc'", "Did you mean 'val_accuracy'?"]),
    ("val_acc", False, ["Did you mean 'val_accuracy'?", "validation_data"]),
    ("val_loss", False, ["'val_loss'", "it records loss, accuracy", "validation_data"]),
])
def test_early_stopping_names_the_metrics_before_the_first_epoch(monitor, validation, phrases):
    model = classifier("numpy")
    before = model.params.copy()
    with pytest.raises(fn.ConfigError) as err:
        model.fit(GOOD_X, GOOD_Y, epochs=3, validation_data=(GOOD_X, GOOD_Y) if validation else None,
                  callbacks=[fn.EarlyStopping(monitor=monitor)], progress=False)
    check_message(err, phrases)
    assert len(model.history) == 0 and np.array_equal(model.params, before)


def test_summary_shows_as_its_table_at_a_prompt():
    summary = classifier().summary()
    assert repr(summary) == str(summary)  # a prompt shows the table, not one quoted line with \n escapes
    assert type(str(summary)) is str and str(summary).startswith("layer") and "\n" in summary
    assert "total params: 92" in str(summary)
