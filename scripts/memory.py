"""Peak memory of one large image: a fixture image upscaled to 8000x6000 with its annotations.

Each measurement runs in a fresh process (one worker, --background given) and
reports its peak RSS (ru_maxrss), the RSS after imports (baseline), and the
difference per pixel of the image. COCO-sized images need ~0.3 GB in total.

    python scripts/memory.py [--size 8000x6000] [--background inpaint|new] [--fill patchmatch|telea]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "coco")
SOURCE_IMAGE = "000000404484.jpg"  # 320x240, 5 persons (polygons)
SECOND_IMAGE = "000000343937.jpg"


def upscaled_set(folder: str, width: int, height: int) -> str:
    """The fixture image (and a second one, for --background new) at width x height, annotations scaled."""
    import cv2

    raw = json.load(open(os.path.join(FIXTURE, "annotations.json")))
    images, anns = [], []
    for name in (SOURCE_IMAGE, SECOND_IMAGE):
        im = next(i for i in raw["images"] if i["file_name"] == name)
        sx, sy = width / im["width"], height / im["height"]
        pixels = cv2.imread(os.path.join(FIXTURE, "images", name))
        cv2.imwrite(os.path.join(folder, name), cv2.resize(pixels, (width, height), interpolation=cv2.INTER_CUBIC),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        images.append({**im, "width": width, "height": height})
        for a in raw["annotations"]:
            if a["image_id"] == im["id"] and isinstance(a["segmentation"], list):
                x, y, w, h = a["bbox"]
                anns.append({**a, "bbox": [x * sx, y * sy, w * sx, h * sy], "area": a["area"] * sx * sy,
                             "segmentation": [[v * (sx if k % 2 == 0 else sy) for k, v in enumerate(p)]
                                              for p in a["segmentation"]]})
    path = os.path.join(os.path.dirname(folder), "annotations.json")
    json.dump({**raw, "images": images, "annotations": anns}, open(path, "w"))
    return path


CHILD = """
import json, os, resource, sys
from smplus.pipeline import RunOptions, transform
from smplus.plan import TransformOptions
from smplus.worker import worker_init; worker_init()  # the baseline includes what every worker loads
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
source, images, out, background, fill = sys.argv[1:]
report = transform(source, images, out, options=TransformOptions(background=background, seed=0, fill=fill),
                   run=RunOptions(progress=False)).report
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"baseline_kb": base, "peak_kb": peak, "instances": report["counts"]["instances_out"]}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="8000x6000")
    ap.add_argument("--background", default="inpaint", choices=["inpaint", "new"])
    ap.add_argument("--fill", default="patchmatch", choices=["patchmatch", "telea"])
    args = ap.parse_args()
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        images = os.path.join(tmp, "images")
        os.mkdir(images)
        source = upscaled_set(images, width, height)
        r = subprocess.run([sys.executable, "-c", CHILD, source, images, os.path.join(tmp, "out"), args.background,
                            args.fill],
                           cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT})
        if r.returncode:
            sys.exit(r.stderr[-3000:])
        m = json.loads(r.stdout.strip().splitlines()[-1])
    extra = (m["peak_kb"] - m["baseline_kb"]) * 1024
    print(f"{width}x{height}, background {args.background}, fill {args.fill}, {m['instances']} instances: peak RSS "
          f"{m['peak_kb'] / 1024 ** 2:.2f} GB, after imports {m['baseline_kb'] / 1024 ** 2:.2f} GB, "
          f"the image costs {extra / 1024 ** 2:.0f} MB = {extra / (width * height):.1f} bytes per pixel")


if __name__ == "__main__":
    main()
