"""--fill: the texture fill (PatchMatch) against Telea on holes with known truth, its determinism,
`--fill telea` unchanged, and the option's validation."""

import hashlib
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

import smplus.background as bg
from smplus.background import hole_mask, inpaint_holes
from smplus.coco import ann_to_rle, mask_to_rle, read_image
from smplus.errors import UsageError
from smplus.plan import TransformOptions
from smplus.render import fill

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, ROOT


def _fixture():
    with open(FIXTURE_ANNOTATIONS) as f:
        data = json.load(f)
    out = []
    for im in data["images"]:
        rles = [ann_to_rle(a["segmentation"], im["height"], im["width"])
                for a in data["annotations"] if a["image_id"] == im["id"]]
        out.append((im["file_name"], read_image(os.path.join(FIXTURE_IMAGES, im["file_name"])),
                    [r for r in rles if r is not None]))
    return out


def _scores(image, hole, filled):
    """PSNR in the hole (dB) and texture ratio: mean |Laplacian| of grey in the hole / in a 6 px ring."""
    h = hole.astype(bool)
    mse = float(np.mean((filled[h].astype(np.float64) - image[h]) ** 2))
    lap = np.abs(cv2.Laplacian(cv2.cvtColor(filled, cv2.COLOR_BGR2GRAY).astype(np.float32), cv2.CV_32F))
    ring = (cv2.dilate(hole, np.ones((13, 13), np.uint8)) > 0) & ~h
    return 10 * np.log10(255.0 ** 2 / mse), float(lap[h].mean() / lap[ring].mean())


def _punched():
    """Each fixture image with a hole shaped like the instances of the next one (known truth)."""
    images = _fixture()
    for k, (_, image, _) in enumerate(images):
        _, other, rles = images[(k + 1) % len(images)]
        hole = cv2.resize(hole_mask(rles, other.shape), image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        if 0 < hole.mean() <= 0.5:
            yield image, hole


def test_texture_fill_keeps_the_texture_telea_smooths_at_no_lower_psnr():
    """Holes with known truth: PatchMatch's fill has the texture of its surroundings (ratio >= 0.8),
    Telea's is a smear (ratio < 0.3), and PatchMatch's PSNR in the hole is, over the holes, no lower."""
    rows = []
    for image, hole in _punched():
        pm, telea = _scores(image, hole, inpaint_holes(image, hole, fill="patchmatch")), \
            _scores(image, hole, inpaint_holes(image, hole, fill="telea"))
        rows.append((pm, telea))
    assert len(rows) >= 3
    pm_texture, telea_texture = (np.median([r[i][1] for r in rows]) for i in (0, 1))
    assert pm_texture >= 0.8 and telea_texture < 0.3, (pm_texture, telea_texture)
    assert np.median([r[0][0] for r in rows]) >= np.median([r[1][0] for r in rows]) - 0.25, rows


def test_texture_fill_changes_only_the_hole_and_removes_the_object():
    image = read_image(os.path.join(FIXTURE_IMAGES, _fixture()[0][0]))
    clean = image.copy()
    hole = np.zeros(image.shape[:2], np.uint8)
    hole[100:150, 200:260] = 1
    image[105:145, 205:255] = (20, 230, 20)  # an object of a colour found nowhere else
    out = inpaint_holes(image, hole, fill="patchmatch")
    assert np.array_equal(out[hole == 0], image[hole == 0])  # outside the hole, byte for byte
    green = (np.abs(out.astype(int) - (20, 230, 20)).sum(axis=2) < 60) & (hole > 0)
    assert not green.any()
    assert np.abs(out[hole > 0].astype(int) - clean[hole > 0]).mean() < 60


def test_texture_fill_is_deterministic_in_any_order_and_any_process():
    (_, image, rles), (_, other, other_rles) = _fixture()[:2]
    hole = hole_mask(rles, image.shape, "patchmatch")
    first = inpaint_holes(image, hole, fill="patchmatch")
    inpaint_holes(other, hole_mask(other_rles, other.shape, "patchmatch"), fill="patchmatch")  # moves any random state
    assert np.array_equal(first, inpaint_holes(image, hole, fill="patchmatch"))
    code = ("import hashlib, json, sys; from smplus.background import hole_mask, inpaint_holes; "
            "from smplus.coco import read_image, ann_to_rle; import numpy as np; "
            f"im = read_image({os.path.join(FIXTURE_IMAGES, _fixture()[0][0])!r}); "
            "rles = json.loads(sys.stdin.read()); "
            "print(hashlib.sha256(inpaint_holes(im, hole_mask(rles, im.shape, 'patchmatch'), fill='patchmatch')"
            ".tobytes()).hexdigest())")
    serial = [{"size": r["size"], "counts": r["counts"].decode() if isinstance(r["counts"], bytes) else r["counts"]}
              for r in rles]
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(serial), capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.strip()
    assert out == hashlib.sha256(first.tobytes()).hexdigest()


# sha256 of render.fill(image, rles, method="telea") on the fixture images, computed with the code
# before --fill existed: `--fill telea` is the old fill, byte for byte.
TELEA_BEFORE = {
    "000000184324.jpg": "87c5a66e7616af2978c6f4d30703c0a663ee8d01ca489be9da8c63b9aee97bd9",
    "000000343937.jpg": "009f87d70e34c679b8dcde5bf81bd52e1b2ce8c2dba6de9b62e798f21a2e04ec",
    "000000404484.jpg": "986fcef2ba48436e539679bb13de7527c1383cdcb26e2cf8a1e7d171dc1a802d",
    "000000435206.jpg": "413771ed8bd07632f9e8d0ceaf33237f741fa6b3952de2feb30fd46a7ab2dc56",
    "000000555009.jpg": "7e554be97d31ff614287bc765ec8286ebc7617d5035a32c2a068ebd528c2571d",
    "000000566282.jpg": "35361bedb64b3888831db3844767f6d7fabc6e558f52572ccfe04c84a74f9529",
}


def test_fill_telea_is_the_fill_of_before():
    got = {name: hashlib.sha256(fill(image, rles, method="telea")[0].tobytes()).hexdigest()
           for name, image, rles in _fixture() if rles}
    assert got == TELEA_BEFORE


def test_texture_fill_hole_grows_faster_with_the_object():
    """No remnants: the texture fill's hole reaches further beyond a large object's polygon than Telea's."""
    big = np.zeros((400, 400), np.uint8)
    big[50:350, 50:350] = 1
    rle = [mask_to_rle(big)]
    assert bg.dilation_radius(rle, "telea") == 9
    assert bg.dilation_radius(rle, "patchmatch") == 24
    assert hole_mask(rle, big.shape, "patchmatch").sum() > hole_mask(rle, big.shape).sum()


@pytest.mark.parametrize("value", ["navier", "", None, "PATCHMATCH"])
def test_fill_option_is_validated(value):
    with pytest.raises(UsageError, match=r"^--fill must be one of patchmatch, telea, got "):
        TransformOptions(fill=value)
    assert TransformOptions().fill == "patchmatch" and TransformOptions(fill="telea").fill == "telea"


def test_texture_fill_with_no_known_pixel_is_none_like_telea():
    image = read_image(os.path.join(FIXTURE_IMAGES, _fixture()[0][0]))
    assert inpaint_holes(image, np.ones(image.shape[:2], np.uint8), fill="patchmatch") is None
    with pytest.raises(Exception, match="no_known_pixel"):
        fill(image, [mask_to_rle(np.ones(image.shape[:2], np.uint8))], method="patchmatch")


def test_the_paper_rows_pin_the_paper_fill():
    from smplus.cli import transform
    from smplus.config import read_config, shipped_configs

    names = shipped_configs()
    assert "msm+" in names and "rsm+_wo_psi" in names
    options = {p.name: p for p in transform.params}  # the CLI's own options, as --config reads them
    for name in names:
        assert read_config(name, options)["fill"] == "telea", name


def test_texture_fill_keeps_full_resolution_texture_on_a_fine_random_texture():
    """A hole in a texture of 1-px detail (a random 13 x 11 tile, repeated): the fill copies full-resolution
    pixels, so its detail is that of the surroundings (a fill at reduced resolution, or Telea, smooths it away)."""
    rng = np.random.default_rng(3)
    tile = rng.integers(0, 256, (11, 13, 3), dtype=np.uint8)
    image = np.ascontiguousarray(np.tile(tile, (20, 20, 1)))  # 220 x 260
    hole = np.zeros(image.shape[:2], np.uint8)
    cv2.ellipse(hole, (130, 110), (45, 30), 20, 0, 360, 1, -1)
    filled = inpaint_holes(image, hole, fill="patchmatch")
    assert np.array_equal(filled[hole == 0], image[hole == 0])
    assert 0.8 < _scores(image, hole, filled)[1] < 1.25
    assert _scores(image, hole, inpaint_holes(image, hole, fill="telea"))[1] < 0.3


def test_texture_fill_of_a_box_depends_on_its_pixels_only():
    """Each group of holes is filled in its own box: another hole far away leaves this box's fill as it was."""
    image = _fixture()[0][1]
    one = np.zeros(image.shape[:2], np.uint8)
    one[60:100, 40:90] = 1
    two = one.copy()
    two[-90:-50, -100:-40] = 1
    a, b = inpaint_holes(image, one, fill="patchmatch"), inpaint_holes(image, two, fill="patchmatch")
    assert np.array_equal(a[:200, :200], b[:200, :200])
    assert not np.array_equal(b[-90:-50, -100:-40], image[-90:-50, -100:-40])


def test_texture_fill_falls_back_to_telea_where_no_whole_patch_is_known():
    """A box whose known pixels hold no whole 5x5 patch (a grid of holes 2 px apart), and one with fewer
    known pixels than a patch: Telea's fill for that box, no failure."""
    from smplus.patchmatch import complete

    image = _fixture()[0][1][:120, :120].copy()
    grid = np.ones((120, 120), np.uint8)
    grid[::3, ::3] = 0  # known pixels 3 px apart: none has a known 5x5 neighbourhood
    assert complete(image, grid) is None
    telea = cv2.inpaint(image, grid, bg.INPAINT_RADIUS, cv2.INPAINT_TELEA)
    assert np.array_equal(inpaint_holes(image, grid, fill="patchmatch"), telea)
    few = np.ones((120, 120), np.uint8)
    few[50:53, 50:54] = 0  # 12 known pixels
    assert np.array_equal(inpaint_holes(image, few, fill="patchmatch"),
                          cv2.inpaint(image, few, bg.INPAINT_RADIUS, cv2.INPAINT_TELEA))


def test_texture_fill_at_the_image_edge_changes_only_the_hole():
    """Holes touching the frame (patches cut by it) are filled, and only they change."""
    image = _fixture()[1][1].copy()
    hole = np.zeros(image.shape[:2], np.uint8)
    hole[:30, :50] = 1
    hole[-25:, 100:180] = 1
    image[hole > 0] = (20, 230, 20)  # objects of a colour found nowhere else, cut by the frame
    out = inpaint_holes(image, hole, fill="patchmatch")
    assert np.array_equal(out[hole == 0], image[hole == 0])
    assert not ((np.abs(out.astype(int) - (20, 230, 20)).sum(axis=2) < 60) & (hole > 0)).any()


def test_texture_fill_searches_only_where_the_level_is_small(monkeypatch):
    """Cost bound for large holes (a 300 x 400 px person): random search runs only at levels with at most
    SEARCH_MAX_PX target pixels; above that, propagation alone, so the cost per hole pixel is bounded.
    At full resolution no pass runs at all: the upsampled NNF votes."""
    import smplus.patchmatch as pm

    calls, passes = [], {}
    search = pm._search

    def recorded(img, valid, bias, ty, *rest):
        calls.append((ty.size, rest[-2], img.shape[:2]))
        passes.setdefault(img.shape[:2], set()).add(rest[-3])
        return search(img, valid, bias, ty, *rest)

    monkeypatch.setattr(pm, "_search", recorded)
    image = cv2.resize(_fixture()[0][1], (640, 560))
    hole = np.zeros(image.shape[:2], np.uint8)
    cv2.ellipse(hole, (320, 280), (150, 200), 0, 0, 360, 1, -1)
    out = inpaint_holes(image, hole, fill="patchmatch")
    assert out is not None and np.array_equal(out[hole == 0], image[hole == 0])
    assert calls and all(n <= pm.SEARCH_MAX_PX for n, searched, _ in calls if searched)
    full = max(shape for _, _, shape in calls)  # the box at full resolution: no search, no pass
    assert all(not searched for _, searched, shape in calls if shape == full)
    assert passes[full] == {0} and all(p == {pm.PASSES} for shape, p in passes.items() if shape != full)
    assert len({shape for _, _, shape in calls}) >= 3  # coarse to fine
