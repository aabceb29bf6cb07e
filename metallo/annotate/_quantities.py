"""Grain-level quantities for the rules, gathered with bincount over grain ids.

Grains (with their table: phase, size, shape, GOS, GAM), KAM and boundary maps come from
:mod:`metallo.ebsd`; a KAM or boundary map already in an ``ebsd/<name>/derived`` node is
reused. This module only aggregates pixel maps per grain.

References
----------
.. [1] A. R. Durmaz, M. Müller, B. Lei, A. Thomas, D. Britz, E. A. Holm, C. Eberl, F. Mücklich,
   P. Gumbsch, "A deep learning approach for complex microstructure inference",
   Nature Communications 12, 6272 (2021). doi:10.1038/s41467-021-26565-5
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage as ndi

from metallo.annotate._rules import quantities
from metallo.errors import ConfigError

__all__ = ["grain_quantities"]

#: Quantity -> column of ``metallo.ebsd.Grains.table``.
_TABLE_COLUMNS = {
    "gos": "gos_deg",
    "gam": "gam_deg",
    "area_um2": "area_um2",
    "ecd_um": "ecd_um",
    "aspect_ratio": "aspect_ratio",
    "phase": "phase",
    "n_pixels": "n_pixels",
}
#: Quantity -> EBSD column averaged over each grain.
_PIXEL_MEANS = {"iq_mean": "iq", "ci_mean": "ci", "fit_mean": "fit"}
#: Quantities of metallo.ebsd.grain_parent_quantities (parent-austenite reconstruction).
_PARENT = ("parent_variants", "parent_packets", "parent_fit", "parent_fraction", "or_boundary_fraction")


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
    """One EBSD map, its grains and lazily computed pixel maps, shared by every quantity."""

    def __init__(self, ebsd: xr.Dataset, grains: Any, derived: xr.Dataset | None, options: Mapping[str, Any]) -> None:
        self.ebsd = ebsd
        self.derived = derived
        self.options = options
        self._grains = grains
        self._maps: dict[str, np.ndarray] = {}
        self._tables: dict[str, pd.DataFrame] = {}

    @property
    def grains(self) -> Any:
        if self._grains is None:
            from metallo.ebsd import grains as reconstruct

            self._grains = reconstruct(self.ebsd, **dict(self.options.get("grains", {})))
        return self._grains

    @property
    def ids(self) -> np.ndarray:
        ids = np.asarray(getattr(self.grains.ids, "values", self.grains.ids)).astype(np.int64)
        if ids.shape != self.ebsd["phase"].shape:
            raise ConfigError(f"grain ids shape {ids.shape} != EBSD grid {self.ebsd['phase'].shape}")
        return ids

    @property
    def n(self) -> int:
        table = self.grains.table
        return int(table.index.max()) + 1 if len(table) else 0

    def _derived_map(self, name: str, wanted: Mapping[str, Any]) -> np.ndarray | None:
        """A map of the derived node, if present and made with the wanted parameters."""
        if self.derived is None or name not in self.derived:
            return None
        raw = self.derived[name].attrs.get("parameters", "{}")
        made_with = json.loads(raw) if isinstance(raw, str) else dict(raw)
        if any(key in made_with and made_with[key] != value for key, value in wanted.items()):
            return None
        return np.asarray(self.derived[name].values)

    def pixel_map(self, name: str) -> np.ndarray:
        """A per-pixel map: an EBSD column, or KAM / boundaries (derived node or metallo.ebsd)."""
        if name in self._maps:
            return self._maps[name]
        if name in ("iq", "ci", "fit"):
            if name not in self.ebsd:
                raise ConfigError(
                    f"the rules need the EBSD column {name!r}; the map has {', '.join(map(str, self.ebsd.data_vars))}"
                )
            values = np.asarray(self.ebsd[name].values)
        else:
            import metallo.ebsd as mebsd

            # The kernel is part of what a threshold means: a derived KAM made with another one is not used.
            kam_options = {"kernel": "ring", **dict(self.options.get("kam", {}))}
            stored = self._derived_map(name, kam_options if name == "kam" else {})
            if stored is not None:
                values = stored
            elif name == "kam":
                values = np.asarray(mebsd.kam(self.ebsd, **kam_options).values)
            else:
                values = np.asarray(mebsd.boundaries(self.ebsd, self.grains).values)
        self._maps[name] = values
        return values

    def quantity(self, name: str) -> np.ndarray:
        n = self.n
        if name in _TABLE_COLUMNS:
            table = self.grains.table
            column = _TABLE_COLUMNS[name]
            if column not in table.columns:
                raise ConfigError(f"the grain table has no column {column!r} (for quantity {name!r})")
            out = np.full(n, np.nan)
            out[table.index.to_numpy()] = table[column].to_numpy(np.float64)
            return out
        if name in _PARENT:
            if "parent" not in self._tables:
                from metallo.ebsd import grain_parent_quantities

                self._tables["parent"] = grain_parent_quantities(self.ebsd, self.grains,
                                                                 **dict(self.options.get("parent", {})))
            out = np.full(n, np.nan)
            table = self._tables["parent"]
            out[table.index.to_numpy()] = table[name].to_numpy(np.float64)
            return out
        ids = self.ids
        if name == "kam_mean":
            return grain_mean(ids, self.pixel_map("kam"), n)
        if name == "kam_median":
            kam = self.pixel_map("kam")
            lab = np.where(np.isfinite(kam) & (ids >= 0), ids + 1, 0)
            return np.asarray(ndi.median(np.nan_to_num(kam), labels=lab, index=np.arange(1, n + 1)), dtype=np.float64)
        if name in _PIXEL_MEANS:
            return grain_mean(ids, self.pixel_map(_PIXEL_MEANS[name]), n)
        if name == "boundary_density":
            on_boundary = (self.pixel_map("boundaries") > 0).astype(np.float64)
            # Boundary points x step approximates the boundary length inside the grain.
            return grain_mean(ids, on_boundary, n) / float(self.ebsd.attrs["step_um"])
        raise ConfigError(f"cannot compute quantity {name!r}")  # pragma: no cover - registry names only


def quantity_table(ctx: _Context, names: Iterable[str]) -> pd.DataFrame:
    """The grain table of ``names`` (plus ``n_pixels``) for one map context."""
    columns = {name: ctx.quantity(name) for name in dict.fromkeys(["n_pixels", *names])}
    table = pd.DataFrame(columns, index=pd.RangeIndex(ctx.n, name="grain_id"))
    return table[table["n_pixels"] > 0]


def grain_quantities(
    ebsd: xr.Dataset,
    *,
    grains: Any = None,
    derived: xr.Dataset | None = None,
    names: Iterable[str] | None = None,
    grain_options: Mapping[str, Any] | None = None,
    kam_options: Mapping[str, Any] | None = None,
    parent_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per grain with the grain-level quantities the annotation rules can test.

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map (layout of :func:`metallo.ebsd.ebsd_dataset`).
    grains : Grains, optional
        Result of :func:`metallo.ebsd.grains`; reconstructed with ``grain_options`` when omitted.
    derived : xr.Dataset, optional
        An ``ebsd/<name>/derived`` node: its ``kam`` (if made with ``kam_options``) and
        ``boundaries`` maps are reused instead of recomputed.
    names : iterable of str, optional
        Quantities to compute (see :func:`~metallo.annotate.quantity_names`); default every
        one the map has the columns for.
    grain_options, kam_options : mapping, optional
        Keyword options of :func:`metallo.ebsd.grains` and :func:`metallo.ebsd.kam`
        (Durmaz et al. 2021: 5° grain tolerance, 3rd-order KAM).
    parent_options : mapping, optional
        Keyword options of :func:`metallo.ebsd.reconstruct_parent` for the parent quantities
        (default: OR fitted to the map).

    Returns
    -------
    DataFrame
        Indexed by grain id; always has ``n_pixels``.

    Examples
    --------
    >>> import metallo as mt
    >>> spec = mt.synth.make_specimen(0, ebsd_shape=(60, 60), micrographs=False)
    >>> table = grain_quantities(spec.ebsd, names=["gos", "kam_mean"])
    >>> list(table.columns)
    ['n_pixels', 'gos', 'kam_mean']
    """
    if names is None:
        # Parent quantities need a reconstruction (seconds, a cubic child phase): asked by name only.
        names = [q for q in quantities.names()
                 if (q not in _PIXEL_MEANS or _PIXEL_MEANS[q] in ebsd) and q not in _PARENT]
    wanted = list(names)
    for name in wanted:
        quantities.get(name)
    ctx = _Context(ebsd, grains, derived, {"grains": grain_options or {}, "kam": kam_options or {},
                                           "parent": parent_options or {}})
    return quantity_table(ctx, wanted)
