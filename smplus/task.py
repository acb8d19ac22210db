"""The render task: one image, the one function every executor runs.

`render_task(task) -> entry` renders (or copies) one image, writes it to
OUT/images atomically and fsync'd, and returns its journal entry: a plain
dict (image_id, width, height, background, annotations, dropped, skipped)
that the driver records. A worker never writes anything else, so it needs no
shared state: a local process, a Ray task or a shard on another machine all
run the same thing. Its two halves, `render` and `Rendered.write`, let the
local executors write one image while they render the next.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from .coco import (
    JPEG_QUALITY,
    JPEG_SUBSAMPLING,
    CocoDataset,
    decode_image,
    encode_image,
    is_jpeg,
    read_image,
    read_image_bytes,
    write_bytes_atomic,
)
from .errors import OutputError, SmplusError
from .outdir import tmp_dir
from .plan import DEFAULT_MAX_HOLE, ImagePlan, TransformOptions, unscaled_labels


@dataclass
class ImageTask:
    plan: ImagePlan
    image: dict                       # source image entry
    anns: Dict[int, dict]             # this image's annotations used by the plan
    images_dir: str
    out_dir: str
    background: Optional[dict] = None         # new background's image entry
    background_anns: List[dict] = field(default_factory=list)
    fallback: Optional[dict] = None           # plan.fallback's background image entry
    fallback_anns: List[dict] = field(default_factory=list)
    max_hole: float = DEFAULT_MAX_HOLE
    jpeg: tuple = (JPEG_QUALITY, JPEG_SUBSAMPLING)  # quality, chroma subsampling
    file_prefix: str = ""                     # before the output's file_name (naming.OutputNames)
    fill: str = "patchmatch"                  # how holes are filled (TransformOptions.fill)


def background_groups(plans: Sequence[ImagePlan], positions: Optional[Sequence[int]] = None) -> List[List[int]]:
    """`positions` (default: all) grouped by the new background their images draw, in order of
    first appearance; an image inpainting its own holes is a group of its own."""
    groups: Dict[object, List[int]] = {}
    for k in range(len(plans)) if positions is None else positions:
        plan = plans[k]
        groups.setdefault(plan.background_image_id if plan.background == "new" else ("own", k), []).append(k)
    return list(groups.values())


def together_by_background(plans: Sequence[ImagePlan], positions: Sequence[int]) -> List[int]:
    """`positions` in render order: each image followed by the later ones drawing the same new
    background, so a worker's erased backgrounds (render.ERASED) are reused while still kept.
    The order changes no output: every image is rendered from its own plan."""
    return [k for group in background_groups(plans, positions) for k in group]


def image_tasks(ds: CocoDataset, plans: Sequence[ImagePlan], positions: Sequence[int],
                images_dir: str, out_dir: str, options: TransformOptions = TransformOptions(),
                file_prefix: str = "") -> Iterator[ImageTask]:
    """The tasks of the images at `positions` of `plans` (built lazily: each holds only its own annotations)."""
    for position in positions:
        plan = plans[position]
        used = (set(plan.crowd) | set(plan.removed) | {ip.ann_id for ip in plan.instances}
                | {ann_id for ann_id, _ in plan.unscaled} | set(plan.kept))
        anns = {a["id"]: a for a in ds.anns_by_image[plan.image_id] if a["id"] in used}
        bg, bg_anns = _background(ds, plan)
        fallback, fallback_anns = _background(ds, plan.fallback) if plan.fallback else (None, [])
        yield ImageTask(plan, ds.images[plan.image_id], anns, images_dir, out_dir, bg, bg_anns,
                        fallback, fallback_anns, options.max_hole, (options.jpeg_quality, options.jpeg_subsampling),
                        file_prefix, options.fill)


def _background(ds: CocoDataset, plan: ImagePlan):
    """A new background's image entry and the annotations render needs (crowds, those to erase, cp+ labels)."""
    if plan.background != "new":
        return None, []
    used = set(plan.background_labels) | set(plan.background_erased)
    return ds.images[plan.background_image_id], [a for a in ds.anns_by_image[plan.background_image_id]
                                                 if a.get("iscrowd") or a["id"] in used]


def output_image_path(out_dir: str, image: dict, file_prefix: str = "") -> str:
    return os.path.join(out_dir, "images", file_prefix + image["file_name"])


def _decode_checked(images_dir: str, image: dict, data: Optional[np.ndarray] = None) -> np.ndarray:
    """The pixels of `image` (from its file, or its file's bytes `data`), checked against its size."""
    path = os.path.join(images_dir, image["file_name"])
    pixels = read_image(path) if data is None else decode_image(data, path)
    if pixels.shape[:2] != (image["height"], image["width"]):
        raise SmplusError(f"image {path} is {pixels.shape[1]}x{pixels.shape[0]} but the annotations say "
                          f"{image['width']}x{image['height']}")
    return pixels


def _decode_source(images_dir: str, image: dict, step: int) -> np.ndarray:
    """The source's pixels, decoded at 1/step if it is a JPEG (render.decode_step), else whole
    (other formats are not DCT-scaled: 1 then); checked against its size as _decode_checked."""
    if step == 1:
        return _decode_checked(images_dir, image)
    path = os.path.join(images_dir, image["file_name"])
    data = read_image_bytes(path)
    if not is_jpeg(data):
        return _decode_checked(images_dir, image, data)
    pixels = decode_image(data, path, step)
    H, W = image["height"], image["width"]
    if pixels.shape[:2] != (-(-H // step), -(-W // step)):
        raise SmplusError(f"image {path} is about {pixels.shape[1] * step}x{pixels.shape[0] * step} but the "
                          f"annotations say {W}x{H}")
    return pixels


def _new_background(images_dir: str, background: dict):
    """A new background, read; decoded only if its erasure is not kept (render.NewBackground). The plan
    placed the instances on its frame, so without it the image cannot be rendered (inpainting its own
    holes instead would put them where they were planned for another frame): it is skipped too."""
    from .render import NewBackground

    def cannot_use(e: SmplusError) -> SmplusError:
        return SmplusError(f"its new background, image {background['id']}, cannot be used: {e}")

    try:
        data = read_image_bytes(os.path.join(images_dir, background["file_name"]))
    except SmplusError as e:
        raise cannot_use(e) from None

    def decode() -> np.ndarray:
        try:
            return _decode_checked(images_dir, background, data)
        except SmplusError as e:
            raise cannot_use(e) from None

    return NewBackground.of_file(data, background["height"], background["width"], decode)


def render_task(task: ImageTask) -> dict:
    """Render (or copy) one image and write it; return its journal entry.

    An image that cannot be read or decoded is an entry with "skipped" set;
    a failed write to OUT raises OutputError: the run stops, it never skips.
    """
    return render(task).write()


@dataclass
class Rendered:
    """An image rendered (or read, to be copied) and not yet written: its journal entry and
    the bytes for OUT/images (none if it is skipped)."""

    entry: dict
    path: Optional[str] = None
    data: Optional[object] = None  # bytes-like
    tmp_dir: Optional[str] = None  # OUT/.smplus/tmp: the write goes through a file there

    def write(self) -> dict:
        """Write the image, atomically and fsync'd, and return the entry; OutputError if OUT cannot take it."""
        if self.path is not None:
            try:
                write_bytes_atomic(self.path, self.data, self.tmp_dir)
            except OSError as e:
                raise OutputError.writing(self.path, e.strerror or str(e)) from None
        return self.entry


def render(task: ImageTask) -> Rendered:
    """render_task's first half: the image rendered (or read) and its entry, nothing written yet."""
    from .render import UnfillableHoles, decode_step, render_image, render_resized

    plan = task.plan
    entry = plan_entry(plan, [], provenance("copy", None, 0.0))
    try:
        if not plan.transformed:  # nothing to scale: the file is copied, never re-encoded...
            data = read_image_bytes(os.path.join(task.images_dir, task.image["file_name"]))
            _decode_checked(task.images_dir, task.image, data)  # ...once it is known to be the image
        else:
            H, W = task.image["height"], task.image["width"]
            step = decode_step(plan, task.anns, W, H)
            pixels = _decode_source(task.images_dir, task.image, step)
            background = _new_background(task.images_dir, task.background) if plan.background == "new" else None
            fallback = None
            if plan.background == "resize":
                result = render_resized(plan, pixels, task.anns)
            else:
                try:
                    result = render_image(plan, pixels, task.anns, background, task.background_anns, task.max_hole,
                                          task.fill, step, (H, W))
                except UnfillableHoles as e:  # never the blurred source: another image is the background
                    if plan.fallback is None:
                        raise SmplusError(f"image {task.image['file_name']}: {e}, and no other image can be "
                                          "its background") from None
                    fallback, plan = e.reason, plan.fallback
                    background = _new_background(task.images_dir, task.fallback)
                    result = render_image(plan, pixels, task.anns, background, task.fallback_anns, fill_method=task.fill)
            entry.update(background=plan.background, width=plan.width, height=plan.height,
                         provenance=provenance(plan.background, plan.background_image_id, result.hole_fraction,
                                               fallback, result.erased))
            data = encode_image(result.image, task.image["file_name"], *task.jpeg)
            entry["annotations"] = result.annotations + unscaled_labels(plan, task.anns, task.image["width"],
                                                                        task.image["height"])
            entry["dropped"] = [list(d) for d in result.dropped]
            entry["placement"] = result.placement  # closed-loop placement counters (render.place_at_size)
    except SmplusError as e:
        entry["skipped"] = str(e)
        return Rendered(entry)
    return Rendered(entry, output_image_path(task.out_dir, task.image, task.file_prefix), data, tmp_dir(task.out_dir))


def plan_entry(plan: ImagePlan, annotations: List[dict], provenance: dict) -> dict:
    """A journal entry as the plan has it: its size, background and drops; rendering updates it."""
    return {"image_id": plan.image_id, "width": plan.width, "height": plan.height, "background": plan.background,
            "annotations": annotations, "dropped": [list(d) for d in plan.dropped], "skipped": None,
            "provenance": provenance}


def provenance(background: str, background_image_id: Optional[int], hole_fraction: Optional[float],
               fallback: Optional[str] = None, erased: int = 0) -> dict:
    """How an output image's background was made; the output `images` entry carries it as "smplus".

    background: inpaint (its own holes filled), new (another image), copy (the
    file copied unchanged), resize (image level); hole_fraction: the share of
    the background's pixels inpainted (None in a dry run; on a new background,
    the share erased: its crowds and, from the clean pool, its objects of the
    scale-matched categories); fallback: why the planned inpainting gave way to
    a new background (hole_above_max, no_known_pixel); erased: the new
    background's objects erased (crowds not counted).
    """
    return {"background": background, "background_image_id": background_image_id,
            "hole_fraction": None if hole_fraction is None else round(hole_fraction, 4), "fallback": fallback,
            "erased": erased}
