"""What the patchmatch fill costs: per hole size, and in a whole default run against the I/O floor.

    python scripts/fill_cost.py [--data DIR] [--rounds 2] [--no-reference]

1. Cost vs hole size: an elliptical hole of growing area in the middle of a
   coco_tiny val2017 image (scaled to 640 x 480), filled by `inpaint_holes(...,
   fill=...)`: smplus's PatchMatch, pypatchmatch (the box filler it replaced,
   if installed) and Telea; CPU ms (process time, so other jobs on the machine
   count less), the best of 3.
2. A whole run (scripts/bench.py's functions: MSM+, PSI p = 0.4, one worker,
   coco_tiny val2017) with `--fill telea` and the default fill, each as a ratio
   to the decode + encode floor of the same images, in interleaved rounds; CPU
   time of this process (one worker runs in it, its image writes included).
"""

import argparse
import contextlib
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import bench  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

import smplus.patchmatch as own  # noqa: E402
from smplus.background import inpaint_holes, pypatchmatch_box  # noqa: E402
from smplus.coco import read_image  # noqa: E402

DATA = next((d for d in (bench.SHARED, os.path.join(ROOT, "..", "..", "shared", "data")) if os.path.isdir(d)), bench.SHARED)


@contextlib.contextmanager
def reference():
    """The patchmatch fill with pypatchmatch as its box filler (in this process)."""
    saved = own.complete
    own.complete = pypatchmatch_box
    try:
        yield
    finally:
        own.complete = saved


def cpu_ms(f, *args, repeats=3, **kwargs):
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        f(*args, **kwargs)
        best = min(best, time.process_time() - t)
    return best * 1000


def by_hole_size(data, with_reference):
    folder = os.path.join(data, "coco_tiny", "val2017")
    image = cv2.resize(read_image(os.path.join(folder, sorted(os.listdir(folder))[0])), (640, 480))
    inpaint_holes(image, np.pad(np.ones((8, 8), np.uint8), ((100, 372), (100, 532))), fill="patchmatch")  # compile/load
    print("| hole area, px | smplus PatchMatch, ms | ns per hole px |" + (" pypatchmatch, ms |" if with_reference else "")
          + " Telea, ms |")
    print("|---|---|---|" + ("---|" if with_reference else "") + "---|")
    for area in (1000, 5000, 20000, 60000, 120000):
        hole = np.zeros(image.shape[:2], np.uint8)
        b = int(round(np.sqrt(area / (np.pi * 1.33))))  # a 4:3 upright ellipse, like a standing person
        cv2.ellipse(hole, (320, 240), (b, int(round(1.33 * b))), 0, 0, 360, 1, -1)
        n = int(hole.sum())
        ms = cpu_ms(inpaint_holes, image, hole, fill="patchmatch")
        row = f"| {n} | {ms:.1f} | {ms * 1e6 / n:.0f} |"
        if with_reference:
            with reference():
                row += f" {cpu_ms(inpaint_holes, image, hole, fill='patchmatch', repeats=1):.0f} |"
        row += f" {cpu_ms(inpaint_holes, image, hole, fill='telea'):.1f} |"
        print(row)


def whole_runs(data, target, rounds, with_reference):
    ann = os.path.join(data, "coco_tiny", "annotations", "instances_val2017.json")
    folder = os.path.join(data, "coco_tiny", "val2017")
    rows = {"floor": [], "telea": [], "patchmatch": []}
    if with_reference:
        rows["patchmatch (pypatchmatch)"] = []
    bench.CLOCK = clock = time.process_time  # CPU time: the machine is shared (the floor reads bench.CLOCK)
    with tempfile.TemporaryDirectory() as tmp:
        bench.smplus_ms(ann, folder, target, os.path.join(tmp, "warm"), fill="patchmatch")  # numba kernels loaded
        for r in range(rounds):
            rows["floor"].append(bench.floor_ms(ann, folder))
            rows["telea"].append(bench.smplus_ms(ann, folder, target, os.path.join(tmp, "t"), fill="telea", clock=clock))
            rows["patchmatch"].append(bench.smplus_ms(ann, folder, target, os.path.join(tmp, "p"), fill="patchmatch", clock=clock))
            if with_reference and r == 0:  # one round: it takes minutes
                with reference():
                    rows["patchmatch (pypatchmatch)"].append(
                        bench.smplus_ms(ann, folder, target, os.path.join(tmp, "r"), fill="patchmatch", clock=clock))
    floor = np.median(rows["floor"])
    print(f"| run (coco_tiny val2017, 80 images, MSM+ PSI 0.4, 1 worker) | ms per image, median of {rounds} "
          "(range) | ratio to the floor |")
    print("|---|---|---|")
    for name, v in rows.items():
        print(f"| {name} | {np.median(v):.1f} ({min(v):.1f}-{max(v):.1f}) | {np.median(v) / floor:.1f}x |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DATA, help="folder holding coco_tiny/ and tinyperson_like/")
    ap.add_argument("--target", default=None)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-reference", action="store_true", help="skip pypatchmatch")
    args = ap.parse_args()
    target = args.target or os.path.join(args.data, "tinyperson_like", "tiny_set_train_like.json")
    try:
        import patchmatch  # noqa: F401
        with_reference = not args.no_reference
    except ImportError:
        with_reference = False
    by_hole_size(args.data, with_reference)
    print()
    whole_runs(args.data, target, args.rounds, with_reference)


if __name__ == "__main__":
    main()
