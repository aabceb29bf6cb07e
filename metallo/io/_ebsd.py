"""``read_ebsd`` / ``write_ebsd``: the public entry points of the EBSD file formats."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xarray as xr

from metallo.errors import ConfigError, UnknownNameError
from metallo.io._ebsd_ang import write_ang  # re-exported: each writer lives with its reader
from metallo.io._ebsd_ctf import write_ctf
from metallo.io._ebsd_h5 import write_h5
from metallo.io._plugins import _READERS as _REGISTRY
from metallo.io._plugins import _describe, _plugins, reader_for, reader_names

__all__ = ["AXES_CONVENTION", "EBSD_WRITERS", "read_ebsd", "write_ang", "write_ctf", "write_ebsd", "write_h5"]

#: The crystal axis convention of metallo's symmetry operators, stored in ``attrs["axes"]``.
AXES_CONVENTION = (
    "crystal frame: principal axis z; 2-fold axes of mmm, 4/mmm, -3m, 6/mmm include x; "
    "hexagonal and trigonal x || a (Oxford files' x || a* converted); 2/m unique axis {axis}"
)

#: Writers by extension: .ang (TSL), .ctf (Oxford), .h5 (orix crystal-map layout).
EBSD_WRITERS: dict[str, Callable[[xr.Dataset, Path], Path]] = {
    ".ang": write_ang, ".ctf": write_ctf, ".h5": write_h5, ".hdf5": write_h5,
}


def read_ebsd(
    path: str | Path, *, format: str | None = None, monoclinic_axis: str | None = None, **options: Any
) -> xr.Dataset:
    """Read an EBSD map into the EBSD ``xr.Dataset`` layout.

    Formats (sniffed from the content, then the extension): TSL ``.ang``, Oxford ``.ctf``,
    ``.cpr``/``.crc`` and ``.h5oina``, EDAX ``.osc`` and OIM ``.h5``/``.oh5``, Bruker h5ebsd,
    EMsoft HDF5, orix HDF5, and those third-party packages add through the
    ``metallo.readers`` entry-point group (:func:`metallo.io.reader_names` lists them all).

    Parameters
    ----------
    path : str or Path
        The map file.
    format : str, optional
        Reader name (``"ang"``, ``"ctf"``, ``"osc"``, ``"cpr"``, ``"edax-h5"``, ...); by default
        the format is sniffed from the content, then taken from the extension.
    monoclinic_axis : {"y", "z"}, optional
        The unique (2-fold) axis of ``2/m`` phases in the crystal frame: ``"y"`` (b, as MTEX
        and the TSL/Oxford software; the default) or ``"z"`` (orix's default); a metallo
        ``.h5`` keeps the setting it was written with. Misorientations of
        monoclinic phases depend on it; it is kept in ``attrs["monoclinic_axis"]``, the whole
        axis convention in words in ``attrs["axes"]``.
    **options
        Reader options, e.g. ``scan="2"`` to pick a slice of an ``.h5oina`` file.

    Returns
    -------
    xr.Dataset
        Dims (y, x) on µm coordinates, Bunge Euler angles in radians, phase -1 = not indexed;
        see :func:`metallo.ebsd.ebsd_dataset`.

    Raises
    ------
    FormatError
        Unknown or malformed file; the message names the file, the field at fault and what
        was expected.

    Example
    -------
    >>> from metallo.io import write_ang
    >>> from metallo.synth import make_specimen
    >>> _ = write_ang(make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd, "map.ang")
    >>> ebsd = read_ebsd("map.ang")
    >>> ebsd["phase"].shape
    (40, 40)
    """
    if monoclinic_axis not in (None, "y", "z"):
        raise ConfigError(f"monoclinic_axis must be 'y' (MTEX, TSL, Oxford) or 'z' (orix); got {monoclinic_axis!r}")
    if format is None:
        plugin = reader_for(path, kind="ebsd")
    else:
        names = reader_names("ebsd")
        if format.lower() not in names:
            raise UnknownNameError(f"unknown EBSD format {format!r}; known: {_describe(_plugins('ebsd'))}")
        plugin = _REGISTRY.get(format.lower())
    _check_options(plugin, options, Path(path))
    ebsd = plugin.read(Path(path), **options)
    # A file that records the setting (metallo's .h5) keeps it unless the caller overrides it.
    chosen = monoclinic_axis is not None or "monoclinic_axis" in ebsd.attrs
    monoclinic_axis = monoclinic_axis or str(ebsd.attrs.get("monoclinic_axis", "y"))
    if not chosen:
        _warn_monoclinic_lattices(ebsd, Path(path), monoclinic_axis)
    ebsd.attrs["monoclinic_axis"] = monoclinic_axis
    ebsd.attrs["axes"] = AXES_CONVENTION.format(axis=monoclinic_axis)
    return ebsd


def _check_options(plugin: Any, options: dict[str, Any], path: Path) -> None:
    """A reader option the format does not take is a ConfigError naming it, not a TypeError."""
    import inspect

    try:
        params = inspect.signature(plugin.read).parameters
    except (TypeError, ValueError):  # a C or builtin reader: let it judge its options
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = [k for k in options if k not in params]
    if unknown:
        takes = [k for k, p in list(params.items())[1:] if p.kind is not inspect.Parameter.VAR_POSITIONAL]
        raise ConfigError(f"{path.name}: the {plugin.name} reader takes no option {', '.join(map(repr, unknown))}; "
                          f"it takes {', '.join(takes) or 'none'}")


def lattice_unique_axis(lattice: Any) -> str | None:
    """The unique axis a monoclinic lattice's angles name, as MTEX reads them: the axis ("x" for
    a, "y" for b, "z" for c) whose opposite angle (alpha, beta, gamma) departs most from 90 deg;
    None when no angle departs by more than 0.1 deg or the lattice is not given.

    >>> lattice_unique_axis([9.5, 17.8, 5.3, 90, 103.6, 90]), lattice_unique_axis([5, 6, 7, 90, 90, 118])
    ('y', 'z')
    """
    try:
        angles = [float(v) for v in list(lattice)[3:6]]
    except (TypeError, ValueError):
        return None
    if len(angles) != 3 or not all(math.isfinite(v) for v in angles):
        return None
    away = [abs(v - 90.0) for v in angles]
    if max(away) <= 0.1:
        return None
    return "xyz"[away.index(max(away))]


def _warn_monoclinic_lattices(ebsd: xr.Dataset, path: Path, axis: str) -> None:
    """Warn where a 2/m phase's lattice puts its two-fold on another axis than the map's setting."""
    from metallo._ebsd_dataset import phases_of

    for p in phases_of(ebsd):
        if p.get("symmetry") != "2/m":
            continue
        unique = lattice_unique_axis(p.get("lattice") or [])
        if unique is None or unique == axis:
            continue
        angles = ", ".join(f"{float(v):g}" for v in list(p["lattice"])[3:6])
        remedy = ("read it with monoclinic_axis='z'" if unique == "z"
                  else "metallo has no setting with the two-fold on x (a unique); transform the cell to b or c unique")
        warnings.warn(
            f"{path.name}: phase {p.get('id')} ({p.get('name')!r}) is monoclinic with lattice angles "
            f"({angles}): its unique axis is {'abc'['xyz'.index(unique)]} ({unique}), but 2/m phases are read "
            f"with the two-fold on {axis}, so its misorientations, grains and KAM would use the wrong "
            f"symmetry; {remedy}",
            UserWarning, stacklevel=3,
        )


def write_ebsd(ebsd: xr.Dataset, path: str | Path) -> Path:
    """Write an EBSD map in the format its extension names (.ang, .ctf, .h5).

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map in the layout of :func:`metallo.ebsd.ebsd_dataset`.
    path : str or Path
        Output file; its extension picks the writer (:data:`EBSD_WRITERS`).

    Returns
    -------
    Path
        The written file.

    Example
    -------
    >>> write_ebsd(ebsd, "clean.ctf")  # doctest: +SKIP
    """
    path = Path(path)
    writer = EBSD_WRITERS.get(path.suffix.lower())
    if writer is None:
        raise UnknownNameError(
            f"{path.name}: no EBSD writer for {path.suffix or 'a file without extension'!r}; "
            f"known: {', '.join(EBSD_WRITERS)}"
        )
    return writer(ebsd, path)
