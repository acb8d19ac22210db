"""Export an smplus output (or any COCO set with masks) in ultralytics' YOLO layout.

    DIR/images/<split>/<file_name>     hard links to OUT's images (copies across file systems)
    DIR/labels/<split>/<stem>.txt      one line per non-crowd annotation
    DIR/data.yaml                      path, split folders, class names

Class ids are contiguous 0..N-1 in the order of the COCO category ids (ultralytics
requires that); names are written in that order. Crowd annotations have no YOLO
form and are skipped (counted).

Boxes: `class cx cy w h`, normalised, straight from smplus's `bbox` (written with 7
decimals: far below 0.5 px at any image size).

Segments (--segments): `class x1 y1 x2 y2 ...`, traced from the mask on the pixel
corners, not through pixel centres, so the polygon's box is the mask's box (tracing
centres shrinks a 3 px box to 2 px). A mask of several parts stays one label: the
parts' outlines are joined by zero-width bridges between their nearest points (as
ultralytics' own converter does), so no part is dropped and no area is added.
Holes are not represented (the YOLO format has none).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from typing import List

import numpy as np

from .coco import ann_to_rle, decode_rle, read_json
from .errors import SmplusError, UsageError


@dataclass
class ExportResult:
    images: int = 0
    labels: int = 0
    crowd_skipped: int = 0
    multi_part: int = 0        # masks of several parts, joined into one polygon
    boxes_as_segments: int = 0  # no usable mask: the box written as a polygon
    names: List[str] = field(default_factory=list)


def export_yolo(annotations: str, images_dir: str, to_dir: str, segments: bool = False, split: str = "train") -> ExportResult:
    """Write `annotations` (COCO, its images in `images_dir`) into `to_dir` in ultralytics' layout."""
    if not split or "/" in split or split.startswith("."):
        raise UsageError(f"--split must be a plain folder name such as train or val, got {split!r}")
    data = read_json(annotations, "annotations")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise SmplusError(f"{annotations} is not a COCO annotation file (no 'images' list)")
    img_out, lab_out = os.path.join(to_dir, "images", split), os.path.join(to_dir, "labels", split)
    for d in (img_out, lab_out):
        if os.path.isdir(d) and os.listdir(d):
            raise SmplusError(f"{d} already holds files; export into an empty folder or choose another --split")
    cats = sorted(data.get("categories", []), key=lambda c: c["id"])
    cls = {c["id"]: i for i, c in enumerate(cats)}
    result = ExportResult(names=[c["name"] for c in cats])
    by_image = {}
    for a in data.get("annotations", []):
        by_image.setdefault(a["image_id"], []).append(a)
    for im in data["images"]:
        src = os.path.join(images_dir, im["file_name"])
        if not os.path.isfile(src):
            raise SmplusError(f"image {src} (file_name of image {im['id']} in {annotations}) not found")
        dst = os.path.join(img_out, im["file_name"])
        _link_or_copy(src, dst)
        lines = []
        for a in by_image.get(im["id"], []):
            if a.get("iscrowd"):
                result.crowd_skipped += 1
                continue
            if a["category_id"] not in cls:
                raise SmplusError(f"annotation {a.get('id')} in {annotations}: category_id {a['category_id']} "
                                  "is not in its categories")
            lines.append(_label_line(cls[a["category_id"]], a, im, segments, result))
        label = os.path.join(lab_out, os.path.splitext(im["file_name"])[0] + ".txt")
        os.makedirs(os.path.dirname(label), exist_ok=True)
        with open(label, "w") as f:
            f.write("".join(line + "\n" for line in lines))
        result.images += 1
        result.labels += len(lines)
    _write_data_yaml(to_dir, split, result.names)
    return result


def _link_or_copy(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _label_line(c: int, ann: dict, im: dict, segments: bool, result: ExportResult) -> str:
    w, h = im["width"], im["height"]
    if segments:
        rle = ann_to_rle(ann.get("segmentation"), h, w)
        mask = decode_rle(rle) if rle is not None else None
        if mask is not None and mask.any():
            parts = corner_outlines(mask)
            if len(parts) > 1:
                result.multi_part += 1
            pts = join_parts(parts)
        else:
            result.boxes_as_segments += 1
            x, y, bw, bh = ann["bbox"]
            pts = np.array([[x, y], [x + bw, y], [x + bw, y + bh], [x, y + bh]], np.float64)
        norm = np.clip(pts / [w, h], 0.0, 1.0)
        return f"{c} " + " ".join(f"{v:.7f}" for v in norm.ravel())
    x, y, bw, bh = ann["bbox"]
    return f"{c} {(x + bw / 2) / w:.7f} {(y + bh / 2) / h:.7f} {bw / w:.7f} {bh / h:.7f}"


def corner_outlines(mask: np.ndarray) -> List[np.ndarray]:
    """Outer outlines of each part of a binary mask, on the pixel-corner lattice (x, y floats).

    A corner is inside when any of its four pixels is; tracing that lattice puts the
    outline on pixel edges, so a part's extreme points are its pixels' outer edges.
    Parts are as OpenCV's 8-connected contours see them; largest first.
    """
    import cv2

    ys, xs = np.nonzero(mask)
    y0, x0 = ys.min(), xs.min()
    crop = mask[y0:ys.max() + 1, x0:xs.max() + 1].astype(np.uint8)
    p = np.pad(crop, 1)
    corners = (p[:-1, :-1] | p[1:, :-1] | p[:-1, 1:] | p[1:, 1:]).astype(np.uint8)  # corner (i, j) at x=j, y=i
    contours, _ = cv2.findContours(corners, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contours = sorted(contours, key=lambda c: -cv2.contourArea(c) - len(c))
    return [c.reshape(-1, 2).astype(np.float64) + [x0, y0] for c in contours]


def join_parts(parts: List[np.ndarray]) -> np.ndarray:
    """One closed polygon through all parts: each next part (the nearest to those joined) is entered
    from its nearest point and left back through the same bridge, which has no width."""
    path = parts[0]
    for part in parts[1:]:
        d = ((path[:, None, :] - part[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(np.argmin(d), d.shape)
        loop = np.concatenate([np.roll(part, -j, axis=0), part[j:j + 1]])  # around the part, back to its entry
        path = np.concatenate([path[:i + 1], loop, path[i:]])
    return path


def _write_data_yaml(to_dir: str, split: str, names: List[str]) -> None:
    """data.yaml for ultralytics (JSON strings are valid YAML scalars). Both train and val name this
    split; a second export with --split val fills the val folder, then edit `val:`."""
    path = os.path.join(to_dir, "data.yaml")
    lines = [f"path: {json.dumps(os.path.abspath(to_dir))}",
             f"train: images/{split}",
             f"val: images/{split}",
             "names:"] + [f"  {i}: {json.dumps(n)}" for i, n in enumerate(names)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
