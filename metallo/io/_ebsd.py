"""``read_ebsd`` / ``write_ang``: the public entry points of the EBSD file formats."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from metallo.errors import UnknownNameError
from metallo.io._ebsd_ang import write_ang  # re-exported: the writer lives with its reader
from metallo.io._plugins import _READERS as _REGISTRY
from metallo.io._plugins import reader_for, reader_names

__all__ = ["read_ebsd", "write_ang"]


def read_ebsd(path: str | Path, *, format: str | None = None) -> xr.Dataset:
    """Read an EBSD map (.ang, .ctf) into the EBSD ``xr.Dataset`` layout.

    Parameters
    ----------
    path : str or Path
        The map file.
    format : str, optional
        Reader name (``"ang"``, ``"ctf"``); by default the format is sniffed from the header,
        then taken from the extension.

    Returns
    -------
    xr.Dataset
        Dims (y, x) on µm coordinates, Bunge Euler angles in radians, phase -1 = not indexed;
        see :func:`metallo.ebsd.ebsd_dataset`.

    Raises
    ------
    FormatError
        Unknown or malformed file; the message names the line at fault.

    Example
    -------
    >>> from metallo.io import write_ang
    >>> from metallo.synth import make_specimen
    >>> _ = write_ang(make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd, "map.ang")
    >>> ebsd = read_ebsd("map.ang")
    >>> ebsd["phase"].shape
    (40, 40)
    """
    if format is None:
        plugin = reader_for(path, kind="ebsd")
    else:
        names = reader_names("ebsd")
        if format.lower() not in names:
            raise UnknownNameError(f"unknown EBSD format {format!r}; known: {', '.join(names)}")
        plugin = _REGISTRY.get(format.lower())
    return plugin.read(Path(path))
