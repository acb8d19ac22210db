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

MODES = ("msm", "rsm", "cp", "cp+")
COPY_PASTE = ("cp", "cp+")  # paper Table 6: instances pasted unscaled onto a new background
BACKGROUNDS = ("psi", "inpaint", "new")
LEVELS = ("instance", "image")  # image: the original Scale Match (Yu et al., WACV 2020)
IMAGE_LEVEL_TRIES = 5             # RSM draws until the scale lands in scale_range
DEFAULT_IMAGE_SCALE = 0.25        # an image without boxes  # inpaint: "SM+ w/o PSI" (paper Table 5); new: always replaced
MIN_SIDE = 2.0  # instances that end under 2 px wide or tall are dropped


@dataclass(frozen=True)
class TransformOptions:
    mode: str = "msm"
    seed: int = 0
    psi_p: float = 0.4
    categories: Optional[Tuple[int, ...]] = None  # scale-matched category ids; None = all
    background: str = "psi"
    level: str = "instance"
    scale_range: Tuple[float, float] = (0.1, 1.0)  # image level: allowed image scales

    def __post_init__(self):
        if self.mode not in MODES:
            raise UsageError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise UsageError(f"--seed must be a non-negative integer, got {self.seed!r}")
        if not (isinstance(self.psi_p, (int, float)) and 0.0 <= self.psi_p <= 1.0):
            raise UsageError(f"--psi-p must be in [0, 1], got {self.psi_p!r}")
        if self.level not in LEVELS:
            raise UsageError(f"--level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        if self.level == "image" and self.mode in COPY_PASTE:
            raise UsageError(f"--level image goes with --mode msm or rsm, not {self.mode}")
        lo, hi = self.scale_range
        if not (0 < lo <= hi):
            raise UsageError(f"--scale-range must be two numbers 0 < LOW <= HIGH, got {lo!r} {hi!r}")
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
                                        # | "resize" (image level: the whole image scaled)
    background_image_id: int            # the image whose pixels are the background
    width: int                          # output size: the background image's
    height: int
    instances: Tuple[InstancePlan, ...] = ()
    crowd: Tuple[int, ...] = ()         # crowd regions: erased from the background (instance
                                        # level), or scaled with the image and kept (image level)
    dropped: Tuple[Tuple[int, str], ...] = ()  # (ann_id, reason) decided at plan time
    background_labels: Tuple[int, ...] = ()  # cp+: the new background's own annotations, kept

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
                   crowd=tuple(d["crowd"]), dropped=tuple(tuple(x) for x in d["dropped"]),
                   background_labels=tuple(d.get("background_labels", ())))


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
    if options.mode == "msm" and options.level == "instance":
        flat = [c for cs in candidates.values() for c in cs]
        for c, s in zip(flat, msm_sizes([c.size for c in flat], hist)):
            msm_new[c.ann["id"]] = float(s)

    pool = BackgroundPool(sorted(ds.images))
    source_sorted = np.sort([c.size for cs in candidates.values() for c in cs])
    plans, before, after = [], [], []
    for image_id in ds.images:
        if options.level == "image":
            plan = plan_image_level(ds, image_id, candidates[image_id], hist, options, source_sorted)
        else:
            plan = plan_image(ds, image_id, candidates[image_id], hist, options, msm_new, pool)
        plans.append(plan)
        before.extend(c.size for c in candidates[image_id])
        after.extend(i.size for i in plan.instances if i.matched)
    return DatasetPlan(plans, before, after)


class BackgroundPool:
    """The images PSI may draw a new background from; a draw is O(1), never a new list."""

    def __init__(self, image_ids: Sequence[int]):
        self.ids = list(image_ids)
        self._position = {i: k for k, i in enumerate(self.ids)}

    def draw(self, rng: np.random.Generator, image_id: int) -> Optional[int]:
        """A uniformly drawn pool image other than `image_id` (None if there is none)."""
        own = self._position.get(image_id)
        n = len(self.ids) - (own is not None)
        if n <= 0:
            return None
        k = int(rng.integers(n))
        return self.ids[k + 1 if own is not None and k >= own else k]


def plan_image(ds: CocoDataset, image_id: int, matched: Sequence[_Candidate], hist: SizeHistogram,
               options: TransformOptions, msm_new: Dict[int, float], pool: BackgroundPool) -> ImagePlan:
    im = ds.images[image_id]
    rng = np.random.default_rng([options.seed, image_id])
    # Draw order is fixed (PSI first, then sizes) so a plan never depends on other images.
    u = rng.random()
    new_background = {"psi": u > options.psi_p, "inpaint": False, "new": True}[options.background]
    new_background = new_background or options.mode in COPY_PASTE
    drawn = pool.draw(rng, image_id) if new_background else None
    bg_id = image_id if drawn is None else drawn
    bg = ds.images[bg_id]
    if options.mode == "rsm":
        new_sizes = dict(zip((c.ann["id"] for c in matched), map(float, hist.sample_rsm(rng, len(matched)))))
    elif options.mode in COPY_PASTE:
        new_sizes = {c.ann["id"]: c.size for c in matched}
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
    labels = ()
    if options.mode == "cp+" and bg_id != image_id:
        labels = tuple(a["id"] for a in ds.anns_by_image[bg_id]
                       if not a.get("iscrowd") and degenerate_reason(a, bg["width"], bg["height"]) is None)
    return ImagePlan(image_id, "new" if bg_id != image_id else "inpaint", bg_id, bg["width"], bg["height"],
                     tuple(instances), tuple(erased), tuple(dropped), labels)


def plan_image_level(ds: CocoDataset, image_id: int, matched: Sequence[_Candidate], hist: SizeHistogram,
                     options: TransformOptions, source_sorted: np.ndarray) -> ImagePlan:
    """Scale Match (Yu et al. 2020): one scale for the whole image, from its mean object size.

    RSM draws a target size (up to 5 tries to land the scale in scale_range);
    MSM maps the image's mean size through the quantiles of all source object
    sizes. The scale is then clipped to scale_range.
    """
    im = ds.images[image_id]
    rng = np.random.default_rng([options.seed, image_id])
    lo, hi = options.scale_range
    if not matched:
        scale = DEFAULT_IMAGE_SCALE
    else:
        mean = float(np.exp(np.mean(np.log([c.size for c in matched]))))  # geometric mean
        if options.mode == "rsm":
            for _ in range(IMAGE_LEVEL_TRIES):
                scale = float(hist.sample_rsm(rng, 1)[0]) / mean
                if lo <= scale <= hi:
                    break
        else:
            below = np.searchsorted(source_sorted, mean, side="left")
            equal = np.searchsorted(source_sorted, mean, side="right") - below
            q = (below + 0.5 * equal) / len(source_sorted)
            scale = float(hist.quantile([q])[0]) / mean
        scale = min(max(scale, lo), hi)
    W, H = max(1, int(round(im["width"] * scale))), max(1, int(round(im["height"] * scale)))
    sx, sy = W / im["width"], H / im["height"]  # exact per-axis scales of the resized image
    selected = {c.ann["id"] for c in matched}
    instances, kept, dropped = [], [], []
    for a in ds.anns_by_image[image_id]:
        reason = degenerate_reason(a, im["width"], im["height"])
        if reason is not None:
            dropped.append((a["id"], reason))
            continue
        if a.get("iscrowd"):
            kept.append(a["id"])  # the whole image is scaled: a crowd stays a labelled crowd
            continue
        x, y, w, h = clipped_box(a, im["width"], im["height"])
        if w * sx < MIN_SIDE or h * sy < MIN_SIDE:
            dropped.append((a["id"], "too_small"))
            continue
        box = (x * sx, y * sy, w * sx, h * sy)
        instances.append(InstancePlan(a["id"], scale, instance_size(box[2], box[3]), box, a["id"] in selected))
    return ImagePlan(image_id, "resize", image_id, W, H, tuple(instances), tuple(kept), tuple(dropped))
