"""Inverse pole figure (IPF) colour key.

The sample direction (x, y or z) is expressed in crystal coordinates, brought into the
standard triangle of the phase's Laue group, and coloured by its barycentric weights on the
triangle's corners (normalised so that the largest is 1):

- m-3m: [001] red, [101] green, [111] blue;
- 6/mmm: [0001] red, [2-1-10] green, [10-10] blue;
- 4/mmm: [001] red, [100] green, [110] blue;
- mmm: [001] red, [100] green, [010] blue (the positive octant).

The Laue groups with fewer operations have larger fundamental sectors, each a spherical
triangle with [001] red and two corners on the equator or at [111] (angles about z from the
crystal x axis, which is a in the hexagonal frame):

- m-3: [001] red, [100] green, [111] blue (two m-3m triangles);
- 4/m: [001] red, [100] green, [010] blue (azimuth 0-90°);
- 6/m: [0001] red, azimuth 0° ([2-1-10]) green, 60° blue;
- -3m: [0001] red, azimuth 30° ([10-10]) green, 90° blue (between two mirror planes);
- -3: [0001] red, azimuth 0° green, 120° blue.

Reduced with the higher group's triangle (as metallo did before), directions that these groups
tell apart (e.g. the two basal twin orientations of corundum or hematite, -3m) took one colour.
2/m and -1, whose sectors are a lune and a hemisphere (no triangle), keep the positive octant:
their colours do not tell apart all orientations that differ.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from metallo.ebsd._neighbours import orientation_map
from metallo.ebsd._rotations import quat_to_matrix
from metallo.errors import ConfigError

__all__ = ["ipf_colors"]

_DIRECTIONS = {"x": np.array([1.0, 0.0, 0.0]), "y": np.array([0.0, 1.0, 0.0]), "z": np.array([0.0, 0.0, 1.0])}


def _unit(v: list[float]) -> np.ndarray:
    a = np.array(v, dtype=float)
    return a / np.linalg.norm(a)


_CORNERS = {
    "cubic": np.array([_unit([0, 0, 1]), _unit([1, 0, 1]), _unit([1, 1, 1])]),
    "hexagonal": np.array([_unit([0, 0, 1]), _unit([1, 0, 0]), _unit([np.sqrt(3) / 2, 0.5, 0])]),
    "tetragonal": np.array([_unit([0, 0, 1]), _unit([1, 0, 0]), _unit([1, 1, 0])]),
    "low": np.array([_unit([0, 0, 1]), _unit([1, 0, 0]), _unit([0, 1, 0])]),
}
_FAMILY = {"m-3m": "cubic", "6/mmm": "hexagonal", "4/mmm": "tetragonal"}


def _azimuth(deg: float) -> np.ndarray:
    return np.array([np.cos(np.radians(deg)), np.sin(np.radians(deg)), 0.0])


#: Fundamental sectors (spherical triangles) of the Laue groups reduced by search (below).
_SECTORS = {
    "m-3": np.array([_unit([0, 0, 1]), _unit([1, 0, 0]), _unit([1, 1, 1])]),
    "4/m": np.array([_unit([0, 0, 1]), _unit([1, 0, 0]), _unit([0, 1, 0])]),
    "6/m": np.array([_unit([0, 0, 1]), _azimuth(0.0), _azimuth(60.0)]),
    "-3m": np.array([_unit([0, 0, 1]), _azimuth(30.0), _azimuth(90.0)]),
    "-3": np.array([_unit([0, 0, 1]), _azimuth(0.0), _azimuth(120.0)]),
}


def _reduce_by_search(h: np.ndarray, laue: str, corners: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """Barycentric weights of the equivalent of each direction that lies in the sector ``corners``.

    The equivalents of h under a Laue group are +-R h for the rotations R of its proper group;
    the one whose smallest barycentric weight is largest lies in the sector (on a boundary,
    any of the tied ones: they share the weights).
    """
    from metallo.ebsd._symmetry import symmetry_operators

    mats = quat_to_matrix(symmetry_operators(laue))  # (k, 3, 3)
    mats = np.concatenate([mats, -mats])
    inv = np.linalg.inv(corners)
    out = np.empty_like(h)
    for start in range(0, len(h), chunk):
        part = h[start:start + chunk]
        cand = np.einsum("kij,nj->nki", mats, part)  # (n, 2k, 3)
        w = cand @ inv
        best = np.argmax(w.min(axis=2), axis=1)
        out[start:start + chunk] = w[np.arange(len(part)), best]
    return out


def _reduce(h: np.ndarray, family: str) -> np.ndarray:
    """Crystal directions (n, 3) into the standard triangle of the family (Laue: h ~ -h)."""
    h = np.abs(h) if family in ("cubic", "low") else h * np.sign(h[:, 2:3] + (h[:, 2:3] == 0))
    if family == "cubic":
        s = np.sort(h, axis=1)
        # z >= x >= y >= 0 is the [001]-[101]-[111] triangle.
        return np.column_stack([s[:, 1], s[:, 0], s[:, 2]])
    if family == "hexagonal":
        phi = np.mod(np.arctan2(h[:, 1], h[:, 0]), np.pi / 3)
        phi = np.where(phi > np.pi / 6, np.pi / 3 - phi, phi)
        r = np.hypot(h[:, 0], h[:, 1])
        return np.column_stack([r * np.cos(phi), r * np.sin(phi), h[:, 2]])
    if family == "tetragonal":
        a = np.abs(h)
        return np.column_stack([a[:, :2].max(axis=1), a[:, :2].min(axis=1), a[:, 2]])
    return h


def ipf_colors(ebsd: xr.Dataset, *, direction: str = "z") -> np.ndarray:
    """IPF colour map: the crystal direction parallel to a sample direction, coloured by the
    standard triangle key of each pixel's phase.

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map.
    direction : {"x", "y", "z"}
        Sample direction (default "z", the surface normal).

    Returns
    -------
    ndarray, (y, x, 3)
        RGB in [0, 1]; black at unindexed pixels.

    Example
    -------
    >>> from metallo.synth import make_specimen
    >>> ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd   # a synthetic map
    >>> rgb = ipf_colors(ebsd, direction="z")
    >>> rgb.shape, bool(rgb.min() >= 0.0 and rgb.max() <= 1.0)
    ((40, 40, 3), True)
    """
    if direction not in _DIRECTIONS:
        raise ConfigError(f"direction must be one of x, y, z; got {direction!r}")
    omap = orientation_map(ebsd)
    out = np.zeros((omap.size, 3))
    ok = omap.indexed()
    for pid, sym in omap.laue.items():
        sel = np.flatnonzero(ok & (omap.phase == pid))
        if sel.size == 0:
            continue
        # Passive g maps sample to crystal coordinates: h = g @ v.
        h = quat_to_matrix(omap.q[sel]) @ _DIRECTIONS[direction]
        if sym in _SECTORS:
            weights = _reduce_by_search(h, sym, _SECTORS[sym])
        else:
            family = _FAMILY.get(sym, "low")
            weights = _reduce(h, family) @ np.linalg.inv(_CORNERS[family])
        weights = np.clip(weights, 0.0, None)
        weights /= np.maximum(weights.max(axis=1, keepdims=True), 1e-12)
        out[sel] = weights
    return out.reshape(omap.shape + (3,))
