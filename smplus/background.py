"""Background: fill the holes the instances leave (PSI's inpainting branch).

Telea inpainting at full resolution costs ~36 ms per COCO image; the holes
are smooth fills anyway, so we inpaint at reduced resolution and upsample
the fill only inside the hole, feathered at its edge so no seam shows. All
of it runs in the box of each group of nearby holes, so its cost follows the
holes, not the image or the span between them. The smooth fill
then gets some grain back: the fine detail of a same-shaped known region
beside each hole (a smear of uniform colour is a cue a detector can learn).

That is the `telea` fill, the paper's. The `patchmatch` fill (the default)
copies real texture into the hole instead: PatchMatch (smplus/patchmatch.py,
coarse to fine, full-resolution pixels), in the box of each group of nearby
holes grown by a band of known context it copies from, so its cost also
follows the holes.
"""

from __future__ import annotations

import functools
import math
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

INPAINT_RADIUS = 3
INPAINT_SCALE = 0.3    # inpaint at this fraction of the image size
# Grain: the detail finer than TEXTURE_SIGMA px of the known region next to a
# hole, added at TEXTURE_GAIN. Measured on holes with known truth (coco_tiny,
# scripts/quality.py): texture ratio 0.07 -> 0.17-0.22, PSNR +0.1-0.2 dB, at ~1.6x
# the cost of Telea at 1/4 resolution alone.
TEXTURE_GAIN = 0.5
TEXTURE_SIGMA = 1.5
TEXTURE_MAX_OVERLAP = 0.3  # a source region may overlap the hole by this share at most
HOLE_DILATE = (3, 12)  # px around the masks, min and max: matting halos, jagged polygons
HOLE_DILATE_REL = 0.03  # ...growing with the largest instance's size
# A texture fill copies what the hole's rim shows, so a rim of the removed object
# left beyond its polygon (a hull line, struts) would be copied into the hole:
# its holes grow faster with the object's size (issue 18, "no remnants").
HOLE_DILATE_WIDE = (3, 24)
HOLE_DILATE_REL_WIDE = 0.08
FILLS = ("patchmatch", "telea")
DEFAULT_FILL = "patchmatch"
# PatchMatch compares 5x5 patches: on 10 punched val2017 holes, radius 2 took 0.61x the time of
# radius 3 (the team's first setting) at PSNR 13.6 vs 13.2 dB, texture 1.00 vs 0.93 (radius 1:
# 0.46x, 13.5 dB, 1.03).
PATCH_RADIUS = 2
# px of known pixels around each group of holes that PatchMatch copies from. The cost
# follows the box of the holes (16, 32 and 64 px cost the same within 5 %), and 32 px
# gave the best PSNR on punched holes (val2017, 12 images: 13.5 / 13.8 / 13.2 dB).
# Full resolution only: at half resolution the texture ratio fell to 0.24 (0.16 at 0.3).
PATCH_CONTEXT = 32
PATCH_SEED = 0         # pypatchmatch's random search starts from this seed at every call: same input, same bytes
GRAY = np.float32([[0.114, 0.587, 0.299]])  # BGR -> gray levels, as cv2.COLOR_BGR2GRAY
FEATHER = 1.5          # sigma of the fade from fill to image outside the hole, px
FEATHER_REACH = (round(8 * FEATHER + 1) | 1) // 2  # px: cv2.GaussianBlur's kernel radius at FEATHER (float32)


def _box(mask: np.ndarray, pad: int):
    """Bounding slices of the nonzero pixels of `mask`, grown by `pad` and clipped."""
    return _grown(cv2.boundingRect(mask), pad, mask.shape)


def _grown(rect, pad: int, shape):
    """The slices of `rect` (x, y, w, h) grown by `pad` and clipped to `shape`."""
    x, y, w, h = rect
    H, W = shape[:2]
    return slice(max(0, y - pad), min(H, y + h + pad)), slice(max(0, x - pad), min(W, x + w + pad))


def _regions(rects, pad: int, shape) -> List[tuple]:
    """The boxes of `rects` grown by `pad`, those that overlap merged until none do.

    Work done in each box on its own then sees everything within `pad` of
    its holes, and no other box's holes.
    """
    boxes = [_grown(r, pad, shape) for r in rects]
    boxes = [(b[1].start, b[0].start, b[1].stop, b[0].stop) for b in boxes]
    merged = True
    while merged:
        merged, out = False, []
        for b in boxes:
            for i, o in enumerate(out):
                if b[0] < o[2] and o[0] < b[2] and b[1] < o[3] and o[1] < b[3]:
                    out[i] = (min(b[0], o[0]), min(b[1], o[1]), max(b[2], o[2]), max(b[3], o[3]))
                    merged = True
                    break
            else:
                out.append(b)
        boxes = out
    return sorted((slice(y0, y1), slice(x0, x1)) for x0, y0, x1, y1 in boxes)


def hole_mask(rles: Sequence[dict], shape, fill: str = "telea") -> np.ndarray:
    """Union of the masks (COCO RLEs), dilated so no rim of a removed object stays behind.

    COCO polygons miss a few per cent of an object's outline; a rim left in
    the hole's border would be smeared across it by the inpainting. The
    dilation runs in the box of each group of nearby masks, not in one box
    spanning them all.
    """
    hole = np.zeros(shape[:2], np.uint8)
    if not rles:
        return hole
    rles = list(rles)
    union = mask_utils.decode(mask_utils.merge(rles, intersect=False))  # column-major, like the RLE
    r = dilation_radius(rles, fill)
    for roi in _regions(mask_utils.toBbox(rles).astype(int), r, shape):
        hole[roi] = dilate_disc(np.ascontiguousarray(union[roi]), r)
    return hole


# From this radius on, dilate_disc works in strips: 1.1x as fast at 8 px, 1.8x at 12, 2.6x at 16 (slower
# below 7: more passes over the mask; measured on the holes of a coco_tiny run, docs/fills.md).
DISC_STRIPS_FROM = 8


@functools.lru_cache(maxsize=None)
def _disc(r: int) -> Tuple[np.ndarray, Optional[Tuple[Tuple[int, int], ...]]]:
    """The disc hole_mask dilates by (OpenCV's ellipse of side 2r + 1) and the same disc as a union of
    centred rectangles, (half-width, half-height), widths rising and heights falling (None if it is not one)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    half = [int(np.count_nonzero(row)) // 2 for row in kernel]  # each row a centred run
    stairs = tuple((d, max(abs(i - r) for i, h in enumerate(half) if h >= d)) for d in sorted(set(half)))
    union = np.zeros_like(kernel)
    for d, e in stairs:
        union[r - e:r + e + 1, r - d:r + d + 1] = 1
    return kernel, (stairs if np.array_equal(union, kernel) else None)


def dilate_disc(mask: np.ndarray, r: int) -> np.ndarray:
    """cv2.dilate(mask, OpenCV's ellipse of radius r), byte for byte, in fewer operations for a large r.

    The disc is a union of centred rectangles (d_k, e_k), d rising and e falling; a dilation by a union is
    the union of the dilations, and dilations add: so it is V(e_n)[...V(e_2 - e_3)[V(e_1 - e_2) H(d_1)
    | H(d_2)] | H(d_3)...], H(d) the row-wise dilation by 2d + 1 px, V(e) the column-wise one. Each pass
    is a strip a few px long, against a (2r + 1)^2 disc (OpenCV's cost grows with the kernel's pixels).
    """
    kernel, stairs = _disc(r)
    if stairs is None or r < DISC_STRIPS_FROM:
        return cv2.dilate(mask, kernel)
    grown, wide, d0, e0 = None, mask, 0, 0
    for d, e in stairs:
        if d > d0:
            wide = cv2.dilate(wide, np.ones((1, 2 * (d - d0) + 1), np.uint8))  # H(d), from H(d0)
        grown = wide if grown is None else cv2.max(cv2.dilate(grown, np.ones((2 * (e0 - e) + 1, 1), np.uint8)), wide)
        d0, e0 = d, e
    return cv2.dilate(grown, np.ones((2 * e0 + 1, 1), np.uint8)) if e0 else grown


def dilation_radius(rles: Sequence[dict], fill: str = "telea") -> int:
    """How far hole_mask grows the masks (COCO RLEs) for `fill`, in px: with the largest one's size,
    within HOLE_DILATE (HOLE_DILATE_WIDE for a texture fill)."""
    largest = math.sqrt(float(max(mask_utils.area(list(rles)))))
    (lo, hi), rel = (HOLE_DILATE, HOLE_DILATE_REL) if fill == "telea" else (HOLE_DILATE_WIDE, HOLE_DILATE_REL_WIDE)
    return int(round(min(max(rel * largest, lo), hi)))


def inpaint_holes(image: np.ndarray, hole: np.ndarray, scale: Optional[float] = None,
                  fill: str = "telea") -> Optional[np.ndarray]:
    """Fill `hole` (uint8, 1 = missing) with `fill`: Telea inpainting at `scale` resolution
    (default INPAINT_SCALE), or PatchMatch at full resolution.

    None when no known pixel is left (at that resolution): Telea would return
    its input, a blurred copy with the removed objects still in it.
    """
    if fill == "patchmatch":
        return patchmatch_holes(image, hole)
    scale = INPAINT_SCALE if scale is None else scale  # read at call time, so the setting can be changed
    if not hole.any():
        return image.copy()
    if scale >= 1.0:
        return None if hole.all() else cv2.inpaint(image, hole, INPAINT_RADIUS, cv2.INPAINT_TELEA)
    # Each group of nearby holes is filled in its own box, grown by the
    # feather and by the context Telea reads around the hole (its radius, in
    # small pixels): the cost follows the holes, not the span between them.
    hole = np.ascontiguousarray(hole)
    parts, _ = cv2.findContours(hole, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    pad = int(math.ceil((INPAINT_RADIUS + 2) / scale + 3 * FEATHER))
    out = image.copy()
    for roi in _regions([cv2.boundingRect(c) for c in parts], pad, hole.shape):
        if not _fill(out, image, hole, roi, scale):
            return None
    return out


def patchmatch_holes(image: np.ndarray, hole: np.ndarray, complete=None) -> Optional[np.ndarray]:
    """Fill `hole` (uint8, 1 = missing) by PatchMatch, each group of nearby holes in its own box grown
    by PATCH_CONTEXT; None when a box has no known pixel.

    PatchMatch copies and blends patches of known pixels, so the fill keeps
    the texture of its surroundings (texture ratio ~1 where Telea's is ~0.1).
    `complete(box, box_hole)` fills one box: smplus.patchmatch.complete (coarse
    to fine, full-resolution pixels, deterministic) unless given, e.g.
    `pypatchmatch_box`, the reference it replaced.
    """
    if complete is None:
        from .patchmatch import complete  # numba: loaded only when this fill is used
    out = image.copy()
    if not hole.any():
        return out
    hole = np.ascontiguousarray(hole)
    parts, _ = cv2.findContours(hole, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    for roi in _regions([cv2.boundingRect(c) for c in parts], PATCH_CONTEXT, hole.shape):
        part_hole = hole[roi]
        known = part_hole.size - int(np.count_nonzero(part_hole))
        if known == 0:
            return None
        filled = None
        if known >= (2 * PATCH_RADIUS + 1) ** 2:
            filled = complete(np.ascontiguousarray(image[roi]), part_hole)
        if filled is None:  # no whole patch of known pixels: Telea's fill
            filled = cv2.inpaint(image[roi], part_hole, INPAINT_RADIUS, cv2.INPAINT_TELEA)
        out[roi] = filled
    return out


def pypatchmatch_box(box: np.ndarray, box_hole: np.ndarray) -> Optional[np.ndarray]:
    """One box filled by pypatchmatch (seeded with PATCH_SEED before the call: same input, same bytes);
    None if its native code refuses the box. The fill this package's PatchMatch replaced, kept as a
    reference for scripts/quality.py and scripts/fill_cost.py (`pip install smplus[reference]`)."""
    import patchmatch

    patchmatch.set_random_seed(PATCH_SEED)
    try:
        return patchmatch.inpaint(box, box_hole, patch_size=PATCH_RADIUS)
    except RuntimeError:
        return None


def _fill(out: np.ndarray, image: np.ndarray, hole: np.ndarray, roi, scale: float) -> bool:
    """Inpaint the holes in `roi` into `out`; False if no known pixel is left there at `scale`."""
    part, part_hole = image[roi], hole[roi]
    h, w = part_hole.shape
    sw, sh = max(8, int(round(w * scale))), max(8, int(round(h * scale)))
    small = cv2.resize(part, (sw, sh), interpolation=cv2.INTER_AREA)
    # A small pixel is missing if any of its source pixels is.
    small_hole = (cv2.resize(part_hole.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA) > 0)
    small_hole = cv2.dilate(small_hole.astype(np.uint8), np.ones((3, 3), np.uint8))
    if small_hole.all():
        return False
    fill = cv2.resize(cv2.inpaint(small, small_hole, INPAINT_RADIUS, cv2.INPAINT_TELEA), (w, h),
                      interpolation=cv2.INTER_LINEAR)
    # Feather: full fill inside the hole, fading out over a few px outside it,
    # worked out in the hole's box grown by twice the blur's reach (beyond one
    # reach the weight is 0; within it, the blur sees no box edge).
    near = _box(part_hole, 2 * FEATHER_REACH)
    edge = part_hole[near]
    weight = np.maximum(cv2.GaussianBlur(edge.astype(np.float32), (0, 0), FEATHER), edge)
    out[roi][near] = cv2.blendLinear(fill[near], part[near], weight, 1.0 - weight)
    add_texture(out, image, hole, roi, small_hole)
    return True


def add_texture(filled: np.ndarray, image: np.ndarray, hole: np.ndarray, roi, small_hole: np.ndarray) -> None:
    """Add, in place, to each connected part of the hole the fine detail (finer than
    TEXTURE_SIGMA) of the nearest same-shaped region of known pixels beside it.

    The parts are labelled on `small_hole`, the hole of `roi` at inpainting
    resolution: labels at full resolution would cost 4 bytes per pixel.
    """
    H, W = hole.shape
    n, labels, stats, _ = cv2.connectedComponentsWithStats(small_hole, connectivity=4)
    fx, fy = (roi[1].stop - roi[1].start) / small_hole.shape[1], (roi[0].stop - roi[0].start) / small_hole.shape[0]
    pad = int(3 * TEXTURE_SIGMA) + 1
    for c in range(1, n):
        u, v, su, sv, _ = stats[c]
        x, y = roi[1].start + int(u * fx), roi[0].start + int(v * fy)
        w, h = min(W, roi[1].start + math.ceil((u + su) * fx)) - x, min(H, roi[0].start + math.ceil((v + sv) * fy)) - y
        own = cv2.resize((labels[v:v + sv, u:u + su] == c).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        part = (own > 0) & (hole[y:y + h, x:x + w] > 0)
        if not part.any():
            continue
        shift = _texture_source(hole, part, x, y)
        if shift is None:
            continue
        sx, sy = x + shift[0], y + shift[1]
        take = (part & (hole[sy:sy + h, sx:sx + w] == 0)).astype(np.uint8)  # known source pixels only
        # The grain of the neighbourhood, not of the source region: scaled to the
        # detail in a ring of known pixels around this part of the hole.
        ring = ((cv2.dilate(part.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0)
                & (hole[y:y + h, x:x + w] == 0)).astype(np.uint8)
        if not ring.any():
            continue
        detail = _detail(image, sx, sy, w, h, pad)
        strength = cv2.mean(np.abs(cv2.transform(detail, GRAY)), take)[0]
        if not strength:
            continue
        around = cv2.mean(np.abs(_detail(image, x, y, w, h, pad, gray=True)), ring)[0]
        gain = TEXTURE_GAIN * min(1.0, around / strength)
        dst = filled[y:y + h, x:x + w]
        cv2.copyTo(cv2.addWeighted(dst, 1.0, detail, gain, 0.0, dtype=cv2.CV_8U), take, dst)


def _detail(image: np.ndarray, x: int, y: int, w: int, h: int, pad: int, gray: bool = False) -> np.ndarray:
    """The detail finer than TEXTURE_SIGMA of image[y:y+h, x:x+w] (float32, signed; of its gray levels)."""
    H, W = image.shape[:2]
    x0, y0, x1, y1 = max(0, x - pad), max(0, y - pad), min(W, x + w + pad), min(H, y + h + pad)
    window = image[y0:y1, x0:x1].astype(np.float32)
    if gray:
        window = cv2.transform(window, GRAY)
    window -= cv2.GaussianBlur(window, (0, 0), TEXTURE_SIGMA)
    return window[y - y0:y - y0 + h, x - x0:x - x0 + w]


def _texture_source(hole: np.ndarray, part: np.ndarray, x: int, y: int) -> Optional[tuple]:
    """The shift of the nearest region beside `part` (its box at x, y), inside the image and
    mostly outside the hole: one, two or three box sizes across, straight or diagonal."""
    H, W = hole.shape
    h, w = part.shape
    shifts = sorted(((k * i * w, k * j * h) for k in (1, 2, 3) for i in (-1, 0, 1) for j in (-1, 0, 1) if i or j),
                    key=lambda d: (abs(d[0]) + abs(d[1]), d))
    area = max(1, int(np.count_nonzero(part)))
    for dx, dy in shifts:
        if 0 <= x + dx and x + dx + w <= W and 0 <= y + dy and y + dy + h <= H:
            if np.count_nonzero(hole[y + dy:y + dy + h, x + dx:x + dx + w][part]) <= TEXTURE_MAX_OVERLAP * area:
                return dx, dy
    return None
