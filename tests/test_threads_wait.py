"""OpenMP threads spin briefly, then sleep, by default, so a loaded machine does not make 2 threads slower than 1.

fastnet sets OMP_WAIT_POLICY=PASSIVE and GOMP_SPINCOUNT=10000 before numba's OpenMP runtime reads
them, only when the user set none of OMP_WAIT_POLICY, GOMP_SPINCOUNT, KMP_BLOCKTIME. Each check runs
in a fresh process from an environment without those variables (the runtime reads them once, when
it loads). Results stay bitwise the same at 1 and 2 threads under that default.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastnet.kernels import _env

TESTS = Path(__file__).parent
WAIT = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
REPORT = """
import json, os, numba
import fastnet as fn
from fastnet.kernels import _env
fn.get_num_threads()  # starts numba's threading layer, which loads the OpenMP runtime
print(json.dumps({"env": {k: os.environ.get(k) for k in %r}, "layer": numba.threading_layer(),
                  "set": getattr(_env, "SET_WAIT_POLICY", None)}))
""" % (WAIT,)


def run(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in (*WAIT, "NUMBA_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def report(**env: str) -> dict:
    return json.loads(run(REPORT, **env).stdout.splitlines()[-1])


def test_without_a_user_setting_threads_spin_briefly_then_sleep():
    result = report()
    assert result["env"] == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": str(_env.SPIN_COUNT),
                             "KMP_BLOCKTIME": None}
    assert result["set"] is True


@pytest.mark.parametrize("name, value", [("OMP_WAIT_POLICY", "ACTIVE"), ("OMP_WAIT_POLICY", "passive"),
                                         ("GOMP_SPINCOUNT", "300000"), ("KMP_BLOCKTIME", "200")])
def test_a_user_setting_of_how_threads_wait_wins_and_nothing_is_added(name, value):
    result = report(**{name: value})
    assert result["env"] == {k: None for k in WAIT} | {name: value}
    assert result["set"] is False


def test_the_openmp_runtime_numba_loads_spins_as_long_as_fastnet_chose():
    # GNU libgomp prints its settings on stderr with OMP_DISPLAY_ENV: an explicit spin count wins over
    # the passive policy there (which alone would be 0; its default without either is 300000).
    # Other runtimes print other formats, and read the passive policy.
    result = run(REPORT, OMP_DISPLAY_ENV="VERBOSE")
    if json.loads(result.stdout.splitlines()[-1])["layer"] != "omp" or "GOMP_SPINCOUNT" not in result.stderr:
        pytest.skip("numba's threading layer here is not GNU OpenMP")
    assert f"GOMP_SPINCOUNT = '{_env.SPIN_COUNT}'" in result.stderr, result.stderr


@pytest.mark.parametrize("environ, sets", [({}, True), ({"OMP_WAIT_POLICY": "ACTIVE"}, False),
                                           ({"GOMP_SPINCOUNT": "1000"}, False), ({"KMP_BLOCKTIME": "0"}, False),
                                           ({"OMP_NUM_THREADS": "4"}, True)])
def test_set_wait_policy_decides_by_the_user_settings_alone(environ, sets):
    before = dict(environ)
    assert _env.set_wait_policy(environ) is sets
    chosen = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": str(_env.SPIN_COUNT)}
    assert environ == (before | chosen if sets else before)


def test_kernels_give_identical_bits_at_1_and_2_threads_with_the_default_wait_policy():
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import json, os, test_kernels_threads as t; "
            "print(json.dumps({'spin': os.environ.get('GOMP_SPINCOUNT'), **t.digests()}))")
    one, two = (json.loads(run(code, NUMBA_NUM_THREADS=n).stdout.splitlines()[-1]) for n in ("1", "2"))
    assert one["spin"] == two["spin"] == str(_env.SPIN_COUNT)
    assert (one["threads"], two["threads"]) == (1, 2)
    assert one["kernels"] and one["kernels"] == two["kernels"]


def test_a_benchmark_worker_takes_the_settings_back_before_another_library_loads_its_openmp():
    code = ("import json, os; from fastnet.kernels import _env; before = {k: os.environ.get(k) for k in %r}; "
            "_env.unset_wait_policy(); print(json.dumps([before, {k: os.environ.get(k) for k in %r}]))" % (WAIT, WAIT))
    before, after = json.loads(run(code).stdout.splitlines()[-1])
    assert before["GOMP_SPINCOUNT"] == str(_env.SPIN_COUNT) and before["OMP_WAIT_POLICY"] == "PASSIVE"
    assert after == {k: None for k in WAIT}
    before, after = json.loads(run(code, OMP_WAIT_POLICY="ACTIVE").stdout.splitlines()[-1])
    assert before == after == {k: None for k in WAIT} | {"OMP_WAIT_POLICY": "ACTIVE"}  # the user's stays
