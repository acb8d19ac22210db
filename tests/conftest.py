"""Shared fixtures: real COCO val2017 images copied into tests/fixtures/coco
(polygon, uncompressed crowd RLE and compressed RLE masks; see
scripts/make_fixtures.py), and a target in TinyPerson's JSON layout."""

import copy
import json
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
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
