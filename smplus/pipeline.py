"""Run SM+ over a dataset: load, plan, render through an executor, assemble.

The pieces live in their own modules: the render task every executor runs
(task.py), the executors (executors.py), the journal of what is rendered
(journal.py), and assembly of annotations.json + report.json (assemble.py).
This module is the orchestration: `transform` (a whole run, one shard of it,
or its resume) and `merge` (shards into one dataset). Plans are global and
deterministic, so a resume, a shard and a merge all plan the whole set again
and differ only in which images they render or assemble.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, fields, replace
from typing import Dict, Iterable, Iterator, Optional, Sequence, Set, Tuple, Union

from . import __version__
from .assemble import assemble, planned_entries
from .coco import CocoDataset, frozen_gc, load_coco, paused_gc, write_json_atomic
from .errors import OutputError, SmplusError, UsageError
from .executors import EXECUTORS, make_executor
from .histogram import load_target
from .journal import Journal, merged_entries
from .naming import OutputNames
from .outdir import STATE_DIR, _inside, check_out_dir, prepare_out, remove_partial_writes, tmp_dir
from .plan import DatasetPlan, TransformOptions, plan_dataset
from .progress import PROGRESS_MODES, make_progress
from .shards import assign_shards, differences, shard_positions
from .task import image_tasks, output_image_path, together_by_background

RUN_FILE = "run.json"  # the run's fingerprint: inputs, options, version, shard


@dataclass(frozen=True)
class RunOptions:
    """Where and how to run; none of these change the output (a shard renders part of it)."""

    workers: int = 1
    dry_run: bool = False
    overwrite: bool = False
    resume: bool = False
    allow_skips: bool = False
    progress: Union[None, bool, str] = None  # auto | bar | log | none (None: auto, a bar only on a terminal)
    progress_interval: float = 30.0  # log mode: seconds between lines (0: a line per image)
    executor: str = "local"          # local | ray
    address: Optional[str] = None    # Ray cluster address (None: a local Ray instance)
    shard: Optional[Tuple[int, int]] = None  # (I, N): render the I-th of N parts of the images

    def __post_init__(self):
        if not isinstance(self.workers, int) or self.workers < 1:
            raise UsageError(f"--workers must be an integer >= 1, got {self.workers!r}")
        if self.overwrite and self.resume:
            raise UsageError("--overwrite and --resume exclude each other: resume keeps OUT, overwrite clears it")
        if self.progress not in (None, True, False) + PROGRESS_MODES:
            raise UsageError(f"--progress must be one of {', '.join(PROGRESS_MODES)}, got {self.progress!r}")
        if not self.progress_interval >= 0:
            raise UsageError(f"--progress-interval must be >= 0 seconds, got {self.progress_interval!r}")
        if self.executor not in EXECUTORS:
            raise UsageError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.shard is not None:
            i, n = self.shard
            if not (isinstance(i, int) and isinstance(n, int) and 0 <= i < n):
                raise UsageError(f"--shard must be I/N with 0 <= I < N, got {i!r}/{n!r}")
            if self.dry_run:
                raise UsageError("--shard renders a part of the images and --dry-run renders none: drop one of them")


@dataclass
class TransformResult:
    report: Optional[dict]  # None for a shard: its images are assembled by `merge`
    out_dir: str
    rendered: int = 0       # images this shard holds


# ---------------------------------------------------------------- categories

def resolve_categories(ds: CocoDataset, names: Optional[Sequence[str]]) -> Optional[tuple]:
    """Category names (or ids) -> sorted ids; None means all. A name two categories share is refused."""
    if not names:
        return None
    by_name: Dict[str, list] = {}
    for cid, c in ds.categories.items():
        by_name.setdefault(c["name"], []).append(cid)
    ids = set()
    for n in names:
        n = str(n).strip()
        if n in by_name:
            if len(by_name[n]) > 1:
                raise UsageError(f"--categories: {n!r} names {len(by_name[n])} categories in {ds.path} "
                                 f"(ids {', '.join(map(str, sorted(by_name[n])))}); give their ids instead")
            ids.add(by_name[n][0])
        elif n.isdigit() and int(n) in ds.categories:
            ids.add(int(n))
        else:
            known = ", ".join(sorted(map(str, by_name))[:12]) + (", ..." if len(by_name) > 12 else "")
            raise UsageError(f"--categories: unknown category {n!r} in {ds.path} (known: {known})")
    return tuple(sorted(ids))


def _category_names(ds: CocoDataset, ids: Optional[Sequence[int]]) -> Optional[list]:
    """The scale-matched categories as report.json records them: by name, or by id where two share
    the name (a merge resolves them again from this)."""
    if not ids:
        return None
    names = [c["name"] for c in ds.categories.values()]
    return [ds.categories[c]["name"] if names.count(ds.categories[c]["name"]) == 1 else c
            for c in ids if c in ds.categories]


def check_image_formats(ds: CocoDataset) -> None:
    """Every image can be written in its file's format (JPEG for every JPEG extension): refused
    before any rendering, not skipped after it."""
    from .coco import JPEG_EXTENSIONS, unwritable_extension

    seen = set()
    for im in ds.images.values():
        ext = os.path.splitext(im["file_name"])[1].lower()
        if ext in seen:
            continue
        seen.add(ext)
        if unwritable_extension(im["file_name"]):
            raise SmplusError(f"source annotations {ds.path}: image id {im['id']} ({im['file_name']}): smplus cannot "
                              f"write {ext!r} images; it writes JPEG ({', '.join(JPEG_EXTENSIONS)}), PNG, BMP, TIFF, "
                              "WebP and the other formats OpenCV encodes: convert these images")


def _file_digest(path: Optional[str]) -> Optional[str]:
    if path is None:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_resume(out_dir: str, fingerprint: dict, run: RunOptions) -> None:
    path = os.path.join(out_dir, STATE_DIR, RUN_FILE)
    if run.resume and os.path.exists(path):
        with open(path) as f:
            before = json.load(f)
        if before != fingerprint:
            raise SmplusError(f"--resume: {out_dir} was started with other inputs or options "
                              f"({', '.join(differences(before, fingerprint))} differ); "
                              "rerun with the same ones, or use --overwrite to start again")
    elif run.resume and os.listdir(out_dir) != [STATE_DIR]:
        raise SmplusError(f"--resume: {out_dir} holds no smplus run to resume; use --overwrite to replace it")
    try:
        write_json_atomic(path, fingerprint, tmp_dir=tmp_dir(out_dir))
    except OSError as e:
        raise OutputError.writing(path, e.strerror or str(e)) from None


# ---------------------------------------------------------------- planning (the same for a run, a shard and a merge)

@dataclass
class _Planned:
    ds: CocoDataset
    hist: object
    dplan: DatasetPlan
    parameters: dict      # what report.json records
    fingerprint: dict     # what a resume and a merge compare
    options: TransformOptions
    names: OutputNames


def _plan(source: str, images_dir: str, target: Optional[str], options: TransformOptions, bins: int,
          except_rate: Optional[float], log_bins: bool, categories: Optional[Sequence[str]], dry_run: bool,
          before_planning=lambda: None, names: OutputNames = OutputNames()) -> _Planned:
    # Loading and planning build tens of millions of objects, none in a reference cycle: with the
    # cyclic collector on, its collections walked the growing dataset again and again (a quarter
    # of a dry run's CPU time). It is on again for rendering.
    with paused_gc():
        ds = load_coco(source)
        check_image_formats(ds)
        hist = load_target(target, bins, except_rate, log_bins)
        cat_ids = resolve_categories(ds, categories)
        if cat_ids is not None:
            options = replace(options, categories=cat_ids)
        before_planning()
        dplan = plan_dataset(ds, hist, options)
    # every TransformOptions field, under its own name: a merge rebuilds the options from these
    parameters = asdict(options)
    parameters.update(scale_range=list(options.scale_range),
                      categories=_category_names(ds, options.categories),
                      bins=hist.bins, except_rate=except_rate, log_bins=log_bins,
                      source=os.path.abspath(source), images=os.path.abspath(images_dir),
                      target=os.path.abspath(target) if target else None, dry_run=dry_run,
                      id_offset=names.id_offset, file_prefix=names.file_prefix)
    fingerprint = {**parameters, "source_sha256": _file_digest(source), "target_sha256": _file_digest(target),
                   "version": __version__}
    return _Planned(ds, hist, dplan, parameters, fingerprint, options, names)


# ---------------------------------------------------------------- transform

def transform(source: str, images_dir: str, out_dir: str, target: Optional[str] = None,
              options: TransformOptions = TransformOptions(), bins: int = 100,
              except_rate: Optional[float] = None, log_bins: bool = False,
              categories: Optional[Sequence[str]] = None, run: RunOptions = RunOptions(),
              names: OutputNames = OutputNames()) -> TransformResult:
    """SM+ on a COCO dataset: the library entry point behind `smplus transform`.

    `names`: output ids and file names apart from the source's (for combining datasets)."""
    check_out_dir(out_dir)
    if not os.path.isdir(images_dir):
        raise SmplusError(f"images folder not found: {images_dir} (--images must be the folder file_names are relative to)")
    executor = contextlib.nullcontext() if run.dry_run else make_executor(run.executor, run.workers, run.address)
    # Workers start up while the annotations load; OUT stays claimed (locked) until the run ends.
    with _writes_to(out_dir), executor, contextlib.ExitStack() as held:
        if run.dry_run:
            # A dry run makes no reference cycles from load to report. The collector stays off
            # throughout, and the dataset and plans are freed before it is on again: with millions of
            # objects made while it was off, its first collection walked them all (5-8 % of the run).
            held.enter_context(paused_gc())
        p = _plan(source, images_dir, target, options, bins, except_rate, log_bins, categories, run.dry_run,
                  before_planning=lambda: held.enter_context(prepare_out(out_dir, [source, images_dir, target], run)),
                  names=names)
        if not run.dry_run:  # the dataset and plans stay until the end (scripts/bench_scale.py --sections shard)
            held.enter_context(frozen_gc())
        fingerprint = {**p.fingerprint, "shard": list(run.shard) if run.shard else None}
        _check_resume(out_dir, fingerprint, run)
        if run.dry_run:
            report = assemble(p.ds, p.dplan, p.hist, planned_entries(p.ds, p.dplan.images), p.parameters, out_dir,
                              run.allow_skips)
            del p  # freed with the collector still off (see above)
            return TransformResult(report, out_dir)
        positions = (shard_positions(assign_shards(p.dplan.images, run.shard[1]), run.shard[0]) if run.shard
                     else range(len(p.dplan.images)))
        with Journal(os.path.join(out_dir, STATE_DIR)) as journal:
            rendered = _render(p, positions, images_dir, out_dir, run, journal, executor)
            if run.shard:
                return TransformResult(None, out_dir, rendered)
            report = assemble(p.ds, p.dplan, p.hist, journal.entries(), p.parameters, out_dir, run.allow_skips)
    return TransformResult(report, out_dir, rendered)


@contextlib.contextmanager
def _writes_to(out_dir: str):
    """Any write to OUT that fails (read-only, disk full, file-size limit) is one line, not a traceback."""
    try:
        yield
    except OSError as e:
        if e.filename is None or not _inside(e.filename, out_dir):
            raise
        raise OutputError.writing(e.filename, e.strerror or str(e)) from None


def _render(p: _Planned, positions: Sequence[int], images_dir: str, out_dir: str, run: RunOptions,
            journal: Journal, executor) -> int:
    """Render the images at `positions` not yet done, recording each entry; return how many are done."""
    done: Set[int] = set()
    if run.resume:
        remove_partial_writes(out_dir)
        done = journal.scan(p.dplan.images, p.ds, out_dir, p.names.file_prefix)[0]
    todo = together_by_background(p.dplan.images, [k for k in positions if k not in done])
    if hasattr(executor, "cap"):  # never more worker processes than images to render
        executor.cap(len(todo))
    position = {p.dplan.images[k].image_id: k for k in todo}
    count = len(positions) - len(todo)
    bar = make_progress(run.progress, len(positions), count, run.progress_interval)
    try:
        with _stop_requests() as stop:
            tasks = image_tasks(p.ds, p.dplan.images, todo, images_dir, out_dir, p.options, p.names.file_prefix)
            for entry in executor.imap_unordered(tasks):
                journal.record(position[entry["image_id"]], entry)
                count += 1
                bar.update(1)
                if stop:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise SmplusError(f"interrupted after {count} of {len(positions)} images; "
                          f"rerun the same command with --resume to continue") from None
    finally:
        bar.close()
    remove_partial_writes(out_dir)  # a worker killed mid-write (its image rendered again) left one
    return count


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


# ---------------------------------------------------------------- merge

def merge(shard_dirs: Sequence[str], out_dir: str, overwrite: bool = False, allow_skips: bool = False) -> dict:
    """The dataset from the OUTs of all N shards of one run: byte-identical to a run without shards."""
    from .shards import check_shards

    check_out_dir(out_dir)
    fingerprints = [_read_fingerprint(d) for d in shard_dirs]
    check_shards(shard_dirs, fingerprints)
    f = fingerprints[0]
    options = TransformOptions(**{fl.name: f[fl.name] for fl in fields(TransformOptions) if fl.name != "categories"}
                               | {"scale_range": tuple(f["scale_range"])})
    for path, digest in ((f["source"], f["source_sha256"]), (f["target"], f["target_sha256"])):
        if path is not None and (not os.path.isfile(path) or _file_digest(path) != digest):
            raise SmplusError(f"merge: {path}, an input of the shards, is missing or has changed since they ran; "
                              "merge where the shards' inputs are, as they were")
    p = _plan(f["source"], f["images"], f["target"], options, f["bins"], f["except_rate"], f["log_bins"],
              f["categories"], dry_run=False, names=OutputNames(f.get("id_offset", 0), f.get("file_prefix", "")))
    assignment = assign_shards(p.dplan.images, f["shard"][1])
    journals, held = [], contextlib.ExitStack()  # held: OUT, claimed until the merge ends
    held.enter_context(frozen_gc())
    try:
        for d, fp in zip(shard_dirs, fingerprints):
            journal = Journal(os.path.join(d, STATE_DIR))
            journals.append(journal)
            _check_complete(p, d, fp["shard"], shard_positions(assignment, fp["shard"][0]), journal)
        with _writes_to(out_dir):
            held.enter_context(prepare_out(out_dir, list(shard_dirs) + [f["source"], f["images"], f["target"]],
                                           RunOptions(overwrite=overwrite)))
            write_json_atomic(os.path.join(out_dir, STATE_DIR, RUN_FILE), {**p.fingerprint, "shard": None},
                              tmp_dir=tmp_dir(out_dir))
        shard_dir = {fp["shard"][0]: d for d, fp in zip(shard_dirs, fingerprints)}
        report = assemble(p.ds, p.dplan, p.hist, _linked(merged_entries(journals), assignment, shard_dir, out_dir, p.ds,
                                                 p.names.file_prefix),
                          p.parameters, out_dir, allow_skips)
    finally:
        for journal in journals:
            journal.close()
        held.close()
    return report


def _linked(entries: Iterable[Tuple[int, dict]], assignment: Sequence[int], shard_dir: Dict[int, str], out_dir: str,
            ds: CocoDataset, file_prefix: str = "") -> Iterator[Tuple[int, dict]]:
    """The shards' entries, each rendered image linked into OUT as its entry passes to assemble."""
    for k, entry in entries:
        if entry["skipped"] is None:
            _link_image(shard_dir[assignment[k]], out_dir, ds.images[entry["image_id"]], file_prefix)
        yield k, entry


def _read_fingerprint(shard_dir: str) -> dict:
    path = os.path.join(shard_dir, STATE_DIR, RUN_FILE)
    try:
        with open(path) as f:
            fingerprint = json.load(f)
    except (OSError, ValueError):
        raise SmplusError(f"merge: {shard_dir} holds no smplus run ({path} is missing or damaged)") from None
    if not fingerprint.get("shard"):
        raise SmplusError(f"merge: {shard_dir} is not a shard (it was run without --shard)")
    return fingerprint


def _check_complete(p: _Planned, shard_dir: str, shard: Sequence[int], expected: Sequence[int], journal: Journal) -> None:
    done, skipped = journal.scan(p.dplan.images, p.ds, shard_dir, p.names.file_prefix)
    missing = [k for k in expected if k not in done and k not in skipped]
    if missing:
        im = p.ds.images[p.dplan.images[missing[0]].image_id]
        raise SmplusError(f"merge: shard {shard[0]}/{shard[1]} in {shard_dir} is incomplete: "
                          f"{len(missing)} of its {len(expected)} images are not rendered (first {im['file_name']}); "
                          "rerun its command with --resume, then merge again")


def _link_image(shard_dir: str, out_dir: str, image: dict, file_prefix: str = "") -> None:
    """The shard's image into OUT/images: a hard link where possible, else a copy (atomically)."""
    src, dst = output_image_path(shard_dir, image, file_prefix), output_image_path(out_dir, image, file_prefix)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    os.makedirs(tmp_dir(out_dir), exist_ok=True)
    tmp = os.path.join(tmp_dir(out_dir), f"link-{image['id']}")
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except OSError as e:
        raise OutputError.writing(dst, e.strerror or str(e)) from None


