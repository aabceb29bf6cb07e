"""Twin relations of cubic and hexagonal phases, the twin share of a map's grain boundaries, and
grains merged with their twins into parent grains (:func:`merge_twins`).

A twin relation is a misorientation: a rotation about a crystal axis, compared with a boundary's
misorientation over both crystals' symmetry (as MTEX's ``angle(gB.misorientation, twinning)``).

- Cubic (``m-3m``): Sigma3, 60 deg about <111>, within Brandon's 15/sqrt(3) = 8.66 deg.
- Hexagonal (``6/mmm``; metallo's crystal frame has x || a): the four twin systems of hcp metals
  (Mg, Ti, Zr, Zn, Co). Each is a 180 deg turn about the twin plane's normal, which the
  hexagonal symmetry makes a rotation of ``2 psi`` about the axis lying in the twin plane, with
  ``psi`` the angle between the plane's normal and c. That angle follows from the phase's c/a:

  ========================  ==========  ===================================  ============
  twin plane                axis        tan(psi)                             Mg (1.624)
  ========================  ==========  ===================================  ============
  {10-12} extension         <11-20>     c / (sqrt(3) a)                      86.3 deg
  {10-11} contraction       <11-20>     2 c / (sqrt(3) a)                    56.1 deg
  {11-21} extension         <10-10>     2 c / a                              34.2 deg
  {11-22} contraction       <10-10>     c / a                                63.3 deg
  ========================  ==========  ===================================  ============

  (The reduced angle is ``min(2 psi, 180 - 2 psi)``; above c/a = sqrt(3), in Zn and Cd, {10-12}
  twinning contracts c and is named so.) A map that states no lattice constants for
  a hexagonal phase gets no twin relations for it: the angles would be guesses. Boundaries of
  hcp twins are marked within 5 deg, the tolerance of MTEX's twinning tutorial.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from metallo.ebsd._grains import Grains, _ids_of, _mean_orientations, map_dataarray, raster_ids
from metallo.ebsd._misorientations import MIN_BOUNDARIES
from metallo.ebsd._neighbours import grain_boundary_pairs, orientation_map
from metallo.ebsd._rotations import axis_angle_to_quat, quat_multiply, random_quaternions
from metallo.ebsd._symmetry import (
    _pair_product,
    disorientation_cos,
    disorientation_cos_components,
    pair_product_components,
    symmetry_operators,
)
from metallo.errors import ConfigError

__all__ = ["TwinSystem", "merge_twins", "twin_boundaries", "twin_deviation", "twin_systems"]

#: Brandon's criterion for Sigma3: 15 deg / sqrt(3).
BRANDON_SIGMA3_DEG = 15.0 / math.sqrt(3.0)
#: Tolerance of the hcp twin relations (MTEX's twinning tutorial: 5 deg).
HCP_TWIN_TOLERANCE_DEG = 5.0


@dataclass(frozen=True)
class TwinSystem:
    """A twin relation: ``angle_deg`` about the crystal ``axis``, for phases of Laue group ``laue``."""

    name: str
    laue: str
    axis: tuple[float, float, float]
    angle_deg: float
    tolerance_deg: float

    @property
    def reduced_angle_deg(self) -> float:
        """The disorientation angle of the exact twin (hexagonal: ``min(angle, 180 - angle)``)."""
        return float(min(self.angle_deg, 180.0 - self.angle_deg)) if self.laue == "6/mmm" else float(self.angle_deg)


#: The cubic annealing twin.
SIGMA3 = TwinSystem("Sigma3", "m-3m", (1.0, 1.0, 1.0), 60.0, BRANDON_SIGMA3_DEG)

_A_AXIS = (1.0, 0.0, 0.0)  # <11-20> in metallo's hexagonal frame (x || a)
_M_AXIS = (0.0, 1.0, 0.0)  # <10-10>


def twin_systems(phase: Mapping[str, Any]) -> list[TwinSystem]:
    """The twin relations metallo marks for one phase of a map (an entry of ``attrs["phases"]``).

    Cubic ``m-3m`` phases: Sigma3. Hexagonal ``6/mmm`` phases with lattice constants: the four hcp
    twin systems at the phase's own c/a. Other phases, and hexagonal ones without lattice
    constants: none.

    Examples
    --------
    >>> mg = {"symmetry": "6/mmm", "lattice": [3.2089, 3.2089, 5.2101, 90, 90, 120]}
    >>> [(s.name, round(s.reduced_angle_deg, 1)) for s in twin_systems(mg)]
    [('{10-12} extension', 86.3), ('{10-11} contraction', 56.1), ('{11-21} extension', 34.2), ('{11-22} contraction', 63.3)]
    """
    laue = phase.get("symmetry")
    if laue == "m-3m":
        return [SIGMA3]
    if laue != "6/mmm":
        return []
    lattice = phase.get("lattice")
    try:
        a, c = float(lattice[0]), float(lattice[2])  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        return []
    if not (a > 0 and c > 0 and math.isfinite(a) and math.isfinite(c)):
        return []
    ratio = c / a
    s3 = math.sqrt(3.0)
    tol = HCP_TWIN_TOLERANCE_DEG
    # {10-12} twinning extends c where c/a < sqrt(3) (Mg, Ti, Zr, Co) and contracts it above (Zn, Cd).
    sense = "extension" if ratio < s3 else "contraction"
    return [
        TwinSystem(f"{{10-12}} {sense}", "6/mmm", _A_AXIS, 2 * math.degrees(math.atan(ratio / s3)), tol),
        TwinSystem("{10-11} contraction", "6/mmm", _A_AXIS, 2 * math.degrees(math.atan(2 * ratio / s3)), tol),
        TwinSystem("{11-21} extension", "6/mmm", _M_AXIS, 2 * math.degrees(math.atan(2 * ratio)), tol),
        TwinSystem("{11-22} contraction", "6/mmm", _M_AXIS, 2 * math.degrees(math.atan(ratio)), tol),
    ]


@lru_cache(maxsize=64)
def _variants(system: TwinSystem) -> np.ndarray:
    """Right multipliers ``T S_k`` of the twin ``T`` that differ modulo the left symmetry (the
    disorientation already minimises over it), component-first."""
    ops = symmetry_operators(system.laue)
    twins = quat_multiply(axis_angle_to_quat(np.array(system.axis), np.radians(system.angle_deg)), ops)
    keep: list[np.ndarray] = []
    for t in twins:
        if all(disorientation_cos(_pair_product(t, k), system.laue) < 1 - 1e-9 for k in keep):
            keep.append(t)
    return np.array(keep)


def twin_deviation(q1: np.ndarray, q2: np.ndarray, system: TwinSystem = SIGMA3) -> np.ndarray:
    """Angular deviation (degrees) of the misorientation of ``q1``, ``q2`` from a twin relation,
    minimised over both crystals' symmetry.

    Parameters
    ----------
    q1, q2 : ndarray, (..., 4)
        Orientations (unit quaternions) of two crystals of the system's Laue group.
    system : TwinSystem
        The relation (:func:`twin_systems`); default the cubic Sigma3.

    Returns
    -------
    ndarray, (...)
        Degrees; 0 for an exact twin.

    Examples
    --------
    >>> mg = twin_systems({"symmetry": "6/mmm", "lattice": [3.2089, 3.2089, 5.2101, 90, 90, 120]})[0]
    >>> twin = axis_angle_to_quat(np.array([1.0, 0, 0]), np.radians(mg.angle_deg))
    >>> round(float(twin_deviation(np.array([1.0, 0, 0, 0]), twin, mg)), 6)
    0.0
    """
    q1 = np.moveaxis(np.asarray(q1, dtype=np.float64), -1, 0)
    q2 = np.moveaxis(np.asarray(q2, dtype=np.float64), -1, 0)
    m = pair_product_components(q2, q1)
    best = np.zeros(m.shape[1:])
    for t in _variants(system):
        tc = t.reshape((4,) + (1,) * (m.ndim - 1))
        best = np.maximum(best, disorientation_cos_components(pair_product_components(m, tc), system.laue))
    return np.degrees(2.0 * np.arccos(np.minimum(best, 1.0)))


def nearest_twin(q1: np.ndarray, q2: np.ndarray, systems: Sequence[TwinSystem]) -> np.ndarray:
    """Index into ``systems`` of the twin relation each pair is within tolerance of (the closest
    one where several are), -1 for none."""
    q1 = np.asarray(q1, dtype=np.float64)
    out = np.full(q1.shape[:-1], -1, dtype=np.int64)
    best = np.full(q1.shape[:-1], np.inf)
    for k, system in enumerate(systems):
        dev = twin_deviation(q1, q2, system)
        hit = (dev <= system.tolerance_deg) & (dev < best)
        out[hit] = k
        best[hit] = dev[hit]
    return out


#: Pairs of random orientations drawn for the random share of the twin relations.
_RANDOM_TWIN_PAIRS = 200_000


@lru_cache(maxsize=32)
def random_twin_shares(systems: tuple[TwinSystem, ...]) -> tuple[float, ...]:
    """The share of boundaries between randomly oriented crystals that lie within tolerance of
    each relation in ``systems`` (as :func:`nearest_twin` assigns them), from 200,000 pairs of
    uniformly random orientations, the same on every call.

    The reference a measured twin share is read against: a Sigma3 share near it is what
    grains of random orientation give, no sign of twinning.

    Examples
    --------
    >>> round(random_twin_shares((SIGMA3,))[0], 3)   # random grains: 1.8 % within Brandon of Sigma3
    0.018
    """
    which = nearest_twin(random_quaternions(_RANDOM_TWIN_PAIRS, 3), random_quaternions(_RANDOM_TWIN_PAIRS, 4), systems)
    counts = np.bincount(which[which >= 0], minlength=len(systems))
    return tuple(float(c) / _RANDOM_TWIN_PAIRS for c in counts)


def twins_by_phase(ebsd: xr.Dataset) -> dict[int, list[TwinSystem]]:
    """Phase id -> its twin relations (:func:`twin_systems`), for the phases that have any."""
    from metallo._ebsd_dataset import phases_of

    out = {}
    for phase in phases_of(ebsd):
        systems = twin_systems(phase)
        if systems and "id" in phase:
            out[int(phase["id"])] = systems
    return out


def boundary_twin_pairs(omap: Any, ids: np.ndarray, systems: Mapping[int, Sequence[TwinSystem]]
                        ) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """``(phase id, a, b, which)`` for the grain-boundary pairs of each phase with twin relations:
    edge neighbours ``a``, ``b`` (flat indices) in different grains of that phase, and the index
    into its ``systems`` of the relation each pair is within tolerance of (-1 for none)."""
    for a, b in grain_boundary_pairs(omap, ids):
        for pid, phase_systems in systems.items():
            mine = omap.phase[a] == pid
            if mine.any():
                yield pid, a[mine], b[mine], nearest_twin(omap.q[a[mine]], omap.q[b[mine]], phase_systems)


def _twinned_area(merged: np.ndarray, grains: Any, omap: Any, ids: np.ndarray,
                  systems: Mapping[int, Sequence[TwinSystem]]) -> dict[int, np.ndarray]:
    """Points of each phase in twins, per relation: the grains merged into a parent grain
    (``merged``, flat ids of :func:`metallo.ebsd.merge_twins`) other than its largest, each under
    the relation of its mean orientation to the largest's (a twin of a twin, related to the
    largest by none, is in none)."""
    out = {pid: np.zeros(len(s)) for pid, s in systems.items()}
    inside = ids >= 0
    n = int(ids.max()) + 1 if inside.any() else 0
    if not n or not systems:
        return out
    root = np.full(n, -1, np.int64)
    root[ids[inside]] = merged[inside]
    phase = np.full(n, -1, np.int64)
    phase[ids[inside]] = omap.phase[inside]
    frame = pd.DataFrame({"root": root, "area": np.bincount(ids[inside], minlength=n), "phase": phase})
    frame = frame[frame["root"] >= 0]
    host = frame.groupby("root")["area"].idxmax()
    frame = frame.assign(host=frame["root"].map(host))
    twins = frame[frame.index != frame["host"]]
    if twins.empty:
        return out
    mean = grains.mean_quaternions if isinstance(grains, Grains) else _mean_orientations(omap, ids, n)
    for pid, phase_systems in systems.items():
        mine = twins[twins["phase"] == pid]
        if len(mine):
            which = nearest_twin(mean[mine.index.to_numpy()], mean[mine["host"].to_numpy()], phase_systems)
            out[pid] += np.bincount(which[which >= 0], weights=mine["area"].to_numpy()[which >= 0],
                                    minlength=len(phase_systems))
    return out


def twin_boundaries(ebsd: xr.Dataset, grains: Any) -> pd.DataFrame:
    """The twin share of a map's grain boundaries, per phase and twin relation.

    Every pair of edge neighbours that lie in different grains of one phase (both indexed) is a
    grain-boundary segment, as MTEX counts ``grains.boundary('Mg', 'Mg')``. A segment is a twin
    boundary of a relation when its two points' misorientation lies within the relation's
    tolerance (the closest relation where several do).

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map, square or hexagonal grid.
    grains : Grains or (y, x) ids
        Its grains (:func:`metallo.ebsd.grains`; -1 = none): the boundaries counted are theirs.

    Returns
    -------
    pd.DataFrame
        One row per phase with twin relations and per relation: phase, twin, angle_deg (the
        exact twin's disorientation), axis, tolerance_deg, n_segments, length_um (segments x the
        edge length of one step: the step on a square grid, step / sqrt(3) on a hexagonal one; the
        staircase length of the pixel edges, which for boundaries of every direction is about
        4 / pi times the true length on a square grid: MTEX's Mg example gives 501.6 µm where
        MTEX's smoothed boundaries measure 361 µm),
        share (of the phase's grain-boundary segments), n_boundary_segments, area_share: the
        share of the phase's points in twins of that relation (the grains that
        :func:`metallo.ebsd.merge_twins` merges into a parent grain, other than its largest,
        by their mean orientation's relation to the largest's: MTEX's "twinned area"),
        random_share (the share that boundaries between randomly oriented grains give:
        :func:`random_twin_shares`, 1.8 % for Sigma3), n_grain_pairs (the distinct grain
        boundaries the phase's segments lie on), reliable (at least 50 of them, as for the
        misorientation distribution), note (why not) and boundary: "twin", or "no twin (bcc
        iron)" for a phase of bcc iron (:func:`metallo._ebsd_dataset.looks_bcc_iron`), which has
        no annealing twins (in martensite and bainite 60 deg <111> joins two variants of one prior
        austenite grain: a block boundary). Empty for a map without twin relations. ``attrs["merged"]``: the parameters of that merge
        (JSON; ``n_grains_before``, ``n_grains_after``).

    Examples
    --------
    >>> from metallo.synth import make_specimen
    >>> from metallo.ebsd import grains
    >>> ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd   # random grains
    >>> table = twin_boundaries(ebsd, grains(ebsd))
    >>> list(table.columns)[:3]
    ['phase', 'twin', 'angle_deg']
    """
    from metallo._ebsd_dataset import looks_bcc_iron, phases_of

    omap = orientation_map(ebsd)
    ids = _ids_of(grains, omap)
    systems = twins_by_phase(ebsd)
    entries = {int(p["id"]): p for p in phases_of(ebsd) if "id" in p}
    names = {pid: str(p.get("name", pid)) for pid, p in entries.items()}
    edge_um = omap.step_x / math.sqrt(3.0) if omap.grid == "hexagonal" else omap.step_x
    counts = {pid: np.zeros(len(s) + 1, np.int64) for pid, s in systems.items()}  # last: all boundaries
    pairs: dict[int, list[np.ndarray]] = {pid: [] for pid in systems}
    flat = ids.ravel()
    for pid, a, b, which in boundary_twin_pairs(omap, ids, systems):
        counts[pid][-1] += which.size
        counts[pid][:-1] += np.bincount(which[which >= 0], minlength=len(systems[pid]))
        ga, gb = flat[a].astype(np.int64), flat[b].astype(np.int64)
        pairs[pid].append(np.minimum(ga, gb) * (int(flat.max()) + 1) + np.maximum(ga, gb))
    merged = merge_twins(ebsd, grains) if systems else None
    area = _twinned_area(np.asarray(merged.values).ravel(), grains, omap, ids, systems) if merged is not None else {}
    rows = []
    for pid, phase_systems in systems.items():
        total = int(counts[pid][-1])
        phase_points = int((omap.phase == pid).sum())
        n_pairs = int(np.unique(np.concatenate(pairs[pid])).size) if pairs[pid] else 0
        # As the misorientation distribution: a share over a few grain boundaries is no statistic.
        note = (f"only {n_pairs} grain boundaries (grain pairs): fewer than {MIN_BOUNDARIES}, the twin share is no "
                "statistic of the phase" if n_pairs < MIN_BOUNDARIES else "")
        random = random_twin_shares(tuple(phase_systems))
        # bcc iron has no annealing twins: in martensite and bainite 60 deg <111> is the
        # misorientation of two variants of one prior austenite grain (a block boundary).
        boundary = "no twin (bcc iron)" if looks_bcc_iron(entries.get(pid, {})) else "twin"
        for k, system in enumerate(phase_systems):
            n = int(counts[pid][k])
            rows.append({"phase": names.get(pid, str(pid)), "twin": system.name,
                         "angle_deg": round(system.reduced_angle_deg, 2),
                         "axis": "<111>" if system.laue == "m-3m" else ("<11-20>" if system.axis == _A_AXIS else "<10-10>"),
                         "tolerance_deg": round(system.tolerance_deg, 2), "n_segments": n, "length_um": n * edge_um,
                         "share": n / total if total else float("nan"), "n_boundary_segments": total,
                         "area_share": area[pid][k] / phase_points if phase_points else float("nan"),
                         "random_share": random[k], "n_grain_pairs": n_pairs, "reliable": not note, "note": note,
                         "boundary": boundary})
    columns = ["phase", "twin", "angle_deg", "axis", "tolerance_deg", "n_segments", "length_um", "share",
               "n_boundary_segments", "area_share", "random_share", "n_grain_pairs", "reliable", "note", "boundary"]
    table = pd.DataFrame(rows, columns=columns)
    # The merge the twinned area rests on (grain counts before and after), for callers that print it.
    table.attrs["merged"] = merged.attrs["parameters"] if merged is not None else "{}"
    return table


def merge_twins(
    ebsd: xr.Dataset,
    grains: Grains | xr.DataArray | np.ndarray,
    *,
    max_deviation_deg: float = BRANDON_SIGMA3_DEG,
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
