"""How far short of the frame COCO polygons of cut objects stop (issue 18), on coco_tiny.

    python scripts/frame_gaps.py [--data DIR]

For k in 0.5..16 px: box sides within k px of their image edge, and how many of
them have a mask pixel on that edge (certainly cut). The gaps between 1 and 8 px
are where polygons of cut objects stop short (plan.FRAME_TOLERANCE).
"""

import argparse
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = next((d for d in (os.path.join(ROOT, "..", "shared", "data"), os.path.join(ROOT, "..", "..", "shared", "data"))
             if os.path.isdir(d)), os.path.join(ROOT, "..", "shared", "data"))


def gaps(data):
    from smplus.coco import load_coco
    from smplus.render import decode_mask

    rows = []  # (gap px, mask pixel on that edge)
    for split in ("val2017", "train2017"):
        ds = load_coco(os.path.join(data, "coco_tiny", "annotations", f"instances_{split}.json"))
        for image_id, im in ds.images.items():
            W, H = im["width"], im["height"]
            for a in ds.anns_by_image[image_id]:
                if a.get("iscrowd"):
                    continue
                m = decode_mask(a, H, W)
                if m is None:
                    continue
                x, y, w, h = a["bbox"]
                for gap, edge in ((x, m[:, 0]), (y, m[0]), (W - x - w, m[:, -1]), (H - y - h, m[-1])):
                    rows.append((gap, bool(edge.any())))
    return np.array(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DATA)
    args = ap.parse_args()
    r = gaps(args.data)
    print(f"box sides: {len(r)}, with a mask pixel on the frame: {int(r[:, 1].sum())}")
    print()
    print("| k px | box sides within k px of the edge | of which a mask pixel on the edge | not on it |")
    print("|---|---|---|---|")
    for k in (0.5, 1, 2, 3, 4, 6, 8, 10, 12, 16, 24):
        sel = r[r[:, 0] <= k]
        print(f"| {k} | {len(sel)} | {int(sel[:, 1].sum())} | {int(len(sel) - sel[:, 1].sum())} |")
    print()
    print("gaps (px) of the sides in (1, 16]:", " ".join(f"{g:.1f}" for g in sorted(r[(r[:, 0] > 1) & (r[:, 0] <= 16), 0])))


if __name__ == "__main__":
    main()
