"""Small inputs that cost huge memory or time are refused first, against the memory this process may use.

Model files bound their layers and what loading them needs; datasets bound their samples and what
training makes of them; memory checks see ulimit -v and the cgroup; an unforeseen MemoryError is one line.
"""
import json
import resource
import subprocess
import sys
import tracemalloc

import numpy as np
from safetensors.numpy import save as st_save

import fastnet as fn
from fastnet import _memory, checkpoint, cli
from hostile import idx_bomb, refused_peak
from test_args import memory  # noqa: F401 - the fixture: pretend this process may use memory.available bytes

MiB = 2**20


def peak_of(call):
    """What ``call()`` returns or raises, and the peak bytes of Python and NumPy allocations meanwhile."""
    tracemalloc.start()
    try:
        try:
            result = call()
        except Exception as e:  # noqa: BLE001 - the test looks at it
            result = e
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ---- item 6: model files ---------------------------------------------------------------------------

def deep_model_file(path, n_layers):
    """A tiny model file declaring ``n_layers`` Dense layers: 784 -> 1 -> 1 ... -> 10."""
    good = fn.Sequential(fn.Dense(784, 2), fn.Dense(2, 10), loss=fn.SoftmaxCrossEntropy(), backend="numpy", seed=0)
    meta, _ = checkpoint.describe(good)
    widths = [784] + [1] * (n_layers - 1) + [10]
    meta["layers"], tensors = [], {}
    for i in range(n_layers):
        meta["layers"].append({"kind": "Dense", "config": {**good.layers[0].config(), "n_in": widths[i],
                                                           "n_out": widths[i + 1]}})
        tensors[f"layers.{i}.weight"] = np.zeros((widths[i + 1], widths[i]), np.float32)
        tensors[f"layers.{i}.bias"] = np.zeros(widths[i + 1], np.float32)
    path.write_bytes(st_save(tensors, metadata={"fastnet": json.dumps(meta)}))
    return path


def test_a_model_file_declaring_thousands_of_layers_is_refused_before_any_is_built(tmp_path):
    path = deep_model_file(tmp_path / "deep.safetensors", 5_000)  # 1.4 MB; main built all 5,000 layers
    error, peak = peak_of(lambda: fn.load(path))
    assert isinstance(error, fn.CheckpointError), error
    assert str(path) in str(error) and "5,000 layers" in str(error) and "at most 256" in str(error)
    assert peak < 8 * path.stat().st_size + 2 * MiB  # parsing its JSON header, no more


def test_a_model_file_that_does_not_fit_in_memory_is_refused_before_its_tensors_are_read(tmp_path, memory):
    model = fn.Sequential(fn.Dense(784, 300), fn.ReLU(), fn.Dense(300, 10), loss=fn.SoftmaxCrossEntropy(),
                          backend="numpy", seed=0)
    model.optimizer = fn.Adam()
    model.optimizer.bind(model.params.size, model.dtype, owner=model)
    path = tmp_path / "m.safetensors"
    model.save(path)  # 2.9 MB of weights and Adam state; loading needs about 7 MB
    memory.available = 4 * MiB
    error, peak = peak_of(lambda: fn.load(path))
    assert isinstance(error, fn.CheckpointError), error
    assert str(path) in str(error) and "memory" in str(error) and "4.0 MiB available" in str(error)
    assert peak < path.stat().st_size // 4, f"{peak:,} bytes read to refuse it"  # main read the whole file first
    memory.available = 64 * MiB
    assert np.array_equal(fn.load(path).params, model.params)


# ---- item 7: datasets ------------------------------------------------------------------------------

def idx_set(folder, n, rows=1, cols=1):
    """The four .gz IDX files of a set whose headers honestly claim ``n`` images of rows x cols, all zeros."""
    folder.mkdir()
    for stem, ndim, dims in (("train-images-idx3-ubyte", 3, (n, rows, cols)), ("train-labels-idx1-ubyte", 1, (n,)),
                             ("t10k-images-idx3-ubyte", 3, (n, rows, cols)), ("t10k-labels-idx1-ubyte", 1, (n,))):
        (folder / f"{stem}.gz").write_bytes(idx_bomb(ndim, *dims, level=9))
    return folder


def test_67_million_images_in_260_kb_of_gzip_are_refused_from_their_headers(tmp_path):
    folder = idx_set(tmp_path / "bomb", 67_108_000)  # the set: 4 x 65 KB; main took 1.1 GB and 78 s an epoch
    assert sum(p.stat().st_size for p in folder.iterdir()) < 300_000
    peak = refused_peak(lambda: fn.datasets.load_idx(folder), "67,108,000 images, more than the 10,000,000")
    assert peak < 2 * MiB


def test_a_dataset_that_does_not_fit_in_memory_is_refused_before_it_is_inflated(tmp_path, memory):
    folder = idx_set(tmp_path / "set", 1_000_000)  # 1x1 images: 2 MB of data, about 100 MB for training
    memory.available = 20 * MiB
    peak = refused_peak(lambda: fn.datasets.load_idx(folder), "memory.*20.0 MiB available.*subset")
    assert peak < 2 * MiB


def test_the_command_refuses_the_67_million_image_set_in_one_line(tmp_path, capsys):
    folder = idx_set(tmp_path / "bomb", 67_108_000)
    assert cli.main(["train", "--data", str(folder), "--hidden", "8", "--epochs", "1", "--backend", "numpy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(folder) in err and "10,000,000" in err


# ---- item 8: the process's own limits --------------------------------------------------------------

def test_available_memory_respects_ulimit_v():
    """In a process limited to 2 GiB of address space, fastnet sees less than that, whatever the machine has."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    code = "from fastnet import _memory; print(_memory.available_bytes())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            preexec_fn=limit)
    assert result.returncode == 0, result.stderr
    assert 0 < int(result.stdout) < 2 << 30


def test_available_memory_respects_the_process_s_own_cgroup_v1_and_v2(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemAvailable:    4194304 kB\n")  # 4 GiB free on the machine
    monkeypatch.setattr(_memory, "MEMINFO", str(meminfo))
    monkeypatch.setattr(_memory, "CGROUP", str(tmp_path))
    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    own = tmp_path / "cgroup"
    monkeypatch.setattr(_memory, "PROC_CGROUP", str(own), raising=False)
    own.write_text("4:memory:/jobs/42\n1:cpu:/\n")  # cgroup v1: the memory controller's own folder
    v1 = tmp_path / "memory" / "jobs" / "42"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(f"{300 * MiB}\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{100 * MiB}\n")
    assert _memory.available_bytes() == 200 * MiB
    own.write_text("0::/user.slice/job\n")  # cgroup v2, in a folder of its own below the mount
    v2 = tmp_path / "user.slice" / "job"
    v2.mkdir(parents=True)
    (v2 / "memory.max").write_text(f"{64 * MiB}\n")
    (v2 / "memory.current").write_text(f"{16 * MiB}\n")
    assert _memory.available_bytes() == 48 * MiB


def test_a_model_too_big_for_ulimit_v_is_refused_in_one_line():
    """784-200000-10 needs about 3.8 GB to build: under a 2.5 GiB limit, one line, not a MemoryError."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (5 << 29, 5 << 29))

    result = subprocess.run([sys.executable, "-m", "fastnet", "train", "--hidden", "200000", "--epochs", "1",
                             "--backend", "numpy"], capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "memory" in result.stderr and "ulimit" not in result.stdout


def test_an_unforeseen_memory_error_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    def exhausted(*args, **kwargs):
        raise MemoryError("Unable to allocate 1.00 GiB for an array with shape (268435456,) and data type float32")

    monkeypatch.setattr(fn.datasets, "load", exhausted)
    assert cli.main(["train", "--hidden", "8", "--epochs", "1", "--backend", "numpy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fastnet train: error: out of memory")
    assert "1.00 GiB" in err and "ulimit -v" in err


def test_running_out_of_memory_while_loading_is_not_called_a_damaged_file(tmp_path, monkeypatch, capsys):
    path = tmp_path / "m.safetensors"
    fn.Sequential(fn.Dense(4, 2), loss=fn.SoftmaxCrossEntropy(), backend="numpy", seed=0).save(path)

    def exhausted(*args, **kwargs):
        raise MemoryError("Unable to allocate 3.00 GiB for an array with shape (805306368,) and data type float32")

    monkeypatch.setattr(checkpoint, "rebuild", exhausted)
    assert cli.main(["evaluate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fastnet evaluate: error: out of memory") and "damaged" not in err
