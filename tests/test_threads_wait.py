"""OpenMP threads spin briefly, then sleep, by default, so a loaded machine does not make 2 threads slower than 1,
and nothing outside fastnet sees the setting.

fastnet puts OMP_WAIT_POLICY=PASSIVE and GOMP_SPINCOUNT=10000 in the environment only while numba's pool
starts (the OpenMP runtime reads them once, as it loads), and only when the user set none of
OMP_WAIT_POLICY, GOMP_SPINCOUNT, KMP_BLOCKTIME. Each check runs in a fresh process from an environment
without those variables. Results stay bitwise the same at 1 and 2 threads under that default.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastnet import threads

TESTS = Path(__file__).parent
WAIT = threads.WAIT_SETTINGS
REPORT = """
import json, os, numba
import fastnet as fn
env_after_import = {k: os.environ.get(k) for k in %r}
m = fn.Sequential(fn.Dense(4, 3), fn.Sigmoid(), fn.Dense(3, 2), loss=fn.SoftmaxCrossEntropy(), seed=0)
m.fit([[0, 1, 2, 3]] * 8, [0, 1] * 4, epochs=1, batch_size=4, progress=False)  # starts numba's pool
print(json.dumps({"import": env_after_import, "env": {k: os.environ.get(k) for k in %r},
                  "layer": numba.threading_layer()}))
""" % (WAIT, WAIT)


def run(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in (*WAIT, "NUMBA_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def report(**env: str) -> dict:
    return json.loads(run(REPORT, **env).stdout.splitlines()[-1])


def test_neither_import_nor_training_changes_the_environment():
    result = report()
    assert result["import"] == result["env"] == {k: None for k in WAIT}


@pytest.mark.parametrize("name, value", [("OMP_WAIT_POLICY", "ACTIVE"), ("OMP_WAIT_POLICY", "passive"),
                                         ("GOMP_SPINCOUNT", "300000"), ("KMP_BLOCKTIME", "200")])
def test_a_user_setting_of_how_threads_wait_stays_as_it_is(name, value):
    result = report(**{name: value})
    assert result["import"] == result["env"] == {k: None for k in WAIT} | {name: value}


def spin_count_read(**env: str) -> str | None:
    # GNU libgomp prints its settings on stderr with OMP_DISPLAY_ENV, as it loads: an explicit spin count
    # wins over the passive policy there (which alone would be 0; its default without either is 300000).
    result = run(REPORT, OMP_DISPLAY_ENV="VERBOSE", **env)
    if json.loads(result.stdout.splitlines()[-1])["layer"] != "omp" or "GOMP_SPINCOUNT" not in result.stderr:
        pytest.skip("numba's threading layer here is not GNU OpenMP")
    return next(line.split("=")[1].strip(" '") for line in result.stderr.splitlines() if "GOMP_SPINCOUNT" in line)


def test_the_openmp_runtime_numba_loads_spins_as_long_as_fastnet_chose():
    assert spin_count_read() == str(threads.SPIN_COUNT)


def test_the_openmp_runtime_reads_the_users_spin_count_when_given():
    assert spin_count_read(GOMP_SPINCOUNT="1234") == "1234"


def test_kernels_give_identical_bits_at_1_and_2_threads_with_the_default_wait_policy():
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import json, test_kernels_threads as t; "
            "print(json.dumps(t.digests()))")
    one, two = (json.loads(run(code, NUMBA_NUM_THREADS=n).stdout.splitlines()[-1]) for n in ("1", "2"))
    assert (one["threads"], two["threads"]) == (1, 2)
    assert one["kernels"] and one["kernels"] == two["kernels"]
