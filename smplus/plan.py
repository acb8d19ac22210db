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
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .coco import MAX_IMAGE_PIXELS, CocoDataset, instance_size
from .histogram import SizeHistogram
from .labels import UNSCALED, unscaled_label
from .options import (
    BACKGROUND_POOLS,
    BACKGROUNDS,
    COPY_PASTE,
    DEFAULT_MAX_BACKGROUND_OBJECTS,
    DEFAULT_MAX_HOLE,
    LEVELS,
    MODES,
    TransformOptions,
)
from .pool import BACKGROUND_TRIES, CLEAN_POOL_MIN_SHARE, BackgroundPool, background_share, pool_images
from .rules import (
    BIN_MARGIN,
    FRAME_TOLERANCE,
    MIN_IMAGE_SIDE,
    MIN_SIDE,
    WHOLE_FRAME,
    box_reason,
    clipped_box,
    degenerate_reason,
    fixed_point,
    least_size,
)
from .sizes import SLOTS, Candidate, DealtSizes, MsmSizes, OwnSizes, RsmSizes, msm_reachable_sizes, reachable_size

# Re-exported: the names other modules, tests and scripts import from smplus.plan.
__all__ = [
    "BACKGROUND_POOLS", "BACKGROUNDS", "BACKGROUND_TRIES", "BIN_MARGIN", "CLEAN_POOL_MIN_SHARE", "COPY_PASTE",
    "DEFAULT_MAX_BACKGROUND_OBJECTS", "DEFAULT_MAX_HOLE", "FRAME_TOLERANCE", "LEVELS", "MIN_IMAGE_SIDE", "MIN_SIDE",
    "MODES", "UNSCALED", "WHOLE_FRAME", "BackgroundPool", "Candidate", "DatasetPlan", "DealtSizes", "ImagePlan",
    "InstancePlan", "MsmSizes", "OwnSizes", "RsmSizes", "TransformOptions", "background_share", "box_reason",
    "clipped_box", "degenerate_reason", "fixed_point", "image_candidates", "image_rng", "image_rngs", "least_size",
    "msm_reachable_sizes", "plan_dataset", "plan_image", "plan_image_level", "pool_images", "reachable_size",
    "unscaled_label", "unscaled_labels",
]

IMAGE_LEVEL_TRIES = 5             # RSM draws until the scale lands in scale_range
MAX_IMAGE_GROWTH = 16.0          # image level: an output image has at most 16x its source's pixels (4x a side)
DEFAULT_IMAGE_SCALE = 0.25        # an image without boxes  # inpaint: "SM+ w/o PSI" (paper Table 5); new: always replaced


def _quick_init(cls):
    """Give a frozen slots dataclass an __init__ that sets each slot through its descriptor: the
    generated one goes through object.__setattr__ by name, twice the cost, and a plan makes an
    InstancePlan per instance (1.4M at COCO-train size). The same signature and defaults."""
    if not SLOTS:  # (Python 3.9: no slots, the generated __init__)
        return cls
    names = [f.name for f in fields(cls)]
    assert all(f.default_factory is MISSING and f.init for f in fields(cls)) and not hasattr(cls, "__post_init__")
    params = ", ".join(n if f.default is MISSING else f"{n}=_default_{n}" for n, f in zip(names, fields(cls)))
    body = "".join(f"    _set_{n}(self, {n})\n" for n in names)
    namespace = {**{f"_set_{n}": cls.__dict__[n].__set__ for n in names},
                 **{f"_default_{f.name}": f.default for f in fields(cls) if f.default is not MISSING}}
    exec(f"def __init__(self, {params}):\n{body}", namespace)  # as dataclasses makes its methods
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init
    return cls


@_quick_init
@dataclass(frozen=True, **SLOTS)
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


@_quick_init
@dataclass(frozen=True, **SLOTS)
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


def unscaled_labels(plan: "ImagePlan", anns: Dict[int, dict], width: int, height: int) -> List[dict]:
    """The labels `plan` keeps unscaled, on its output image (source image `width` x `height`)."""
    out_size = (plan.width, plan.height) if plan.background == "resize" else None
    return [unscaled_label(anns[ann_id], reason, plan.image_id, width, height, out_size)
            for ann_id, reason in plan.unscaled]


def image_candidates(image: dict, anns: Sequence[dict], selected: Optional[set]) -> Tuple[Dict[int, str], List[Candidate]]:
    """Why each annotation of `image` cannot be transformed (only those with a reason), and its
    candidates: the annotations of the scale-matched categories (`selected`; None: all) that can."""
    W, H = image["width"], image["height"]
    bad: Dict[int, str] = {}
    candidates = []
    for a in anns:
        reason = degenerate_reason(a, W, H)
        if reason is not None:
            bad[a["id"]] = reason
        elif not a.get("iscrowd") and (selected is None or a["category_id"] in selected):
            box = clipped_box(a, W, H)
            candidates.append(Candidate(image["id"], a, box, instance_size(*box[2:]), least_size(*box[2:]),
                                        fixed_point(box, W, H)))
    return bad, candidates


@dataclass
class DatasetPlan:
    images: List[ImagePlan]
    source_sizes: List[float] = field(default_factory=list)   # matched instances, before
    planned_sizes: List[float] = field(default_factory=list)  # matched instances kept, after
    pool_size: int = 0                                        # images a new background is drawn from
    invalid: Dict[int, str] = field(default_factory=dict)     # degenerate_reason of each annotation that has one


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
    for (image_id, im), rng in zip(ds.images.items(), image_rngs(options.seed, list(ds.images))):
        matched = candidates.pop(image_id)  # done with: the plans grow as the candidates go
        if options.level == "image":
            plan = plan_image_level(im, ds.anns_by_image[image_id], matched, hist, options, source_sorted, bad, rng)
        else:
            plan = plan_image(im, ds.anns_by_image[image_id], sizes, rng, pool, options, matched, bad)
        plans.append(plan)
        before.extend(c.size for c in matched)
        after.extend(i.size for i in plan.instances if i.matched)
    return DatasetPlan(plans, before, after, len(pool.ids), bad)


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
    to_scale = [c for c in matched if c.point is not None]
    new_sizes = sizes.sizes(rng, to_scale)  # in the order of to_scale

    scaled, unusable, dropped = [], [], []  # dropped here: erased with the holes (ImagePlan.removed)
    others = []  # categories not scale-matched: left in place on the image's own background
    hist, k = sizes.hist, 0
    for c in matched:  # (in the order of anns, as each list below)
        if c.point is None:
            # Cut by two opposite edges: a smaller copy would show a cut inside the frame.
            dropped.append((c.ann["id"], "cut_both_edges"))
            continue
        # r is bounded so the instance fits the image: an outlier target size
        # must not ask for a paste larger than any background.
        w, h = c.box[2], c.box[3]
        size = reachable_size(new_sizes[k], c.least, hist)
        k += 1
        scale = min(size / c.size, W / w, H / h)
        if w * scale < MIN_SIDE or h * scale < MIN_SIDE:
            dropped.append((c.ann["id"], "too_small"))
            continue
        scaled.append((c.ann, c.box, scale, True, c.point))
    if len(matched) < len(anns):  # crowds, annotations that cannot be cut out, other categories
        candidate = {c.ann["id"] for c in matched}
        for a in anns:
            if a.get("iscrowd"):
                continue
            reason = bad.get(a["id"])
            if reason is not None:
                unusable.append((a, reason))
            elif a["id"] not in candidate:
                others.append(a["id"])
    need = (max((b[2] * r for _, b, r, _, _ in scaled), default=0.0),
            max((b[3] * r for _, b, r, _, _ in scaled), default=0.0))
    drawn = backgrounds.draw(rng, image_id, need) if new_background and matched else None
    own = (image, anns)
    if not matched:  # nothing to scale: copied as is
        plan = _plan_on(image, anns, own, scaled, unusable, dropped, options, others)
        return ImagePlan(image_id, "none", image_id, W, H, dropped=plan.dropped, unscaled=plan.unscaled)
    fallback = None
    if drawn is None:  # holes too large to inpaint take another image instead (drawn last)
        fallback_id = backgrounds.draw(rng, image_id, need)
        if fallback_id is not None:
            fallback = _plan_on(image, anns, backgrounds.background(fallback_id), scaled, unusable, dropped, options,
                                others)
    return _plan_on(image, anns, own if drawn is None else backgrounds.background(drawn), scaled, unusable, dropped,
                    options, others, fallback)


def _plan_on(image: dict, anns: Sequence[dict], background: Tuple[dict, Sequence[dict]], scaled: Sequence[tuple],
             unusable: Sequence[tuple], dropped: Sequence[tuple], options: TransformOptions,
             others: Sequence[int] = (), fallback: Optional[ImagePlan] = None) -> ImagePlan:
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
        sx, sy = src
        ox, oy = sx * fx, sy * fy  # the same place, proportionally, on a new background
        ws, hs = w * scale, h * scale
        instances.append(InstancePlan(a["id"], float(scale), instance_size(ws, hs),
                                      (ox + scale * (x - sx), oy + scale * (y - sy), ws, hs), is_matched, src, (ox, oy)))
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
                     background_erased=bg_erased, fallback=fallback)


def image_rng(seed: int, image_id: int) -> np.random.Generator:
    """The image's own generator: default_rng([seed, image_id]), which takes no negative number.

    A negative id is given a spawn key, which SeedSequence appends after padding the entropy
    to 4 words: 5 words or more, which no [seed, id >= 0] with seed < 2**64 makes."""
    if image_id >= 0:
        return np.random.default_rng([seed, image_id])
    return np.random.default_rng(np.random.SeedSequence([seed, -image_id], spawn_key=(1,)))


# numpy's SeedSequence (numpy/random/bit_generator.pyx), for image_rngs: its hash constants.
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R, _XSHIFT, _MASK32 = 0xCA01F9DD, 0x4973F715, 16, 0xFFFFFFFF
RNG_CHUNK = 4096  # images whose generators are seeded at once


def image_rngs(seed: int, image_ids: Sequence[int]) -> Iterator[np.random.Generator]:
    """image_rng(seed, id) of each id in turn, seeded many at once (a dry run made one per image: 9 us
    each, 1 s at COCO-train size, nearly all of it SeedSequence's hash of [seed, id] in Python).

    The hash is numpy's, on columns of 32-bit words; each generator is then a PCG64 of the
    4 words SeedSequence([seed, id]).generate_state(4, uint64) gives: the same state, hence the
    same draws (tests compare them). Entropy of more than 4 words (seed >= 2**64) and negative
    ids take image_rng itself."""
    fast = 0 <= seed < 2 ** 64
    for start in range(0, len(image_ids), RNG_CHUNK):
        ids = image_ids[start:start + RNG_CHUNK]
        states = _seed_states(seed, ids) if fast and min(ids) >= 0 and max(ids) < 2 ** 63 else None
        for k, image_id in enumerate(ids):
            yield (image_rng(seed, image_id) if states is None
                   else np.random.Generator(np.random.PCG64(_SeedState(seed, image_id, states[k]))))


def _seed_states(seed: int, ids: Sequence[int]) -> np.ndarray:
    """SeedSequence([seed, id]).generate_state(4, np.uint64) of each id (0 <= id < 2**63, 0 <= seed < 2**64), as rows."""
    with np.errstate(over="ignore"):
        ids64 = np.asarray(ids, np.int64)
        # The entropy words: seed's (one word if under 2**32), then the id's low and high word. A zero
        # word past the end counts as none: with at most 4 words, SeedSequence pads with zeros.
        seed_words = [seed & _MASK32] + ([seed >> 32] if seed >> 32 else [])
        words = [np.full(len(ids), w, np.uint32) for w in seed_words]
        words += [(ids64 & _MASK32).astype(np.uint32), (ids64 >> 32).astype(np.uint32)]
        words += [np.zeros(len(ids), np.uint32)] * (4 - len(words))
        hash_const = _INIT_A

        def hashmix(value):
            nonlocal hash_const
            value = value ^ np.uint32(hash_const)
            hash_const = (hash_const * _MULT_A) & _MASK32
            value = value * np.uint32(hash_const)
            return value ^ (value >> _XSHIFT)

        mixer = [hashmix(w) for w in words]
        for src in range(4):
            for dst in range(4):
                if src != dst:
                    mixed = np.uint32(_MIX_MULT_L) * mixer[dst] - np.uint32(_MIX_MULT_R) * hashmix(mixer[src])
                    mixer[dst] = mixed ^ (mixed >> _XSHIFT)
        out, hash_const = [], _INIT_B
        for i in range(8):  # generate_state(4, uint64): 8 words, paired little-endian
            value = mixer[i % 4] ^ np.uint32(hash_const)
            hash_const = (hash_const * _MULT_B) & _MASK32
            value = value * np.uint32(hash_const)
            out.append(value ^ (value >> _XSHIFT))
        return np.stack([out[2 * k].astype(np.uint64) | (out[2 * k + 1].astype(np.uint64) << np.uint64(32))
                         for k in range(4)], axis=1)


class _SeedState(np.random.bit_generator.ISeedSequence):
    """SeedSequence([seed, image_id]) for a PCG64 whose state words are known (_seed_states)."""

    __slots__ = ("seed", "image_id", "state")

    def __init__(self, seed: int, image_id: int, state: np.ndarray):
        self.seed, self.image_id, self.state = seed, image_id, state

    def generate_state(self, n_words, dtype=np.uint32):
        if n_words == 4 and (dtype is np.uint64 or np.dtype(dtype) == np.uint64):  # what PCG64 asks for
            return self.state
        return np.random.SeedSequence([self.seed, self.image_id]).generate_state(n_words, dtype)


def plan_image_level(im: dict, anns: Sequence[dict], matched: Sequence[Candidate], hist: SizeHistogram,
                     options: TransformOptions, source_sorted: np.ndarray, bad: Dict[int, str],
                     rng: Optional[np.random.Generator] = None) -> ImagePlan:
    """Scale Match (Yu et al. 2020): one scale for the whole image, from its mean object size.

    RSM draws a target size (up to 5 tries to land the scale in scale_range);
    MSM maps the image's mean size through the quantiles of all source object
    sizes. The scale is then clipped to scale_range.
    """
    image_id = im["id"]
    rng = image_rng(options.seed, image_id) if rng is None else rng
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
