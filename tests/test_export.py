"""`smplus export yolo`: ultralytics' layout, read back label by label."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from smplus.cli import main
from smplus.coco import ann_to_rle, decode_rle
from smplus.export import corner_outlines, export_yolo, join_parts
from smplus.pipeline import RunOptions, transform

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sm") / "out"
    transform(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, str(out), run=RunOptions(progress=False))
    return str(out)


def _read_back(to_dir, data):
    """label rows per image, as ultralytics maps an image to its label file"""
    rows = {}
    for im in data["images"]:
        label = os.path.join(to_dir, "labels", "train", os.path.splitext(im["file_name"])[0] + ".txt")
        with open(label) as f:
            rows[im["id"]] = [[float(v) for v in line.split()] for line in f.read().splitlines()]
    return rows


@pytest.mark.parametrize("segments", [False, True])
def test_labels_read_back_match_smplus_boxes(out_dir, tmp_path, segments):
    to = tmp_path / "yolo"
    r = CliRunner().invoke(main, ["export", "yolo", out_dir, "--to", str(to)] + (["--segments"] if segments else []))
    assert r.exit_code == 0, r.output
    with open(os.path.join(out_dir, "annotations.json")) as f:
        data = json.load(f)
    cats = sorted(c["id"] for c in data["categories"])
    yaml = (to / "data.yaml").read_text()
    assert "train: images/train" in yaml and f'  0: "{min(data["categories"], key=lambda c: c["id"])["name"]}"' in yaml
    assert f"  {len(cats) - 1}: " in yaml and f"  {len(cats)}: " not in yaml
    rows = _read_back(str(to), data)
    crowd = sum(1 for a in data["annotations"] if a["iscrowd"])
    kept = [a for a in data["annotations"] if not a["iscrowd"]]
    assert sum(len(v) for v in rows.values()) == len(kept) > 0
    assert f"{len(kept)} {'segments' if segments else 'boxes'}" in r.output
    if crowd:
        assert f"{crowd} crowd annotations skipped" in r.output
    images = {im["id"]: im for im in data["images"]}
    worst = 0.0
    for image_id, labels in rows.items():
        im = images[image_id]
        anns = [a for a in kept if a["image_id"] == image_id]
        assert len(labels) == len(anns)
        assert os.path.samefile(to / "images" / "train" / im["file_name"], os.path.join(out_dir, "images", im["file_name"]))
        for a, row in zip(anns, labels):
            assert row[0] == cats.index(a["category_id"])
            if segments:
                pts = np.array(row[1:]).reshape(-1, 2) * [im["width"], im["height"]]
                x0, y0 = pts.min(0)
                x1, y1 = pts.max(0)
            else:
                cx, cy, w, h = np.array(row[1:]) * [im["width"], im["height"], im["width"], im["height"]]
                x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
            x, y, w, h = a["bbox"]
            worst = max(worst, *np.abs([x0 - x, y0 - y, x1 - x - w, y1 - y - h]))
    assert worst <= 0.5, worst


def test_segment_box_is_the_mask_box_and_parts_are_kept():
    mask = np.zeros((20, 30), np.uint8)
    mask[3:6, 4:7] = 1      # 3x3 part
    mask[10, 20] = 1        # a single pixel, apart
    mask[12:15, 25:29] = 1  # 4x3 part
    parts = corner_outlines(mask)
    assert len(parts) == 3
    pts = join_parts(parts)
    assert pts.min(0).tolist() == [4, 3] and pts.max(0).tolist() == [29, 15]  # pixel edges, not centres
    for part in parts:  # every part's outline is in the joined polygon
        assert all(any((p == q).all() for q in pts) for p in part)
    # the joined polygon covers the same pixels: zero-width bridges add no area
    import cv2

    filled = np.zeros((40, 60), np.uint8)
    cv2.fillPoly(filled, [np.round(pts * 2).astype(np.int32)], 1)  # at 2x, pixel (x, y) covers [2x, 2x+2)
    up = cv2.resize(mask, (60, 40), interpolation=cv2.INTER_NEAREST)
    assert (filled[up == 1] == 1).all()


def test_segments_of_real_masks_box_exactly(coco_raw):
    ims = {im["id"]: im for im in coco_raw["images"]}
    n = 0
    for a in coco_raw["annotations"]:
        im = ims[a["image_id"]]
        mask = decode_rle(ann_to_rle(a["segmentation"], im["height"], im["width"]))
        if not mask.any():
            continue
        ys, xs = np.nonzero(mask)
        pts = join_parts(corner_outlines(mask))
        assert pts.min(0).tolist() == [xs.min(), ys.min()] and pts.max(0).tolist() == [xs.max() + 1, ys.max() + 1]
        n += 1
    assert n > 50


def test_export_refuses_a_split_that_holds_files(out_dir, tmp_path):
    export_yolo(os.path.join(out_dir, "annotations.json"), os.path.join(out_dir, "images"), str(tmp_path / "y"))
    r = CliRunner().invoke(main, ["export", "yolo", out_dir, "--to", str(tmp_path / "y")])
    assert r.exit_code == 1
    assert "already holds files; export into an empty folder or choose another --split" in r.output
    r = CliRunner().invoke(main, ["export", "yolo", out_dir, "--to", str(tmp_path / "y"), "--split", "val"])
    assert r.exit_code == 0 and os.path.isdir(tmp_path / "y" / "labels" / "val")


def test_crowd_annotations_are_skipped_and_counted(tmp_path, coco_raw):
    """The fixture source: polygons, uncompressed crowd RLE and compressed RLE masks."""
    crowd = sum(1 for a in coco_raw["annotations"] if a["iscrowd"])
    assert crowd > 0
    r = export_yolo(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, str(tmp_path / "y"), segments=True)
    assert r.crowd_skipped == crowd
    assert r.labels == len(coco_raw["annotations"]) - crowd
    assert r.images == len(coco_raw["images"])
    out = CliRunner().invoke(main, ["export", "yolo", str(tmp_path / "nothing"), "--to", str(tmp_path / "z")])
    assert out.exit_code == 2 and "does not exist" in out.output
