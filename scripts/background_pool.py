"""How many images could be a new background at each share of matched objects (issue 18).

    python scripts/background_pool.py [--data DIR]

Per coco_tiny split: the share of images whose objects (crowds included) of the
scale-matched categories cover at most SHARE of the frame (mask areas, as
plan.background_share counts them), for all 80 categories and for persons alone.
The clean pool (--max-background-objects, default plan.DEFAULT_MAX_BACKGROUND_OBJECTS)
is those images; their objects are erased with the fill.
"""

import argparse
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = next((d for d in (os.path.join(ROOT, "..", "shared", "data"), os.path.join(ROOT, "..", "..", "shared", "data"))
             if os.path.isdir(d)), os.path.join(ROOT, "..", "shared", "data"))
SHARES = (0.0, 0.02, 0.05, 0.1, 0.2)


def main():
    from smplus.coco import load_coco
    from smplus.plan import background_share

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DATA)
    args = ap.parse_args()
    print("| split | categories | images | " + " | ".join(f"<= {s:g}" for s in SHARES) + " |")
    print("|---|---|---|" + "---|" * len(SHARES))
    for split in ("val2017", "train2017"):
        ds = load_coco(os.path.join(args.data, "coco_tiny", "annotations", f"instances_{split}.json"))
        for name, selected in (("all", None), ("person", {1})):
            shares = np.array([background_share([a for a in ds.anns_by_image[i]
                                                 if selected is None or a["category_id"] in selected],
                                                im["width"], im["height"]) for i, im in ds.images.items()])
            print(f"| {split[:-4]} | {name} | {len(shares)} | "
                  + " | ".join(f"{100 * np.mean(shares <= s):.0f} %" for s in SHARES) + " |")


if __name__ == "__main__":
    main()
