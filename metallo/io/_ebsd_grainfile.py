"""TSL OIM "grain files": type 1 (one row per point, with OIM's grain id) and type 2 (one row
per grain).

Type 1 columns: phi1 PHI phi2 (rad), x y (µm), IQ, CI, Fit (deg), grain id, edge flag,
phase name (a string). The header (``#`` lines) states the grain tolerance angle, minimum
grain size and minimum CI OIM used; it gives no symmetry, so phases whose names say iron,
steel, ferrite, martensite, bainite, austenite, bcc or fcc are taken as cubic (m-3m) and any
other name is also read as cubic with a warning, unless ``symmetry=`` names the Laue group.

OIM's grain ids are the connected components of the edge neighbours (4 on a square grid)
whose disorientation, under the phase symmetry OIM was given, is within the tolerance; the
points of grains below the minimum size keep ids of their own. Metallo's
:func:`metallo.ebsd.grains` with the same tolerance, ``min_size_px=1`` and the same symmetry
reproduces them. The symmetry OIM used is not in the file: on the M1700 martensite crop the
ids are reproduced exactly (every point, all 3,580 ids) with the phase read as tetragonal
(``symmetry="4/mmm"``: OIM's "Martensite" phase was bct), while as cubic neighbours related
by a 90 deg turn of the c axis join and 1,241 coarser grains result. Read such a file as
cubic (the default) for orientation-relationship work on bct martensite, whose c/a is close
to 1.

Type 2 columns: grain id, mean phi1 PHI phi2 (rad), mean x y, mean IQ, CI, Fit, phase index,
number of points; read it with :func:`read_grain_table`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from metallo._ebsd_dataset import ebsd_dataset
from metallo.errors import FormatError
from metallo.io._ebsd_grid import (
    check_duplicates,
    data_lattice,
    given_laue,
    place_on_grid,
    scatter_to_grid,
)
from metallo.io._plugins import register_reader

__all__ = ["read_grain_file", "read_grain_table", "sniff_grain_file"]

_CUBIC_WORDS = ("iron", "steel", "ferrite", "martensite", "bainite", "austenite", "bcc", "fcc", "fe")
_TYPE1_MARK = re.compile(rb"^#\s*Column 9:\s*Grain ID", re.MULTILINE)
_TYPE2_MARK = re.compile(rb"^#\s*Column 1:\s*Integer identifying grain", re.MULTILINE)


def sniff_grain_file(head: bytes) -> bool:
    """True for a TSL grain file of type 1 or 2.

    OIM writes the header either from a ``# Header: project::...`` line (with the grain
    tolerance, minimum size and CI) or, in shorter exports, from the grid line
    (``# Square Grid``) straight to the column descriptions; both are grain files.
    """
    return head.startswith(b"#") and bool(_TYPE1_MARK.search(head) or _TYPE2_MARK.search(head))


def _header(lines: list[str]) -> tuple[dict[str, str], int]:
    header: dict[str, str] = {}
    k = 0
    while k < len(lines) and lines[k].startswith("#"):
        text = lines[k][1:].strip()
        if ":" in text:
            key, value = text.split(":", 1)
            header[key.strip()] = value.strip()
        k += 1
    return header, k


def _given_symmetry(symmetry: str | Mapping[str, str] | None, name: str, source: str) -> str | None:
    """The Laue group given for phase ``name`` (None: not given)."""
    sym = symmetry.get(name) if isinstance(symmetry, Mapping) else symmetry
    return None if sym is None else given_laue(sym, source, f"phase {name!r}")


def read_grain_file(path: str | Path, *, symmetry: str | Mapping[str, str] | None = None) -> xr.Dataset:
    """Read a TSL OIM grain file of type 1 (one row per point) as an EBSD map.

    Parameters
    ----------
    path : str or Path
    symmetry : str or mapping, optional
        Laue group of every phase (``"4/mmm"``), or phase name -> Laue group. The file
        states none; by default phases are read as cubic (m-3m). Give the symmetry OIM used
        to reproduce its grain ids (see the module notes: bct martensite as ``"4/mmm"``).

    Returns
    -------
    xr.Dataset
        The EBSD layout of :func:`metallo.ebsd.ebsd_dataset` with ``ci``, ``iq``, ``fit``,
        ``oim_grain_id`` (int32, -1 off the grid) and ``oim_edge`` (uint8) columns; phase ids
        number the phase names in order of appearance from 1.

    Raises
    ------
    FormatError
        Not a type-1 grain file, or a malformed row (the message names the line).

    Example
    -------
    >>> ebsd = read_grain_file("map_gf1.txt")  # doctest: +SKIP
    >>> int(ebsd["oim_grain_id"].max())  # doctest: +SKIP
    3580
    """
    path = Path(path)
    source = path.name
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    text_header, k = _header(lines)
    header: dict[str, Any] = dict(text_header)
    if not any(key.startswith("Column 9") and "Grain ID" in value for key, value in header.items()):
        if any(key.startswith("Column 1") and "grain" in value.lower() for key, value in header.items()):
            raise FormatError(f"{source}: a grain file of type 2 (one row per grain); read it with "
                              "metallo.io.read_grain_table, not as a map")
        raise FormatError(f"{source}: not a TSL grain file of type 1 (no 'Column 9: Grain ID' header line)")
    rows = [ln for ln in lines[k:] if ln.strip()]
    if not rows:
        raise FormatError(f"{source}: no data rows after the header")
    numbers = np.empty((len(rows), 10))
    names: list[str] = []
    for i, line in enumerate(rows):
        parts = line.split(None, 10)
        if len(parts) != 11:
            raise FormatError(f"{source}: line {k + 1 + i}: expected 10 numbers and a phase name; got {len(parts)} fields")
        try:
            numbers[i] = [float(p) for p in parts[:10]]
        except ValueError:
            raise FormatError(f"{source}: line {k + 1 + i}: a non-numeric value in the first 10 columns") from None
        names.append(parts[10].strip())
    if not np.isfinite(numbers).all():
        bad = int(np.argmax(~np.isfinite(numbers).all(axis=1)))
        raise FormatError(f"{source}: line {k + 1 + bad}: NaN or infinite value")
    phase_names = list(dict.fromkeys(names))
    lookup = {n: i + 1 for i, n in enumerate(phase_names)}
    phase_ids = np.array([lookup[n] for n in names], dtype=np.int16)
    phases = []
    for name, pid in lookup.items():
        sym = _given_symmetry(symmetry, name, source)
        if sym is None and not any(w in re.split(r"[^a-z]+", name.lower()) or w in name.lower()
                                   for w in _CUBIC_WORDS):
            warnings.warn(f"{source}: phase {name!r}: a grain file states no symmetry; read as cubic (m-3m)",
                          UserWarning, stacklevel=2)
        phases.append({"id": pid, "name": name, "symmetry": sym or "m-3m", "lattice": []})
    x, y = numbers[:, 3], numbers[:, 4]
    # A grain file states no grid: OIM scans hexagonal grids by default, so the points say which.
    placement = place_on_grid(x, y, source=source, grid=data_lattice(x, y) or "square")
    check_duplicates(placement, source)
    euler = scatter_to_grid(placement, numbers[:, 0:3], np.nan)
    variables = {
        "iq": scatter_to_grid(placement, numbers[:, 5].astype(np.float32), np.float32(np.nan)),
        "ci": scatter_to_grid(placement, numbers[:, 6].astype(np.float32), np.float32(np.nan)),
        "fit": scatter_to_grid(placement, numbers[:, 7].astype(np.float32), np.float32(np.nan)),
        "oim_grain_id": scatter_to_grid(placement, numbers[:, 8].astype(np.int32), np.int32(-1)),
        "oim_edge": scatter_to_grid(placement, numbers[:, 9].astype(np.uint8), np.uint8(0)),
    }
    stated = ", ".join(f"{p['name']}: {p['symmetry']}" for p in phases)
    given = symmetry is not None and all(_given_symmetry(symmetry, n, source) for n in lookup)
    header.update({"format": "tsl-grain-file-1", "n_points": len(rows),
                   "symmetry": f"{'given' if given else 'assumed'} ({stated})"})
    return ebsd_dataset(
        euler, scatter_to_grid(placement, phase_ids, np.int16(-1)), step_um=placement.step_x,
        step_y_um=placement.step_y, grid=placement.grid, phases=phases, origin_um=placement.origin, variables=variables,
        source=source, header=header,
    )


def read_grain_table(path: str | Path) -> pd.DataFrame:
    """Read a TSL OIM grain file of type 2 (one row per grain).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    pd.DataFrame
        Indexed by ``grain_id``: phi1, Phi, phi2 (rad), x_um, y_um, iq, ci, fit, phase,
        n_points.

    Example
    -------
    >>> table = read_grain_table("map_gf2.txt")  # doctest: +SKIP
    >>> int(table["n_points"].sum())  # doctest: +SKIP
    20724
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    header, k = _header(lines)
    described = any(key.startswith("Column 1") and "grain" in value.lower() for key, value in header.items())
    if not described and any(key.startswith("Column") for key in header):
        raise FormatError(f"{path.name}: not a TSL grain file of type 2 (no 'Column 1: Integer identifying grain' line)")
    rows = [ln.split() for ln in lines[k:] if ln.strip()]
    if not rows:
        raise FormatError(f"{path.name}: no grain rows after the header")
    bad = [i for i, r in enumerate(rows) if len(r) != 11]
    if bad:
        raise FormatError(f"{path.name}: line {k + 1 + bad[0]}: expected 11 numbers; got {len(rows[bad[0]])}")
    try:
        data = np.array(rows, dtype=np.float64)
    except ValueError:
        raise FormatError(f"{path.name}: a non-numeric value in the grain table") from None
    if not described:
        # OIM's shorter exports write only the grid line: accept the rows if they have the
        # type-2 shape (integer grain id, phase index and point count around 8 numbers).
        ints = data[:, [0, 9, 10]]
        if not (np.all(ints == np.round(ints)) and np.all(ints >= 0) and np.all(data[:, 10] >= 1)):
            raise FormatError(f"{path.name}: not a TSL grain file of type 2 (no column header, and columns 1, 10 "
                              "and 11 are not the integer grain id, phase index and point count)")
        warnings.warn(f"{path.name}: the header describes no columns; read in OIM's type-2 order (grain id, "
                      "mean phi1 PHI phi2, x y, IQ, CI, Fit, phase index, points)", UserWarning, stacklevel=2)
    cols = ["phi1", "Phi", "phi2", "x_um", "y_um", "iq", "ci", "fit", "phase", "n_points"]
    table = pd.DataFrame(data[:, 1:], columns=cols, index=pd.Index(data[:, 0].astype(np.int64), name="grain_id"))
    table["phase"] = table["phase"].astype(np.int64)
    table["n_points"] = table["n_points"].astype(np.int64)
    return table


register_reader("grainfile", kind="ebsd", extensions=(), sniff=sniff_grain_file, read=read_grain_file)
