"""PatchMatch image completion (Barnes et al. 2009; Wexler et al. 2007) at the cost of the hole.

The `patchmatch` fill. For one box (a group of holes and the known context
around it) it finds, for every 5x5 target patch that touches the hole, a
similar patch of known pixels (the nearest-neighbour field, NNF), and fills
each hole pixel from its match. It works coarse to fine:

- a pyramid of 2x2 means of the known pixels: a coarse pixel is missing only if
  all its pixels are, so the hole shrinks down the pyramid (the removed object's
  pixels never reach a coarse level: they are the hole);
- below full resolution a hole pixel copies its match's centre pixel (a mean
  of patches drifts to smooth sources), and a share of each source patch's own
  variation (TEXTURE_BIAS) is taken off its distance, so smooth sources do not
  win for being smooth;
- at the coarsest level the NNF starts random and the hole from Telea's fill,
  then EM: propagation + random search, voting, a few times; at finer levels
  the NNF is the coarser one upsampled (2x its offsets), refined by fewer
  passes, and search stops above SEARCH_MAX_PX target pixels (the large holes'
  cost is bounded by that level);
- at full resolution the upsampled NNF is not refined (FINE_PASSES = 0: a pass
  of propagation, with or without search, changed neither PSNR nor texture on
  the punched holes and cost 15 % of the fill): a sharply weighted vote of the
  overlapping patches' matches copies full-resolution known pixels, so the
  texture stays full resolution.

Only target patches that touch the hole are matched and only hole pixels
change, so the cost follows the hole, not the box. Random numbers come
from a counter-based hash (splitmix64 of seed, level, pass, pixel), and the
passes run in a fixed order on one thread: the output is a pure function of
the box's pixels and hole, in any process.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from .matting import _compile_lock, _kernel

RADIUS = 2               # 5x5 patches
COARSEST_SIDE = 40       # the pyramid stops when the box's longer side would fall under this (px)
ITERATIONS_COARSEST = 4  # EM iterations at the coarsest level (6 before: the same PSNR, texture and smear over seeds 0-2)...
ITERATIONS = 2           # ...at the levels between it and full resolution (a vote at full resolution)
SEARCH_MAX_PX = 20000    # no random search at a level with more target pixels than this (propagation only)
PASSES = 2               # propagation (+ search) scans per EM iteration below full resolution...
FINE_PASSES = 0          # ...and at full resolution, before the vote (the upsampled NNF votes as it is)
FINE_ITERATIONS = 1      # EM iterations at full resolution
VOTE_PERCENTILE = 3      # the vote's weights: exp(-d / 2 s), s this percentile of the targets' distances
SEED = 0
TEXTURE_BIAS = 0.15       # below full resolution: share of a source patch's own variation taken off its distance
_NO_COARSER = np.full((1, 1), -2, np.int64)  # _upsample's coarse target map when there is no coarser level

_M1, _M2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


@_kernel
def _hash(a, b):
    """splitmix64 of (a, b): 64 random bits, a pure function of the counter."""
    z = np.uint64(a) * _GOLD + np.uint64(b) + _GOLD
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@_kernel
def _dist(img, ty, tx, sy, sx, r, best):
    """SSD between the patch at (ty, tx) (its pixels inside the box) and the one at (sy, sx), stopping past `best`.

    Each row sums its channels in three accumulators, then adds to the total: one running sum over the
    patch's 75 terms was a chain of dependent additions, most of the distance's cost (the SSD differs from
    it in the last bits only)."""
    h, w = img.shape[0], img.shape[1]
    s = 0.0
    if r == RADIUS and RADIUS <= ty < h - RADIUS and RADIUS <= tx < w - RADIUS:  # inside the box: no checks
        for dy in range(-RADIUS, RADIUS + 1):
            a0 = a1 = a2 = 0.0
            for dx in range(-RADIUS, RADIUS + 1):
                d0 = img[ty + dy, tx + dx, 0] - img[sy + dy, sx + dx, 0]
                d1 = img[ty + dy, tx + dx, 1] - img[sy + dy, sx + dx, 1]
                d2 = img[ty + dy, tx + dx, 2] - img[sy + dy, sx + dx, 2]
                a0 += d0 * d0
                a1 += d1 * d1
                a2 += d2 * d2
            s += (a0 + a1) + a2
            if s >= best:
                return s
        return s
    for dy in range(-r, r + 1):  # the same sums, the terms outside the box left out
        yy = ty + dy
        if yy < 0 or yy >= h:
            continue
        a0 = a1 = a2 = 0.0
        for dx in range(-r, r + 1):
            xx = tx + dx
            if xx < 0 or xx >= w:
                continue
            d0 = img[yy, xx, 0] - img[sy + dy, sx + dx, 0]
            d1 = img[yy, xx, 1] - img[sy + dy, sx + dx, 1]
            d2 = img[yy, xx, 2] - img[sy + dy, sx + dx, 2]
            a0 += d0 * d0
            a1 += d1 * d1
            a2 += d2 * d2
        s += (a0 + a1) + a2
        if s >= best:
            return s
    return s


@_kernel
def _search(img, valid, bias, ty, tx, tmap, ny, nx, dist, r, passes, search, key):
    """Improve the NNF (ny, nx at the targets ty, tx; tmap: target index or -1) by `passes` alternating
    scans of propagation, each followed by random search when `search`; dist gets each target's SSD."""
    h, w = img.shape[0], img.shape[1]
    n = ty.shape[0]
    for i in range(n):
        dist[i] = _dist(img, ty[i], tx[i], ny[i], nx[i], r, np.inf) - bias[ny[i], nx[i]]
    for p in range(passes):
        step = 1 if p % 2 == 0 else -1
        for k in range(n):
            i = k if step == 1 else n - 1 - k
            y, x = ty[i], tx[i]
            best, by, bx = dist[i], ny[i], nx[i]
            for q in range(2):  # the neighbour before this pixel in the scan, left/right then up/down
                yy, xx = (y, x - step) if q == 0 else (y - step, x)
                if yy < 0 or yy >= h or xx < 0 or xx >= w:
                    continue
                j = tmap[yy, xx]
                if j < 0:
                    continue
                cy, cx = ny[j] + (y - yy), nx[j] + (x - xx)
                if cy < 0 or cy >= h or cx < 0 or cx >= w or not valid[cy, cx] or (cy == by and cx == bx):
                    continue
                d = _dist(img, y, x, cy, cx, r, best + bias[cy, cx]) - bias[cy, cx]
                if d < best:
                    best, by, bx = d, cy, cx
            if search:
                radius = max(h, w)
                t = 0
                while radius >= 1:
                    z = _hash(key + np.uint64(p * 64 + t), np.uint64(i))
                    t += 1
                    cy = by + np.int64(z % np.uint64(2 * radius + 1)) - radius
                    cx = bx + np.int64((z >> np.uint64(32)) % np.uint64(2 * radius + 1)) - radius
                    radius //= 2
                    if cy < 0 or cy >= h or cx < 0 or cx >= w or not valid[cy, cx]:
                        continue
                    d = _dist(img, y, x, cy, cx, r, best + bias[cy, cx]) - bias[cy, cx]
                    if d < best:
                        best, by, bx = d, cy, cx
            dist[i], ny[i], nx[i] = best, by, bx


@_kernel
def _vote(img, hole, ty, tx, ny, nx, weight, r):
    """Set each hole pixel of img to the weighted mean of the pixels the overlapping target patches' matches hold there."""
    h, w = img.shape[0], img.shape[1]
    y0, y1, x0, x1 = h, -1, w, -1  # the hole's box: the sums are kept for it only
    for y in range(h):
        for x in range(w):
            if hole[y, x]:
                y0, y1, x0, x1 = min(y0, y), max(y1, y), min(x0, x), max(x1, x)
    if y1 < 0:
        return
    acc = np.zeros((y1 - y0 + 1, x1 - x0 + 1, 3), np.float64)
    wsum = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.float64)
    for i in range(ty.shape[0]):
        y, x, sy, sx, wt = ty[i], tx[i], ny[i], nx[i], weight[i]
        for dy in range(-r, r + 1):
            yy = y + dy
            if yy < y0 or yy > y1:
                continue
            for dx in range(-r, r + 1):
                xx = x + dx
                if xx < x0 or xx > x1 or not hole[yy, xx]:
                    continue
                wsum[yy - y0, xx - x0] += wt
                for c in range(3):
                    acc[yy - y0, xx - x0, c] += wt * img[sy + dy, sx + dx, c]
    for y in range(y0, y1 + 1):
        for x in range(x0, x1 + 1):
            if hole[y, x] and wsum[y - y0, x - x0] > 0:
                for c in range(3):
                    img[y, x, c] = acc[y - y0, x - x0, c] / wsum[y - y0, x - x0]


@_kernel
def _copy_centres(img, hole, tmap, ny, nx):
    """Set each hole pixel of img to the centre of its own match (no blending)."""
    h, w = hole.shape
    for y in range(h):
        for x in range(w):
            if hole[y, x]:
                j = tmap[y, x]
                for c in range(3):
                    img[y, x, c] = img[ny[j], nx[j], c]


@_kernel
def _upsample(ty, tx, cmap, cny, cnx, valid, vy, vx, key):
    """The NNF at the targets (ty, tx) of a level from the coarser level's (cmap: its target index or -1;
    cny, cnx): the coarse match doubled plus the pixel's offset in its 2x2 block, moved inside the valid
    sources if it is not one (nearest along the doubled match's row, else a hashed valid source)."""
    n = ty.shape[0]
    h, w = valid.shape
    ch, cw = cmap.shape
    ny = np.empty(n, np.int64)
    nx = np.empty(n, np.int64)
    for i in range(n):
        y, x = ty[i], tx[i]
        cy, cx = min(y // 2, ch - 1), min(x // 2, cw - 1)
        j = cmap[cy, cx]
        my, mx = -1, -1
        if j >= 0:
            my, mx = cny[j], cnx[j]
        elif cmap[0, 0] != _NO_COARSER[0, 0]:  # not a target there (the coarse hole is smaller): a nearby target's shift
            for d in range(1, 4):
                for qy in range(max(cy - d, 0), min(cy + d + 1, ch)):
                    for qx in range(max(cx - d, 0), min(cx + d + 1, cw)):
                        j2 = cmap[qy, qx]
                        if j2 >= 0 and my < 0:
                            my, mx = cny[j2] + cy - qy, cnx[j2] + cx - qx
                if my >= 0:
                    break
        sy, sx = -1, -1
        if my >= 0:
            sy, sx = 2 * my + (y - 2 * cy), 2 * mx + (x - 2 * cx)
            sy, sx = min(max(sy, 0), h - 1), min(max(sx, 0), w - 1)
            if not valid[sy, sx]:
                found = False
                for d in range(1, 4):
                    for qy, qx in ((sy, sx - d), (sy, sx + d), (sy - d, sx), (sy + d, sx)):
                        if 0 <= qy < h and 0 <= qx < w and valid[qy, qx]:
                            sy, sx, found = qy, qx, True
                            break
                    if found:
                        break
                if not found:
                    sy = -1
        if sy < 0:
            k = np.int64(_hash(key, np.uint64(i)) % np.uint64(vy.shape[0]))
            sy, sx = vy[k], vx[k]
        ny[i], nx[i] = sy, sx
    return ny, nx


@_kernel
def _down(img, hole):
    """2x2 means of the known pixels; a coarse pixel is missing only if all its pixels are, so the
    hole shrinks level by level and the coarse levels see the colours at its rim (PSNR +0.6-0.8 dB
    on punched holes against "missing if any is")."""
    h, w = hole.shape
    H, W = (h + 1) // 2, (w + 1) // 2
    out = np.zeros((H, W, 3), np.float32)
    out_hole = np.zeros((H, W), np.uint8)
    for Y in range(H):
        for X in range(W):
            n = 0
            s0 = s1 = s2 = 0.0
            for y in range(2 * Y, min(2 * Y + 2, h)):
                for x in range(2 * X, min(2 * X + 2, w)):
                    if not hole[y, x]:
                        n += 1
                        s0 += img[y, x, 0]
                        s1 += img[y, x, 1]
                        s2 += img[y, x, 2]
            if n == 0:
                out_hole[Y, X] = 1
            else:
                out[Y, X, 0], out[Y, X, 1], out[Y, X, 2] = s0 / n, s1 / n, s2 / n
    return out, out_hole


def _level(img, hole, r):
    """A level's targets (patches touching the hole, raster order), target index map, valid sources."""
    size = 2 * r + 1
    kernel = np.ones((size, size), np.uint8)
    near = cv2.dilate(hole, kernel)  # 1 where a patch centred there touches the hole
    ty, tx = np.nonzero(near)
    tmap = np.full(hole.shape, -1, np.int64)
    tmap[ty, tx] = np.arange(ty.size)
    valid = near == 0
    valid[:r], valid[hole.shape[0] - r:], valid[:, :r], valid[:, hole.shape[1] - r:] = False, False, False, False
    vy, vx = np.nonzero(valid)
    return ty.astype(np.int64), tx.astype(np.int64), tmap, valid, vy.astype(np.int64), vx.astype(np.int64)


def _texture_bias(img, r):
    """TEXTURE_BIAS x each patch's own variation (sum of squared deviations from its mean, per channel):
    subtracted from the SSD to a source patch, so a smooth source no longer wins only for being smooth."""
    k = (2 * r + 1, 2 * r + 1)
    s1 = cv2.boxFilter(img, cv2.CV_64F, k, normalize=False, borderType=cv2.BORDER_REPLICATE)
    s2 = cv2.boxFilter(img.astype(np.float64) ** 2, cv2.CV_64F, k, normalize=False, borderType=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(TEXTURE_BIAS * np.maximum(s2 - s1 ** 2 / (k[0] * k[1]), 0).sum(axis=2))


def _weights(dist, pct):
    """Voting weights: exp(-d / 2 s), s the `pct` percentile of the targets' SSDs (Wexler et al. use the 75th)."""
    if dist.size == 0:
        return dist
    dist = dist - dist.min()
    s2 = max(float(np.percentile(dist, pct)), 1.0)
    return np.exp(-dist / (2.0 * s2))


_warm = False


def complete(image: np.ndarray, hole: np.ndarray, seed: int = SEED) -> Optional[np.ndarray]:
    """`image` (uint8 BGR, one box) with the pixels where `hole` is nonzero filled by PatchMatch;
    None if no 5x5 patch of known pixels lies in the box (the caller falls back to Telea)."""
    global _warm
    if not _warm:
        with _compile_lock():  # one process compiles the kernels, the others then load them
            _warm_up()
        _warm = True
    r = RADIUS
    hole = (np.asarray(hole) > 0).astype(np.uint8)
    img = image.astype(np.float32)
    fine = _level(img, hole, r)
    if fine[5].size == 0:
        return None
    levels = [(img, hole, fine)]  # (image, hole, its targets and sources) per level, finest first
    while max(levels[-1][1].shape) // 2 >= COARSEST_SIDE:
        img, hl = _down(*levels[-1][:2])
        if not hl.any():  # no hole left
            break
        lev = _level(img, hl, r)
        if lev[5].size == 0:  # no whole known patch
            break
        levels.append((img, hl, lev))
    prev = None
    for lv in range(len(levels) - 1, -1, -1):
        img, hl, (ty, tx, tmap, valid, vy, vx) = levels[lv]
        key = np.uint64((seed * 1000003 + lv) * 1000003)
        if prev is None:  # coarsest: a random NNF, Telea's fill as the first guess
            ny, nx = _upsample(ty, tx, _NO_COARSER, vy[:1], vx[:1], valid, vy, vx, key)
            start = cv2.inpaint(np.clip(img + 0.5, 0, 255).astype(np.uint8), hl, 3, cv2.INPAINT_TELEA)
            img[hl > 0] = start[hl > 0]
            iterations = ITERATIONS_COARSEST
        else:
            ny, nx = _upsample(ty, tx, *prev, valid, vy, vx, key)
            _copy_centres(img, hl, tmap, ny, nx)
            iterations = ITERATIONS if lv else FINE_ITERATIONS
        # Below full resolution only: where the sources are chosen (at full resolution it cost PSNR, no texture).
        bias = _texture_bias(img, r) if TEXTURE_BIAS and lv else np.zeros(hl.shape)
        dist = np.empty(ty.size, np.float64)
        search = ty.size <= SEARCH_MAX_PX or prev is None
        for it in range(iterations):
            _search(img, valid, bias, ty, tx, tmap, ny, nx, dist, r, PASSES if lv else FINE_PASSES, search,
                    key + np.uint64(1 + it) * np.uint64(7919))
            if lv or it < iterations - 1:
                # Each hole pixel copies its own match's centre: the estimate keeps real texture. A
                # blended (voted) estimate is smoother than any source, and matched against it the smooth
                # sources win level after level (texture ratio 0.6 against 0.8-0.9 so).
                _copy_centres(img, hl, tmap, ny, nx)
            else:
                # Full resolution: a vote weighted sharply by how well each patch matches, so patches
                # that agree blend across seams and the texture of coherent regions stays as it is.
                _vote(img, hl, ty, tx, ny, nx, _weights(dist, VOTE_PERCENTILE), r)
        prev = (tmap, ny, nx)
    out = image.copy()
    img = levels[0][0]
    out[hole > 0] = np.clip(img[hole > 0] + 0.5, 0, 255).astype(np.uint8)
    return out


def _warm_up():
    """Compile (or load from numba's cache) the kernels on a tiny box."""
    yy, xx = np.mgrid[0:12, 0:12]
    img = (np.dstack([xx * 20, yy * 20, xx * yy]) % 256).astype(np.float32)
    hole = np.zeros((12, 12), np.uint8)
    hole[5:7, 5:7] = 1
    ty, tx, tmap, valid, vy, vx = _level(img, hole, RADIUS)
    ny, nx = vy[:1].repeat(ty.size), vx[:1].repeat(ty.size)
    dist = np.empty(ty.size, np.float64)
    _search(img, valid, np.zeros(hole.shape), ty, tx, tmap, ny, nx, dist, RADIUS, 1, True, np.uint64(1))
    _vote(img, hole, ty, tx, ny, nx, np.ones(ty.size), RADIUS)
    _upsample(ty, tx, tmap, ny, nx, valid, vy, vx, np.uint64(2))
    _down(img, hole)
