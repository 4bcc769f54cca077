"""What ``import fastnet`` does when its libraries cannot be loaded, as under a tight ``ulimit -v``.

numba and llvmlite map large libraries when they are imported: under a small address-space limit
that fails with a MemoryError, or an OSError or ImportError naming a library. The ``fastnet``
command (``python -m fastnet`` imports the package first) then prints one line and exits 2;
Python code that imports fastnet gets an ImportError with a one-line message.
"""
from __future__ import annotations

import os
import sys

EXIT_USAGE = 2
# numba, llvmlite and the BLAS libraries numpy and scipy bring map about this much address space. Below it,
# scipy's OpenBLAS (which numba loads at the first kernel) can retry and then abort the process in C, where
# no Python handler runs: so a smaller ulimit -v is refused before anything is loaded.
MIN_ADDRESS_SPACE = 512 << 20


def check_address_space() -> None:
    """Refuse, before loading any library, an address-space limit (ulimit -v) too small for fastnet."""
    limit = _address_space_limit()
    if limit is not None and limit < MIN_ADDRESS_SPACE:
        _report(f"fastnet needs at least {MIN_ADDRESS_SPACE >> 20:,} MiB of address space to load its libraries, "
                f"but this process may use only {limit >> 20:,} MiB (ulimit -v); raise that limit")


def cannot_start(error: BaseException):
    """Report ``error``, raised while importing fastnet's libraries: exit 2 for the command, else ImportError.

    An OSError or ImportError with no address-space limit set is not about memory: it is raised as it is.
    """
    if not isinstance(error, MemoryError) and _address_space_limit() is None:
        raise error
    _report(startup_message(error))


def _report(message: str):
    """Exit 2 with ``message`` in one line for the command; else raise ImportError(message)."""
    if _is_command():
        command = " ".join(["fastnet"] + [arg for arg in sys.argv[1:2] if arg.isalpha()])  # as cli._error names it
        print(f"{command}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    raise ImportError(message) from None


def startup_message(error: BaseException) -> str:
    """One line: what failed, and the address-space limit to raise (or memory to free)."""
    detail = " ".join(str(error).split())
    detail = type(error).__name__ + (f": {detail[:100]}{'...' * (len(detail) > 100)}" if detail else "")
    limit = _address_space_limit()
    fix = (f"this process may use only {limit >> 20:,} MiB of address space (ulimit -v); raise that limit"
           if limit is not None else "free some memory")
    return f"cannot load fastnet's libraries ({detail}); {fix}"


def _address_space_limit() -> int | None:
    try:
        import resource
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError):
        return None
    return None if limit == resource.RLIM_INFINITY else limit


def _is_command() -> bool:
    """Whether this process is the fastnet command: ``python -m fastnet`` (argv[0] is "-m" while the
    package is imported) or the ``fastnet`` script."""
    first = sys.argv[0] if sys.argv else ""
    return first == "-m" or os.path.basename(first) in ("fastnet", "fastnet.exe")
