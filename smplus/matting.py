"""Closed-form matting at the cost of the band it solves.

Alpha (Levin, Lischinski & Weiss 2008): the matting Laplacian L is built
only from the 3x3 windows that touch an unknown pixel of the trimap; the
known pixels' alpha moves to the right-hand side, and L_UU x = -L_UK a_K is
solved for the unknowns alone by conjugate gradients, preconditioned by an
incomplete Cholesky factor with the same 5x5-stencil pattern as L_UU. It is
the system pymatting's estimate_alpha_cf solves (same windows, epsilon and
trimap thresholds); pymatting builds the Laplacian of the whole crop first.

Foreground colours (Germer et al. 2020, pymatting's estimate_foreground_ml):
the same per-pixel update of F and B, iterated only where 0 < alpha < 1 and
kept for those pixels alone (their known neighbours lend the source's colours).
Where alpha is 1 the colours are the source's; where it is 0 they never show.

`premultiplied_matte` (what separate.matte calls) runs both and returns the
premultiplied patch in one numba call; `estimate_alpha` and
`estimate_foreground` expose the two steps (tests hold them to pymatting).

The kernels are numba-compiled once per installation into a per-user cache
folder outside the package (`cache_dir`), so uninstalling leaves nothing behind;
`warm_up` loads them (worker start-up calls it, and so does the first matte()),
compiling first if needed and saying so in one line on stderr.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional

import numpy as np

from .jit import _CACHE_DIR, _compile_lock, _kernel, _usable_cache_dir, cache_dir  # noqa: F401  (also this module's API, as before)

EPSILON = 1e-7          # regularizes each window's colour covariance (pymatting's default)
KNOWN_BG, KNOWN_FG = 0.1, 0.9  # trimap values at or below / above: known (pymatting's thresholds)
# CG stops at |residual| <= RTOL |rhs|. 1e-4 takes 0.81x the matting kernel's time of 1e-6; pasted pixels differ
# by a mean 0.00 of 255 (max 8 at a pixel; JPEG q95: 2.2-2.5 mean): scripts/fast_path_quality.py --what rtol
RTOL = 1e-4
MAX_ITER = 500
FG_REGULARIZATION = 1e-5  # foreground smoothness, and its weight on alpha's gradient (pymatting's)
FG_GRADIENT_WEIGHT = 1.0
FG_ITERATIONS = 4       # Gauss-Seidel sweeps, from the nearest known colours (as good as 10 here)

# The crop, padded by 2 px, as a flat grid (row length w + 4): each cell holds its unknown's index,
# _KNOWN_FG for a known pixel of alpha 1, or _OTHER (known background, or the padding).
_OTHER, _KNOWN_FG = -1, -2
# L_UU row i holds the 5x5 neighbourhood of pixel i: offset (dy, dx) in [-2, 2]^2 at
# column k = (dy + 2) * 5 + dx + 2; k < _DIAG are the neighbours earlier in raster order.
_DIAG = 12
_KY, _KX = np.arange(9) // 3, np.arange(9) % 3     # 3x3 window position k: row, column
_SY, _SX = np.arange(25) // 5, np.arange(25) % 5   # 5x5 stencil column k: row, column
_PAIR = ((_KY[None, :] - _KY[:, None] + 2) * 5 + _KX[None, :] - _KX[:, None] + 2).astype(np.uint32)  # l in k's row
_NEIGHBOURS = ((0, -1), (0, 1), (-1, 0), (1, 0))


def _ic0_products():
    """For each stencil column k <= _DIAG (pixel j of row i), the columns m < j that rows i and j share,
    as (k2: m's column in row i, kk: in row j), k2 ascending; row k's are [start[k], start[k + 1])."""
    start, k2s, kks = [0], [], []
    for k in range(_DIAG + 1):
        for k2 in range(k):
            ey, ex = _SY[k2] - _SY[k], _SX[k2] - _SX[k]  # m's offset from j
            if -2 <= ey <= 2 and -2 <= ex <= 2 and (ey + 2) * 5 + ex + 2 < _DIAG:
                k2s.append(k2)
                kks.append((ey + 2) * 5 + ex + 2)
        start.append(len(k2s))
    return np.array(start, np.uint32), np.array(k2s, np.uint32), np.array(kks, np.uint32)  # (unsigned: no index wraparound)


_IC_START, _IC_ROW, _IC_COL = _ic0_products()



COMPILE_MESSAGE = ("smplus: compiling the matting and render kernels (numba); this happens once per installation "
                   "and takes up to a minute")


@_kernel
def _band_system(image, trimap, eps):
    """L_UU (stencil rows), its column indices (-1: known or outside), rhs, and the unknowns' y, x."""
    h, w, _ = image.shape
    row = w + 4
    grid = np.full((h + 4) * row, _OTHER, np.int32)
    ys = np.empty(h * w, np.int32)
    xs = np.empty(h * w, np.int32)
    n = 0
    for y in range(h):
        for x in range(w):
            t = trimap[y, x]
            if t < KNOWN_BG:
                continue
            if t > KNOWN_FG:
                grid[(y + 2) * row + x + 2] = _KNOWN_FG
            else:
                grid[(y + 2) * row + x + 2] = n
                ys[n] = y
                xs[n] = x
                n += 1
    ys, xs = ys[:n], xs[:n]
    window = (_KY - 1) * row + _KX - 1  # the 3x3 window's offsets on the grid
    A = np.zeros((n, 25))
    b = np.zeros(n)
    done = np.zeros((h, w), np.bool_)
    c = np.empty((9, 3))  # the window's colours, centred
    q = np.empty((9, 3))  # M c_k
    unknown = np.empty(9, np.uint32)  # positions in the window of its unknown pixels (their indices: uidx)...
    uidx = np.empty(9, np.uint32)
    fg = np.empty(9, np.uint32)  # ...and of its known pixels of alpha 1
    for p in range(n):
        # every window (centre inside the image's 1-px border) holding unknown p, once
        for cy in range(max(1, ys[p] - 1), min(h - 1, ys[p] + 2)):
            for cx in range(max(1, xs[p] - 1), min(w - 1, xs[p] + 2)):
                if done[cy, cx]:
                    continue
                done[cy, cx] = True
                for k in range(9):
                    for ch in range(3):
                        c[k, ch] = image[cy + _KY[k] - 1, cx + _KX[k] - 1, ch]
                for ch in range(3):
                    s = 0.0
                    for k in range(9):
                        s += c[k, ch]
                    for k in range(9):
                        c[k, ch] -= s / 9.0
                # window covariance + eps, inverted (pymatting's formula, term for term: on grey
                # windows the covariance is near-singular and the order of operations shows)
                a00, a01, a02, a11, a12, a22 = eps, 0.0, 0.0, eps, 0.0, eps
                for k in range(9):
                    a00 += c[k, 0] * c[k, 0]
                    a01 += c[k, 0] * c[k, 1]
                    a02 += c[k, 0] * c[k, 2]
                    a11 += c[k, 1] * c[k, 1]
                    a12 += c[k, 1] * c[k, 2]
                    a22 += c[k, 2] * c[k, 2]
                a00, a01, a02, a11, a12, a22 = a00 / 9.0, a01 / 9.0, a02 / 9.0, a11 / 9.0, a12 / 9.0, a22 / 9.0
                inv_det = 1.0 / (a00 * a12 * a12 + a01 * a01 * a22 + a02 * a02 * a11
                                 - a00 * a11 * a22 - 2 * a01 * a02 * a12)
                m00 = (a12 * a12 - a11 * a22) * inv_det
                m01 = (a01 * a22 - a02 * a12) * inv_det
                m02 = (a02 * a11 - a01 * a12) * inv_det
                m11 = (a02 * a02 - a00 * a22) * inv_det
                m12 = (a00 * a12 - a01 * a02) * inv_det
                m22 = (a01 * a01 - a00 * a11) * inv_det
                # L_ij += delta_ij - (1 + c_i^T M c_j) / 9, for the window's unknown i: against
                # unknown j (symmetric: once per pair) and known j of alpha 1 (to the right-hand side)
                centre = (cy + 2) * row + cx + 2
                nu, nf = 0, 0
                for k in range(9):
                    j = grid[centre + window[k]]
                    if j >= 0:
                        unknown[nu] = k
                        uidx[nu] = j
                        nu += 1
                        s0, s1, s2 = c[k, 0], c[k, 1], c[k, 2]  # M c_k, needed for unknown k only
                        q[k, 0] = m00 * s0 + m01 * s1 + m02 * s2
                        q[k, 1] = m01 * s0 + m11 * s1 + m12 * s2
                        q[k, 2] = m02 * s0 + m12 * s1 + m22 * s2
                    elif j == _KNOWN_FG:
                        fg[nf] = k
                        nf += 1
                for a in range(nu):
                    ki, ui = unknown[a], uidx[a]
                    q0, q1, q2 = q[ki, 0], q[ki, 1], q[ki, 2]
                    for bi in range(a, nu):
                        kj = unknown[bi]
                        v = (1.0 if ki == kj else 0.0) - (1.0 + q0 * c[kj, 0] + q1 * c[kj, 1] + q2 * c[kj, 2]) / 9.0
                        A[ui, _PAIR[ki, kj]] += v  # j is i or after it; the mirror half is copied below
                    for f in range(nf):
                        kj = fg[f]
                        b[ui] += (1.0 + q0 * c[kj, 0] + q1 * c[kj, 1] + q2 * c[kj, 2]) / 9.0
    steps = (_SY - 2) * row + _SX - 2  # the 5x5 stencil's
    cols = np.empty((n, 25), np.int32)
    for i in range(n):
        at = (ys[i] + 2) * row + xs[i] + 2
        for k in range(25):
            cols[i, k] = max(_OTHER, grid[at + steps[k]])
    for i in range(n):  # L is symmetric: L_ji = L_ij, the same terms summed in the same order
        for k in range(_DIAG + 1, 25):
            j = cols[i, k]
            if j >= 0:
                A[j, 24 - k] = A[i, k]
    return A, cols, b, ys, xs


@_kernel
def _ic0(A, cols, shift):
    """Incomplete Cholesky on L_UU's own pattern (lower stencil half); ok=False on a non-positive pivot.
    Column _DIAG holds the reciprocal of L's diagonal (it only ever divides). Entries of L outside the
    pattern stay 0 and add nothing to the sums. Also L^T's rows (upper stencil half, without the
    diagonal): U[j, k] = L[i, k] for the pixel i at stencil column 24 - k of row j."""
    n = A.shape[0]
    L = np.zeros((n, _DIAG + 1))
    U = np.zeros((n, _DIAG))
    for i in range(n):
        for k in range(_DIAG + 1):
            j = cols[i, k]
            if j < 0:
                continue
            s = A[i, k] * (1.0 + shift) if k == _DIAG else A[i, k]
            for t in range(_IC_START[k], _IC_START[k + 1]):
                s -= L[i, _IC_ROW[t]] * L[j, _IC_COL[t]]
            if k == _DIAG:
                if not s > 0.0:
                    return L, U, False
                L[i, _DIAG] = 1.0 / np.sqrt(s)
            else:
                L[i, k] = s * L[j, _DIAG]
                U[j, k] = L[i, k]
    return L, U, True


@_kernel
def _precondition(L, U, cols, r, z):
    """z = (L L^T)^-1 r; returns r . z. Both halves gather along their rows (the terms in the order
    a column-by-column back substitution would subtract them: later rows first)."""
    n = L.shape[0]
    for i in range(n):
        s = r[i]
        for k in range(_DIAG):
            j = cols[i, k]
            if j >= 0:
                s -= L[i, k] * z[j]
        z[i] = s * L[i, _DIAG]
    rz = 0.0
    for i in range(n - 1, -1, -1):
        s = z[i]
        for k in range(_DIAG):
            j = cols[i, 24 - k]
            if j >= 0:
                s -= U[i, k] * z[j]
        z[i] = s * L[i, _DIAG]
        rz += r[i] * z[i]
    return rz


@_kernel
def _cg(A, cols, b, L, U, rtol, max_iter):
    """Preconditioned conjugate gradients; ok=False if it did not converge."""
    n = A.shape[0]
    x = np.zeros(n)
    r = b.copy()
    q = np.empty(n)
    z = np.empty(n)
    rz = _precondition(L, U, cols, r, z)
    p = z.copy()
    rr = 0.0
    for i in range(n):
        rr += b[i] * b[i]
    stop = rtol * np.sqrt(rr)
    for _ in range(max_iter):
        if np.sqrt(rr) <= stop:
            return x, True
        pq = 0.0
        for i in range(n):  # q = A p
            s = 0.0
            for k in range(25):
                j = cols[i, k]
                if j >= 0:
                    s += A[i, k] * p[j]
            q[i] = s
            pq += p[i] * s
        step = rz / pq
        rr = 0.0
        for i in range(n):
            x[i] += step * p[i]
            r[i] -= step * q[i]
            rr += r[i] * r[i]
        rz_next = _precondition(L, U, cols, r, z)
        beta = rz_next / rz
        for i in range(n):
            p[i] = z[i] + beta * p[i]
        rz = rz_next
    return x, np.sqrt(rr) <= stop


@_kernel
def _solve_alpha(image, trimap, eps, rtol, max_iter):
    """Alpha over the whole crop and whether the band's system was solved."""
    h, w, _ = image.shape
    alpha = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            if trimap[y, x] > KNOWN_FG:
                alpha[y, x] = 1.0
    A, cols, b, ys, xs = _band_system(image, trimap, eps)
    n = len(b)
    if n == 0:
        return alpha, True
    if n == h * w:
        return alpha, False
    for i in range(n):
        if not A[i, _DIAG] > 0.0:  # in no window
            return alpha, False
    shift = 0.0
    L, U, ok = _ic0(A, cols, shift)
    while not ok and shift < 1.0:  # pymatting's ichol also retries with a growing diagonal shift
        shift = 1e-3 if shift == 0.0 else 10.0 * shift
        L, U, ok = _ic0(A, cols, shift)
    if not ok:
        return alpha, False
    x, ok = _cg(A, cols, b, L, U, rtol, max_iter)
    for i in range(n):
        if not np.isfinite(x[i]):
            return alpha, False
        alpha[ys[i], xs[i]] = min(1.0, max(0.0, x[i]))
    return alpha, ok


def estimate_alpha(image: np.ndarray, trimap: np.ndarray) -> Optional[np.ndarray]:
    """Closed-form alpha (h x w, 0..1) of `image` (h x w x 3, 0..1) given `trimap` (0 bg, 1 fg, else unknown).

    None when the band's system cannot be solved: no known pixel, an unknown
    pixel that no full 3x3 window holds (an image under 3 px), or no convergence.
    """
    alpha, ok = _solve_alpha(np.ascontiguousarray(image, np.float64), np.ascontiguousarray(trimap, np.float64),
                             EPSILON, RTOL, MAX_ITER)
    return alpha if ok else None


@_kernel
def _band_foreground(image, alpha, iterations, regularization, gradient_weight):
    """Foreground colours where 0 < alpha < 1: those pixels' y, x and colours (elsewhere F is the image)."""
    h, w, _ = image.shape
    # rows of F and B: the band's pixels (0 < alpha < 1), then the known pixels next to them (the image's
    # colours, fixed); `row` maps a pixel to its row, -1 for neither
    row = np.empty((h, w), np.int32)
    ys = np.empty(h * w, np.uint32)
    xs = np.empty(h * w, np.uint32)  # (unsigned: no index wraparound test)
    n = 0
    for y in range(h):
        for x in range(w):
            if 0.0 < alpha[y, x] < 1.0:
                row[y, x] = n
                ys[n], xs[n] = y, x
                n += 1
            else:
                row[y, x] = -1
    nbr = np.empty((n, 4), np.uint32)  # rows of the 4-neighbours, clamped at the border
    m = n
    for p in range(n):
        for d in range(4):
            y2 = min(h - 1, max(0, ys[p] + _NEIGHBOURS[d][0]))
            x2 = min(w - 1, max(0, xs[p] + _NEIGHBOURS[d][1]))
            if row[y2, x2] < 0:
                row[y2, x2] = m
                ys[m], xs[m] = y2, x2
                m += 1
            nbr[p, d] = row[y2, x2]
    F = np.empty((m, 3))
    for r in range(m):
        for c in range(3):
            F[r, c] = image[ys[r], xs[r], c]
    B = F.copy()
    _spread_inward(F, alpha, nbr, ys, xs, 1.0)  # a start near the answer: the nearest opaque colours...
    _spread_inward(B, alpha, nbr, ys, xs, 0.0)  # ...and the nearest background ones
    # Each pixel's 2x2 system and its neighbours' weights are the same in every sweep: once. A weight of
    # 0 stands for a term left out (F is not defined where alpha is 0, nor B where it is 1).
    wf = np.empty((n, 4))
    wb = np.empty((n, 4))
    system = np.empty((n, 4))  # a00, a01, a11 with the neighbours' weights, 1 / determinant
    for p in range(n):
        a0 = alpha[ys[p], xs[p]]
        a1 = 1.0 - a0
        a00, a01, a11 = a0 * a0, a0 * a1, a1 * a1
        for d in range(4):
            a2 = alpha[ys[nbr[p, d]], xs[nbr[p, d]]]
            da = regularization + gradient_weight * abs(a0 - a2)
            wf[p, d] = da if a2 > 0.0 else 0.0
            wb[p, d] = da if a2 < 1.0 else 0.0
            if a2 > 0.0:
                a00 += da
            if a2 < 1.0:
                a11 += da
        system[p, 0], system[p, 1], system[p, 2] = a00, a01, a11
        system[p, 3] = 1.0 / (a00 * a11 - a01 * a01)
    for _ in range(iterations):
        for p in range(n):
            y, x = ys[p], xs[p]
            a0 = alpha[y, x]
            a1 = 1.0 - a0
            f0, f1, f2 = a0 * image[y, x, 0], a0 * image[y, x, 1], a0 * image[y, x, 2]
            b0, b1, b2 = a1 * image[y, x, 0], a1 * image[y, x, 1], a1 * image[y, x, 2]
            for d in range(4):
                q, da_f, da_b = nbr[p, d], wf[p, d], wb[p, d]
                f0, f1, f2 = f0 + da_f * F[q, 0], f1 + da_f * F[q, 1], f2 + da_f * F[q, 2]
                b0, b1, b2 = b0 + da_b * B[q, 0], b1 + da_b * B[q, 1], b2 + da_b * B[q, 2]
            a00, a01, a11, inv_det = system[p, 0], system[p, 1], system[p, 2], system[p, 3]
            F[p, 0] = min(1.0, max(0.0, inv_det * (a11 * f0 - a01 * b0)))
            F[p, 1] = min(1.0, max(0.0, inv_det * (a11 * f1 - a01 * b1)))
            F[p, 2] = min(1.0, max(0.0, inv_det * (a11 * f2 - a01 * b2)))
            B[p, 0] = min(1.0, max(0.0, inv_det * (a00 * b0 - a01 * f0)))
            B[p, 1] = min(1.0, max(0.0, inv_det * (a00 * b1 - a01 * f1)))
            B[p, 2] = min(1.0, max(0.0, inv_det * (a00 * b2 - a01 * f2)))
    return ys[:n], xs[:n], F[:n]


@_kernel
def _spread_inward(C, alpha, nbr, ys, xs, side):
    """Colours C of the band's pixels (rows < n, their 4-neighbours' rows: nbr) from the known ones where
    alpha == side (rows >= n), layer by layer into the band: each the mean of its neighbours of layers before.
    (A neighbour clamped at the border is the pixel itself, of this very layer: left out, as off the image.)"""
    n = len(nbr)
    level = np.empty(len(C), np.int32)  # layer at which a pixel's colour was set; 0: alpha == side
    for r in range(len(C)):
        level[r] = 0 if r >= n and alpha[ys[r], xs[r]] == side else -1
    layers = np.empty(n, np.int32)  # the band's pixels, layer after layer
    end = 0
    for p in range(n):
        if (level[nbr[p, 0]] == 0) | (level[nbr[p, 1]] == 0) | (level[nbr[p, 2]] == 0) | (level[nbr[p, 3]] == 0):
            level[p] = 1
            layers[end] = p
            end += 1
    start, layer = 0, 1
    while start < end:
        for t in range(start, end):
            p = layers[t]
            count = 0
            c0 = c1 = c2 = 0.0
            for d in range(4):
                q = nbr[p, d]
                set_before = 0 <= level[q] < layer
                count += set_before
                weight = 1.0 if set_before else 0.0  # (adding 0 leaves the sum as it is)
                c0, c1, c2 = c0 + weight * C[q, 0], c1 + weight * C[q, 1], c2 + weight * C[q, 2]
            C[p, 0], C[p, 1], C[p, 2] = c0 / count, c1 / count, c2 / count
        stop = end
        for t in range(start, stop):  # the next layer: their neighbours in the band not yet set
            for d in range(4):
                q = nbr[layers[t], d]
                if q < n and level[q] < 0:
                    level[q] = layer + 1
                    layers[end] = q
                    end += 1
        start = stop
        layer += 1


def estimate_foreground(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Foreground colours (h x w x 3, 0..1) of `image` (0..1) under `alpha`: the source's where alpha
    is 1, estimated without the background's bleed where 0 < alpha < 1."""
    image = np.ascontiguousarray(image, np.float64)
    ys, xs, colours = _band_foreground(image, np.ascontiguousarray(alpha, np.float64),
                                       FG_ITERATIONS, FG_REGULARIZATION, FG_GRADIENT_WEIGHT)
    fg = image.copy()
    fg[ys, xs] = colours
    return fg


_UNIT = np.arange(256) / 255.0  # uint8 -> 0..1 (x / 255.0), by table
ALPHA_SNAP = 0.02  # alpha within this of 0 or 1 is taken as 0 or 1 (no faint veil, no see-through core)


@_kernel
def _premultiplied(crop, trimap, soft, eps, rtol, max_iter, iterations, regularization, gradient_weight):
    """matte(): alpha over the band (or `soft` where the trimap is empty or the band unsolved), snapped
    near 0 and 1, foreground colours, and the instance premultiplied (h x w x 4 float32) in one call."""
    h, w, _ = crop.shape
    image = np.empty((h, w, 3))
    for y in range(h):
        for x in range(w):
            for c in range(3):
                image[y, x, c] = _UNIT[crop[y, x, c]]
    ok = False
    if trimap.shape[0] == h and trimap.shape[1] == w:
        alpha, ok = _solve_alpha(image, trimap, eps, rtol, max_iter)
    if not ok:
        alpha = np.empty((h, w))
        for y in range(h):
            for x in range(w):
                alpha[y, x] = soft[y, x]
    for y in range(h):
        for x in range(w):
            a = min(1.0, max(0.0, alpha[y, x]))
            alpha[y, x] = 0.0 if a < ALPHA_SNAP else (1.0 if a > 1.0 - ALPHA_SNAP else a)
    ys, xs, F = _band_foreground(image, alpha, iterations, regularization, gradient_weight)
    out = np.empty((h, w, 4), np.float32)
    for y in range(h):  # alpha 0 or 1: the image's colours, or none
        for x in range(w):
            a = alpha[y, x]
            for c in range(3):
                out[y, x, c] = np.float32(image[y, x, c] * 255.0) * np.float32(a)
            out[y, x, 3] = a
    for p in range(len(ys)):
        y, x = ys[p], xs[p]
        a = alpha[y, x]
        for c in range(3):
            out[y, x, c] = np.float32(F[p, c] * 255.0) * np.float32(a)
    return out


def premultiplied_matte(crop: np.ndarray, trimap: Optional[np.ndarray], soft: np.ndarray) -> np.ndarray:
    """The instance of `crop` (h x w x 3 uint8) premultiplied: colour * alpha (0..255) and alpha (0..1),
    h x w x 4 float32. Alpha by closed-form matting over `trimap`'s band; where there is no trimap
    (None) or its band cannot be solved, `soft` (h x w, 0..1) is the alpha."""
    trimap = np.zeros((0, 0)) if trimap is None else np.ascontiguousarray(trimap, np.float64)
    return _premultiplied(np.ascontiguousarray(crop, np.uint8), trimap, np.ascontiguousarray(soft, np.float32),
                          EPSILON, RTOL, MAX_ITER, FG_ITERATIONS, FG_REGULARIZATION, FG_GRADIENT_WEIGHT)


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)  # stdout may be the user's data


_warm = False


def warm_up(notify: Optional[Callable[[str], None]] = _to_stderr) -> None:
    """Load the matting kernels from numba's on-disk cache, compiling them first if needed.

    Once per process (later calls return at once). Only when a kernel really
    compiles (the first run on a machine, or after an upgrade) is `notify`
    called, once, with COMPILE_MESSAGE. Processes warming up at the same time
    take turns, so one compiles and the others load its result.
    """
    global _warm
    if _warm:
        return
    from numba.core import event

    class Notice(event.Listener):
        said = False

        def on_start(self, ev):
            if notify is not None and not self.said:
                self.said = True
                notify(COMPILE_MESSAGE)

        def on_end(self, ev):
            pass

    yy, xx = np.mgrid[0:8, 0:8]
    crop = (np.dstack([xx / 8.0, yy / 8.0, (xx * yy) / 64.0]) * 255).astype(np.uint8)
    trimap = np.where(xx < 3, 1.0, np.where(xx > 4, 0.0, 0.5))
    from .kernels import (  # render's
        add_luma,
        alpha_crossings,
        composite,
        cut_at_frame,
        fringe_colour,
        hold_frame,
        opaque_colour,
        over,
        ring_median,
        shrunk_colour,
        strip_runs,
        support_mask,
    )

    with _compile_lock(), event.install_listener("numba:compile", Notice()):
        premultiplied_matte(crop, trimap, (xx < 4).astype(np.float32))
        for alpha in (trimap.astype(np.float32), np.dstack([trimap] * 4).astype(np.float32)[..., 3]):  # a patch, a matte's
            alpha_crossings(alpha, 0.4)
        sharp = np.dstack([trimap] * 4).astype(np.float32)
        colour, _ = shrunk_colour(sharp, sharp[..., 3].copy(), np.float32(0.05))
        fringe_colour(colour, sharp, sharp[..., 3].copy(), sharp, np.float32(0.05), np.float32(1e-6))
        ring_median(sharp[..., 3].copy(), sharp[..., 2].copy(), 1, 3, 2, 9)
        strip_runs((trimap > 0.5).astype(np.uint8), 2, 12)
        support_mask(trimap.astype(np.float32), 0.4)
        canvas = np.dstack([crop] * 2)  # cut as render cuts canvas and colour: strided views
        for colour in (sharp[..., :3], sharp[1:, 1:, :3].copy()):
            h, w = colour.shape[:2]
            add_luma(colour, sharp[:h, :w, 3].copy(), sharp[:h, :w, 0].copy(), sharp[:h, :w, 1].copy(), np.float32(0.5), True)
            composite(canvas[:h, :w, :3], sharp[:h, :w, 3].copy(), colour)
            over(canvas[:h, :w, :3], sharp[:h, :w, 3].copy(), colour)
        for colour in (crop, canvas[:, :, :3]):  # a resized crop, a crop of the image
            hold_frame(sharp.copy(), colour, sharp[..., 3].copy(), True, False, False, True, 2)
            opaque_colour(sharp.copy(), colour, 0.98)
        for placed in (sharp[..., 3].copy()[..., None], sharp.copy()):  # an alpha, a four-channel patch
            cut_at_frame(placed, -1.0, 2.0, True, False, False, True, 0.5, 0.0, 0.0, 6.5)
    _warm = True
