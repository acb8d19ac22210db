"""Planning computes each annotation's facts once: a dry run at COCO-train size is bounded by
its per-annotation work (scripts/bench_scale.py), and that work was done 2-5 times over."""

import gc
import json
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# ---------------------------------------------------------------- the dry run's rounding, vectorised

_NEAR_TIES = [k / 1000 + 0.0005 for k in range(-2000, 2000, 7)] + [(2 * k + 1) / 2000 for k in range(-500, 500, 3)]
_EDGES = [0.0, -0.0, 5e-4, -5e-4, 1e-12, -1e-12, 2.0 ** -1074, 0.0625, 2.675, 639.9995, 4503599627370496.5, 1e17, 1e300]


def _python_rounded(box):
    x, y, w, h = box
    return [round(v, 3) for v in (x, y, x + w, y + h, w, h, w * h)]


def _same_floats(a, b):
    return all(type(u) is float and u == v and math.copysign(1, u) == math.copysign(1, v) for u, v in zip(a, b))


def test_planned_boxes_are_rounded_as_python_rounds_them():
    from smplus.assemble import _rounded_boxes

    values = _NEAR_TIES + _EDGES
    boxes = [tuple(values[(i + k) % len(values)] for k in range(4)) for i in range(len(values))]
    naive = np.rint(np.array(values) * 1000) / 1000  # what numpy alone gives: not Python's round at a tie
    assert sum(n != round(v, 3) for n, v in zip(naive.tolist(), values)) > 50
    rows = _rounded_boxes(boxes)
    assert len(rows) == len(boxes)
    for box, row in zip(boxes, rows):
        assert _same_floats(row, _python_rounded(box)), box
    assert _rounded_boxes([]) == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(*[st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-10**6, 10**6).map(lambda k: k / 1000 + 0.0005)] * 4),
                min_size=1, max_size=40))
def test_planned_boxes_round_like_python_for_any_numbers(boxes):
    from smplus.assemble import _rounded_boxes

    for box, row in zip(boxes, _rounded_boxes(boxes)):
        assert _same_floats(row, _python_rounded(box)), box


# ---------------------------------------------------------------- the images' generators, seeded many at once

@pytest.mark.parametrize("seed", [0, 1, 7, 2**32 - 1, 2**32, 2**40 + 3, 2**64 - 1, 2**64, 2**70])
def test_image_rngs_are_the_images_own_generators(seed):
    rand = random.Random(seed)
    ids = ([0, 1, 2, 2**32 - 1, 2**32, 2**32 + 1, 2**40, 2**53 - 1, 2**63 - 1]
           + [rand.randrange(2**53) for _ in range(300)] + [rand.randrange(2**31) for _ in range(300)])
    got = list(plan.image_rngs(seed, ids))
    assert len(got) == len(ids)
    for rng, image_id in zip(got, ids):
        own = plan.image_rng(seed, image_id)
        assert rng.bit_generator.state == own.bit_generator.state, image_id
    # and they draw the same (each its own generator: drawing from one leaves the others as they were)
    draws = [rng.random(3).tolist() + [int(rng.integers(1000))] for rng in got[:50]]
    assert draws == [(lambda r: r.random(3).tolist() + [int(r.integers(1000))])(plan.image_rng(seed, i)) for i in ids[:50]]


def test_image_rngs_take_image_rng_for_negative_ids_and_span_chunks(monkeypatch):
    monkeypatch.setattr(plan, "RNG_CHUNK", 4)
    ids = [5, -3, 2**40, 9, 10, 11, 12, 13, -1, 0]
    for rng, image_id in zip(plan.image_rngs(3, ids), ids):
        assert rng.bit_generator.state == plan.image_rng(3, image_id).bit_generator.state


def test_a_rendering_run_renders_with_its_plans_frozen_and_unfreezes_them(tmp_path, monkeypatch):
    """The dataset and plans are out of the collector's reach while the images render (its first
    collection walked them all), and back in it after; a caller's own frozen objects are left alone."""
    import smplus.pipeline as pipeline

    frozen_while_rendering = []
    render = pipeline._render

    def watched(*a, **k):
        frozen_while_rendering.append(gc.get_freeze_count())
        return render(*a, **k)

    monkeypatch.setattr(pipeline, "_render", watched)
    assert gc.get_freeze_count() == 0
    transform(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, str(tmp_path / "out"), run=RunOptions(progress=False))
    assert frozen_while_rendering.pop() > 1000  # the loaded dataset and its plans
    assert gc.get_freeze_count() == 0 and gc.isenabled()
    gc.freeze()  # a caller that freezes what it holds (e.g. before forking workers)
    try:
        before = gc.get_freeze_count()
        transform(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, str(tmp_path / "again"), run=RunOptions(progress=False))
        # nothing more frozen, nothing unfrozen (a frozen object can only go by being freed)
        assert frozen_while_rendering.pop() <= before and 0 < before - 1000 < gc.get_freeze_count() <= before
    finally:
        gc.unfreeze()
