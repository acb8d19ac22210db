"""PSI's inpainting branch: the hole mask and the fill, on their own."""

import json
import os

import cv2
import numpy as np
from pycocotools import mask as mask_utils

import smplus.background as bg
from smplus.background import _regions, hole_mask, inpaint_holes
from smplus.coco import ann_to_rle, mask_to_rle, read_image

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES


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


def _fixture_images():
    """(image, RLEs of its annotations) for each real fixture image."""
    with open(FIXTURE_ANNOTATIONS) as f:
        data = json.load(f)
    for im in data["images"]:
        rles = [ann_to_rle(a["segmentation"], im["height"], im["width"])
                for a in data["annotations"] if a["image_id"] == im["id"]]
        yield read_image(os.path.join(FIXTURE_IMAGES, im["file_name"])), [r for r in rles if r is not None]


def test_hole_mask_dilated_per_group_equals_the_whole_image_dilation():
    """Real masks, overlapping, touching and far apart: dilating each group of nearby masks in its own
    box gives the dilation of the whole union, pixel for pixel."""
    for image, rles in _fixture_images():
        union = np.ascontiguousarray(mask_utils.decode(mask_utils.merge(rles, intersect=False)))
        r = bg.dilation_radius(rles)
        expected = cv2.dilate(union, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        hole = hole_mask(rles, image.shape)
        assert hole.flags.c_contiguous and hole.dtype == np.uint8
        assert np.array_equal(hole, expected)


def test_dilate_disc_is_opencvs_ellipse_dilation_byte_for_byte():
    """The dilation in strips (from DISC_STRIPS_FROM px on) against cv2.dilate with the ellipse itself:
    every radius a fill uses and more, on real unions (cut by the frame) and on scattered pixels."""
    rng = np.random.default_rng(0)
    masks = [np.ascontiguousarray(mask_utils.decode(mask_utils.merge(rles, intersect=False)))
             for _, rles in _fixture_images()]
    masks += [(rng.random((h, w)) < p).astype(np.uint8) for h, w, p in ((1, 90, 0.05), (70, 1, 0.05), (61, 83, 0.01),
                                                                        (40, 40, 0.0), (33, 47, 0.9))]
    assert max(bg.HOLE_DILATE_WIDE) >= bg.DISC_STRIPS_FROM  # the strips are what the texture fill's holes use
    for r in range(0, 31):
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        for m in masks:
            assert np.array_equal(bg.dilate_disc(m, r), cv2.dilate(m, kernel)), (r, m.shape)
    for image, rles in _fixture_images():  # the texture fill's wider holes, group by group
        union = np.ascontiguousarray(mask_utils.decode(mask_utils.merge(rles, intersect=False)))
        r = bg.dilation_radius(rles, "patchmatch")
        expected = cv2.dilate(union, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        assert np.array_equal(hole_mask(rles, image.shape, "patchmatch"), expected)


def _squares(shape, *corners, size=30):
    hole = np.zeros(shape[:2], np.uint8)
    for x, y in corners:
        hole[y:y + size, x:x + size] = 1
    return hole


def test_holes_far_apart_are_each_filled_on_their_own_and_nothing_else_changes():
    image, _ = next(_fixture_images())  # 640 x 425
    a, b = _squares(image.shape, (40, 50)), _squares(image.shape, (560, 370), size=40)  # b touches the bottom edge
    hole = a | b
    out = inpaint_holes(image, hole)
    assert np.array_equal(out, inpaint_holes(image, hole))  # same input, same bytes
    # Each hole's fill is what it gets when filled alone: the box of one does not
    # reach the other, nor does the work done for it depend on the other.
    for own in (a, b):
        near = cv2.dilate(own, np.ones((61, 61), np.uint8)) > 0
        assert np.array_equal(out[near], inpaint_holes(image, own)[near])
    # Beyond the feather, every pixel (those between the holes too) is the input's, byte for byte.
    reach = 2 * bg.FEATHER_REACH + 1
    far = cv2.dilate(hole, np.ones((reach, reach), np.uint8)) == 0
    assert np.array_equal(out[far], image[far])
    changed = np.any(out != image, axis=2)
    assert changed[a > 0].mean() > 0.9 and changed[b > 0].mean() > 0.9  # both filled, the edge one too


def test_nearby_holes_are_filled_without_a_seam_and_the_strip_between_kept():
    """Two objects a few px apart (their boxes overlap once grown, so they are one fill: merging itself
    is held by the _regions test): both gone, no seam, and the known strip between them left as it was
    beyond the feather."""
    image = _gradient(240, 320)
    clean = image.copy()
    a, b = _squares(image.shape, (100, 90), size=40), _squares(image.shape, (170, 100), size=40)  # 30 px apart
    hole = a | b
    image[a > 0] = (20, 230, 20)
    image[b > 0] = (230, 20, 230)
    out = inpaint_holes(image, hole)
    assert np.abs(out[hole > 0].astype(int) - clean[hole > 0]).mean() < 12  # both objects gone
    ring = (cv2.dilate(hole, np.ones((5, 5), np.uint8)) > 0) & (hole == 0)
    assert np.abs(out[ring].astype(int) - clean[ring]).max() <= 20  # no seam at either edge
    between = np.zeros_like(hole)
    between[90:140, 152:158] = 1  # more than the feather's reach from both holes
    assert np.array_equal(out[between > 0], image[between > 0])


def test_regions_merge_boxes_that_overlap_once_grown_until_none_do():
    shape = (200, 300)
    # a and b overlap once grown by 5; their union then overlaps c (which neither overlaps alone); d is apart
    a, b, c, d = (10, 10, 20, 20), (38, 38, 20, 20), (50, 10, 5, 5), (200, 150, 10, 10)
    regions = _regions([d, c, b, a], 5, shape)
    assert regions == [(slice(5, 63), slice(5, 63)), (slice(145, 165), slice(195, 215))]
    assert _regions([(0, 190, 300, 10)], 5, shape) == [(slice(185, 200), slice(0, 300))]  # clipped to the image
