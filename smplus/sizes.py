"""Size suppliers (SM+ step 2): the new size of each scale-matched instance.

RsmSizes (drawn per instance), MsmSizes (each instance's quantile among the
source sizes, fitted once), DealtSizes (MSM+ dealt over a whole dataset by
msm_reachable_sizes), OwnSizes (copy-paste). Each has `.hist` and
`.sizes(rng, candidates) -> sizes`."""

from __future__ import annotations

import heapq
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import UsageError
from .histogram import SizeHistogram
from .rules import BIN_MARGIN

# Planning holds one object per instance (~1M at COCO-train size): without a __dict__ each is
# ~100 bytes smaller (dataclass slots: Python 3.10+).
SLOTS = {"slots": True} if sys.version_info >= (3, 10) else {}


def reachable_size(size: float, least: float, hist: SizeHistogram) -> float:
    """The planned size of an instance of least size `least` (least_size) given target size `size`.

    `size` itself, or if under `least`, `least` when that is still in the same
    bin of the target histogram (BIN_MARGIN inside its upper edge): size is
    matched by bin, so the instance counts where the target asked for it. If
    not, `size` (whose short side is then under MIN_SIDE: dropped).
    """
    if size >= least:
        return size
    upper = hist.edges[int(hist.bin_index([size])[0]) + 1] / BIN_MARGIN
    return least if least < upper else size


def msm_reachable_sizes(sizes: Sequence[float], least: Sequence[float], hist: SizeHistogram) -> np.ndarray:
    """MSM+ sizes, monotone as far as the instances allow.

    The target quantiles are dealt in increasing order, each to the smallest
    instance (in source size, ties in order of appearance) not yet served that
    can reach it (reachable_size keeps its short side at MIN_SIDE). Where every
    instance can reach its quantile this is msm_sizes; an instance too
    elongated for its small quantile takes the next it can reach, so none is
    dropped and every quantile is used. Quantiles no instance can reach are
    left out, and the instances left over take their own quantile. O(n log n).
    """
    n = len(sizes)
    targets = hist.quantile((np.arange(n) + 0.5) / n)  # increasing
    order = np.argsort(np.asarray(sizes, float), kind="stable")  # source position -> instance
    least = np.asarray(least, float)[order]
    # The first quantile each instance can reach: at or above its least size, or in a bin that holds it.
    first_bin = np.searchsorted(np.asarray(hist.edges)[1:] / BIN_MARGIN, least, side="right")
    first = np.minimum(np.searchsorted(targets, least, side="left"),
                       np.searchsorted(hist.bin_index(targets), first_bin, side="left"))
    if np.all(first <= np.arange(n)):  # each reaches its own quantile: dealt in order, each its own
        out = targets
    else:
        # (Python lists: the loop runs once per instance, numpy's scalar indexing cost it 3x)
        dealt = targets.tolist()  # by source position; an instance dealt no quantile keeps the one at its own
        quantiles, waiting = targets.tolist(), []  # waiting: source positions that can reach the current quantile
        by_first = np.argsort(first, kind="stable")
        firsts, by_first = first[by_first].tolist(), by_first.tolist()
        push, pop = heapq.heappush, heapq.heappop
        k = 0
        for j in range(n):
            while k < n and firsts[k] <= j:
                push(waiting, by_first[k])
                k += 1
            if waiting:
                dealt[pop(waiting)] = quantiles[j]
        out = np.array(dealt)
    result = np.empty(n)
    result[order] = out
    return result


@dataclass(**SLOTS)
class Candidate:
    """A scale-matched instance of one image, as the planner sees it: its facts computed once."""

    image_id: int
    ann: dict
    box: Tuple[float, float, float, float]  # clipped_box
    size: float
    least: float    # least_size of its box
    point: Optional[Tuple[float, float]]  # fixed_point of its box (None: cut by two opposite edges)

    @property
    def cut_both(self) -> bool:
        """Cut by two opposite frame edges: dropped, not scale-matched."""
        return self.point is None


# ---------------------------------------------------------------- size suppliers (SM+ step 2)

class RsmSizes:
    """RSM+: each instance's size drawn from the target histogram (a bin by its probability,
    then uniformly in it), from the image's generator."""

    def __init__(self, hist: SizeHistogram):
        self.hist = hist

    def sizes(self, rng: np.random.Generator, instances: Sequence[Candidate]) -> List[float]:
        return list(map(float, self.hist.sample_rsm(rng, len(instances))))


class MsmSizes:
    """MSM+ per image: an instance's quantile among the source sizes (fitted once) picks the
    same quantile of the target. (The offline run deals the quantiles over the whole set
    instead: DealtSizes.)"""

    def __init__(self, hist: SizeHistogram, source_sizes: Sequence[float]):
        self.hist = hist
        self.source = np.sort(np.asarray(source_sizes, float))
        if not len(self.source):
            raise UsageError("MSM+ needs the source sizes: the source has no instance to scale-match "
                             "(give another source, or use mode 'rsm')")

    def quantiles(self, sizes: Sequence[float]) -> np.ndarray:
        sizes = np.asarray(sizes, float)
        below = np.searchsorted(self.source, sizes, side="left")
        equal = np.searchsorted(self.source, sizes, side="right") - below
        return (below + 0.5 * equal) / len(self.source)

    def sizes(self, rng: np.random.Generator, instances: Sequence[Candidate]) -> List[float]:
        if not instances:
            return []
        return list(map(float, self.hist.quantile(self.quantiles([c.size for c in instances]))))


class DealtSizes:
    """MSM+ over a whole dataset: the sizes msm_reachable_sizes dealt, by annotation id."""

    def __init__(self, hist: SizeHistogram, by_ann: Dict[int, float]):
        self.hist, self.by_ann = hist, by_ann

    @classmethod
    def deal(cls, hist: SizeHistogram, candidates: Sequence[Candidate]) -> "DealtSizes":
        flat = [c for c in candidates if c.point is not None]  # (not cut_both)
        dealt = msm_reachable_sizes([c.size for c in flat], [c.least for c in flat], hist)
        return cls(hist, dict(zip([c.ann["id"] for c in flat], dealt.tolist())))

    def sizes(self, rng: np.random.Generator, instances: Sequence[Candidate]) -> List[float]:
        by_ann = self.by_ann
        return [by_ann[c.ann["id"]] for c in instances]


class OwnSizes:
    """Copy-paste (cp, cp+): every instance keeps its own size."""

    def __init__(self, hist: SizeHistogram):
        self.hist = hist

    def sizes(self, rng: np.random.Generator, instances: Sequence[Candidate]) -> List[float]:
        return [c.size for c in instances]
