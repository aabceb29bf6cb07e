"""What each instrument records of the microstructure: EBSD columns, nital LOM, SE SEM.

The three modalities see the same structure with different contrast, as in
Durmaz et al. (2021, Fig. 1): the EBSD image quality (IQ) is bright in polygonal ferrite,
lower in lath bainite and dark on boundaries; the nital-etched light micrograph shows bright
ferrite, dark etched grain boundaries of varying strength and darker, textured bainite;
the secondary-electron SEM image shows boundaries and lath edges as bright relief.

References
----------
.. [1] A. R. Durmaz, M. Müller, B. Lei, A. Thomas, D. Britz, E. A. Holm, C. Eberl, F. Mücklich,
   P. Gumbsch, "A deep learning approach for complex microstructure inference",
   Nature Communications 12, 6272 (2021). doi:10.1038/s41467-021-26565-5
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from metallo.ebsd import axis_angle_to_quat, quat_multiply, quat_normalize
from metallo.synth._microstructure import BAINITE, PlaneSample
from metallo.synth._noise import hash_uniform, shot_and_read_noise, smooth_noise, to_uint8


def boundary_strength(s: PlaneSample, salt: int) -> np.ndarray:
    """How strongly the etch attacks each boundary (0.3-1), the same on both sides of it.

    Block boundaries inside bainite etch at half strength: Durmaz et al. (2021) note that they
    are often hard to see in LOM, which is why EBSD guides the annotation.
    """
    lo, hi = np.minimum(s.grain, s.neighbour), np.maximum(s.grain, s.neighbour)
    inside_bainite = (s.constituent == BAINITE) & (s.neighbour_constituent == BAINITE)
    return (0.3 + 0.7 * hash_uniform(lo, hi, salt=salt)) * np.where(inside_bainite, 0.5, 1.0)


def ebsd_columns(
    s: PlaneSample, q: np.ndarray, rng: np.random.Generator, *, step_um: float, noise_deg: float
) -> dict[str, np.ndarray]:
    """Measured orientations (with noise) and the CI, IQ and fit columns of an EBSD map."""
    shape = s.grain.shape
    # Measurement noise: a small rotation about a random axis, below 3*noise_deg.
    angle = np.deg2rad(np.minimum(np.abs(rng.normal(0.0, noise_deg, shape)), 3.0 * noise_deg))
    q_meas = quat_normalize(
        quat_multiply(q, axis_angle_to_quat(rng.normal(size=shape + (3,)), angle))
    )
    bainite = s.constituent == BAINITE
    # The pattern at a boundary is a mixture of two grains: its quality drops within about a step.
    width = max(0.5 * step_um, 0.25)
    at_boundary = np.exp(-((s.boundary_distance_um / width) ** 2))
    at_lath = np.exp(-((s.lath_boundary_distance_um / max(0.3 * step_um, 0.1)) ** 2))
    grain_tint = hash_uniform(s.grain, salt=11) - 0.5
    ci = np.where(bainite, 0.55, 0.85) * (1.0 - 0.75 * at_boundary) + rng.normal(0.0, 0.03, shape)
    iq = (
        np.where(bainite, 2000.0, 3000.0)
        * (1.0 + 0.12 * grain_tint)
        * (1.0 - 0.15 * at_lath)
        * (1.0 - 0.6 * at_boundary)
    )
    iq = iq + rng.normal(0.0, 60.0, shape)
    fit = 0.4 + 0.3 * bainite + 0.8 * at_boundary + np.abs(rng.normal(0.0, 0.1, shape))
    return {"q": q_meas, "ci": np.clip(ci, 0.0, 1.0), "iq": np.clip(iq, 0.0, None), "fit": fit}


def render_lom(s: PlaneSample, rng: np.random.Generator, *, pixel_size_um: float) -> np.ndarray:
    """A nital-etched light micrograph (uint8): bright ferrite, dark boundaries, grey bainite."""
    shape = s.grain.shape
    bainite = s.constituent == BAINITE
    tint = hash_uniform(s.grain, salt=21) - 0.5
    mottle = smooth_noise(shape, max(0.4 / pixel_size_um, 1.0), rng)
    ferrite_level = 0.80 + 0.08 * tint
    bainite_level = (
        0.46
        + 0.10 * tint
        + 0.04 * mottle
        - 0.14 * np.exp(-((s.lath_boundary_distance_um / 0.15) ** 2))
    )
    image = np.where(bainite, bainite_level, ferrite_level)
    groove = boundary_strength(s, salt=31) * np.exp(-((s.boundary_distance_um / 0.35) ** 2))
    image = image * (1.0 - 0.75 * groove)
    # Optical resolution of a x1000 objective: PSF sigma ~0.2 µm.
    image = ndimage.gaussian_filter(image, max(0.2 / pixel_size_um, 0.6))
    yy, xx = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    image = image * (1.0 - 0.12 * (yy**2 + xx**2) / 2.0)
    image = shot_and_read_noise(image, photons=400.0, read_sigma=0.012, rng=rng)
    return to_uint8(image)


def render_sem(s: PlaneSample, rng: np.random.Generator, *, pixel_size_um: float) -> np.ndarray:
    """A secondary-electron micrograph (uint8): boundaries and lath edges as bright relief."""
    shape = s.grain.shape
    bainite = s.constituent == BAINITE
    tint = hash_uniform(s.grain, salt=41) - 0.5
    image = np.where(bainite, 0.40, 0.30) + 0.04 * tint
    lath_edges = np.exp(-((s.lath_boundary_distance_um / 0.05) ** 2))
    carbides = np.clip(smooth_noise(shape, max(0.04 / pixel_size_um, 0.7), rng) - 2.0, 0.0, None)
    image = image + bainite * (0.30 * lath_edges + 0.25 * carbides)
    d = s.boundary_distance_um
    strength = boundary_strength(s, salt=51)
    image = image + strength * (
        0.45 * np.exp(-((d / 0.07) ** 2)) - 0.08 * np.exp(-((d / 0.25) ** 2))
    )
    image = ndimage.gaussian_filter(image, 0.7)
    # The Everhart-Thornley detector sits to one side: a gentle brightness ramp across the field.
    image = image * (0.92 + 0.16 * np.linspace(0.0, 1.0, shape[1])[None, :])
    image = shot_and_read_noise(image, photons=60.0, read_sigma=0.02, rng=rng)
    image = image + rng.normal(0.0, 0.015, (shape[0], 1))  # scan-line jitter
    return to_uint8(image)
