import json
import math

import numpy as np
import pytest

from smplus.errors import SmplusError, UsageError
from smplus.histogram import (
    SizeHistogram,
    build_histogram,
    jensen_shannon,
    load_target,
    msm_sizes,
    sampling_noise,
    size_jsd,
    target_sizes,
    tinyperson_histogram,
)


def test_edges_and_probabilities_by_hand():
    # 10 sizes, 4 bins, except_rate 0.2: the smallest and the largest size in the
    # head and tail bins (inner edges 1.5 and 9.5), 2 equal bins between.
    h = build_histogram(range(1, 11), bins=4, except_rate=0.2)
    assert h.edges == pytest.approx((1, 1.5, 5.5, 9.5, 10))
    assert h.probs == pytest.approx((0.1, 0.4, 0.4, 0.1))


def test_no_except_rate_gives_equal_bins():
    h = build_histogram([1, 2, 3, 4, 5], bins=4, except_rate=0.0)
    assert h.edges == pytest.approx((1, 2, 3, 4, 5))
    assert h.probs == pytest.approx((0.2, 0.2, 0.2, 0.4))  # the last bin is closed


def test_log_bins_are_equal_in_log_size():
    h = build_histogram([1, 10, 100, 1000], bins=3, except_rate=0.0, log_bins=True)
    assert h.edges == pytest.approx((1, 10, 100, 1000))


def test_default_except_rate_is_two_over_bins():
    sizes = np.arange(1, 1001, dtype=float)
    h = build_histogram(sizes, bins=100)
    # 2/100 of 1000 sizes: 10 in the head and 10 in the tail bin
    assert h.probs[0] == pytest.approx(0.01) and h.probs[-1] == pytest.approx(0.01)


def test_target_in_tinyperson_layout_leaves_out_ignore_uncertain_crowd(tinyperson_target):
    path, sizes = tinyperson_target
    h = load_target(path, bins=5, except_rate=0.0)
    assert h.count == len(sizes)
    assert h.edges[0] == pytest.approx(min(sizes)) and h.edges[-1] == pytest.approx(max(sizes))


def test_target_sizes_keep_only_boxes_of_four_numbers_and_a_size():
    anns = [{"bbox": [0, 0, 4, 9]}, {"bbox": (1.5, 2, 2.0, 8)}, {"bbox": [0, 0, 3.0, 12], "ignore": False},
            {"bbox": [0, 0, "4", 9]}, {"bbox": [0, 0, 4]}, {"bbox": [0, 0, 4, 9, 1]}, {"bbox": None}, {},
            {"bbox": [0, 0, 0, 9]}, {"bbox": [0, 0, -4, 9]}, {"bbox": [0, 0, math.inf, 9]},
            {"bbox": [0, 0, 4, math.nan]}, "not an annotation", [0, 0, 4, 9]]
    assert target_sizes({"annotations": anns}, "t.json") == [6.0, 4.0, 6.0]


def test_histogram_file_round_trip(tmp_path):
    h = build_histogram([3, 5, 8, 13, 21, 34], bins=3, except_rate=0.0)
    p = tmp_path / "h.json"
    p.write_text(json.dumps(h.to_json()))
    assert load_target(str(p)) == SizeHistogram.from_json(h.to_json(), h.source)
    assert load_target(str(p)).probs == h.probs


def test_bad_histogram_options():
    with pytest.raises(UsageError, match=r"--bins must be an integer in \[3, 10000\], got 2"):
        build_histogram([1, 2, 3], bins=2)
    with pytest.raises(UsageError, match="--except-rate"):
        build_histogram([1, 2, 3], bins=3, except_rate=1.5)
    with pytest.raises(SmplusError, match="at least two boxes"):
        build_histogram([5, 5, 5], bins=3)


def test_bundled_prior_has_tinyperson_statistics():
    h = tinyperson_histogram()
    assert h.bins == 100 and sum(h.probs) == pytest.approx(1.0)
    # fitted to TinyPerson's published statistics: median 13 px, 20 % under 8 px, mean 18.0, std 17.4
    assert float(h.quantile([0.5])[0]) == pytest.approx(13.0, rel=0.01)
    assert float(h.quantile([0.2])[0]) == pytest.approx(8.0, rel=0.01)
    # and its tail is rectified like a built histogram's: 1 % in each end bin
    assert h.probs[0] == pytest.approx(0.01) and h.probs[-1] == pytest.approx(0.01)


def test_quantile_is_monotone_and_inverts_the_cdf():
    h = build_histogram(np.random.default_rng(1).lognormal(2.5, 0.8, 5000), bins=50)
    q = np.linspace(0, 1, 1001)
    s = h.quantile(q)
    assert np.all(np.diff(s) >= 0)
    assert s[0] == pytest.approx(h.edges[0]) and s[-1] == pytest.approx(h.edges[-1])
    # fraction of quantile points in each bin == its probability
    assert np.allclose(h.frequencies(h.quantile((np.arange(10000) + 0.5) / 10000)), h.probs, atol=2e-4)


def test_jensen_shannon_known_values():
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(math.log(2))
    assert jensen_shannon([0.2, 0.8], [0.2, 0.8]) == 0.0
    assert jensen_shannon([1, 1], [1, 3]) == pytest.approx(jensen_shannon([1, 3], [1, 1]))


def test_out_of_range_sizes_count_in_end_bins():
    h = build_histogram([1, 2, 3, 4], bins=3, except_rate=0.0)
    assert list(h.bin_index([0.1, 100])) == [0, 2]


@pytest.fixture(scope="module")
def target():
    return build_histogram(np.random.default_rng(0).lognormal(2.56, 0.81, 40000), bins=100)


def test_msm_reproduces_the_target_far_below_sampling_noise(target):
    n = 800
    source = np.random.default_rng(3).lognormal(4.0, 0.9, n)  # COCO-like, ~55 px
    mapped = msm_sizes(source, target)
    assert size_jsd(mapped, target) < 0.3 * sampling_noise(target, n)
    # monotone: order of sizes kept
    assert np.all(np.diff(mapped[np.argsort(source)]) >= 0)


def test_rsm_is_within_sampling_noise(target):
    n = 800
    jsds = [size_jsd(target.sample_rsm(np.random.default_rng(s), n), target) for s in range(40)]
    assert 0.7 < np.mean(jsds) / sampling_noise(target, n) < 1.3


def test_rsm_sizes_fall_inside_their_bins(target):
    s = target.sample_rsm(np.random.default_rng(0), 5000)
    assert s.min() >= target.edges[0] and s.max() <= target.edges[-1]
