"""Every size the target asks for is planned: instances given the smallest target
sizes are fitted inside their target bin, not dropped (issue 13)."""

import numpy as np
import pytest

from smplus.coco import index_coco
from smplus.histogram import SizeHistogram, build_histogram, msm_sizes
from smplus.plan import BIN_MARGIN, MIN_SIDE, TransformOptions, least_size, msm_reachable_sizes, plan_dataset, reachable_size

BY_HAND = SizeHistogram(edges=(0.5, 2.0, 4.0, 8.0), probs=(0.2, 0.3, 0.5))


@pytest.mark.parametrize("size, w, h, expected", [
    (1.0, 10, 10, MIN_SIDE * BIN_MARGIN),               # square: raised to a 1-px side, still in [0.5, 2)
    (1.0, 10, 40, 1.0),                                 # 1:4 needs 2.04 px, past its bin: unchanged (dropped)
    (3.0, 10, 40, 3.0),                                 # reaches a 1-px side at its size: unchanged
    (2.1, 10, 90, MIN_SIDE * BIN_MARGIN * 3.0),         # 1:9 needs 3.06 px, in [2, 4): raised
    (2.1, 90, 10, MIN_SIDE * BIN_MARGIN * 3.0),         # the same lying down
    (3.95, 10, 160, 3.95),                              # 1:16 needs 4.08 px, past [2, 4): unchanged
])
def test_reachable_size_by_hand(size, w, h, expected):
    assert reachable_size(size, least_size(w, h), BY_HAND) == pytest.approx(expected)


def repeated(raw: dict, times: int) -> dict:
    """The fixture set `times` over, with new image and annotation ids."""
    images = [{**im, "id": k * 10**7 + im["id"], "file_name": f"{k}_{im['file_name']}"}
              for k in range(times) for im in raw["images"]]
    anns = [{**a, "id": k * 10**8 + a["id"], "image_id": k * 10**7 + a["image_id"]}
            for k in range(times) for a in raw["annotations"]]
    return {**raw, "images": images, "annotations": anns}


@pytest.mark.parametrize("mode", ["msm", "rsm"])
def test_the_smallest_target_bin_is_planned_not_dropped(coco_raw, mode):
    """A target whose smallest bin (10 % of it) ends under 2 px: at a 2-px least side it
    stayed empty; now the instances given those sizes are planned in it."""
    hist = build_histogram(np.random.default_rng(0).lognormal(1.5, 0.8, 5000), bins=20, except_rate=0.2)
    assert hist.edges[1] < 2.0 and hist.probs[0] == pytest.approx(0.1)
    dplan = plan_dataset(index_coco(repeated(coco_raw, 10)), hist, TransformOptions(mode=mode))
    planned = [ip for p in dplan.images for ip in p.instances if ip.matched]
    too_small = [ann for p in dplan.images for ann, reason in p.dropped if reason == "too_small"]
    head = [ip for ip in planned if ip.size < hist.edges[1]]
    assert len(head) >= 0.5 * hist.probs[0] * len(planned) and len(too_small) <= 0.05 * len(planned)
    if mode == "msm":  # the quantiles are dealt to the instances that can reach them: none is lost
        assert too_small == [] and abs(len(head) - hist.probs[0] * len(planned)) <= 1
    for ip in head:
        assert min(ip.box[2], ip.box[3]) >= MIN_SIDE


def test_msm_sizes_are_dealt_to_the_instances_that_can_reach_them():
    """The MSM+ quantiles are all used, each by an instance that reaches it; the instances
    that reach every quantile keep the order of their source sizes; none is dropped."""
    hist = build_histogram(np.random.default_rng(0).lognormal(1.5, 0.8, 5000), bins=20, except_rate=0.2)
    rng = np.random.default_rng(1)
    n = 2000
    sizes = rng.lognormal(4.0, 0.9, n)
    elongation = np.where(rng.random(n) < 0.3, rng.uniform(4, 30, n), rng.uniform(1, 2, n))
    least = np.array([least_size(1.0, e) for e in elongation])
    planned = msm_reachable_sizes(sizes, least, hist)
    assert np.allclose(np.sort(planned), np.sort(msm_sizes(sizes, hist)))  # every quantile, once
    fitted = np.array([reachable_size(p, q, hist) for p, q in zip(planned, least)])
    assert np.all(fitted >= least)  # all reach a 1-px short side
    assert np.array_equal(hist.bin_index(fitted), hist.bin_index(planned))  # in the bin they were dealt
    everywhere = least <= hist.edges[1] / BIN_MARGIN  # reach the smallest bin, so every quantile
    assert np.all(np.diff(planned[everywhere][np.argsort(sizes[everywhere], kind="stable")]) >= 0)
    # where all instances reach everything it is plain MSM+
    assert np.array_equal(msm_reachable_sizes(sizes, np.full(n, 0.1), hist), msm_sizes(sizes, hist))


def test_quantiles_no_instance_can_reach_are_left_out():
    """All instances 1:30: none reaches the two smallest bins; they share the largest
    quantiles, and each keeps a 1-px short side."""
    n = 10
    sizes = np.arange(1.0, n + 1)
    least = np.full(n, least_size(1.0, 30.0))
    planned = msm_reachable_sizes(sizes, least, BY_HAND)
    top = msm_sizes(sizes, BY_HAND)[5:]  # the quantiles in [4, 8)
    assert np.allclose(planned, np.concatenate([top, top]))
    assert all(reachable_size(p, q, BY_HAND) >= q for p, q in zip(planned, least))
