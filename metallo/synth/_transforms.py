"""The known EBSD -> micrograph mapping of a synthetic specimen: affine + smooth deformation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FieldTransform:
    """``q = A @ (p + D(p)) + t`` from EBSD µm ``p`` to micrograph µm ``q`` (both (y, x)).

    ``D`` is a low-frequency displacement (a sum of a few plane sine waves over the EBSD
    field), the kind of distortion beam drift and the 70 deg sample tilt leave in an EBSD
    map. Its Jacobian is far below 1, so the inverse is a contracting fixed-point iteration.
    """

    matrix: np.ndarray  # (2, 2)
    offset_um: np.ndarray  # (2,)
    wave_vectors: np.ndarray  # (n_waves, 2) cycles per µm
    wave_phases: np.ndarray  # (n_waves,)
    wave_amplitudes_um: np.ndarray  # (n_waves, 2)

    def displacement(self, points_um: np.ndarray) -> np.ndarray:
        """The deformation ``D(p)`` in µm at EBSD points ``(..., 2)``."""
        arg = 2 * np.pi * (points_um @ self.wave_vectors.T) + self.wave_phases
        return np.sin(arg) @ self.wave_amplitudes_um

    def forward(self, points_um: np.ndarray) -> np.ndarray:
        """EBSD µm -> micrograph µm."""
        p = np.asarray(points_um, dtype=np.float64)
        return (p + self.displacement(p)) @ self.matrix.T + self.offset_um

    def inverse(
        self, points_um: np.ndarray, *, tol_um: float = 1e-9, max_iter: int = 100
    ) -> np.ndarray:
        """Micrograph µm -> EBSD µm, exact to ``tol_um`` (fixed-point iteration ``p = u - D(p)``)."""
        q = np.asarray(points_um, dtype=np.float64)
        u = (q - self.offset_um) @ np.linalg.inv(self.matrix).T
        p = u.copy()
        for _ in range(max_iter):
            nxt = u - self.displacement(p)
            done = np.max(np.abs(nxt - p), initial=0.0) < tol_um
            p = nxt
            if done:
                break
        return p

    def affine_px(self, ebsd_step_um: float, pixel_size_um: float) -> np.ndarray:
        """The affine part as a 3x3 matrix from EBSD (row, col) to micrograph (row, col)."""
        m = np.eye(3)
        m[:2, :2] = self.matrix * (ebsd_step_um / pixel_size_um)
        m[:2, 2] = self.offset_um / pixel_size_um
        return m

    def to_dict(self) -> dict[str, list]:
        return {
            "matrix": self.matrix.tolist(),
            "offset_um": self.offset_um.tolist(),
            "wave_vectors_per_um": self.wave_vectors.tolist(),
            "wave_phases": self.wave_phases.tolist(),
            "wave_amplitudes_um": self.wave_amplitudes_um.tolist(),
        }


def random_field_transform(
    rng: np.random.Generator,
    *,
    ebsd_extent_um: tuple[float, float],
    centre_ebsd_um: tuple[float, float],
    centre_micrograph_um: tuple[float, float],
    rotation_deg: tuple[float, float],
    scale_error: float,
    shear: float,
    deformation_um: float,
) -> FieldTransform:
    """A random affine (small rotation, scale error, shear) with a smooth deformation.

    The translation puts ``centre_ebsd_um`` at ``centre_micrograph_um`` (ignoring D).
    """
    angle = np.deg2rad(rng.uniform(*rotation_deg)) * rng.choice([-1.0, 1.0])
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    scale = 1.0 + rng.uniform(-scale_error, scale_error, 2)
    shape = np.array([[scale[0], rng.uniform(-shear, shear)], [0.0, scale[1]]])
    matrix = rot @ shape
    n_waves = 3
    size = float(max(ebsd_extent_um))
    # Wavelengths of 0.7-2 field widths: the deformation is smooth over the map.
    wavelength = size * rng.uniform(0.7, 2.0, n_waves)
    direction = rng.uniform(0, 2 * np.pi, n_waves)
    wave_vectors = np.stack([np.sin(direction), np.cos(direction)], axis=1) / wavelength[:, None]
    weights = rng.dirichlet(np.ones(n_waves))
    dirs = rng.normal(size=(n_waves, 2))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    amplitudes = deformation_um * weights[:, None] * dirs
    centre = np.asarray(centre_ebsd_um, dtype=np.float64)
    offset = np.asarray(centre_micrograph_um, dtype=np.float64) - matrix @ centre
    return FieldTransform(
        matrix, offset, wave_vectors, rng.uniform(0, 2 * np.pi, n_waves), amplitudes
    )
