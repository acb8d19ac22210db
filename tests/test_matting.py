"""The band matting solver (smplus.matting) against pymatting, the reference.

The reference problems are the ones separate() hands to matte(): every
instance of the fixture images, cut at the working resolution of two pasted
sizes (a tiny one and a large one), so crops, bands and colours are real.
"""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

import smplus.separate as separate_module
from smplus.matting import ALPHA_SNAP, COMPILE_MESSAGE, estimate_alpha, estimate_foreground, premultiplied_matte
from smplus.plan import clipped_box
from smplus.separate import make_trimap, matte, separate

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, ROOT

PASTED = (12.0, 60.0)  # pasted longer side, px: working sizes of ~36 and ~160 px


@pytest.fixture(scope="module", autouse=True)
def _one_numba_thread():
    """pymatting's parallel kernels spin-wait on a busy machine: the reference runs on one thread."""
    import numba

    saved = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(saved)


def _reference_alpha(image, trimap):
    from pymatting import estimate_alpha_cf

    return np.clip(estimate_alpha_cf(image, trimap), 0.0, 1.0)


@pytest.fixture(scope="module")
def problems():
    """(image 0..1, trimap) of every fixture instance at each pasted size, as separate() builds them."""
    with open(FIXTURE_ANNOTATIONS) as f:
        raw = json.load(f)
    images = {im["id"]: im for im in raw["images"]}
    seen = []
    real = separate_module.matte

    def record(crop, soft, band):
        mask = (soft >= 0.5).astype(np.uint8)
        trimap = make_trimap(mask, band)
        if (trimap == 1).any() and (trimap == 0).any():
            seen.append((crop.astype(np.float64) / 255.0, trimap))
        return real(crop, soft, band)

    separate_module.matte = record
    try:
        for im in raw["images"]:
            pixels = cv2.imread(os.path.join(FIXTURE_IMAGES, im["file_name"]))
            for a in raw["annotations"]:
                if a["image_id"] != im["id"] or a["iscrowd"]:
                    continue
                box = clipped_box(a, images[a["image_id"]]["width"], images[a["image_id"]]["height"])
                for pasted in PASTED:
                    separate(pixels, a["segmentation"], box, pasted / max(box[2], box[3]))
    finally:
        separate_module.matte = real
    return seen


def test_band_alpha_matches_pymatting_on_real_instances(problems):
    assert len(problems) >= 100
    sizes = sorted(int((t == 0.5).sum()) for _, t in problems)
    assert sizes[0] < 150 and sizes[-1] > 1500  # thin and long bands both in the set
    means = []
    for image, trimap in problems:
        alpha = estimate_alpha(image, trimap)
        assert alpha is not None
        ref = _reference_alpha(image, trimap)
        band = trimap == 0.5
        d = np.abs(alpha - ref)[band]
        assert d.max() <= 0.05
        means.append(d.mean())
        known = ~band
        assert np.array_equal(alpha[known], trimap[known])  # known pixels keep their alpha
    assert np.mean(means) <= 0.01 and max(means) <= 0.01


def test_band_foreground_matches_pymatting_on_real_instances(problems):
    """Premultiplied colours (what gets pasted) against estimate_foreground_ml with the same alpha."""
    from pymatting import estimate_foreground_ml

    band_mad, crop_mad = [], []
    for image, trimap in problems[::3]:
        alpha = estimate_alpha(image, trimap)
        alpha[alpha < 0.02] = 0.0
        alpha[alpha > 0.98] = 1.0
        fg = estimate_foreground(image, alpha)
        ref = estimate_foreground_ml(image, alpha)
        d = np.abs(alpha[..., None] * (fg - ref)) * 255.0
        band_mad.append(d[trimap == 0.5].mean())
        crop_mad.append(d.mean())
        # where alpha is 1 the colours are the source's, exactly
        assert np.array_equal(fg[alpha == 1.0], image[alpha == 1.0])
    # A few levels of 255 at the soft edge (pymatting also smooths the opaque pixels next to
    # it, which keep the source's colours here), under one over the crop.
    assert np.mean(band_mad) <= 3.0 and max(band_mad) <= 12.0
    assert np.mean(crop_mad) <= 0.6


def _two_colour_edge(h=24, w=40):
    """A vertical edge whose alpha ramps over 6 px, F and B two flat colours, mixed exactly."""
    xx = np.tile(np.arange(w, dtype=np.float64), (h, 1))
    alpha = np.clip((xx - 16.5) / 6.0, 0.0, 1.0)
    F, B = np.array([0.1, 0.3, 0.9]), np.array([0.8, 0.6, 0.1])
    image = alpha[..., None] * F + (1 - alpha[..., None]) * B
    return image, alpha, F, B


def test_matte_is_the_alpha_and_foreground_steps_composed_pixel_for_pixel(problems):
    """premultiplied_matte works on the band alone (colours of the rest straight from the crop): the
    patch is still estimate_alpha's alpha, snapped, times estimate_foreground's colours, everywhere."""
    for image, trimap in problems[::2]:
        crop = np.rint(image * 255).astype(np.uint8)
        out = premultiplied_matte(crop, trimap, (trimap >= 0.5).astype(np.float32))
        alpha = estimate_alpha(crop / 255.0, trimap)
        alpha = np.where(alpha < ALPHA_SNAP, 0.0, np.where(alpha > 1 - ALPHA_SNAP, 1.0, alpha))
        fg = estimate_foreground(crop / 255.0, alpha)
        assert np.array_equal(out[..., 3], alpha.astype(np.float32))
        assert np.array_equal(out[..., :3], (fg * 255).astype(np.float32) * alpha.astype(np.float32)[..., None])


def test_trimap_is_known_inside_the_eroded_and_outside_the_dilated_mask(problems):
    edge = np.zeros((30, 40), np.uint8)
    edge[:, :12] = 1  # the mask runs into the crop's border: erosion keeps it there
    masks = [edge] + [(trimap == 1).astype(np.uint8) for _, trimap in problems[::7]]
    for mask in masks:
        for band in (1, 2, 3):
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
            inside, outside = cv2.erode(mask, kernel) > 0, cv2.dilate(mask, kernel) == 0
            trimap = make_trimap(mask, band)
            assert trimap.dtype == np.float64
            assert np.array_equal(trimap == 1.0, inside) and np.array_equal(trimap == 0.0, outside)
            assert np.all(trimap[~inside & ~outside] == 0.5) and (trimap == 0.5).any()
    assert make_trimap(edge, 2)[:, 0].min() == 1.0


def test_alpha_recovers_an_exact_two_colour_mix():
    """On an image that obeys the colour-line model exactly, closed-form alpha is the true alpha."""
    image, truth, _, _ = _two_colour_edge()
    trimap = np.where(truth == 1, 1.0, np.where(truth == 0, 0.0, 0.5))
    trimap[:, 14:26] = 0.5  # more unknowns than the ramp itself
    alpha = estimate_alpha(image, trimap)
    assert np.abs(alpha - truth).max() < 1e-3


def test_foreground_has_no_background_bleed():
    image, alpha, F, _ = _two_colour_edge()
    fg = estimate_foreground(image, alpha)
    soft = (alpha > 0.1) & (alpha < 1)
    # the observed colour there is mostly background; the estimate is the foreground's
    assert np.abs(fg[soft] - F).max() * 255 < 4.0
    assert np.abs(image[soft] - F).max() * 255 > 100


def test_no_unknowns_returns_the_trimap():
    image, truth, _, _ = _two_colour_edge()
    trimap = (truth > 0.5).astype(np.float64)
    assert np.array_equal(estimate_alpha(image, trimap), trimap)


def test_all_unknown_or_no_full_window_cannot_be_solved():
    image, _, _, _ = _two_colour_edge()
    assert estimate_alpha(image, np.full(image.shape[:2], 0.5)) is None
    trimap = np.zeros((2, 40))
    trimap[:, 30:] = 1.0
    trimap[:, 10:12] = 0.5  # two rows: no 3x3 window at all
    assert estimate_alpha(image[:2], trimap) is None


def test_no_foreground_known_gives_zero_alpha():
    image, truth, _, _ = _two_colour_edge()
    trimap = np.where(truth > 0, 0.5, 0.0)
    assert np.abs(estimate_alpha(image, trimap)).max() < 1e-9


def test_thin_one_px_band_matches_pymatting(problems):
    """Unknowns only on the mask's own outline, one px wide."""
    for image, trimap in problems[:: len(problems) // 10]:
        mask = (trimap >= 0.5).astype(np.uint8)
        inner = cv2.erode(mask, np.ones((3, 3), np.uint8))
        thin = np.where(inner > 0, 1.0, np.where(mask > 0, 0.5, 0.0))
        if not (thin == 1).any():
            continue
        alpha = estimate_alpha(image, thin)
        assert np.abs(alpha - _reference_alpha(image, thin)).max() <= 0.05


def test_matte_falls_back_to_the_mask_when_nothing_is_definite():
    """An instance thinner than the band has no definite foreground: alpha is the (resampled) mask."""
    crop = np.full((30, 30, 3), 200, np.uint8)
    soft = np.zeros((30, 30), np.float32)
    soft[5:25, 14:16] = 1.0
    soft[5:25, 16] = 0.4
    crop[soft > 0] = 30
    premult = matte(crop, soft, 2)
    alpha = premult[..., 3]
    assert np.array_equal(alpha[soft >= 0.98], soft[soft >= 0.98]) and alpha[2, 2] == 0.0
    assert np.allclose(premult[10, 14, :3], 30, atol=0.5)


def test_matte_of_a_solid_square():
    crop = np.full((40, 40, 3), 200, np.uint8)
    soft = np.zeros((40, 40), np.float32)
    soft[10:30, 12:28] = 1.0
    crop[soft > 0] = 30
    premult = matte(crop, soft, 1)
    alpha = premult[..., 3]
    assert alpha[20, 20] == 1.0 and alpha[2, 2] == 0.0
    assert np.array_equal(premult[alpha == 1.0, :3], crop[alpha == 1.0].astype(np.float32))  # the source's colours
    assert np.array_equal(premult[alpha == 0.0], np.zeros((int((alpha == 0).sum()), 4), np.float32))
    fg = premult[alpha > 0, :3] / alpha[alpha > 0, None]
    assert np.abs(fg - 30).max() < 3  # no grey from the background at the edge


@pytest.mark.slow
def test_first_run_compiles_once_with_one_notice_then_runs_without_pymatting(tmp_path):
    """On a machine without numba's cache, a 2-worker run prints the compile notice once (one
    worker compiles, the other waits and loads). The next run loads silently, and uses only
    smplus's kernels (serial: parallelism is across images), never pymatting."""
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from smplus.pipeline import RunOptions, transform\n"
        "transform(%r, %r, sys.argv[1], run=RunOptions(progress=False, workers=int(sys.argv[2])))\n"
        "import numba.np.ufunc.parallel as p\n"
        "print('pymatting' in sys.modules, p._is_initialized)\n"
    ) % (ROOT, FIXTURE_ANNOTATIONS, FIXTURE_IMAGES)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    first, again = (subprocess.run([sys.executable, "-c", code, str(tmp_path / out), workers], env=env,
                                   capture_output=True, text=True, check=True)
                    for out, workers in (("a", "2"), ("b", "1")))
    assert first.stderr.splitlines() == [COMPILE_MESSAGE]
    assert again.stderr == ""
    assert again.stdout.split() == ["False", "False"]


def test_an_instance_pasted_above_its_working_size_keeps_its_colours_at_source_resolution():
    """Matted at 160 px, pasted at 180: back at source resolution, the source's colours where it is
    opaque, and on its soft edge the matte's colours with none of the background's (resampled
    premultiplied: the transparent pixels around it hold the background's colour)."""
    image = np.full((400, 400, 3), 220, np.uint8)
    cv2.circle(image, (200, 200), 150, (40, 90, 160), -1, lineType=cv2.LINE_AA)
    t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    polygon = np.stack([200.5 + 150 * np.cos(t), 200.5 + 150 * np.sin(t)], 1).ravel().tolist()
    m = separate(image, [polygon], (50.0, 50.0, 301.0, 301.0), 0.6)
    assert (m.sx, m.sy) == (1.0, 1.0)  # source resolution
    alpha = m.premult[..., 3]
    crop = image[m.y0:m.y0 + alpha.shape[0], m.x0:m.x0 + alpha.shape[1]]
    opaque = alpha >= 0.98
    assert np.array_equal(m.premult[opaque, :3], crop[opaque] * alpha[opaque, None])
    edge = (alpha > 0.05) & (alpha < 0.95)
    assert edge.sum() > 200  # a soft edge all around the disc
    colour = m.premult[edge, :3] / alpha[edge, None]
    assert np.abs(colour - (40, 90, 160)).max() < 12  # the background (220) would pull it up
