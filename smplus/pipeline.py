"""Run SM+ over a dataset: plan, render in workers, journal, assemble, report.

Every rendered image is written atomically with a small journal entry (its
annotations) in OUT/.smplus/parts; `annotations.json` and `report.json` are
assembled from the journal at the end, in source order, with annotation ids
numbered then. So the output is the same whatever the worker count, and a
killed run resumes where it stopped (`resume=True`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from . import __version__
from .coco import (
    JPEG_QUALITY,
    JPEG_SUBSAMPLING,
    TMP_PREFIX,
    CocoDataset,
    encode_image,
    instance_size,
    load_coco,
    read_image,
    write_bytes_atomic,
    write_json_atomic,
)
from .errors import SmplusError, UsageError
from .histogram import SizeHistogram, load_target, sampling_noise, size_jsd
from .plan import (
    DEFAULT_MAX_HOLE,
    DatasetPlan,
    ImagePlan,
    TransformOptions,
    clipped_box,
    degenerate_reason,
    plan_dataset,
)

STATE_DIR = ".smplus"
OUTPUTS = ("images", "annotations.json", "report.json", STATE_DIR)


@dataclass(frozen=True)
class RunOptions:
    """Where and how to run; none of these change the output."""

    workers: int = 1
    dry_run: bool = False
    overwrite: bool = False
    resume: bool = False
    allow_skips: bool = False
    progress: Optional[bool] = None  # None: a bar only on a terminal

    def __post_init__(self):
        if not isinstance(self.workers, int) or self.workers < 1:
            raise UsageError(f"--workers must be an integer >= 1, got {self.workers!r}")
        if self.overwrite and self.resume:
            raise UsageError("--overwrite and --resume exclude each other: resume keeps OUT, overwrite clears it")


@dataclass
class TransformResult:
    report: dict
    out_dir: str


# ---------------------------------------------------------------- categories

def resolve_categories(ds: CocoDataset, names: Optional[Sequence[str]]) -> Optional[tuple]:
    """Category names (or ids) -> sorted ids; None means all."""
    if not names:
        return None
    by_name = {c["name"]: cid for cid, c in ds.categories.items()}
    ids = set()
    for n in names:
        n = n.strip()
        if n in by_name:
            ids.add(by_name[n])
        elif n.isdigit() and int(n) in ds.categories:
            ids.add(int(n))
        else:
            known = ", ".join(sorted(by_name)[:12]) + (", ..." if len(by_name) > 12 else "")
            raise UsageError(f"--categories: unknown category {n!r} in {ds.path} (known: {known})")
    return tuple(sorted(ids))


# ---------------------------------------------------------------- output folder

def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def prepare_out(out_dir: str, inputs: Iterable[str], run: RunOptions) -> None:
    """Refuse an OUT that holds inputs or another run's output; clear it with overwrite."""
    for p in inputs:
        if p and (_inside(p, out_dir) or _inside(out_dir, p) and os.path.isdir(p)):
            raise SmplusError(f"--out {out_dir} overlaps the input {p}; choose an output folder apart from the inputs")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise SmplusError(f"--out {out_dir} exists and is not a folder")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not run.resume:
        if not run.overwrite:
            raise SmplusError(f"output folder {out_dir} is not empty; pass --overwrite to replace it "
                              "or --resume to continue an interrupted run")
        for name in OUTPUTS:
            p = os.path.join(out_dir, name)
            if os.path.isdir(p):
                shutil.rmtree(p)
            elif os.path.exists(p):
                os.unlink(p)
    os.makedirs(os.path.join(out_dir, STATE_DIR, "parts"), exist_ok=True)


def _file_digest(path: Optional[str]) -> Optional[str]:
    if path is None:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_resume(out_dir: str, fingerprint: dict, run: RunOptions) -> None:
    path = os.path.join(out_dir, STATE_DIR, "run.json")
    if run.resume and os.path.exists(path):
        with open(path) as f:
            before = json.load(f)
        if before != fingerprint:
            diff = sorted(k for k in set(before) | set(fingerprint) if before.get(k) != fingerprint.get(k))
            raise SmplusError(f"--resume: {out_dir} was started with other inputs or options ({', '.join(diff)} "
                              "differ); rerun with the same ones, or use --overwrite to start again")
    elif run.resume and os.listdir(out_dir) != [STATE_DIR]:
        raise SmplusError(f"--resume: {out_dir} holds no smplus run to resume; use --overwrite to replace it")
    write_json_atomic(path, fingerprint)


# ---------------------------------------------------------------- rendering one image (worker side)

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


def _part_path(out_dir: str, image_id: int) -> str:
    return os.path.join(out_dir, STATE_DIR, "parts", f"{image_id}.json")


def _decode_checked(images_dir: str, image: dict) -> np.ndarray:
    path = os.path.join(images_dir, image["file_name"])
    pixels = read_image(path)
    if pixels.shape[:2] != (image["height"], image["width"]):
        raise SmplusError(f"image {path} is {pixels.shape[1]}x{pixels.shape[0]} but the annotations say "
                          f"{image['width']}x{image['height']}")
    return pixels


def render_task(task: ImageTask) -> dict:
    """Render (or copy) one image, write it and its journal entry; return the entry."""
    from .render import UnfillableHoles, render_image, render_resized

    plan = task.plan
    src_path = os.path.join(task.images_dir, task.image["file_name"])
    dst_path = os.path.join(task.out_dir, "images", task.image["file_name"])
    part = {"image_id": plan.image_id, "width": plan.width, "height": plan.height,
            "background": plan.background, "annotations": [], "dropped": [], "skipped": None,
            "provenance": provenance("copy", None, 0.0)}
    try:
        if not plan.transformed:  # nothing to scale: the file is copied, never re-encoded
            try:
                with open(src_path, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise SmplusError(f"image could not be read: {src_path} ({e.strerror})") from None
            write_bytes_atomic(dst_path, data)
        else:
            pixels = _decode_checked(task.images_dir, task.image)
            bg_pixels = None
            if plan.background == "new":
                try:
                    bg_pixels = _decode_checked(task.images_dir, task.background)
                except SmplusError:
                    bg_pixels = None
                if bg_pixels is None:  # an unreadable background falls back to inpainting
                    plan = replace(plan, background="inpaint", background_image_id=plan.image_id,
                                   width=task.image["width"], height=task.image["height"], background_labels=())
            fallback = None
            if plan.background == "resize":
                result = render_resized(plan, pixels, task.anns)
            else:
                try:
                    result = render_image(plan, pixels, task.anns, bg_pixels, task.background_anns, task.max_hole)
                except UnfillableHoles as e:  # never the blurred source: another image is the background
                    if plan.fallback is None:
                        raise SmplusError(f"image {src_path}: {e}, and no other image can be its background") from None
                    fallback, plan = e.reason, plan.fallback
                    bg_pixels = _decode_checked(task.images_dir, task.fallback)
                    result = render_image(plan, pixels, task.anns, bg_pixels, task.fallback_anns)
            part.update(background=plan.background, width=plan.width, height=plan.height,
                        provenance=provenance(plan.background, plan.background_image_id, result.hole_fraction,
                                              fallback))
            write_bytes_atomic(dst_path, encode_image(result.image, task.image["file_name"], *task.jpeg))
            part["annotations"] = result.annotations
            part["dropped"] = [list(d) for d in result.dropped]
    except SmplusError as e:
        part["skipped"] = str(e)
    if part["skipped"] is None:
        write_json_atomic(_part_path(task.out_dir, plan.image_id), part)
    return part


def provenance(background: str, background_image_id: Optional[int], hole_fraction: Optional[float],
               fallback: Optional[str] = None) -> dict:
    """How an output image's background was made; the output `images` entry carries it as "smplus".

    background: inpaint (its own holes filled), new (another image), copy (the
    file copied unchanged), resize (image level); hole_fraction: the share of
    the background's pixels inpainted (None in a dry run); fallback: why the
    planned inpainting gave way to a new background (hole_above_max, no_known_pixel).
    """
    return {"background": background, "background_image_id": background_image_id,
            "hole_fraction": None if hole_fraction is None else round(hole_fraction, 4), "fallback": fallback}


# Thread pools of the libraries under each worker. Every process gets one
# thread: N processes x default threads oversubscribe the cores, and OpenMP's
# spinning threads then make 2 workers 15x slower than 1.
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


@contextlib.contextmanager
def _single_threaded_children():
    """Spawned children read these at import, before any initializer runs."""
    saved = {k: os.environ.get(k) for k in _THREAD_ENV}
    os.environ.update({k: "1" for k in _THREAD_ENV})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _worker_init():
    import signal

    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C for the pool

    cv2.setNumThreads(1)  # one image per process; threads would only contend
    _warm_up_matting()


# ---------------------------------------------------------------- the run

def transform(source: str, images_dir: str, out_dir: str, target: Optional[str] = None,
              options: TransformOptions = TransformOptions(), bins: int = 100,
              except_rate: Optional[float] = None, log_bins: bool = False,
              categories: Optional[Sequence[str]] = None, run: RunOptions = RunOptions()) -> TransformResult:
    """SM+ on a COCO dataset: the library entry point behind `smplus transform`."""
    if not os.path.isdir(images_dir):
        raise SmplusError(f"images folder not found: {images_dir} (--images must be the folder file_names are relative to)")
    with _worker_pool(run) as pool:  # workers start up while the annotations load
        return _transform(source, images_dir, out_dir, target, options, bins, except_rate, log_bins, categories,
                          run, pool)


def _transform(source, images_dir, out_dir, target, options, bins, except_rate, log_bins, categories, run, pool):
    ds = load_coco(source)
    hist = load_target(target, bins, except_rate, log_bins)
    cat_ids = resolve_categories(ds, categories)
    if cat_ids is not None:
        options = TransformOptions(**{**asdict(options), "categories": cat_ids})
    prepare_out(out_dir, [source, images_dir, target], run)
    dplan = plan_dataset(ds, hist, options)

    parameters = {"mode": options.mode, "level": options.level, "scale_range": list(options.scale_range),
                  "seed": options.seed, "psi_p": options.psi_p,
                  "background": options.background, "background_pool": options.background_pool,
                  "max_hole": options.max_hole, "jpeg_quality": options.jpeg_quality,
                  "jpeg_subsampling": options.jpeg_subsampling,
                  "bins": hist.bins, "except_rate": except_rate, "log_bins": log_bins,
                  "categories": ([ds.categories[c]["name"] for c in options.categories if c in ds.categories]
                                 if options.categories else None),
                  "source": os.path.abspath(source), "images": os.path.abspath(images_dir),
                  "target": os.path.abspath(target) if target else None, "dry_run": run.dry_run}
    fingerprint = {**parameters, "source_sha256": _file_digest(source), "target_sha256": _file_digest(target),
                   "version": __version__}
    _check_resume(out_dir, fingerprint, run)

    if run.dry_run:
        parts = {p.image_id: _planned_part(p, ds) for p in dplan.images}
    else:
        parts = _render_all(ds, dplan, images_dir, out_dir, run, pool, options)
    report = _assemble(ds, dplan, hist, parts, parameters, out_dir, run)
    return TransformResult(report, out_dir)


def _planned_part(plan: ImagePlan, ds: CocoDataset) -> dict:
    """A dry run's journal entry: the planned boxes as annotations."""
    anns = {a["id"]: a for a in ds.anns_by_image[plan.image_id]}
    out = []
    for ip in plan.instances:
        x, y, w, h = ip.box
        out.append({"image_id": plan.image_id, "category_id": anns[ip.ann_id]["category_id"],
                    "bbox": [round(v, 3) for v in ip.box], "area": round(w * h, 3),
                    "segmentation": [[round(v, 3) for v in (x, y, x + w, y, x + w, y + h, x, y + h)]],
                    "iscrowd": 0, "source_ann_id": ip.ann_id})
    kind = plan.background if plan.transformed else "copy"
    return {"image_id": plan.image_id, "width": plan.width, "height": plan.height,
            "background": plan.background, "annotations": out, "dropped": [list(d) for d in plan.dropped],
            "skipped": None, "provenance": provenance(kind, plan.background_image_id if plan.transformed else None,
                                                      None if kind == "inpaint" else 0.0)}


def _tasks(ds: CocoDataset, plans: Sequence[ImagePlan], images_dir: str, out_dir: str, options: TransformOptions):
    for plan in plans:
        used = set(plan.crowd) | set(plan.removed) | {ip.ann_id for ip in plan.instances}
        anns = {a["id"]: a for a in ds.anns_by_image[plan.image_id] if a["id"] in used}
        bg, bg_anns = _background(ds, plan)
        fallback, fallback_anns = _background(ds, plan.fallback) if plan.fallback else (None, [])
        yield ImageTask(plan, ds.images[plan.image_id], anns, images_dir, out_dir, bg, bg_anns,
                        fallback, fallback_anns, options.max_hole, (options.jpeg_quality, options.jpeg_subsampling))


def _background(ds: CocoDataset, plan: ImagePlan):
    """A new background's image entry and the annotations render needs (crowds, cp+ labels)."""
    if plan.background != "new":
        return None, []
    return ds.images[plan.background_image_id], [a for a in ds.anns_by_image[plan.background_image_id]
                                                 if a.get("iscrowd") or a["id"] in plan.background_labels]


@contextlib.contextmanager
def _worker_pool(run: RunOptions):
    """Worker processes for rendering (None for one worker), terminated on the way out.

    Spawned, not forked: libgomp (used by numba/OpenCV) aborts in a forked
    child. Each worker imports pymatting once (~0.6 s; numba's compiled kernels
    load from its on-disk cache, compiled by the first run on the machine).
    """
    if run.workers < 2 or run.dry_run:
        yield None
        return
    with _single_threaded_children():
        pool = multiprocessing.get_context("spawn").Pool(run.workers, initializer=_worker_init)
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()


def _render_all(ds: CocoDataset, dplan: DatasetPlan, images_dir: str, out_dir: str,
                run: RunOptions, pool, options: TransformOptions) -> Dict[int, dict]:
    from tqdm import tqdm

    if run.resume:
        _remove_partial_writes(out_dir)
    parts: Dict[int, dict] = {}
    todo = []
    for plan in dplan.images:
        path = _part_path(out_dir, plan.image_id)
        if run.resume and os.path.exists(path):
            with open(path) as f:
                parts[plan.image_id] = json.load(f)
        else:
            todo.append(plan)
    disable = None if run.progress is None else not run.progress
    bar = tqdm(total=len(dplan.images), initial=len(parts), desc="SM+", unit="img", disable=disable)
    tasks = _tasks(ds, todo, images_dir, out_dir, options)
    try:
        results = pool.imap_unordered(render_task, tasks, chunksize=1) if pool else map(render_task, tasks)
        with _stop_requests() as stop:
            for part in results:
                parts[part["image_id"]] = part
                bar.update(1)
                if stop:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        if pool is not None:
            pool.terminate()
        done = len(os.listdir(os.path.dirname(_part_path(out_dir, 0))))
        raise SmplusError(f"interrupted after {done} of {len(dplan.images)} images; "
                          f"rerun the same command with --resume to continue") from None
    finally:
        bar.close()
    return parts


@contextlib.contextmanager
def _stop_requests():
    """Ctrl-C / SIGTERM while rendering: finish the image at hand, then stop.

    Raising inside native code (pycocotools, OpenCV) can surface as another
    error, so the first signal only sets a flag checked between images; a
    second one stops at once.
    """
    import signal
    import threading

    requested: list = []
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def handler(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)

    saved = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for sig, h in saved.items():
            signal.signal(sig, h)


def _remove_partial_writes(out_dir: str) -> None:
    """Temporary files of writes a killed run never renamed into place."""
    for root, _, files in os.walk(out_dir):
        for name in files:
            if name.startswith(TMP_PREFIX):
                os.unlink(os.path.join(root, name))


def _warm_up_matting():
    import pymatting  # noqa: F401  (numba functions load from their on-disk cache)


def _assemble(ds: CocoDataset, dplan: DatasetPlan, hist: SizeHistogram, parts: Dict[int, dict],
              parameters: dict, out_dir: str, run: RunOptions) -> dict:
    """annotations.json and report.json from the journal, in source order."""
    matched = set(_matched_ids(dplan))
    images, annotations, skipped = [], [], []
    dropped: Counter = Counter()
    backgrounds: Counter = Counter()
    crowd_erased = crowd_kept = 0
    next_id = 1
    for plan in dplan.images:
        im, part = ds.images[plan.image_id], parts[plan.image_id]
        if part["skipped"] is not None:
            skipped.append({"image_id": plan.image_id, "file_name": im["file_name"], "reason": part["skipped"]})
            continue
        images.append({**im, "width": part["width"], "height": part["height"], "smplus": part["provenance"]})
        dropped.update(reason for _, reason in part["dropped"])
        if plan.transformed:
            backgrounds[part["background"]] += 1
            if plan.background == "resize":
                crowd_kept += len(plan.crowd)
            else:
                crowd_erased += len(plan.crowd)
            new = part["annotations"]
        else:  # copied image: its annotations as they were, less degenerate ones
            bad = {ann_id for ann_id, _ in plan.dropped}
            new = [{**a, "source_ann_id": a["id"]} for a in ds.anns_by_image[plan.image_id] if a["id"] not in bad]
            crowd_kept += sum(1 for a in new if a.get("iscrowd"))
        for a in new:
            annotations.append({**a, "id": next_id})
            next_id += 1

    after = [instance_size(*a["bbox"][2:]) for a in annotations
             if a["source_ann_id"] in matched and not a.get("iscrowd") and not a.get("from_background")]
    n_src_instances = sum(1 for a in ds.raw["annotations"] if not a.get("iscrowd"))
    report = {
        "smplus_version": __version__,
        **{k: parameters[k] for k in ("mode", "level", "seed")},
        "parameters": parameters,
        "target": {"source": hist.source, "bins": hist.bins, "boxes": hist.count},
        "counts": {
            "images": len(images),
            "images_transformed": sum(backgrounds.values()),
            "instances_in": n_src_instances,
            "instances_out": sum(1 for a in annotations if not a.get("iscrowd")),
            "scale_matched_in": len(dplan.source_sizes),
            "scale_matched_out": len(after),
            "background_labels_kept": sum(1 for a in annotations if a.get("from_background")),
            "crowd_erased": crowd_erased,
            "crowd_kept": crowd_kept,
            "dropped": dict(sorted(dropped.items())),
        },
        "backgrounds": {"inpaint": backgrounds["inpaint"], "new": backgrounds["new"]},
        "provenance": _provenance_summary(ds, dplan, images, annotations, parameters),
        "jsd": {"before": size_jsd(dplan.source_sizes, hist), "after": size_jsd(after, hist),
                "sampling_noise": sampling_noise(hist, len(after))},
        "sizes": {"before": _size_stats(dplan.source_sizes), "after": _size_stats(after)},
        "skipped": skipped,
    }
    if skipped and not run.allow_skips:
        write_json_atomic(os.path.join(out_dir, "report.json"), report, indent=2)
        first = skipped[0]
        raise SmplusError(f"{len(skipped)} image(s) could not be transformed, first {first['reason']}; "
                          f"see {out_dir}/report.json. Fix them and rerun with --resume, "
                          "or pass --allow-skips to write the dataset without them")
    dataset = {k: v for k, v in ds.raw.items() if k not in ("images", "annotations")}
    dataset.update(images=images, annotations=annotations)
    write_json_atomic(os.path.join(out_dir, "annotations.json"), dataset)
    write_json_atomic(os.path.join(out_dir, "report.json"), report, indent=2)
    return report


def _provenance_summary(ds: CocoDataset, dplan: DatasetPlan, images: List[dict], annotations: List[dict],
                        parameters: dict) -> dict:
    """report.json's summary of the images' provenance: kinds, fallbacks by reason, hole
    fractions, and what the new backgrounds show of the scale-matched categories unlabelled."""
    kinds: Counter = Counter(im["smplus"]["background"] for im in images)
    fallbacks: Counter = Counter(im["smplus"]["fallback"] for im in images if im["smplus"]["fallback"])
    holes = [im["smplus"]["hole_fraction"] for im in images
             if im["smplus"]["background"] == "inpaint" and im["smplus"]["hole_fraction"] is not None]
    names = parameters["categories"]
    matched = {cid for cid, c in ds.categories.items() if names is None or c["name"] in names}
    labelled = {(a["image_id"], a["source_ann_id"]) for a in annotations if a.get("from_background")}
    visible = large = 0
    for im in images:
        if im["smplus"]["background"] != "new":
            continue
        bg = ds.images[im["smplus"]["background_image_id"]]
        for a in ds.anns_by_image[bg["id"]]:
            if (a.get("iscrowd") or a["category_id"] not in matched or (im["id"], a["id"]) in labelled
                    or degenerate_reason(a, bg["width"], bg["height"]) is not None):
                continue
            visible += 1
            large += instance_size(*clipped_box(a, bg["width"], bg["height"])[2:]) > 32
    return {
        "images": {k: kinds[k] for k in ("inpaint", "new", "copy", "resize") if kinds[k]},
        "fallbacks": dict(sorted(fallbacks.items())),
        "hole_fraction": _quantiles(holes),
        "background_pool": {"kind": parameters["background_pool"], "size": dplan.pool_size,
                            "unlabelled_matched_on_new": visible, "unlabelled_matched_on_new_over_32px": large},
    }


def _quantiles(values: Sequence[float]) -> Optional[dict]:
    if not len(values):
        return None
    q = np.quantile(np.asarray(values, float), [0.0, 0.5, 0.9, 1.0])
    return {"count": len(values), "min": round(float(q[0]), 4), "median": round(float(q[1]), 4),
            "p90": round(float(q[2]), 4), "max": round(float(q[3]), 4)}


def _matched_ids(dplan: DatasetPlan):
    for plan in dplan.images:
        for ip in plan.instances:
            if ip.matched:
                yield ip.ann_id


def _size_stats(sizes: Sequence[float]) -> Optional[dict]:
    if not len(sizes):
        return None
    s = np.asarray(sizes, float)
    return {"mean": round(float(s.mean()), 3), "std": round(float(s.std()), 3),
            "median": round(float(np.median(s)), 3)}
