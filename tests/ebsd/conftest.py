"""Fixtures of the EBSD tests: maps with known grains and known orientation gradients."""

from __future__ import annotations

import numpy as np
import pytest
from ebsd_helpers import CUBIC, map_from_quaternions  # noqa: F401  (fixtures build maps with it)

from metallo.ebsd import (
    axis_angle_to_quat,
    quat_multiply,
    random_quaternions,
)


@pytest.fixture
def known_grains():
    """A 40 x 60 map of 6 rectangular grains with random orientations (>15 deg apart in practice)."""
    rng = np.random.default_rng(3)
    truth = np.zeros((40, 60), dtype=np.int32)
    truth[:20, 20:40] = 1
    truth[:20, 40:] = 2
    truth[20:, :30] = 3
    truth[20:, 30:50] = 4
    truth[20:, 50:] = 5
    truth[:20, :20] = 0
    oris = random_quaternions(6, rng)
    q = oris[truth]
    # Sub-degree noise inside the grains keeps the problem honest.
    noise = axis_angle_to_quat(rng.normal(size=(40, 60, 3)), np.radians(0.2) * rng.random((40, 60)))
    q = quat_multiply(noise, q)
    return map_from_quaternions(q), truth, oris


@pytest.fixture
def gradient_map():
    """A 30 x 50 single grain whose lattice rotates by `rate` deg per pixel about the sample z axis."""
    rate = 0.1
    ny, nx = 30, 50
    angle = np.radians(rate) * np.arange(nx)[None, :].repeat(ny, axis=0)
    base = axis_angle_to_quat(np.array([1.0, 2.0, 3.0]), 0.4)
    # A rotation about the sample axis acts from the right on passive orientations.
    rot = axis_angle_to_quat(np.broadcast_to([0.0, 0.0, 1.0], (ny, nx, 3)), angle)
    q = quat_multiply(base, rot)
    return map_from_quaternions(q), rate
