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
    rows [y0, y1) x columns [x0, x1) (a slice, clipped as numpy clips it); (found, value).

    The k-th smallest value is one value whatever finds it: a radix select on the float32 bits (for
    values >= 0, NaN last, their order as numbers, as np.partition orders them), three passes of
    11, 11 and 10 bits, ~4x faster than np.partition's quickselect on a ring of ~5,000 values."""
    h, w = gray.shape
    y0, y1, x0, x1 = min(max(y0, 0), h), min(max(y1, 0), h), min(max(x0, 0), w), min(max(x1, 0), w)
    n = h * w - max(0, y1 - y0) * max(0, x1 - x0)
    if n == 0:
        return False, np.float32(0.0)
    values = np.empty(n, np.float32)
    t = 0
    for y in range(h):
        skip = y0 <= y < y1
        for x in range(w):
            if skip and x0 <= x < x1:
                continue
            values[t] = abs(gray[y, x] - blurred[y, x])
            t += 1
    bits = values.view(np.uint32)
    k = n // 2
    hist = np.zeros(2048, np.int64)
    for i in range(n):
        hist[bits[i] >> 21] += 1
    top = 0
    while hist[top] <= k:
        k -= hist[top]
        top += 1
    m = hist[top]  # the candidates: values whose top 11 bits are `top`
    cand = np.empty(m, np.uint32)
    t = 0
    for i in range(n):
        if bits[i] >> 21 == top:
            cand[t] = bits[i]
            t += 1
    hist[:] = 0
    for i in range(m):
        hist[(cand[i] >> 10) & 2047] += 1
    mid = 0
    while hist[mid] <= k:
        k -= hist[mid]
        mid += 1
    hist[:] = 0
    for i in range(m):
        if (cand[i] >> 10) & 2047 == mid:
            hist[cand[i] & 1023] += 1
    low = 0
    while hist[low] <= k:
        k -= hist[low]
        low += 1
    out = np.empty(1, np.uint32)
    out[0] = (np.uint32(top) << 21) | (np.uint32(mid) << 10) | np.uint32(low)
    return True, out.view(np.float32)[0]


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


@_kernel
def over(below, alpha, colour):
    """render._over: colour (premultiplied) over 8-bit `below`, clip(below * (1 - alpha) + colour + 0.5, 0, 255)
    truncated to 8 bits, in float32 as numpy computes it."""
    h, w, _ = colour.shape
    out = np.empty((h, w, 3), np.uint8)
    one, half, zero, top = np.float32(1.0), np.float32(0.5), np.float32(0.0), np.float32(255.0)
    for y in range(h):
        for x in range(w):
            k = one - alpha[y, x]
            for c in range(3):
                v = np.float32(below[y, x, c]) * k + colour[y, x, c] + half
                if v < zero:
                    v = zero
                elif v > top:
                    v = top
                out[y, x, c] = np.uint8(v)
    return out


@_kernel
def hold_frame(premult, colour, soft, left, top, right, bottom, k):
    """separate._hold_frame, in place: within `k` px of the frame sides flagged (left, top, right,
    bottom), where `soft` is above the alpha, alpha = soft and colour = 8-bit `colour` * soft."""
    h, w = soft.shape
    for y in range(h):
        row = (top and y < k) or (bottom and (y >= h - k or k == 0))
        for x in range(w):
            if not (row or (left and x < k) or (right and (x >= w - k or k == 0))):
                continue
            s = soft[y, x]
            if s > premult[y, x, 3]:
                premult[y, x, 3] = s
                for c in range(3):
                    premult[y, x, c] = np.float32(colour[y, x, c]) * s


@_kernel
def opaque_colour(premult, crop, opaque):
    """separate._opaque_colour, in place: colour = 8-bit `crop` * alpha where alpha >= `opaque`."""
    h, w, _ = premult.shape
    for y in range(h):
        for x in range(w):
            a = premult[y, x, 3]
            if a >= opaque:
                for c in range(3):
                    premult[y, x, c] = np.float32(crop[y, x, c]) * a


@_kernel
def _frame_cover(n, origin, cut_lo, cut_hi, lo, hi):
    """The share of each of n pixels (pixel i covers [origin + i, origin + i + 1]) inside [lo, hi] where flagged."""
    cover = np.empty(n, np.float32)
    for i in range(n):
        start = np.float64(i) + origin
        c = 1.0
        if cut_lo:
            v = min(max(start + 1 - lo, 0.0), 1.0)  # (numpy's clip, then minimum: a NaN wins)
            c = v if v < c or v != v else c
        if cut_hi:
            v = min(max(hi - start, 0.0), 1.0)
            c = v if v < c or v != v else c
        cover[i] = np.float32(c)
    return cover


@_kernel
def cut_at_frame(placed, ox, oy, left, top, right, bottom, x_lo, y_lo, x_hi, y_hi):
    """separate._cut_at_frame, in place on h x w x channels float32: each pixel times the share of its column
    within [x_lo, x_hi] (the flagged sides) in float32, then the share of its row within [y_lo, y_hi]."""
    h, w, channels = placed.shape
    cx = _frame_cover(w, ox, left, right, x_lo, x_hi)
    cy = _frame_cover(h, oy, top, bottom, y_lo, y_hi)
    for y in range(h):
        for x in range(w):
            for c in range(channels):
                placed[y, x, c] = placed[y, x, c] * cx[x]
    for y in range(h):
        for x in range(w):
            for c in range(channels):
                placed[y, x, c] = placed[y, x, c] * cy[y]


@_kernel
def support_mask(alpha, support):
    """render._measure's mask: (alpha >= support as 0/1 uint8, its count)."""
    h, w = alpha.shape
    out = np.empty((h, w), np.uint8)
    n = 0
    for y in range(h):
        for x in range(w):
            v = alpha[y, x] >= support
            out[y, x] = v
            n += v
    return out, n
