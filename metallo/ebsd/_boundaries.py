"""Boundary maps: low-angle, high-angle and special (Sigma3) boundaries between edge neighbours.

A pixel pair of edge neighbours (right and lower neighbour on a square grid, the three
"forward" neighbours on a hexagonal one) is a boundary when its disorientation is at least
``low_deg``, or when the two pixels belong to different phases (a phase boundary counts as
high-angle), or, given grains, when they lie in different grains. The code is written to the
first pixel of the pair (the upper/left one), which gives one-pixel-wide lines:

0 interior, 1 low-angle (``low_deg`` <= angle < ``high_deg``), 2 high-angle (>= ``high_deg``),
3 Sigma3 twin (cubic m-3m phases, within Brandon's criterion 15/sqrt(3) = 8.66 deg of
60 deg about <111>), 4 twin of a hexagonal (hcp) phase with lattice constants (one of the four
hcp twin relations at the phase's c/a, within 5 deg; see :mod:`metallo.ebsd._twins`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from metallo.ebsd._grains import Grains, _ids_of, _mean_orientations, map_dataarray, raster_ids
from metallo.ebsd._neighbours import (
    OrientationMap,
    first_neighbour_offsets,
    iter_pair_angles,
    orientation_map,
)
from metallo.ebsd._twins import (
    BRANDON_SIGMA3_DEG,
    SIGMA3,
    TwinSystem,
    boundary_twin_pairs,
    nearest_twin,
    twin_deviation,
    twins_by_phase,
)
from metallo.errors import ConfigError

__all__ = ["BOUNDARY_CLASSES", "boundaries", "merge_twins", "sigma3_deviation", "special_parameters"]

#: Boundary codes of :func:`boundaries`.
BOUNDARY_CLASSES = ("interior", "low_angle", "high_angle", "sigma3", "twin")

_BRANDON_SIGMA3_DEG = BRANDON_SIGMA3_DEG


def sigma3_deviation(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Angular deviation (degrees) of the cubic misorientation of ``q1``, ``q2`` from the
    Sigma3 twin relation (60 deg about <111>), minimised over both crystals' symmetry.

    Parameters
    ----------
    q1, q2 : ndarray, (..., 4)
        Orientations (unit quaternions) of m-3m crystals.

    Returns
    -------
    ndarray, (...)
        Degrees; 0 for an exact twin.

    Example
    -------
    >>> import numpy as np
    >>> from metallo.ebsd import axis_angle_to_quat
    >>> twin = axis_angle_to_quat(np.array([1.0, 1.0, 1.0]), np.pi / 3)
    >>> round(float(sigma3_deviation(np.array([1.0, 0, 0, 0]), twin)), 6)
    0.0
    """
    return twin_deviation(q1, q2, SIGMA3)


def special_parameters(twins: Mapping[int, Sequence[TwinSystem]], special: bool) -> dict[str, object]:
    """What a boundary map's special codes mean, for its parameters: the Sigma3 criterion and
    each hexagonal phase's twin relations (angle, axis, tolerance)."""
    hcp = {str(pid): [{"twin": t.name, "angle_deg": round(t.angle_deg, 3), "axis": list(t.axis),
                       "tolerance_deg": t.tolerance_deg} for t in systems]
           for pid, systems in twins.items() if systems and systems[0].laue == "6/mmm"}
    return {"special": "sigma3" if special else "", "brandon_sigma3_deg": float(_BRANDON_SIGMA3_DEG),
            **({"hcp_twins": hcp} if special and hcp else {})}


def boundary_codes(omap: OrientationMap, ids: np.ndarray | None, *, low_deg: float, high_deg: float,
                   special: bool, twins: Mapping[int, Sequence[TwinSystem]] | None = None) -> np.ndarray:
    """Flat uint8 boundary codes (see module docstring); ``twins``: phase id -> its hexagonal
    twin relations (:func:`metallo.ebsd._twins.twins_by_phase`), marked 4 when ``special``."""
    out = np.zeros(omap.size, dtype=np.uint8)
    cubic = np.array([pid for pid, sym in omap.laue.items() if sym == "m-3m"])
    hcp = {pid: list(s) for pid, s in (twins or {}).items() if omap.laue.get(pid) == "6/mmm" and s}
    for a, b, ang in iter_pair_angles(omap, first_neighbour_offsets(omap.grid)):
        both = omap.indexed()[a] & omap.indexed()[b]
        code = np.zeros(a.shape, dtype=np.uint8)
        code[both & (ang >= low_deg)] = 1
        if ids is not None:
            code[both & (ids[a] != ids[b])] = np.maximum(code[both & (ids[a] != ids[b])], 1)
        code[both & ((ang >= high_deg) | np.isnan(ang))] = 2
        if special and cubic.size:
            cand = np.flatnonzero((code == 2) & np.isfinite(ang) & (ang > 60.0 - _BRANDON_SIGMA3_DEG)
                                  & np.isin(omap.phase[a], cubic))
            dev = sigma3_deviation(omap.q[a[cand]], omap.q[b[cand]])
            code[cand[dev <= _BRANDON_SIGMA3_DEG]] = 3
        for pid, systems in hcp.items() if special else ():
            cand = np.flatnonzero((code == 2) & np.isfinite(ang) & (omap.phase[a] == pid) & (omap.phase[b] == pid))
            code[cand[nearest_twin(omap.q[a[cand]], omap.q[b[cand]], systems) >= 0]] = 4
        # Every pixel is the first of at most one pair per offset, so plain assignment is safe.
        out[a] = np.maximum(out[a], code)
    return out


def boundaries(
    ebsd: xr.Dataset,
    grains: Grains | xr.DataArray | np.ndarray | None = None,
    *,
    low_deg: float = 2.0,
    high_deg: float = 15.0,
    special: bool = True,
) -> xr.DataArray:
    """Boundary map with low/high-angle split and Sigma3 twins.

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map.
    grains : Grains or (y, x) ids, optional
        If given, neighbours in different grains are at least low-angle boundaries.
    low_deg, high_deg : float
        Class limits in degrees (defaults 2 and 15, the usual LAGB/HAGB split).
    special : bool
        Mark Sigma3 boundaries of cubic (m-3m) phases with code 3, and twins of hexagonal
        phases that state their lattice constants with code 4 (the four hcp twin relations
        at the phase's c/a, within 5 deg; :func:`metallo.ebsd.twin_systems`).

    Returns
    -------
    xr.DataArray
        (y, x) uint8: 0 interior, 1 low-angle, 2 high-angle or phase boundary, 3 Sigma3,
        4 hcp twin.

    Example
    -------
    >>> from metallo.synth import make_specimen
    >>> ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd   # a synthetic map
    >>> b = boundaries(ebsd, low_deg=2.0, high_deg=15.0)
    >>> sorted(np.unique(b.values).tolist()), round(float((b == 2).mean()), 3)   # high-angle share
    ([0, 1, 2], 0.148)
    """
    if not 0 <= low_deg < high_deg:
        raise ConfigError(f"need 0 <= low_deg < high_deg; got low_deg={low_deg}, high_deg={high_deg}")
    omap = orientation_map(ebsd)
    ids = None if grains is None else _ids_of(grains, omap)
    twins = twins_by_phase(ebsd)
    values = boundary_codes(omap, ids, low_deg=float(low_deg), high_deg=float(high_deg), special=bool(special),
                            twins=twins)
    params = {"low_deg": float(low_deg), "high_deg": float(high_deg), **special_parameters(twins, bool(special)),
              "classes": list(BOUNDARY_CLASSES), "grains": grains is not None}
    return map_dataarray(values, omap, "boundaries", params)


def merge_twins(
    ebsd: xr.Dataset,
    grains: Grains | xr.DataArray | np.ndarray,
    *,
    max_deviation_deg: float = _BRANDON_SIGMA3_DEG,
) -> xr.DataArray:
    """Grain ids with their twins merged into their parent grains.

    ASTM E112 counts the grains of austenitic (fcc) steels without their annealing twins, and
    MTEX users merge twins before measuring grain size (``merge(grains, twinBoundary)``). Two
    grains of one cubic (m-3m) phase are merged when they share an edge whose pixel pair is
    within ``max_deviation_deg`` of the twin relation (60 deg about <111>) *and* their mean
    orientations are too: a few noisy pixels on an ordinary boundary do not merge two grains.
    Merging is transitive (a grain with several twin lamellae becomes one grain). Grains of a
    hexagonal phase with lattice constants merge the same way along the hcp twin relations at
    the phase's c/a (:func:`metallo.ebsd.twin_systems`, each within its 5 deg): a magnesium
    grain and its {10-12} extension twins become one parent grain.

    Only merge where the Sigma3 boundaries are annealing twins: in lath martensite and bainite
    the 60 deg <111> boundaries between variants are block boundaries, not twins.

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map.
    grains : Grains or (y, x) ids
        Grains of the map (:func:`metallo.ebsd.grains`).
    max_deviation_deg : float
        Largest deviation from the exact twin (default Brandon's 15/sqrt(3) = 8.66 deg).

    Returns
    -------
    xr.DataArray
        (y, x) int32 ids 0..m-1 (raster order of first pixel), -1 where ``grains`` has none;
        ``attrs["parameters"]`` holds the grain counts before and after and the number of
        twin pairs merged.

    Example
    -------
    >>> import json
    >>> from metallo.synth import make_specimen
    >>> from metallo.ebsd import grains
    >>> ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd   # no twins
    >>> g = grains(ebsd)
    >>> merged = merge_twins(ebsd, g)
    >>> json.loads(merged.attrs["parameters"])["n_grains_after"] == len(g)
    True
    """
    if not 0 < max_deviation_deg < 60:
        raise ConfigError(f"max_deviation_deg must lie in (0, 60); got {max_deviation_deg}")
    omap = orientation_map(ebsd)
    ids = _ids_of(grains, omap)
    n = int(ids.max()) + 1 if (ids >= 0).any() else 0
    # Each phase's twin relations; Sigma3 at the caller's tolerance.
    systems = {pid: [dataclasses.replace(SIGMA3, tolerance_deg=float(max_deviation_deg))] if s[0].laue == "m-3m" else list(s)
               for pid, s in twins_by_phase(ebsd).items() if omap.laue.get(pid) == s[0].laue}
    src, dst, phase_of_pair = [], [], []
    if n and systems:
        for pid, a, b, which in boundary_twin_pairs(omap, ids, systems):
            src.append(ids[a[which >= 0]])
            dst.append(ids[b[which >= 0]])
            phase_of_pair.append(np.full(int((which >= 0).sum()), pid))
    pairs = np.zeros((0, 2), int)
    if src:
        pairs, first = np.unique(np.stack([np.concatenate(src), np.concatenate(dst)], axis=1), axis=0, return_index=True)
        phase_of = np.concatenate(phase_of_pair)[first]
    if len(pairs):
        # The grains' mean orientations: from the Grains table, computed only for bare id maps.
        mean = grains.mean_quaternions if isinstance(grains, Grains) else _mean_orientations(omap, ids, n)
        keep = np.zeros(len(pairs), bool)
        for pid, phase_systems in systems.items():
            mine = phase_of == pid
            keep[mine] = nearest_twin(mean[pairs[mine, 0]], mean[pairs[mine, 1]], phase_systems) >= 0
        pairs = pairs[keep]
    graph = sparse.coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, root = connected_components(graph, directed=False) if n else (0, np.zeros(0, np.int64))
    inside = ids >= 0
    out, n_after = raster_ids(np.where(inside, root[np.where(inside, ids, 0)] if n else 0, -1), inside)
    used = list(dict.fromkeys(t.name for phase_systems in systems.values() for t in phase_systems))
    params = {"max_deviation_deg": float(max_deviation_deg),
              "twin": "Sigma3 60 deg <111>" if used in ([], ["Sigma3"]) else ", ".join(used),
              "n_grains_before": n, "n_grains_after": n_after, "twin_pairs_merged": int(len(pairs))}
    return map_dataarray(out, omap, "twin_merged_grain_id", params)
