"""TSL/EDAX OIM ``.ang`` reader and writer (square and hexagonal grids).

Columns (8, 9, 10 or more): phi1 Phi phi2 (rad) x y (µm) IQ CI phase [SEM-signal [fit [...]]].
Unindexed points are marked by CI = -1 or by the Euler marker 4*pi; both become phase -1.
A phase column of 0 in a single-phase file means that phase (OIM's single-phase convention);
in a multi-phase file it means not indexed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from metallo._atomic import atomic_path
from metallo._ebsd_dataset import LAUE_GROUPS, ebsd_dataset, phases_of
from metallo.errors import FormatError
from metallo.io._ebsd_grid import (
    check_duplicates,
    header_count,
    header_float,
    header_int,
    mark_invalid_points,
    parse_table,
    place_on_grid,
    scatter_to_grid,
    warn_reader,
)
from metallo.io._plugins import register_reader

__all__ = ["ANG_SYMMETRY", "TSL_PRIAS", "read_ang", "sniff_ang", "tsl_phase_ids", "write_ang"]

#: TSL symmetry codes -> Laue group.
ANG_SYMMETRY = {
    1: "-1", 2: "2/m", 20: "2/m", 21: "2/m", 22: "mmm", 4: "4/m", 42: "4/mmm", 3: "-3",
    32: "-3m", 6: "6/m", 62: "6/mmm", 23: "m-3", 43: "m-3m",
}
_LAUE_TO_ANG = {"-1": 1, "2/m": 2, "mmm": 22, "4/m": 4, "4/mmm": 42, "-3": 3, "-3m": 32,
                "6/m": 6, "6/mmm": 62, "m-3": 23, "m-3m": 43}
_COLUMNS = ("phi1", "Phi", "phi2", "x", "y", "iq", "ci", "phase", "sem", "fit")
_UNINDEXED_EULER = 4.0 * np.pi
#: OIM's PRIAS columns (.ang COLUMN_HEADERS, EDAX .h5 datasets) and metallo's names for them.
TSL_PRIAS = {"PRIAS Bottom Strip": "prias_bottom", "PRIAS Center Square": "prias_center",
             "PRIAS Top Strip": "prias_top"}
_NAMED_COLUMNS = {k.lower(): v for k, v in TSL_PRIAS.items()}


def sniff_ang(head: bytes) -> bool:
    """True if ``head`` (the first bytes of a file) looks like a TSL .ang header."""
    text = head.lstrip()
    return text.startswith(b"#") and any(
        key in head for key in (b"MaterialName", b"GRID:", b"XSTEP", b"TEM_PIXperUM")
    )


def _header_value(line: str) -> str:
    body = line.lstrip("#").strip()
    parts = re.split(r"[:\s]+", body, maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""


def tsl_phase_ids(
    phase_col: np.ndarray,
    ci: np.ndarray,
    euler: np.ndarray,
    phases: list[dict[str, Any]],
    *,
    where: Callable[[int], str],
) -> np.ndarray:
    """Phase ids of TSL/EDAX points (.ang, .osc, OIM .h5); -1 = not indexed.

    Phase 0 means the only phase in a single-phase file (OIM's convention) and not indexed in
    a multi-phase one. A point with CI < 0 or the 4*pi Euler marker is not indexed; its Euler
    angles (``euler``, modified in place) become NaN for the marker. ``where(row)`` names the
    place of a bad row in the :class:`FormatError` of a phase id the header does not list.
    """
    # A non-finite or huge phase becomes an unknown id, reported below.
    finite = np.nan_to_num(phase_col, nan=2.0**31)
    phase_ids = np.rint(np.where(np.abs(finite) < 2**31, finite, 2**31)).astype(np.int64)
    negative = phase_ids < 0
    if negative.any():
        row = int(np.argmax(negative))
        warn_reader(f"{where(row)}: phase {phase_ids[row]} is no TSL phase id (phases are 1..n, 0 = not indexed); "
                    f"{int(negative.sum())} such points are marked not indexed")
        phase_ids[negative] = 0 if len(phases) > 1 else -1
    known = {p["id"] for p in phases}
    phase_ids[phase_ids == 0] = phases[0]["id"] if len(phases) == 1 else -1
    phase_ids[negative] = -1
    unknown = ~np.isin(phase_ids, [*known, -1])
    if unknown.any():
        row = int(np.argmax(unknown))
        raise FormatError(f"{where(row)}: phase {phase_ids[row]} is not in the header phases {sorted(known)}")
    # The 4*pi Euler marker of OIM's unindexed points; other out-of-range angles are damage
    # (reported by the readers' value check, not silently unindexed here).
    with np.errstate(invalid="ignore"):
        marker = (np.abs(euler - _UNINDEXED_EULER) < 1e-2).any(axis=1)
        phase_ids[marker | (ci < 0)] = -1
    euler[marker] = np.nan
    return phase_ids


def read_ang(path: str | Path) -> xr.Dataset:
    """Read a TSL/EDAX ``.ang`` EBSD map.

    Parameters
    ----------
    path : str or Path
        The ``.ang`` file.

    Returns
    -------
    xr.Dataset
        The EBSD layout of :func:`metallo.ebsd.ebsd_dataset`, with ``ci``, ``iq`` and, where the
        file has them, ``sem`` and ``fit`` (extra columns as ``col10``, ``col11``, ...).

    Example
    -------
    >>> from metallo.synth import make_specimen
    >>> _ = write_ang(make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd, "map.ang")
    >>> ebsd = read_ang("map.ang")
    >>> ebsd.attrs["step_um"], sorted(ebsd.data_vars)[:3]
    (0.5, ['ci', 'euler', 'fit'])
    """
    path = Path(path)
    source = path.name
    raw = path.read_bytes().decode("latin-1")
    # Find the first data line without splitting the (possibly huge) data block.
    pos, n_header = 0, 0
    while pos < len(raw):
        end = raw.find("\n", pos)
        end = len(raw) if end < 0 else end
        line = raw[pos:end]
        if line.strip() and not line.lstrip().startswith("#"):
            break
        pos, n_header = end + 1, n_header + 1
    lines = raw[:pos].split("\n")
    header: dict[str, Any] = {}
    phases: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    grid = "square"
    for k, line in enumerate(lines[:n_header]):
        line_no = k + 1
        body = line.lstrip("#").strip()
        if not body:
            continue
        key = re.split(r"[:\s]+", body, maxsplit=1)[0]
        value = _header_value(line)
        lower = key.lower()
        if lower == "phase":
            current = {"id": header_int(value, source, line_no, "Phase", first_token=True), "name": "", "symmetry": None, "lattice": []}
            phases.append(current)
        elif lower == "materialname":
            if current is None or current["name"]:
                current = {"id": len(phases) + 1, "name": "", "symmetry": None, "lattice": []}
                phases.append(current)
            current["name"] = value
        elif lower == "symmetry":
            if current is None:
                current = {"id": len(phases) + 1, "name": "", "symmetry": None, "lattice": []}
                phases.append(current)
            code = header_int(value, source, line_no, "Symmetry", first_token=True)
            if code not in ANG_SYMMETRY:
                raise FormatError(
                    f"{source}: line {line_no}: unknown symmetry code {code}; expected one of "
                    f"{', '.join(str(c) for c in sorted(ANG_SYMMETRY))}"
                )
            current["symmetry"] = ANG_SYMMETRY[code]
        elif lower == "latticeconstants" and current is not None:
            current["lattice"] = [header_float(v, source, line_no, "LatticeConstants", first_token=True) for v in value.split()[:6]]
            if not all(np.isfinite(v) and 0 < v <= 1000 for v in current["lattice"]):
                raise FormatError(
                    f"{source}: line {line_no}: LatticeConstants must be positive lengths (Å) and "
                    f"angles (°); got {value.strip()[:80]!r}"
                )
        elif lower == "grid":
            grid = "hexagonal" if value.lower().startswith("hex") else "square"
            header["GRID"] = value
        elif lower == "column_headers":  # OIM 8: the names of the columns, comma separated
            header["COLUMN_HEADERS"] = value
        elif lower in ("xstep", "ystep", "ncols_odd", "ncols_even", "nrows"):
            header[key.upper()] = header_float(value, source, line_no, key.upper(), first_token=True)
        elif lower in ("operator", "sampleid", "scanid") and value:
            # After the phase blocks in OIM's layout; a corrected map says there what it is.
            header[key.upper()] = value
        elif current is None and value:
            header[key] = value
    for p in phases:
        if p["symmetry"] is None:
            raise FormatError(f"{source}: phase {p['id']} ({p['name'] or 'unnamed'}) has no Symmetry line")
        p["name"] = p["name"] or f"phase{p['id']}"
    data = parse_table(raw[pos:], first_line_no=n_header + 1, source=source)
    n_cols = data.shape[1]
    if n_cols < 6:
        raise FormatError(f"{source}: line {n_header + 1} has {n_cols} columns, expected at least 6 "
                          "(phi1 PHI phi2 x y IQ [CI [phase ...]])")
    if n_cols < 8 and len(phases) > 1:
        raise FormatError(f"{source}: line {n_header + 1} has {n_cols} columns, no phase column, but the "
                          f"header lists {len(phases)} phases: which phase each point is cannot be told")
    # OIM's versions 1 and 2 wrote 6 (… IQ) and 7 (… IQ CI) columns: a single-phase map.
    euler = data[:, :3].copy()
    x, y, iq = data[:, 3], data[:, 4], data[:, 5]
    ci = data[:, 6] if n_cols > 6 else np.ones(len(data))
    phase_col = data[:, 7] if n_cols > 7 else np.zeros(len(data))
    hx, hy = header.get("XSTEP"), header.get("YSTEP")
    nrows, ncols = header.get("NROWS"), header.get("NCOLS_ODD")
    placement = place_on_grid(
        x, y, source=source, grid=grid,
        header_step=(hx, hy),
        header_shape=(header_count(nrows, source, "NROWS"), header_count(ncols, source, "NCOLS_ODD")),
    )
    check_duplicates(placement, source)
    phase_ids = tsl_phase_ids(
        phase_col, ci, euler, phases, where=lambda row: f"{source}: line {n_header + 1 + row}"
    )
    mark_invalid_points(
        euler, phase_ids, {"ci": ci, "iq": iq}, source=source, first_line_no=n_header + 1
    )
    variables: dict[str, np.ndarray] = {"iq": scatter_to_grid(placement, iq.astype(np.float32), np.float32(np.nan))}
    if n_cols > 6:
        variables["ci"] = scatter_to_grid(placement, ci.astype(np.float32), np.float32(np.nan))
    named = [n.strip() for n in str(header.get("COLUMN_HEADERS", "")).split(",")]
    for c in range(8, n_cols):
        name = _COLUMNS[c] if c < len(_COLUMNS) else f"col{c}"
        if c >= len(_COLUMNS) and len(named) == n_cols and named[c]:
            name = _NAMED_COLUMNS.get(named[c].lower(), re.sub(r"\W+", "_", named[c].lower()).strip("_") or name)
        variables[name] = scatter_to_grid(placement, data[:, c].astype(np.float32), np.float32(np.nan))
    header.update({"format": "ang", "columns": n_cols, "n_points": int(len(x))})
    return ebsd_dataset(
        scatter_to_grid(placement, euler, np.nan),
        scatter_to_grid(placement, phase_ids.astype(np.int16), np.int16(-1)),
        step_um=placement.step_x,
        step_y_um=placement.step_y,
        grid=placement.grid,
        phases=phases,
        origin_um=placement.origin,
        variables=variables,
        source=source,
        header=header,
    )


def write_ang(ebsd: xr.Dataset, path: str | Path) -> Path:
    """Write an EBSD map to a TSL ``.ang`` file (square or hexagonal grid, 10 columns).

    Phases are numbered 1..n in the order of the phase table. Points with phase -1 are written
    as OIM writes unindexed points: Euler angles 4*pi, CI -1, phase 0. Euler angles carry 7
    decimals (< 1e-6 rad rounding), x/y 6. On a hexagonal grid the padding cell at the end of each odd row is not
    written, so rows alternate between NCOLS_ODD and NCOLS_EVEN points.

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map in the layout of :func:`metallo.ebsd.ebsd_dataset`.
    path : str or Path
        Output file.

    Returns
    -------
    Path
        The written file.

    Example
    -------
    >>> from metallo.synth import make_specimen
    >>> write_ang(make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd, "map.ang")
    PosixPath('map.ang')
    """
    path = Path(path)
    phases = phases_of(ebsd)
    grid = str(ebsd.attrs.get("grid", "square"))
    step_x = float(ebsd.attrs["step_um"])
    step_y = float(ebsd.attrs.get("step_y_um", step_x))
    ny, nx = ebsd.sizes["y"], ebsd.sizes["x"]
    euler = np.asarray(ebsd["euler"].values, dtype=np.float64).reshape(-1, 3).copy()
    phase: np.ndarray = np.asarray(ebsd["phase"].values).reshape(-1).astype(np.int64)

    def column(name: str, default: float) -> np.ndarray:
        if name in ebsd:
            return np.asarray(ebsd[name].values, dtype=np.float64).reshape(-1)
        return np.full(ny * nx, default)

    ci, iq, sem, fit = column("ci", 1.0), column("iq", 0.0), column("sem", 0.0), column("fit", 0.0)
    # Phases are numbered 1..n in the order of the table (never "# Phase 0": DefDAP and OIM
    # want sequential numbers from 1); the phase column follows the new numbers.
    number = {p["id"]: k + 1 for k, p in enumerate(phases)}
    renumbered = np.zeros(phase.size, dtype=np.int64)
    for pid, k in number.items():  # one pass per phase, not per point
        renumbered[phase == pid] = k
    unindexed = (renumbered == 0) | ~np.isfinite(euler).all(axis=1)
    euler[unindexed] = _UNINDEXED_EULER
    ci = np.where(unindexed, -1.0, np.nan_to_num(ci, nan=0.0))  # CI < 0 would unindex the point
    phase = np.where(unindexed, 0, renumbered)
    rows, cols = np.divmod(np.arange(ny * nx), nx)
    yy = float(ebsd["y"].values[0]) + rows * step_y
    xx = float(ebsd["x"].values[0]) + cols * step_x
    keep = np.ones(ny * nx, dtype=bool)
    if grid == "hexagonal":
        xx = xx + np.where(rows % 2 == 1, 0.5 * step_x, 0.0)
        keep = ~((rows % 2 == 1) & (cols == nx - 1))
    table = np.column_stack([euler, xx, yy, np.nan_to_num(iq), ci, phase, np.nan_to_num(sem), np.nan_to_num(fit)])[keep]
    lines = ["# TEM_PIXperUM          1.000000", "# x-star                0.000000",
             "# y-star                0.000000", "# z-star                0.000000",
             "# WorkingDistance       0.000000", "#"]
    for k, p in enumerate(phases):
        lattice = list(p.get("lattice") or [1.0, 1.0, 1.0, 90.0, 90.0, 90.0])
        lines += [
            f"# Phase {k + 1}",
            f"# MaterialName  \t{p['name']}",
            f"# Formula     \t{p['name']}",
            "# Info          written by metallo",
            f"# Symmetry              {_LAUE_TO_ANG[p['symmetry']] if p['symmetry'] in LAUE_GROUPS else 43}",
            "# LatticeConstants      " + " ".join(f"{v:.3f}" for v in lattice[:3]) + "  "
            + " ".join(f"{v:.3f}" for v in lattice[3:6]),
            "# NumberFamilies        0",
            "#",
        ]
    lines += [
        f"# GRID: {'HexGrid' if grid == 'hexagonal' else 'SqrGrid'}",
        f"# XSTEP: {step_x:.6f}",
        f"# YSTEP: {step_y:.6f}",
        f"# NCOLS_ODD: {nx}",
        f"# NCOLS_EVEN: {nx - 1 if grid == 'hexagonal' else nx}",
        f"# NROWS: {ny}",
        "#",
        "# OPERATOR: \tmetallo",
        "#",
        "# SAMPLEID: \t" + str(ebsd.attrs.get("source", "")),
        "#",
        "# SCANID: \t",
        "#",
    ]
    with atomic_path(path) as tmp, tmp.open("w", encoding="latin-1", errors="replace", newline="\n") as fh:
        fh.write("\n".join(lines) + "\n")
        np.savetxt(
            fh, table,
            fmt=["%.7f", "%.7f", "%.7f", "%.6f", "%.6f", "%.5g", "%.4f", "%d", "%.6g", "%.4f"],
        )
    return path


register_reader("ang", kind="ebsd", extensions=(".ang",), sniff=sniff_ang, read=read_ang)
