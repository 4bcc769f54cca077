"""The import graph: the kernels import nothing above them, the core never imports the lab
(fastnet/bench/), and no two modules import each other, not even inside a function."""
import subprocess
import sys

import pytest

from import_graph import CORE_TO_LAB, cycles, floors, import_graph

GRAPH = import_graph()


def test_the_graph_sees_every_module_and_its_arrows():
    assert {"fastnet.model", "fastnet.kernels.dense", "fastnet.bench.harness"} <= set(GRAPH)
    assert "fastnet.kernels.dense" in GRAPH["fastnet.model"] or "fastnet.kernels" in GRAPH["fastnet.model"]
    assert "fastnet.bench.contenders" in GRAPH["fastnet.bench.harness"]


def test_kernels_import_nothing_above_them():
    upward = {(a, b) for a, deps in GRAPH.items() if a.startswith("fastnet.kernels")
              for b in deps if not b.startswith("fastnet.kernels")}
    assert upward == set()


def test_the_core_never_imports_the_lab():
    into_lab = {(a, b) for a, deps in GRAPH.items() if not a.startswith("fastnet.bench")
                for b in deps if b.startswith("fastnet.bench")}
    assert into_lab == {CORE_TO_LAB}, "only `fastnet bench` itself may load the lab"


def test_no_two_modules_import_each_other():
    assert cycles(GRAPH) == []


def test_floors_put_every_module_above_what_it_imports():
    floor = floors(GRAPH)
    assert all(floor[a] > floor[b] for a, deps in GRAPH.items() for b in deps if b != "fastnet")
    assert max(floor[m] for m in GRAPH if m.startswith("fastnet.kernels")) < floor["fastnet.model"]


@pytest.mark.parametrize("code", [
    "import fastnet, fastnet.cli, fastnet.sklearn, fastnet.onnx_export, fastnet.distributed, fastnet.plot",
    "import fastnet.cli; fastnet.cli.main(['train', '--help'])",
])
def test_the_core_loads_no_lab_module_at_run_time(code):
    probe = (f"import sys\ntry:\n    {code}\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith('fastnet.bench')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
