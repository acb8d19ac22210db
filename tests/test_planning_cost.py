"""Planning computes each annotation's facts once: a dry run at COCO-train size is bounded by
its per-annotation work (scripts/bench_scale.py), and that work was done 2-5 times over."""

import gc
import json

import smplus.plan as plan
from smplus.pipeline import RunOptions, transform
from smplus.rules import degenerate_reason

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES


def _counted(monkeypatch, module, name, calls):
    real = getattr(module, name)

    def counting(*a, **k):
        calls[name] = calls.get(name, 0) + 1
        return real(*a, **k)

    monkeypatch.setattr(module, name, counting)


def test_a_dry_run_checks_and_measures_each_annotation_once(tmp_path, monkeypatch):
    with open(FIXTURE_ANNOTATIONS) as f:
        raw = json.load(f)
    images = {im["id"]: im for im in raw["images"]}
    usable = [a for a in raw["annotations"]
              if not a.get("iscrowd") and degenerate_reason(a, images[a["image_id"]]["width"],
                                                            images[a["image_id"]]["height"]) is None]
    assert 0 < len(usable) < len(raw["annotations"])  # the fixture has crowds: the counts differ
    calls = {}
    for name in ("degenerate_reason", "fixed_point", "least_size"):
        _counted(monkeypatch, plan, name, calls)
    report = transform(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, str(tmp_path / "out"),
                       run=RunOptions(dry_run=True, progress=False)).report
    # once per annotation (the report's count of unlabelled objects on new backgrounds reuses it),
    # and the scale-matched instances' fixed point and least size once each
    assert calls == {"degenerate_reason": len(raw["annotations"]), "fixed_point": len(usable),
                     "least_size": len(usable)}
    assert report["backgrounds"]["new"] > 0  # the report counted objects on new backgrounds
    assert gc.isenabled()
