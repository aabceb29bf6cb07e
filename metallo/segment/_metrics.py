"""Segmentation metrics from a confusion matrix: IoU, accuracy, precision, recall.

Definitions follow DeCost et al. (2019), eqs. 3-5: precision(c) = TP / predicted c,
recall(c) = TP / true c, IoU(c) = TP / (TP + FP + FN); accuracy = TP summed / labelled pixels.
Pixels whose truth equals ``ignore_index`` are left out of every count.

References
----------
.. [1] B. L. DeCost, B. Lei, T. Francis, E. A. Holm, "High throughput quantitative metallography
   for complex microstructures using deep learning: a case study in ultrahigh carbon steel",
   Microscopy and Microanalysis 25(1), 21-29 (2019). doi:10.1017/S1431927618015635
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metallo._xarray import to_numpy
from metallo.errors import ConfigError

__all__ = ["boundary_errors", "boundary_summary", "confusion_matrix", "mean_iou", "metrics_from_confusion",
           "pixel_accuracy", "segmentation_metrics"]


def confusion_matrix(truth: Any, prediction: Any, *, n_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Pixel confusion matrix, rows = truth, columns = prediction.

    Parameters
    ----------
    truth, prediction : array-like (y, x) of int
        Label maps of the same shape.
    n_classes : int
        Number of classes; truth values other than ``ignore_index`` must be below it.
    ignore_index : int
        Truth value of unlabelled pixels (255).

    Returns
    -------
    ndarray (n_classes, n_classes) int64

    Examples
    --------
    >>> confusion_matrix([0, 1, 1, 255], [0, 1, 0, 1], n_classes=2).tolist()
    [[1, 0], [1, 1]]
    """
    t = to_numpy(truth).astype(np.int64, copy=False).ravel()
    p = to_numpy(prediction).astype(np.int64, copy=False).ravel()
    if t.shape != p.shape:
        raise ConfigError(f"truth and prediction differ in size: {np.shape(truth)} vs {np.shape(prediction)}")
    keep = t != ignore_index
    t, p = t[keep], p[keep]
    if t.size and (t.min() < 0 or t.max() >= n_classes):
        raise ConfigError(f"truth labels must be in 0..{n_classes - 1} or {ignore_index}; found {int(t.max())}")
    if p.size and (p.min() < 0 or p.max() >= n_classes):
        raise ConfigError(f"predicted labels must be in 0..{n_classes - 1}; found {int(p.max())}")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def metrics_from_confusion(confusion: np.ndarray, *, classes: list[str] | None = None) -> dict[str, Any]:
    """IoU, precision and recall per class, mean IoU and accuracy from a confusion matrix.

    A class absent from both truth and prediction gets NaN for its IoU and is left out of
    ``mean_iou``.

    Parameters
    ----------
    confusion : ndarray (n, n)
        Rows = truth, columns = prediction.
    classes : list of str, optional
        Class names stored in the result.

    Returns
    -------
    dict
        ``iou``, ``precision``, ``recall`` (lists), ``mean_iou``, ``accuracy``, ``confusion``
        (nested list), ``classes``, ``n_pixels``.

    Examples
    --------
    >>> m = metrics_from_confusion(np.array([[3, 1], [0, 4]]))
    >>> round(m["accuracy"], 3), [round(v, 2) for v in m["iou"]]
    (0.875, [0.75, 0.8])
    """
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    true_n, pred_n = cm.sum(axis=1), cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (true_n + pred_n - tp)
        precision = tp / pred_n
        recall = tp / true_n
    total = cm.sum()
    n = cm.shape[0]
    return {
        "classes": list(classes) if classes is not None else [str(i) for i in range(n)],
        "iou": iou.tolist(),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "mean_iou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "accuracy": float(tp.sum() / total) if total else float("nan"),
        "confusion": np.asarray(confusion).astype(np.int64).tolist(),
        "n_pixels": int(total),
    }


def segmentation_metrics(truth: Any, prediction: Any, *, n_classes: int, ignore_index: int = 255,
                         classes: list[str] | None = None) -> dict[str, Any]:
    """All metrics of :func:`metrics_from_confusion` for one pair of label maps.

    Examples
    --------
    >>> segmentation_metrics([[0, 1], [1, 1]], [[0, 1], [1, 0]], n_classes=2)["accuracy"]
    0.75
    """
    cm = confusion_matrix(truth, prediction, n_classes=n_classes, ignore_index=ignore_index)
    return metrics_from_confusion(cm, classes=classes)


def mean_iou(truth: Any, prediction: Any, *, n_classes: int, ignore_index: int = 255) -> float:
    """Mean over classes of the intersection over union (NaN classes left out).

    Examples
    --------
    >>> mean_iou([0, 0, 1, 1], [0, 1, 1, 1], n_classes=2)
    0.5833333333333333
    """
    return segmentation_metrics(truth, prediction, n_classes=n_classes, ignore_index=ignore_index)["mean_iou"]


def pixel_accuracy(truth: Any, prediction: Any, *, n_classes: int, ignore_index: int = 255) -> float:
    """Fraction of labelled pixels predicted correctly.

    Examples
    --------
    >>> pixel_accuracy([0, 1, 255], [0, 0, 0], n_classes=2)
    0.5
    """
    return segmentation_metrics(truth, prediction, n_classes=n_classes, ignore_index=ignore_index)["accuracy"]


#: Width (px) of the band around the labelled class boundaries that :func:`boundary_errors` counts.
BOUNDARY_BAND_PX = 2


def boundary_errors(truth: Any, prediction: Any, *, ignore_index: int = 255,
                    band_px: float = BOUNDARY_BAND_PX) -> dict[str, int]:
    """Where the errors lie: how many are within ``band_px`` of a labelled class boundary.

    A boundary pixel is a labelled pixel with a 4-neighbour of another labelled class (the
    edges of unlabelled regions and of the image are no class boundaries). Errors near the
    boundaries are where a region ends, placed a few pixels off; errors beyond
    them are the wrong constituent. On the held-out UHCS folds 48 % of the errors lie within
    2 px (docs/segment.md).

    Parameters
    ----------
    truth, prediction : array-like (y, x) of int
        Label maps of the same shape.
    ignore_index : int
        Truth value of unlabelled pixels (255).
    band_px : float
        Distance from the nearest boundary pixel, in pixels (2).

    Returns
    -------
    dict
        ``errors_within``, ``errors``, ``pixels_within``, ``pixels`` (labelled pixels): counts,
        which add up over images (:func:`boundary_summary` turns them into shares).

    Examples
    --------
    >>> truth = np.zeros((6, 8), int); truth[:, 4:] = 1
    >>> pred = np.zeros((6, 8), int); pred[:, 5:] = 1     # the boundary placed 1 px off
    >>> boundary_errors(truth, pred, band_px=1)
    {'errors_within': 6, 'errors': 6, 'pixels_within': 24, 'pixels': 48}
    """
    from scipy import ndimage as ndi

    t = to_numpy(truth)
    p = to_numpy(prediction)
    if t.shape != p.shape or t.ndim != 2:
        raise ConfigError(f"truth and prediction must be label maps (y, x) of one shape: {t.shape} vs {p.shape}")
    valid = t != ignore_index
    edge = np.zeros(t.shape, bool)
    for a, b in ((np.s_[1:, :], np.s_[:-1, :]), (np.s_[:, 1:], np.s_[:, :-1])):
        step = (t[a] != t[b]) & valid[a] & valid[b]
        edge[a] |= step
        edge[b] |= step
    wrong = (p != t) & valid
    if not edge.any():
        within = np.zeros(t.shape, bool)
    else:
        within = ndi.distance_transform_edt(~edge) <= band_px
    return {"errors_within": int((wrong & within).sum()), "errors": int(wrong.sum()),
            "pixels_within": int((valid & within).sum()), "pixels": int(valid.sum())}


def boundary_summary(counts: dict[str, int], *, band_px: float = BOUNDARY_BAND_PX) -> dict[str, float]:
    """Shares from :func:`boundary_errors` counts (one image's or summed over images).

    Returns
    -------
    dict
        ``band_px``; ``error_share`` (the errors within the band over all errors; NaN without
        errors); ``pixel_share`` (the band's share of the labelled pixels); ``accuracy_beyond``
        (the accuracy on the labelled pixels outside the band; NaN where there are none).

    Examples
    --------
    >>> boundary_summary({"errors_within": 6, "errors": 8, "pixels_within": 20, "pixels": 100})
    {'band_px': 2, 'error_share': 0.75, 'pixel_share': 0.2, 'accuracy_beyond': 0.975}
    """
    beyond = counts["pixels"] - counts["pixels_within"]
    return {
        "band_px": band_px,
        "error_share": counts["errors_within"] / counts["errors"] if counts["errors"] else float("nan"),
        "pixel_share": counts["pixels_within"] / counts["pixels"] if counts["pixels"] else float("nan"),
        "accuracy_beyond": 1.0 - (counts["errors"] - counts["errors_within"]) / beyond if beyond else float("nan"),
    }
