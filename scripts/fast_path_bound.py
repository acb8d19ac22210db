"""How close the fast path could come to the decode+encode floor if its Python were free.

    python scripts/fast_path_bound.py [--rounds 3] [--fill telea] [--source ANN --images DIR --target T]

One-worker SM+ runs (MSM+, PSI p=0.4, `--fill`, default telea) on coco_tiny val2017 under
cProfile, each beside the floor of the same images (decode + encode, JPEG q95) in the same
process. From each profile, the time spent inside the native calls that do the pixel work:

- image I/O: reading the files, decoding and encoding them (OpenCV / libjpeg);
- OpenCV's image operations: resizes, blurs, warps, morphology, Telea, colour conversions, ...;
- the numba kernels (matting, the render kernels, PatchMatch);
- pycocotools' mask code (RLE encode, decode, merge, area).

Everything else -- Python, and numpy's calls on small arrays -- is what one compiled pass per
image (separate, matte, place, grain, paste) could at best remove. So the native sum is a lower
bound on such a redesign, as long as the same pixel work is done: its ratio to the floor says
whether a goal (e.g. 3x) can be met by removing overhead, or only by doing less work.
The profiler's own cost falls on the Python calls, not on these (a few hundred native calls an
image), so the bound is not inflated by it. Rows: medians of the rounds, ms per image.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import ROOT, SHARED, floor_ms, smplus_run  # noqa: E402

sys.path.insert(0, ROOT)

# Native functions (cProfile names them "<built-in method NAME>" / "<method 'NAME' ...>") by group.
IO = {"imdecode", "imencode", "fromfile"}
OPENCV = {"resize", "GaussianBlur", "warpAffine", "inpaint", "dilate", "erode", "blur", "boxFilter", "cvtColor",
          "copyMakeBorder", "findContours", "boundingRect", "blendLinear", "distanceTransform", "medianBlur",
          "filter2D", "sepFilter2D", "remap", "connectedComponents", "connectedComponentsWithStats",
          "morphologyEx", "fillPoly", "getStructuringElement", "threshold", "addWeighted", "LUT"}
COCO = {"encode", "decode", "merge", "area", "toBbox", "frPyObjects", "frPoly", "frBbox", "iou"}


def numba_kernels():
    """(file, function name) of the numba-compiled functions of the smplus modules loaded."""
    from numba.core.registry import CPUDispatcher

    found = set()
    for name, module in list(sys.modules.items()):
        if name != "smplus" and not name.startswith("smplus."):
            continue
        for value in vars(module).values():
            if isinstance(value, CPUDispatcher):
                code = value.py_func.__code__
                found.add((code.co_filename, code.co_name))
    return found


def native_ms(stats: pstats.Stats, kernels, images: int):
    """ms per image inside the native calls, by group, and by function."""
    groups, by_function = {"image I/O": 0.0, "OpenCV": 0.0, "numba kernels": 0.0, "pycocotools": 0.0}, {}
    for (filename, _, name), (_, _, tottime, _, _) in stats.stats.items():
        group = label = None
        if (filename, name) in kernels:
            group, label = "numba kernels", name
        elif filename == "~" and not name.startswith("<method "):  # "<resize>", "<built-in method numpy.fromfile>"
            label = name.strip("<>").replace("built-in method ", "").rsplit(".", 1)[-1]
            group = "image I/O" if label in IO else "OpenCV" if label in OPENCV else None
        elif "pycocotools" in filename and name in COCO:  # its wrappers: their time is the Cython calls'
            group, label = "pycocotools", f"pycocotools {name}"
        if group:
            ms = tottime * 1000 / images
            groups[group] += ms
            by_function[label] = by_function.get(label, 0.0) + ms
    return groups, by_function


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    base = os.path.join(SHARED, "coco_tiny")
    ap.add_argument("--source", default=os.path.join(base, "annotations", "instances_val2017.json"))
    ap.add_argument("--images", default=os.path.join(base, "val2017"))
    ap.add_argument("--target", default=os.path.join(SHARED, "tinyperson_like", "tiny_set_train_like.json"))
    ap.add_argument("--fill", default="telea")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from smplus import render
    from smplus.matting import warm_up

    warm_up()  # numba's kernels loaded (or compiled) before anything is timed

    floors, runs, groups, functions = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        smplus_run(args.source, args.images, args.target, os.path.join(tmp, "warm"), fill=args.fill)  # file caches warm
        kernels = numba_kernels()  # (every module the run uses is loaded now)
        for _ in range(args.rounds):
            floors.append(floor_ms(args.source, args.images))
            render.ERASED = render.ErasedBackgrounds()  # as a fresh process starts: nothing kept from the last run
            profile = cProfile.Profile()
            profile.enable()
            seconds, images = smplus_run(args.source, args.images, args.target, os.path.join(tmp, "out"), fill=args.fill)
            profile.disable()
            runs.append(seconds * 1000 / images)
            g, f = native_ms(pstats.Stats(profile), kernels, images)
            groups.append(g)
            functions.append(f)
    floor = statistics.median(floors)
    med = {k: statistics.median(g[k] for g in groups) for k in groups[0]}
    total = statistics.median(sum(g.values()) for g in groups)
    print(f"{args.source}: one worker, MSM+, PSI p=0.4, --fill {args.fill}; median of {args.rounds} rounds, ms/img\n")
    print("| | ms/img | x floor |")
    print("|---|---|---|")
    print(f"| floor: decode + encode of the same images | {floor:.2f} | 1.00 |")
    for k, v in med.items():
        print(f"| native: {k} | {v:.2f} | {v / floor:.2f} |")
    print(f"| **native work, all** (the bound of a compiled redesign doing the same work) | **{total:.2f}** | "
          f"**{total / floor:.2f}** |")
    run = statistics.median(runs)
    print(f"| the run under the profiler (its Python slowed by it) | {run:.2f} | {run / floor:.2f} |")
    print("\nlargest native calls (ms/img, median):")
    names = sorted({n for f in functions for n in f}, key=lambda n: -statistics.median(f.get(n, 0.0) for f in functions))
    for n in names[:14]:
        print(f"  {n}: {statistics.median(f.get(n, 0.0) for f in functions):.2f}")


if __name__ == "__main__":
    main()
