"""Makers of hostile data files, shared by the tests (and usable to reproduce the issue's measurements)."""
import struct
import tracemalloc
import zlib

import pytest

from fastnet.errors import DataError


def idx_header(ndim, *dims):
    """An IDX header of unsigned bytes: magic 0x08 0x0``ndim``, then big-endian dims."""
    return struct.pack(">HBB", 0, 0x08, ndim) + struct.pack(f">{len(dims)}I", *dims)


def gzip_of_zeros(header, nbytes, level=1):
    """A gzip file of ``header`` and ``nbytes`` zero bytes, compressed a megabyte at a time."""
    zipper = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: the gzip container
    zeros = bytes(1 << 20)
    parts = [zipper.compress(header)]
    parts += [zipper.compress(zeros[: min(len(zeros), nbytes - done)]) for done in range(0, nbytes, len(zeros))]
    return b"".join(parts + [zipper.flush()])


def idx_bomb(ndim, *dims, level=1):
    """A gzip IDX file whose header is honest: ``prod(dims)`` zero bytes follow it."""
    n = 1
    for d in dims:
        n *= d
    return gzip_of_zeros(idx_header(ndim, *dims), n, level)


def refused_peak(call, match):
    """Peak bytes of Python and NumPy allocations while ``call()`` raises a DataError matching ``match``."""
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=match):
            call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
