"""Width of the particle-free (denuded) zone along a carbide network.

The procedure is that of DeCost et al. (Microsc. Microanal. 2019, sec. 2.4): fill the network
so matrix enclosed by it is dropped, keep only matrix regions that touch the network after a
morphological closing, drop matrix nearer to Widmanstätten than to the network, then read
the Euclidean distance to the network on the denuded-zone interface (the matrix pixels next
to the particle field).

References
----------
.. [1] B. L. DeCost, B. Lei, T. Francis, E. A. Holm, "High throughput quantitative metallography
   for complex microstructures using deep learning: a case study in ultrahigh carbon steel",
   Microscopy and Microanalysis 25(1), 21-29 (2019). doi:10.1017/S1431927618015635
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

from metallo._xarray import image_dataarray
from metallo.errors import ConfigError
from metallo.quantify._common import label_array, resolve_pixel_size

__all__ = ["DenudedZone", "denuded_zone_width"]


@dataclass
class DenudedZone:
    """Result of :func:`denuded_zone_width`.

    Attributes
    ----------
    width_map : xr.DataArray
        (y, x) distance to the network in µm on the kept denuded-zone pixels, NaN elsewhere.
    interface : pd.DataFrame
        One row per denuded-zone interface pixel: y_um, x_um, width_um.
    zone : ndarray of bool
        The cleaned denuded-zone (matrix) region.
    parameters : dict
        The settings used.
    """

    width_map: xr.DataArray
    interface: pd.DataFrame
    zone: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        """Mean, median, standard deviation, 10th/90th percentile of the width (µm) and count."""
        w = self.interface["width_um"].to_numpy()
        if w.size == 0:
            return {"n": 0.0, "mean_um": np.nan, "median_um": np.nan, "std_um": np.nan,
                    "p10_um": np.nan, "p90_um": np.nan}
        return {
            "n": float(w.size),
            "mean_um": float(w.mean()),
            "median_um": float(np.median(w)),
            "std_um": float(w.std(ddof=1)) if w.size > 1 else 0.0,
            "p10_um": float(np.percentile(w, 10)),
            "p90_um": float(np.percentile(w, 90)),
        }


def denuded_zone_width(
    labels: Any,
    *,
    network_class: int,
    matrix_class: int,
    pixel_size_um: float | None = None,
    widmanstatten_class: int | None = None,
    ignore_index: int | None = 255,
    closing_radius_px: int = 3,
) -> DenudedZone:
    """Denuded-zone width map and width distribution along the zone's interface.

    Parameters
    ----------
    labels : (y, x) int array or DataArray
        Microconstituent label map (e.g. UHCS: network, spheroidite, matrix, Widmanstätten).
    network_class : int
        Label of the proeutectoid carbide network.
    matrix_class : int
        Label of the particle-free ferrite matrix (the denuded zone).
    pixel_size_um : float, optional
        Pixel size in µm; taken from ``labels.attrs`` when omitted.
    widmanstatten_class : int, optional
        Label of Widmanstätten cementite; matrix nearer to it than to the network is dropped.
    ignore_index : int or None
        Unannotated pixels; interface pixels next to them are not measured.
    closing_radius_px : int
        Radius of the disk used to close the matrix before testing contact with the network.

    Returns
    -------
    DenudedZone
        ``width_map``, ``interface`` (per-pixel widths), ``zone``; ``summary()`` gives the
        mean / median / percentiles.

    Examples
    --------
    >>> lab = np.full((60, 60), 2); lab[:20] = 0; lab[20:28] = 1
    >>> dz = denuded_zone_width(lab, network_class=0, matrix_class=1, pixel_size_um=1.0)
    >>> float(dz.interface["width_um"].median())
    8.0
    """
    ps = resolve_pixel_size(labels, pixel_size_um, what="labels")
    lab = np.asarray(label_array(labels, what="labels")).astype(np.int64)
    if closing_radius_px < 0:
        raise ConfigError(f"closing_radius_px must be >= 0; got {closing_radius_px}")
    if network_class == matrix_class:
        raise ConfigError(f"network_class and matrix_class must differ; both are {network_class}")
    network = lab == network_class
    if not network.any():
        raise ConfigError(f"labels: no pixel of network_class={network_class}")
    if not (lab == matrix_class).any():
        warnings.warn(f"labels: no pixel of matrix_class={matrix_class}: no denuded zone can be measured "
                      "(the width table is empty; check the class numbers)", UserWarning, stacklevel=2)
    ignore = lab == ignore_index if ignore_index is not None else np.zeros(lab.shape, bool)
    # Matrix enclosed by the network belongs to the network, not to a denuded zone.
    network = ndimage.binary_fill_holes(network)
    matrix = (lab == matrix_class) & ~network
    if closing_radius_px > 0:
        r = closing_radius_px
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        disk = yy**2 + xx**2 <= r**2
        closed = ndimage.binary_closing(matrix, structure=disk, border_value=0) | matrix
    else:
        closed = matrix
    regions, n_regions = ndimage.label(closed & ~network)
    touching = ndimage.binary_dilation(network, structure=np.ones((3, 3), bool))
    keep_ids = np.unique(regions[touching & (regions > 0)])
    zone = np.isin(regions, keep_ids) & matrix
    dist_net = ndimage.distance_transform_edt(~network)
    if widmanstatten_class is not None:
        widm = lab == widmanstatten_class
        if widm.any():
            dist_w = ndimage.distance_transform_edt(~widm)
            zone &= dist_w >= dist_net
    # Interface: zone pixels with a 4-neighbour that is neither zone nor network (the
    # particle field); ignored pixels do not make an interface.
    other = ~(zone | network | ignore)
    if widmanstatten_class is not None:
        other &= lab != widmanstatten_class
    cross = ndimage.generate_binary_structure(2, 1)
    interface = zone & ndimage.binary_dilation(other, structure=cross)
    # On the image border the nearest network may lie outside the field: not measured.
    interface[[0, -1], :] = False
    interface[:, [0, -1]] = False
    width_map = np.where(zone, dist_net * ps, np.nan)
    yy, xx = np.nonzero(interface)
    table = pd.DataFrame(
        {"y_um": yy * ps, "x_um": xx * ps, "width_um": dist_net[yy, xx] * ps}
    )
    params = {
        "network_class": network_class,
        "matrix_class": matrix_class,
        "widmanstatten_class": widmanstatten_class,
        "ignore_index": ignore_index,
        "closing_radius_px": closing_radius_px,
        "pixel_size_um": ps,
    }
    table.attrs["parameters"] = json.dumps(params)
    da = image_dataarray(width_map, pixel_size_um=ps, name="denuded_zone_width_um",
                         attrs={"units": "um", "parameters": json.dumps(params)})
    return DenudedZone(width_map=da, interface=table, zone=zone, parameters=params)
