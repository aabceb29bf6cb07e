"""Conventions shared by every module for images on physical (µm) coordinates.

An image is an ``xr.DataArray`` with dims ``("y", "x")`` or ``("y", "x", "channel")``.
Pixel ``(i, j)`` has its centre at ``y = i * pixel_size_um``, ``x = j * pixel_size_um``.
``attrs["pixel_size_um"]`` holds the pixel size; it is NaN when unknown, and then the
coordinates are in pixels (coordinate attr ``units == "px"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from metallo.errors import ConfigError

__all__ = ["as_image", "image_dataarray", "pixel_size_um", "require_pixel_size_um", "to_numpy"]


def image_dataarray(
    array: np.ndarray,
    *,
    pixel_size_um: float | None = None,
    name: str = "image",
    attrs: Mapping[str, Any] | None = None,
    origin_um: tuple[float, float] = (0.0, 0.0),
) -> xr.DataArray:
    """Wrap a 2-D (y, x) or 3-D (y, x, channel) array as an image on µm coordinates.

    Parameters
    ----------
    array : ndarray
        Image data, (y, x) or (y, x, channel).
    pixel_size_um : float, optional
        Pixel size in µm. ``None`` means unknown: coordinates are then in pixels.
    name : str
        Name of the DataArray.
    attrs : mapping, optional
        Extra attributes (e.g. ``modality``, ``source``).
    origin_um : (float, float)
        Physical (y, x) position of pixel (0, 0).

    Returns
    -------
    xr.DataArray

    Examples
    --------
    >>> da = image_dataarray(np.zeros((4, 6)), pixel_size_um=0.5)
    >>> float(da.x[-1])
    2.5
    """
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise ConfigError(f"an image must be 2-D (y, x) or 3-D (y, x, channel); got shape {array.shape}")
    known = pixel_size_um is not None and math.isfinite(float(pixel_size_um))
    if known and float(pixel_size_um) <= 0:  # type: ignore[arg-type]
        raise ConfigError(f"pixel_size_um must be positive; got {pixel_size_um}")
    step = float(pixel_size_um) if known else 1.0  # type: ignore[arg-type]
    units = "um" if known else "px"
    coords: dict[str, Any] = {
        "y": ("y", origin_um[0] + step * np.arange(array.shape[0]), {"units": units}),
        "x": ("x", origin_um[1] + step * np.arange(array.shape[1]), {"units": units}),
    }
    dims: tuple[str, ...] = ("y", "x")
    if array.ndim == 3:
        dims = ("y", "x", "channel")
        coords["channel"] = ("channel", np.arange(array.shape[2]))
    out_attrs = dict(attrs or {})
    out_attrs["pixel_size_um"] = step if known else float("nan")
    return xr.DataArray(array, dims=dims, coords=coords, name=name, attrs=out_attrs)


def pixel_size_um(image: Any) -> float | None:
    """The pixel size in µm of an image, label map or EBSD map, or ``None`` if unknown.

    The one source is the ``x`` coordinate: its spacing, in µm unless its ``units`` say
    ``"px"`` (then the pixel size is unknown). Only where the coordinate cannot tell (no ``x``
    coordinate, a single column, other units) is ``attrs["pixel_size_um"]`` read. Where both are
    known and agree to 1e-6, the attribute's exact value is returned (no rounding drift).

    Examples
    --------
    >>> pixel_size_um(image_dataarray(np.zeros((2, 3)), pixel_size_um=0.25))
    0.25
    >>> pixel_size_um(image_dataarray(np.zeros((2, 3)))) is None
    True
    """
    attrs = getattr(image, "attrs", None) or {}
    try:
        # An EBSD map states its x step (``step_um``): the pixel size of a map of one column,
        # whose coordinates cannot give it (an EMsoft simulation's 1 x 1 "map").
        stated = float(attrs.get("pixel_size_um", attrs.get("step_um", math.nan)))
    except (TypeError, ValueError):
        stated = math.nan
    stated_ok = math.isfinite(stated) and stated > 0
    coords = getattr(image, "coords", None)
    if coords is not None and "x" in coords:
        x = coords["x"]
        units = str(x.attrs.get("units", "um"))
        if units == "px":
            return None
        if units in ("um", "µm") and x.size > 1:
            step = float(abs(x.values[1] - x.values[0]))
            if stated_ok and abs(stated - step) <= 1e-6 * step:
                return stated
            return step if step > 0 else None
    return stated if stated_ok else None


def require_pixel_size_um(image: Any, *, what: str) -> float:
    """:func:`pixel_size_um`, or a :class:`~metallo.errors.ConfigError` naming ``what`` when unknown.

    Use it wherever a quantity needs µm: a silent 1 µm/px would be a wrong number.

    Examples
    --------
    >>> require_pixel_size_um(image_dataarray(np.zeros((2, 3)), pixel_size_um=0.5), what="lom")
    0.5
    """
    value = pixel_size_um(image)
    if value is None:
        raise ConfigError(
            f"{what}: pixel size unknown (its x coordinate is not in µm and attrs has no pixel_size_um); "
            "give the pixel size when reading the image (pixel_size_um=, --pixel-size-um)"
        )
    return value


def to_numpy(image: Any) -> np.ndarray:
    """The values of a DataArray or array-like as a numpy array (no copy if possible)."""
    if isinstance(image, xr.DataArray):
        return np.asarray(image.values)
    return np.asarray(image)


def as_image(image: Any, *, pixel_size_um: float | None = None, name: str = "image") -> xr.DataArray:
    """Accept a numpy array or DataArray and return a DataArray on the image convention.

    An explicit ``pixel_size_um`` overrides the one in ``image.attrs``.
    """
    if isinstance(image, xr.DataArray):
        if pixel_size_um is None:
            return image
        return image_dataarray(image.values, pixel_size_um=pixel_size_um, name=str(image.name or name), attrs=image.attrs)
    return image_dataarray(np.asarray(image), pixel_size_um=pixel_size_um, name=name)
