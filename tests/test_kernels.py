"""The numba kernels of render's hot path (smplus/kernels.py) give, bit for bit, what the numpy
code they replaced gave: that code is written out here as the reference, run on the same inputs
(random patches, the shapes and values placement makes, NaN, nothing at SUPPORT, strided views)."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smplus import grain
from smplus.kernels import fringe_colour, ring_median, shrunk_colour
from smplus.render import SUPPORT, alpha_box, edge_crossings
from smplus.separate import SHARP_ALPHA, PastedInstance, _hold_frame_numpy


def numpy_alpha_box(alpha):
    """render.alpha_box before the kernel."""
    xs, ys = edge_crossings(alpha.max(axis=0)), edge_crossings(alpha.max(axis=1))
    if xs is None or ys is None:
        return None
    return [xs[0], ys[0], xs[1] - xs[0], ys[1] - ys[0]]


def numpy_shrunk(sharp, alpha):
    """separate.warp's shrinking colour before the kernels."""
    sharp_alpha = sharp[..., 3]
    placed = np.empty_like(sharp)
    placed[..., :3] = sharp[..., :3] * (alpha / np.maximum(sharp_alpha, SHARP_ALPHA))[..., None]
    placed[..., 3] = alpha
    fringe = (sharp_alpha < SHARP_ALPHA) & (alpha > 0.0)
    if fringe.any():
        near = cv2.GaussianBlur(sharp, (0, 0), 1.0, borderType=cv2.BORDER_CONSTANT)[fringe]
        placed[..., :3][fringe] = near[:, :3] * (alpha[fringe] / np.maximum(near[:, 3], 1e-6))[:, None]
    return placed[..., :3]


def kernel_shrunk(sharp, alpha):
    colour, fringe = shrunk_colour(sharp, alpha, np.float32(SHARP_ALPHA))
    if fringe:
        near = cv2.GaussianBlur(sharp, (0, 0), 1.0, borderType=cv2.BORDER_CONSTANT)
        fringe_colour(colour, near, alpha, sharp, np.float32(SHARP_ALPHA), np.float32(1e-6))
    return colour


def patch(seed, h, w, faint=0.0):
    """A soft blob of alpha (float32) with some pixels near and under SUPPORT and SHARP_ALPHA."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    blob = np.exp(-(((yy - h / 2) / (0.3 * h + 1)) ** 2 + ((xx - w / 2) / (0.3 * w + 1)) ** 2))
    alpha = np.clip(blob * rng.uniform(0.2, 1.3) + rng.normal(0, 0.05, (h, w)) - faint, 0, 1).astype(np.float32)
    return rng, alpha


def same(a, b):
    return a is None and b is None or a == b  # floats compared exactly


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 40), st.integers(1, 40), st.floats(0, 1.2))
def test_alpha_box_is_the_numpy_rule_bit_for_bit(seed, h, w, faint):
    _, alpha = patch(seed, h, w, faint)
    assert same(alpha_box(alpha), numpy_alpha_box(alpha))
    four = np.dstack([alpha * 0.5] * 3 + [alpha])  # a matte's alpha: a strided view
    assert same(alpha_box(four[..., 3]), numpy_alpha_box(four[..., 3]))
    wide = alpha.astype(np.float64)  # tests and scripts hand it float64 maps too
    assert same(alpha_box(wide), numpy_alpha_box(wide))


def test_alpha_box_edge_cases_as_numpy():
    assert alpha_box(np.zeros((5, 7), np.float32)) is None  # nothing reaches SUPPORT
    one = np.zeros((5, 7), np.float32)
    one[2, 3] = SUPPORT  # exactly at SUPPORT counts (float32 0.4 against the float 0.4)
    assert alpha_box(one) == numpy_alpha_box(one) and alpha_box(one) is not None
    just_under = np.nextafter(np.float32(SUPPORT), np.float32(0))
    one[2, 3] = just_under
    assert alpha_box(one) is None and numpy_alpha_box(one) is None
    nan = np.full((4, 6), 0.9, np.float32)
    nan[1, 2] = np.nan  # numpy's max lets a NaN win: its column and row are not at SUPPORT
    assert alpha_box(nan) == numpy_alpha_box(nan)
    with pytest.raises(ValueError):
        alpha_box(np.zeros((0, 3), np.float32))  # as numpy's max raises


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 30), st.integers(1, 30), st.floats(0, 0.6))
def test_shrunk_colour_is_the_numpy_warp_bit_for_bit(seed, h, w, faint):
    rng, alpha = patch(seed, h, w, faint)
    sharp_alpha = np.clip(alpha * rng.uniform(0.5, 1.5) - rng.uniform(0, 0.1), 0, 1.2).astype(np.float32)
    colour = rng.uniform(0, 255, (h, w, 3)).astype(np.float32) * sharp_alpha[..., None]
    sharp = np.ascontiguousarray(np.dstack([colour, sharp_alpha]))
    assert np.array_equal(kernel_shrunk(sharp, alpha), numpy_shrunk(sharp, alpha))


def test_shrunk_colour_fringe_and_nan_as_numpy():
    sharp = np.zeros((6, 6, 4), np.float32)
    sharp[1:5, 1:5] = [40.0, 80.0, 120.0, 0.8]
    sharp[2, 2, 3] = 0.01  # a fringe pixel inside: its colour comes from the blur
    sharp[3, 3, 3] = np.nan
    alpha = np.full((6, 6), 0.5, np.float32)
    assert np.array_equal(kernel_shrunk(sharp, alpha), numpy_shrunk(sharp, alpha), equal_nan=True)
    _, fringe = shrunk_colour(sharp, alpha, np.float32(SHARP_ALPHA))
    assert fringe


def numpy_level(self, canvas, p):
    """grain.Grain.level before the kernel."""
    H, W = canvas.shape[:2]
    h, w = p.alpha.shape
    m = max(3, int(round(grain.RING * max(h, w))))
    x0, y0, x1, y1 = max(0, p.x0 - m), max(0, p.y0 - m), min(W, p.x0 + w + m), min(H, p.y0 + h + m)
    lo, hi = self.range
    if x1 - x0 < 3 or y1 - y0 < 3:
        return lo
    r = np.abs(grain.residual(grain.luminance(canvas[y0:y1, x0:x1])))
    ring = np.ones(r.shape, bool)
    ring[max(0, p.y0 - y0):p.y0 + h - y0, max(0, p.x0 - x0):p.x0 + w - x0] = False
    if not ring.any():
        return lo
    values = r[ring]
    k = values.size // 2
    return min(max(float(np.partition(values, k)[k]) * grain.MAD_TO_SIGMA, lo), hi)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 50), st.integers(1, 50), st.integers(-10, 90), st.integers(-10, 70))
def test_grain_level_is_the_numpy_ring_median_bit_for_bit(seed, h, w, x0, y0):
    rng = np.random.default_rng(seed)
    canvas = cv2.GaussianBlur(rng.integers(0, 256, (80, 100, 3), dtype=np.uint8), (0, 0), rng.uniform(0.3, 2))
    x0, y0 = max(0, min(x0, 100 - 1)), max(0, min(y0, 80 - 1))  # render clips pastes to the canvas
    h, w = min(h, 80 - y0), min(w, 100 - x0)
    p = PastedInstance(x0, y0, np.zeros((h, w, 3), np.float32), np.ones((h, w), np.float32))
    g = grain.Grain(canvas, 1)
    assert g.level(canvas, p) == numpy_level(g, canvas, p)


def test_ring_median_with_no_ring_and_clipped_slices():
    gray = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert ring_median(gray, gray * 0, 0, 3, 0, 4)[0] is False  # all inside: no ring
    found, value = ring_median(gray, gray * 0, 1, 9, 1, 9)  # clipped as a slice: rows 1-2, columns 1-3
    values = np.abs(gray)[np.ones((3, 4), bool) & ~np.pad(np.ones((2, 3), bool), ((1, 0), (1, 0)))]
    assert found and value == np.partition(values, values.size // 2)[values.size // 2]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 60), st.integers(1, 60), st.sampled_from(["spread", "ties", "narrow", "special"]))
def test_ring_median_radix_select_is_np_partition(seed, h, w, kind):
    """The radix select gives np.partition's k-th value: values over many exponents, many ties, values
    that share their top bits (only the last pass tells them apart), zeros, inf and NaN (ordered last)."""
    rng = np.random.default_rng(seed)
    if kind == "spread":
        gray = (rng.standard_normal((h, w)) * 10.0 ** rng.uniform(-6, 4, (h, w))).astype(np.float32)
    elif kind == "ties":
        gray = rng.integers(-3, 4, (h, w)).astype(np.float32)
    elif kind == "narrow":
        gray = (1.0 + rng.integers(0, 50, (h, w)) * np.float32(2.0 ** -23)).astype(np.float32)
    else:
        gray = rng.choice(np.array([0.0, -0.0, 1.5, -2.0, np.inf, -np.inf, np.nan], np.float32), (h, w))
    blurred = (rng.standard_normal((h, w)) * (kind == "spread")).astype(np.float32)
    y0, y1, x0, x1 = (int(v) for v in rng.integers(-2, max(h, w) + 2, 4))
    found, value = ring_median(gray, blurred, y0, y1, x0, x1)
    ring = np.ones((h, w), bool)
    ring[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = False
    values = np.abs(gray - blurred)[ring]
    assert found == bool(values.size)
    if values.size:
        expected = np.partition(values, values.size // 2)[values.size // 2]
        assert np.array_equal(np.float32(value), expected, equal_nan=True) and np.float32(value).dtype == expected.dtype


def numpy_sharpened(p, canvas, amount):
    """grain.sharpened before the kernels."""
    alpha = p.alpha
    h, w = alpha.shape
    below = canvas[p.y0:p.y0 + h, p.x0:p.x0 + w].astype(np.float32)
    composite = below * (1.0 - alpha)[..., None] + p.color
    lum = grain.luminance(composite)
    detail = lum - cv2.GaussianBlur(lum, (0, 0), grain.SHARPEN_SIGMA, borderType=cv2.BORDER_REFLECT)
    return p.color + (np.float32(amount) * alpha * detail)[..., None]


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 30), st.integers(1, 30), st.floats(0.01, 1.0))
def test_sharpened_and_grain_noise_are_the_numpy_arithmetic_bit_for_bit(seed, h, w, amount):
    rng, alpha = patch(seed, h, w)
    canvas = rng.integers(0, 256, (h + 7, w + 5, 3), dtype=np.uint8)
    big = rng.uniform(0, 255, (h + 2, w + 2, 3)).astype(np.float32) * np.pad(alpha, 1)[..., None]
    p = PastedInstance(3, 4, big[1:-1, 1:-1], alpha)  # a view, as render's clipped pastes
    assert np.array_equal(grain.sharpened(p, canvas, amount).color, numpy_sharpened(p, canvas, amount))
    noise = rng.standard_normal((h, w)).astype(np.float32)
    scale = np.float32(amount * 3.7)
    expected = p.color + (alpha * (noise * scale))[..., None]  # Grain.match's noise: noise *= s; colour + alpha * noise
    assert np.array_equal(grain.add_luma(p.color, alpha, noise, noise, scale, False), expected)


def numpy_over(below, alpha, colour):
    """render._over before the kernel."""
    return np.clip(below * (1.0 - alpha[..., None]) + colour + 0.5, 0, 255).astype(np.uint8)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 40), st.integers(1, 40), st.floats(0.0, 1.5))
def test_over_is_the_numpy_composite_bit_for_bit(seed, h, w, gain):
    """Over 8-bit pixels, premultiplied colour that over- and undershoots (grain, sharpening), alpha 0..1
    and exactly 0 or 1; the canvas cut as render cuts it (a strided window)."""
    from smplus.kernels import over

    rng, alpha = patch(seed, h, w)
    canvas = rng.integers(0, 256, (h + 4, w + 6, 3), dtype=np.uint8)
    below = canvas[2:2 + h, 3:3 + w]
    colour = (alpha[..., None] * rng.uniform(-40, 300, (h, w, 3)) * gain).astype(np.float32)
    colour[rng.random((h, w)) < 0.1] = 127.5  # exactly on a rounding edge with alpha 0
    alpha[rng.random((h, w)) < 0.1] = 0.0
    got = over(below, alpha, colour)
    assert got.dtype == np.uint8 and np.array_equal(got, numpy_over(below, alpha, colour))
    p = PastedInstance(3, 2, colour, alpha)
    from smplus.render import _over

    assert np.array_equal(_over(below, p), numpy_over(below, alpha, colour))


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 30), st.integers(1, 30), st.integers(0, 40),
       st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()))
def test_hold_frame_is_the_numpy_rule_bit_for_bit(seed, h, w, k, frame):
    """Every combination of frame sides, a band k from none (k = 0: numpy's [-0:] is everything) to wider
    than the matte; a colour crop cut from a larger image (strided) as separate cuts it."""
    from smplus.separate import _hold_frame

    rng, alpha = patch(seed, h, w)
    premult = np.dstack([alpha[..., None] * rng.uniform(0, 255, (h, w, 3)), alpha]).astype(np.float32)
    image = rng.integers(0, 256, (h + 3, w + 5, 3), dtype=np.uint8)
    colour = image[1:1 + h, 2:2 + w]
    soft = np.clip(alpha + rng.normal(0, 0.3, (h, w)), 0, 1).astype(np.float32)
    expected = premult.copy()
    _hold_frame_numpy(expected, colour, soft, frame, k)
    _hold_frame(premult, colour, soft, frame, k)
    assert np.array_equal(premult, expected)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 30), st.integers(1, 30))
def test_opaque_colour_is_the_numpy_copyto_bit_for_bit(seed, h, w):
    """Alpha on either side of OPAQUE and exactly at it (float32(0.98) and the float32 just under it),
    over 1; the crop a strided view of the image, as separate cuts it."""
    from smplus.separate import OPAQUE, _opaque_colour

    rng, alpha = patch(seed, h, w)
    alpha = np.where(rng.random((h, w)) < 0.2, np.float32(OPAQUE), alpha)
    alpha = np.where(rng.random((h, w)) < 0.1, np.nextafter(np.float32(OPAQUE), np.float32(0)), alpha)
    alpha = np.where(rng.random((h, w)) < 0.1, np.float32(1.01), alpha).astype(np.float32)
    alpha.flat[0], alpha.flat[-1] = np.float32(OPAQUE), np.nextafter(np.float32(OPAQUE), np.float32(0))
    premult = np.dstack([alpha[..., None] * rng.uniform(0, 255, (h, w, 3)), alpha]).astype(np.float32)
    crop = rng.integers(0, 256, (h + 2, w + 3, 3), dtype=np.uint8)[1:1 + h, 2:2 + w]
    expected = premult.copy()
    np.copyto(expected[..., :3], crop * expected[..., 3:], where=expected[..., 3:] >= OPAQUE)
    _opaque_colour(premult, crop)
    assert np.array_equal(premult, expected)


def numpy_cut_at_frame(placed, frame, ox, oy, crop, scale, src_point, out_point):
    """separate._cut_at_frame before the kernel."""
    for axis, (lo, hi), origin, k in ((1, (0, 2), ox, 0), (0, (1, 3), oy, 1)):
        start = np.arange(placed.shape[axis], dtype=np.float64) + origin
        cover = np.ones(placed.shape[axis])
        if frame[lo]:
            cover = np.minimum(cover, np.clip(start + 1 - (out_point[k] + scale * (crop[lo] - src_point[k])), 0, 1))
        if frame[hi]:
            cover = np.minimum(cover, np.clip(out_point[k] + scale * (crop[hi] - src_point[k]) - start, 0, 1))
        shape = [1] * placed.ndim
        shape[axis] = -1
        placed *= cover.reshape(shape).astype(np.float32)
    return placed


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 30), st.integers(1, 30), st.sampled_from([0, 4]),
       st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()).filter(any))
def test_cut_at_frame_is_the_numpy_cover_bit_for_bit(seed, h, w, channels, frame):
    """An alpha (2-D) and a four-channel patch, cut by every combination of frame sides at sub-pixel
    places, inside the patch, beyond it, and at whole pixels (cover exactly 0 or 1)."""
    from smplus.separate import Matte, _cut_at_frame, _Geometry

    rng, alpha = patch(seed, h, w)
    placed = alpha if channels == 0 else np.dstack([alpha] * 4) * rng.uniform(0, 255, 4).astype(np.float32)
    ox, oy = (int(v) for v in rng.integers(-20, 20, 2))
    scale = float(rng.choice([0.25, 0.5, 1.0, rng.uniform(0.05, 2.0)]))
    src_point = tuple(float(v) for v in rng.uniform(0, 50, 2))
    out_point = tuple(float(v) for v in np.round(rng.uniform(-10, 30, 2), int(rng.integers(0, 3))))
    crop = tuple(float(v) for v in np.round(rng.uniform(-10, 80, 4), int(rng.integers(0, 3))))
    m = Matte(0, 0, 1.0, 1.0, np.zeros((1, 1, 4), np.float32), frame)
    g = _Geometry(1.0, 1.0, ox, oy, w, h, np.zeros((2, 3)), m.premult, crop)
    expected = numpy_cut_at_frame(placed.copy(), frame, ox, oy, crop, scale, src_point, out_point)
    got = _cut_at_frame(placed.copy(), m, g, scale, src_point, out_point)
    assert np.array_equal(got, expected)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 40), st.integers(1, 40), st.floats(0, 1.2))
def test_support_mask_is_the_numpy_threshold_bit_for_bit(seed, h, w, faint):
    """Alpha at float32(SUPPORT) and the float32 just under it, NaN, nothing at SUPPORT."""
    from smplus.kernels import support_mask

    _, alpha = patch(seed, h, w, faint)
    alpha.flat[0] = np.float32(SUPPORT)
    alpha.flat[-1] = np.nextafter(np.float32(SUPPORT), np.float32(0))
    alpha.flat[alpha.size // 2] = np.nan
    mask, count = support_mask(alpha, SUPPORT)
    binary = alpha >= SUPPORT
    assert mask.dtype == np.uint8 and np.array_equal(mask, binary.astype(np.uint8)) and count == binary.sum()
