"""Object sizes, the target size histogram, the RSM+/MSM+ samplers and JSD.

Size is the paper's s = sqrt(w * h) of a box. The histogram follows Scale
Match (Yu et al. 2020): K bins over the target sizes, with the long tail
rectified -- the smallest and the largest except_rate/2 of the sizes each go
into one head and one tail bin, the K-2 bins between are equal (in size, or
in log size with log_bins).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from .coco import finite_number, instance_size, paused_gc, read_json, write_json_atomic
from .errors import SmplusError, UsageError

HISTOGRAM_FORMAT = "smplus-histogram"

# TinyPerson's published statistics of absolute size (Yu et al., WACV 2020):
# median about 13 px, about 20 % under 8 px, mean 18.0, std 17.4.
TINYPERSON_MEAN = 18.0
TINYPERSON_STD = 17.4
# The bundled prior: a shifted log-normal law (sigma, shift px, scale px), the
# least-squares fit of those four statistics (scripts/fit_prior.py: median 12.93,
# 20.0 % under 8 px, mean 18.14, std 17.36). The plain log-normal with the mean
# and std put 28 % under 8 px; a two-parameter law cannot meet all four.
TINYPERSON_PRIOR = (0.9605, 4.0383, 8.8908)
# The tail bin ends at most this many times its lower edge: one outlier box
# must not stretch it (a 1e6-px box made RSM+ ask for a 6.6 TB paste). Real
# targets end at 1.1-3.9x (scripts/tail_bound.py); sizes beyond are counted in it.
TAIL_RATIO = 8.0
_NUMBER = (int, float)
# 10,000 bins hold 4 boxes each on TinyPerson's 42k: more bins only bin noise.
MAX_BINS = 10_000


@dataclass(frozen=True)
class SizeHistogram:
    edges: tuple  # K+1 strictly increasing sizes in px
    probs: tuple  # K probabilities, summing to 1
    log_bins: bool = False
    source: str = ""
    count: int = 0  # boxes it was built from (0 for an analytic prior)

    def __post_init__(self):
        e, p = np.asarray(self.edges, float), np.asarray(self.probs, float)
        if e.ndim != 1 or len(e) < 2 or len(p) != len(e) - 1:
            raise SmplusError(f"histogram {self.source}: needs K+1 edges and K probabilities, got {len(e)} and {len(p)}")
        if not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0) or e[0] <= 0:
            raise SmplusError(f"histogram {self.source}: edges must be positive and strictly increasing")
        if np.any(p < 0) or not np.isclose(p.sum(), 1.0, atol=1e-6):
            raise SmplusError(f"histogram {self.source}: probabilities must be >= 0 and sum to 1 (sum {p.sum():.6g})")

    @property
    def bins(self) -> int:
        return len(self.probs)

    # Sampling happens in "bin space": size, or log size with log_bins.
    def _to_space(self, s):
        return np.log(s) if self.log_bins else np.asarray(s, float)

    def _from_space(self, v):
        return np.exp(v) if self.log_bins else v

    def bin_index(self, sizes: Iterable[float]) -> np.ndarray:
        """Bin of each size; sizes outside the range count in the end bins."""
        idx = np.searchsorted(np.asarray(self.edges), np.asarray(list(sizes), float), side="right") - 1
        return np.clip(idx, 0, self.bins - 1)

    def frequencies(self, sizes: Iterable[float]) -> np.ndarray:
        counts = np.bincount(self.bin_index(sizes), minlength=self.bins).astype(float)
        return counts / counts.sum() if counts.sum() else counts

    def sample_rsm(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """RSM+: a bin by its probability, then a size uniformly in the bin."""
        k = rng.choice(self.bins, size=n, p=np.asarray(self.probs))
        lo, hi = self._to_space(np.asarray(self.edges)[k]), self._to_space(np.asarray(self.edges)[k + 1])
        return self._from_space(lo + rng.random(n) * (hi - lo))

    def quantile(self, q: Sequence[float]) -> np.ndarray:
        """Inverse CDF, linear inside each bin (in bin space)."""
        q = np.clip(np.asarray(q, float), 0.0, 1.0)
        p = np.asarray(self.probs)
        cdf = np.concatenate([[0.0], np.cumsum(p)])
        cdf[-1] = 1.0
        k = np.clip(np.searchsorted(cdf, q, side="right") - 1, 0, self.bins - 1)
        # Skip empty bins so a quantile never lands inside a zero-probability bin.
        nz = np.flatnonzero(p > 0)
        k = nz[np.clip(np.searchsorted(nz, k, side="left"), 0, len(nz) - 1)]
        frac = np.where(p[k] > 0, (q - cdf[k]) / np.where(p[k] > 0, p[k], 1.0), 0.0)
        e = self._to_space(np.asarray(self.edges))
        return self._from_space(e[k] + np.clip(frac, 0.0, 1.0) * (e[k + 1] - e[k]))

    def to_json(self) -> dict:
        return {"format": HISTOGRAM_FORMAT, "version": 1, "bins": self.bins, "log_bins": self.log_bins,
                "count": self.count, "source": self.source,
                "edges": [float(x) for x in self.edges], "probs": [float(x) for x in self.probs]}

    @classmethod
    def from_json(cls, obj: dict, where: str = "") -> "SizeHistogram":
        """A histogram file's contents, type by type (a string is never read as a number or a flag);
        every error names the file `where`, not the source the file records."""
        def fail(what: str):
            return SmplusError(f"histogram file {where}: {what} (write one with `smplus histogram`)")

        def numbers(key: str) -> tuple:
            v = obj.get(key)
            if not (isinstance(v, list) and all(isinstance(x, _NUMBER) and not isinstance(x, bool) for x in v)):
                raise fail(f"'{key}' must be a list of numbers")
            try:
                out = tuple(float(x) for x in v)
            except OverflowError:  # an integer beyond any float
                raise fail(f"'{key}' holds a number too large for a float") from None
            if not all(map(math.isfinite, out)):
                raise fail(f"'{key}' must hold finite numbers")
            return out

        edges, probs = numbers("edges"), numbers("probs")
        log_bins, count, source = obj.get("log_bins", False), obj.get("count", 0), obj.get("source", where)
        if not isinstance(log_bins, bool):
            raise fail(f"'log_bins' must be true or false, got {log_bins!r}")
        if not (isinstance(count, int) and not isinstance(count, bool) and count >= 0):
            raise fail(f"'count' must be a whole number >= 0, got {count!r}")
        if not isinstance(source, str):
            raise fail(f"'source' must be a string, got {source!r}")
        if "bins" in obj and obj["bins"] != len(probs):
            raise fail(f"'bins' is {obj['bins']!r} but 'probs' holds {len(probs)}")
        try:
            hist = cls(edges=edges, probs=probs, log_bins=log_bins, source=where, count=count)
        except SmplusError as e:  # its checks name the file
            raise SmplusError(f"{e} (write one with `smplus histogram`)".replace("histogram ", "histogram file ", 1)) from None
        return dataclasses.replace(hist, source=source)


def check_histogram_options(bins: int, except_rate: Optional[float]) -> float:
    """Validate bins / except_rate; return the except rate (default 2/bins)."""
    if not isinstance(bins, int) or isinstance(bins, bool) or not 3 <= bins <= MAX_BINS:
        raise UsageError(f"--bins must be an integer in [3, {MAX_BINS}], got {bins!r}")
    if except_rate is None:
        return 2.0 / bins
    if not (isinstance(except_rate, (int, float)) and 0.0 <= except_rate < 1.0):
        raise UsageError(f"--except-rate must be in [0, 1), got {except_rate!r}")
    return float(except_rate)


def build_histogram(sizes: Sequence[float], bins: int = 100, except_rate: Optional[float] = None,
                    log_bins: bool = False, source: str = "") -> SizeHistogram:
    """The Scale Match histogram of `sizes` with a rectified long tail."""
    except_rate = check_histogram_options(bins, except_rate)
    s = np.asarray(sizes, float)
    s = np.sort(s[(s > 0) & np.isfinite(s)])
    n = len(s)
    if n < 2 or s[0] == s[-1]:
        raise SmplusError(f"target {source}: needs at least two boxes of different sizes to build a histogram, "
                          f"found {n} usable boxes")
    c = int(n * except_rate / 2)
    space = np.log if log_bins else (lambda v: v)
    unspace = np.exp if log_bins else (lambda v: v)
    # Head bin: the c smallest sizes, tail bin: the c largest (inner edges halfway between).
    lo = (s[c - 1] + s[c]) / 2 if c >= 1 else s[0]
    hi = (s[n - c - 1] + s[n - c]) / 2 if c >= 1 else s[-1]
    if s[0] < lo < hi < s[-1]:
        middle = unspace(np.linspace(space(lo), space(hi), bins - 1))
        edges = np.concatenate([[s[0]], middle, [min(s[-1], TAIL_RATIO * hi)]])
    else:  # too few boxes to rectify the tail: K equal bins over the whole range
        edges = unspace(np.linspace(space(s[0]), space(s[-1]), bins + 1))
        edges[0], edges[-1] = s[0], s[-1]
    counts = np.bincount(np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1), minlength=bins)
    return SizeHistogram(edges=tuple(map(float, edges)), probs=tuple(map(float, counts / n)),
                         log_bins=log_bins, source=source, count=n)


def tinyperson_histogram(bins: int = 100, except_rate: Optional[float] = None,
                         log_bins: bool = False) -> SizeHistogram:
    """The bundled TinyPerson prior: the shifted log-normal TINYPERSON_PRIOR fitted to TinyPerson's statistics.

    An approximation of the real `tiny_set_train.json` histogram (see README):
    the same construction as `build_histogram`, with the sample's order
    statistics replaced by the law's quantiles.
    """
    from scipy.stats import lognorm

    except_rate = check_histogram_options(bins, except_rate)
    sigma, shift, scale = TINYPERSON_PRIOR
    law = lognorm(s=sigma, loc=shift, scale=scale)
    outer = min(1e-5, except_rate / 4) if except_rate > 0 else 1e-5  # beyond the head and tail bins' inner edges
    ends = law.ppf([outer, 1 - outer])  # the range of a large sample
    space, unspace = (np.log, np.exp) if log_bins else ((lambda v: v), (lambda v: v))
    if except_rate > 0:
        middle = unspace(np.linspace(*space(law.ppf([except_rate / 2, 1 - except_rate / 2])), bins - 1))
        edges = np.concatenate([[ends[0]], middle, [ends[1]]])
    else:
        edges = unspace(np.linspace(*space(ends), bins + 1))
    probs = np.diff(np.concatenate([[0.0], law.cdf(edges[1:-1]), [1.0]]))
    return SizeHistogram(edges=tuple(map(float, edges)), probs=tuple(map(float, probs / probs.sum())),
                         log_bins=log_bins, source=f"bundled TinyPerson prior (shifted log-normal fitted to median 13 px, 20 % under 8 px, "
                                f"{TINYPERSON_MEAN} +- {TINYPERSON_STD} px)")


def target_sizes(raw: Any, where: str) -> list:
    """Box sizes of a COCO or TinyPerson-layout target, iscrowd/ignore/uncertain left out."""
    anns = raw.get("annotations") if isinstance(raw, dict) else None
    if not isinstance(anns, list):
        raise SmplusError(f"target {where}: not a histogram file and has no 'annotations' list "
                          "(give a COCO/TinyPerson annotation file or a `smplus histogram` output)")
    widths, heights = [], []
    for a in anns:  # 42k boxes in TinyPerson: the checks unrolled (a generator per box cost 2x)
        if not isinstance(a, dict) or a.get("iscrowd") or a.get("ignore") or a.get("uncertain"):
            continue
        box = a.get("bbox")
        if (isinstance(box, (list, tuple)) and len(box) == 4 and isinstance(box[0], _NUMBER)
                and isinstance(box[1], _NUMBER) and isinstance(box[2], _NUMBER) and isinstance(box[3], _NUMBER)):
            widths.append(box[2])
            heights.append(box[3])
    try:
        sizes = [s for s in map(instance_size, widths, heights) if s > 0 and math.isfinite(s)]
    except OverflowError:  # an integer beyond any float: those boxes are left out too
        sizes = [instance_size(w, h) for w, h in zip(widths, heights) if finite_number(w) and finite_number(h)]
        sizes = [s for s in sizes if s > 0 and math.isfinite(s)]
    if not sizes:
        raise SmplusError(f"target {where}: no usable boxes (all are iscrowd/ignore/uncertain or have no size)")
    return sizes


def load_target(path: Optional[str], bins: int = 100, except_rate: Optional[float] = None,
                log_bins: bool = False, annotations_only: bool = False) -> SizeHistogram:
    """The target histogram: from a histogram file (unless `annotations_only`), an annotation
    file, or the bundled prior."""
    if path is None:
        return tinyperson_histogram(bins, except_rate, log_bins)
    with paused_gc():  # the parsed file lives only for this: never walked by a collection
        raw = read_json(path, "target")
        if isinstance(raw, dict) and raw.get("format") == HISTOGRAM_FORMAT:
            if annotations_only:
                raise SmplusError(f"target {path} is a histogram already; give the annotations it was built from")
            return SizeHistogram.from_json(raw, path)
        sizes = target_sizes(raw, path)
        del raw
    return build_histogram(sizes, bins, except_rate, log_bins, source=path)


def write_histogram(target: str, output: str, bins: int = 100, except_rate: Optional[float] = None,
                    log_bins: bool = False) -> SizeHistogram:
    """`smplus histogram`: the histogram of the annotation file `target`, written to `output`."""
    if not output:
        raise UsageError("-o is empty (an unset variable?); give the histogram file to write")
    if os.path.abspath(output) == os.path.abspath(target):
        raise SmplusError(f"-o {output} would overwrite the target annotations; write the histogram elsewhere")
    hist = load_target(target, bins, except_rate, log_bins, annotations_only=True)
    try:
        write_json_atomic(output, hist.to_json(), indent=1)
    except OSError as e:
        raise SmplusError(f"cannot write {output}: {e.strerror or e}; choose another -o") from None
    return hist


# ---------------------------------------------------------------- samplers

def msm_sizes(source_sizes: Sequence[float], hist: SizeHistogram) -> np.ndarray:
    """MSM+: each size's mid-rank quantile in the source maps to the same target quantile.

    Monotone (a larger source object never gets a smaller size); ties are
    broken by order of appearance, so equal sizes spread over their quantiles.
    """
    s = np.asarray(source_sizes, float)
    n = len(s)
    if n == 0:
        return s
    rank = np.empty(n, int)
    rank[np.argsort(s, kind="stable")] = np.arange(n)
    return hist.quantile((rank + 0.5) / n)


# ---------------------------------------------------------------- measures

def jensen_shannon(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence in nats between two discrete distributions."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a, b):
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / b[nz])))

    return max(0.0, 0.5 * kl(p, m) + 0.5 * kl(q, m))


def size_jsd(sizes: Sequence[float], hist: SizeHistogram) -> Optional[float]:
    """JSD between the histogram of `sizes` on the target's bins and the target."""
    if len(sizes) == 0:
        return None
    return jensen_shannon(hist.frequencies(sizes), hist.probs)


def sampling_noise(hist: SizeHistogram, n: int, trials: int = 200, seed: int = 0) -> Optional[float]:
    """Mean JSD to the target of n independent random draws from it: the noise floor at n."""
    if n <= 0:
        return None
    counts = np.random.default_rng(seed).multinomial(n, np.asarray(hist.probs), size=trials)
    return float(np.mean([jensen_shannon(c, hist.probs) for c in counts]))
