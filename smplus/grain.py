"""Grain matching: a pasted instance gets the grain of the photo where it lands.

Shrinking a 200 px object 15x averages its sensor and JPEG grain away, but an
object photographed at 15 px carries the camera's grain at its own scale: a
classifier tells such clean pastes from natural small objects (scripts/realism.py).
So each pasted instance gets luminance noise, in proportion to its alpha:

- **level**: the high-pass residual (luminance minus its Gaussian blur, sigma 1 px)
  of the canvas in a ring up to half a patch-length around the paste, robustly
  (median absolute value), kept between the levels of the photo's flattest blocks
  (an inpainted fill is smoother than any part of a photo) and of its busier ones
  (a textured ring, grass or brick, is not grain); shrunk by r, the
  instance keeps r of its source's grain, so sqrt(1 - r^2) of the level is added;
- **spectrum**: white noise blurred by SPECTRUM_SIGMA, the correlation of COCO
  photos' own residual at q95 (lag-1 autocorrelation 0.16 in flat regions; scripts/grain_stats.py), the
  same in all three channels (their residuals correlate at 0.9; chroma noise is a
  fifth of luminance's).

Deterministic: the noise is drawn from a generator keyed by the image's plan
(image id, background id, the instance's id, scale and planned place), so render
stays a function of (plan, pixels). The plan holds no seed; another --seed gives
other plans (backgrounds, places, sizes), hence other grain.

Cost: about 0.2 ms a pasted instance (scripts/bench.py).
"""

from __future__ import annotations

import hashlib
import math
import threading
from typing import Optional, Tuple

import cv2
import numpy as np

from .kernels import add_luma, composite, ring_median
from .separate import PastedInstance

RESIDUAL_SIGMA = 1.0    # the high-pass that measures grain: luminance minus its blur at this sigma
SPECTRUM_SIGMA = 0.6    # synthesized grain: white noise blurred at this sigma (measured on coco_tiny at q95)
RING = 0.5              # ring around the paste measured: up to this many patch-lengths
BLOCK = 8               # the photo's grain range: percentiles of the residual levels of BLOCK x BLOCK blocks,
TILES = 12              # TILES x TILES of them spread over the photo, each cut with MARGIN px around it
MARGIN = 4              # (the residual's blur reaches 4 px)
FLOOR_PERCENTILE = 10   # the ring's level is at least this one's...
CAP_PERCENTILE = 75     # ...and at most this one's
MAD_TO_SIGMA = 1.4826   # median |x| -> standard deviation of Gaussian noise
MEAN_TO_SIGMA = math.sqrt(math.pi / 2)  # mean |x| -> standard deviation
# Sharpness matching: an unsharp mask of the pasted composite's luminance, amount SHARPEN (times
# sqrt(1 - r^2)) at sigma SHARPEN_SIGMA px. A photographed small object is sharper than a large
# one shrunk by area averaging (median Laplacian over contrast, 6-12 px: 1.51 natural, 1.41
# downscaled photos, 1.32 pasted), and the alpha edge is softer still (separate.ALPHA_PREFILTER,
# kept for the box's precision): scripts/realism.py, docs/realism-classifier.md.
SHARPEN = 0.7
SHARPEN_SIGMA = 0.8


def _residual_gain(sigma: float) -> float:
    """Standard deviation of the RESIDUAL_SIGMA residual of unit white noise blurred at `sigma`."""
    n = 33
    delta = np.zeros((n, n), np.float32)
    delta[n // 2, n // 2] = 1.0
    k = cv2.GaussianBlur(delta, (0, 0), sigma) if sigma > 0 else delta
    h = k - cv2.GaussianBlur(k, (0, 0), RESIDUAL_SIGMA)
    return float(np.sqrt((h.astype(np.float64) ** 2).sum()))


GAIN = _residual_gain(SPECTRUM_SIGMA)


def residual(gray: np.ndarray) -> np.ndarray:
    """The grain band of a float32 luminance image."""
    return gray - cv2.GaussianBlur(gray, (0, 0), RESIDUAL_SIGMA, borderType=cv2.BORDER_REFLECT)


def luminance(bgr: np.ndarray) -> np.ndarray:
    """Float32 luminance (8-bit pixels: rounded to 8 bits first, 3x faster; it adds 0.3 of noise in quadrature)."""
    if bgr.dtype == np.uint8:
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return cv2.cvtColor(bgr.astype(np.float32, copy=False), cv2.COLOR_BGR2GRAY)


def grain_range(photo: np.ndarray) -> Tuple[float, float]:
    """The photo's grain range (residual standard deviations, 0..255): the levels of its
    flattest blocks (FLOOR_PERCENTILE) and of its busier ones (CAP_PERCENTILE).

    Measured on TILES x TILES blocks spread evenly over the photo, not all of them (a
    whole 640x480 photo cost 1 ms, as much as ten instances' grain): each BLOCK x BLOCK
    block is cut with a MARGIN for the blur, and all are filtered at once, side by side.
    """
    H, W = photo.shape[:2]
    side = BLOCK + 2 * MARGIN
    if H < side or W < side:
        level = float(np.abs(residual(luminance(photo))).mean()) * MEAN_TO_SIGMA
        return level, level
    ny, nx = min(TILES, H // side), min(TILES, W // side)
    ys = (np.linspace(0, H - side, ny).astype(int)[:, None] + np.arange(side)).ravel()
    rows = photo.take(ys, axis=0)
    # the tiles side by side: ny*side x nx*side (slices: a fancy index over columns is 10x slower)
    mosaic = np.concatenate([rows[:, x:x + side] for x in np.linspace(0, W - side, nx).astype(int)], axis=1)
    r = np.abs(residual(luminance(mosaic))).reshape(ny, side, nx, side)[:, MARGIN:-MARGIN, :, MARGIN:-MARGIN]
    levels = np.sort(r.mean(axis=(1, 3)).ravel()) * MEAN_TO_SIGMA
    lo, hi = (levels[int(q / 100 * (levels.size - 1))] for q in (FLOOR_PERCENTILE, CAP_PERCENTILE))
    return float(lo), float(hi)


_BITS = threading.local()  # one Philox per thread, re-keyed by each generator() call


def generator(*values: float) -> np.random.Generator:
    """A generator named by plan numbers (floats by their bits): Philox keyed by their hash.

    The stream is Philox(key=hash) from its start. Its bit generator is this thread's, re-keyed
    (its state set): a new Philox(key=...) first draws a SeedSequence from the OS's entropy it
    never uses, 20-30 us of an instance's grain. So the generator is valid until the next call
    in the same thread."""
    digest = hashlib.blake2b(np.asarray(values, np.float64).tobytes(), digest_size=16).digest()
    bits = getattr(_BITS, "philox", None)
    if bits is None:
        bits = _BITS.philox = np.random.Philox(key=0)
    # the key as Philox(key=int.from_bytes(digest, "little")) splits it: two 64-bit words, low first
    bits.state = {"bit_generator": "Philox",
                  "state": {"counter": np.zeros(4, np.uint64), "key": np.frombuffer(digest, "<u8").copy()},
                  "buffer": np.zeros(4, np.uint64), "buffer_pos": 4, "has_uint32": 0, "uinteger": 0}
    return np.random.Generator(bits)


class Grain:
    """Grain matching for the pastes of one image.

    `photo` is the photo the canvas comes from before any fill (the image itself
    when inpainted, else the new background): its grain range is measured once,
    on first use; `key`: plan numbers that name the image.
    """

    def __init__(self, photo: Optional[np.ndarray], *key: float, measured: Optional[Tuple[float, float]] = None):
        self.photo = photo
        self.key = key
        self._range: Optional[Tuple[float, float]] = measured  # the photo's grain range, if known (photo: None then)

    @property
    def range(self) -> Tuple[float, float]:
        if self._range is None:
            self._range = grain_range(self.photo)
        return self._range

    def level(self, canvas: np.ndarray, p: PastedInstance) -> float:
        """The grain (residual standard deviation) where `p` lands on `canvas`."""
        H, W = canvas.shape[:2]
        h, w = p.alpha.shape
        m = max(3, int(round(RING * max(h, w))))
        x0, y0, x1, y1 = max(0, p.x0 - m), max(0, p.y0 - m), min(W, p.x0 + w + m), min(H, p.y0 + h + m)
        lo, hi = self.range
        if x1 - x0 < 3 or y1 - y0 < 3:
            return lo
        gray = luminance(canvas[y0:y1, x0:x1])  # its residual's |values| in the ring, their median: one call
        found, median = ring_median(gray, cv2.GaussianBlur(gray, (0, 0), RESIDUAL_SIGMA, borderType=cv2.BORDER_REFLECT),
                                    max(0, p.y0 - y0), p.y0 + h - y0, max(0, p.x0 - x0), p.x0 + w - x0)
        return min(max(float(median) * MAD_TO_SIGMA, lo), hi) if found else lo

    def match(self, p: PastedInstance, canvas: np.ndarray, scale: float, *key: float) -> PastedInstance:
        """`p`, shrunk by `scale`, with the sharpness of a photographed object of its size and the
        grain of where it lands on `canvas` (before it is pasted), in proportion to its alpha.
        `key`: plan numbers that name the instance (its id, its place)."""
        # Shrinking by r averages 1/r^2 source pixels: the source's own grain keeps r of its level
        # (its high-pass content is the object's structure, not a grain to subtract); what the
        # shrink took, sqrt(1 - r^2) of it, is given back (the sharpening too: none at r = 1).
        keep = min(max(scale, 0.0), 1.0)
        lost = math.sqrt(1.0 - keep * keep)
        p = sharpened(p, canvas, SHARPEN * lost)
        add = self.level(canvas, p) * lost
        if add <= 0.0:
            return p
        alpha = p.alpha
        rng = generator(*self.key, scale, *key)
        noise = rng.standard_normal(alpha.shape, dtype=np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), SPECTRUM_SIGMA, borderType=cv2.BORDER_REFLECT)
        # colour + alpha * (noise * level / GAIN), one kernel call
        return PastedInstance(p.x0, p.y0, add_luma(p.color, alpha, noise, noise, np.float32(add / GAIN), False), alpha)


def sharpened(p: PastedInstance, canvas: np.ndarray, amount: float) -> PastedInstance:
    """`p` as it would look over `canvas` after an unsharp mask of its luminance (amount, sigma
    SHARPEN_SIGMA), in proportion to its alpha: its edge against what it lands on, and its inside.

    The colour stays premultiplied over the same alpha (the box and the mask do not move): it is
    the sharpened composite less what of the canvas shows through. Luminance only, the same in the
    three channels: a photo's chroma is softer than its luminance (sharpening the three channels
    raised the chroma high-pass above natural objects'; scripts/realism.py).
    """
    if amount <= 0.0:
        return p
    alpha = p.alpha
    h, w = alpha.shape
    below = canvas[p.y0:p.y0 + h, p.x0:p.x0 + w]  # (render clips pastes to the canvas)
    if p.x0 < 0 or p.y0 < 0 or below.shape[:2] != (h, w):
        return p
    lum = luminance(composite(below, alpha, p.color))  # below * (1 - alpha) + colour, one kernel call
    blurred = cv2.GaussianBlur(lum, (0, 0), SHARPEN_SIGMA, borderType=cv2.BORDER_REFLECT)
    # colour + (amount * alpha) * (lum - blurred), one kernel call
    return PastedInstance(p.x0, p.y0, add_luma(p.color, alpha, lum, blurred, np.float32(amount), True), alpha)
