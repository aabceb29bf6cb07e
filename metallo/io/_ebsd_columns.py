"""Column text EBSD maps: one row per point, the columns named in a header row (or given).

MTEX's ``export(ebsd, 'map.txt')`` writes such a file (``phi1 Phi phi2 phase`` and then the
map's properties, ``x`` and ``y`` among them; Euler angles in degrees unless exported with
``'radians'``), and so do many scripts and spreadsheets. The file states no crystal symmetry
and no phase names; ``phases=`` or ``symmetry=`` supply them (by default every phase is read as
cubic m-3m, with a warning).

Column names are matched without regard to case, spaces or underscores: ``phi1`` / ``euler1``,
``Phi`` / ``euler2``, ``phi2`` / ``euler3``, ``x``, ``y``, ``phase`` (optional: a single-phase
map without it); every other numeric column is kept as a variable under its lower-case name
(``ci``, ``iq``, ``fit``, ``mad``, ``bc``, ``grainid`` ...).

Euler angles are Bunge (phi1, Phi, phi2). Degrees or radians: ``degrees=`` says which; by
default any angle above 2 pi + 0.01 means degrees, and a map whose angles all lie within
0 .. 2 pi is read as radians with a warning (a single grain near the cube orientation in
degrees would fit there too). phi1 and phi2 are taken modulo 360 deg (exports in -180 .. 180
are common); Phi must lie in 0 .. 180 deg. x and y are in µm. The angles are taken in metallo's
crystal frame (x || a for hexagonal and trigonal phases, as TSL, MTEX and orix write them);
an export of Oxford's software (x || a*; recognised by its MAD, BC or BS columns, or
``oxford_frame=True``) is turned as the .ctf reader turns it.

Phase ids are the file's. Where ``phases`` is not given, a file with one phase id is a
single-phase map (MTEX writes 0 for the only phase of an ``.ang``), and a file with several
takes 0 as not indexed (MTEX's ``notIndexed``, Oxford's phase 0) and the others as phases.
Points whose orientation is not finite (NaN) are not indexed.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from metallo.errors import ConfigError, FormatError
from metallo.io._ebsd_grid import (
    OXFORD_FRAME_NOTE,
    data_lattice,
    given_laue,
    oxford_hexagonal_frame,
    parse_table,
    points_dataset,
    warn_reader,
)
from metallo.io._plugins import register_reader

__all__ = ["read_columns", "sniff_columns"]

#: Column roles and the header names that give them (normalised: lower case, no space/_/-).
_ROLES = {
    "euler1": ("phi1", "euler1", "eulerangle1", "euler1deg"),
    "euler2": ("phi", "euler2", "eulerangle2", "euler2deg", "bigphi"),
    "euler3": ("phi2", "euler3", "eulerangle3", "euler3deg"),
    "x": ("x", "xpos", "xposition", "xum"),
    "y": ("y", "ypos", "yposition", "yum"),
    "phase": ("phase", "phaseid", "phaseindex"),
}
_NEEDED = ("euler1", "euler2", "euler3", "x", "y")
_RESERVED = {"euler", "phase", "quaternion", "x", "y", "angle"}
_SPLIT = re.compile(r"[\s,;]+")
_COMMENT = ("#", "%")


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-()\[\]°]+", "", name).lower()


def _role(name: str) -> str | None:
    n = _norm(name)
    return next((role for role, names in _ROLES.items() if n in names), None)


def _first_line(lines: Sequence[str]) -> tuple[int, str]:
    """Index and text of the first line that is neither blank nor a comment."""
    for k, line in enumerate(lines):
        s = line.strip()
        if s and not s.startswith(_COMMENT):
            return k, s
    return len(lines), ""


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def sniff_columns(head: bytes) -> bool:
    """True for a text file whose first line (after comments) names Euler and x/y columns.

    >>> sniff_columns(b"phi1 Phi phi2 phase x y\\n10 20 30 1 0 0\\n")
    True
    >>> sniff_columns(b"Channel Text File\\nPrj x\\n")
    False
    """
    if b"\x00" in head:  # binary
        return False
    text = head.decode("utf-8", errors="ignore")  # the sniffed head may cut a character in two
    _, first = _first_line(text.splitlines())
    tokens = [t for t in _SPLIT.split(first) if t]
    if not tokens or any(_is_number(t) for t in tokens):
        return False
    roles = {_role(t) for t in tokens}
    return all(r in roles for r in _NEEDED)


def lattice_constants(values: Sequence[float], laue: str, source: str) -> list[float]:
    """a, b, c and the three angles of a phase, from 3 or 6 positive numbers (the angles by
    default 90, 90, 120 for a hexagonal or trigonal Laue group, else 90, 90, 90).

    Examples
    --------
    >>> lattice_constants([3.21, 3.21, 5.21], "6/mmm", "x.txt")
    [3.21, 3.21, 5.21, 90.0, 90.0, 120.0]
    """
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) not in (3, 6) or not all(math.isfinite(v) and v > 0 for v in numbers):
        raise ConfigError(f"{source}: lattice must be 3 or 6 positive numbers (a, b, c [, alpha, beta, gamma]); "
                          f"got {values!r}")
    if len(numbers) == 3:
        numbers += [90.0, 90.0, 120.0] if laue in ("6/mmm", "6/m", "-3m", "-3") else [90.0, 90.0, 90.0]
    return numbers


def _phase_table(
    ids: np.ndarray, phases: Sequence[Mapping[str, Any]] | None, symmetry: str | Mapping[Any, str] | None, source: str,
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The phase table and the ids of the points (-1 = not indexed)."""
    present = sorted(int(v) for v in np.unique(ids) if v >= 0)  # negative ids: not indexed
    if present and present[-1] > 32767:
        raise FormatError(f"{source}: phase id {present[-1]} is not a phase number (expected 0 .. 32767)")
    if phases is not None:
        table: list[dict[str, Any]] = []
        for p in phases:
            if not {"id", "symmetry"} <= set(p):
                raise ConfigError(f"{source}: each of phases= needs 'id' and 'symmetry'; got {dict(p)}")
            table.append({"id": int(p["id"]), "name": str(p.get("name", f"phase{p['id']}")),
                          "symmetry": given_laue(p["symmetry"], source, f"phase {p['id']}"),
                          "lattice": list(p.get("lattice", []))})
        known = [int(p["id"]) for p in table]
        return table, np.where(np.isin(ids, known), ids, -1)
    if not present:
        raise FormatError(f"{source}: no point has a phase id >= 0")
    indexed = present if len(present) == 1 else [v for v in present if v != 0]
    if len(present) > 1 and 0 in present:
        warn_reader(f"{source}: phase 0 read as not indexed (MTEX's notIndexed, Oxford's 0); "
                    f"phases {indexed}; give phases= if 0 is a phase")
    table = []
    assumed = []
    for pid in indexed:
        sym = symmetry.get(pid, symmetry.get(str(pid))) if isinstance(symmetry, Mapping) else symmetry
        if sym is None:
            assumed.append(pid)
        table.append({"id": pid, "name": f"phase{pid}", "lattice": [],
                      "symmetry": "m-3m" if sym is None else given_laue(sym, source, f"phase {pid}")})
    if assumed:
        warnings.warn(f"{source}: a column text file states no crystal symmetry; phases {assumed} read as cubic "
                      "(m-3m); give symmetry= or phases=", UserWarning, stacklevel=4)
    return table, np.where(np.isin(ids, indexed), ids, -1)


def read_columns(
    path: str | Path,
    *,
    columns: Sequence[str] | None = None,
    phases: Sequence[Mapping[str, Any]] | None = None,
    symmetry: str | Mapping[Any, str] | None = None,
    lattice: Sequence[float] | None = None,
    degrees: bool | None = None,
    oxford_frame: bool | None = None,
) -> xr.Dataset:
    """Read a column text EBSD map (MTEX's ``export`` to ``.txt``, scripts, spreadsheets).

    Parameters
    ----------
    path : str or Path
    columns : sequence of str, optional
        Column names, for a file without a header row (or to override it).
    phases : sequence of mappings, optional
        ``{"id", "name", "symmetry", "lattice"}`` per phase; ids not listed are not indexed.
    symmetry : str or mapping, optional
        Laue group of every phase, or phase id -> Laue group (without ``phases``).
    lattice : sequence of float, optional
        Lattice constants a, b, c (Å; and alpha, beta, gamma in degrees, by default 90, 90, 120
        for hexagonal and trigonal phases, else 90, 90, 90) of every phase (without ``phases``):
        a hexagonal phase's twin relations follow from its c/a
        (:func:`metallo.ebsd.twin_systems`).
    degrees : bool, optional
        Euler angles in degrees (True) or radians (False); by default from their range.
    oxford_frame : bool, optional
        The angles of hexagonal and trigonal phases are in Oxford's crystal frame (x || a*: an
        AZtec or Channel 5 export); they are turned into metallo's (x || a) as the .ctf reader
        does. By default True where the columns include Oxford's MAD, BC or BS (with a warning
        when a hexagonal or trigonal phase is turned), else False (TSL, MTEX, orix).

    Returns
    -------
    xr.Dataset
        The EBSD layout of :func:`metallo.ebsd.ebsd_dataset`.

    Raises
    ------
    FormatError
        No header row and no ``columns=``, a missing Euler or x/y column, a malformed row.

    Example
    -------
    >>> ebsd = read_columns("mtex_export.txt", symmetry="m-3m")  # doctest: +SKIP
    """
    path = Path(path)
    source = path.name
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    k, first = _first_line(lines)
    if not first:
        raise FormatError(f"{source}: no data rows")
    tokens = [t for t in _SPLIT.split(first) if t]
    has_header = not all(_is_number(t) for t in tokens)
    names = list(columns) if columns is not None else (tokens if has_header else None)
    if names is None:
        raise FormatError(f"{source}: no header row naming the columns; give columns=[...] "
                          "(e.g. ['x', 'y', 'phi1', 'Phi', 'phi2', 'phase'])")
    roles = [_role(n) for n in names]
    missing = [r for r in _NEEDED if r not in roles]
    if missing:
        raise FormatError(f"{source}: no column for {', '.join(missing)}; the columns are {', '.join(names)} "
                          "(expected phi1 Phi phi2 or Euler1 Euler2 Euler3, x and y)")
    start = k + 1 if has_header else k
    body = [ln for ln in lines[start:] if not ln.strip().startswith(_COMMENT)]
    sep = "," if "," in next((ln for ln in body if ln.strip()), "") else None
    data = parse_table("\n".join(body), first_line_no=start + 1, source=source, sep=sep, n_columns=len(names))
    col = {role: data[:, i] for i, role in enumerate(roles) if role is not None}
    euler = np.column_stack([col["euler1"], col["euler2"], col["euler3"]])
    finite = np.isfinite(euler).all(axis=1)
    if degrees is None:
        degrees = bool(finite.any() and np.abs(euler[finite]).max() > 2 * math.pi + 0.01)
        if not degrees:
            warn_reader(f"{source}: every Euler angle lies within 0 .. 2 pi: read as radians; give degrees=True "
                        "if they are degrees")
    if degrees:
        euler = np.deg2rad(euler)
    euler[:, 0] = np.mod(euler[:, 0], 2 * math.pi)
    euler[:, 2] = np.mod(euler[:, 2], 2 * math.pi)
    bad_phi = finite & ((euler[:, 1] < -1e-3) | (euler[:, 1] > math.pi + 1e-3))
    if bad_phi.any():
        row = int(np.argmax(bad_phi))
        raise FormatError(f"{source}: Phi {np.degrees(euler[row, 1]):.4g} deg on data row {row + 1} is outside "
                          "0 .. 180 deg: not Bunge Euler angles")
    euler[:, 1] = np.clip(euler[:, 1], 0.0, math.pi)
    raw_ids = np.rint(col["phase"]).astype(np.int64) if "phase" in col else np.zeros(len(data), np.int64)
    table, ids = _phase_table(raw_ids, phases, symmetry, source)
    if lattice is not None:
        if phases is not None:
            raise ConfigError(f"{source}: give the lattice constants in phases= or lattice=, not both")
        for p in table:
            p["lattice"] = lattice_constants(lattice, p["symmetry"], source)
    ids = np.where(finite, ids, -1)
    header_extra = {}
    oxford_columns = [n for n in names if _norm(n) in ("mad", "bc", "bs")]
    guessed = oxford_frame is None
    if guessed:
        oxford_frame = bool(oxford_columns)
    if oxford_frame and oxford_hexagonal_frame(euler, ids, table):
        header_extra["crystal_x"] = OXFORD_FRAME_NOTE
        if guessed:
            warn_reader(f"{source}: columns {', '.join(oxford_columns)} are Oxford's: its hexagonal and trigonal "
                        "phases are read in Oxford's crystal frame (x || a*, phi2 - 30 deg into metallo's); "
                        "give oxford_frame=False if the angles are in x || a")
    # Other columns keep their names, except names the map's own variables have.
    variables = {(f"column_{_norm(n)}" if _norm(n) in _RESERVED else _norm(n)): data[:, i]
                 for i, (n, r) in enumerate(zip(names, roles, strict=True)) if r is None}
    header = {"format": "columns", "columns": list(names), "degrees": bool(degrees), "n_points": int(len(data)),
              **header_extra}
    x, y = col["x"], col["y"]
    return points_dataset(
        euler, ids.astype(np.int16), x, y, source=source, phases=table, grid=data_lattice(x, y) or "square",
        variables=variables, header=header,
    )


register_reader("columns", kind="ebsd", extensions=(), sniff=sniff_columns, read=read_columns)
