"""A ferrite + lath-bainite microstructure defined on the continuous specimen plane (µm).

Every grid (the EBSD map, the LOM and the SEM micrographs) samples the same continuous
model at its own points, so the truth is consistent between modalities by construction.

Geometry
    Polygonal ferrite grains are the Voronoi cells of seeds on a jittered square lattice
    (equiaxed, mean ECD about ``grain_size_um``). Cells are grouped into clusters (the
    nearest coarse seed, spacing ``cluster_size_um``, the prior austenite grains that
    transformed last); whole clusters become lath bainite until the area fraction inside
    the EBSD field is as close as possible to the requested one. A few cells of a bainite
    cluster stay polygonal ferrite (embedded ferrite, as in Durmaz et al. 2021, Fig. 1k-n).
Bainite blocks
    The bainite cells of a cluster are grouped into blocks (nearest block seed, spacing
    ``block_size_um``), so blocks have the irregular outlines of cell unions. Each block
    is one grain of parallel laths (lath direction and width per block, width drawn from
    ``lath_width_um``, slightly wavy). Each lath is rotated away from the block orientation
    by a small random rotation (lath-to-lath misorientation of about
    ``lath_misorientation_deg``), and the block carries an orientation gradient of
    ``gradient_deg_per_um`` about a fixed (per block) axis along the lath direction.

References
----------
.. [1] A. R. Durmaz, M. Müller, B. Lei, A. Thomas, D. Britz, E. A. Holm, C. Eberl, F. Mücklich,
   P. Gumbsch, "A deep learning approach for complex microstructure inference",
   Nature Communications 12, 6272 (2021). doi:10.1038/s41467-021-26565-5
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from metallo.ebsd import axis_angle_to_quat, quat_multiply, quat_normalize, random_quaternions
from metallo.synth._noise import hash_uniform, hash_unit_vectors

# Nearest cells examined per point, and points per vectorised chunk (bounds memory).
_K = 4
_CHUNK = 65536
# Fraction of the ferrite lattice seeds removed.
_DROPPED = 0.3

FERRITE, BAINITE = 0, 1
CLASSES = ["polygonal_ferrite", "lath_bainite"]


@dataclass
class PlaneSample:
    """The microstructure at a set of points of the specimen plane."""

    grain: np.ndarray  # int32 grain id (a ferrite cell or a bainite block)
    neighbour: np.ndarray  # int32 id of the grain across the nearest boundary
    neighbour_constituent: np.ndarray  # uint8, the constituent across that boundary
    constituent: np.ndarray  # uint8, FERRITE / BAINITE
    boundary_distance_um: np.ndarray  # distance to the nearest grain boundary
    lath: np.ndarray  # int64 lath index inside a bainite block (0 in ferrite)
    lath_boundary_distance_um: np.ndarray  # distance to the nearest lath boundary (inf in ferrite)
    along_um: np.ndarray  # position along the lath direction from the block seed


class Microstructure:
    """Voronoi ferrite grains and lath-bainite blocks on the specimen plane."""

    def __init__(
        self,
        rng: np.random.Generator,
        *,
        extent_um: tuple[float, float],
        field_points_um: np.ndarray,
        grain_size_um: float,
        cluster_size_um: float,
        block_size_um: float,
        bainite_fraction: float,
        embedded_ferrite: float,
        lath_width_um: tuple[float, float],
        lath_misorientation_deg: float,
        gradient_deg_per_um: float,
        margin_um: float,
    ) -> None:
        self.lath_misorientation_deg = float(lath_misorientation_deg)
        self.gradient_deg_per_um = float(gradient_deg_per_um)
        # Cell area = spacing**2 / (1 - dropped) and ECD = 2*sqrt(area/pi): spacing from the
        # requested ECD. Dropping lattice seeds at random widens the size distribution
        # (area CV ~0.35 instead of ~0.2) and breaks the honeycomb look of a pure lattice.
        spacing = grain_size_um * np.sqrt(np.pi) / 2.0 * np.sqrt(1.0 - _DROPPED)
        seeds = _jittered_lattice(rng, extent_um, margin_um, spacing, jitter=0.5)
        self.seeds = seeds[rng.random(len(seeds)) >= _DROPPED]
        n_cells = len(self.seeds)
        self._tree = cKDTree(self.seeds)
        coarse = _jittered_lattice(
            rng, extent_um, margin_um + cluster_size_um, cluster_size_um, jitter=0.45
        )
        cluster = cKDTree(coarse).query(self.seeds)[1].astype(np.int64)
        ferrite_in_cluster = rng.random(n_cells) < embedded_ferrite
        # A subsample of the field is plenty to steer the bainite fraction.
        stride = max(1, len(field_points_um) // 100_000)
        field_cells = self._tree.query(field_points_um[::stride], workers=-1)[1]
        bainite_cell = (
            _choose_clusters(rng, cluster, field_cells, ~ferrite_in_cluster, bainite_fraction)
            & ~ferrite_in_cluster
        )
        # A bainite block: the bainite cells of one cluster nearest to one block seed.
        block_seeds = _jittered_lattice(
            rng, extent_um, margin_um + block_size_um, block_size_um, jitter=0.45
        )
        block = cKDTree(block_seeds).query(self.seeds)[1].astype(np.int64)
        key = np.where(bainite_cell, cluster * len(block_seeds) + block, -1 - np.arange(n_cells))
        _, self.cell_grain = np.unique(key, return_inverse=True)
        self.cell_grain = self.cell_grain.astype(np.int32)
        n = int(self.cell_grain.max()) + 1
        self.n_grains = n
        counts = np.bincount(self.cell_grain, minlength=n).astype(float)
        self.centres = np.stack(
            [
                np.bincount(self.cell_grain, weights=self.seeds[:, c], minlength=n) / counts
                for c in (0, 1)
            ],
            axis=1,
        )
        self.n_cells = counts.astype(np.int64)
        self.cluster = np.zeros(n, np.int64)
        self.cluster[self.cell_grain] = cluster
        self.constituent = np.zeros(n, np.uint8)
        self.constituent[self.cell_grain[bainite_cell]] = BAINITE
        self.quaternions = random_quaternions(n, rng)
        self.lath_angle = rng.uniform(0.0, np.pi, n)
        self.lath_width_um = rng.uniform(lath_width_um[0], lath_width_um[1], n)
        self.lath_phase = rng.random(n)
        self.wave_um = rng.uniform(0.05, 0.15, n)
        self.wavelength_um = rng.uniform(3.0, 8.0, n)
        self.gradient_axis = hash_unit_vectors(np.arange(n), salt=int(rng.integers(2**31)))
        self._salt = int(rng.integers(2**31))

    def sample(self, points_um: np.ndarray) -> PlaneSample:
        """The microstructure at ``points_um`` (``(..., 2)`` as y, x in µm)."""
        shape = points_um.shape[:-1]
        pts = points_um.reshape(-1, 2)
        grain = np.empty(len(pts), np.int32)
        neighbour = np.empty(len(pts), np.int32)
        d_gb = np.empty(len(pts))
        for lo in range(0, len(pts), _CHUNK):
            sl = slice(lo, lo + _CHUNK)
            grain[sl], neighbour[sl], d_gb[sl] = self._nearest_boundary(pts[sl])
        g = grain
        constituent = self.constituent[g]
        rel = pts - self.centres[g]
        theta = self.lath_angle[g]
        along = rel[:, 0] * np.sin(theta) + rel[:, 1] * np.cos(theta)
        across = rel[:, 0] * np.cos(theta) - rel[:, 1] * np.sin(theta)
        across = across + self.wave_um[g] * np.sin(2 * np.pi * along / self.wavelength_um[g])
        u = across / self.lath_width_um[g] + self.lath_phase[g]
        lath = np.floor(u)
        frac = u - lath
        d_lath = self.lath_width_um[g] * np.minimum(frac, 1.0 - frac)
        bainite = constituent == BAINITE
        return PlaneSample(
            grain=g.reshape(shape),
            neighbour=neighbour.reshape(shape),
            neighbour_constituent=self.constituent[neighbour].reshape(shape),
            constituent=constituent.reshape(shape),
            boundary_distance_um=d_gb.reshape(shape),
            lath=np.where(bainite, lath, 0).astype(np.int64).reshape(shape),
            lath_boundary_distance_um=np.where(bainite, d_lath, np.inf).reshape(shape),
            along_um=along.reshape(shape),
        )

    def _nearest_boundary(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Grain, grain across the nearest boundary, and distance to that boundary.

        A grain is a union of Voronoi cells. The region of a foreign cell j lies in every
        half-plane "closer to s_j than to s_i", so its distance from p is at least
        max_i (d_j^2 - d_i^2) / (2 |s_j - s_i|) over the own-grain cells i; that bound is
        the distance to the shared Voronoi facet, exact wherever the facet is the nearest
        part of the boundary. Only the K nearest cells are considered.
        """
        dist, idx = self._tree.query(pts, k=_K, workers=-1)
        cell_grain = self.cell_grain[idx]
        own = cell_grain == cell_grain[:, :1]
        d2 = dist**2
        seeds = self.seeds[idx]
        # Own cell = the nearest one only (every ferrite grain): one bisector per neighbour.
        diff = seeds - seeds[:, :1]
        sep0 = np.sqrt(diff[..., 0] ** 2 + diff[..., 1] ** 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            bound = (d2 - d2[:, :1]) / (2.0 * sep0)
        multi = np.flatnonzero(own[:, 1:].any(axis=1))
        if len(multi):
            s, o = seeds[multi], own[multi]
            diff = s[:, None, :, :] - s[:, :, None, :]
            sep = np.sqrt(diff[..., 0] ** 2 + diff[..., 1] ** 2)
            with np.errstate(divide="ignore", invalid="ignore"):
                pair = (d2[multi][:, None, :] - d2[multi][:, :, None]) / (2.0 * sep)
            bound[multi] = np.where(o[:, :, None], pair, -np.inf).max(axis=1)
        bound = np.where(own, np.inf, bound)
        j = np.argmin(bound, axis=1)
        rows = np.arange(len(pts))
        d_gb = bound[rows, j]
        # Deep inside a large block no foreign cell is among the K nearest: at least this far.
        d_gb = np.where(np.isinf(d_gb), 0.5 * (dist[:, -1] - dist[:, 0]), d_gb)
        neighbour = np.where(own[rows, j], cell_grain[:, 0], cell_grain[rows, j])
        return cell_grain[:, 0].astype(np.int32), neighbour.astype(np.int32), d_gb

    def orientations(self, s: PlaneSample) -> np.ndarray:
        """Quaternions ``(..., 4)`` at the sampled points (no measurement noise)."""
        q = self.quaternions[s.grain]
        bainite = s.constituent == BAINITE
        if not bainite.any():
            return q
        g, k = s.grain[bainite], s.lath[bainite]
        lath_axis = hash_unit_vectors(g, k, salt=self._salt)
        # /sqrt(2): two neighbouring laths' random rotations add up to about the nominal angle.
        lath_angle = np.deg2rad(self.lath_misorientation_deg / np.sqrt(2.0)) * (
            0.6 + 0.4 * hash_uniform(g, k, salt=self._salt + 7)
        )
        grad_angle = np.deg2rad(self.gradient_deg_per_um) * s.along_um[bainite]
        dq = quat_multiply(
            axis_angle_to_quat(lath_axis, lath_angle),
            axis_angle_to_quat(self.gradient_axis[g], grad_angle),
        )
        q = q.copy()
        q[bainite] = quat_normalize(quat_multiply(q[bainite], dq))
        return q

    def grain_table(self) -> pd.DataFrame:
        """One row per grain: centre, constituent, cells, orientation, lath parameters."""
        q = self.quaternions
        return pd.DataFrame(
            {
                "y_um": self.centres[:, 0],
                "x_um": self.centres[:, 1],
                "constituent": self.constituent,
                "n_cells": self.n_cells,
                "cluster": self.cluster,
                "q0": q[:, 0],
                "q1": q[:, 1],
                "q2": q[:, 2],
                "q3": q[:, 3],
                "lath_direction_deg": np.rad2deg(self.lath_angle),
                "lath_width_um": self.lath_width_um,
                "gradient_axis_x": self.gradient_axis[:, 0],
                "gradient_axis_y": self.gradient_axis[:, 1],
                "gradient_axis_z": self.gradient_axis[:, 2],
            }
        ).rename_axis("grain_id")


def _jittered_lattice(
    rng: np.random.Generator,
    extent_um: tuple[float, float],
    margin_um: float,
    spacing: float,
    *,
    jitter: float,
) -> np.ndarray:
    """Seeds on a square lattice covering the extent plus margin, each moved by +-jitter*spacing."""
    ys = np.arange(-margin_um, extent_um[0] + margin_um + spacing, spacing)
    xs = np.arange(-margin_um, extent_um[1] + margin_um + spacing, spacing)
    grid = np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2)
    return grid + rng.uniform(-jitter, jitter, grid.shape) * spacing


def _choose_clusters(
    rng: np.random.Generator,
    cluster: np.ndarray,
    field_cells: np.ndarray,
    eligible: np.ndarray,
    fraction: float,
) -> np.ndarray:
    """Cells of the clusters made bainite so the bainite area in the field is closest to ``fraction``."""
    n_clusters = int(cluster.max()) + 1
    field_cluster = cluster[field_cells]
    area = np.bincount(field_cluster[eligible[field_cells]], minlength=n_clusters).astype(float)
    area /= len(field_cells)
    in_field = np.flatnonzero(np.bincount(field_cluster, minlength=n_clusters) > 0)
    order = rng.permutation(in_field)
    cumulative = np.concatenate([[0.0], np.cumsum(area[order])])
    k = int(np.argmin(np.abs(cumulative - fraction)))
    chosen = np.zeros(n_clusters, bool)
    chosen[order[:k]] = True
    # Clusters outside the field (the micrographs' margins) get bainite at the same rate.
    outside = np.setdiff1d(np.arange(n_clusters), in_field)
    chosen[outside] = rng.random(len(outside)) < fraction
    return chosen[cluster]
