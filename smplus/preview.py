"""A look at a run, image by image: source, output (boxes drawn), the background
it was made on, and the smallest pasted instances zoomed so a 10 px one can be judged."""

from __future__ import annotations

import os
from typing import Optional, Sequence

import cv2
import numpy as np

from .coco import read_image, read_json
from .errors import SmplusError

TILE = 320    # px, the longer side of each picture in the grid
ZOOM_GRID = 2  # the smallest pasted instances shown per image: a ZOOM_GRID x ZOOM_GRID grid in one tile
GAP = 8
LABEL = 18    # px, the caption band at the top of a tile


def _fit(img: np.ndarray, scale: float, interpolation=cv2.INTER_AREA) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, int(round(w * scale))), max(1, int(round(h * scale)))),
                      interpolation=interpolation)


def _pad(img: np.ndarray, size=(TILE, TILE)) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.copyMakeBorder(img, 0, size[0] - h, 0, size[1] - w, cv2.BORDER_CONSTANT, value=(32, 32, 32))


def _caption(tile: np.ndarray, text: str) -> np.ndarray:
    out = np.vstack([np.full((LABEL, tile.shape[1], 3), 32, np.uint8), tile])
    cv2.putText(out, text, (4, LABEL - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _background_tile(prov: Optional[dict], images_dir: str, src_images: dict) -> np.ndarray:
    """The image the output was made on: another image (new) or a note on the fill."""
    if prov and prov["background"] == "new":
        bg = read_image(os.path.join(images_dir, src_images[prov["background_image_id"]]["file_name"]))
        why = f", fallback: {prov['fallback']}" if prov.get("fallback") else ""
        if prov.get("erased"):
            why += f", {prov['erased']} erased ({prov['hole_fraction']:.0%})"
        return _caption(_pad(_fit(bg, TILE / max(bg.shape[:2]))), f"background: image {prov['background_image_id']}{why}")
    tile = np.full((TILE, TILE, 3), 32, np.uint8)
    if prov is None:
        text = "no provenance (older smplus)"
    elif prov["background"] == "inpaint":
        text = f"own image, inpainted: {prov['hole_fraction']:.0%}"
    else:
        text = prov["background"]
    return _caption(tile, f"background: {text}")


def _zooms(out: np.ndarray, anns: Sequence[dict]) -> np.ndarray:
    """The smallest pasted instances, each with its box and some context, magnified (nearest)."""
    cell = TILE // ZOOM_GRID
    tile = np.full((TILE, TILE, 3), 32, np.uint8)
    pasted = sorted((a for a in anns if not a.get("from_background")), key=lambda a: a["bbox"][2] * a["bbox"][3])
    H, W = out.shape[:2]
    for k, a in enumerate(pasted[:ZOOM_GRID ** 2]):
        x, y, w, h = a["bbox"]
        side = max(w, h) + 8  # the instance and 4 px of context around it
        cx, cy = x + w / 2, y + h / 2
        x0, y0 = int(max(0, np.floor(cx - side / 2))), int(max(0, np.floor(cy - side / 2)))
        x1, y1 = int(min(W, np.ceil(cx + side / 2))), int(min(H, np.ceil(cy + side / 2)))
        crop = out[y0:y1, x0:x1]
        z = (cell - LABEL - 4) / max(crop.shape[:2])
        big = _fit(crop, z, cv2.INTER_NEAREST).copy()
        cv2.rectangle(big, (int((x - x0) * z), int((y - y0) * z)),
                      (int(np.ceil((x + w - x0) * z)) - 1, int(np.ceil((y + h - y0) * z)) - 1), (0, 255, 0), 1)
        cellimg = _caption(_pad(big, (cell - LABEL, cell)), f"{w:.0f}x{h:.0f} px, x{z:.1f}")
        r, c = divmod(k, ZOOM_GRID)
        tile[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = cellimg[:cell, :cell]
    return _caption(tile, "smallest pasted instances, magnified")


def make_preview(out_dir: str, n: int = 8, image_ids: Sequence[int] = ()) -> np.ndarray:
    """A grid, one row per image: source | output (boxes) | background | smallest instances zoomed.

    `image_ids` picks the images; otherwise those whose fill fell back to a new
    background come first, then the ones with the most annotations.
    """
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
    if image_ids:
        known = {im["id"]: im for im in data["images"]}
        missing = [i for i in image_ids if i not in known]
        if missing:
            raise SmplusError(f"--image-id {missing[0]} is not an image of {out_dir}/annotations.json")
        chosen = [known[i] for i in image_ids]
    else:
        chosen = sorted(data["images"], key=lambda im: (not (im.get("smplus") or {}).get("fallback"),
                                                        -len(by_image.get(im["id"], []))))[:n]
    if not chosen:
        raise SmplusError(f"{out_dir} has no images")
    rows = []
    for im in chosen:
        src = read_image(os.path.join(images_dir, src_images[im["id"] - params.get("id_offset", 0)]["file_name"]))
        out = read_image(os.path.join(out_dir, "images", im["file_name"]))
        s_src = TILE / max(src.shape[:2])
        s_out = min(s_src, TILE / max(out.shape[:2]))  # the source's scale, if it fits
        out_small = _fit(out, s_out)
        for a in by_image.get(im["id"], []):
            x, y, w, h = (v * s_out for v in a["bbox"])
            cv2.rectangle(out_small, (int(x), int(y)), (int(np.ceil(x + w)), int(np.ceil(y + h))), (0, 255, 0), 1)
        prov = im.get("smplus")
        tiles = [_caption(_pad(_fit(src, s_src)), f"source {im['id']}"),
                 _caption(_pad(out_small), f"output ({prov['background'] if prov else '?'})"),
                 _background_tile(prov, images_dir, src_images),
                 _zooms(out, by_image.get(im["id"], []))]
        gap = np.full((TILE + LABEL, GAP, 3), 255, np.uint8)
        rows.append(np.hstack([x for t in tiles for x in (t, gap)][:-1]))
    return np.vstack([np.vstack([r, np.full((GAP, r.shape[1], 3), 255, np.uint8)]) for r in rows])


def write_preview(out_dir: str, path: str, n: int = 8, image_ids: Sequence[int] = ()) -> None:
    grid = make_preview(out_dir, n, image_ids)
    ok, buf = cv2.imencode(".png", grid)
    if not ok:
        raise SmplusError(f"cannot encode the preview as PNG: {path}")
    try:
        with open(path, "wb") as f:
            f.write(buf.tobytes())
    except OSError as e:
        raise SmplusError(f"cannot write {path}: {e.strerror or e}; choose another -o") from None
