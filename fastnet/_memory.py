"""Memory: aligned allocation, and a check that an allocation fits before it is made.

Aligned allocation: NumPy aligns to 16 bytes; the GEMM kernels load 64-byte vectors, and
run about 12% faster on the forward shape when rows start on a cache line."""
from __future__ import annotations

import os

import numpy as np

from fastnet.errors import ConfigError

ALIGN = 64
MEMINFO = "/proc/meminfo"
CGROUP = "/sys/fs/cgroup"  # cgroup v2: a container's limit, which /proc/meminfo does not show


def aligned_zeros(shape, dtype, align: int = ALIGN) -> np.ndarray:
    """A zeroed C-contiguous array whose data starts on an ``align``-byte boundary."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    raw = np.zeros(n * dtype.itemsize + align, np.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + n * dtype.itemsize].view(dtype).reshape(shape)


def available_bytes() -> int | None:
    """Bytes a new allocation can take without swapping, or None where the system does not say.

    MemAvailable from /proc/meminfo (Linux), capped by the cgroup's limit; else the free
    physical pages (os.sysconf SC_AVPHYS_PAGES); else None.
    """
    found = _meminfo_available()
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    limit = _cgroup_room()
    return found if limit is None else min(found, limit)


def _meminfo_available() -> int | None:
    try:
        with open(MEMINFO) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    try:
        with open(os.path.join(CGROUP, "memory.max")) as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open(os.path.join(CGROUP, "memory.current")) as f:
            return max(0, int(limit) - int(f.read()))
    except (OSError, ValueError):
        return None


def check_fits(needed: int, what: str, fix: str) -> None:
    """Refuse in one line, before allocating, when ``needed`` bytes exceed what the machine has.

    ``what`` says what needs the memory, ``fix`` how to need less.
    """
    available = available_bytes()
    if available is not None and needed > available:
        raise ConfigError(f"{what} needs about {format_bytes(needed)} of memory but this machine has "
                          f"{format_bytes(available)} available; {fix}")


def format_bytes(n: int) -> str:
    """'23.7 GiB', '512.0 MiB', '3.0 KiB' or '12 bytes'."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"
