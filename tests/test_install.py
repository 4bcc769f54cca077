"""Installing and running: the kernel cache stays out of the package, fastnet runs with no
writable cache at all, and the source tree imports as it stands (the import graph: test_layout.py).

The cache tests run a copy of the package laid out as pip installs it (site/fastnet) in a fresh
process that compiles one small kernel.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnet

try:
    import tomllib
except ImportError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

PACKAGE = Path(fastnet.__file__).parent  # the package under test: the one Python imports
REPO = Path(__file__).resolve().parent.parent

COMPILE_ONE = ("import numpy as np; from fastnet.kernels import batching; "
               "print('hits', batching.argmax_hits(np.eye(2, 3, dtype=np.float32), np.arange(2)))")


def installed(tmp_path: Path) -> Path:
    """A copy of the package as pip lays it out; returns the folder to put on PYTHONPATH."""
    site = tmp_path / "site"
    shutil.copytree(PACKAGE, site / "fastnet",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc", "data"))
    return site


def run(code: str, tmp_path: Path, site: Path, **env: str) -> subprocess.CompletedProcess:
    """``python -c code`` with ``site`` on the path and HOME and XDG_CACHE_HOME in ``tmp_path``."""
    base = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH")}
    env = {**base, "HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg"),
           "PYTHONPATH": str(site), **env}
    return subprocess.run([sys.executable, "-B", "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def cache_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.nb[ic]"))


def test_kernel_cache_goes_to_the_user_cache_folder_never_into_the_package(tmp_path):
    site = installed(tmp_path)
    mine = tmp_path / "mine"  # a user's own cached numba function, in the same process
    mine.mkdir()
    (mine / "user_kernels.py").write_text("from numba import njit\n\n\n@njit(cache=True)\ndef double(x):\n"
                                          "    return 2 * x\n")
    result = run(f"{COMPILE_ONE}; import sys; sys.path.insert(0, 'mine'); import user_kernels; "
                 "print('double', user_kernels.double(2))", tmp_path, site)
    assert result.returncode == 0, result.stderr
    assert "hits 2" in result.stdout and "double 4" in result.stdout
    assert cache_files(site) == []
    assert cache_files(tmp_path / "xdg" / "fastnet" / "numba")
    assert cache_files(mine / "__pycache__"), "the user's function should cache where numba puts it, beside it"


def test_numba_cache_dir_overrides_the_kernel_cache_folder(tmp_path):
    site = installed(tmp_path)
    result = run(COMPILE_ONE, tmp_path, site, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    assert result.returncode == 0, result.stderr
    assert cache_files(tmp_path / "numba-cache")
    assert cache_files(site) == [] and cache_files(tmp_path / "xdg") == []


@pytest.mark.parametrize("numba_cache_dir", [False, True])
def test_no_writable_cache_folder_compiles_without_a_cache_and_says_so_once(tmp_path, numba_cache_dir):
    # We run as root, for whom a read-only folder is still writable; nobody can create a
    # folder under a regular file. The package's own __pycache__ is blocked the same way,
    # as site-packages is for a user who may not write there.
    site = installed(tmp_path)
    (site / "fastnet" / "kernels" / "__pycache__").write_text("")
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    env = {"HOME": str(blocked / "home"), "XDG_CACHE_HOME": str(blocked / "cache")}
    if numba_cache_dir:
        env["NUMBA_CACHE_DIR"] = str(blocked / "numba")
    result = run(f"{COMPILE_ONE}; print('threshold', batching.threshold_hits(np.ones((2, 2)), np.ones((2, 2))))",
                 tmp_path, site, **env)
    assert result.returncode == 0, result.stderr
    assert "hits 2" in result.stdout and "threshold 4" in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "without a cache" in lines[0] and str(blocked) in lines[0], result.stderr
    assert cache_files(site) == []


def test_compile_notice_does_not_promise_a_cache_it_cannot_write(tmp_path):
    site = installed(tmp_path)
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    # the notice is given only when something compiles: here a fresh numba function
    code = "import numba; from fastnet.progress import Progress; Progress().compiling(numba.njit(lambda: 0.0))"
    cached = run(code, tmp_path, site)
    uncached = run(code, tmp_path, site, NUMBA_CACHE_DIR=str(blocked / "numba"))
    assert cached.returncode == 0 and uncached.returncode == 0, cached.stderr + uncached.stderr
    assert "then cached" in cached.stderr
    assert "then cached" not in uncached.stderr and "every run" in uncached.stderr, uncached.stderr


def test_source_tree_runs_as_it_stands():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for args in (["-m", "fastnet", "--help"],
                 ["-c", "import fastnet.kernels, fastnet.kernels.dense; print(fastnet.kernels.__file__)"]):
        result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == REPO / "fastnet" / "kernels" / "__init__.py"


def test_packaging_installs_only_fastnet_and_its_subpackages_from_their_own_folders():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = setuptools["packages"]
    assert isinstance(packages, list), "an explicit package list: discovery could find other top-level folders"
    assert "package-dir" not in setuptools, "each package installs from the folder its name says"
    assert {"fastnet", "fastnet.kernels", "fastnet.bench", "fastnet.data"} <= set(packages)
    assert all(name == "fastnet" or name.startswith("fastnet.") for name in packages)
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in PACKAGE.rglob("__init__.py")}
    assert on_disk <= set(packages), "a subpackage missing from the list would not install"
    assert not (PACKAGE / "kernels").is_symlink() and not (REPO / "kernels").exists()


def test_kernel_errors_and_fastnet_errors_are_one_set_of_classes():
    import fastnet as fn
    import fastnet.errors
    import fastnet.kernels.errors as errors
    from fastnet.kernels import get_backend

    for name in ("FastnetError", "ShapeError", "DTypeError", "ConfigError"):
        assert getattr(fn, name) is getattr(fastnet.errors, name) is getattr(errors, name)
    for name in ("DataError", "CheckpointError", "DivergenceError", "InputError"):
        assert issubclass(getattr(fn, name), errors.FastnetError)
    with pytest.raises(fn.ShapeError):  # raised by the kernels, caught by fastnet's name
        get_backend("numba").argmax_hits(np.zeros((2, 3), np.float32), np.zeros(3, np.int64))
    with pytest.raises(errors.ConfigError):  # raised by fastnet, caught by the kernels' name
        fn.datasets.load("no-such-dataset")


def test_numba_cache_classes_that_fail_leave_kernels_compiling_uncached(monkeypatch, caplog):
    from numba import njit

    from fastnet.kernels import _cache

    class Reworked:  # numba's private cache classes, as a later release might change them
        def __init__(self, py_func):
            raise TypeError("__init__() missing 1 required positional argument: 'target'")

    monkeypatch.setattr(_cache, "_cache_class", lambda: Reworked)
    monkeypatch.setattr(_cache, "_told", False)

    def one(x):
        return x + 1

    def two(x):
        return x + 2

    kernels = [_cache.cache_kernel(njit(fn)) for fn in (one, two)]
    assert [kernel(1) for kernel in kernels] == [2, 3]
    assert [kernel.stats.cache_path for kernel in kernels] == [None, None]  # numba's NullCache: no files
    notices = [r.getMessage() for r in caplog.records if "without a cache" in r.getMessage()]
    assert len(notices) == 1 and "missing 1 required positional argument" in notices[0]


def test_the_distribution_name_is_ours_and_its_version_is_the_packages():
    from importlib import metadata

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["name"] == "fastnet-cpu"  # "fastnet" on the package index is another project
    assert metadata.version("fastnet-cpu") == fastnet.__version__
    shown = subprocess.run([sys.executable, "-m", "fastnet", "--version"], capture_output=True, text=True, timeout=120)
    assert shown.stdout.split() == ["fastnet", fastnet.__version__]


def test_the_wheel_and_the_sdist_ship_py_typed(tmp_path):
    """PEP 561: without fastnet/py.typed in what pip installs, type checkers ignore fastnet's annotations."""
    import tarfile
    import zipfile

    source = tmp_path / "source"
    shutil.copytree(PACKAGE, source / "fastnet", ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    build = "from setuptools import build_meta as b; b.build_wheel('dist'); b.build_sdist('dist')"
    result = subprocess.run([sys.executable, "-c", build], cwd=source, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    [wheel], [sdist] = (list((source / "dist").glob(pattern)) for pattern in ("*.whl", "*.tar.gz"))
    assert "fastnet/py.typed" in zipfile.ZipFile(wheel).namelist()
    assert any(name.endswith("/fastnet/py.typed") for name in tarfile.open(sdist).getnames())
