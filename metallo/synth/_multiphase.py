"""``make_multiphase``: blobby regions of 2-6 phases with distinct grey levels and textures."""

from __future__ import annotations

import hashlib

import numpy as np
import xarray as xr
from scipy import ndimage

from metallo._xarray import image_dataarray
from metallo.errors import ConfigError
from metallo.synth._noise import smooth_noise, to_uint8

__all__ = ["make_multiphase"]


def make_multiphase(
    shape: tuple[int, int] = (256, 256),
    *,
    n_phases: int = 3,
    pixel_size_um: float = 0.1,
    region_size_um: float | None = None,
    noise: float = 0.03,
    seed: int = 0,
) -> tuple[xr.DataArray, np.ndarray]:
    """Make a micrograph of ``n_phases`` phases in blobby regions, with the true labels.

    Each phase has its own mean grey level (evenly spaced from dark to bright, phase 0 the
    darkest) and texture: flat, fine-grained, or lamellar (pearlite-like stripes), in turn.
    Regions are the argmax of ``n_phases`` smooth random fields, so every phase forms
    connected blobs of about ``region_size_um``.

    Parameters
    ----------
    shape : (int, int)
        Image size (rows, columns).
    n_phases : int
        Number of phases, 2-6.
    pixel_size_um : float
        Pixel size in µm.
    region_size_um : float, optional
        Typical blob size (default: 1/8 of the image width).
    noise : float
        Standard deviation of the Gaussian noise, in units of the full grey range.
    seed : int
        Random seed.

    Returns
    -------
    image : xr.DataArray
        uint8 image (y, x) on µm coordinates.
    labels : ndarray (y, x) uint8
        Phase of each pixel, 0..n_phases-1; every phase is present.

    Examples
    --------
    >>> image, labels = make_multiphase((64, 64), n_phases=4, seed=2)
    >>> sorted(set(labels.ravel().tolist()))
    [0, 1, 2, 3]
    """
    if not 2 <= int(n_phases) <= 6:
        raise ConfigError(f"n_phases must be between 2 and 6; got {n_phases}")
    if min(shape) < 16 or pixel_size_um <= 0:
        raise ConfigError(
            f"shape must be at least 16 x 16 and pixel_size_um positive; got {shape}, {pixel_size_um}"
        )
    rng = np.random.default_rng(seed)
    n = int(n_phases)
    sigma_px = (region_size_um / pixel_size_um if region_size_um else max(shape) / 8.0) / 3.0
    fields = np.stack([smooth_noise(tuple(shape), sigma_px, rng) for _ in range(n)])
    labels = np.argmax(fields, axis=0)
    counts = np.bincount(labels.ravel(), minlength=n)
    # A phase that lost everywhere (possible on tiny images) takes the region it came closest in.
    for missing in np.flatnonzero(counts == 0):
        margin = fields[missing] - fields.max(axis=0)
        labels[margin >= np.quantile(margin, 1.0 - 1.0 / (2 * n))] = missing
    labels = labels.astype(np.uint8)
    levels = np.linspace(0.15, 0.85, n)
    image = levels[labels]
    yy, xx = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    fine = smooth_noise(tuple(shape), 0.8, rng)
    angle = rng.uniform(0.0, np.pi)
    stripes = np.sin(2.0 * np.pi * (yy * np.sin(angle) + xx * np.cos(angle)) / 6.0)
    texture_kind = np.arange(n) % 3  # 0 flat, 1 fine-grained, 2 lamellar
    image = image + np.where(texture_kind[labels] == 1, 0.04 * fine, 0.0)
    image = image + np.where(texture_kind[labels] == 2, 0.05 * stripes, 0.0)
    image = ndimage.gaussian_filter(image, 0.7) + rng.normal(0.0, noise, image.shape)
    array = to_uint8(image)
    attrs = {
        "modality": "other",
        "source": f"metallo.synth.make_multiphase seed={seed}",
        "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
    }
    return image_dataarray(
        array, pixel_size_um=pixel_size_um, name="multiphase", attrs=attrs
    ), labels
