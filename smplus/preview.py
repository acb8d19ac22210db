"""A quick look at a run: source images beside their outputs, output boxes drawn."""

from __future__ import annotations

import os

import cv2
import numpy as np

from .coco import read_image, read_json
from .errors import SmplusError

TILE = 320  # px, the longer side of each picture in the grid


def _fit(img: np.ndarray, scale: float) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, int(round(w * scale))), max(1, int(round(h * scale)))),
                      interpolation=cv2.INTER_AREA)


def _pad(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.copyMakeBorder(img, 0, TILE - h, 0, TILE - w, cv2.BORDER_CONSTANT, value=(32, 32, 32))


def make_preview(out_dir: str, n: int = 8) -> np.ndarray:
    """A grid: one row per image, source left, output right (boxes in green, at the output's scale)."""
    report = read_json(os.path.join(out_dir, "report.json"), "report")
    data = read_json(os.path.join(out_dir, "annotations.json"), "output annotations")
    try:
        params = report["parameters"]
        source = read_json(params["source"], "source annotations")
        images_dir = params["images"]
    except (KeyError, TypeError):
        raise SmplusError(f"{out_dir}/report.json has no source parameters; is {out_dir} an smplus output?") from None
    if params.get("dry_run"):
        raise SmplusError(f"{out_dir} is a dry run: there are no images to preview")
    src_images = {im["id"]: im for im in source["images"]}
    by_image = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    # the images with the most annotations show the most
    chosen = sorted(data["images"], key=lambda im: -len(by_image.get(im["id"], [])))[:n]
    if not chosen:
        raise SmplusError(f"{out_dir} has no images")
    rows = []
    for im in chosen:
        src = read_image(os.path.join(images_dir, src_images[im["id"]]["file_name"]))
        out = read_image(os.path.join(out_dir, "images", im["file_name"]))
        s_src = TILE / max(src.shape[:2])
        s_out = TILE / max(out.shape[:2]) * max(out.shape[:2]) / max(src.shape[:2])  # same scale as the source
        s_out = min(s_out, TILE / max(out.shape[:2]))
        out_small = _fit(out, s_out)
        for a in by_image.get(im["id"], []):
            x, y, w, h = (v * s_out for v in a["bbox"])
            cv2.rectangle(out_small, (int(x), int(y)), (int(np.ceil(x + w)), int(np.ceil(y + h))), (0, 255, 0), 1)
        rows.append(np.hstack([_pad(_fit(src, s_src)), np.full((TILE, 8, 3), 255, np.uint8), _pad(out_small)]))
    return np.vstack([np.vstack([r, np.full((8, r.shape[1], 3), 255, np.uint8)]) for r in rows])


def write_preview(out_dir: str, path: str, n: int = 8) -> None:
    grid = make_preview(out_dir, n)
    ok, buf = cv2.imencode(".png", grid)
    if not ok:
        raise SmplusError(f"cannot encode the preview as PNG: {path}")
    with open(path, "wb") as f:
        f.write(buf.tobytes())
