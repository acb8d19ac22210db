"""Shards: a deterministic split of the plan's images, for batch jobs with no shared state.

Every shard plans the whole set (plans are global: MSM quantiles, background
draws), then renders its part into its own OUT. The images drawing one new
background go to the same shard (it erases that background once: render.ERASED).
The split is balanced by instance count (the render cost follows the instances):
such groups, and the other images, in decreasing order of instances go to the
least loaded shard, ties to the lowest index.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from typing import List, Sequence

from .errors import SmplusError
from .plan import ImagePlan
from .task import background_groups

PATH_KEYS = ("source", "images", "target")  # may differ between machines; the inputs' digests may not


def assign_shards(plans: Sequence[ImagePlan], n: int) -> List[int]:
    """The shard of each image (by position in the source)."""
    groups = background_groups(plans)
    if len(groups) < n:  # too few groups to give every shard images: image by image
        groups = [[k] for k in range(len(plans))]
    cost = [sum(len(plans[k].instances) + 1 for k in g) for g in groups]
    loads = [(0, i) for i in range(n)]
    shard = [0] * len(plans)
    for g in sorted(range(len(groups)), key=lambda g: (-cost[g], groups[g][0])):
        load, i = heapq.heappop(loads)
        for k in groups[g]:
            shard[k] = i
        heapq.heappush(loads, (load + cost[g], i))
    return shard


def shard_positions(assignment: Sequence[int], i: int) -> List[int]:
    """Positions of the images shard i renders (`assignment`: assign_shards), in source order."""
    return [k for k, s in enumerate(assignment) if s == i]


def differences(a: dict, b: dict) -> List[str]:
    """The keys whose values differ between two dicts, sorted."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def check_shards(shard_dirs: Sequence[str], fingerprints: Sequence[dict]) -> None:
    """Refuse, naming the culprit, shards of other runs, a duplicated shard or a missing one."""
    def run_of(f: dict) -> dict:
        return {**{k: v for k, v in f.items() if k not in PATH_KEYS}, "shard": f["shard"][1]}

    keys = [json.dumps(run_of(f), sort_keys=True) for f in fingerprints]
    common = Counter(keys).most_common(1)[0][0]
    ref = keys.index(common)
    for d, f, key in zip(shard_dirs, fingerprints, keys):
        if key != common:
            diff = differences(run_of(fingerprints[ref]), run_of(f))
            raise SmplusError(f"merge: {d} is a shard of another run than {shard_dirs[ref]} "
                              f"({', '.join(diff)} differ); merge the shards of one run")
    n = fingerprints[ref]["shard"][1]
    where = {}
    for d, f in zip(shard_dirs, fingerprints):
        i = f["shard"][0]
        if i in where:
            raise SmplusError(f"merge: {where[i]} and {d} are both shard {i}/{n}; give each shard once")
        where[i] = d
    missing = [i for i in range(n) if i not in where]
    if missing:
        raise SmplusError(f"merge: shard {missing[0]}/{n} is missing ({len(missing)} of {n} missing); "
                          f"give the OUT folders of all {n} shards")
