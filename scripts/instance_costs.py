"""What the per-instance path costs, function by function, in microseconds per separated instance.

    python scripts/instance_costs.py [--images-min N] [--rounds R] [--baseline CHECKOUT]

A one-worker `transform` run (MSM+, PSI p=0.4, --fill telea) over coco_tiny val repeated to at least N
images (default 240), with a CPU-time timer around each function below (inclusive: a row contains the
rows indented under it). With --baseline, the same run of another checkout's smplus, each run in a
fresh process, the two interleaved in R rounds (default 3); each cell the median of the rounds.
Numba's one-time compile is excluded (the kernels are loaded before timing).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import CHECKOUT_CHILD  # noqa: E402

# (row, module, function): timed inclusively, in this order
ROWS = [
    ("separate (cut, resize, matte)", "smplus.render", "separate"),
    ("  mask in the crop window (coco.window_mask)", "smplus.separate", "window_mask"),
    ("  matting (separate.matte)", "smplus.separate", "matte"),
    ("    trimap (separate.instance_trimap)", "smplus.separate", "instance_trimap"),
    ("  frame hold (separate._hold_frame)", "smplus.separate", "_hold_frame"),
    ("placement (render.place_at_size)", "smplus.render", "place_at_size"),
    ("  alpha rounds (render.warp_alpha)", "smplus.render", "warp_alpha"),
    ("  colour of the round kept (render.warp_pasted)", "smplus.render", "warp_pasted"),
    ("frame edge (render.on_edge, its placements included)", "smplus.render", "on_edge"),
    ("clip to canvas (render._clip_to_canvas)", "smplus.render", "_clip_to_canvas"),
    ("grain (grain.Grain.match)", "smplus.grain", "Grain.match"),
    ("  level (grain.Grain.level)", "smplus.grain", "Grain.level"),
    ("    ring median (kernels.ring_median)", "smplus.grain", "ring_median"),
    ("composite (render._over)", "smplus.render", "_over"),
    ("occlusion (render._occlude)", "smplus.render", "_occlude"),
    ("annotation (render._measure)", "smplus.render", "_measure"),
    ("full-image RLE of each mask (render.instance_rle)", "smplus.render", "instance_rle"),
    ("render_image (the whole render, shared out per instance)", "smplus.render", "render_image"),
]

RUN = CHECKOUT_CHILD + """
import importlib
import instance_costs
spent, counts = {}, {}
def timed(f, key):
    def call(*a, **k):
        t = time.process_time()
        try:
            return f(*a, **k)
        finally:
            spent[key] = spent.get(key, 0.0) + time.process_time() - t
            counts[key] = counts.get(key, 0) + 1
    return call
for label, module, name in instance_costs.ROWS:
    owner = importlib.import_module(module)
    for part in name.split(".")[:-1]:
        owner = getattr(owner, part)
    attr = name.split(".")[-1]
    if hasattr(owner, attr):
        setattr(owner, attr, timed(getattr(owner, attr), label))
seconds, images = bench.smplus_run(sys.argv[3], sys.argv[4], sys.argv[6], sys.argv[5], clock=time.process_time)
print(json.dumps({"spent": spent, "counts": counts, "images": images, "seconds": seconds}))
"""


def main():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=os.path.join(bench.SHARED, "coco_tiny", "annotations", "instances_val2017.json"))
    ap.add_argument("--images", default=os.path.join(bench.SHARED, "coco_tiny", "val2017"))
    ap.add_argument("--target", default=os.path.join(bench.SHARED, "tinyperson_like", "tiny_set_train_like.json"))
    ap.add_argument("--images-min", type=int, default=240)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", metavar="CHECKOUT", help="also another checkout's smplus, interleaved")
    args = ap.parse_args()
    import numpy as np

    tmp = tempfile.mkdtemp(prefix="smplus-instance-costs-")
    try:
        ann, folder, count = bench.repeated_set(args.source, args.images, args.images_min, tmp)
        checkouts = [("this checkout", ROOT)] + ([("baseline", os.path.abspath(args.baseline))] if args.baseline else [])
        got = {name: [] for name, _ in checkouts}
        for k in range(args.rounds):
            for name, root in (checkouts if k % 2 == 0 else checkouts[::-1]):  # in turn first: no order bias
                out = subprocess.run([sys.executable, "-c", RUN, os.path.dirname(os.path.abspath(__file__)), root, ann, folder,
                                      os.path.join(tmp, "out"), args.target], capture_output=True, text=True)
                if out.returncode:
                    sys.exit(f"run ({root}) failed:\n{out.stderr.strip()}")
                got[name].append(json.loads(out.stdout.splitlines()[-1]))
        first = got["this checkout"][0]
        instances = first["counts"]["separate (cut, resize, matte)"]
        print(f"\n{count} images ({instances / first['images']:.1f} instances an image), one worker, MSM+, PSI p=0.4, "
              f"--fill telea; CPU time, us per instance, median of {args.rounds} rounds (range)"
              + (f"; baseline {args.baseline}" if args.baseline else "") + "\n")
        print("| function | calls per instance | " + " | ".join(name for name, _ in checkouts) + " |")
        print("|---|---|" + "---|" * len(checkouts))
        for label, _, _ in ROWS + [("whole run, ms per image", None, None)]:
            cells = []
            for name, _ in checkouts:
                if label.startswith("whole run"):
                    v = [r["seconds"] * 1000 / r["images"] for r in got[name]]
                else:
                    v = [r["spent"].get(label, 0.0) * 1e6 / r["counts"]["separate (cut, resize, matte)"] for r in got[name]]
                cells.append(f"{np.median(v):.1f} ({min(v):.1f}-{max(v):.1f})")
            calls = first["counts"].get(label, 0) / instances if label in first["counts"] else None
            print(f"| {label.strip()} | " + ("" if calls is None else f"{calls:.2f}") + " | " + " | ".join(cells) + " |")
        if args.baseline:  # each round's two runs ran one after the other: their ratio shares the round's load
            ratios = [a["spent"][ROWS[-1][0]] / a["counts"][ROWS[0][0]] / (b["spent"][ROWS[-1][0]] / b["counts"][ROWS[0][0]])
                      for a, b in zip(got["this checkout"], got["baseline"])]
            print(f"\nrender_image per instance, this checkout / baseline in the same round: median {np.median(ratios):.3f} "
                  f"({min(ratios):.3f}-{max(ratios):.3f})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
