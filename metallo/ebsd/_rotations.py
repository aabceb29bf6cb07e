"""Rotation conversions (vectorised numpy).

Conventions follow Rowenhorst et al., Modelling Simul. Mater. Sci. Eng. 23 (2015) 083501
with P = -1, as used by EDAX/TSL, Oxford, MTEX and orix:

- Bunge Euler angles (phi1, Phi, phi2) in radians, passive ZXZ rotation from the sample
  frame to the crystal frame.
- Unit quaternions stored as ``(..., 4)`` arrays ``(w, x, y, z)`` with ``w >= 0``.
"""

from __future__ import annotations

import warnings

import numpy as np

from metallo.errors import ConfigError

__all__ = [
    "axis_angle_to_quat",
    "euler_to_quat",
    "quat_conjugate",
    "quat_multiply",
    "quat_normalize",
    "quat_to_axis_angle",
    "quat_to_euler",
    "quat_to_matrix",
    "random_quaternions",
]


def quat_normalize(q: np.ndarray) -> np.ndarray:
    """Unit quaternions with a non-negative scalar part."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


#: Largest Euler angle taken without a warning: 4 pi, the marker of unindexed points, and a little more.
_EULER_MAX_RAD = 4 * np.pi + 1e-3


def euler_to_quat(euler: np.ndarray) -> np.ndarray:
    """Bunge Euler angles ``(..., 3)`` in radians to unit quaternions ``(..., 4)``.

    Angles beyond 4 pi (files mark unindexed points with 4 pi = 12.566) are warned about: they
    are degrees, and read as radians they give a valid but wrong orientation.
    """
    euler = np.asarray(euler, dtype=np.float64)
    if euler.ndim == 0 or euler.shape[-1] != 3:
        raise ConfigError(f"Euler angles are (..., 3) arrays (phi1, Phi, phi2) in radians; got shape {euler.shape}")
    if euler.size and np.nanmax(np.abs(euler), initial=0.0) > _EULER_MAX_RAD:
        warnings.warn(f"Euler angles up to {np.nanmax(np.abs(euler)):.4g}: beyond 4 pi, so degrees, not radians? "
                      "euler_to_quat takes radians (np.radians(angles))", stacklevel=2)
    phi1, Phi, phi2 = euler[..., 0], euler[..., 1], euler[..., 2]
    sigma = 0.5 * (phi1 + phi2)
    delta = 0.5 * (phi1 - phi2)
    c, s = np.cos(0.5 * Phi), np.sin(0.5 * Phi)
    q = np.stack([c * np.cos(sigma), -s * np.cos(delta), -s * np.sin(delta), -c * np.sin(sigma)], axis=-1)
    return np.where(q[..., :1] < 0, -q, q)


def quat_to_euler(q: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(..., 4)`` to Bunge Euler angles ``(..., 3)`` in [0, 2pi) x [0, pi] x [0, 2pi)."""
    q = np.asarray(q, dtype=np.float64)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    q03 = w * w + z * z
    q12 = x * x + y * y
    chi = np.sqrt(q03 * q12)
    phi1 = np.empty_like(w)
    Phi = np.empty_like(w)
    phi2 = np.empty_like(w)
    tol = 1e-12
    a = (chi < tol) & (q12 < tol)  # Phi == 0
    b = (chi < tol) & (q03 < tol)  # Phi == pi
    g = ~(a | b)
    phi1[a] = np.arctan2(-2.0 * w[a] * z[a], w[a] ** 2 - z[a] ** 2)
    Phi[a] = 0.0
    phi2[a] = 0.0
    phi1[b] = np.arctan2(2.0 * x[b] * y[b], x[b] ** 2 - y[b] ** 2)
    Phi[b] = np.pi
    phi2[b] = 0.0
    wg, xg, yg, zg, cg = w[g], x[g], y[g], z[g], chi[g]
    phi1[g] = np.arctan2((xg * zg - wg * yg) / cg, (-wg * xg - yg * zg) / cg)
    Phi[g] = np.arctan2(2.0 * cg, q03[g] - q12[g])
    phi2[g] = np.arctan2((wg * yg + xg * zg) / cg, (yg * zg - wg * xg) / cg)
    out = np.stack([phi1, Phi, phi2], axis=-1)
    out[..., 0] = np.mod(out[..., 0], 2 * np.pi)
    out[..., 2] = np.mod(out[..., 2], 2 * np.pi)
    return out


def quat_multiply(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Hamilton product ``p * q`` (the rotation ``q`` followed by ``p``), broadcast."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    pw, px, py, pz = np.moveaxis(p, -1, 0)
    qw, qx, qy, qz = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            pw * qw - px * qx - py * qy - pz * qz,
            pw * qx + px * qw + py * qz - pz * qy,
            pw * qy - px * qz + py * qw + pz * qx,
            pw * qz + px * qy - py * qx + pz * qw,
        ],
        axis=-1,
    )


def quat_conjugate(q: np.ndarray) -> np.ndarray:
    """The inverse rotation of unit quaternions."""
    q = np.asarray(q, dtype=np.float64)
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(..., 4)`` to orientation matrices ``(..., 3, 3)``.

    For quaternions from :func:`euler_to_quat` this is Bunge's orientation matrix ``g``
    (rows are the crystal axes in sample coordinates), e.g. ``phi1`` alone gives
    ``[[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]]``; it equals orix's ``to_matrix``.
    """
    q = np.asarray(q, dtype=np.float64)
    w, x, y, z = np.moveaxis(q, -1, 0)
    qbar = w * w - (x * x + y * y + z * z)
    m = np.empty(q.shape[:-1] + (3, 3))
    m[..., 0, 0] = qbar + 2 * x * x
    m[..., 0, 1] = 2 * (x * y - w * z)
    m[..., 0, 2] = 2 * (x * z + w * y)
    m[..., 1, 0] = 2 * (x * y + w * z)
    m[..., 1, 1] = qbar + 2 * y * y
    m[..., 1, 2] = 2 * (y * z - w * x)
    m[..., 2, 0] = 2 * (x * z - w * y)
    m[..., 2, 1] = 2 * (y * z + w * x)
    m[..., 2, 2] = qbar + 2 * z * z
    return m


def axis_angle_to_quat(axis: np.ndarray, angle: np.ndarray | float) -> np.ndarray:
    """Rotation of ``angle`` radians about ``axis`` (``(..., 3)``, need not be unit; a zero axis only with angle 0)."""
    axis = np.asarray(axis, dtype=np.float64)
    if axis.ndim == 0 or axis.shape[-1] != 3:
        raise ConfigError(f"a rotation axis is a (..., 3) array; got shape {axis.shape}")
    norm = np.linalg.norm(axis, axis=-1, keepdims=True)
    angle_arr = np.asarray(angle, dtype=np.float64)
    zero = norm[..., 0] == 0
    if np.any(zero & (np.broadcast_to(angle_arr, np.broadcast_shapes(zero.shape, angle_arr.shape)) != 0)):
        raise ConfigError("a rotation about a zero axis is undefined; give the axis (e.g. [0, 0, 1])")
    axis = np.where(norm > 0, axis / np.where(norm > 0, norm, 1.0), 0.0)
    half = 0.5 * angle_arr[..., None]
    q = np.concatenate([np.cos(half), np.sin(half) * axis], axis=-1)
    return np.where(q[..., :1] < 0, -q, q)


def quat_to_axis_angle(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis ``(..., 3)`` (unit) and angle ``(...)`` in radians, angle in [0, pi]."""
    q = quat_normalize(q)
    angle = 2.0 * np.arccos(np.clip(q[..., 0], -1.0, 1.0))
    v = q[..., 1:]
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    axis = np.where(n > 1e-12, v / np.where(n > 1e-12, n, 1.0), np.array([0.0, 0.0, 1.0]))
    return axis, angle


def random_quaternions(n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """``n`` orientations drawn uniformly from SO(3) (Shoemake's method)."""
    if int(n) != n or n < 0:
        raise ConfigError(f"the number of orientations must be a whole number >= 0; got {n}")
    rng = np.random.default_rng(rng)
    u1, u2, u3 = rng.random((3, n))
    q = np.stack(
        [
            np.sqrt(u1) * np.cos(2 * np.pi * u3),
            np.sqrt(1 - u1) * np.sin(2 * np.pi * u2),
            np.sqrt(1 - u1) * np.cos(2 * np.pi * u2),
            np.sqrt(u1) * np.sin(2 * np.pi * u3),
        ],
        axis=-1,
    )
    return quat_normalize(q)
