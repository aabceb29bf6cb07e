"""Random fields shared by the synthetic generators: hashed per-object randoms and smooth noise."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def hash_uniform(*keys: np.ndarray | int, salt: int = 0) -> np.ndarray:
    """Deterministic uniform numbers in [0, 1) from integer keys (splitmix64 finaliser).

    The same keys give the same number whichever grid asks, so a lath sampled on the EBSD
    grid and on a micrograph grid gets the same orientation without a lookup table.
    """
    with np.errstate(over="ignore"):
        x = np.full(
            np.broadcast(*[np.asarray(k) for k in keys]).shape, np.uint64(salt) * _GOLDEN + _MIX2
        )
        for k in keys:
            x = x ^ (
                np.asarray(k).astype(np.int64).astype(np.uint64)
                + _GOLDEN
                + (x << np.uint64(6))
                + (x >> np.uint64(2))
            )
            x = (x ^ (x >> np.uint64(30))) * _MIX1
            x = (x ^ (x >> np.uint64(27))) * _MIX2
            x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def hash_unit_vectors(*keys: np.ndarray | int, salt: int = 0) -> np.ndarray:
    """Deterministic unit vectors ``(..., 3)`` uniform on the sphere from integer keys."""
    z = 2.0 * hash_uniform(*keys, salt=salt) - 1.0
    phi = 2.0 * np.pi * hash_uniform(*keys, salt=salt + 1)
    r = np.sqrt(np.clip(1.0 - z * z, 0.0, None))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)


def smooth_noise(shape: tuple[int, ...], sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to zero mean and unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_px, mode="wrap")
    std = field.std()
    return (field - field.mean()) / (std if std > 0 else 1.0)


def shot_and_read_noise(
    image: np.ndarray, *, photons: float, read_sigma: float, rng: np.random.Generator
) -> np.ndarray:
    """Poisson shot noise at ``photons`` counts for intensity 1, plus Gaussian read noise."""
    counts = rng.poisson(np.clip(image, 0.0, None) * photons) / photons
    return counts + rng.normal(0.0, read_sigma, image.shape)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Intensities in [0, 1] to uint8 (clipped), as a detector would digitise them."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
