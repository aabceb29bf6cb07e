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

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from metallo.ebsd._grains import Grains, _ids_of, map_dataarray
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
    nearest_twin,
    twin_deviation,
    twins_by_phase,
)
from metallo.errors import ConfigError

__all__ = ["BOUNDARY_CLASSES", "boundaries", "sigma3_deviation", "special_parameters"]

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
