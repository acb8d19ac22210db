"""Scale benchmark: smplus on a COCO-train-sized source, against json.load of it.

    python scripts/bench_scale.py [--quick] [--sections dry,readers,render,resume,shard] [--rounds 3] [--tmp DIR]

Builds the source from ../shared/data/coco_tiny/annotations/instances_train2017.json:
its records repeated with new ids and file names (hard links to the images) up
to 118,287 images, written as JSON (1.03M instances, ~571 MB). Then prints,
each measured in its own process (time and peak RSS of that process):

- dry: json.load of the source and the `--dry-run` of smplus on it, in
  alternating order for --rounds rounds: each round's ratios (and the dry
  run's phases: read JSON, index, digest, plan, assembly + report), then
  their medians against the goals (<= 2x in time, <= 1.5x in peak memory);
  --baseline CHECKOUT adds another checkout's dry run to each round (before/after);
- costs: per-item CPU costs of the dry run's pieces, the earlier way against smplus's
  (a generator per image, the rounding of planned boxes, an InstancePlan);
- readers: the ways smplus could read the source (json.load, orjson, each
  with the garbage collector on or paused), --rounds rounds, medians;
- render: runs of the first 1k and 10k images (2 workers: per-image cost,
  parent peak RSS, assembly time);
- shard: a render of one ~100-image shard of the whole source (it loads and plans all of it), with
  the dataset and plans frozen out of the garbage collector's reach (smplus) and without, --rounds
  rounds in alternating order: the time after planning;
- resume: the start of a `--resume` with a 100k-entry journal (synthesized from the
  dry run's entries: SQLite store and, for comparison, one JSON file per image).

Everything is written under --tmp and deleted at the end (~600 MB of JSON, 118k hard
links): check its room first (`df -h`). --source/--images-dir reuse a source built earlier.
"""

import argparse
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# ../shared/data beside the checkout (or beside the folder of worktrees holding it)
SHARED = next((d for d in (os.path.join(ROOT, "..", "shared", "data"), os.path.join(ROOT, "..", "..", "shared", "data"))
               if os.path.isdir(d)), os.path.join(ROOT, "..", "shared", "data"))
COCO_TRAIN_IMAGES = 118287


def peak_rss_mb():
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent that forked it)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def cpu_seconds():
    """This process's CPU time (user + system): on a machine others load, what the work itself costs."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def coco_train_sized(source, images, n, tmp):
    """`source` repeated with new ids and hard-linked files up to exactly n images.

    Copy k's ids are k * 10**7 + image id and k * 10**12 + annotation id: COCO's crowd
    annotations have ids up to ~9.1e11, so a smaller stride (10**8) gave duplicate ids."""
    with open(source) as f:
        raw = json.load(f)
    folder = os.path.join(tmp, f"images_{n}")
    os.makedirs(folder)
    out_images, out_anns = [], []
    k = 0
    while len(out_images) < n:
        block = raw["images"][:n - len(out_images)]
        for im in block:
            name = f"{k}_{os.path.basename(im['file_name'])}"
            os.link(os.path.abspath(os.path.join(images, im["file_name"])), os.path.join(folder, name))
            out_images.append({**im, "id": k * 10**7 + im["id"], "file_name": name})
        ids = {im["id"] for im in block}
        out_anns += [{**a, "id": k * 10**12 + a["id"], "image_id": k * 10**7 + a["image_id"]}
                     for a in raw["annotations"] if a["image_id"] in ids]
        k += 1
    path = os.path.join(tmp, f"ann_{n}.json")
    with open(path, "w") as f:
        json.dump({**raw, "images": out_images, "annotations": out_anns}, f)
    return path, folder, len(out_images)


# ---------------------------------------------------------------- children (each measured in its own process)

def child_json_load(source):
    t, c = time.perf_counter(), cpu_seconds()
    with open(source) as f:  # text mode, as users do (binary holds the bytes and the text at once)
        json.load(f)
    return {"seconds": time.perf_counter() - t, "cpu": cpu_seconds() - c, "rss_mb": peak_rss_mb()}


READERS = ("json.load", "json.load, GC paused", "orjson", "orjson, GC paused")


def child_reader(source, reader):
    """One way of reading the source into Python objects: its time and this process's peak RSS."""
    import gc

    import orjson

    t = time.perf_counter()
    if reader.endswith("GC paused"):
        gc.disable()
    if reader.startswith("orjson"):
        with open(source, "rb") as f:
            orjson.loads(f.read())
    else:
        with open(source) as f:
            json.load(f)
    return {"seconds": time.perf_counter() - t, "rss_mb": peak_rss_mb()}


def child_transform(source, images, target, out, workers, dry_run, level="instance", shard=None, freeze=True):
    from bench import timed

    import smplus.coco
    import smplus.pipeline as pipeline
    from smplus.pipeline import RunOptions, transform
    from smplus.plan import TransformOptions

    log = {}
    for module, name in ((smplus.coco, "read_json"), (smplus.coco, "index_coco"), (pipeline, "plan_dataset"),
                         (pipeline, "assemble"), (pipeline, "_file_digest")):
        setattr(module, name, timed(getattr(module, name), log, name))
    render = pipeline._render

    def measured_render(*args, **kwargs):  # the parent's memory when rendering starts, and the render's time
        log["rss_before_render_mb"] = rss_mb()
        t0 = time.perf_counter()
        try:
            return render(*args, **kwargs)
        finally:
            log["render_seconds"] = time.perf_counter() - t0

    plan = pipeline._plan

    def marked_plan(*args, **kwargs):  # when planning ends: what follows is the rendering run's own
        try:
            return plan(*args, **kwargs)
        finally:
            log["plan_ended"] = time.perf_counter()

    pipeline._plan = marked_plan
    if not freeze:  # the run as it was before pipeline.transform froze the dataset and plans
        import gc

        gc.freeze = lambda: None

    pipeline._render = measured_render
    import smplus.journal

    done_at = []  # when each entry reached the driver
    record = smplus.journal.Journal.record

    def timed_record(self, position, entry):
        done_at.append(time.perf_counter())
        return record(self, position, entry)

    smplus.journal.Journal.record = timed_record
    t, c = time.perf_counter(), cpu_seconds()
    report = transform(source, images, out, target, options=TransformOptions(level=level),
                       run=RunOptions(workers=workers, dry_run=dry_run, progress=False, overwrite=True,
                                      shard=tuple(shard) if shard else None)).report
    if "plan_ended" in log:
        log["after_planning"] = time.perf_counter() - log.pop("plan_ended")
    if report is None:  # a shard: its rendered images
        report = {"counts": {"images": len(done_at), "instances_in": None}}
    if done_at:  # ms per image over the 2nd and the 4th fifth of the images: does the cost grow as the run goes?
        n = len(done_at)
        fifth = [(done_at[(k + 1) * n // 5 - 1] - done_at[k * n // 5]) * 1000 / (n // 5 - 1) for k in (1, 3)]
        log["ms_per_img_fifths"] = fifth
    return {"seconds": time.perf_counter() - t, "cpu": cpu_seconds() - c, "rss_mb": peak_rss_mb(), "phases": log,
            "images": report["counts"]["images"], "instances": report["counts"]["instances_in"]}


def child_resume_start(source, images_root, target, n, tmp):
    """Load + plan, a journal of n entries (the dry run's, OUT = the source's folder), then a resume's scan;
    the same entries as one JSON file per image (the journal smplus had before), then its scan."""
    from smplus.assemble import planned_entries
    from smplus.coco import load_coco
    from smplus.histogram import load_target
    from smplus.journal import Journal
    from smplus.plan import TransformOptions, plan_dataset

    t = time.perf_counter()
    ds = load_coco(source)
    plans = plan_dataset(ds, load_target(target), TransformOptions()).images
    load_plan = time.perf_counter() - t
    state = os.path.join(tmp, "state")
    os.makedirs(state)
    entries = [e for _, e in itertools.islice(planned_entries(ds, plans), n)]
    t = time.perf_counter()
    with Journal(state) as journal:
        for k, entry in enumerate(entries):
            journal.record(k, entry)
    write_sqlite = time.perf_counter() - t
    t = time.perf_counter()
    done, _ = Journal(state).scan(plans, ds, images_root)
    scan_sqlite = time.perf_counter() - t
    assert len(done) == n, len(done)
    parts = os.path.join(tmp, "parts")
    os.makedirs(parts)
    t = time.perf_counter()
    for entry in entries:  # as smplus 0.1 wrote them: a temporary file renamed into place, no fsync
        path = os.path.join(parts, f"{entry['image_id']}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(entry, f)
        os.replace(path + ".tmp", path)
    write_files = time.perf_counter() - t
    t = time.perf_counter()
    found = 0
    for name in os.listdir(parts):
        with open(os.path.join(parts, name)) as f:
            entry = json.load(f)
        found += os.stat(os.path.join(images_root, "images", ds.images[entry["image_id"]]["file_name"])).st_size > 0
    scan_files = time.perf_counter() - t
    return {"load_plan": load_plan, "write_sqlite": write_sqlite, "scan_sqlite": scan_sqlite, "write_files": write_files,
            "scan_files": scan_files, "db_mb": os.path.getsize(os.path.join(state, "journal.sqlite")) / 2**20}


CHILDREN = {"json_load": child_json_load, "reader": child_reader, "transform": child_transform, "resume_start": child_resume_start}


def run_child(name, *args, checkout=None):
    """A child measured in its own process; `checkout`: another smplus checkout's script and code (--baseline)."""
    script = os.path.join(checkout, "scripts", "bench_scale.py") if checkout else os.path.abspath(__file__)
    r = subprocess.run([sys.executable, script, "--child", name, json.dumps(args)], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{name} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def median(values):
    return statistics.median(values)


def dry_section(source, images, target, tmp, rounds, baseline=None):
    """json.load and the dry run, each in its own process, in alternating order, `rounds` times:
    the ratios of each round (measured side by side), then their medians. `baseline`: another
    checkout whose dry run runs in the same rounds (its rows follow), for before/after on a shared machine."""
    loads, drys, bases = [], [], []
    for k in range(rounds):
        order = ("load", "dry", "base") if k % 2 == 0 else ("base", "dry", "load")
        for what in order:
            if what == "load":
                loads.append(run_child("json_load", source))
            elif what == "dry":
                drys.append(run_child("transform", source, images, target, os.path.join(tmp, "dry"), 1, True))
            elif baseline:
                bases.append(run_child("transform", source, images, target, os.path.join(tmp, "dry"), 1, True,
                                       checkout=baseline))
    _dry_rows("smplus --dry-run", loads, drys, rounds)
    if baseline:
        _dry_rows(f"baseline ({baseline}) --dry-run", loads, bases, rounds)


def shard_section(source, images, target, tmp, rounds, workers):
    """A rendering run of one small shard of the whole source (--shard 0/N, ~100 images): it loads and
    plans all of it, then renders its part. With and without the dataset and plans frozen out of the
    garbage collector's reach (pipeline.transform's gc.freeze), in alternating order: the time after
    planning (the collector's first walk, the journal, the render)."""
    n = max(1, run_child("transform", source, images, target, os.path.join(tmp, "dry"), 1, True)["images"] // 100)
    runs = {True: [], False: []}
    for k in range(rounds):
        for freeze in ((True, False) if k % 2 == 0 else (False, True)):
            out = os.path.join(tmp, "shard")
            runs[freeze].append(run_child("transform", source, images, target, out, workers, False, "instance",
                                          [0, n], freeze))
            shutil.rmtree(out)
    for freeze, name in ((False, "collector walks the plans"), (True, "plans frozen (gc.freeze)")):
        r = runs[freeze]
        print(f"| shard 0/{n} ({r[0]['images']} images, {workers} workers), {name}: after planning, median of "
              f"{rounds} | {median(x['phases']['after_planning'] for x in r):.1f} s (rendering "
              f"{median(x['phases']['render_seconds'] for x in r):.1f} s; whole run "
              f"{median(x['seconds'] for x in r):.1f} s) | {median(x['rss_mb'] for x in r):.0f} MB |")


def _dry_rows(name, loads, drys, rounds):
    print(f"| json.load of the source ({drys[0]['instances']} instances), median of {rounds} | "
          f"{median(x['seconds'] for x in loads):.1f} s | {median(x['rss_mb'] for x in loads):.0f} MB |")
    print(f"| {name}, median of {rounds} | {median(x['seconds'] for x in drys):.1f} s | "
          f"{median(x['rss_mb'] for x in drys):.0f} MB |")
    for k, (load, dry) in enumerate(zip(loads, drys)):
        ph = dry["phases"]
        other = dry["seconds"] - sum(ph.values())
        print(f"| round {k + 1}: dry run / json.load | {dry['seconds']:.1f} / {load['seconds']:.1f} s = "
              f"{dry['seconds'] / load['seconds']:.2f}x; CPU {dry['cpu']:.1f} / {load['cpu']:.1f} s = "
              f"{dry['cpu'] / load['cpu']:.2f}x (read JSON {ph['read_json']:.1f} s, index "
              f"{ph['index_coco']:.1f} s, digest {ph['_file_digest']:.1f} s, plan {ph['plan_dataset']:.1f} s, "
              f"assembly + report {ph['assemble']:.1f} s, other {other:.1f} s) | "
              f"{dry['rss_mb']:.0f} / {load['rss_mb']:.0f} MB = {dry['rss_mb'] / load['rss_mb']:.2f}x |")
    t = median(d["seconds"] / x["seconds"] for d, x in zip(drys, loads))
    m = median(d["rss_mb"] / x["rss_mb"] for d, x in zip(drys, loads))
    c = median(d["cpu"] / x["cpu"] for d, x in zip(drys, loads))
    print(f"| **{name} / json.load, median of {rounds} rounds** | **{t:.2f}x** (goal <= 2x); CPU time "
          f"{c:.2f}x | **{m:.2f}x** (goal <= 1.5x) |")


def readers_section(source, rounds):
    """The ways of reading the source smplus could take, each in its own process, in alternating order."""
    results = {r: [] for r in READERS}
    for k in range(rounds):
        for r in READERS if k % 2 == 0 else READERS[::-1]:
            results[r].append(run_child("reader", source, r))
    base = median(x["seconds"] for x in results["json.load"])
    for r in READERS:
        t = median(x["seconds"] for x in results[r])
        print(f"| read with {r}, median of {rounds} | {t:.1f} s = {t / base:.2f}x json.load | "
              f"{median(x['rss_mb'] for x in results[r]):.0f} MB |")


def costs_section(n=20_000):
    """Per-item costs of the dry run's pieces, old way against new, in this process (CPU time, best of 5)."""
    import dataclasses
    import random

    from smplus.assemble import _rounded_boxes
    from smplus.plan import InstancePlan, image_rng, image_rngs
    from smplus.sizes import SLOTS

    def best(f):
        times = []
        for _ in range(5):
            t = time.process_time()
            f()
            times.append(time.process_time() - t)
        return min(times)

    ids = list(range(10**7, 10**7 + n))
    rand = random.Random(0)
    boxes = [(rand.uniform(0, 600), rand.uniform(0, 400), rand.uniform(1, 40), rand.uniform(1, 40)) for _ in range(n)]
    # InstancePlan with the __init__ dataclasses generates (the class as declared, made again)
    generated = dataclasses.dataclass(frozen=True, **SLOTS)(
        type("InstancePlan", (), {"__annotations__": dict(InstancePlan.__annotations__),
                                  **{f.name: f.default for f in dataclasses.fields(InstancePlan)
                                     if f.default is not dataclasses.MISSING}}))
    args = (1, 0.5, 3.0, (1.0, 2.0, 3.0, 4.0), True, (1.0, 1.0), (2.0, 2.0))
    rows = [
        ("a generator per image", "default_rng([seed, id]) (image_rng)", lambda: [image_rng(0, i) for i in ids],
         "image_rngs, 4096 at a time", lambda: list(image_rngs(0, ids)), n),
        ("a planned box's 7 numbers, round(v, 3)", "Python's round",
         lambda: [[round(v, 3) for v in (x, y, x + w, y + h, w, h, w * h)] for x, y, w, h in boxes],
         "_rounded_boxes (numpy, Python's round near a half)", lambda: _rounded_boxes(boxes), n),
        ("an InstancePlan", "dataclass-generated __init__", lambda: [generated(*args) for _ in ids],
         "slot descriptors (_quick_init)", lambda: [InstancePlan(*args) for _ in ids], n),
    ]
    print("| per item | before | after |")
    print("|---|---|---|")
    for what, old_name, old, new_name, new, count in rows:
        a, b = best(old) / count * 1e6, best(new) / count * 1e6
        print(f"| {what} | {old_name}: {a:.2f} us | {new_name}: {b:.2f} us ({a / b:.1f}x less) |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("args", nargs="?", help=argparse.SUPPRESS)
    ap.add_argument("--images-count", type=int, default=COCO_TRAIN_IMAGES)
    ap.add_argument("--renders", default="1000,10000", help="render runs of the first N images (comma-separated)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--level", default="instance", choices=["instance", "image"],
                    help="render runs: SM+ (instance) or Scale Match (image: ~5x cheaper, the driver's share shows more)")
    ap.add_argument("--sections", default="dry,render,resume",
                    help="which of dry,readers,render,resume,costs,shard to run (readers: json.load vs orjson, GC paused "
                         "or not; costs: per-item costs of the dry run's pieces, before and after; shard: a render of "
                         "~100 images of the whole source, its plans frozen out of the collector's reach or not)")
    ap.add_argument("--rounds", type=int, default=3, help="dry and readers: rounds, in alternating order (median)")
    ap.add_argument("--journal-entries", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="12k images, renders of 200 and 2000, 10k journal entries")
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help="where the source and outputs go (deleted at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the source built (its paths are printed), for --source")
    ap.add_argument("--source", help="reuse a source built earlier (with --images-dir)")
    ap.add_argument("--images-dir")
    ap.add_argument("--baseline", metavar="CHECKOUT",
                    help="dry: also time the dry run of another smplus checkout (e.g. `git worktree add ../before "
                         "COMMIT`) in the same rounds, for before/after on a shared machine")
    ap.add_argument("--target", default=os.path.join(SHARED, "tinyperson_like", "tiny_set_train_like.json"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](*json.loads(args.args))))
        return
    if args.quick:
        args.images_count, args.renders, args.journal_entries = 12_000, "200,2000", 10_000
    if args.sections == "costs":  # no source needed
        costs_section()
        return
    renders = [int(v) for v in args.renders.split(",")]
    os.makedirs(args.tmp, exist_ok=True)
    # bench's helper, imported here: the children measure their own memory, without cv2 loaded
    from bench import first_images

    tmp = os.path.join(args.tmp, f"bench-{os.getpid()}")
    os.makedirs(tmp)
    try:
        if args.source:
            source, images, n_images = args.source, args.images_dir, args.images_count
        else:
            base = os.path.join(SHARED, "coco_tiny")
            source, images, n_images = coco_train_sized(
                os.path.join(base, "annotations", "instances_train2017.json"), os.path.join(base, "train2017"),
                args.images_count, tmp)
        sections = args.sections.split(",")
        print(f"source: {n_images} images, {os.path.getsize(source) / 2**20:.0f} MB of JSON; {os.cpu_count()} cores\n")
        print("| measure | time | peak RSS |")
        print("|---|---|---|")
        if "dry" in sections:
            dry_section(source, images, args.target, tmp, args.rounds, args.baseline)
        if "readers" in sections:
            readers_section(source, args.rounds)
        if "costs" in sections:
            costs_section()
        if "shard" in sections:
            shard_section(source, images, args.target, tmp, args.rounds, args.workers)
        if "render" in sections:
            rows = []
            for n in renders:
                sub = first_images(source, n, os.path.join(tmp, f"instances_first_{n}.json"))
                r = run_child("transform", sub, images, args.target, os.path.join(tmp, f"render{n}"), args.workers,
                              False, args.level)
                rows.append((n, r))
                shutil.rmtree(os.path.join(tmp, f"render{n}"))
                a, b = r["phases"]["ms_per_img_fifths"]
                print(f"| render {n} images ({args.level} level), {args.workers} workers | {r['seconds']:.0f} s = "
                      f"{r['seconds'] * 1000 / n:.1f} ms/img; steady {a:.1f} ms/img in the 2nd fifth, {b:.1f} in "
                      f"the 4th ({b / a - 1:+.0%}); assembly {r['phases']['assemble']:.2f} s | "
                      f"parent {r['phases']['rss_before_render_mb']:.0f} MB when rendering starts, "
                      f"peak {r['rss_mb']:.0f} MB |")
            if len(rows) >= 2:
                (n0, a), (n1, b) = rows[0], rows[-1]
                marginal = (b["seconds"] - a["seconds"]) * 1000 / (n1 - n0)
                sa, sb = (sum(x["phases"]["ms_per_img_fifths"]) / 2 for x in (a, b))
                print(f"| per-image cost {n0} -> {n1} images | whole runs {a['seconds'] * 1000 / n0:.1f} -> "
                      f"{b['seconds'] * 1000 / n1:.1f} ms/img (marginal {marginal:.1f}); steady state {sa:.1f} -> "
                      f"{sb:.1f} ms/img ({sb / sa - 1:+.0%}) | |")
        if "resume" in sections:
            k = min(args.journal_entries, n_images)
            sub = first_images(source, k, os.path.join(tmp, f"instances_first_{k}.json"))
            root = os.path.join(tmp, "resume_out")  # OUT whose images/ (the source's) the entries point to
            os.makedirs(root)
            os.symlink(os.path.abspath(images), os.path.join(root, "images"))
            j = run_child("resume_start", sub, root, args.target, k, os.path.join(tmp, "resume"))
            print(f"| resume with {k} journal entries: load + plan | {j['load_plan']:.1f} s | |")
            print(f"| then its journal scan: SQLite ({j['db_mb']:.0f} MB) | {j['scan_sqlite']:.1f} s "
                  f"(writing the entries: {j['write_sqlite']:.1f} s) | |")
            print(f"| the same with one JSON file per image (smplus <= 0.1 journal) | {j['scan_files']:.1f} s "
                  f"(writing: {j['write_files']:.1f} s) | |")
    finally:
        if args.keep and not args.source:
            for kind in ("dry", "resume", "resume_out"):
                shutil.rmtree(os.path.join(tmp, kind), ignore_errors=True)
            print(f"\nkept: --source {source} --images-dir {images}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
