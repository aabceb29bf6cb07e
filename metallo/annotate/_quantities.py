"""Grain-level quantities for the rules, gathered with bincount over grain ids.

Grain reconstruction, KAM, GOS, GAM and boundary maps come from :mod:`metallo.ebsd`
(or from an ``ebsd/<name>/derived`` node); this module only aggregates them per grain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage as ndi

from metallo.annotate._rules import quantities
from metallo.errors import ConfigError

__all__ = ["grain_quantities"]

#: Columns of ``Grains.table`` that are quantities of the same name.
_TABLE_COLUMNS = {"gos": "gos_deg", "gam": "gam_deg", "area_um2": "area_um2", "ecd_um": "ecd_um", "aspect_ratio": "aspect_ratio",
                  "phase": "phase", "n_pixels": "n_pixels"}
_PIXEL_MEANS = {"iq_mean": "iq", "ci_mean": "ci", "fit_mean": "fit"}


def grain_mean(ids: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Mean of ``values`` over each grain id ``0..n-1`` (NaN and id -1 left out)."""
    ids = np.asarray(ids).ravel()
    values = np.asarray(values, dtype=np.float64).ravel()
    keep = (ids >= 0) & np.isfinite(values)
    total = np.bincount(ids[keep], weights=values[keep], minlength=n)[:n]
    count = np.bincount(ids[keep], minlength=n)[:n]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


class _Context:
    """Lazily computed maps of one EBSD map, shared by every quantity."""

    def __init__(self, ebsd: xr.Dataset, grains: Any, derived: xr.Dataset | None, options: Mapping[str, Any]) -> None:
        self.ebsd = ebsd
        self.derived = derived
        self.options = options
        self._grains = grains
        self._cache: dict[str, Any] = {}

    @property
    def grains(self) -> Any:
        if self._grains is None:
            from metallo.ebsd import grains as reconstruct

            self._grains = reconstruct(self.ebsd, **dict(self.options.get("grains", {})))
        return self._grains

    @property
    def ids(self) -> np.ndarray:
        if "ids" not in self._cache:
            if self.uses_derived_ids:
                ids = np.asarray(self.derived["grain_id"].values)
            else:
                ids = np.asarray(getattr(self.grains, "ids", self.grains))
            if ids.shape != self.ebsd["phase"].shape:
                raise ConfigError(f"grain ids shape {ids.shape} != EBSD grid {self.ebsd['phase'].shape}")
            self._cache["ids"] = ids.astype(np.int64)
        return self._cache["ids"]

    @property
    def n(self) -> int:
        return int(self.ids.max()) + 1 if self.ids.size and self.ids.max() >= 0 else 0

    @property
    def uses_derived_ids(self) -> bool:
        return self._grains is None and self.derived is not None and "grain_id" in self.derived

    @property
    def table(self) -> pd.DataFrame | None:
        return None if self.uses_derived_ids else getattr(self.grains, "table", None)

    def pixel_map(self, name: str) -> np.ndarray:
        """A per-pixel map from the derived node if present, else from metallo.ebsd."""
        if name not in self._cache:
            if self.derived is not None and name in self.derived:
                values = self.derived[name].values
            elif name in ("iq", "ci", "fit"):
                if name not in self.ebsd:
                    raise ConfigError(f"EBSD map has no {name!r} column; variables: {', '.join(map(str, self.ebsd.data_vars))}")
                values = self.ebsd[name].values
            else:
                import metallo.ebsd as mebsd

                if name == "kam":
                    values = mebsd.kam(self.ebsd, **dict(self.options.get("kam", {}))).values
                elif name == "gos":
                    values = mebsd.grain_orientation_spread(self.ebsd, self.grains).values
                elif name == "gam":
                    values = mebsd.grain_average_misorientation(self.ebsd, self.grains).values
                elif name == "boundaries":
                    values = mebsd.boundaries(self.ebsd, self.grains).values
                else:  # pragma: no cover - names come from the fixed list above
                    raise ConfigError(f"no per-pixel map {name!r}")
            self._cache[name] = np.asarray(values)
        return self._cache[name]

    def pixel_area_um2(self) -> float:
        step = float(self.ebsd.attrs.get("step_um", np.nan))
        step_y = float(self.ebsd.attrs.get("step_y_um", step))
        return step * step_y

    def quantity(self, name: str) -> np.ndarray:
        n = self.n
        table = self.table
        column = _TABLE_COLUMNS.get(name)
        if table is not None and column in table.columns:
            out = np.full(n, np.nan)
            index = table.index.to_numpy()
            inside = (index >= 0) & (index < n)
            out[index[inside]] = table[column].to_numpy(np.float64)[inside]
            return out
        ids = self.ids
        if name in ("gos", "gam", "kam_mean"):
            return grain_mean(ids, self.pixel_map(name.removesuffix("_mean")), n)
        if name == "kam_median":
            kam = self.pixel_map("kam")
            lab = np.where(np.isfinite(kam), ids + 1, 0)
            return np.asarray(ndi.median(np.nan_to_num(kam), labels=lab, index=np.arange(1, n + 1)), dtype=np.float64)
        if name in _PIXEL_MEANS:
            return grain_mean(ids, self.pixel_map(_PIXEL_MEANS[name]), n)
        if name == "n_pixels":
            return np.bincount(ids[ids >= 0], minlength=n)[:n].astype(np.float64)
        if name == "area_um2":
            return self.quantity("n_pixels") * self.pixel_area_um2()
        if name == "ecd_um":
            return np.sqrt(4.0 * self.quantity("area_um2") / np.pi)
        if name == "phase":
            # A grain never crosses a phase boundary, so any of its pixels gives its phase.
            out = np.full(n, np.nan)
            flat = ids.ravel()
            first = np.flatnonzero(flat >= 0)
            out[flat[first]] = np.asarray(self.ebsd["phase"].values).ravel()[first]
            return out
        if name == "aspect_ratio":
            return _aspect_ratio(ids, n)
        if name == "boundary_density":
            on_boundary = (self.pixel_map("boundaries") > 0).astype(np.float64)
            step = float(self.ebsd.attrs.get("step_um", np.nan))
            # Boundary points x step approximates the boundary length in the grain.
            return grain_mean(ids, on_boundary, n) / step
        raise ConfigError(f"cannot compute quantity {name!r}")  # pragma: no cover


def _aspect_ratio(ids: np.ndarray, n: int) -> np.ndarray:
    """Major/minor axis ratio of each grain's second-moment ellipse."""
    yy, xx = np.indices(ids.shape, dtype=np.float64)
    mean_y, mean_x = grain_mean(ids, yy, n), grain_mean(ids, xx, n)
    dy = np.where(ids >= 0, yy - mean_y[np.maximum(ids, 0)], 0.0)
    dx = np.where(ids >= 0, xx - mean_x[np.maximum(ids, 0)], 0.0)
    # + 1/12: the variance of a uniform pixel, so a one-pixel grain is round, not degenerate.
    syy = grain_mean(ids, dy * dy, n) + 1 / 12
    sxx = grain_mean(ids, dx * dx, n) + 1 / 12
    sxy = grain_mean(ids, dx * dy, n)
    root = np.sqrt(((sxx - syy) / 2) ** 2 + sxy**2)
    major = (sxx + syy) / 2 + root
    minor = (sxx + syy) / 2 - root
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(major / minor)


def grain_quantities(
    ebsd: xr.Dataset,
    *,
    grains: Any = None,
    derived: xr.Dataset | None = None,
    names: Iterable[str] | None = None,
    grain_options: Mapping[str, Any] | None = None,
    kam_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per grain with the grain-level quantities the annotation rules can test.

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map (layout of :func:`metallo.ebsd.ebsd_dataset`).
    grains : Grains or ndarray, optional
        Result of :func:`metallo.ebsd.grains` (or just its id map). Reconstructed with
        ``grain_options`` when omitted.
    derived : xr.Dataset, optional
        An ``ebsd/<name>/derived`` node (grain_id, kam, gos, gam, boundaries); maps found
        there are reused instead of recomputed.
    names : iterable of str, optional
        Quantities to compute (see :func:`~metallo.annotate.quantity_names`); default all
        that need no more than the map has.
    grain_options, kam_options : mapping, optional
        Keyword options of :func:`metallo.ebsd.grains` and :func:`metallo.ebsd.kam`
        (the paper: 5° grain tolerance, 3rd-order KAM).

    Returns
    -------
    DataFrame
        Indexed by grain id (0..n-1, rows of empty ids dropped); always has ``n_pixels``.

    Examples
    --------
    >>> import metallo as mt
    >>> spec = mt.synth.make_specimen(0, ebsd_shape=(60, 60))        # doctest: +SKIP
    >>> grain_quantities(spec.ebsd, names=["gos", "kam_mean"]).head()  # doctest: +SKIP
    """
    wanted = list(names) if names is not None else [
        q for q in quantities.names() if not (q.endswith("_mean") and q[:-5] in ("iq", "ci", "fit") and q[:-5] not in ebsd)
    ]
    for name in wanted:
        quantities.get(name)
    ctx = _Context(ebsd, grains, derived, {"grains": grain_options or {}, "kam": kam_options or {}})
    return quantity_table(ctx, wanted)


def quantity_table(ctx: _Context, names: Iterable[str]) -> pd.DataFrame:
    """The grain table of ``names`` (plus ``n_pixels``) for one map context."""
    columns = {name: ctx.quantity(name) for name in dict.fromkeys(["n_pixels", *names])}
    table = pd.DataFrame(columns, index=pd.RangeIndex(ctx.n, name="grain_id"))
    return table[table["n_pixels"] > 0]
