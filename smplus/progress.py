"""Progress of a run: a bar on a terminal, log lines in a batch job's log.

tqdm draws nothing useful when stderr is a file (a SLURM job's log), so there
`log` mode writes one plain line every `interval` seconds: done/total, images
per second and the time left.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO, Union

PROGRESS_MODES = ("auto", "bar", "log", "none")
DEFAULT_INTERVAL = 30.0


def progress_mode(progress: Union[None, bool, str], stream: TextIO) -> str:
    """auto (or None) -> bar on a terminal, log otherwise; True -> bar; False -> none."""
    if progress is None or progress == "auto":
        return "bar" if _isatty(stream) else "log"
    if progress is True:
        return "bar"
    if progress is False:
        return "none"
    return progress


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class LogProgress:
    """One line every `interval` seconds (0: every image), and a last one at the end if any was written."""

    def __init__(self, total: int, initial: int = 0, interval: float = DEFAULT_INTERVAL, desc: str = "SM+",
                 stream: Optional[TextIO] = None, clock=time.monotonic):
        self.total, self.done, self.interval, self.desc = total, initial, interval, desc
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.start = self.last = clock()
        self.initial, self.written = initial, 0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._line(now)

    def _line(self, now: float, final: bool = False) -> None:
        elapsed = now - self.start
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        if final:
            tail = f"done in {_duration(elapsed)}"
        else:
            tail = f"ETA {_duration((self.total - self.done) / rate)}" if rate > 0 else "ETA unknown"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        print(f"{self.desc}: {self.done}/{self.total} images ({pct:.0f}%), {rate:.2f} images/s, {tail}",
              file=self.stream, flush=True)
        self.written += 1

    def close(self) -> None:
        if self.written:
            self._line(self.clock(), final=True)


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def make_progress(progress: Union[None, bool, str], total: int, initial: int = 0,
                  interval: float = DEFAULT_INTERVAL, desc: str = "SM+"):
    """A progress reporter with update(n) and close(), as chosen by `progress` (see progress_mode)."""
    mode = progress_mode(progress, sys.stderr)
    if mode == "bar":
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit="img")
    if mode == "log":
        return LogProgress(total, initial, interval, desc)
    return _NoProgress()
