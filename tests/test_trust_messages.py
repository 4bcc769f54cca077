# --- load and import messages
"""A folder given as a model, and fastnet started under a tight ``ulimit -v``: one line that says what to do."""
import resource
import subprocess
import sys

import pytest

import fastnet as fn
from fastnet import cli

TIGHT = 250 << 20  # bytes of address space: numpy loads, numba and llvmlite cannot


def under_tight_limit(*args):
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (TIGHT, TIGHT))

    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, preexec_fn=limit)


def test_the_command_under_a_tight_ulimit_v_prints_one_line_and_exits_2(tmp_path):
    result = under_tight_limit("-m", "fastnet", "evaluate", str(tmp_path / "m.safetensors"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("fastnet evaluate: error: ") and "ulimit -v" in result.stderr


def test_import_fastnet_under_a_tight_ulimit_v_is_an_import_error_of_one_line():
    code = "try:\n    import fastnet\nexcept ImportError as e:\n    print(type(e).__name__, '|', e)"
    result = under_tight_limit("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ImportError | ") and result.stdout.count("\n") == 1, result.stdout
    assert "250 MiB" in result.stdout and "ulimit -v" in result.stdout


def test_a_folder_given_as_a_model_is_named_in_the_message(tmp_path, capsys):
    folder = tmp_path / "models"
    folder.mkdir()
    with pytest.raises(fn.CheckpointError, match=f"cannot read model file {folder}: it is a folder"):
        fn.load(folder)
    assert cli.main(["evaluate", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err == f"fastnet evaluate: error: cannot read model file {folder}: it is a folder, not a file\n"
