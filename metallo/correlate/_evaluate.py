"""Target registration error (TRE) at homologous points, and the baselines the points support.

A pair of images with hand-picked homologous points is the only ground truth a real
correlative pair has. :func:`point_baselines` says what the points themselves support (no
registration, the best affine through them in-sample, a leave-one-out thin-plate spline), and
:func:`tre` measures a :class:`~metallo.correlate.Registration` at the same points, so that a
method is judged against what careful hand-picking achieves. :func:`pair_variant` makes the
robustness variants (reverse direction, 2x down-sampling, uint8 or 0-1 float input) of a pair.
The tests and ``benchmarks/correlate.py`` share these functions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from metallo.correlate._transform import Registration
from metallo.errors import FormatError, RegistrationError

__all__ = [
    "PointPair", "affine_start", "load_point_pair", "pair_variant", "point_baselines", "residual_calibration", "tre", "tre_stats",
    "variant_tre",
]


@dataclass(frozen=True)
class PointPair:
    """Two images of the same section and ``n`` homologous points on each, in pixels (y, x)."""

    fixed: np.ndarray
    moving: np.ndarray
    fixed_yx: np.ndarray
    moving_yx: np.ndarray
    name: str = "pair"


def _grey(path: Path) -> np.ndarray:
    import warnings

    from metallo.io import read_image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "pixel size unknown": these pairs are registered in pixels
        arr = np.asarray(read_image(path).values)
    if arr.ndim == 3:
        # RGB(A) -> grey by the mean of the colour channels (alpha dropped).
        arr = arr[..., :3].astype(np.float64).mean(axis=2)
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return arr


def load_point_pair(
    fixed_image: str | Path,
    moving_image: str | Path,
    fixed_points: str | Path,
    moving_points: str | Path,
    *,
    name: str | None = None,
) -> PointPair:
    """Read a correlative pair: two images and two Fiji ``x y`` point files (line i matches line i).

    Parameters
    ----------
    fixed_image, moving_image : str or Path
        Image files (RGB/RGBA images are converted to grey).
    fixed_points, moving_points : str or Path
        Point files in pixels, ``x y`` (column, row) per line.
    name : str, optional

    Returns
    -------
    PointPair

    Examples
    --------
    >>> p = load_point_pair("bse.tif", "ebsd.tif", "pts_bse.txt", "pts_ebsd.txt")  # doctest: +SKIP
    """
    from metallo.correlate._landmarks import read_landmarks

    moving_yx, fixed_yx = read_landmarks(moving_points, fixed_points)
    fixed, moving = _grey(Path(fixed_image)), _grey(Path(moving_image))
    for pts, img, path in ((fixed_yx, fixed, fixed_points), (moving_yx, moving, moving_points)):
        if np.any(pts < -0.5) or np.any(pts > np.array(img.shape[:2]) - 0.5):
            raise FormatError(f"{path}: points lie outside the {img.shape[:2]} image; expected 'x y' in pixels")
    return PointPair(fixed, moving, fixed_yx, moving_yx, name or Path(fixed_image).stem)


def pair_variant(pair: PointPair, *, reverse: bool = False, downsample: int = 1, dtype: str = "native") -> PointPair:
    """A robustness variant of a pair.

    Parameters
    ----------
    pair : PointPair
    reverse : bool
        Swap fixed and moving (register the other way round).
    downsample : int
        Shrink both images by this integer factor (area average); points follow the pixel
        centres (``(p + 0.5) / k - 0.5``).
    dtype : {"native", "uint8", "float"}
        Re-quantise both images to 8 bits over their range, or rescale them to 0-1 floats.

    Returns
    -------
    PointPair

    Examples
    --------
    >>> small = pair_variant(pair, downsample=2, dtype="uint8")  # doctest: +SKIP
    """
    import cv2

    def convert(img: np.ndarray) -> np.ndarray:
        out: np.ndarray = img.astype(np.float64)
        if downsample > 1:
            h, w = out.shape[0] // downsample, out.shape[1] // downsample
            out = cv2.resize(out[: h * downsample, : w * downsample], (w, h), interpolation=cv2.INTER_AREA)
        if dtype == "native":
            return out.astype(img.dtype) if downsample == 1 else out.astype(np.float32)
        lo, hi = float(out.min()), float(out.max())
        unit = (out - lo) / max(hi - lo, 1e-12)
        if dtype == "uint8":
            return np.clip(np.rint(unit * 255), 0, 255).astype(np.uint8)
        if dtype == "float":
            return unit.astype(np.float32)
        raise ValueError(f"dtype must be 'native', 'uint8' or 'float'; got {dtype!r}")

    def points(p: np.ndarray) -> np.ndarray:
        return (p + 0.5) / downsample - 0.5

    fixed, moving = convert(pair.fixed), convert(pair.moving)
    f_yx, m_yx = points(pair.fixed_yx), points(pair.moving_yx)
    tag = f"{pair.name}{' reverse' if reverse else ''}{f' /{downsample}' if downsample > 1 else ''}" + (
        f" {dtype}" if dtype != "native" else ""
    )
    if reverse:
        fixed, moving, f_yx, m_yx = moving, fixed, m_yx, f_yx
    return replace(pair, fixed=fixed, moving=moving, fixed_yx=f_yx, moving_yx=m_yx, name=tag)


def tre_stats(errors: np.ndarray) -> dict[str, float]:
    """Median, 95th percentile, maximum and mean of point errors.

    Parameters
    ----------
    errors : ndarray

    Returns
    -------
    dict with ``median``, ``p95``, ``max``, ``mean``, ``n``

    Examples
    --------
    >>> tre_stats(np.array([1.0, 2.0, 3.0]))["median"]
    2.0
    """
    e = np.asarray(errors, dtype=np.float64)
    return {
        "median": float(np.median(e)),
        "p95": float(np.percentile(e, 95)),
        "max": float(e.max()),
        "mean": float(e.mean()),
        "n": int(len(e)),
    }


def tre(reg: Registration, moving_yx: np.ndarray, fixed_yx: np.ndarray, *, frame: str = "fixed") -> np.ndarray:
    """Error of ``reg`` at homologous points, in pixels of the fixed (default) or the moving image.

    ``frame="fixed"`` carries each moving point to the fixed image (``transform_points``) and
    measures in fixed pixels: the TRE of the forward problem. ``frame="moving"`` carries each
    fixed point to the moving image (``fixed_to_moving``, no numerical inverse) and measures in
    moving pixels. For a pair registered in reverse (:func:`pair_variant` with ``reverse=True``)
    the moving image is the forward problem's fixed image, so ``frame="moving"`` gives errors in
    the same frame and units as the forward TRE: the fair comparison of the two directions when
    the images have different scales (a reverse TRE in its own fixed pixels is the forward one
    times the scale between the images).

    Parameters
    ----------
    reg : Registration
    moving_yx, fixed_yx : ndarray, shape (n, 2)
        Homologous points in pixels (y, x) of the moving and the fixed image.
    frame : {"fixed", "moving"}

    Returns
    -------
    ndarray, shape (n,)

    Examples
    --------
    >>> err = tre(reg, pair.moving_yx, pair.fixed_yx)  # doctest: +SKIP
    """
    fg, mg = reg.fixed_grid, reg.moving_grid
    if frame == "fixed":
        m_um = np.asarray(moving_yx, float) * np.array(mg.spacing_yx) + np.array(mg.origin_yx)
        f_px = (reg.transform_points(m_um) - np.array(fg.origin_yx)) / np.array(fg.spacing_yx)
        return np.linalg.norm(f_px - np.asarray(fixed_yx, float), axis=1)
    if frame == "moving":
        f_um = np.asarray(fixed_yx, float) * np.array(fg.spacing_yx) + np.array(fg.origin_yx)
        m_px = (reg.fixed_to_moving(f_um) - np.array(mg.origin_yx)) / np.array(mg.spacing_yx)
        return np.linalg.norm(m_px - np.asarray(moving_yx, float), axis=1)
    raise ValueError(f"frame must be 'fixed' or 'moving'; got {frame!r}")


def residual_calibration(reg: Registration, moving_yx: np.ndarray, fixed_yx: np.ndarray) -> dict[str, float]:
    """How the registration's residual map (its expected error per region) compares with the TRE at points.

    The map is read at each fixed point (its cell); the points where it says nothing (no
    evidence near, or near a border) are left out. ``tre_over_map`` near 1 means the map's
    level is the error's; above 1 the map is optimistic.

    Parameters
    ----------
    reg : Registration
        With ``quality["residual_map_px"]`` (``method="auto"`` or ``"landmarks+tps"``).
    moving_yx, fixed_yx : ndarray, shape (n, 2)
        Homologous points in pixels.

    Returns
    -------
    dict with ``points`` (where the map says something), ``map_median_px``, ``tre_median_px``
    (at those points), ``tre_over_map`` and ``spearman`` (rank agreement of map and error)

    Examples
    --------
    >>> residual_calibration(reg, pair.moving_yx, pair.fixed_yx)["tre_over_map"]  # doctest: +SKIP
    0.92
    """
    from scipy.stats import spearmanr

    from metallo.correlate._transform import Grid

    rmap = reg.quality.get("residual_map_px")
    if rmap is None:
        raise RegistrationError(
            f"registration {reg.moving} -> {reg.fixed} has no residual map (quality['residual_map_px']); "
            "method='auto' or 'landmarks+tps' makes one"
        )
    grid = Grid.from_dict(rmap["grid"])
    values = np.asarray(rmap["values"], dtype=np.float64)
    fg = reg.fixed_grid
    fixed_xy_um = (np.asarray(fixed_yx, float) * np.array(fg.spacing_yx) + np.array(fg.origin_yx))[:, ::-1]
    col, row = np.round(grid.to_index_xy(fixed_xy_um)).astype(int).T
    at = values[np.clip(row, 0, grid.shape[0] - 1), np.clip(col, 0, grid.shape[1] - 1)]
    errors = tre(reg, moving_yx, fixed_yx)
    said = np.isfinite(at)
    if not said.any():
        return {"points": 0, "map_median_px": float("nan"), "tre_median_px": float("nan"), "tre_over_map": float("nan"), "spearman": float("nan")}
    m, e = float(np.median(at[said])), float(np.median(errors[said]))
    varied = said.sum() > 3 and np.ptp(at[said]) > 0 and np.ptp(errors[said]) > 0
    rho = float(spearmanr(at[said], errors[said]).correlation) if varied else float("nan")
    return {"points": int(said.sum()), "map_median_px": m, "tre_median_px": e, "tre_over_map": e / m if m > 0 else float("inf"), "spearman": rho}


def affine_start(reg: Registration) -> Registration:
    """The affine start that ``method="auto"`` chose (``quality["start"]``), as a registration of its own.

    Parameters
    ----------
    reg : Registration
        A result of ``register(..., method="auto")`` without landmarks.

    Returns
    -------
    Registration

    Examples
    --------
    >>> err_start = tre(affine_start(reg), pair.moving_yx, pair.fixed_yx)  # doctest: +SKIP
    """
    from metallo.correlate._transform import AffineStep

    start = reg.quality["start"]
    step = AffineStep(np.asarray(start["matrix"], float), np.asarray(start["offset"], float))
    return Registration([step], fixed_grid=reg.fixed_grid, moving_grid=reg.moving_grid)


def variant_tre(reg: Registration, pair: PointPair, *, reverse: bool) -> dict[str, dict[str, float]]:
    """TRE of an automatic registration of a :func:`pair_variant`, its affine start and no registration.

    All in the forward problem's fixed frame: a reverse variant is measured with
    ``frame="moving"`` (see :func:`tre`), so both directions are compared on the same pixels.

    Parameters
    ----------
    reg : Registration
        ``register(pair.fixed, pair.moving)`` (``method="auto"``).
    pair : PointPair
        The variant it registered.
    reverse : bool
        Whether ``pair`` is the reverse variant.

    Returns
    -------
    dict with ``result``, ``start`` and ``none`` -> :func:`tre_stats` dicts

    Examples
    --------
    >>> variant_tre(reg, pair, reverse=True)["result"]["median"]  # doctest: +SKIP
    """
    frame = "moving" if reverse else "fixed"
    none = np.linalg.norm(np.asarray(pair.moving_yx, float) - np.asarray(pair.fixed_yx, float), axis=1)
    return {
        "result": tre_stats(tre(reg, pair.moving_yx, pair.fixed_yx, frame=frame)),
        "start": tre_stats(tre(affine_start(reg), pair.moving_yx, pair.fixed_yx, frame=frame)),
        "none": tre_stats(none),
    }


def _affine_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    design = np.hstack([src, np.ones((len(src), 1))])
    sol, *_ = np.linalg.lstsq(design, dst, rcond=None)
    return sol


def point_baselines(moving_yx: np.ndarray, fixed_yx: np.ndarray) -> dict[str, dict[str, float]]:
    """What the points themselves support, as TRE statistics in fixed pixels.

    ``none``: no registration (same pixel positions); ``affine_in_sample``: the least-squares
    affine through all points, judged on the same points (optimistic); ``affine_loo`` and
    ``tps_loo``: an affine and an exact thin-plate spline fitted without the point judged
    (leave-one-out).

    Parameters
    ----------
    moving_yx, fixed_yx : ndarray, shape (n, 2)

    Returns
    -------
    dict of name -> :func:`tre_stats` dict

    Examples
    --------
    >>> point_baselines(pair.moving_yx, pair.fixed_yx)["tps_loo"]["median"]  # doctest: +SKIP
    1.84
    """
    from scipy.interpolate import RBFInterpolator

    m = np.asarray(moving_yx, float)
    f = np.asarray(fixed_yx, float)
    n = len(m)
    sol = _affine_fit(m, f)
    out = {
        "none": tre_stats(np.linalg.norm(m - f, axis=1)),
        "affine_in_sample": tre_stats(np.linalg.norm(np.hstack([m, np.ones((n, 1))]) @ sol - f, axis=1)),
    }
    aff, tps = np.zeros(n), np.zeros(n)
    for i in range(n):
        keep = np.arange(n) != i
        s = _affine_fit(m[keep], f[keep])
        aff[i] = np.linalg.norm(np.append(m[i], 1.0) @ s - f[i])
        rbf = RBFInterpolator(m[keep], f[keep], kernel="thin_plate_spline")
        tps[i] = np.linalg.norm(rbf(m[i : i + 1])[0] - f[i])
    out["affine_loo"] = tre_stats(aff)
    out["tps_loo"] = tre_stats(tps)
    return out
