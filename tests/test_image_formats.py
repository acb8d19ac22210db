"""Grayscale, CMYK, RGBA, 16-bit and EXIF-rotated images are read in their
stored pixel order as 8-bit BGR, so annotations stay on their pixels."""

import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from smplus.coco import read_image
from smplus.pipeline import RunOptions, transform
from smplus.plan import TransformOptions

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES

NAME = "000000404484.jpg"


def source_pixels():
    return cv2.imread(os.path.join(FIXTURE_IMAGES, NAME))


def write_gray(path):
    cv2.imwrite(str(path), cv2.cvtColor(source_pixels(), cv2.COLOR_BGR2GRAY))


def write_cmyk(path):
    Image.open(os.path.join(FIXTURE_IMAGES, NAME)).convert("CMYK").save(path, "JPEG", quality=95)


def write_rgba(path):
    bgr = source_pixels()
    cv2.imwrite(str(path), np.dstack([bgr, np.full(bgr.shape[:2], 200, np.uint8)]))


def write_16bit(path):
    cv2.imwrite(str(path), source_pixels().astype(np.uint16) * 257)


def write_exif_rotated(path):
    im = Image.open(os.path.join(FIXTURE_IMAGES, NAME))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW on display
    im.save(path, "JPEG", quality=95, exif=exif.tobytes())


@pytest.mark.parametrize("writer, ext", [(write_gray, ".jpg"), (write_cmyk, ".jpg"), (write_rgba, ".png"),
                                         (write_16bit, ".png"), (write_exif_rotated, ".jpg")],
                         ids=["gray", "cmyk", "rgba", "16bit", "exif"])
def test_formats_transform_and_stay_aligned(tmp_path, writer, ext):
    raw = json.load(open(FIXTURE_ANNOTATIONS))
    im = next(i for i in raw["images"] if i["file_name"] == NAME)
    images = tmp_path / "images"
    images.mkdir()
    name = "img" + ext
    writer(images / name)
    pixels = read_image(str(images / name))
    assert pixels.dtype == np.uint8 and pixels.shape == (im["height"], im["width"], 3)  # stored order, 3 channels
    # same picture as the source (colour conversions aside), not rotated or shifted
    ref = source_pixels().astype(float)
    if writer is write_gray:
        ref = np.repeat(cv2.cvtColor(source_pixels(), cv2.COLOR_BGR2GRAY)[..., None], 3, axis=2).astype(float)
    assert np.abs(pixels.astype(float) - ref).mean() < 12

    anns = [a for a in raw["annotations"] if a["image_id"] == im["id"]]
    src = tmp_path / "ann.json"
    src.write_text(json.dumps({**raw, "images": [{**im, "file_name": name}], "annotations": anns}))
    out = tmp_path / "out"
    report = transform(str(src), str(images), str(out), options=TransformOptions(psi_p=1.0),
                       run=RunOptions(progress=False)).report
    assert report["skipped"] == [] and report["counts"]["instances_out"] > 0
    written = cv2.imread(str(out / "images" / name))
    assert written.shape[:2] == (im["height"], im["width"])
    data = json.loads((out / "annotations.json").read_text())
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        assert 0 <= x and x + w <= im["width"] + 1e-6 and 0 <= y and y + h <= im["height"] + 1e-6


def test_truncated_jpeg_is_corrupt_not_half_an_image(tmp_path):
    from smplus.errors import SmplusError

    path = tmp_path / "cut.jpg"
    path.write_bytes(open(os.path.join(FIXTURE_IMAGES, NAME), "rb").read()[:20000])
    with pytest.raises(SmplusError, match="image is corrupt or not an image"):
        read_image(str(path))
