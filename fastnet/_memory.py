"""Memory: aligned allocation, and a check that an allocation fits before it is made.

Aligned allocation: NumPy aligns to 16 bytes; the GEMM kernels load 64-byte vectors, and
run about 12% faster on the forward shape when rows start on a cache line."""
from __future__ import annotations

import os

try:
    import resource  # POSIX only
except ImportError:  # Windows
    resource = None

import numpy as np

from fastnet.errors import ConfigError

ALIGN = 64
MEMINFO = "/proc/meminfo"
CGROUP = "/sys/fs/cgroup"  # a container's limit, which /proc/meminfo does not show
PROC_CGROUP = "/proc/self/cgroup"  # which cgroup this process is in
PROC_STATM = "/proc/self/statm"  # the process's address space in pages (its first field)
UNLIMITED = 1 << 62  # a cgroup v1 "limit" this large (LONG_MAX rounded to pages) means none


def aligned_zeros(shape, dtype, align: int = ALIGN) -> np.ndarray:
    """A zeroed C-contiguous array whose data starts on an ``align``-byte boundary."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    raw = np.zeros(n * dtype.itemsize + align, np.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + n * dtype.itemsize].view(dtype).reshape(shape)


def available_bytes() -> int | None:
    """Bytes a new allocation can take without swapping or failing, or None where nothing says.

    MemAvailable from /proc/meminfo (Linux), else the free physical pages (os.sysconf
    SC_AVPHYS_PAGES); capped by the room left under the process's own limits: its cgroup's
    (v2 or v1) and its address space's (``ulimit -v``, RLIMIT_AS). None if none of these is known.
    """
    found = _meminfo_available()
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            found = None
    known = [n for n in (found, _cgroup_room(), _address_space_room()) if n is not None]
    return min(known) if known else None


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
    """The room under this process's cgroup memory limit (v2, else v1), or None where there is none."""
    for folder, limit_file, usage_file in _cgroup_files():
        try:
            with open(os.path.join(folder, limit_file)) as f:
                limit = f.read().strip()
            if limit == "max" or int(limit) >= UNLIMITED:
                return None
            with open(os.path.join(folder, usage_file)) as f:
                return max(0, int(limit) - int(f.read()))
        except (OSError, ValueError):
            continue
    return None


def _cgroup_files():
    """(folder, limit file, usage file) to try, this process's own cgroup before the mount's root."""
    own = {"": "/", "memory": "/"}  # v2's path (hierarchy 0, no controllers), v1's memory path
    try:
        with open(PROC_CGROUP) as f:
            for line in f:
                number, controllers, path = line.rstrip("\n").split(":", 2)
                if number == "0" and not controllers:
                    own[""] = path
                elif "memory" in controllers.split(","):
                    own["memory"] = path
    except (OSError, ValueError):
        pass
    v2, v1 = os.path.join(CGROUP, own[""].lstrip("/")), os.path.join(CGROUP, "memory", own["memory"].lstrip("/"))
    return [(v2, "memory.max", "memory.current"), (CGROUP, "memory.max", "memory.current"),
            (v1, "memory.limit_in_bytes", "memory.usage_in_bytes"),
            (os.path.join(CGROUP, "memory"), "memory.limit_in_bytes", "memory.usage_in_bytes")]


def _address_space_room() -> int | None:
    """The room left under RLIMIT_AS (``ulimit -v``): the limit less the address space in use; None if none."""
    if resource is None:
        return None
    try:
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY:
            return None
        with open(PROC_STATM) as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return max(0, limit - used)


def check_fits(needed: int, what: str, fix: str) -> None:
    """Refuse in one line, before allocating, when ``needed`` bytes exceed what this process may use.

    ``what`` says what needs the memory, ``fix`` how to need less.
    """
    available = available_bytes()
    if available is not None and needed > available:
        raise ConfigError(f"{what} needs about {format_bytes(needed)} of memory but this process has "
                          f"{format_bytes(available)} available (free memory, within ulimit -v and cgroup limits); "
                          f"{fix}")


def format_bytes(n: int) -> str:
    """'23.7 GiB', '512.0 MiB', '3.0 KiB' or '12 bytes'."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def out_of_memory(error: MemoryError) -> str:
    """One line for a MemoryError that no check foresaw: what failed, and how to get more room."""
    detail = " ".join(str(error).split())
    return (f"out of memory{f' ({detail})' if detail else ''}; free some memory or raise this process's "
            f"limit (ulimit -v, the container's memory limit), or use a smaller model, batch or dataset")
