"""Evaluation of a segmentation without ground truth (F, F', Q) and the adjusted Rand index.

The unsupervised criteria follow Borsotti, Campadelli & Schettini (1998), *Pattern Recognit.
Lett.* 19, 741-747, in the form used by Kim, Inoue and Kasuya (2020, Eqs. 5-7)
for an image of ``N x M`` pixels::

    F  = 1 / (1000 N M) * sqrt(R)                       * sum_i e_i^2 / sqrt(A_i)
    F' = 1 / (1000 N M) * sqrt(sum_A R(A)^(1 + 1/A))    * sum_i e_i^2 / sqrt(A_i)
    Q  = 1 / (1000 N M) * sqrt(R) * sum_i [e_i^2 / (1 + ln A_i) + (R(A_i) / A_i)^2]

``F`` is Liu & Yang's (1994) criterion with Borsotti's normalisation. A *region* is a connected
component of one label value (4-connectivity by default): a label that occurs in three separate
islands counts as three regions, as in the original papers, which evaluate regions, not classes.
``R`` is the number of regions, ``A_i`` the area (pixels) of region ``i``, ``e_i^2`` the sum over
its pixels of the squared Euclidean distance between the pixel value (grey value or colour
vector) and the region's mean, and ``R(A)`` the number of regions whose area is exactly ``A``.
Lower is better. Values depend on the intensity scale of ``image`` (the papers used 0-255).

References
----------
.. [1] H. Kim, J. Inoue, T. Kasuya, "Unsupervised microstructure segmentation by mimicking
   metallurgists' approach to pattern recognition", Scientific Reports 10, 17835 (2020).
   doi:10.1038/s41598-020-74935-8
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metallo._xarray import to_numpy
from metallo.errors import ConfigError

__all__ = [
    "adjusted_rand_index",
    "criterion_f",
    "criterion_f_prime",
    "criterion_q",
    "region_statistics",
    "segmentation_criteria",
]


def _pixels_and_labels(image: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    values = to_numpy(image).astype(np.float64)
    lab = to_numpy(labels)
    if lab.ndim != 2:
        raise ConfigError(f"labels must be a 2-D (y, x) label map; got shape {lab.shape}")
    if values.shape[:2] != lab.shape or values.ndim not in (2, 3):
        raise ConfigError(
            f"image (y, x[, channel]) and labels (y, x) must share (y, x); got image {values.shape}, labels {lab.shape}"
        )
    if not np.issubdtype(lab.dtype, np.integer):
        if not np.all(np.isfinite(lab)) or np.any(lab != np.round(lab)):
            raise ConfigError(f"labels must hold integer class values; got dtype {lab.dtype} with non-integers")
        lab = lab.astype(np.int64)
    pixels = values.reshape(lab.size, -1)
    if not np.all(np.isfinite(pixels)):
        raise ConfigError("image has NaN or infinite values; the criteria need a value at every pixel")
    return pixels, lab


def region_statistics(image: Any, labels: Any, *, connectivity: int = 1) -> dict[str, np.ndarray]:
    """Area and squared colour error of every region (connected component of one label).

    Parameters
    ----------
    image : array-like or xr.DataArray
        Grey (y, x) or colour (y, x, channel) image.
    labels : array-like or xr.DataArray
        Integer label map (y, x).
    connectivity : {1, 2}
        1: 4-connected regions (default); 2: 8-connected.

    Returns
    -------
    dict
        ``area`` (int64, pixels per region) and ``error2`` (float64, sum of squared distances
        of the region's pixels to its mean value), one entry per region.

    Examples
    --------
    >>> stats = region_statistics(np.array([[0., 2.], [5., 5.]]), np.array([[0, 0], [1, 1]]))
    >>> stats["area"].tolist(), stats["error2"].tolist()
    ([2, 2], [2.0, 0.0])
    """
    from skimage.measure import label as connected_components

    if connectivity not in (1, 2):
        raise ConfigError(f"connectivity must be 1 (4-connected) or 2 (8-connected); got {connectivity}")
    pixels, lab = _pixels_and_labels(image, labels)
    # Shift so that no label value coincides with skimage's background value.
    shifted = lab.astype(np.int64) - int(lab.min()) + 1
    regions = connected_components(shifted, background=0, connectivity=connectivity).ravel() - 1
    n_regions = int(regions.max()) + 1
    area = np.bincount(regions, minlength=n_regions)
    sums = np.stack([np.bincount(regions, weights=pixels[:, c], minlength=n_regions) for c in range(pixels.shape[1])], axis=1)
    means = sums / area[:, None]
    deviation = pixels - means[regions]
    error2 = np.bincount(regions, weights=np.einsum("ij,ij->i", deviation, deviation), minlength=n_regions)
    return {"area": area.astype(np.int64), "error2": error2}


def _area_histogram(area: np.ndarray) -> np.ndarray:
    """R(A): how many regions have exactly area A, indexed by A."""
    return np.bincount(area)


def _normaliser(n_pixels: int) -> float:
    return 1.0 / (1000.0 * n_pixels)


def _f_from_stats(area: np.ndarray, error2: np.ndarray, n_pixels: int) -> float:
    return float(_normaliser(n_pixels) * np.sqrt(area.size) * np.sum(error2 / np.sqrt(area)))


def _f_prime_from_stats(area: np.ndarray, error2: np.ndarray, n_pixels: int) -> float:
    counts = _area_histogram(area)
    sizes = np.nonzero(counts)[0]
    penalty = np.sum(counts[sizes].astype(np.float64) ** (1.0 + 1.0 / sizes))
    return float(_normaliser(n_pixels) * np.sqrt(penalty) * np.sum(error2 / np.sqrt(area)))


def _q_from_stats(area: np.ndarray, error2: np.ndarray, n_pixels: int) -> float:
    same_area = _area_histogram(area)[area].astype(np.float64)
    terms = error2 / (1.0 + np.log(area)) + (same_area / area) ** 2
    return float(_normaliser(n_pixels) * np.sqrt(area.size) * np.sum(terms))


def criterion_f(image: Any, labels: Any, *, connectivity: int = 1) -> float:
    """Liu & Yang's F criterion with Borsotti's normalisation (lower is better).

    ``F = sqrt(R) / (1000 N M) * sum_i e_i^2 / sqrt(A_i)`` over the connected regions of
    ``labels``; see the module docstring for the definitions.

    Parameters
    ----------
    image : array-like or xr.DataArray
        Grey (y, x) or colour (y, x, channel) image, in the intensity scale to be judged.
    labels : array-like or xr.DataArray
        Integer label map (y, x).
    connectivity : {1, 2}
        Region connectivity: 1 (4-connected, default) or 2 (8-connected).

    Returns
    -------
    float

    Examples
    --------
    >>> image = np.array([[0., 2.], [5., 5.]])
    >>> round(criterion_f(image, np.array([[0, 0], [1, 1]])) * 1e6, 3)
    500.0
    """
    stats = region_statistics(image, labels, connectivity=connectivity)
    return _f_from_stats(stats["area"], stats["error2"], int(stats["area"].sum()))


def criterion_f_prime(image: Any, labels: Any, *, connectivity: int = 1) -> float:
    """Borsotti's F' criterion (lower is better).

    ``F' = sqrt(sum_A R(A)^(1 + 1/A)) / (1000 N M) * sum_i e_i^2 / sqrt(A_i)``, where ``R(A)``
    is the number of regions of area exactly ``A`` pixels; small regions weigh more.

    Parameters
    ----------
    image : array-like or xr.DataArray
        Grey (y, x) or colour (y, x, channel) image.
    labels : array-like or xr.DataArray
        Integer label map (y, x).
    connectivity : {1, 2}
        Region connectivity: 1 (4-connected, default) or 2 (8-connected).

    Returns
    -------
    float

    Examples
    --------
    >>> image = np.array([[0., 2.], [5., 5.]])
    >>> round(criterion_f_prime(image, np.array([[0, 0], [1, 1]])) * 1e6, 3)
    594.604
    """
    stats = region_statistics(image, labels, connectivity=connectivity)
    return _f_prime_from_stats(stats["area"], stats["error2"], int(stats["area"].sum()))


def criterion_q(image: Any, labels: Any, *, connectivity: int = 1) -> float:
    """Borsotti's Q criterion (lower is better).

    ``Q = sqrt(R) / (1000 N M) * sum_i [e_i^2 / (1 + ln A_i) + (R(A_i) / A_i)^2]``; the second
    term penalises many small regions of the same size.

    Parameters
    ----------
    image : array-like or xr.DataArray
        Grey (y, x) or colour (y, x, channel) image.
    labels : array-like or xr.DataArray
        Integer label map (y, x).
    connectivity : {1, 2}
        Region connectivity: 1 (4-connected, default) or 2 (8-connected).

    Returns
    -------
    float

    Examples
    --------
    >>> image = np.array([[0., 2.], [5., 5.]])
    >>> round(criterion_q(image, np.array([[0, 0], [1, 1]])) * 1e6, 3)
    1124.735
    """
    stats = region_statistics(image, labels, connectivity=connectivity)
    return _q_from_stats(stats["area"], stats["error2"], int(stats["area"].sum()))


def segmentation_criteria(image: Any, labels: Any, *, connectivity: int = 1) -> dict[str, float]:
    """F, F' and Q of one segmentation from a single pass over its regions.

    Parameters
    ----------
    image : array-like or xr.DataArray
        Grey (y, x) or colour (y, x, channel) image.
    labels : array-like or xr.DataArray
        Integer label map (y, x).
    connectivity : {1, 2}
        Region connectivity: 1 (4-connected, default) or 2 (8-connected).

    Returns
    -------
    dict
        ``{"F": ..., "F_prime": ..., "Q": ..., "n_regions": ...}``.

    Examples
    --------
    >>> crit = segmentation_criteria(np.array([[0., 2.], [5., 5.]]), np.array([[0, 0], [1, 1]]))
    >>> crit["n_regions"]
    2.0
    """
    stats = region_statistics(image, labels, connectivity=connectivity)
    area, error2 = stats["area"], stats["error2"]
    n = int(area.sum())
    return {
        "F": _f_from_stats(area, error2, n),
        "F_prime": _f_prime_from_stats(area, error2, n),
        "Q": _q_from_stats(area, error2, n),
        "n_regions": float(area.size),
    }


def adjusted_rand_index(labels_true: Any, labels_pred: Any) -> float:
    """Adjusted Rand index between two label maps (1 = same partition, ~0 = chance).

    The label values need not match: only the partition counts, so an unsupervised result with
    permuted class numbers scores 1 against the truth. Computed from the contingency table
    (one ``bincount``), as in Hubert & Arabie (1985).

    Parameters
    ----------
    labels_true, labels_pred : array-like or xr.DataArray
        Integer label maps of the same shape.

    Returns
    -------
    float

    Examples
    --------
    >>> adjusted_rand_index(np.array([0, 0, 1, 1]), np.array([5, 5, 2, 2]))
    1.0
    """
    a = to_numpy(labels_true).ravel()
    b = to_numpy(labels_pred).ravel()
    if a.shape != b.shape:
        raise ConfigError(f"labels_true and labels_pred must have the same size; got {a.size} and {b.size}")
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    n_b = int(ib.max()) + 1 if ib.size else 1
    table = np.bincount(ia.astype(np.int64) * n_b + ib, minlength=(int(ia.max()) + 1 if ia.size else 1) * n_b).astype(np.float64)

    def pairs(x: np.ndarray) -> float:
        return float(np.sum(x * (x - 1.0) / 2.0))

    n = float(a.size)
    table = table.reshape(-1, n_b)
    sum_ij = pairs(table)
    sum_a = pairs(table.sum(axis=1))
    sum_b = pairs(table.sum(axis=0))
    total = n * (n - 1.0) / 2.0
    expected = sum_a * sum_b / total if total > 0 else 0.0
    maximum = 0.5 * (sum_a + sum_b)
    if maximum == expected:
        # Both partitions trivial (one cluster each, or all singletons): identical by convention.
        return 1.0
    return float((sum_ij - expected) / (maximum - expected))
