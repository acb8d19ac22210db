"""The background pool: the images PSI may draw a new background from."""

from __future__ import annotations

import bisect
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .coco import CocoDataset
from .options import DEFAULT_MAX_BACKGROUND_OBJECTS
from .rules import box_reason, clipped_box

BACKGROUND_TRIES = 8  # draws of a new background that holds the instances, then the image's own
# When fewer images than this share of the set qualify, the share with the least
# such area is the pool (their objects erased all the same).
CLEAN_POOL_MIN_SHARE = 0.1


def pool_images(ds: CocoDataset, kind: str, selected: Optional[set],
                max_share: float = DEFAULT_MAX_BACKGROUND_OBJECTS) -> List[int]:
    """The images a new background may come from, sorted by id.

    all: every image (the paper). clean: images whose annotations (crowds
    included) of the scale-matched categories cover at most `max_share` of the
    frame (background_share); render erases them, so none shows unlabelled.
    If fewer than CLEAN_POOL_MIN_SHARE of the set qualify, that share of the
    images with the least such area.
    """
    if kind == "all":
        return sorted(ds.images)
    covered: Dict[int, Tuple[float, int]] = {}  # image -> (area share, annotations) of those categories
    for image_id, im in ds.images.items():
        mine = [a for a in ds.anns_by_image[image_id] if selected is None or a["category_id"] in selected]
        covered[image_id] = (background_share(mine, im["width"], im["height"]), len(mine))
    clean = [i for i, (share, count) in covered.items() if count == 0 or share <= max_share]
    # at least two images, so that each image of the pool has another one to draw
    need = min(len(covered), max(2, math.ceil(CLEAN_POOL_MIN_SHARE * len(covered))))
    if len(clean) >= need:
        return sorted(clean)
    return sorted(sorted(covered, key=lambda i: (covered[i], i))[:need])


def background_share(anns: Sequence[dict], width: int, height: int) -> float:
    """The share of a width x height frame the annotations cover: their mask areas
    ("area"), or where that is no number, their clipped boxes; overlaps counted twice."""
    total = 0.0
    for a in anns:
        area = a.get("area")
        if not (isinstance(area, (int, float)) and math.isfinite(area) and area >= 0):
            area = 0.0
            if box_reason(a.get("bbox"), width, height) not in ("bad_box", "zero_size_box"):
                _, _, w, h = clipped_box(a, width, height)
                area = max(w, 0.0) * max(h, 0.0)
        total += area
    return total / (width * height)


class BackgroundPool:
    """The images PSI may draw a new background from; a draw is O(1), never a new list."""

    def __init__(self, image_ids: Sequence[int], images: Dict[int, dict],
                 anns_by_image: Optional[Dict[int, List[dict]]] = None):
        self.ids = list(image_ids)
        self._images, self._anns = images, anns_by_image or {}
        self._position = {i: k for k, i in enumerate(self.ids)}
        self._sizes = [(images[i]["width"], images[i]["height"]) for i in self.ids]
        # Pool positions by shorter side: those from bisect(need) on hold any need up to that side.
        self._by_side = sorted(range(len(self.ids)), key=lambda k: min(self._sizes[k]))
        self._sides = [min(self._sizes[k]) for k in self._by_side]
        self._side_rank = {k: r for r, k in enumerate(self._by_side)}

    def draw(self, rng: np.random.Generator, image_id: int, need: Tuple[float, float] = (0.0, 0.0)) -> Optional[int]:
        """A pool image other than `image_id` at least `need` = (width, height) large, or None.

        Uniform among the pool images that hold `need`: up to BACKGROUND_TRIES
        uniform draws, the first that holds it is taken. If all miss (most of
        the pool is too small), one draw among the images whose shorter side
        holds both sides of `need`. O(1) expected, O(log n) at worst.
        """
        own = self._position.get(image_id)
        n = len(self.ids) - (own is not None)
        for _ in range(BACKGROUND_TRIES if n > 0 else 0):
            k = self._skip(int(rng.integers(n)), own)
            if self._sizes[k][0] >= need[0] and self._sizes[k][1] >= need[1]:
                return self.ids[k]
        start = bisect.bisect_left(self._sides, max(need))
        own_rank = self._side_rank.get(own, -1)
        m = len(self._sides) - start - (own_rank >= start)
        if m <= 0:
            return None
        return self.ids[self._by_side[self._skip(start + int(rng.integers(m)), own_rank)]]

    def background(self, image_id: int) -> Tuple[dict, Sequence[dict]]:
        """A drawn background's image entry and annotations."""
        return self._images[image_id], self._anns.get(image_id, ())

    @staticmethod
    def _skip(k: int, own: Optional[int]) -> int:
        """Index k of the list without `own` -> index in the whole list."""
        return k + 1 if own is not None and k >= own else k
