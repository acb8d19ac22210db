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

from .coco import JPEG_QUALITY, JPEG_SUBSAMPLING, JPEG_SUBSAMPLINGS, CocoDataset, ann_to_rle, instance_size, usable_polygons
from .errors import UsageError
from .histogram import SizeHistogram

MODES = ("msm", "rsm", "cp", "cp+")
COPY_PASTE = ("cp", "cp+")  # paper Table 6: instances pasted unscaled onto a new background
BACKGROUNDS = ("psi", "inpaint", "new")
LEVELS = ("instance", "image")  # image: the original Scale Match (Yu et al., WACV 2020)
IMAGE_LEVEL_TRIES = 5             # RSM draws until the scale lands in scale_range
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
# often stop up to a pixel short of the frame (coco_tiny: 155 box sides within
# 1 px of an edge, 137 with a mask pixel on it, none missed).
FRAME_TOLERANCE = 1.0
# A box spanning this share of a frame side fills it: cut by both edges, even if
# its polygon stops short of them (COCO's whole-frame tables and bowls stop
# 2-6 px short, and were pasted as pictures in the picture).
WHOLE_FRAME = 0.98
BACKGROUND_POOLS = ("all", "clean")
# clean pool: when fewer images than this share of the set hold no scale-matched
# object, the share with the least such area (boxes over image) is the pool.
CLEAN_POOL_MIN_SHARE = 0.1
FILLS = ("patchmatch", "telea")  # as background.FILLS (plan stays free of pixel code)
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
    background_pool: str = "all"  # all: any image (the paper); clean: none of the scale-matched categories
    max_hole: float = DEFAULT_MAX_HOLE  # render: holes above this fraction are not inpainted
    jpeg_quality: int = JPEG_QUALITY
    jpeg_subsampling: str = JPEG_SUBSAMPLING
    fill: str = "patchmatch"  # render: how holes are filled (background.FILLS); telea: the paper's


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
        if self.background_pool not in BACKGROUND_POOLS:
            raise UsageError(f"--background-pool must be one of {', '.join(BACKGROUND_POOLS)}, "
                             f"got {self.background_pool!r}")
        if not (isinstance(self.max_hole, (int, float)) and 0.0 < self.max_hole <= 1.0):
            raise UsageError(f"--max-hole must be a fraction in (0, 1], got {self.max_hole!r}")
        if not (isinstance(self.jpeg_quality, int) and 1 <= self.jpeg_quality <= 100):
            raise UsageError(f"--jpeg-quality must be an integer in [1, 100], got {self.jpeg_quality!r}")
        if self.jpeg_subsampling not in JPEG_SUBSAMPLINGS:
            raise UsageError(f"--jpeg-subsampling must be one of {', '.join(JPEG_SUBSAMPLINGS)}, "
                             f"got {self.jpeg_subsampling!r}")
        if self.fill not in FILLS:
            raise UsageError(f"--fill must be one of {', '.join(FILLS)}, got {self.fill!r}")



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
    elif not (isinstance(seg, dict) and "counts" in seg and "size" in seg):
        return "bad_mask"
    elif list(seg["size"]) != [height, width]:
        return "bad_mask"
    return None


def box_reason(box, width: int, height: int) -> Optional[str]:
    """Why a COCO bbox locates nothing in a width x height image (None if it does)."""
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
class _Candidate:
    image_id: int
    ann: dict
    size: float
    least: float    # least_size of its box
    cut_both: bool  # cut by two opposite frame edges: dropped, not scale-matched


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
    candidates: Dict[int, List[_Candidate]] = {}
    for image_id, im in ds.images.items():
        for a in ds.anns_by_image[image_id]:
            reason = degenerate_reason(a, im["width"], im["height"])
            if reason is not None:
                bad[a["id"]] = reason
        candidates[image_id] = []
        for a in ds.anns_by_image[image_id]:
            if not a.get("iscrowd") and a["id"] not in bad and (selected is None or a["category_id"] in selected):
                box = clipped_box(a, im["width"], im["height"])
                candidates[image_id].append(_Candidate(image_id, a, instance_size(*box[2:]), least_size(*box[2:]),
                                                       fixed_point(box, im["width"], im["height"]) is None))
    msm_new: Dict[int, float] = {}
    if options.mode == "msm" and options.level == "instance":
        flat = [c for cs in candidates.values() for c in cs if not c.cut_both]
        for c, s in zip(flat, msm_reachable_sizes([c.size for c in flat], [c.least for c in flat], hist)):
            msm_new[c.ann["id"]] = float(s)

    pool = BackgroundPool(pool_images(ds, options.background_pool, selected), ds.images)
    source_sorted = np.sort([c.size for cs in candidates.values() for c in cs])
    plans, before, after = [], [], []
    for image_id in ds.images:
        if options.level == "image":
            plan = plan_image_level(ds, image_id, candidates[image_id], hist, options, source_sorted, bad)
        else:
            plan = plan_image(ds, image_id, candidates[image_id], hist, options, msm_new, pool, bad)
        plans.append(plan)
        before.extend(c.size for c in candidates[image_id])
        after.extend(i.size for i in plan.instances if i.matched)
    return DatasetPlan(plans, before, after, len(pool.ids))


def pool_images(ds: CocoDataset, kind: str, selected: Optional[set]) -> List[int]:
    """The images a new background may come from, sorted by id.

    all: every image (the paper). clean: images with no annotation (crowds
    included) of the scale-matched categories, so no unlabelled one shows on
    a new background; if fewer than CLEAN_POOL_MIN_SHARE of the set qualify,
    that share of the images with the least such box area.
    """
    if kind == "all":
        return sorted(ds.images)
    covered: Dict[int, Tuple[float, int]] = {}  # image -> (box area share, annotations) of those categories
    for image_id, im in ds.images.items():
        area, count = 0.0, 0
        for a in ds.anns_by_image[image_id]:
            if selected is None or a["category_id"] in selected:
                count += 1
                if box_reason(a.get("bbox"), im["width"], im["height"]) not in ("bad_box", "zero_size_box"):
                    _, _, w, h = clipped_box(a, im["width"], im["height"])
                    area += max(w, 0.0) * max(h, 0.0) / (im["width"] * im["height"])
        covered[image_id] = (area, count)
    clean = [i for i, (_, count) in covered.items() if count == 0]
    need = min(len(covered), math.ceil(CLEAN_POOL_MIN_SHARE * len(covered)))
    if len(clean) >= need:
        return sorted(clean)
    return sorted(sorted(covered, key=lambda i: (covered[i], i))[:need])


class BackgroundPool:
    """The images PSI may draw a new background from; a draw is O(1), never a new list."""

    def __init__(self, image_ids: Sequence[int], images: Dict[int, dict]):
        self.ids = list(image_ids)
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

    @staticmethod
    def _skip(k: int, own: Optional[int]) -> int:
        """Index k of the list without `own` -> index in the whole list."""
        return k + 1 if own is not None and k >= own else k


def plan_image(ds: CocoDataset, image_id: int, matched: Sequence[_Candidate], hist: SizeHistogram,
               options: TransformOptions, msm_new: Dict[int, float], pool: BackgroundPool,
               bad: Dict[int, str]) -> ImagePlan:
    im = ds.images[image_id]
    W, H = im["width"], im["height"]
    rng = np.random.default_rng([options.seed, image_id])
    # Draw order is fixed (PSI, sizes, the background that holds them, then the
    # fallback background) so a plan never depends on other images.
    u = rng.random()
    new_background = {"psi": u > options.psi_p, "inpaint": False, "new": True}[options.background]
    new_background = new_background or options.mode in COPY_PASTE
    to_scale = [c for c in matched if not c.cut_both]
    if options.mode == "rsm":
        new_sizes = dict(zip((c.ann["id"] for c in to_scale), map(float, hist.sample_rsm(rng, len(to_scale)))))
    elif options.mode in COPY_PASTE:
        new_sizes = {c.ann["id"]: c.size for c in to_scale}
    else:
        new_sizes = {c.ann["id"]: msm_new[c.ann["id"]] for c in to_scale}
    cut_both = {c.ann["id"] for c in matched if c.cut_both}

    scaled, unusable, dropped = [], [], []  # dropped here: erased with the holes (ImagePlan.removed)
    for a in ds.anns_by_image[image_id]:
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
            size = reachable_size(new_sizes[a["id"]], least_size(w, h), hist)
            scale = min(size / instance_size(w, h), W / w, H / h)
            if w * scale < MIN_SIDE or h * scale < MIN_SIDE:
                dropped.append((a["id"], "too_small"))
                continue
            scaled.append((a, box, scale, True, fixed_point(box, W, H)))
        else:  # another category: kept at its size
            scaled.append((a, box, 1.0, False, fixed_point(box, W, H)))
    need = (max((b[2] * r for _, b, r, _, _ in scaled), default=0.0),
            max((b[3] * r for _, b, r, _, _ in scaled), default=0.0))
    drawn = pool.draw(rng, image_id, need) if new_background and matched else None
    bg_id = image_id if drawn is None else drawn
    if not matched:  # nothing to scale: copied as is
        plan = _plan_on(ds, image_id, image_id, scaled, unusable, dropped, options)
        return ImagePlan(image_id, "none", image_id, W, H, dropped=plan.dropped, unscaled=plan.unscaled)
    plan = _plan_on(ds, image_id, bg_id, scaled, unusable, dropped, options)
    if bg_id == image_id:  # holes too large to inpaint take another image instead (drawn last)
        fallback_id = pool.draw(rng, image_id, need)
        if fallback_id is not None:
            return replace(plan, fallback=_plan_on(ds, image_id, fallback_id, scaled, unusable, dropped, options))
    return plan


def _plan_on(ds: CocoDataset, image_id: int, bg_id: int, scaled: Sequence[tuple], unusable: Sequence[tuple],
             dropped: Sequence[tuple], options: TransformOptions) -> ImagePlan:
    """The plan of `image_id` on the background of image `bg_id` (itself: inpainted), scales decided.

    `scaled`: (annotation, clipped box, scale, matched, fixed point); `unusable`:
    (annotation, reason) of those that cannot be cut out; `dropped`: (id, reason) of
    instances dropped by scale matching, whose pixels are erased with the holes.
    """
    im, bg = ds.images[image_id], ds.images[bg_id]
    W, H = im["width"], im["height"]
    removed, dropped, unscaled = tuple(i for i, _ in dropped), list(dropped), []
    # Labels that cannot be cut out stay where the image's own pixels stay.
    for a, reason in unusable:
        keep = bg_id == image_id and unscaled_label(a, reason, image_id, W, H) is not None
        (unscaled if keep else dropped).append((a["id"], reason))
    fx, fy = bg["width"] / W, bg["height"] / H
    instances = []
    for a, (x, y, w, h), scale, is_matched, src in scaled:
        if src is None:  # another category cut by two opposite edges: kept in place on its own image only
            if bg_id != image_id:
                dropped.append((a["id"], "cut_both_edges"))
                continue
            src = (x + w / 2, y + h / 2)
        out = (src[0] * fx, src[1] * fy)  # the same place, proportionally, on a new background
        box = (out[0] + scale * (x - src[0]), out[1] + scale * (y - src[1]), w * scale, h * scale)
        instances.append(InstancePlan(a["id"], float(scale), instance_size(w * scale, h * scale), box, is_matched,
                                      src, out))
    erased = tuple(a["id"] for a in ds.anns_by_image[image_id] if a.get("iscrowd"))
    labels = ()
    if options.mode == "cp+" and bg_id != image_id:
        labels = tuple(a["id"] for a in ds.anns_by_image[bg_id]
                       if not a.get("iscrowd") and degenerate_reason(a, bg["width"], bg["height"]) is None)
    return ImagePlan(image_id, "new" if bg_id != image_id else "inpaint", bg_id, bg["width"], bg["height"],
                     tuple(instances), erased, tuple(dropped), labels, tuple(unscaled), removed)


def plan_image_level(ds: CocoDataset, image_id: int, matched: Sequence[_Candidate], hist: SizeHistogram,
                     options: TransformOptions, source_sorted: np.ndarray, bad: Dict[int, str]) -> ImagePlan:
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
    instances, kept, dropped, unscaled = [], [], [], []
    for a in ds.anns_by_image[image_id]:
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
