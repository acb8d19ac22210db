"""numba kernels of render's per-instance hot path, compiled into the matting kernels' cache.

Each replaces a chain of small numpy calls (a few microseconds each, called
several times per instance and placement round) by one call, with the same
arithmetic in the same order: the results are bit-identical to the numpy
code they replace (tests hold them to it).
"""

from __future__ import annotations

import numpy as np

from .jit import _kernel


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


@_kernel
def shrunk_colour(sharp, alpha, sharp_alpha_min):
    """separate.warp's colour when shrinking: the sharp patch's own colour (premultiplied / its alpha,
    at least `sharp_alpha_min`) times the smooth `alpha`, h x w x 3 float32; and whether some pixel is
    a fringe (sharp alpha under the minimum, smooth alpha above 0: its colour comes from fringe_colour)."""
    h, w, _ = sharp.shape
    out = np.empty((h, w, 3), np.float32)
    fringe = False
    for y in range(h):
        for x in range(w):
            sa = sharp[y, x, 3]
            a = alpha[y, x]
            k = a / max(sa, sharp_alpha_min)  # (numpy's maximum: a NaN wins)
            if sa != sa:
                k = a / sa
            for c in range(3):
                out[y, x, c] = sharp[y, x, c] * k
            if sa < sharp_alpha_min and a > 0.0:
                fringe = True
    return out, fringe


@_kernel
def fringe_colour(out, near, alpha, sharp, sharp_alpha_min, tiny):
    """In place: the colour of the fringe pixels of `out` (shrunk_colour) from `near`, the sharp patch
    blurred: its colour (premultiplied / its alpha, at least `tiny`) times alpha."""
    h, w, _ = out.shape
    for y in range(h):
        for x in range(w):
            a = alpha[y, x]
            if sharp[y, x, 3] < sharp_alpha_min and a > 0.0:
                na = near[y, x, 3]
                k = a / max(na, tiny)
                if na != na:
                    k = a / na
                for c in range(3):
                    out[y, x, c] = near[y, x, c] * k


@_kernel
def ring_median(gray, blurred, y0, y1, x0, x1):
    """grain.Grain.level's ring statistic: the (upper) median of |gray - blurred| (the residual) outside
    rows [y0, y1) x columns [x0, x1) (a slice, clipped as numpy clips it); (found, value)."""
    h, w = gray.shape
    y0, y1, x0, x1 = min(max(y0, 0), h), min(max(y1, 0), h), min(max(x0, 0), w), min(max(x1, 0), w)
    n = h * w - max(0, y1 - y0) * max(0, x1 - x0)
    if n == 0:
        return False, np.float32(0.0)
    values = np.empty(n, gray.dtype)
    t = 0
    for y in range(h):
        skip = y0 <= y < y1
        for x in range(w):
            if skip and x0 <= x < x1:
                continue
            values[t] = abs(gray[y, x] - blurred[y, x])
            t += 1
    k = n // 2
    return True, np.partition(values, k)[k]


@_kernel
def strip_runs(patch, y0, height):
    """coco.patch_to_rle's runs: the column-major run lengths of a `height` x w strip holding `patch`
    (h x w, 0 or not) at row y0 (0 <= y0, y0 + h <= height) and zeros elsewhere, from a run of zeros
    (0 long if the strip starts with a set pixel)."""
    h, w = patch.shape
    runs = np.empty(w * (h + 2) + 2, np.int64)
    n, current, length = 0, 0, 0
    for x in range(w):
        for part in range(3):  # zeros above the patch, its column, zeros below
            rows = y0 if part == 0 else (h if part == 1 else height - y0 - h)
            for r in range(rows):
                v = 1 if part == 1 and patch[r, x] != 0 else 0
                if v != current:
                    runs[n] = length
                    n += 1
                    current, length = v, 0
                length += 1
    runs[n] = length
    return runs[:n + 1]


@_kernel
def composite(below, alpha, colour):
    """grain.sharpened's composite, below * (1 - alpha) + colour (8-bit `below`; float32)."""
    h, w, _ = colour.shape
    out = np.empty((h, w, 3), np.float32)
    one = np.float32(1.0)
    for y in range(h):
        for x in range(w):
            k = one - alpha[y, x]
            for c in range(3):
                out[y, x, c] = np.float32(below[y, x, c]) * k + colour[y, x, c]
    return out


@_kernel
def add_luma(colour, alpha, field, blurred, k, k_first):
    """colour + t in the three channels (float32), t = (k * alpha) * (field - blurred) if `k_first`
    (grain.sharpened's detail) else alpha * (field * k) (grain's noise; `blurred` unused)."""
    h, w, _ = colour.shape
    out = np.empty((h, w, 3), np.float32)
    for y in range(h):
        for x in range(w):
            if k_first:
                t = (k * alpha[y, x]) * (field[y, x] - blurred[y, x])
            else:
                t = alpha[y, x] * (field[y, x] * k)
            for c in range(3):
                out[y, x, c] = colour[y, x, c] + t
    return out
