"""Closed-loop placement's first guess: placements per instance and convergence, by first guess.

    python scripts/placement_guess.py [--source ANN --images DIR --target T]

One SM+ run (MSM+, PSI p=0.4, --fill telea, one worker) records every instance's matte and plan;
then render.place_at_size's loop is replayed on each from two first guesses: the planned scale, and
the planned size over the matte's own size (its box by the output rule, in source px), which
place_at_size uses. Rows: mean placements per instance, their histogram, share within SIZE_AIM.
"""

import argparse
import math
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA = next((d for d in (os.path.join(ROOT, "..", "shared", "data"), os.path.join(ROOT, "..", "..", "shared", "data"))
             if os.path.isdir(d)), os.path.join(ROOT, "..", "shared", "data"))  # beside the checkout, or a worktree's

import numpy as np  # noqa: E402


def replay(m, scale, size, src_point, out_point, guess):
    """place_at_size's loop from the first guess `guess` ("planned" or "own"): (placements, best error)."""
    import smplus.render as render
    from smplus.separate import warp_alpha

    limit = render.PLACE_GROWTH * max(scale, 1.0)
    own = render.placed_size(m.premult[..., 3])
    if guess == "own" and own is not None:
        scale = min(size / (own / math.sqrt(m.sx * m.sy)), max(scale, 1.0))
    tried, best = [], math.inf
    while True:
        measured = render.placed_size(warp_alpha(m, scale, src_point, out_point)[2])
        error = abs(measured / size - 1.0) if measured else math.inf
        best = min(best, error)
        if error <= render.SIZE_AIM or len(tried) + 1 == render.PLACE_ROUNDS or (measured is None and scale >= 1.0):
            return len(tried) + 1, best
        tried.append((scale, measured or 0.0))
        scale = render._corrected_scale(tried, size, limit)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=os.path.join(DATA, "coco_tiny", "annotations", "instances_val2017.json"))
    ap.add_argument("--images", default=os.path.join(DATA, "coco_tiny", "val2017"))
    ap.add_argument("--target", default=os.path.join(DATA, "tinyperson_like", "tiny_set_train_like.json"))
    args = ap.parse_args()
    import smplus.render as render
    from smplus.matting import warm_up
    from smplus.pipeline import RunOptions, transform
    from smplus.plan import TransformOptions

    warm_up()
    seen, real = [], render.place_at_size

    def recorded(m, scale, size, src_point, out_point):
        seen.append((m, scale, size, src_point, out_point))
        return real(m, scale, size, src_point, out_point)

    render.place_at_size = recorded
    try:
        transform(args.source, args.images, tempfile.mkdtemp(prefix="smplus-guess-"), args.target,
                  options=TransformOptions(mode="msm", psi_p=0.4, fill="telea"),
                  run=RunOptions(workers=1, progress=False, overwrite=True))
    finally:
        render.place_at_size = real
    print(f"\n{len(seen)} instances\n")
    print("| first guess | placements per instance | histogram (1, 2, 3, ...) | within SIZE_AIM | within SIZE_TOLERANCE |")
    print("|---|---|---|---|---|")
    for guess, label in (("planned", "the planned scale"), ("own", "planned size / the matte's own size")):
        r = np.array([replay(*s, guess) for s in seen])
        print(f"| {label} | {r[:, 0].mean():.2f} | {' '.join(map(str, np.bincount(r[:, 0].astype(int))[1:]))} | "
              f"{np.mean(r[:, 1] <= render.SIZE_AIM):.1%} | {np.mean(r[:, 1] <= render.SIZE_TOLERANCE):.1%} |")


if __name__ == "__main__":
    main()
