"""Interrupted runs resume to byte-identical output; atomic writes leave no partial file."""

import contextlib
import json
import os
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

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def larger_set(tmp_path, copies=5):
    """The fixture images repeated (new ids and names), so a run takes a few seconds."""
    raw = json.load(open(FIXTURE_ANNOTATIONS))
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    images, anns = [], []
    for k in range(copies):
        for im in raw["images"]:
            name = f"{k}_{im['file_name']}"
            os.symlink(os.path.join(FIXTURE_IMAGES, im["file_name"]), images_dir / name)
            images.append({**im, "id": im["id"] * 10 + k, "file_name": name})
        for a in raw["annotations"]:
            anns.append({**a, "id": a["id"] * 10 + k, "image_id": a["image_id"] * 10 + k})
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({**raw, "images": images, "annotations": anns}))
    return str(path), str(images_dir)


def tree(out):
    result = {}
    for root, _, files in os.walk(out):
        for f in files:
            p = os.path.join(root, f)
            if "/.smplus" not in p:
                result[os.path.relpath(p, out)] = open(p, "rb").read()
    return result


def journal_ids(out):
    """Image ids the journal of OUT has committed (read as another process would)."""
    path = os.path.join(out, ".smplus", "journal.sqlite")
    if not os.path.exists(path):
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            return [r[0] for r in db.execute("SELECT image_id FROM entries")]
    except sqlite3.OperationalError:  # not created yet
        return []


def written_images(out):
    folder = os.path.join(out, "images")
    return [f for f in os.listdir(folder) if not f.startswith(".tmp-")] if os.path.isdir(folder) else []


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
    (out / "images" / ".tmp-abc000000184324.jpg").write_bytes(b"\xff\xd8 truncated")
    transform(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, str(out), options=TransformOptions(seed=2),
              run=RunOptions(resume=True, progress=False))
    assert tree(out) == tree(whole)


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
