"""README.md's examples run as written."""
import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no python example"
    monkeypatch.chdir(tmp_path)  # the example saves mnist.safetensors in the working directory
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "'accuracy'" in out and (tmp_path / "mnist.safetensors").exists()
    model, same, test = namespace["model"], namespace["same"], namespace["test"]
    assert (same.predict(test.x) == model.predict(test.x)).all()
    assert model.evaluate(test.x, test.y)["accuracy"] > 0.9  # 5 epochs of 784-128-10 sigmoid


@pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")  # max_iter is enough to converge
def test_readme_scikit_learn_example_runs_as_written(capsys):
    section = README.read_text().split("## With scikit-learn", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert "mlpclassifier__alpha" in capsys.readouterr().out
    assert namespace["grid"].score(namespace["X_test"], namespace["y_test"]) > 0.95


def test_readme_opens_with_the_install_and_test_commands():
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S).group(1).splitlines()
    assert first_block[0].startswith("pip install . && fastnet train")
    assert first_block[1].startswith('pip install -e ".[test]" && pytest')


def test_readme_onnx_example_runs_as_written(tmp_path, monkeypatch):
    block = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S) if "to_onnx" in b)
    monkeypatch.chdir(tmp_path)  # the example writes mnist.onnx in the working directory
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    model, test, probs = namespace["model"], namespace["test"], namespace["probs"]
    expected = model.predict(test.x)
    assert np.abs(probs - expected).max() <= 1e-5 * np.abs(expected).max()
    assert (probs.argmax(axis=1) == test.y).mean() > 0.85  # 2 epochs of 784-64-10 relu


@pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")  # max_iter is enough to converge
def test_readme_dask_sweep_runs_as_written(capsys):
    section = README.read_text().split("### Sweeps on a Dask cluster", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    assert 'Client("tcp://scheduler:8786")' in block  # how to point it at a real cluster
    namespace = {"__name__": "__main__"}  # as a script runs it: the cluster starts, the search runs on it
    exec(compile(block, "README.md", "exec"), namespace)
    assert "'alpha'" in capsys.readouterr().out
    assert namespace["cluster"].status.name == "closed"
    assert namespace["search"].best_score_ > 0.9
