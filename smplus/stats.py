"""Size statistics of a COCO dataset against a target, and a plot of both histograms."""

from __future__ import annotations

from typing import Optional

import numpy as np

from .coco import finite_number, instance_size, read_json
from .errors import SmplusError
from .histogram import SizeHistogram, sampling_noise, size_jsd


def dataset_sizes(path: str) -> list:
    """s = sqrt(w*h) of every non-crowd box of a COCO annotation file.

    A box counts as `transform` reads one (plan.box_reason): four finite numbers; any other
    (strings, null, NaN) is left out, as transform leaves it unscaled, never a crash."""
    raw = read_json(path, "annotations")
    anns = raw.get("annotations") if isinstance(raw, dict) else None
    if not isinstance(anns, list):
        raise SmplusError(f"annotations {path}: no 'annotations' list (is it a COCO file?)")
    return [instance_size(*a["bbox"][2:]) for a in anns
            if isinstance(a, dict) and not a.get("iscrowd") and _numeric_box(a.get("bbox"))]


def _numeric_box(box) -> bool:
    return isinstance(box, list) and len(box) == 4 and all(map(finite_number, box))


def size_stats(sizes, hist: Optional[SizeHistogram]) -> dict:
    s = np.asarray(sizes, float)
    out = {"boxes": int(len(s))}
    if len(s):
        out.update(mean=float(s.mean()), std=float(s.std()),
                   percentiles={str(p): float(v) for p, v in zip((1, 5, 25, 50, 75, 95, 99),
                                                                 np.percentile(s, [1, 5, 25, 50, 75, 95, 99]))})
    if hist is not None and len(s):
        out.update(jsd=size_jsd(s, hist), sampling_noise=sampling_noise(hist, len(s)))
    return out


def plot_sizes(sizes, hist: Optional[SizeHistogram], path: str, label: str = "dataset") -> None:
    """The dataset's size histogram and the target's, overlaid, on a log size axis."""
    try:
        import matplotlib
    except ImportError:
        raise SmplusError("--plot needs matplotlib: pip install 'smplus[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = np.asarray(sizes, float)
    s = s[s > 0]
    lo = min(s.min() if len(s) else 1.0, hist.edges[0] if hist else np.inf)
    hi = max(s.max() if len(s) else 10.0, hist.edges[-1] if hist else 0)
    bins = np.geomspace(max(lo, 0.1), hi, 60)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if len(s):
        ax.hist(s, bins=bins, density=True, alpha=0.6, label=f"{label} ({len(s)} boxes)")
    if hist is not None:
        # the target's density on the same bins, from its quantiles
        q = hist.quantile((np.arange(20000) + 0.5) / 20000)
        ax.hist(q, bins=bins, density=True, histtype="step", linewidth=2, color="k", label="target")
    ax.set_xscale("log")
    ax.set_xlabel("object size sqrt(w*h), px")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as e:
        raise SmplusError(f"cannot write {path}: {e.strerror or e}; choose another --plot") from None
    finally:
        plt.close(fig)
