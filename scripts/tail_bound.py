"""How long is the tail bin of real targets? The measure behind histogram.TAIL_RATIO.

The tail bin holds the largest except_rate/2 of the target's sizes, from its
lower edge (about the 99th percentile with K = 100) to the largest size. A
single outlier box (say 1e6 px) would stretch it without bound, and RSM+/MSM+
would then draw sizes no image can hold. For each target this prints the tail
bin's lower edge, the largest size and their ratio, and the tail bin with one
1e6-px box added, as built now (bounded at TAIL_RATIO x its lower edge).

    python scripts/tail_bound.py [TARGET.json ...]   (default: the shared data sets)
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from smplus.coco import read_json  # noqa: E402
from smplus.histogram import TAIL_RATIO, build_histogram, target_sizes  # noqa: E402

SHARED = os.path.join(ROOT, "..", "shared", "data")
DEFAULT = [os.path.join(SHARED, "tinyperson_like", "tiny_set_train_like.json"),
           os.path.join(SHARED, "coco_tiny", "annotations", "instances_train2017.json"),
           os.path.join(SHARED, "coco_tiny", "annotations", "instances_val2017.json")]


def tail_stats(sizes):
    """Lower edge of the tail bin (K = 100, except_rate 2/K) and the largest size (the bin's upper
    edge before TAIL_RATIO bounds it)."""
    return build_histogram(sizes).edges[-2], max(sizes)


def main(paths):
    print(f"TAIL_RATIO = {TAIL_RATIO}")
    print("| target | boxes | tail lower edge | largest | ratio | tail bin with a 1e6-px box added |")
    print("|---|---|---|---|---|---|")
    for path in paths:
        sizes = target_sizes(read_json(path, "target"), path)
        lo, top = tail_stats(sizes)
        h = build_histogram(sizes + [1e6])
        print(f"| {os.path.basename(path)} | {len(sizes)} | {lo:.1f} | {top:.1f} | {top / lo:.2f} "
              f"| {h.edges[-2]:.1f} - {h.edges[-1]:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1:] or DEFAULT)
