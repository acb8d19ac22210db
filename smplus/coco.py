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
TMP_PREFIX = ".tmp-"  # atomic writes outside OUT go through such files beside the target, renamed into place
# Inside OUT they go through OUT/.smplus/tmp (outdir.tmp_dir): no file name of a dataset can land there,
# so the sweep of unfinished writes never meets a real output (a source image named ".tmp-1.jpg" is one).
# Ids beyond 2**53 - 1 are not exact in JSON readers that use doubles (JavaScript, jq): two images could
# become one there. SQLite (the journal) and numpy hold 64 bits; this is the smaller of the two limits.
MAX_ID = 2 ** 53 - 1
# OpenCV decodes images of at most 2**30 pixels (CV_IO_MAX_IMAGE_PIXELS); pycocotools counts pixels in
# 32 bits. An image entry claiming more could never be rendered: refused when the annotations load.
MAX_IMAGE_PIXELS = 2 ** 30
# Extensions written as JPEG (OpenCV's encoder knows only some of them by name).
JPEG_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".jfi", ".jif", ".pjpeg", ".pjp")
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
            if os.fstat(f.fileno()).st_size <= ORJSON_MAX_BYTES:
                return loads(f.read())
            text = _decode(f.read())  # the bytes are freed here, before the parse
        return loads(text)
    except PermissionError:
        raise SmplusError(f"{what} is not readable: {path} (check its permissions)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f" at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        raise SmplusError(f"{what} is not valid JSON{where}: {path} (is it a COCO annotation file?)") from None
    except OSError as e:
        raise SmplusError(f"{what} could not be read: {path} ({e.strerror})") from None
    except RecursionError:  # json's parser is recursive (orjson stops at 1024 levels, then json takes over)
        raise SmplusError(f"{what} is nested too deeply to be a COCO file: {path}") from None


# Files up to this size are parsed by orjson, larger ones by json. Both give the same objects, and
# with the collector paused orjson is 2.5x faster (COCO-train size: 6.7 s against 16.7 s), but it
# first builds a tree of the whole document (yyjson's) beside the bytes and the objects: peak
# memory 5.05 GB against json's 3.38 GB (scripts/bench_scale.py --sections readers). Above a
# few hundred MB, memory is what runs out.
ORJSON_MAX_BYTES = 64 * 2 ** 20


def _decode(data: bytes) -> str:
    """JSON bytes -> text, in the encoding json.loads detects (UTF-8, -16 or -32)."""
    return data.decode(json.detect_encoding(data), "surrogatepass")


def loads(data: bytes | str) -> Any:
    """JSON -> Python objects: orjson, falling back to json for what orjson refuses (NaN and
    Infinity literals, integers beyond a double, UTF-16), which also gives json's line and
    column on a real syntax error. Text (a large file, see ORJSON_MAX_BYTES) goes to json:
    the same objects, but for integers between 2**64 and 1e308, which orjson reads as floats
    (check_id refuses such an id either way).

    The cyclic garbage collector is off meanwhile: a parse builds millions of containers, none
    in a cycle, and every few hundred of them started a collection that walked the growing
    tree (2-3x the parse itself on the 12 MB TinyPerson target).
    """
    with paused_gc():
        if isinstance(data, str):
            return json.loads(data)
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


@contextlib.contextmanager
def frozen_gc():
    """Every object made so far out of the cyclic garbage collector's reach meanwhile: what a run
    loaded and planned (millions of objects, made while it was paused) is not walked again by its
    first collection (~4 s at COCO-train size). A caller that froze objects itself is left alone."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def check_file_name(file_name: Any, where: str) -> str:
    """A file_name must be a relative path that stays inside the images folder."""
    if not isinstance(file_name, str) or not file_name:
        raise SmplusError(f"{where}: file_name must be a non-empty string, got {file_name!r}")
    if "\0" in file_name:  # no file system holds one (Python refuses such a path)
        raise SmplusError(f"{where}: file_name {file_name!r} contains a NUL character; remove it")
    norm = file_name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or ".." in norm.split("/"):
        raise SmplusError(
            f"{where}: file_name {file_name!r} is absolute or contains '..'; "
            "file names must be relative to --images and stay inside it")
    return posixpath.normpath(norm)


def check_id(value: Any, where: str, what: str = "'id'") -> int:
    """An id: an integer (not a boolean) that SQLite and every JSON reader hold exactly."""
    if not isinstance(value, int) or isinstance(value, bool):
        beyond = " (an integer beyond 64 bits reads as a float)" if isinstance(value, float) and value.is_integer() else ""
        raise SmplusError(f"{where} needs an integer {what}, got {value!r}{beyond}")
    if abs(value) > MAX_ID:
        raise SmplusError(f"{where}: {what} {value} is beyond +-(2**53 - 1), the largest integer JSON readers "
                          "(JavaScript, jq) hold exactly; renumber the ids")
    return value


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
            raise SmplusError(f"{what} {path}: categories[{i}] needs an integer 'id' and a 'name'"
                              + (f", got id {c.get('id')!r}" if isinstance(c, dict) and "id" in c else ""))
        check_id(c["id"], f"{what} {path}: categories[{i}]")
        ds.categories[c["id"]] = c
    # (Each message's place is written only when it is raised: formatting it for every entry cost more
    # than the checks.)
    for i, im in enumerate(raw["images"]):
        if not isinstance(im, dict):
            raise SmplusError(f"{what} {path}: images[{i}] needs an integer 'id'")
        where = f"{what} {path}: images[{i}]"
        check_id(im.get("id"), where)
        for key in ("width", "height"):
            v = im.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise SmplusError(f"{where} (id {im['id']}): '{key}' must be a positive integer, got {v!r}")
        if im["width"] * im["height"] > MAX_IMAGE_PIXELS:
            raise SmplusError(f"{where} (id {im['id']}): {im['width']}x{im['height']} is more than 2**30 pixels, "
                              "the most OpenCV decodes; check width and height")
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
        if not isinstance(a, dict):
            raise SmplusError(f"{what} {path}: annotations[{i}] needs an integer 'id'")
        ann_id = a.get("id")
        if type(ann_id) is not int or not -MAX_ID <= ann_id <= MAX_ID:
            check_id(ann_id, f"{what} {path}: annotations[{i}]")
        if ann_id in seen:
            raise SmplusError(f"{what} {path}: annotations[{i}]: duplicate annotation id {ann_id}")
        seen.add(ann_id)
        if a.get("image_id") not in ds.images:
            raise SmplusError(f"{what} {path}: annotations[{i}] (id {ann_id}) points to unknown image_id "
                              f"{a.get('image_id')!r}")
        if a.get("category_id") not in ds.categories:
            raise SmplusError(f"{what} {path}: annotations[{i}] (id {ann_id}) has unknown category_id "
                              f"{a.get('category_id')!r}")
        if a.get("iscrowd", 0) not in (0, 1):  # also refuses "0"/"1" strings: never guess a flag
            raise SmplusError(f"{what} {path}: annotations[{i}] (id {ann_id}): iscrowd must be the number 0 or 1, "
                              f"got {a['iscrowd']!r} (write it without quotes)")
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
    An RLE reaches pycocotools only once `rle_counts` has read it whole:
    pycocotools' merge loops forever on runs that do not add up to the image.
    """
    if isinstance(segm, list):
        return _polygons_rle(usable_polygons(segm, height, width), height, width)
    if rle_counts(segm, height, width) is None:
        return None
    counts = segm["counts"]
    if isinstance(counts, list):  # (the size as plain ints: [425.0, 640.0] passed the check above)
        return mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def rle_counts(segm: Any, height: int, width: int) -> list | None:
    """The runs of an RLE segmentation (uncompressed, or compressed as COCO writes it), or None if it is
    not a whole height x width mask: its size is another, its counts do not decode to the end, a run is
    negative, or the runs do not add up to height x width. Plain Python, so it never hangs or crashes."""
    if not (isinstance(segm, dict) and "counts" in segm and "size" in segm):
        return None
    size, counts = segm["size"], segm["counts"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and list(size) == [height, width]):
        return None
    if isinstance(counts, list):
        runs = counts if not counts or (set(map(type, counts)) == {int} and min(counts) >= 0) else None  # ints, none < 0
    elif isinstance(counts, (str, bytes)):
        runs = _decode_counts(counts.encode("latin-1", "replace") if isinstance(counts, str) else counts)
    else:
        runs = None
    return runs if runs is not None and sum(runs) == height * width else None


def _decode_counts(s: bytes) -> list | None:
    """pycocotools' rleFrString in Python: 6-bit groups from 48 ("0"), 0x20 = more groups follow,
    0x10 of the last group = negative; from the fourth run on, each is a difference to the run two
    before. None when a run is cut short, a character is out of range or a run comes out negative."""
    runs: list = []
    p, n = 0, len(s)
    while p < n:
        x = k = 0
        more = True
        while more:
            if p >= n or k > 12:  # cut short, or more than 64 bits
                return None
            c = s[p] - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            return None
        runs.append(x)
    return runs


def usable_polygons(segm: list, height: int, width: int) -> list:
    """The polygons of a segmentation pycocotools can rasterize safely.

    At least 3 points, finite numbers, every vertex within POLYGON_MARGIN image
    sizes of the image: pycocotools walks each edge pixel by pixel (a
    coordinate of 1e12 makes it crash, not fail). Plain Python on purpose:
    planning checks every annotation, and numpy's per-call cost was 7x this.
    """
    side = max(height, width)
    lo, hi = -POLYGON_MARGIN * side, side + POLYGON_MARGIN * side
    out = []
    for p in segm:
        if not (isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0):
            continue
        try:  # one margin for both axes: it only has to keep pycocotools' work near the image's
            if lo <= min(p) and max(p) <= hi and math.isfinite(sum(p)):
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
    if 0 <= y0 and y0 + h <= height and h and w:  # one numba call (the runs as below; ~3x faster)
        from .kernels import strip_runs

        counts = strip_runs(patch, y0, height).tolist()
    else:
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


def finite_number(v: Any) -> bool:
    """A JSON number a float holds (not a boolean, NaN, infinity or an integer beyond 1e308)."""
    if isinstance(v, float):
        return math.isfinite(v)
    return isinstance(v, int) and not isinstance(v, bool) and abs(v) < 1e308  # exact: no conversion


def instance_size(w: float, h: float) -> float:
    """The paper's object size: s = sqrt(w * h) of the box."""
    return math.sqrt((0.0 if w < 0.0 else w) * (0.0 if h < 0.0 else h))  # max(w, 0.0) * max(h, 0.0)


# ---------------------------------------------------------------- writing

def _atomic_write(path: str, data, tmp_dir: str | None = None) -> None:
    """Write `data` (bytes-like) to a temporary file, then publish it: never a truncated or empty file.

    The temporary file is in `tmp_dir` (OUT/.smplus/tmp for what goes into OUT, on the same file
    system), else beside `path` as .tmp-*."""
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    if tmp_dir is not None:
        os.makedirs(tmp_dir, exist_ok=True)
    f = tempfile.NamedTemporaryFile("wb", dir=tmp_dir or d, prefix=TMP_PREFIX, suffix=os.path.basename(path)[-16:],
                                    delete=False)
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


def write_json_atomic(path: str, obj: Any, indent: int | None = None, tmp_dir: str | None = None) -> None:
    _atomic_write(path, json.dumps(obj, indent=indent, ensure_ascii=False).encode("utf-8"), tmp_dir)


def write_bytes_atomic(path: str, data, tmp_dir: str | None = None) -> None:
    """`data`: bytes, or an array of them (an image file read with read_image_bytes)."""
    _atomic_write(path, data, tmp_dir)


def encode_image(image_bgr: np.ndarray, file_name: str, quality: int = JPEG_QUALITY,
                 subsampling: str = JPEG_SUBSAMPLING) -> bytes:
    """Encode for `file_name`'s extension; JPEG at `quality` with chroma `subsampling` (444, 422, 420)."""
    import cv2

    ext = os.path.splitext(file_name)[1].lower() or ".jpg"
    ext = ".jpg" if ext in JPEG_EXTENSIONS else ext
    sampling = getattr(cv2, f"IMWRITE_JPEG_SAMPLING_FACTOR_{subsampling}")  # one of JPEG_SUBSAMPLINGS
    params = ([cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]
              if ext == ".jpg" else [])
    ok, buf = cv2.imencode(ext, image_bgr, params)
    if not ok:
        raise SmplusError(f"cannot encode an image as {ext!r} for {file_name} (use .jpg or .png file names)")
    return buf.tobytes()


def unwritable_extension(file_name: str) -> str | None:
    """The extension of `file_name` if OpenCV cannot write an image in that format, else None."""
    import cv2

    ext = os.path.splitext(file_name)[1].lower()
    if not ext or ext in JPEG_EXTENSIONS:
        return None
    return None if cv2.haveImageWriter("x" + ext) else ext


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


def is_jpeg(data: np.ndarray) -> bool:
    """Whether image file bytes are a JPEG (its start-of-image marker)."""
    return data.size >= 3 and data[0] == 0xFF and data[1] == 0xD8 and data[2] == 0xFF


def decode_image(data: np.ndarray, path: str, step: int = 1) -> np.ndarray:
    """The pixels of image file bytes `data` (read from `path`), as read_image.

    `step` 2, 4 or 8 (a JPEG only): decoded at 1/step by libjpeg's DCT scaling, ceil(h/step) x ceil(w/step)."""
    import cv2

    flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}[step]
    img = cv2.imdecode(data, flag | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if img is None:
        raise SmplusError(f"image is corrupt or not an image: {path}")
    return img
