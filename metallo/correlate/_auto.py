"""Automatic control points: structure images, dense block matching, robust filtering, TPS.

EBSD maps and electron/light micrographs share structures (the section outline, pores,
scratches, grain and phase boundaries), not grey values. Both images are turned into a
modality-independent *structure image* (the gradient magnitude of the smoothed, robustly
normalised image, compressed so weak grain contrast counts next to the outline); blocks of
the fixed structure image are matched by normalised cross-correlation in the moving one,
warped onto the fixed grid by the current estimate. Each match gets a score (peak height and
how clearly it beats the next-best peak); matches that agree neither with a robust (RANSAC)
global model (an affine, or a second-order polynomial where that extends the affine's consensus)
nor with their neighbours are dropped, and a thin-plate spline is fitted through the
rest with the smoothing that minimises the leave-one-out error. Two passes (wide then narrow
search) refine the estimate. The leave-one-out errors are the independent evidence for the
quality gate, the residual map and the failure verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from metallo.correlate._transform import AffineStep, Grid, Registration, sample_linear
from metallo.errors import RegistrationError

__all__ = ["ControlPoints", "auto_points", "structure_image"]

#: First search radius as a fraction of the shorter working side, and its shrink per pass.
_SEARCH_FRACTION = 0.07
_SEARCH_SHRINK = 3.0

#: Most automatic points the spline is fitted through.
_MAX_POINTS = 300

#: Gaussian scale of the structure images, in working pixels.
_SIGMA_PX = 1.5

#: Largest working image side: bigger fixed images are matched at a coarser working grid.
_WORK_MAX_PX = 1024

#: The first pass's global model may be second order only where the affine consensus holds at
#: least this many matches (about five per extra parameter) and the second-order consensus keeps
#: all but this share of them.
_QUADRATIC_MIN_INLIERS = 30
_QUADRATIC_MAX_LOST = 0.05


def structure_image(values: np.ndarray, valid: np.ndarray, *, sigma_px: float = 1.5) -> np.ndarray:
    """Modality-independent structure: compressed gradient magnitude, zero outside ``valid``.

    Parameters
    ----------
    values : ndarray
        Image, roughly in [0, 1].
    valid : ndarray of bool
        Measured pixels (edges of the unmeasured region are not structure).
    sigma_px : float
        Gaussian scale of the gradient, in pixels.

    Returns
    -------
    ndarray
        Non-negative float image; each pixel's gradient divided by the local (8 sigma) mean
        gradient, square-rooted.

    Examples
    --------
    >>> img = np.zeros((32, 32)); img[:, 16:] = 1.0
    >>> s = structure_image(img, np.ones_like(img, bool))
    >>> bool(s[16, 15] > s[16, 4])
    True
    """
    g = ndi.gaussian_gradient_magnitude(values.astype(np.float64), sigma_px)
    inner = ndi.binary_erosion(valid, iterations=max(1, int(np.ceil(2 * sigma_px)))) if not valid.all() else valid
    g[~inner] = 0.0
    # Gradients that pixel noise or grey-level quantisation alone produce are not structure: the
    # floor is at least 2.5x the gradient noise of white noise of that level (per component
    # sigma_n / (2 sqrt(2 pi) sigma^2)), so an 8-bit copy of an image and its float original give
    # the same structure image instead of amplified quantisation contours in flat regions.
    noise = pixel_noise(values, valid)
    floor = float(np.percentile(g[inner], 50)) if inner.any() else 0.0
    floor = max(floor, 2.5 * noise / (2 * np.sqrt(2 * np.pi) * sigma_px**2))
    local = ndi.gaussian_filter(g, 8 * sigma_px)
    out = np.sqrt(g / (local + floor + 1e-12))
    out[~inner] = 0.0
    return out


def pixel_noise(values: np.ndarray, valid: np.ndarray) -> float:
    """Robust pixel noise of an image, quantisation included (value units).

    ``sqrt(sigma_n^2 + q^2 / 12)``: ``sigma_n`` from the median absolute deviation of horizontal
    neighbour differences (divided by sqrt 2), ``q`` the grey-level step when the valid pixels
    take few distinct values (<= 4096, e.g. 8-bit data in any dtype), else 0.

    Parameters
    ----------
    values : ndarray
    valid : ndarray of bool

    Returns
    -------
    float

    Examples
    --------
    >>> ramp = np.tile(np.linspace(0, 1, 64), (64, 1))
    >>> round(pixel_noise(np.round(ramp * 8) / 8, np.ones((64, 64), bool)), 3)  # 1/8 steps: 0.125 / sqrt(12)
    0.036
    """
    ok = valid[:, 1:] & valid[:, :-1]
    d = (values[:, 1:] - values[:, :-1])[ok]
    if len(d) == 0:
        return 0.0
    sigma_n = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / np.sqrt(2.0)
    sample = values[valid]
    if len(sample) > 200_000:
        sample = sample[:: len(sample) // 200_000]
    levels = np.unique(sample)
    q = float(np.median(np.diff(levels))) if 2 < len(levels) <= 4096 else 0.0
    return float(np.sqrt(sigma_n**2 + q**2 / 12))


@dataclass
class ControlPoints:
    """Automatic point pairs: fixed (x, y) µm, moving (x, y) µm, match score, and the verdict.

    ``inlier`` marks the pairs the transform was fitted through; ``loo_error_px`` is the
    leave-one-out error of each inlier (NaN for rejected pairs), in fixed pixels.
    ``held_out_error_px`` is the error of each inlier predicted by the spline fitted without
    every point of its tile (two blocks a side, :func:`tile_held_out_errors`): neighbouring
    blocks overlap and share their matching errors, so the leave-one-out error understates how
    far the transform is off (the forward direction alone, at the hand-picked points of five
    real pairs: by 1.6-3.5x; the tile-held-out one by 0.8-1.5x). The residual map is made from it.
    """

    fixed_xy: np.ndarray
    moving_xy: np.ndarray
    score: np.ndarray
    inlier: np.ndarray
    loo_error_px: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    held_out_error_px: np.ndarray | None = None

    def write_bigwarp(self, path: Any, *, active: np.ndarray | None = None) -> Any:
        """Write all pairs as a BigWarp ``landmarks.csv`` (rejected pairs inactive), in µm (pixels without pixel size).

        Parameters
        ----------
        path : str or Path
        active : ndarray of bool, optional
            Rows to mark active instead of the kept pairs (e.g. none, when the registration's
            gate rejected them all).

        Returns
        -------
        Path

        Examples
        --------
        >>> reg.control_points.write_bigwarp("auto_landmarks.csv")  # doctest: +SKIP
        """
        from metallo.correlate._landmarks import write_landmarks

        return write_landmarks(self.moving_xy[:, ::-1], self.fixed_xy[:, ::-1], path, active=self.inlier if active is None else active)

    def write_table(self, path: Any) -> Any:
        """Write every pair with its evidence as CSV: positions (µm), match score, kept, held-out error (px).

        Columns ``fixed_x_um, fixed_y_um, moving_x_um, moving_y_um, score, inlier,
        loo_error_px, held_out_error_px``; the BigWarp file (:meth:`write_bigwarp`) holds no
        scores. Sort by ``loo_error_px`` to find the pairs the spline trusts least;
        ``held_out_error_px`` (the point's whole tile left out) is the expected error there.

        Parameters
        ----------
        path : str or Path

        Returns
        -------
        Path

        Examples
        --------
        >>> reg.control_points.write_table("control_points_scores.csv")  # doctest: +SKIP
        """
        from metallo._atomic import atomic_write_text

        held = self.held_out_error_px if self.held_out_error_px is not None else np.full(len(self.fixed_xy), np.nan)
        lines = ["fixed_x_um,fixed_y_um,moving_x_um,moving_y_um,score,inlier,loo_error_px,held_out_error_px\n"]
        for f, m, sc, ok, loo, ho in zip(self.fixed_xy, self.moving_xy, self.score, self.inlier, self.loo_error_px, held, strict=True):
            cells = ["" if np.isnan(v) else f"{v:.4f}" for v in (loo, ho)]
            lines.append(f"{f[0]:.6g},{f[1]:.6g},{m[0]:.6g},{m[1]:.6g},{sc:.4f},{int(ok)},{cells[0]},{cells[1]}\n")
        return atomic_write_text(path, "".join(lines))

    def as_yx(self) -> tuple[np.ndarray, np.ndarray]:
        """(moving_yx, fixed_yx) of the inliers, in µm: the form ``register(landmarks=...)`` takes."""
        return self.moving_xy[self.inlier][:, ::-1].copy(), self.fixed_xy[self.inlier][:, ::-1].copy()


@dataclass
class _Work:
    grid: Grid
    factor: int


def _work_grid(fixed: Grid, max_px: int = _WORK_MAX_PX) -> _Work:
    """``fixed`` coarsened by a whole factor to at most ``max_px`` a side (pixel centres kept)."""
    factor = max(1, int(np.ceil(max(fixed.shape) / max_px)))
    if factor == 1:
        return _Work(fixed, 1)
    shape = (fixed.shape[0] // factor, fixed.shape[1] // factor)
    spacing = (fixed.spacing_yx[0] * factor, fixed.spacing_yx[1] * factor)
    origin = (
        fixed.origin_yx[0] + 0.5 * (factor - 1) * fixed.spacing_yx[0],
        fixed.origin_yx[1] + 0.5 * (factor - 1) * fixed.spacing_yx[1],
    )
    return _Work(Grid(shape, spacing, origin, fixed.pixel_size_known), factor)


def _sample(
    values: np.ndarray, valid: np.ndarray, source: Grid, target: Grid, steps: list[Any], *, min_valid: float = 0.99
) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (on ``source``) seen through ``steps`` (target -> source) on ``target``, and
    where the interpolated ``valid`` mask exceeds ``min_valid``."""
    reg = Registration(steps, fixed_grid=target, moving_grid=source)
    idx = source.to_index_xy(reg.fixed_to_moving_xy(target.points_xy()))
    # The values at exact positions: the block matches (and Slice8_TFS's result, 6.8 vs 10.4 px
    # median) move with OpenCV's 1/32-pixel rounding; the mask is only thresholded.
    out = ndi.map_coordinates(values, [idx[:, 1], idx[:, 0]], order=1, mode="nearest").reshape(target.shape)
    ok = sample_linear(valid, idx[:, 1], idx[:, 0], outside=0.0) > min_valid
    return out, ok.reshape(target.shape)


def _match(
    fixed_s: np.ndarray,
    moving_s: np.ndarray,
    fixed_ok: np.ndarray,
    moving_ok: np.ndarray,
    *,
    block: int,
    search: int,
    stride: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """NCC block matches: centres (row, col), shifts, peak NCC, distinctiveness (peak - 2nd peak).

    ``moving_s``/``moving_ok`` are padded by ``search`` pixels on every side of the fixed grid,
    so blocks up to the border of the fixed field are matched.
    """
    import cv2

    half = block // 2
    h, w = fixed_s.shape
    rows = np.arange(half, h - half + 1, stride)
    cols = np.arange(half, w - half + 1, stride)
    f32, m32 = fixed_s.astype(np.float32), moving_s.astype(np.float32)
    # Block texture: its standard deviation against the field's typical one.
    ref = float(np.percentile(fixed_s[fixed_ok], 90)) if fixed_ok.any() else 0.0
    centres, shifts, peaks, gaps = [], [], [], []
    excl = max(2, block // 6)
    # Window means (masks) and standard deviations at every block from summed-area tables: the
    # per-block numpy reductions cost more than the correlations once the search is short.
    side, reach = 2 * half, 2 * half + 2 * search
    f_ok = _window_mean(fixed_ok, rows - half, cols - half, side, side)
    m_ok = _window_mean(moving_ok, rows - half, cols - half, reach, reach)
    f_std = _window_std(fixed_s, rows - half, cols - half, side)
    m_std = _window_std(moving_s, rows - half, cols - half, reach)
    for a, r in enumerate(rows):
        for b, c in enumerate(cols):
            if not f_ok[a, b] > 0.9 or m_ok[a, b] < 0.6 or f_std[a, b] < 0.1 * ref or m_std[a, b] < 1e-6:
                continue
            win = (slice(r - half, r + half + 2 * search), slice(c - half, c + half + 2 * search))
            tpl = f32[r - half : r + half, c - half : c + half]
            region = m32[win]
            res = _ncc_map(region, tpl)
            _, peak, _, (j, i) = cv2.minMaxLoc(res)
            dy = _parabola(res[i - 1, j], res[i, j], res[i + 1, j]) if 0 < i < res.shape[0] - 1 else 0.0
            dx = _parabola(res[i, j - 1], res[i, j], res[i, j + 1]) if 0 < j < res.shape[1] - 1 else 0.0
            # The second peak: the best score outside the first one's neighbourhood.
            res[max(0, i - excl) : i + excl + 1, max(0, j - excl) : j + excl + 1] = -1.0
            second = float(cv2.minMaxLoc(res)[1]) if res.size > (2 * excl + 1) ** 2 else -1.0
            centres.append((r, c))
            shifts.append((i + dy - search, j + dx - search))
            peaks.append(peak)
            gaps.append(peak - second)
    if not centres:
        z = np.zeros((0, 2))
        return z, z, np.zeros(0), np.zeros(0)
    return np.array(centres, float), np.array(shifts, float), np.array(peaks), np.array(gaps)


#: Decoys of the first pass: the moving structure flipped left-right, upside down and both - where
#: no fixed block truly matches, so their matches show what chance gives the same blocks.
_DECOY_FLIPS = (
    (slice(None), slice(None, None, -1)),
    (slice(None, None, -1), slice(None)),
    (slice(None, None, -1), slice(None, None, -1)),
)


def _distinct_over_chance(
    fixed_s: np.ndarray, moving_s: np.ndarray, fixed_ok: np.ndarray, moving_ok: np.ndarray, peak: np.ndarray, gap: np.ndarray,
    *, block: int, search: int, stride: int,
) -> float:
    """How much more often the block matches are distinctive than chance matches are (1: chance).

    The same blocks are searched in decoys of the moving structure image (:data:`_DECOY_FLIPS`).
    A match's distinctiveness is its peak-to-second-peak gap (0 below a peak NCC of 0.3). The
    result is the share of the true matches above the decoys' 95th percentile, over the 5 %
    that chance puts there. Measured over the 12 variants (direction x size x dtype) of five real
    pairs: Slice381 1.40-3.03, Slice420 2.00-4.47, NiAlMo 1.71-2.14; coni16_459, whose BSE does
    not show the EBSD structure, 0.86-1.68; Slice8_TFS, whose BSE shows no grain contrast,
    0.58-1.05 (0.47-1.14 in either direction). Per direction it does not separate the pairs with
    a margin; the better of the two directions does (coni16_459 >= 1.36), and the gate keeps no
    spline below :data:`metallo.correlate._register._GATE_MIN_DISTINCT` (1.25).
    """
    true = np.where(peak >= 0.3, gap, 0.0)
    decoys = []
    for flip in _DECOY_FLIPS:
        _, _, p2, g2 = _match(fixed_s, moving_s[flip], fixed_ok, moving_ok[flip], block=block, search=search, stride=stride)
        decoys.append(np.where(p2 >= 0.3, g2, 0.0))
    chance = np.concatenate(decoys)
    if len(true) == 0 or len(chance) < 20:
        return float("nan")
    return float(np.mean(true > np.quantile(chance, 0.95)) / 0.05)


def _window_sums(image: np.ndarray, top: np.ndarray, left: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sums of ``image[t : t + height, l : l + width]`` for every (t, l) in ``top`` x ``left`` (summed-area table)."""
    sat = np.zeros((image.shape[0] + 1, image.shape[1] + 1))
    sat[1:, 1:] = np.cumsum(np.cumsum(image, axis=0, dtype=np.float64), axis=1)
    t, b = top[:, None], np.minimum(top + height, image.shape[0])[:, None]
    left_, right = left[None, :], np.minimum(left + width, image.shape[1])[None, :]
    return sat[b, right] - sat[t, right] - sat[b, left_] + sat[t, left_]


def _window_mean(mask: np.ndarray, top: np.ndarray, left: np.ndarray, height: int, width: int) -> np.ndarray:
    return _window_sums(mask.astype(np.float64), top, left, height, width) / (height * width)


def _window_std(image: np.ndarray, top: np.ndarray, left: np.ndarray, side: int) -> np.ndarray:
    """Standard deviation of each ``side`` x ``side`` window (windows lie inside ``image``)."""
    x = image.astype(np.float64)
    shift = float(x.mean())  # centred sums lose fewer digits
    x = x - shift
    n = side * side
    mean = _window_sums(x, top, left, side, side) / n
    var = _window_sums(x * x, top, left, side, side) / n - mean**2
    return np.sqrt(np.maximum(var, 0.0))


def _ncc_map(region: np.ndarray, tpl: np.ndarray) -> np.ndarray:
    """``cv2.matchTemplate(region, tpl, TM_CCOEFF_NORMED)``, computed where OpenCV is fast.

    OpenCV correlates 5-15x slower when the result is smaller than the template (a later
    pass's short search: 1.3 ms for a 48-px block over 23 x 23 shifts, 0.09 ms over 69 x 69).
    The region is padded on its far sides until the result is larger than the template, and
    the result cropped back: each kept value only sees pixels of the original region.
    """
    import cv2

    rows, cols = region.shape[0] - tpl.shape[0] + 1, region.shape[1] - tpl.shape[1] + 1
    grow_r, grow_c = max(0, tpl.shape[0] + 8 - rows), max(0, tpl.shape[1] + 8 - cols)
    if grow_r or grow_c:
        region = cv2.copyMakeBorder(region, 0, grow_r, 0, grow_c, cv2.BORDER_REPLICATE)
    return cv2.matchTemplate(region, tpl, cv2.TM_CCOEFF_NORMED)[:rows, :cols]


def _parabola(a: float, b: float, c: float) -> float:
    denom = a - 2 * b + c
    return float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5)) if denom < 0 else 0.0


def _ransac_affine(src: np.ndarray, dst: np.ndarray, threshold: float) -> tuple[AffineStep | None, np.ndarray]:
    import cv2

    if len(src) < 4:
        return None, np.zeros(len(src), bool)
    matrix, inl = cv2.estimateAffine2D(
        src.astype(np.float32), dst.astype(np.float32), method=cv2.RANSAC,
        ransacReprojThreshold=float(threshold), maxIters=4000, confidence=0.999, refineIters=0,
    )
    if matrix is None:
        return None, np.zeros(len(src), bool)
    inl = inl.ravel().astype(bool)
    return _lstsq_affine(src[inl], dst[inl]), inl


def _quadratic_terms(xy: np.ndarray) -> np.ndarray:
    x, y = xy[:, 0], xy[:, 1]
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


def _ransac_quadratic(src: np.ndarray, dst: np.ndarray, threshold: float, *, iterations: int = 3000) -> np.ndarray:
    """Inliers of a second-order polynomial map ``src -> dst`` (RANSAC, 6-point samples, seeded).

    An EBSD map's distortion against a micrograph is smooth but not affine: drift along the slow
    scan axis, a tilt-correction error, a section edge stretched in the last rows. A global
    quadratic follows such a trend across the whole field, where the affine rejects the matches
    in the stretched part as outliers. Returns the inlier mask after least-squares refits (until
    the set settles, at most 20).
    """
    n = len(src)
    if n < 12:
        return np.zeros(n, bool)
    centre, spread = src.mean(axis=0), float(src.std()) + 1e-12
    design = _quadratic_terms((src - centre) / spread)
    rng = np.random.default_rng(0)
    # Six distinct matches per sample: the six smallest of a row of uniform numbers (in their
    # order), found in linear time per row.
    keys = rng.random((iterations, n))
    samples = np.argpartition(keys, 6, axis=1)[:, :6]
    samples = np.take_along_axis(samples, np.argsort(np.take_along_axis(keys, samples, axis=1), axis=1), axis=1)
    a = design[samples]  # (iterations, 6, 6)
    b = dst[samples]  # (iterations, 6, 2)
    # A tiny ridge keeps near-degenerate samples (nearly collinear points) solvable; they then
    # simply gather few inliers.
    ata = np.einsum("kij,kil->kjl", a, a) + 1e-9 * np.eye(6)
    coef = np.linalg.solve(ata, np.einsum("kij,kil->kjl", a, b))
    # Every sample's residuals, one matrix product per coordinate and in place: (n, samples).
    resid = design @ coef[:, :, 0].T
    dy = design @ coef[:, :, 1].T
    resid -= dst[:, :1]
    dy -= dst[:, 1:]
    np.square(resid, out=resid)
    np.square(dy, out=dy)
    resid += dy
    np.sqrt(resid, out=resid)
    resid = resid.T  # (samples, n)
    counts = (resid < threshold).sum(axis=1)
    inl = resid[int(np.argmax(counts))] < threshold
    # Least-squares refits until the set settles: the consensus then no longer depends on which
    # minimal sample happened to score best.
    for _ in range(20):
        if inl.sum() < 6:
            break
        sol, *_ = np.linalg.lstsq(design[inl], dst[inl], rcond=None)
        new = np.linalg.norm(design @ sol - dst, axis=1) < threshold
        if np.array_equal(new, inl):
            break
        inl = new
    return inl


def _global_inliers(src: np.ndarray, dst: np.ndarray, threshold: float) -> tuple[np.ndarray, str]:
    """Matches that agree with one global model: the affine's consensus, or a second-order one.

    The second-order consensus replaces the affine's only where it *extends* it: at least
    ``_QUADRATIC_MIN_INLIERS`` affine inliers and all but ``_QUADRATIC_MAX_LOST`` of them kept. On
    a pair with weak evidence the two models pick different consensus sets (measured on the
    Slice8_TFS pair: 15-48 % of the affine inliers lost); a quadratic that explains a different
    set of matches is fitting the wrong ones and is not used.
    """
    _, affine_inl = _ransac_affine(src, dst, threshold)
    n_affine = int(affine_inl.sum())
    if n_affine < _QUADRATIC_MIN_INLIERS:
        return affine_inl, "affine"
    quad_inl = _ransac_quadratic(src, dst, threshold)
    lost = int((affine_inl & ~quad_inl).sum())
    if lost <= _QUADRATIC_MAX_LOST * n_affine:
        return quad_inl, "quadratic"
    return affine_inl, "affine"


def _lstsq_affine(src: np.ndarray, dst: np.ndarray) -> AffineStep:
    design = np.hstack([src, np.ones((len(src), 1))])
    sol, *_ = np.linalg.lstsq(design, dst, rcond=None)
    return AffineStep(sol[:2].T.copy(), sol[2].copy())


def _local_consistency(points: np.ndarray, residual: np.ndarray, tol: float, k: int = 8) -> np.ndarray:
    """Keep points whose residual displacement agrees with the median of their k neighbours."""
    n = len(points)
    if n <= 3:
        return np.ones(n, bool)
    kk = min(k + 1, n)
    _, nb = cKDTree(points).query(points, k=kk)
    med = np.median(residual[nb[:, 1:]], axis=1)
    dev = np.linalg.norm(residual - med, axis=1)
    mad = 1.4826 * np.median(dev)
    return dev <= max(tol, 3 * mad)


def _knn_mean(points: np.ndarray, values: np.ndarray, k: int = 8) -> np.ndarray:
    kk = min(k, len(points))
    _, nb = cKDTree(points).query(points, k=kk)
    nb = nb.reshape(len(points), -1)
    return values[nb].mean(axis=1)


def residual_map(points_xy: np.ndarray, errors: np.ndarray, grid: Grid, *, cells: int = 24) -> tuple[np.ndarray, Grid]:
    """Expected error per region: leave-one-out errors averaged (Gaussian kernel) on a coarse grid.

    Parameters
    ----------
    points_xy : ndarray, shape (n, 2)
        Control points in fixed (x, y) µm.
    errors : ndarray, shape (n,)
        Their leave-one-out errors (fixed pixels).
    grid : Grid
        The fixed grid.
    cells : int
        Cells along the longer side.

    Returns
    -------
    (ndarray, Grid)
        The map (NaN farther than 1.5 cells from every point: no evidence, the spline
        extrapolates there) and its grid.

    Examples
    --------
    >>> m, g = residual_map(np.array([[5.0, 5.0], [20.0, 20.0]]), np.array([1.0, 3.0]), Grid((32, 32), (1.0, 1.0)))
    >>> m.shape == g.shape
    True
    """
    step = max(grid.shape) / cells
    shape = (max(1, int(np.ceil(grid.shape[0] / step))), max(1, int(np.ceil(grid.shape[1] / step))))
    coarse = Grid(
        shape,
        (grid.spacing_yx[0] * step, grid.spacing_yx[1] * step),
        (grid.origin_yx[0] + (step - 1) / 2 * grid.spacing_yx[0], grid.origin_yx[1] + (step - 1) / 2 * grid.spacing_yx[1]),
        grid.pixel_size_known,
    )
    q = coarse.points_xy()
    if len(points_xy) == 0:
        return np.full(shape, np.nan), coarse
    bandwidth = 1.5 * step * grid.spacing_yx[1]
    d2 = ((q[:, None, :] - points_xy[None, :, :]) ** 2).sum(axis=2)
    w = np.exp(-0.5 * d2 / bandwidth**2)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = (w @ errors) / total
    # No evidence farther than the kernel width from every point: the spline extrapolates there.
    m[np.sqrt(d2.min(axis=1)) > bandwidth] = np.nan
    return m.reshape(shape), coarse


class _SplineFit:
    """A regularised TPS through the kept automatic points and the given landmarks, relative to ``affine``.

    ``affine`` is the least-squares affine through all that evidence. Anchors (pseudo-points where
    there is no evidence) hold the spline where it would otherwise extrapolate freely:

    - outside the convex hull of the evidence (with ``extrapolate``) they take no displacement, so
      the spline continues as the affine through all the points. The start is the worse guess
      there when the points are sound: it is what they corrected everywhere they exist
      (Slice381's left edge: 9-14 px off under the start, 1-2 px under the points' affine).
      Without ``extrapolate`` (the matches were mostly chance) they take the start's displacement.
    - inside the hull (a hole among the points) they take the ``start``'s displacement, and so do
      pinned points and nodes pinned to the start (tiles where the spline was judged worse).

    Anchors and pinned nodes do not choose the smoothing and have no leave-one-out error of their own.
    """

    def __init__(
        self, p_xy: np.ndarray, q_xy: np.ndarray, keep: np.ndarray, landmarks: tuple[np.ndarray, np.ndarray],
        affine: AffineStep, start: AffineStep, px: float, *, extrapolate: bool = True,
    ) -> None:
        self.p_xy, self.q_xy, self.keep, self.px = p_xy, q_xy, keep, px
        self.lm_m, self.lm_f = landmarks
        self.affine, self.start = affine, start
        self.extrapolate = extrapolate

    def start_disp(self, pts: np.ndarray) -> np.ndarray:
        """Displacement (relative to ``affine``) that reproduces the start at ``pts``."""
        return self.affine.apply_inverse(self.start.apply(pts)) - pts

    def displacements(self) -> tuple[np.ndarray, np.ndarray]:
        p = self.p_xy[self.keep]
        return p, self.affine.apply_inverse(self.q_xy[self.keep]) - p

    def worse_than_start(self, loo_px: np.ndarray) -> np.ndarray:
        """Kept points whose neighbourhood's held-out error exceeds the start's error there."""
        p, d = self.displacements()
        start_px = np.linalg.norm(d - self.start_disp(p), axis=1) / self.px
        return _knn_mean(p, loo_px[: len(p)]) > _knn_mean(p, start_px)

    def fit(
        self, anchors_xy: np.ndarray, pin: np.ndarray | None = None, pinned_xy: np.ndarray | None = None,
    ) -> tuple[Any, np.ndarray]:
        """The fit and the leave-one-out error (px) of each kept point, then each landmark.

        ``anchors_xy``: nodes without evidence nearby; ``pin``: kept points held to the start;
        ``pinned_xy``: nodes held to the start.
        """
        from metallo.correlate._tps import fit_tps_cv

        p, d = self.displacements()
        if pin is not None:
            d = d.copy()
            d[pin] = self.start_disp(p[pin])
        n, n_lm = len(p), len(self.lm_f)
        evidence = np.vstack([p, self.lm_f])
        anchors_xy = self._apart(anchors_xy, evidence)
        adisp = np.zeros_like(anchors_xy)
        hole = _inside_hull(evidence, anchors_xy) if self.extrapolate else np.ones(len(anchors_xy), bool)
        adisp[hole] = self.start_disp(anchors_xy[hole])
        if pinned_xy is not None and len(pinned_xy):
            pinned_xy = self._apart(pinned_xy, evidence)
            if len(anchors_xy) and len(pinned_xy):  # a node both anchored and pinned is pinned
                gap, _ = cKDTree(pinned_xy).query(anchors_xy)
                anchors_xy, adisp = anchors_xy[gap > 1e-6], adisp[gap > 1e-6]
            anchors_xy = np.vstack([anchors_xy, pinned_xy])
            adisp = np.vstack([adisp, self.start_disp(pinned_xy)])
        pts = np.vstack([p, self.lm_f, anchors_xy])
        disp = np.vstack([d, self.affine.apply_inverse(self.lm_m) - self.lm_f, adisp])
        exact = np.r_[np.zeros(n, bool), np.ones(n_lm, bool), np.zeros(len(anchors_xy), bool)]
        scored = np.r_[np.ones(n, bool) if pin is None else ~pin, np.zeros(n_lm + len(anchors_xy), bool)]
        fit = fit_tps_cv(pts, disp, fixed_points=exact, scored=scored)
        self._system = (pts, disp, exact, n)
        return fit, fit.loo_error[: n + n_lm] / self.px

    def held_out(self, fit: Any, tile_um: float) -> np.ndarray:
        """Tile-held-out error (px) of each kept point of the last :meth:`fit` (see :func:`tile_held_out_errors`)."""
        pts, disp, exact, n = self._system
        return tile_held_out_errors(pts, disp, n, tile_um, smoothing=np.where(exact, 0.0, fit.smoothing), scale=fit.step.scale) / self.px

    def _apart(self, nodes_xy: np.ndarray, evidence: np.ndarray) -> np.ndarray:
        """``nodes_xy`` without repeats and without nodes on a point (a repeated point makes the system singular)."""
        nodes_xy = np.unique(np.round(nodes_xy, 9), axis=0)
        if len(nodes_xy) and len(evidence):
            dist, _ = cKDTree(evidence).query(nodes_xy)
            nodes_xy = nodes_xy[dist > 0.5 * self.px]
        return nodes_xy


#: Spatial folds of :func:`tile_held_out_errors`: tile (i, j) is in fold (i + 3 j) mod 5, so that
#: none of a tile's eight neighbours is left out with it.
_HELD_OUT_FOLDS = 5


def tile_held_out_errors(
    points_xy: np.ndarray, displacements_xy: np.ndarray, n: int, tile_um: float, *, smoothing: np.ndarray, scale: float,
) -> np.ndarray:
    """Error of each of the first ``n`` points predicted by the spline fitted without its whole tile.

    Block matches of overlapping blocks share pixels and so share their errors: left out one at a
    time, a point is predicted by its neighbours' equally wrong matches, and its leave-one-out
    error says the transform is good where it is not. Leaving out every point of a tile
    (``tile_um`` a side; five spatial folds, no two neighbouring tiles in one fold) predicts
    each point only from evidence that does not share its pixels. The points after the first
    ``n`` (given landmarks, anchors, pinned nodes) are never left out.

    Parameters
    ----------
    points_xy, displacements_xy : ndarray, shape (m, 2)
        The spline's points and their displacements (µm), the ``n`` scored ones first.
    n : int
    tile_um : float
    smoothing : ndarray, shape (m,)
        Per-point smoothing of the fitted spline (0 for exact points).
    scale : float
        The fitted spline's coordinate scale (smoothing is relative to it).

    Returns
    -------
    ndarray, shape (n,)
        Errors in µm; NaN where a fold left fewer than 4 points to fit.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(0, 100, (200, 2))
    >>> d = np.where((p[:, :1] < 25) & (p[:, 1:] < 25), 3.0, 0.0) * np.array([1.0, 0.0])  # one tile off by 3 µm
    >>> err = tile_held_out_errors(p, d, 200, 25.0, smoothing=np.full(200, 1e-3), scale=100.0)
    >>> bool(np.median(err[(p[:, 0] < 25) & (p[:, 1] < 25)]) > 2.0)
    True
    """
    from metallo.correlate._tps import fit_tps

    p, d = np.asarray(points_xy, float), np.asarray(displacements_xy, float)
    out = np.full(n, np.nan)
    if n == 0:
        return out
    ij = np.floor((p[:n] - p[:n].min(axis=0)) / tile_um).astype(int)
    fold = (ij[:, 0] + 3 * ij[:, 1]) % _HELD_OUT_FOLDS
    for g in range(_HELD_OUT_FOLDS):
        test = np.zeros(len(p), bool)
        test[:n] = fold == g
        if not test.any() or (~test).sum() < 4:
            continue
        try:
            sub = fit_tps(p[~test], d[~test], smoothing=smoothing[~test], scale=scale)
        except RegistrationError:  # what is left lies on a line
            continue
        out[test[:n]] = np.linalg.norm(sub.step.displacement(p[test]) - d[test], axis=1)
    return out


def _inside_hull(points: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Which ``query`` points lie inside the convex hull of ``points`` (none when the hull is degenerate)."""
    from scipy.spatial import Delaunay, QhullError

    if len(query) == 0 or len(points) < 3:
        return np.zeros(len(query), bool)
    try:
        return np.asarray(Delaunay(points).find_simplex(query) >= 0)
    except QhullError:  # all points on a line
        return np.zeros(len(query), bool)


def _lattice(grid: Grid, spacing: float) -> np.ndarray:
    """(x, y) nodes every ``spacing`` µm over the grid's field, its borders included."""
    lo = np.array(grid.origin_yx[::-1])
    hi = lo + (np.array(grid.shape[::-1]) - 1) * np.array(grid.spacing_yx[::-1])
    axes = [np.linspace(lo[i], hi[i], max(2, int(np.ceil((hi[i] - lo[i]) / spacing)) + 1)) for i in (0, 1)]
    gx, gy = np.meshgrid(*axes)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


#: Anchors sit where the nearest point (automatic or given) is farther than this many lattice spacings.
_ANCHOR_GAP = 2.5

#: The spline continues the points' affine past their hull only when at least this share of the
#: distinct first-pass matches agreed with one global model (RANSAC). Measured shares: 0.73 on
#: Slice381 and 0.84 on Slice420, where the points' affine is 1-2 px from the hand points at the
#: section's left edge and the start 9-14 px; 0.27 on Slice8_TFS, whose interior matches are
#: mostly chance and whose results got worse past the points (mean median 5.8 -> 6.8 px over
#: its 12 variants). Below it, anchors stay on the start.
_EXTRAPOLATE_MIN_SHARE = 0.5


def _anchors(grid: Grid, p_xy: np.ndarray, lm_xy: np.ndarray, *, spacing: float) -> np.ndarray:
    """Lattice nodes farther than ``_ANCHOR_GAP`` x ``spacing`` from every point: where the spline has no evidence."""
    nodes = _lattice(grid, spacing)
    evidence = np.vstack([p_xy, lm_xy])
    if len(evidence) == 0:
        return nodes
    dist, _ = cKDTree(evidence).query(nodes)
    return nodes[dist > _ANCHOR_GAP * spacing]


def _tile_index(grid: Grid, xy: np.ndarray, tile: int) -> np.ndarray:
    idx = grid.to_index_xy(xy)
    return np.floor(idx[:, ::-1] / tile).astype(int)  # (tile row, tile col)


def _in_tiles(p_xy: np.ndarray, grid: Grid, tiles: list[tuple[int, int]], tile: int) -> np.ndarray:
    t = _tile_index(grid, p_xy, tile)
    bad = set(tiles)
    return np.array([(int(a), int(b)) in bad for a, b in t], bool)


def _tile_nodes(grid: Grid, tiles: list[tuple[int, int]], tile: int) -> np.ndarray:
    """Centre and corners of each tile, (x, y) µm, clipped to the field."""
    out = []
    for r, c in tiles:
        for fr, fc in ((0.5, 0.5), (0, 0), (0, 1), (1, 0), (1, 1)):
            row = min((r + fr) * tile, grid.shape[0] - 1)
            col = min((c + fc) * tile, grid.shape[1] - 1)
            out.append((grid.origin_yx[1] + col * grid.spacing_yx[1], grid.origin_yx[0] + row * grid.spacing_yx[0]))
    return np.unique(np.array(out, float).reshape(-1, 2), axis=0)


#: A tile is judged worse under the spline when its structure NCC falls by more than this.
_TILE_NCC_DROP = 0.05


def _worse_tiles(
    fs: np.ndarray, fok: np.ndarray, mstruct: np.ndarray, mvalid: np.ndarray, mgrid: Grid, wg: Grid,
    steps: list[Any], start: list[Any], *, tile: int,
) -> list[tuple[int, int]]:
    """Tiles (row, col) where the blurred structure images agree clearly less under ``steps`` than under ``start``."""
    a = ndi.gaussian_filter(fs, 1.0)
    ms1, ok1 = _sample(mstruct, mvalid, mgrid, wg, steps)
    ms0, ok0 = _sample(mstruct, mvalid, mgrid, wg, start)
    b1, b0 = ndi.gaussian_filter(ms1, 1.0), ndi.gaussian_filter(ms0, 1.0)
    bad = []
    for r in range(0, wg.shape[0], tile):
        for c in range(0, wg.shape[1], tile):
            win = (slice(r, r + tile), slice(c, c + tile))
            ok = fok[win] & ok1[win] & ok0[win]
            if ok.sum() < 0.5 * tile * tile:
                continue
            if _ncc(a[win][ok], b1[win][ok]) < _ncc(a[win][ok], b0[win][ok]) - _TILE_NCC_DROP:
                bad.append((r // tile, c // tile))
    return bad


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / den if den > 0 else 0.0


def auto_points(
    fixed_values: np.ndarray,
    fixed_valid: np.ndarray,
    fixed_grid: Grid,
    moving_values: np.ndarray,
    moving_valid: np.ndarray,
    moving_grid: Grid,
    affine: AffineStep,
    *,
    block_px: int | None = None,
    landmarks: tuple[np.ndarray, np.ndarray] | None = None,
    passes: int = 2,
    extra_pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[list[Any], ControlPoints]:
    """Automatic control points and a regularised TPS on top of an affine start.

    Parameters
    ----------
    fixed_values, fixed_valid, fixed_grid : the fixed image (normalised values), its mask and grid.
    moving_values, moving_valid, moving_grid : the same for the moving image.
    affine : AffineStep
        Start (fixed µm -> moving µm).
    block_px : int, optional
        Block side in working pixels (default: 1/10 of the shorter working side, 24-64).
    landmarks : (moving_xy, fixed_xy), optional
        User points that the spline passes through exactly (never overridden).
    passes : int
        Matching passes (the search radius shrinks each pass).
    extra_pairs : (fixed_xy, moving_xy, score), optional
        Point pairs found by matching the other way round (``auto_points`` with the roles
        swapped); they join the last pass's fit.
    Returns
    -------
    (steps, ControlPoints)
        ``steps`` = ``[TPSStep, AffineStep]`` (fixed -> moving), or ``[AffineStep]`` when too
        few points were found (``ControlPoints.info["reason"]`` says why).

    Examples
    --------
    >>> steps, cp = auto_points(f, fv, fg, m, mv, mg, start)  # doctest: +SKIP
    """
    work = _work_grid(fixed_grid)
    wg = work.grid
    px = float(wg.spacing_yx[1])
    sigma = _SIGMA_PX
    # Structure at the working scale, computed on the full-resolution images (no aliasing).
    fstruct_full = structure_image(fixed_values, fixed_valid, sigma_px=sigma * px / float(fixed_grid.spacing_yx[1]))
    fs, fok = _sample(fstruct_full, fixed_valid, fixed_grid, wg, []) if work.factor > 1 else (fstruct_full, fixed_valid)
    # The moving structure at the same physical scale: through the start's scale where the pixel
    # sizes clearly disagree with it (unknown pixel sizes, an EBSD map at a third of the BSE's
    # resolution given as a plain array).
    start_scale = float(np.sqrt(abs(np.linalg.det(affine.matrix))))
    if not 0.8 < start_scale < 1.25:
        px_m = px * start_scale
    else:
        px_m = px
    mstruct_full = structure_image(moving_values, moving_valid, sigma_px=sigma * px_m / float(moving_grid.spacing_yx[1]))
    if block_px is None:
        block_px = int(np.clip(min(wg.shape) // 10, 24, 64)) // 2 * 2
    block = int(block_px)
    search = max(6, int(round(_SEARCH_FRACTION * min(wg.shape))))
    steps: list[Any] = [affine]
    info: dict[str, Any] = {"block_px": block, "work_pixel": px, "work_factor": work.factor}
    empty = np.zeros((0, 2))
    cp = ControlPoints(empty, empty, np.zeros(0), np.zeros(0, bool), np.zeros(0), info)
    lm_m, lm_f = landmarks if landmarks is not None else (empty, empty)
    for k in range(passes):
        padded = Grid(
            (wg.shape[0] + 2 * search, wg.shape[1] + 2 * search), wg.spacing_yx,
            (wg.origin_yx[0] - search * wg.spacing_yx[0], wg.origin_yx[1] - search * wg.spacing_yx[1]), wg.pixel_size_known,
        )
        ms, mok = _sample(mstruct_full, moving_valid, moving_grid, padded, steps)
        stride = max(4, block // 2) if k == 0 else max(4, block // 3)
        centres, shifts, peak, gap = _match(fs, ms, fok, mok, block=block, search=search, stride=stride)
        info[f"pass{k}_candidates"] = len(centres)
        if k == 0:
            info["pass0_distinct_over_chance"] = _distinct_over_chance(
                fs, ms, fok, mok, peak, gap, block=block, search=search, stride=stride,
            )
        good = (peak >= 0.3) & (gap >= 0.05)
        info[f"pass{k}_distinct"] = int(good.sum())
        centres, shifts, peak, gap = centres[good], shifts[good], peak[good], gap[good]
        if len(centres) < 8:
            info["reason"] = f"pass {k}: {len(centres)} distinct block matches (need 8)"
            break
        to_um = np.array(wg.spacing_yx) * 1.0
        p_xy = (centres * to_um + np.array(wg.origin_yx))[:, ::-1]
        cur = Registration(steps, fixed_grid=wg, moving_grid=moving_grid)
        q_xy = cur.fixed_to_moving_xy(((centres + shifts) * to_um + np.array(wg.origin_yx))[:, ::-1])
        inside = np.all(np.abs(shifts) < search - 0.5, axis=1)  # a peak on the search border is no match
        if k == 0:
            # Global outliers first: a RANSAC affine (or second-order) consensus with a
            # threshold wide enough for the non-linear part (the matches are relative to the
            # start here).
            inl, model = _global_inliers(p_xy[inside], q_xy[inside], threshold=max(3.0, search / 2) * px)
            inl_all = np.zeros(len(p_xy), bool)
            inl_all[np.flatnonzero(inside)] = inl
            inl = inl_all
            info[f"pass{k}_ransac_inliers"] = int(inl.sum())
            info[f"pass{k}_ransac_model"] = model
            info[f"pass{k}_consensus_share"] = round(float(inl.sum()) / len(p_xy), 4)
        else:
            # Later passes match against the current spline: the shifts themselves are the residual.
            inl = inside
        if inl.sum() < 8:
            info["reason"] = f"pass {k}: {int(inl.sum())} of {len(p_xy)} matches agree with a global affine (need 8)"
            break
        keep = inl.copy()
        keep[inl] = _local_consistency(p_xy[inl], shifts[inl] * px, tol=max(2.0, 0.1 * search) * px)
        info[f"pass{k}_kept"] = int(keep.sum())
        if keep.sum() < 8:
            info["reason"] = f"pass {k}: {int(keep.sum())} matches agree with their neighbours (need 8)"
            break
        if keep.sum() > _MAX_POINTS:
            # The spline costs O(n^3): keep the best-scored matches.
            order = np.argsort(-(peak * gap) * keep)
            keep = np.zeros(len(keep), bool)
            keep[order[:_MAX_POINTS]] = True
        if k == passes - 1 and extra_pairs is not None and len(extra_pairs[0]):
            # Matches found the other way round (moving blocks searched in the fixed image) join
            # the final fit: a registration and its reverse then fit the same evidence. Those that
            # disagree with their neighbours under the current estimate are dropped like the others.
            ef, em, escore = extra_pairs
            # Offsets from the current estimate in (x, y) µm for both: the shifts are (row, col).
            resid = np.vstack([shifts[:, ::-1] * px, cur.moving_to_fixed_xy(em) - ef])
            p_xy, q_xy = np.vstack([p_xy, ef]), np.vstack([q_xy, em])
            peak, gap = np.r_[peak, escore], np.r_[gap, np.full(len(ef), 0.3)]
            keep = np.r_[keep, np.ones(len(ef), bool)]
            keep[keep] = _local_consistency(p_xy[keep], resid[keep], tol=max(2.0, 0.1 * search) * px)
            info["reverse_points"] = int(keep[-len(ef) :].sum())
        new_affine = _lstsq_affine(np.vstack([p_xy[keep], lm_f]), np.vstack([q_xy[keep], lm_m]))
        # Past the points the spline continues the points' affine only when most distinct
        # first-pass matches agreed with one global model; otherwise it stays on the start.
        info["extrapolate"] = extrapolate = info["pass0_consensus_share"] >= _EXTRAPOLATE_MIN_SHARE
        spline = _SplineFit(p_xy, q_xy, keep, (lm_m, lm_f), new_affine, affine, px, extrapolate=extrapolate)
        fit, loo_px = spline.fit(_anchors(wg, p_xy[keep], lm_f, spacing=block * px))
        # Quality gate 1, held-out points: where the spline predicts left-out points worse than
        # the start does, the matches there are not trusted and the spline is pinned to the start.
        worse = spline.worse_than_start(loo_px)
        info[f"pass{k}_gated"] = int(worse.sum())
        if worse.any():
            fit, loo_px = spline.fit(_anchors(wg, p_xy[keep], lm_f, spacing=block * px), pin=worse)
        # Quality gate 2, structure agreement judged per tile: a tile whose structure images
        # agree less under the spline than under the start loses its points and is pinned to the start.
        tile = 2 * block
        bad_tiles = set(_worse_tiles(fs, fok, mstruct_full, moving_valid, moving_grid, wg, [fit.step, new_affine], [affine], tile=tile))
        info[f"pass{k}_tiles_pinned"] = len(bad_tiles)
        if bad_tiles:
            spline.keep = keep = keep & ~_in_tiles(p_xy, wg, sorted(bad_tiles), tile)
            if keep.sum() < 8:
                info["reason"] = f"pass {k}: {int(keep.sum())} matches outside tiles where the spline is worse than the start (need 8)"
                break
            fit, loo_px = spline.fit(
                _anchors(wg, p_xy[keep], lm_f, spacing=block * px), pinned_xy=_tile_nodes(wg, sorted(bad_tiles), tile),
            )
        info[f"pass{k}_smoothing"] = fit.smoothing
        steps = [fit.step, new_affine]
        all_loo = np.full(len(p_xy), np.nan)
        all_loo[keep] = loo_px[: int(keep.sum())] * work.factor  # working -> fixed pixels
        cp = ControlPoints(p_xy, q_xy, peak * np.clip(gap / 0.3, 0, 1), keep, all_loo, info)
        fitted = (spline, fit, tile * px)  # the spline of the pass whose points are returned
        search = max(4, int(search / _SEARCH_SHRINK))
    if cp.inlier.any():
        # Once, for the returned points (a later pass that breaks off returns an earlier one's).
        spline, fit, tile_um = fitted
        cp.held_out_error_px = np.full(len(cp.fixed_xy), np.nan)
        cp.held_out_error_px[cp.inlier] = spline.held_out(fit, tile_um=tile_um) * work.factor
    info["points"] = int(cp.inlier.sum())
    return steps, cp
