"""Where the fast fill's time goes, and what the hole mask's dilation in strips saves (docs/fills.md).

    python scripts/fill_overhead.py [--what steps|dilate|journal|labels|replay] [--source ANN --images DIR --target T]
                                    [--repeat N] [--baseline CHECKOUT]

One SM+ run (MSM+, PSI p=0.4, one worker) on coco_tiny val2017 records every render.fill call (the image
and the masks it fills), then replays them on their own, on this process's CPU clock (best of --repeat):

- steps (--fill telea): ms per call of render.fill, and of each OpenCV / pycocotools call inside it, by
  the function of smplus.background that makes it; the rest is Python and numpy;
- dilate (--fill telea and the default): per radius, cv2.dilate with the ellipse against
  background.dilate_disc on the same groups of holes (the masks' union in each box hole_mask dilates);
  then per fill, the dilation's ms per call both ways at the radii that fill uses;
- journal: the wall time of one journal commit (fsync'd) on this machine's temporary directory (give
  --out-dir for OUT's file system), and the share of a run's wall time the render loop waits on commits
  made every journal.COMMIT_SECONDS and every 2 s;
- labels: the runs that keep labels in place, cp+ and --categories person (--fill telea, one worker), CPU
  ms per image for this checkout and --baseline's, each run in a fresh process, interleaved; the median
  of --repeat rounds (their range);
- replay: the render.fill calls of a --fill telea run replayed by this checkout's smplus and by --baseline's,
  each in a fresh process, alternated --repeat times: CPU ms a call (best of 3 passes in each process), and
  whether both gave the same bytes.
"""

import argparse
import collections
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


def recorded_fills(args, fill):
    """(image, rles, max_hole, method) of every render.fill call in one run with `fill`."""
    from bench import smplus_run

    import smplus.render as render

    seen, real = [], render.fill

    def record(image, rles, max_hole=1.0, method="patchmatch", **k):
        seen.append((image.copy(), list(rles), max_hole, method))
        return real(image, rles, max_hole, method, **k)
    render.fill = record
    try:
        with tempfile.TemporaryDirectory() as tmp:
            smplus_run(args.source, args.images, args.target, os.path.join(tmp, "out"), fill=fill)
    finally:
        render.fill = real
    return seen


def replay(calls):
    from smplus.render import UnfillableHoles, fill

    for image, rles, max_hole, method in calls:
        try:
            fill(image, rles, max_hole, method)
        except UnfillableHoles:
            pass


class _Timed:
    """A module (cv2, pycocotools.mask) whose calls add their CPU time to `spent`, keyed by callee and caller."""

    def __init__(self, module, spent):
        self._module, self._spent = module, spent

    def __getattr__(self, name):
        f = getattr(self._module, name)
        if not callable(f) or isinstance(f, type):
            return f

        def call(*a, **k):
            key = (name, sys._getframe(1).f_code.co_name)
            t = time.process_time()
            try:
                return f(*a, **k)
            finally:
                self._spent[key] += time.process_time() - t
        return call


def steps(args):
    import cv2
    from pycocotools import mask as mask_utils

    import smplus.background as bg

    calls = recorded_fills(args, "telea")
    best, spent = float("inf"), None
    for _ in range(args.repeat):
        round_spent = collections.Counter()
        bg.cv2, bg.mask_utils = _Timed(cv2, round_spent), _Timed(mask_utils, round_spent)
        try:
            t = time.process_time()
            replay(calls)
            total = time.process_time() - t
        finally:
            bg.cv2, bg.mask_utils = cv2, mask_utils
        if total < best:
            best, spent = total, round_spent
    n = len(calls)
    print(f"\n{n} render.fill calls (--fill telea), {best * 1000 / n:.2f} ms a call (CPU, best of {args.repeat}; "
          f"timers on)\n")
    print("| call (in) | ms a call | share |")
    print("|---|---|---|")
    for (name, caller), s in spent.most_common():
        if s * 1000 / n >= 0.01:
            print(f"| {name} ({caller}) | {s * 1000 / n:.2f} | {s / best:.0%} |")
    rest = best - sum(spent.values())
    print(f"| the rest: Python and numpy | {rest * 1000 / n:.2f} | {rest / best:.0%} |")


def dilate(args):
    import cv2
    from pycocotools import mask as mask_utils

    from smplus.background import DEFAULT_FILL, _regions, dilate_disc, dilation_radius

    def unions(calls, r_of):
        for image, rles, _, method in calls:
            if rles:
                r = r_of(rles, method)
                union = mask_utils.decode(mask_utils.merge(rles, intersect=False))
                for roi in _regions(mask_utils.toBbox(rles).astype(int), r, image.shape):
                    yield r, np.ascontiguousarray(union[roi])

    def both(r, masks):
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        t_cv = t_strips = float("inf")
        for _ in range(args.repeat):
            t = time.process_time()
            for m in masks:
                cv2.dilate(m, kernel)
            t_cv = min(t_cv, time.process_time() - t)
            t = time.process_time()
            for m in masks:
                dilate_disc(m, r)
            t_strips = min(t_strips, time.process_time() - t)
        return t_cv, t_strips

    cv2.setNumThreads(1)
    per_fill = {fill: recorded_fills(args, fill) for fill in ("telea", DEFAULT_FILL)}
    masks = [m for calls in per_fill.values() for _, m in unions(calls, dilation_radius)]
    print(f"\n{len(masks)} groups of holes (both fills); cv2.dilate's time over dilate_disc's, same masks, "
          f"best of {args.repeat}\n")
    print("| radius px | " + " | ".join(str(r) for r in (3, 4, 6, 7, 8, 10, 12, 16, 24)) + " |")
    print("|---|" + "---|" * 9)
    ratios = []
    for r in (3, 4, 6, 7, 8, 10, 12, 16, 24):
        t_cv, t_strips = both(r, masks)
        ratios.append(f"{t_cv / t_strips:.2f}x")
    print("| cv2.dilate / dilate_disc | " + " | ".join(ratios) + " |")
    print("\n| fill | calls | radius px (10/50/90 %) | dilation ms a call: cv2.dilate | dilate_disc |")
    print("|---|---|---|---|---|")
    for fill, calls in per_fill.items():
        groups = collections.defaultdict(list)
        radii = []
        for _, rles, _, method in calls:
            if rles:
                radii.append(dilation_radius(rles, method))
        for r, m in unions(calls, dilation_radius):
            groups[r].append(m)
        t_cv = t_strips = 0.0
        for r, ms in groups.items():
            a, b = both(r, ms)
            t_cv, t_strips = t_cv + a, t_strips + b
        n = max(len(calls), 1)
        p = np.percentile(radii, [10, 50, 90]).astype(int) if radii else ["-"] * 3
        print(f"| {fill} | {len(calls)} | {p[0]} / {p[1]} / {p[2]} | {t_cv * 1000 / n:.2f} | {t_strips * 1000 / n:.2f} |")


def journal(args):
    from smplus.journal import COMMIT_SECONDS, Journal

    entry = b'{"image_id": 1, "annotations": [' + b", ".join([b'{"bbox": [1.5, 2.5, 3.0, 4.0]}'] * 10) + b"]}"
    with tempfile.TemporaryDirectory(dir=args.out_dir) as tmp, Journal(tmp) as j:
        walls = []
        for k in range(30):
            j._pending.extend((k * 20 + i, 1, entry) for i in range(20))  # ~20 images a commit
            t = time.perf_counter()
            j.commit()
            walls.append(time.perf_counter() - t)
    ms = float(np.median(walls)) * 1000
    print(f"\none journal commit: {ms:.1f} ms wall (median of 30; p90 {np.percentile(walls, 90) * 1000:.1f} ms)")
    for every in (COMMIT_SECONDS, 2.0):
        print(f"committing every {every} s: the render loop waits {ms / (every * 1000 + ms):.1%} of a run's wall time")


LABELS_RUN = """
import sys, tempfile, time
sys.path.insert(0, sys.argv[1])
import cv2
cv2.setNumThreads(1)
from smplus.matting import warm_up
warm_up()
from smplus.pipeline import RunOptions, transform
from smplus.plan import TransformOptions
extra = {"categories": (1,)} if sys.argv[6] == "categories" else {"mode": "cp+"}
with tempfile.TemporaryDirectory() as tmp:
    t = time.process_time()
    rep = transform(sys.argv[2], sys.argv[3], tmp + "/out", sys.argv[4], run=RunOptions(workers=1, progress=False,
                    allow_skips=True), options=TransformOptions(fill=sys.argv[5], **extra)).report
    print((time.process_time() - t) * 1000 / rep["counts"]["images"])
"""


def labels(args):
    import subprocess

    checkouts = [("this checkout", ROOT)] + ([("baseline", os.path.abspath(args.baseline))] if args.baseline else [])
    runs = [(name, root, kind) for kind in ("cp+", "categories") for name, root in checkouts]
    ms = {r: [] for r in runs}
    for k in range(args.repeat):
        for r in runs if k % 2 == 0 else runs[::-1]:
            out = subprocess.run([sys.executable, "-c", LABELS_RUN, r[1], args.source, args.images, args.target, "telea",
                                  r[2]], capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{r} failed:\n{out.stderr.strip()}")
            ms[r].append(float(out.stdout.split()[-1]))
    print(f"\none worker, --fill telea, CPU ms per image, median of {args.repeat} rounds (range)\n")
    print("| run | " + " | ".join(name for name, _ in checkouts) + " |")
    print("|---|" + "---|" * len(checkouts))
    for kind, label in (("cp+", "--mode cp+"), ("categories", "--categories person")):
        cells = [f"{np.median(ms[(n, r, kind)]):.1f} ({min(ms[(n, r, kind)]):.1f}-{max(ms[(n, r, kind)]):.1f})"
                 for n, r in checkouts]
        print(f"| {label} | " + " | ".join(cells) + " |")


REPLAY_RUN = """
import hashlib, pickle, sys, time
sys.path.insert(0, sys.argv[1])
import cv2
cv2.setNumThreads(1)
from smplus.render import UnfillableHoles, fill
calls = pickle.load(open(sys.argv[2], "rb"))
digest, best = hashlib.sha1(), float("inf")
for k in range(4):
    t = time.process_time()
    for image, rles, max_hole, method in calls:
        try:
            out = fill(image, rles, max_hole, method)
        except UnfillableHoles as e:
            out = (e.reason, e.fraction)
        if k == 0:
            digest.update(out[0].tobytes() if hasattr(out[0], "tobytes") else repr(out).encode())
            digest.update(repr(out[1]).encode())
    if k:  # the first pass also hashes
        best = min(best, time.process_time() - t)
print(best * 1000 / len(calls), digest.hexdigest())
"""


def replay_ab(args):
    import pickle
    import subprocess

    checkouts = [("this checkout", ROOT)] + ([("baseline", os.path.abspath(args.baseline))] if args.baseline else [])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "calls.pickle")
        with open(path, "wb") as f:
            pickle.dump(recorded_fills(args, "telea"), f)
        ms, digests = {name: [] for name, _ in checkouts}, set()
        for k in range(args.repeat):
            for name, root in checkouts if k % 2 == 0 else checkouts[::-1]:
                out = subprocess.run([sys.executable, "-c", REPLAY_RUN, root, path], capture_output=True, text=True)
                if out.returncode:
                    sys.exit(f"{root} failed:\n{out.stderr.strip()}")
                value, digest = out.stdout.split()[-2:]
                ms[name].append(float(value))
                digests.add(digest)
    print(f"\nrender.fill calls of a --fill telea run, replayed; CPU ms a call, {args.repeat} alternations: "
          f"median (range); same bytes: {'yes' if len(digests) == 1 else 'NO'}\n")
    for name, _ in checkouts:
        print(f"| {name} | {np.median(ms[name]):.2f} ({min(ms[name]):.2f}-{max(ms[name]):.2f}) |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--what", choices=("steps", "dilate", "journal", "labels", "replay"), default="steps")
    ap.add_argument("--baseline", metavar="CHECKOUT", help="--what labels, replay: also another checkout, interleaved")
    ap.add_argument("--out-dir", help="--what journal: commit in a temporary directory here (default: the system's)")
    ap.add_argument("--source", default=os.path.join(DATA, "coco_tiny", "annotations", "instances_val2017.json"))
    ap.add_argument("--images", default=os.path.join(DATA, "coco_tiny", "val2017"))
    ap.add_argument("--target", default=os.path.join(DATA, "tinyperson_like", "tiny_set_train_like.json"))
    ap.add_argument("--repeat", type=int, default=3, help="replays; each row is the best (default 3)")
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(1)  # as a worker runs
    {"steps": steps, "dilate": dilate, "journal": journal, "labels": labels, "replay": replay_ab}[args.what](args)


if __name__ == "__main__":
    main()
