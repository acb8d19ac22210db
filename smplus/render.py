"""Render one image: replay its plan on the pixels.

Deterministic given (plan, pixels). The output annotations are measured on
the alpha actually pasted -- after clipping to the image and occlusion by
instances pasted later -- not copied from the plan.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from pycocotools import mask as mask_utils

from .background import DEFAULT_FILL, hole_mask, inpaint_holes
from .coco import ann_to_rle, decode_rle, instance_size, mask_to_rle, patch_to_rle, resample_mask, usable_polygons
from .grain import Grain, grain_range
from .kernels import alpha_crossings, over, support_mask
from .plan import MIN_SIDE, ImagePlan, clipped_box
from .separate import Matte, PastedInstance, separate, warp_alpha, warp_pasted, working_scale

# One support for the mask and the box of every output annotation: pixels at
# least this covered. `segmentation` is that set of pixels; `bbox` is where the
# alpha's max-profiles cross the same level, between pixel centres, so the two
# agree to half a pixel at every edge. At 0.4 the box of an instance placed at
# its planned scale is unbiased (median -0.7 % against the plan on coco_tiny;
# -3.6 % at 0.5, whose tips the anti-alias filter softens), so closed-loop
# placement (place_at_size) only corrects instances whose thin parts fall under
# it: at 0.5 it would enlarge every instance (median +3.6 %, p95 +19 %), take
# more rounds and converge less often. The mask is then ~5 % fuller in area
# than the alpha's sum (1 % less at 0.5).
SUPPORT = 0.4
# Closed-loop placement: re-place until the measured size is within SIZE_AIM of
# the plan, or after PLACE_ROUNDS placements (the first one included); within
# SIZE_TOLERANCE it counts as converged. The aim is tighter than the tolerance
# because size is matched by bin (0.85 px wide at 10 px): at 1 %, 7 % of the
# instances crossed into a neighbouring bin: rendered JSD 0.0015 against the
# plan's 0.0001 (scripts/match_at_scale.py --repeat 10).
SIZE_TOLERANCE = 0.01
SIZE_AIM = 0.003
PLACE_ROUNDS = 8
# An instance so thin at its planned scale that no pixel reaches SUPPORT (a
# raised arm a pixel across) is placed this much larger until it shows, then
# corrected down to its size: dropped as too small, it left the target's
# smallest bins short (0.6 % of MSM+ instances, scripts/match_at_scale.py).
# It grows up to the source's resolution: a matte faint there (a 1-px wire)
# has nothing to show, and a larger paste would only cost memory.
FAINT_GROWTH = 1.5
# A measured box far smaller than planned (a matte nearly faint at that scale) corrects the scale
# by at most this factor per placement, and to at most this factor over max(planned scale, 1).
PLACE_GROWTH = 4.0
# Decode only what is used: libjpeg's DCT scaling decodes a JPEG at 1/2, 1/4 or 1/8 of its size.
DECODE_STEPS = (8, 4, 2)
# An instance scaled about a frame edge whose measured box side ends further from that edge than
# planned (a thin tip under SUPPORT) is moved towards it (on_edge) until within EDGE_AIM px,
# in at most EDGE_ROUNDS placements.
EDGE_AIM = 0.05
EDGE_ROUNDS = 3
# A new background erased (its objects and crowds filled) depends only on its pixels, the masks
# erased and the fill, so the renders that draw the same background share one fill: each process
# keeps the last few (byte-identical output; pipeline renders the images drawing one background
# together). The fill is most of a new background's cost (docs/performance.md).
ERASED_KEPT = 8
ERASED_KEPT_BYTES = 128 << 20


@dataclass
class RenderResult:
    image: np.ndarray
    annotations: List[dict]                       # COCO annotations without "id"
    dropped: List[Tuple[int, str]] = field(default_factory=list)
    placement: Dict[str, int] = field(default_factory=dict)  # closed-loop placement counters
    hole_fraction: float = 0.0                    # share of the background's pixels that were inpainted
    erased: int = 0                               # new background: its objects (not crowds) erased


class UnfillableHoles(Exception):
    """Too little known background is left to inpaint (the plan's fallback is used instead)."""

    def __init__(self, reason: str, fraction: float):
        super().__init__(f"{reason}: holes cover {fraction:.0%} of the image")
        self.reason, self.fraction = reason, fraction


def fill(image: np.ndarray, rles: Sequence[dict], max_hole: float = 1.0,
         method: str = DEFAULT_FILL, with_hole: bool = False):
    """The image with the masks (`rles`) inpainted by `method` (background.FILLS), and the share of it that was filled;
    with `with_hole`, also the hole filled (background.hole_mask: uint8, 1 = filled), which render_image needs again.

    Raises UnfillableHoles when the holes cover more than `max_hole` of the
    image ("hole_above_max") or leave Telea no known pixel ("no_known_pixel").
    """
    if not rles and not with_hole:  # nothing to fill (most new backgrounds): the image as it is
        return image.copy(), 0.0
    hole = hole_mask(rles, image.shape, method)
    fraction = float(np.count_nonzero(hole)) / hole.size
    if fraction > max_hole:
        raise UnfillableHoles("hole_above_max", fraction)
    filled = inpaint_holes(image, hole, fill=method)
    if filled is None:
        raise UnfillableHoles("no_known_pixel", fraction)
    return (filled, fraction, hole) if with_hole else (filled, fraction)


class NewBackground:
    """A new background: its pixels decoded on first use, and what names them in ErasedBackgrounds'
    keys. From a file (`of_file`) its bytes name it, so a kept erasure spares its decode too; handed
    over as pixels (`of_pixels`), a digest of them, taken only when a key is needed."""

    def __init__(self, shape: Tuple[int, ...], decode: Callable[[], np.ndarray], key: Optional[tuple] = None):
        self.shape, self._decode, self._key = shape, decode, key
        self.from_file = key is not None
        self._pixels: Optional[np.ndarray] = None
        self._grain: Optional[Tuple[float, float]] = None

    @classmethod
    def of_pixels(cls, pixels: np.ndarray) -> "NewBackground":
        return cls(pixels.shape, lambda: pixels)

    @classmethod
    def of_file(cls, data: np.ndarray, height: int, width: int, decode: Callable[[], np.ndarray]) -> "NewBackground":
        """`data`: the file's bytes; `decode`: its pixels, checked to be height x width (else SmplusError)."""
        return cls((height, width, 3), decode, ("file", hashlib.sha1(data).digest()))

    @property
    def key(self) -> tuple:
        if self._key is None:
            self._key = ("pixels", hashlib.sha1(np.ascontiguousarray(self.pixels)).digest())
        return self._key

    @property
    def pixels(self) -> np.ndarray:
        if self._pixels is None:
            self._pixels = self._decode()
        return self._pixels

    @property
    def grain(self) -> Tuple[float, float]:
        """Its grain range (grain.grain_range), measured on the photo before any fill."""
        if self._grain is None:
            self._grain = grain_range(self.pixels)
        return self._grain


class ErasedBackgrounds:
    """The last ERASED_KEPT erased backgrounds (at most ERASED_KEPT_BYTES), keyed by the background's
    image id, what names its pixels (NewBackground.key), the masks erased and the fill: a key names
    one result. A background from a file is kept even with nothing to erase: its decode is spared."""

    def __init__(self, entries: int = ERASED_KEPT, max_bytes: int = ERASED_KEPT_BYTES):
        self.entries, self.max_bytes = entries, max_bytes
        self._kept: "OrderedDict[tuple, Tuple[np.ndarray, float, Tuple[float, float]]]" = OrderedDict()
        self.hits = self.misses = 0
        self._lock = threading.Lock()

    def erased(self, image_id, background, rles: Sequence[dict], method: str) -> Tuple[np.ndarray, float]:
        """fill(background's pixels, rles, method=method), a copy of it if it was kept (`background`:
        a NewBackground, or its pixels); a NewBackground also gets its grain range from the kept one."""
        if not isinstance(background, NewBackground):
            background = NewBackground.of_pixels(background)
        if not rles and not background.from_file:  # decoded already, and nothing to erase: nothing to keep
            return fill(background.pixels, rles, method=method)
        key = (image_id, background.shape, background.key, method, tuple((tuple(r["size"]), r["counts"]) for r in rles))
        with self._lock:  # (threads of one process, e.g. a loader's, share it)
            kept = self._kept.get(key)
            if kept is not None:
                self.hits += 1
                self._kept.move_to_end(key)
                background._grain = kept[2]
                return kept[0].copy(), kept[1]
            self.misses += 1
        canvas, fraction = fill(background.pixels, rles, method=method)
        if canvas.nbytes <= self.max_bytes:
            grain = background.grain
            with self._lock:
                self._kept[key] = (canvas.copy(), fraction, grain)
                while len(self._kept) > self.entries or sum(c.nbytes for c, _, _ in self._kept.values()) > self.max_bytes:
                    self._kept.popitem(last=False)
        return canvas, fraction


ERASED = ErasedBackgrounds()  # this process's


def instance_rle(ann: dict, height: int, width: int) -> Optional[dict]:
    """The annotation's mask as RLE, or None if it has no pixels (never decoded whole)."""
    rle = ann_to_rle(ann.get("segmentation"), height, width)
    return rle if rle is not None and mask_utils.area(rle) > 0 else None


def decode_mask(ann: dict, height: int, width: int) -> Optional[np.ndarray]:
    """The annotation's full-image mask, or None if it has no pixels."""
    rle = instance_rle(ann, height, width)
    return None if rle is None else decode_rle(rle)


def edge_crossings(profile: np.ndarray) -> Optional[Tuple[float, float]]:
    """Sub-pixel start and end of a coverage profile: where it crosses SUPPORT.

    Whole-pixel boxes of 10-20 px objects are off by several per cent; the
    crossing, interpolated between pixel centres, recovers the pasted extent.
    It lies within half a pixel of the first and last pixel at SUPPORT or more.
    """
    above = profile >= SUPPORT
    i = int(above.argmax())
    if not above[i]:
        return None
    j = len(profile) - 1 - int(above[::-1].argmax())
    before = float(profile[i - 1]) if i > 0 else 0.0
    after = float(profile[j + 1]) if j + 1 < len(profile) else 0.0
    first, last = float(profile[i]), float(profile[j])
    return (i - 0.5) + (SUPPORT - before) / (first - before), (j + 0.5) + (last - SUPPORT) / (last - after)


def alpha_box(alpha: np.ndarray) -> Optional[List[float]]:
    """The [x, y, w, h] box of an alpha map, to sub-pixel precision: the edge_crossings of its column
    and row maxima (one numba call, kernels.alpha_crossings: it runs ~3 times an instance)."""
    if alpha.size:
        found, x0, x1, y0, y1 = alpha_crossings(alpha, SUPPORT)
        return [x0, y0, x1 - x0, y1 - y0] if found else None
    xs, ys = edge_crossings(alpha.max(axis=0)), edge_crossings(alpha.max(axis=1))  # (raises, as numpy does)
    if xs is None or ys is None:
        return None
    return [xs[0], ys[0], xs[1] - xs[0], ys[1] - ys[0]]


def placed_size(alpha: np.ndarray) -> Optional[float]:
    """Size s = sqrt(w*h) of an alpha map's box, by the rule of the output annotation."""
    box = alpha_box(alpha)
    return None if box is None else instance_size(box[2], box[3])


@dataclass
class Placement:
    """An instance placed by closed-loop placement."""

    instance: PastedInstance
    size: Optional[float]  # its size by the output rule (None: no pixel reaches SUPPORT)
    scale: float     # the scale it was placed at
    rounds: int      # placements made (1: the planned scale was within SIZE_AIM)
    converged: bool  # its size is within SIZE_TOLERANCE of the planned size


def place_at_size(m: Matte, scale: float, size: float, src_point: Tuple[float, float],
                  out_point: Tuple[float, float]) -> Placement:
    """Closed-loop placement: place the matte, measure its box, correct the scale, place again.

    The box of a placed instance is smaller than scale x its source box when
    thin parts (limbs, tips) fall under SUPPORT after shrinking, or the matte's
    edge is not the polygon's. Measured on the instance's own pasted alpha
    (before clipping and occlusion), the scale is corrected until the size is
    within SIZE_AIM of `size`: planned / measured at first, then interpolated
    between the tries on either side; while no pixel reaches SUPPORT, larger (up to scale 1).
    The fixed point src_point -> out_point stays. Returns the placement closest to `size`.
    The first try is `size` over the matte's own size (its box by the output rule, in source px),
    not `scale`: the matted edge is not the polygon's (coco_tiny: 2.11 placements per instance
    against 2.30 from `scale`, 99.9 % within SIZE_AIM against 99.6 %; scripts/placement_guess.py).
    """
    own = placed_size(m.premult[..., 3])
    limit = PLACE_GROWTH * max(scale, 1.0)
    if own is not None:
        own *= 1.0 / math.sqrt(m.sx * m.sy)
        scale = min(size / own, max(scale, 1.0))  # no larger than the source unless planned so
    best, best_error, tried = None, math.inf, []
    while True:
        ox, oy, alpha = warp_alpha(m, scale, src_point, out_point)  # colour only for the round kept
        measured = placed_size(alpha)
        error = abs(measured / size - 1.0) if measured else math.inf
        if best is None or error < best_error:
            best, best_error = (ox, oy, alpha, measured, scale), error
        if error <= SIZE_AIM or len(tried) + 1 == PLACE_ROUNDS or (measured is None and scale >= 1.0):
            _, _, alpha, measured, scale = best
            return Placement(warp_pasted(m, scale, src_point, out_point, alpha), measured, scale,
                             len(tried) + 1, best_error <= SIZE_TOLERANCE)
        tried.append((scale, measured or 0.0))
        scale = _corrected_scale(tried, size, limit)


def on_edge(m: Matte, placed: Placement, box: Tuple[float, float, float, float], size: float,
            src_point: Tuple[float, float], out_point: Tuple[float, float]) -> Placement:
    """`placed`, moved towards the frame edge it is scaled about until its measured box side is
    at its planned gap (r x its source box's gap), if it ended further in.

    An instance whose box is near a frame edge is scaled about its point on that edge, so its
    gap scales with it. But a thin tip on the edge (a wedge 1-3 px across at the frame) falls
    under SUPPORT once shrunk, and the box measured on the alpha then starts further in: the cut
    object floated off its edge (by 1.7 px at r = 0.2 on coco_tiny). Closed-loop placement
    corrects the size, not this offset; here the fixed point moves by it, towards the edge only
    (the frame's cut then lies beyond the canvas, which clips it; moved away from the edge,
    the cut would float with it), and the size is corrected again there. A sub-pixel move
    changes the anti-aliasing: up to EDGE_ROUNDS moves, each kept while it comes nearer.
    """
    if placed.size is None or all(box[k] < src_point[k] < box[k] + box[k + 2] for k in (0, 1)):
        return placed  # scaled about its box centre on both axes: no edge to keep
    best, off = placed, _edge_offset(placed.instance, box, placed.scale, src_point, out_point)
    point = tuple(out_point)
    for _ in range(EDGE_ROUNDS):
        if max(abs(off[0]), abs(off[1])) <= EDGE_AIM:
            break
        point = (point[0] + off[0], point[1] + off[1])
        moved = place_at_size(m, best.scale, size, src_point, point)
        left = _edge_offset(moved.instance, box, moved.scale, src_point, out_point)
        if moved.size is None or (best.converged and not moved.converged) or max(map(abs, left)) >= max(map(abs, off)):
            break
        best, off = Placement(moved.instance, moved.size, moved.scale, best.rounds + moved.rounds, moved.converged), left
    return best


def _edge_offset(p: PastedInstance, box: Tuple[float, float, float, float], scale: float,
                 src_point: Tuple[float, float], out_point: Tuple[float, float]) -> Tuple[float, float]:
    """Per axis, how far `p` must move towards the frame edge it is scaled about for its measured
    box side to be at the planned place, out_point + r x (source box side - src_point); 0.0 where
    it is scaled about its box centre, or is already at or beyond that place."""
    b = alpha_box(p.alpha)
    if b is None:
        return 0.0, 0.0
    off = []
    for k, origin in ((0, p.x0), (1, p.y0)):
        lo, hi = box[k], box[k] + box[k + 2]
        if src_point[k] <= lo:    # scaled about the low edge (left, top)
            off.append(min(out_point[k] + scale * (lo - src_point[k]) - (origin + b[k]), 0.0))
        elif src_point[k] >= hi:  # the high edge (right, bottom)
            off.append(max(out_point[k] + scale * (hi - src_point[k]) - (origin + b[k] + b[k + 2]), 0.0))
        else:
            off.append(0.0)
    return off[0], off[1]


def _corrected_scale(tried: List[Tuple[float, float]], size: float, limit: float = math.inf) -> float:
    """The next scale from the (scale, measured size) pairs so far (0: faint): interpolated
    between the nearest tries on either side of `size` once there are both, else
    proportional (at most PLACE_GROWTH x the last), or FAINT_GROWTH larger while nothing
    reaches SUPPORT; at most `limit`.

    The bounds matter for a nearly faint matte: a box measured a few thousandths of a pixel
    wide asked for 5,982x its scale, a 210 GB warp (coco_tiny repeated, a 1.6 px target).
    """
    below = max((t for t in tried if t[1] < size), default=None)
    above = min((t for t in tried if t[1] > size), default=None)
    if below is not None and above is not None and below[0] < above[0]:
        (s0, m0), (s1, m1) = below, above
        return min(s0 + (size - m0) * (s1 - s0) / (m1 - m0), limit)
    scale, measured = tried[-1]
    if measured == 0.0:
        return min(scale * FAINT_GROWTH, 1.0)
    return min(scale * min(size / measured, PLACE_GROWTH), limit)


def decode_step(plan: ImagePlan, anns: Dict[int, dict], width: int, height: int) -> int:
    """How coarsely the source can be decoded (1, 2, 4 or 8: DECODE_STEPS) for render_image(..., step).

    Only when its pixels serve as nothing but the source of its instances (the background is another
    image), and at the largest step at which every instance's working resolution (separate.working_scale)
    is still at most the decoded one: matting then sees the same number of pixels. 1 when an
    instance goes back to source pixels (pasted at or above its working scale)."""
    if plan.background != "new" or not plan.instances:
        return 1
    finest = 0.0
    for ip in plan.instances:
        _, _, w, h = clipped_box(anns[ip.ann_id], width, height)
        sw = working_scale(max(w, h), ip.scale)
        if sw >= 1.0 or ip.scale >= sw * 0.999:
            return 1
        finest = max(finest, sw)
    return next((k for k in DECODE_STEPS if k * finest <= 1.0), 1)


def _clip_to_canvas(p: PastedInstance, width: int, height: int) -> Optional[PastedInstance]:
    h, w = p.alpha.shape
    x0, y0, x1, y1 = max(p.x0, 0), max(p.y0, 0), min(p.x0 + w, width), min(p.y0 + h, height)
    if x0 >= x1 or y0 >= y1:
        return None
    sl = (slice(y0 - p.y0, y1 - p.y0), slice(x0 - p.x0, x1 - p.x0))
    return PastedInstance(x0, y0, p.color[sl], p.alpha[sl].copy())


def render_image(plan: ImagePlan, image: np.ndarray, anns: Dict[int, dict],
                 background: Optional[np.ndarray] = None,
                 background_anns: Sequence[dict] = (), max_hole: float = 1.0,
                 fill_method: str = DEFAULT_FILL, step: int = 1,
                 source_size: Optional[Tuple[int, int]] = None) -> RenderResult:
    """SM+ on one image: separate, scale, fill the background (PSI), paste, measure.

    `background` is the new background when plan.background == "new": its pixels or a NewBackground;
    `background_anns` its annotations: crowds and those in plan.background_erased
    are erased (filled), and those in plan.background_labels (cp+) are kept, less
    what the pastes cover. Instances in plan.kept (categories not scale-matched,
    inpaint) keep their pixels; their labels lose what the holes and pastes cover.
    Raises UnfillableHoles (before any matting) when the holes to inpaint
    exceed `max_hole` or leave no known pixel. `fill_method`: background.FILLS.
    `step` > 1 (a new background only): `image` is the source decoded at 1/step (decode_step), the
    source being `source_size` = (height, width).
    """
    if step > 1 and plan.background != "new":
        raise ValueError("a source decoded at reduced size can only be rendered onto a new background")
    H, W = source_size or image.shape[:2]
    dropped: List[Tuple[int, str]] = list(plan.dropped)
    rles: Dict[int, dict] = {}
    for ip in plan.instances:
        rle = instance_rle(anns[ip.ann_id], H, W)
        if rle is None:
            dropped.append((ip.ann_id, "empty_mask"))
        else:
            rles[ip.ann_id] = rle
    # Crowds and instances dropped at plan time are erased, not left unlabelled.
    erased = [r for r in (instance_rle(anns[i], H, W) for i in plan.crowd + plan.removed) if r is not None]

    # PSI: the holes of this image inpainted, or another image (crowds erased too).
    bg_erased, holes = 0, None
    if plan.background == "new":
        if not isinstance(background, NewBackground):
            background = NewBackground.of_pixels(background)
        bh, bw = background.shape[:2]
        to_erase = set(plan.background_erased)
        erase = [(a, instance_rle(a, bh, bw)) for a in background_anns if a.get("iscrowd") or a["id"] in to_erase]
        bg_rles = [r for _, r in erase if r is not None]
        bg_erased = sum(1 for a, r in erase if not a.get("iscrowd") and r is not None)
        canvas, hole_fraction = ERASED.erased(plan.background_image_id, background, bg_rles, fill_method)
        grain = Grain(None, plan.image_id, plan.background_image_id, measured=background.grain)
    else:
        canvas, hole_fraction, holes = fill(image, list(rles.values()) + erased, max_hole, fill_method, with_hole=True)
        holes = holes if plan.kept else None  # plan.kept's labels lose what it covers (below)
        grain = Grain(image, plan.image_id, plan.background_image_id)
    out_h, out_w = canvas.shape[:2]

    # Larger instances first, so smaller ones end on top (as nearer objects would).
    order = sorted((ip for ip in plan.instances if ip.ann_id in rles), key=lambda ip: -ip.box[2] * ip.box[3])
    pasted: List[Tuple[int, PastedInstance]] = []
    faint = set()  # instances with no pixel at SUPPORT even before clipping and occlusion
    placement = dict.fromkeys(("placed", "corrected", "unconverged"), 0)
    for ip in order:
        box = clipped_box(anns[ip.ann_id], W, H)
        m = separate(image, anns[ip.ann_id]["segmentation"], box, ip.scale, step, (H, W))
        p = None
        if m is not None:
            placed = on_edge(m, place_at_size(m, ip.scale, ip.size, ip.src_point, ip.out_point), box, ip.size,
                             ip.src_point, ip.out_point)
            placement["placed"] += 1
            placement["corrected"] += placed.rounds > 1
            placement["unconverged"] += not placed.converged
            if placed.size is None:
                faint.add(ip.ann_id)
            p = _clip_to_canvas(placed.instance, out_w, out_h)
        if p is None:
            dropped.append((ip.ann_id, "outside_image"))
            continue
        p = grain.match(p, canvas, ip.scale, ip.ann_id, *ip.out_point)
        h, w = p.alpha.shape
        roi = (slice(p.y0, p.y0 + h), slice(p.x0, p.x0 + w))
        canvas[roi] = _over(canvas[roi], p)
        for _, q in pasted:  # what this one covers is no longer visible below it
            _occlude(q, p)
        pasted.append((ip.ann_id, p))

    if plan.background_labels:
        annotations_bg = _occluded_labels(plan.image_id, background_anns, set(plan.background_labels), pasted,
                                          out_w, out_h, {"from_background": True})
    if plan.kept:  # left in place: what neither a hole nor a paste covers is still theirs
        if holes is None:  # (planning keeps them on an inpainted image only, whose fill made its holes)
            holes = hole_mask(list(rles.values()) + erased, image.shape, fill_method)
        annotations_kept = _occluded_labels(plan.image_id, [anns[i] for i in plan.kept], set(plan.kept), pasted,
                                            out_w, out_h, {}, holes)
    rank = {ip.ann_id: k for k, ip in enumerate(plan.instances)}  # output in source order
    annotations = []
    for ann_id, p in sorted(pasted, key=lambda t: rank[t[0]]):
        ann = _measure(anns[ann_id], p, out_w, out_h, plan.image_id, ann_id in faint)
        if isinstance(ann, str):
            dropped.append((ann_id, ann))
        else:
            annotations.append(ann)
    if plan.background_labels:
        annotations = annotations_bg + annotations
    if plan.kept:
        kept_ids = {a["source_ann_id"] for a in annotations_kept}
        dropped.extend((i, "occluded") for i in plan.kept if i not in kept_ids)
        annotations = annotations + annotations_kept
    return RenderResult(canvas, annotations, dropped, placement, hole_fraction, bg_erased)


def _over(below: np.ndarray, p: PastedInstance) -> np.ndarray:
    """`p` alpha-composited over 8-bit pixels, rounded back to 8 bits.

    The canvas stays 8-bit and only each paste's window goes through floats:
    a float canvas cost 36 bytes per pixel (1.7 GB for an 8000x6000 image).
    """
    if below.dtype == np.uint8 and below.shape == p.color.shape:
        return over(below, p.alpha, p.color)  # the numpy below in one call
    return np.clip(below * (1.0 - p.alpha[..., None]) + p.color + 0.5, 0, 255).astype(np.uint8)


def _occluded_labels(image_id: int, anns: Sequence[dict], keep: set, pasted, width: int, height: int,
                     extra: dict, holes: Optional[np.ndarray] = None) -> List[dict]:
    """Labels of objects left in the canvas's pixels (`anns` whose id is in `keep`), less
    the pixels the pasted instances cover (and `holes`, filled): CP+'s background labels,
    and the instances of categories not scale-matched on an inpainted image."""
    covered = np.zeros((height, width), np.float32)
    for _, p in pasted:
        h, w = p.alpha.shape
        roi = covered[p.y0:p.y0 + h, p.x0:p.x0 + w]
        roi += p.alpha * (1.0 - roi)
    out = []
    for a in anns:
        if a["id"] not in keep:
            continue
        rle = instance_rle(a, height, width)
        if rle is None:
            continue
        # Worked out in the mask's box (its pixels' extent), not the whole image: a label cost
        # ~1.5 ms of whole-image passes, most of a cp+ render's labels (docs/fills.md).
        x, y, w, h = (int(v) for v in mask_utils.toBbox(rle))
        box = (slice(y, y + h), slice(x, x + w))
        visible = (decode_rle(rle)[box] > 0) & (covered[box] < SUPPORT)
        if holes is not None:
            visible &= holes[box] == 0
        if not visible.any():
            continue  # fully covered: dropped
        ys, xs = np.nonzero(visible)
        out.append({"image_id": image_id, "category_id": a["category_id"],
                    "bbox": [int(xs.min()) + x, int(ys.min()) + y, int(xs.max() - xs.min() + 1),
                             int(ys.max() - ys.min() + 1)],
                    "area": int(np.count_nonzero(visible)),
                    "segmentation": patch_to_rle(visible.astype(np.uint8), x, y, height, width), "iscrowd": 0,
                    "source_ann_id": a["id"], **extra})
    return out


def _occlude(below: PastedInstance, above: PastedInstance) -> None:
    bh, bw = below.alpha.shape
    ah, aw = above.alpha.shape
    x0, y0 = max(below.x0, above.x0), max(below.y0, above.y0)
    x1, y1 = min(below.x0 + bw, above.x0 + aw), min(below.y0 + bh, above.y0 + ah)
    if x0 < x1 and y0 < y1:
        below.alpha[y0 - below.y0:y1 - below.y0, x0 - below.x0:x1 - below.x0] *= \
            1.0 - above.alpha[y0 - above.y0:y1 - above.y0, x0 - above.x0:x1 - above.x0]


def _measure(src: dict, p: PastedInstance, width: int, height: int, image_id: int, faint: bool):
    """The output annotation of a pasted instance, or the reason it is dropped.

    `faint`: no pixel of the instance reached SUPPORT before clipping and occlusion.
    """
    binary, area = support_mask(p.alpha, SUPPORT)  # (p.alpha >= SUPPORT).astype(np.uint8) and its sum, one call
    if not area:
        return "too_small" if faint else "occluded"
    bx, by, bw, bh = alpha_box(p.alpha)
    if bw < MIN_SIDE or bh < MIN_SIDE:
        return "too_small"
    # Keep the box inside the image and around the mask it describes.
    x0, y0 = max(0.0, bx + p.x0), max(0.0, by + p.y0)
    x1, y1 = min(float(width), bx + bw + p.x0), min(float(height), by + bh + p.y0)
    return {
        "image_id": image_id,
        "category_id": src["category_id"],
        "bbox": [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)],
        "area": int(area),
        "segmentation": patch_to_rle(binary, p.x0, p.y0, height, width),
        "iscrowd": 0,
        "source_ann_id": src["id"],
    }


def render_resized(plan: ImagePlan, image: np.ndarray, anns: Dict[int, dict]) -> RenderResult:
    """Image-level Scale Match: the whole image and its annotations scaled by one factor."""
    import cv2

    H, W = image.shape[:2]
    sx, sy = plan.width / W, plan.height / H
    out = cv2.resize(image, (plan.width, plan.height), interpolation=cv2.INTER_AREA)
    dropped: List[Tuple[int, str]] = list(plan.dropped)
    annotations = []
    for ann_id in [ip.ann_id for ip in plan.instances] + list(plan.crowd):
        a = anns[ann_id]
        seg = _scale_segmentation(a.get("segmentation"), H, W, plan.height, plan.width, sx, sy)
        if seg is None:
            dropped.append((ann_id, "empty_mask"))
            continue
        x, y, w, h = clipped_box(a, W, H)
        area = int(mask_utils.area(ann_to_rle(seg, plan.height, plan.width)))
        annotations.append({"image_id": plan.image_id, "category_id": a["category_id"],
                            "bbox": [round(x * sx, 3), round(y * sy, 3), round(w * sx, 3), round(h * sy, 3)],
                            "area": area if area > 0 else round(w * sx * h * sy, 3),
                            "segmentation": seg, "iscrowd": int(bool(a.get("iscrowd"))), "source_ann_id": ann_id})
    return RenderResult(out, annotations, dropped)


def _scale_segmentation(seg, H, W, out_h, out_w, sx, sy):
    """Polygons keep their float coordinates, scaled; masks (RLE) are resampled."""

    if isinstance(seg, list):
        polys = [[round(v * (sx if i % 2 == 0 else sy), 3) for i, v in enumerate(p)]
                 for p in usable_polygons(seg, H, W)]
        return polys or None
    mask = decode_mask({"segmentation": seg}, H, W)
    if mask is None:
        return None
    small = resample_mask(mask, (out_w, out_h))
    return mask_to_rle(small) if small.any() else None
