"""numba kernels of render's per-instance hot path, compiled into the matting kernels' cache.

Each replaces a chain of small numpy calls (a few microseconds each, called
several times per instance and placement round) by one call, with the same
arithmetic in the same order: the results are bit-identical to the numpy
code they replace (tests hold them to it).
"""

from __future__ import annotations

import numpy as np

from .matting import _kernel


@_kernel
def _crossings(profile, support):
    """render.edge_crossings on a profile: (found, start, end)."""
    n = len(profile)
    i = 0
    while i < n and not profile[i] >= support:
        i += 1
    if i == n:
        return False, 0.0, 0.0
    j = n - 1
    while not profile[j] >= support:
        j -= 1
    before = np.float64(profile[i - 1]) if i > 0 else 0.0
    after = np.float64(profile[j + 1]) if j + 1 < n else 0.0
    first, last = np.float64(profile[i]), np.float64(profile[j])
    return True, (i - 0.5) + (support - before) / (first - before), (j + 0.5) + (last - support) / (last - after)


@_kernel
def alpha_crossings(alpha, support):
    """render.alpha_box's edge crossings of an alpha map's column and row maxima (numpy's max:
    a NaN wins): (found, x0, x1, y0, y1)."""
    h, w = alpha.shape
    cols = np.empty(w, alpha.dtype)
    rows = np.empty(h, alpha.dtype)
    for x in range(w):
        cols[x] = alpha[0, x]
    for y in range(h):
        m = alpha[y, 0]
        for x in range(w):
            v = alpha[y, x]
            if v > m or v != v:
                m = v
            c = cols[x]
            if v > c or v != v:
                cols[x] = v
        rows[y] = m
    fx, x0, x1 = _crossings(cols, support)
    if not fx:
        return False, 0.0, 0.0, 0.0, 0.0
    fy, y0, y1 = _crossings(rows, support)
    if not fy:
        return False, 0.0, 0.0, 0.0, 0.0
    return True, x0, x1, y0, y1
