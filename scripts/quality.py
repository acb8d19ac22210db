"""What a detector would learn from an SM+ output, measured on coco_tiny (issue 9).

    python scripts/quality.py [--data DIR] [--target T] [--base COMMIT]

Runs MSM+ (PSI p = 0.4, seed 0) on both splits of coco_tiny with the
tinyperson_like target, with this tree ("after") and with the code of
--base (default: d33f9ac, the commit before issue 9; "before"), and prints
one table:

- fills equal to the source: inpainted images whose fill is the source
  blurred (Telea had nothing to fill from) - the removed objects still show;
  also with --background inpaint, where every image is inpainted;
- fragments away from the frame: output instances whose source mask is cut
  by the image frame (at least one output pixel's worth of mask on the edge)
  but which do not come within 1 px of the same edge of the output;
- box vs RLE: output annotations whose mask's box is > 1 px from bbox at some edge;
- unlabelled scale-matched instances on new backgrounds, per --background-pool
  (default; clean), and new backgrounds holding a person with
  `--background-pool clean --categories person`; the same measured on the
  pixels (issue 18): a background's object is visible when at least half of
  its mask pixels that no output label covers are unchanged (max |diff| <= 12);
  objects erased from new backgrounds (report.json);
- edges (issue 18): output instances whose source box is within 8 px of an
  edge, and those of them not within 1.5 px + r x (source gap) of the same
  edge of the output (r: output size / source size);
- other categories with `--categories person` on inpainted images: mean
  |diff| inside their source mask, away from the holes and pastes (8 px);
- hole fractions of inpainted images; fallbacks to a new background;
- fills with known truth: holes shaped like the instances of the next image
  punched into each image and inpainted: PSNR in the hole, texture ratio
  (mean |Laplacian| in the hole / in a 6 px ring around it), ms per fill;
- chroma error inside instances of 12 px or less: mean |dCb|, |dCr| between
  the rendered pixels and the written JPEG;
- JSD after rendering (report.json).

With --fills it prints instead one table per fill (--fill telea, patchmatch,
and patchmatch with pypatchmatch's PatchMatch, the reference, if installed),
on both splits (issue 18):
- known-truth PSNR in the hole and texture ratio (hole / 6 px ring) of the
  punched holes (<= 0.5 of the image), the hole made by each fill's own rule
  (hole_mask(..., fill)); patchmatch also with Telea's hole rule, so the PSNR
  cost of its wider hole ("no remnants") shows;
- the smear cue: mean |Laplacian| of grey in a ring one box-size wide around
  each pasted instance of 32 px or less, over the whole image's mean; median
  over the instances on inpainted images of an MSM+ run (seed 0) with that fill;
- ms per inpainted image: render.fill on the holes of those images.
With --fills --seeds S [S ...], only the patchmatch table, once per seed of its
random search: the rows' spread over seeds is the noise a change to the fill
is judged against.

"before" runs this same script on an export of the base commit (`git
archive`), so its numbers are reproducible from the repository alone.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the shared data beside the repository (a checkout) or two levels up (a worktree in wt/)
DATA = next((d for d in (os.path.join(ROOT, "..", "shared", "data"), os.path.join(ROOT, "..", "..", "shared", "data"))
             if os.path.isdir(d)), os.path.join(ROOT, "..", "shared", "data"))
BASE = "d33f9ac"
SPLITS = ("val2017", "train2017")
SMALL = 12.0  # px: "instances of 12 px or less"


def split_paths(data, split):
    """coco_tiny's `split`: (its annotations file, its images folder)."""
    return os.path.join(data, "coco_tiny", "annotations", f"instances_{split}.json"), os.path.join(data, "coco_tiny", split)


def _import_smplus(code):
    sys.path.insert(0, code)
    import smplus  # noqa: F401


# ---------------------------------------------------------------- collect (runs inside one code tree)

def collect(data, target, splits):
    import functools

    from smplus import pipeline
    from smplus.coco import load_coco
    from smplus.histogram import load_target
    from smplus.plan import TransformOptions, plan_dataset

    new_code = "background_pool" in TransformOptions.__dataclass_fields__
    try:  # where render_task lives (pipeline.py before the split into task.py)
        from smplus import task as renderer
    except ImportError:
        renderer = pipeline
    rendered = {}
    real_encode = renderer.encode_image

    def keep_rendered(image, file_name, *args):  # the pixels before JPEG, for the chroma error
        rendered[file_name] = image.copy()
        return real_encode(image, file_name, *args)

    renderer.encode_image = keep_rendered
    target_histogram = functools.cache(lambda: load_target(target))

    def run_plan(ds, opts):  # old code only (no provenance in its output); the target loaded once, if at all
        return plan_dataset(ds, target_histogram(), opts)

    out = {}
    for split in splits:
        source, images = split_paths(data, split)
        ds = load_coco(source)
        res = {}
        runs = [("all", {}, None), ("inpaint", {"background": "inpaint"}, None)]
        if new_code:
            runs += [("clean", {"background_pool": "clean"}, None),
                     ("clean_person", {"background_pool": "clean"}, ["person"])]
        with tempfile.TemporaryDirectory() as tmp:
            for name, extra, cats in runs:
                rendered.clear()
                o = os.path.join(tmp, name)
                opts = TransformOptions(mode="msm", seed=0, **extra)
                report = pipeline.transform(source, images, o, target=target, options=opts, categories=cats,
                                            run=pipeline.RunOptions(progress=False)).report
                with open(os.path.join(o, "annotations.json")) as f:
                    result = json.load(f)
                if cats is None:
                    kinds = _kinds(result, o, functools.partial(run_plan, ds, opts))
                    res[name] = {"jsd_after": report["jsd"]["after"],
                                 **_unlabelled(ds, kinds, None),
                                 "visible_unlabelled": _visible_unlabelled(ds, result, kinds, images, o, None),
                                 "background_erased": report["counts"].get("background_objects_erased", 0),
                                 "edges": _edges(ds, result, kinds),
                                 "report_provenance": report.get("provenance")}
                    if name in ("all", "inpaint"):
                        res[name].update(_fills_and_frames(ds, result, kinds, images, o, rendered))
                else:  # only this tree's code runs these, and it writes provenance
                    kinds = _kinds(result, o, None)
                    res[name] = {**_unlabelled(ds, kinds, {1}),
                                 "visible_unlabelled": _visible_unlabelled(ds, result, kinds, images, o, {1}),
                                 "others": _others_left_alone(ds, result, kinds, images, o, {1}),
                                 "dropped": report["counts"]["dropped"]}
        res["punched"] = _punched_fills(ds, images)
        out[split] = res
    return out


def _kinds(result, out_dir, plan):
    """image id -> (background kind, background image id), from provenance or (old code) the run's
    plan, which `plan()` makes."""
    if all("smplus" in im for im in result["images"]):
        return {im["id"]: (im["smplus"]["background"], im["smplus"]["background_image_id"])
                for im in result["images"]}
    kinds = {}
    for p in plan().images:
        with open(os.path.join(out_dir, ".smplus", "parts", f"{p.image_id}.json")) as f:
            kind = json.load(f)["background"]
        kinds[p.image_id] = (kind, p.background_image_id)
    return kinds


def _unlabelled(ds, kinds, categories):
    """The new backgrounds' own (scale-matched) instances, visible without a label."""
    from smplus.coco import instance_size

    n = large = images_with = 0
    for kind, bg_id in kinds.values():
        if kind != "new":
            continue
        own = [a for a in ds.anns_by_image[bg_id] if not a.get("iscrowd")
               and (categories is None or a["category_id"] in categories)]
        n += len(own)
        large += sum(instance_size(*a["bbox"][2:]) > 32 for a in own)
        images_with += bool(own)
    return {"unlabelled": n, "unlabelled_over_32": large, "new_backgrounds_with_any": images_with,
            "new_backgrounds": sum(k == "new" for k, _ in kinds.values())}


def _out_masks(result):
    """image id -> its output labels' union mask (non-background labels), decoded."""
    from smplus.coco import ann_to_rle, decode_rle

    sizes = {im["id"]: (im["height"], im["width"]) for im in result["images"]}
    union = {}
    for a in result["annotations"]:
        h, w = sizes[a["image_id"]]
        m = decode_rle(ann_to_rle(a["segmentation"], h, w)).astype(bool)
        union[a["image_id"]] = union[a["image_id"]] | m if a["image_id"] in union else m
    return union


def _visible_unlabelled(ds, result, kinds, images_dir, out_dir, categories):
    """Objects of the matched categories on new backgrounds that stay visible without a label:
    at least half of their mask pixels not covered by an output label unchanged (issue 18)."""
    import numpy as np

    from smplus.coco import ann_to_rle, decode_rle, read_image

    out_images = {im["id"]: im for im in result["images"]}
    labelled = _out_masks(result)
    kept = {(a["image_id"], a["source_ann_id"]) for a in result["annotations"] if a.get("from_background")}
    visible = checked = 0
    for image_id, (kind, bg_id) in kinds.items():
        if kind != "new":
            continue
        bg, oim = ds.images[bg_id], out_images[image_id]
        own = [a for a in ds.anns_by_image[bg_id] if not a.get("iscrowd") and (image_id, a["id"]) not in kept
               and (categories is None or a["category_id"] in categories)]
        if not own:
            continue
        src = read_image(os.path.join(images_dir, bg["file_name"])).astype(np.int16)
        out = read_image(os.path.join(out_dir, "images", oim["file_name"])).astype(np.int16)
        unchanged = np.abs(out - src).max(axis=2) <= 12
        free = ~labelled.get(image_id, np.zeros(unchanged.shape, bool))
        for a in own:
            rle = ann_to_rle(a["segmentation"], bg["height"], bg["width"])
            if rle is None:
                continue
            m = decode_rle(rle).astype(bool) & free
            if m.sum() == 0:
                continue
            checked += 1
            visible += unchanged[m].mean() >= 0.5
    return {"visible": int(visible), "checked": checked}


def _edges(ds, result, kinds, tolerance=8.0):
    """Output instances whose source box is within `tolerance` px of an edge, and those of them
    not within 1.5 px + r x (source gap) of the same output edge (issue 18's criterion)."""
    from smplus.coco import instance_size

    out_images = {im["id"]: im for im in result["images"]}
    src = {a["id"]: a for a in ds.raw["annotations"]}
    checked, misses = 0, []
    for a in result["annotations"]:
        if a.get("from_background") or a.get("iscrowd") or kinds[a["image_id"]][0] not in ("inpaint", "new"):
            continue
        s, im, oim = src[a["source_ann_id"]], ds.images[a["image_id"]], out_images[a["image_id"]]
        x, y, w, h = s["bbox"]
        ox, oy, ow, oh = a["bbox"]
        gaps = (x, y, im["width"] - x - w, im["height"] - y - h)
        out_gaps = (ox, oy, oim["width"] - ox - ow, oim["height"] - oy - oh)
        r = instance_size(ow, oh) / max(instance_size(w, h), 1e-9)
        near = [k for k in range(4) if gaps[k] <= tolerance]
        if not near:
            continue
        checked += 1
        bad = [round(out_gaps[k] - 1.5 - r * max(gaps[k], 0.0), 2) for k in near if out_gaps[k] > 1.5 + r * max(gaps[k], 0.0)]
        if bad:
            misses.append((a["image_id"], a["source_ann_id"], max(bad)))
    return {"checked": checked, "misses": misses}


def _others_left_alone(ds, result, kinds, images_dir, out_dir, categories, fill=None):
    """`--categories` runs: instances of the other categories on inpainted images, mean |diff|
    (written JPEG vs source) inside their source mask, away (8 px) from the holes and pastes.
    The holes are those of the run's `fill` (default: smplus's default fill), by its own rule."""
    import cv2
    import numpy as np

    from smplus.background import hole_mask
    from smplus.coco import ann_to_rle, decode_rle, read_image
    from smplus.plan import TransformOptions

    fill = fill or TransformOptions().fill
    out_images = {im["id"]: im for im in result["images"]}
    diffs = []
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (17, 17))
    for image_id, (kind, _) in kinds.items():
        if kind != "inpaint":
            continue
        im = ds.images[image_id]
        H, W = im["height"], im["width"]
        anns = ds.anns_by_image[image_id]
        holes = [r for r in (ann_to_rle(a["segmentation"], H, W) for a in anns
                             if a.get("iscrowd") or a["category_id"] in categories) if r]
        others = [a for a in anns if not a.get("iscrowd") and a["category_id"] not in categories]
        if not others:
            continue
        near = cv2.dilate(hole_mask(holes, (H, W), fill), kernel) > 0
        pasted = np.zeros((H, W), bool)
        for a in result["annotations"]:
            if a["image_id"] == image_id and a["category_id"] in categories:
                pasted |= decode_rle(ann_to_rle(a["segmentation"], H, W)).astype(bool)
        near |= cv2.dilate(pasted.astype(np.uint8), kernel) > 0
        src = read_image(os.path.join(images_dir, im["file_name"])).astype(np.float32)
        out = read_image(os.path.join(out_dir, "images", out_images[image_id]["file_name"])).astype(np.float32)
        for a in others:
            rle = ann_to_rle(a["segmentation"], H, W)
            if rle is None:
                continue
            m = decode_rle(rle).astype(bool) & ~near
            if m.sum() >= 20:
                diffs.append(float(np.abs(out[m] - src[m]).mean()))
    return diffs


def _fills_and_frames(ds, result, kinds, images_dir, out_dir, rendered):
    import cv2
    import numpy as np
    from rle_box import rle_box_off

    from smplus.background import hole_mask
    from smplus.coco import ann_to_rle, decode_rle, read_image

    src_images = ds.images
    by_image = {}
    for a in result["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    out_images = {im["id"]: im for im in result["images"]}
    blurred_fills = inpainted = 0
    holes = []
    touched = away = 0
    disagree = n_anns = 0
    chroma, chroma_px = [], 0
    for image_id, (kind, _) in kinds.items():
        im, oim = src_images[image_id], out_images[image_id]
        H, W = im["height"], im["width"]
        oh, ow = oim["height"], oim["width"]
        anns = by_image.get(image_id, [])
        out_masks = {}
        for a in anns:
            rle = ann_to_rle(a["segmentation"], oh, ow)
            out_masks[id(a)] = m = decode_rle(rle)
            if a.get("from_background"):
                continue
            n_anns += 1
            disagree += bool(m.any()) and rle_box_off(rle, a["bbox"])
        if kind in ("inpaint", "new"):
            src_anns = {a["id"]: a for a in ds.anns_by_image[image_id]}
            for a in anns:
                if a.get("from_background"):
                    continue
                sm = decode_rle(ann_to_rle(src_anns[a["source_ann_id"]]["segmentation"], H, W))
                ys, xs = np.nonzero(sm)
                if not xs.size:
                    continue
                # cut: at least one output pixel's worth of the mask on a frame edge (a corner
                # touching the frame by a pixel or two is no cut)
                r = (a["bbox"][2] * a["bbox"][3]) ** 0.5 / max(1e-9, (np.ptp(xs) + 1) * (np.ptp(ys) + 1)) ** 0.5
                contact = max(2.0, 1.0 / max(r, 1e-9))
                sides = (sm[:, 0].sum() >= contact, sm[0].sum() >= contact,
                         sm[:, -1].sum() >= contact, sm[-1].sum() >= contact)
                if not any(sides):
                    continue
                touched += 1
                oys, oxs = np.nonzero(out_masks[id(a)])
                reach = (oxs.min() <= 1, oys.min() <= 1, oxs.max() >= ow - 2, oys.max() >= oh - 2)
                away += any(s and not r for s, r in zip(sides, reach))
        if kind == "inpaint":
            inpainted += 1
            rles = [r for r in (ann_to_rle(a["segmentation"], H, W) for a in ds.anns_by_image[image_id]) if r]
            hole = hole_mask(rles, (H, W)).astype(bool)
            holes.append(float(hole.mean()))
            pasted = np.zeros((H, W), np.uint8)
            for m in out_masks.values():
                pasted |= m
            region = hole & (cv2.dilate(pasted, np.ones((5, 5), np.uint8)) == 0)
            if region.sum() > 0.01 * H * W:
                src = read_image(os.path.join(images_dir, im["file_name"])).astype(np.float32)
                out = read_image(os.path.join(out_dir, "images", oim["file_name"])).astype(np.float32)
                blur = cv2.resize(cv2.resize(src, (max(8, W // 4), max(8, H // 4)), interpolation=cv2.INTER_AREA),
                                  (W, H), interpolation=cv2.INTER_LINEAR)
                # Telea with no known pixel returns its (downsampled) input: the fill is the blurred source
                blurred_fills += float(np.abs(out[region] - blur[region]).mean()) < 8.0
        if kind in ("inpaint", "new") and oim["file_name"] in rendered:
            truth = cv2.cvtColor(rendered[oim["file_name"]], cv2.COLOR_BGR2YCrCb).astype(np.float32)
            written = cv2.cvtColor(read_image(os.path.join(out_dir, "images", oim["file_name"])),
                                   cv2.COLOR_BGR2YCrCb).astype(np.float32)
            for a in anns:
                if (a["bbox"][2] * a["bbox"][3]) ** 0.5 <= SMALL:
                    m = out_masks[id(a)].astype(bool)
                    chroma.append(np.abs(truth[m][:, 1:] - written[m][:, 1:]).sum(axis=0))
                    chroma_px += int(m.sum())
    c = np.sum(chroma, axis=0) / max(chroma_px, 1) if chroma else [float("nan")] * 2
    return {"inpainted": inpainted, "blurred_fills": blurred_fills, "holes": holes,
            "cut_instances": touched, "cut_away_from_frame": away,
            "annotations": n_anns, "box_rle_disagree": disagree,
            "chroma_small": [round(float(v), 3) for v in c], "chroma_small_px": chroma_px}


def _punched_holes(ds, images_dir, keep, rule="telea"):
    """(image, hole) per image whose hole passes `keep`: holes shaped like the next image's instances,
    punched into it (the image is decoded only for the holes kept)."""
    import cv2

    from smplus.background import hole_mask
    from smplus.coco import ann_to_rle, read_image

    ids = sorted(ds.images)
    for k, image_id in enumerate(ids):
        im, other = ds.images[image_id], ds.images[ids[(k + 1) % len(ids)]]
        oh, ow = other["height"], other["width"]
        rles = [r for r in (ann_to_rle(a["segmentation"], oh, ow) for a in ds.anns_by_image[other["id"]]
                            if not a.get("iscrowd")) if r]
        if not rles:
            continue
        hole = hole_mask(rles, (oh, ow), *([rule] if rule != "telea" else []))  # the base's takes no rule
        hole = cv2.resize(hole, (im["width"], im["height"]), interpolation=cv2.INTER_NEAREST)
        if hole.any() and keep(hole):
            yield read_image(os.path.join(images_dir, im["file_name"])), hole


def _punched_fills(ds, images_dir):
    """The punched holes inpainted: hole fraction, PSNR in the hole, texture ratio, ms per fill."""
    import cv2
    import numpy as np

    from smplus.background import inpaint_holes

    rows = []
    for image, hole in _punched_holes(ds, images_dir, keep=lambda hole: not hole.all()):
        t = time.perf_counter()
        filled = inpaint_holes(image, hole)
        ms = (time.perf_counter() - t) * 1000
        fraction = float(hole.mean())
        if filled is None:  # no known pixel left: nothing is filled
            rows.append([fraction, None, None, ms])
            continue
        h = hole.astype(bool)
        mse = float(np.mean((filled[h].astype(np.float64) - image[h]) ** 2))
        lap = np.abs(cv2.Laplacian(cv2.cvtColor(filled, cv2.COLOR_BGR2GRAY).astype(np.float32), cv2.CV_32F))
        ring = (cv2.dilate(hole, np.ones((13, 13), np.uint8)) > 0) & ~h
        texture = float(lap[h].mean() / max(lap[ring].mean(), 1e-6))
        rows.append([fraction, 10 * np.log10(255.0 ** 2 / max(mse, 1e-9)), texture, ms])
    return rows


# ---------------------------------------------------------------- table

def _summary(res):
    import numpy as np

    a = res["all"]
    holes = np.asarray(a["holes"]) if a["holes"] else np.zeros(1)
    punched = [r for r in res["punched"] if r[0] <= 0.5]
    ok = [r for r in punched if r[1] is not None]
    prov = a.get("report_provenance") or {}
    clean, person = res.get("clean"), res.get("clean_person")
    na = "n/a"
    return {
        "inpainted images": a["inpainted"],
        "fills equal to the blurred source": a["blurred_fills"],
        "same, --background inpaint (of inpainted images)": f"{res['inpaint']['blurred_fills']} of "
                                                             f"{res['inpaint']['inpainted']}",
        "fallbacks to a new background (by reason)": ", ".join(f"{k} {v}" for k, v in prov.get("fallbacks", {}).items())
        or ("0" if prov else na),
        "hole fraction of inpainted images: median / p90 / max": "{:.2f} / {:.2f} / {:.2f}".format(
            *np.quantile(holes, [0.5, 0.9, 1.0])),
        "source instances cut by the frame, pasted": a["cut_instances"],
        "...of which away from the frame": a["cut_away_from_frame"],
        "annotations whose RLE box is > 1 px from bbox": f"{a['box_rle_disagree']} of {a['annotations']}",
        "matched instances of the new backgrounds' annotations, default pool (> 32 px)":
            f"{a['unlabelled']} ({a['unlabelled_over_32']}) in {a['new_backgrounds']} images",
        "...of which visible without a label (pixels), default pool": _of(a.get("visible_unlabelled")),
        "...erased (report.json), default pool": a.get("background_erased", na),
        "same annotations, pool clean (> 32 px)": na if clean is None else
            f"{clean['unlabelled']} ({clean['unlabelled_over_32']}) in {clean['new_backgrounds']} images",
        "...of which visible without a label (pixels), pool clean": na if clean is None else
            _of(clean.get("visible_unlabelled")),
        "new backgrounds with a person, clean pool, --categories person": na if person is None else
            f"{person['new_backgrounds_with_any']} of {person['new_backgrounds']}",
        "...persons visible without a label (pixels)": na if person is None else _of(person.get("visible_unlabelled")),
        "instances within 8 px of an edge, off it (> 1.5 px + r x gap), default": _of_edges(a.get("edges")),
        "same, --background inpaint": _of_edges(res["inpaint"].get("edges")),
        "--categories person: other categories on inpainted images, mean abs diff away from holes: "
        "median / max (over 4)": na if person is None or "others" not in person else _diffs(person["others"]),
        "--categories person: other categories dropped on new backgrounds": na if person is None else
            person.get("dropped", {}).get("other_category_on_new_background", 0),
        "punched holes <= 0.5: PSNR in hole, dB (median)": f"{np.median([r[1] for r in ok]):.2f}",
        "punched holes <= 0.5: texture ratio (median)": f"{np.median([r[2] for r in ok]):.3f}",
        "punched holes <= 0.5: ms per fill (mean)": f"{np.mean([r[3] for r in punched]):.2f}",
        "chroma error in instances <= 12 px, |dCr|, |dCb|": "{:.2f}, {:.2f}".format(*a["chroma_small"]),
        "JSD after rendering (MSM+)": f"{a['jsd_after']:.4f}",
    }


def _of(v):
    return "n/a" if not v else f"{v['visible']} of {v['checked']}"


def _of_edges(e):
    if not e:
        return "n/a"
    worst = max((m[2] for m in e["misses"]), default=0.0)
    return f"{len(e['misses'])} of {e['checked']}" + (f" (worst by {worst:.2f} px)" if e["misses"] else "")


def _diffs(d):
    import numpy as np

    if not d:
        return "n/a"
    return f"{np.median(d):.2f} / {max(d):.2f} ({sum(x > 4 for x in d)} of {len(d)})"


def fill_cost_ratio(data, base):
    """Time of this tree's fill over the base's, same holes, same process, interleaved (min of 3)."""
    import importlib.util

    _import_smplus(ROOT)
    from smplus.background import inpaint_holes
    from smplus.coco import load_coco

    spec = importlib.util.spec_from_file_location("base_background", os.path.join(base, "smplus", "background.py"))
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    times = {"old": 0.0, "new": 0.0}
    for split in SPLITS:
        source, images = split_paths(data, split)
        ds = load_coco(source)
        for image, hole in _punched_holes(ds, images, keep=lambda hole: hole.mean() <= 0.5):
            for name, fill in (("old", old.inpaint_holes), ("new", inpaint_holes)):
                best = float("inf")
                for _ in range(3):
                    t = time.perf_counter()
                    fill(image, hole)
                    best = min(best, time.perf_counter() - t)
                times[name] += best
    return times["new"] / times["old"]


def _hole_bins(res_by_split):
    import numpy as np

    rows = [r for res in res_by_split.values() for r in res["punched"]]
    edges = [0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0]
    lines = ["| hole fraction | holes | PSNR (median) | texture ratio (median) | no known pixel |", "|---|---|---|---|---|"]
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = [r for r in rows if lo < r[0] <= hi]
        ok = [r for r in sel if r[1] is not None]
        if sel:
            lines.append(f"| {lo:.1f}-{hi:.1f} | {len(sel)} | "
                         + (f"{np.median([r[1] for r in ok]):.2f} | {np.median([r[2] for r in ok]):.3f}" if ok else "- | -")
                         + f" | {len(sel) - len(ok)} |")
    return "\n".join(lines)


def smear_cue(image, anns, limit=32.0):
    """Per pasted instance of `limit` px or less: mean |Laplacian| of grey in a ring one box-size wide
    around its box, over the whole image's mean."""
    import cv2
    import numpy as np

    lap = np.abs(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32), cv2.CV_32F))
    mean = max(float(lap.mean()), 1e-6)
    H, W = lap.shape
    out = []
    for a in anns:
        x, y, w, h = a["bbox"]
        if a.get("from_background") or (w * h) ** 0.5 > limit:
            continue
        x0, y0, x1, y1 = int(x), int(y), int(np.ceil(x + w)), int(np.ceil(y + h))
        X0, Y0, X1, Y1 = max(0, x0 - (x1 - x0)), max(0, y0 - (y1 - y0)), min(W, x1 + (x1 - x0)), min(H, y1 + (y1 - y0))
        ring = np.ones((Y1 - Y0, X1 - X0), bool)
        ring[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0] = False
        if ring.any():
            out.append(float(lap[Y0:Y1, X0:X1][ring].mean()) / mean)
    return out


def fill_tables(data, target, reference=True):
    """One table per fill: known truth, smear cue, ms per inpainted image, both splits; then the same for
    pypatchmatch (the box filler the patchmatch fill used before its own), if it is installed."""
    import contextlib

    import smplus.patchmatch as own
    from smplus.background import FILLS, pypatchmatch_box

    @contextlib.contextmanager
    def engine(row):
        """The patchmatch fill's box filler for this row: smplus's own, or pypatchmatch (in-process runs)."""
        saved = own.complete
        own.complete = pypatchmatch_box if row == REFERENCE else saved
        try:
            yield
        finally:
            own.complete = saved

    try:
        import patchmatch  # noqa: F401  (pypatchmatch)
        rows = [*FILLS[::-1], REFERENCE] if reference else list(FILLS[::-1])
    except ImportError:
        rows = list(FILLS[::-1])
    for row in rows:
        with engine(row):
            _fill_table(row, "patchmatch" if row == REFERENCE else row, data, target)


REFERENCE = "patchmatch with pypatchmatch 2.2 (the reference it replaced)"


def seeded_fill_tables(data, target, seeds):
    """The patchmatch table once per seed of its random search (smplus.patchmatch.complete's `seed`)."""
    import functools

    import smplus.patchmatch as own

    saved = own.complete
    try:
        for seed in seeds:
            own.complete = functools.partial(saved, seed=seed)
            _fill_table(f"patchmatch, PatchMatch seed {seed}", "patchmatch", data, target)
    finally:
        own.complete = saved


def _known_truth(ds, images_dir, method, rule):
    """(PSNR in the hole, texture ratio, ms) per punched hole <= 0.5 of its image, made by `rule`, filled by `method`."""
    import cv2
    import numpy as np

    from smplus.background import inpaint_holes

    rows = []
    for image, hole in _punched_holes(ds, images_dir, keep=lambda hole: hole.mean() <= 0.5, rule=rule):
        t = time.perf_counter()
        filled = inpaint_holes(image, hole, fill=method)
        ms = (time.perf_counter() - t) * 1000
        if filled is None:
            continue
        h = hole.astype(bool)
        mse = float(np.mean((filled[h].astype(np.float64) - image[h]) ** 2))
        lap = np.abs(cv2.Laplacian(cv2.cvtColor(filled, cv2.COLOR_BGR2GRAY).astype(np.float32), cv2.CV_32F))
        ring = (cv2.dilate(hole, np.ones((13, 13), np.uint8)) > 0) & ~h
        rows.append((10 * np.log10(255.0 ** 2 / max(mse, 1e-9)), float(lap[h].mean() / max(lap[ring].mean(), 1e-6)), ms))
    return np.array(rows)


def _fill_table(title, method, data, target):
    """Print one fill's table (see fill_tables)."""
    import numpy as np

    from smplus import pipeline
    from smplus.coco import ann_to_rle, load_coco, read_image
    from smplus.plan import TransformOptions
    from smplus.render import fill

    table = {}
    for split in SPLITS:
        source, images = split_paths(data, split)
        ds = load_coco(source)
        col = {}
        kt = _known_truth(ds, images, method, method)
        col["punched holes: PSNR in hole, dB (median)"] = f"{np.median(kt[:, 0]):.2f}"
        col["punched holes: texture ratio hole / ring (median)"] = f"{np.median(kt[:, 1]):.3f}"
        col["punched holes: ms per fill (mean)"] = f"{kt[:, 2].mean():.0f}"
        if method != "telea":
            kt = _known_truth(ds, images, method, "telea")
            col["same, Telea's hole rule: PSNR / texture"] = f"{np.median(kt[:, 0]):.2f} / {np.median(kt[:, 1]):.3f}"
        with tempfile.TemporaryDirectory() as tmp:
            pipeline.transform(source, images, tmp, target=target, options=TransformOptions(mode="msm", seed=0, fill=method),
                               run=pipeline.RunOptions(progress=False, overwrite=True))  # one worker: in this process
            with open(os.path.join(tmp, "annotations.json")) as f:
                result = json.load(f)
            by_image = {}
            for a in result["annotations"]:
                by_image.setdefault(a["image_id"], []).append(a)
            cues, ms = [], []
            for im in result["images"]:
                if im["smplus"]["background"] != "inpaint":
                    continue
                cues += smear_cue(read_image(os.path.join(tmp, "images", im["file_name"])), by_image.get(im["id"], []))
                src = ds.images[im["id"]]
                rles = [r for r in (ann_to_rle(a["segmentation"], src["height"], src["width"])
                                    for a in ds.anns_by_image[im["id"]]) if r]
                pixels = read_image(os.path.join(images, src["file_name"]))
                t = time.perf_counter()
                fill(pixels, rles, method=method)
                ms.append((time.perf_counter() - t) * 1000)
        col["smear cue, pasted instances <= 32 px on inpainted images (median)"] = \
            f"{np.median(cues):.2f} ({len(cues)} instances)"
        col["ms per inpainted image (render.fill, mean)"] = f"{np.mean(ms):.0f} ({len(ms)} images)"
        table[split] = col
    print(f"--fill {title}")
    print()
    print("| quantity | " + " | ".join(s[:-4] for s in SPLITS) + " |")
    print("|---|" + "---|" * len(SPLITS))
    for key in table[SPLITS[0]]:
        print(f"| {key} | " + " | ".join(table[s].get(key, "") for s in SPLITS) + " |")
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DATA, help="folder holding coco_tiny/ and tinyperson_like/")
    ap.add_argument("--target", default=None, help="default: DATA/tinyperson_like/tiny_set_train_like.json")
    ap.add_argument("--base", default=BASE, help="commit whose code gives the 'before' column")
    ap.add_argument("--fills", action="store_true", help="one table per fill (known truth, smear cue, ms) instead")
    ap.add_argument("--no-reference", action="store_true", help="with --fills: skip the pypatchmatch table (minutes)")
    ap.add_argument("--seeds", type=int, nargs="+", metavar="S",
                    help="with --fills: only the patchmatch table, once per PatchMatch seed (its random search; default 0): "
                         "how much of a row is the draw of the random numbers")
    ap.add_argument("--collect", default=None, help=argparse.SUPPRESS)  # internal: write one tree's numbers
    ap.add_argument("--code", default=ROOT, help=argparse.SUPPRESS)
    args = ap.parse_args()
    target = args.target or os.path.join(args.data, "tinyperson_like", "tiny_set_train_like.json")
    if args.fills:
        _import_smplus(ROOT)
        if args.seeds:
            seeded_fill_tables(args.data, target, args.seeds)
        else:
            fill_tables(args.data, target, reference=not args.no_reference)
        return
    if args.collect:
        _import_smplus(args.code)
        with open(args.collect, "w") as f:
            json.dump(collect(args.data, target, SPLITS), f)
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "base")
        os.makedirs(base)
        archive = subprocess.run(["git", "-C", ROOT, "archive", args.base, "smplus"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", base], input=archive, check=True)
        for name, code in (("before", base), ("after", ROOT)):
            path = os.path.join(tmp, f"{name}.json")
            subprocess.run([sys.executable, os.path.abspath(__file__), "--collect", path, "--code", code,
                            "--data", args.data, "--target", target], check=True,
                           env={**os.environ, "PYTHONPATH": code})
            with open(path) as f:
                results[name] = json.load(f)
        cost = fill_cost_ratio(args.data, base)
    rows = {(name, split): _summary(results[name][split]) for name in results for split in SPLITS}
    head = [f"{name} ({args.base if name == 'before' else 'this tree'}) {split[:-4]}"
            for name in results for split in SPLITS]
    print("| quantity | " + " | ".join(head) + " |")
    print("|---|" + "---|" * len(head))
    for key in rows[("after", SPLITS[0])]:
        print(f"| {key} | " + " | ".join(str(rows[(n, s)][key]) for n in results for s in SPLITS) + " |")
    print()
    print(f"Fill cost, this tree / {args.base}, on the punched holes <= 0.5 (same process, interleaved): {cost:.2f}x")
    print()
    print("Fills with known truth by hole fraction (this tree, both splits):")
    print()
    print(_hole_bins(results["after"]))


if __name__ == "__main__":
    main()
