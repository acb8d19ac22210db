"""Property-based tests (hypothesis) of the planner and the mask/box geometry."""

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smplus.coco import ann_to_rle, decode_rle, index_coco, mask_to_rle, patch_to_rle, window_mask
from smplus.histogram import build_histogram
from smplus.plan import FRAME_TOLERANCE, MIN_SIDE, ImagePlan, TransformOptions, clipped_box, plan_dataset
from smplus.render import SUPPORT, alpha_box
from smplus.separate import place, separate

HIST = build_histogram(np.random.default_rng(0).lognormal(2.56, 0.81, 5000), bins=30)


@st.composite
def datasets(draw):
    n_images = draw(st.integers(1, 4))
    images, anns = [], []
    for i in range(n_images):
        W, H = draw(st.integers(20, 800)), draw(st.integers(20, 800))
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": W, "height": H})
        for _ in range(draw(st.integers(0, 5))):
            x, y = draw(st.floats(-50, W)), draw(st.floats(-50, H))
            w, h = draw(st.floats(0, W)), draw(st.floats(0, H))
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": draw(st.sampled_from([1, 2])),
                         "iscrowd": draw(st.sampled_from([0, 0, 0, 1])), "bbox": [x, y, w, h], "area": w * h,
                         "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]}


options = st.builds(TransformOptions, mode=st.sampled_from(["msm", "rsm"]), seed=st.integers(0, 2**31),
                    level=st.sampled_from(["instance", "image"]),
                    psi_p=st.floats(0, 1), categories=st.sampled_from([None, (1,)]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), options)
def test_plan_is_deterministic_and_boxes_are_sane(raw, opts):
    ds = index_coco(raw)
    a = plan_dataset(ds, HIST, opts)
    b = plan_dataset(index_coco(json.loads(json.dumps(raw))), HIST, opts)
    assert [p.to_json() for p in a.images] == [p.to_json() for p in b.images]
    for plan in a.images:
        assert ImagePlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
        resized = plan.background == "resize"
        im, bg = ds.images[plan.image_id], ds.images[plan.background_image_id]
        if resized:  # image level: one scale for the image, inside the scale range (to a pixel)
            assert opts.scale_range[0] * im["width"] - 1 <= plan.width <= opts.scale_range[1] * im["width"] + 1
        else:
            assert (plan.width, plan.height) == (bg["width"], bg["height"])
        for ip in plan.instances:
            x, y, w, h = ip.box
            cx, cy = ip.center
            src = clipped_box(next(a for a in ds.anns_by_image[plan.image_id] if a["id"] == ip.ann_id),
                              im["width"], im["height"])
            cut = (src[0] <= FRAME_TOLERANCE, src[1] <= FRAME_TOLERANCE,
                   src[0] + src[2] >= im["width"] - FRAME_TOLERANCE, src[1] + src[3] >= im["height"] - FRAME_TOLERANCE)
            if resized or not any(cut):
                assert 0 <= cx <= plan.width and 0 <= cy <= plan.height  # centre stays in the image
            else:  # cut by the frame: the cut stays on the same edge of the output frame
                gaps = (x, y, plan.width - x - w, plan.height - y - h)  # box edge to frame edge
                for side, gap in zip(cut, gaps):
                    assert not side or -1e-6 <= gap <= ip.scale * FRAME_TOLERANCE + 1e-6
            if ip.matched or resized:
                assert w >= MIN_SIDE and h >= MIN_SIDE
            if ip.matched and not resized:
                assert HIST.edges[0] - 1e-9 <= ip.size <= HIST.edges[-1] + 1e-9
            if not ip.matched and not resized:
                assert ip.scale == 1.0
        # every non-crowd annotation is either planned or dropped with a reason
        crowd = {x["id"] for x in ds.anns_by_image[plan.image_id] if x["iscrowd"]}
        planned = {ip.ann_id for ip in plan.instances} | {i for i, _ in plan.dropped} | set(plan.kept)
        own = {x["id"] for x in ds.anns_by_image[plan.image_id] if not x["iscrowd"]}
        if plan.background != "none":
            assert planned - crowd == own
        if plan.background in ("inpaint", "new"):
            assert set(plan.crowd) == crowd


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 60), st.integers(1, 60), st.floats(0, 1), st.floats(0, 1))
def test_alpha_box_is_inside_the_patch_and_around_the_mask(w, h, fx, fy):
    alpha = np.zeros((h + 4, w + 4), np.float32)
    alpha[2:2 + h, 2:2 + w] = 1.0
    alpha[2:2 + h, 1] = fx          # a partly covered column on the left
    alpha[1, 2:2 + w] = fy          # and row on top
    box = alpha_box(alpha)
    x, y, bw, bh = box
    assert 0 <= x and 0 <= y and x + bw <= alpha.shape[1] and y + bh <= alpha.shape[0]
    assert bw > 0 and bh > 0
    # sub-pixel extent of the support (pixels at SUPPORT or more, the mask), to half a pixel per edge
    assert abs(bw - (w + (fx >= SUPPORT))) <= 1.0
    assert abs(bh - (h + (fy >= SUPPORT))) <= 1.0


@settings(max_examples=40, deadline=None)
@given(st.integers(6, 120), st.integers(6, 120), st.floats(0.05, 2.0), st.floats(0, 300), st.floats(0, 300))
def test_separated_instance_lands_at_the_planned_box(w, h, scale, cx, cy):
    # a textured object on a textured background of other colours: matting must follow the mask
    rng = np.random.default_rng(w * 1000 + h)
    image = rng.integers(150, 255, (240, 240, 3), dtype=np.uint8)
    mask = np.zeros((240, 240), np.uint8)
    mask[50:50 + h, 60:60 + w] = 1
    image[mask > 0] = rng.integers(0, 90, (int(mask.sum()), 3), dtype=np.uint8)
    p = place(separate(image, mask_to_rle(mask), (60, 50, w, h), scale), scale, (60 + w / 2, 50 + h / 2), (cx, cy))
    assert p is not None and p.alpha.shape == p.color.shape[:2]
    assert np.all((p.alpha >= 0) & (p.alpha <= 1))
    if w * scale >= 3 and h * scale >= 3:
        x, y, bw, bh = alpha_box(p.alpha)
        # to a pixel; when enlarging, the matte's edge is soft over one source pixel (= scale px)
        tol = 1.0 + 0.5 * max(0.0, scale - 1.0)
        assert abs(bw - w * scale) <= tol and abs(bh - h * scale) <= tol
        assert abs(p.x0 + x + bw / 2 - cx) <= 0.75 and abs(p.y0 + y + bh / 2 - cy) <= 0.75


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.data())
def test_patch_rle_equals_encoding_the_whole_image(height, width, data):
    h, w = data.draw(st.integers(1, height)), data.draw(st.integers(1, width))
    y0, x0 = data.draw(st.integers(0, height - h)), data.draw(st.integers(0, width - w))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    patch = (rng.random((h, w)) < data.draw(st.floats(0, 1))).astype(np.uint8)
    full = np.zeros((height, width), np.uint8)
    full[y0:y0 + h, x0:x0 + w] = patch
    assert patch_to_rle(patch, x0, y0, height, width) == mask_to_rle(full)


def test_window_masks_equal_cuts_of_the_whole_mask(coco_raw):
    """Polygons rasterized in a window give exactly the pixels of the full-image mask there."""
    raw = coco_raw
    sizes = {im["id"]: (im["height"], im["width"]) for im in raw["images"]}
    rng = np.random.default_rng(0)
    checked = 0
    for a in raw["annotations"]:
        H, W = sizes[a["image_id"]]
        full = decode_rle(ann_to_rle(a["segmentation"], H, W))
        x, y, w, h = a["bbox"]
        windows = [(max(0, int(x) - 3), max(0, int(y) - 3), min(W, int(x + w) + 4), min(H, int(y + h) + 4))]
        for _ in range(3):  # windows that cut through the object too
            x0, y0 = int(rng.integers(0, W)), int(rng.integers(0, H))
            windows.append((x0, y0, int(rng.integers(x0 + 1, W + 1)), int(rng.integers(y0 + 1, H + 1))))
        for x0, y0, x1, y1 in windows:
            assert np.array_equal(window_mask(a["segmentation"], (x0, y0, x1, y1), H, W), full[y0:y1, x0:x1])
            checked += 1
    assert checked >= 100
