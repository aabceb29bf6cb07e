"""Helpers shared by the EBSD tests (a uniquely named module: every test folder has a
``conftest``, so ``from conftest import ...`` would pick whichever was imported first)."""

from __future__ import annotations

import numpy as np

from metallo.ebsd import ebsd_dataset, quat_to_euler

CUBIC = [{"id": 1, "name": "ferrite", "symmetry": "m-3m", "lattice": [2.87, 2.87, 2.87, 90, 90, 90]}]


def map_from_quaternions(q: np.ndarray, phase: np.ndarray | None = None, *, step_um: float = 0.5,
                         phases=CUBIC, grid: str = "square", ci: np.ndarray | None = None):
    """An EBSD Dataset from a (ny, nx, 4) quaternion map."""
    ny, nx = q.shape[:2]
    if phase is None:
        phase = np.ones((ny, nx), dtype=np.int16)
    variables = {"ci": ci if ci is not None else np.full((ny, nx), 0.9)}
    return ebsd_dataset(quat_to_euler(q), phase, step_um=step_um, phases=phases, grid=grid, variables=variables)
