"""``make_particles``: a spheroidite-like dispersion of round particles with known sizes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage
from scipy.spatial import cKDTree

from metallo._xarray import image_dataarray
from metallo.errors import ConfigError
from metallo.synth._noise import shot_and_read_noise, smooth_noise, to_uint8

__all__ = ["SynthParticles", "make_particles"]

# Centre distance of a touching pair as a fraction of r1 + r2: a slight overlap, so that the
# pair shares a neck of a few pixels as sintered spheroidite particles do, and does not
# depend on how the contact point falls on the pixel grid.
_CONTACT = 0.92


@dataclass
class SynthParticles:
    """A synthetic particle micrograph and its truth.

    Attributes
    ----------
    image : xr.DataArray
        uint8 SE-like micrograph: bright particles on a darker textured matrix, with noise.
    labels : ndarray (y, x) int32
        Particle id of each pixel (1..n), 0 = matrix. Touching pairs have different ids.
    mask : ndarray (y, x) bool
        ``labels > 0``.
    table : pd.DataFrame
        One row per particle (index ``particle_id``): ``radius_um``, ``area_um2`` (pi r^2),
        ``ecd_um`` (2 r), ``centroid_y_um``, ``centroid_x_um``, ``touching``, ``partner``
        (id of the touching partner, 0 if none) and ``n_pixels`` (its pixels in ``labels``).
    """

    image: xr.DataArray
    labels: np.ndarray
    mask: np.ndarray
    table: pd.DataFrame


def make_particles(
    shape: tuple[int, int] = (512, 512),
    *,
    pixel_size_um: float = 0.1,
    n_particles: int = 200,
    radius_um: tuple[float, float] = (0.3, 0.15),
    touching_fraction: float = 0.2,
    seed: int = 0,
) -> SynthParticles:
    """Make a micrograph of round particles with log-normal radii and known touching pairs.

    Particles lie wholly inside the image, one object (a single particle or a touching pair)
    per cell of a regular grid, jittered inside its cell, so that only the designated pairs
    touch. Radii are log-normal, truncated to [1.5 px, what fits a cell].

    Parameters
    ----------
    shape : (int, int)
        Image size (rows, columns).
    pixel_size_um : float
        Pixel size in µm.
    n_particles : int
        Number of particles.
    radius_um : (float, float)
        Log-normal radius distribution: (median in µm, sigma of ln r).
    touching_fraction : float
        Fraction of the particles that belong to a touching pair (0-1).
    seed : int
        Random seed.

    Returns
    -------
    SynthParticles

    Examples
    --------
    >>> p = make_particles((128, 128), n_particles=20, seed=1)
    >>> int(p.labels.max())
    20
    """
    if not 0.0 <= touching_fraction <= 1.0:
        raise ConfigError(f"touching_fraction must be in [0, 1]; got {touching_fraction}")
    if n_particles < 1 or pixel_size_um <= 0 or radius_um[0] <= 0 or radius_um[1] < 0:
        raise ConfigError(
            "n_particles must be >= 1, pixel_size_um and the median radius positive, sigma >= 0"
        )
    rng = np.random.default_rng(seed)
    ps = float(pixel_size_um)
    height, width = (shape[0] - 1) * ps, (shape[1] - 1) * ps
    n_pairs = int(round(touching_fraction * n_particles / 2.0))
    n_objects = n_particles - n_pairs
    cell = np.sqrt(height * width / n_objects)
    n_rows = max(int(height / cell), 1)
    n_cols = int(np.ceil(n_objects / n_rows))
    cell_h, cell_w = height / n_rows, width / n_cols
    gap = 2.0 * ps
    room = 0.5 * min(cell_h, cell_w) - gap
    r_min = 1.5 * ps
    # A pair needs about twice the room of a single particle.
    r_max = np.where(np.arange(n_objects) < n_pairs, room / 2.0, room)
    if room / 2.0 < r_min or radius_um[0] > room:
        raise ConfigError(
            f"{n_particles} particles of median radius {radius_um[0]} µm do not fit a "
            f"{shape[0]} x {shape[1]} image at {ps} µm/px; use fewer or smaller particles"
        )
    r1 = _truncated_lognormal(rng, radius_um, r_min, r_max)
    r2 = _truncated_lognormal(rng, radius_um, r_min, r_max)
    pair = np.arange(n_objects) < n_pairs
    direction = rng.uniform(0.0, 2.0 * np.pi, n_objects)
    u = np.stack([np.sin(direction), np.cos(direction)], axis=1)
    dist = _CONTACT * (r1 + r2)
    off1 = -(dist * r1 / (r1 + r2))[:, None] * u
    off2 = (dist * r2 / (r1 + r2))[:, None] * u
    extent = np.where(pair, np.maximum(dist * r1 / (r1 + r2) + r1, dist * r2 / (r1 + r2) + r2), r1)
    slots = rng.choice(n_rows * n_cols, n_objects, replace=False)
    centre = np.stack([(slots // n_cols + 0.5) * cell_h, (slots % n_cols + 0.5) * cell_w], axis=1)
    free = np.stack([0.5 * cell_h - extent - gap / 2, 0.5 * cell_w - extent - gap / 2], axis=1)
    centre = centre + rng.uniform(-1.0, 1.0, (n_objects, 2)) * np.clip(free, 0.0, None)
    centres = np.concatenate(
        [centre + np.where(pair[:, None], off1, 0.0), centre[pair] + off2[pair]]
    )
    radii = np.concatenate([r1, r2[pair]])
    partner: np.ndarray = np.zeros(n_particles, np.int64)
    first = np.flatnonzero(pair)
    second = n_objects + np.arange(n_pairs)
    partner[first], partner[second] = second + 1, first + 1
    # Ids in random order, so that pair members are not recognisable by their ids.
    order = rng.permutation(n_particles)
    centres, radii = centres[order], radii[order]
    new_id = np.empty(n_particles, np.int64)
    new_id[order] = np.arange(1, n_particles + 1)
    partner = np.where(partner[order] > 0, new_id[np.maximum(partner[order] - 1, 0)], 0)
    labels, coverage, depth = _rasterise(shape, ps, centres, radii)
    image = _render_particles(rng, coverage, depth, ps)
    attrs = {
        "modality": "SEM",
        "source": f"metallo.synth.make_particles seed={seed}",
        "sha256": hashlib.sha256(image.tobytes()).hexdigest(),
    }
    table = pd.DataFrame(
        {
            "radius_um": radii,
            "area_um2": np.pi * radii**2,
            "ecd_um": 2.0 * radii,
            "centroid_y_um": centres[:, 0],
            "centroid_x_um": centres[:, 1],
            "touching": partner > 0,
            "partner": partner,
            "n_pixels": np.bincount(labels.ravel(), minlength=n_particles + 1)[1:],
        },
        index=pd.RangeIndex(1, n_particles + 1, name="particle_id"),
    )
    return SynthParticles(
        image=image_dataarray(image, pixel_size_um=ps, name="particles", attrs=attrs),
        labels=labels,
        mask=labels > 0,
        table=table,
    )


def _truncated_lognormal(
    rng: np.random.Generator, radius_um: tuple[float, float], low: float, high: np.ndarray
) -> np.ndarray:
    """Log-normal radii redrawn until they lie in [low, high] (high per object)."""
    median, sigma = radius_um
    r = median * np.exp(sigma * rng.standard_normal(len(high)))
    for _ in range(200):
        bad = (r < low) | (r > high)
        if not bad.any():
            break
        r[bad] = median * np.exp(sigma * rng.standard_normal(int(bad.sum())))
    return np.clip(r, low, high)


def _rasterise(
    shape: tuple[int, int], ps: float, centres: np.ndarray, radii: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Particle id, anti-aliased coverage and depth inside the particle (µm) of every pixel."""
    yy, xx = np.meshgrid(np.arange(shape[0]) * ps, np.arange(shape[1]) * ps, indexing="ij")
    pts = np.stack([yy.ravel(), xx.ravel()], axis=1)
    k = min(6, len(radii))
    dist, idx = cKDTree(centres).query(pts, k=k)
    dist, idx = dist.reshape(len(pts), k), idx.reshape(len(pts), k)
    # The particle a pixel belongs to is the one it is deepest inside, relative to its size:
    # in the neck of a touching pair this splits the overlap along a smooth curve.
    scaled = dist / radii[idx]
    best = np.argmin(scaled, axis=1)
    rows = np.arange(len(pts))
    who, d = idx[rows, best], dist[rows, best]
    depth = radii[who] - d
    labels = np.where(depth >= 0.0, who + 1, 0).astype(np.int32).reshape(shape)
    coverage = np.clip(depth / ps + 0.5, 0.0, 1.0).reshape(shape)
    return labels, coverage, depth.reshape(shape)


def _render_particles(
    rng: np.random.Generator, coverage: np.ndarray, depth: np.ndarray, ps: float
) -> np.ndarray:
    """SE-like contrast: bright cementite with a brighter rim on a mottled ferrite matrix."""
    matrix = 0.32 + 0.03 * smooth_noise(coverage.shape, 3.0, rng)
    rim = np.exp(-((np.clip(depth, 0.0, None) / max(0.06, ps)) ** 2))
    particle = 0.70 + 0.15 * rim
    image = matrix * (1.0 - coverage) + particle * coverage
    image = ndimage.gaussian_filter(image, 0.8)
    image = shot_and_read_noise(image, photons=120.0, read_sigma=0.02, rng=rng)
    return to_uint8(image)
