"""Scale benchmark: smplus on a COCO-train-sized source, against json.load of it.

    python scripts/bench_scale.py [--images-count N] [--quick] [--keep DIR]

Builds the source the way issue 10 describes: the records of
../shared/data/coco_tiny/annotations/instances_train2017.json repeated with new
ids and file names (hard links to the images) up to 118,287 images, written as
compact JSON (~1M instances, ~590 MB). Then prints, each measured in its own
process (time and peak RSS of that process):

- json.load of the source, and the `--dry-run` of smplus on it (whole run and
  its phases: load, index, plan, assembly + report);
- render runs of the first 1k and 10k images (2 workers: per-image cost, parent
  peak RSS, assembly time);
- the start of a `--resume` with a 100k-entry journal (synthesized from the
  dry run's entries: SQLite store and, for comparison, one JSON file per image).

Everything is written under --tmp (default /work/tmp_scale) and deleted at the end.
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED = os.path.join(ROOT, "..", "shared", "data")
COCO_TRAIN_IMAGES = 118287


def build_source(base_json, base_images, n, tmp):
    """`base_json` repeated to n images: new ids and file names, images hard-linked."""
    with open(base_json) as f:
        raw = json.load(f)
    by_image = {}
    for a in raw["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    folder = os.path.join(tmp, "images")
    os.makedirs(folder, exist_ok=True)
    images, anns = [], []
    while len(images) < n:
        k = len(images) // len(raw["images"])
        for im in raw["images"][:n - len(images)]:
            name = f"{k:05d}_{os.path.basename(im['file_name'])}"
            os.link(os.path.join(base_images, im["file_name"]), os.path.join(folder, name))
            images.append({**im, "id": len(images) + 1, "file_name": name})
            base = len(anns) + 1
            anns.extend([{**a, "id": base + j, "image_id": images[-1]["id"]}
                         for j, a in enumerate(by_image.get(im["id"], []))])
    path = os.path.join(tmp, f"instances_{n}.json")
    with open(path, "w") as f:
        json.dump({**raw, "images": images, "annotations": anns}, f)
    return path, folder, len(images), len(anns)
