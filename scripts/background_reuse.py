"""How often a new background's erasure (and decode) is reused (render.ERASED), and how often it could be.

    python scripts/background_reuse.py [--source ANN --images DIR] [--target T] [--dry-run] [--fill F]

Runs smplus (default options, one worker, in this process) on the source and prints:
- new-background images, the distinct backgrounds they draw, draws per background
  (from the output's provenance): with every image of one background rendered by
  the worker that keeps it, a background is erased once, so at most
  1 - distinct / draws of the erasures are saved;
- the new backgrounds filled and reused by the run (render.ERASED's counters: a background kept
  is neither decoded nor erased again; one with nothing to erase is kept too, for its decode),
  and the images the run decoded (source and backgrounds) against one decode per source and
  one per draw of a new background.
With --dry-run only the first part (for a COCO-size source: no pixels).
"""

import argparse
import collections
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA = next((p for p in (os.path.join(ROOT, "..", "shared", "data"), os.path.join(ROOT, "..", "..", "shared", "data"))
             if os.path.isdir(p)), os.path.join(ROOT, "..", "shared", "data"))

from smplus import render, task  # noqa: E402
from smplus.pipeline import RunOptions, transform  # noqa: E402
from smplus.plan import TransformOptions  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=os.path.join(DATA, "coco_tiny", "annotations", "instances_val2017.json"))
    ap.add_argument("--images", default=os.path.join(DATA, "coco_tiny", "val2017"))
    ap.add_argument("--target", default=os.path.join(DATA, "tinyperson_like", "tiny_set_train_like.json"))
    ap.add_argument("--fill", default=None, help="default: smplus's")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    options = TransformOptions(**({"fill": args.fill} if args.fill else {}))
    decoded = []

    def counted(f):
        def call(*a, **k):
            decoded.append(1)
            return f(*a, **k)
        return call

    task.decode_image, task.read_image = counted(task.decode_image), counted(task.read_image)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        transform(args.source, args.images, out, target=args.target, options=options,
                  run=RunOptions(progress=False, workers=1, dry_run=args.dry_run))
        with open(os.path.join(out, "annotations.json")) as f:
            images = json.load(f)["images"]
    draws = collections.Counter(im["smplus"]["background_image_id"] for im in images
                                if im["smplus"]["background"] == "new")
    n = sum(draws.values())
    print(f"{len(images)} images; {n} on a new background, drawing {len(draws)} distinct backgrounds: "
          f"{n / max(1, len(draws)):.2f} draws per background (at most {1 - len(draws) / max(1, n):.0%} of "
          f"the erasures saved)")
    if not args.dry_run:
        e = render.ERASED
        print(f"this run: {e.misses} new backgrounds decoded and erased, {e.hits} reused "
              f"({e.hits / max(1, e.hits + e.misses):.0%} of {e.hits + e.misses}); {len(decoded)} images decoded, "
              f"against {len(images) + n} for a decode per source and per draw")


if __name__ == "__main__":
    main()
