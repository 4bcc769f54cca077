"""Read IDX files, the format of MNIST and Fashion-MNIST, raw or gzip-compressed.

Nothing is allocated on the header's word alone. Opening a file reads and checks
its header only: the size it declares must fit what the file can plausibly hold,
so callers can compare the headers of a set of files before inflating any of
them. Reading then streams the data into one array of exactly the declared size
and stops one byte past it. So a lying header, a truncated file or a gzip bomb
gives a DataError, not a huge allocation or a hang.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from contextlib import contextmanager
from math import prod
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["IdxFile", "open_images", "read_idx", "read_images", "read_labels", "check_labels"]

UBYTE = 0x08  # the type byte for unsigned bytes, the only IDX type MNIST uses
IMAGES_MAGIC = 0x0803  # 2051: unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x0801  # 2049: unsigned bytes, 1 dimension
_CHUNK = 1 << 20
_MAX_GZIP_RATIO = 1032  # deflate never expands data more than this (zlib's FAQ)
# Real data compresses far less (MNIST images 4.9:1, Fashion-MNIST 1.8:1), so beyond
# _SMALL bytes a gzip file may not claim more than _PLAUSIBLE_RATIO times its size:
# a bomb then costs at most that, and a genuine oddity can still be read gunzipped.
_PLAUSIBLE_RATIO = 64
_SMALL = 64 << 20  # below this any ratio deflate allows: sorted labels compress ~500:1


class IdxFile:
    """An open IDX file of unsigned bytes in ``ndim`` dimensions, its header read and checked.

    ``shape`` is the shape the header declares; nothing of the data has been read
    or allocated yet: :meth:`read` does that. Use as a context manager, or call
    :meth:`close`. Raises DataError as :func:`read_idx`, for what the header shows.
    """

    def __init__(self, path: str | os.PathLike, ndim: int):
        self.path = Path(path)
        self._files = []
        try:
            with _as_data_error(self.path):
                raw = open(self.path, "rb")
                self._files.append(raw)
                size = os.fstat(raw.fileno()).st_size
                self._stream, capacity, plausible = raw, size, size
                if self.path.name.endswith(".gz"):
                    self._stream = gzip.GzipFile(fileobj=raw)
                    self._files.append(self._stream)
                    capacity, plausible = size * _MAX_GZIP_RATIO, max(size * _PLAUSIBLE_RATIO, _SMALL)
                self.shape = self._read_header(ndim, size, capacity, plausible)
        except BaseException:
            self.close()
            raise

    def read(self) -> np.ndarray:
        """The data as uint8 of shape ``shape``, read in chunks straight into its final array.

        Raises DataError if the file holds fewer or more bytes than its header declares.
        """
        nbytes = prod(self.shape)
        data = np.empty(nbytes, np.uint8)  # pages are only touched as the data arrives
        view, done = memoryview(data), 0
        with _as_data_error(self.path):
            while done < nbytes:
                got = self._stream.readinto(view[done:done + _CHUNK])
                if not got:
                    raise DataError(f"{self.path}: truncated: the header promises {nbytes:,} bytes of data, "
                                    f"but only {done:,} follow")
                done += got
            if self._stream.read(1):  # also makes gzip check its CRC and length
                raise DataError(f"{self.path}: trailing bytes after the {nbytes:,} bytes of data the header promises")
        return data.reshape(self.shape)

    def close(self) -> None:
        for f in reversed(self._files):
            f.close()
        self._files = []

    def __enter__(self) -> IdxFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read_header(self, ndim: int, size: int, capacity: int, plausible: int) -> tuple[int, ...]:
        """The shape the header declares, once checked against the file's ``capacity`` in bytes
        and the ``plausible`` most it holds (the same for a raw file)."""
        path = self.path
        magic = self._stream.read(4)
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
        dims_bytes = self._stream.read(4 * ndim)
        if len(dims_bytes) < 4 * ndim:
            raise DataError(f"{path}: the IDX header is cut short")
        shape = struct.unpack(f">{ndim}I", dims_bytes)
        nbytes = prod(shape)
        claim = f"{path}: the header claims {'x'.join(map(str, shape))} = {nbytes:,} bytes of data"
        total = 4 + 4 * ndim + nbytes
        if total > capacity:
            raise DataError(f"{claim}, but the file can hold at most {capacity:,} bytes")
        if total > plausible:
            raise DataError(f"{claim}, {total / size:.0f} times the size of this {size:,}-byte gzip file; real "
                            f"data never compresses so well, so it is refused as a likely gzip bomb (if it is "
                            f"genuine, decompress it with gunzip and use the raw file)")
        return shape


def open_images(path: str | os.PathLike) -> IdxFile:
    """Open an IDX images file (magic 2051) and check its header, including nonzero rows and columns."""
    f = IdxFile(path, 3)
    rows, cols = f.shape[1:]
    if rows == 0 or cols == 0:
        f.close()
        raise DataError(f"{path}: the header gives images of {rows}x{cols} pixels")
    return f


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
        bytes in ``ndim`` dimensions, holds more or fewer bytes than its header
        says, or is a gzip file whose header claims far more data than it can
        plausibly hold. The message names the file.
    """
    with IdxFile(path, ndim) as f:
        return f.read()


def read_images(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX images file (magic 2051) as uint8 of shape (n, rows, cols).

    Raises
    ------
    DataError
        As :func:`read_idx`, or the images have zero rows or columns.
    """
    with open_images(path) as f:
        return f.read()


def read_labels(path: str | os.PathLike, num_classes: int = 10) -> np.ndarray:
    """Read an IDX labels file (magic 2049) as uint8 of shape (n,).

    Raises
    ------
    DataError
        As :func:`read_idx`, or a label is not in ``0 .. num_classes - 1``.
    """
    return check_labels(read_idx(path, 1), num_classes, path)


def check_labels(labels: np.ndarray, num_classes: int, path) -> np.ndarray:
    """Return ``labels`` if all lie in ``0 .. num_classes - 1``, else raise DataError naming ``path``."""
    if labels.size and labels.max() >= num_classes:  # max() makes no temporary array
        bad = np.flatnonzero(labels >= num_classes)
        i = bad[0]
        raise DataError(
            f"{path}: label {labels[i]} at index {i} is out of range 0..{num_classes - 1}"
            f" ({bad.size} such labels)"
        )
    return labels


@contextmanager
def _as_data_error(path: Path):
    """Turn the ways reading a file can fail into a DataError naming it."""
    try:
        yield
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read it: {error}") from error
