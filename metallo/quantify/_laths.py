"""Lath widths by intercepts perpendicular to the local lath direction.

The local lath direction comes from the structure tensor of the lath boundaries
(Gaussian derivatives, ``scipy.ndimage``); from points sampled on a grid, lines are cast along
the local normal and the run of the same lath through each point is its width. All lines
are sampled at once with ``map_coordinates`` (nearest neighbour, so labels stay labels).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

from metallo.errors import ConfigError
from metallo.quantify._common import label_array, resolve_pixel_size, weighted_quantile

__all__ = ["lath_boundaries_from_ebsd", "lath_orientation", "lath_width_quality", "lath_width_summary", "lath_widths"]


def lath_boundaries_from_ebsd(ebsd: xr.Dataset, *, threshold_deg: float = 5.0) -> np.ndarray:
    """Lath ids of an EBSD map: pixels joined where the neighbour misorientation is below the threshold.

    Neighbour misorientations (right and down neighbours) come from
    ``metallo.ebsd.misorientation_angle`` with the symmetry of each pixel's phase; the ids
    are the connected components of the pixel graph without boundary edges (so laths keep
    their full width, no boundary pixels are lost).

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map (metallo layout).
    threshold_deg : float
        Misorientation above which neighbours lie in different laths.

    Returns
    -------
    ndarray of int64
        Lath ids (> 0), 0 on non-indexed points.

    Examples
    --------
    >>> from metallo.ebsd import ebsd_dataset, quat_to_euler, random_quaternions
    >>> rows = np.arange(20)[:, None].repeat(10, 1) // 5  # 4 laths of 5 rows
    >>> euler = quat_to_euler(random_quaternions(4, rng=0)[rows])
    >>> bcc = {"id": 0, "name": "ferrite", "symmetry": "m-3m", "lattice": [2.87, 2.87, 2.87, 90, 90, 90]}
    >>> ebsd = ebsd_dataset(euler, np.zeros(rows.shape, np.int16), step_um=0.1, phases=[bcc])
    >>> int(lath_boundaries_from_ebsd(ebsd, threshold_deg=5.0).max())
    4
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from metallo import ebsd as mebsd

    if "euler" not in ebsd or "phase" not in ebsd:
        raise ConfigError("ebsd: expected variables 'euler' and 'phase' (metallo EBSD layout)")
    if ebsd.attrs.get("grid", "square") != "square":
        raise ConfigError(
            f"ebsd: lath widths need a square grid; got grid={ebsd.attrs.get('grid')!r} "
            "(resample with metallo.ebsd.resample_to_square first)"
        )
    phase = np.asarray(ebsd["phase"].values)
    quat = mebsd.euler_to_quat(np.asarray(ebsd["euler"].values))
    h, w = phase.shape
    index = np.arange(h * w).reshape(h, w)
    src, dst = [], []
    for pid, sym in mebsd.laue_by_phase(ebsd).items():
        on = phase == pid
        for a, b in ((np.s_[:, :-1], np.s_[:, 1:]), (np.s_[:-1, :], np.s_[1:, :])):
            both = on[a] & on[b]
            if not both.any():
                continue
            angle = mebsd.misorientation_angle(quat[a][both], quat[b][both], symmetry=sym)
            joined = np.asarray(angle) < threshold_deg
            src.append(index[a][both][joined])
            dst.append(index[b][both][joined])
    src_all = np.concatenate(src) if src else np.zeros(0, np.int64)
    dst_all = np.concatenate(dst) if dst else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(src_all.size, np.int8), (src_all, dst_all)), shape=(h * w, h * w))
    _, comp = connected_components(graph, directed=False)
    ids = comp.reshape(h, w).astype(np.int64) + 1
    ids[phase < 0] = 0
    return ids


def _edges(values: np.ndarray) -> np.ndarray:
    edge = np.zeros(values.shape, np.float32)
    dy = values[1:, :] != values[:-1, :]
    dx = values[:, 1:] != values[:, :-1]
    edge[1:, :] += dy
    edge[:-1, :] += dy
    edge[:, 1:] += dx
    edge[:, :-1] += dx
    return np.minimum(edge, 1.0)


def lath_orientation(
    values: np.ndarray, *, sigma_px: float = 1.0, integration_sigma_px: float = 8.0
) -> tuple[np.ndarray, np.ndarray]:
    """Local lath direction and coherence from the structure tensor of the lath boundaries.

    Parameters
    ----------
    values : (y, x) array
        Lath mask or lath ids; boundaries are where neighbouring values differ.
    sigma_px : float
        Derivative (noise) scale of the Gaussian gradient.
    integration_sigma_px : float
        Integration scale of the tensor; it should span at least one lath width.

    Returns
    -------
    (angle_deg, coherence) : two (y, x) float arrays
        Lath direction in degrees in [-90, 90), from +x towards +y (image rows), and the
        coherence in [0, 1] (1 = perfectly parallel boundaries).

    Examples
    --------
    >>> stripes = (np.arange(64)[:, None] // 8 % 2).repeat(64, 1)
    >>> angle, coh = lath_orientation(stripes)
    >>> round(float(angle[32, 32]))
    0
    """
    edge = _edges(np.asarray(values))
    gy = ndimage.gaussian_filter(edge, sigma_px, order=(1, 0))
    gx = ndimage.gaussian_filter(edge, sigma_px, order=(0, 1))
    jxx = ndimage.gaussian_filter(gx * gx, integration_sigma_px)
    jyy = ndimage.gaussian_filter(gy * gy, integration_sigma_px)
    jxy = ndimage.gaussian_filter(gx * gy, integration_sigma_px)
    normal = 0.5 * np.arctan2(2 * jxy, jxx - jyy)
    trace = jxx + jyy
    with np.errstate(divide="ignore", invalid="ignore"):
        coherence = np.where(trace > 1e-12, np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / trace, 0.0)
    angle = (np.degrees(normal) + 90.0 + 90.0) % 180.0 - 90.0
    return angle, coherence


def lath_widths(
    mask_or_ebsd: Any,
    *,
    pixel_size_um: float | None = None,
    lath_class: int | None = None,
    threshold_deg: float = 5.0,
    sigma_px: float = 1.0,
    integration_sigma_px: float = 8.0,
    spacing_px: int = 4,
    min_coherence: float = 0.5,
    max_width_px: float = 200.0,
    step_px: float = 0.25,
) -> pd.DataFrame:
    """Lath widths from intercepts perpendicular to the local lath direction.

    Parameters
    ----------
    mask_or_ebsd : (y, x) bool / int array, DataArray, or EBSD Dataset
        A lath mask (True inside laths, False on boundaries / other phases), lath ids
        (0 = no lath; neighbouring laths with different ids need no boundary pixels), a class
        label map with ``lath_class``, or an EBSD map (laths separated where the neighbour
        misorientation exceeds ``threshold_deg``, see :func:`lath_boundaries_from_ebsd`).
    pixel_size_um : float, optional
        Pixel size in µm; from attrs (``step_um`` for EBSD) when omitted.
    lath_class : int, optional
        With a class label map: the label of the lath constituent.
    threshold_deg : float
        EBSD only: lath boundary misorientation threshold in degrees.
    sigma_px, integration_sigma_px : float
        Structure-tensor scales (see :func:`lath_orientation`).
    spacing_px : int
        Grid spacing of the intercept points.
    min_coherence : float
        Points where the local direction is less certain than this are skipped.
    max_width_px : float
        Longest measurable intercept; longer runs (and runs cut by the image border) are
        dropped.
    step_px : float
        Sampling step along the intercept lines.

    Returns
    -------
    pd.DataFrame
        One row per intercept: y_um, x_um, lath_angle_deg (lath direction, degrees from +x
        towards +y), width_um (apparent width in the section) and weight (``1 / width``,
        normalised: points on a grid hit wide laths more often, so number-weighted
        statistics use this weight; :func:`lath_width_summary` does).

    Examples
    --------
    >>> stripes = (np.arange(120)[:, None] % 12 != 0).repeat(120, 1)  # 11 px laths
    >>> t = lath_widths(stripes, pixel_size_um=0.1)
    >>> round(lath_width_summary(t)["mean_um"], 2)
    1.1
    """
    if step_px <= 0 or spacing_px < 1 or max_width_px <= 0:
        raise ConfigError("step_px, spacing_px and max_width_px must be positive")
    if isinstance(mask_or_ebsd, xr.Dataset):
        if pixel_size_um is None:
            pixel_size_um = float(mask_or_ebsd.attrs.get("step_um", float("nan")))
        ps = resolve_pixel_size(mask_or_ebsd, pixel_size_um, what="ebsd")
        values = lath_boundaries_from_ebsd(mask_or_ebsd, threshold_deg=threshold_deg)
        source = "ebsd"
    else:
        ps = resolve_pixel_size(mask_or_ebsd, pixel_size_um, what="mask_or_ebsd")
        array = np.asarray(label_array(mask_or_ebsd, what="mask_or_ebsd"))
        if array.dtype == bool:
            values = array.astype(np.int64)
            source = "mask"
        elif lath_class is not None:
            values = (array == lath_class).astype(np.int64)
            source = "labels"
        else:
            values = array.astype(np.int64)
            source = "ids"
    angle, coherence = lath_orientation(values, sigma_px=sigma_px, integration_sigma_px=integration_sigma_px)
    h, w = values.shape
    off = spacing_px // 2
    gy, gx = np.mgrid[off:h:spacing_px, off:w:spacing_px]
    gy, gx = gy.ravel(), gx.ravel()
    ok = (values[gy, gx] > 0) & (coherence[gy, gx] >= min_coherence)
    gy, gx = gy[ok], gx[ok]
    theta = np.radians(angle[gy, gx] + 90.0)
    ny, nx = np.sin(theta), np.cos(theta)
    half = int(math.ceil(max_width_px / step_px))
    t = np.arange(1, half + 1) * step_px
    widths = np.full(gy.size, np.nan)
    chunk = max(1, 4_000_000 // (2 * half))
    for s in range(0, gy.size, chunk):
        sl = slice(s, s + chunk)
        y0, x0 = gy[sl].astype(np.float64), gx[sl].astype(np.float64)
        centre = values[gy[sl], gx[sl]]
        run = []
        for sign in (1.0, -1.0):
            yy = y0[:, None] + sign * t * ny[sl, None]
            xx = x0[:, None] + sign * t * nx[sl, None]
            sampled = ndimage.map_coordinates(values, [yy, xx], order=0, mode="constant", cval=-1)
            differs = sampled != centre[:, None]
            first = np.argmax(differs, axis=1)
            # Runs that end on the border (-1) or never end are cut: not a full intercept.
            found = differs.any(axis=1)
            hit_border = sampled[np.arange(first.size), first] == -1
            run.append(np.where(found & ~hit_border, first, -1))
        full = (run[0] >= 0) & (run[1] >= 0)
        # The run holds the centre plus `first` equal samples on each side, step_px apart.
        widths[sl] = np.where(full, (run[0] + run[1] + 1) * step_px, np.nan)
    good = np.isfinite(widths)
    width_um = widths[good] * ps
    weight = 1.0 / width_um
    table = pd.DataFrame(
        {
            "y_um": gy[good] * ps,
            "x_um": gx[good] * ps,
            "lath_angle_deg": angle[gy[good], gx[good]],
            "width_um": width_um,
            "weight": weight / weight.sum() if weight.size else weight,
        }
    )
    table.attrs["parameters"] = json.dumps(
        {
            "pixel_size_um": ps,
            "source": source,
            "lath_class": lath_class,
            "threshold_deg": threshold_deg,
            "sigma_px": sigma_px,
            "integration_sigma_px": integration_sigma_px,
            "spacing_px": spacing_px,
            "min_coherence": min_coherence,
            "max_width_px": max_width_px,
            "step_px": step_px,
        }
    )
    return table


def lath_width_summary(table: pd.DataFrame) -> dict[str, float]:
    """Number-weighted lath width statistics from a :func:`lath_widths` table (µm).

    Returns
    -------
    dict
        n (intercepts), mean_um and std_um (number-weighted: each lath crossing counts
        once), median_um (number-weighted), mean_point_sampled_um (unweighted: the
        length-weighted mean of a point count).

    Examples
    --------
    >>> lath_width_summary(pd.DataFrame({"width_um": [1.0, 2.0], "weight": [2 / 3, 1 / 3]}))["mean_um"]
    1.3333333333333333
    """
    w = table["width_um"].to_numpy(dtype=np.float64)
    if w.size == 0:
        return {"n": 0.0, "mean_um": np.nan, "std_um": np.nan, "median_um": np.nan,
                "mean_point_sampled_um": np.nan}
    wt = table["weight"].to_numpy(dtype=np.float64)
    mean = float(np.average(w, weights=wt))
    return {
        "n": float(w.size),
        "mean_um": mean,
        "std_um": float(np.sqrt(np.average((w - mean) ** 2, weights=wt))),
        "median_um": weighted_quantile(w, wt, 0.5),
        "mean_point_sampled_um": float(w.mean()),
    }


#: Intercepts narrower than this many pixels (map steps) are one or two points across: at the
#: resolution of the image or map (a 2-step lath measures 2.25 steps on the 0.25-step samples).
LATH_MIN_WIDTH_PX = 2.5
#: Share of the laths (number-weighted) at that resolution above which the widths are flagged.
LATH_MAX_SHARE_AT_RESOLUTION = 0.25


def lath_width_quality(table: pd.DataFrame, pixel_size_um: float, *, what: str = "laths") -> dict[str, Any]:
    """A quality record for a :func:`lath_widths` table: whether the laths are wider than the
    resolution of the map they were measured on.

    A lath one or two steps wide is no width measurement: its intercept is the step, or a
    mis-indexed point between two boundaries. Where more than
    :data:`LATH_MAX_SHARE_AT_RESOLUTION` of the laths (number-weighted, as the widths are
    summarised) are narrower than :data:`LATH_MIN_WIDTH_PX` steps, the record fails and a
    warning says that a finer step is needed.

    Examples
    --------
    >>> t = pd.DataFrame({"width_um": [0.1, 0.1, 1.0], "weight": [10.0, 10.0, 1.0]})
    >>> lath_width_quality(t, 0.1, what="m")["passed"]
    False
    """
    import warnings

    widths = table["width_um"].to_numpy(dtype=np.float64)
    weight = table["weight"].to_numpy(dtype=np.float64) if "weight" in table else np.ones_like(widths)
    at = widths < LATH_MIN_WIDTH_PX * pixel_size_um
    share = float(weight[at].sum() / weight.sum()) if weight.sum() > 0 else float("nan")
    reasons = []
    if share > LATH_MAX_SHARE_AT_RESOLUTION:
        reasons.append(f"{what}: {100 * share:.0f} % of the laths (number-weighted) are narrower than "
                       f"{LATH_MIN_WIDTH_PX:g} steps ({LATH_MIN_WIDTH_PX * pixel_size_um:.3g} µm), one or two points "
                       "across: at the resolution of the map, not measured; a finer step is needed")
        warnings.warn(reasons[0], UserWarning, stacklevel=2)
    return {"passed": not reasons, "share_at_resolution": round(share, 4), "min_width_px": LATH_MIN_WIDTH_PX,
            "max_share_at_resolution": LATH_MAX_SHARE_AT_RESOLUTION, "failure_reasons": reasons}
