"""Hostile and odd input, beyond test_bad_input.py: damaged masks, odd names and ids, an empty --out,
histogram files, signals. Each ends in a correct output or one line (no traceback), never hangs,
and changes nothing outside OUT (inputs included)."""

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from smplus.cli import main
from smplus.histogram import load_target
from smplus.pipeline import RunOptions, transform
from smplus.plan import TransformOptions

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, ROOT, assert_one_line, larger_raw, one_image

CROWD_IMAGE = "000000184324.jpg"  # holds a compressed RLE (ann 1689233) and an uncompressed crowd RLE


def snapshot(folder, skip="out"):
    """Every file under `folder` (but `skip`) with its bytes' digest: what must not change."""
    result = {}
    for root, dirs, files in os.walk(folder):
        if os.path.abspath(root) == os.path.abspath(folder):
            dirs[:] = [d for d in dirs if d != skip]
        for f in files:
            p = os.path.join(root, f)
            result[os.path.relpath(p, folder)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return result


@contextlib.contextmanager
def untouched(folder):
    before = snapshot(folder)
    yield
    assert snapshot(folder) == before, "nothing outside OUT changes"


def crowd_image(tmp_path):
    """The fixture image with both kinds of RLE, alone in a set (its real annotations)."""
    raw = json.load(open(FIXTURE_ANNOTATIONS))
    im = next(i for i in raw["images"] if i["file_name"] == CROWD_IMAGE)
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    shutil.copy(os.path.join(FIXTURE_IMAGES, CROWD_IMAGE), images / CROWD_IMAGE)
    anns = [a for a in raw["annotations"] if a["image_id"] == im["id"]]
    return {"images": [im], "annotations": anns, "categories": raw["categories"]}, images


def cli(tmp_path, source, images, *extra, out=None):
    """The CLI in a subprocess (a hang fails at the timeout)."""
    args = ["transform", "--source", str(source), "--images", str(images),
            "--out", str(tmp_path / "out") if out is None else out, "--seed", "3", *map(str, extra)]
    return subprocess.run([sys.executable, "-m", "smplus.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=180)


def one_line_error(r, code, *needles):
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    msg = r.stderr.strip().splitlines()[-1]
    for n in needles:
        assert n in msg, (n, msg)
    return msg


def source_file(tmp_path, raw):
    """`raw` written to tmp_path/ann.json (before a run: it is an input that must not change)."""
    source = tmp_path / "ann.json"
    source.write_text(json.dumps(raw))
    return source


def run(tmp_path, raw, images, *extra, source=None):
    """The CLI in process (CliRunner), on `raw` written to tmp_path/ann.json (or on `source`)."""
    if source is None:
        source = source_file(tmp_path, raw)
    return CliRunner().invoke(main, ["transform", "--source", str(source), "--images", str(images),
                                     "--out", str(tmp_path / "out"), *map(str, extra)])


# ---------------------------------------------------------------- 1. damaged RLE: never a hang

def _cut_compressed(raw):
    a = next(a for a in raw["annotations"] if isinstance(a["segmentation"], dict)
             and isinstance(a["segmentation"]["counts"], str))
    a["segmentation"]["counts"] = a["segmentation"]["counts"][:-3]
    return a["id"]


def _short_uncompressed(raw):
    a = next(a for a in raw["annotations"] if isinstance(a["segmentation"], dict)
             and isinstance(a["segmentation"]["counts"], list))
    a["segmentation"]["counts"] = a["segmentation"]["counts"][:-2]  # runs now sum to less than h*w
    return a["id"]


@pytest.mark.parametrize("damage, labels", [(_cut_compressed, [{"reason": "bad_mask", "mask": "box"}]),
                                            (_short_uncompressed, [])], ids=["compressed cut short", "crowd runs short"])
def test_a_damaged_rle_is_a_bad_mask_never_a_hang(tmp_path, damage, labels):
    """pycocotools' merge looped forever on both (at 100 % CPU, deaf to SIGTERM)."""
    raw, images = crowd_image(tmp_path)
    ann_id = damage(raw)
    source = source_file(tmp_path, raw)
    with untouched(tmp_path):
        r = cli(tmp_path, source, images, "--background", "inpaint")  # inpainting merges every hole's RLE
    assert r.returncode == 0, r.stderr
    out = json.load(open(tmp_path / "out" / "annotations.json"))
    assert len(out["images"]) == 1 and os.path.getsize(tmp_path / "out" / "images" / CROWD_IMAGE) > 0
    # the instance is kept unscaled by its box (its pixels stay, inpainted around); a crowd is never output
    assert [a["unscaled"] for a in out["annotations"] if a.get("source_ann_id") == ann_id] == labels
    n = sum(1 for a in raw["annotations"] if not a.get("iscrowd"))
    assert len(out["annotations"]) == n


H, W = 4, 5


@pytest.mark.parametrize("segm, ok", [
    ({"size": [H, W], "counts": [3, 4, 13]}, True),
    ({"size": [H, W], "counts": [0, 20]}, True),
    ({"size": [H, W], "counts": [3, 4, 12]}, False),        # 19 pixels
    ({"size": [H, W], "counts": [3, 4, 14]}, False),        # 21 pixels
    ({"size": [H, W], "counts": [3, -4, 21]}, False),       # a negative run
    ({"size": [H, W], "counts": [3.0, 4, 13]}, False),      # not integers
    ({"size": [H, W], "counts": [3, True, 16]}, False),
    ({"size": [W, H], "counts": [3, 4, 13]}, False),        # another image's size
    ({"size": 20, "counts": [3, 4, 13]}, False),
    ({"size": [4.0, 5.0], "counts": [3, 4, 13]}, True),
    ({"size": [H, W], "counts": "34="}, True),              # compressed: 3, 4, 13
    ({"size": [H, W], "counts": "34<"}, False),             # 3, 4, 12: 19 pixels
    ({"size": [H, W], "counts": "34P"}, False),             # cut short: 'P' says more groups follow
    ({"size": [H, W], "counts": b"34="}, True),
    ({"size": [H, W], "counts": "\u00e9\u00e9"}, False),    # outside the alphabet
    ({"size": [H, W], "counts": None}, False),
    ({"counts": [20]}, False),
])
def test_rle_counts_reads_the_runs_whole_or_refuses(segm, ok):
    from smplus.coco import ann_to_rle, rle_counts

    assert (rle_counts(segm, H, W) is not None) == ok
    assert (ann_to_rle(segm, H, W) is not None) == ok


def test_rle_counts_agrees_with_pycocotools_on_compressed_masks():
    from pycocotools import mask as mask_utils

    from smplus.coco import rle_counts

    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 80, 2))
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        counts = mask_utils.encode(np.asfortranarray(m))["counts"].decode()
        runs = rle_counts({"size": [h, w], "counts": counts}, h, w)
        assert np.array_equal(np.repeat(np.arange(len(runs)) % 2, runs).reshape(w, h).T, m)
        cut = rle_counts({"size": [h, w], "counts": counts[:-1]}, h, w)
        assert cut is None or sum(cut) == h * w  # a cut that still decodes whole is a whole mask


# ---------------------------------------------------------------- 2. --out ""

def test_an_empty_out_is_refused_and_the_current_folder_is_untouched(tmp_path, monkeypatch):
    raw, images = one_image(tmp_path)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "annotations.json").write_text("mine")
    monkeypatch.chdir(cwd)
    source = tmp_path / "ann.json"
    source.write_text(json.dumps(raw))
    with untouched(tmp_path):
        for cmd in (["transform", "--source", str(source), "--images", str(images), "--out", ""],
                    ["merge", str(tmp_path / "shard"), "--out", ""]):
            r = CliRunner().invoke(main, cmd)
            assert_one_line(r, 2, "--out is empty (an unset variable?)")
    assert os.listdir(cwd) == ["annotations.json"]


@pytest.mark.parametrize("cmd, needles", [
    (["histogram", FIXTURE_ANNOTATIONS, "-o", ""], ["'-o' / '--output': is empty (an unset variable?)"]),
    (["stats", FIXTURE_ANNOTATIONS, "--plot", ""], ["'--plot': is empty"]),
    (["preview", "OUT", "-o", ""], ["'-o' / '--output': is empty"]),
])
def test_an_empty_output_file_is_refused(tmp_path, monkeypatch, cmd, needles):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, cmd)
    assert_one_line(r, 2, *needles)
    assert os.listdir(tmp_path) == []


def test_an_unwritable_histogram_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    r = CliRunner().invoke(main, ["histogram", FIXTURE_ANNOTATIONS, "-o", str(tmp_path / "file" / "h.json")])
    assert_one_line(r, 1, f"cannot write {tmp_path / 'file' / 'h.json'}", "choose another -o")


# ---------------------------------------------------------------- 3. a source named .tmp-*

def test_a_source_image_named_like_a_temporary_file_is_written(tmp_path):
    raw, images = one_image(tmp_path)
    name = raw["images"][0]["file_name"]
    os.rename(images / name, images / f".tmp-{name}")
    raw["images"][0]["file_name"] = f".tmp-{name}"
    source = source_file(tmp_path, raw)
    with untouched(tmp_path):
        r = run(tmp_path, None, images, "--seed", "1", source=source)
    assert r.exit_code == 0, r.output
    out = json.load(open(tmp_path / "out" / "annotations.json"))
    assert [i["file_name"] for i in out["images"]] == [f".tmp-{name}"]
    assert os.path.getsize(tmp_path / "out" / "images" / f".tmp-{name}") > 0
    assert os.listdir(tmp_path / "out" / "images") == [f".tmp-{name}"]


# ---------------------------------------------------------------- 4, 5, 7. ids and names

@pytest.mark.parametrize("where, value, needles", [
    ("image id", 2 ** 63, ["images[0]: 'id' 9223372036854775808 is beyond +-(2**53 - 1)"]),
    ("image id", 2 ** 53, ["beyond +-(2**53 - 1)"]),
    ("image id", -2 ** 64, ["needs an integer 'id', got -1.8446744073709552e+19 (an integer beyond 64 bits"]),
    ("image id", True, ["needs an integer 'id', got True"]),
    ("annotation id", 2 ** 63, ["annotations[0]: 'id' 9223372036854775808 is beyond"]),
    ("category id", 2 ** 63, ["categories[0]", "beyond"]),
    ("file_name", "a\x00b.jpg", ["file_name 'a\\x00b.jpg' contains a NUL character"]),
    ("size", (2 ** 16, 2 ** 15), ["65536x32768 is more than 2**30 pixels"]),
])
def test_ids_and_names_no_reader_can_hold_are_refused_up_front(tmp_path, where, value, needles):
    raw, images = one_image(tmp_path)
    im, ann = raw["images"][0], raw["annotations"][0]
    if where == "image id":
        im["id"] = value
        for a in raw["annotations"]:
            a["image_id"] = value
    elif where == "annotation id":
        ann["id"] = value
    elif where == "category id":
        old = raw["categories"][0]["id"]
        raw["categories"][0]["id"] = value
        for a in raw["annotations"]:
            a["category_id"] = value if a["category_id"] == old else a["category_id"]
    elif where == "file_name":
        im["file_name"] = value
    else:
        im["width"], im["height"] = value
    source = source_file(tmp_path, raw)
    with untouched(tmp_path):
        r = run(tmp_path, None, images, source=source)
    assert_one_line(r, 1, *needles)
    assert not (tmp_path / "out").exists()


def test_the_largest_exact_id_and_a_negative_one_are_transformed(tmp_path):
    for image_id in (2 ** 53 - 1, -7):
        raw, images = one_image(tmp_path)
        raw["images"][0]["id"] = image_id
        for a in raw["annotations"]:
            a["image_id"] = image_id
        shutil.rmtree(tmp_path / "out", ignore_errors=True)
        r = run(tmp_path, raw, images, "--seed", "2")
        assert r.exit_code == 0, r.output
        out = json.load(open(tmp_path / "out" / "annotations.json"))
        assert [i["id"] for i in out["images"]] == [image_id]
        assert {a["image_id"] for a in out["annotations"]} == {image_id}


def test_image_rng_is_default_rng_for_existing_ids_and_takes_negative_ones():
    from smplus.plan import image_rng

    for seed, image_id in [(0, 0), (0, 184324), (7, 2 ** 40), (2 ** 40, 3), (5, 2 ** 53 - 1)]:
        assert np.array_equal(image_rng(seed, image_id).random(8), np.random.default_rng([seed, image_id]).random(8))
    draws = {tuple(image_rng(3, i).random(4)) for i in range(-50, 50)}
    assert len(draws) == 100, "a negative id gets its own stream, none of a non-negative id's"


# ---------------------------------------------------------------- 6. JPEG-family extensions, unwritable ones

@pytest.mark.parametrize("ext", [".jfif", ".jif", ".pjpeg", ".JPE"])
def test_every_jpeg_extension_is_written_as_jpeg(tmp_path, ext):
    raw, images = one_image(tmp_path)
    name = raw["images"][0]["file_name"]
    new = name.replace(".jpg", ext)
    os.rename(images / name, images / new)
    raw["images"][0]["file_name"] = new
    r = run(tmp_path, raw, images, "--seed", "1")
    assert r.exit_code == 0, r.output
    data = open(tmp_path / "out" / "images" / new, "rb").read()
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    assert data != open(os.path.join(FIXTURE_IMAGES, name), "rb").read(), "rendered, not copied"


def test_an_extension_opencv_cannot_write_is_refused_before_rendering(tmp_path):
    raw, images = one_image(tmp_path)
    raw["images"][0]["file_name"] = "picture.svg"
    source = source_file(tmp_path, raw)
    with untouched(tmp_path):
        r = run(tmp_path, None, images, source=source)
    assert_one_line(r, 1, "picture.svg", "smplus cannot write '.svg' images", ".jfif")


# ---------------------------------------------------------------- 8, 15. scale ranges

def test_image_level_scale_is_bounded(tmp_path):
    raw, images = one_image(tmp_path)
    im = raw["images"][0]
    r = run(tmp_path, raw, images, "--level", "image", "--scale-range", "1000", "1000")
    assert r.exit_code == 0, r.output
    out = json.load(open(tmp_path / "out" / "annotations.json"))["images"][0]
    assert (out["width"], out["height"]) == (4 * im["width"], 4 * im["height"])  # MAX_IMAGE_GROWTH: 16x the pixels


@pytest.mark.parametrize("extra, needles", [
    (["--scale-range", "1", "inf"], ["--scale-range must be two finite numbers", "inf"]),
    (["--scale-range", "nan", "1"], ["--scale-range must be two finite numbers"]),
    (["--bins", "200000"], ["'--bins'", "200000", "3<=x<=10000"]),
])
def test_non_finite_and_huge_option_values_are_usage_errors(tmp_path, extra, needles):
    with untouched(tmp_path):
        r = run(tmp_path, None, FIXTURE_IMAGES, "--dry-run", *extra, source=FIXTURE_ANNOTATIONS)
    assert_one_line(r, 2, *needles)
    assert not (tmp_path / "out").exists()


def test_bins_beyond_the_limit_name_bins_in_the_library_too():
    from smplus.errors import UsageError

    with pytest.raises(UsageError, match=r"--bins must be an integer in \[3, 10000\], got 200000"):
        load_target(None, 200000)
    assert load_target(None, 100, except_rate=1e-6).bins == 100  # the prior's outer edges stay outside


# ---------------------------------------------------------------- 9, 12, 13. histogram files

def _hist_file(tmp_path):
    r = CliRunner().invoke(main, ["histogram", str(_target(tmp_path)), "-o", str(tmp_path / "h.json")])
    assert r.exit_code == 0, r.output
    return json.load(open(tmp_path / "h.json"))


def _target(tmp_path):
    path = tmp_path / "target.json"
    if not path.exists():
        anns = [{"id": i, "image_id": 0, "category_id": 1, "bbox": [0, 0, s, s]} for i, s in enumerate(range(4, 40))]
        path.write_text(json.dumps({"images": [], "annotations": anns, "categories": []}))
    return path


HIST_CASES = [
    ("count Infinity", lambda h: h.update(count=float("inf")), ["'count' must be a whole number >= 0, got inf"]),
    ("400-digit edge", lambda h: h["edges"].__setitem__(-1, 10 ** 400), ["'edges' holds a number too large"]),
    ("NaN prob", lambda h: h["probs"].__setitem__(0, float("nan")), ["'probs' must hold finite numbers"]),
    ("string edge", lambda h: h["edges"].__setitem__(0, "1.0"), ["'edges' must be a list of numbers"]),
    ("log_bins string", lambda h: h.update(log_bins="false"), ["'log_bins' must be true or false, got 'false'"]),
    ("log_bins number", lambda h: h.update(log_bins=0), ["'log_bins' must be true or false, got 0"]),
    ("bins mismatch", lambda h: h.update(bins=7), ["'bins' is 7 but 'probs' holds"]),
    ("edges decrease", lambda h: h["edges"].reverse(), ["edges must be positive and strictly increasing"]),
    ("probs sum", lambda h: h["probs"].__setitem__(0, 5.0), ["probabilities must be >= 0 and sum to 1"]),
]


@pytest.mark.parametrize("name, damage, needles", HIST_CASES, ids=[c[0] for c in HIST_CASES])
def test_a_bad_histogram_file_is_one_line_naming_the_file_given(tmp_path, name, damage, needles):
    hist = _hist_file(tmp_path)
    hist["source"] = "/somewhere/else/recorded.json"
    damage(hist)
    path = tmp_path / "bad_hist.json"
    path.write_text(json.dumps(hist))
    with untouched(tmp_path):
        r = run(tmp_path, None, FIXTURE_IMAGES, "--dry-run", "--target", path, source=FIXTURE_ANNOTATIONS)
        msg = assert_one_line(r, 1, f"histogram file {path}", *needles)
        assert "recorded.json" not in msg
        r = CliRunner().invoke(main, ["stats", FIXTURE_ANNOTATIONS, "--target", str(path)])
        assert_one_line(r, 1, f"histogram file {path}", *needles)


def test_a_sound_histogram_file_keeps_its_recorded_source(tmp_path):
    hist = _hist_file(tmp_path)
    hist["source"] = "recorded.json"
    (tmp_path / "h2.json").write_text(json.dumps(hist))
    assert load_target(str(tmp_path / "h2.json")).source == "recorded.json"


# ---------------------------------------------------------------- 10. ray://

def test_a_ray_client_address_without_ray_client_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setitem(sys.modules, "grpc", None)  # what an install without ray[client] has
    with untouched(tmp_path):
        r = run(tmp_path, None, FIXTURE_IMAGES, "--executor", "ray", "--address", "ray://10.0.0.1:10001",
                source=FIXTURE_ANNOTATIONS)
    assert_one_line(r, 2, "--address ray://10.0.0.1:10001 connects through Ray Client",
                    "pip install 'ray[client]'")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- 11. stats reads boxes as transform does

@pytest.mark.parametrize("box", [["10", "20", "30", "40"], [10, 20, 10 ** 400, 5], [10, 20, None, 5],
                                 [10, 20, float("nan"), 5], [10, 20, True, 5], "10 20 30 40"])
def test_stats_and_transform_both_take_a_file_with_an_unusable_box(tmp_path, box):
    raw, images = one_image(tmp_path)
    raw["annotations"][0]["bbox"] = box
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(raw))
    with untouched(tmp_path):
        r = CliRunner().invoke(main, ["stats", str(path), "--json"])
        assert r.exit_code == 0, r.output
        n = sum(1 for a in raw["annotations"] if not a.get("iscrowd"))
        assert json.loads(r.output)["boxes"] == n - 1
        r = run(tmp_path, None, images, "--seed", "1", source=path)
    assert r.exit_code == 0, r.output
    anns = json.load(open(tmp_path / "out" / "annotations.json"))["annotations"]
    assert all(finite(a["bbox"]) for a in anns)


def finite(box):
    return all(isinstance(v, (int, float)) and np.isfinite(v) for v in box)


# ---------------------------------------------------------------- 14, 19. categories

def test_a_name_two_categories_share_is_refused(tmp_path):
    raw = json.load(open(FIXTURE_ANNOTATIONS))
    raw["categories"].append({"id": 1000, "name": "bus", "supercategory": "vehicle"})
    source = source_file(tmp_path, raw)
    with untouched(tmp_path):
        r = run(tmp_path, None, FIXTURE_IMAGES, "--dry-run", "--categories", "person,bus", source=source)
    assert_one_line(r, 2, "--categories: 'bus' names 2 categories", "ids 6, 1000", "give their ids instead")
    r = run(tmp_path, raw, FIXTURE_IMAGES, "--dry-run", "--categories", "person,6,1000")
    assert r.exit_code == 0, r.output
    assert json.load(open(tmp_path / "out" / "report.json"))["parameters"]["categories"] == ["person", 6, 1000]


def test_shards_of_a_run_with_categories_sharing_a_name_merge(tmp_path):
    """report.json records such categories by id, so a merge resolves the same ones."""
    raw = json.load(open(FIXTURE_ANNOTATIONS))
    raw["categories"].append({"id": 1000, "name": "person", "supercategory": "person"})
    source = source_file(tmp_path, raw)
    for i in range(2):
        r = CliRunner().invoke(main, ["transform", "--source", str(source), "--images", FIXTURE_IMAGES, "--out",
                                      str(tmp_path / f"s{i}"), "--shard", f"{i}/2", "--categories", "1,1000"])
        assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert json.load(open(tmp_path / "out" / "report.json"))["parameters"]["categories"] == [1, 1000]


@pytest.mark.parametrize("config, expected", [
    ({"categories": ["person", "bus"]}, ["person", "bus"]),
    ({"categories": ["person", 3]}, ["person", "car"]),
    ({"categories": "person,bus"}, ["person", "bus"]),
])
def test_a_category_list_in_a_json_config(tmp_path, config, expected):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**config, "dry-run": True}))
    r = run(tmp_path, None, FIXTURE_IMAGES, "--config", path, source=FIXTURE_ANNOTATIONS)
    assert r.exit_code == 0, r.output
    assert json.load(open(tmp_path / "out" / "report.json"))["parameters"]["categories"] == expected


@pytest.mark.parametrize("config, needles", [
    ({"mode": ["msm"]}, ["'mode' takes one value, not a list"]),
    ({"categories": [["person"]]}, ["'categories' takes a list of category names or ids"]),
])
def test_a_list_where_one_value_goes_is_refused(tmp_path, config, needles):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    with untouched(tmp_path):
        r = run(tmp_path, None, FIXTURE_IMAGES, "--config", path, source=FIXTURE_ANNOTATIONS)
    assert_one_line(r, 2, *needles)


# ---------------------------------------------------------------- 17. SIGTERM to the process group

def journal_count(out):
    path = os.path.join(out, ".smplus", "journal.sqlite")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            return db.execute("SELECT count(*) FROM entries").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_sigterm_to_the_whole_group_is_an_interruption_then_resume_completes(tmp_path):
    raw, images = larger_raw(tmp_path)
    source = tmp_path / "ann.json"
    source.write_text(json.dumps(raw))
    out = tmp_path / "out"
    args = [sys.executable, "-m", "smplus.cli", "transform", "--source", str(source), "--images", str(images),
            "--out", str(out), "--seed", "4", "--workers", "2"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and journal_count(out) < 1 and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGTERM)  # how SLURM preempts: every process of the job
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: interrupted after ") and last.endswith(
        f" of {len(raw['images'])} images; rerun the same command with --resume to continue"), last
    r = subprocess.run(args + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(json.load(open(out / "annotations.json"))["images"]) == len(raw["images"])


def test_a_worker_stopped_by_sigterm_alone_is_reported_as_an_interruption():
    from types import SimpleNamespace

    from smplus.executors import _death_message

    task = SimpleNamespace(plan=SimpleNamespace(image_id=7), image={"file_name": "a.jpg"})
    msg = _death_message(-signal.SIGTERM, task)
    assert msg == ("interrupted: a worker process was stopped by SIGTERM while rendering image 7 (a.jpg); "
                   "rerun the same command with --resume to continue")
    assert "fewer --workers" in _death_message(-signal.SIGKILL, task)


# ---------------------------------------------------------------- JSON nested deeper than the parser's stack

def test_json_nested_too_deeply_is_one_line(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "deep.json").write_text(deep)
    (tmp_path / "deep_config.json").write_text('{"seed": ' + deep + "}")
    with untouched(tmp_path):
        r = run(tmp_path, None, FIXTURE_IMAGES, source=tmp_path / "deep.json")
        assert_one_line(r, 1, "source annotations is nested too deeply to be a COCO file")
        r = run(tmp_path, None, FIXTURE_IMAGES, "--dry-run", "--target", tmp_path / "deep.json", source=FIXTURE_ANNOTATIONS)
        assert_one_line(r, 1, "target is nested too deeply")
        r = CliRunner().invoke(main, ["stats", str(tmp_path / "deep.json")])
        assert_one_line(r, 1, "annotations is nested too deeply")
        r = run(tmp_path, None, FIXTURE_IMAGES, "--config", tmp_path / "deep_config.json", source=FIXTURE_ANNOTATIONS)
        assert_one_line(r, 2, "is not valid JSON: nested too deeply")


# ---------------------------------------------------------------- 18. --workers

def test_workers_are_capped_at_the_images_to_render(tmp_path, monkeypatch):
    import smplus.pipeline as pipeline

    made = []
    real = pipeline.make_executor
    monkeypatch.setattr(pipeline, "make_executor", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    raw, images = one_image(tmp_path)
    source = tmp_path / "ann.json"
    source.write_text(json.dumps(raw))
    transform(str(source), str(images), str(tmp_path / "out"), options=TransformOptions(seed=1),
              run=RunOptions(workers=3, progress=False))
    assert made[0].workers == 1 and len(made[0]._procs) == 1
    assert os.path.exists(tmp_path / "out" / "annotations.json")


def test_more_workers_than_cpus_is_warned(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    r = CliRunner().invoke(main, ["transform", "--source", FIXTURE_ANNOTATIONS, "--images", FIXTURE_IMAGES,
                                  "--out", str(tmp_path / "out"), "--dry-run", "--workers", "3"])
    assert r.exit_code == 0, r.output
    assert "warning: --workers 3 is more than the 1 CPUs this process may use" in r.stderr
