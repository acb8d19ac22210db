"""Pre-training data a detector can trust (issue 9): provenance, no failed fills,
cut instances kept on the frame, a clean background pool, full-resolution chroma."""

import io
import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image, JpegImagePlugin
from pycocotools.coco import COCO

from smplus.background import inpaint_holes
from smplus.coco import encode_image, index_coco
from smplus.plan import CLEAN_POOL_MIN_SHARE, DEFAULT_MAX_HOLE, pool_images

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, OTHER, SMALL, crafted, make_ann, mask_of, read, rect, run


def test_inpainting_without_a_known_pixel_returns_nothing():
    image = np.full((120, 160, 3), 90, np.uint8)
    assert inpaint_holes(image, np.ones((120, 160), np.uint8)) is None
    assert inpaint_holes(image, np.ones((120, 160), np.uint8), scale=1.0) is None
    almost = np.ones((120, 160), np.uint8)
    almost[:2, :2] = 0  # a corner left at full resolution: still nothing at 1/4 (the hole is dilated there)
    assert inpaint_holes(image, almost) is None


@pytest.mark.parametrize("anns, max_hole, reason", [
    ([rect(0, 0, 320, 240, category_id=2), rect(150, 100, 180, 160)], 1.0, "no_known_pixel"),  # frame-filling
    ([rect(0, 0, 320, 240, category_id=2), rect(150, 100, 180, 160)], 0.6, "hole_above_max"),
    ([rect(40, 30, 280, 210)], 0.6, "hole_above_max"),  # 70 % once dilated
])
def test_unfillable_holes_take_a_new_background_never_the_blurred_source(tmp_path, tinyperson_target,
                                                                          anns, max_hole, reason):
    source, images = crafted(tmp_path, anns, [rect(300, 200, 340, 300)])
    # pool all: the other image's person stays (not erased), so the new background is that image as it is
    report, data = run(source, images, tmp_path / "out", tinyperson_target[0], background="inpaint",
                       max_hole=max_hole, background_pool="all")
    im = next(i for i in data["images"] if i["id"] == 1)
    assert im["smplus"] == {"background": "new", "background_image_id": 2, "hole_fraction": 0.0, "fallback": reason,
                            "erased": 0}
    assert (im["width"], im["height"]) == (640, 428)  # the new background's frame
    assert report["provenance"]["fallbacks"] == {reason: 1}
    out = read(tmp_path / "out", SMALL)
    other = cv2.imread(os.path.join(images, OTHER)).astype(np.float32)
    pasted = np.zeros(out.shape[:2], bool)
    for a in data["annotations"]:
        if a["image_id"] == 1:
            pasted |= mask_of(a, im).astype(bool)
    assert np.abs(out - other)[~pasted].mean() < 3  # the other image, JPEG-encoded again
    if len(anns) == 1:  # a larger --max-hole inpaints it
        _, data = run(source, images, tmp_path / "max", tinyperson_target[0], background="inpaint", max_hole=0.95,
                      background_pool="all")
        im = next(i for i in data["images"] if i["id"] == 1)
        assert im["smplus"]["background"] == "inpaint" and 0.6 < im["smplus"]["hole_fraction"] <= 0.95


@pytest.mark.parametrize("band", [rect(0, 60, 320, 120),   # cut by the left and right edges
                                  rect(3, 60, 317, 120)])  # spans 98 % of the width: a polygon short of the frame
def test_instance_cut_by_both_opposite_edges_is_dropped_and_erased(tmp_path, tinyperson_target, band):
    source, images = crafted(tmp_path, [band, rect(150, 150, 180, 220)])
    report, data = run(source, images, tmp_path / "out", tinyperson_target[0], background="inpaint")
    assert report["counts"]["dropped"] == {"cut_both_edges": 1}
    assert {a["source_ann_id"] for a in data["annotations"]} == {2}
    src = cv2.imread(os.path.join(images, SMALL)).astype(np.float32)
    band = read(tmp_path / "out", SMALL)[70:110, 20:300]
    assert np.abs(band - src[70:110, 20:300]).mean() > 10  # the band is inpainted, not left unlabelled


@pytest.mark.parametrize("psi_p", [1.0, 0.0])  # own background inpainted; a new (larger) background
def test_person_cut_by_the_left_edge_stays_on_the_left_edge(tmp_path, tinyperson_target, psi_p):
    source, images = crafted(tmp_path, [rect(0, 40, 60, 200)], [rect(300, 200, 340, 300)])
    _, data = run(source, images, tmp_path / "out", tinyperson_target[0], psi_p=psi_p)
    im = next(i for i in data["images"] if i["id"] == 1)
    assert im["smplus"]["background"] == ("inpaint" if psi_p == 1.0 else "new")
    (a,) = [a for a in data["annotations"] if a["image_id"] == 1]
    x, y, w, h = a["bbox"]
    assert w < 30 and h < 80  # scale-matched to a small size...
    m = mask_of(a, im)
    ys, xs = np.nonzero(m)
    assert xs.min() == 0 and x < 0.5  # ...and still cut by the left edge
    # the left-edge point of the source (0, 120) maps to (0, 120 * H_out / 240): the box is about it
    cy = 120 * im["height"] / 240
    assert y < cy < y + h and abs((cy - y) / h - (120 - 40) / 160) < 0.05


def test_one_pixel_wide_limb_renders_with_sane_mask_and_label(tmp_path, tinyperson_target):
    body = [100, 60, 140, 60, 140, 140, 100, 140]
    limb = [140, 100, 141, 100, 141, 200, 140, 200]  # a 1 px wide arm, 100 px long
    ann = {"bbox": [100, 60, 41, 140], "area": 3300, "segmentation": [body, limb]}
    source, images = crafted(tmp_path, [ann], [rect(300, 200, 340, 300)])
    path = os.path.join(images, SMALL)
    image = cv2.imread(path)
    image[100:200, 140] = (20, 20, 160)  # the arm is in the pixels too, so matting keeps it
    cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, 100, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                              cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    for mode in ("cp", "msm"):
        _, data = run(source, images, tmp_path / mode, tinyperson_target[0], mode=mode, psi_p=1.0)
        im = next(i for i in data["images"] if i["id"] == 1)
        (a,) = [a for a in data["annotations"] if a["image_id"] == 1]
        assert a["category_id"] == 1 and a["iscrowd"] == 0
        m = mask_of(a, im)
        assert a["area"] == m.sum() > 0
        ys, xs = np.nonzero(m)
        x, y, w, h = a["bbox"]
        assert x <= xs.min() + 1 and xs.max() + 1 <= x + w + 1 and y <= ys.min() + 1 and ys.max() + 1 <= y + h + 1
        # Whatever of the arm is pasted is labelled: no arm-coloured pixel beside the mask,
        # in the window where the whole instance (arm below the body) would land.
        out = cv2.imread(os.path.join(tmp_path, mode, "images", SMALL)).astype(int)
        arm = np.abs(out - (20, 20, 160)).max(axis=2) < 60
        if im["smplus"]["background"] == "new":  # not the new background's own red pixels
            arm &= np.abs(cv2.imread(os.path.join(images, OTHER)).astype(int) - (20, 20, 160)).max(axis=2) >= 60
        window = np.zeros_like(m)
        window[max(0, int(y) - 3):int(y + 2 * h) + 3, max(0, int(x) - 3):int(x + w) + 3] = 1
        assert not (arm & (window > 0) & (cv2.dilate(m, np.ones((3, 3), np.uint8)) == 0)).any(), mode


PAINT = (20, 230, 20)


def test_clean_pool_erases_the_persons_of_a_new_background(tmp_path, tinyperson_target):
    source, images = crafted(tmp_path, [rect(100, 60, 140, 180)], [rect(300, 200, 340, 300)])
    # The background's "person" is a box on a photo (over part of a real person): painted in a colour found
    # nowhere else, so its erasure shows in the pixels. Unpainted, a texture fill that rebuilds the photo
    # well (the trousers continued into the box) left half of it within 12 of the original.
    path = os.path.join(images, OTHER)
    painted = cv2.imread(path)
    painted[200:300, 300:340] = PAINT
    cv2.imwrite(path, painted, [cv2.IMWRITE_JPEG_QUALITY, 95])
    report, data = run(source, images, tmp_path / "out", tinyperson_target[0], psi_p=0.0)
    assert report["parameters"]["background_pool"] == "clean"  # the default
    for im in data["images"]:  # each is the other's new background, its person erased
        p = im["smplus"]
        assert p["background"] == "new" and p["erased"] == 1
        assert p["hole_fraction"] > 0.01  # the erased share (the person, dilated)
    assert report["counts"]["background_objects_erased"] == 2
    assert report["provenance"]["background_pool"]["unlabelled_matched_on_new"] == 0
    other = cv2.imread(os.path.join(images, OTHER)).astype(np.float32)
    im1 = next(i for i in data["images"] if i["id"] == 1)
    out = read(tmp_path / "out", SMALL)
    labelled = np.zeros(out.shape[:2], bool)
    for a in data["annotations"]:
        if a["image_id"] == 1:
            labelled |= mask_of(a, im1).astype(bool)
    person = np.zeros(out.shape[:2], bool)
    person[200:300, 300:340] = True
    person &= ~labelled
    unchanged = np.abs(out - other).max(axis=2) <= 12
    assert unchanged[person].mean() < 0.5  # erased, not visible
    assert not (np.abs(out - PAINT).sum(axis=2) < 60)[person].any()  # not a pixel of its colour left
    assert unchanged[~person].mean() > 0.95  # the rest of the background is as it was
    # the paper's pool: the person stays, unlabelled, and is counted
    report_all, data_all = run(source, images, tmp_path / "all", tinyperson_target[0], psi_p=0.0,
                               background_pool="all")
    assert report_all["counts"]["background_objects_erased"] == 0
    assert report_all["provenance"]["background_pool"]["unlabelled_matched_on_new"] == 2
    out = read(tmp_path / "all", SMALL)
    assert (np.abs(out - other).max(axis=2) <= 12)[person].mean() > 0.9


def test_clean_pool_at_zero_draws_no_background_with_a_person(tmp_path, tinyperson_target):
    report, data = run(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, tmp_path / "clean", tinyperson_target[0],
                       psi_p=0.0, background_pool="clean", max_background_objects=0.0, categories=(1,))
    src = COCO(FIXTURE_ANNOTATIONS)
    with_person = {a["image_id"] for a in src.dataset["annotations"] if a["category_id"] == 1}
    clean = set(src.getImgIds()) - with_person
    assert len(clean) == 1  # the fixture: one image without a person; the pool takes the least covered other
    news = [im["smplus"] for im in data["images"] if im["smplus"]["background"] == "new"]
    assert len(news) == len(with_person)  # the image without a person is copied
    persons = {i: sum(1 for a in src.dataset["annotations"] if a["image_id"] == i and a["category_id"] == 1
                      and not a["iscrowd"]) for i in src.getImgIds()}
    for p in news:  # drawn from the pool; any person of it erased
        assert p["erased"] == persons[p["background_image_id"]]
    assert {p["background_image_id"] for p in news} & clean
    pool = report["provenance"]["background_pool"]
    assert pool == {"kind": "clean", "size": 2, "unlabelled_matched_on_new": 0, "unlabelled_matched_on_new_over_32px": 0}
    report_all, _ = run(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, tmp_path / "all", tinyperson_target[0],
                        psi_p=0.0, categories=(1,), background_pool="all")
    assert report_all["provenance"]["background_pool"]["unlabelled_matched_on_new"] > 0


def test_clean_pool_takes_the_least_covered_images_when_too_few_are_clean():
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in range(1, 31)]
    anns = [make_ann(id=i, image_id=i, bbox=[0, 0, i, 10], segmentation=[[0, 0, i, 0, i, 10, 0, 10]])
            for i in range(2, 31)]  # image 1 holds no person; the others ever more
    anns.append(make_ann(id=99, image_id=1, category_id=2))
    for a in anns:  # their masks fill their boxes
        a["area"] = a["bbox"][2] * a["bbox"][3]
    ds = index_coco({"images": images, "annotations": anns,
                     "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]})
    need = int(np.ceil(CLEAN_POOL_MIN_SHARE * 30))
    assert pool_images(ds, "clean", {1}, 0.0) == list(range(1, need + 1))
    assert pool_images(ds, "all", {1}) == list(range(1, 31))
    # all categories: image 1's car covers 4 %, more than the persons of images 2 to 4
    assert pool_images(ds, "clean", None, 0.0) == list(range(2, need + 2))
    # a share: the images whose persons cover at most 1 % (i x 10 px of 100 x 100: images 1 to 10)
    assert pool_images(ds, "clean", {1}, 0.01) == list(range(1, 11))


@pytest.mark.slow
def test_every_image_carries_its_provenance_and_coco_readers_load_it(tmp_path, tinyperson_target):
    report, data = run(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, tmp_path / "out", tinyperson_target[0],
                       categories=(1,), psi_p=0.5, seed=0)
    kinds = set()
    for im in data["images"]:
        p = im["smplus"]
        kinds.add(p["background"])
        assert set(p) == {"background", "background_image_id", "hole_fraction", "fallback", "erased"}
        if p["background"] == "copy":
            assert p["background_image_id"] is None and p["hole_fraction"] == 0.0
        elif p["background"] == "inpaint":
            assert p["background_image_id"] == im["id"] and 0 < p["hole_fraction"] <= DEFAULT_MAX_HOLE
        else:
            assert p["background_image_id"] != im["id"] and 0 <= p["hole_fraction"] < 1
    assert kinds == {"copy", "inpaint", "new"}
    assert report["provenance"]["images"] == {k: sum(im["smplus"]["background"] == k for im in data["images"])
                                              for k in ("inpaint", "new", "copy")}
    coco = COCO(str(tmp_path / "out" / "annotations.json"))
    assert coco.getImgIds() and coco.loadImgs(coco.getImgIds()[0])[0]["smplus"]
    assert len(coco.getAnnIds()) == report["counts"]["instances_out"]
    report, _ = run(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, tmp_path / "dry", tinyperson_target[0], categories=(1,))
    assert all("smplus" in im for im in json.load(open(tmp_path / "dry" / "annotations.json"))["images"])


def test_jpeg_is_written_444_at_quality_95_unless_asked_otherwise():
    image = cv2.imread(os.path.join(FIXTURE_IMAGES, SMALL))
    sampling = {s: JpegImagePlugin.get_sampling(Image.open(io.BytesIO(encode_image(image, "x.jpg", 95, s))))
                for s in ("444", "422", "420")}
    assert sampling == {"444": 0, "422": 1, "420": 2}  # PIL's codes for 4:4:4, 4:2:2, 4:2:0
    assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(encode_image(image, "x.jpg")))) == 0
    assert len(encode_image(image, "x.jpg", 50)) < 0.6 * len(encode_image(image, "x.jpg"))
