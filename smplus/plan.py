"""Plan: pure, annotation-only decisions of an SM+ run.

From (source annotations, target histogram, options, seed) the planner
decides everything random -- each instance's new size and place, each
image's background -- and nothing else. Plans are frozen dataclasses that
round-trip through JSON; rendering replays them on the pixels.

Randomness: one generator per image, `default_rng([seed, image_id])`, so a
plan does not depend on worker count, order, or which images ran before.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .coco import CocoDataset, instance_size
from .errors import UsageError
from .histogram import SizeHistogram, msm_sizes

MODES = ("msm", "rsm")
BACKGROUNDS = ("psi", "inpaint", "new")  # inpaint: "SM+ w/o PSI" (paper Table 5); new: always replaced
MIN_SIDE = 2.0  # instances that end under 2 px wide or tall are dropped


@dataclass(frozen=True)
class TransformOptions:
    mode: str = "msm"
    seed: int = 0
    psi_p: float = 0.4
    categories: Optional[Tuple[int, ...]] = None  # scale-matched category ids; None = all
    background: str = "psi"

    def __post_init__(self):
        if self.mode not in MODES:
            raise UsageError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise UsageError(f"--seed must be a non-negative integer, got {self.seed!r}")
        if not (isinstance(self.psi_p, (int, float)) and 0.0 <= self.psi_p <= 1.0):
            raise UsageError(f"--psi-p must be in [0, 1], got {self.psi_p!r}")
        if self.background not in BACKGROUNDS:
            raise UsageError(f"--background must be one of {', '.join(BACKGROUNDS)}, got {self.background!r}")


@dataclass(frozen=True)
class InstancePlan:
    ann_id: int
    scale: float                  # r = planned size / source size
    size: float                   # planned size s = sqrt(w*h), px
    box: Tuple[float, float, float, float]  # planned box (x, y, w, h) in the output image
    matched: bool = True          # scale-matched; False: kept at its size (other category)

    @property
    def center(self) -> Tuple[float, float]:
        return (self.box[0] + self.box[2] / 2, self.box[1] + self.box[3] / 2)


@dataclass(frozen=True)
class ImagePlan:
    image_id: int
    background: str                     # "inpaint" (holes of this image) | "new" (another image)
                                        # | "none" (nothing to scale: copied as is)
    background_image_id: int            # the image whose pixels are the background
    width: int                          # output size: the background image's
    height: int
    instances: Tuple[InstancePlan, ...] = ()
    erased: Tuple[int, ...] = ()        # crowd regions removed from the background
    dropped: Tuple[Tuple[int, str], ...] = ()  # (ann_id, reason) decided at plan time

    @property
    def transformed(self) -> bool:
        """Whether pixels change at all (otherwise the image is copied as is)."""
        return self.background != "none"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "ImagePlan":
        return cls(image_id=d["image_id"], background=d["background"],
                   background_image_id=d["background_image_id"], width=d["width"], height=d["height"],
                   instances=tuple(InstancePlan(ann_id=i["ann_id"], scale=i["scale"], size=i["size"],
                                                box=tuple(i["box"]), matched=i["matched"])
                                   for i in d["instances"]),
                   erased=tuple(d["erased"]), dropped=tuple(tuple(x) for x in d["dropped"]))


# ---------------------------------------------------------------- annotation checks

def degenerate_reason(ann: dict, width: int, height: int) -> Optional[str]:
    """Why an annotation cannot be transformed, from its JSON alone (None if it can)."""
    box = ann.get("bbox")
    if not (isinstance(box, (list, tuple)) and len(box) == 4
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in box)):
        return "bad_box"
    x, y, w, h = box
    if w < 0.01 or h < 0.01:  # a hundredth of a pixel is no object (and no scale)
        return "zero_size_box"
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return "outside_image"
    if min(width, x + w) - max(0, x) < 0.01 or min(height, y + h) - max(0, y) < 0.01:
        return "outside_image"  # only a sliver inside
    seg = ann.get("segmentation")
    if isinstance(seg, list):
        if not any(isinstance(p, list) and len(p) >= 6 for p in seg):
            return "bad_polygon"
    elif not (isinstance(seg, dict) and "counts" in seg and "size" in seg):
        return "bad_mask"
    elif list(seg["size"]) != [height, width]:
        return "bad_mask"
    return None


def clipped_box(ann: dict, width: int, height: int) -> Tuple[float, float, float, float]:
    x, y, w, h = ann["bbox"]
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(width), x + w), min(float(height), y + h)
    return x0, y0, x1 - x0, y1 - y0


@dataclass
class _Candidate:
    image_id: int
    ann: dict
    size: float


@dataclass
class DatasetPlan:
    images: List[ImagePlan]
    source_sizes: List[float] = field(default_factory=list)   # matched instances, before
    planned_sizes: List[float] = field(default_factory=list)  # matched instances kept, after


def plan_dataset(ds: CocoDataset, hist: SizeHistogram, options: TransformOptions) -> DatasetPlan:
    """Plan every image of `ds`. MSM+ needs all source sizes first, so this is one pass over the set."""
    selected = set(options.categories) if options.categories is not None else None
    candidates: Dict[int, List[_Candidate]] = {}
    for image_id, im in ds.images.items():
        candidates[image_id] = [
            _Candidate(image_id, a, instance_size(*clipped_box(a, im["width"], im["height"])[2:]))
            for a in ds.anns_by_image[image_id]
            if not a.get("iscrowd") and degenerate_reason(a, im["width"], im["height"]) is None
            and (selected is None or a["category_id"] in selected)]
    msm_new: Dict[int, float] = {}
    if options.mode == "msm":
        flat = [c for cs in candidates.values() for c in cs]
        for c, s in zip(flat, msm_sizes([c.size for c in flat], hist)):
            msm_new[c.ann["id"]] = float(s)

    all_ids = sorted(ds.images)
    plans, before, after = [], [], []
    for image_id in ds.images:
        plan = plan_image(ds, image_id, candidates[image_id], hist, options, msm_new, all_ids)
        plans.append(plan)
        before.extend(c.size for c in candidates[image_id])
        after.extend(i.size for i in plan.instances if i.matched)
    return DatasetPlan(plans, before, after)


def plan_image(ds: CocoDataset, image_id: int, matched: Sequence[_Candidate], hist: SizeHistogram,
               options: TransformOptions, msm_new: Dict[int, float], all_ids: Sequence[int]) -> ImagePlan:
    im = ds.images[image_id]
    rng = np.random.default_rng([options.seed, image_id])
    # Draw order is fixed (PSI first, then sizes) so a plan never depends on other images.
    u = rng.random()
    new_background = {"psi": u > options.psi_p, "inpaint": False, "new": True}[options.background]
    others = [i for i in all_ids if i != image_id]
    bg_id = image_id
    if new_background and others:
        bg_id = others[int(rng.integers(len(others)))]
    bg = ds.images[bg_id]
    if options.mode == "rsm":
        new_sizes = dict(zip((c.ann["id"] for c in matched), map(float, hist.sample_rsm(rng, len(matched)))))
    else:
        new_sizes = {c.ann["id"]: msm_new[c.ann["id"]] for c in matched}

    fx, fy = bg["width"] / im["width"], bg["height"] / im["height"]
    instances, erased, dropped = [], [], []
    for a in ds.anns_by_image[image_id]:
        if a.get("iscrowd"):
            erased.append(a["id"])
            continue
        reason = degenerate_reason(a, im["width"], im["height"])
        if reason is not None:
            dropped.append((a["id"], reason))
            continue
        x, y, w, h = clipped_box(a, im["width"], im["height"])
        scale = 1.0
        if a["id"] in new_sizes:
            size = new_sizes[a["id"]]
            scale = size / instance_size(w, h)
            if w * scale < MIN_SIDE or h * scale < MIN_SIDE:
                dropped.append((a["id"], "too_small"))
                continue
        else:  # another category: kept at its size
            size = instance_size(w, h)
        # The centre keeps its place, mapped proportionally onto a new background.
        cx, cy = (x + w / 2) * fx, (y + h / 2) * fy
        box = (cx - w * scale / 2, cy - h * scale / 2, w * scale, h * scale)
        instances.append(InstancePlan(a["id"], float(scale), float(size), box, a["id"] in new_sizes))
    if not matched:  # nothing to scale: copied as is, only degenerate annotations dropped
        return ImagePlan(image_id, "none", image_id, im["width"], im["height"], dropped=tuple(dropped))
    return ImagePlan(image_id, "new" if bg_id != image_id else "inpaint", bg_id, bg["width"], bg["height"],
                     tuple(instances), tuple(erased), tuple(dropped))
