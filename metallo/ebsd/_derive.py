"""``derive``: every map of ``/ebsd/<name>/derived`` in one pass over a shared orientation map."""

from __future__ import annotations

import json
from typing import Literal, overload

import numpy as np
import xarray as xr

from metallo.ebsd._boundaries import BOUNDARY_CLASSES, boundary_codes, special_parameters
from metallo.ebsd._grains import (
    Grains,
    _first_neighbour_angles,
    _grain_table,
    _label,
    check_tolerance,
    map_dataarray,
)
from metallo.ebsd._kam import check_kam_kernel, kam_values
from metallo.ebsd._neighbours import orientation_map
from metallo.ebsd._twins import twins_by_phase

__all__ = ["derive"]


@overload
def derive(ebsd: xr.Dataset, *, tolerance_deg: float = ..., min_size_px: int = ..., kam_order: int = ...,
           kam_max_deg: float = ..., kam_kernel: str = ..., low_deg: float = ..., high_deg: float = ..., special: bool = ...,
           return_grains: Literal[False] = ...) -> xr.Dataset: ...


@overload
def derive(ebsd: xr.Dataset, *, tolerance_deg: float = ..., min_size_px: int = ..., kam_order: int = ...,
           kam_max_deg: float = ..., kam_kernel: str = ..., low_deg: float = ..., high_deg: float = ..., special: bool = ...,
           return_grains: Literal[True]) -> tuple[xr.Dataset, Grains]: ...


def derive(
    ebsd: xr.Dataset,
    *,
    tolerance_deg: float = 5.0,
    min_size_px: int = 2,
    kam_order: int = 3,
    kam_max_deg: float = 5.0,
    kam_kernel: str = "ring",
    low_deg: float = 2.0,
    high_deg: float = 15.0,
    special: bool = True,
    return_grains: bool = False,
) -> xr.Dataset | tuple[xr.Dataset, Grains]:
    """Grain ids, KAM, GOS, GAM and boundary maps of an EBSD map, each with its parameters.

    The result is what ``spec.add("ebsd/<name>/derived", ...)`` stores: variables
    ``grain_id`` (int32, -1 = no grain), ``kam``, ``gos``, ``gam`` (float32, degrees) and
    ``boundaries`` (uint8 codes of :func:`metallo.ebsd.boundaries`), each with
    ``attrs["parameters"]`` as JSON.

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map (cleaned or not).
    tolerance_deg, min_size_px : float, int
        Grain reconstruction (see :func:`metallo.ebsd.grains`).
    kam_order, kam_max_deg, kam_kernel : int, float, str
        KAM (see :func:`metallo.ebsd.kam`).
    low_deg, high_deg, special : float, float, bool
        Boundary classes (see :func:`metallo.ebsd.boundaries`).
    return_grains : bool
        Also return the :class:`Grains` (with its table).

    Returns
    -------
    xr.Dataset or (xr.Dataset, Grains)

    Example
    -------
    >>> from metallo.synth import make_specimen
    >>> ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd   # a synthetic map
    >>> derived = derive(ebsd)
    >>> sorted(derived.data_vars)
    ['boundaries', 'gam', 'gos', 'grain_id', 'kam']
    """
    check_kam_kernel(kam_kernel)
    check_tolerance(tolerance_deg)
    omap = orientation_map(ebsd)
    pairs = _first_neighbour_angles(omap)
    ids, n = _label(omap, pairs, float(tolerance_deg), int(min_size_px))
    table, _, _ = _grain_table(omap, ids, n, pairs)
    del pairs
    gparams = {"tolerance_deg": float(tolerance_deg), "min_size_px": int(min_size_px),
               "connectivity": 6 if omap.grid == "hexagonal" else 4}
    safe = np.maximum(ids, 0)
    inside = ids >= 0
    gos_px = np.where(inside, table["gos_deg"].to_numpy()[safe] if n else np.nan, np.nan)
    gam_px = np.where(inside, table["gam_deg"].to_numpy()[safe] if n else np.nan, np.nan)
    kparams = {"order": int(kam_order), "max_deg": float(kam_max_deg), "kernel": kam_kernel, "grid": omap.grid}
    twins = twins_by_phase(ebsd)
    bparams = {"low_deg": float(low_deg), "high_deg": float(high_deg), **special_parameters(twins, bool(special)),
               "classes": list(BOUNDARY_CLASSES), "grains": True, **gparams}
    out = xr.Dataset(
        {
            "grain_id": map_dataarray(ids.astype(np.int32), omap, "grain_id", gparams),
            "kam": map_dataarray(
                kam_values(omap, order=int(kam_order), max_deg=float(kam_max_deg), kernel=kam_kernel).astype(np.float32),
                omap, "kam", kparams, "deg"),
            "gos": map_dataarray(gos_px.astype(np.float32), omap, "gos", gparams, "deg"),
            "gam": map_dataarray(gam_px.astype(np.float32), omap, "gam", gparams, "deg"),
            "boundaries": map_dataarray(
                boundary_codes(omap, ids, low_deg=float(low_deg), high_deg=float(high_deg), special=bool(special),
                               twins=twins),
                omap, "boundaries", bparams),
        },
        attrs={"n_grains": int(n), "source": str(ebsd.attrs.get("source", "")),
               "step_um": omap.step_x, "grid": omap.grid,
               "parameters": json.dumps({"grains": gparams, "kam": kparams, "boundaries": bparams})},
    )
    if return_grains:
        return out, Grains(out["grain_id"], table, gparams)
    return out
