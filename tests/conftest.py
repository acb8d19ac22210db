"""Shared fixtures and helpers (imported as `from conftest import ...`; no test module
imports another): real COCO val2017 images copied into tests/fixtures/coco
(polygon, uncompressed crowd RLE and compressed RLE masks; see
scripts/make_fixtures.py), and a target in TinyPerson's JSON layout."""

import contextlib
import copy
import hashlib
import json
import os
import shutil
import sqlite3

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from smplus.coco import ann_to_rle
from smplus.pipeline import RunOptions, transform
from smplus.plan import TransformOptions

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)  # the repository
FIXTURE = os.path.join(HERE, "fixtures", "coco")
FIXTURE_ANNOTATIONS = os.path.join(FIXTURE, "annotations.json")
FIXTURE_IMAGES = os.path.join(FIXTURE, "images")
SHARED = os.path.join(HERE, "..", "..", "shared", "data")


@pytest.fixture
def coco_raw():
    with open(FIXTURE_ANNOTATIONS) as f:
        return json.load(f)


@pytest.fixture
def tinyperson_target(tmp_path):
    """A small target in TinyPerson's layout, ignore/uncertain boxes included."""
    anns = []
    sizes = [4, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 20, 22, 25, 30, 35, 40, 60, 90]
    for i, s in enumerate(sizes):
        w, h = s * 0.8, s / 0.8
        anns.append({"id": i, "image_id": 0, "category_id": 1 + i % 2, "bbox": [10, 10, w, h],
                     "area": w * h, "iscrowd": 0, "ignore": False, "uncertain": False,
                     "logo": False, "in_dense_image": False,
                     "segmentation": [[10, 10, 10 + w, 10, 10 + w, 10 + h, 10, 10 + h]]})
    # Boxes that must be left out of the histogram.
    for j, flag in enumerate(["ignore", "uncertain", "iscrowd"]):
        anns.append({"id": 100 + j, "image_id": 0, "category_id": 1, "bbox": [0, 0, 500, 500],
                     "area": 250000, "iscrowd": 1 if flag == "iscrowd" else 0,
                     "ignore": flag == "ignore", "uncertain": flag == "uncertain"})
    data = {"type": "instance",
            "images": [{"file_name": "labeled_images/x.jpg", "height": 1080, "width": 1920, "id": 0}],
            "annotations": anns,
            "categories": [{"id": 1, "name": "sea_person", "supercategory": "person"},
                           {"id": 2, "name": "earth_person", "supercategory": "person"}]}
    path = tmp_path / "tiny_set_train.json"
    path.write_text(json.dumps(data))
    return str(path), sizes


def make_ann(**overrides):
    """A valid COCO person annotation; override any field."""
    ann = {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 400.0,
           "bbox": [10.0, 20.0, 20.0, 20.0],
           "segmentation": [[10.0, 20.0, 30.0, 20.0, 30.0, 40.0, 10.0, 40.0]]}
    ann.update(overrides)
    return ann


def write_coco(tmp_path, raw, name="ann.json"):
    path = tmp_path / name
    path.write_text(json.dumps(raw))
    return str(path)


@pytest.fixture
def copy_raw(coco_raw):
    return lambda: copy.deepcopy(coco_raw)


# ---------------------------------------------------------------- CLI errors (test_bad_input, test_hostile_input, test_reliability)

def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def one_image(tmp_path, **image_overrides):
    """A one-image COCO set from a real fixture image, with its real annotations."""
    raw = json.load(open(FIXTURE_ANNOTATIONS))
    im = next(i for i in raw["images"] if i["file_name"] == "000000404484.jpg")
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    shutil.copy(os.path.join(FIXTURE_IMAGES, im["file_name"]), images / im["file_name"])
    anns = [a for a in raw["annotations"] if a["image_id"] == im["id"]]
    return {"images": [{**im, **image_overrides}], "annotations": anns, "categories": raw["categories"]}, images


def assert_one_line(result, code, *needles):
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert "Traceback" not in result.output
    msg = lines[-1]
    for n in needles:
        assert n in msg, (n, msg)
    if code == 1:
        assert len(lines) == 1 and msg.startswith("Error: ")
    return msg


# ---------------------------------------------------------------- runs and their output (test_resume, test_ray, test_scaleout)

def larger_raw(tmp_path, copies=5):
    """The fixture images repeated (new ids and names; linked into TMP/images): (raw, images folder)."""
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
    return {**raw, "images": images, "annotations": anns}, images_dir


def larger_set(tmp_path, copies=5):
    """The fixture images repeated, written as TMP/ann.json, so a run takes a few seconds: (source, images)."""
    raw, images_dir = larger_raw(tmp_path, copies)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(raw))
    return str(path), str(images_dir)


def tree(out):
    """Every file of a dataset (annotations.json, report.json, images), not the journal."""
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


# ---------------------------------------------------------------- two crafted images (test_quality, test_scene)

SMALL = "000000404484.jpg"   # 320 x 240
OTHER = "000000343937.jpg"   # 640 x 428


def crafted(tmp_path, anns, other_anns=()):
    """Two real images: image 1 (320x240) with `anns`, image 2 (640x428) with `other_anns`."""
    images = tmp_path / "images"
    images.mkdir()
    for name in (SMALL, OTHER):
        shutil.copy(os.path.join(FIXTURE_IMAGES, name), images / name)
    raw = {"images": [{"id": 1, "file_name": SMALL, "width": 320, "height": 240},
                      {"id": 2, "file_name": OTHER, "width": 640, "height": 428}],
           "annotations": [make_ann(id=i + 1, image_id=1, **a) for i, a in enumerate(anns)]
           + [make_ann(id=100 + i, image_id=2, **a) for i, a in enumerate(other_anns)],
           "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(raw))
    return str(path), str(images)


def rect(x0, y0, x1, y1, **kw):
    return {"bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
            "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]], **kw}


def run(source, images, out, target, **options):
    report = transform(source, images, str(out), target=target, options=TransformOptions(**options),
                       run=RunOptions(progress=False)).report
    with open(os.path.join(out, "annotations.json")) as f:
        return report, json.load(f)


def read(out, name):
    return cv2.imread(os.path.join(out, "images", name)).astype(np.float32)


def mask_of(a, im):
    return mask_utils.decode(ann_to_rle(a["segmentation"], im["height"], im["width"]))
