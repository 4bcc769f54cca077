"""Dense kernels whose loop calls its block by address (kernels/_blocks.py).

The loop is compiled for a block type, and the address it is handed must point at a block
compiled for exactly the arguments it was called with. These tests check the bookkeeping that
guarantees it; what the kernels compute is checked against their twins in test_kernels_twins.
"""
import pickle

import numpy as np
import pytest

from fastnet.kernels import Blocked, bind, dense


def forward_args(dtype, rows=5):
    rng = np.random.default_rng(rows)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((rows, 7), (3, 7), 3))
    return np.zeros((rows, 3), dtype), x, w, b, 0, 0.0, 0.0  # identity: y = x @ w.T + b


def test_each_argument_type_gets_its_own_block():
    (y32, *a32), (y64, *a64) = forward_args(np.float32), forward_args(np.float64)
    kernel = dense.dense_forward
    assert kernel.address((y32, *a32)) != kernel.address((y64, *a64))
    assert kernel.address((y32, *a32)) == kernel.address(forward_args(np.float32, rows=9))  # shapes do not matter
    for y, x, w, b, *_ in ((y32, *a32), (y64, *a64)):
        kernel(y, x, w, b, 0, 0.0, 0.0)
        np.testing.assert_allclose(y, x @ w.T + b, rtol=1e-5, atol=1e-5)
        assert y.dtype == x.dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_bound_call_computes_what_a_direct_call_does(dtype):
    args = forward_args(dtype)
    direct = args[0].copy()
    dense.dense_forward(direct, *args[1:])
    call = bind(dense.dense_forward, *args)
    assert call.args[0] == dense.dense_forward.address(args)  # looked up once, when bound
    call()
    np.testing.assert_array_equal(args[0], direct)


def test_bind_is_a_plain_partial_for_other_kernels():
    def kernel(a, b):
        return a + b
    assert bind(kernel, 1)(2) == 3


def test_a_copy_in_another_process_does_not_carry_this_ones_addresses():
    kernel = dense.dense_forward
    kernel.address(forward_args(np.float32))
    copy = pickle.loads(pickle.dumps(kernel))  # as multiprocessing or Dask would send it
    assert isinstance(copy, Blocked) and copy._addresses == {}
    args = forward_args(np.float32)
    expected = args[0].copy()
    kernel(expected, *args[1:])
    copy(*args)
    np.testing.assert_array_equal(args[0], expected)
