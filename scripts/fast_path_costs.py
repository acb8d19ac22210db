"""What the fast path's remaining costs follow, and what cheaper settings would change (docs/performance.md).

    python scripts/fast_path_costs.py [--what telea|cg|guess] [--source ANN --images DIR --target T]

One SM+ run (MSM+, PSI p=0.4, --fill telea, one worker) on coco_tiny val2017 records the inputs of
the step measured, then replays them:

- telea: every cv2.inpaint call (Telea, at the fill's reduced resolution, in the box of each group of
  holes): its time (best of 3) against its hole pixels and its image pixels: what a tighter crop
  around the holes could save;
- cg: every instance's matte (closed-form alpha, conjugate gradients to a relative residual of 1e-6,
  matting.RTOL before it was 1e-4) against looser tolerances: time of the matting kernel, largest alpha
  and colour differences;
- guess: closed-loop placement's first try (the planned size over the matte's own size): the size it
  gives against the plan, by planned size, and how many land within SIZE_AIM.
"""

import argparse
import math
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
DATA = next((d for d in (os.path.join(ROOT, "..", "shared", "data"), os.path.join(ROOT, "..", "..", "shared", "data"))
             if os.path.isdir(d)), os.path.join(ROOT, "..", "shared", "data"))  # beside the checkout, or a worktree's

import numpy as np  # noqa: E402

REFERENCE = 1e-6  # --what cg
BINS = [(0, 8), (8, 12), (12, 16), (16, 24), (24, 32), (32, 64), (64, math.inf)]


def recorded(module, name, args):
    """The arguments of every call of module.name during one run."""
    from bench import smplus_run

    seen, real = [], getattr(module, name)

    def record(*a, **k):
        seen.append((a, k))
        return real(*a, **k)
    setattr(module, name, record)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            smplus_run(args.source, args.images, args.target, os.path.join(tmp, "out"))
    finally:
        setattr(module, name, real)
    return seen


def telea(args):
    import cv2

    cv2.setNumThreads(1)
    calls = recorded(cv2, "inpaint", args)
    rows = []
    for (image, hole, radius, flags), _ in calls:
        best = math.inf
        for _ in range(3):
            t = time.process_time()
            cv2.inpaint(image, hole, radius, flags)
            best = min(best, time.process_time() - t)
        rows.append((int(np.count_nonzero(hole)), hole.size, best * 1e6))
    r = np.array(rows, float)
    per_hole = r[:, 2].sum() / r[:, 0].sum()
    fit = np.linalg.lstsq(np.c_[r[:, 0], r[:, 1] - r[:, 0], np.ones(len(r))], r[:, 2], rcond=None)[0]
    print(f"{len(r)} cv2.inpaint calls: {r[:, 2].sum() / 1000:.1f} ms; {per_hole:.2f} us per hole pixel overall")
    print(f"least squares: {fit[0]:.3f} us per hole pixel + {fit[1]:.4f} us per known pixel + {fit[2]:.0f} us per call")
    print(f"hole share of the inpainted image: median {np.median(r[:, 0] / r[:, 1]):.0%}")


def cg(args):
    from bench import matting_problems

    from smplus import matting as M
    from smplus.separate import instance_trimap

    M.warm_up()
    with tempfile.TemporaryDirectory() as tmp:
        problems = matting_problems(args.source, args.images, args.target, os.path.join(tmp, "out"))
    cases = []
    for crop, soft, band in problems:
        trimap = instance_trimap(soft, band)
        cases.append((np.ascontiguousarray(crop, np.uint8), np.zeros((0, 0)) if trimap is None else trimap,
                      np.ascontiguousarray(soft, np.float32)))

    def run(rtol):
        t = time.process_time()
        out = [M._premultiplied(c, t_, s, M.EPSILON, rtol, M.MAX_ITER, M.FG_ITERATIONS, M.FG_REGULARIZATION,
                                M.FG_GRADIENT_WEIGHT) for c, t_, s in cases]
        return out, time.process_time() - t
    run(REFERENCE)
    print(f"{len(cases)} instances; matting kernel time against a tolerance of {REFERENCE:g}, interleaved, best of 3")
    print("| tolerance | time | max alpha difference | max colour difference (of 255) |")
    print("|---|---|---|---|")
    for rtol in (1e-5, 1e-4, 1e-3):
        ratios = []
        for _ in range(3):
            ref, t0 = run(REFERENCE)
            got, t1 = run(rtol)
            ratios.append(t1 / t0)
        da = max(float(np.abs(a[..., 3] - b[..., 3]).max()) for a, b in zip(ref, got))
        dc = max(float(np.abs(a[..., :3] - b[..., :3]).max()) for a, b in zip(ref, got))
        print(f"| {rtol:g} | {min(ratios):.2f}x | {da:.3f} | {dc:.1f} |")


def guess(args):
    import smplus.render as render
    from smplus.matting import warm_up
    from smplus.separate import warp_alpha

    warm_up()
    rows = []
    for (m, scale, size, src_point, out_point), _ in recorded(render, "place_at_size", args):
        own = render.placed_size(m.premult[..., 3])
        if own is None:
            continue
        first = min(size / (own / math.sqrt(m.sx * m.sy)), max(scale, 1.0))
        measured = render.placed_size(warp_alpha(m, first, src_point, out_point)[2])
        if measured is not None:
            rows.append((size, measured))
    r = np.array(rows)
    error = r[:, 1] / r[:, 0] - 1.0
    print(f"{len(r)} placements; first try within SIZE_AIM ({render.SIZE_AIM:.1%}): {np.mean(abs(error) <= render.SIZE_AIM):.0%}")
    print("| planned size (px) | instances | size error: median (quartiles) | in px: median |")
    print("|---|---|---|---|")
    for lo, hi in BINS:
        k = (r[:, 0] >= lo) & (r[:, 0] < hi)
        if k.any():
            q1, q2, q3 = np.percentile(error[k], [25, 50, 75])
            print(f"| {lo}-{hi if hi < math.inf else ''} | {k.sum()} | {q2:+.2%} ({q1:+.2%} .. {q3:+.2%}) | "
                  f"{np.median(r[k, 1] - r[k, 0]):+.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=os.path.join(DATA, "coco_tiny", "annotations", "instances_val2017.json"))
    ap.add_argument("--images", default=os.path.join(DATA, "coco_tiny", "val2017"))
    ap.add_argument("--target", default=os.path.join(DATA, "tinyperson_like", "tiny_set_train_like.json"))
    ap.add_argument("--what", choices=("telea", "cg", "guess"), default="telea")
    args = ap.parse_args()
    {"telea": telea, "cg": cg, "guess": guess}[args.what](args)


if __name__ == "__main__":
    main()
