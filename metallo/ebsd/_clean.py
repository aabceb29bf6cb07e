"""EBSD cleanup as in EDAX OIM Analysis: neighbour CI correlation, CI thresholding, grain dilation.

1. Neighbour CI correlation: a point whose CI is below ``min_ci`` takes the orientation, phase
   and CI of its neighbour with the highest CI (8 neighbours on a square grid, 6 on a
   hexagonal one) when that CI reaches ``min_ci``.
2. CI threshold: points still below ``min_ci`` (and, if given, below ``min_iq`` or above
   ``max_fit``) become unindexed (phase -1).
3. Grain dilation: grains are reconstructed (``tolerance_deg``, ``min_grain_px``); points in no
   grain (unindexed or in a grain that is too small) that touch grains join the grain most of
   their grain neighbours belong to, taking the orientation and phase of one of those
   neighbours; repeated until nothing changes or ``max_iterations``. Cells without any
   measurement (missing from a sparse file) are not filled.

More than 20 % of the measured points given a neighbour's orientation warns: that is an
interpolation, not a cleanup.

Defaults follow the OIM cleanup of Durmaz et al. (2021) (grain tolerance 5 deg) and the usual minimum CI
0.1 (their CI correlation used 0.01 on dictionary-indexed data). Each step and the number
of points it changed is recorded in ``attrs["cleanup"]`` (JSON list) of the result.

References
----------
.. [1] A. R. Durmaz, M. Müller, B. Lei, A. Thomas, D. Britz, E. A. Holm, C. Eberl, F. Mücklich,
   P. Gumbsch, "A deep learning approach for complex microstructure inference",
   Nature Communications 12, 6272 (2021). doi:10.1038/s41467-021-26565-5
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import xarray as xr

from metallo.ebsd._grains import _first_neighbour_angles, _label
from metallo.ebsd._neighbours import (
    OrientationMap,
    neighbour_offsets,
    offset_pairs,
    orientation_map,
)
from metallo.errors import ConfigError

__all__ = ["MAX_INVENTED", "clean", "invented_share"]

_STEPS = ("ci_correlation", "ci_threshold", "grain_dilation")
#: Share of a map's measured points that cleanup may give a neighbour's orientation before the
#: result is an interpolation rather than a measurement (a warning; grain sizes and phase
#: fractions of such a map are flagged).
MAX_INVENTED = 0.2


def _all_neighbour_offsets(grid: str) -> list[tuple[int, int]]:
    return neighbour_offsets(1, grid, half=False)


def _ci_correlation(omap: OrientationMap, ci: np.ndarray, euler: np.ndarray, min_ci: float,
                    columns: dict[str, np.ndarray]) -> int:
    # Cells without a measurement (NaN CI: the padding cell of a hexagonal grid's short rows, a
    # point missing from the file) are no points to correct.
    low = np.flatnonzero(ci < min_ci)
    if low.size == 0:
        return 0
    best_ci = np.full(omap.size, -np.inf)
    best_src = np.full(omap.size, -1, dtype=np.int64)
    for off in _all_neighbour_offsets(omap.grid):
        a, b = offset_pairs(omap.shape, omap.grid, off)
        cand = np.where(np.isfinite(ci[b]) & (omap.phase[b] >= 0), ci[b], -np.inf)
        better = cand > best_ci[a]
        best_ci[a[better]] = cand[better]
        best_src[a[better]] = b[better]
    take = low[(best_src[low] >= 0) & (best_ci[low] >= min_ci)]
    src = best_src[take]
    euler[take] = euler[src]
    omap.q[take] = omap.q[src]
    omap.touch()
    omap.phase[take] = omap.phase[src]
    for values in columns.values():  # the neighbour's CI, IQ, fit, ... come with its orientation
        values[take] = values[src]
    return int(take.size)


def _grain_dilation(omap: OrientationMap, euler: np.ndarray, columns: dict[str, np.ndarray], *, tolerance_deg: float,
                    min_grain_px: int, max_iterations: int, no_data: np.ndarray) -> int:
    ids, _ = _label(omap, _first_neighbour_angles(omap), tolerance_deg, min_grain_px)
    ids = ids.astype(np.int64)
    offsets = _all_neighbour_offsets(omap.grid)
    pairs = [offset_pairs(omap.shape, omap.grid, off) for off in offsets]
    changed = 0
    for _ in range(max_iterations):
        free = (ids < 0) & ~no_data
        if not free.any():
            break
        pix, gid, src = [], [], []
        for a, b in pairs:
            sel = free[a] & (ids[b] >= 0)
            pix.append(a[sel])
            gid.append(ids[b[sel]])
            src.append(b[sel])
        p = np.concatenate(pix)
        if p.size == 0:
            break
        g, s = np.concatenate(gid), np.concatenate(src)
        # Majority grain per free pixel: count (pixel, grain) pairs, keep the largest count.
        order = np.lexsort((g, p))
        p, g, s = p[order], g[order], s[order]
        start = np.flatnonzero(np.r_[True, (p[1:] != p[:-1]) | (g[1:] != g[:-1])])
        counts = np.diff(np.r_[start, p.size])
        pp, gg, ss = p[start], g[start], s[start]
        by_pixel = np.lexsort((-counts, pp))
        first = by_pixel[np.r_[True, pp[by_pixel][1:] != pp[by_pixel][:-1]]]
        target, grain, source = pp[first], gg[first], ss[first]
        ids[target] = grain
        euler[target] = euler[source]
        omap.q[target] = omap.q[source]
        omap.touch()
        omap.phase[target] = omap.phase[source]
        for values in columns.values():  # a filled point takes its source's CI, IQ, fit, ...
            values[target] = values[source]
        changed += int(target.size)
    return changed


def clean(
    ebsd: xr.Dataset,
    *,
    min_ci: float = 0.1,
    tolerance_deg: float = 5.0,
    min_grain_px: int = 2,
    min_iq: float | None = None,
    max_fit: float | None = None,
    steps: tuple[str, ...] = _STEPS,
    max_iterations: int = 50,
) -> xr.Dataset:
    """Clean an EBSD map the way OIM Analysis does (see the module docstring for the steps).

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map. Maps without a ``ci`` variable (e.g. .ctf) skip the CI steps.
    min_ci : float
        Minimum confidence index (default 0.1).
    tolerance_deg : float
        Grain tolerance angle of the dilation step (default 5 deg, as in Durmaz et al. 2021).
    min_grain_px : int
        Grains smaller than this are dissolved into their neighbours by the dilation.
    min_iq, max_fit : float, optional
        Further quality thresholds (image quality / band contrast, fit / MAD in degrees).
    steps : tuple of str
        Which of ``"ci_correlation"``, ``"ci_threshold"``, ``"grain_dilation"`` to run, in order.
    max_iterations : int
        Upper bound on the dilation passes.

    Returns
    -------
    xr.Dataset
        A cleaned copy; ``attrs["cleanup"]`` lists each step with its parameters and the
        number of points it changed.

    Raises
    ------
    ConfigError
        An unknown step, or thresholds that leave no indexed point for grain dilation.

    Example
    -------
    >>> from metallo.synth import make_specimen
    >>> ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd   # a synthetic map
    >>> int((ebsd["phase"] < 0).sum())      # not indexed
    2
    >>> cleaned = clean(ebsd, min_ci=0.1, tolerance_deg=5.0)
    >>> [s["step"] for s in json.loads(cleaned.attrs["cleanup"])], int((cleaned["phase"] < 0).sum())
    (['ci_correlation', 'ci_threshold', 'grain_dilation'], 0)
    """
    unknown = [s for s in steps if s not in _STEPS]
    if unknown:
        raise ConfigError(f"unknown cleanup steps {unknown}; expected some of {', '.join(_STEPS)}")
    omap = orientation_map(ebsd)
    if not (omap.phase >= 0).any():
        raise ConfigError(f"{ebsd.attrs.get('source') or 'EBSD map'}: no point of the map is indexed (every point "
                          "carries the not-indexed marker); there is nothing to clean")
    euler = np.asarray(ebsd["euler"].values, dtype=np.float64).reshape(-1, 3).copy()
    ci = np.asarray(ebsd["ci"].values, dtype=np.float64).reshape(-1).copy() if "ci" in ebsd else None
    # Per-point measurement columns (CI, IQ, fit, ...) that a dilated point copies from its source.
    columns = {str(name): np.asarray(var.values).reshape(-1).copy() for name, var in ebsd.data_vars.items()
               if var.dims == ("y", "x") and name not in ("phase", "ci") and np.issubdtype(var.dtype, np.floating)}
    if ci is not None:
        columns["ci"] = ci
    # Cells without a measurement (a point missing from a sparse .ctf, the padding cell of a
    # hexagonal grid's short row): NaN CI, or, without CI, NaN in every measurement column. They
    # are no data, not unindexed points, and cleanup does not invent orientations for them (a
    # sparse .ctf with 67 % of its cells absent came out 100 % indexed).
    if ci is not None:
        no_data = ~np.isfinite(ci)
    elif columns:
        no_data = np.logical_and.reduce([~np.isfinite(v) for v in columns.values()])
    else:
        no_data = np.zeros(omap.size, dtype=bool)
    measured = int((~no_data).sum())
    record: list[dict[str, Any]] = json.loads(ebsd.attrs.get("cleanup", "[]"))
    earlier = len(record)  # steps of an earlier cleanup stay in the record
    for step in steps:
        if step == "ci_correlation" and ci is not None:
            n = _ci_correlation(omap, ci, euler, float(min_ci), columns)
            record.append({"step": step, "parameters": {"min_ci": float(min_ci)}, "n_changed": n})
        elif step == "ci_threshold":
            bad = np.zeros(omap.size, dtype=bool)
            if ci is not None:
                bad |= ~(ci >= min_ci)
            if min_iq is not None and "iq" in ebsd:
                bad |= ~(np.asarray(ebsd["iq"].values).reshape(-1) >= min_iq)
            if max_fit is not None and "fit" in ebsd:
                bad |= ~(np.asarray(ebsd["fit"].values).reshape(-1) <= max_fit)
            bad &= omap.phase >= 0
            omap.phase[bad] = -1
            record.append({"step": step, "parameters": {"min_ci": float(min_ci) if ci is not None else None,
                                                        "min_iq": min_iq, "max_fit": max_fit},
                           "n_changed": int(bad.sum())})
        elif step == "grain_dilation":
            if not (omap.phase >= 0).any():
                raise ConfigError(
                    f"{ebsd.attrs.get('source') or 'EBSD map'}: no point is left indexed for grain "
                    f"dilation (min_ci={min_ci:g}, min_iq={min_iq}, max_fit={max_fit}; highest CI "
                    f"in the map: {f'{np.nanmax(ci):.3g}' if ci is not None and np.isfinite(ci).any() else 'n/a'}); "
                    "lower the thresholds"
                )
            n = _grain_dilation(omap, euler, columns, tolerance_deg=float(tolerance_deg),
                                min_grain_px=int(min_grain_px), max_iterations=int(max_iterations),
                                no_data=no_data)
            record.append({"step": step, "parameters": {"tolerance_deg": float(tolerance_deg),
                                                        "min_grain_px": int(min_grain_px)}, "n_changed": n})
    for r in record[earlier:]:
        r["n_measured"] = measured
    invented = sum(r["n_changed"] for r in record[earlier:] if r["step"] in ("ci_correlation", "grain_dilation"))
    if measured and invented > MAX_INVENTED * measured:
        warnings.warn(
            f"{ebsd.attrs.get('source') or 'EBSD map'}: cleanup gave {invented} of {measured} measured points "
            f"({invented / measured:.0%}) a neighbour's orientation; more than {MAX_INVENTED:.0%} is not a "
            "cleanup but an interpolation, and grain sizes, phase fractions and KAM from it are not measurements (clean with "
            "steps=('ci_threshold',) or lower max_iterations)", UserWarning, stacklevel=2)
    out = ebsd.copy()
    shape = omap.shape
    out["euler"] = (("y", "x", "angle"), np.where((omap.phase >= 0)[:, None], euler, np.nan).reshape(shape + (3,)),
                    dict(ebsd["euler"].attrs))
    out["phase"] = (("y", "x"), omap.phase.reshape(shape).astype(np.int16), dict(ebsd["phase"].attrs))
    for name, values in columns.items():
        out[name] = (("y", "x"), values.reshape(shape).astype(ebsd[name].dtype), dict(ebsd[name].attrs))
    if "quaternion" in out:
        out["quaternion"] = (out["quaternion"].dims, omap.q.reshape(out["quaternion"].shape))
    out.attrs["cleanup"] = json.dumps(record)
    return out


def invented_share(ebsd: xr.Dataset) -> float:
    """Share of a map's measured points whose orientation a cleanup gave them from a neighbour
    (CI correlation, grain dilation), from the map's ``cleanup`` record; 0 for a map never cleaned.

    Examples
    --------
    >>> import json, xarray as xr
    >>> m = xr.Dataset(attrs={"cleanup": json.dumps([{"step": "grain_dilation", "n_changed": 30, "n_measured": 100}])})
    >>> invented_share(m)
    0.3
    """
    record = json.loads(ebsd.attrs.get("cleanup", "[]") or "[]")
    size = int(np.prod([ebsd.sizes[d] for d in ("y", "x") if d in ebsd.sizes])) or 1
    share = 0.0
    for r in record:
        if r.get("step") in ("ci_correlation", "grain_dilation"):
            share += float(r.get("n_changed", 0)) / float(r.get("n_measured") or size)
    return share
