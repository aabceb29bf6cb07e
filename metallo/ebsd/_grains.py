"""Grain reconstruction on a pixel adjacency graph, the grain table, GOS and GAM.

Two edge neighbours (4-connectivity on a square grid, 6 on a hexagonal one) are joined when
they belong to the same phase and their disorientation is at most ``tolerance_deg``; grains
are the connected components of that graph (``scipy.sparse.csgraph``), as in OIM Analysis
and MTEX. Grains smaller than ``min_size_px`` pixels and unindexed pixels get id -1.

References
----------
.. [1] A. R. Durmaz, M. Müller, B. Lei, A. Thomas, D. Britz, E. A. Holm, C. Eberl, F. Mücklich,
   P. Gumbsch, "A deep learning approach for complex microstructure inference",
   Nature Communications 12, 6272 (2021). doi:10.1038/s41467-021-26565-5
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from metallo.ebsd._neighbours import (
    OrientationMap,
    first_neighbour_offsets,
    iter_pair_angles,
    iter_slice_angles,
    orientation_map,
)
from metallo.ebsd._rotations import quat_conjugate, quat_multiply
from metallo.ebsd._symmetry import (
    disorientation_cos_components,
    nearest_operator_quaternion,
    pair_product_components,
)
from metallo.errors import ConfigError

__all__ = [
    "Grains",
    "gam",
    "grain_average_misorientation",
    "grain_orientation_spread",
    "grains",
    "gos",
    "map_dataarray",
]


def map_dataarray(values: np.ndarray, omap: OrientationMap, name: str, parameters: dict[str, Any],
                  units: str = "") -> xr.DataArray:
    """A per-pixel result as a (y, x) DataArray on the EBSD map's coordinates."""
    attrs = {"parameters": json.dumps(parameters)}
    if units:
        attrs["units"] = units
    return xr.DataArray(
        np.asarray(values).reshape(omap.shape), dims=("y", "x"),
        coords={"y": omap.coords["y"], "x": omap.coords["x"]}, name=name, attrs=attrs,
    )


@dataclass
class Grains:
    """Reconstructed grains of an EBSD map.

    Attributes
    ----------
    ids : xr.DataArray
        (y, x) int32 grain id, -1 where no grain (not indexed, or in a grain below the size
        threshold). Ids are 0..n-1 in raster order of their first pixel.
    table : pd.DataFrame
        One row per grain, indexed by id: phase, n_pixels, area_um2, ecd_um, aspect_ratio,
        centroid_y_um, centroid_x_um, q0..q3 (symmetry-aware mean orientation), gos_deg, gam_deg.
    parameters : dict
        The reconstruction parameters (tolerance_deg, min_size_px, connectivity).
    """

    ids: xr.DataArray
    table: pd.DataFrame
    parameters: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def mean_quaternions(self) -> np.ndarray:
        """(n_grains, 4) mean orientation of each grain."""
        return self.table[["q0", "q1", "q2", "q3"]].to_numpy()

    def colors(self, *, seed: int = 0) -> np.ndarray:
        """Unique-grain-colour map (y, x, 3) in [0, 1]: a random colour per grain, black elsewhere.

        Example
        -------
        >>> from metallo.synth import make_specimen
        >>> ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd   # a synthetic map
        >>> grains(ebsd).colors().shape
        (40, 40, 3)
        """
        rng = np.random.default_rng(seed)
        palette = np.vstack([np.zeros((1, 3)), 0.15 + 0.85 * rng.random((len(self.table), 3))])
        return palette[np.asarray(self.ids.values) + 1]


def _first_neighbour_angles(omap: OrientationMap) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return list(iter_pair_angles(omap, first_neighbour_offsets(omap.grid)))


#: Where high-angle boundaries start (degrees): a grain tolerance above it joins grains across them.
_HIGH_ANGLE_DEG = 15.0


def check_tolerance(tolerance_deg: float, where: str = "tolerance_deg", *, warn: bool = True) -> None:
    """Refuse a grain tolerance that is not a positive angle, and warn of one above 15 deg
    (``warn=False``: refuse only, for a caller whose grains warn themselves).

    Examples
    --------
    >>> check_tolerance(5.0)
    """
    try:
        value = float(tolerance_deg)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a positive angle in degrees; got {tolerance_deg!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise ConfigError(f"{where} must be a positive angle in degrees; got {tolerance_deg}")
    if warn and value > _HIGH_ANGLE_DEG:
        import warnings

        warnings.warn(f"{where} {value:g} deg is above the {_HIGH_ANGLE_DEG:g} deg where high-angle boundaries start: "
                      "grains join across high-angle boundaries and are no grains (tolerances of 2-15 deg are usual; "
                      "5 deg is the paper's)", UserWarning, stacklevel=3)


def _label(omap: OrientationMap, pairs: list, tolerance_deg: float, min_size_px: int) -> tuple[np.ndarray, int]:
    a = np.concatenate([p[0] for p in pairs])
    b = np.concatenate([p[1] for p in pairs])
    ang = np.concatenate([p[2] for p in pairs])
    join = ang <= tolerance_deg  # NaN (unindexed / other phase) never joins
    n = omap.size
    graph = sparse.coo_matrix((np.ones(int(join.sum()), dtype=np.int8), (a[join], b[join])), shape=(n, n)).tocsr()
    _, labels = connected_components(graph, directed=False)
    indexed = omap.indexed()
    labels = np.where(indexed, labels, -1)
    sizes = np.bincount(labels[indexed], minlength=int(labels.max()) + 1 if indexed.any() else 0)
    keep = sizes >= max(1, int(min_size_px))
    if not keep.size:  # no indexed point: no grain
        return np.full(n, -1, dtype=np.int32), 0
    valid = indexed & keep[np.where(indexed, labels, 0)]
    return raster_ids(labels, valid)


def raster_ids(labels: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, int]:
    """Flat labels renumbered 0..n-1 in raster order of each label's first pixel, -1 where not
    ``valid``; and n."""
    first_ids, first_pos = np.unique(labels[valid], return_index=True)
    order = np.argsort(first_pos)
    new_id = np.full(max(int(labels.max()) + 1 if labels.size else 0, 1), -1, dtype=np.int64)
    new_id[first_ids[order]] = np.arange(order.size)
    ids = np.where(valid, new_id[np.where(valid, labels, 0)], -1).astype(np.int32)
    return ids, int(order.size)


def _mean_orientations(omap: OrientationMap, ids: np.ndarray, n: int, iterations: int = 2) -> np.ndarray:
    """Symmetry-aware mean orientation of each grain: bring every pixel to the symmetric
    equivalent nearest a reference (first the grain's first pixel, then the previous mean),
    average in quaternion space and normalise.

    Pixels whose stored orientation already is the nearest equivalent (the usual case: the
    indexing software reports neighbouring points in one fundamental zone) skip the operator
    search."""
    pix = np.flatnonzero(ids >= 0)
    g = ids[pix].astype(np.int64)
    qc = omap.qc[:, pix]
    _, first = np.unique(g, return_index=True)
    ref = np.ascontiguousarray(qc[:, first])
    phase_of_pixel = omap.phase[pix]
    for _ in range(iterations):
        aligned = qc.copy()
        for sym, phase_ids in omap.laue_groups().items():
            sel = np.flatnonzero(np.isin(phase_of_pixel, phase_ids))
            r = ref[:, g[sel]]
            d = pair_product_components(qc[:, sel], r)
            # <q, r> is d's scalar part; it is the best overlap unless another operator wins.
            sign = np.where(d[0] < 0, -1.0, 1.0)
            overlap = np.abs(d[0])
            # disorientation_cos_components consumes d.
            moved = overlap < disorientation_cos_components(d, sym) - 1e-12
            aligned[:, sel] *= sign
            if moved.any():
                sm = sel[moved]
                dm = pair_product_components(qc[:, sm], r[:, moved])
                eq = quat_multiply(quat_conjugate(nearest_operator_quaternion(dm.T, sym)), qc[:, sm].T)
                dot = np.einsum("ij,ji->i", eq, r[:, moved])
                aligned[:, sm] = (eq * np.where(dot < 0, -1.0, 1.0)[:, None]).T
        mean = np.stack([np.bincount(g, weights=aligned[k], minlength=n) for k in range(4)])
        mean = mean / np.linalg.norm(mean, axis=0, keepdims=True)
        mean *= np.where(mean[0] < 0, -1.0, 1.0)
        ref = mean
    return np.ascontiguousarray(ref.T)


def _misorientation_to_mean(omap: OrientationMap, ids: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Per pixel: disorientation (deg) to its grain's mean orientation; NaN outside grains."""
    out = np.full(omap.size, np.nan)
    pix = np.flatnonzero(ids >= 0)
    for sym, phase_ids in omap.laue_groups().items():
        sel = pix[np.isin(omap.phase[pix], phase_ids)]
        d = pair_product_components(omap.qc[:, sel], np.ascontiguousarray(mean[ids[sel]].T))
        out[sel] = np.degrees(2.0 * np.arccos(disorientation_cos_components(d, sym)))
    return out


def _grain_mean(ids: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    keep = (ids >= 0) & np.isfinite(values)
    total = np.bincount(ids[keep], weights=values[keep], minlength=n)
    count = np.bincount(ids[keep], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _pixel_gam(omap: OrientationMap, ids: np.ndarray, pairs: list) -> np.ndarray:
    """Per pixel: mean disorientation to its first-order neighbours in the same grain."""
    total = np.zeros(omap.size)
    count = np.zeros(omap.size)
    for a, b, ang in pairs:
        same = (ids[a] == ids[b]) & (ids[a] >= 0) & np.isfinite(ang)
        for side in (a, b):
            total += np.bincount(side[same], weights=ang[same], minlength=omap.size)
            count += np.bincount(side[same], minlength=omap.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _pixel_gam_square(omap: OrientationMap, ids: np.ndarray) -> np.ndarray:
    """:func:`_pixel_gam` on a square grid, accumulated on 2-D slices."""
    ids2 = ids.reshape(omap.shape)
    total = np.zeros(omap.shape)
    count = np.zeros(omap.shape)
    for sa, sb, ang in iter_slice_angles(omap, first_neighbour_offsets(omap.grid)):
        same = (ids2[sa] == ids2[sb]) & (ids2[sa] >= 0) & np.isfinite(ang)
        w = np.where(same, ang, 0.0)
        total[sa] += w
        total[sb] += w
        count[sa] += same
        count[sb] += same
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).ravel()


def _shape_table(omap: OrientationMap, ids: np.ndarray, n: int) -> dict[str, np.ndarray]:
    ny, nx = omap.shape
    rows, cols = np.divmod(np.arange(omap.size), nx)
    y = rows * omap.step_y
    x = cols * omap.step_x + (np.where(rows % 2 == 1, 0.5 * omap.step_x, 0.0) if omap.grid == "hexagonal" else 0.0)
    pix = ids >= 0
    g = ids[pix]
    cnt = np.bincount(g, minlength=n).astype(np.float64)
    yy, xx = y[pix], x[pix]
    my = np.bincount(g, weights=yy, minlength=n) / cnt
    mx = np.bincount(g, weights=xx, minlength=n) / cnt
    dy, dx = yy - my[g], xx - mx[g]
    # Each pixel is a cell, not a point: its own second moment keeps 1-pixel grains finite.
    syy = np.bincount(g, weights=dy * dy, minlength=n) / cnt + omap.step_y**2 / 12.0
    sxx = np.bincount(g, weights=dx * dx, minlength=n) / cnt + omap.step_x**2 / 12.0
    sxy = np.bincount(g, weights=dx * dy, minlength=n) / cnt
    half_trace, det = 0.5 * (sxx + syy), sxx * syy - sxy**2
    disc = np.sqrt(np.maximum(half_trace**2 - det, 0.0))
    area = cnt * omap.step_x * omap.step_y
    return {
        "n_pixels": cnt.astype(np.int64),
        "area_um2": area,
        "ecd_um": 2.0 * np.sqrt(area / np.pi),
        "aspect_ratio": np.sqrt((half_trace + disc) / np.maximum(half_trace - disc, 1e-300)),
        "centroid_y_um": my + float(omap.coords["y"][0]),
        "centroid_x_um": mx + float(omap.coords["x"][0]),
    }


def _grain_table(omap: OrientationMap, ids: np.ndarray, n: int, pairs: list) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The grain table plus the per-pixel misorientation-to-mean and GAM maps."""
    mean = _mean_orientations(omap, ids, n) if n else np.zeros((0, 4))
    to_mean = _misorientation_to_mean(omap, ids, mean)
    pixel_gam = _pixel_gam(omap, ids, pairs)
    phase = np.full(n, -1, dtype=np.int16)
    phase[ids[ids >= 0]] = omap.phase[ids >= 0]
    table = pd.DataFrame({"phase": phase, **_shape_table(omap, ids, n)})
    for k in range(4):
        table[f"q{k}"] = mean[:, k]
    table["gos_deg"] = _grain_mean(ids, to_mean, n)
    table["gam_deg"] = _grain_mean(ids, pixel_gam, n)
    table.index.name = "grain_id"
    return table, to_mean, pixel_gam


def grains(
    ebsd: xr.Dataset,
    *,
    tolerance_deg: float = 5.0,
    min_size_px: int = 2,
) -> Grains:
    """Reconstruct grains by misorientation tolerance.

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map (layout of :func:`metallo.ebsd.ebsd_dataset`), square or hexagonal grid.
    tolerance_deg : float
        Largest disorientation between two edge neighbours of one grain (OIM's "grain
        tolerance angle"; default 5 deg, as in Durmaz et al. 2021).
    min_size_px : int
        Grains with fewer pixels get id -1 (OIM's default minimum grain size, 2).

    Returns
    -------
    Grains
        ``ids`` map and grain ``table`` (see :class:`Grains`).

    Example
    -------
    >>> from metallo.synth import make_specimen
    >>> ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd   # a synthetic map
    >>> g = grains(ebsd, tolerance_deg=5.0)
    >>> len(g.table), bool((g.table["gos_deg"] < 5.0).all())
    (16, True)
    """
    check_tolerance(tolerance_deg)
    omap = orientation_map(ebsd)
    pairs = _first_neighbour_angles(omap)
    ids, n = _label(omap, pairs, float(tolerance_deg), int(min_size_px))
    table, _, _ = _grain_table(omap, ids, n, pairs)
    params = {"tolerance_deg": float(tolerance_deg), "min_size_px": int(min_size_px),
              "connectivity": 6 if omap.grid == "hexagonal" else 4}
    return Grains(map_dataarray(ids, omap, "grain_id", params), table, params)


def _ids_of(grains_or_ids: Grains | xr.DataArray | np.ndarray, omap: OrientationMap) -> np.ndarray:
    ids = np.asarray(grains_or_ids.ids.values if isinstance(grains_or_ids, Grains) else grains_or_ids)
    if ids.shape != omap.shape:
        raise ConfigError(f"grain ids have shape {ids.shape}, expected the EBSD grid {omap.shape}")
    return ids.reshape(-1).astype(np.int64)


def _grain_params(grains_or_ids: Any) -> dict[str, Any]:
    return dict(grains_or_ids.parameters) if isinstance(grains_or_ids, Grains) else {}


def grain_orientation_spread(ebsd: xr.Dataset, grains: Grains | xr.DataArray | np.ndarray) -> xr.DataArray:
    """GOS: each grain's mean disorientation of its pixels to the grain mean orientation.

    Parameters
    ----------
    ebsd : xr.Dataset
        The EBSD map the grains come from.
    grains : Grains or (y, x) integer ids
        Grain ids (-1 = no grain). A :class:`Grains` brings its mean orientations; for bare
        ids they are computed here.

    Returns
    -------
    xr.DataArray
        (y, x) degrees: the grain's GOS at each of its pixels, NaN outside grains.

    Example
    -------
    >>> from metallo.synth import make_specimen
    >>> ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd   # a synthetic map
    >>> gos_map = grain_orientation_spread(ebsd, grains(ebsd))
    >>> gos_map.dims, bool(float(gos_map.max()) < 5.0)
    (('y', 'x'), True)
    """
    omap = orientation_map(ebsd)
    ids = _ids_of(grains, omap)
    n = int(ids.max()) + 1 if ids.size and ids.max() >= 0 else 0
    if isinstance(grains, Grains) and len(grains.table) == n:
        # The reconstruction already averaged each grain's orientation.
        mean = grains.mean_quaternions
    else:
        mean = _mean_orientations(omap, ids, n) if n else np.zeros((0, 4))
    per_grain = _grain_mean(ids, _misorientation_to_mean(omap, ids, mean), n)
    values = np.where(ids >= 0, per_grain[np.maximum(ids, 0)] if n else np.nan, np.nan)
    return map_dataarray(values, omap, "gos", _grain_params(grains), "deg")


def grain_average_misorientation(ebsd: xr.Dataset, grains: Grains | xr.DataArray | np.ndarray) -> xr.DataArray:
    """GAM: grain average of each pixel's mean disorientation to its first-order neighbours
    inside the same grain.

    Parameters
    ----------
    ebsd : xr.Dataset
        The EBSD map the grains come from.
    grains : Grains or (y, x) integer ids
        Grain ids (-1 = no grain).

    Returns
    -------
    xr.DataArray
        (y, x) degrees: the grain's GAM at each of its pixels, NaN outside grains (and in
        one-pixel grains).

    Example
    -------
    >>> from metallo.synth import make_specimen
    >>> ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd   # a synthetic map
    >>> gam_map = grain_average_misorientation(ebsd, grains(ebsd))
    >>> gam_map.shape
    (40, 40)
    """
    omap = orientation_map(ebsd)
    ids = _ids_of(grains, omap)
    n = int(ids.max()) + 1 if ids.size and ids.max() >= 0 else 0
    if omap.grid == "hexagonal":
        pixel = _pixel_gam(omap, ids, _first_neighbour_angles(omap))
    else:
        pixel = _pixel_gam_square(omap, ids)
    per_grain = _grain_mean(ids, pixel, n)
    values = np.where(ids >= 0, per_grain[np.maximum(ids, 0)] if n else np.nan, np.nan)
    return map_dataarray(values, omap, "gam", _grain_params(grains), "deg")


gos = grain_orientation_spread
gam = grain_average_misorientation
