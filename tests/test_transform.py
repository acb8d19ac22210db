"""SM+ end to end on real COCO images: the output is valid COCO, agrees with
the pixels written, follows the plan, and is the same whatever the workers."""

import json
import os

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from smplus.coco import ann_to_rle, instance_size
from smplus.pipeline import RunOptions, transform
from smplus.plan import MIN_SIDE, TransformOptions

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES


def run(out, workers=1, dry_run=False, **options):
    return transform(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, str(out), options=TransformOptions(**options),
                     run=RunOptions(workers=workers, dry_run=dry_run, progress=False)).report


@pytest.fixture(scope="module")
def msm(tmp_path_factory):
    out = tmp_path_factory.mktemp("msm")
    return out, run(out, seed=0)


def load(out):
    with open(os.path.join(out, "annotations.json")) as f:
        return json.load(f)


def test_output_is_valid_coco(msm):
    out, report = msm
    coco = COCO(os.path.join(out, "annotations.json"))
    src = COCO(FIXTURE_ANNOTATIONS)
    assert coco.dataset["categories"] == src.dataset["categories"]
    assert len(coco.getImgIds()) == len(src.getImgIds()) == report["counts"]["images"]
    for im in coco.dataset["images"]:
        pixels = cv2.imread(os.path.join(out, "images", im["file_name"]))
        assert pixels.shape[:2] == (im["height"], im["width"])
    ids = [a["id"] for a in coco.dataset["annotations"]]
    assert len(set(ids)) == len(ids)
    src_ids = {a["id"] for a in src.dataset["annotations"]}
    assert all(a["source_ann_id"] in src_ids for a in coco.dataset["annotations"])


def test_annotations_agree_with_the_pixels(msm):
    out, _ = msm
    data = load(out)
    images = {im["id"]: im for im in data["images"]}
    assert data["annotations"]
    for a in data["annotations"]:
        im = images[a["image_id"]]
        rle = ann_to_rle(a["segmentation"], im["height"], im["width"])
        assert rle is not None, "segmentation must be an RLE of the image's size"
        m = mask_utils.decode(rle)
        assert a["area"] == int(m.sum()) > 0
        ys, xs = np.nonzero(m)
        x, y, w, h = a["bbox"]
        # box inside the image and around its mask (to a pixel: the box is sub-pixel)
        assert 0 <= x and 0 <= y and x + w <= im["width"] + 1e-6 and y + h <= im["height"] + 1e-6
        assert x <= xs.min() + 1 and xs.max() + 1 <= x + w + 1
        assert y <= ys.min() + 1 and ys.max() + 1 <= y + h + 1
        assert w >= MIN_SIDE and h >= MIN_SIDE


def test_pasted_pixels_are_the_instance(msm):
    """Inside each output mask the pixels are the source instance, scaled."""
    out, _ = msm
    data = load(out)
    src = {a["id"]: a for a in json.load(open(FIXTURE_ANNOTATIONS))["annotations"]}
    src_images = {im["id"]: im for im in json.load(open(FIXTURE_ANNOTATIONS))["images"]}
    images = {im["id"]: im for im in data["images"]}
    errors = []
    for a in data["annotations"]:
        if a["area"] < 150:
            continue
        s = src[a["source_ann_id"]]
        sim, oim = src_images[s["image_id"]], images[a["image_id"]]
        source = cv2.imread(os.path.join(FIXTURE_IMAGES, sim["file_name"])).astype(np.float32)
        output = cv2.imread(os.path.join(out, "images", oim["file_name"])).astype(np.float32)
        sx, sy, sw, sh = s["bbox"]
        x, y, w, h = a["bbox"]
        # the source box, resized to the output box, against the output box
        crop = source[int(sy):int(sy + sh), int(sx):int(sx + sw)]
        xi, yi, wi, hi = int(round(x)), int(round(y)), int(round(w)), int(round(h))
        expected = cv2.resize(crop, (wi, hi), interpolation=cv2.INTER_AREA)
        got = output[yi:yi + hi, xi:xi + wi]
        m = mask_utils.decode(ann_to_rle(a["segmentation"], oim["height"], oim["width"]))[yi:yi + hi, xi:xi + wi]
        # only the solid interior (the rim is blended with the new background)
        inner = cv2.erode(m, np.ones((3, 3), np.uint8)).astype(bool)
        if got.shape != expected.shape or inner.sum() < 20:
            continue
        errors.append(np.abs(got[inner] - expected[inner]).mean())
    assert len(errors) >= 5
    assert np.median(errors) < 20  # of 255; a wrong crop or place gives 50+


def test_rendered_sizes_follow_the_plan(msm, tmp_path):
    out, report = msm
    run(tmp_path / "dry", seed=0, dry_run=True)
    planned = {a["source_ann_id"]: instance_size(*a["bbox"][2:]) for a in load(tmp_path / "dry")["annotations"]}
    diffs = [instance_size(*a["bbox"][2:]) - planned[a["source_ann_id"]] for a in load(out)["annotations"]
             if a["source_ann_id"] in planned]
    assert len(diffs) > 0.9 * len(planned)
    assert np.median(np.abs(diffs)) < 1.0
    assert abs(np.median(diffs)) < 0.5  # no systematic shrink or growth


def test_report_counts_add_up(msm):
    out, report = msm
    c = report["counts"]
    assert c["instances_in"] == c["instances_out"] + sum(c["dropped"].values())
    assert c["instances_out"] == len([a for a in load(out)["annotations"] if not a["iscrowd"]])
    assert report["backgrounds"]["inpaint"] + report["backgrounds"]["new"] == c["images_transformed"]
    assert report["jsd"]["after"] < report["jsd"]["before"]
    assert set(report["parameters"]) >= {"mode", "seed", "psi_p", "bins", "except_rate", "categories"}
    assert report["smplus_version"]


def test_crowd_regions_are_erased_not_kept(msm):
    out, report = msm
    crowd = {a["id"] for a in json.load(open(FIXTURE_ANNOTATIONS))["annotations"] if a["iscrowd"]}
    assert crowd and report["counts"]["crowd_erased"] == len(crowd)
    assert not crowd & {a["source_ann_id"] for a in load(out)["annotations"]}


def test_compressed_rle_instance_is_transformed(msm):
    out, _ = msm
    rle_ids = {a["id"] for a in json.load(open(FIXTURE_ANNOTATIONS))["annotations"]
               if isinstance(a["segmentation"], dict) and isinstance(a["segmentation"]["counts"], str)}
    assert rle_ids and rle_ids <= {a["source_ann_id"] for a in load(out)["annotations"]}


@pytest.mark.slow
def test_same_seed_same_output_whatever_the_workers(msm, tmp_path):
    out, _ = msm
    run(tmp_path / "w2", workers=2, seed=0)
    a = open(os.path.join(out, "annotations.json"), "rb").read()
    b = open(tmp_path / "w2" / "annotations.json", "rb").read()
    assert a == b
    for name in os.listdir(os.path.join(out, "images")):
        assert open(os.path.join(out, "images", name), "rb").read() == \
               open(tmp_path / "w2" / "images" / name, "rb").read(), name


def test_another_seed_gives_another_dataset(msm, tmp_path):
    out, _ = msm
    run(tmp_path / "s1", seed=1, mode="rsm")
    assert load(out)["annotations"] != load(tmp_path / "s1")["annotations"]


def test_psi_p_one_always_inpaints_zero_always_changes(tmp_path):
    r1 = run(tmp_path / "p1", psi_p=1.0, dry_run=True)
    r0 = run(tmp_path / "p0", psi_p=0.0, dry_run=True)
    n = r1["counts"]["images_transformed"]
    assert n > 0 and r1["backgrounds"] == {"inpaint": n, "new": 0}
    assert r0["backgrounds"] == {"inpaint": 0, "new": n}


@pytest.mark.parametrize("background, expect", [("inpaint", "inpaint"), ("new", "new")])
def test_background_option_forces_one_kind(tmp_path, background, expect):
    report = run(tmp_path / background, background=background, psi_p=0.4, seed=0)
    n = report["counts"]["images_transformed"]
    # holes too large to inpaint take a new background even with --background inpaint (counted)
    fallbacks = sum(report["provenance"]["fallbacks"].values())
    assert n > 0 and report["backgrounds"][expect] == n - fallbacks
    assert report["backgrounds"]["new"] == (n if background == "new" else fallbacks)
    assert report["parameters"]["background"] == background
    # inpaint never changes an image's size or scene; the image ids stay in place
    if background == "inpaint":
        src = {im["id"]: im for im in json.load(open(FIXTURE_ANNOTATIONS))["images"]}
        assert all((im["width"], im["height"]) == (src[im["id"]]["width"], src[im["id"]]["height"])
                   for im in load(tmp_path / background)["images"] if im["smplus"]["background"] == "inpaint")


def test_new_background_takes_its_size_and_maps_centres(tmp_path):
    run(tmp_path / "p0", psi_p=0.0, seed=0)
    data = load(tmp_path / "p0")
    src = json.load(open(FIXTURE_ANNOTATIONS))
    sizes = {(im["width"], im["height"]) for im in src["images"]}
    for im in data["images"]:
        assert (im["width"], im["height"]) in sizes
        assert cv2.imread(str(tmp_path / "p0" / "images" / im["file_name"])).shape[:2] == (im["height"], im["width"])


def test_categories_other_than_selected_keep_their_size(tmp_path):
    """Left in place on an inpainted image: each label is its source mask, less what the
    persons' holes and pastes cover; one that no person comes near keeps its box."""
    run(tmp_path / "cat", categories=(1,), psi_p=1.0, seed=0)
    raw = json.load(open(FIXTURE_ANNOTATIONS))
    src = {a["id"]: a for a in raw["annotations"]}
    images = {im["id"]: im for im in raw["images"]}
    persons = [a for a in raw["annotations"] if a["category_id"] == 1]
    kept = [a for a in load(tmp_path / "cat")["annotations"] if src[a["source_ann_id"]]["category_id"] != 1]
    assert kept
    untouched = 0
    for a in kept:
        s = src[a["source_ann_id"]]
        im = images[a["image_id"]]
        assert a["category_id"] == s["category_id"]
        out = mask_utils.decode(ann_to_rle(a["segmentation"], im["height"], im["width"]))
        source = mask_utils.decode(ann_to_rle(s["segmentation"], im["height"], im["width"]))
        assert out.sum() > 0 and not (out & (1 - source)).any()  # never beyond its own pixels
        x, y, w, h = s["bbox"]
        near = any(p["image_id"] == a["image_id"] and p["bbox"][0] - 20 < x + w and x < p["bbox"][0] + p["bbox"][2] + 20
                   and p["bbox"][1] - 20 < y + h and y < p["bbox"][1] + p["bbox"][3] + 20 for p in persons)
        if not near and s["area"] > 400:
            untouched += 1
            assert np.abs(np.subtract(a["bbox"], s["bbox"])).max() <= 1.0
            assert instance_size(*a["bbox"][2:]) == pytest.approx(instance_size(*s["bbox"][2:]), rel=0.02)
    assert untouched


def test_dry_run_plans_without_pixels(tmp_path):
    report = run(tmp_path / "dry", dry_run=True)
    assert not os.path.exists(tmp_path / "dry" / "images")
    assert report["parameters"]["dry_run"] and report["jsd"]["after"] is not None
    assert COCO(str(tmp_path / "dry" / "annotations.json")).getAnnIds()


@pytest.mark.parametrize("mode", ["msm", "rsm"])
def test_image_level_resizes_image_and_boxes_by_one_factor(tmp_path, mode):
    report = run(tmp_path / mode, level="image", mode=mode, seed=0)
    assert report["level"] == "image"
    src = json.load(open(FIXTURE_ANNOTATIONS))
    src_images = {im["id"]: im for im in src["images"]}
    src_anns = {a["id"]: a for a in src["annotations"]}
    data = load(tmp_path / mode)
    for im in data["images"]:
        s_im = src_images[im["id"]]
        sx, sy = im["width"] / s_im["width"], im["height"] / s_im["height"]
        assert sx == pytest.approx(sy, rel=0.02) and 0.1 - 0.01 <= sx <= 1.0 + 1e-9
        out = cv2.imread(str(tmp_path / mode / "images" / im["file_name"]))
        expected = cv2.resize(cv2.imread(os.path.join(FIXTURE_IMAGES, s_im["file_name"])),
                              (im["width"], im["height"]), interpolation=cv2.INTER_AREA)
        # JPEG re-encoding only (a wrong factor or a shift of one pixel gives 10+)
        assert np.abs(out.astype(float) - expected).mean() < 6
        for a in (a for a in data["annotations"] if a["image_id"] == im["id"]):
            b = src_anns[a["source_ann_id"]]["bbox"]
            assert a["bbox"][2] == pytest.approx(b[2] * sx, abs=0.01)
            assert a["bbox"][0] == pytest.approx(max(0, b[0]) * sx, abs=0.01)
            assert a["bbox"][2] >= MIN_SIDE and a["bbox"][3] >= MIN_SIDE
    c = report["counts"]
    assert c["crowd_kept"] > 0 and c["crowd_erased"] == 0
    assert c["instances_in"] == c["instances_out"] + sum(c["dropped"].values())


@pytest.mark.parametrize("mode", ["cp", "cp+"])
def test_copy_paste_keeps_instance_sizes_on_new_backgrounds(tmp_path, mode):
    report = run(tmp_path / mode, mode=mode, seed=0)
    n = report["counts"]["images_transformed"]
    assert report["backgrounds"] == {"inpaint": 0, "new": n}
    src = {a["id"]: a for a in json.load(open(FIXTURE_ANNOTATIONS))["annotations"]}
    data = load(tmp_path / mode)
    pasted = [a for a in data["annotations"] if not a.get("from_background")]
    kept = [a for a in data["annotations"] if a.get("from_background")]
    big = [a for a in pasted if src[a["source_ann_id"]]["area"] > 500]
    assert big
    ratios = [instance_size(*a["bbox"][2:]) / instance_size(*src[a["source_ann_id"]]["bbox"][2:]) for a in big]
    assert np.median(ratios) == pytest.approx(1.0, abs=0.05)
    c = report["counts"]
    assert c["background_labels_kept"] == len(kept)
    # background labels are copies of other images' annotations: counted apart from instances_out
    assert c["instances_in"] == c["instances_out"] + sum(c["dropped"].values())
    assert c["instances_out"] == len(pasted)
    if mode == "cp":
        assert not kept
    else:
        assert kept
        images = {im["id"]: im for im in data["images"]}
        for a in kept:
            s = src[a["source_ann_id"]]
            im = images[a["image_id"]]
            m = mask_utils.decode(ann_to_rle(a["segmentation"], im["height"], im["width"]))
            # only loses pixels to the pastes (its source mask, on the same background image)
            before = mask_utils.decode(ann_to_rle(s["segmentation"], im["height"], im["width"]))
            assert 0 < a["area"] == m.sum() and not (m & ~before.astype(bool)).any()
            ys, xs = np.nonzero(m)
            assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        # at least one background label lost pixels under a pasted instance
        assert any(a["area"] < 0.98 * src[a["source_ann_id"]]["area"] for a in kept)

