"""An EBSD map column as an image on the map's µm grid (for registration and figures)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from metallo._xarray import image_dataarray
from metallo.errors import ConfigError

__all__ = ["map_image"]


def map_image(ebsd: xr.Dataset, column: str = "iq") -> xr.DataArray:
    """One per-point column of an EBSD map (IQ, CI, band contrast ...) as an image.

    Parameters
    ----------
    ebsd : xr.Dataset
        An EBSD map (metallo layout).
    column : str
        The column; ``"iq"`` (image quality / band contrast) by default. Falls back to ``"ci"``
        when the map has no ``"iq"`` and ``column`` was left at its default.

    A hexagonal-grid map is first resampled to a square grid of its step
    (:func:`~metallo.ebsd.resample_to_square`, nearest point), so that the image's pixels are
    square and its µm coordinates those of the map.

    Returns
    -------
    xr.DataArray
        float32 (y, x) on the map's µm coordinates, ``attrs["modality"] == "EBSD-IQ"`` for IQ,
        NaN (points off the grid) replaced by 0.

    Examples
    --------
    >>> from metallo.synth import make_specimen
    >>> iq = map_image(make_specimen(0, ebsd_shape=(20, 20), micrographs=False).ebsd)
    >>> iq.dims, iq.attrs["pixel_size_um"]
    (('y', 'x'), 0.5)
    """
    from metallo.ebsd._grid import resample_to_square

    # An image has square pixels: a hexagonal map's rows are sqrt(3)/2 x step apart, and its
    # points put row by row on a step grid would stretch the image 15 % in y.
    ebsd = resample_to_square(ebsd)
    if column not in ebsd and column == "iq" and "ci" in ebsd:
        column = "ci"
    if column not in ebsd:
        names = sorted(str(v) for v in ebsd.data_vars if ebsd[v].dims == ("y", "x"))
        raise ConfigError(f"EBSD map {ebsd.attrs.get('source', '')!r} has no column {column!r}; columns: {', '.join(names)}")
    values = np.nan_to_num(ebsd[column].values.astype(np.float32))
    return image_dataarray(
        values,
        pixel_size_um=float(ebsd.attrs["step_um"]),
        origin_um=(float(ebsd.y[0]), float(ebsd.x[0])),
        name=column,
        attrs={"modality": "EBSD-IQ" if column == "iq" else "other", "source": str(ebsd.attrs.get("source", ""))},
    )
