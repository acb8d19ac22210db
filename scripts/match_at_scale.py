"""Do rendered sizes land on the plan, at scale? (issue 13)

    python scripts/match_at_scale.py [--repeat 50] [--split val2017] [--workers 2] [--modes msm,rsm]

Builds a set of ~4,000 images from coco_tiny (the split repeated --repeat
times with new image and annotation ids, files symlinked into a temporary
folder that is deleted at the end), then for MSM+ and RSM+ (PSI p = 0.4,
seed 0) plans it (dry run) and renders it, with the tinyperson_like target.
Prints per mode:
- the JSD to the target of the planned and of the rendered sizes (report.json's
  histogram: s = sqrt(w*h) of the boxes, the target's bins) and the noise of as
  many random draws from the target;
- rendered / planned size of each instance, p5 / p50 / p95, overall and per
  planned size class;
- annotations whose RLE box and bbox differ by more than 1 px at some edge;
- the placement counters of report.json and the render time per image (wall
  time, and the CPU time of all processes: steadier on a shared machine).
With --repeat 1 it checks one split of coco_tiny as it is.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED = next((p for p in (os.path.join(ROOT, "..", "shared", "data"), os.path.join(ROOT, "..", "..", "shared", "data"))
               if os.path.isdir(p)), os.path.join(ROOT, "..", "shared", "data"))  # beside the checkout, or a worktree's

from bench import all_processes_cpu, repeated_set  # noqa: E402  (coco_tiny repeated: new ids, linked files)
from rle_box import rle_box_off  # noqa: E402

from smplus.coco import ann_to_rle, instance_size  # noqa: E402
from smplus.histogram import load_target, size_jsd  # noqa: E402
from smplus.pipeline import RunOptions, transform  # noqa: E402
from smplus.plan import TransformOptions  # noqa: E402

CLASSES = [(2, 8), (8, 12), (12, 20), (20, 32), (32, float("inf"))]
MODES = {"msm": "MSM+", "rsm": "RSM+"}


def rle_box_disagreements(data: dict) -> int:
    """Annotations whose RLE's pixel box and bbox differ by more than 1 px at some edge."""
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    return sum(rle_box_off(ann_to_rle(a["segmentation"], *sizes[a["image_id"]]), a["bbox"])
               for a in data["annotations"] if not (a.get("iscrowd") or a.get("from_background")))


def apart(plan: dict) -> set:
    """Instances whose planned box is inside its image and meets no other planned box
    (so neither occlusion nor clipping changes their rendered size)."""
    sizes = {im["id"]: (im["width"], im["height"]) for im in plan["images"]}
    by_image: dict = {}
    for a in plan["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    out = set()
    for image_id, anns in by_image.items():
        W, H = sizes[image_id]
        boxes = np.array([a["bbox"] for a in anns], float).reshape(-1, 4)
        x0, y0 = boxes[:, 0] - 1, boxes[:, 1] - 1
        x1, y1 = boxes[:, 0] + boxes[:, 2] + 1, boxes[:, 1] + boxes[:, 3] + 1
        meet = (x0[:, None] < x1[None]) & (x0[None] < x1[:, None]) & (y0[:, None] < y1[None]) & (y0[None] < y1[:, None])
        inside = (x0 >= 0) & (y0 >= 0) & (x1 <= W) & (y1 <= H)
        for k, a in enumerate(anns):
            if inside[k] and meet[k].sum() == 1:
                out.add(a["source_ann_id"])
    return out


def percentiles(r) -> str:
    if len(r) == 0:
        return "-"
    p5, p50, p95 = np.percentile(r, [5, 50, 95])
    return f"{p5:.3f} / {p50:.3f} / {p95:.3f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="val2017")
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--modes", default="msm,rsm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", default=os.path.join(SHARED, "tinyperson_like", "tiny_set_train_like.json"))
    args = ap.parse_args()

    hist = load_target(args.target)  # report.json's histogram (default bins)
    with tempfile.TemporaryDirectory(prefix="match_at_scale_") as tmp:
        split_json = os.path.join(SHARED, "coco_tiny", "annotations", f"instances_{args.split}.json")
        ann, folder, n_images = repeated_set(split_json, os.path.join(SHARED, "coco_tiny", args.split), None, tmp,
                                             repeat=args.repeat)
        print(f"coco_tiny {args.split} x{args.repeat}: {n_images} images, seed {args.seed}, "
              f"{args.workers} workers, target {os.path.basename(args.target)}\n")
        for mode in args.modes.split(","):
            opts = TransformOptions(mode=mode, seed=args.seed)
            dry = transform(ann, folder, os.path.join(tmp, f"{mode}_plan"), target=args.target, options=opts,
                            run=RunOptions(dry_run=True, progress=False)).report
            t, cpu = time.perf_counter(), all_processes_cpu()
            out = os.path.join(tmp, mode)
            rep = transform(ann, folder, out, target=args.target, options=opts,
                            run=RunOptions(workers=args.workers, progress=False)).report
            ms = (time.perf_counter() - t) * 1000 / n_images
            cpu_ms = (all_processes_cpu() - cpu) * 1000 / n_images
            plan = json.load(open(os.path.join(tmp, f"{mode}_plan", "annotations.json")))
            planned = {a["source_ann_id"]: instance_size(*a["bbox"][2:]) for a in plan["annotations"]}
            free = apart(plan)
            data = json.load(open(os.path.join(out, "annotations.json")))
            rendered = [a for a in data["annotations"] if a["source_ann_id"] in planned]
            pairs = np.array([(planned[a["source_ann_id"]], instance_size(*a["bbox"][2:])) for a in rendered])
            ratio = pairs[:, 1] / pairs[:, 0]
            alone = np.array([a["source_ann_id"] in free for a in rendered])
            print(f"## {MODES[mode]}: {len(pairs)} instances rendered of {len(planned)} planned; "
                  f"dropped {rep['counts']['dropped']}")
            print("| measure | value |\n|---|---|")
            print(f"| JSD planned (dry run) | {dry['jsd']['after']:.4f} |")
            print(f"| dropped at plan time | {dry['counts']['dropped']} of {dry['counts']['scale_matched_in']} "
                  "scale-matched |")
            print(f"| JSD rendered | {rep['jsd']['after']:.4f} |")
            print(f"| JSD planned, only the instances rendered | {size_jsd(pairs[:, 0], hist):.4f} |")
            print(f"| noise of random draws at N = {rep['counts']['scale_matched_out']} | "
                  f"{rep['jsd']['sampling_noise']:.4f} |")
            print(f"| rendered / planned size, p5 / p50 / p95 | {percentiles(ratio)} |")
            for lo, hi in CLASSES:
                sel = (pairs[:, 0] >= lo) & (pairs[:, 0] < hi)
                name = f"{lo}+ px" if hi == float("inf") else f"{lo}-{hi} px"
                print(f"| ... planned {name} ({int(sel.sum())}) | {percentiles(ratio[sel])} |")
            print(f"| ... planned box apart from the others and inside the image ({int(alone.sum())}) | "
                  f"{percentiles(ratio[alone])} |")
            off = np.abs(ratio - 1.0)
            print(f"| rendered more than 1 % / 3 % off the plan | {np.mean(off > 0.01):.2%} / {np.mean(off > 0.03):.2%} |")
            print(f"| median rendered - planned size | {np.median(ratio) - 1:+.2%} |")
            print(f"| RLE box vs bbox differ > 1 px | {rle_box_disagreements(data)} of {len(data['annotations'])} |")
            print(f"| placement | {json.dumps(rep.get('placement'))} |")
            print(f"| render time, {args.workers} workers: wall / CPU of all processes | "
                  f"{ms:.1f} / {cpu_ms:.1f} ms/img |\n")


if __name__ == "__main__":
    main()
