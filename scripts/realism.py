"""Can a classifier tell smplus's pasted small objects from photographed ones?

    python scripts/realism.py [--dataset ANN IMAGES ...] [--target T] [--work DIR] [--fast] [--grid PNG] [--fill F]

Default data: both splits of coco_tiny (../shared/data/coco_tiny), target
tiny_set_train_like.json. smplus transform runs with default settings (MSM+,
PSI p=0.4) and with `--level image`; its outputs are cached under --work, keyed by
the smplus sources and the arguments, so a rerun after a code change renders again.

Natural small objects (6-32 px, not crowd) are taken from the source photos
re-encoded exactly as smplus writes its output (JPEG q95, 4:4:4). Each row pairs
them 1:1 by category and size (within 20 %) with:

- pasted on inpainted: instances smplus pasted on their own image, inpainted
  (the image's "smplus" provenance says "inpaint");
- pasted on new: instances pasted on another photo ("new");
- placement control: the same boxes as "pasted on new", in the new background
  photo before anything was pasted (where objects land, not how);
- downscaled photos: objects of whole images scaled by `--level image`;
- null: natural vs natural (the photos split in two halves at random).

Features come from the luminance around each box (box = the output bbox):
context ones from the ring up to half a box-length around it, the box masked
out; object ones from the box itself, and again from its central half only (core:
mostly the object, little of what is around it). Logistic regression and gradient boosting,
5-fold cross-validation grouped by connected images (source and background
images joined; GroupKFold over the components); each cell is the larger of the
two classifiers' AUCs (0.5: cannot tell). Then issue 23's goals on the mean
AUCs, each 'met' or 'NOT met' with its margin: object AUC of both pasted rows at
most the downscaled photos' + 0.05; context AUC on inpainted backgrounds at most
the placement control's + 0.05; the null control within 0.5 +- 0.07 (and the
moonshot, object AUC <= 0.6). Then the single-feature AUCs per row (below 0.5:
the feature is lower for the row's objects than for natural ones).
"""

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import warnings
from collections import defaultdict

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED = os.path.join(ROOT, "..", "shared", "data")
if not os.path.isdir(SHARED):
    SHARED = "/work/shared/data"

from smplus.coco import JPEG_QUALITY, JPEG_SUBSAMPLING, encode_image  # noqa: E402

SIZE_RANGE = (6.0, 32.0)
SIZE_MATCH = 1.2      # a pair's sizes differ by at most this factor
RING = 0.5            # context ring: up to this many box-lengths around the box
CONTEXT = ["c_lap", "c_lap_rel", "c_hp", "c_std", "c_grad", "c_chroma_hp"]
OBJECT = ["o_hp", "o_hp_rel", "o_lap", "o_lap_rel", "o_contrast", "o_grad_rel", "o_edge_rel", "o_chroma_hp"]


# ---------------------------------------------------------------- smplus runs (cached)

def source_hash():
    h = hashlib.sha256()
    pkg = os.path.join(ROOT, "smplus")
    for name in sorted(os.listdir(pkg)):
        if name.endswith(".py"):
            with open(os.path.join(pkg, name), "rb") as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()[:12]


def transform(ann, images, target, work, level, seed, workers, extra=()):
    """smplus transform's output folder for (ann, images, level), rendered once per smplus source."""
    key = hashlib.sha256(json.dumps([os.path.abspath(ann), target, level, seed, list(extra), source_hash()])
                         .encode()).hexdigest()[:12]
    out = os.path.join(work, f"{os.path.splitext(os.path.basename(ann))[0]}_{level}_{key}")
    if os.path.exists(os.path.join(out, "annotations.json")):
        return out
    cmd = [sys.executable, "-m", "smplus.cli", "transform", "--source", ann, "--images", images, "--out", out,
           "--seed", str(seed), "--workers", str(workers), "--level", level, *extra]
    if target:
        cmd += ["--target", target]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"realism.py: smplus transform failed on {ann}: {r.stderr.strip().splitlines()[-1:]}")
    return out


# ---------------------------------------------------------------- features

class Image:
    """One image's feature maps (luminance: Laplacian, high-pass, gradient; chroma high-pass)."""

    def __init__(self, bgr):
        self.bgr = bgr
        ycc = cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb).astype(np.float32)
        g = ycc[..., 0]
        self.gray = g
        self.lap = np.abs(cv2.Laplacian(g, cv2.CV_32F, ksize=1))
        self.hp = g - cv2.GaussianBlur(g, (0, 0), 1.0)
        self.grad = cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
        c = ycc[..., 1:]
        self.chroma_hp = np.abs(c - cv2.GaussianBlur(c, (0, 0), 1.0)).mean(axis=2)
        self.mean_lap = float(self.lap.mean())



def _read_output(out):
    """An smplus output's annotations.json and its annotations by image id."""
    with open(os.path.join(out, "annotations.json")) as f:
        res = json.load(f)
    by_image = defaultdict(list)
    for a in res["annotations"]:
        by_image[a["image_id"]].append(a)
    return res, by_image

def mad(v):
    return float(np.median(np.abs(v - np.median(v)))) if v.size else 0.0


def features(im, bbox):
    """Context and object features of the box `bbox` (x, y, w, h) in `im`, or None if it is outside."""
    H, W = im.gray.shape
    x, y, w, h = bbox
    x0, y0 = max(0, int(math.floor(x))), max(0, int(math.floor(y)))
    x1, y1 = min(W, int(math.ceil(x + w))), min(H, int(math.ceil(y + h)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    m = max(2, int(round(RING * max(w, h))))
    X0, Y0, X1, Y1 = max(0, x0 - m), max(0, y0 - m), min(W, x1 + m), min(H, y1 + m)
    ring = np.ones((Y1 - Y0, X1 - X0), bool)
    # the box and the pixel around it (whose Laplacian sees the object's edge) masked out
    ring[max(0, y0 - 1 - Y0):y1 + 1 - Y0, max(0, x0 - 1 - X0):x1 + 1 - X0] = False
    if ring.sum() < 8:
        return None
    win = (slice(Y0, Y1), slice(X0, X1))
    box = (slice(y0, y1), slice(x0, x1))
    g = im.gray[box]
    contrast = float(g.std()) + 1.0
    spread = float(np.percentile(g, 95) - np.percentile(g, 5)) + 1.0
    c_lap = float(im.lap[win][ring].mean())
    f = {
        "c_lap": c_lap,
        "c_lap_rel": c_lap / (im.mean_lap + 1e-6),
        "c_hp": mad(im.hp[win][ring]),
        "c_std": float(im.gray[win][ring].std()),
        "c_grad": float(im.grad[win][ring].mean()),
        "c_chroma_hp": float(im.chroma_hp[win][ring].mean()),
        "o_hp": mad(im.hp[box]),
        "o_hp_rel": mad(im.hp[box]) / contrast,
        "o_lap": float(im.lap[box].mean()),
        "o_lap_rel": float(im.lap[box].mean()) / contrast,
        "o_contrast": contrast,
        "o_grad_rel": float(im.grad[box].mean()) / contrast,
        "o_edge_rel": float(np.percentile(im.grad[box], 90)) / spread,
        "o_chroma_hp": float(im.chroma_hp[box].mean()),
    }
    return f


def reencoded(path):
    """A source photo as smplus would write it (JPEG at smplus's quality and chroma subsampling)."""
    img = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    data = encode_image(img, path, JPEG_QUALITY, JPEG_SUBSAMPLING)
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def small(ann):
    if ann.get("iscrowd") or "unscaled" in ann or ann.get("from_background"):
        return None
    w, h = ann["bbox"][2:]
    s = math.sqrt(max(w, 0) * max(h, 0))
    return s if SIZE_RANGE[0] <= s <= SIZE_RANGE[1] else None


class Collector:
    """Objects with features, by kind; image graph for grouping."""

    def __init__(self):
        self.items = defaultdict(list)  # kind -> [dict(cat, size, node, feats, patch)]
        self.parent = {}
        self.cache = {}

    def node(self, key):
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def join(self, a, b):
        self.parent[self.node(a)] = self.node(b)

    def image(self, path, encode=False):
        if path not in self.cache:
            if len(self.cache) > 8:
                self.cache.pop(next(iter(self.cache)))
            self.cache[path] = Image(reencoded(path) if encode else cv2.imread(path, cv2.IMREAD_COLOR))
        return self.cache[path]

    def add(self, kind, im, ann, size, node):
        f = features(im, ann["bbox"])
        x, y, w, h = ann["bbox"]
        core = features(im, (x + w / 4, y + h / 4, w / 2, h / 2))
        if f is None or core is None:
            return
        f.update({"core_" + n: core[n] for n in OBJECT})
        half = int(math.ceil(max(w, h) * 1.25))  # the object and its ring, centred (black beyond the image)
        cx, cy = int(round(x + w / 2)), int(round(y + h / 2))
        padded = cv2.copyMakeBorder(im.bgr, half, half, half, half, cv2.BORDER_CONSTANT, value=0)
        patch = padded[cy:cy + 2 * half, cx:cx + 2 * half].copy()
        self.items[kind].append({"cat": ann["category_id"], "size": size, "node": node, "f": f, "patch": patch})


def collect(datasets, target, work, seed, workers, extra=()):
    col = Collector()
    for ann_path, images in datasets:
        src = json.load(open(ann_path))
        tag = os.path.abspath(ann_path)
        src_images = {im["id"]: im for im in src["images"]}
        by_image = defaultdict(list)
        for a in src["anns"] if "anns" in src else src["annotations"]:
            by_image[a["image_id"]].append(a)
        for iid, anns in by_image.items():
            todo = [(a, s) for a in anns for s in [small(a)] if s]
            if not todo:
                continue
            im = col.image(os.path.join(images, src_images[iid]["file_name"]), encode=True)
            for a, s in todo:
                col.add("natural", im, a, s, (tag, iid))
        out = transform(ann_path, images, target, work, "instance", seed, workers, extra)
        res, out_anns = _read_output(out)
        for oim in res["images"]:
            prov = oim.get("smplus") or {}
            kind = {"inpaint": "inpainted", "new": "new"}.get(prov.get("background"))
            if kind is None:
                continue
            bg = prov["background_image_id"]
            col.join((tag, oim["id"]), (tag, bg))
            todo = [(a, s) for a in out_anns[oim["id"]] for s in [small(a)] if s]
            if not todo:
                continue
            im = col.image(os.path.join(out, "images", oim["file_name"]))
            for a, s in todo:
                col.add(kind, im, a, s, (tag, oim["id"]))
            if kind == "new":  # the same spots in the background photo before pasting
                bim = col.image(os.path.join(images, src_images[bg]["file_name"]), encode=True)
                for a, s in todo:
                    col.add("placement", bim, a, s, (tag, bg))
        out = transform(ann_path, images, target, work, "image", seed, workers)
        res, out_anns = _read_output(out)
        for oim in res["images"]:
            todo = [(a, s) for a in out_anns[oim["id"]] for s in [small(a)] if s]
            if todo:
                im = col.image(os.path.join(out, "images", oim["file_name"]))
                for a, s in todo:
                    col.add("downscaled", im, a, s, (tag, oim["id"]))
    return col


# ---------------------------------------------------------------- pairing and classifiers

def pair(natural, other, rng):
    """1:1 pairs (natural, other) of one category and sizes within SIZE_MATCH; each used once."""
    pool = defaultdict(list)
    for k, n in enumerate(natural):
        pool[n["cat"]].append(k)
    used, pairs = set(), []
    for j in rng.permutation(len(other)):
        o = other[j]
        best, err = None, math.log(SIZE_MATCH)
        for k in pool[o["cat"]]:
            e = abs(math.log(natural[k]["size"] / o["size"]))
            if k not in used and e <= err:
                best, err = k, e
        if best is not None:
            used.add(best)
            pairs.append((natural[best], o))
    return pairs


def cv_auc(X, y, groups, fast, seed):
    """The larger of logistic regression's and gradient boosting's pooled out-of-fold AUCs."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_groups = len(set(groups))
    if n_groups < 2 or len(set(y)) < 2:
        return None
    folds = GroupKFold(n_splits=min(5, n_groups))
    X = np.log1p(np.maximum(X, 0.0))
    best = 0.0
    models = [lambda: make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)),
              lambda: GradientBoostingClassifier(n_estimators=30 if fast else 150, max_depth=2, learning_rate=0.05,
                                                 subsample=0.8, random_state=seed)]
    for make in models:
        score = np.zeros(len(y))
        for tr, te in folds.split(X, y, groups):
            if len(set(y[tr])) < 2:
                score[te] = 0.5
                continue
            model = make().fit(X[tr], y[tr])
            score[te] = model.predict_proba(X[te])[:, 1]
        best = max(best, roc_auc_score(y, score))
    return best


def evaluate(col, fast, seed):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    natural = col.items["natural"]
    rows = []
    # null: photos split in two halves at random; each image its own group
    nodes = sorted({n["node"] for n in natural})
    half = dict(zip(nodes, rng.random(len(nodes)) < 0.5))
    null_a = [n for n in natural if half[n["node"]]]
    null_b = [n for n in natural if not half[n["node"]]]
    spec = [(INPAINTED, natural, col.items["inpainted"], True),
            (NEW, natural, col.items["new"], True),
            (PLACEMENT, natural, col.items["placement"], False),
            (DOWNSCALED, natural, col.items["downscaled"], True),
            (NULL, null_a, null_b, True)]
    singles = {}
    for name, nat, other, with_object in spec:
        pairs = pair(nat, other, np.random.default_rng(seed))
        row = {"row": name, "pairs": len(pairs), "context": None, "object": None, "core": None}
        if len(pairs) >= 4:
            items = [p[0] for p in pairs] + [p[1] for p in pairs]
            y = np.array([0] * len(pairs) + [1] * len(pairs))
            groups = [col.node(i["node"]) for i in items]
            gid = {g: k for k, g in enumerate(dict.fromkeys(groups))}
            groups = np.array([gid[g] for g in groups])
            for key, names in (("context", CONTEXT), ("object", OBJECT), ("core", ["core_" + n for n in OBJECT])):
                if key != "context" and not with_object:
                    continue
                X = np.array([[i["f"][n] for n in names] for i in items])
                row[key] = cv_auc(X, y, groups, fast, seed)
            singles[name] = {n: roc_auc_score(y, [i["f"][n] for i in items]) for n in CONTEXT + OBJECT + ["size"]
                             if n != "size"}
            singles[name]["size"] = roc_auc_score(y, [i["size"] for i in items])
        rows.append(row)
    return rows, singles


SIZE_BINS = ((6, 12), (12, 20), (20, 32))


def sharpness_by_size(col):
    """Median o_lap_rel per kind of object and size bin."""
    out = {}
    for kind in ("natural", "new", "inpainted", "downscaled"):
        out[kind] = [mean([float(np.median(v))] if v else []) for v in
                     ([i["f"]["o_lap_rel"] for i in col.items[kind] if lo <= i["size"] < hi] for lo, hi in SIZE_BINS)]
    return out


def grid(col, path, seed, n=8, side=128):
    """Zoomed pasted instances next to natural ones of the same category and size: one row per
    kind (pasted on new, on inpainted, downscaled photos), pairs left natural, right the other."""
    rng = np.random.default_rng(seed)
    rows = []
    for kind in ("new", "inpainted", "downscaled"):
        cells = []
        for nat, oth in pair(col.items["natural"], col.items[kind], rng)[:n]:
            for it, mark in ((nat, (0, 200, 0)), (oth, (0, 0, 255))):
                t = cv2.resize(it["patch"], (side, side), interpolation=cv2.INTER_NEAREST)
                cv2.rectangle(t, (0, 0), (side - 1, side - 1), mark, 2)
                cells.append(t)
            cells.append(np.full((side, 6, 3), 255, np.uint8))
        if cells:
            row = np.concatenate(cells, axis=1)
            cv2.putText(row, kind, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1)
            rows.append(row)
    if rows:
        width = max(r.shape[1] for r in rows)
        cv2.imwrite(path, np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0))) for r in rows]))


def mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def spread(values):
    values = [v for v in values if v is not None]
    return (min(values), max(values)) if values else None


def fmt(v):
    return "–" if v is None else f"{v:.2f}"


INPAINTED, NEW, PLACEMENT, DOWNSCALED, NULL = (
    "pasted on inpainted backgrounds", "pasted on new backgrounds",
    "same spots in the unpasted background photo (placement control)",
    "whole photos downscaled, no pasting (--level image)", "natural vs natural (null control)")
MARGIN = 0.05     # a pasted row may exceed its reference row by this much
NULL_BAND = 0.07  # the null control stays within 0.5 +- this
MOONSHOT = 0.6    # object AUC of the pasted rows


def goal_checks(rows):
    """Issue 23's goals on the table's mean AUCs, one line each: 'met' or 'NOT met', with the margin."""
    by = {r["row"]: r for r in rows}

    def check(what, value, limit):
        if value is None or limit is None:
            return f"- {what}: n/a (too few pairs)"
        ok = value <= limit + 1e-9
        return f"- {what}: {value:.2f} <= {limit:.2f}: {'met' if ok else 'NOT met'} (margin {limit - value:+.2f})"

    down = by[DOWNSCALED]["object"]
    lines = ["goals (mean AUCs):"]
    for row in (INPAINTED, NEW):
        lines.append(check(f"object AUC, {row}, at most downscaled photos' + {MARGIN}", by[row]["object"],
                           None if down is None else down + MARGIN))
    place = by[PLACEMENT]["context"]
    lines.append(check(f"context AUC, {INPAINTED}, at most the placement control's + {MARGIN}",
                       by[INPAINTED]["context"], None if place is None else place + MARGIN))
    for key in ("context", "object"):
        v = by[NULL][key]
        lines.append(f"- null control, {key} AUC within 0.5 +- {NULL_BAND}: " + ("n/a" if v is None else
                     f"{v:.2f}: {'met' if abs(v - 0.5) <= NULL_BAND + 1e-9 else 'NOT met'}"))
    worst = max((by[r]["object"] for r in (INPAINTED, NEW) if by[r]["object"] is not None), default=None)
    if worst is not None:
        lines.append(f"- moonshot, object AUC of both pasted rows at most {MOONSHOT}: {worst:.2f}: "
                     f"{'met' if worst <= MOONSHOT + 1e-9 else 'not yet'}")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", nargs=2, action="append", metavar=("ANN", "IMAGES"),
                    help="source annotations and images folder (repeatable); default: both coco_tiny splits")
    ap.add_argument("--target", help="target for smplus transform (default: tiny_set_train_like.json if present; "
                                     "'bundled': smplus's bundled TinyPerson prior)")
    ap.add_argument("--work", help="where smplus outputs are cached (default: a folder under the system temp dir)")
    ap.add_argument("--seed", type=int, default=0, help="first smplus --seed (also seeds pairing and boosting)")
    ap.add_argument("--seeds", type=int, default=3,
                    help="runs, with seeds SEED.. SEED+N-1: each cell is their mean (and range); one run's AUC "
                         "moves by about +-0.05 with the seed")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fast", action="store_true", help="fewer boosting rounds (for a smoke test)")
    ap.add_argument("--grid", help="write a PNG of zoomed pasted instances next to natural ones")
    ap.add_argument("--json", help="write the table and single-feature AUCs as JSON")
    ap.add_argument("--fill", help="smplus transform's --fill (default: smplus's default fill); the object "
                                   "features do not depend on it, the inpainted row's context does")
    args = ap.parse_args(argv)
    datasets = args.dataset or [(os.path.join(SHARED, "coco_tiny", "annotations", f"instances_{s}.json"),
                                 os.path.join(SHARED, "coco_tiny", s)) for s in ("train2017", "val2017")]
    for ann, images in datasets:
        if not os.path.isfile(ann) or not os.path.isdir(images):
            sys.exit(f"realism.py: {ann} or {images} not found; pass --dataset ANN IMAGES")
    target = args.target
    if target is None:
        t = os.path.join(SHARED, "tinyperson_like", "tiny_set_train_like.json")
        target = t if os.path.isfile(t) else None
    elif target == "bundled":
        target = None
    work = args.work or os.path.join(tempfile.gettempdir(), "smplus_realism")
    os.makedirs(work, exist_ok=True)
    runs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in range(args.seed, args.seed + max(1, args.seeds)):
            col = collect(datasets, target, work, seed, args.workers, ("--fill", args.fill) if args.fill else ())
            runs.append(evaluate(col, args.fast, seed))
            if seed == args.seed:
                sharpness = sharpness_by_size(col)
            if args.grid and seed == args.seed:
                grid(col, args.grid, seed)
    rows = [{"row": r["row"], **{k: mean([run[0][i][k] for run in runs]) for k in ("pairs", "context", "object", "core")},
             "range": {k: spread([run[0][i][k] for run in runs]) for k in ("context", "object", "core")}}
            for i, r in enumerate(runs[0][0])]
    singles = {name: {f: mean([run[1][name][f] for run in runs if name in run[1]]) for f in runs[0][1][name]}
               for name in runs[0][1]}
    print(f"{len(runs)} run(s), seeds {args.seed}-{args.seed + len(runs) - 1}: mean AUC (range)\n")
    print("| natural small objects vs | pairs | context AUC (box masked out) | object AUC (the box itself) "
          "| core AUC (central half of the box) |")
    print("|---|---|---|---|---|")
    for r in rows:
        cells = " | ".join(fmt(r[k]) + (f" ({fmt(r['range'][k][0])}-{fmt(r['range'][k][1])})"
                                          if len(runs) > 1 and r[k] is not None else "")
                           for k in ("context", "object", "core"))
        print(f"| {r['row']} | {r['pairs']:.0f} | {cells} |")
    print()
    for line in goal_checks(rows):
        print(line)
    names = CONTEXT + OBJECT + ["size"]
    short = {INPAINTED: "inpainted", NEW: "new", PLACEMENT: "placement", DOWNSCALED: "downscaled", NULL: "null"}
    print("\nsingle-feature AUCs (below 0.5: lower than natural)")
    print("| feature | " + " | ".join(short[r] for r in singles) + " |")
    print("|---|" + "---|" * len(singles))
    for n in names:
        print(f"| {n} | " + " | ".join(fmt(singles[r][n]) for r in singles) + " |")
    print(f"\nsharpness: median Laplacian relative to contrast in the box, by size (seed {args.seed})")
    print("| objects | " + " | ".join(f"{lo:g}-{hi:g} px" for lo, hi in SIZE_BINS) + " |")
    print("|---|" + "---|" * len(SIZE_BINS))
    for kind, values in sharpness.items():
        print(f"| {kind} | " + " | ".join(fmt(v) for v in values) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "single": singles, "runs": [run[0] for run in runs], "sharpness": sharpness}, f, indent=1)


if __name__ == "__main__":
    main()
