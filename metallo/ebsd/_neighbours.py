"""Orientation maps as flat arrays, pixel neighbourhoods on square and hexagonal grids, and
misorientation angles of neighbour pairs.

Neighbour orders (the kernel of KAM and the adjacency of grains):

- square grid: the n-th order neighbours of a pixel are the ``8n`` pixels on the perimeter
  of the ``(2n+1) x (2n+1)`` square around it (Chebyshev distance n). Grain adjacency uses
  the 4 edge neighbours.
- hexagonal grid (odd rows shifted right by half a step): the ``6n`` pixels at hexagonal
  distance n. Grain adjacency uses the 6 first neighbours.

KAM can also take every neighbour up to order n, as MTEX and DREAM.3D do
(:func:`neighbour_offsets`, ``kernel=``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import xarray as xr

from metallo._ebsd_dataset import phases_of
from metallo.ebsd._rotations import euler_to_quat
from metallo.ebsd._symmetry import (
    disorientation_cos_components,
    pair_product_components,
    symmetry_operators,
)
from metallo.errors import FormatError

__all__ = ["KAM_KERNELS", "OrientationMap", "laue_by_phase", "neighbour_offsets", "offset_pairs", "orientation_map", "pair_angles"]


@dataclass
class OrientationMap:
    """An EBSD map as flat arrays: what every neighbourhood computation needs."""

    q: np.ndarray  # (n, 4) float64, NaN where not indexed
    phase: np.ndarray  # (n,) int16, -1 where not indexed
    laue: dict[int, str]  # phase id -> Laue group
    shape: tuple[int, int]
    grid: str
    step_x: float
    step_y: float
    coords: dict[str, np.ndarray]
    _qc: np.ndarray | None = None

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def qc(self) -> np.ndarray:
        """Component-first copy ``(4, n)`` of :attr:`q` (cached; reset by :meth:`touch`)."""
        if self._qc is None:
            self._qc = np.ascontiguousarray(self.q.T)
        return self._qc

    def touch(self) -> None:
        """Forget cached copies after :attr:`q` was modified in place."""
        self._qc = None

    def indexed(self) -> np.ndarray:
        return self.phase >= 0

    def laue_groups(self) -> dict[str, np.ndarray]:
        """Laue group -> phase ids that have it."""
        out: dict[str, list[int]] = {}
        for pid, sym in self.laue.items():
            out.setdefault(sym, []).append(pid)
        return {k: np.array(v) for k, v in out.items()}


def laue_by_phase(ebsd: xr.Dataset) -> dict[int, str]:
    """The symmetry name each phase id of a map computes with: its Laue group, with ``"2/m:z"``
    for monoclinic phases of a map read with ``monoclinic_axis="z"`` (orix's setting).

    Every misorientation of a map should take its symmetry from here, so that the map's
    settings hold everywhere.

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map.

    Returns
    -------
    dict of int to str

    Examples
    --------
    >>> from metallo.ebsd import ebsd_dataset
    >>> m = ebsd_dataset(np.zeros((1, 1, 3)), np.ones((1, 1), np.int16), step_um=1.0,
    ...                  phases=[{"id": 1, "name": "gl", "symmetry": "2/m"}])
    >>> laue_by_phase(m), laue_by_phase(m.assign_attrs(monoclinic_axis="z"))
    ({1: '2/m'}, {1: '2/m:z'})
    """
    axis = str(ebsd.attrs.get("monoclinic_axis", "y"))
    return {int(p["id"]): str(p["symmetry"]) + (":z" if axis == "z" and p["symmetry"] == "2/m" else "")
            for p in phases_of(ebsd)}


def orientation_map(ebsd: xr.Dataset) -> OrientationMap:
    """Flatten an EBSD Dataset (``quaternion`` variable if present, else ``euler``)."""
    if "phase" not in ebsd:
        raise FormatError(f"{ebsd.attrs.get('source') or 'EBSD map'}: no 'phase' variable")
    ny, nx = ebsd.sizes["y"], ebsd.sizes["x"]
    phase: np.ndarray = np.asarray(ebsd["phase"].values).reshape(-1).astype(np.int16)
    if "quaternion" in ebsd:
        q = np.asarray(ebsd["quaternion"].values, dtype=np.float64).reshape(-1, 4)
    elif "euler" in ebsd:
        q = euler_to_quat(np.asarray(ebsd["euler"].values).reshape(-1, 3))
    else:
        raise FormatError(f"{ebsd.attrs.get('source') or 'EBSD map'}: needs 'euler' or 'quaternion'")
    bad = ~np.isfinite(q).all(axis=1)
    phase = np.where(bad, np.int16(-1), phase)
    laue = laue_by_phase(ebsd)
    unknown = np.setdiff1d(np.unique(phase[phase >= 0]), list(laue))
    if unknown.size:
        raise FormatError(
            f"{ebsd.attrs.get('source') or 'EBSD map'}: phase ids {unknown.tolist()} are not in attrs['phases'] ({sorted(laue)})"
        )
    for sym in laue.values():
        symmetry_operators(sym)
    step_x = float(ebsd.attrs.get("step_um", 1.0))
    grid = str(ebsd.attrs.get("grid", "square"))
    step_y = float(ebsd.attrs.get("step_y_um", step_x * (np.sqrt(3) / 2 if grid == "hexagonal" else 1.0)))
    return OrientationMap(q, phase, laue, (ny, nx), grid, step_x, step_y,
                          {"y": ebsd["y"].values, "x": ebsd["x"].values})


#: KAM kernels: which neighbours up to order n enter (see :func:`neighbour_offsets`).
KAM_KERNELS = ("ring", "mtex", "full")


def neighbour_offsets(order: int, grid: str, *, half: bool = True, kernel: str = "ring") -> list[tuple[int, int]]:
    """Offsets of a pixel's neighbours of order ``order``: ``(dy, dx)`` on a square grid, axial
    ``(dr, dq)`` on a hexagonal one. ``half=True`` keeps one of each +/- pair.

    ``kernel`` says which: ``"ring"`` the n-th shell only (Chebyshev distance n on a square
    grid: 8n pixels; hexagonal distance n: 6n pixels); ``"mtex"`` every neighbour up to order n
    as MTEX's ``EBSDsquare/KAM`` and ``EBSDhex/KAM`` take them (Manhattan distance 1..n on a
    square grid: 2n(n+1) pixels, hexagonal distance 1..n: 3n(n+1)); ``"full"`` the whole
    (2n+1)² square without its centre (DREAM.3D's kernel; on a hexagonal grid the same as
    ``"mtex"``).

    Examples
    --------
    >>> [len(neighbour_offsets(3, "square", half=False, kernel=k)) for k in KAM_KERNELS]
    [24, 24, 48]
    """
    n = int(order)
    if n < 1:
        raise ValueError(f"neighbour order must be >= 1; got {order}")
    if kernel not in KAM_KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KAM_KERNELS)}; got {kernel!r}")
    out = []
    for d1 in range(-n, n + 1):
        for d2 in range(-n, n + 1):
            if grid == "hexagonal":
                distance = max(abs(d1), abs(d2), abs(d1 + d2))
            elif kernel == "mtex":
                distance = abs(d1) + abs(d2)
            else:
                distance = max(abs(d1), abs(d2))
            keep = distance == n if kernel == "ring" else 1 <= distance <= n
            if keep and (not half or d1 > 0 or (d1 == 0 and d2 > 0)):
                out.append((d1, d2))
    return out


def first_neighbour_offsets(grid: str) -> list[tuple[int, int]]:
    """Half of the edge neighbours: 2 on a square grid (4-connectivity), 3 on a hexagonal one."""
    return [(0, 1), (1, 0)] if grid != "hexagonal" else neighbour_offsets(1, "hexagonal")


def offset_pairs(shape: tuple[int, int], grid: str, offset: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices ``(a, b)`` of every pixel pair ``b = a + offset`` inside the map."""
    ny, nx = shape
    d1, d2 = offset
    if grid != "hexagonal":
        idx = np.arange(ny * nx, dtype=np.int64).reshape(ny, nx)
        sa, sb = offset_slices(shape, offset)
        return idx[sa].ravel(), idx[sb].ravel()
    # Hexagonal "odd-r" storage: row r, column c sits at axial q = c - (r - (r & 1)) // 2.
    rows = np.arange(ny, dtype=np.int64)[:, None]
    cols = np.arange(nx, dtype=np.int64)[None, :]
    rb = rows + d1
    qb = cols - (rows - (rows & 1)) // 2 + d2
    cb = qb + (rb - (rb & 1)) // 2
    rb, cb = np.broadcast_arrays(rb, cb)
    ok = (rb >= 0) & (rb < ny) & (cb >= 0) & (cb < nx)
    a = np.broadcast_to(rows * nx + cols, (ny, nx))[ok]
    return a, (rb * nx + cb)[ok]


def angles_between(omap: OrientationMap, qa: np.ndarray, qb: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """Disorientation angles (degrees) of component-first orientation arrays ``qa``, ``qb``
    (4, ...) with phases ``pa``, ``pb``; NaN where a pixel is not indexed or the phases differ."""
    same = (pa == pb) & (pa >= 0)
    groups = omap.laue_groups()
    if len(groups) == 1:
        (sym,) = groups
        cos_half = disorientation_cos_components(pair_product_components(qa, qb), sym)
        cos_half[~same] = np.nan
    else:
        cos_half = np.full(pa.shape, np.nan)
        for sym, ids in groups.items():
            sel = same & np.isin(pa, ids)
            cos_half[sel] = disorientation_cos_components(pair_product_components(qa[:, sel], qb[:, sel]), sym)
    return np.degrees(2.0 * np.arccos(cos_half))


def pair_angles(omap: OrientationMap, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Disorientation angles (degrees) of flat pixel pairs ``a``, ``b`` (see :func:`angles_between`)."""
    qc = omap.qc
    return angles_between(omap, qc[:, a], qc[:, b], omap.phase[a], omap.phase[b])


def offset_slices(shape: tuple[int, int], offset: tuple[int, int]) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Square grid: the 2-D slices of the first and second pixel of every pair at ``offset``."""
    ny, nx = shape
    d1, d2 = offset
    # Clamped at 0: an offset longer than the map (a KAM kernel on a 1 x 2 map) has no pairs,
    # while a negative stop would count from the end and pair pixels that are not neighbours.
    sa = (slice(max(0, -d1), max(0, ny - max(0, d1))), slice(max(0, -d2), max(0, nx - max(0, d2))))
    sb = (slice(max(0, d1), max(0, ny - max(0, -d1))), slice(max(0, d2), max(0, nx - max(0, -d2))))
    return sa, sb


def iter_slice_angles(
    omap: OrientationMap, offsets: list[tuple[int, int]]
) -> Iterator[tuple[tuple[slice, slice], tuple[slice, slice], np.ndarray]]:
    """Square grid: ``(slices_a, slices_b, angle_deg)`` per offset, on 2-D views (no index arrays)."""
    q = omap.qc.reshape((4,) + omap.shape)
    p = omap.phase.reshape(omap.shape)
    whole = slice(None)
    for off in offsets:
        sa, sb = offset_slices(omap.shape, off)
        yield sa, sb, angles_between(omap, q[(whole, *sa)], q[(whole, *sb)], p[sa], p[sb])


def grain_boundary_pairs(omap: OrientationMap, ids: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(a, b)`` flat indices of the grain-boundary segments, one first-neighbour offset at a
    time: edge neighbours in different grains (``ids`` >= 0) of one indexed phase. What the twin
    shares and the boundary misorientation distribution count, as MTEX counts
    ``grains.boundary('phase', 'phase')``."""
    for off in first_neighbour_offsets(omap.grid):
        a, b = offset_pairs(omap.shape, omap.grid, off)
        keep = (ids[a] >= 0) & (ids[b] >= 0) & (ids[a] != ids[b]) & (omap.phase[a] == omap.phase[b]) & (omap.phase[a] >= 0)
        yield a[keep], b[keep]


def iter_pair_angles(
    omap: OrientationMap, offsets: list[tuple[int, int]]
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(a, b, angle_deg)`` for each neighbour offset, one offset at a time (bounded memory)."""
    for off in offsets:
        a, b = offset_pairs(omap.shape, omap.grid, off)
        yield a, b, pair_angles(omap, a, b)
