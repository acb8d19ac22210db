"""Why the mask/box support is alpha >= 0.4: each level measured with closed-loop placement.

    python scripts/support_levels.py [--split val2017] [--levels 0.3,0.4,0.5]

Renders coco_tiny's split (MSM+, seed 0, tinyperson_like target, one process)
once per support level and prints, over every placed instance:
- open loop: size of the box at the planned scale / planned size (the bias
  the loop has to correct), p5 / p50 / p95;
- the scale the loop settles on / the planned scale (how much it enlarges or
  shrinks the instance to land its box on the plan), p5 / p50 / p95;
- mask area / sum of alpha of the placed instance (median; 1 = the mask holds
  as much as the alpha), overall and under 12 px;
- instances that do not converge, and placements per instance.
"""

import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED = os.path.join(ROOT, "..", "shared", "data")

from smplus import render, separate  # noqa: E402
from smplus.pipeline import RunOptions, transform  # noqa: E402
from smplus.plan import TransformOptions  # noqa: E402


def measured_run(split: str, level: float, target: str) -> list:
    """One render at support `level`, recording each closed-loop placement."""
    records, place_at_size = [], render.place_at_size

    def recording(m, scale, size, src_point, out_point):
        placed = place_at_size(m, scale, size, src_point, out_point)
        open_loop = render.placed_size(separate.place(m, scale, src_point, out_point).alpha)
        alpha = placed.instance.alpha
        records.append({"size": size, "open_loop": open_loop, "scale": placed.scale / scale,
                        "rounds": placed.rounds, "converged": placed.converged,
                        "area": float((alpha >= level).sum()), "alpha": float(alpha.sum())})
        return placed

    render.SUPPORT, render.place_at_size = level, recording
    try:
        with tempfile.TemporaryDirectory() as tmp:
            transform(os.path.join(SHARED, "coco_tiny", "annotations", f"instances_{split}.json"),
                      os.path.join(SHARED, "coco_tiny", split), os.path.join(tmp, "out"), target=target,
                      options=TransformOptions(mode="msm", seed=0), run=RunOptions(progress=False))
    finally:
        render.place_at_size = place_at_size
    return records


def pct(values) -> str:
    return " / ".join(f"{v:.3f}" for v in np.percentile(values, [5, 50, 95]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="val2017")
    ap.add_argument("--levels", default="0.3,0.4,0.5")
    ap.add_argument("--target", default=os.path.join(SHARED, "tinyperson_like", "tiny_set_train_like.json"))
    args = ap.parse_args()
    print(f"coco_tiny {args.split}, MSM+, seed 0, closed-loop placement\n")
    print("| support | open loop: box / plan, p5 / p50 / p95 | loop's scale / planned scale | "
          "mask area / alpha sum (< 12 px) | unconverged | placements per instance |")
    print("|---|---|---|---|---|---|")
    for level in map(float, args.levels.split(",")):
        r = measured_run(args.split, level, args.target)
        open_loop = [x["open_loop"] / x["size"] for x in r if x["open_loop"]]
        fill = np.array([x["area"] / x["alpha"] for x in r if x["alpha"] > 0])
        small = np.array([x["size"] < 12 for x in r if x["alpha"] > 0])
        print(f"| {level} | {pct(open_loop)} | {pct([x['scale'] for x in r])} | "
              f"{np.median(fill):.3f} ({np.median(fill[small]):.3f}) | "
              f"{sum(not x['converged'] for x in r)} of {len(r)} | {np.mean([x['rounds'] for x in r]):.2f} |")


if __name__ == "__main__":
    main()
