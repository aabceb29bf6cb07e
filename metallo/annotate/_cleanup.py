"""Clean-up of label maps and the ``ignore_index`` band used for training masks."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from metallo.errors import ConfigError

__all__ = ["clean_labels", "ignore_band"]


def _disk(radius: int) -> np.ndarray:
    r = int(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy**2 + xx**2) <= r * r


def _as_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise ConfigError(f"labels must be a 2-D integer array; got shape {labels.shape}, dtype {labels.dtype}")
    return labels


def _fill_from_nearest(labels: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """Give every ``unknown`` pixel the label of the nearest known pixel."""
    if not unknown.any() or unknown.all():
        return labels
    _, (iy, ix) = ndi.distance_transform_edt(unknown, return_indices=True)
    return labels[iy, ix]


def clean_labels(
    labels: np.ndarray,
    *,
    n_classes: int,
    ignore_index: int = 255,
    min_region_px: int = 0,
    fill_holes: bool = False,
    smooth_px: int = 0,
) -> np.ndarray:
    """Remove specks, fill enclosed gaps and smooth a class label map.

    Parameters
    ----------
    labels : ndarray (y, x) int
        Class ids ``0..n_classes-1``; ``ignore_index`` marks pixels without a class.
    n_classes : int
        Number of classes.
    ignore_index : int
        Value of pixels without a class (not indexed, no grain).
    min_region_px : int
        Connected regions (8-connectivity) of one class smaller than this many pixels take
        the class of their nearest neighbouring region.
    fill_holes : bool
        Unclassified pixels (``ignore_index``) completely enclosed by one class get that class.
        Regions of another class are never filled: an embedded ferrite grain stays ferrite.
    smooth_px : int
        Radius of a majority (mode) filter applied to classified pixels; 0 = none.

    Returns
    -------
    ndarray (y, x), same dtype as ``labels``

    Examples
    --------
    >>> lab = np.zeros((20, 20), np.uint8); lab[5, 5] = 1; lab[10, 10] = 255
    >>> out = clean_labels(lab, n_classes=2, min_region_px=4, fill_holes=True)
    >>> int(out.max())
    0
    """
    labels = _as_labels(labels)
    if int(n_classes) != n_classes or n_classes < 1:
        raise ConfigError(f"n_classes must be a whole number >= 1; got {n_classes}")
    for name, value in (("min_region_px", min_region_px), ("smooth_px", smooth_px)):
        if value < 0:
            raise ConfigError(f"{name} must be >= 0; got {value}")
    present = np.unique(labels[labels != ignore_index])
    if present.size and (present.min() < 0 or present.max() >= n_classes):
        # A class outside 0..n_classes-1 was never cleaned, and the smoothing overwrote it with a class it knew.
        outside = present[(present < 0) | (present >= n_classes)]
        raise ConfigError(f"labels hold class ids {outside[:8].tolist()} outside 0..{n_classes - 1} (n_classes={n_classes}) "
                          f"and other than ignore_index={ignore_index}; give the number of classes the map has")
    out = labels.copy()
    valid = out != ignore_index
    eight = np.ones((3, 3), dtype=bool)
    if min_region_px > 1:
        small = np.zeros(out.shape, dtype=bool)
        for c in range(n_classes):  # loop over classes (a handful), not regions
            comp, n = ndi.label(out == c, structure=eight)
            if n:
                sizes = np.bincount(comp.ravel(), minlength=n + 1)
                too_small = sizes < min_region_px
                too_small[0] = False
                small |= too_small[comp]
        if small.any() and (valid & ~small).any():
            filled = _fill_from_nearest(np.where(small, ignore_index, out), small | ~valid)
            out = np.where(small, filled, out).astype(labels.dtype)
    if fill_holes:
        gaps = out == ignore_index
        for c in range(n_classes):
            holes = ndi.binary_fill_holes(out == c) & gaps
            out[holes] = c
    if smooth_px > 0:
        valid = out != ignore_index
        foot = _disk(smooth_px).astype(np.float64)
        votes = np.stack(
            [ndi.convolve((out == c).astype(np.float64), foot, mode="nearest") for c in range(n_classes)]
        )
        smoothed = np.argmax(votes, axis=0).astype(labels.dtype)
        out = np.where(valid, smoothed, out)
    return out


def ignore_band(
    labels: np.ndarray,
    *,
    border_px: int = 0,
    ignore_index: int = 255,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Set a band of ``ignore_index`` along class borders and at masked pixels.

    Training should not learn the registration error: pixels within ``border_px`` of a
    pixel of another class become ``ignore_index``; ``ignore_index`` pixels themselves do
    not make a border.

    Parameters
    ----------
    labels : ndarray (y, x) int
    border_px : int
        Half-width of the band in pixels (a disk of this radius); 0 = no band.
    ignore_index : int
    mask : ndarray of bool, optional
        Further pixels to ignore (e.g. low confidence index).

    Returns
    -------
    ndarray (y, x), same dtype as ``labels``

    Examples
    --------
    >>> lab = np.zeros((4, 8), np.uint8); lab[:, 4:] = 1
    >>> (ignore_band(lab, border_px=1)[0] == 255).nonzero()[0].tolist()
    [3, 4]
    """
    labels = _as_labels(labels)
    if border_px < 0:
        raise ConfigError(f"border_px must be >= 0; got {border_px}")
    out = labels.copy()
    if border_px > 0:
        valid = labels != ignore_index
        wide = labels.astype(np.int32)
        # A disk beyond the image's diagonal reaches every pixel from every pixel, as the diagonal's does;
        # a 1000-px band on a 50 x 60 map had built a 2001 x 2001 footprint and run out of memory.
        foot = _disk(min(int(np.ceil(border_px)), int(np.ceil(np.hypot(*labels.shape)))))
        hi = ndi.maximum_filter(np.where(valid, wide, -1), footprint=foot, mode="nearest")
        lo = ndi.minimum_filter(np.where(valid, wide, np.iinfo(np.int32).max), footprint=foot, mode="nearest")
        out[valid & (hi != lo)] = ignore_index
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != labels.shape:
            raise ConfigError(f"ignore mask shape {mask.shape} != labels shape {labels.shape}")
        out[mask] = ignore_index
    return out
