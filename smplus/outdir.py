"""The output folder OUT: kept apart from the inputs, one run at a time, and only
smplus's own output is ever replaced.

A run holds OUT/.smplus/lock (an advisory `flock`) from the moment it claims
OUT until it ends. The kernel releases it when the process dies, however it
dies, so a lock file left by a killed run is recognised as stale. (No lock on
systems without `fcntl`, e.g. Windows.)
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from typing import Iterable

from .errors import OutputError, SmplusError, UsageError

STATE_DIR = ".smplus"
OUTPUTS = ("images", "annotations.json", "report.json", STATE_DIR)
LOCK = "lock"
TMP = "tmp"  # OUT/.smplus/tmp: every write into OUT goes through a file here, renamed into place


def tmp_dir(out_dir: str) -> str:
    """Where temporary files of writes into OUT go: no dataset file name can point there."""
    return os.path.join(out_dir, STATE_DIR, TMP)


def remove_partial_writes(out_dir: str) -> None:
    """Temporary files of writes a killed run or worker never renamed into place (only smplus's own)."""
    d = tmp_dir(out_dir)
    if os.path.isdir(d):
        for name in os.listdir(d):
            _remove(os.path.join(d, name))


def check_out_dir(out_dir: str, flag: str = "--out") -> None:
    """An empty OUT is what `--out "$OUT"` gives with OUT unset: never the current folder."""
    if not isinstance(out_dir, (str, os.PathLike)) or not str(out_dir).strip():
        raise UsageError(f"{flag} is empty (an unset variable?); give the output folder, e.g. {flag} out")


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class OutLock:
    """This process's claim on OUT; `release()` (or leaving the `with` block) ends it."""

    def __init__(self, out_dir: str):
        try:
            import fcntl
        except ImportError:  # pragma: no cover (Windows)
            self._fd = None
            return
        path = os.path.join(out_dir, STATE_DIR, LOCK)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 256).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise SmplusError(f"output folder {out_dir} is in use by another smplus run ({holder}); "
                              "wait for it to end, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, "
                     f"since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file ends the flock
            self._fd = None

    def __enter__(self) -> "OutLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def prepare_out(out_dir: str, inputs: Iterable[str], run) -> OutLock:
    """Claim OUT for a run (`run`: RunOptions): refuse what is not ours, clear our own with overwrite.

    Refused: an empty OUT; an OUT that overlaps an input; a non-empty OUT without --overwrite
    or --resume; --overwrite or --resume on a folder smplus did not write (no
    OUT/.smplus); an OUT another run holds. Returns the held lock.
    """
    check_out_dir(out_dir)
    for p in inputs:
        if p and (_inside(p, out_dir) or _inside(out_dir, p) and os.path.isdir(p)):
            raise SmplusError(f"--out {out_dir} overlaps the input {p}; choose an output folder apart from the inputs")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise SmplusError(f"--out {out_dir} exists and is not a folder")
    ours = os.path.isdir(os.path.join(out_dir, STATE_DIR))
    full = os.path.isdir(out_dir) and bool(os.listdir(out_dir))
    lock = None
    try:
        lock = OutLock(out_dir) if ours else None  # first: is another run writing it right now?
        if full and not run.overwrite and not run.resume:
            raise SmplusError(f"output folder {out_dir} is not empty; pass --overwrite to replace it "
                              "or --resume to continue an interrupted run")
        if full and not ours:
            flag = "--resume" if run.resume else "--overwrite"
            raise SmplusError(f"{flag}: {out_dir} holds files smplus did not write (no {STATE_DIR} folder); "
                              "smplus only replaces or resumes its own output: choose a new or empty --out")
        lock = lock or OutLock(out_dir)
        if full and run.overwrite:
            _clear(out_dir)
    except BaseException as e:
        if lock is not None:
            lock.release()
        if isinstance(e, OSError):
            raise OutputError(f"cannot prepare the output folder {out_dir}: {e.strerror} ({e.filename}); "
                              "choose a writable --out") from None
        raise
    return lock


def _clear(out_dir: str) -> None:
    """Remove an earlier run's output (what smplus writes, nothing else); the lock stays."""
    for name in OUTPUTS:
        p = os.path.join(out_dir, name)
        if name == STATE_DIR:
            for entry in os.listdir(p):
                if entry != LOCK:
                    _remove(os.path.join(p, entry))
        elif os.path.lexists(p):
            _remove(p)


def _remove(p: str) -> None:
    if os.path.isdir(p) and not os.path.islink(p):
        shutil.rmtree(p)
    else:
        os.unlink(p)
