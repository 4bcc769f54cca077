"""Read IDX files, the format of MNIST and Fashion-MNIST, raw or gzip-compressed.

Nothing is allocated on the header's word alone. The header is first checked
against how much data the file can hold. Then the data is read in chunks, and
never more than one byte past what the header promises. So a lying header, a
truncated file or a gzip bomb gives a DataError, not a huge allocation or a hang.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from math import prod
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["read_idx", "read_images", "read_labels"]

UBYTE = 0x08  # the type byte for unsigned bytes, the only IDX type MNIST uses
IMAGES_MAGIC = 0x0803  # 2051: unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x0801  # 2049: unsigned bytes, 1 dimension
_CHUNK = 1 << 20
_MAX_GZIP_RATIO = 1032  # deflate never expands data more than this (zlib's FAQ)


def read_idx(path: str | os.PathLike, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes with ``ndim`` dimensions.

    Parameters
    ----------
    path : str or os.PathLike
        The file. A name ending in ``.gz`` is decompressed as it is read.
    ndim : int
        How many dimensions the file must have: 3 for images, 1 for labels.

    Returns
    -------
    numpy.ndarray
        A uint8 array with the shape the header gives.

    Raises
    ------
    DataError
        The file is missing or unreadable, is not IDX, does not hold unsigned
        bytes in ``ndim`` dimensions, or holds more or fewer bytes than its
        header says. The message names the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            size = os.fstat(raw.fileno()).st_size
            if not path.name.endswith(".gz"):
                return _parse(raw, ndim, size, path)
            with gzip.GzipFile(fileobj=raw) as unzipped:
                return _parse(unzipped, ndim, size * _MAX_GZIP_RATIO, path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read it: {error}") from error


def read_images(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX images file (magic 2051) as uint8 of shape (n, rows, cols).

    Raises
    ------
    DataError
        As :func:`read_idx`, or the images have zero rows or columns.
    """
    images = read_idx(path, 3)
    rows, cols = images.shape[1:]
    if rows == 0 or cols == 0:
        raise DataError(f"{path}: the header gives images of {rows}x{cols} pixels")
    return images


def read_labels(path: str | os.PathLike, num_classes: int = 10) -> np.ndarray:
    """Read an IDX labels file (magic 2049) as int64 of shape (n,).

    Raises
    ------
    DataError
        As :func:`read_idx`, or a label is not in ``0 .. num_classes - 1``.
    """
    labels = read_idx(path, 1)
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        i = bad[0]
        raise DataError(
            f"{path}: label {labels[i]} at index {i} is out of range 0..{num_classes - 1}"
            f" ({bad.size} such labels)"
        )
    return labels.astype(np.int64)


def _parse(f, ndim: int, limit: int, path: Path) -> np.ndarray:
    """Check the header of the open IDX file ``f``, then read its data.

    ``limit`` is the most bytes the file can hold once decompressed.
    """
    magic = _read_at_most(f, 4)
    if len(magic) < 4:
        raise DataError(f"{path}: only {len(magic)} bytes, too short for an IDX header")
    zero, dtype, found_ndim = struct.unpack(">HBB", magic)
    expected_magic = (UBYTE << 8) | ndim
    if zero != 0:
        raise DataError(
            f"{path}: not an IDX file: magic number {int.from_bytes(magic, 'big')}, "
            f"expected {expected_magic}"
        )
    if dtype != UBYTE:
        raise DataError(
            f"{path}: IDX data type 0x{dtype:02X} is not supported, only unsigned bytes (0x08)"
        )
    if found_ndim != ndim:
        raise DataError(
            f"{path}: has {found_ndim} dimensions (magic {(UBYTE << 8) | found_ndim}), "
            f"expected {ndim} (magic {expected_magic})"
        )
    dims_bytes = _read_at_most(f, 4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise DataError(f"{path}: the IDX header is cut short")
    shape = struct.unpack(f">{ndim}I", dims_bytes)
    nbytes = prod(shape)
    if 4 + 4 * ndim + nbytes > limit:
        raise DataError(
            f"{path}: the header claims {'x'.join(map(str, shape))} = {nbytes:,} bytes of data, "
            f"but the file can hold at most {limit:,} bytes"
        )
    data = _read_at_most(f, nbytes + 1)
    if len(data) < nbytes:
        raise DataError(
            f"{path}: truncated: the header promises {nbytes:,} bytes of data, "
            f"but only {len(data):,} follow"
        )
    if len(data) > nbytes:
        raise DataError(
            f"{path}: trailing bytes after the {nbytes:,} bytes of data the header promises"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _read_at_most(f, n: int) -> bytearray:
    """Read up to ``n`` bytes from ``f`` in chunks, so memory follows the data actually read."""
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(min(_CHUNK, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf
