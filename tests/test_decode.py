"""Decode only what is used: an instance cut from a source decoded at 1/2, 1/4 or 1/8 (libjpeg's DCT
scaling) lands where and as the one cut from the full decode, when its working scale allows the step."""

import json
import os

import cv2
import numpy as np
import pytest

from smplus.coco import decode_image, is_jpeg
from smplus.render import DECODE_STEPS, alpha_box, decode_step
from smplus.separate import place, separate, working_scale

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES


def _source(ann_id, rows=None):
    """(JPEG q95 bytes of the annotation's image, cut to its first `rows` rows if given; the annotation)."""
    with open(FIXTURE_ANNOTATIONS) as f:
        raw = json.load(f)
    ann = next(a for a in raw["annotations"] if a["id"] == ann_id)
    image = next(i for i in raw["images"] if i["id"] == ann["image_id"])
    pixels = cv2.imread(os.path.join(FIXTURE_IMAGES, image["file_name"]))
    if rows is not None:
        pixels = pixels[:rows]
    ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return data.ravel(), ann


def _composite(p, shape=(200, 200)):
    out = np.full(shape + (3,), 128.0, np.float32)
    h, w = p.alpha.shape
    out[p.y0:p.y0 + h, p.x0:p.x0 + w] = out[p.y0:p.y0 + h, p.x0:p.x0 + w] * (1 - p.alpha[..., None]) + p.color
    return out


CASES = ([(425370, None, k) for k in DECODE_STEPS]    # a standing person, 394 px, inside the frame
         + [(425370, 300, k) for k in DECODE_STEPS]   # the same cut by the bottom frame (300 = 4 mod 8)
         + [(1098464, None, k) for k in (2, 4)])      # 222 px on the left frame: matted at 32, 1/4 of it at most


@pytest.mark.parametrize("ann_id, rows, step", CASES)
def test_an_instance_from_a_reduced_decode_lands_as_from_the_full_one(ann_id, rows, step):
    data, ann = _source(ann_id, rows)
    full = decode_image(data, "x.jpg")
    reduced = decode_image(data, "x.jpg", step)
    H, W = full.shape[:2]
    assert reduced.shape[:2] == (-(-H // step), -(-W // step))
    x, y, w, h = ann["bbox"]
    box = (x, y, w, min(y + h, H) - y)
    scale = 0.04  # ~16 px tall: matted at 32 px (WORK_MIN), under 1/8 of the source
    assert step * working_scale(max(box[2], box[3]), scale) <= 1.0
    src_point = (x + w / 2, H if rows else y + h / 2)  # a cut object scales about its point on the frame
    a = place(separate(full, ann["segmentation"], box, scale), scale, src_point, (100.0, 100.0))
    b = place(separate(reduced, ann["segmentation"], box, scale, step, (H, W)), scale, src_point, (100.0, 100.0))
    box_a, box_b = alpha_box(a.alpha), alpha_box(b.alpha)
    assert box_a is not None and box_b is not None
    edges = lambda bx, p: np.array([p.x0 + bx[0], p.y0 + bx[1], p.x0 + bx[0] + bx[2], p.y0 + bx[1] + bx[3]])  # noqa: E731
    assert np.abs(edges(box_a, a) - edges(box_b, b)).max() <= 0.2
    covered = (_composite(a) != 128).any(axis=2) | (_composite(b) != 128).any(axis=2)
    assert np.abs(_composite(a) - _composite(b))[covered].mean() <= 3.0  # JPEG q95 noise is ~2.5 (0-255)


def test_decode_step_only_for_a_new_background_and_only_as_far_as_every_instance_allows():
    from types import SimpleNamespace as Plan

    anns = {1: {"id": 1, "bbox": [10, 10, 400, 300]}, 2: {"id": 2, "bbox": [10, 10, 40, 30]}}

    def ip(ann_id, scale):
        return Plan(ann_id=ann_id, scale=scale)

    assert decode_step(Plan(background="new", instances=[ip(1, 0.03)]), anns, 640, 480) == 8  # matted at 32 of 400 px
    assert decode_step(Plan(background="new", instances=[ip(1, 0.1)]), anns, 640, 480) == 2   # 120 of 400 px
    assert decode_step(Plan(background="inpaint", instances=[ip(1, 0.03)]), anns, 640, 480) == 1  # its pixels are the background
    assert decode_step(Plan(background="new", instances=[ip(1, 0.03), ip(2, 0.1)]), anns, 640, 480) == 1  # a small one needs them all
    assert decode_step(Plan(background="new", instances=[ip(1, 0.5)]), anns, 640, 480) == 1  # pasted at its working scale: source px


def test_only_jpeg_bytes_are_dct_scaled():
    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    ok, jpg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    assert is_jpeg(jpg.ravel()) and not is_jpeg(png.ravel()) and not is_jpeg(np.zeros(0, np.uint8))


@pytest.fixture(scope="module")
def large_objects(tmp_path_factory):
    """The fixture's images keeping only their objects over 150 px, and a target of 4-12 px persons:
    every image goes onto another (PSI p=0) from a source decoded at 1/2 to 1/8."""
    tmp = tmp_path_factory.mktemp("large")
    with open(FIXTURE_ANNOTATIONS) as f:
        raw = json.load(f)
    raw["annotations"] = [a for a in raw["annotations"] if not a["iscrowd"] and max(a["bbox"][2:]) > 150]
    source = tmp / "source.json"
    source.write_text(json.dumps(raw))
    anns = [{"id": i, "image_id": 0, "category_id": 1, "bbox": [10, 10, s, s], "area": s * s, "iscrowd": 0,
             "segmentation": [[10, 10, 10 + s, 10, 10 + s, 10 + s, 10, 10 + s]]} for i, s in enumerate(range(4, 13))]
    target = tmp / "target.json"
    target.write_text(json.dumps({"images": [{"id": 0, "file_name": "x.jpg", "width": 640, "height": 480}],
                                  "annotations": anns, "categories": [{"id": 1, "name": "person"}]}))
    return str(source), str(target), tmp


def _run(source, target, out, workers=1):
    from smplus.pipeline import RunOptions, transform
    from smplus.plan import TransformOptions

    transform(source, FIXTURE_IMAGES, str(out), target, options=TransformOptions(psi_p=0.0, fill="telea"),
              run=RunOptions(workers=workers, progress=False))
    with open(os.path.join(out, "annotations.json")) as f:
        return json.load(f)


def test_reduced_decodes_render_as_full_ones_and_whatever_the_workers(large_objects, monkeypatch):
    import smplus.render
    import smplus.task

    source, target, tmp = large_objects
    steps, real = [], smplus.task._decode_source
    monkeypatch.setattr(smplus.task, "_decode_source", lambda d, im, step: (steps.append(step), real(d, im, step))[1])
    reduced = _run(source, target, tmp / "reduced")
    assert sorted(set(steps)) != [1] and len(steps) >= 4  # the run did decode sources at reduced size
    monkeypatch.setattr(smplus.render, "decode_step", lambda *a: 1)
    full = _run(source, target, tmp / "full")
    monkeypatch.undo()
    # the same output, one worker or two (each worker decodes as the plan says)
    two = _run(source, target, tmp / "two", workers=2)
    assert two == reduced
    for name in os.listdir(tmp / "reduced" / "images"):
        assert (tmp / "reduced" / "images" / name).read_bytes() == (tmp / "two" / "images" / name).read_bytes()
    # against the full decode: every box within 0.25 px (measured: 0.11), whole images within 0.1 of 255 (0.03)
    by_source = {a["source_ann_id"]: a["bbox"] for a in full["annotations"]}
    assert len(reduced["annotations"]) == len(full["annotations"]) >= 5
    for a in reduced["annotations"]:
        assert np.abs(np.array(a["bbox"]) - by_source[a["source_ann_id"]]).max() <= 0.25
    for name in os.listdir(tmp / "full" / "images"):
        x, y = (cv2.imread(str(tmp / d / "images" / name)).astype(float) for d in ("reduced", "full"))
        assert np.abs(x - y).mean() <= 0.1
