"""Copy a handful of real COCO val2017 images (and their annotations) out of
../shared/data/coco_tiny into the package sample and the test fixtures.

Run once from the repository root; the results are committed so that tests
and `smplus demo` work on machines without ../shared. One polygon instance
is re-encoded as compressed RLE in the test fixture, so all three COCO mask
encodings (polygon, uncompressed crowd RLE, compressed RLE) are covered.
"""

import json
import os
import shutil
import sys

from pycocotools import mask as mask_utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COCO = os.path.join(ROOT, "..", "shared", "data", "coco_tiny")

SAMPLE = ["000000184324.jpg", "000000566282.jpg", "000000404484.jpg", "000000435206.jpg"]
FIXTURE = SAMPLE + ["000000343937.jpg", "000000555009.jpg"]  # + one person, + no person


def subset(coco: dict, names, compress_one: bool) -> dict:
    images = [im for im in coco["images"] if im["file_name"] in names]
    ids = {im["id"] for im in images}
    anns = [dict(a) for a in coco["annotations"] if a["image_id"] in ids]
    if compress_one:
        a = next(a for a in anns if not a["iscrowd"] and a["category_id"] == 1 and a["area"] > 2000)
        im = next(im for im in images if im["id"] == a["image_id"])
        rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], im["height"], im["width"]))
        a["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    return {"info": {"description": "COCO 2017 val subset (smplus fixtures)"},
            "licenses": coco.get("licenses", []), "images": images, "annotations": anns,
            "categories": coco["categories"]}


def write(dest: str, names, compress_one: bool) -> None:
    with open(os.path.join(COCO, "annotations", "instances_val2017.json")) as f:
        coco = json.load(f)
    os.makedirs(os.path.join(dest, "images"), exist_ok=True)
    for n in names:
        shutil.copyfile(os.path.join(COCO, "val2017", n), os.path.join(dest, "images", n))
    with open(os.path.join(dest, "annotations.json"), "w") as f:
        json.dump(subset(coco, names, compress_one), f)


if __name__ == "__main__":
    if not os.path.isdir(COCO):
        sys.exit(f"{COCO} not found: this script needs ../shared beside the repository")
    write(os.path.join(ROOT, "smplus", "data", "sample"), SAMPLE, compress_one=False)
    write(os.path.join(ROOT, "tests", "fixtures", "coco"), FIXTURE, compress_one=True)
