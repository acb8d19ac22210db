"""Load, validate, index and write COCO datasets; masks in one representation.

The raw dataset dict is kept as read; indexes are built once. Every mask
(polygons, uncompressed RLE, compressed RLE) goes through `ann_to_rle`, and
area is computed from the mask, never from the box.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import posixpath
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

import numpy as np
import orjson
from pycocotools import mask as mask_utils

from .errors import SmplusError

JPEG_QUALITY = 95
# Full-resolution chroma: at 4:2:0 the chroma error inside 6-12 px instances is
# several times larger and shows as colour bleed (scripts/quality.py).
JPEG_SUBSAMPLING = "444"
JPEG_SUBSAMPLINGS = ("444", "422", "420")  # 4:4:4, 4:2:2, 4:2:0
TMP_PREFIX = ".tmp-"  # atomic writes go through such files, renamed into place
POLYGON_MARGIN = 1.0  # polygon vertices may lie this many image sizes outside the image
_UMASK = os.umask(0o022)
os.umask(_UMASK)


# ---------------------------------------------------------------- loading

def read_json(path: str, what: str) -> Any:
    """Read a JSON file, turning every failure into one clear line."""
    if not os.path.exists(path):
        raise SmplusError(f"{what} not found: {path} (check the path)")
    if os.path.isdir(path):
        raise SmplusError(f"{what} is a directory, not a JSON file: {path}")
    try:
        with open(path, "rb") as f:
            return loads(f.read())
    except PermissionError:
        raise SmplusError(f"{what} is not readable: {path} (check its permissions)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f" at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        raise SmplusError(f"{what} is not valid JSON{where}: {path} (is it a COCO annotation file?)") from None
    except OSError as e:
        raise SmplusError(f"{what} could not be read: {path} ({e.strerror})") from None


def loads(data: bytes) -> Any:
    """JSON -> Python objects: orjson (2-3x faster than json on a COCO-train-sized file), falling back
    to json for what orjson refuses (NaN and Infinity literals, integers beyond 64 bits, UTF-16),
    which also gives json's line and column on a real syntax error.

    The cyclic garbage collector is off meanwhile: a parse builds millions of containers, none
    in a cycle, and every few hundred of them started a collection that walked the growing
    tree (2-3x the parse itself on the 12 MB TinyPerson target).
    """
    with paused_gc():
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            return json.loads(data)


@contextlib.contextmanager
def paused_gc():
    """The cyclic garbage collector off meanwhile (on again after, if it was)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def check_file_name(file_name: Any, where: str) -> str:
    """A file_name must be a relative path that stays inside the images folder."""
    if not isinstance(file_name, str) or not file_name:
        raise SmplusError(f"{where}: file_name must be a non-empty string, got {file_name!r}")
    norm = file_name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or ".." in norm.split("/"):
        raise SmplusError(
            f"{where}: file_name {file_name!r} is absolute or contains '..'; "
            "file names must be relative to --images and stay inside it")
    return posixpath.normpath(norm)


@dataclass
class CocoDataset:
    """A COCO instances dataset: the raw dict plus lookup indexes."""

    raw: Dict[str, Any]
    path: str = ""
    images: Dict[int, dict] = field(default_factory=dict)
    anns_by_image: Dict[int, List[dict]] = field(default_factory=dict)
    categories: Dict[int, dict] = field(default_factory=dict)

    @property
    def image_ids(self) -> List[int]:
        return list(self.images)


def load_coco(path: str, what: str = "source annotations") -> CocoDataset:
    raw = read_json(path, what)
    return index_coco(raw, path, what)


def index_coco(raw: Any, path: str = "<dict>", what: str = "source annotations") -> CocoDataset:
    """Validate the structure a transform relies on and build the indexes."""
    if not isinstance(raw, dict):
        raise SmplusError(f"{what} {path}: top level must be a JSON object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if key not in raw:
            raise SmplusError(f"{what} {path}: missing '{key}' (a COCO instances file needs images, annotations and categories)")
        if not isinstance(raw[key], list):
            raise SmplusError(f"{what} {path}: '{key}' must be a list, got {type(raw[key]).__name__}")
    ds = CocoDataset(raw=raw, path=path)
    files: Dict[str, int] = {}  # normalized file_name -> image id
    for i, c in enumerate(raw["categories"]):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or "name" not in c:
            raise SmplusError(f"{what} {path}: categories[{i}] needs an integer 'id' and a 'name'")
        ds.categories[c["id"]] = c
    for i, im in enumerate(raw["images"]):
        where = f"{what} {path}: images[{i}]"
        if not isinstance(im, dict) or not isinstance(im.get("id"), int):
            raise SmplusError(f"{where} needs an integer 'id'")
        for key in ("width", "height"):
            v = im.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise SmplusError(f"{where} (id {im['id']}): '{key}' must be a positive integer, got {v!r}")
        name = check_file_name(im.get("file_name"), f"{where} (id {im['id']})")
        if im["id"] in ds.images:
            raise SmplusError(f"{where}: duplicate image id {im['id']}")
        if name in files:
            raise SmplusError(f"{where}: images id {files[name]} and id {im['id']} both have file_name "
                              f"{im['file_name']!r}; each image entry needs its own file (remove or rename one)")
        files[name] = im["id"]
        ds.images[im["id"]] = im
        ds.anns_by_image[im["id"]] = []
    seen = set()
    masks = False  # any annotation with a segmentation at all
    for i, a in enumerate(raw["annotations"]):
        where = f"{what} {path}: annotations[{i}]"
        if not isinstance(a, dict) or not isinstance(a.get("id"), int):
            raise SmplusError(f"{where} needs an integer 'id'")
        if a["id"] in seen:
            raise SmplusError(f"{where}: duplicate annotation id {a['id']}")
        seen.add(a["id"])
        if a.get("image_id") not in ds.images:
            raise SmplusError(f"{where} (id {a['id']}) points to unknown image_id {a.get('image_id')!r}")
        if a.get("category_id") not in ds.categories:
            raise SmplusError(f"{where} (id {a['id']}) has unknown category_id {a.get('category_id')!r}")
        if a.get("iscrowd", 0) not in (0, 1):  # also refuses "0"/"1" strings: never guess a flag
            raise SmplusError(f"{where} (id {a['id']}): iscrowd must be the number 0 or 1, got {a['iscrowd']!r} "
                              "(write it without quotes)")
        masks = masks or a.get("segmentation") not in (None, [], {})
        ds.anns_by_image[a["image_id"]].append(a)
    if raw["annotations"] and not masks:
        raise SmplusError(f"{what} {path}: no annotation has a 'segmentation'; SM+ cuts each instance out by its "
                          "mask and needs instance masks (polygons or RLE, like COCO's instances_*.json), "
                          "not a detection-only file with boxes")
    return ds


# ---------------------------------------------------------------- masks

def ann_to_rle(segm: Any, height: int, width: int) -> dict | None:
    """Polygons, uncompressed RLE or compressed RLE -> one compressed RLE.

    Returns None when the segmentation cannot describe a mask (no polygon
    with at least 3 points, malformed RLE, RLE of another image size).
    """
    if isinstance(segm, list):
        return _polygons_rle(usable_polygons(segm, height, width), height, width)
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        if list(segm["size"]) != [height, width]:
            return None
        counts = segm["counts"]
        try:
            if isinstance(counts, list):
                return mask_utils.frPyObjects(segm, height, width)
            if isinstance(counts, str):
                return {"size": [height, width], "counts": counts.encode("ascii")}
            if isinstance(counts, bytes):
                return {"size": [height, width], "counts": counts}
        except Exception:  # pycocotools raises bare Exceptions on malformed RLE
            return None
    return None


def usable_polygons(segm: list, height: int, width: int) -> list:
    """The polygons of a segmentation pycocotools can rasterize safely.

    At least 3 points, finite numbers, every vertex within POLYGON_MARGIN image
    sizes of the image: pycocotools walks each edge pixel by pixel (a
    coordinate of 1e12 makes it crash, not fail). Plain Python on purpose:
    planning checks every annotation, and numpy's per-call cost was 7x this.
    """
    margin = POLYGON_MARGIN * max(height, width)
    out = []
    for p in segm:
        if not (isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0):
            continue
        try:  # one margin for both axes: it only has to keep pycocotools' work near the image's
            if -margin <= min(p) and max(p) <= max(height, width) + margin and math.isfinite(sum(p)):
                out.append(p)  # (the sum is NaN or inf if any number is)
        except TypeError:  # not all numbers
            continue
    return out


def usable_segmentation(ann: dict, image: dict) -> Any:
    """An annotation's segmentation as written out: polygons pycocotools cannot read left out (no NaN in JSON)."""
    segm = ann.get("segmentation")
    return usable_polygons(segm, image["height"], image["width"]) if isinstance(segm, list) else segm


def _polygons_rle(polys: list, height: int, width: int) -> dict | None:
    return mask_utils.merge(mask_utils.frPyObjects(polys, height, width)) if polys else None


def decode_rle(rle: dict) -> np.ndarray:
    return mask_utils.decode(rle)


def window_mask(segm: Any, window: tuple, height: int, width: int) -> np.ndarray | None:
    """The mask of a segmentation inside `window` = (x0, y0, x1, y1) of its image.

    Polygons are rasterized in the window only, so an instance costs its own
    size, not the image's. RLE masks are decoded whole, then cut.
    """
    x0, y0, x1, y1 = window
    if isinstance(segm, list):
        polys = [_shift_polygon(p, x0, y0) for p in usable_polygons(segm, height, width)]
        rle = _polygons_rle(polys, y1 - y0, x1 - x0)
        return None if rle is None else decode_rle(rle)
    rle = ann_to_rle(segm, height, width)
    return None if rle is None else decode_rle(rle)[y0:y1, x0:x1]


def resample_mask(mask: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """A binary mask resized to `size` (width, height): the pixels at least half covered (uint8)."""
    import cv2

    return (cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5).astype(np.uint8)


def mask_to_rle(mask: np.ndarray) -> dict:
    """Binary mask -> compressed RLE with a JSON-ready string `counts`."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def _shift_polygon(poly: Any, dx: int, dy: int) -> Any:
    """A polygon moved by whole pixels, rasterized by pycocotools on the same grid.

    pycocotools snaps each vertex to a 1/5-pixel grid, k = (int)(5 v + .5);
    COCO's two-decimal coordinates often sit exactly on a rounding tie, so
    subtracting the shift first would flip some ties. Snap at the original
    coordinates, shift the grid index, and hand back a value that snaps to it.
    """
    shift = (5 * dx, 5 * dy)
    ks = [math.trunc(5.0 * v + 0.5) - shift[i & 1] for i, v in enumerate(poly)]  # plain Python: 5x numpy's
    return [(k - (k < 0)) / 5.0 for k in ks]  # (int) truncates toward zero: aim below negative ticks


def patch_to_rle(patch: np.ndarray, x0: int, y0: int, height: int, width: int) -> dict:
    """Compressed RLE of a height x width mask that is zero outside `patch` at (x0, y0).

    COCO's RLE runs down columns, so only the columns the patch spans need
    encoding: the columns left and right of it just lengthen the first and last
    runs of zeros. (Encoding the whole image per instance cost ~0.2 ms.)
    """
    h, w = patch.shape
    strip = np.zeros((height, w), np.uint8)
    strip[y0:y0 + h] = patch
    flat = strip.ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], change, [flat.size])))
    counts = ([0] if flat[0] else []) + runs.tolist()  # runs start with zeros
    counts[0] += x0 * height
    right = (width - x0 - w) * height
    if len(counts) % 2:  # ends with zeros
        counts[-1] += right
    elif right:
        counts.append(right)
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def instance_size(w: float, h: float) -> float:
    """The paper's object size: s = sqrt(w * h) of the box."""
    return math.sqrt(max(w, 0.0) * max(h, 0.0))


# ---------------------------------------------------------------- writing

def _atomic_write(path: str, data) -> None:
    """Write `data` (bytes-like) to a temporary file beside `path`, then publish it: never a
    truncated or empty file."""
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    f = tempfile.NamedTemporaryFile("wb", dir=d, prefix=TMP_PREFIX, suffix=os.path.basename(path)[-16:], delete=False)
    try:
        f.write(data)
        publish(f, path)
    except BaseException:
        f.close()
        if os.path.exists(f.name):
            os.unlink(f.name)
        raise


def publish(f, path: str) -> None:
    """Make the temporary file `f` (open for writing, beside `path`) the file `path`."""
    f.flush()
    os.fsync(f.fileno())  # on disk before the rename makes it visible (a power loss keeps the old state)
    f.close()
    os.chmod(f.name, 0o666 & ~_UMASK)  # temporary files are made 0600; outputs get the usual rights
    os.replace(f.name, path)


def write_json_atomic(path: str, obj: Any, indent: int | None = None) -> None:
    _atomic_write(path, json.dumps(obj, indent=indent, ensure_ascii=False).encode("utf-8"))


def write_bytes_atomic(path: str, data) -> None:
    """`data`: bytes, or an array of them (an image file read with read_image_bytes)."""
    _atomic_write(path, data)


def encode_image(image_bgr: np.ndarray, file_name: str, quality: int = JPEG_QUALITY,
                 subsampling: str = JPEG_SUBSAMPLING) -> bytes:
    """Encode for `file_name`'s extension; JPEG at `quality` with chroma `subsampling` (444, 422, 420)."""
    import cv2

    ext = os.path.splitext(file_name)[1].lower() or ".jpg"
    sampling = getattr(cv2, f"IMWRITE_JPEG_SAMPLING_FACTOR_{subsampling}")  # one of JPEG_SUBSAMPLINGS
    params = ([cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]
              if ext in (".jpg", ".jpeg") else [])
    ok, buf = cv2.imencode(ext, image_bgr, params)
    if not ok:
        raise SmplusError(f"cannot encode an image as {ext!r} for {file_name} (use .jpg or .png file names)")
    return buf.tobytes()


def read_image(path: str) -> np.ndarray:
    """Decode an image as 8-bit BGR in its stored pixel order.

    EXIF orientation is ignored: COCO annotations refer to the stored pixels.
    Grayscale, CMYK, RGBA and 16-bit files all come out as 8-bit BGR.
    """
    return decode_image(read_image_bytes(path), path)


def read_image_bytes(path: str) -> np.ndarray:
    """An image file's bytes (a uint8 array)."""
    try:
        return np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise SmplusError(f"image not found: {path}") from None
    except OSError as e:
        raise SmplusError(f"image could not be read: {path} ({e.strerror})") from None


def decode_image(data: np.ndarray, path: str) -> np.ndarray:
    """The pixels of image file bytes `data` (read from `path`), as read_image."""
    import cv2

    img = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if img is None:
        raise SmplusError(f"image is corrupt or not an image: {path}")
    return img
