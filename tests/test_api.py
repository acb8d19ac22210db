"""The Python API: smplus.SMPlus (per sample), smplus.SMPlusDataset (with a real DataLoader),
the exports of smplus/__init__, bad input, and the examples of docs/python-api.md."""

import json
import os
import re

import cv2
import numpy as np
import pytest

import smplus
from smplus.coco import instance_size
from smplus.histogram import sampling_noise, size_jsd
from smplus.render import decode_mask

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, ROOT, make_ann

PROVENANCE_KEYS = {"background", "background_image_id", "hole_fraction", "fallback", "erased"}
OUTPUT_KEYS = {"id", "image_id", "category_id", "bbox", "area", "segmentation", "iscrowd", "source_ann_id"}


@pytest.fixture(scope="module")
def fixture_items():
    with open(FIXTURE_ANNOTATIONS) as f:
        raw = json.load(f)
    items = []
    for im in raw["images"]:
        anns = [a for a in raw["annotations"] if a["image_id"] == im["id"]]
        items.append((cv2.imread(os.path.join(FIXTURE_IMAGES, im["file_name"])), anns))
    return items


def mask_box(mask):
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def assert_boxes_equal_masks(image_shape, annotations):
    H, W = image_shape[:2]
    for a in annotations:
        mask = decode_mask(a, H, W)
        assert mask is not None, a["source_ann_id"]
        x0, y0, x1, y1 = mask_box(mask)
        x, y, w, h = a["bbox"]
        assert abs(x - x0) <= 1 and abs(y - y0) <= 1 and abs(x + w - x1) <= 1 and abs(y + h - y1) <= 1, (a["bbox"], (x0, y0, x1, y1))


# ---------------------------------------------------------------- SMPlus

@pytest.mark.slow
@pytest.mark.parametrize("mode", ["rsm", "msm"])
def test_per_sample_boxes_equal_masks_and_provenance_is_set(fixture_items, mode):
    sm = smplus.SMPlus(mode=mode, source=FIXTURE_ANNOTATIONS, seed=0)
    backgrounds = set()
    for k, (image, anns) in enumerate(fixture_items):
        s = sm(image, anns, background=fixture_items[(k + 1) % len(fixture_items)])
        assert s.image.dtype == np.uint8 and s.image.ndim == 3 and s.image.shape[2] == 3
        assert set(s.provenance) == PROVENANCE_KEYS
        backgrounds.add(s.provenance["background"])
        assert s.annotations, "every fixture image keeps instances"
        for a in s.annotations:
            assert set(a) - {"from_background", "unscaled"} == OUTPUT_KEYS
            assert a["image_id"] == anns[0]["image_id"]
        assert [a["id"] for a in s.annotations] == list(range(1, len(s.annotations) + 1))
        assert_boxes_equal_masks(s.image.shape, s.annotations)
        if s.provenance["background"] == "new":
            assert s.provenance["background_image_id"] != anns[0]["image_id"]
            assert s.image.shape == fixture_items[(k + 1) % len(fixture_items)][0].shape
    assert backgrounds >= {"inpaint", "new"}  # PSI drew both over the six images


@pytest.mark.slow
@pytest.mark.parametrize("mode,bound", [("msm", 1.0), ("rsm", 3.0)])
def test_per_sample_sizes_follow_the_target(fixture_items, mode, bound):
    """Over 18 calls (~210 instances), the rendered sizes' JSD to a 20-bin target: MSM+ within the
    sampling noise of that many draws, RSM+ (which adds its own draws) within 3x; both a fifth of the source's."""
    sm = smplus.SMPlus(mode=mode, source=FIXTURE_ANNOTATIONS, seed=0, bins=20)
    after, before = [], []
    for _ in range(3):
        for k, (image, anns) in enumerate(fixture_items):
            s = sm(image, anns, background=fixture_items[(k + 1) % len(fixture_items)])
            after += [instance_size(*a["bbox"][2:]) for a in s.annotations if not a.get("iscrowd")]
            before += [instance_size(*a["bbox"][2:]) for a in anns if not a.get("iscrowd")]
    assert len(after) > 150
    jsd = size_jsd(after, sm.hist)
    assert jsd < bound * sampling_noise(sm.hist, len(after))
    assert jsd < size_jsd(before, sm.hist) / 5


def test_same_rng_same_sample_and_rgb_is_bgr_reversed(fixture_items):
    image, anns = fixture_items[0]
    bg = fixture_items[1]
    sm = smplus.SMPlus(mode="rsm")
    a, b = sm(image, anns, bg, rng=7), sm(image, anns, bg, rng=7)
    assert np.array_equal(a.image, b.image) and a.annotations == b.annotations
    c = sm(image, anns, bg, rng=8)
    assert not (c.image.shape == a.image.shape and np.array_equal(c.image, a.image))
    rgb = smplus.SMPlus(mode="rsm", channels="rgb")(image[..., ::-1].copy(), anns, (bg[0][..., ::-1].copy(), bg[1]), rng=7)
    assert rgb.annotations == a.annotations
    # same plan, same instances; the fill's texture reads a grey image, which weighs channels by order
    assert np.abs(rgb.image[..., ::-1].astype(int) - a.image).mean() < 1.0


def test_no_background_means_inpaint_whatever_psi_draws(fixture_items):
    image, anns = fixture_items[1]
    sm = smplus.SMPlus(mode="rsm", psi_p=0.0)  # PSI would always take a new background
    for seed in range(3):
        s = sm(image, anns, rng=seed)
        assert s.provenance["background"] in ("inpaint", "copy")
        assert s.image.shape == image.shape


def test_annotations_without_ids_and_an_image_without_annotations():
    image = np.full((60, 80, 3), 120, np.uint8)
    image[20:40, 30:50] = 30
    ann = make_ann(id=None, image_id=5, bbox=[30.0, 20.0, 20.0, 20.0], segmentation=[[30, 20, 50, 20, 50, 40, 30, 40]])
    del ann["id"]
    s = smplus.SMPlus(mode="rsm", target=[6.0] * 20 + [8.0] * 20, bins=4)(image, [ann], rng=0)
    assert len(s.annotations) == 1 and s.annotations[0]["image_id"] == 5
    assert 5.0 <= instance_size(*s.annotations[0]["bbox"][2:]) <= 8.2
    empty = smplus.SMPlus(mode="rsm")(image, [], rng=0)
    assert empty.provenance["background"] == "copy" and empty.annotations == [] and np.array_equal(empty.image, image)


# ---------------------------------------------------------------- bad input: one exception type, the CLI's messages

GOOD_IMAGE = np.zeros((50, 50, 3), np.uint8)


@pytest.mark.parametrize("kwargs,message", [
    ({"mode": "xyz"}, "--mode must be one of msm, rsm, cp, cp+, got 'xyz'"),
    ({"mode": "rsm", "psi_p": 2}, "--psi-p must be in [0, 1], got 2"),
    ({"mode": "rsm", "max_hole": 0}, "--max-hole must be a fraction in (0, 1], got 0"),
    ({"mode": "rsm", "colour": 1}, "unknown option 'colour'"),
    ({"mode": "rsm", "level": "image"}, "offline only"),
    ({"mode": "rsm", "channels": "bgra"}, "channels must be one of bgr, rgb"),
    ({"mode": "rsm", "categories": ["person"]}, "names need a COCO source"),
    ({"mode": "msm"}, "give source="),
    ({"mode": "rsm", "bins": 2}, "--bins"),
    ({"mode": "rsm", "target": "/nonexistent/target.json"}, "/nonexistent/target.json"),
    ({"source": FIXTURE_ANNOTATIONS, "categories": ["unicorn"]}, "--categories: unknown category 'unicorn'"),
])
def test_bad_options_raise_smplus_error(kwargs, message):
    with pytest.raises(smplus.SmplusError) as e:
        smplus.SMPlus(**kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("image,anns,background,message", [
    ([[0]], [], None, "image must be an HxWx3 uint8 array, got list"),
    (np.zeros((50, 50), np.uint8), [], None, "image must be an HxWx3 uint8 array, got uint8 array of shape (50, 50)"),
    (np.zeros((50, 50, 3), np.float32), [], None, "got float32 array"),
    (GOOD_IMAGE, {"id": 1}, None, "annotations must be a list of COCO annotation dicts"),
    (GOOD_IMAGE, [make_ann(iscrowd="1")], None, "iscrowd must be the number 0 or 1"),
    (GOOD_IMAGE, [make_ann(), make_ann()], None, "duplicate annotation id 1"),
    (GOOD_IMAGE, [make_ann(), make_ann(id=2, image_id=9)], None, "belong to 2 images"),
    (GOOD_IMAGE, [make_ann(category_id=None)], None, "unknown category_id None"),
    (GOOD_IMAGE, [make_ann()], GOOD_IMAGE, "background must be (image, annotations) or None"),
    (GOOD_IMAGE, [make_ann()], (np.zeros((5, 5, 4), np.uint8), []), "background image must be an HxWx3 uint8 array"),
])
def test_bad_samples_raise_smplus_error(image, anns, background, message):
    with pytest.raises(smplus.SmplusError) as e:
        smplus.SMPlus(mode="rsm")(image, anns, background)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_dataset_input(tmp_path):
    with pytest.raises(smplus.SmplusError, match="images folder not found"):
        smplus.SMPlusDataset(FIXTURE_ANNOTATIONS, str(tmp_path / "nowhere"))
    with pytest.raises(smplus.SmplusError, match="seed must be a non-negative integer"):
        smplus.SMPlusDataset(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, seed=-1)
    with pytest.raises(smplus.SmplusError, match="source annotations"):
        smplus.SMPlusDataset(str(tmp_path / "missing.json"), FIXTURE_IMAGES)
    ds = smplus.SMPlusDataset(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES)
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(smplus.SmplusError, match="epoch must be a non-negative integer"):
        ds.set_epoch(-1)


# ---------------------------------------------------------------- SMPlusDataset + DataLoader

def _epoch(ds, workers, epoch):
    from torch.utils.data import DataLoader

    ds.set_epoch(epoch)
    extra = {"timeout": 120} if workers else {}  # a hung worker fails the test, never blocks it
    loader = DataLoader(ds, batch_size=2, num_workers=workers, collate_fn=smplus.collate_fn, **extra)
    return [sample for images, targets in loader for sample in zip(images, targets)]


def _same(a, b):
    return all(x[0].shape == y[0].shape and np.array_equal(x[0], y[0])
               and all(np.array_equal(x[1][k], y[1][k]) for k in ("boxes", "labels", "masks", "image_id"))
               for x, y in zip(a, b)) and len(a) == len(b)


@pytest.mark.slow
def test_dataloader_same_seed_and_epoch_same_samples_whatever_num_workers():
    import torch  # noqa: F401  (the test extra installs it: these tests never skip)
    ds = smplus.SMPlusDataset(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, seed=3, mode="rsm")  # RSM+: new sizes every epoch
    serial, parallel, other = _epoch(ds, 0, 0), _epoch(ds, 2, 0), _epoch(ds, 0, 1)
    assert len(serial) == len(ds) == 6
    assert [int(t["image_id"]) for _, t in serial] == ds.ids  # every image, in order
    assert _same(serial, parallel)
    assert not _same(serial, other)
    changed = sum(a[0].shape != b[0].shape or not np.array_equal(a[0], b[0]) for a, b in zip(serial, other))
    assert changed >= len(ds) // 2  # a new draw of sizes and backgrounds for most images
    for image, t in serial:
        n = len(t["labels"])
        assert image.dtype == np.uint8 and image.shape[2] == 3
        assert t["boxes"].dtype == np.float32 and t["boxes"].shape == (n, 4)
        assert t["labels"].dtype == np.int64 and t["masks"].dtype == np.uint8 and t["masks"].shape == (n, *image.shape[:2])
        assert np.all(t["boxes"][:, 2:] > t["boxes"][:, :2])
        for box, mask in zip(t["boxes"], t["masks"]):  # XYXY boxes equal the masks within 1 px
            assert np.abs(np.array(mask_box(mask)) - box).max() <= 1


def test_dataset_tensors_rgb_and_sample():
    import torch  # the test extra installs it: these tests never skip
    ds = smplus.SMPlusDataset(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, seed=1, as_tensors=True)
    bgr = smplus.SMPlusDataset(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, seed=1, channels="bgr")
    image, target = ds[2]
    assert isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.shape[0] == 3
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    b_image, b_target = bgr[2]
    assert np.array_equal(image.numpy().transpose(1, 2, 0), b_image[..., ::-1])
    assert np.array_equal(target["boxes"].numpy(), b_target["boxes"])
    s = bgr.sample(2)
    assert set(s.provenance) == PROVENANCE_KEYS and len(s.annotations) == len(b_target["labels"])


# ---------------------------------------------------------------- exports and docs

def test_public_exports():
    from smplus.pipeline import merge, transform

    assert smplus.transform is transform and smplus.merge is merge
    for name in ("SMPlus", "SMPlusDataset", "Sample", "collate_fn", "load_target", "TransformOptions", "RunOptions",
                 "SmplusError", "UsageError", "SizeHistogram"):
        assert name in dir(smplus) and getattr(smplus, name) is not None
    with pytest.raises(AttributeError):
        _ = smplus.nothing_here


def _doc_examples():
    """The Python examples of docs/python-api.md, then those of the README's "Python API" section."""
    with open(os.path.join(ROOT, "docs", "python-api.md")) as f:
        examples = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    with open(os.path.join(ROOT, "README.md")) as f:
        section = f.read().split("## Python API\n", 1)[1].split("\n## ", 1)[0]
    return examples + re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.mark.slow
def test_docs_python_examples_run(tmp_path, monkeypatch):
    examples = _doc_examples()
    assert len(examples) >= 4
    monkeypatch.chdir(tmp_path)
    for k, code in enumerate(examples):
        exec(compile(code, f"docs/python-api.md example {k + 1}", "exec"), {"__name__": "__docs__"})
