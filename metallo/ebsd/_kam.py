"""Kernel average misorientation (KAM).

KAM of order n at a pixel: the mean disorientation to its neighbours of order n, leaving out
neighbours of another phase, unindexed ones and those whose disorientation exceeds ``max_deg``
(so that grain boundaries do not enter the kernel). Durmaz et al. (2021) use the 3rd order.

Programs differ in which neighbours "order n" means, and the value follows the kernel's mean
distance (in a uniform orientation gradient g per step, 3rd order: ring 2.25 g, MTEX 1.17 g,
full 1.75 g). ``kernel="ring"`` (default) takes the n-th shell only: the 8n pixels at
Chebyshev distance n on a square grid, the 6n pixels at hexagonal distance n on a hexagonal
grid. ``kernel="mtex"`` takes every neighbour up to order n as MTEX's ``EBSDsquare/KAM`` and
``EBSDhex/KAM`` do (Manhattan distance 1..n on a square grid, hexagonal distance 1..n), so that
``kam(ebsd, order=n, max_deg=t, kernel="mtex")`` is MTEX's ``ebsd.KAM('order', n,
'threshold', t)`` (MTEX's default threshold is none; on a map with grain ids MTEX also leaves
out neighbours in other grains). ``kernel="full"`` takes the whole (2n+1)² square (DREAM.3D).

References
----------
.. [1] A. R. Durmaz, M. Müller, B. Lei, A. Thomas, D. Britz, E. A. Holm, C. Eberl, F. Mücklich,
   P. Gumbsch, "A deep learning approach for complex microstructure inference",
   Nature Communications 12, 6272 (2021). doi:10.1038/s41467-021-26565-5
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from metallo.ebsd._grains import map_dataarray
from metallo.ebsd._neighbours import (
    KAM_KERNELS,
    OrientationMap,
    iter_pair_angles,
    iter_slice_angles,
    neighbour_offsets,
    orientation_map,
)
from metallo.errors import ConfigError

__all__ = ["check_kam_kernel", "kam"]


def check_kam_kernel(kernel: str, what: str = "KAM kernel") -> str:
    """``kernel`` if it is one of :data:`KAM_KERNELS`, else a ConfigError naming ``what``.

    Examples
    --------
    >>> check_kam_kernel("mtex")
    'mtex'
    """
    if kernel not in KAM_KERNELS:
        raise ConfigError(f"{what} must be one of {', '.join(KAM_KERNELS)}; got {kernel!r}")
    return kernel


def kam_values(omap: OrientationMap, *, order: int, max_deg: float, kernel: str = "ring") -> np.ndarray:
    """Flat KAM values (degrees, NaN where undefined) of an :class:`OrientationMap`."""
    total = np.zeros(omap.size)
    count = np.zeros(omap.size)
    offsets = neighbour_offsets(order, omap.grid, half=True, kernel=kernel)
    # Each unordered pair is computed once and credited to both pixels.
    if omap.grid != "hexagonal":
        total2, count2 = total.reshape(omap.shape), count.reshape(omap.shape)
        for sa, sb, ang in iter_slice_angles(omap, offsets):
            ok = ang <= max_deg
            w = np.where(ok, ang, 0.0)
            total2[sa] += w
            total2[sb] += w
            count2[sa] += ok
            count2[sb] += ok
    else:
        for a, b, ang in iter_pair_angles(omap, offsets):
            ok = ang <= max_deg
            aa, bb, w = a[ok], b[ok], ang[ok]
            total += np.bincount(aa, weights=w, minlength=omap.size)
            total += np.bincount(bb, weights=w, minlength=omap.size)
            count += np.bincount(aa, minlength=omap.size)
            count += np.bincount(bb, minlength=omap.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / count
    out[(count == 0) | ~omap.indexed()] = np.nan
    return out


def kam(ebsd: xr.Dataset, *, order: int = 3, max_deg: float = 5.0, kernel: str = "ring") -> xr.DataArray:
    """Kernel average misorientation map.

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map (square or hexagonal grid).
    order : int
        Neighbour order n of the kernel (default 3, as in Durmaz et al. 2021).
    max_deg : float
        Disorientations above this are left out of the average (default 5 deg).
    kernel : {"ring", "mtex", "full"}
        Which neighbours of order n: the n-th shell only (default), every neighbour up to
        order n as MTEX counts them, or the whole (2n+1)² square (module docstring).

    Returns
    -------
    xr.DataArray
        (y, x) degrees; NaN at unindexed pixels and where no neighbour qualifies.

    Example
    -------
    >>> from metallo.synth import make_specimen
    >>> ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd   # a synthetic map
    >>> k = kam(ebsd, order=3, max_deg=5.0)
    >>> k.shape, bool(0.0 < float(k.mean()) < 5.0)
    ((40, 40), True)
    """
    if int(order) < 1:
        raise ConfigError(f"KAM order must be >= 1; got {order}")
    if not max_deg > 0:
        raise ConfigError(f"max_deg must be positive; got {max_deg}")
    check_kam_kernel(kernel)
    omap = orientation_map(ebsd)
    values = kam_values(omap, order=int(order), max_deg=float(max_deg), kernel=kernel)
    params = {"order": int(order), "max_deg": float(max_deg), "kernel": kernel, "grid": omap.grid}
    return map_dataarray(values, omap, "kam", params, "deg")
