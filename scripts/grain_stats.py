"""The measurements behind grain and sharpness matching (smplus/grain.py, separate.warp).

    python scripts/grain_stats.py [--images DIR] [--n N]

1. Photo grain: in the flattest 30 % of each photo (re-encoded as smplus writes it), the
   residual (luminance minus its blur at sigma 1) of luminance and chroma, its lag-1
   autocorrelation, and how the B, G, R residuals correlate; then the lag-1 autocorrelation
   of white noise blurred at several sigmas (grain.SPECTRUM_SIGMA is the one that matches).
2. Sharpness of the place chain (area to 3x the final size, prefilter, bilinear warp, at a
   random sub-pixel offset) against area averaging straight to the final size, as a ratio of
   mean |Laplacian|, for several prefilters (separate.PREFILTER).
3. Placement: the largest drift of a solid square's box centre from its planned fixed point,
   for several alpha prefilters (separate.ALPHA_PREFILTER; the tests allow 0.1 px).
"""

import argparse
import glob
import os
import sys

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED = "/work/shared/data" if not os.path.isdir(os.path.join(ROOT, "..", "shared")) else os.path.join(ROOT, "..", "shared", "data")

from smplus import separate  # noqa: E402
from smplus.coco import encode_image, mask_to_rle  # noqa: E402


def res(x, s=1.0):
    return x - cv2.GaussianBlur(x, (0, 0), s)


def lag1(r, mask=None):
    a, b = r[:, :-1], r[:, 1:]
    if mask is not None:
        m = mask[:, :-1] & mask[:, 1:]
        a, b = a[m], b[m]
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def photo_grain(paths):
    rows = []
    for p in paths:
        img = cv2.imread(p)
        img = cv2.imdecode(np.frombuffer(encode_image(img, p), np.uint8), cv2.IMREAD_COLOR).astype(np.float32)
        ycc = cv2.cvtColor(img, cv2.COLOR_BGR2YCrCb)
        lo = cv2.GaussianBlur(ycc[..., 0], (0, 0), 2)
        grad = cv2.magnitude(cv2.Sobel(lo, cv2.CV_32F, 1, 0), cv2.Sobel(lo, cv2.CV_32F, 0, 1))
        flat = grad < np.percentile(grad, 30)
        ry, rcr, rcb = (res(ycc[..., c]) for c in range(3))
        rb, rg, rr = (res(img[..., c]) for c in range(3))
        sigma = [1.4826 * np.median(np.abs(r[flat])) for r in (ry, rcr, rcb)]
        rows.append(sigma + [lag1(ry, flat), np.corrcoef(rb[flat], rg[flat])[0, 1], np.corrcoef(rr[flat], rg[flat])[0, 1]])
    r = np.median(np.array(rows), axis=0)
    print(f"photo grain, flattest 30 % of {len(paths)} photos (medians): residual std luminance {r[0]:.2f}, "
          f"Cr {r[1]:.2f}, Cb {r[2]:.2f}; lag-1 autocorrelation {r[3]:.3f}; B-G {r[4]:.2f}, R-G {r[5]:.2f}")
    rng = np.random.default_rng(0)
    cells = []
    for s in (0.0, 0.4, 0.5, 0.6, 0.7, 0.8):
        w = rng.standard_normal((300, 300)).astype(np.float32)
        if s:
            w = cv2.GaussianBlur(w, (0, 0), s)
        cells.append(f"{s}: {lag1(res(w)):.3f}")
    print("white noise blurred at sigma -> residual lag-1 autocorrelation: " + ", ".join(cells))


def chain_sharpness(paths, prefilters):
    def lap(x):
        g = cv2.cvtColor(x.astype(np.float32), cv2.COLOR_BGR2GRAY)
        return float(np.abs(cv2.Laplacian(g, cv2.CV_32F, ksize=1)).mean())

    saved = separate.ALPHA_PREFILTER, separate.PREFILTER
    rng = np.random.default_rng(0)
    print("place chain vs area averaging, mean |Laplacian| ratio (1: as sharp as a downscaled photo):")
    for k in prefilters:
        separate.ALPHA_PREFILTER = separate.PREFILTER = k
        ratios, diffs = [], []
        for p in paths:
            img = cv2.imread(p).astype(np.float32)
            for tot in (6, 12):
                H, W = (img.shape[0] // (tot * 4)) * tot * 4, (img.shape[1] // (tot * 4)) * tot * 4
                src = img[:H, :W]
                ref = cv2.resize(src, (W // tot, H // tot), interpolation=cv2.INTER_AREA)
                work = cv2.resize(src, (W * 3 // tot, H * 3 // tot), interpolation=cv2.INTER_AREA)
                m = separate.Matte(0, 0, 3.0 / tot, 3.0 / tot, np.dstack([work, np.ones(work.shape[:2], np.float32)]))
                dx, dy = rng.random(2)
                ox, oy, placed = separate.warp(m, 1.0 / tot, (0.0, 0.0), (dx, dy))
                out = placed[-oy:-oy + H // tot, -ox:-ox + W // tot, :3]
                ratios.append(lap(out[2:-2, 2:-2]) / lap(ref[2:-2, 2:-2]))
                ox, oy, placed = separate.warp(m, 1.0 / tot, (0.0, 0.0), (0.0, 0.0))  # aligned with ref
                out = placed[-oy:-oy + H // tot, -ox:-ox + W // tot, :3]
                diffs.append(float(np.abs(out[2:-2, 2:-2] - ref[2:-2, 2:-2]).mean()))
        print(f"  prefilter {k}: {np.mean(ratios):.3f}; mean |chain - area averaging| (aligned) {np.mean(diffs):.2f} of 255")
    separate.ALPHA_PREFILTER, separate.PREFILTER = saved


def fixed_point_drift(alpha_prefilters):
    from smplus.render import alpha_box, place_at_size

    image = np.full((120, 120, 3), 220, np.uint8)
    mask = np.zeros((120, 120), np.uint8)
    mask[30:70, 40:80] = 1
    image[mask > 0] = 20
    m = separate.separate(image, mask_to_rle(mask), (40, 30, 40, 40), 0.2)
    saved = separate.ALPHA_PREFILTER
    print("solid square placed at 5-15 px: largest drift of its box centre from the fixed point:")
    for k in alpha_prefilters:
        separate.ALPHA_PREFILTER = k
        errs = []
        for size in np.linspace(5, 15, 21):
            for o in ((33.3, 21.7), (33.0, 21.5), (33.45, 21.1)):
                placed = place_at_size(m, size / 40, size, (60.0, 50.0), o)
                x, y, w, h = alpha_box(placed.instance.alpha)
                errs += [abs(placed.instance.x0 + x + w / 2 - o[0]), abs(placed.instance.y0 + y + h / 2 - o[1])]
        print(f"  alpha prefilter {k}: {max(errs):.3f} px")
    separate.ALPHA_PREFILTER = saved


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", default=os.path.join(SHARED, "coco_tiny", "val2017"))
    ap.add_argument("--n", type=int, default=40, help="photos for the grain statistics (20 for the chain)")
    args = ap.parse_args()
    paths = sorted(glob.glob(os.path.join(args.images, "*.jpg")))
    if not paths:
        sys.exit(f"grain_stats.py: no .jpg in {args.images}; pass --images DIR")
    photo_grain(paths[:args.n])
    chain_sharpness(paths[:20], (0.5, 0.35, 0.29, 0.25, 0.2))
    fixed_point_drift((0.5, 0.4, 0.35, 0.25))


if __name__ == "__main__":
    main()
