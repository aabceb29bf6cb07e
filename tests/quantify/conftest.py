"""Fixtures for the quantify tests: exact synthetic structures with known sizes."""

from __future__ import annotations

import numpy as np
import pytest


def draw_disks(shape, centres, radii) -> np.ndarray:
    """Instance map of exact digital disks (pixel centre inside the circle), ids from 1."""
    ids = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for k, ((cy, cx), r) in enumerate(zip(centres, radii, strict=True), start=1):
        ids[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = k
    return ids


@pytest.fixture
def disks():
    return draw_disks


def hexagonal_grains(shape, spacing_px: float, angle_deg: float = 0.0, origin=(0.3, 0.7)) -> np.ndarray:
    """Voronoi tessellation of a triangular lattice: regular hexagons of area (sqrt3/2) spacing²."""
    from scipy.spatial import cKDTree

    h, w = shape
    n = int(max(h, w) / spacing_px * 2) + 4
    i, j = np.mgrid[-n:n, -n:n]
    a = np.radians(angle_deg)
    px = spacing_px * (i + 0.5 * j)
    py = spacing_px * (np.sqrt(3) / 2 * j)
    cx = origin[1] + np.cos(a) * px - np.sin(a) * py
    cy = origin[0] + np.sin(a) * px + np.cos(a) * py
    pts = np.stack([cy.ravel(), cx.ravel()], axis=1)
    pts = pts[(pts[:, 0] > -2 * spacing_px) & (pts[:, 0] < h + 2 * spacing_px)
              & (pts[:, 1] > -2 * spacing_px) & (pts[:, 1] < w + 2 * spacing_px)]
    yy, xx = np.mgrid[:h, :w]
    _, nearest = cKDTree(pts).query(np.stack([yy.ravel(), xx.ravel()], axis=1))
    return nearest.reshape(h, w).astype(np.int64) + 1


@pytest.fixture
def hexagons():
    return hexagonal_grains
