"""pandas DataFrame <-> table Dataset (one dim ``row``) for ``/quantities`` nodes.

netCDF knows numbers and strings only, so each column keeps its pandas dtype in the variable
attr ``pandas_dtype``; categorical columns are stored as their string values with the
categories in ``categories`` (JSON), and missing strings are stored as "" with their row
positions in ``pandas_na`` (JSON), so :func:`dataset_to_table` gives back an equal frame.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from metallo.errors import ConfigError

__all__ = ["dataset_to_table", "table_to_dataset"]

ROW = "row"


def _string_column(values: pd.Series, attrs: dict[str, Any]) -> np.ndarray:
    na = values.isna().to_numpy()
    if na.any():
        attrs["pandas_na"] = json.dumps(np.flatnonzero(na).tolist())
    return np.array(
        ["" if m else str(v) for v, m in zip(values.tolist(), na, strict=True)], dtype=object
    )


def _column(name: str, values: pd.Series, node: str) -> tuple[np.ndarray, dict[str, Any]]:
    dtype = values.dtype
    attrs: dict[str, Any] = {"pandas_dtype": str(dtype)}
    if isinstance(dtype, pd.CategoricalDtype):
        attrs["categories"] = json.dumps([str(c) for c in dtype.categories])
        attrs["ordered"] = int(dtype.ordered)
        return _string_column(values.astype(object), attrs), attrs
    if pd.api.types.is_string_dtype(dtype):
        if (
            isinstance(dtype, np.dtype)
            and dtype.kind == "O"
            and not all(isinstance(v, str) for v in values.dropna().tolist())
        ):
            kinds = sorted({type(v).__name__ for v in values.dropna().tolist()})
            raise ConfigError(
                f"table {node!r}: column {name!r} holds Python objects of type {', '.join(kinds[:5])}; "
                "expected numbers, booleans, datetimes or strings (one kind per column)"
            )
        return _string_column(values, attrs), attrs
    if isinstance(dtype, pd.DatetimeTZDtype):
        # netCDF times have no zone: stored as UTC, the zone comes back from pandas_dtype.
        return values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(), attrs
    if isinstance(dtype, pd.api.extensions.ExtensionDtype):
        if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
            raise ConfigError(
                f"table {node!r}: column {name!r} has dtype {dtype}; "
                "expected numbers, booleans, datetimes, strings or categories"
            )
        # Nullable Int64/boolean/Float64: stored as float with NaN for <NA>, restored on read.
        return values.astype("float64").to_numpy(), attrs
    return values.to_numpy(), attrs


def table_to_dataset(table: pd.DataFrame, *, node: str) -> xr.Dataset:
    """A DataFrame as a Dataset with one dim ``row``; the index becomes the ``row`` coordinate."""
    if isinstance(table.index, pd.MultiIndex) or isinstance(table.columns, pd.MultiIndex):
        raise ConfigError(
            f"table {node!r}: a MultiIndex cannot be stored; call reset_index() first"
        )
    names = [str(c) for c in table.columns]
    if len(set(names)) != len(names):
        raise ConfigError(f"table {node!r}: column names must be unique; got {names}")
    bad = [n for n in names if n == ROW or "/" in n or not n]
    if bad:
        raise ConfigError(
            f"table {node!r}: column names may not be 'row', empty or contain '/'; got {bad}"
        )
    data_vars = {}
    for name, column in zip(names, table.columns, strict=True):
        values, attrs = _column(name, table[column], node)
        data_vars[name] = ((ROW,), values, attrs)
    index = table.index
    row_attrs: dict[str, Any] = {}
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        row_attrs["pandas_index"] = "range"
        row_values: np.ndarray = np.arange(len(index), dtype=np.int64)
    else:
        row_values, more = _column(ROW, index.to_series(), node)
        row_attrs.update(more)
    if index.name is not None:
        row_attrs["pandas_index_name"] = str(index.name)
    return xr.Dataset(data_vars, coords={ROW: ((ROW,), row_values, row_attrs)})


def _restore(values: np.ndarray, attrs: dict[str, Any]) -> pd.Series | np.ndarray:
    dtype = str(attrs.get("pandas_dtype", ""))
    na = json.loads(attrs["pandas_na"]) if "pandas_na" in attrs else []
    if dtype == "category":
        series = pd.Series(values.astype(object))
        if na:
            series.iloc[na] = np.nan
        cats = pd.CategoricalDtype(
            json.loads(attrs["categories"]), ordered=bool(attrs.get("ordered", 0))
        )
        return series.astype(cats)
    if values.dtype.kind in "OUS" or dtype in ("object", "str", "string"):
        series = pd.Series(values.astype(object))
        if na:
            series.iloc[na] = None
        return series.astype(dtype) if dtype and dtype != "object" else series
    if dtype.startswith("datetime64[") and "," in dtype:
        unit, zone = dtype[len("datetime64[") : -1].split(",", 1)
        utc = pd.Series(values.astype(f"datetime64[{unit}]")).dt.tz_localize("UTC")
        return utc.dt.tz_convert(zone.strip())
    if dtype and dtype != str(values.dtype):
        return pd.Series(values).astype(dtype)
    return values


def dataset_to_table(ds: xr.Dataset, *, node: str) -> pd.DataFrame:
    """The inverse of :func:`table_to_dataset`."""
    if set(ds.dims) - {ROW}:
        raise ConfigError(
            f"node {node!r} is not a table: dims {sorted(map(str, ds.dims))}, expected only {ROW!r}"
        )
    columns: dict[str, Any] = {}
    for name, var in ds.data_vars.items():
        restored = _restore(np.asarray(var.values), dict(var.attrs))
        # .array, not the Series: a Series would be aligned on its own RangeIndex.
        columns[str(name)] = restored.array if isinstance(restored, pd.Series) else restored
    n = ds.sizes.get(ROW, 0)
    index: pd.Index = pd.RangeIndex(n)
    if ROW in ds.coords:
        row_attrs = dict(ds.coords[ROW].attrs)
        if row_attrs.get("pandas_index") != "range":
            restored = _restore(np.asarray(ds.coords[ROW].values), row_attrs)
            index = pd.Index(restored.array if isinstance(restored, pd.Series) else restored)
        index.name = row_attrs.get("pandas_index_name")
    return pd.DataFrame(columns, index=index)
