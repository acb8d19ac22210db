"""The `smplus` command line: parse options, call one library function, report.

Library errors become one-line messages: SmplusError exits 1, UsageError 2.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys

import click

from .errors import SmplusError, UsageError


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def library_errors(fn):
    """Turn library exceptions into clear messages and exit codes, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        signal.signal(signal.SIGTERM, _interrupt)  # a batch scheduler's stop: like Ctrl-C
        try:
            return fn(*args, **kwargs)
        except UsageError as e:
            raise click.UsageError(str(e)) from None
        except SmplusError as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            raise click.ClickException("interrupted") from None

    return wrapper


def _output_file(ctx, param, value):
    """An output file named "" (an unset variable) is refused, never written as the current folder."""
    if value is not None and not value.strip():
        raise click.BadParameter("is empty (an unset variable?); give a file name", ctx=ctx, param=param)
    return value


def _categories(value):
    return [v for v in value.split(",") if v.strip()] if value else None


@click.group()
@click.version_option(package_name="smplus")
def main():
    """SM+ (Refined Scale Match): make a COCO pre-training set match a tiny-object target's sizes."""


def _load_config(ctx, param, path):
    """--config FILE: option values from a JSON or TOML file; flags on the command line win."""
    if path is None:
        return None
    from .config import read_config

    try:
        values = read_config(path, {p.name: p for p in ctx.command.params if isinstance(p, click.Option)})
    except SmplusError as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return path


@main.command()
@click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
              callback=_load_config,
              help="A paper setup shipped with smplus, by name (msm+, rsm+, msm, rsm, cp, cp+, ...; see README), or "
                   "a JSON or TOML file of option values (names as the flags, e.g. \"psi-p\": 0.4); "
                   "flags given on the command line override it.")
@click.option("--source", required=True, type=click.Path(dir_okay=False), help="COCO instances JSON with masks.")
@click.option("--images", "images_dir", required=True, type=click.Path(file_okay=False),
              help="Folder the source file_names are relative to.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder: images/, annotations.json, report.json.")
@click.option("--target", type=click.Path(dir_okay=False), default=None,
              help="Target annotations (COCO or TinyPerson layout) or a `smplus histogram` file. "
                   "Default: the bundled TinyPerson prior.")
@click.option("--mode", type=click.Choice(["msm", "rsm", "cp", "cp+"]), default="msm", show_default=True,
              help="MSM+: monotone quantile mapping; RSM+: random size from the target histogram; "
                   "cp / cp+: copy-paste baselines, instances unscaled onto a new background "
                   "(cp+ keeps the background's labels, updated for occlusion).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Same seed, same output, whatever the number of workers.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Images rendered at once: processes (with --executor ray: the CPUs of a local Ray instance, default all).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: processes on this machine; ray: tasks on a Ray cluster (pip install 'smplus[ray]').")
@click.option("--address", default=None,
              help="With --executor ray: the cluster's address (default: start a local Ray instance).")
@click.option("--shard", default=None, metavar="I/N", callback=lambda ctx, param, v: _shard(v),
              help="Render only the I-th of N parts of the images (I from 0) into OUT; "
                   "`smplus merge` joins the N OUTs.")
@click.option("--psi-p", type=click.FloatRange(0.0, 1.0), default=0.4, show_default=True,
              help="PSI: probability of inpainting the image's own background (else a new one).")
@click.option("--level", type=click.Choice(["instance", "image"]), default="instance", show_default=True,
              help="instance: SM+; image: the original Scale Match, one scale per image.")
@click.option("--scale-range", type=(float, float), default=(0.1, 1.0), show_default=True,
              help="Image level: the allowed image scales (RSM draws up to 5 times to land inside, then clips).")
@click.option("--background", type=click.Choice(["psi", "inpaint", "new"]), default="psi", show_default=True,
              help="psi: PSI with --psi-p; inpaint: always the image's own, inpainted (SM+ w/o PSI); "
                   "new: always another image.")
@click.option("--background-pool", type=click.Choice(["all", "clean"]), default="clean", show_default=True,
              help="Images a new background is drawn from. clean: images whose objects of the scale-matched "
                   "categories (crowds included) cover at most --max-background-objects of the frame; those "
                   "objects are erased with the fill, so none shows unlabelled (if under 10% of the set "
                   "qualify, the 10% with the least such area). all: any image, its objects left as they are "
                   "(the paper).")
@click.option("--max-background-objects", type=click.FloatRange(0.0, 1.0), default=0.1, show_default=True,
              metavar="SHARE",
              help="Clean pool: the largest share of a new background's frame its scale-matched objects may "
                   "cover (they are erased). 0: only images without any.")
@click.option("--max-hole", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.5, show_default=True,
              help="Largest share of an image inpainted; larger holes (or none left to inpaint from) "
                   "take a new background instead, counted in report.json.")
@click.option("--fill", type=click.Choice(["patchmatch", "telea"]), default="patchmatch", show_default=True,
              help="How holes are filled. patchmatch: copies the texture around the hole (slower); "
                   "telea: a smooth fill, the paper's (fast).")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=95, show_default=True,
              help="JPEG quality of the transformed images.")
@click.option("--jpeg-subsampling", type=click.Choice(["444", "422", "420"]), default="444", show_default=True,
              help="JPEG chroma subsampling; 444 keeps the colour of 6-12 px instances.")
@click.option("--bins", type=click.IntRange(3, 10_000), default=100, show_default=True,
              help="Bins of the target histogram.")
@click.option("--except-rate", type=click.FloatRange(0.0, 1.0, max_open=True), default=None,
              help="Fraction of target sizes put into the head and tail bins. Default: 2/bins.")
@click.option("--log-bins", is_flag=True, help="Equal bins in log size.")
@click.option("--categories", default=None, help="Comma-separated category names (or ids) to scale-match. Default: all.")
@click.option("--dry-run", is_flag=True, help="Plan only: planned boxes and report.json, no pixels.")
@click.option("--overwrite", is_flag=True,
              help="Replace the output of an earlier smplus run in OUT (never a folder smplus did not write).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in OUT (same inputs and options).")
@click.option("--allow-skips", is_flag=True,
              help="Write the dataset even if some images cannot be read (they are listed in report.json).")
@click.option("--id-offset", type=click.IntRange(min=0), default=0, show_default=True,
              help="Added to every output image and annotation id, so the output can be combined with the source "
                   "(whose images it reuses under new content) without duplicate ids.")
@click.option("--file-prefix", default="", metavar="PREFIX",
              help="Put before every output file_name (e.g. smplus_ or smplus/), so output images cannot overwrite "
                   "the source's when both share a folder. Default: the source's names.")
@click.option("--progress", type=click.Choice(["auto", "bar", "log", "none"]), default="auto", show_default=True,
              help="bar: a progress bar; log: a plain line every --progress-interval seconds (done/total, images/s, ETA), "
                   "for batch jobs' logs; auto: bar on a terminal, else log.")
@click.option("--progress-interval", type=click.FloatRange(min=0.0), default=30.0, show_default=True,
              help="Seconds between progress lines in log mode (0: one per image).")
@library_errors
def transform(source, images_dir, out_dir, target, mode, seed, workers, executor, address, shard, psi_p, level, scale_range,
              background, background_pool, max_background_objects, max_hole, fill, jpeg_quality, jpeg_subsampling, bins,
              except_rate, log_bins, categories, dry_run, overwrite, resume, allow_skips, id_offset, file_prefix, progress,
              progress_interval):
    """Scale-match a COCO dataset instance by instance (SM+)."""
    from .naming import OutputNames
    from .pipeline import RunOptions
    from .pipeline import transform as run_transform
    from .plan import TransformOptions

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if address is None and cpus and workers > cpus:
        click.echo(f"warning: --workers {workers} is more than the {cpus} CPUs this process may use; the extra "
                   "workers only share them, and each needs its own memory", err=True)
    result = run_transform(
        source, images_dir, out_dir, target=target, names=OutputNames(id_offset, file_prefix),
        options=TransformOptions(mode=mode, seed=seed, psi_p=psi_p, background=background, level=level,
                                 scale_range=tuple(scale_range), background_pool=background_pool,
                                 max_background_objects=max_background_objects,
                                 max_hole=max_hole, jpeg_quality=jpeg_quality, jpeg_subsampling=jpeg_subsampling,
                                 fill=fill),
        bins=bins, except_rate=except_rate, log_bins=log_bins, categories=_categories(categories),
        run=RunOptions(workers=workers, dry_run=dry_run, overwrite=overwrite, resume=resume,
                       allow_skips=allow_skips, executor=executor, address=address, shard=shard,
                       progress=progress, progress_interval=progress_interval))
    if result.report is None:
        click.echo(f"shard {shard[0]}/{shard[1]}: {result.rendered} images in {out_dir}; "
                   f"when all {shard[1]} shards are done: smplus merge OUT_0 ... OUT_{shard[1] - 1} --out FINAL")
    else:
        _summary(result.report, out_dir)


def _shard(value):
    if value is None:
        return None
    i, sep, n = value.partition("/")
    if not (sep and i.isdigit() and n.isdigit() and int(i) < int(n)):
        raise click.BadParameter(f"must be I/N with 0 <= I < N (e.g. 0/4), got {value!r}")
    return int(i), int(n)


@main.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder of the whole dataset: images/, annotations.json, report.json.")
@click.option("--overwrite", is_flag=True,
              help="Replace the output of an earlier smplus run in OUT (never a folder smplus did not write).")
@click.option("--allow-skips", is_flag=True,
              help="Write the dataset even if some images could not be read (they are listed in report.json).")
@library_errors
def merge(shards, out_dir, overwrite, allow_skips):
    """Join the OUT folders of all N shards of a run (--shard I/N) into one dataset."""
    from .pipeline import merge as run_merge

    _summary(run_merge(shards, out_dir, overwrite=overwrite, allow_skips=allow_skips), out_dir)


def _summary(report: dict, out_dir: str) -> None:
    c, j = report["counts"], report["jsd"]
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    dropped = c["dropped"]
    click.echo(f"{'planned' if report['parameters']['dry_run'] else 'wrote'} {c['images']} images, "
               f"{c['instances_out']} instances ({sum(dropped.values())} dropped"
               f"{', +%d background labels' % c['background_labels_kept'] if c['background_labels_kept'] else ''}) "
               f"to {out_dir}")
    if j["after"] is None or j["sampling_noise"] is None:
        click.echo(f"JSD to target n/a: no scale-matched instance in the output (source: {fmt(j['before'])})")
    else:
        # a sample of n sizes drawn from the target itself is this far from it on average: a match can do no better
        verdict = "match the target" if j["after"] <= 2 * j["sampling_noise"] else "are further from the target than chance"
        click.echo(f"sizes {verdict}: JSD to target {fmt(j['after'])}, from {fmt(j['before'])} in the source "
                   f"(random draws of the same size from the target: {fmt(j['sampling_noise'])})")
    if dropped:
        click.echo("dropped instances: " + ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in dropped.items()))
    sizes = report.get("image_sizes") or {}
    if sizes.get("count"):
        w, h = sizes["width"], sizes["height"]
        click.echo(f"matched at the images' own size: median {w['median']}x{h['median']} px "
                   f"(min {w['min']}x{h['min']}, max {w['max']}x{h['max']}); train at this scale (see README: Training)")
    if report["skipped"]:
        click.echo(f"skipped {len(report['skipped'])} image(s), listed in report.json", err=True)


@main.command()
@click.argument("target", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), callback=_output_file,
              help="Histogram JSON to write.")
@click.option("--bins", type=click.IntRange(3, 10_000), default=100, show_default=True, help="Bins of the histogram.")
@click.option("--except-rate", type=click.FloatRange(0.0, 1.0, max_open=True), default=None,
              help="Fraction of sizes put into the head and tail bins. Default: 2/bins.")
@click.option("--log-bins", is_flag=True, help="Equal bins in log size.")
@library_errors
def histogram(target, output, bins, except_rate, log_bins):
    """Build the target size histogram from TARGET annotations (COCO or TinyPerson layout)."""
    from .histogram import write_histogram

    hist = write_histogram(target, output, bins, except_rate, log_bins)
    click.echo(f"wrote {hist.bins}-bin histogram of {hist.count} boxes to {output}")


@main.command()
@click.argument("annotations", type=click.Path(dir_okay=False))
@click.option("--target", type=click.Path(dir_okay=False), default=None,
              help="Target annotations or histogram to compare with (default: the bundled TinyPerson prior).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, callback=_output_file,
              help="Write a PNG of the size histograms (dataset and target overlaid, log size axis).")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@library_errors
def stats(annotations, target, plot, as_json):
    """Box count, size statistics and JSD to the target of a COCO annotation file."""
    from .histogram import load_target
    from .stats import dataset_sizes, plot_sizes, size_stats

    hist = load_target(target)
    sizes = dataset_sizes(annotations)
    st = size_stats(sizes, hist)
    if as_json:
        click.echo(json.dumps(st, indent=2))
    else:
        click.echo(f"boxes: {st['boxes']}")
        if st["boxes"]:
            p = st["percentiles"]
            click.echo(f"size sqrt(w*h): mean {st['mean']:.2f} std {st['std']:.2f} px; "
                       f"percentiles 5/25/50/75/95: {p['5']:.1f} / {p['25']:.1f} / {p['50']:.1f} / "
                       f"{p['75']:.1f} / {p['95']:.1f} px")
            click.echo(f"JSD to target: {st['jsd']:.4f} (random draws of {st['boxes']} sizes from the target: "
                       f"{st['sampling_noise']:.4f})")
    if plot:
        plot_sizes(sizes, hist, plot, label=os.path.basename(annotations))
        click.echo(f"wrote {plot}")


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("-n", "count", type=click.IntRange(min=1), default=8, show_default=True, help="Images to show.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), callback=_output_file,
              help="PNG to write.")
@click.option("--image-id", "image_ids", type=int, multiple=True,
              help="Show this image (repeatable). Default: fallbacks first, then the most annotated.")
@library_errors
def preview(out_dir, count, output, image_ids):
    """Per image of OUT_DIR: source, output (boxes drawn), its background, and the smallest
    pasted instances magnified."""
    from .preview import write_preview

    write_preview(out_dir, output, count, image_ids)
    click.echo(f"wrote {output}")


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--mode", type=click.Choice(["msm", "rsm"]), default="msm", show_default=True,
              help="MSM+ or RSM+.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Random seed.")
@click.option("--overwrite", is_flag=True,
              help="Replace the output of an earlier smplus run in OUT_DIR (never a folder smplus did not write).")
@library_errors
def demo(out_dir, mode, seed, overwrite):
    """Run SM+ on the bundled sample COCO images into OUT_DIR."""
    from .pipeline import RunOptions
    from .pipeline import transform as run_transform
    from .plan import TransformOptions
    from .sample import SAMPLE_ANNOTATIONS, SAMPLE_IMAGES

    result = run_transform(SAMPLE_ANNOTATIONS, SAMPLE_IMAGES, out_dir,
                           options=TransformOptions(mode=mode, seed=seed),
                           run=RunOptions(overwrite=overwrite))
    _summary(result.report, out_dir)


@main.group()
def export():
    """Write an smplus output in another tool's layout."""


@export.command()
@click.argument("out_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--to", "to_dir", required=True, type=click.Path(file_okay=False),
              help="Folder to write: images/SPLIT/, labels/SPLIT/ and data.yaml (ultralytics' layout).")
@click.option("--segments", is_flag=True,
              help="Polygons traced from the masks (YOLO-seg) instead of boxes; a mask of several parts "
                   "stays one label (parts joined by zero-width bridges).")
@click.option("--split", default="train", show_default=True, help="Split folder name under images/ and labels/.")
@library_errors
def yolo(out_dir, to_dir, segments, split):
    """Export OUT_DIR (annotations.json + images/) for ultralytics YOLO: class ids 0..N-1 in COCO
    category-id order, boxes from smplus's bbox, crowd annotations skipped."""
    from .export import export_yolo

    r = export_yolo(os.path.join(out_dir, "annotations.json"), os.path.join(out_dir, "images"), to_dir,
                    segments=segments, split=split)
    extra = [f"{r.crowd_skipped} crowd annotations skipped"] if r.crowd_skipped else []
    if r.multi_part:
        extra.append(f"{r.multi_part} multi-part masks joined into one polygon each")
    if r.boxes_as_segments:
        extra.append(f"{r.boxes_as_segments} without a mask written as their box")
    click.echo(f"wrote {r.images} images, {r.labels} {'segments' if segments else 'boxes'} of {len(r.names)} classes "
               f"to {to_dir} ({os.path.join(to_dir, 'data.yaml')})" + (f"; {'; '.join(extra)}" if extra else ""))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
