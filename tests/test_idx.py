"""The IDX reader: round trips, every kind of corruption, and a fuzzer."""

import gzip
import io
import struct
import time
from math import prod

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fastnet.errors import DataError
from fastnet.idx import read_images, read_idx, read_labels
from hostile import idx_bomb, refused_peak


def idx_bytes(array, type_byte=0x08, ndim=None):
    """An IDX file's bytes, written here independently of the reader."""
    array = np.asarray(array, dtype=np.uint8)
    ndim = array.ndim if ndim is None else ndim
    header = struct.pack(">HBB", 0, type_byte, ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write(path, blob):
    """Write ``blob`` to ``path``, gzip-compressed when the name ends in .gz."""
    path.write_bytes(gzip.compress(blob, mtime=0) if path.name.endswith(".gz") else blob)
    return path


rng = np.random.default_rng(0)
IMAGES = rng.integers(0, 256, size=(5, 3, 4), dtype=np.uint8)
LABELS = np.array([0, 9, 3, 3, 7], dtype=np.uint8)


@pytest.fixture(params=["", ".gz"], ids=["raw", "gz"])
def suffix(request):
    return request.param


def test_round_trip(tmp_path, suffix):
    images = read_images(write(tmp_path / f"images{suffix}", idx_bytes(IMAGES)))
    labels = read_labels(write(tmp_path / f"labels{suffix}", idx_bytes(LABELS)))
    assert images.dtype == np.uint8 and images.shape == (5, 3, 4)
    np.testing.assert_array_equal(images, IMAGES)
    assert labels.dtype == np.uint8  # widened to int64 one batch at a time, by the model
    np.testing.assert_array_equal(labels, LABELS)


def test_empty_file_of_images_reads(tmp_path, suffix):
    path = write(tmp_path / f"images{suffix}", idx_bytes(np.zeros((0, 28, 28))))
    assert read_images(path).shape == (0, 28, 28)


def _header(magic_bytes, *dims):
    return bytes(magic_bytes) + struct.pack(f">{len(dims)}I", *dims)


CORRUPTIONS = {
    # name: (reader, file bytes, what the message must say)
    "empty": (read_images, b"", "too short"),
    "not idx": (read_images, b"\x1f\x8b" + idx_bytes(IMAGES)[2:], "not an IDX file"),
    "int32 type": (read_images, idx_bytes(IMAGES, type_byte=0x0C), "0x0C is not supported"),
    "labels as images": (read_images, idx_bytes(LABELS), "has 1 dimensions"),
    "images as labels": (read_labels, idx_bytes(IMAGES), "has 3 dimensions"),
    "cut in header": (read_images, idx_bytes(IMAGES)[:10], "header is cut short"),
    "truncated data": (read_images, idx_bytes(IMAGES)[:-1], "header"),
    "one image more": (read_images, _header(b"\0\0\x08\x03", 6, 3, 4) + IMAGES.tobytes(), "header"),
    "trailing junk": (read_images, idx_bytes(IMAGES) + b"\0", "trailing bytes"),
    "huge header": (read_images, _header(b"\0\0\x08\x03", 2**32 - 1, 2**32 - 1, 2**32 - 1), "header claims"),
    "zero columns": (read_images, idx_bytes(np.zeros((2, 3, 0))), "3x0 pixels"),
    "label 10": (read_labels, idx_bytes([1, 2, 10]), "label 10 at index 2 is out of range 0..9"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_corruption_raises_data_error_naming_the_file(tmp_path, suffix, case):
    reader, blob, message = CORRUPTIONS[case]
    path = write(tmp_path / f"broken-file{suffix}", blob)
    with pytest.raises(DataError, match=message) as info:
        reader(path)
    assert str(path) in str(info.value)


GZ = gzip.compress(idx_bytes(IMAGES), mtime=0)
BAD_GZ = {
    "not gzip": b"this is not gzip at all",
    "cut in half": GZ[: len(GZ) // 2],
    "crc flipped": GZ[:-8] + bytes([GZ[-8] ^ 0xFF]) + GZ[-7:],
    "deflate flipped": GZ[:20] + bytes([GZ[20] ^ 0x55]) + GZ[21:],
    "junk after member": GZ + b"junk",
}


@pytest.mark.parametrize("case", BAD_GZ)
def test_garbage_gzip_raises_data_error(tmp_path, case):
    path = tmp_path / "images.gz"
    path.write_bytes(BAD_GZ[case])
    with pytest.raises(DataError) as info:
        read_images(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_labels(tmp_path / "nothing.gz")


def test_gzip_bomb_is_refused_without_reading_it(tmp_path):
    # 64 MB of zeros in about 64 kB, behind a header that claims 2**31 images:
    # more than a gzip file this size can hold, so nothing is decompressed.
    zeros = bytes(64 << 20)
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(_header(b"\0\0\x08\x03", 2**31, 1, 1) + zeros, compresslevel=1))
    start = time.perf_counter()
    with pytest.raises(DataError, match="can hold at most"):
        read_images(path)
    assert time.perf_counter() - start < 1


def test_gzip_bomb_with_small_header_stops_after_one_extra_byte(tmp_path):
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(idx_bytes(LABELS) + bytes(64 << 20), compresslevel=1))
    start = time.perf_counter()
    with pytest.raises(DataError, match="trailing bytes"):
        read_labels(path)
    assert time.perf_counter() - start < 1


# Fuzzing: whatever the damage, the reader either raises DataError or returns
# exactly what a straightforward, uncapped parse of the same bytes gives.


def reference(blob, ndim, num_classes=10):
    """Parse IDX bytes the obvious way; None where the reader must refuse them."""
    header = 4 + 4 * ndim
    if len(blob) < header or blob[:4] != bytes([0, 0, 8, ndim]):
        return None
    shape = struct.unpack(f">{ndim}I", blob[4:header])
    if len(blob) != header + prod(shape) or (ndim == 3 and 0 in shape[1:]):
        return None
    array = np.frombuffer(blob[header:], np.uint8).reshape(shape)
    if ndim == 1 and array.size and array.max() >= num_classes:
        return None
    return array


def gunzip(blob):
    try:
        return gzip.GzipFile(fileobj=io.BytesIO(blob)).read()
    except Exception:  # anything at all: the reader must then raise DataError
        return None


def mutate(data, blob):
    """One random truncation, bit flip, header edit or append."""
    kind = data.draw(st.sampled_from(["truncate", "flip", "header", "append", "none"]))
    if kind == "truncate":
        return blob[: data.draw(st.integers(0, len(blob)))]
    if kind == "flip":
        i = data.draw(st.integers(0, len(blob) - 1))
        return blob[:i] + bytes([blob[i] ^ (1 << data.draw(st.integers(0, 7)))]) + blob[i + 1 :]
    if kind == "header":
        i = data.draw(st.integers(0, min(len(blob), 16) - 1))
        return blob[:i] + bytes([data.draw(st.integers(0, 255))]) + blob[i + 1 :]
    if kind == "append":
        return blob + data.draw(st.binary(min_size=1, max_size=8))
    return blob


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), kind=st.sampled_from(["images", "labels"]), where=st.sampled_from(["raw", "gz", "in gz"]))
def test_fuzz(fuzz_dir, data, kind, where):
    n = data.draw(st.integers(0, 4))
    if kind == "images":
        shape, ndim, reader = (n, data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))), 3, read_images
        original = np.frombuffer(data.draw(st.binary(min_size=prod(shape), max_size=prod(shape))), np.uint8)
    else:
        shape, ndim, reader = (n,), 1, read_labels
        original = np.array(data.draw(st.lists(st.integers(0, 9), min_size=n, max_size=n)), np.uint8)
    original = original.reshape(shape)
    blob = idx_bytes(original)
    if where == "raw":
        path, stored = fuzz_dir / "file", mutate(data, blob)
        expected = reference(stored, ndim)
    elif where == "gz":  # damage to the compressed bytes
        path, stored = fuzz_dir / "file.gz", mutate(data, gzip.compress(blob, mtime=0))
        inner = gunzip(stored)
        expected = None if inner is None else reference(inner, ndim)
    else:  # damage to the IDX bytes, then compressed
        inner = mutate(data, blob)
        path, stored = fuzz_dir / "file.gz", gzip.compress(inner, mtime=0)
        expected = reference(inner, ndim)
    path.write_bytes(stored)
    event(f"{where}: {'refused' if expected is None else 'read'}")

    if expected is None:
        with pytest.raises(DataError):
            reader(path)
    else:
        result = reader(path)
        np.testing.assert_array_equal(result, expected)
        assert result.shape == expected.shape
        if stored in (blob, gzip.compress(blob, mtime=0)):
            np.testing.assert_array_equal(result, original)


def test_read_idx_any_ndim(tmp_path):
    cube = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "cube", idx_bytes(cube)), 3), cube)


# Gzip bombs: memory follows what a file can plausibly be worth, never its header's claim.


def test_gzip_file_claiming_more_than_real_data_compresses_to_is_refused_unread(tmp_path):
    # 100 MB of zeros in ~460 kB: deflate allows it (1032:1), real images never compress 218:1.
    path = tmp_path / "bomb.gz"
    path.write_bytes(idx_bomb(3, 100 << 20, 1, 1))
    assert refused_peak(lambda: read_images(path), f"(?s){path}.*likely gzip bomb.*gunzip") < 1 << 20


def test_small_files_may_compress_as_well_as_deflate_allows(tmp_path):
    labels = np.repeat(np.arange(10, dtype=np.uint8), 100_000)  # sorted: about 500:1
    path = write(tmp_path / "labels.gz", idx_bytes(labels))
    assert len(labels) / path.stat().st_size > 64
    np.testing.assert_array_equal(read_labels(path), labels)
