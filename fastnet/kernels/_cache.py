"""Where compiled kernels are cached: a per-user cache directory, never inside the package.

numba's own ``cache=True`` writes beside the source, into ``fastnet/kernels/__pycache__``
of an installed package; pip leaves those files behind on uninstall, and the orphan
folder then shadows a later install. So every kernel gets a numba cache whose files go to

    $NUMBA_CACHE_DIR, when the user sets it (numba's own override), or else
    the user cache directory: $XDG_CACHE_HOME/fastnet/numba (~/.cache/fastnet/numba) on
    Linux, ~/Library/Caches/fastnet/numba on macOS, %LOCALAPPDATA%\\fastnet\\fastnet\\Cache\\numba on Windows,

in a subfolder per source folder, named as numba names it. Only fastnet's kernels are
affected: other numba functions in the process cache wherever numba puts them.

numba has no public API for a per-function cache location (github.com/numba/numba/issues/9350), so this
subclasses the cache classes of numba.core.caching. If they ever change, or no directory
is writable, the kernels compile without a cache on every run, and one line on stderr
says so.
"""
from __future__ import annotations

import functools
import logging
import os
import tempfile

import numba
import platformdirs
from numba.core import config

_log = logging.getLogger(__name__)  # unconfigured, logging prints a warning as one bare line on stderr
_told = False  # the no-cache notice is said once per process, not once per kernel


def cache_dir() -> str:
    """The folder fastnet's compiled kernels are cached in (it may not exist yet)."""
    return config.CACHE_DIR or os.path.join(platformdirs.user_cache_dir("fastnet"), "numba")


def caching() -> bool:
    """Whether compiled kernels are kept between runs (False: no writable cache folder)."""
    return _cache_class() is not None


def cache_kernel(dispatcher):
    """Give a numba dispatcher fastnet's kernel cache; without a usable one it just compiles."""
    if config.DISABLE_JIT:  # numba returned the plain Python function: nothing is compiled, nothing to cache
        return dispatcher
    cache_class = _cache_class()
    if cache_class is not None:
        try:
            dispatcher._cache = cache_class(dispatcher.py_func)
        except Exception as error:  # numba's private API changed under us: compiling is still right
            _without_cache(f"numba {numba.__version__} rejected fastnet's kernel cache ({error})")
    return dispatcher


@functools.cache
def _cache_class():
    """numba's FunctionCache, pointed at ``cache_dir()``; None if that is not writable or numba changed."""
    root = cache_dir()
    try:
        os.makedirs(root, exist_ok=True)
        tempfile.TemporaryFile(dir=root).close()  # as numba checks: a folder can exist yet refuse files
    except OSError as error:
        _without_cache(f"cannot write to {root} ({error.strerror or error}); "
                       "set NUMBA_CACHE_DIR to a writable folder to cache them")
        return None
    try:
        from numba.core.caching import (CompileResultCacheImpl, FunctionCache, _CacheLocator,
                                        _SourceFileBackedLocatorMixin)

        class KernelLocator(_SourceFileBackedLocatorMixin, _CacheLocator):
            def __init__(self, py_func, py_file):
                self._py_file = py_file
                self._lineno = py_func.__code__.co_firstlineno
                self._cache_path = os.path.join(root, self.get_suitable_cache_subpath(py_file))

            def get_cache_path(self):
                return self._cache_path

        class KernelCacheImpl(CompileResultCacheImpl):
            _locator_classes = [KernelLocator]

        class KernelCache(FunctionCache):
            _impl_class = KernelCacheImpl
    except Exception as error:  # e.g. ImportError: numba reorganised its private caching module
        _without_cache(f"numba {numba.__version__} has no cache classes fastnet can use ({error})")
        return None
    return KernelCache


def _without_cache(reason: str) -> None:
    global _told
    if not _told:
        _told = True
        _log.warning("fastnet: compiling kernels without a cache, so on every run: %s", reason)
