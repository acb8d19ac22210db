"""The check both match_at_scale.py and quality.py make of an output annotation: does the box
of its mask agree with its bbox? (pycocotools only: quality.py runs it against old code too.)"""

import numpy as np
from pycocotools import mask as mask_utils


def rle_box_off(rle: dict, bbox) -> bool:
    """Whether the pixel box of `rle` and `bbox` (x, y, w, h) differ by more than 1 px at some edge."""
    rx, ry, rw, rh = mask_utils.toBbox(rle)
    x, y, w, h = bbox
    return bool(np.abs(np.array([x - rx, y - ry, x + w - rx - rw, y + h - ry - rh])).max() > 1.0)
