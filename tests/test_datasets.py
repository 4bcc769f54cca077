"""fastnet.datasets: the bundled sample, folder layouts, errors, and downloads from 127.0.0.1."""

import dataclasses
import errno
import gzip
import hashlib
import os
import pathlib
import shutil
import struct
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files

import numpy as np
import pooch
import pytest

import fastnet as fn
from fastnet import datasets, inputs
from fastnet.errors import ConfigError, DataError
from hostile import idx_bomb, refused_peak

# From the README that ships with the sample (fastnet/data/mnist-sample/README.md).
SAMPLE_SHA256 = {
    "train-images-idx3-ubyte.gz": "4a25577e160b34d9acef12fb1fee3e3dc20a1a51a625712d0812807e373bb4e4",
    "train-labels-idx1-ubyte.gz": "861578a25714022dda530c0a9aa5459b8d501fb47ad44038bf1704ec86382bb6",
    "t10k-images-idx3-ubyte.gz": "cef1de9cab7553f7d89413c88a23e8a0d0ac4021f8fe146671eb61f6d137629f",
    "t10k-labels-idx1-ubyte.gz": "471016732c2596aa42c35893544847ada0eeb0fdfe8ddf87e6e1180f200e45cf",
}
SAMPLE_DIR = files("fastnet") / "data" / "mnist-sample"


def copy_sample(directory, gz=True):
    """Put the sample's four files in ``directory``, compressed or raw."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in SAMPLE_SHA256:
        blob = (SAMPLE_DIR / name).read_bytes()
        if gz:
            (directory / name).write_bytes(blob)
        else:
            (directory / name.removesuffix(".gz")).write_bytes(gzip.decompress(blob))
    return directory


@pytest.fixture(scope="module")
def sample():
    return datasets.load()


def test_sample_bytes_match_pinned_sha256():
    for name, digest in SAMPLE_SHA256.items():
        assert hashlib.sha256((SAMPLE_DIR / name).read_bytes()).hexdigest() == digest


def test_sample_loads(sample):
    train, test = sample
    assert (len(train), len(test)) == (8000, 2000)
    assert train.x.shape == (8000, 784) and train.x.dtype == np.float32
    assert test.x.shape == (2000, 784) and test.x.dtype == np.float32
    assert train.y.shape == (8000,) and train.y.dtype == np.uint8  # labels stay uint8
    for split in sample:
        assert sorted(set(split.y.tolist())) == list(range(10))
        assert split.classes == [str(i) for i in range(10)]
        assert split.name == "mnist-sample"
    assert (train.split, test.split) == ("train", "test")
    assert 0 < train.x.mean() < 1


def test_dataset_is_frozen(sample):
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample[0].x = None


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_load_idx(tmp_path, sample, gz):
    train, test = datasets.load_idx(copy_sample(tmp_path / "digits", gz=gz))
    np.testing.assert_array_equal(train.x, sample[0].x)
    np.testing.assert_array_equal(test.y, sample[1].y)
    assert train.name == "digits"


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_layout(tmp_path, sample, name, folder):
    copy_sample(tmp_path / folder / "raw")
    train, test = datasets.load(name, root=tmp_path)
    np.testing.assert_array_equal(train.x, sample[0].x)
    assert train.name == name
    assert len(test) == 2000
    if name == "fashion-mnist":
        assert train.classes[:2] == ["T-shirt/top", "Trouser"] and len(train.classes) == 10


def test_files_directly_in_root(tmp_path, sample):
    train, _ = datasets.load("mnist", root=copy_sample(tmp_path, gz=False))
    np.testing.assert_array_equal(train.y, sample[0].y)


def test_fastnet_data_env_var_is_the_default_root(tmp_path, monkeypatch):
    copy_sample(tmp_path / "MNIST" / "raw")
    monkeypatch.setenv("FASTNET_DATA", str(tmp_path))
    assert datasets.default_root() == tmp_path
    assert len(datasets.load("mnist")[0]) == 8000
    monkeypatch.delenv("FASTNET_DATA")
    assert datasets.default_root() == pooch.os_cache("fastnet")


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="mnist-sample, mnist, fashion-mnist"):
        datasets.load("cifar10")


def test_missing_files_say_where_and_what_to_do(tmp_path):
    with pytest.raises(DataError) as info:
        datasets.load("fashion-mnist", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    assert "download=True" in message and "--data DIR" in message


def test_load_idx_names_missing_file(tmp_path):
    (copy_sample(tmp_path) / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        datasets.load_idx(tmp_path)


def test_image_and_label_counts_must_agree(tmp_path):
    copy_sample(tmp_path)
    shutil.copy(tmp_path / "t10k-labels-idx1-ubyte.gz", tmp_path / "train-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match="8000 images but .*train-labels-idx1-ubyte.gz holds 2000"):
        datasets.load_idx(tmp_path)


def test_train_and_test_image_sizes_must_agree(tmp_path):
    copy_sample(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">HBB3I", 0, 8, 3, 1, 2, 2) + bytes(4))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">HBBI", 0, 8, 1, 1) + bytes(1))
    with pytest.raises(DataError, match="train images are 28x28 .* test images are 2x2"):
        datasets.load_idx(tmp_path)


# Hostile files: refused from their headers, before anything is inflated.

BOMBS = {
    # file replaced: (its bomb, what the refusal says); each inflates to 30-63 MB, under the 64 MB
    # any gzip file may hold, so only the comparison with the other headers can refuse it unread
    "train-labels-idx1-ubyte.gz": (lambda: idx_bomb(1, 30_000_000), "8000 images but .* holds 30000000 labels"),
    "train-images-idx3-ubyte.gz": (lambda: idx_bomb(3, 80_000, 28, 28), "80000 images but .* holds 8000 labels"),
    "t10k-images-idx3-ubyte.gz": (lambda: idx_bomb(3, 2000, 170, 170), "train images are 28x28 .* test images are 170x170"),
}


@pytest.mark.parametrize("name", BOMBS)
def test_a_bomb_among_the_files_is_refused_before_anything_is_inflated(tmp_path, name):
    make, message = BOMBS[name]
    copy_sample(tmp_path)
    (tmp_path / name).write_bytes(make())
    assert refused_peak(lambda: datasets.load_idx(tmp_path), message) < 1 << 20


def test_a_pair_of_bombs_that_agree_is_refused_unread(tmp_path):
    copy_sample(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(idx_bomb(3, 100_000, 28, 28))  # 78 MB in 350 kB
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(idx_bomb(1, 100_000))
    assert refused_peak(lambda: datasets.load_idx(tmp_path), "train-images.*likely gzip bomb") < 1 << 20


def test_labels_stay_uint8_from_the_file_to_the_batch(sample):
    train, _ = sample
    assert train.y.dtype == np.uint8
    model = fn.Sequential(fn.Dense(784, 10), loss=fn.SoftmaxCrossEntropy(), backend="numpy", seed=0)
    assert np.shares_memory(inputs.check_y(train.y, len(train.y), 10, model.loss, model.dtype), train.y)
    twin = fn.Sequential(fn.Dense(784, 10), loss=fn.SoftmaxCrossEntropy(), backend="numpy", seed=0)
    model.fit(train.x[:300], train.y[:300], batch_size=64, progress=False)
    twin.fit(train.x[:300], train.y[:300].astype(np.int64), batch_size=64, progress=False)
    assert np.array_equal(model.params, twin.params)  # the batch gather widens them exactly


def test_a_folder_that_cannot_be_searched_is_a_data_error(tmp_path, monkeypatch):
    folder = copy_sample(tmp_path / "locked")
    real_stat = pathlib.Path.stat

    def stat(path, *args, **kwargs):  # what chmod 000 on the folder does to anyone but root
        if path.parent == folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "stat", stat)
    with pytest.raises(DataError, match=f"{folder}: cannot look for .*Permission denied"):
        datasets.load_idx(folder)


# Downloads, from a server on 127.0.0.1 only.


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves a folder; under /endless/, a mirror that streams zeros without end (up to ENDLESS)."""

    sent = 0  # bytes streamed under /endless/

    def do_GET(self):
        if not self.path.startswith("/endless/"):
            return super().do_GET()
        self.send_response(200)
        self.end_headers()  # no Content-Length: the body ends when the server closes
        chunk = bytes(1 << 16)
        try:
            while QuietHandler.sent < ENDLESS:
                self.wfile.write(chunk)
                QuietHandler.sent += len(chunk)
        except OSError:  # the client hung up
            pass

    def log_message(self, *args):
        pass


ENDLESS = 256 << 20  # "endless", but finite so that a client that never stops still ends


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serve a copy of the sample's .gz files; point the mnist mirror and checksums at it."""
    served = copy_sample(tmp_path / "served")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setitem(datasets.MIRRORS, "mnist", [url])
    monkeypatch.setitem(datasets.CHECKSUMS, "mnist", {k: f"sha256:{v}" for k, v in SAMPLE_SHA256.items()})
    yield served, url
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_download_then_load_offline(tmp_path, sample, server, monkeypatch):
    _, url = server
    # The first mirror answers 404 for everything; the second one works.
    monkeypatch.setitem(datasets.MIRRORS, "mnist", [url + "nothing/", url])
    root = tmp_path / "cache"
    train, test = datasets.load("mnist", root=root, download=True)
    np.testing.assert_array_equal(train.x, sample[0].x)
    np.testing.assert_array_equal(test.y, sample[1].y)
    raw = root / "MNIST" / "raw"
    assert sorted(os.listdir(raw)) == sorted(SAMPLE_SHA256)

    monkeypatch.setitem(datasets.MIRRORS, "mnist", ["http://127.0.0.1:9/"])  # nothing listens there
    for download in (False, True):
        train, _ = datasets.load("mnist", root=root, download=download)
        np.testing.assert_array_equal(train.y, sample[0].y)


@pytest.mark.parametrize("bad", ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])
def test_corrupt_download_leaves_nothing_behind(tmp_path, server, bad):
    served, _ = server
    blob = bytearray((served / bad).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (served / bad).write_bytes(bytes(blob))
    # A good file already in place, which the server's copy must never replace.
    raw = tmp_path / "cache" / "MNIST" / "raw"
    keep = "train-labels-idx1-ubyte.gz"
    (served / keep).write_bytes(b"the server's copy is wrong")
    copy_sample(raw)
    for name in SAMPLE_SHA256:
        if name != keep:
            (raw / name).unlink()
    before = (raw / keep).stat()

    with pytest.raises(DataError, match=f"(?s){bad}.*nothing was saved.*hash") as info:
        datasets.load("mnist", root=tmp_path / "cache", download=True)
    assert SAMPLE_SHA256[bad] in str(info.value)  # the expected checksum
    assert "\n" not in str(info.value)  # the command prints it as one line

    left = set(os.listdir(raw))
    assert bad not in left
    assert left <= set(SAMPLE_SHA256)  # no temporary or partial files
    for name in left:
        assert hashlib.sha256((raw / name).read_bytes()).hexdigest() == SAMPLE_SHA256[name]
    assert (raw / keep).stat().st_mtime_ns == before.st_mtime_ns


def test_unreachable_mirror_is_a_data_error(tmp_path, server, monkeypatch):
    _, url = server
    monkeypatch.setitem(datasets.MIRRORS, "mnist", [url + "nothing/"])
    with pytest.raises(DataError, match="404") as info:
        datasets.load("mnist", root=tmp_path / "cache", download=True)
    assert url + "nothing/train-images-idx3-ubyte.gz" in str(info.value)
    assert "\n" not in str(info.value)
    assert os.listdir(tmp_path / "cache" / "MNIST" / "raw") == []


def test_a_mirror_that_streams_without_end_is_cut_off_at_the_file_size(tmp_path, server, monkeypatch):
    _, url = server
    monkeypatch.setitem(datasets.MIRRORS, "mnist", [url + "endless/"])
    QuietHandler.sent = 0
    with pytest.raises(DataError, match="more than the 9,912,422 bytes this file has") as info:
        datasets.load("mnist", root=tmp_path / "cache", download=True)
    assert url + "endless/train-images-idx3-ubyte.gz" in str(info.value)
    assert os.listdir(tmp_path / "cache" / "MNIST" / "raw") == []  # the partial download is gone
    assert QuietHandler.sent < ENDLESS
