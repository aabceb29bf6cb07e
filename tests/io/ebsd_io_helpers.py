"""Shared fixtures of the EBSD reader/writer tests."""

from __future__ import annotations

import numpy as np
import xarray as xr

from metallo.ebsd import ebsd_dataset


def synthetic(grid: str) -> xr.Dataset:
    """A 9 x 11 two-phase map (Ti 6/mmm, beta m-3m) with unindexed points, off-origin."""
    rng = np.random.default_rng(7)
    ny, nx = 9, 11
    euler = rng.random((ny, nx, 3)) * [2 * np.pi, np.pi, 2 * np.pi]
    phase = np.where(rng.random((ny, nx)) < 0.1, -1, 1 + (rng.random((ny, nx)) < 0.4)).astype(np.int16)
    if grid == "hexagonal":
        phase[1::2, -1] = -1
    euler[phase < 0] = np.nan
    phases = [{"id": 1, "name": "Ti", "symmetry": "6/mmm", "lattice": [2.95, 2.95, 4.68, 90, 90, 120], "space_group": 194},
              {"id": 2, "name": "beta", "symmetry": "m-3m", "lattice": [3.3, 3.3, 3.3, 90, 90, 90], "space_group": 229}]
    return ebsd_dataset(euler, phase, step_um=0.35, phases=phases, grid=grid, origin_um=(1.0, 2.0),
                        variables={"ci": np.round(rng.random((ny, nx)), 3)}, source="synthetic")
