"""What the patchmatch fill costs: per hole size, and in a whole default run against the I/O floor.

    python scripts/fill_cost.py [--data DIR] [--rounds 2] [--no-reference]
    python scripts/fill_cost.py --boxes [--compare OLD_PATCHMATCH_PY] [--images 560]

1. Cost vs hole size: an elliptical hole of growing area in the middle of a
   coco_tiny val2017 image (scaled to 640 x 480), filled by `inpaint_holes(...,
   fill=...)`: smplus's PatchMatch, pypatchmatch (the box filler it replaced,
   if installed) and Telea; CPU ms (process time, so other jobs on the machine
   count less), the best of 3.
2. A whole run (scripts/bench.py's functions: MSM+, PSI p = 0.4, one worker,
   coco_tiny val2017) with `--fill telea` and the default fill, each as a ratio
   to the decode + encode floor of the same images, in interleaved rounds; CPU
   time of this process (one worker runs in it, its image writes included).

With --boxes instead: where the fill's time goes in a default run (MSM+, PSI
p = 0.4, one worker) on coco_tiny val2017 repeated to --images images (as
`scripts/bench.py --fills`): every box `patchmatch.complete` fills is recorded
with its CPU time and whether its image was inpainted or drew a new background
(whose matched objects and crowds are erased); then the distinct boxes, each
weighted by how often the run filled it, are filled again under cProfile (time
per kernel). With --compare FILE (a patchmatch.py of another version, e.g.
`git show 0213c1f:smplus/patchmatch.py > /tmp/old_patchmatch.py`), the same
weighted boxes filled by it and by this tree's, interleaved, in ms per image
of the run, and how many boxes come out byte-identical.
"""

import argparse
import collections
import contextlib
import cProfile
import hashlib
import importlib.util
import io
import os
import pstats
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


def record_boxes(data, target, images):
    """(kind, box, hole, CPU s) of every box `complete` fills in a default one-worker run of `images` images."""
    import smplus.render as render
    from smplus.matting import warm_up
    from smplus.pipeline import RunOptions, transform
    from smplus.plan import TransformOptions

    warm_up()
    own._warm_up()
    boxes, kind = [], [None]
    complete, render_image = own.complete, render.render_image

    def recorded(image, hole, seed=own.SEED):
        t = time.process_time()
        out = complete(image, hole, seed)
        boxes.append((kind[0], image.copy(), np.asarray(hole).copy(), time.process_time() - t))
        return out

    def which(plan, *a, **k):
        kind[0] = "new background (erasure)" if plan.background == "new" else "inpainted"
        return render_image(plan, *a, **k)

    with tempfile.TemporaryDirectory() as tmp:
        ann, folder, count = bench.repeated_set(os.path.join(data, "coco_tiny", "annotations", "instances_val2017.json"),
                                                os.path.join(data, "coco_tiny", "val2017"), images, tmp)
        own.complete, render.render_image = recorded, which  # the task module imports render_image at call time
        try:
            t = time.process_time()
            rep = transform(ann, folder, os.path.join(tmp, "out"), target, options=TransformOptions(mode="msm", psi_p=0.4),
                            run=RunOptions(workers=1, progress=False, overwrite=True, allow_skips=True)).report
            total = time.process_time() - t
        finally:
            own.complete, render.render_image = complete, render_image
    return boxes, total, rep["counts"]["images"]


def _load(path):
    """A patchmatch.py of another version as a module of this tree's package (its own numba cache)."""
    name = "smplus._pm_" + hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:10]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    module._warm_up()
    return module


def where_the_fill_goes(data, target, images, compare=None):
    boxes, total, count = record_boxes(data, target, images)
    fill = sum(b[3] for b in boxes)
    print(f"Default run, {count} images (coco_tiny val2017 repeated), one worker: {total * 1000 / count:.1f} ms CPU per image, "
          f"of which the PatchMatch boxes {fill * 1000 / count:.1f} ms ({len(boxes)} boxes)\n")
    print("| renders | boxes | hole px (median) | box px (median) | fill CPU, s | ms per image of the run |")
    print("|---|---|---|---|---|---|")
    for kind in ("inpainted", "new background (erasure)"):
        b = [x for x in boxes if x[0] == kind]
        if b:
            s = sum(x[3] for x in b)
            print(f"| {kind} | {len(b)} | {np.median([np.count_nonzero(x[2]) for x in b]):.0f} | "
                  f"{np.median([x[1].shape[0] * x[1].shape[1] for x in b]):.0f} | {s:.2f} | {s * 1000 / count:.1f} |")
    distinct = collections.Counter()
    first = {}
    for _kind, box, hole, _ in boxes:
        key = hashlib.sha1(box.tobytes() + hole.tobytes() + str(box.shape).encode()).hexdigest()
        distinct[key] += 1
        first.setdefault(key, (box, hole))
    weighted = [(first[k][0], first[k][1], n) for k, n in distinct.items()]
    print(f"\n{len(weighted)} distinct boxes (a repeated set draws the same backgrounds again); each refilled below "
          "as often as the run filled it.\n")
    profile = cProfile.Profile()
    profile.enable()
    for box, hole, n in weighted:
        for _ in range(n):
            own.complete(box, hole)
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(12)
    print("cProfile (tottime: time in the function itself):\n")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:4000])
    if compare:
        other = _load(compare)
        t_own = t_other = 0.0
        same = 0
        for r in range(2):  # interleaved, the order swapped each round
            for box, hole, n in weighted:
                for m in ((own, other) if r == 0 else (other, own)):
                    t = time.process_time()
                    for _ in range(n):
                        out = m.complete(box, hole)
                    dt = time.process_time() - t
                    if m is own:
                        t_own, mine = t_own + dt, out
                    else:
                        t_other, theirs = t_other + dt, out
                same += r == 0 and np.array_equal(mine, theirs)
        print(f"\n| patchmatch.py | ms CPU per image of the run (mean of 2 interleaved rounds) |\n|---|---|\n"
              f"| {compare} | {t_other * 500 / count:.1f} |\n| this tree | {t_own * 500 / count:.1f} ({t_own / t_other:.2f}x) |\n\n"
              f"byte-identical boxes: {same} of {len(weighted)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DATA, help="folder holding coco_tiny/ and tinyperson_like/")
    ap.add_argument("--target", default=None)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-reference", action="store_true", help="skip pypatchmatch")
    ap.add_argument("--boxes", action="store_true", help="only: where a default run's fill time goes (see above)")
    ap.add_argument("--images", type=int, default=560, help="with --boxes: images in the run (coco_tiny val repeated)")
    ap.add_argument("--compare", metavar="PATCHMATCH_PY", help="with --boxes: also another version's patchmatch.py")
    args = ap.parse_args()
    target = args.target or os.path.join(args.data, "tinyperson_like", "tiny_set_train_like.json")
    if args.boxes:
        where_the_fill_goes(args.data, target, args.images, args.compare)
        return
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
