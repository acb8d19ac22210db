"""Validity rules and geometry of one annotation: what can be cut out, its clipped box,
the point it is scaled about and the least size that keeps it drawable."""

from __future__ import annotations

import math
from typing import Optional, Tuple

from .coco import finite_number, rle_counts, usable_polygons

# Instances that would end under 1 px wide or tall are dropped: a pixel is the
# least that can be drawn. (TinyPerson itself has 3 % of boxes with a side under
# 2 px; at 2 px its whole head bin, sizes under 2.03 px, was out of reach.)
MIN_SIDE = 1.0
MIN_IMAGE_SIDE = 2  # an image under 2 px wide or tall has no room to cut anything out
# An instance too elongated for its target size is planned at the least size
# that keeps its short side at MIN_SIDE, when that is in the same target bin:
# this much inside, so the rendered size (within 1 %, render.SIZE_TOLERANCE)
# stays in the bin and its short side at MIN_SIDE or more.
BIN_MARGIN = 1.02
# A box this close to an image edge is cut by it: COCO polygons of cut objects
# often stop 1-8 px short of the frame. On coco_tiny (scripts/frame_gaps.py),
# 244 box sides have a mask pixel on the frame (all within 0.5 px); sides 1-8 px
# from an edge come 23 per px, twice the rate beyond 8 px (10 per px): the excess
# is cut objects whose polygon stops short. Such an instance is scaled about its
# point on the edge, so its gap scales with it.
FRAME_TOLERANCE = 8.0
# A box spanning this share of a frame side fills it: cut by both edges, even if
# its polygon stops short of them (COCO's whole-frame tables and bowls stop
# 2-6 px short, and were pasted as pictures in the picture).
WHOLE_FRAME = 0.98


def degenerate_reason(ann: dict, width: int, height: int) -> Optional[str]:
    """Why an annotation cannot be transformed, from its JSON alone (None if it can)."""
    if width < MIN_IMAGE_SIDE or height < MIN_IMAGE_SIDE:
        return "image_too_small"  # no room to cut anything out (matting fails on 1x1)
    reason = box_reason(ann.get("bbox"), width, height)
    if reason is not None:
        return reason
    seg = ann.get("segmentation")
    if isinstance(seg, list):
        if not usable_polygons(seg, height, width):
            return "bad_polygon"
    elif rle_counts(seg, height, width) is None:  # not RLE, another size, or runs that do not add up
        return "bad_mask"
    return None


def box_reason(box, width: int, height: int) -> Optional[str]:
    """Why a COCO bbox locates nothing in a width x height image (None if it does)."""
    if not (isinstance(box, (list, tuple)) and len(box) == 4):
        return "bad_box"
    x, y, w, h = box
    if type(x) is float and type(y) is float and type(w) is float and type(h) is float:  # most boxes: half the cost
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(w) and math.isfinite(h)):
            return "bad_box"
    elif not all(map(finite_number, box)):
        return "bad_box"
    if w < 0.01 or h < 0.01:  # a hundredth of a pixel is no object (and no scale)
        return "zero_size_box"
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return "outside_image"
    if min(width, x + w) - max(0, x) < 0.01 or min(height, y + h) - max(0, y) < 0.01:
        return "outside_image"  # only a sliver inside
    return None


def clipped_box(ann: dict, width: int, height: int) -> Tuple[float, float, float, float]:
    x, y, w, h = ann["bbox"]
    # max(0.0, x) and min(float(width), x + w), written out (a third of the cost, once per annotation)
    x0, y0, x1, y1 = x if x > 0.0 else 0.0, y if y > 0.0 else 0.0, x + w, y + h
    x1, y1 = x1 if x1 < width else float(width), y1 if y1 < height else float(height)
    return x0, y0, x1 - x0, y1 - y0


def fixed_point(box: Tuple[float, float, float, float], width: int, height: int) -> Optional[Tuple[float, float]]:
    """The point an instance is scaled about, in source coordinates (SM+ step 2).

    Per axis: its box centre, or, for an instance cut by the frame, its point
    on that frame edge (left/top -> 0, right/bottom -> W/H), so the cut stays
    on the edge of the output frame (mapped proportionally to the same edge of
    a new background). None when it is cut by two opposite edges (or fills
    the frame along an axis): no smaller copy can keep both cuts on the frame.
    """
    x, y, w, h = box  # (the same rule per axis, written out: once per annotation)
    first, last = x <= FRAME_TOLERANCE, x + w >= width - FRAME_TOLERANCE
    if (first and last) or w >= WHOLE_FRAME * width:
        return None
    px = 0.0 if first else float(width) if last else x + w / 2
    first, last = y <= FRAME_TOLERANCE, y + h >= height - FRAME_TOLERANCE
    if (first and last) or h >= WHOLE_FRAME * height:
        return None
    return px, 0.0 if first else float(height) if last else y + h / 2


def least_size(w: float, h: float) -> float:
    """The least planned size s = sqrt(w*h) at which a w x h box keeps its short side
    at MIN_SIDE, with BIN_MARGIN for the rendered size's tolerance."""
    return MIN_SIDE * BIN_MARGIN * math.sqrt(w / h if w >= h else h / w)  # max(w, h) / min(w, h)
