"""Crystal symmetry (the rotations of the 11 Laue groups) and misorientation with symmetry.

Orientations are passive (sample -> crystal) unit quaternions, so a crystal symmetry ``S``
acts from the left: ``q`` and ``S * q`` describe the same orientation. The misorientation
angle of ``q1`` and ``q2`` is ``2 * arccos(max_i |<S_i, q1 * conj(q2)>|)``: only one-sided
reduction is needed for the angle because it is invariant under conjugation.

Conventions of the symmetry axes (as in orix and MTEX): the principal axis is z; the
two-fold axes of ``mmm``, ``4/mmm``, ``-3m`` and ``6/mmm`` include x; the unique axis of
``2/m`` is y (the crystallographic b axis, as MTEX and the TSL/Oxford exports); ``"2/m:z"``
puts it along z (orix's default). A map selects the setting with
``attrs["monoclinic_axis"]`` (see :func:`metallo.io.read_ebsd`).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from metallo._ebsd_dataset import LAUE_GROUPS
from metallo.ebsd._rotations import (
    axis_angle_to_quat,
    quat_conjugate,
    quat_multiply,
    quat_normalize,
    quat_to_axis_angle,
)
from metallo.errors import ConfigError, UnknownNameError

__all__ = [
    "disorientation_cos",
    "disorientation_cos_components",
    "pair_product_components",
    "misorientation",
    "misorientation_angle",
    "nearest_symmetry_operator",
    "symmetry_operators",
]

_CHUNK = 262_144


def _rot(axis: tuple[float, float, float], fold: int) -> np.ndarray:
    return axis_angle_to_quat(np.array(axis, dtype=float), 2 * np.pi / fold)


_GENERATORS = {
    "-1": [],
    "2/m": [_rot((0, 1, 0), 2)],
    "2/m:z": [_rot((0, 0, 1), 2)],
    "mmm": [_rot((0, 0, 1), 2), _rot((1, 0, 0), 2)],
    "4/m": [_rot((0, 0, 1), 4)],
    "4/mmm": [_rot((0, 0, 1), 4), _rot((1, 0, 0), 2)],
    "-3": [_rot((0, 0, 1), 3)],
    "-3m": [_rot((0, 0, 1), 3), _rot((1, 0, 0), 2)],
    "6/m": [_rot((0, 0, 1), 6)],
    "6/mmm": [_rot((0, 0, 1), 6), _rot((1, 0, 0), 2)],
    "m-3": [_rot((0, 0, 1), 2), _rot((1, 0, 0), 2), _rot((1, 1, 1), 3)],
    "m-3m": [_rot((0, 0, 1), 4), _rot((1, 1, 1), 3)],
}
_ORDERS = {"-1": 1, "2/m": 2, "2/m:z": 2, "mmm": 4, "4/m": 4, "4/mmm": 8, "-3": 3, "-3m": 6, "6/m": 6,
           "6/mmm": 12, "m-3": 12, "m-3m": 24}


@cache
def _operators(laue: str) -> np.ndarray:
    ops = [np.array([1.0, 0.0, 0.0, 0.0])]
    frontier = list(ops)
    while frontier:
        new = []
        for a in frontier:
            for g in _GENERATORS[laue]:
                c = quat_normalize(quat_multiply(g, a))
                if not any(abs(abs(float(np.dot(c, o))) - 1.0) < 1e-9 for o in ops):
                    ops.append(c)
                    new.append(c)
        frontier = new
    out = np.array(ops)
    out.setflags(write=False)
    return out


def symmetry_operators(laue: str) -> np.ndarray:
    """The proper rotations of a Laue group as unit quaternions ``(n, 4)``, identity first.

    The inversion centre of a Laue group does not change an orientation, so only the ``n``
    rotations of its proper point group are returned (24 for ``m-3m``, 12 for ``6/mmm``).

    Parameters
    ----------
    laue : str
        Hermann-Mauguin symbol, one of :data:`metallo.ebsd.LAUE_GROUPS`.

    Returns
    -------
    ndarray, (n, 4)

    Example
    -------
    >>> symmetry_operators("m-3m").shape
    (24, 4)
    """
    if laue not in _GENERATORS:
        raise UnknownNameError(f"unknown Laue group {laue!r}; expected one of {', '.join(LAUE_GROUPS)}")
    ops = _operators(laue)
    return ops


def _pair_product(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """``q1 * conj(q2)`` for ``(..., 4)`` arrays, without building the conjugate."""
    aw, ax, ay, az = q1[..., 0], q1[..., 1], q1[..., 2], q1[..., 3]
    bw, bx, by, bz = q2[..., 0], q2[..., 1], q2[..., 2], q2[..., 3]
    out = np.empty(np.broadcast_shapes(q1.shape, q2.shape))
    out[..., 0] = aw * bw + ax * bx + ay * by + az * bz
    out[..., 1] = -aw * bx + ax * bw - ay * bz + az * by
    out[..., 2] = -aw * by + ax * bz + ay * bw - az * bx
    out[..., 3] = -aw * bz - ax * by + ay * bx + az * bw
    return out


def pair_product_components(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a * conj(b)`` for component-first quaternion arrays ``(4, ...)`` (contiguous rows are
    several times faster than the strided columns of ``(..., 4)`` arrays; products go into
    two preallocated buffers because fresh large temporaries cost page faults)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim == 1 and b.ndim == 1:
        return pair_product_components(a[:, None], b[:, None])[:, 0]
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    shape = np.broadcast_shapes(aw.shape, bw.shape)
    out = np.empty((4,) + shape)
    tmp = np.empty(shape)
    terms = (
        ((aw, bw, 1), (ax, bx, 1), (ay, by, 1), (az, bz, 1)),
        ((ax, bw, 1), (aw, bx, -1), (ay, bz, -1), (az, by, 1)),
        ((ay, bw, 1), (aw, by, -1), (ax, bz, 1), (az, bx, -1)),
        ((az, bw, 1), (aw, bz, -1), (ax, by, -1), (ay, bx, 1)),
    )
    for k, row in enumerate(terms):
        np.multiply(row[0][0], row[0][1], out=out[k])
        for u, v, sign in row[1:]:
            np.multiply(u, v, out=tmp)
            if sign > 0:
                out[k] += tmp
            else:
                out[k] -= tmp
    return out


def disorientation_cos_components(d: np.ndarray, laue: str) -> np.ndarray:
    """:func:`disorientation_cos` for component-first misorientations ``(4, ...)``.

    ``d`` may be overwritten (it is a temporary everywhere it is used)."""
    if laue != "m-3m":
        return disorientation_cos(np.moveaxis(d, 0, -1), laue)
    if d.ndim == 1:
        return disorientation_cos_components(np.array(d, dtype=np.float64)[:, None], laue)[0]
    a = np.abs(d, out=d) if d.dtype == np.float64 and d.flags.writeable else np.abs(d)
    a0, a1, a2, a3 = a
    total = np.add(a0, a1)
    total += a2
    total += a3
    # Top two of four without sorting: pairwise max/min, then merge.
    hi01 = np.maximum(a0, a1)
    lo01 = np.minimum(a0, a1, out=a0)
    hi23 = np.maximum(a2, a3)
    lo23 = np.minimum(a2, a3, out=a2)
    top1 = np.maximum(hi01, hi23)
    np.minimum(hi01, hi23, out=hi01)
    np.maximum(lo01, lo23, out=lo23)
    top2 = np.maximum(hi01, lo23, out=hi01)
    np.add(top1, top2, out=top2)
    top2 *= np.sqrt(0.5)
    total *= 0.5
    np.maximum(top1, top2, out=top1)
    np.maximum(top1, total, out=top1)
    return np.minimum(top1, 1.0, out=top1)


def disorientation_cos(d: np.ndarray, laue: str) -> np.ndarray:
    """``max_i |<S_i, d>|`` = cos(half the disorientation angle) of misorientations ``d``.

    ``m-3m`` uses the closed form over the three kinds of cubic operators (1, (1,1,0,0)/sqrt2
    and (1,1,1,1)/2 patterns), which needs no ``n x 24`` intermediate; the other groups reduce
    over their operators in chunks.
    """
    d = np.asarray(d, dtype=np.float64)
    if laue == "m-3m":
        return disorientation_cos_components(np.array(np.moveaxis(d, -1, 0)), laue)
    ops = symmetry_operators(laue)
    flat = d.reshape(-1, 4)
    out = np.empty(flat.shape[0])
    for start in range(0, flat.shape[0], _CHUNK):
        out[start:start + _CHUNK] = np.abs(flat[start:start + _CHUNK] @ ops.T).max(axis=1)
    return np.minimum(out, 1.0).reshape(d.shape[:-1])


def _cubic_nearest_operator(d: np.ndarray) -> np.ndarray:
    """The m-3m operator (as a quaternion, up to sign) maximising ``|<S, d>|``, built from the
    largest components of ``d`` instead of a reduction over all 24 operators."""
    a = np.abs(d)
    sign = np.where(d < 0, -1.0, 1.0)
    order = np.argsort(a, axis=-1)
    k1, k2 = order[..., 3:4], order[..., 2:3]
    top1 = np.take_along_axis(a, k1, axis=-1)[..., 0]
    top2 = np.take_along_axis(a, k2, axis=-1)[..., 0]
    v1, v2, v3 = top1, (top1 + top2) * np.sqrt(0.5), 0.5 * a.sum(axis=-1)
    op = 0.5 * sign
    pair = np.zeros_like(d)
    np.put_along_axis(pair, k1, np.take_along_axis(sign, k1, axis=-1) * np.sqrt(0.5), axis=-1)
    np.put_along_axis(pair, k2, np.take_along_axis(sign, k2, axis=-1) * np.sqrt(0.5), axis=-1)
    single = np.zeros_like(d)
    np.put_along_axis(single, k1, np.take_along_axis(sign, k1, axis=-1), axis=-1)
    op = np.where(((v2 >= v1) & (v2 >= v3))[..., None], pair, op)
    return np.where(((v1 >= v2) & (v1 >= v3))[..., None], single, op)


def nearest_operator_quaternion(d: np.ndarray, laue: str) -> np.ndarray:
    """The operator ``S_i`` (quaternion, ``(..., 4)``) maximising ``|<S_i, d>|``."""
    d = np.asarray(d, dtype=np.float64)
    if laue == "m-3m":
        return _cubic_nearest_operator(d)
    return symmetry_operators(laue)[nearest_symmetry_operator(d, laue)]


def nearest_symmetry_operator(d: np.ndarray, laue: str) -> np.ndarray:
    """Index of the operator ``S_i`` maximising ``|<S_i, d>|`` for each misorientation ``d``."""
    ops = symmetry_operators(laue)
    flat = np.asarray(d, dtype=np.float64).reshape(-1, 4)
    out = np.empty(flat.shape[0], dtype=np.intp)
    for start in range(0, flat.shape[0], _CHUNK):
        out[start:start + _CHUNK] = np.abs(flat[start:start + _CHUNK] @ ops.T).argmax(axis=1)
    return out.reshape(np.shape(d)[:-1])


def _angle_deg(cos_half: np.ndarray) -> np.ndarray:
    return np.degrees(2.0 * np.arccos(np.clip(cos_half, -1.0, 1.0)))


def _quaternion_pair(q1: Any, q2: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two quaternion arrays checked to be ``(..., 4)`` and broadcastable; zero quaternions (no
    rotation: some files store unindexed points so) become NaN, whose angle is NaN, not 180 deg."""
    out = []
    for name, q in (("q1", q1), ("q2", q2)):
        arr = np.asarray(q, dtype=np.float64)
        if arr.ndim == 0 or arr.shape[-1] != 4:
            raise ConfigError(f"{name}: orientations are (..., 4) unit quaternions (w, x, y, z); got shape {arr.shape}"
                              + (" (Euler angles? metallo.ebsd.euler_to_quat converts them)" if arr.ndim and arr.shape[-1] == 3 else ""))
        zero = ~np.any(arr != 0, axis=-1)
        if zero.any():
            arr = np.where(zero[..., None], np.nan, arr)
        out.append(arr)
    try:
        np.broadcast_shapes(out[0].shape[:-1], out[1].shape[:-1])
    except ValueError:
        raise ConfigError(f"q1 {out[0].shape} and q2 {out[1].shape} do not broadcast against each other") from None
    return out[0], out[1]


def misorientation_angle(
    q1: np.ndarray, q2: np.ndarray, *, symmetry: str = "m-3m", device: str | None = None
) -> np.ndarray:
    """Disorientation angle between orientations, reduced by crystal symmetry, in degrees.

    Parameters
    ----------
    q1, q2 : ndarray, (..., 4)
        Orientations as unit quaternions (w, x, y, z); broadcast against each other.
    symmetry : str
        Laue group shared by both orientations (default ``"m-3m"``).
    device : {None, "auto", "cpu", "cuda"}
        None (default) computes with numpy; a device name uses torch on that device
        (``"auto"``: CUDA when available).

    Returns
    -------
    ndarray, (...)
        Angles in degrees, in [0, 62.8] for cubic, [0, 93.8] for hexagonal symmetry.

    Example
    -------
    >>> import numpy as np
    >>> from metallo.ebsd import axis_angle_to_quat
    >>> q = axis_angle_to_quat([0, 0, 1], np.pi / 2)   # 90 deg about [001]
    >>> float(misorientation_angle(q, [1, 0, 0, 0]))   # a cubic symmetry operation
    0.0
    """
    q1, q2 = _quaternion_pair(q1, q2)
    ops = symmetry_operators(symmetry)
    if device is not None:
        from metallo.ebsd._torch import misorientation_angle_torch

        return misorientation_angle_torch(q1, q2, operators=None if symmetry == "m-3m" else ops, device=device)
    d = pair_product_components(np.moveaxis(q1, -1, 0), np.moveaxis(q2, -1, 0))
    return _angle_deg(disorientation_cos_components(d, symmetry))


def misorientation(
    q1: np.ndarray, q2: np.ndarray, *, symmetry: str = "m-3m"
) -> tuple[np.ndarray, np.ndarray]:
    """Disorientation angle (degrees) and axis between orientations.

    The axis is that of ``conj(S_i) * q1 * conj(q2)`` for the symmetry operator ``S_i`` that
    minimises the angle, expressed in crystal coordinates; for cubic crystals it is sorted
    into the standard triangle (0 <= x <= y <= z), e.g. Sigma3 gives (1, 1, 1)/sqrt(3).

    Parameters
    ----------
    q1, q2 : ndarray, (..., 4)
        Unit quaternions, broadcast against each other.
    symmetry : str
        Laue group of both orientations.

    Returns
    -------
    angle : ndarray, (...)
        Degrees.
    axis : ndarray, (..., 3)
        Unit vectors.

    Example
    -------
    >>> import numpy as np
    >>> from metallo.ebsd import axis_angle_to_quat
    >>> sigma3 = axis_angle_to_quat([1, 1, 1], np.pi / 3)
    >>> angle, axis = misorientation(sigma3, [1, 0, 0, 0])
    >>> round(float(angle), 6), np.round(axis * np.sqrt(3), 6).tolist()
    (60.0, [1.0, 1.0, 1.0])
    """
    d = _pair_product(*_quaternion_pair(q1, q2))
    symmetry_operators(symmetry)
    # w(conj(S) * d) = <S, d>, so the operator that maximises |<S, d>| enters conjugated.
    best = quat_multiply(quat_conjugate(nearest_operator_quaternion(d, symmetry)), d)
    axis, angle = quat_to_axis_angle(best)
    if symmetry == "m-3m":
        axis = np.sort(np.abs(axis), axis=-1)
    return np.degrees(angle), axis
