"""SMPlusDataset's size match per epoch against the offline run's, on the same images.

    python scripts/online_jsd.py --source ANN --images DIR [--target T] [--epochs 2] [--offline OUT]

Prints, per mode (msm, rsm) and epoch, the JSD between the target and the sizes of the instances
SMPlusDataset renders (crowds and cp+ background labels left out, as report.json counts them), with
the sampling noise of that many draws; with --offline OUT, the offline run's report.json JSD.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import smplus  # noqa: E402
from smplus.coco import instance_size  # noqa: E402
from smplus.histogram import sampling_noise, size_jsd  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--target", default=None)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--offline", help="an offline run's OUT (same source, target, seed 0) to compare with")
    args = ap.parse_args()
    print("| mode | epoch | images | instances | JSD | sampling noise |\n|---|---|---|---|---|---|")
    for mode in ("msm", "rsm"):
        ds = smplus.SMPlusDataset(args.source, args.images, target=args.target, seed=0, mode=mode)
        for epoch in range(args.epochs):
            ds.set_epoch(epoch)
            sizes = []
            for i in range(len(ds)):
                sizes += [instance_size(*a["bbox"][2:]) for a in ds.sample(i).annotations
                          if not a.get("iscrowd") and not a.get("from_background")]
            print(f"| {mode} | {epoch} | {len(ds)} | {len(sizes)} | {size_jsd(sizes, ds.sm.hist):.4f} "
                  f"| {sampling_noise(ds.sm.hist, len(sizes)):.4f} |")
    if args.offline:
        rep = json.load(open(os.path.join(args.offline, "report.json")))
        print(f"| offline {rep['mode']} | - | {rep['counts']['images']} | {rep['counts']['scale_matched_out']} "
              f"| {rep['jsd']['after']:.4f} | {rep['jsd']['sampling_noise']:.4f} |")


if __name__ == "__main__":
    main()
