"""Check a `smplus export yolo` folder with ultralytics' own label check.

    python scripts/check_yolo_export.py OUT DIR [--split train]

OUT is the smplus output exported, DIR the export. For every image, runs
ultralytics.data.utils.verify_image_label (what YOLODataset runs when it caches
labels) and compares: labels per image = non-crowd annotations, and each box
(for --segments exports: the box ultralytics derives from the polygon) against
smplus's bbox. Prints the counts and the worst box error in pixels; exits 1 on
a failed check.

ultralytics is not a dependency of smplus. With torch already installed (CPU),
`pip install --no-deps ultralytics torchvision==<the one matching your torch>`
avoids pulling a CUDA build of torch.
"""

import argparse
import glob
import json
import os
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("dir")
    ap.add_argument("--split", default="train")
    a = ap.parse_args()
    from ultralytics.data.utils import verify_image_label

    with open(os.path.join(a.out, "annotations.json")) as f:
        data = json.load(f)
    n_cls = len(data["categories"])
    images = {im["file_name"]: im for im in data["images"]}
    anns = {}
    for ann in data["annotations"]:
        if not ann.get("iscrowd"):
            anns.setdefault(ann["image_id"], []).append(ann)
    root = os.path.join(a.dir, "images", a.split)
    labels = worst = 0.0
    failed = []
    for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
        if os.path.isdir(path):
            continue
        rel = os.path.relpath(path, root)
        label = os.path.join(a.dir, "labels", a.split, os.path.splitext(rel)[0] + ".txt")
        _, lb, _, _, _, _, _, _, nc, msg = verify_image_label((path, label, "", False, n_cls, 0, 0, False))
        im = images[rel]
        mine = anns.get(im["id"], [])
        if nc or len(lb) != len(mine):
            failed.append(f"{rel}: {msg or f'{len(lb)} labels for {len(mine)} annotations'}")
            continue
        w, h = im["width"], im["height"]
        for ann, row in zip(mine, lb):
            cx, cy, bw, bh = row[1:] * np.array([w, h, w, h])
            x, y, aw, ah = ann["bbox"]
            worst = max(worst, abs(cx - bw / 2 - x), abs(cy - bh / 2 - y), abs(cx + bw / 2 - x - aw), abs(cy + bh / 2 - y - ah))
        labels += len(lb)
    print(f"{len(images)} images, {int(labels)} labels accepted by ultralytics; worst box error {worst:.3f} px")
    for line in failed:
        print("FAILED", line)
    sys.exit(1 if failed or worst > 0.5 else 0)


if __name__ == "__main__":
    main()
