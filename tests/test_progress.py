"""Progress in a batch job's log: plain lines when stderr is a file, a bar only on a terminal."""

import io
import re
import subprocess
import sys

import pytest

from smplus.errors import UsageError
from smplus.pipeline import RunOptions
from smplus.progress import LogProgress, progress_mode

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, ROOT

LINE = re.compile(r"^SM\+: (\d+)/(\d+) images \((\d+)%\), ([\d.]+) images/s, (ETA \d+:\d\d:\d\d|done in \d+:\d\d:\d\d)$")


@pytest.mark.slow
def test_run_with_stderr_in_a_file_logs_progress_lines(tmp_path):
    log = tmp_path / "job.log"
    with open(log, "w") as f:
        r = subprocess.run([sys.executable, "-m", "smplus.cli", "transform", "--source", FIXTURE_ANNOTATIONS,
                            "--images", FIXTURE_IMAGES, "--out", str(tmp_path / "out"), "--progress-interval", "0"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=f, text=True)
    assert r.returncode == 0
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("SM+")]
    assert all(LINE.match(ln) for ln in lines), lines
    done = [int(LINE.match(ln).group(1)) for ln in lines]
    assert done == [1, 2, 3, 4, 5, 6, 6]  # one line per image (interval 0), then the final one
    assert lines[-1].endswith(tuple(f"done in 0:00:{s:02d}" for s in range(60)))
    assert "\r" not in log.read_text()  # no bar redraws in a log


def test_log_progress_waits_for_the_interval_and_estimates_the_time_left():
    t = [0.0]
    out = io.StringIO()
    p = LogProgress(total=100, initial=20, interval=30, stream=out, clock=lambda: t[0])
    for _ in range(10):
        t[0] += 2.0
        p.update()  # 20 s, 10 images: below the interval, silent
    assert out.getvalue() == ""
    for _ in range(10):
        t[0] += 2.0
        p.update()
    p.close()
    lines = out.getvalue().splitlines()
    # at 30 s: 15 images since the start (0.5/s), 65 left -> 130 s
    assert lines == ["SM+: 35/100 images (35%), 0.50 images/s, ETA 0:02:10",
                     "SM+: 40/100 images (40%), 0.50 images/s, done in 0:00:40"]


def test_progress_modes():
    tty, pipe = io.StringIO(), io.StringIO()
    tty.isatty = lambda: True
    assert progress_mode("auto", tty) == "bar" and progress_mode("auto", pipe) == "log"
    assert progress_mode(None, pipe) == "log" and progress_mode(False, tty) == "none" and progress_mode(True, pipe) == "bar"
    with pytest.raises(UsageError, match="--progress must be one of auto, bar, log, none, got 'loud'"):
        RunOptions(progress="loud")
