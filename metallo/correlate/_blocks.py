"""Block matching: the point pairs that drive the deformable stage (fitted by ``_transform.fit_bspline``).

Mutual information over a whole field is dominated by the large, featureless interior of a
specimen whose contrast differs between modalities (EBSD image quality drifts, BSE is flat).
Local normalised cross-correlation of small blocks around edges and pores locks onto the shared
structure instead; a smooth B-spline fitted through the matches (outliers rejected) then gives a
dense deformation that Mattes-MI can refine.
"""

from __future__ import annotations

import numpy as np


def block_matches(
    fixed: np.ndarray,
    warped: np.ndarray,
    valid: np.ndarray,
    *,
    block_px: int,
    search_px: int,
    min_ncc: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shift of each textured fixed block that best matches ``warped`` (moving on the fixed grid).

    Returns block centres (row, col), shifts (drow, dcol) in pixels and their NCC peak values.
    The sign of the correlation is chosen once for all blocks (majority), so an inverted
    contrast between modalities still matches.
    """
    import cv2

    half = block_px // 2
    # At most ~1500 blocks: enough matches for any B-spline grid, bounded time on large images.
    stride = max(4, half, int(np.sqrt(fixed.shape[0] * fixed.shape[1] / 1500)))
    rows = np.arange(half + search_px, fixed.shape[0] - half - search_px, stride)
    cols = np.arange(half + search_px, fixed.shape[1] - half - search_px, stride)
    if len(rows) == 0 or len(cols) == 0:
        return np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0)
    f32 = fixed.astype(np.float32)
    w32 = warped.astype(np.float32)
    spread = np.percentile(fixed[valid], 95) - np.percentile(fixed[valid], 5) if valid.any() else 0.0
    centres, shifts, peaks = [], [], []
    # One template match per block (hundreds, not pixels); each call is a vectorised OpenCV FFT/NCC.
    for r in rows:
        for c in cols:
            win = valid[r - half - search_px : r + half + search_px, c - half - search_px : c + half + search_px]
            if not win.all():
                continue
            tpl = f32[r - half : r + half, c - half : c + half]
            if tpl.std() < 0.05 * spread:
                continue
            region = w32[r - half - search_px : r + half + search_px, c - half - search_px : c + half + search_px]
            if region.std() < 1e-6:
                continue
            res = cv2.matchTemplate(region, tpl, cv2.TM_CCOEFF_NORMED)
            centres.append((r, c))
            shifts.append(_peak(res) - search_px)
            peaks.append((res.max(), -res.min()))
    if not centres:
        return np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0)
    peaks_arr = np.array(peaks)
    # Positive or inverted contrast: whichever correlates better over most blocks.
    sign = 0 if np.median(peaks_arr[:, 0]) >= np.median(peaks_arr[:, 1]) else 1
    shifts_arr = np.array(shifts)[:, sign]
    value = peaks_arr[:, sign]
    keep = value >= min_ncc
    return np.array(centres, dtype=float)[keep], shifts_arr[keep], value[keep]


def _peak(res: np.ndarray) -> np.ndarray:
    """Sub-pixel (row, col) of the max and of the min of an NCC map, shape (2 [max, min], 2)."""
    out = []
    for arr in (res, -res):
        i, j = np.unravel_index(int(np.argmax(arr)), arr.shape)
        dy = _parabola(arr[i - 1, j], arr[i, j], arr[i + 1, j]) if 0 < i < arr.shape[0] - 1 else 0.0
        dx = _parabola(arr[i, j - 1], arr[i, j], arr[i, j + 1]) if 0 < j < arr.shape[1] - 1 else 0.0
        out.append((i + dy, j + dx))
    return np.array(out)


def _parabola(a: float, b: float, c: float) -> float:
    denom = a - 2 * b + c
    return float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5)) if denom < 0 else 0.0


def outline_matches(
    fixed_outline: np.ndarray,
    moving_outline: np.ndarray,
    fixed_ok: np.ndarray,
    moving_ok: np.ndarray,
    *,
    block: int,
    search: int,
    stride: int,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Matches of the section outline: centres on the fixed outline, shifts, peak NCC, distinctiveness.

    ``fixed_outline`` is the outline ridge of the fixed section (:func:`metallo.correlate._structure.outline_image`);
    ``moving_outline``/``moving_ok`` are the moving one on the fixed grid padded by ``search``
    pixels on every side (as for the structure blocks). Blocks are centred on outline pixels
    about ``stride`` apart and may be cut by the image border (a section cut off by the field
    still has its outline matched up to the border). Along a straight stretch of outline only
    the shift across it is measured (aperture problem): the shift is projected on the outline
    normal, so the point keeps its current position along the outline, and the distinctiveness
    is the drop of the correlation at ``block/6`` pixels across the outline. Corners and notches
    give both components. A block whose moving window shows no outline (the moving section is
    cut off there) is skipped, and so is a centre within a pixel of one in ``exclude`` (the
    structure blocks' centres: a spline cannot pass through one point twice).

    Returns
    -------
    (centres, shifts, peak, gap)
        Centres (row, col) and shifts (drow, dcol) in pixels, peak NCC and peak minus the best
        correlation away from it.

    Examples
    --------
    >>> from metallo.correlate._structure import outline_image
    >>> m = np.zeros((80, 80), bool); m[20:60, 15:65] = True
    >>> f = outline_image(m, np.ones_like(m), sigma_px=1.5)
    >>> mv = np.pad(np.roll(f, 2, axis=0), 8)    # moving outline 2 px lower, padded by the search
    >>> c, s, p, g = outline_matches(f, mv, np.ones_like(m), np.pad(np.ones_like(m), 8), block=16, search=8, stride=8)
    >>> bool(np.allclose(np.median(s, axis=0), [2.0, 0.0], atol=0.1))
    True
    """
    import cv2

    half = block // 2
    h, w = fixed_outline.shape
    on = (fixed_outline > 0.99) & fixed_ok
    rr, cc = np.nonzero(on)
    if len(rr) == 0:
        z = np.zeros((0, 2))
        return z, z, np.zeros(0), np.zeros(0)
    # One centre per stride x stride cell: the outline pixel nearest the cell centre.
    cell = (rr // stride) * (w // stride + 1) + cc // stride
    dist = (rr % stride - stride / 2) ** 2 + (cc % stride - stride / 2) ** 2
    order = np.lexsort((dist, cell))
    first = np.r_[True, cell[order][1:] != cell[order][:-1]]
    picks = order[first]
    if exclude is not None and len(exclude):
        from scipy.spatial import cKDTree

        d, _ = cKDTree(exclude).query(np.stack([rr[picks], cc[picks]], 1))
        picks = picks[d > 1.0]
    f32, m32 = fixed_outline.astype(np.float32), moving_outline.astype(np.float32)
    excl = max(2, block // 6)
    centres, shifts, peaks, gaps = [], [], [], []
    for r, c in zip(rr[picks], cc[picks], strict=True):
        r0, r1, c0, c1 = max(0, r - half), min(h, r + half), max(0, c - half), min(w, c + half)
        if min(r1 - r0, c1 - c0) < half:
            continue
        win = (slice(r0, r1 + 2 * search), slice(c0, c1 + 2 * search))
        region = m32[win]
        if moving_ok[win].mean() < 0.6 or region.max() < 0.5:
            continue
        tpl = f32[r0:r1, c0:c1]
        gy, gx = np.gradient(tpl.astype(np.float64))
        tensor = np.array([[(gy * gy).sum(), (gy * gx).sum()], [(gy * gx).sum(), (gx * gx).sum()]])
        evals, evecs = np.linalg.eigh(tensor)
        if evals[1] <= 0:
            continue
        coherence = (evals[1] - evals[0]) / (evals[1] + evals[0])
        if coherence <= 0.6:
            continue
        res = cv2.matchTemplate(region, tpl, cv2.TM_CCOEFF_NORMED)
        i, j = np.unravel_index(int(np.argmax(res)), res.shape)
        peak = float(res[i, j])
        dy = _parabola(res[i - 1, j], res[i, j], res[i + 1, j]) if 0 < i < res.shape[0] - 1 else 0.0
        dx = _parabola(res[i, j - 1], res[i, j], res[i, j + 1]) if 0 < j < res.shape[1] - 1 else 0.0
        shift = np.array([i + dy - search, j + dx - search])
        ii, jj = np.mgrid[: res.shape[0], : res.shape[1]]
        if coherence > 0.6:
            # A straight stretch: only the shift along the normal is measured.
            normal = evecs[:, 1]
            shift = normal * float(shift @ normal)
            near = np.abs((ii - i) * normal[0] + (jj - j) * normal[1]) <= excl
        else:
            near = (np.abs(ii - i) <= excl) & (np.abs(jj - j) <= excl)
        away = res[~near]
        centres.append((r, c))
        shifts.append(shift)
        peaks.append(peak)
        gaps.append(peak - (float(away.max()) if away.size else -1.0))
    if not centres:
        z = np.zeros((0, 2))
        return z, z, np.zeros(0), np.zeros(0)
    return np.array(centres, float), np.array(shifts, float), np.array(peaks), np.array(gaps)

