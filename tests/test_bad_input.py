"""Bad input through the CLI: one clear line, the right exit code, no traceback,
inputs untouched, nothing written outside OUT."""

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from smplus.cli import main

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, assert_one_line, digest, make_ann, one_image


def run_cli(tmp_path, raw=None, images=None, extra=(), source=None):
    if source is None:
        source = tmp_path / "ann.json"
        if not isinstance(raw, (bytes, str)):
            raw = json.dumps(raw)
        source.write_text(raw) if isinstance(raw, str) else source.write_bytes(raw)
    args = ["transform", "--source", str(source), "--images", str(images or FIXTURE_IMAGES),
            "--out", str(tmp_path / "out"), *map(str, extra)]
    return CliRunner().invoke(main, args)


def valid():
    return json.load(open(FIXTURE_ANNOTATIONS))


CASES = [
    # (name, how to break the source JSON, exit code, words of the message)
    ("invalid JSON", lambda r: "{not json", 1, ["is not valid JSON at line 1"]),
    ("top-level list", lambda r: json.dumps([1, 2]), 1, ["top level must be a JSON object"]),
    ("no images", lambda r: {k: v for k, v in r.items() if k != "images"}, 1, ["missing 'images'"]),
    ("no annotations", lambda r: {k: v for k, v in r.items() if k != "annotations"}, 1, ["missing 'annotations'"]),
    ("no categories", lambda r: {k: v for k, v in r.items() if k != "categories"}, 1, ["missing 'categories'"]),
    ("unknown image_id", lambda r: {**r, "annotations": r["annotations"] + [make_ann(id=999999, image_id=42)]},
     1, ["points to unknown image_id 42"]),
    ("unknown category", lambda r: {**r, "annotations": r["annotations"] + [
        make_ann(id=999999, image_id=r["images"][0]["id"], category_id=4242)]}, 1, ["unknown category_id 4242"]),
    ("dotdot file_name", lambda r: {**r, "images": [{**r["images"][0], "file_name": "../../etc/passwd"}] + r["images"][1:]},
     1, ["file_name '../../etc/passwd' is absolute or contains '..'"]),
    ("absolute file_name", lambda r: {**r, "images": [{**r["images"][0], "file_name": "/etc/passwd"}] + r["images"][1:]},
     1, ["file_name '/etc/passwd' is absolute"]),
    ("zero width", lambda r: {**r, "images": [{**r["images"][0], "width": 0}] + r["images"][1:]},
     1, ["'width' must be a positive integer, got 0"]),
    ("detection only", lambda r: {**r, "annotations": [{k: v for k, v in a.items() if k != "segmentation"}
                                                      for a in r["annotations"]]},
     1, ["no annotation has a 'segmentation'; SM+ cuts each instance out by its mask and needs instance masks"]),
    ("one file_name twice", lambda r: {**r, "images": r["images"][:2] + [{**r["images"][2], "file_name":
                                                                          r["images"][0]["file_name"]}]},
     1, ["images[2]: images id 184324 and id 343937 both have file_name '000000184324.jpg'"]),
    ("iscrowd strings", lambda r: {**r, "annotations": [{**a, "iscrowd": str(a["iscrowd"])} for a in r["annotations"]]},
     1, ["annotations[0] (id ", "iscrowd must be the number 0 or 1, got '0' (write it without quotes)"]),
]


@pytest.mark.parametrize("name, breaker, code, needles", CASES, ids=[c[0] for c in CASES])
def test_bad_source_json(tmp_path, name, breaker, code, needles):
    broken = breaker(valid())
    r = run_cli(tmp_path, broken)
    assert_one_line(r, code, *needles, str(tmp_path / "ann.json"))
    assert not (tmp_path / "out" / "annotations.json").exists()


@pytest.mark.parametrize("extra, needles", [
    (["--psi-p", "1.5"], ["'--psi-p'", "1.5"]),
    (["--psi-p", "-0.1"], ["'--psi-p'"]),
    (["--bins", "2"], ["'--bins'", "2"]),
    (["--workers", "0"], ["'--workers'"]),
    (["--except-rate", "1.0"], ["'--except-rate'"]),
    (["--seed", "-1"], ["'--seed'"]),
    (["--categories", "unicorn"], ["unknown category 'unicorn'"]),
    (["--level", "image", "--mode", "cp"], ["--level image goes with --mode msm or rsm"]),
    (["--scale-range", "1", "0.5"], ["--scale-range"]),
    (["--fill", "navier"], ["'--fill'", "navier"]),
    (["--overwrite", "--resume"], ["--overwrite and --resume exclude each other"]),
])
def test_bad_option_values_are_usage_errors(tmp_path, extra, needles):
    r = run_cli(tmp_path, source=FIXTURE_ANNOTATIONS, extra=["--dry-run", *extra])
    assert_one_line(r, 2, *needles)


def test_missing_and_directory_sources(tmp_path):
    r = run_cli(tmp_path, source=tmp_path / "nope.json")
    assert_one_line(r, 1, "source annotations not found:", "nope.json")
    r = run_cli(tmp_path, source=tmp_path)
    assert_one_line(r, 2, "Invalid value for '--source'", "is a directory")


def test_images_folder_missing(tmp_path):
    r = run_cli(tmp_path, source=FIXTURE_ANNOTATIONS, images=tmp_path / "nothing")
    assert_one_line(r, 1, "images folder not found", "--images")


@pytest.mark.parametrize("target_content, needles", [
    (None, ["target not found"]),
    ("{oops", ["target is not valid JSON"]),
    (json.dumps({"annotations": [{"bbox": [0, 0, 5, 5], "ignore": True}]}), ["no usable boxes"]),
    (json.dumps({"annotations": [{"bbox": [0, 0, 5, 5]}]}), ["at least two boxes of different sizes"]),
    (json.dumps({"images": []}), ["has no 'annotations' list"]),
])
def test_bad_target(tmp_path, target_content, needles):
    target = tmp_path / "target.json"
    if target_content is not None:
        target.write_text(target_content)
    r = run_cli(tmp_path, source=FIXTURE_ANNOTATIONS, extra=["--target", target, "--dry-run"])
    assert_one_line(r, 1, *needles, str(target))


def test_out_refusals(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    r = run_cli(tmp_path, source=FIXTURE_ANNOTATIONS, extra=["--dry-run"])
    assert_one_line(r, 1, "is not empty; pass --overwrite")
    # OUT holding the inputs is refused even with --overwrite
    raw, images = one_image(tmp_path)
    src = tmp_path / "ann.json"
    src.write_text(json.dumps(raw))
    before = digest(src)
    r = CliRunner().invoke(main, ["transform", "--source", str(src), "--images", str(images),
                                  "--out", str(tmp_path), "--overwrite"])
    assert_one_line(r, 1, "overlaps the input")
    assert digest(src) == before and os.listdir(images)


def test_histogram_refuses_to_overwrite_its_input(tmp_path, tinyperson_target):
    target, _ = tinyperson_target
    before = digest(target)
    r = CliRunner().invoke(main, ["histogram", target, "-o", target])
    assert_one_line(r, 1, "would overwrite the target annotations")
    assert digest(target) == before


@pytest.mark.parametrize("problem", ["missing", "corrupt", "wrong_size"])
def test_unreadable_image_fails_the_run_unless_skips_allowed(tmp_path, problem):
    raw, images = one_image(tmp_path)
    name = raw["images"][0]["file_name"]
    if problem == "missing":
        os.unlink(images / name)
    elif problem == "corrupt":
        (images / name).write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    else:
        raw["images"][0]["width"] += 10
    r = run_cli(tmp_path, raw, images)
    assert_one_line(r, 1, "1 image(s) could not be transformed", name, "--allow-skips")
    out = tmp_path / "out"
    assert not (out / "annotations.json").exists(), "never a dataset that passes for whole"
    report = json.loads((out / "report.json").read_text())
    assert report["skipped"][0]["file_name"] == name
    shutil.rmtree(out)
    r = run_cli(tmp_path, raw, images, extra=["--allow-skips"])
    assert r.exit_code == 0, r.output
    data = json.loads((out / "annotations.json").read_text())
    assert data["images"] == [] and data["annotations"] == []
    assert "skipped 1 image(s)" in r.output


def test_an_unreadable_new_background_skips_the_images_drawn_on_it(tmp_path):
    """Its instances were planned on the background's frame: the image is skipped and says
    why, instead of being inpainted with its instances where another frame put them. The
    corrupt file itself, with no instance, is skipped, not copied into the output."""
    raw, images = one_image(tmp_path)
    background = next(i for i in valid()["images"] if i["file_name"] == "000000343937.jpg")
    (images / background["file_name"]).write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    raw["images"].append(background)
    own = raw["images"][0]
    r = run_cli(tmp_path, raw, images, extra=["--background", "new"])
    assert_one_line(r, 1, "2 image(s) could not be transformed", "--allow-skips")
    shutil.rmtree(tmp_path / "out")
    r = run_cli(tmp_path, raw, images, extra=["--background", "new", "--allow-skips"])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    reasons = {s["file_name"]: s["reason"] for s in report["skipped"]}
    assert f"its new background, image {background['id']}, cannot be used" in reasons[own["file_name"]]
    assert background["file_name"] in reasons[own["file_name"]]
    # the background image has nothing to scale, so it would be copied as it is: not when corrupt
    assert "corrupt or not an image" in reasons[background["file_name"]]
    assert json.loads((tmp_path / "out" / "annotations.json").read_text())["annotations"] == []


def test_degenerate_annotations_are_dropped_and_counted(tmp_path):
    raw, images = one_image(tmp_path)
    im = raw["images"][0]
    background = next(i for i in valid()["images"] if i["file_name"] == "000000343937.jpg")
    shutil.copy(os.path.join(FIXTURE_IMAGES, background["file_name"]), images / background["file_name"])
    raw["images"].append(background)  # another image: a new background to draw
    bad = [
        make_ann(id=900001, image_id=im["id"], bbox=[10, 10, 0, 5]),                             # zero-size box
        make_ann(id=900002, image_id=im["id"], segmentation=[[10, 10, 20, 20]]),                 # 2-point polygon
        make_ann(id=900003, image_id=im["id"], bbox=[5000, 5000, 10, 10]),                       # outside the image
        make_ann(id=900004, image_id=im["id"], segmentation={"size": [10, 10], "counts": "0"}),  # RLE of another size
        make_ann(id=900005, image_id=im["id"], bbox=[10, 10, 20, 20],                            # mask empty after decoding
                 segmentation={"size": [im["height"], im["width"]], "counts": [im["height"] * im["width"]]}),
    ]
    raw["annotations"] += bad
    src = tmp_path / "ann.json"
    src.write_text(json.dumps(raw))
    before = digest(src)
    # On the image's own background, labels that only lack a usable mask or box still
    # locate their object (its pixels stay): kept unscaled and marked. On a new
    # background they are dropped and counted, like those that locate nothing.
    for extra, kept in [(["--psi-p", "1"], {900001: "zero_size_box", 900002: "bad_polygon", 900004: "bad_mask"}),
                        (["--background", "new"], {})]:
        r = run_cli(tmp_path, source=src, images=images, extra=[*extra, "--overwrite"])
        assert r.exit_code == 0, r.output
        report = json.loads((tmp_path / "out" / "report.json").read_text())
        d = report["counts"]["dropped"]
        for reason in {"zero_size_box", "bad_polygon", "outside_image", "bad_mask", "empty_mask"} - set(kept.values()):
            assert d.get(reason, 0) >= 1, (reason, d)
        c = report["counts"]
        assert c["instances_in"] == c["instances_out"] + sum(d.values())
        out = json.loads((tmp_path / "out" / "annotations.json").read_text())["annotations"]
        unscaled = {a["source_ann_id"]: a["unscaled"]["reason"] for a in out if "unscaled" in a}
        assert unscaled == kept
        assert not {a["source_ann_id"] for a in out} & ({a["id"] for a in bad} - set(kept))
    assert digest(src) == before
