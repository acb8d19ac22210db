"""Interrupted runs resume to byte-identical output; atomic writes leave no partial file."""

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from smplus.errors import SmplusError
from smplus.pipeline import RunOptions, transform
from smplus.plan import TransformOptions

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, ROOT, journal_ids, larger_set, tree


def written_images(out):
    folder = os.path.join(out, "images")
    return [f for f in os.listdir(folder) if not f.startswith(".tmp-")] if os.path.isdir(folder) else []


@pytest.mark.slow
def test_kill_9_then_resume_is_byte_identical(tmp_path):
    source, images = larger_set(tmp_path)
    whole = tmp_path / "whole"
    transform(source, images, str(whole), options=TransformOptions(seed=5), run=RunOptions(progress=False))

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "smplus.cli", "transform", "--source", source, "--images", images,
           "--out", str(out), "--seed", "5"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(journal_ids(out)) < 2:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= len(journal_ids(out)) < 30, "the run must be killed midway, with some entries committed"
    assert not (out / "annotations.json").exists(), "a killed run never leaves a dataset that looks whole"

    r = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert tree(out) == tree(whole)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_interrupt_stops_cleanly_and_says_how_to_resume(tmp_path, sig, workers):
    source, images = larger_set(tmp_path)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "smplus.cli", "transform", "--source", source, "--images", images,
           "--out", str(out), "--workers", workers]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not written_images(out):
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in err
    assert "rerun the same command with --resume" in err.strip().splitlines()[-1]
    r = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_resume_removes_partial_writes_and_renders_the_rest(tmp_path):
    whole = tmp_path / "whole"
    transform(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, str(whole), options=TransformOptions(seed=2),
              run=RunOptions(progress=False))
    out = tmp_path / "out"
    shutil.copytree(whole, out)
    # as a run killed mid-way would leave it: no dataset yet, some images missing,
    # a temporary file of an unfinished write
    os.unlink(out / "annotations.json")
    os.unlink(out / "report.json")
    raw = json.load(open(FIXTURE_ANNOTATIONS))
    with contextlib.closing(sqlite3.connect(out / ".smplus" / "journal.sqlite")) as db:
        db.execute("DELETE FROM entries WHERE position < 3")
        db.commit()
    for im in raw["images"][:3]:
        os.unlink(out / "images" / im["file_name"])
    (out / ".smplus" / "tmp").mkdir(exist_ok=True)  # where writes into OUT go before they are renamed into place
    (out / ".smplus" / "tmp" / ".tmp-abc000000184324.jpg").write_bytes(b"\xff\xd8 truncated")
    transform(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, str(out), options=TransformOptions(seed=2),
              run=RunOptions(resume=True, progress=False))
    assert tree(out) == tree(whole)
    assert os.listdir(out / ".smplus" / "tmp") == [], "the unfinished write is swept"


def test_resume_with_other_options_is_refused(tmp_path):
    out = tmp_path / "out"
    transform(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, str(out), options=TransformOptions(seed=1),
              run=RunOptions(dry_run=True, progress=False))
    with pytest.raises(SmplusError, match=r"--resume: .* \(seed differ\)"):
        transform(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, str(out), options=TransformOptions(seed=2),
                  run=RunOptions(dry_run=True, resume=True, progress=False))


def test_written_files_have_normal_permissions(tmp_path):
    out = tmp_path / "out"
    transform(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, str(out), run=RunOptions(dry_run=True, progress=False))
    assert os.stat(out / "annotations.json").st_mode & 0o044 == 0o044


# A worker killed by the system (the OOM killer sends SIGKILL): this script is the CLI with one
# function wrapped so that the worker calling it for one chosen image kills itself. Spawned
# workers import the parent's main script too, so the wrapper is in force in every worker.
KILLER = """
import os, signal, sys, time
import {module} as owner
_real = owner.{name}
def {name}(first, *args, **kwargs):
    if {is_victim}:
        os.kill(os.getpid(), signal.SIGKILL)
    return _real(first, *args, **kwargs)
owner.{name} = {name}
if __name__ == "__main__":
    from smplus.cli import main
    sys.exit(main())
"""


def _worker_dies_then_resume_completes(tmp_path, module, name, is_victim, victim, doing):
    """A 2-worker run whose worker dies in `module.name` for image `victim` stops naming it and
    what it was `doing`; --resume (one worker: the output does not depend on it) completes it."""
    from smplus.coco import load_coco

    source, images = FIXTURE_ANNOTATIONS, FIXTURE_IMAGES
    whole = tmp_path / "whole"
    # --fill telea: a render shorter than the 1 s a held write takes, as the cases below need (a slower
    # render is still under way when the write dies, and the death is then named by that render)
    transform(source, images, str(whole), options=TransformOptions(seed=5, fill="telea"), run=RunOptions(progress=False))
    file_name = load_coco(source).images[victim]["file_name"]
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(module=module, name=name, is_victim=is_victim))
    out = tmp_path / "out"
    args = ["--source", source, "--images", images, "--out", str(out), "--seed", "5", "--fill", "telea"]
    env = {**os.environ, "SMPLUS_TEST_VICTIM": str(victim), "SMPLUS_TEST_VICTIM_FILE": file_name, "PYTHONPATH": ROOT}
    proc = subprocess.Popen([sys.executable, str(script), "transform", *args, "--workers", "2"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=120)  # a hang fails here
    assert proc.returncode == 1
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"Error: a worker process was killed by SIGKILL (the out-of-memory killer sends it) while {doing} "
        f"image {victim} ({file_name}); rerun the same command with --resume to continue "
        "(fewer --workers if memory is short)")
    assert not (out / "annotations.json").exists()
    r = subprocess.run([sys.executable, "-m", "smplus.cli", "transform", *args, "--resume"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert tree(out) == tree(whole)


def _plans(seed=5):
    from smplus.coco import load_coco
    from smplus.histogram import load_target
    from smplus.plan import plan_dataset

    return plan_dataset(load_coco(FIXTURE_ANNOTATIONS), load_target(None), TransformOptions(seed=seed)).images


@pytest.mark.slow
def test_dead_worker_stops_the_run_naming_its_image_and_resume_completes(tmp_path):
    victim = [p.image_id for p in _plans() if p.transformed][3]
    _worker_dies_then_resume_completes(tmp_path, "smplus.render", "render_image",
                                       'first.image_id == int(os.environ["SMPLUS_TEST_VICTIM"])', victim, "rendering")


@pytest.mark.slow
@pytest.mark.parametrize("which", ["last", "middle"])
def test_worker_dead_while_writing_names_the_image_it_was_writing_and_resume_completes(tmp_path, which):
    """Killed in the thread that writes an image (a worker writes one image while it renders the next).
    The last image of the run: its worker has nothing else to render. An image in the middle, its write
    held for a second: its worker renders the next one meanwhile, then waits for that write."""
    plans = _plans()
    victim = plans[-1] if which == "last" else [p for p in plans if p.transformed][3]
    _worker_dies_then_resume_completes(tmp_path, "smplus.task", "write_bytes_atomic",
                                       'os.path.basename(first) == os.environ["SMPLUS_TEST_VICTIM_FILE"]'
                                       ' and not time.sleep(1)', victim.image_id, "writing")


def _killed_run(tmp_path, seed=2):
    """A whole run, then OUT as a run killed before assembly leaves it."""
    whole = tmp_path / "whole"
    transform(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, str(whole), options=TransformOptions(seed=seed),
              run=RunOptions(progress=False))
    out = tmp_path / "out"
    shutil.copytree(whole, out)
    os.unlink(out / "annotations.json")
    os.unlink(out / "report.json")
    return whole, out


def _resume(out, seed=2):
    transform(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, str(out), options=TransformOptions(seed=seed),
              run=RunOptions(resume=True, progress=False))


def test_damaged_and_orphaned_journal_entries_are_rendered_again(tmp_path):
    whole, out = _killed_run(tmp_path)
    names = [im["file_name"] for im in json.load(open(FIXTURE_ANNOTATIONS))["images"]]
    with contextlib.closing(sqlite3.connect(out / ".smplus" / "journal.sqlite")) as db:
        db.execute("UPDATE entries SET entry = '' WHERE position = 0")  # a zero-byte entry
        db.execute("UPDATE entries SET entry = substr(entry, 1, 40) WHERE position = 1")  # a torn one
        db.commit()
    os.unlink(out / "images" / names[2])  # an entry whose image was deleted
    (out / "images" / names[3]).write_bytes(b"")  # an entry whose image is empty
    _resume(out)
    assert tree(out) == tree(whole)


@pytest.mark.slow
@pytest.mark.parametrize("content", [b"", b"this is not a database" * 100])
def test_damaged_journal_file_renders_everything_again(tmp_path, content):
    whole, out = _killed_run(tmp_path)
    for name in os.listdir(out / "images")[:2]:
        os.unlink(out / "images" / name)
    (out / ".smplus" / "journal.sqlite").write_bytes(content)
    _resume(out)
    assert tree(out) == tree(whole)


@pytest.mark.slow
def test_file_size_limit_on_out_is_one_line_then_resume_continues(tmp_path):
    import resource

    whole = tmp_path / "whole"
    transform(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, str(whole), run=RunOptions(progress=False))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "smplus.cli", "transform", "--source", FIXTURE_ANNOTATIONS,
           "--images", FIXTURE_IMAGES, "--out", str(out), "--workers", "2"]
    limit = 30_000  # bytes: the run's state fits, no image does
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert re.fullmatch(rf"Error: cannot write {out}/images/\S+\.jpg: File too large; once that is fixed, "
                        r"rerun the same command with --resume to continue", lines[0])
    r = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert tree(out) == tree(whole)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EFBIG])
def test_write_failure_on_out_is_one_line_never_a_skipped_image(tmp_path, monkeypatch, code):
    """Disk full, read-only file system, file-size limit while the images are written."""
    from click.testing import CliRunner

    from smplus.cli import main

    replace = os.replace

    def failing(src, dst):
        if f"{os.sep}images{os.sep}" in str(dst):
            raise OSError(code, os.strerror(code), src)
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["transform", "--source", FIXTURE_ANNOTATIONS, "--images", FIXTURE_IMAGES,
                                  "--out", str(out)])
    assert r.exit_code == 1
    assert re.fullmatch(rf"Error: cannot write {out}/images/\S+: {os.strerror(code)}; once that is fixed, "
                        r"rerun the same command with --resume to continue", r.output.strip())
    assert not (out / "report.json").exists() and not (out / "annotations.json").exists()

