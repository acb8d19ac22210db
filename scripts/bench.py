"""Benchmark smplus against the I/O floor, in one run, and print a table.

    python scripts/bench.py [--quick] [--source ANN --images DIR] [--target T] [--min-images N]

Rows: decode+encode of every image (the floor); SM+ (MSM+, PSI p=0.4) with one
worker, in ms per image and as a ratio to the floor; image-level Scale Match;
two workers (throughput ratio, whole runs and steady state); peak RSS for the
set and the set grown 10x; InstaBoost if installed; the quality cost of the
fast settings (mean absolute difference to a full-resolution reference render,
boxes moved); then where a one-worker run spends its time (cProfile).
Numba's one-time compile is excluded (pymatting is imported before timing).
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED = os.path.join(ROOT, "..", "shared", "data")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from smplus.coco import JPEG_QUALITY  # noqa: E402


def repeated_set(source, images, n, tmp):
    """The source repeated (new ids, symlinked files) to at least n images."""
    raw = json.load(open(source))
    folder = os.path.join(tmp, f"images_{n}")
    os.makedirs(folder)
    out_images, out_anns = [], []
    k = 0
    while len(out_images) < n:
        for im in raw["images"]:
            name = f"{k}_{os.path.basename(im['file_name'])}"
            os.symlink(os.path.abspath(os.path.join(images, im["file_name"])), os.path.join(folder, name))
            out_images.append({**im, "id": k * 10**7 + im["id"], "file_name": name})
        for a in raw["annotations"]:
            out_anns.append({**a, "id": k * 10**8 + a["id"], "image_id": k * 10**7 + a["image_id"]})
        k += 1
    path = os.path.join(tmp, f"ann_{n}.json")
    json.dump({**raw, "images": out_images, "annotations": out_anns}, open(path, "w"))
    return path, folder, len(out_images)


def floor_ms(ann, folder):
    names = [im["file_name"] for im in json.load(open(ann))["images"]]
    t = time.perf_counter()
    for n in names:
        img = cv2.imdecode(np.fromfile(os.path.join(folder, n), np.uint8), cv2.IMREAD_COLOR)
        cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return (time.perf_counter() - t) * 1000 / len(names)


def instaboost_ms(ann, folder):
    """InstaBoost (default config, as in mmdetection) on every image: decode, transform, encode."""
    import random
    from types import SimpleNamespace

    import instaboostfast
    from skimage import measure

    # numpy 2 fix, in this process only: binary_mask_to_polygon does np.subtract(contours, 1) on
    # skimage's list of contours, which numpy >= 1.24 rejects when their lengths differ ("inhomogeneous
    # shape") where older numpy made an object array. Hand it that object array.
    def find_contours(*a, **k):
        cs = measure.find_contours(*a, **k)
        out = np.empty(len(cs), object)
        for i, c in enumerate(cs):
            out[i] = c
        return out

    instaboostfast.pycococreater.measure = SimpleNamespace(find_contours=find_contours,
                                                           approximate_polygon=measure.approximate_polygon)
    raw = json.load(open(ann))
    anns = {im["id"]: [] for im in raw["images"]}
    for a in raw["annotations"]:
        anns[a["image_id"]].append(a)
    config = instaboostfast.InstaBoostConfig()
    random.seed(0)
    np.random.seed(0)
    t = time.perf_counter()
    for im in raw["images"]:
        img = cv2.imdecode(np.fromfile(os.path.join(folder, im["file_name"]), np.uint8), cv2.IMREAD_COLOR)
        _, img = instaboostfast.get_new_data(anns[im["id"]], img, config)
        cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return (time.perf_counter() - t) * 1000 / len(raw["images"])


def smplus_run(ann, folder, target, out, workers=1, level="instance"):
    """Seconds for one `transform` run (MSM+, PSI p=0.4) and the number of images."""
    from smplus.pipeline import RunOptions, transform
    from smplus.plan import TransformOptions

    t = time.perf_counter()
    rep = transform(ann, folder, out, target, options=TransformOptions(mode="msm", psi_p=0.4, level=level),
                    run=RunOptions(workers=workers, progress=False, overwrite=True)).report
    return time.perf_counter() - t, rep["counts"]["images"]


def smplus_ms(ann, folder, target, out, workers=1, level="instance"):
    seconds, images = smplus_run(ann, folder, target, out, workers, level)
    return seconds * 1000 / images


# Where the time of a one-worker run goes: (row, functions whose cumulative time it is).
PROFILE_GROUPS = [
    ("closed-form alpha (pymatting estimate_alpha_cf)", ["estimate_alpha_cf"]),
    ("foreground colours (pymatting estimate_foreground_ml)", ["estimate_foreground_ml"]),
    ("rest of separate + scale (crop, resize, warp)", ["separate", "place"]),
    ("inpainting (hole mask + Telea)", ["inpaint_holes", "hole_mask"]),
    ("decode (source and new backgrounds)", ["read_image"]),
    ("encode + write image", ["encode_image", "write_bytes_atomic"]),
    ("annotations: measure + RLE", ["_measure"]),
    ("journal + annotations.json + report", ["write_json_atomic", "assemble", "record", "commit"]),
    ("load annotations and target, plan", ["load_coco", "load_target", "plan_dataset"]),
]


def profile_rows(ann, folder, target, out):
    """ms per image of each PROFILE_GROUPS row, from cProfile of one one-worker run."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    seconds, images = prof.runcall(smplus_run, ann, folder, target, out)
    cum = {}
    for (_, _, name), (_, _, _, ct, _) in pstats.Stats(prof).stats.items():
        cum[name] = cum.get(name, 0.0) + ct
    rows = [(label, sum(cum.get(f, 0.0) for f in funcs)) for label, funcs in PROFILE_GROUPS]
    # separate contains the matting; report the rest of it on its own
    rows[2] = (rows[2][0], rows[2][1] - rows[0][1] - rows[1][1])
    rows.append(("other", seconds - sum(r[1] for r in rows)))
    return [(label, v * 1000 / images) for label, v in rows], seconds * 1000 / images


def peak_rss_mb(ann, folder, target, out):
    code = ("import resource, sys; sys.path.insert(0, %r); from smplus.pipeline import transform, RunOptions; "
            "transform(%r, %r, %r, %r, run=RunOptions(progress=False, overwrite=True)); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)") % (ROOT, ann, folder, out, target)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(r.stdout.split()[-1]) / 1024


def quality(ann, folder, target, tmp, n=40):
    """MAD (0-255) between the fast render and a full-resolution reference render; boxes moved."""
    from pycocotools import mask as mask_utils

    import smplus.background as background
    import smplus.separate as separate

    raw = json.load(open(ann))
    raw["images"] = raw["images"][:n]
    ids = {im["id"] for im in raw["images"]}
    raw["annotations"] = [a for a in raw["annotations"] if a["image_id"] in ids]
    small = os.path.join(tmp, "q.json")
    json.dump(raw, open(small, "w"))
    fast, ref = os.path.join(tmp, "q_fast"), os.path.join(tmp, "q_ref")
    smplus_ms(small, folder, target, fast)
    saved = separate.WORK_FACTOR, separate.WORK_MAX, background.INPAINT_SCALE
    separate.WORK_FACTOR, separate.WORK_MAX = 8.0, 1e9
    background.INPAINT_SCALE = 1.0
    try:
        t_ref = smplus_ms(small, folder, target, ref)
    finally:
        separate.WORK_FACTOR, separate.WORK_MAX, background.INPAINT_SCALE = saved
    data = json.load(open(os.path.join(fast, "annotations.json")))
    ref_boxes = {x["source_ann_id"]: x["bbox"] for x in json.load(open(os.path.join(ref, "annotations.json")))["annotations"]}
    moved = sum(max(abs(p - q) for p, q in zip(x["bbox"], ref_boxes[x["source_ann_id"]])) > 0.5
                for x in data["annotations"] if x["source_ann_id"] in ref_boxes)
    inside, whole = [], []
    for im in data["images"]:
        a = cv2.imread(os.path.join(fast, "images", im["file_name"])).astype(float)
        b = cv2.imread(os.path.join(ref, "images", im["file_name"])).astype(float)
        whole.append(np.abs(a - b).mean())
        m = np.zeros(a.shape[:2], bool)
        for x in data["annotations"]:
            if x["image_id"] == im["id"]:
                m |= mask_utils.decode(x["segmentation"]).astype(bool)
        if m.any():
            inside.append(np.abs(a - b)[m].mean())
    return float(np.mean(inside)), float(np.mean(whole)), moved, len(data["annotations"]), t_ref


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=os.path.join(SHARED, "coco_tiny", "annotations", "instances_val2017.json"))
    ap.add_argument("--images", default=os.path.join(SHARED, "coco_tiny", "val2017"))
    ap.add_argument("--target", default=os.path.join(SHARED, "tinyperson_like", "tiny_set_train_like.json"))
    ap.add_argument("--min-images", type=int, default=500)
    ap.add_argument("--quick", action="store_true", help="100 images, no 10x memory run")
    args = ap.parse_args()
    n = 100 if args.quick else args.min_images
    import pymatting  # noqa: F401  (numba compile excluded from the timings)

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"machine: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}")
    tmp = tempfile.mkdtemp(prefix="smplus-bench-")
    try:
        ann, folder, count = repeated_set(args.source, args.images, n, tmp)
        out = os.path.join(tmp, "out")
        f = floor_ms(ann, folder)
        half_ann, half_folder, half = repeated_set(args.source, args.images, count // 2, os.path.join(tmp, "half"))
        runs = {w: [smplus_run(a, d, args.target, out, workers=w) for a, d in ((half_ann, half_folder), (ann, folder))]
                for w in (1, 2)}
        one, two = (runs[w][1][0] * 1000 / count for w in (1, 2))
        # Marginal cost of an image: the difference of the two set sizes cancels start-up and loading.
        steady = {w: (r[1][0] - r[0][0]) * 1000 / (r[1][1] - r[0][1]) for w, r in runs.items()}
        img = smplus_ms(ann, folder, args.target, out, level="image")
        print(f"\n{count} images\n")
        print("| measure | value | goal |")
        print("|---|---|---|")
        print(f"| floor: decode + encode (JPEG q{JPEG_QUALITY}), 1 process | {f:.1f} ms/img | |")
        print(f"| SM+ (MSM+, PSI p=0.4), 1 worker | {one:.1f} ms/img = {one / f:.1f}x floor | <= 2.0x |")
        print(f"| Scale Match (image level), 1 worker | {img:.1f} ms/img = {img / f:.1f}x floor | |")
        print(f"| SM+, 2 workers | {two:.1f} ms/img: throughput {one / two:.2f}x of 1 worker | >= 1.8x |")
        print(f"| SM+, steady state (marginal ms/img, {half} -> {count} images) | 1 worker {steady[1]:.1f}, "
              f"2 workers {steady[2]:.1f}: throughput {steady[1] / steady[2]:.2f}x | >= 1.8x |")
        base = json.load(open(args.source))
        n1 = len(base["images"])
        os.makedirs(os.path.join(tmp, "m1"))
        a1, f1, _ = repeated_set(args.source, args.images, n1, os.path.join(tmp, "m1"))
        r1 = peak_rss_mb(a1, f1, args.target, os.path.join(tmp, "rss1"))
        if not args.quick:
            os.makedirs(os.path.join(tmp, "m10"))
            a10, f10, _ = repeated_set(args.source, args.images, 10 * n1, os.path.join(tmp, "m10"))
            r10 = peak_rss_mb(a10, f10, args.target, os.path.join(tmp, "rss10"))
            print(f"| peak RSS: {n1} images / {10 * n1} images | {r1:.0f} MB / {r10:.0f} MB = {r10 / r1:.2f}x | <= 1.5x |")
        else:
            print(f"| peak RSS: {n1} images | {r1:.0f} MB | |")
        try:
            import instaboostfast  # noqa: F401
            ib = instaboost_ms(ann, folder)
            print(f"| InstaBoost (instaboostfast), 1 process | {ib:.1f} ms/img = {ib / f:.1f}x floor; "
                  f"{ib / one:.1f}x the time of SM+ (1 worker) | |")
        except ImportError:
            print("| InstaBoost | n/a (pip install instaboostfast) | |")
        mad_in, mad_all, moved, boxes, t_ref = quality(ann, folder, args.target, tmp)
        print(f"| quality: fast vs full-resolution reference ({t_ref:.0f} ms/img) | MAD {mad_in:.1f} inside "
              f"instances, {mad_all:.1f} whole image (of 255); {moved} of {boxes} boxes differ by > 0.5 px | |")
        rows, total = profile_rows(args.source, args.images, args.target, os.path.join(tmp, "prof"))
        print(f"\nWhere one worker's time goes ({n1} images, cProfile, {total:.1f} ms/img):\n")
        print("| step | ms/img | share |")
        print("|---|---|---|")
        for label, ms in rows:
            print(f"| {label} | {ms:.1f} | {ms / total:.0%} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
