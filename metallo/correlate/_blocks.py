"""Block matching and least-squares B-spline fitting: the deformable stage driven by point pairs.

Mutual information over a whole field is dominated by the large, featureless interior of a
specimen whose contrast differs between modalities (EBSD image quality drifts, BSE is flat).
Local normalised cross-correlation of small blocks around edges and pores locks onto the shared
structure instead; a smooth B-spline fitted through the matches (outliers rejected) then gives a
dense deformation that Mattes-MI can refine.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import lsqr

from metallo.correlate._transform import BSplineStep, Grid


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


def fit_bspline(
    points_xy: np.ndarray,
    displacements_xy: np.ndarray,
    grid: Grid,
    *,
    spacing_um: float,
    weights: np.ndarray | None = None,
    smoothness: float = 0.05,
) -> BSplineStep:
    """Least-squares cubic B-spline displacement through scattered (point, displacement) pairs.

    The coefficient grid covers ``grid`` like ITK's ``BSplineTransformInitializer`` (one
    control point outside each side). A first-difference penalty on the coefficients keeps
    the field smooth where there are no points.
    """
    extent = grid.extent_xy
    origin = np.array(grid.origin_yx[::-1]) - 0.5 * np.array(grid.spacing_yx[::-1])
    mesh = np.maximum(1, np.round(extent / spacing_um)).astype(int)
    spacing = extent / mesh
    size = mesh + 3  # (nx, ny) coefficients
    coef_origin = origin - spacing
    u = (points_xy - coef_origin) / spacing
    base = np.floor(u).astype(int) - 1
    frac = u - np.floor(u)
    wx, wy = _cubic_weights(frac[:, 0]), _cubic_weights(frac[:, 1])
    n = len(points_xy)
    rows, cols, vals = [], [], []
    for a in range(4):
        for b in range(4):
            ix = np.clip(base[:, 0] + a, 0, size[0] - 1)
            iy = np.clip(base[:, 1] + b, 0, size[1] - 1)
            rows.append(np.arange(n))
            cols.append(iy * size[0] + ix)
            vals.append(wx[:, a] * wy[:, b])
    w = np.ones(n) if weights is None else np.asarray(weights, float)
    design = sparse.csr_matrix(
        (np.concatenate(vals) * np.tile(w, 16), (np.concatenate(rows), np.concatenate(cols))), shape=(n, size[0] * size[1])
    )
    penalty = _difference_operator(size) * (smoothness * np.sqrt(max(n, 1) / (size[0] * size[1])))
    system = sparse.vstack([design, penalty]).tocsr()
    coefs = np.zeros((2, size[1], size[0]))
    for k in range(2):
        rhs = np.concatenate([displacements_xy[:, k] * w, np.zeros(penalty.shape[0])])
        coefs[k] = lsqr(system, rhs, atol=1e-10, btol=1e-10, iter_lim=5000)[0].reshape(size[1], size[0])
    return BSplineStep(coefs, coef_origin, spacing)


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    return np.stack(
        [(1 - t) ** 3 / 6, (3 * t**3 - 6 * t**2 + 4) / 6, (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6, t**3 / 6], axis=1
    )


def _difference_operator(size: np.ndarray) -> sparse.csr_matrix:
    nx, ny = int(size[0]), int(size[1])
    dx = sparse.diags_array([-np.ones(nx - 1), np.ones(nx - 1)], offsets=[0, 1], shape=(nx - 1, nx))
    dy = sparse.diags_array([-np.ones(ny - 1), np.ones(ny - 1)], offsets=[0, 1], shape=(ny - 1, ny))
    return sparse.vstack([sparse.kron(sparse.eye_array(ny), dx), sparse.kron(dy, sparse.eye_array(nx))]).tocsr()
