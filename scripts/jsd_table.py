"""Print the paper's Table 1: JSD between the size distribution of the
transformed set and the target, for RSM, RSM+, MSM, MSM+ (from dry runs:
the plan decides the sizes, so no pixels are needed).

    python scripts/jsd_table.py --source ANN.json --images DIR [--target T] [--seed 0]
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from smplus.pipeline import RunOptions, transform  # noqa: E402
from smplus.plan import TransformOptions  # noqa: E402

ROWS = [("RSM", "image", "rsm"), ("RSM+", "instance", "rsm"), ("MSM", "image", "msm"), ("MSM+", "instance", "msm")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--target", default=None, help="default: the bundled TinyPerson prior")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("| method | level | JSD before | JSD after | noise of random draws |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, level, mode in ROWS:
            rep = transform(args.source, args.images, os.path.join(tmp, name), target=args.target,
                            options=TransformOptions(mode=mode, level=level, seed=args.seed),
                            run=RunOptions(dry_run=True, progress=False)).report
            j = rep["jsd"]
            print(f"| {name} | {level} | {j['before']:.4f} | {j['after']:.4f} | {j['sampling_noise']:.4f} |")


if __name__ == "__main__":
    main()
