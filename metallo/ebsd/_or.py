"""Orientation relationships (OR) between a cubic parent (fcc austenite) and a cubic child
(bcc/bct ferrite, bainite, martensite), their variants, packets and Bain groups.

Convention (the passive orientations of :mod:`metallo.ebsd._rotations`): an OR is a unit
quaternion ``T`` that takes parent crystal coordinates to child crystal coordinates, so a
child formed from a parent of orientation ``q_p`` has orientation ``q_c = T * S_i * q_p``
for one parent symmetry operator ``S_i`` (the variant). The variant rotations ``V_i = T S_i``
that differ modulo the child symmetry are the variants (24 for Kurdjumov-Sachs, 12 for
Nishiyama-Wassermann, 3 for Bain). Conversely a child orientation has the parent candidates
``T^-1 S_c q_c`` (``S_c`` a child operator), as many distinct ones as there are variants.

Packet id: the {111} parent plane most nearly parallel to a {110} child plane (4 packets).
Bain group: the <100> parent axis most nearly parallel to a <100> child axis (3 groups).
Variants are numbered by packet, then Bain group, then parent operator order.

References: Kurdjumov & Sachs, Z. Phys. 64 (1930) 325; Nishiyama, Sci. Rep. Tohoku Univ.
23 (1934) 637; Greninger & Troiano, Trans. AIME 185 (1949) 590; Pitsch, Phil. Mag. 4 (1959)
577; Morito et al., Acta Mater. 51 (2003) 1789 (packets and blocks in lath martensite).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from metallo._registry import Registry
from metallo.ebsd._rotations import quat_conjugate, quat_multiply, quat_normalize, quat_to_matrix
from metallo.ebsd._symmetry import (
    disorientation_cos,
    disorientation_cos_components,
    pair_product_components,
    symmetry_operators,
)
from metallo.errors import ConfigError, UnknownNameError

__all__ = [
    "OrientationRelationship",
    "or_names",
    "orientation_relationship",
    "or_angle",
]

_CUBIC = "m-3m"


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` to unit quaternions, inverse of :func:`quat_to_matrix`."""
    m = np.asarray(m, dtype=np.float64)
    tr = np.trace(m, axis1=-2, axis2=-1)
    cand = np.stack([
        1 + tr, 1 + 2 * m[..., 0, 0] - tr, 1 + 2 * m[..., 1, 1] - tr, 1 + 2 * m[..., 2, 2] - tr,
    ], axis=-1)
    k = np.argmax(cand, axis=-1)
    s = np.sqrt(np.take_along_axis(cand, k[..., None], axis=-1)[..., 0]) * 2  # 4 * |component k|
    w = np.where(k == 0, s / 4, (m[..., 2, 1] - m[..., 1, 2]) / s)
    x = np.where(k == 1, s / 4, np.where(k == 0, (m[..., 2, 1] - m[..., 1, 2]),
                 np.where(k == 2, (m[..., 0, 1] + m[..., 1, 0]), (m[..., 0, 2] + m[..., 2, 0]))) / s)
    y = np.where(k == 2, s / 4, np.where(k == 0, (m[..., 0, 2] - m[..., 2, 0]),
                 np.where(k == 1, (m[..., 0, 1] + m[..., 1, 0]), (m[..., 1, 2] + m[..., 2, 1]))) / s)
    z = np.where(k == 3, s / 4, np.where(k == 0, (m[..., 1, 0] - m[..., 0, 1]),
                 np.where(k == 1, (m[..., 0, 2] + m[..., 2, 0]), (m[..., 1, 2] + m[..., 2, 1]))) / s)
    w = np.where(k == 1, (m[..., 2, 1] - m[..., 1, 2]) / s, w)
    w = np.where(k == 2, (m[..., 0, 2] - m[..., 2, 0]) / s, w)
    w = np.where(k == 3, (m[..., 1, 0] - m[..., 0, 1]) / s, w)
    return quat_normalize(np.stack([w, x, y, z], axis=-1))


def _frame(plane: Sequence[float], direction: Sequence[float]) -> np.ndarray:
    n = np.asarray(plane, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64)
    n = n / np.linalg.norm(n)
    d = d - np.dot(d, n) * n
    if np.linalg.norm(d) < 1e-9:
        raise ConfigError(f"OR direction {list(direction)} is parallel to the plane normal {list(plane)}")
    d = d / np.linalg.norm(d)
    return np.column_stack([n, d, np.cross(n, d)])


def _angle_deg(cos_half: np.ndarray) -> np.ndarray:
    return np.degrees(2.0 * np.arccos(np.clip(cos_half, -1.0, 1.0)))


@dataclass(frozen=True, eq=False)
class OrientationRelationship:
    """A cubic parent -> cubic child orientation relationship and its variants.

    Attributes
    ----------
    rotation : ndarray, (4,)
        ``T``: parent crystal coordinates -> child crystal coordinates (unit quaternion).
    name : str
        Preset name or a description.
    variant_tolerance_deg : float
        Variants closer than this are one variant (a fitted OR a few tenths of a degree
        from NW has 12 practical variants, not 24 in close pairs).

    Example
    -------
    >>> ks = orientation_relationship("KS")
    >>> ks.n_variants, int(ks.packet.max()) + 1, int(ks.bain.max()) + 1
    (24, 4, 3)
    """

    rotation: np.ndarray
    name: str = "custom"
    variant_tolerance_deg: float = 1.0

    @classmethod
    def from_planes(cls, parent_plane: Sequence[float], child_plane: Sequence[float],
                    parent_direction: Sequence[float], child_direction: Sequence[float], *,
                    name: str = "custom") -> OrientationRelationship:
        """The OR with ``(parent_plane) || (child_plane)`` and ``[parent_direction] || [child_direction]``.

        The direction is projected into its plane first, so near-parallel data still define
        a rotation; for cubic lattices plane normals and directions share Miller indices.

        Parameters
        ----------
        parent_plane, child_plane : 3 numbers
            Miller indices of the parallel planes.
        parent_direction, child_direction : 3 numbers
            Miller indices of the parallel directions (in those planes).
        name : str
            A label.

        Returns
        -------
        OrientationRelationship

        Example
        -------
        >>> ks = OrientationRelationship.from_planes((1, 1, 1), (0, 1, 1), (-1, 0, 1), (-1, -1, 1))
        >>> round(or_angle(ks, orientation_relationship("KS")), 6)
        0.0
        """
        g = _frame(child_plane, child_direction) @ _frame(parent_plane, parent_direction).T
        return cls(matrix_to_quat(g), name=name)

    @classmethod
    def from_rotation(cls, rotation: np.ndarray, *, name: str = "custom") -> OrientationRelationship:
        """The OR given as the parent -> child rotation (quaternion ``(4,)`` or matrix ``(3, 3)``).

        Parameters
        ----------
        rotation : ndarray
            Unit quaternion (w, x, y, z) or a 3 x 3 rotation matrix.
        name : str
            A label.

        Returns
        -------
        OrientationRelationship

        Example
        -------
        >>> bain = OrientationRelationship.from_rotation(np.array([np.cos(np.pi / 8), 0, 0, np.sin(np.pi / 8)]))
        >>> bain.n_variants
        3
        """
        r = np.asarray(rotation, dtype=np.float64)
        if r.shape == (3, 3):
            if not np.allclose(r @ r.T, np.eye(3), atol=1e-6) or np.linalg.det(r) < 0:
                raise ConfigError("OR rotation matrix is not a proper rotation")
            r = matrix_to_quat(r)
        if r.shape != (4,) or not np.all(np.isfinite(r)) or np.linalg.norm(r) == 0:
            raise ConfigError(f"OR rotation must be a quaternion (4,) or a matrix (3, 3); got shape {r.shape}")
        return cls(quat_normalize(r), name=name)

    @property
    def _same_cos(self) -> float:
        return float(np.cos(np.radians(max(self.variant_tolerance_deg, 1e-6)) / 2))

    @cached_property
    def _variant_data(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        ops = symmetry_operators(_CUBIC)
        all_v = quat_multiply(self.rotation[None, :], ops)
        keep: list[int] = []
        for i, v in enumerate(all_v):
            if not keep or disorientation_cos(
                    quat_multiply(v[None], quat_conjugate(all_v[keep])), _CUBIC).max() < self._same_cos:
                keep.append(i)
        variants = all_v[keep]
        g = quat_to_matrix(variants)  # child = g @ parent coordinates
        planes_p = np.array([[1, 1, 1], [-1, 1, 1], [1, -1, 1], [1, 1, -1]], float) / np.sqrt(3)
        planes_c = np.array([[0, 1, 1], [0, 1, -1], [1, 0, 1], [1, 0, -1], [1, 1, 0], [1, -1, 0]], float) / np.sqrt(2)
        # |cos| between every parent {111} (in child coordinates) and every child {110}.
        in_child = np.einsum("vij,pj->vpi", g, planes_p)
        packet = np.abs(np.einsum("vpi,ci->vpc", in_child, planes_c)).max(axis=2).argmax(axis=1)
        axes_in_child = np.einsum("vij,aj->vai", g, np.eye(3))
        bain = np.abs(axes_in_child).max(axis=2).argmax(axis=1)
        order = np.lexsort((np.arange(len(keep)), bain, packet))
        return variants[order], packet[order], bain[order], np.asarray(keep)[order]

    @property
    def variants(self) -> np.ndarray:
        """``(n_variants, 4)`` variant rotations ``V_i = T S_i``: ``q_child = V_i * q_parent``."""
        return self._variant_data[0]

    @property
    def packet(self) -> np.ndarray:
        """``(n_variants,)`` packet id (0-3) of each variant."""
        return self._variant_data[1]

    @property
    def bain(self) -> np.ndarray:
        """``(n_variants,)`` Bain group id (0-2) of each variant."""
        return self._variant_data[2]

    @property
    def n_variants(self) -> int:
        return int(self.variants.shape[0])

    @cached_property
    def parent_operators(self) -> np.ndarray:
        """``(n_variants, 4)`` rotations ``P_k = T^-1 S_c``: the parent candidates of a child
        orientation ``q_c`` are ``P_k * q_c`` (distinct modulo parent symmetry)."""
        ops = symmetry_operators(_CUBIC)
        all_p = quat_multiply(quat_conjugate(self.rotation)[None, :], ops)
        keep: list[int] = []
        for i, p in enumerate(all_p):
            if not keep or disorientation_cos(
                    quat_multiply(p[None], quat_conjugate(all_p[keep])), _CUBIC).max() < self._same_cos:
                keep.append(i)
        return all_p[keep]

    def parent_candidates(self, q_child: np.ndarray) -> np.ndarray:
        """Parent orientations ``(..., n_variants, 4)`` a child orientation ``(..., 4)`` can come from.

        Parameters
        ----------
        q_child : ndarray, (..., 4)

        Returns
        -------
        ndarray, (..., n_variants, 4)

        Example
        -------
        >>> ks = orientation_relationship("KS")
        >>> ks.parent_candidates(np.array([1.0, 0, 0, 0])).shape
        (24, 4)
        """
        q = np.asarray(q_child, dtype=np.float64)
        return quat_multiply(self.parent_operators, q[..., None, :])

    def child_variants(self, q_parent: np.ndarray) -> np.ndarray:
        """Child orientations ``(..., n_variants, 4)`` of a parent orientation ``(..., 4)``.

        Parameters
        ----------
        q_parent : ndarray, (..., 4)

        Returns
        -------
        ndarray, (..., n_variants, 4)

        Example
        -------
        >>> orientation_relationship("NW").child_variants(np.array([1.0, 0, 0, 0])).shape
        (12, 4)
        """
        q = np.asarray(q_parent, dtype=np.float64)
        return quat_normalize(quat_multiply(self.variants, q[..., None, :]))

    def variant_of(self, q_child: np.ndarray, q_parent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Variant id and misfit (degrees) of child orientations given their parent orientations.

        Parameters
        ----------
        q_child, q_parent : ndarray, (n, 4)

        Returns
        -------
        variant : ndarray (n,) int16
            Index into :attr:`variants` (depends on which symmetric equivalent ``q_parent`` is).
        misfit_deg : ndarray (n,)
            Disorientation between the child and that ideal variant.

        Example
        -------
        >>> ks = orientation_relationship("KS")
        >>> v, fit = ks.variant_of(ks.child_variants(np.array([1.0, 0, 0, 0])), np.tile([1.0, 0, 0, 0], (24, 1)))
        >>> v.tolist() == list(range(24)), float(fit.max()) < 1e-4
        (True, True)
        """
        qc = np.ascontiguousarray(np.asarray(q_child, dtype=np.float64).reshape(-1, 4).T)
        qp = np.ascontiguousarray(np.asarray(q_parent, dtype=np.float64).reshape(-1, 4).T)
        # The disorientation of q_c and V_i q_p is that of x V_i^-1 with x = q_c q_p^-1:
        # one product per pixel, then one per variant with a constant.
        x = pair_product_components(qc, qp)
        best = np.full(qc.shape[1], -1.0)
        arg = np.zeros(qc.shape[1], dtype=np.int16)
        for i, v in enumerate(self.variants):
            c = disorientation_cos_components(pair_product_components(x, v[:, None]), _CUBIC)
            better = c > best
            best[better] = c[better]
            arg[better] = i
        return arg, _angle_deg(best)

    def intervariant_angles(self) -> np.ndarray:
        """Disorientation angles (degrees) between variant 0 and every variant.

        Returns
        -------
        ndarray, (n_variants,)

        Example
        -------
        >>> [float(a) for a in sorted(set(np.round(orientation_relationship("NW").intervariant_angles(), 1)))]
        [0.0, 13.8, 19.5, 50.0, 53.7, 60.0]
        """
        v = self.variants
        return _angle_deg(disorientation_cos(quat_multiply(v[0][None], quat_conjugate(v)), _CUBIC))

    def parallelism(self) -> dict[str, object]:
        """The OR as near-parallel planes and directions, as MTEX reports a fitted OR.

        The {111} parent plane and {110} child plane closest to parallel (KS and NW: exactly
        parallel), then, in these planes, the <110> parent and <111> child directions closest
        to parallel (KS: parallel; NW: 5.26 deg apart), and the child direction (unit vector,
        child crystal coordinates) that the parent direction becomes.

        Returns
        -------
        dict
            parent_plane, child_plane, parent_direction, child_direction (Miller indices),
            plane_deviation_deg, direction_deviation_deg, parent_direction_in_child (unit vector).

        Example
        -------
        >>> p = orientation_relationship("NW").parallelism()
        >>> round(p["plane_deviation_deg"], 6), round(p["direction_deviation_deg"], 2)
        (0.0, 5.26)
        """
        g = quat_to_matrix(self.rotation)
        planes_p = np.array([[1, 1, 1], [-1, 1, 1], [1, -1, 1], [1, 1, -1]])
        planes_c = np.array([[0, 1, 1], [0, 1, -1], [1, 0, 1], [1, 0, -1], [1, 1, 0], [1, -1, 0]])
        unit = np.linalg.norm
        cos_planes = np.abs((planes_c / unit(planes_c, axis=1, keepdims=True))
                            @ (g @ (planes_p / np.sqrt(3)).T))  # (child, parent)
        ic, ip = np.unravel_index(int(np.argmax(cos_planes)), cos_planes.shape)
        n_p, n_c = planes_p[ip], planes_c[ic]
        dirs_p = np.array([d for d in ([1, -1, 0], [1, 0, -1], [0, 1, -1], [1, 1, 0], [1, 0, 1], [0, 1, 1],
                                       [-1, 1, 0], [-1, 0, 1], [0, -1, 1])
                           if np.dot(d, n_p) == 0])
        dirs_c = np.array([d for d in ([1, 1, 1], [-1, 1, 1], [1, -1, 1], [1, 1, -1]) if np.dot(d, n_c) == 0])
        in_child = (g @ dirs_p.T).T / np.sqrt(2)
        cos_dirs = in_child @ (dirs_c / np.sqrt(3)).T  # signed: a direction, not an axis
        jp, jc = np.unravel_index(int(np.argmax(np.abs(cos_dirs))), cos_dirs.shape)
        sign = int(np.sign(cos_dirs[jp, jc])) or 1
        return {
            "parent_plane": n_p.tolist(), "child_plane": n_c.tolist(),
            "parent_direction": dirs_p[jp].tolist(), "child_direction": (sign * dirs_c[jc]).tolist(),
            "plane_deviation_deg": float(np.degrees(np.arccos(min(1.0, cos_planes[ic, ip])))),
            "direction_deviation_deg": float(np.degrees(np.arccos(min(1.0, abs(cos_dirs[jp, jc]))))),
            "parent_direction_in_child": [round(float(v), 4) for v in in_child[jp]],
        }

    def describe(self) -> dict[str, object]:
        """The OR as a JSON-able dict: name, quaternion, number of variants, angles to KS and NW,
        and the near-parallel planes and directions (:meth:`parallelism`).

        Returns
        -------
        dict

        Example
        -------
        >>> orientation_relationship("NW").describe()["n_variants"]
        12
        """
        return {
            "name": self.name,
            "quaternion": [float(x) for x in self.rotation],
            "n_variants": self.n_variants,
            "deviation_from_ks_deg": float(or_angle(self, orientation_relationship("KS"))),
            "deviation_from_nw_deg": float(or_angle(self, orientation_relationship("NW"))),
            "parallelism": self.parallelism(),
        }


def or_angle(a: OrientationRelationship | np.ndarray, b: OrientationRelationship | np.ndarray) -> float:
    """Smallest rotation angle (degrees) between two ORs, over parent and child symmetry.

    ``T`` and ``S_c T S_p`` describe the same OR, so the angle is the minimum over both.

    Parameters
    ----------
    a, b : OrientationRelationship or quaternion (4,)

    Returns
    -------
    float

    Example
    -------
    >>> round(or_angle(orientation_relationship("KS"), orientation_relationship("NW")), 2)
    5.26
    """
    ta = a.rotation if isinstance(a, OrientationRelationship) else np.asarray(a, dtype=np.float64)
    tb = b.rotation if isinstance(b, OrientationRelationship) else np.asarray(b, dtype=np.float64)
    ops = symmetry_operators(_CUBIC)
    d = quat_multiply(ta[None], quat_multiply(ops, quat_conjugate(tb)[None]))  # Ta S_p Tb^-1
    return float(_angle_deg(disorientation_cos(d, _CUBIC).max()))


def nearest_equivalent(t: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The symmetric equivalent ``S_c T S_p`` of an OR rotation nearest ``reference``."""
    ops = symmetry_operators(_CUBIC)
    eq = quat_multiply(ops[:, None, :], quat_multiply(t[None, None, :], ops[None, :, :])).reshape(-1, 4)
    k = int(np.argmax(np.abs(eq @ reference)))
    out = eq[k] * np.sign(eq[k] @ reference)
    return quat_normalize(out)


#: Preset name -> (parent plane, child plane, parent direction, child direction).
_PRESETS: Registry[tuple[tuple[float, ...], ...]] = Registry("orientation relationship")
_PRESETS.add("KS", ((1, 1, 1), (0, 1, 1), (-1, 0, 1), (-1, -1, 1)))
_PRESETS.add("NW", ((1, 1, 1), (0, 1, 1), (1, 1, -2), (0, -1, 1)))
# Greninger-Troiano, {111}g || {110}a with <5 12 17>g || <17 17 7>a (planes taken as exactly
# parallel; the measured ~1 deg plane tilt of the original is not modelled).
_PRESETS.add("GT", ((1, 1, 1), (0, 1, 1), (-17, 5, 12), (7, -17, 17)))
_PRESETS.add("Pitsch", ((0, 1, 0), (1, 0, 1), (1, 0, 1), (-1, 1, 1)))
_PRESETS.add("Bain", ((0, 0, 1), (0, 0, 1), (1, 1, 0), (1, 0, 0)))
_CANONICAL = {"ks": "KS", "nw": "NW", "gt": "GT", "pitsch": "Pitsch", "bain": "Bain"}


def or_names() -> list[str]:
    """Names of the preset orientation relationships.

    Returns
    -------
    list of str

    Example
    -------
    >>> or_names()
    ['Bain', 'GT', 'KS', 'NW', 'Pitsch']
    """
    return sorted(_CANONICAL[n] for n in _PRESETS.names())


_BUILT: dict[str, OrientationRelationship] = {}


def orientation_relationship(spec: str | OrientationRelationship | np.ndarray) -> OrientationRelationship:
    """An OR from a preset name (KS, NW, GT, Pitsch, Bain), a quaternion, or an OR object.

    Parameters
    ----------
    spec : str, OrientationRelationship or ndarray (4,) / (3, 3)

    Returns
    -------
    OrientationRelationship

    Raises
    ------
    UnknownNameError
        An unknown preset name (the message lists the presets).

    Example
    -------
    >>> orientation_relationship("ks").n_variants
    24
    """
    if isinstance(spec, OrientationRelationship):
        return spec
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key not in _BUILT:
            if key not in _PRESETS:
                raise UnknownNameError(f"unknown orientation relationship {spec!r}; valid names: {', '.join(or_names())}")
            planes = _PRESETS.get(key)
            _BUILT[key] = OrientationRelationship.from_planes(*planes, name=_CANONICAL[key])
        return _BUILT[key]
    return OrientationRelationship.from_rotation(np.asarray(spec), name="custom")
