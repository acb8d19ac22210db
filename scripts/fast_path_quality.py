"""What the fast path's shortcuts change in the pasted pixels, against JPEG q95's own noise.

    python scripts/fast_path_quality.py [--source ANN --images DIR --target T] [--what matting|decode]

One SM+ run (MSM+, PSI p=0.4, --fill telea, one worker) renders the reference; at each paste the
same instance is also made the shortcut's way and placed at the reference's scale and place, with
the same grain, over the same canvas. Per instance: mean and max |difference| (0-255, all channels)
over the pixels either paste covers (alpha > 0.01), and over the same pixels, the mean |difference|
JPEG q95 encoding makes to the reference image. Rows by the instance's planned output size
s = scale x sqrt(w*h) of its source box (what the renderer knows before it mattes).

--what matting: reference matted (closed-form alpha + foreground colours) at every size; shortcut:
the mask feathered at the working resolution (`feathered`).
--what matting-colour: the same, the shortcut keeping the matte's alpha and taking the crop's own
colours (what skipping only the foreground-colour estimation would change).
--what rtol: the closed-form alpha solved to matting.RTOL (conjugate gradients' relative residual,
1e-4) against RTOL here (1e-6, the tolerance before): either side may be called the shortcut.
--what decode: reference from the fully decoded source; shortcut: from the source decoded at reduced
size (libjpeg DCT scaling) as the renderer picks it for an image whose background is another image
(render.decode_factor); only instances of such images. Matting as in the fast path itself.
"""

import argparse
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA = next((d for d in (os.path.join(ROOT, "..", "shared", "data"), os.path.join(ROOT, "..", "..", "shared", "data"))
             if os.path.isdir(d)), os.path.join(ROOT, "..", "shared", "data"))  # beside the checkout, or a worktree's

import cv2  # noqa: E402
import numpy as np  # noqa: E402

BINS = [0, 8, 12, 16, 24, 32, 64, float("inf")]
RTOL = 1e-6  # --what rtol: the tolerance the fast path had before (matting.RTOL: now 1e-4)


def feathered(crop_bgr, soft_mask, band):
    """separate.matte's cheap stand-in measured here: alpha the mask feathered at the working
    resolution (its area-averaged soft mask), colours the crop's, premultiplied as matte's."""
    out = np.empty(crop_bgr.shape[:2] + (4,), np.float32)
    np.multiply(crop_bgr, soft_mask[..., None], out=out[..., :3], dtype=np.float32)
    out[..., 3] = soft_mask
    return out


def looser_step(factor):
    """A decode_step that keeps only `factor` x each instance's final size (the renderer's rule, less WORK_MIN)."""
    import smplus.render as render
    from smplus.separate import working_scale

    def step(plan, anns, width, height):
        if plan.background != "new" or not plan.instances:
            return 1
        finest = 0.0
        for ip in plan.instances:
            _, _, w, h = render.clipped_box(anns[ip.ann_id], width, height)
            sw = working_scale(max(w, h), ip.scale)
            if sw < 1.0 and ip.scale >= sw * 0.999:
                return 1
            finest = max(finest, factor * ip.scale)
        return next((k for k in render.DECODE_STEPS if k * finest <= 1.0), 1)
    return step


def measure(source, images, target, what, looser=None):
    import smplus.render as render
    import smplus.separate as separate
    import smplus.task as task
    from smplus.grain import Grain
    from smplus.matting import warm_up
    from smplus.pipeline import RunOptions, transform
    from smplus.plan import TransformOptions

    warm_up()
    rows, current, state = [], [], {}
    real_separate, real_place, real_match, real_encode = render.separate, render.place_at_size, Grain.match, task.encode_image
    real_decode, real_step = task._decode_source, (looser_step(looser) if looser else render.decode_step)

    def alpha_only(crop, soft, band):
        premult = real_matte(crop, soft, band)
        premult[..., :3] = crop * premult[..., 3:]
        return premult

    real_matte = separate.matte

    import smplus.matting as matting

    swaps = {"matting-colour": (separate, "matte", alpha_only), "rtol": (matting, "RTOL", RTOL),
             "matting": (separate, "matte", feathered)}  # the cheaper way each measures, in place of smplus's

    def alt_separate(image, seg, box, scale, *a, **k):
        if what in swaps:
            module, name, value = swaps[what]
            saved = getattr(module, name)
            setattr(module, name, value)
            try:
                return real_separate(image, seg, box, scale)
            finally:
                setattr(module, name, saved)
        reduced = state.get("reduced")
        if reduced is None:
            return None
        return real_separate(reduced[0], seg, box, scale, reduced[1], image.shape[:2])

    def wrapped_separate(image, seg, box, scale, *a, **k):
        state["args"] = (image, seg, box, scale, a, k)
        return real_separate(image, seg, box, scale, *a, **k)

    def wrapped_place(m, scale, size, src_point, out_point):
        placed = real_place(m, scale, size, src_point, out_point)
        image, seg, box, s, a, k = state["args"]
        alt = alt_separate(image, seg, box, s, *a, **k)
        state["pending"] = (None if alt is None else separate.place(alt, placed.scale, src_point, out_point),
                            s * np.sqrt(box[2] * box[3]))
        return placed

    def wrapped_match(self, p, canvas, scale, *key):
        p1 = real_match(self, p, canvas, scale, *key)
        alt, size = state.pop("pending")
        if alt is None:
            return p1
        alt = render._clip_to_canvas(alt, canvas.shape[1], canvas.shape[0])
        if alt is None:
            return p1
        p2 = real_match(self, alt, canvas, scale, *key)
        x0, y0 = min(p1.x0, p2.x0), min(p1.y0, p2.y0)
        x1 = max(p1.x0 + p1.alpha.shape[1], p2.x0 + p2.alpha.shape[1])
        y1 = max(p1.y0 + p1.alpha.shape[0], p2.y0 + p2.alpha.shape[0])
        outs, cover = [], np.zeros((y1 - y0, x1 - x0), bool)
        for p in (p1, p2):
            below = canvas[y0:y1, x0:x1].astype(np.float32)
            h, w = p.alpha.shape
            sl = (slice(p.y0 - y0, p.y0 - y0 + h), slice(p.x0 - x0, p.x0 - x0 + w))
            below[sl] = render._over(canvas[p.y0:p.y0 + h, p.x0:p.x0 + w], p)
            cover[sl] |= p.alpha > 0.01
            outs.append(below)
        if cover.any():
            d = np.abs(outs[0] - outs[1])[cover]
            current.append([size, float(d.mean()), float(d.max()), (y0, x0), cover, None])
        return p1

    def wrapped_encode(image, name, *a, **k):
        data = real_encode(image, name, *a, **k)
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).astype(np.float32)
        for r in current:
            (y0, x0), cover = r[3], r[4]
            h, w = cover.shape
            r[5] = float(np.abs(decoded[y0:y0 + h, x0:x0 + w] - image[y0:y0 + h, x0:x0 + w])[cover].mean())
            rows.append((r[0], r[1], r[2], r[5]))
        current.clear()
        return data

    def wrapped_step(*a):  # the reference decodes every source whole; the shortcut as the renderer would
        state["step"] = real_step(*a)
        return 1

    def wrapped_decode(images_dir, image, step):
        k = state.pop("step", 1)
        state["reduced"] = (real_decode(images_dir, image, k), k) if k > 1 else None
        return real_decode(images_dir, image, 1)

    render.separate, render.place_at_size, Grain.match, task.encode_image = (wrapped_separate, wrapped_place,
                                                                            wrapped_match, wrapped_encode)
    real_render_step = render.decode_step
    if what == "decode":
        task._decode_source, render.decode_step = wrapped_decode, wrapped_step
    try:
        transform(source, images, tempfile.mkdtemp(prefix="smplus-fpq-"), target,
                  options=TransformOptions(mode="msm", psi_p=0.4, fill="telea"),
                  run=RunOptions(workers=1, progress=False, overwrite=True))
    finally:
        render.separate, render.place_at_size, Grain.match, task.encode_image = (real_separate, real_place,
                                                                                real_match, real_encode)
        task._decode_source, render.decode_step = real_decode, real_render_step
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=os.path.join(DATA, "coco_tiny", "annotations", "instances_val2017.json"))
    ap.add_argument("--images", default=os.path.join(DATA, "coco_tiny", "val2017"))
    ap.add_argument("--target", default=os.path.join(DATA, "tinyperson_like", "tiny_set_train_like.json"))
    ap.add_argument("--what", choices=("matting", "matting-colour", "rtol", "decode"), default="matting")
    ap.add_argument("--looser", type=float, metavar="F", help="with --what decode: the matte sees F x the final size")
    args = ap.parse_args()
    rows = np.array(measure(args.source, args.images, args.target, args.what, args.looser))
    if not len(rows):
        return print(f"\n{args.what}: no instance takes the shortcut")
    rule = f" (looser: {args.looser:g}x the final size)" if args.looser else ""
    print(f"\n{args.what}{rule}: shortcut vs reference, pasted pixels (0-255), {len(rows)} instances\n")
    print("| planned size s (px) | instances | mean abs diff: mean (p95) over instances | max abs diff: median (max) | "
          "JPEG q95 on the same pixels: mean abs diff | instances whose diff <= their JPEG noise |")
    print("|---|---|---|---|---|---|")
    for lo, hi in zip(BINS, BINS[1:]):
        r = rows[(rows[:, 0] >= lo) & (rows[:, 0] < hi)] if len(rows) else rows
        if not len(r):
            continue
        print(f"| {lo:g}-{hi:g} | {len(r)} | {r[:, 1].mean():.2f} ({np.percentile(r[:, 1], 95):.2f}) | "
              f"{np.median(r[:, 2]):.0f} ({r[:, 2].max():.0f}) | {r[:, 3].mean():.2f} | {np.mean(r[:, 1] <= r[:, 3]):.0%} |")


if __name__ == "__main__":
    main()
