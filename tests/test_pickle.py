"""Sequential pickles (for joblib, Dask and process pools): the copy predicts and trains on bit-identically."""
import copy
import pickle

import joblib
import numpy as np
import pytest

import fastnet as fn


def _trained(backend="numba", optimizer=None):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5))
    y = rng.integers(0, 3, 64)
    model = fn.Sequential(fn.Dense(5, 8), fn.ReLU(), fn.Dropout(0.2), fn.Dense(8, 3),
                          loss=fn.SoftmaxCrossEntropy(), backend=backend, seed=1)
    model.fit(x, y, epochs=2, batch_size=16, optimizer=optimizer or fn.Adam(lr=0.01), progress=False)
    return model, x, y


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_pickled_model_predicts_and_trains_on_bit_identically(backend):
    model, x, y = _trained(backend, fn.SGD(lr=0.1, momentum=0.9, nesterov=True))
    same = pickle.loads(pickle.dumps(model))
    assert same is not model and same.backend == backend and same.dtype == model.dtype
    assert np.array_equal(same.predict(x), model.predict(x))
    assert same.history.records == model.history.records
    # optimizer state, step count and the shuffle/dropout generators came along: training goes on alike
    for m in (model, same):
        m.fit(x, y, epochs=1, batch_size=16, progress=False)
    assert np.array_equal(same.params, model.params)
    assert len(same.history) == 3


def test_unpickled_model_owns_its_layers_and_optimizer():
    model, x, y = _trained()
    same = copy.deepcopy(model)
    assert all(layer._model is same for layer in same.layers)
    same.fit(x, y, epochs=1, progress=False)  # its optimizer trains it, not the original
    assert not np.array_equal(same.params, model.params)
    assert model.optimizer is not same.optimizer


def test_pickle_holds_no_compiled_kernels():
    model, _, _ = _trained()
    meta, tensors = model.__getstate__()
    assert set(tensors) >= {"layers.0.weight", "optimizer.m", "optimizer.v"}
    blob = pickle.dumps(model)
    assert b"fastnet.kernels" not in blob and b"partial" not in blob


def test_model_crosses_process_boundaries_with_joblib():
    # The task is fastnet's own function: workers import fastnet, never this test module (not importable there)
    model, x, _ = _trained()
    out = joblib.Parallel(n_jobs=2)(joblib.delayed(fn.Sequential.predict)(model, x[i::2]) for i in range(2))
    assert np.array_equal(out[0], model.predict(x[0::2])) and np.array_equal(out[1], model.predict(x[1::2]))
