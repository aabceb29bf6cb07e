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
