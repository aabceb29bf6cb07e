"""An annotation as a DataArray, whether given as one or as its Specimen node."""

from __future__ import annotations

from typing import Any

import xarray as xr

from metallo.errors import ConfigError

__all__ = ["as_annotation"]


def as_annotation(labels: Any, *, where: str = "labels") -> xr.DataArray:
    """A (y, x) label DataArray with the node attrs (classes, ignore_index, rules, ...).

    Accepts the DataArray of :func:`~metallo.annotate.from_ebsd` or an ``annotations/<name>``
    node read back from a Specimen (a Dataset whose variable ``labels`` holds the map and
    whose attrs hold the class table).
    """
    if isinstance(labels, xr.Dataset):
        if "labels" not in labels:
            raise ConfigError(f"{where}: an annotation node needs a 'labels' variable; it has {', '.join(map(str, labels.data_vars))}")
        labels = labels["labels"].assign_attrs({**labels.attrs, **labels["labels"].attrs})
    if not isinstance(labels, xr.DataArray) or labels.dims != ("y", "x"):
        raise ConfigError(f"{where}: expected a (y, x) label DataArray (see from_ebsd) or an annotations/<name> node")
    return labels
