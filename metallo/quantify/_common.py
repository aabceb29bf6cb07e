"""Input checks shared by the quantify functions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from metallo._xarray import pixel_size_um as _pixel_size_of_data
from metallo._xarray import to_numpy
from metallo.errors import ConfigError


def resolve_pixel_size(data: Any, pixel_size_um: float | None, *, what: str = "labels") -> float:
    """The explicit pixel size, else the one of ``data`` (its µm coordinates); ConfigError when neither is known."""
    value = pixel_size_um if pixel_size_um is not None else _pixel_size_of_data(data)
    if value is None or not math.isfinite(float(value)) or float(value) <= 0:
        raise ConfigError(
            f"{what}: pixel_size_um must be a positive number (pass pixel_size_um= or use a "
            f"DataArray on µm coordinates); got {value!r}"
        )
    return float(value)


def label_array(data: Any, *, what: str = "labels") -> np.ndarray:
    """A 2-D integer or boolean numpy array from an array or DataArray."""
    array = to_numpy(data)
    if array.ndim != 2:
        raise ConfigError(f"{what} must be a 2-D (y, x) label map or mask; got shape {array.shape}")
    if array.dtype.kind not in "biu":
        if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
            return array.astype(np.int64)
        raise ConfigError(f"{what} must hold integer labels or booleans; got dtype {array.dtype}")
    return array


def weighted_quantile(values: Any, weights: Any, q: float) -> float:
    """The ``q`` quantile of ``values`` each counted ``weights`` times (the smallest value whose
    cumulative weight reaches ``q`` of the total); NaN for no values.

    Examples
    --------
    >>> weighted_quantile([1.0, 2.0, 3.0], [1.0, 1.0, 2.0], 0.5)
    2.0
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != v.shape:
        raise ConfigError(f"weighted_quantile: {w.size} weights for {v.size} values (arguments: values, weights, q)")
    if not 0 <= q <= 1:
        raise ConfigError(f"weighted_quantile: q must be in [0, 1]; got {q}")
    if v.size == 0:
        return float("nan")
    if not (np.all(w >= 0) and w.sum() > 0):
        raise ConfigError("weighted_quantile: weights must be >= 0 with a positive sum")
    order = np.argsort(v)
    cum = np.cumsum(w[order]) / w.sum()
    return float(v[order][min(int(np.searchsorted(cum, q)), v.size - 1)])

