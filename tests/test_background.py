"""PSI's inpainting branch: the hole mask and the fill, on their own."""

import cv2
import numpy as np

from smplus.background import hole_mask, inpaint_holes
from smplus.coco import mask_to_rle


def _gradient(h=240, w=320):
    ys, xs = np.mgrid[0:h, 0:w]
    return np.dstack([xs * 200 // w, ys * 200 // h, np.full((h, w), 90)]).astype(np.uint8)


def test_hole_mask_is_the_dilated_union_of_the_masks():
    a = np.zeros((120, 160), np.uint8)
    a[20:40, 30:50] = 1
    b = np.zeros_like(a)
    b[70:100, 100:110] = 1
    hole = hole_mask([mask_to_rle(a), mask_to_rle(b)], a.shape)
    r = 3  # small masks: the smallest dilation
    expected = cv2.dilate(a | b, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    assert np.array_equal(hole, expected)
    assert not hole_mask([], a.shape).any()


def test_inpainting_removes_the_object_and_leaves_the_rest_of_the_image_alone():
    image = _gradient()
    clean = image.copy()
    image[100:140, 150:190] = (20, 230, 20)  # an object to remove
    obj = np.zeros(image.shape[:2], np.uint8)
    obj[100:140, 150:190] = 1
    hole = hole_mask([mask_to_rle(obj)], image.shape)
    out = inpaint_holes(image, hole)
    # the object is gone: the fill follows the surrounding gradient
    assert np.abs(out[hole > 0].astype(int) - clean[hole > 0]).mean() < 12
    to_object = np.abs(out[obj > 0].astype(int) - (20, 230, 20)).sum(axis=1)
    to_background = np.abs(out[obj > 0].astype(int) - clean[obj > 0]).sum(axis=1)
    assert np.all(to_background < to_object)  # no pixel of the object's colour is left
    # pixels beyond the feather are untouched, byte for byte
    far = cv2.dilate(hole, np.ones((15, 15), np.uint8)) == 0
    assert np.array_equal(out[far], image[far])
    # no seam: the step across the hole's border is like the gradient's own
    ring = (cv2.dilate(hole, np.ones((5, 5), np.uint8)) > 0) & (hole == 0)
    assert np.abs(out[ring].astype(int) - clean[ring]).max() <= 20


def test_inpainting_a_hole_at_the_image_border():
    image = _gradient()
    image[:30, :40] = 255
    hole = np.zeros(image.shape[:2], np.uint8)
    hole[:34, :44] = 1
    out = inpaint_holes(image, hole)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out[:30, :40].mean() < 200  # the white corner is filled from its neighbours


def test_fill_gets_the_grain_of_the_known_region_beside_it(monkeypatch):
    """A smooth fill of a textured surface gets fine detail back, copied from known pixels beside the hole."""
    import smplus.background as bg

    rng = np.random.default_rng(0)
    image = np.clip(120 + rng.normal(0, 25, (240, 320, 1)) + np.zeros((1, 1, 3)), 0, 255).astype(np.uint8)
    hole = np.zeros((240, 320), np.uint8)
    hole[90:150, 130:190] = 1

    def texture(img):
        lap = np.abs(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32), cv2.CV_32F))
        ring = (cv2.dilate(hole, np.ones((13, 13), np.uint8)) > 0) & (hole == 0)
        return lap[hole > 0].mean() / lap[ring].mean()

    with_grain = inpaint_holes(image, hole)
    monkeypatch.setattr(bg, "TEXTURE_GAIN", 0.0)
    smooth = inpaint_holes(image, hole)
    assert texture(smooth) < 0.15 < 0.3 < texture(with_grain)
    # only the hole changes; its mean level stays the smooth fill's
    assert np.array_equal(with_grain[hole == 0], smooth[hole == 0])
    assert abs(with_grain[hole > 0].astype(float).mean() - smooth[hole > 0].astype(float).mean()) < 2
