"""Parent (prior austenite) grain reconstruction, OR fitting and variant analysis.

Works on child grains (the 5 deg grains of :func:`metallo.ebsd.grains`), not pixels:

1. **OR fit** (:func:`fit_orientation_relationship`). From child-child grain boundaries: for
   the current OR ``T`` every boundary gets the nearest variant pair (the pair of parent
   candidates of its two grains that agree best); with these assignments fixed, ``T`` is
   refined by robust least squares on the residual rotations; repeat while the inlier
   threshold shrinks (an ICP-style alternation). From parent/child boundaries (indexed
   retained austenite): each boundary misorientation, brought to the symmetric equivalent
   nearest ``T``, is an estimate of ``T``; their robust mean is the next ``T``.
2. **Graph** of child grains: an edge per grain boundary, weighted by how well the boundary
   fits a variant pair, ``w = erfc((fit - threshold) / (sqrt(2) tolerance)) / 2``
   (Niessen et al. 2022, the MTEX ``calcGraph`` weights).
3. **Clustering**: Markov clustering (van Dongen 2000) of the sparse weight matrix, then a
   **vote** per cluster for its parent orientation (proposals from well-fitting boundaries
   and retained austenite, each scored by the area of the cluster's grains it explains).
   Grains that do not fit their cluster's parent within ``tolerance_deg`` are released;
   released grains are clustered again, neighbouring clusters with the same parent
   orientation are merged, and left-over grains join the neighbouring parent they fit
   best (within ``tolerance_deg``). A parent supported by a single child grain is not
   trusted: such regions stay unreconstructed (-1), they are not forced.
4. **Variants**: each child grain's variant, packet and Bain group under its parent.

References: Niessen, Nyyssönen, Gazder, Hielscher, J. Appl. Cryst. 55 (2022) 180;
Nyyssönen et al., Metall. Mater. Trans. A 47 (2016) 2587; Germain et al., Acta Mater. 60
(2012) 4551; Cayron, J. Appl. Cryst. 40 (2007) 1183; van Dongen, PhD thesis, Utrecht (2000).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.special import erfc

from metallo._ebsd_dataset import phases_of
from metallo.ebsd._grains import Grains
from metallo.ebsd._grains import grains as reconstruct_grains
from metallo.ebsd._neighbours import (
    OrientationMap,
    first_neighbour_offsets,
    offset_pairs,
    orientation_map,
)
from metallo.ebsd._or import (
    OrientationRelationship,
    nearest_equivalent,
    or_angle,
    orientation_relationship,
)
from metallo.ebsd._rotations import (
    axis_angle_to_quat,
    quat_conjugate,
    quat_multiply,
    quat_normalize,
)
from metallo.ebsd._symmetry import (
    disorientation_cos_components,
    nearest_operator_quaternion,
    pair_product_components,
    symmetry_operators,
)
from metallo.errors import ConfigError, MetalloError

__all__ = [
    "ORFit",
    "ParentReconstruction",
    "ParentReconstructionError",
    "boundary_f1",
    "fit_orientation_relationship",
    "grain_parent_quantities",
    "parent_map",
    "reconstruct_parent",
    "substructure_sizes",
]

_CUBIC = "m-3m"
_CHUNK = 4096
#: Starting ORs of ``start="auto"``: the fit from each converges to ORs within a few degrees.
_AUTO_STARTS = ("KS", "NW", "GT")
_CHILD_WORDS = ("bcc", "bct", "ferrite", "martensite", "bainite", "alpha", "iron-alpha", "iron alpha")
_PARENT_WORDS = ("fcc", "austenite", "gamma")


class ParentReconstructionError(MetalloError, ValueError):
    """The map cannot be reconstructed (no cubic child phase, no boundary the OR explains)."""


def _angle(cos_half: np.ndarray) -> np.ndarray:
    return np.degrees(2.0 * np.arccos(np.clip(cos_half, -1.0, 1.0)))


# ---------------------------------------------------------------- phases and grain graph

def _phase_list(phases: list[dict[str, Any]]) -> str:
    return ", ".join(f"{p['id']}={p['name']} ({p['symmetry']})" for p in phases)


#: Cubic lattice parameters (Å) of bcc/bct iron (ferrite, martensite) and fcc iron (austenite),
#: alloyed steels included.
_BCC_A = (2.84, 2.92)
_FCC_A = (3.55, 3.66)


def _by_lattice(phases: list[dict[str, Any]], window: tuple[float, float]) -> list[int]:
    """Cubic phases whose lattice parameter lies in ``window`` (Å; a file in nm is read x10)."""
    out = []
    for p in phases:
        lattice = p.get("lattice") or []
        if p.get("symmetry") != _CUBIC or not lattice:
            continue
        a = float(lattice[0])
        if window[0] <= a <= window[1] or window[0] <= 10.0 * a <= window[1]:
            out.append(int(p["id"]))
    return out


def _phase_ids(ebsd: xr.Dataset, child_phase: Any, parent_phase: Any) -> tuple[list[int], list[int]]:
    phases = phases_of(ebsd)
    source = ebsd.attrs.get("source") or "EBSD map"

    def resolve(spec: Any, words: tuple[str, ...], role: str) -> list[int]:
        if spec is not None:
            specs = spec if isinstance(spec, list | tuple) else [spec]
            out = []
            for s in specs:
                hit = [int(p["id"]) for p in phases if (isinstance(s, str) and str(p["name"]).lower() == s.lower())
                       or (not isinstance(s, str) and int(p["id"]) == int(s))]
                if not hit:
                    raise ConfigError(f"{source}: no phase {s!r} for the {role}; phases: "
                                      f"{_phase_list(phases)}")
                out += hit
            return out
        return [int(p["id"]) for p in phases if any(w in str(p["name"]).lower() for w in words)]

    child = resolve(child_phase, _CHILD_WORDS, "child")
    parent = resolve(parent_phase, _PARENT_WORDS, "parent")
    # Names that say nothing ("Fe", "Iron", "Phase 1"): the lattice parameter of iron does.
    if not child and child_phase is None:
        child = [i for i in _by_lattice(phases, _BCC_A) if i not in parent]
    if not parent and parent_phase is None:
        parent = [i for i in _by_lattice(phases, _FCC_A) if i not in child]
    if not child and child_phase is None:
        cubic = [int(p["id"]) for p in phases if p["symmetry"] == _CUBIC and int(p["id"]) not in parent]
        child = cubic if len(cubic) == 1 else []
    if not child:
        cubic_any = any(p["symmetry"] == _CUBIC for p in phases)
        raise ParentReconstructionError(
            f"{source}: no bcc/bct child phase found (phases: "
            f"{_phase_list(phases) or 'none'}); "
            + ("name it with child_phase=" if cubic_any else
               "a parent-austenite reconstruction needs a cubic child phase (martensite, bainite, ferrite)"))
    for pid in child + parent:
        sym = next(p["symmetry"] for p in phases if int(p["id"]) == pid)
        if sym != _CUBIC:
            raise ParentReconstructionError(
                f"{source}: phase {pid} has symmetry {sym}; parent and child must be cubic (m-3m) "
                "(bct martensite, c/a near 1, is treated as cubic: read or label it m-3m)")
    return child, parent


def _grain_edges(omap: OrientationMap, ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique grain pairs (a < b) that share an edge, and their boundary length in pixel edges."""
    keys = []
    for off in first_neighbour_offsets(omap.grid):
        a, b = offset_pairs(omap.shape, omap.grid, off)
        ga, gb = ids[a], ids[b]
        keep = (ga != gb) & (ga >= 0) & (gb >= 0)
        lo = np.minimum(ga[keep], gb[keep]).astype(np.int64)
        hi = np.maximum(ga[keep], gb[keep]).astype(np.int64)
        keys.append(lo * n + hi)
    if not keys or not sum(k.size for k in keys):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    uniq, count = np.unique(np.concatenate(keys), return_counts=True)
    return uniq // n, uniq % n, count


def _best_pair(pa: np.ndarray, pb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For candidate sets ``(m, K, 4)`` and ``(m, L, 4)``: the smallest parent disorientation
    (degrees) over all candidate pairs, and the indices of that pair."""
    m, k = pa.shape[:2]
    l_ = pb.shape[1]
    fit = np.empty(m)
    ia = np.empty(m, dtype=np.int64)
    ib = np.empty(m, dtype=np.int64)
    step = max(1, _CHUNK * 64 // (k * l_))
    for s in range(0, m, step):
        a = np.moveaxis(pa[s:s + step], -1, 0)[:, :, :, None]
        b = np.moveaxis(pb[s:s + step], -1, 0)[:, :, None, :]
        c = disorientation_cos_components(pair_product_components(a, b), _CUBIC).reshape(a.shape[1], -1)
        best = np.argmax(c, axis=1)
        fit[s:s + step] = _angle(c[np.arange(c.shape[0]), best])
        ia[s:s + step], ib[s:s + step] = np.divmod(best, l_)
    return fit, ia, ib


def _fit_to(cands: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smallest disorientation (deg) between each grain's candidates ``(m, K, 4)`` and one
    target parent orientation per grain ``(m, 4)``, and the candidate index."""
    c = disorientation_cos_components(
        pair_product_components(np.moveaxis(cands, -1, 0), np.moveaxis(target, -1, 0)[:, :, None]), _CUBIC)
    k = np.argmax(c, axis=1)
    return _angle(c[np.arange(c.shape[0]), k]), k


def _align(q: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """The symmetric equivalents of ``q`` (m, 4) nearest ``ref`` (m, 4), sign-matched."""
    d = pair_product_components(q.T, ref.T).T
    eq = quat_multiply(quat_conjugate(nearest_operator_quaternion(d, _CUBIC)), q)
    return eq * np.where((eq * ref).sum(axis=1) < 0, -1.0, 1.0)[:, None]


@dataclass
class _GrainGraph:
    """Child (and retained-parent) grains, their candidates and the boundaries between them."""

    grains: Grains
    q: np.ndarray  # (n, 4) grain mean orientation
    area: np.ndarray  # (n,) pixels
    role: np.ndarray  # (n,) 1 child, 2 parent (retained), 0 other
    a: np.ndarray
    b: np.ndarray
    length: np.ndarray
    omap: OrientationMap  # the map's flat arrays (built once per graph)

    @property
    def n(self) -> int:
        return self.q.shape[0]


def _graph(ebsd: xr.Dataset, grains: Grains | None, child_phase: Any, parent_phase: Any,
           tolerance_deg: float) -> _GrainGraph:
    child, parent = _phase_ids(ebsd, child_phase, parent_phase)
    if not np.isin(np.asarray(ebsd["phase"].values), child).any():
        raise ParentReconstructionError(
            f"{ebsd.attrs.get('source') or 'EBSD map'}: no indexed point of the child phase(s) {child}")
    if grains is None:
        grains = reconstruct_grains(ebsd, tolerance_deg=tolerance_deg, min_size_px=1)
    omap = orientation_map(ebsd)
    table = grains.table
    n = len(table)
    ids = np.asarray(grains.ids.values).reshape(-1).astype(np.int64)
    phase = table["phase"].to_numpy()
    role = np.where(np.isin(phase, child), 1, np.where(np.isin(phase, parent), 2, 0)).astype(np.int8)
    if not (role == 1).any():
        raise ParentReconstructionError(f"{ebsd.attrs.get('source') or 'EBSD map'}: no grain of the child phase(s) {child}")
    a, b, length = _grain_edges(omap, ids, n)
    keep = (role[a] > 0) & (role[b] > 0)
    return _GrainGraph(grains, grains.mean_quaternions, table["n_pixels"].to_numpy(np.float64), role,
                       a[keep], b[keep], length[keep], omap)


def _candidates(g: _GrainGraph, orel: OrientationRelationship) -> np.ndarray:
    cand = orel.parent_candidates(g.q)
    retained = g.role == 2
    cand[retained] = g.q[retained][:, None, :]
    return cand


# ---------------------------------------------------------------------------- OR fitting

@dataclass
class ORFit:
    """A fitted orientation relationship and how well the map supports it.

    Attributes
    ----------
    orientation_relationship : OrientationRelationship
        The fitted OR.
    method : str
        ``"child-child"`` (variant-pair boundaries) or ``"parent-child"`` (retained austenite).
    misfit_quantiles_deg : dict
        Quantiles (0.1 ... 0.9) of the boundary misfits under the fitted OR.
    n_boundaries : int
        Boundaries used (inliers of the final iteration).
    deviation_from_ks_deg, deviation_from_nw_deg : float
        Angle between the fitted OR and KS / NW.
    start : str
        The starting OR of the winning fit (with ``start="auto"``: KS, NW or GT).
    converged : bool
    explained_fraction : float
        Fraction of the boundaries examined whose misfit is below ``explained_deg``.
    explained_deg : float
    iterations : int
    chance_fraction : float
        The fraction random (uncorrelated) misorientations reach under the same OR: a
        variant-pair set is dense (about a quarter of random KS boundaries lie within 5 deg
        of one), so ``explained_fraction`` means something only well above this.
    high_angle_explained_fraction : float
        Fraction of the high-angle (> 15 deg) edge-neighbour pixel pairs of the child phase
        whose misorientation lies within ``explained_deg`` of a variant-pair misorientation
        of the OR (a fixed-seed sample of at most ``max_boundaries`` pairs; no grain
        averaging): the pixel-level counterpart of ``explained_fraction``.
    n_high_angle_pairs : int
        High-angle pixel pairs evaluated.
    """

    orientation_relationship: OrientationRelationship
    method: str
    misfit_quantiles_deg: dict[str, float]
    n_boundaries: int
    deviation_from_ks_deg: float
    deviation_from_nw_deg: float
    start: str
    converged: bool
    explained_fraction: float
    explained_deg: float
    iterations: int = 0
    chance_fraction: float = float("nan")
    high_angle_explained_fraction: float = float("nan")
    n_high_angle_pairs: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "quaternion": [float(x) for x in self.orientation_relationship.rotation],
            "method": self.method, "start": self.start, "converged": self.converged,
            "iterations": self.iterations, "n_boundaries": self.n_boundaries,
            "misfit_quantiles_deg": self.misfit_quantiles_deg,
            "deviation_from_ks_deg": self.deviation_from_ks_deg,
            "deviation_from_nw_deg": self.deviation_from_nw_deg,
            "explained_fraction": self.explained_fraction, "explained_deg": self.explained_deg,
            "chance_fraction": self.chance_fraction,
            "high_angle_explained_fraction": self.high_angle_explained_fraction,
            "n_high_angle_pairs": self.n_high_angle_pairs,
        }


def _quantiles(x: np.ndarray) -> dict[str, float]:
    if not x.size:
        return {}
    qs = (0.1, 0.25, 0.5, 0.75, 0.9)
    return {f"q{int(q * 100)}": float(v) for q, v in zip(qs, np.quantile(x, qs), strict=True)}


def _boundary_pixel_pairs(ebsd: xr.Dataset, g: _GrainGraph, edges: np.ndarray,
                          max_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Orientations of pixel pairs across the given grain boundaries (child pixel first where
    one side is the parent phase), a fixed-seed sample of at most ``max_pairs``."""
    omap = g.omap
    ids = np.asarray(g.grains.ids.values).reshape(-1).astype(np.int64)
    n = g.n
    wanted = np.zeros(0, np.int64) if not edges.size else np.unique(g.a[edges] * n + g.b[edges])
    pa, pb = [], []
    for off in first_neighbour_offsets(omap.grid):
        a, b = offset_pairs(omap.shape, omap.grid, off)
        ga, gb = ids[a], ids[b]
        keep = (ga != gb) & (ga >= 0) & (gb >= 0)
        a, b, ga, gb = a[keep], b[keep], ga[keep], gb[keep]
        key = np.minimum(ga, gb) * n + np.maximum(ga, gb)
        hit = np.isin(key, wanted)
        a, b, ga = a[hit], b[hit], ga[hit]
        parent_first = g.role[ga] == 2
        pa.append(np.where(parent_first, b, a))
        pb.append(np.where(parent_first, a, b))
    a, b = np.concatenate(pa), np.concatenate(pb)
    if a.size > max_pairs:
        pick = np.sort(np.random.default_rng(0).choice(a.size, size=max_pairs, replace=False))
        a, b = a[pick], b[pick]
    return omap.q[a], omap.q[b]


def _chance_fraction(orel: OrientationRelationship, within_deg: float, n: int = 2000) -> float:
    """Fraction of random misorientations within ``within_deg`` of a variant pair (fixed seed)."""
    from metallo.ebsd._rotations import random_quaternions

    rng = np.random.default_rng(12345)
    a, b = random_quaternions(n, rng), random_quaternions(n, rng)
    fit, _, _ = _best_pair(orel.parent_candidates(a), orel.parent_candidates(b))
    return float((fit < within_deg).mean())


#: A boundary whose misfit under the OR is below this is explained by it (MTEX's usual 5 deg).
_EXPLAINED_DEG = 5.0
#: An OR is supported by a map when it explains this much more of the boundaries than chance.
_SUPPORT_MARGIN = 0.2


def _or_support(g: _GrainGraph, orel: OrientationRelationship, edge_fit: np.ndarray, or_fit: ORFit | None, *,
                min_grain_px: int) -> dict[str, Any]:
    """Whether the map's boundaries support the OR: the share of child/child boundaries between
    grains of at least ``min_grain_px`` points explained within 5 deg, against the share random
    misorientations reach. With fewer than 10 such boundaries (a map mostly of parent phase) the
    OR fit's own figure decides when there is one; with neither the OR counts as supported."""
    big = g.area >= min_grain_px
    cc = (g.role[g.a] == 1) & (g.role[g.b] == 1) & big[g.a] & big[g.b]
    chance = _chance_fraction(orel, _EXPLAINED_DEG)
    if cc.sum() >= 10:
        explained, n, basis = float((edge_fit[cc] < _EXPLAINED_DEG).mean()), int(cc.sum()), "child/child"
    elif or_fit is not None:
        explained, n, basis = or_fit.explained_fraction, or_fit.n_boundaries, "OR fit"
        chance = or_fit.chance_fraction if np.isfinite(or_fit.chance_fraction) else chance
    else:
        return {"supported": True, "basis": "none (fewer than 10 child/child boundaries)", "boundaries": int(cc.sum()),
                "explained_fraction": float("nan"), "chance_fraction": chance}
    return {"supported": bool(explained >= chance + _SUPPORT_MARGIN), "basis": basis, "boundaries": n,
            "explained_fraction": explained, "chance_fraction": chance}


def _high_angle_explained(ebsd: xr.Dataset, g: _GrainGraph, orel: OrientationRelationship, *,
                          within_deg: float, max_pairs: int, high_deg: float = 15.0) -> tuple[float, int]:
    """Fraction of high-angle child-child pixel pairs (a fixed-seed sample) that a variant
    pair of ``orel`` explains within ``within_deg``, and the number of pairs evaluated.
    Pixel pairs above the grain tolerance all cross a grain boundary, so the boundary pixel
    pairs of the child grains hold every one of them."""
    edges = np.flatnonzero((g.role[g.a] == 1) & (g.role[g.b] == 1))
    if not edges.size:
        return float("nan"), 0
    qa, qb = _boundary_pixel_pairs(ebsd, g, edges, 4 * max_pairs)
    ang = _angle(disorientation_cos_components(pair_product_components(qa.T, qb.T), _CUBIC))
    high = np.flatnonzero(ang > high_deg)
    if high.size > max_pairs:  # an unbiased subset (the pairs come ordered by neighbour direction)
        high = np.sort(np.random.default_rng(1).choice(high, size=max_pairs, replace=False))
    if not high.size:
        return float("nan"), 0
    # All 24 candidates of a fitted OR: merging near-equal variants would overstate misfits.
    exact = OrientationRelationship(orel.rotation, variant_tolerance_deg=1e-3)
    fit, _, _ = _best_pair(exact.parent_candidates(qa[high]), exact.parent_candidates(qb[high]))
    return float((fit < within_deg).mean()), int(high.size)


def _exp(omega: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(omega))
    return np.array([1.0, 0, 0, 0]) if angle < 1e-15 else axis_angle_to_quat(omega, angle)


def _fit_child_child(qa: np.ndarray, qb: np.ndarray, t0: np.ndarray, *, max_iter: int,
                     final_threshold_deg: float) -> tuple[np.ndarray, np.ndarray, bool, int]:
    from scipy.optimize import least_squares

    t = t0.copy()
    m = quat_multiply(qa, quat_conjugate(qb))  # child-frame boundary misorientations
    schedule = [10.0, 7.5, 5.0] + [final_threshold_deg] * max(1, max_iter - 3)
    converged = False
    it = 0
    for thr in schedule[:max_iter]:
        it += 1
        orel = OrientationRelationship(t)
        fit, ia, ib = _best_pair(orel.parent_candidates(qa), orel.parent_candidates(qb))
        inl = fit < thr
        if inl.sum() < 3:
            break
        p_ops = orel.parent_operators  # T^-1 S_c
        sa = quat_multiply(t[None], p_ops[ia[inl]])  # child operators
        sb = quat_multiply(t[None], p_ops[ib[inl]])
        a_rot = quat_multiply(sa, quat_multiply(m[inl], quat_conjugate(sb)))
        d = quat_multiply(quat_conjugate(t)[None], quat_multiply(a_rot, t[None]))
        sp = quat_conjugate(nearest_operator_quaternion(d, _CUBIC))

        def residual(omega: np.ndarray, sp: np.ndarray = sp, a_rot: np.ndarray = a_rot,
                     t: np.ndarray = t) -> np.ndarray:
            tt = quat_multiply(_exp(omega), t)
            r = quat_multiply(sp, quat_multiply(quat_conjugate(tt)[None], quat_multiply(a_rot, tt[None])))
            r = r * np.where(r[:, :1] < 0, -1.0, 1.0)
            return 2.0 * r[:, 1:].ravel()

        sol = least_squares(residual, np.zeros(3), loss="soft_l1", f_scale=np.radians(1.0), x_scale=np.radians(1.0))
        step = np.degrees(np.linalg.norm(sol.x))
        t = quat_normalize(quat_multiply(_exp(sol.x), t))
        if step < 1e-3 and thr == final_threshold_deg:
            converged = True
            break
    orel = OrientationRelationship(t)
    fit, _, _ = _best_pair(orel.parent_candidates(qa), orel.parent_candidates(qb))
    return t, fit, converged, it


def _parent_child_misfit(t: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Misfit (deg) of parent->child misorientations ``m = q_c q_p^-1`` to the OR ``t``, and
    each misorientation's symmetric equivalent nearest ``t`` (an estimate of ``t``)."""
    ops = symmetry_operators(_CUBIC)
    best_c = np.full(m.shape[0], -1.0)
    best_q = np.zeros_like(m)
    for s in ops:
        x = quat_multiply(m, s[None])  # m S_p, compare with S_c t
        d = quat_multiply(x, quat_conjugate(t)[None])
        c = disorientation_cos_components(np.ascontiguousarray(d.T), _CUBIC)
        better = c > best_c
        if better.any():
            best_c[better] = c[better]
            sc = nearest_operator_quaternion(d[better], _CUBIC)
            best_q[better] = quat_multiply(quat_conjugate(sc), x[better])
    best_q *= np.where((best_q @ t) < 0, -1.0, 1.0)[:, None]
    return _angle(best_c), best_q


def _fit_parent_child(qc: np.ndarray, qp: np.ndarray, t0: np.ndarray, *, max_iter: int,
                      final_threshold_deg: float) -> tuple[np.ndarray, np.ndarray, bool, int]:
    t = t0.copy()
    m = quat_multiply(qc, quat_conjugate(qp))
    schedule = [10.0, 7.5, 5.0] + [final_threshold_deg] * max(1, max_iter - 3)
    converged = False
    it = 0
    for thr in schedule[:max_iter]:
        it += 1
        fit, est = _parent_child_misfit(t, m)
        inl = fit < thr
        if inl.sum() < 1:
            break
        new = quat_normalize(est[inl].sum(axis=0))
        step = float(_angle(np.abs(new @ t)))
        t = new
        if step < 1e-3 and thr == final_threshold_deg:
            converged = True
            break
    fit, _ = _parent_child_misfit(t, m)
    return t, fit, converged, it


def fit_orientation_relationship(
    ebsd: xr.Dataset,
    *,
    start: str | OrientationRelationship | np.ndarray = "auto",
    grains: Grains | None = None,
    method: str = "auto",
    child_phase: Any = None,
    parent_phase: Any = None,
    grain_tolerance_deg: float = 5.0,
    min_grain_px: int = 3,
    max_boundaries: int = 5000,
    level: str = "grain",
    threshold_deg: float = 3.0,
    explained_deg: float = 5.0,
    max_iter: int = 30,
) -> ORFit:
    """Fit the parent-child orientation relationship to an EBSD map.

    Parameters
    ----------
    ebsd : xr.Dataset
        The transformed map (a cubic child phase; optionally indexed retained austenite).
    start : "auto", str, OrientationRelationship or quaternion
        Starting OR; ``"auto"`` (default) fits from KS, NW and GT and keeps the fit with the
        smallest truncated mean boundary misfit (one start converges to ORs within a few
        degrees of it). The result is the symmetric equivalent nearest the (first) start.
    grains : Grains, optional
        Child grains; reconstructed with ``grain_tolerance_deg`` when omitted.
    method : {"auto", "child-child", "parent-child"}
        Which boundaries to use; ``"auto"`` uses parent/child boundaries when there are at
        least 20 of them, else child/child boundaries.
    child_phase, parent_phase : name or id, optional
        Phases of the child (bcc) and parent (fcc); by default found by name.
    grain_tolerance_deg : float
        Grain tolerance for the grains (when ``grains`` is omitted).
    min_grain_px : int
        Grains smaller than this do not contribute boundaries.
    max_boundaries : int
        At most this many boundaries (``level="grain"``: the longest) or boundary pixel
        pairs (``level="pixel"``: a fixed-seed random sample) are used (speed).
    level : {"grain", "pixel"}
        Fit to the misorientations of grain mean orientations (default; little noise) or of
        pixel pairs across grain boundaries (no averaging over variants closer than the grain
        tolerance, e.g. GT's 3 deg pairs, but noisy: on 2 deg noise it is the less accurate).
    threshold_deg : float
        Final inlier threshold on the boundary misfit.
    explained_deg : float
        A boundary misfit below this counts as explained by the OR.
    max_iter : int
        Iterations of assignment + refinement (the M1700 martensite crop needs 17 to
        converge; synthetic maps 4-8). :attr:`ORFit.converged` says whether it settled.

    Returns
    -------
    ORFit

    Raises
    ------
    ParentReconstructionError
        No child phase, or too few boundaries to fit.

    Example
    -------
    >>> import metallo.synth as ms
    >>> m = ms.make_martensite(0, shape=(120, 120), n_parents=6)
    >>> fit = fit_orientation_relationship(m.ebsd)
    >>> fit.deviation_from_ks_deg < 0.5
    True
    """
    if isinstance(start, str) and start.lower() == "auto":
        starts = [orientation_relationship(n) for n in _AUTO_STARTS]
    else:
        starts = [orientation_relationship(start)]
    orel0 = starts[0]
    g = _graph(ebsd, grains, child_phase, parent_phase, grain_tolerance_deg)
    big = g.area >= min_grain_px
    pc = ((g.role[g.a] == 1) & (g.role[g.b] == 2)) | ((g.role[g.a] == 2) & (g.role[g.b] == 1))
    pc &= big[g.a] & big[g.b]
    cc = (g.role[g.a] == 1) & (g.role[g.b] == 1) & big[g.a] & big[g.b]
    if level not in ("pixel", "grain"):
        raise ConfigError(f"level must be 'pixel' or 'grain'; got {level!r}")
    if method not in ("auto", "child-child", "parent-child"):
        raise ConfigError(f"method must be 'auto', 'child-child' or 'parent-child'; got {method!r}")
    use_pc = method == "parent-child" or (method == "auto" and pc.sum() >= 20)
    source = ebsd.attrs.get("source") or "EBSD map"
    sel = np.flatnonzero(pc if use_pc else cc)
    if sel.size < (1 if use_pc else 10):
        raise ParentReconstructionError(
            f"{source}: only {sel.size} {'parent/child' if use_pc else 'child/child'} grain boundaries; "
            "too few to fit an orientation relationship")
    if level == "pixel":
        qa, qb = _boundary_pixel_pairs(ebsd, g, sel, max_boundaries)
    else:
        if sel.size > max_boundaries:
            sel = sel[np.argsort(-g.length[sel], kind="stable")[:max_boundaries]]
        qa, qb = g.q[g.a[sel]], g.q[g.b[sel]]
        if use_pc:
            swap = g.role[g.a[sel]] == 2  # parent first -> child first
            qa, qb = np.where(swap[:, None], qb, qa), np.where(swap[:, None], qa, qb)
    best: tuple[float, np.ndarray, np.ndarray, bool, int, str] | None = None
    for orel_s in starts:
        if use_pc:
            t, fit, converged, it = _fit_parent_child(qa, qb, orel_s.rotation, max_iter=max_iter,
                                                      final_threshold_deg=threshold_deg)
        else:
            t, fit, converged, it = _fit_child_child(qa, qb, orel_s.rotation, max_iter=max_iter,
                                                     final_threshold_deg=threshold_deg)
        # Truncated mean misfit: the start whose fit explains the boundaries best wins.
        cost = float(np.minimum(fit, explained_deg).mean())
        if best is None or cost < best[0] - 1e-9:
            best = (cost, t, fit, converged, it, orel_s.name)
    assert best is not None
    _, t, fit, converged, it, winner = best
    t = nearest_equivalent(t, orel0.rotation)
    name = f"fitted from {winner}"
    orel = OrientationRelationship(t, name=name)
    explained = float((fit < explained_deg).mean())
    chance = _chance_fraction(orel, explained_deg)
    high_frac, n_high = _high_angle_explained(ebsd, g, orel, within_deg=explained_deg, max_pairs=max_boundaries)
    result = ORFit(
        orientation_relationship=orel, method="parent-child" if use_pc else "child-child",
        misfit_quantiles_deg=_quantiles(fit[fit < max(threshold_deg, explained_deg) * 2]),
        n_boundaries=int((fit < threshold_deg).sum()),
        deviation_from_ks_deg=or_angle(orel, orientation_relationship("KS")),
        deviation_from_nw_deg=or_angle(orel, orientation_relationship("NW")),
        start=winner, converged=converged, explained_fraction=explained, explained_deg=float(explained_deg),
        iterations=it, chance_fraction=chance, high_angle_explained_fraction=high_frac,
        n_high_angle_pairs=n_high,
    )
    if explained < chance + _SUPPORT_MARGIN:
        warnings.warn(
            f"{source}: the fitted OR explains only {explained:.0%} of the boundaries within {explained_deg:g} deg "
            f"(random misorientations: {chance:.0%}); the map may not be a transformation product of this OR",
            UserWarning, stacklevel=2)
    return result


# ------------------------------------------------------------------------ reconstruction

def _mcl(w: sparse.csr_matrix, *, inflation: float, max_iter: int = 40, prune: float = 1e-4) -> np.ndarray:
    """Markov clustering of a symmetric non-negative weight matrix: cluster label per node."""
    n = w.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    m = (w + sparse.identity(n, format="csr")).tocsc()

    def normalise(x: sparse.csc_matrix) -> sparse.csc_matrix:
        s = np.asarray(x.sum(axis=0)).ravel()
        s[s == 0] = 1.0
        return (x @ sparse.diags(1.0 / s)).tocsc()

    m = normalise(m)
    for _ in range(max_iter):
        e = (m @ m).tocsc()
        e.data **= inflation
        e = normalise(e)
        e.data[e.data < prune] = 0.0
        e.eliminate_zeros()
        e = normalise(e)
        diff = abs(e - m)
        m = e
        if diff.nnz == 0 or diff.max() < 1e-6:
            break
    # Each node follows its strongest attractor; attractor systems are the clusters.
    m = m.tocsc()
    attractor = np.empty(n, dtype=np.int64)
    for j in range(n):
        lo, hi = m.indptr[j], m.indptr[j + 1]
        attractor[j] = m.indices[lo + int(np.argmax(m.data[lo:hi]))] if hi > lo else j
    link = sparse.coo_matrix((np.ones(n), (np.arange(n), attractor)), shape=(n, n))
    _, labels = connected_components(link, directed=False)
    return labels


@dataclass
class ParentReconstruction:
    """The result of :func:`reconstruct_parent`.

    Attributes
    ----------
    dataset : xr.Dataset
        Per pixel (y, x): ``parent_id`` (int32, -1 = not reconstructed), ``parent_quaternion``
        (y, x, 4; NaN where none), ``parent_euler`` (Bunge, radians), ``variant``,
        ``packet``, ``bain`` (int16, -1 = none), ``misfit`` (deg, child pixel vs its ideal
        variant), ``pag_boundary`` (uint8, 1 on the upper/left pixel of a PAG boundary pair).
        attrs: ``orientation_relationship`` and ``or_fit`` (JSON), ``parameters`` (JSON),
        ``quality`` (JSON: fractions reconstructed, misfit quantiles, warnings).
    parents : pd.DataFrame
        One row per parent grain: n_pixels, area_um2, ecd_um, n_child_grains, n_variants,
        n_packets, n_bain, misfit_median_deg, retained_fraction, q0..q3.
    children : pd.DataFrame
        One row per grain of the map: parent_id, variant, packet, bain, misfit_deg, role.
    orientation_relationship : OrientationRelationship
    or_fit : ORFit or None
    grains : Grains
        The child grains used.
    """

    dataset: xr.Dataset
    parents: pd.DataFrame
    children: pd.DataFrame
    orientation_relationship: OrientationRelationship
    or_fit: ORFit | None
    grains: Grains
    quality: dict[str, Any] = field(default_factory=dict)

    @property
    def parent_ids(self) -> np.ndarray:
        return np.asarray(self.dataset["parent_id"].values)


def _vote(g: _GrainGraph, cand: np.ndarray, labels: np.ndarray, fit: np.ndarray, ia: np.ndarray,
          ib: np.ndarray, *, tolerance_deg: float, threshold_deg: float, proposals: int = 6) -> np.ndarray:
    """Parent orientation per cluster (NaN where no proposal): proposals from well-fitting
    in-cluster boundaries (longest first) and retained-parent grains, scored by explained area."""
    n_cl = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
    out = np.full((n_cl, 4), np.nan)
    if n_cl == 0:
        return out
    # Proposals: well-fitting boundaries inside the cluster, and from the cluster to its
    # neighbours (the variants of one packet alone fit the parent and its 60 deg twin
    # equally; a boundary to another packet of the same parent tells them apart).
    la, lb = labels[g.a], labels[g.b]
    good = fit < threshold_deg
    prop_q, prop_c = [], []
    # (edges, the cluster's grain on them, its candidate index): inside edges once, cross
    # edges from both sides.
    inside = np.flatnonzero(good & (la >= 0) & (la == lb))
    out_a = np.flatnonzero(good & (la >= 0) & (la != lb))
    out_b = np.flatnonzero(good & (lb >= 0) & (la != lb))
    for e, grain, k in ((inside, g.a[inside], ia[inside]), (out_a, g.a[out_a], ia[out_a]),
                        (out_b, g.b[out_b], ib[out_b])):
        cl_e = labels[grain]
        score = g.length[e] * np.minimum(g.area[g.a[e]], g.area[g.b[e]])
        order = np.lexsort((-score, cl_e))  # best first within each cluster
        grain, k, cl_e = grain[order], k[order], cl_e[order]
        rank = np.arange(cl_e.size) - np.searchsorted(cl_e, cl_e)
        keep = rank < proposals
        prop_q.append(cand[grain[keep], k[keep]])
        prop_c.append(cl_e[keep])
    retained = np.flatnonzero((g.role == 2) & (labels >= 0))
    if retained.size:
        prop_q.append(g.q[retained])
        prop_c.append(labels[retained])
    pq = np.concatenate(prop_q)
    pc = np.concatenate(prop_c)
    if not pq.size:
        return out
    # Voters of each cluster: its grains (weight 1) and the grains next to it (weight 1/2,
    # they settle the parent when a few variants alone leave two solutions).
    ring = np.concatenate([np.stack([la, g.b], 1)[(la >= 0) & (lb != la)],
                           np.stack([lb, g.a], 1)[(lb >= 0) & (la != lb)]])
    ring = np.unique(ring, axis=0) if ring.size else np.zeros((0, 2), np.int64)
    own = np.flatnonzero(labels >= 0)
    voter_c = np.concatenate([labels[own], ring[:, 0]])
    voter_g = np.concatenate([own, ring[:, 1]])
    voter_w = np.concatenate([np.ones(own.size), np.full(ring.shape[0], 0.5)]) * g.area[voter_g]
    order = np.argsort(voter_c, kind="stable")
    voter_c, voter_g, voter_w = voter_c[order], voter_g[order], voter_w[order]
    starts = np.searchsorted(voter_c, np.arange(n_cl + 1))
    counts = starts[pc + 1] - starts[pc]
    prop_idx = np.repeat(np.arange(pq.shape[0]), counts)
    offs = np.arange(prop_idx.size) - np.repeat(np.cumsum(counts) - counts, counts)
    voter = starts[pc][prop_idx] + offs
    support = np.zeros(pq.shape[0])
    for s in range(0, prop_idx.size, _CHUNK * 16):
        pi, vi = prop_idx[s:s + _CHUNK * 16], voter[s:s + _CHUNK * 16]
        mis, _ = _fit_to(cand[voter_g[vi]], pq[pi])
        support += np.bincount(pi, weights=np.where(mis < tolerance_deg, voter_w[vi], 0.0), minlength=pq.shape[0])
    best = pd.Series(support).groupby(pc).idxmax()
    out[best.index.to_numpy()] = pq[best.to_numpy()]
    return out


def _refine(g: _GrainGraph, cand: np.ndarray, labels: np.ndarray, parent_q: np.ndarray, *,
            tolerance_deg: float, rounds: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Assign members within tolerance and re-average the parent orientation; returns
    (labels with misfits released to -1, parent_q, per-grain misfit)."""
    misfit = np.full(g.n, np.nan)
    for _ in range(rounds):
        ok = np.flatnonzero((labels >= 0) & np.isfinite(parent_q[np.maximum(labels, 0), 0]))
        if not ok.size:
            break
        mis, k = _fit_to(cand[ok], parent_q[labels[ok]])
        misfit[ok] = mis
        good = mis < tolerance_deg
        sel = ok[good]
        aligned = _align(cand[sel, k[good]], parent_q[labels[sel]])
        w = g.area[sel] * np.where(g.role[sel] == 2, 4.0, 1.0)
        total = np.stack([np.bincount(labels[sel], weights=aligned[:, c] * w, minlength=parent_q.shape[0])
                          for c in range(4)], axis=1)
        norm = np.linalg.norm(total, axis=1)
        upd = norm > 0
        parent_q[upd] = total[upd] / norm[upd, None]
    ok = np.flatnonzero((labels >= 0) & np.isfinite(parent_q[np.maximum(labels, 0), 0]))
    misfit[:] = np.nan
    if ok.size:
        mis, _ = _fit_to(cand[ok], parent_q[labels[ok]])
        misfit[ok] = mis
    released = ~(misfit < tolerance_deg)
    labels = np.where(released, -1, labels)
    return labels, parent_q, misfit


def _merge(g: _GrainGraph, labels: np.ndarray, parent_q: np.ndarray, *, merge_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge neighbouring clusters whose parent orientations agree within ``merge_deg``; a
    merged cluster starts from the parent orientation of its largest member cluster."""
    la, lb = labels[g.a], labels[g.b]
    e = (la >= 0) & (lb >= 0) & (la != lb)
    if not e.any():
        return labels, parent_q
    pairs = np.unique(np.stack([np.minimum(la[e], lb[e]), np.maximum(la[e], lb[e])], axis=1), axis=0)
    qa, qb = parent_q[pairs[:, 0]], parent_q[pairs[:, 1]]
    ang = _angle(disorientation_cos_components(pair_product_components(qa.T, qb.T), _CUBIC))
    join = pairs[ang < merge_deg]
    n_cl = parent_q.shape[0]
    link = sparse.coo_matrix((np.ones(join.shape[0]), (join[:, 0], join[:, 1])), shape=(n_cl, n_cl))
    _, comp = connected_components(link, directed=False)
    area = np.bincount(labels[labels >= 0], weights=g.area[labels >= 0], minlength=n_cl)
    order = np.lexsort((-area, comp))
    first = order[np.unique(comp[order], return_index=True)[1]]
    new_q = np.full((int(comp.max()) + 1, 4), np.nan)
    new_q[comp[first]] = parent_q[first]
    return np.where(labels >= 0, comp[np.maximum(labels, 0)], -1), new_q


def _absorb(g: _GrainGraph, cand: np.ndarray, labels: np.ndarray, parent_q: np.ndarray, *,
            tolerance_deg: float, explained: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """A cluster joins a neighbouring cluster whose parent orientation explains at least
    ``explained`` of its area: the variants of one packet (or block) fit several parents
    (e.g. the parent and its 60 deg twin), and only the neighbours tell which one."""
    la, lb = labels[g.a], labels[g.b]
    e = (la >= 0) & (lb >= 0) & (la != lb)
    if not e.any():
        return labels, parent_q
    pairs = np.unique(np.concatenate([np.stack([la[e], lb[e]], 1), np.stack([lb[e], la[e]], 1)]), axis=0)
    n_cl = parent_q.shape[0]
    area = np.bincount(labels[labels >= 0], weights=g.area[labels >= 0], minlength=n_cl)
    pairs = pairs[np.isfinite(parent_q[pairs[:, 1], 0]) & np.isfinite(parent_q[pairs[:, 0], 0])]
    if not pairs.size:
        return labels, parent_q
    members = np.flatnonzero(labels >= 0)
    order = members[np.argsort(labels[members], kind="stable")]
    starts = np.searchsorted(labels[order], np.arange(n_cl + 1))
    counts = starts[pairs[:, 0] + 1] - starts[pairs[:, 0]]
    pair_idx = np.repeat(np.arange(pairs.shape[0]), counts)
    offs = np.arange(pair_idx.size) - np.repeat(np.cumsum(counts) - counts, counts)
    grain = order[starts[pairs[pair_idx, 0]] + offs]
    mis, _ = _fit_to(cand[grain], parent_q[pairs[pair_idx, 1]])
    frac = np.bincount(pair_idx, weights=np.where(mis < tolerance_deg, g.area[grain], 0.0),
                       minlength=pairs.shape[0]) / area[pairs[:, 0]]
    # A joins B when B explains A, unless A explains B as well and is the larger one.
    key = pairs[:, 0] * n_cl + pairs[:, 1]
    rev = np.searchsorted(key, pairs[:, 1] * n_cl + pairs[:, 0])
    frac_rev = frac[np.minimum(rev, key.size - 1)]
    ok = (frac >= explained) & ((frac_rev < explained) | (area[pairs[:, 1]] > area[pairs[:, 0]]))
    if not ok.any():
        return labels, parent_q
    cand_pairs = pairs[ok]
    score = frac[ok] + 1e-9 * area[cand_pairs[:, 1]]
    best = np.lexsort((-score, cand_pairs[:, 0]))
    first = best[np.unique(cand_pairs[best, 0], return_index=True)[1]]
    target = np.arange(n_cl)
    target[cand_pairs[first, 0]] = cand_pairs[first, 1]
    # Follow chains A -> B -> C to their end.
    for _ in range(32):
        nxt = target[target]
        if np.array_equal(nxt, target):
            break
        target = nxt
    return np.where(labels >= 0, target[np.maximum(labels, 0)], -1), parent_q


def _neighbour_vote(g: _GrainGraph, cand: np.ndarray, labels: np.ndarray, parent_q: np.ndarray, *,
                    tolerance_deg: float, rounds: int = 6) -> np.ndarray:
    """Unassigned grains join the neighbouring parent they fit best (within tolerance)."""
    for _ in range(rounds):
        la, lb = labels[g.a], labels[g.b]
        e1 = (la < 0) & (lb >= 0)
        e2 = (lb < 0) & (la >= 0)
        grain = np.concatenate([g.a[e1], g.b[e2]])
        cl = np.concatenate([lb[e1], la[e2]])
        if not grain.size:
            break
        ok = np.isfinite(parent_q[cl, 0])
        grain, cl = grain[ok], cl[ok]
        mis, _ = _fit_to(cand[grain], parent_q[cl])
        good = mis < tolerance_deg
        if not good.any():
            break
        grain, cl, mis = grain[good], cl[good], mis[good]
        order = np.lexsort((mis, grain))
        first = np.unique(grain[order], return_index=True)[1]
        labels = labels.copy()
        labels[grain[order][first]] = cl[order][first]
    return labels


#: A child-to-parent misfit above this (degrees) merges neighbouring prior-austenite grains,
#: whose boundaries are high-angle ones (15 deg and more).
_PARENT_MERGE_WARN_DEG = 15.0


def _check_angles(**angles: float) -> None:
    """Refuse a reconstruction angle that is not a positive number of degrees (0 had crashed with
    an IndexError), and warn of a misfit tolerance that merges prior-austenite grains."""
    import warnings

    from metallo.ebsd._grains import check_tolerance

    for name, value in angles.items():
        # The grain tolerance also warns above 15 deg, as every grain reconstruction does.
        check_tolerance(value, name, warn=name == "grain_tolerance_deg")
    if float(angles["tolerance_deg"]) > _PARENT_MERGE_WARN_DEG:
        warnings.warn(f"tolerance_deg {float(angles['tolerance_deg']):g} deg: neighbouring parent orientations within "
                      f"it are merged, and prior-austenite grains meet at high-angle boundaries (above "
                      f"{_PARENT_MERGE_WARN_DEG:g} deg), so different parent grains are merged into one (5 deg is the "
                      "default)", UserWarning, stacklevel=3)


def reconstruct_parent(
    ebsd: xr.Dataset,
    orientation_relationship: str | OrientationRelationship | np.ndarray | ORFit = "fit",
    *,
    grains: Grains | None = None,
    child_phase: Any = None,
    parent_phase: Any = None,
    start: str | OrientationRelationship | np.ndarray = "auto",
    grain_tolerance_deg: float = 5.0,
    threshold_deg: float = 2.5,
    graph_tolerance_deg: float = 2.5,
    tolerance_deg: float = 5.0,
    inflation: float = 1.6,
    min_child_grains: int = 2,
    min_grain_px: int = 3,
    iterations: int = 3,
    refine: bool = True,
) -> ParentReconstruction:
    """Reconstruct the parent (prior austenite) grains of a transformed cubic map.

    Parameters
    ----------
    ebsd : xr.Dataset
        The map: a cubic child phase (bcc/bct), optionally indexed retained austenite (fcc).
    orientation_relationship : "fit", preset name, OrientationRelationship, quaternion or ORFit
        The OR; ``"fit"`` (default) fits it first with :func:`fit_orientation_relationship`
        starting from ``start``.
    grains : Grains, optional
        Child grains (default: :func:`metallo.ebsd.grains` with ``grain_tolerance_deg``,
        one-pixel grains kept).
    child_phase, parent_phase : name or id, optional
        Phases of child and parent; found by name (bcc/ferrite/martensite, fcc/austenite)
        when omitted.
    start : OR
        Starting OR of the fit.
    grain_tolerance_deg : float
        Tolerance of the child grains.
    threshold_deg, graph_tolerance_deg : float
        Graph weight ``erfc((fit - threshold) / (sqrt2 tolerance)) / 2`` of a boundary whose
        best variant-pair misfit is ``fit``.
    tolerance_deg : float
        Largest misfit of a child grain to its parent orientation (also the merge angle of
        neighbouring parents).
    inflation : float
        MCL inflation (larger: smaller clusters; merging of agreeing neighbours follows).
    min_child_grains : int
        A parent explained by fewer child grains (and no retained austenite) is not trusted
        and left unreconstructed.
    min_grain_px : int
        Smaller child grains (noise, single points) do not take part in the clustering;
        they join the neighbouring parent they fit at the end. The same holds for smaller
        retained-austenite grains: they neither seed nor vouch for a parent.
    iterations : int
        Rounds of re-clustering the grains released by the vote.
    refine : bool
        With an OR whose closest variants are nearer than the grain tolerance (GT, most
        fitted ORs between KS and NW): reconstruct again from the variant grains of a first
        reconstruction (regions of one parent and one variant), after refitting the OR on
        them if it was fitted (:attr:`ORFit.method` then says ``"variant grains"``).

    Returns
    -------
    ParentReconstruction

    Raises
    ------
    ParentReconstructionError
        No cubic child phase; nothing the OR explains.

    Example
    -------
    >>> import metallo.synth as ms
    >>> m = ms.make_martensite(0, shape=(120, 120), n_parents=6)
    >>> rec = reconstruct_parent(m.ebsd)
    >>> float((rec.parent_ids >= 0).mean()) > 0.9
    True
    """
    source = ebsd.attrs.get("source") or "EBSD map"
    _check_angles(tolerance_deg=tolerance_deg, threshold_deg=threshold_deg, graph_tolerance_deg=graph_tolerance_deg,
                  grain_tolerance_deg=grain_tolerance_deg)
    or_fit: ORFit | None = None
    if isinstance(orientation_relationship, ORFit):
        or_fit = orientation_relationship
        orel = or_fit.orientation_relationship
    elif isinstance(orientation_relationship, str) and orientation_relationship.lower() == "fit":
        or_fit = fit_orientation_relationship(ebsd, start=start, grains=grains, child_phase=child_phase,
                                              parent_phase=parent_phase, grain_tolerance_deg=grain_tolerance_deg)
        orel = or_fit.orientation_relationship
    else:
        orel = orientation_relationship_of(orientation_relationship)
    params = {
        "threshold_deg": threshold_deg, "graph_tolerance_deg": graph_tolerance_deg, "tolerance_deg": tolerance_deg,
        "inflation": inflation, "min_child_grains": min_child_grains, "min_grain_px": min_grain_px,
        "iterations": iterations, "grain_tolerance_deg": grain_tolerance_deg, "refine": refine,
    }

    def run(orel: OrientationRelationship, or_fit: ORFit | None, grains: Grains | None = grains, *,
            draft: bool = False) -> ParentReconstruction:
        return _reconstruct(ebsd, orel, or_fit, grains, child_phase, parent_phase, params, source, draft=draft)

    close = np.sort(orel.intervariant_angles())[1] < grain_tolerance_deg + 1.0
    # With refinement ahead the first pass is a draft: its per-pixel variants are not smoothed
    # (only the variant grains are read from it; without parents it has no variants at all).
    rec = run(orel, or_fit, draft=refine and close)
    if refine and close and len(rec.parents):
        # Variants closer than the grain tolerance share grains, and a grain mean of two
        # variants biases the fit and the parent: refit a fitted OR on the variant grains of
        # this first reconstruction, then reconstruct from variant grains.
        if or_fit is not None and or_fit.method == "child-child":
            refit = fit_orientation_relationship(ebsd, start=orel, grains=_variant_grains(ebsd, rec, orel),
                                                 child_phase=child_phase, parent_phase=parent_phase,
                                                 method="child-child")
            refit.start = or_fit.start
            refit.method = "child-child (variant grains)"
            orel, or_fit = refit.orientation_relationship, refit
        rec = run(orel, or_fit, _variant_grains(ebsd, rec, orel))
    for message in rec.quality["warnings"]:
        warnings.warn(message, UserWarning, stacklevel=2)
    return rec


def _variant_grains(ebsd: xr.Dataset, rec: ParentReconstruction, orel: OrientationRelationship) -> Grains:
    """Grains of equal (parent, per-pixel variant): one variant each, even where the child
    grains join variants closer than the grain tolerance."""
    from metallo.ebsd._grains import _mean_orientations, map_dataarray

    omap = orientation_map(ebsd)
    pid = np.asarray(rec.dataset["parent_id"].values).reshape(-1).astype(np.int64)
    pq = np.asarray(rec.dataset["parent_quaternion"].values).reshape(-1, 4)
    child = np.asarray(rec.dataset["variant"].values).reshape(-1) >= 0  # child pixels with a parent
    variant = np.full(omap.size, -1, dtype=np.int64)
    sel = np.flatnonzero(child & (pid >= 0))
    for s in range(0, sel.size, 1 << 18):
        part = sel[s:s + (1 << 18)]
        variant[part], _ = orel.variant_of(omap.q[part], pq[part])
    key = np.where(variant >= 0, pid * orel.n_variants + variant, -1)
    ids = _regions(key.reshape(omap.shape), omap.grid).reshape(-1)
    # Keep the child grains' phase everywhere else (retained austenite grains stay as they are).
    n = int(ids.max()) + 1 if (ids >= 0).any() else 0
    old = np.asarray(rec.grains.ids.values).reshape(-1).astype(np.int64)
    rest = (ids < 0) & (old >= 0)
    _, inv = np.unique(old[rest], return_inverse=True)
    ids[rest] = n + inv
    n = int(ids.max()) + 1 if (ids >= 0).any() else 0
    # Only what the reconstruction reads: phase, size, mean orientation.
    pix = ids >= 0
    phase = np.full(n, -1, dtype=np.int16)
    phase[ids[pix]] = omap.phase[pix]
    mean = _mean_orientations(omap, ids, n) if n else np.zeros((0, 4))
    table = pd.DataFrame({"phase": phase, "n_pixels": np.bincount(ids[pix], minlength=n)})
    for k in range(4):
        table[f"q{k}"] = mean[:, k]
    table.index.name = "grain_id"
    params = dict(rec.grains.parameters, variant_grains=True)
    return Grains(map_dataarray(ids.astype(np.int32), omap, "grain_id", params), table, params)


def _reconstruct(ebsd: xr.Dataset, orel: OrientationRelationship, or_fit: ORFit | None, grains: Grains | None,
                 child_phase: Any, parent_phase: Any, params: dict[str, Any], source: str, *,
                 draft: bool = False) -> ParentReconstruction:
    threshold_deg, graph_tolerance_deg = params["threshold_deg"], params["graph_tolerance_deg"]
    tolerance_deg, inflation = params["tolerance_deg"], params["inflation"]
    min_child_grains, min_grain_px = params["min_child_grains"], params["min_grain_px"]
    iterations, grain_tolerance_deg = params["iterations"], params["grain_tolerance_deg"]
    g = _graph(ebsd, grains, child_phase, parent_phase, grain_tolerance_deg)
    cand = _candidates(g, orel)
    fit, ia, ib = _best_pair(cand[g.a], cand[g.b])
    weight = 0.5 * erfc((fit - threshold_deg) / (np.sqrt(2.0) * graph_tolerance_deg))
    weight[fit > threshold_deg + 4 * graph_tolerance_deg] = 0.0
    usable = g.role > 0
    # Retained austenite below the minimum grain size is no seed either: an isolated fcc point
    # is far more often a mis-indexed martensite point (CI ~0) than an austenite island, and
    # as a seed each such point became a trusted one-pixel "parent" of its own.
    core = usable & (g.area >= min_grain_px)
    labels: np.ndarray = np.full(g.n, -1, dtype=np.int64)
    parent_q = np.zeros((0, 4))
    for _ in range(max(1, iterations)):
        free = core & (labels < 0)
        if not free.any():
            break
        e = free[g.a] & free[g.b] & (weight > 1e-3)
        idx = np.flatnonzero(free)
        local = np.full(g.n, -1, dtype=np.int64)
        local[idx] = np.arange(idx.size)
        w = sparse.coo_matrix((weight[e], (local[g.a[e]], local[g.b[e]])), shape=(idx.size, idx.size)).tocsr()
        w = w + w.T
        new = _mcl(w, inflation=inflation)
        offset = parent_q.shape[0]
        labels[idx] = new + offset
        new_q = _vote(g, cand, np.where(labels >= offset, labels - offset, -1), fit, ia, ib,
                      tolerance_deg=tolerance_deg, threshold_deg=threshold_deg)
        parent_q = np.vstack([parent_q, new_q])
        labels, parent_q, _ = _refine(g, cand, labels, parent_q, tolerance_deg=tolerance_deg)
        labels, parent_q = _merge(g, labels, parent_q, merge_deg=tolerance_deg)
        labels, parent_q = _absorb(g, cand, labels, parent_q, tolerance_deg=tolerance_deg)
        labels, parent_q = _compact(labels, parent_q)
        labels, parent_q, _ = _refine(g, cand, labels, parent_q, tolerance_deg=tolerance_deg)
    labels = _neighbour_vote(g, cand, labels, parent_q, tolerance_deg=tolerance_deg)
    labels, parent_q, misfit = _refine(g, cand, labels, parent_q, tolerance_deg=tolerance_deg, rounds=1)
    # Untrusted parents: too few child grains and no retained austenite.
    if labels.max(initial=-1) >= 0:
        n_cl = parent_q.shape[0]
        n_child = np.bincount(labels[(labels >= 0) & (g.role == 1)], minlength=n_cl)
        n_ret = np.bincount(labels[(labels >= 0) & (g.role == 2) & (g.area >= min_grain_px)], minlength=n_cl)
        weak = (n_child < min_child_grains) & (n_ret == 0)
        labels = np.where((labels >= 0) & weak[np.maximum(labels, 0)], -1, labels)
    labels, parent_q = _compact(labels, parent_q)
    return _result(ebsd, g, cand, labels, parent_q, orel, or_fit, fit, source, params, draft=draft)


def orientation_relationship_of(spec: str | OrientationRelationship | np.ndarray) -> OrientationRelationship:
    """:func:`metallo.ebsd.orientation_relationship` (the name is a parameter in this module)."""
    return orientation_relationship(spec)


def _compact(labels: np.ndarray, parent_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive labels (unused clusters dropped) and their parent orientations."""
    used = np.unique(labels[labels >= 0])
    new = np.full(parent_q.shape[0] + 1, -1, dtype=np.int64)
    new[used] = np.arange(used.size)
    return np.where(labels >= 0, new[np.maximum(labels, 0)], -1), parent_q[used]


def _result(ebsd: xr.Dataset, g: _GrainGraph, cand: np.ndarray, labels: np.ndarray, parent_q: np.ndarray,
            orel: OrientationRelationship, or_fit: ORFit | None, edge_fit: np.ndarray, source: str,
            params: dict[str, Any], *, draft: bool = False) -> ParentReconstruction:
    omap = g.omap
    ids = np.asarray(g.grains.ids.values).reshape(-1).astype(np.int64)
    n_par = parent_q.shape[0]
    # Per grain: variant under the parent (child grains), misfit.
    variant = np.full(g.n, -1, dtype=np.int16)
    g_misfit = np.full(g.n, np.nan)
    ch = np.flatnonzero((labels >= 0) & (g.role == 1))
    if ch.size:
        v, mis = orel.variant_of(g.q[ch], parent_q[labels[ch]])
        variant[ch], g_misfit[ch] = v, mis
    ret = np.flatnonzero((labels >= 0) & (g.role == 2))
    if ret.size:
        g_misfit[ret] = _angle(disorientation_cos_components(
            pair_product_components(g.q[ret].T, parent_q[labels[ret]].T), _CUBIC))
    packet = np.where(variant >= 0, orel.packet[np.maximum(variant, 0)], -1).astype(np.int16)
    bain = np.where(variant >= 0, orel.bain[np.maximum(variant, 0)], -1).astype(np.int16)
    # Per pixel.
    pid = np.where(ids >= 0, labels[np.maximum(ids, 0)], -1)
    pid = np.where(omap.phase >= 0, pid, -1)
    has = pid >= 0
    pq = np.full((omap.size, 4), np.nan)
    pq[has] = parent_q[pid[has]]
    pix_variant = np.where(has, variant[np.maximum(ids, 0)], -1).astype(np.int16)
    pix_misfit = np.full(omap.size, np.nan)
    sel = np.flatnonzero(pix_variant >= 0)
    # A draft (the first pass before variant grains) needs only which pixels have a variant.
    if not draft and sel.size and np.sort(orel.intervariant_angles())[1] < float(params["grain_tolerance_deg"]) + 1.0:
        pix_variant[sel] = _pixel_variants(omap, orel, sel, pq, float(params["tolerance_deg"]))
    if sel.size:
        ideal = quat_multiply(orel.variants[pix_variant[sel]], pq[sel])
        pix_misfit[sel] = _angle(disorientation_cos_components(pair_product_components(omap.qc[:, sel], ideal.T), _CUBIC))
    ny, nx = omap.shape
    pid2 = pid.reshape(ny, nx)
    pag_flat = np.zeros(omap.size, dtype=np.uint8)
    for off in first_neighbour_offsets(omap.grid):
        a, b = offset_pairs(omap.shape, omap.grid, off)
        diff = (pid[a] != pid[b]) & (pid[a] >= 0) & (pid[b] >= 0)
        pag_flat[a[diff]] = 1  # on the first pixel of the pair, as metallo.ebsd.boundaries
    pag = pag_flat.reshape(ny, nx)
    from metallo.ebsd._rotations import quat_to_euler

    euler = np.full((omap.size, 3), np.nan)
    euler[has] = quat_to_euler(pq[has])
    indexed = omap.phase >= 0
    # Child points only: indexed parent-phase points are parents by definition, and counting
    # them made a duplex ferrite/austenite map look 82 % reconstructed (66 % of its ferrite).
    child_pix = indexed & (ids >= 0) & (g.role[np.maximum(ids, 0)] == 1)
    frac = float(has[child_pix].mean()) if child_pix.any() else 0.0
    support = _or_support(g, orel, edge_fit, or_fit, min_grain_px=int(params["min_grain_px"]))
    quality: dict[str, Any] = {
        "reconstructed_fraction": frac,
        "n_parents": int(n_par),
        "pixel_misfit_quantiles_deg": _quantiles(pix_misfit[np.isfinite(pix_misfit)]),
        "boundary_fit_quantiles_deg": _quantiles(edge_fit[(g.role[g.a] == 1) & (g.role[g.b] == 1)]),
        "or_support": support,
        "warnings": [],
        "passed": frac >= 0.5 and support["supported"],
    }
    if frac < 0.5:
        quality["warnings"].append(
            f"{source}: only {frac:.0%} of the indexed child points got a parent; the OR may not fit this map "
            "(unreconstructed points are marked -1)")
    if not support["supported"]:
        quality["warnings"].append(
            f"{source}: the OR explains {support['explained_fraction']:.0%} of the {support['boundaries']} "
            f"boundaries within {_EXPLAINED_DEG:g} deg, where random misorientations reach "
            f"{support['chance_fraction']:.0%}: the map does not look like a transformation product of this OR, "
            "and its parent grains are not prior-austenite grains (reconstruction marked failed)")
    coords = {"y": omap.coords["y"], "x": omap.coords["x"]}
    attrs_p = {"parameters": json.dumps(params)}
    ds = xr.Dataset(
        {
            "parent_id": (("y", "x"), pid2.astype(np.int32)),
            "parent_quaternion": (("y", "x", "component"), pq.reshape(ny, nx, 4)),
            "parent_euler": (("y", "x", "angle"), euler.reshape(ny, nx, 3), {"units": "rad"}),
            "variant": (("y", "x"), pix_variant.reshape(ny, nx)),
            "packet": (("y", "x"), np.where(pix_variant >= 0, orel.packet[np.maximum(pix_variant, 0)], -1)
                       .astype(np.int16).reshape(ny, nx)),
            "bain": (("y", "x"), np.where(pix_variant >= 0, orel.bain[np.maximum(pix_variant, 0)], -1)
                     .astype(np.int16).reshape(ny, nx)),
            "misfit": (("y", "x"), pix_misfit.reshape(ny, nx).astype(np.float32), {"units": "deg"}),
            "pag_boundary": (("y", "x"), pag),
        },
        coords={**coords, "component": ["w", "x", "y", "z"], "angle": ["phi1", "Phi", "phi2"]},
        attrs={
            "orientation_relationship": json.dumps(orel.describe()),
            "or_fit": json.dumps(or_fit.to_dict() if or_fit else None),
            **attrs_p,
            "quality": json.dumps(quality),
            "source": str(source),
            "grid": omap.grid,
        },
    )
    children = pd.DataFrame({
        "parent_id": labels, "variant": variant, "packet": packet, "bain": bain, "misfit_deg": g_misfit,
        "role": np.array(["other", "child", "parent"])[g.role], "n_pixels": g.area.astype(np.int64),
    }, index=g.grains.table.index)
    parents = _parent_table(omap, pid, pix_variant, ds, parent_q, labels, g, g_misfit)
    return ParentReconstruction(ds, parents, children, orel, or_fit, g.grains, quality)


def _pixel_variants(omap: OrientationMap, orel: OrientationRelationship, sel: np.ndarray, pq: np.ndarray,
                    tolerance_deg: float, window: int = 3) -> np.ndarray:
    """Per-pixel variants where variants closer than the grain tolerance share a grain: the
    nearest variant of each pixel, then the majority in a ``window`` x ``window`` box where
    that majority variant still fits the pixel within ``tolerance_deg`` (noise of the order
    of the variant spacing flips single pixels)."""
    from scipy.ndimage import uniform_filter

    raw = np.full(omap.size, -1, dtype=np.int64)
    for s in range(0, sel.size, 1 << 18):
        part = sel[s:s + (1 << 18)]
        raw[part], _ = orel.variant_of(omap.q[part], pq[part])
    counts = np.stack([uniform_filter((raw == k).reshape(omap.shape).astype(np.float32), size=window).ravel()[sel]
                       for k in range(orel.n_variants)])
    major = np.argmax(counts, axis=0)
    ideal = quat_multiply(orel.variants[major], pq[sel])
    fits = _angle(disorientation_cos_components(pair_product_components(omap.qc[:, sel], ideal.T), _CUBIC))
    return np.where(fits < tolerance_deg, major, raw[sel]).astype(np.int16)


def _parent_table(omap: OrientationMap, pid: np.ndarray, pix_variant: np.ndarray, ds: xr.Dataset,
                  parent_q: np.ndarray, labels: np.ndarray, g: _GrainGraph, g_misfit: np.ndarray) -> pd.DataFrame:
    n = parent_q.shape[0]
    has = pid >= 0
    npx = np.bincount(pid[has], minlength=n)
    area = npx * omap.step_x * omap.step_y

    def distinct(values: np.ndarray) -> np.ndarray:
        ok = has & (values >= 0)
        if not ok.any():
            return np.zeros(n, dtype=np.int64)
        pairs = np.unique(pid[ok].astype(np.int64) * 1000 + values[ok])
        return np.bincount(pairs // 1000, minlength=n)

    pk = np.asarray(ds["packet"].values).ravel()
    bn = np.asarray(ds["bain"].values).ravel()
    retained = np.bincount(pid[has & (g.role[np.maximum(np.asarray(g.grains.ids.values).ravel(), 0)] == 2)],
                           minlength=n)
    grains_of = labels >= 0
    n_child = np.bincount(labels[grains_of & (g.role == 1)], minlength=n)
    med = pd.Series(g_misfit[grains_of]).groupby(labels[grains_of]).median().reindex(range(n)).to_numpy()
    table = pd.DataFrame({
        "n_pixels": npx, "area_um2": area, "ecd_um": 2 * np.sqrt(area / np.pi), "n_child_grains": n_child,
        "n_variants": distinct(pix_variant.astype(np.int64)), "n_packets": distinct(pk.astype(np.int64)),
        "n_bain": distinct(bn.astype(np.int64)), "misfit_median_deg": med,
        "retained_fraction": np.where(npx > 0, retained / np.maximum(npx, 1), 0.0),
    })
    for k in range(4):
        table[f"q{k}"] = parent_q[:, k] if n else np.zeros(0)
    table.index.name = "parent_id"
    return table


def boundary_f1(labels: np.ndarray, truth: np.ndarray, *, tolerance_px: float = 2.0) -> dict[str, float]:
    """Boundary precision, recall and F1 of a label map against a true label map.

    A boundary pixel is a pixel whose right or lower neighbour has another label (pixels with
    label -1 are ignored); a predicted boundary pixel is correct when a true one lies within
    ``tolerance_px`` (Euclidean), and vice versa.

    Parameters
    ----------
    labels, truth : ndarray (ny, nx) int

    tolerance_px : float

    Returns
    -------
    dict
        precision, recall, f1.

    Example
    -------
    >>> t = np.zeros((20, 20), int); t[:, 10:] = 1
    >>> p = np.zeros((20, 20), int); p[:, 11:] = 1
    >>> boundary_f1(p, t)["f1"]
    1.0
    """
    from scipy.ndimage import distance_transform_edt

    def edges(lab: np.ndarray) -> np.ndarray:
        out = np.zeros(lab.shape, bool)
        h = (lab[:, :-1] != lab[:, 1:]) & (lab[:, :-1] >= 0) & (lab[:, 1:] >= 0)
        v = (lab[:-1, :] != lab[1:, :]) & (lab[:-1, :] >= 0) & (lab[1:, :] >= 0)
        out[:, :-1] |= h
        out[:-1, :] |= v
        return out

    p, t = edges(np.asarray(labels)), edges(np.asarray(truth))
    if not p.any() or not t.any():
        both = float(p.any() == t.any())
        return {"precision": both, "recall": both, "f1": both}
    dt_t = distance_transform_edt(~t)
    dt_p = distance_transform_edt(~p)
    precision = float((dt_t[p] <= tolerance_px).mean())
    recall = float((dt_p[t] <= tolerance_px).mean())
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _regions(keys: np.ndarray, grid: str = "square") -> np.ndarray:
    """Connected regions (edge neighbours: 4 on a square, 6 on a hexagonal grid) of equal
    non-negative keys: region id per pixel, -1 elsewhere."""
    ny, nx = keys.shape
    flat = keys.reshape(-1)
    pairs = [offset_pairs((ny, nx), grid, off) for off in first_neighbour_offsets(grid)]
    a = np.concatenate([p[0] for p in pairs])
    b = np.concatenate([p[1] for p in pairs])
    join = (flat[a] == flat[b]) & (flat[a] >= 0)
    graph = sparse.coo_matrix((np.ones(int(join.sum()), np.int8), (a[join], b[join])), shape=(flat.size, flat.size))
    _, lab = connected_components(graph, directed=False)
    lab = np.where(flat >= 0, lab, -1)
    _, inv = np.unique(lab[lab >= 0], return_inverse=True)
    out = np.full(flat.size, -1, dtype=np.int64)
    out[lab >= 0] = inv
    return out.reshape(ny, nx)


def substructure_sizes(rec: ParentReconstruction, *, min_size_px: int = 2) -> pd.DataFrame:
    """Sizes of the packets (same parent and packet id) and blocks (same parent, packet and
    Bain group) of a reconstruction: connected regions on the pixel grid.

    Parameters
    ----------
    rec : ParentReconstruction
    min_size_px : int
        Regions with fewer pixels (noise) are left out.

    Returns
    -------
    pd.DataFrame
        One row per level (``packet``, ``block``, ``variant``): n_regions, mean_area_um2,
        mean_ecd_um, median_ecd_um.

    Example
    -------
    >>> import metallo.synth as ms
    >>> m = ms.make_martensite(0, shape=(80, 80), n_parents=4)
    >>> list(substructure_sizes(reconstruct_parent(m.ebsd, "KS")).index)
    ['packet', 'block', 'variant']
    """
    ds = rec.dataset
    pid = np.asarray(ds["parent_id"].values).astype(np.int64)
    pk = np.asarray(ds["packet"].values).astype(np.int64)
    bn = np.asarray(ds["bain"].values).astype(np.int64)
    vr = np.asarray(ds["variant"].values).astype(np.int64)
    ok = (pid >= 0) & (vr >= 0)
    grid = str(ds.attrs.get("grid", "square"))
    step_x = float(abs(ds["x"].values[1] - ds["x"].values[0])) if ds.sizes["x"] > 1 else 1.0
    step_y = float(abs(ds["y"].values[1] - ds["y"].values[0])) if ds.sizes["y"] > 1 else step_x
    rows = {}
    for level, key in (("packet", pid * 8 + pk), ("block", (pid * 8 + pk) * 4 + bn), ("variant", pid * 64 + vr)):
        lab = _regions(np.where(ok, key, -1), grid)
        area_px = np.bincount(lab[lab >= 0])
        area_px = area_px[area_px >= min_size_px]
        area = area_px * step_x * step_y
        ecd = 2 * np.sqrt(area / np.pi)
        rows[level] = {"n_regions": int(area.size), "mean_area_um2": float(area.mean()) if area.size else np.nan,
                       "mean_ecd_um": float(ecd.mean()) if ecd.size else np.nan,
                       "median_ecd_um": float(np.median(ecd)) if ecd.size else np.nan}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "level"
    return out


def parent_map(rec: ParentReconstruction, *, ebsd: xr.Dataset) -> xr.Dataset:
    """The reconstructed austenite as an EBSD map (layout of :func:`metallo.ebsd.ebsd_dataset`)
    with the variant maps as extra variables, so grains, IPF colours and grain size apply.

    Parameters
    ----------
    rec : ParentReconstruction
    ebsd : xr.Dataset
        The child map the reconstruction came from (grid, step, origin).

    Returns
    -------
    xr.Dataset
        Phase 1 = reconstructed parent, -1 = not reconstructed.

    Example
    -------
    >>> import metallo.synth as ms
    >>> m = ms.make_martensite(0, shape=(60, 60), n_parents=3)
    >>> pm = parent_map(reconstruct_parent(m.ebsd, "KS"), ebsd=m.ebsd)
    >>> sorted(v for v in pm.data_vars if v in ("euler", "phase", "variant"))
    ['euler', 'phase', 'variant']
    """
    from metallo._ebsd_dataset import ebsd_dataset

    ds = rec.dataset
    pid = np.asarray(ds["parent_id"].values)
    extra = {k: np.asarray(ds[k].values) for k in ("parent_id", "variant", "packet", "bain", "misfit", "pag_boundary")}
    out = ebsd_dataset(
        np.asarray(ds["parent_euler"].values), np.where(pid >= 0, 1, -1).astype(np.int16),
        step_um=float(ebsd.attrs["step_um"]), step_y_um=float(ebsd.attrs.get("step_y_um", ebsd.attrs["step_um"])),
        grid=str(ebsd.attrs.get("grid", "square")),
        phases=[{"id": 1, "name": "austenite (reconstructed parent)", "symmetry": _CUBIC, "lattice": []}],
        origin_um=(float(ebsd["y"].values[0]), float(ebsd["x"].values[0])), variables=extra,
        source=f"parent reconstruction of {ebsd.attrs.get('source') or 'EBSD map'}",
    )
    for key in ("orientation_relationship", "or_fit", "parameters", "quality"):
        out.attrs[key] = ds.attrs[key]
    return out


def grain_parent_quantities(ebsd: xr.Dataset, grains: Grains, *, reconstruction: ParentReconstruction | None = None,
                            explained_deg: float = 5.0, **options: Any) -> pd.DataFrame:
    """Per child grain: what its parent grain and its boundaries say about it.

    Columns (indexed by the grain ids of ``grains``): ``parent_variants`` and
    ``parent_packets`` (distinct variants / packets in the grain's parent grain),
    ``parent_fit`` (mean misfit of the grain's points to their ideal variant, deg),
    ``parent_fraction`` (share of the grain's points that got a parent) and
    ``or_boundary_fraction`` (share of the grain's boundary length to other child grains
    that a variant pair of the OR explains within ``explained_deg``). Lath martensite and
    bainite have many variants per parent and OR boundaries; polygonal ferrite, whose
    neighbours are unrelated, has neither (a random boundary fits KS within 5 deg about a
    quarter of the time).

    Parameters
    ----------
    ebsd : xr.Dataset
    grains : Grains
        The grains to describe (e.g. those of the annotation rules).
    reconstruction : ParentReconstruction, optional
        Made with ``reconstruct_parent(ebsd, **options)`` when omitted.
    explained_deg : float
    **options
        Keyword options of :func:`reconstruct_parent`.

    Returns
    -------
    pd.DataFrame

    Example
    -------
    >>> import metallo.synth as ms
    >>> from metallo.ebsd import grains
    >>> m = ms.make_martensite(0, shape=(80, 80), n_parents=4)
    >>> t = grain_parent_quantities(m.ebsd, grains(m.ebsd))
    >>> bool(t["or_boundary_fraction"].median() > 0.8)
    True
    """
    rec = reconstruction if reconstruction is not None else reconstruct_parent(ebsd, **options)
    ids = np.asarray(grains.ids.values).reshape(-1).astype(np.int64)
    n = len(grains.table)
    pid = np.asarray(rec.dataset["parent_id"].values).reshape(-1).astype(np.int64)
    has = pid >= 0

    def per_grain(values: np.ndarray) -> np.ndarray:
        keep = (ids >= 0) & np.isfinite(values)
        total = np.bincount(ids[keep], weights=values[keep], minlength=n)
        count = np.bincount(ids[keep], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    table = rec.parents
    nv = np.where(has, table["n_variants"].to_numpy(np.float64)[np.maximum(pid, 0)] if len(table) else 0.0, np.nan)
    npk = np.where(has, table["n_packets"].to_numpy(np.float64)[np.maximum(pid, 0)] if len(table) else 0.0, np.nan)
    out = pd.DataFrame({
        "parent_variants": per_grain(nv), "parent_packets": per_grain(npk),
        "parent_fit": per_grain(np.asarray(rec.dataset["misfit"].values, dtype=np.float64).reshape(-1)),
        "parent_fraction": per_grain(has.astype(np.float64)),
    }, index=grains.table.index)
    g = _graph(ebsd, grains, options.get("child_phase"), options.get("parent_phase"), 5.0)
    child_edge = (g.role[g.a] == 1) & (g.role[g.b] == 1)
    a, b, length = g.a[child_edge], g.b[child_edge], g.length[child_edge].astype(np.float64)
    orel = rec.orientation_relationship
    fit, _, _ = _best_pair(orel.parent_candidates(g.q[a]), orel.parent_candidates(g.q[b]))
    good = length * (fit < explained_deg)
    total = np.bincount(a, weights=length, minlength=n) + np.bincount(b, weights=length, minlength=n)
    hit = np.bincount(a, weights=good, minlength=n) + np.bincount(b, weights=good, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["or_boundary_fraction"] = np.where(total > 0, hit / np.maximum(total, 1e-300), np.nan)
    return out
