"""numba's thread settings from the environment: a bad one is a one-line fastnet error, not a numba traceback.

NUMBA_NUM_THREADS below 1 stops numba's own import, so these run in fresh processes.
"""
import io
import os
import subprocess
import sys

import numba
import pytest

import fastnet as fn
from fastnet import threads

BAD_SETTINGS = [("NUMBA_NUM_THREADS", "0"), ("NUMBA_NUM_THREADS", "-1"), ("NUMBA_THREADING_LAYER", "bogus")]


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER")}
    return subprocess.run([sys.executable, *args], env={**clean, **env}, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name, value", BAD_SETTINGS)
def test_bad_thread_setting_is_one_line_on_stderr_and_exit_2_in_the_command(name, value):
    result = run(["-m", "fastnet", "train", "--epochs", "1", "--hidden", "16"], **{name: value})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("fastnet train: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert f"{name}='{value}'" in result.stderr and "unset it" in result.stderr


def test_bad_thread_setting_still_imports_and_refuses_only_the_numba_backend():
    code = """
import numpy as np
import fastnet as fn

def refused(call):
    try:
        call()
    except fn.ConfigError as e:
        return str(e)

print(refused(lambda: fn.Sequential(fn.Dense(3, 2), loss=fn.MSE())))
print(refused(fn.get_num_threads))
model = fn.Sequential(fn.Dense(3, 2), loss=fn.MSE(), backend="numpy")
print(model.predict(np.ones((4, 3), np.float32)).shape)
"""
    result = run(["-c", code], NUMBA_NUM_THREADS="0")
    assert result.returncode == 0, result.stderr
    numba_backend, threads_call, numpy_predict = result.stdout.splitlines()
    assert numba_backend.startswith("NUMBA_NUM_THREADS='0' is not a number of threads")
    assert threads_call == numba_backend
    assert numpy_predict == "(4, 2)"


def test_more_threads_than_numba_num_threads_says_what_caps_it_and_how_to_lift_it():
    result = run(["-m", "fastnet", "train", "--threads", "2", "--epochs", "1"], NUMBA_NUM_THREADS="1")
    assert result.returncode == 2
    assert "started with NUMBA_NUM_THREADS=1" in result.stderr and "NUMBA_NUM_THREADS=2" in result.stderr
    assert "between 1 and 1" not in result.stderr


def test_more_threads_than_cores_says_how_to_get_them(monkeypatch):
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    more = numba.config.NUMBA_NUM_THREADS + 1
    with pytest.raises(fn.ConfigError, match=f"start the process with NUMBA_NUM_THREADS={more}"):
        fn.set_num_threads(more)


def test_a_threading_layer_that_cannot_load_is_a_one_line_config_error(monkeypatch):
    def cannot_load():  # what numba raises for NUMBA_THREADING_LAYER=tbb without TBB installed
        raise ValueError("No threading layer could be loaded.\nHINT:\nIntel TBB is required, try:\n"
                         "$ conda/pip install tbb")

    monkeypatch.setenv("NUMBA_THREADING_LAYER", "tbb")
    monkeypatch.setattr(threads.numba, "get_num_threads", cannot_load)
    with pytest.raises(fn.ConfigError, match="NUMBA_THREADING_LAYER=tbb: No threading layer could be loaded") as info:
        fn.get_num_threads()
    assert "\n" not in str(info.value)


def test_kernel_threads_caps_blas_once_and_restores_it_after_the_outermost_block():
    from threadpoolctl import threadpool_info

    from fastnet.threads import kernel_threads

    def blas():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    before = blas()
    with kernel_threads("numba"):
        assert set(blas()) <= {1}
        with kernel_threads("numba"):
            assert set(blas()) <= {1}
        assert set(blas()) <= {1}  # the inner block left the outer cap in place
    assert blas() == before
    with kernel_threads("numpy"):
        assert blas() == before  # the NumPy backend keeps BLAS's own threads


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba has a single thread here")
@pytest.mark.parametrize("busy, inside", [(0, 2), (1, 1), (2, 1), (5, 1)])
def test_an_epoch_uses_the_cores_other_processes_leave_free(monkeypatch, busy, inside):
    monkeypatch.setattr(threads, "_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda: busy)
    monkeypatch.setattr(threads, "_reading", None)  # no reading from an earlier test stands
    fn.set_num_threads(2)
    with threads.threads_for_load("numba"):
        assert fn.get_num_threads() == inside
    assert fn.get_num_threads() == 2
    with threads.threads_for_load("numpy"):  # BLAS does the NumPy backend's work: left alone
        assert fn.get_num_threads() == 2


def test_busy_cores_takes_the_fewest_of_its_readings_less_this_process(monkeypatch):
    readings = iter(["1.0 1.0 1.0 4/90 1\n", "1.0 1.0 1.0 2/90 1\n", "1.0 1.0 1.0 3/90 1\n"])
    monkeypatch.setattr(threads, "open", lambda path: io.StringIO(next(readings)), raising=False)
    assert threads.busy_cores(samples=3, gap=0) == 1  # a process that ran for an instant does not count

    def no_such_file(path):
        raise FileNotFoundError(path)

    monkeypatch.setattr(threads, "open", no_such_file, raising=False)
    assert threads.busy_cores() == 0  # elsewhere than Linux: nothing is known, nothing is taken away


def test_a_reading_of_the_load_stands_for_a_second_so_short_epochs_cost_nothing(monkeypatch):
    readings = []
    monkeypatch.setattr(threads, "busy_cores", lambda: readings.append(1) or 0)
    monkeypatch.setattr(threads, "_reading", None)
    fn.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for _ in range(50):
        with threads.threads_for_load("numba"):
            pass
    assert len(readings) == (1 if numba.config.NUMBA_NUM_THREADS > 1 else 0)
    monkeypatch.setattr(threads.time, "monotonic", lambda: 1e9)  # much later: read again
    with threads.threads_for_load("numba"):
        pass
    assert len(readings) == (2 if numba.config.NUMBA_NUM_THREADS > 1 else 0)
