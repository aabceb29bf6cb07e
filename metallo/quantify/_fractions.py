"""Phase (area) fractions per field and their ASTM E562-style confidence interval over fields."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from metallo.errors import ConfigError
from metallo.quantify._common import label_array

__all__ = ["label_agreement", "measurement_fields", "phase_fraction_ci", "phase_fractions"]


def _classes_of(labels: Any, classes: Sequence[str] | None) -> list[str] | None:
    if classes is not None:
        return list(classes)
    attrs = getattr(labels, "attrs", None) or {}
    if "classes" in attrs:
        value = attrs["classes"]
        return list(json.loads(value) if isinstance(value, str) else value)
    return None


def _counts(labels: Any, n_classes: int | None, ignore_index: int | None, what: str) -> np.ndarray:
    array = label_array(labels, what=what)
    array = np.asarray(array).astype(np.int64, copy=False).ravel()
    if ignore_index is not None:
        array = array[array != ignore_index]
    if array.size and array.min() < 0:
        raise ConfigError(f"{what}: class labels must be >= 0 (or ignore_index); got {array.min()}")
    counts = np.bincount(array, minlength=n_classes or 0)
    if n_classes is not None and counts.size > n_classes:
        raise ConfigError(
            f"{what}: label {counts.size - 1} is outside the {n_classes} classes (and is not ignore_index={ignore_index})"
        )
    return counts


def phase_fractions(
    labels: Any,
    *,
    classes: Sequence[str] | None = None,
    ignore_index: int | None = 255,
) -> pd.DataFrame:
    """Area fraction of every class in one label map, pixels equal to ``ignore_index`` excluded.

    Parameters
    ----------
    labels : (y, x) int array or DataArray
        Class label map from an annotation or a (supervised or unsupervised) segmentation.
    classes : sequence of str, optional
        Class names, index = label value; default ``labels.attrs["classes"]`` or "class_<i>".
    ignore_index : int or None
        Label value of unannotated pixels (default 255).

    Returns
    -------
    pd.DataFrame
        One row per class: label, class, n_pixels, fraction.

    Examples
    --------
    >>> phase_fractions(np.array([[0, 1], [1, 255]]))["fraction"].round(3).tolist()
    [0.333, 0.667]
    """
    names = _classes_of(labels, classes)
    counts = _counts(labels, len(names) if names else None, ignore_index, "labels")
    if names is None:
        names = [f"class_{i}" for i in range(counts.size)]
    total = counts.sum()
    if total == 0:
        raise ConfigError("labels: every pixel is ignore_index; no fraction can be measured")
    return pd.DataFrame(
        {
            "label": np.arange(counts.size),
            "class": names,
            "n_pixels": counts,
            "fraction": counts / total,
        }
    )


def phase_fraction_ci(
    fields: Sequence[Any],
    *,
    confidence: float = 0.95,
    classes: Sequence[str] | None = None,
    ignore_index: int | None = 255,
    weighting: str = "pixels",
    weights: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Mean phase fractions over fields with their confidence interval (ASTM E562 style).

    For each class, with field fractions ``P_i`` over ``n`` fields: mean ``P``, standard
    deviation ``s``, half-width ``CI = t(1 - (1 - confidence)/2, n - 1) · s / sqrt(n)`` and
    relative accuracy ``%RA = CI / P · 100``. The interval ``P ± CI`` is clipped to [0, 1]: a
    fraction has no negative values (a rare class with a wide interval).

    Fields of equal labelled area (E562's) give the plain mean and standard deviation. Where
    they differ (fields at the edge of an EBSD-informed annotation, which hold partly ignored
    pixels), ``weighting="pixels"`` (default) weighs each field by its labelled pixels ``w_i``:
    the ratio estimator of cluster sampling, ``P = sum w_i P_i / sum w_i`` (the fraction of all
    labelled pixels) with ``s^2 / n = n / (n - 1) · sum (w_i / W)^2 (P_i - P)^2``, which is the
    plain formula for equal fields. ``"equal"`` takes every field alike. ``weights`` gives the
    ``w_i`` outright (e.g. the labelled area in µm² of micrographs of different magnifications).

    Parameters
    ----------
    fields : sequence of (y, x) label maps
        One label map per field (image) of the specimen.
    confidence : float
        Confidence level of the interval (E562 uses 0.95).
    classes : sequence of str, optional
        Class names (default from the first field's attrs, else "class_<i>").
    ignore_index : int or None
        Label value excluded from every field.

    Returns
    -------
    pd.DataFrame
        One row per class: label, class, n_fields, mean, std, ci_halfwidth, ci_low, ci_high,
        relative_accuracy_pct. ``attrs["fields"]`` holds the per-field fractions (JSON).

    Examples
    --------
    >>> a, b = np.zeros((4, 4), int), np.ones((4, 4), int)
    >>> b[0] = 0
    >>> phase_fraction_ci([a, b])["mean"].tolist()
    [0.625, 0.375]
    """
    if getattr(fields, "ndim", None) == 2:
        # One label map iterates as its rows, each "a field of shape (x,)" refused as not 2-D: say what was meant.
        raise ConfigError(f"phase_fraction_ci takes a sequence of field label maps (e.g. [labels_1, labels_2, ...]); "
                          f"got one 2-D array of shape {tuple(np.shape(fields))}: pass the fields as a list, or use "
                          "phase_fractions for one field")
    fields = list(fields)
    if len(fields) < 2:
        raise ConfigError(f"phase_fraction_ci needs at least 2 fields for a standard deviation; got {len(fields)}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1); got {confidence}")
    from scipy.stats import t as student_t

    names = _classes_of(fields[0], classes)
    counts = [_counts(f, len(names) if names else None, ignore_index, f"fields[{i}]") for i, f in enumerate(fields)]
    n_cls = max(c.size for c in counts)
    mat = np.zeros((len(fields), n_cls))
    for i, c in enumerate(counts):
        if c.sum() == 0:
            raise ConfigError(f"fields[{i}]: every pixel is ignore_index")
        mat[i, : c.size] = c / c.sum()
    if names is None:
        names = [f"class_{i}" for i in range(n_cls)]
    n = len(fields)
    if weighting not in ("pixels", "equal"):
        raise ConfigError(f"weighting must be 'pixels' or 'equal'; got {weighting!r}")
    w = np.array([c.sum() for c in counts], np.float64) if weighting == "pixels" else np.ones(n)
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ConfigError(f"weights must be {n} positive numbers, one per field; got {list(w.ravel())}")
    share = w / w.sum()
    mean = share @ mat
    std = np.sqrt(n * n / (n - 1) * (share**2) @ (mat - mean) ** 2)  # s, so that s / sqrt(n) is the mean's error
    half = student_t.ppf(1 - (1 - confidence) / 2, n - 1) * std / np.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        ra = np.where(mean > 0, half / mean * 100.0, np.nan)
    table = pd.DataFrame(
        {
            "label": np.arange(n_cls),
            "class": names,
            "n_fields": n,
            "mean": mean,
            "std": std,
            "ci_halfwidth": half,
            "ci_low": np.clip(mean - half, 0.0, 1.0),
            "ci_high": np.clip(mean + half, 0.0, 1.0),
            "relative_accuracy_pct": ra,
        }
    )
    table.attrs["fields"] = json.dumps(mat.tolist())
    table.attrs["confidence"] = confidence
    return table


def measurement_fields(
    labels: Any,
    *,
    grid: tuple[int, int] = (3, 3),
    ignore_index: int = 255,
    min_valid: float = 0.25,
) -> list[np.ndarray]:
    """Split a label map into ``rows x columns`` fields for :func:`phase_fraction_ci`.

    The fields tile the bounding box of the labelled (non-ignore) pixels, so that the part of a
    micrograph outside an EBSD-informed annotation does not make empty fields; a field with
    less than ``min_valid`` labelled pixels is dropped, as a metallographer would not count a
    field that is mostly off the specimen.

    Parameters
    ----------
    labels : array-like or xr.DataArray
        Label map (y, x).
    grid : (int, int)
        Fields along y and x.
    ignore_index : int
        Label of unlabelled pixels.
    min_valid : float
        Smallest labelled fraction of a field that is kept.

    Returns
    -------
    list of ndarray

    Examples
    --------
    >>> lab = np.zeros((6, 6), np.uint8); lab[:, :2] = 255
    >>> [f.shape for f in measurement_fields(lab, grid=(2, 2))]
    [(3, 2), (3, 2), (3, 2), (3, 2)]
    """
    values = np.asarray(getattr(labels, "values", labels))
    valid = values != ignore_index
    if not valid.any():
        raise ConfigError("the label map has no labelled pixel to divide into fields")
    rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    box = values[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    if grid[0] > box.shape[0] or grid[1] > box.shape[1]:
        # array_split would hand back empty fields, dropped without a word: fewer fields than asked.
        raise ConfigError(f"fields {grid[0]}x{grid[1]} ask for more fields than the labelled area has pixel rows and "
                          f"columns ({box.shape[0]} x {box.shape[1]}); give fewer fields")
    fields = [f for band in np.array_split(box, grid[0], axis=0) for f in np.array_split(band, grid[1], axis=1)]
    return [f for f in fields if f.size and (f != ignore_index).mean() >= min_valid]


def label_agreement(
    labels: Any,
    reference: Any,
    *,
    classes: Sequence[str] | None = None,
    reference_classes: Sequence[str] | None = None,
    ignore_index: int | None = 255,
    reference_ignore_index: int | None = 255,
) -> pd.DataFrame:
    """A label map against reference labels of the same pixels (e.g. a segmentation of a
    micrograph against the EBSD-informed annotation carried onto it), class by class by name.

    Both are compared on the pixels labelled in both (the reference usually covers only the
    EBSD field). For each reference class: its fraction there in the reference and in
    ``labels``, the difference (labels - reference) and the IoU. A class of ``labels`` that the
    reference does not have counts as disagreeing wherever it lies.

    Parameters
    ----------
    labels, reference : (y, x) int arrays or DataArrays of one shape
    classes, reference_classes : sequence of str, optional
        Class names (default each map's ``attrs["classes"]``).
    ignore_index, reference_ignore_index : int or None
        Unlabelled value of each map.

    Returns
    -------
    pd.DataFrame
        One row per reference class: class, reference_fraction, fraction, difference, iou;
        ``attrs["accuracy"]`` (share of the common pixels with the same class name) and
        ``attrs["n_pixels"]`` (the common pixels).

    Examples
    --------
    >>> ref = np.array([[0, 0, 1, 1]]); seg = np.array([[1, 0, 1, 1]])
    >>> t = label_agreement(seg, ref, classes=["a", "b"], reference_classes=["a", "b"])
    >>> t[["class", "reference_fraction", "fraction"]].values.tolist()
    [['a', 0.5, 0.25], ['b', 0.5, 0.75]]
    """
    ours = np.asarray(label_array(labels, what="labels")).astype(np.int64)
    theirs = np.asarray(label_array(reference, what="reference")).astype(np.int64)
    if ours.shape != theirs.shape:
        raise ConfigError(f"labels {ours.shape} and reference {theirs.shape} must have one shape (the same pixels)")
    names_ours = _classes_of(labels, classes)
    names_ref = _classes_of(reference, reference_classes)
    if names_ours is None or names_ref is None:
        raise ConfigError("label_agreement matches classes by name: give classes= and reference_classes=")
    common = np.ones(ours.shape, bool)
    if ignore_index is not None:
        common &= ours != ignore_index
    if reference_ignore_index is not None:
        common &= theirs != reference_ignore_index
    n = int(common.sum())
    if n == 0:
        raise ConfigError("labels and reference have no pixel labelled in both")
    ours, theirs = ours[common], theirs[common]
    # Our labels as reference indices (-1: a class the reference does not have).
    lookup = {name: i for i, name in enumerate(names_ref)}
    mapped = np.array([lookup.get(name, -1) for name in names_ours] + [-1])
    ours_ref = mapped[np.where((ours < 0) | (ours >= len(names_ours)), len(names_ours), ours)]
    rows = []
    for i, name in enumerate(names_ref):
        in_ref, in_ours = theirs == i, ours_ref == i
        union = int((in_ref | in_ours).sum())
        rows.append({"class": name, "reference_fraction": float(in_ref.mean()), "fraction": float(in_ours.mean()),
                     "difference": float(in_ours.mean() - in_ref.mean()),
                     "iou": float((in_ref & in_ours).sum() / union) if union else float("nan")})
    table = pd.DataFrame(rows)
    table.attrs["accuracy"] = float((ours_ref == theirs).mean())
    table.attrs["n_pixels"] = n
    return table
