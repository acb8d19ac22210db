"""Separation: mask -> trimap -> alpha (closed-form, over the band) -> RGBA instance; then placed at its scale.

Matting runs at a working resolution fitted to the final size: an instance
pasted at 18 px is matted at a few times that, not at its 400 px source size
(closed-form matting cost grows with the band's pixel count). The matted instance
then goes to its final place with one exact affine map (premultiplied
colours, Gaussian pre-filter against aliasing), so the pasted size is the
planned size to a fraction of a pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Tuple

import cv2
import numpy as np

from .coco import window_mask

# Working resolution: the instance's longer side while matting, in px.
WORK_FACTOR = 3.0   # times its final longer side...
WORK_MIN = 32.0     # ...but at least this (a trimap band needs room)...
WORK_MAX = 160.0    # ...and at most this (cost), never above the source size.
BAND = 0.015        # trimap band, relative to the longer side: COCO polygons are off by ~1-2 %
# Anti-alias pre-filters of the final shrink by r: sigma = k * sqrt(1/r^2 - 1) matte px (about
# k output px). The alpha takes k = ALPHA_PREFILTER, smooth enough that the box measured on it
# (edge crossings between pixel centres) keeps the planned place and size to a tenth of a pixel.
# The colour takes k = PREFILTER: at 0.5 pasted objects were softer than photographed ones (the
# whole chain -- area to the working size, blur, bilinear place -- left 0.66x the Laplacian of an
# area-averaged photo; at 0.25, 1.02x) and a classifier told them apart by it (scripts/grain_stats.py,
# scripts/realism.py).
ALPHA_PREFILTER = 0.5
PREFILTER = 0.25
SHARP_ALPHA = 0.05  # where the sharp alpha is below this, the colour is its neighbours' (see warp)


@dataclass
class PastedInstance:
    """An instance at its final place: premultiplied BGR and alpha of a patch at (x0, y0)."""

    x0: int
    y0: int
    color: np.ndarray  # h x w x 3 float32, premultiplied by alpha, 0..255
    alpha: np.ndarray  # h x w float32, 0..1


def working_scale(longer_side: float, scale: float) -> float:
    """Scale from source to matting resolution for an object pasted at `scale`."""
    target = min(max(WORK_FACTOR * scale * longer_side, WORK_MIN), WORK_MAX)
    return min(1.0, target / max(longer_side, 1e-6))


_DISCS: dict = {}  # band -> its structuring element


def _disc(band: int) -> np.ndarray:
    disc = _DISCS.get(band)
    if disc is None:
        disc = _DISCS[band] = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    return disc


def make_trimap(mask: np.ndarray, band: int) -> np.ndarray:
    """1 inside the eroded mask, 0 outside the dilated mask, 0.5 in the band between (`mask`: 0/1 uint8)."""
    return (cv2.erode(mask, _disc(band)) + cv2.dilate(mask, _disc(band))) * 0.5  # the eroded mask lies inside the dilated


def matte(crop_bgr: np.ndarray, soft_mask: np.ndarray, band: int) -> np.ndarray:
    """The instance premultiplied (h x w x 4 float32: colour * alpha, 0..255, and alpha, 0..1).

    Alpha by closed-form matting, foreground colours without background bleed.
    `band` is the trimap's unknown band on either side of the mask edge, in px.
    Falls back to the (resampled) mask itself when the instance is too thin
    to leave a definite foreground, or matting fails to converge.
    """
    from .matting import premultiplied_matte, warm_up  # numba: only where instances are matted

    warm_up()  # once per process: says so if the kernels must be compiled first
    return premultiplied_matte(crop_bgr, instance_trimap(soft_mask, band), soft_mask)


def instance_trimap(soft_mask: np.ndarray, band: int) -> np.ndarray | None:
    """The trimap matte() solves: `band` px of unknown on either side of the mask edge, or 1 px
    if that leaves no definite foreground or background; None if even 1 px does."""
    mask = (soft_mask >= 0.5).astype(np.uint8)
    for b in (band, 1):
        inner, outer = cv2.erode(mask, _disc(b)), cv2.dilate(mask, _disc(b))
        if inner.any() and not outer.all():  # some 1 and some 0 (inner lies inside outer): tested on 8 bits
            return (inner + outer) * 0.5  # make_trimap(mask, b)
    return None


@dataclass
class Matte:
    """An instance cut out and matted: premultiplied BGR + alpha at working resolution.

    Working pixel u covers source x in [x0 + u / sx, x0 + (u + 1) / sx] (likewise y).
    Computed once per instance; `place` maps it to its output place at any scale.
    """

    x0: int
    y0: int
    sx: float
    sy: float
    premult: np.ndarray  # h x w x 4 float32: colour * alpha (0..255), alpha (0..1)
    # Sides (left, top, right, bottom) where the crop ends at the image frame: the
    # object may go on beyond it, so `warp` extends it there (edge pixels repeated)
    # instead of fading it into zeros, which lifted a cut instance off the frame.
    frame: Tuple[bool, bool, bool, bool] = (False, False, False, False)
    # Source x, y where the image ends, when the matte runs past it (cut from a reduced decode's whole
    # pixels); None: where the matte ends.
    end: Optional[Tuple[float, float]] = None
    # premult extended beyond the frame, by its (top, bottom, left, right) pads: placement's rounds and
    # its final warp mostly ask for the same pads (copyMakeBorder was ~0.3 ms an image, coco_tiny); also
    # the contiguous alpha of each ("alpha", pads) and the map of each placement ("geometry", ...)
    extended: dict = field(default_factory=dict, repr=False, compare=False)


def separate(image: np.ndarray, segmentation, box: Tuple[float, float, float, float],
             scale: float, step: int = 1, size: Optional[Tuple[int, int]] = None) -> Matte | None:
    """Cut the instance (a COCO `segmentation`, source `box`) out of `image` and matte it.

    The working resolution is fitted to the size it will be pasted at (`scale`).
    `step` > 1: `image` is the source decoded at 1/step (libjpeg's DCT scaling: its pixel i covers
    source pixels [i*step, (i+1)*step), the last one padded by repeating the edge), the source being
    `size` = (height, width); the mask, box and Matte stay in source coordinates. Only for a working
    scale of at most 1/step (render.decode_step), so the matte sees as many pixels as from the full image.
    Returns None for an empty mask.
    """
    H, W = size or image.shape[:2]
    x, y, w, h = box
    sw = working_scale(max(w, h), scale)
    band = max(1, int(round(BAND * sw * max(w, h))))
    # The crop holds the box, the trimap band and a few px of known background
    # (matting windows and foreground estimation look one or two px out).
    margin = (band + 3) / sw + 1.0
    cx0, cy0 = max(0, int(math.floor(x - margin))), max(0, int(math.floor(y - margin)))
    cx1, cy1 = min(W, int(math.ceil(x + w + margin))), min(H, int(math.ceil(y + h + margin)))
    cx0, cy0 = cx0 - cx0 % step, cy0 - cy0 % step  # on the reduced pixels' grid
    if cx0 >= cx1 or cy0 >= cy1:
        return None
    crop_mask = window_mask(segmentation, (cx0, cy0, cx1, cy1), H, W)
    if crop_mask is None or not crop_mask.any():
        return None
    mask = crop_mask.astype(np.float32)
    if step > 1:  # whole reduced pixels: the crop may run past the frame by under `step` source px
        nx, ny = -(-(cx1 - cx0) // step), -(-(cy1 - cy0) // step)
        crop = image[cy0 // step:cy0 // step + ny, cx0 // step:cx0 // step + nx]
        mask = cv2.copyMakeBorder(mask, 0, ny * step - (cy1 - cy0), 0, nx * step - (cx1 - cx0), cv2.BORDER_REPLICATE)
    else:
        crop = image[cy0:cy1, cx0:cx1]
    span_x, span_y = mask.shape[1], mask.shape[0]  # source px the crop covers

    ww, wh = max(1, int(round(span_x * sw))), max(1, int(round(span_y * sw)))
    if sw < 1.0 or step > 1:
        work = cv2.resize(crop, (ww, wh), interpolation=cv2.INTER_AREA)
        soft = cv2.resize(mask, (ww, wh), interpolation=cv2.INTER_AREA)
    else:
        work, soft = crop, mask
    sx, sy = work.shape[1] / span_x, work.shape[0] / span_y  # exact per-axis scales
    premult = matte(work, soft, band)  # at every size: a feathered mask differs by more than JPEG noise (docs/performance.md)
    if scale >= sw * 0.999 and sw < 1.0 and step == 1:
        # Upsampling from the working size would blur: go back to source
        # resolution, with source colours where the instance is opaque and the
        # matte's background-free colours on its soft edge (resampled
        # premultiplied, so no colour of a transparent pixel reaches it).
        premult = cv2.resize(premult, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
        _opaque_colour(premult, crop)
        sx, sy = 1.0, 1.0
        work, soft = crop, None  # (the mask at source resolution: only _hold_frame needs it)
    frame = (cx0 == 0, cy0 == 0, cx1 == W, cy1 == H)
    if any(frame):
        if soft is None:
            soft = crop_mask.astype(np.float32)
        _hold_frame(premult, work, soft, frame, int(math.ceil((band + 1) * premult.shape[1] / ww)) + (step > 1))
    return Matte(cx0, cy0, sx, sy, premult, frame, (float(cx1), float(cy1)) if step > 1 else None)


OPAQUE = 0.98  # an instance back at source resolution takes the source's colours where its alpha is at least this


def _opaque_colour(premult: np.ndarray, crop: np.ndarray) -> None:
    """In place: colour = crop * alpha where alpha >= OPAQUE (premult at the crop's size)."""
    if crop.dtype == np.uint8 and premult.dtype == np.float32:
        from .kernels import opaque_colour

        opaque_colour(premult, crop, OPAQUE)  # the numpy below in one call
        return
    alpha = premult[..., 3:]
    np.copyto(premult[..., :3], crop * alpha, where=alpha >= OPAQUE)  # (boolean indexing: 1.5x the time)


def _hold_frame(premult: np.ndarray, colour: np.ndarray, soft: np.ndarray, frame, k: int) -> None:
    """Within `k` px of the frame, alpha at least the mask's (in place, colours the image's).

    Matting sees no background beyond the frame, and gave a part cut by it (a
    thin leg tip on the edge) alpha 0.36 where the polygon reaches the frame:
    scaled down, the instance left the edge it is cut by."""
    if colour.dtype == np.uint8 and soft.dtype == np.float32 and premult.dtype == np.float32:
        from .kernels import hold_frame

        hold_frame(premult, colour, soft, *(bool(f) for f in frame), k)  # _hold_frame_numpy in one call (~25x faster)
        return
    _hold_frame_numpy(premult, colour, soft, frame, k)


def _hold_frame_numpy(premult: np.ndarray, colour: np.ndarray, soft: np.ndarray, frame, k: int) -> None:
    """_hold_frame for any dtypes (and the reference tests hold kernels.hold_frame to)."""
    near = np.zeros(soft.shape, bool)
    near[:, :k] |= frame[0]
    near[:k] |= frame[1]
    near[:, -k:] |= frame[2]
    near[-k:] |= frame[3]
    raise_ = near & (soft > premult[..., 3])
    premult[raise_, 3] = soft[raise_]
    premult[raise_, :3] = colour[raise_] * soft[raise_, None]


def place(m: Matte, scale: float, src_point: Tuple[float, float],
          out_point: Tuple[float, float]) -> PastedInstance:
    """Map a matte by r = `scale` about a fixed point: `src_point` (source image
    coordinates, continuous, pixel i covering [i, i+1]) lands on `out_point`."""
    return pasted(*warp(m, scale, src_point, out_point))


def pasted(ox: int, oy: int, placed: np.ndarray, alpha: np.ndarray | None = None) -> PastedInstance:
    """The PastedInstance of a `warp` result (`alpha`: its placed_alpha, if already taken)."""
    return PastedInstance(ox, oy, np.ascontiguousarray(placed[..., :3]),
                          placed_alpha(placed) if alpha is None else alpha)


def placed_alpha(placed: np.ndarray) -> np.ndarray:
    """The alpha of a `warp` result."""
    return np.minimum(placed[..., 3], 1.0)


def warp(m: Matte, scale: float, src_point: Tuple[float, float],
         out_point: Tuple[float, float], alpha: Optional[np.ndarray] = None) -> Tuple[int, int, np.ndarray]:
    """`place`'s map, as (x0, y0, premultiplied BGR + alpha patch), colour not yet split off.
    `alpha`: warp_alpha's result for the same map, if already taken (not computed again)."""
    g = _geometry(m, scale, src_point, out_point)
    if g.ax >= 1.0 and g.ay >= 1.0:
        return g.ox, g.oy, _cut_at_frame(_warped(g.premult, g.M, g.pw, g.ph), m, g, scale, src_point, out_point)
    colour, alpha = _shrunk(m, g, scale, src_point, out_point, alpha)
    placed = np.empty(alpha.shape + (4,), np.float32)
    placed[..., :3] = colour
    placed[..., 3] = alpha
    return g.ox, g.oy, placed


def warp_pasted(m: Matte, scale: float, src_point: Tuple[float, float], out_point: Tuple[float, float],
                alpha: np.ndarray) -> PastedInstance:
    """pasted(*warp(m, scale, src_point, out_point, alpha), alpha), without the four-channel patch between."""
    g = _geometry(m, scale, src_point, out_point)
    if g.ax >= 1.0 and g.ay >= 1.0:
        return pasted(*warp(m, scale, src_point, out_point, alpha)[:3], alpha)
    colour, alpha = _shrunk(m, g, scale, src_point, out_point, alpha)
    return PastedInstance(g.ox, g.oy, colour, alpha)


_SHARP_ALPHA32, _TINY32 = np.float32(SHARP_ALPHA), np.float32(1e-6)  # as numpy compares float32 with a float


def _shrunk(m: Matte, g: "_Geometry", scale: float, src_point: Tuple[float, float], out_point: Tuple[float, float],
            alpha: Optional[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """warp's colour (h x w x 3 float32, premultiplied) and alpha when shrinking (kernels.shrunk_colour).

    Anti-alias first. The alpha takes the smooth filter; the colour is the object's
    own colour (premultiplied / alpha) of the sharp one, times that alpha: a sharper interior,
    and no halo from two alphas that disagree on the edge. Where the sharp alpha fades out
    before the smooth one, the colour is its neighbours' (normalized blur of the sharp patch).
    The cut at the frame is the alpha's, so the colour, scaled by it, is cut with it."""
    from .kernels import fringe_colour, shrunk_colour

    sharp = _warped(_prefiltered(g.premult, g.ax, g.ay, PREFILTER), g.M, g.pw, g.ph)
    if alpha is None:
        alpha = _cut_at_frame(_smooth_alpha(m, g), m, g, scale, src_point, out_point)
    colour, fringe = shrunk_colour(sharp, alpha, _SHARP_ALPHA32)
    if fringe:
        near = cv2.GaussianBlur(sharp, (0, 0), 1.0, borderType=cv2.BORDER_CONSTANT)
        fringe_colour(colour, near, alpha, sharp, _SHARP_ALPHA32, _TINY32)
    return colour, alpha


def warp_alpha(m: Matte, scale: float, src_point: Tuple[float, float],
               out_point: Tuple[float, float]) -> Tuple[int, int, np.ndarray]:
    """`warp`'s placed_alpha alone, as (x0, y0, alpha): what closed-loop placement measures,
    without the colour (only the placement it keeps needs that)."""
    g = _geometry(m, scale, src_point, out_point)
    if g.ax >= 1.0 and g.ay >= 1.0:
        return g.ox, g.oy, placed_alpha(_cut_at_frame(_warped(g.premult, g.M, g.pw, g.ph), m, g, scale,
                                                      src_point, out_point))
    return g.ox, g.oy, np.minimum(_cut_at_frame(_smooth_alpha(m, g), m, g, scale, src_point, out_point), 1.0)


def _smooth_alpha(m: Matte, g: "_Geometry") -> np.ndarray:
    # The alpha channel, contiguous, kept on the matte: every placement round filters it (cv2 copied the
    # strided channel at each call, ~6 us of a ~16 us blur).
    key = ("alpha", g.pads)
    alpha = m.extended.get(key)
    if alpha is None:
        alpha = m.extended[key] = np.ascontiguousarray(g.premult[..., 3])
    return _warped(_prefiltered(alpha, g.ax, g.ay, ALPHA_PREFILTER), g.M, g.pw, g.ph)


@dataclass
class _Geometry:
    """warp's map: per-axis scales (matte px -> output px), the patch's origin and size, warpAffine's
    matrix, the matte (extended beyond the frame on its `frame` sides) and the crop's extent."""

    ax: float
    ay: float
    ox: int
    oy: int
    pw: int
    ph: int
    M: np.ndarray
    premult: np.ndarray
    crop: Tuple[float, float, float, float]  # source coordinates: the frame, on its `frame` sides
    pads: Optional[Tuple[int, int, int, int]] = None  # premult's extension beyond the frame (None: m.premult)


def _geometry(m: Matte, scale: float, src_point: Tuple[float, float], out_point: Tuple[float, float]) -> _Geometry:
    """warp's map for (scale, src_point, out_point), kept on the matte: the placement round kept is
    mapped again for its colour (warp_pasted), with the same numbers."""
    key = ("geometry", scale, tuple(src_point), tuple(out_point))
    g = m.extended.get(key)
    if g is None:
        g = m.extended[key] = _new_geometry(m, scale, src_point, out_point)
    return g


def _new_geometry(m: Matte, scale: float, src_point: Tuple[float, float], out_point: Tuple[float, float]) -> _Geometry:
    # Output coordinate X = out + r * (X_src - src), X_src = x0 + u / sx.
    ax, ay = scale / m.sx, scale / m.sy
    premult, x0, y0, pads = m.premult, float(m.x0), float(m.y0), None
    crop = (x0, y0) + (m.end or (x0 + premult.shape[1] / m.sx, y0 + premult.shape[0] / m.sy))
    if any(m.frame):  # beyond the frame: its edge pixels, as far as the (wider, alpha's) filter reaches
        sig = [ALPHA_PREFILTER * math.sqrt(1.0 / (a * a) - 1.0) if a < 1.0 else 1e-3 for a in (ax, ay)]
        px, py = int(math.ceil(3 * sig[0] + 2 / min(ax, 1.0))), int(math.ceil(3 * sig[1] + 2 / min(ay, 1.0)))
        left_pad, top_pad = px * m.frame[0], py * m.frame[1]
        pads = (top_pad, py * m.frame[3], left_pad, px * m.frame[2])
        premult = m.extended.get(pads)
        if premult is None:
            premult = m.extended[pads] = cv2.copyMakeBorder(m.premult, *pads, cv2.BORDER_REPLICATE)
        x0, y0 = x0 - left_pad / m.sx, y0 - top_pad / m.sy
    left = out_point[0] + scale * (x0 - src_point[0])
    top = out_point[1] + scale * (y0 - src_point[1])
    ox, oy = int(math.floor(left)) - 1, int(math.floor(top)) - 1
    pw = int(math.ceil(left + ax * premult.shape[1])) - ox + 1
    ph = int(math.ceil(top + ay * premult.shape[0])) - oy + 1
    # warpAffine puts pixel centres on integers: p + 0.5 = X - o, u = j + 0.5.
    M = np.array([[ax, 0.0, left - ox - 0.5 + 0.5 * ax], [0.0, ay, top - oy - 0.5 + 0.5 * ay]])
    return _Geometry(ax, ay, ox, oy, pw, ph, M, premult, crop, pads)


def _cut_at_frame(placed: np.ndarray, m: Matte, g: _Geometry, scale: float, src_point: Tuple[float, float],
                  out_point: Tuple[float, float]) -> np.ndarray:
    """`placed` (h x w, or h x w x channels) less what lies beyond the frame: no part of the
    instance, cut at its image to a sub-pixel (in place; returned)."""
    if not any(m.frame):
        return placed
    if placed.dtype == np.float32 and placed.ndim in (2, 3):  # the numpy below, in one kernel call
        from .kernels import cut_at_frame

        edges = [out_point[k] + scale * (g.crop[side] - src_point[k]) for side, k in ((0, 0), (1, 1), (2, 0), (3, 1))]
        cut_at_frame(placed if placed.ndim == 3 else placed[..., None], float(g.ox), float(g.oy), *m.frame, *edges)
        return placed
    for axis, (lo, hi), origin, k in ((1, (0, 2), g.ox, 0), (0, (1, 3), g.oy, 1)):
        start = np.arange(placed.shape[axis], dtype=np.float64) + origin  # pixel i covers [start, start + 1]
        cover = np.ones(placed.shape[axis])
        if m.frame[lo]:
            cover = np.minimum(cover, np.clip(start + 1 - (out_point[k] + scale * (g.crop[lo] - src_point[k])), 0, 1))
        if m.frame[hi]:
            cover = np.minimum(cover, np.clip(out_point[k] + scale * (g.crop[hi] - src_point[k]) - start, 0, 1))
        shape = [1] * placed.ndim
        shape[axis] = -1
        placed *= cover.reshape(shape).astype(np.float32)
    return placed


def _prefiltered(premult: np.ndarray, ax: float, ay: float, k: float) -> np.ndarray:
    sig = [k * math.sqrt(1.0 / (a * a) - 1.0) if a < 1.0 else 1e-3 for a in (ax, ay)]
    return cv2.GaussianBlur(premult, (0, 0), sigmaX=sig[0], sigmaY=sig[1], borderType=cv2.BORDER_CONSTANT)


def _warped(premult: np.ndarray, M: np.ndarray, pw: int, ph: int) -> np.ndarray:
    placed = cv2.warpAffine(premult, M, (pw, ph), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return np.maximum(placed, 0.0, out=placed)
