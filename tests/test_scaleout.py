"""Shards and merge: byte-identical to one run; merge refuses what is not one whole run.
Executors: the local ones, and `--executor ray` wiring without Ray installed."""

import contextlib
import json
import os
import shutil
import sqlite3
import sys
from dataclasses import replace

import pytest
from click.testing import CliRunner

from smplus.cli import main
from smplus.coco import load_coco
from smplus.errors import SmplusError, UsageError
from smplus.executors import InProcess, LocalProcesses, make_executor
from smplus.histogram import load_target
from smplus.pipeline import RunOptions, merge, transform
from smplus.plan import TransformOptions, plan_dataset
from smplus.shards import assign_shards
from smplus.task import Rendered, background_groups

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, tree


def run_shard(out, i, n, seed=3, resume=False, **options):
    return transform(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, str(out), options=TransformOptions(seed=seed, **options),
                     run=RunOptions(shard=(i, n), resume=resume, progress=False))


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    transform(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, str(out), options=TransformOptions(seed=3),
              run=RunOptions(progress=False))
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """The fixture set in 3 shards (seed 3), each in its own OUT."""
    root = tmp_path_factory.mktemp("shards")
    outs = [root / f"s{i}" for i in range(3)]
    for i, out in enumerate(outs):
        result = run_shard(out, i, 3)
        assert result.report is None and result.rendered == len(os.listdir(out / "images"))
        assert not (out / "annotations.json").exists(), "a shard holds its journal and images, no dataset"
    return outs


def copy_shards(shards, tmp_path):
    copies = [tmp_path / s.name for s in shards]
    for s, c in zip(shards, copies):
        shutil.copytree(s, c)
    return copies


def test_merged_shards_are_byte_identical_to_one_run(shards, whole, tmp_path):
    report = merge([str(s) for s in reversed(shards)], str(tmp_path / "final"))  # any order
    assert tree(tmp_path / "final") == tree(whole)
    assert report == json.load(open(whole / "report.json"))
    assert sum(len(os.listdir(s / "images")) for s in shards) == len(os.listdir(whole / "images"))


def test_shards_split_the_images_deterministically_balanced_by_instances():
    ds = load_coco(FIXTURE_ANNOTATIONS)
    plans = plan_dataset(ds, load_target(None), TransformOptions(seed=3)).images
    for n in (2, 3, 4):
        shard = assign_shards(plans, n)
        assert shard == assign_shards(plans, n)
        assert set(shard) == set(range(n)), "every shard gets images (6 images, at most 4 shards)"
        loads = [sum(len(p.instances) + 1 for p, s in zip(plans, shard) if s == i) for i in range(n)]
        groups = background_groups(plans)  # the images drawing one new background: one shard
        if len(groups) < n:  # too few to give every shard images: image by image
            groups = [[k] for k in range(len(plans))]
        assert all(len({shard[k] for k in g}) == 1 for g in groups)
        heaviest = max(sum(len(plans[k].instances) + 1 for k in g) for g in groups)
        assert max(loads) - min(loads) <= heaviest


def test_a_shard_gets_every_image_drawing_its_backgrounds():
    """On a set whose images share backgrounds, each background's images stay in one shard, balanced."""
    ds = load_coco(FIXTURE_ANNOTATIONS)
    plans = plan_dataset(ds, load_target(None), TransformOptions(seed=3, background="new")).images
    # 120 images; blocks of 4 copies draw the same backgrounds
    plans = [replace(p, image_id=p.image_id * 100 + c, background_image_id=p.background_image_id * 100 + c // 4)
             for c in range(20) for p in plans]
    groups = background_groups(plans)
    assert 3 < len(groups) < len(plans) and max(map(len, groups)) >= 4
    shard = assign_shards(plans, 3)
    assert all(len({shard[k] for k in g}) == 1 for g in groups)
    loads = [sum(len(p.instances) + 1 for p, s in zip(plans, shard) if s == i) for i in range(3)]
    assert max(loads) - min(loads) <= max(sum(len(plans[k].instances) + 1 for k in g) for g in groups)


def test_merge_refuses_a_missing_shard(shards, tmp_path):
    with pytest.raises(SmplusError, match=r"^merge: shard 1/3 is missing \(1 of 3 missing\); "
                                          r"give the OUT folders of all 3 shards$"):
        merge([str(shards[0]), str(shards[2])], str(tmp_path / "final"))
    assert not (tmp_path / "final").exists()


def test_merge_refuses_a_duplicated_shard(shards, tmp_path):
    dup = tmp_path / "dup"
    shutil.copytree(shards[1], dup)
    with pytest.raises(SmplusError) as e:
        merge([str(shards[0]), str(shards[1]), str(dup), str(shards[2])], str(tmp_path / "final"))
    assert str(e.value) == f"merge: {shards[1]} and {dup} are both shard 1/3; give each shard once"


def test_merge_refuses_a_shard_of_another_run(shards, tmp_path):
    other = tmp_path / "other"
    run_shard(other, 1, 3, seed=4)
    with pytest.raises(SmplusError) as e:
        merge([str(shards[0]), str(other), str(shards[2])], str(tmp_path / "final"))
    assert str(e.value) == (f"merge: {other} is a shard of another run than {shards[0]} (seed differ); "
                            "merge the shards of one run")


def test_merge_refuses_shards_of_another_version_or_split(shards, tmp_path):
    s0, s1, s2 = copy_shards(shards, tmp_path)
    run_json = s2 / ".smplus" / "run.json"
    fingerprint = json.load(open(run_json))
    run_json.write_text(json.dumps({**fingerprint, "version": "0.0.1"}))
    with pytest.raises(SmplusError, match=r"is a shard of another run than .* \(version differ\)"):
        merge([str(s0), str(s1), str(s2)], str(tmp_path / "final"))
    run_json.write_text(json.dumps({**fingerprint, "shard": [2, 4]}))
    with pytest.raises(SmplusError, match=r"is a shard of another run than .* \(shard differ\)"):
        merge([str(s0), str(s1), str(s2)], str(tmp_path / "final"))


def test_merge_refuses_a_folder_that_is_not_a_shard(shards, whole, tmp_path):
    with pytest.raises(SmplusError) as e:
        merge([str(shards[0]), str(whole)], str(tmp_path / "final"))
    assert str(e.value) == f"merge: {whole} is not a shard (it was run without --shard)"
    with pytest.raises(SmplusError) as e:
        merge([str(shards[0]), str(tmp_path)], str(tmp_path / "final"))
    assert str(e.value).startswith(f"merge: {tmp_path} holds no smplus run")


def test_incomplete_shard_is_refused_then_resumed_per_shard(shards, whole, tmp_path):
    s0, s1, s2 = copy_shards(shards, tmp_path)
    with contextlib.closing(sqlite3.connect(s1 / ".smplus" / "journal.sqlite")) as db:
        position, image_id = db.execute("SELECT position, image_id FROM entries ORDER BY position").fetchone()
        db.execute("DELETE FROM entries WHERE position = ?", (position,))
        db.commit()
    name = load_coco(FIXTURE_ANNOTATIONS).images[image_id]["file_name"]
    total = len(os.listdir(s1 / "images"))
    with pytest.raises(SmplusError) as e:
        merge([str(s0), str(s1), str(s2)], str(tmp_path / "final"))
    assert str(e.value) == (f"merge: shard 1/3 in {s1} is incomplete: 1 of its {total} images are not rendered "
                            f"(first {name}); rerun its command with --resume, then merge again")
    run_shard(s1, 1, 3, resume=True)
    merge([str(s0), str(s1), str(s2)], str(tmp_path / "final"))
    assert tree(tmp_path / "final") == tree(whole)


def test_shard_and_merge_through_the_cli(tmp_path, whole):
    base = ["--source", FIXTURE_ANNOTATIONS, "--images", FIXTURE_IMAGES, "--seed", "3"]
    runner = CliRunner()
    for i in range(2):
        r = runner.invoke(main, ["transform", *base, "--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/2"])
        assert r.exit_code == 0, r.output
        assert r.output.startswith(f"shard {i}/2: ") and "smplus merge OUT_0 ... OUT_1 --out FINAL" in r.output
    r = runner.invoke(main, ["merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "final")])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("wrote 6 images")
    assert tree(tmp_path / "final") == tree(whole)


@pytest.mark.parametrize("value", ["2/2", "1", "a/b", "-1/2"])
def test_bad_shard_is_a_usage_error(tmp_path, value):
    r = CliRunner().invoke(main, ["transform", "--source", FIXTURE_ANNOTATIONS, "--images", FIXTURE_IMAGES,
                                  "--out", str(tmp_path / "o"), "--shard", value])
    assert r.exit_code == 2
    assert f"must be I/N with 0 <= I < N (e.g. 0/4), got {value!r}" in r.output


def test_shard_with_dry_run_is_refused():
    with pytest.raises(UsageError, match="--shard renders a part of the images and --dry-run renders none"):
        RunOptions(shard=(0, 2), dry_run=True)


def test_executor_ray_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    r = CliRunner().invoke(main, ["transform", "--source", FIXTURE_ANNOTATIONS, "--images", FIXTURE_IMAGES,
                                  "--out", str(tmp_path / "o"), "--executor", "ray"])
    assert r.exit_code == 2
    assert "--executor ray needs Ray, which is not installed: pip install 'smplus[ray]'" in r.output
    assert "Traceback" not in r.output


def test_in_process_executor_renders_on_one_opencv_thread_like_a_worker(monkeypatch):
    """--workers 1 uses one core, as each worker process does; the caller's setting comes back after."""
    import cv2

    import smplus.executors as executors

    saved = cv2.getNumThreads()
    monkeypatch.setattr(executors, "render", lambda task: Rendered({"threads": cv2.getNumThreads()}))
    try:
        cv2.setNumThreads(3)
        with InProcess() as ex:
            assert list(ex.imap_unordered(["a", "b"])) == [{"threads": 1}, {"threads": 1}]
        assert cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(saved)


def test_in_process_executor_writes_an_image_while_the_next_renders_and_yields_it_once_written(monkeypatch):
    """The fsync of each image overlaps the next render; the journal only ever hears of images on disk."""
    import threading

    import smplus.executors as executors

    events = []
    rendering_b = threading.Event()

    class Written(Rendered):
        def write(self):
            if self.entry == "a":
                assert rendering_b.wait(10), "image b was not rendered while image a was written"
            events.append(f"wrote {self.entry}")
            return self.entry

    def render(task):
        events.append(f"render {task}")
        if task == "b":
            rendering_b.set()
        return Written(task)

    monkeypatch.setattr(executors, "render", render)
    with InProcess() as ex:
        for entry in ex.imap_unordered(["a", "b", "c"]):
            events.append(f"yield {entry}")
    assert events.index("render b") < events.index("wrote a") < events.index("yield a")
    assert [e for e in events if e.startswith("yield")] == ["yield a", "yield b", "yield c"]
    assert all(events.index(f"wrote {k}") < events.index(f"yield {k}") for k in "abc")


def test_local_executors():
    assert isinstance(make_executor("local", 1), InProcess)
    assert isinstance(make_executor("local", 3), LocalProcesses)
    with pytest.raises(UsageError, match="--address goes with --executor ray"):
        make_executor("local", 2, address="10.0.0.1:6379")
