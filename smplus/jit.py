"""numba's on-disk cache for smplus's kernels (matting, render's hot path, PatchMatch).

The kernels are compiled once per installation into a per-user cache folder
outside the package (`cache_dir`), so uninstalling leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from numba import njit


def cache_dir() -> str:
    """Where numba caches the compiled kernels: NUMBA_CACHE_DIR when set, else the user's cache folder.

    Never the package's own __pycache__ (numba's default): files pip does not know
    outlive `pip uninstall`, and the leftover smplus/ folder (no __init__.py) then
    imports as a namespace package that shadows a later editable install.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "smplus", "numba")


def _usable_cache_dir() -> str:
    """cache_dir(), or a folder in the temp dir if it cannot be created (numba would fall back to the package)."""
    path = cache_dir()
    try:
        os.makedirs(path, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    return os.path.join(tempfile.gettempdir(), f"smplus-numba-{os.getuid() if hasattr(os, 'getuid') else 'user'}")


_CACHE_DIR = _usable_cache_dir()


def _kernel(fn):
    """njit with the on-disk cache in _CACHE_DIR: numba picks a function's cache folder when it is
    decorated, so numba's global setting is changed only for that moment (other numba users keep theirs)."""
    from numba.core import config

    saved = config.CACHE_DIR
    config.CACHE_DIR = _CACHE_DIR
    try:
        return njit(cache=True, nogil=True, error_model="numpy")(fn)
    finally:
        config.CACHE_DIR = saved


@contextlib.contextmanager
def _compile_lock():
    """An exclusive lock across processes of this user (where the platform has one)."""
    try:
        import fcntl
    except ImportError:  # Windows: processes may compile side by side
        yield
        return
    try:
        f = open(os.path.join(tempfile.gettempdir(), f"smplus-numba-{os.getuid()}.lock"), "a")
    except OSError:  # no writable temp dir: compile side by side rather than fail
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
