"""Plan: pure, annotation-only decisions of an SM+ run.

From (source annotations, target histogram, options, seed) the planner
decides everything random -- each instance's new size and place, each
image's background -- and nothing else. Plans are frozen dataclasses that
round-trip through JSON; rendering replays them on the pixels.

Randomness: one generator per image, `default_rng([seed, image_id])`, so a
plan does not depend on worker count, order, or which images ran before.
"""

from __future__ import annotations

import bisect
import heapq
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .coco import (
    JPEG_QUALITY,
    JPEG_SUBSAMPLING,
    JPEG_SUBSAMPLINGS,
    MAX_IMAGE_PIXELS,
    CocoDataset,
    ann_to_rle,
    finite_number,
    instance_size,
    rle_counts,
    usable_polygons,
)
from .errors import UsageError
from .histogram import SizeHistogram

MODES = ("msm", "rsm", "cp", "cp+")
COPY_PASTE = ("cp", "cp+")  # paper Table 6: instances pasted unscaled onto a new background
BACKGROUNDS = ("psi", "inpaint", "new")
LEVELS = ("instance", "image")  # image: the original Scale Match (Yu et al., WACV 2020)
IMAGE_LEVEL_TRIES = 5             # RSM draws until the scale lands in scale_range
MAX_IMAGE_GROWTH = 16.0          # image level: an output image has at most 16x its source's pixels (4x a side)
DEFAULT_IMAGE_SCALE = 0.25        # an image without boxes  # inpaint: "SM+ w/o PSI" (paper Table 5); new: always replaced
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
# Labels that cannot be cut out (no usable mask or box) but still locate an object:
# kept unscaled where the image's own pixels stay, dropped where they do not.
UNSCALED = ("bad_polygon", "bad_mask", "bad_box", "zero_size_box")
BACKGROUND_TRIES = 8  # draws of a new background that holds the instances, then the image's own
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
BACKGROUND_POOLS = ("all", "clean")
# clean pool: images whose scale-matched objects (crowds included) cover at most
# --max-background-objects of the frame (mask area); those objects are erased
# with the fill. On coco_tiny 21 % (val) and 25 % (train) of the images qualify
# at 0.1 with all categories, 68 % and 75 % with persons alone (scripts/background_pool.py).
DEFAULT_MAX_BACKGROUND_OBJECTS = 0.1
# When fewer images than this share of the set qualify, the share with the least
# such area is the pool (their objects erased all the same).
CLEAN_POOL_MIN_SHARE = 0.1
DEFAULT_MAX_HOLE = 0.5  # a hole over this share of the image: a new background instead (README: measured)



@dataclass(frozen=True)
class TransformOptions:
    mode: str = "msm"
    seed: int = 0
    psi_p: float = 0.4
    categories: Optional[Tuple[int, ...]] = None  # scale-matched category ids; None = all
    background: str = "psi"
    level: str = "instance"
    scale_range: Tuple[float, float] = (0.1, 1.0)  # image level: allowed image scales
    background_pool: str = "clean"  # all: any image, its objects kept (the paper); clean: see pool_images
    max_background_objects: float = DEFAULT_MAX_BACKGROUND_OBJECTS  # clean pool: share of the frame
    max_hole: float = DEFAULT_MAX_HOLE  # render: holes above this fraction are not inpainted
    jpeg_quality: int = JPEG_QUALITY
    jpeg_subsampling: str = JPEG_SUBSAMPLING


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
        if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and 0 < lo <= hi < math.inf):
            raise UsageError(f"--scale-range must be two finite numbers 0 < LOW <= HIGH, got {lo!r} {hi!r}")
        if self.background not in BACKGROUNDS:
            raise UsageError(f"--background must be one of {', '.join(BACKGROUNDS)}, got {self.background!r}")
        if self.background_pool not in BACKGROUND_POOLS:
            raise UsageError(f"--background-pool must be one of {', '.join(BACKGROUND_POOLS)}, "
                             f"got {self.background_pool!r}")
        if not (isinstance(self.max_background_objects, (int, float)) and 0.0 <= self.max_background_objects <= 1.0):
            raise UsageError(f"--max-background-objects must be a fraction in [0, 1], got {self.max_background_objects!r}")
        if not (isinstance(self.max_hole, (int, float)) and 0.0 < self.max_hole <= 1.0):
            raise UsageError(f"--max-hole must be a fraction in (0, 1], got {self.max_hole!r}")
        if not (isinstance(self.jpeg_quality, int) and 1 <= self.jpeg_quality <= 100):
            raise UsageError(f"--jpeg-quality must be an integer in [1, 100], got {self.jpeg_quality!r}")
        if self.jpeg_subsampling not in JPEG_SUBSAMPLINGS:
            raise UsageError(f"--jpeg-subsampling must be one of {', '.join(JPEG_SUBSAMPLINGS)}, "
                             f"got {self.jpeg_subsampling!r}")



@dataclass(frozen=True)
class InstancePlan:
    ann_id: int
    scale: float                  # r = planned size / source size
    size: float                   # planned size s = sqrt(w*h), px
    box: Tuple[float, float, float, float]  # planned box (x, y, w, h) in the output image
    matched: bool = True          # scale-matched; False: kept at its size (other category)
    # Scaled by r about a fixed point: src_point (source image) lands on out_point
    # (output image). See fixed_point: the box centre, or a point on the frame.
    # (Image level scales the whole image about its origin: the defaults.)
    src_point: Tuple[float, float] = (0.0, 0.0)
    out_point: Tuple[float, float] = (0.0, 0.0)

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
    unscaled: Tuple[Tuple[int, str], ...] = ()  # (ann_id, reason): labels kept as they are (see UNSCALED)
    removed: Tuple[int, ...] = ()       # dropped instances whose pixels are erased with the holes
    kept: Tuple[int, ...] = ()          # inpaint: instances of categories not scale-matched, left in place
                                        # (pixels untouched but where a hole covers them)
    background_erased: Tuple[int, ...] = ()  # new: the background's annotations erased with the fill
                                             # (its crowds; clean pool: its scale-matched objects too)
    fallback: Optional["ImagePlan"] = None  # inpaint: the new-background plan used when the holes
                                            # are too large to fill (see render.UnfillableHoles)

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
                                                box=tuple(i["box"]), matched=i["matched"],
                                                src_point=tuple(i["src_point"]), out_point=tuple(i["out_point"]))
                                   for i in d["instances"]),
                   crowd=tuple(d["crowd"]), dropped=tuple(tuple(x) for x in d["dropped"]),
                   background_labels=tuple(d.get("background_labels", ())),
                   unscaled=tuple(tuple(x) for x in d.get("unscaled", ())), removed=tuple(d.get("removed", ())),
                   kept=tuple(d.get("kept", ())), background_erased=tuple(d.get("background_erased", ())),
                   fallback=cls.from_json(d["fallback"]) if d.get("fallback") else None)


# ---------------------------------------------------------------- annotation checks

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
    if not (isinstance(box, (list, tuple)) and len(box) == 4
            and all(map(finite_number, box))):
        return "bad_box"
    x, y, w, h = box
    if w < 0.01 or h < 0.01:  # a hundredth of a pixel is no object (and no scale)
        return "zero_size_box"
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return "outside_image"
    if min(width, x + w) - max(0, x) < 0.01 or min(height, y + h) - max(0, y) < 0.01:
        return "outside_image"  # only a sliver inside
    return None


def unscaled_label(ann: dict, reason: str, image_id: int, width: int, height: int,
                   out_size: Optional[Tuple[int, int]] = None) -> Optional[dict]:
    """The output label of an annotation that cannot be cut out, kept as it is.

    Where its pixels stay (the image's own background) the object is still
    there, so its label stays: its mask if that is usable, else its box as a
    polygon; "unscaled" says which and why. `out_size` (W, H): the whole image
    was resized to it (image level). None when it locates nothing: dropped.
    """
    from pycocotools import mask as mask_utils

    from .coco import mask_to_rle, resample_mask

    if reason not in UNSCALED:
        return None
    out_w, out_h = out_size or (width, height)
    sx, sy = out_w / width, out_h / height
    rle = ann_to_rle(ann.get("segmentation"), height, width)
    if rle is not None and mask_utils.area(rle) > 0:
        mask = mask_utils.decode(rle)
        if out_size is not None:
            mask = resample_mask(mask, out_size)
        if not mask.any():
            return None
        segmentation = mask_to_rle(mask)
        x, y, w, h = (float(v) for v in mask_utils.toBbox({**segmentation, "counts": segmentation["counts"].encode()}))
        label = {"bbox": [x, y, w, h], "area": int(mask.sum()), "segmentation": segmentation,
                 "unscaled": {"reason": reason, "mask": "source"}}
    elif box_reason(ann.get("bbox"), width, height) is None:
        x, y, w, h = clipped_box(ann, width, height)
        x, y, w, h = x * sx, y * sy, w * sx, h * sy
        label = {"bbox": [round(v, 3) for v in (x, y, w, h)], "area": round(w * h, 3),
                 "segmentation": [[round(v, 3) for v in (x, y, x + w, y, x + w, y + h, x, y + h)]],
                 "unscaled": {"reason": reason, "mask": "box"}}
    else:
        return None
    return {"image_id": image_id, "category_id": ann["category_id"], **label, "iscrowd": 0,
            "source_ann_id": ann["id"]}


def unscaled_labels(plan: "ImagePlan", anns: Dict[int, dict], width: int, height: int) -> List[dict]:
    """The labels `plan` keeps unscaled, on its output image (source image `width` x `height`)."""
    out_size = (plan.width, plan.height) if plan.background == "resize" else None
    return [unscaled_label(anns[ann_id], reason, plan.image_id, width, height, out_size)
            for ann_id, reason in plan.unscaled]


def clipped_box(ann: dict, width: int, height: int) -> Tuple[float, float, float, float]:
    x, y, w, h = ann["bbox"]
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(width), x + w), min(float(height), y + h)
    return x0, y0, x1 - x0, y1 - y0


def fixed_point(box: Tuple[float, float, float, float], width: int, height: int) -> Optional[Tuple[float, float]]:
    """The point an instance is scaled about, in source coordinates (SM+ step 2).

    Per axis: its box centre, or, for an instance cut by the frame, its point
    on that frame edge (left/top -> 0, right/bottom -> W/H), so the cut stays
    on the edge of the output frame (mapped proportionally to the same edge of
    a new background). None when it is cut by two opposite edges (or fills
    the frame along an axis): no smaller copy can keep both cuts on the frame.
    """
    point = []
    for lo, extent, size in ((box[0], box[2], width), (box[1], box[3], height)):
        first, last = lo <= FRAME_TOLERANCE, lo + extent >= size - FRAME_TOLERANCE
        if (first and last) or extent >= WHOLE_FRAME * size:
            return None
        point.append(0.0 if first else float(size) if last else lo + extent / 2)
    return point[0], point[1]


def least_size(w: float, h: float) -> float:
    """The least planned size s = sqrt(w*h) at which a w x h box keeps its short side
    at MIN_SIDE, with BIN_MARGIN for the rendered size's tolerance."""
    return MIN_SIDE * BIN_MARGIN * math.sqrt(max(w, h) / min(w, h))


def reachable_size(size: float, least: float, hist: SizeHistogram) -> float:
    """The planned size of an instance of least size `least` (least_size) given target size `size`.

    `size` itself, or if under `least`, `least` when that is still in the same
    bin of the target histogram (BIN_MARGIN inside its upper edge): size is
    matched by bin, so the instance counts where the target asked for it. If
    not, `size` (whose short side is then under MIN_SIDE: dropped).
    """
    if size >= least:
        return size
    upper = hist.edges[int(hist.bin_index([size])[0]) + 1] / BIN_MARGIN
    return least if least < upper else size


def msm_reachable_sizes(sizes: Sequence[float], least: Sequence[float], hist: SizeHistogram) -> np.ndarray:
    """MSM+ sizes, monotone as far as the instances allow.

    The target quantiles are dealt in increasing order, each to the smallest
    instance (in source size, ties in order of appearance) not yet served that
    can reach it (reachable_size keeps its short side at MIN_SIDE). Where every
    instance can reach its quantile this is msm_sizes; an instance too
    elongated for its small quantile takes the next it can reach, so none is
    dropped and every quantile is used. Quantiles no instance can reach are
    left out, and the instances left over take their own quantile. O(n log n).
    """
    n = len(sizes)
    targets = hist.quantile((np.arange(n) + 0.5) / n)  # increasing
    order = np.argsort(np.asarray(sizes, float), kind="stable")  # source position -> instance
    least = np.asarray(least, float)[order]
    # The first quantile each instance can reach: at or above its least size, or in a bin that holds it.
    first_bin = np.searchsorted(np.asarray(hist.edges)[1:] / BIN_MARGIN, least, side="right")
    first = np.minimum(np.searchsorted(targets, least, side="left"),
                       np.searchsorted(hist.bin_index(targets), first_bin, side="left"))
    out = targets.copy()  # by source position; an instance dealt no quantile keeps the one at its own
    waiting: List[int] = []  # source positions that can reach the current quantile
    by_first = np.argsort(first, kind="stable")
    k = 0
    for j in range(n):
        while k < n and first[by_first[k]] <= j:
            heapq.heappush(waiting, int(by_first[k]))
            k += 1
        if waiting:
            out[heapq.heappop(waiting)] = targets[j]
    result = np.empty(n)
    result[order] = out
    return result


@dataclass
class Candidate:
    """A scale-matched instance of one image, as the planner sees it."""

    image_id: int
    ann: dict
    size: float
    least: float    # least_size of its box
    cut_both: bool  # cut by two opposite frame edges: dropped, not scale-matched


def image_candidates(image: dict, anns: Sequence[dict], selected: Optional[set]) -> Tuple[Dict[int, str], List[Candidate]]:
    """Why each annotation of `image` cannot be transformed (only those with a reason), and its
    candidates: the annotations of the scale-matched categories (`selected`; None: all) that can."""
    W, H = image["width"], image["height"]
    bad: Dict[int, str] = {}
    for a in anns:
        reason = degenerate_reason(a, W, H)
        if reason is not None:
            bad[a["id"]] = reason
    candidates = []
    for a in anns:
        if not a.get("iscrowd") and a["id"] not in bad and (selected is None or a["category_id"] in selected):
            box = clipped_box(a, W, H)
            candidates.append(Candidate(image["id"], a, instance_size(*box[2:]), least_size(*box[2:]),
                                        fixed_point(box, W, H) is None))
    return bad, candidates


# ---------------------------------------------------------------- size suppliers (SM+ step 2)

class RsmSizes:
    """RSM+: each instance's size drawn from the target histogram (a bin by its probability,
    then uniformly in it), from the image's generator."""

    def __init__(self, hist: SizeHistogram):
        self.hist = hist

    def sizes(self, rng: np.random.Generator, instances: Sequence[Candidate]) -> List[float]:
        return list(map(float, self.hist.sample_rsm(rng, len(instances))))


class MsmSizes:
    """MSM+ per image: an instance's quantile among the source sizes (fitted once) picks the
    same quantile of the target. (The offline run deals the quantiles over the whole set
    instead: DealtSizes.)"""

    def __init__(self, hist: SizeHistogram, source_sizes: Sequence[float]):
        self.hist = hist
        self.source = np.sort(np.asarray(source_sizes, float))
        if not len(self.source):
            raise UsageError("MSM+ needs the source sizes: the source has no instance to scale-match "
                             "(give another source, or use mode 'rsm')")

    def quantiles(self, sizes: Sequence[float]) -> np.ndarray:
        sizes = np.asarray(sizes, float)
        below = np.searchsorted(self.source, sizes, side="left")
        equal = np.searchsorted(self.source, sizes, side="right") - below
        return (below + 0.5 * equal) / len(self.source)

    def sizes(self, rng: np.random.Generator, instances: Sequence[Candidate]) -> List[float]:
        if not instances:
            return []
        return list(map(float, self.hist.quantile(self.quantiles([c.size for c in instances]))))


class DealtSizes:
    """MSM+ over a whole dataset: the sizes msm_reachable_sizes dealt, by annotation id."""

    def __init__(self, hist: SizeHistogram, by_ann: Dict[int, float]):
        self.hist, self.by_ann = hist, by_ann

    @classmethod
    def deal(cls, hist: SizeHistogram, candidates: Sequence[Candidate]) -> "DealtSizes":
        flat = [c for c in candidates if not c.cut_both]
        dealt = msm_reachable_sizes([c.size for c in flat], [c.least for c in flat], hist)
        return cls(hist, {c.ann["id"]: float(s) for c, s in zip(flat, dealt)})

    def sizes(self, rng: np.random.Generator, instances: Sequence[Candidate]) -> List[float]:
        return [self.by_ann[c.ann["id"]] for c in instances]


class OwnSizes:
    """Copy-paste (cp, cp+): every instance keeps its own size."""

    def __init__(self, hist: SizeHistogram):
        self.hist = hist

    def sizes(self, rng: np.random.Generator, instances: Sequence[Candidate]) -> List[float]:
        return [c.size for c in instances]


@dataclass
class DatasetPlan:
    images: List[ImagePlan]
    source_sizes: List[float] = field(default_factory=list)   # matched instances, before
    planned_sizes: List[float] = field(default_factory=list)  # matched instances kept, after
    pool_size: int = 0                                        # images a new background is drawn from


def plan_dataset(ds: CocoDataset, hist: SizeHistogram, options: TransformOptions) -> DatasetPlan:
    """Plan every image of `ds`. MSM+ needs all source sizes first, so this is one pass over the set."""
    selected = set(options.categories) if options.categories is not None else None
    bad: Dict[int, str] = {}  # why an annotation cannot be transformed, checked once (few have a reason)
    candidates: Dict[int, List[Candidate]] = {}
    for image_id, im in ds.images.items():
        image_bad, candidates[image_id] = image_candidates(im, ds.anns_by_image[image_id], selected)
        bad.update(image_bad)
    sizes = (OwnSizes(hist) if options.mode in COPY_PASTE else RsmSizes(hist) if options.mode == "rsm"
             else DealtSizes.deal(hist, [c for cs in candidates.values() for c in cs]) if options.level == "instance"
             else None)

    pool = BackgroundPool(pool_images(ds, options.background_pool, selected, options.max_background_objects),
                          ds.images, ds.anns_by_image)
    source_sorted = np.sort([c.size for cs in candidates.values() for c in cs])
    plans, before, after = [], [], []
    for image_id, im in ds.images.items():
        if options.level == "image":
            plan = plan_image_level(im, ds.anns_by_image[image_id], candidates[image_id], hist, options,
                                    source_sorted, bad)
        else:
            plan = plan_image(im, ds.anns_by_image[image_id], sizes, image_rng(options.seed, image_id), pool, options,
                              candidates[image_id], bad)
        plans.append(plan)
        before.extend(c.size for c in candidates[image_id])
        after.extend(i.size for i in plan.instances if i.matched)
    return DatasetPlan(plans, before, after, len(pool.ids))


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


def plan_image(image: dict, anns: Sequence[dict], sizes, rng: np.random.Generator, backgrounds,
               options: TransformOptions, matched: Optional[Sequence[Candidate]] = None,
               bad: Optional[Dict[int, str]] = None) -> ImagePlan:
    """SM+ plan of one image, from its entry and annotations alone (instance level).

    `sizes` supplies the new sizes (RsmSizes, MsmSizes, DealtSizes, OwnSizes:
    `.sizes(rng, candidates)` and `.hist`); `backgrounds` the new background
    (`.draw(rng, image_id, need) -> image id or None` and `.background(id) ->
    (entry, annotations)`, e.g. BackgroundPool); `rng` is the image's generator.
    `matched` and `bad` (image_candidates) may be given when already known.
    """
    image_id = image["id"]
    W, H = image["width"], image["height"]
    if matched is None or bad is None:
        selected = set(options.categories) if options.categories is not None else None
        bad, matched = image_candidates(image, anns, selected)
    # Draw order is fixed (PSI, sizes, the background that holds them, then the
    # fallback background) so a plan never depends on other images.
    u = rng.random()
    new_background = {"psi": u > options.psi_p, "inpaint": False, "new": True}[options.background]
    new_background = new_background or options.mode in COPY_PASTE
    to_scale = [c for c in matched if not c.cut_both]
    new_sizes = dict(zip((c.ann["id"] for c in to_scale), sizes.sizes(rng, to_scale)))
    cut_both = {c.ann["id"] for c in matched if c.cut_both}

    scaled, unusable, dropped = [], [], []  # dropped here: erased with the holes (ImagePlan.removed)
    others = []  # categories not scale-matched: left in place on the image's own background
    for a in anns:
        if a.get("iscrowd"):
            continue
        reason = bad.get(a["id"])
        if reason is not None:
            unusable.append((a, reason))
            continue
        x, y, w, h = box = clipped_box(a, W, H)
        if a["id"] in cut_both:
            # Cut by two opposite edges: a smaller copy would show a cut inside the frame.
            dropped.append((a["id"], "cut_both_edges"))
            continue
        if a["id"] in new_sizes:
            # r is bounded so the instance fits the image: an outlier target size
            # must not ask for a paste larger than any background.
            size = reachable_size(new_sizes[a["id"]], least_size(w, h), sizes.hist)
            scale = min(size / instance_size(w, h), W / w, H / h)
            if w * scale < MIN_SIDE or h * scale < MIN_SIDE:
                dropped.append((a["id"], "too_small"))
                continue
            scaled.append((a, box, scale, True, fixed_point(box, W, H)))
        else:
            others.append(a["id"])
    need = (max((b[2] * r for _, b, r, _, _ in scaled), default=0.0),
            max((b[3] * r for _, b, r, _, _ in scaled), default=0.0))
    drawn = backgrounds.draw(rng, image_id, need) if new_background and matched else None
    own = (image, anns)
    if not matched:  # nothing to scale: copied as is
        plan = _plan_on(image, anns, own, scaled, unusable, dropped, options, others)
        return ImagePlan(image_id, "none", image_id, W, H, dropped=plan.dropped, unscaled=plan.unscaled)
    plan = _plan_on(image, anns, own if drawn is None else backgrounds.background(drawn), scaled, unusable, dropped,
                    options, others)
    if drawn is None:  # holes too large to inpaint take another image instead (drawn last)
        fallback_id = backgrounds.draw(rng, image_id, need)
        if fallback_id is not None:
            return replace(plan, fallback=_plan_on(image, anns, backgrounds.background(fallback_id), scaled, unusable,
                                                     dropped, options, others))
    return plan


def _plan_on(image: dict, anns: Sequence[dict], background: Tuple[dict, Sequence[dict]], scaled: Sequence[tuple],
             unusable: Sequence[tuple], dropped: Sequence[tuple], options: TransformOptions,
             others: Sequence[int] = ()) -> ImagePlan:
    """The plan of `image` on `background` = (entry, annotations) (itself: inpainted), scales decided.

    `scaled`: (annotation, clipped box, scale, matched, fixed point); `unusable`:
    (annotation, reason) of those that cannot be cut out; `dropped`: (id, reason) of
    instances dropped by scale matching, whose pixels are erased with the holes;
    `others`: instances of categories not scale-matched. Those stay where they are
    on the image's own background (kept); on a new one they are dropped: pasted at
    their own size they would stand out among the scale-matched ones (a 306 px
    handbag in the sky beside 15 px persons), and the background does not show them.
    """
    image_id = image["id"]
    bg, bg_anns = background
    bg_id = bg["id"]
    W, H = image["width"], image["height"]
    removed, dropped, unscaled = tuple(i for i, _ in dropped), list(dropped), []
    kept = tuple(others) if bg_id == image_id else ()
    if bg_id != image_id:
        dropped.extend((i, "other_category_on_new_background") for i in others)
    # Labels that cannot be cut out stay where the image's own pixels stay.
    for a, reason in unusable:
        keep = bg_id == image_id and unscaled_label(a, reason, image_id, W, H) is not None
        (unscaled if keep else dropped).append((a["id"], reason))
    fx, fy = bg["width"] / W, bg["height"] / H
    instances = []
    for a, (x, y, w, h), scale, is_matched, src in scaled:
        out = (src[0] * fx, src[1] * fy)  # the same place, proportionally, on a new background
        box = (out[0] + scale * (x - src[0]), out[1] + scale * (y - src[1]), w * scale, h * scale)
        instances.append(InstancePlan(a["id"], float(scale), instance_size(w * scale, h * scale), box, is_matched,
                                      src, out))
    erased = tuple(a["id"] for a in anns if a.get("iscrowd"))
    labels, bg_erased = (), ()
    if bg_id != image_id:
        if options.mode == "cp+":
            labels = tuple(a["id"] for a in bg_anns
                           if not a.get("iscrowd") and degenerate_reason(a, bg["width"], bg["height"]) is None)
        # Its crowds are erased; from the clean pool, its objects of the scale-matched
        # categories too (pool_images bounds their share), unless cp+ keeps their labels.
        selected = None if options.categories is None else set(options.categories)
        clean = options.background_pool == "clean"
        bg_erased = tuple(a["id"] for a in bg_anns
                          if a.get("iscrowd") or (clean and a["id"] not in labels
                                                  and (selected is None or a["category_id"] in selected)))
    return ImagePlan(image_id, "new" if bg_id != image_id else "inpaint", bg_id, bg["width"], bg["height"],
                     tuple(instances), erased, tuple(dropped), labels, tuple(unscaled), removed, kept=kept,
                     background_erased=bg_erased)


def image_rng(seed: int, image_id: int) -> np.random.Generator:
    """The image's own generator: default_rng([seed, image_id]), which takes no negative number.

    A negative id is given a spawn key, which SeedSequence appends after padding the entropy
    to 4 words: 5 words or more, which no [seed, id >= 0] with seed < 2**64 makes."""
    if image_id >= 0:
        return np.random.default_rng([seed, image_id])
    return np.random.default_rng(np.random.SeedSequence([seed, -image_id], spawn_key=(1,)))


def plan_image_level(im: dict, anns: Sequence[dict], matched: Sequence[Candidate], hist: SizeHistogram,
                     options: TransformOptions, source_sorted: np.ndarray, bad: Dict[int, str]) -> ImagePlan:
    """Scale Match (Yu et al. 2020): one scale for the whole image, from its mean object size.

    RSM draws a target size (up to 5 tries to land the scale in scale_range);
    MSM maps the image's mean size through the quantiles of all source object
    sizes. The scale is then clipped to scale_range.
    """
    image_id = im["id"]
    rng = image_rng(options.seed, image_id)
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
    # bounded like an instance's scale: an image larger than its source by more than MAX_IMAGE_GROWTH
    # in area (or 2**30 pixels in all, OpenCV's limit) is nothing Scale Match asks for (1000x was 818 GB)
    scale = min(scale, math.sqrt(min(MAX_IMAGE_GROWTH, MAX_IMAGE_PIXELS / (im["width"] * im["height"]))))
    W, H = max(1, int(round(im["width"] * scale))), max(1, int(round(im["height"] * scale)))
    sx, sy = W / im["width"], H / im["height"]  # exact per-axis scales of the resized image
    selected = {c.ann["id"] for c in matched}
    instances, kept, dropped, unscaled = [], [], [], []
    for a in anns:
        reason = bad.get(a["id"])
        if a.get("iscrowd"):
            if reason is None:
                kept.append(a["id"])  # the whole image is scaled: a crowd stays a labelled crowd
            continue
        if reason is not None:  # its pixels are scaled with the image: its label too, if it locates them
            keep = unscaled_label(a, reason, image_id, im["width"], im["height"], (W, H)) is not None
            (unscaled if keep else dropped).append((a["id"], reason))
            continue
        x, y, w, h = clipped_box(a, im["width"], im["height"])
        if w * sx < MIN_SIDE or h * sy < MIN_SIDE:
            dropped.append((a["id"], "too_small"))
            continue
        box = (x * sx, y * sy, w * sx, h * sy)
        instances.append(InstancePlan(a["id"], scale, instance_size(box[2], box[3]), box, a["id"] in selected))
    return ImagePlan(image_id, "resize", image_id, W, H, tuple(instances), tuple(kept), tuple(dropped),
                     unscaled=tuple(unscaled))
