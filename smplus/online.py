"""SM+ per sample: `SMPlus` (a transform of one image and its COCO annotations) and
`SMPlusDataset` (a map-style dataset for a training loader).

Both run the offline run's per-image core -- plan.plan_image, then
render.render_image -- with a size supplier fitted once (RSM+: the target
histogram; MSM+: each instance's quantile among the source sizes) and a
supplier of new backgrounds (one given image, or the dataset's own pool).
Randomness is a numpy Generator per call; SMPlusDataset seeds it from
(seed, epoch, index), so a sample does not depend on the loader's workers.

Images are HxWx3 uint8 arrays. SMPlus takes and returns BGR (as OpenCV,
mmdetection and ultralytics hold them) unless channels="rgb"; SMPlusDataset
returns RGB (torchvision's convention) unless channels="bgr".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .coco import CocoDataset, index_coco, load_coco, read_image, usable_segmentation
from .errors import SmplusError, UsageError
from .histogram import SizeHistogram, build_histogram, load_target
from .labels import unscaled_label
from .options import COPY_PASTE, TransformOptions
from .plan import ImagePlan, image_candidates, plan_image, unscaled_labels
from .pool import BackgroundPool, pool_images
from .sizes import MsmSizes, OwnSizes, RsmSizes

CHANNELS = ("bgr", "rgb")


@dataclass
class Sample:
    """One transformed sample: pixels (HxWx3 uint8, the channel order asked for), its COCO
    annotations (the keys of the offline output's, ids numbered from 1), how its background was
    made (the offline output's per-image "smplus" entry) and the plan that made it."""

    image: np.ndarray
    annotations: List[dict]
    provenance: dict
    plan: Optional[ImagePlan] = None


def _options(mode: str, psi_p: float, categories, options: Dict[str, Any]) -> TransformOptions:
    known = {f.name for f in fields(TransformOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UsageError(f"unknown option {unknown[0]!r}; options are: {', '.join(sorted(known))}")
    if options.get("level", "instance") != "instance":
        raise UsageError("level='image' (the original Scale Match) is offline only: use smplus.transform")
    cats = None if categories is None else tuple(categories)
    return TransformOptions(mode=mode, psi_p=psi_p, categories=cats, **options)


def _target(target, bins: int, except_rate: Optional[float], log_bins: bool) -> SizeHistogram:
    if isinstance(target, SizeHistogram):
        return target
    if target is None or isinstance(target, (str, os.PathLike)):
        return load_target(None if target is None else os.fspath(target), bins, except_rate, log_bins)
    try:
        sizes = [float(s) for s in target]
    except (TypeError, ValueError):
        raise UsageError(f"target must be a file path, a SizeHistogram or a list of sizes, got {type(target).__name__}") from None
    return build_histogram(sizes, bins, except_rate, log_bins, source="<sizes>")


def _source_sizes(source, categories: Optional[Sequence[int]]) -> Optional[List[float]]:
    """The source instance sizes MSM+ maps from: of a COCO file, a CocoDataset, or given."""
    if source is None:
        return None
    if isinstance(source, (str, os.PathLike)):
        source = load_coco(os.fspath(source))
    selected = None if categories is None else set(categories)
    if isinstance(source, CocoDataset):
        return [c.size for image_id, im in source.images.items()
                for c in image_candidates(im, source.anns_by_image[image_id], selected)[1] if not c.cut_both]
    try:
        return [float(s) for s in source]
    except (TypeError, ValueError):
        raise UsageError("source must be a COCO file path, a CocoDataset or a list of instance sizes, "
                         f"got {type(source).__name__}") from None


class _Given:
    """Backgrounds: the one image given, if it holds the instances (else None: inpaint)."""

    def __init__(self, entry: Optional[dict], anns: Sequence[dict]):
        self.entry, self.anns = entry, anns

    def draw(self, rng, image_id: int, need: Tuple[float, float] = (0.0, 0.0)) -> Optional[int]:
        e = self.entry
        if e is None or e["width"] < need[0] or e["height"] < need[1]:
            return None
        return e["id"]

    def background(self, image_id: int) -> Tuple[dict, Sequence[dict]]:
        return self.entry, self.anns


def _check_image(image, what: str) -> np.ndarray:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            and image.shape[0] > 0 and image.shape[1] > 0):
        got = (f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray)
               else type(image).__name__)
        raise SmplusError(f"{what} must be an HxWx3 uint8 array, got {got}")
    return image


def _indexed(image: np.ndarray, annotations, what: str, image_id: Optional[int] = None) -> Tuple[dict, List[dict]]:
    """The image entry (from the array's shape) and the annotations, checked as the CLI checks a file."""
    if not isinstance(annotations, (list, tuple)) or not all(isinstance(a, dict) for a in annotations):
        raise SmplusError(f"{what} annotations must be a list of COCO annotation dicts, got {type(annotations).__name__}")
    ids = {a.get("image_id") for a in annotations} - {None}
    if len(ids) > 1:
        raise SmplusError(f"{what} annotations belong to {len(ids)} images (image_id {sorted(ids, key=str)[:3]}); "
                          "give one image's annotations")
    if image_id is None:
        image_id = ids.pop() if ids else 0
    if isinstance(image_id, np.integer):  # from a framework's arrays
        image_id = int(image_id)
    if not isinstance(image_id, int) or isinstance(image_id, bool):
        raise SmplusError(f"{what} annotations: image_id must be an integer, got {image_id!r}")
    taken = {a["id"] for a in annotations if isinstance(a.get("id"), int)}
    fresh = (i for i in range(1, len(annotations) + len(taken) + 2) if i not in taken)
    anns = [{**a, "image_id": image_id, **({} if "id" in a else {"id": next(fresh)})} for a in annotations]
    entry = {"id": image_id, "width": int(image.shape[1]), "height": int(image.shape[0]), "file_name": f"{image_id}.jpg"}
    categories = [{"id": c, "name": str(c)} for c in {a.get("category_id") for a in anns} if isinstance(c, int)]
    ds = index_coco({"images": [entry], "annotations": anns, "categories": categories}, "passed to smplus",
                    f"{what} annotations")
    return entry, ds.anns_by_image[image_id]


def _convert(image: np.ndarray, channels: str) -> np.ndarray:
    return np.ascontiguousarray(image[..., ::-1]) if channels == "rgb" else image


def render_plan(plan: ImagePlan, pixels: np.ndarray, anns: Sequence[dict], background,
                options: TransformOptions) -> Sample:
    """Replay `plan` on BGR `pixels`; `background(plan) -> (BGR pixels, annotations)` of a new background;
    `options`: the renderer's (max_hole, fill).

    The offline renderer's pure half (render.render_image) with its fallback: holes too
    large to inpaint take the plan's fallback background; with none, the image comes back
    unchanged (provenance "copy", its fallback says why), where the offline run skips it.
    """
    from .render import UnfillableHoles, render_image
    from .task import provenance

    by_id = {a["id"]: a for a in anns}
    H, W = pixels.shape[:2]
    fallback, result = None, None
    if plan.transformed:
        bg_pixels, bg_anns = background(plan) if plan.background == "new" else (None, ())
        try:
            result = render_image(plan, pixels, by_id, bg_pixels, bg_anns, options.max_hole, options.fill)
        except UnfillableHoles as e:
            fallback = e.reason
            if plan.fallback is not None:
                plan = plan.fallback
                result = render_image(plan, pixels, by_id, *background(plan), fill_method=options.fill)
    if result is not None:
        out = result.annotations + unscaled_labels(plan, by_id, W, H)
        prov = provenance(plan.background, plan.background_image_id, result.hole_fraction, fallback, result.erased)
        return Sample(result.image, [{**a, "id": k + 1} for k, a in enumerate(out)], prov, plan)
    # nothing to scale (or nowhere to put it): the image as it is, with its usable labels
    image = {"id": plan.image_id, "width": W, "height": H}
    bad, _ = image_candidates(image, anns, None)
    out = [{**a, "segmentation": usable_segmentation(a, image), "source_ann_id": a["id"]}
           for a in anns if a["id"] not in bad]
    out += [lab for a in anns if a["id"] in bad
            for lab in [unscaled_label(a, bad[a["id"]], plan.image_id, W, H)] if lab is not None]
    return Sample(pixels.copy(), [{**a, "id": k + 1} for k, a in enumerate(out)],
                  provenance("copy", None, 0.0, fallback), plan)


class SMPlus:
    """SM+ as a per-sample transform: `sm(image, annotations, background=None, rng=None) -> Sample`.

    target: the target sizes (a COCO/TinyPerson annotation file, a `smplus histogram`
    file, a SizeHistogram, a list of sizes; None: the bundled TinyPerson prior).
    mode: "msm" (MSM+, needs `source`), "rsm" (RSM+), "cp", "cp+".
    source: what MSM+ maps from: a COCO file, a CocoDataset or a list of instance sizes.
    categories: category ids to scale-match (None: all); with a COCO source, names too.
    Other keyword options are TransformOptions' (the CLI's flags: background, max_hole,
    background_pool, ...); bins, except_rate, log_bins shape the target histogram.
    channels: "bgr" (default, as OpenCV reads) or "rgb", for input and output alike.
    seed: the generator used when a call gives no `rng`.
    Bad input raises smplus.SmplusError with the CLI's one-line messages.
    """

    def __init__(self, target=None, mode: str = "msm", source=None, psi_p: float = 0.4,
                 categories: Optional[Sequence[Union[int, str]]] = None, *, bins: int = 100,
                 except_rate: Optional[float] = None, log_bins: bool = False, channels: str = "bgr",
                 seed: Optional[int] = None, **options):
        if channels not in CHANNELS:
            raise UsageError(f"channels must be one of {', '.join(CHANNELS)}, got {channels!r}")
        self.channels = channels
        if isinstance(source, (str, os.PathLike)):
            source = load_coco(os.fspath(source))
        if categories is not None and isinstance(source, CocoDataset):
            from .pipeline import resolve_categories

            categories = resolve_categories(source, [str(c) for c in categories])
        elif categories is not None and not all(isinstance(c, int) and not isinstance(c, bool) for c in categories):
            raise UsageError(f"categories must be category ids (names need a COCO source), got {list(categories)!r}")
        self.options = _options(mode, psi_p, categories, options)
        self.hist = _target(target, bins, except_rate, log_bins)
        if self.options.mode in COPY_PASTE:
            self.sizes = OwnSizes(self.hist)
        elif self.options.mode == "rsm":
            self.sizes = RsmSizes(self.hist)
        else:
            sizes = _source_sizes(source, self.options.categories)
            if sizes is None:
                raise UsageError("mode 'msm' (MSM+) maps each instance's quantile among the source sizes: give "
                                 "source= (a COCO file, a CocoDataset or a list of sizes), or use mode='rsm'")
            self.sizes = MsmSizes(self.hist, sizes)
        self._rng = np.random.default_rng(seed)

    def plan(self, entry: dict, anns: Sequence[dict], rng: np.random.Generator, backgrounds) -> ImagePlan:
        return plan_image(entry, anns, self.sizes, rng, backgrounds, self.options)

    def __call__(self, image: np.ndarray, annotations: Sequence[dict], background=None,
                 rng: Union[None, int, np.random.Generator] = None) -> Sample:
        """SM+ on one image. `background`: (image, annotations) a new background may be,
        used when PSI draws one and it holds the scaled instances; None: always inpainted."""
        image = _convert(_check_image(image, "image"), self.channels)
        entry, anns = _indexed(image, annotations, "image")
        bg = _Given(None, ())
        bg_pixels = None
        if background is not None:
            if not (isinstance(background, (tuple, list)) and len(background) == 2):
                raise SmplusError("background must be (image, annotations) or None")
            bg_pixels = _convert(_check_image(background[0], "background image"), self.channels)
            bg_id = entry["id"] + 1  # any id but the image's own: the planner tells them apart by id
            bg = _Given(*_indexed(bg_pixels, background[1], "background", bg_id))
        if rng is None:
            rng = self._rng
        elif not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        plan = self.plan(entry, anns, rng, bg)
        sample = render_plan(plan, image, anns, lambda p: (bg_pixels, bg.anns), self.options)
        sample.image = _convert(sample.image, self.channels)
        return sample


_READY_PID = None


def _worker_ready() -> None:
    """Once per process: the matting kernels loaded (from numba's cache, compiled if absent).

    OpenCV's thread count is left alone: in a loader worker forked from a parent
    that ran OpenCV, cv2.setNumThreads hangs (it waits for the parent's pool threads)."""
    global _READY_PID
    if _READY_PID == os.getpid():
        return
    from .matting import warm_up

    warm_up()
    _READY_PID = os.getpid()


class SMPlusDataset:
    """A map-style dataset for torch.utils.data.DataLoader: SM+ on every read (torch not needed to build it).

    source: COCO instances file (or CocoDataset); images: the folder its file_names are relative to.
    ds[i] -> (image, target): image HxWx3 uint8 (RGB unless channels="bgr"); target in torchvision's
    detection convention: boxes (N x 4 XYXY float32), labels (int64), masks (N x H x W uint8), image_id,
    area (float32), iscrowd (int64). as_tensors=True: torch tensors, the image 3xHxW uint8.
    New backgrounds come from the dataset's own pool (background_pool, max_background_objects as the
    CLI's). Randomness from (seed, epoch, index): set_epoch(e) for a new draw; the same (seed,
    epoch, index) gives the same sample whatever the loader's num_workers.
    Other options: as SMPlus (target, mode, psi_p, categories, TransformOptions' fields, bins, ...).
    """

    def __init__(self, source, images: str, target=None, seed: int = 0, mode: str = "msm", *,
                 as_tensors: bool = False, channels: str = "rgb", **options):
        from .pipeline import check_image_formats

        if not isinstance(images, (str, os.PathLike)) or not os.path.isdir(images):
            raise SmplusError(f"images folder not found: {images} (images must be the folder file_names are relative to)")
        if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
            raise UsageError(f"seed must be a non-negative integer, got {seed!r}")
        self.coco = source if isinstance(source, CocoDataset) else load_coco(os.fspath(source))
        check_image_formats(self.coco)
        self.images_dir = os.fspath(images)
        self.sm = SMPlus(target, mode, self.coco, channels=channels, **options)
        o = self.sm.options
        selected = None if o.categories is None else set(o.categories)
        self.pool = BackgroundPool(pool_images(self.coco, o.background_pool, selected, o.max_background_objects),
                                   self.coco.images, self.coco.anns_by_image)
        self.ids = list(self.coco.images)
        self.seed, self.epoch, self.as_tensors, self.channels = seed, 0, as_tensors, channels
        if as_tensors:
            try:
                import torch  # noqa: F401
            except ImportError:
                raise UsageError("as_tensors=True needs torch, which is not installed (pip install torch)") from None

    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """A new draw for every sample (call before iterating; with persistent_workers the workers keep theirs)."""
        if not (isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0):
            raise UsageError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = epoch

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def _pixels(self, image_id: int) -> np.ndarray:
        im = self.coco.images[image_id]
        path = os.path.join(self.images_dir, im["file_name"])
        pixels = read_image(path)
        if pixels.shape[:2] != (im["height"], im["width"]):
            raise SmplusError(f"image {path} is {pixels.shape[1]}x{pixels.shape[0]} but the annotations say "
                              f"{im['width']}x{im['height']}")
        return pixels

    def sample(self, index: int) -> Sample:
        """The Sample of `index` at this epoch: pixels, COCO annotations, provenance, plan."""
        if not (isinstance(index, (int, np.integer)) and -len(self) <= index < len(self)):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index = int(index) % len(self)
        _worker_ready()
        image_id = self.ids[index]
        anns = self.coco.anns_by_image[image_id]
        plan = self.sm.plan(self.coco.images[image_id], anns, self.rng(index), self.pool)

        def background(p: ImagePlan):
            return self._pixels(p.background_image_id), self.pool.background(p.background_image_id)[1]

        sample = render_plan(plan, self._pixels(image_id), anns, background, self.sm.options)
        sample.image = _convert(sample.image, self.channels)
        return sample

    def __getitem__(self, index: int):
        sample = self.sample(index)
        image_id = self.ids[int(index) % len(self)]
        return to_detection(sample, image_id, self.as_tensors)


def to_detection(sample: Sample, image_id: int, as_tensors: bool = False):
    """(image, target) in torchvision's detection convention from a Sample."""
    from .render import decode_mask

    H, W = sample.image.shape[:2]
    anns = sample.annotations
    boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                      for a in anns], np.float32).reshape(-1, 4)
    masks = np.zeros((len(anns), H, W), np.uint8)
    for k, a in enumerate(anns):
        m = decode_mask(a, H, W)
        if m is not None:
            masks[k] = m
    target = {"boxes": boxes, "labels": np.array([a["category_id"] for a in anns], np.int64),
              "masks": masks, "image_id": image_id,
              "area": np.array([a["area"] for a in anns], np.float32),
              "iscrowd": np.array([a.get("iscrowd", 0) for a in anns], np.int64)}
    image = sample.image
    if as_tensors:
        import torch

        image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        target = {k: torch.as_tensor(v) for k, v in target.items()}
    return image, target


def collate_fn(batch):
    """Detection batches: images and targets as tuples (their sizes differ), as torchvision's references."""
    return tuple(zip(*batch))
