"""Synthetic lath martensite / bainite with exact parent-austenite ground truth.

Geometry (all on a square EBSD grid):

- Prior austenite grains (PAGs) are Voronoi cells of random seeds, each with a random
  orientation.
- Each PAG is cut into packets (Voronoi cells of a few seeds inside it); a packet has one
  habit-plane group (packet id of the OR's variants) and a lath direction.
- A packet is a stack of parallel bands (blocks, ``block_width_um``) across the lath
  direction; successive blocks cycle through the packet's Bain groups, and each block is
  split into sub-blocks that alternate between the variants of that (packet, Bain group).
- Child orientation = variant rotation x parent orientation, then per-pixel noise (rotation
  vector with Gaussian components, RMS angle ``noise_deg``), unindexed points at random.
- Optional retained austenite: whole sub-blocks stay fcc (parent orientation + noise).
- Optional polygonal ferrite: whole PAGs are replaced by equiaxed ferrite grains with random,
  OR-unrelated orientations (a mixed microstructure for classification).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from scipy.spatial import cKDTree

from metallo.ebsd import (
    OrientationRelationship,
    axis_angle_to_quat,
    ebsd_dataset,
    quat_multiply,
    quat_to_euler,
    random_quaternions,
)
from metallo.ebsd import orientation_relationship as _or_from
from metallo.errors import ConfigError

__all__ = ["SynthMartensite", "make_martensite"]

CHILD_PHASE: dict[str, Any] = {"id": 1, "name": "Iron bcc (martensite)", "symmetry": "m-3m", "lattice": [2.87, 2.87, 2.87, 90.0, 90.0, 90.0]}
PARENT_PHASE: dict[str, Any] = {"id": 2, "name": "Iron fcc (austenite)", "symmetry": "m-3m", "lattice": [3.6, 3.6, 3.6, 90.0, 90.0, 90.0]}
#: Constituent codes of :attr:`SynthMartensite.constituent`.
CONSTITUENTS = ("polygonal_ferrite", "martensite", "retained_austenite")


@dataclass
class SynthMartensite:
    """A synthetic transformed map and its exact answers.

    Attributes
    ----------
    ebsd : xr.Dataset
        The map (phase 1 = bcc child, 2 = fcc retained austenite, -1 = unindexed).
    orientation_relationship : OrientationRelationship
        The OR used.
    parent_id : ndarray (ny, nx) int32
        True PAG id of every pixel (also under unindexed points).
    parent_quaternions : ndarray (n_parents, 4)
        True PAG orientations.
    variant, packet, bain : ndarray (ny, nx) int16
        True variant / packet / Bain-group id (index into the OR's variants for the stored
        parent orientation); -1 in retained austenite and polygonal ferrite.
    block : ndarray (ny, nx) int32
        True block id (one band of one packet), -1 outside martensite.
    constituent : ndarray (ny, nx) uint8
        Index into :data:`CONSTITUENTS`.
    """

    ebsd: xr.Dataset
    orientation_relationship: OrientationRelationship
    parent_id: np.ndarray
    parent_quaternions: np.ndarray
    variant: np.ndarray
    packet: np.ndarray
    bain: np.ndarray
    block: np.ndarray
    constituent: np.ndarray

    def score(self, reconstruction: Any) -> dict[str, float]:
        """Score a parent reconstruction of :attr:`ebsd` against the exact answers.

        Parameters
        ----------
        reconstruction : metallo.ebsd.ParentReconstruction
            The result of :func:`metallo.ebsd.reconstruct_parent` on this map.

        Returns
        -------
        dict
            ``or_error_deg`` (fitted vs true OR), ``parent_within_3deg`` (share of indexed
            pixels whose parent orientation is within 3° of the truth), ``pag_boundary_f1``
            (2-px tolerance), ``variant_correct`` (share of martensite pixels whose variant is
            right up to the parent's symmetry: the ideal child orientations are compared),
            ``n_parents_true``, ``n_parents_found``.

        Examples
        --------
        >>> from metallo.ebsd import fit_orientation_relationship, reconstruct_parent
        >>> m = make_martensite(0, shape=(60, 60), n_parents=4)
        >>> s = m.score(reconstruct_parent(m.ebsd, fit_orientation_relationship(m.ebsd)))
        >>> s["n_parents_true"]
        4
        """
        from metallo.ebsd import boundary_f1, misorientation_angle, or_angle

        rec, orel = reconstruction, self.orientation_relationship
        idx = self.ebsd["phase"].values >= 0
        pq = rec.dataset["parent_quaternion"].values
        tq = self.parent_quaternions[self.parent_id]
        ang = np.nan_to_num(misorientation_angle(pq[idx], tq[idx]), nan=180.0)
        vout = rec.dataset["variant"].values
        mart = idx & (self.variant >= 0)
        ok = mart & (vout >= 0)
        # Variant ids depend on which symmetric equivalent the parent is: compare the ideal
        # child orientations instead.
        ideal_out = quat_multiply(rec.orientation_relationship.variants[vout[ok]], pq[ok])
        ideal_true = quat_multiply(orel.variants[self.variant[ok]], tq[ok])
        thr = min(3.0, 0.5 * np.sort(orel.intervariant_angles())[1])
        return {
            "or_error_deg": or_angle(rec.orientation_relationship, orel),
            "parent_within_3deg": float((ang < 3.0).mean()),
            "pag_boundary_f1": boundary_f1(rec.parent_ids, self.parent_id)["f1"],
            "variant_correct": float((misorientation_angle(ideal_out, ideal_true) < thr).sum() / mart.sum()),
            "n_parents_true": int(self.parent_quaternions.shape[0]),
            "n_parents_found": len(rec.parents),
        }


def _noise(rng: np.random.Generator, n: int, noise_deg: float) -> np.ndarray:
    vec = rng.normal(scale=np.radians(noise_deg) / np.sqrt(3.0), size=(n, 3))
    angle = np.linalg.norm(vec, axis=1)
    return axis_angle_to_quat(np.where(angle[:, None] > 0, vec, [0.0, 0.0, 1.0]), angle)


def _nearest_seed_within(labels: np.ndarray, points: np.ndarray, seeds: np.ndarray, seed_label: np.ndarray) -> np.ndarray:
    """For each point, the index of the nearest seed that has the point's label."""
    out = np.full(points.shape[0], -1, dtype=np.int64)
    for lab in np.unique(labels):
        sel = np.flatnonzero(labels == lab)
        mine = np.flatnonzero(seed_label == lab)
        _, k = cKDTree(seeds[mine]).query(points[sel])
        out[sel] = mine[k]
    return out


def make_martensite(
    seed: int | np.random.Generator | None = 0,
    *,
    shape: tuple[int, int] = (240, 240),
    step_um: float = 0.25,
    n_parents: int = 24,
    orientation_relationship: str | OrientationRelationship | np.ndarray = "KS",
    packets_per_parent: tuple[int, int] = (2, 4),
    block_width_um: tuple[float, float] = (1.5, 3.0),
    sub_blocks: int = 2,
    noise_deg: float = 2.0,
    unindexed: float = 0.05,
    retained_austenite: float = 0.0,
    ferrite_parents: float = 0.0,
    ferrite_grain_um: float = 4.0,
) -> SynthMartensite:
    """A lath-martensite EBSD map transformed from known austenite grains with a known OR.

    Parameters
    ----------
    seed : int or Generator
        Random seed.
    shape : (ny, nx)
        Map size in points.
    step_um : float
        Step size.
    n_parents : int
        Number of prior austenite grains (Voronoi seeds inside the field).
    orientation_relationship : str, OrientationRelationship or quaternion
        The OR (``"KS"``, ``"NW"``, ``"GT"``, ``"Pitsch"``, ``"Bain"`` or custom).
    packets_per_parent : (min, max)
        Packets per PAG.
    block_width_um : (min, max)
        Block (band) width range.
    sub_blocks : int
        Sub-block bands per block (alternating between the block's variants).
    noise_deg : float
        RMS per-pixel orientation noise angle.
    unindexed : float
        Fraction of points left unindexed at random.
    retained_austenite : float
        Fraction of sub-blocks that stay fcc.
    ferrite_parents : float
        Fraction of PAGs replaced by polygonal ferrite (random orientations).
    ferrite_grain_um : float
        Mean spacing of the ferrite grains.

    Returns
    -------
    SynthMartensite

    Example
    -------
    >>> m = make_martensite(0, shape=(60, 60), n_parents=4)
    >>> m.ebsd["phase"].shape, m.parent_quaternions.shape
    ((60, 60), (4, 4))
    """
    rng = np.random.default_rng(seed)
    orel = _or_from(orientation_relationship)
    ny, nx = shape
    if n_parents < 1 or ny < 2 or nx < 2:
        raise ConfigError(f"need n_parents >= 1 and a map of at least 2 x 2; got {n_parents}, {shape}")
    yy, xx = np.mgrid[0:ny, 0:nx]
    pts = np.column_stack([yy.ravel(), xx.ravel()]).astype(np.float64) * step_um
    extent = np.array([ny, nx], float) * step_um
    # Parent seeds: random points with a minimum spacing (dart throwing), so cells are equiaxed.
    spacing = 0.6 * np.sqrt(extent.prod() / n_parents)
    seeds: list[np.ndarray] = []
    while len(seeds) < n_parents:
        point = rng.random(2) * extent
        if all(np.hypot(*(point - s)) > spacing for s in seeds) or rng.random() < 0.002:
            seeds.append(point)
    parent_seeds = np.array(seeds)
    parent = np.asarray(cKDTree(parent_seeds).query(pts)[1], dtype=np.int64)
    parent_q = random_quaternions(n_parents, rng)
    n = pts.shape[0]

    # Packets: Voronoi cells of seeds drawn inside each parent.
    pk_seed, pk_parent = [], []
    for p in range(n_parents):
        inside = np.flatnonzero(parent == p)
        k = int(rng.integers(packets_per_parent[0], packets_per_parent[1] + 1))
        k = max(1, min(k, inside.size))
        pk_seed.append(pts[rng.choice(inside, size=k, replace=False)])
        pk_parent.append(np.full(k, p))
    pk_seeds = np.vstack(pk_seed)
    pk_parent_arr = np.concatenate(pk_parent)
    packet_cell = _nearest_seed_within(parent, pts, pk_seeds, pk_parent_arr)
    n_cells = pk_seeds.shape[0]
    packets_present = np.unique(orel.packet)
    # The packets of one parent have different habit planes (one packet alone fits the
    # parent and its 60 deg twin equally: the parent would be undetermined).
    cell_packet = np.empty(n_cells, dtype=np.int64)
    for p in range(n_parents):
        cells = np.flatnonzero(pk_parent_arr == p)
        picks = rng.permutation(packets_present)
        cell_packet[cells] = picks[np.arange(cells.size) % picks.size]
    theta = np.asarray(rng.random(n_cells)) * np.pi
    width = np.asarray(rng.uniform(block_width_um[0], block_width_um[1], size=n_cells), dtype=np.float64)
    offset = np.asarray(rng.random(n_cells), dtype=np.float64) * 1e3
    normal = np.column_stack([np.cos(theta), np.sin(theta)])
    along = (pts * normal[packet_cell]).sum(axis=1) + offset[packet_cell]
    band = np.floor(along / width[packet_cell]).astype(np.int64)
    frac = along / width[packet_cell] - band
    sub = np.minimum((frac * sub_blocks).astype(np.int64), sub_blocks - 1)
    # Block -> Bain group (cycling), sub-block -> variant of that (packet, Bain group).
    pk = cell_packet[packet_cell]
    groups: dict[tuple[int, int], list[int]] = {}
    for v in range(orel.n_variants):
        groups.setdefault((int(orel.packet[v]), int(orel.bain[v])), []).append(v)
    bains_of = {p: sorted({b for (pp, b) in groups if pp == p}) for p in packets_present.tolist()}
    variant: np.ndarray = np.empty(n, dtype=np.int16)
    cell_shift = np.asarray(rng.integers(0, 1000, size=n_cells), dtype=np.int64)
    for p in packets_present.tolist():
        sel = np.flatnonzero(pk == p)
        bl = bains_of[p]
        bain_of_pixel = np.asarray(bl)[(band[sel] + cell_shift[packet_cell[sel]]) % len(bl)]
        for bb in bl:
            vs = np.asarray(groups[(p, bb)])
            m = bain_of_pixel == bb
            variant[sel[m]] = vs[(sub[sel[m]] + band[sel[m]]) % len(vs)]
    block_key = packet_cell * 100_000 + band
    _, block = np.unique(block_key, return_inverse=True)
    block = block.astype(np.int32)

    constituent = np.ones(n, dtype=np.uint8)
    q = quat_multiply(orel.variants[variant], parent_q[parent])
    phase = np.full(n, CHILD_PHASE["id"], dtype=np.int16)
    if ferrite_parents > 0:
        n_f = int(round(ferrite_parents * n_parents))
        fp = rng.choice(n_parents, size=n_f, replace=False)
        fer = np.isin(parent, fp)
        count = max(1, int(fer.sum() * step_um**2 / ferrite_grain_um**2))
        f_seeds = pts[rng.choice(np.flatnonzero(fer), size=min(count, int(fer.sum())), replace=False)]
        _, fcell = cKDTree(f_seeds).query(pts[fer])
        q[fer] = random_quaternions(f_seeds.shape[0], rng)[fcell]
        constituent[fer] = 0
    if retained_austenite > 0:
        sub_key = block.astype(np.int64) * sub_blocks + sub
        keys = np.unique(sub_key[constituent == 1])
        chosen = keys[rng.random(keys.size) < retained_austenite]
        ra = np.isin(sub_key, chosen) & (constituent == 1)
        q[ra] = parent_q[parent[ra]]
        phase[ra] = PARENT_PHASE["id"]
        constituent[ra] = 2
    q = quat_multiply(_noise(rng, n, noise_deg), q) if noise_deg > 0 else q
    martensite = constituent == 1
    variant = np.where(martensite, variant, -1).astype(np.int16)
    packet = np.where(martensite, orel.packet[np.maximum(variant, 0)], -1).astype(np.int16)
    bain = np.where(martensite, orel.bain[np.maximum(variant, 0)], -1).astype(np.int16)
    block = np.where(martensite, block, -1).astype(np.int32)
    lost = rng.random(n) < unindexed
    phase[lost] = -1
    euler = quat_to_euler(q)
    euler[lost] = np.nan
    phases = [CHILD_PHASE] + ([PARENT_PHASE] if retained_austenite > 0 else [])
    ebsd = ebsd_dataset(
        euler.reshape(ny, nx, 3), phase.reshape(ny, nx), step_um=step_um, phases=phases,
        variables={"ci": np.where(lost, 0.0, 0.9).reshape(ny, nx)},
        source=f"metallo.synth.make_martensite(seed, OR={orel.name}, noise={noise_deg} deg)",
    )
    r = (ny, nx)
    return SynthMartensite(
        ebsd=ebsd, orientation_relationship=orel, parent_id=parent.reshape(r).astype(np.int32),
        parent_quaternions=parent_q, variant=variant.reshape(r), packet=packet.reshape(r),
        bain=bain.reshape(r), block=block.reshape(r), constituent=constituent.reshape(r),
    )

