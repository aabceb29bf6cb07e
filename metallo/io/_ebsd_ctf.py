"""Oxford HKL / AZtec ``.ctf`` reader.

Euler angles are stored in degrees, phase 0 means not indexed, Laue groups are numbered 1-11.
Numbers may use a decimal comma (European locale exports). Points are placed by their X/Y,
so sparse maps (non-indexed points omitted) keep the acquisition grid of the header. A
non-grid "Interactive" job (scattered points) is snapped onto a square grid whose step keeps
every point in its own cell; the cells without a point are phase -1 (``attrs["scattered"]``).
Hexagonal and trigonal orientations are moved from Oxford's crystal frame (x || a*) to
metallo's (x || a) on reading and back on writing (:func:`oxford_hexagonal_frame`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from metallo._atomic import atomic_path
from metallo._ebsd_dataset import ebsd_dataset, phases_of
from metallo.errors import ConfigError, FormatError
from metallo.io._ebsd_grid import (
    OXFORD_FRAME_NOTE,
    check_duplicates,
    header_count,
    header_float,
    header_int,
    mark_invalid_points,
    oxford_hexagonal_frame,
    parse_table,
    place_on_grid,
    scatter_to_grid,
    warn_reader,
)
from metallo.io._plugins import register_reader

__all__ = ["CTF_LAUE", "read_ctf", "sniff_ctf", "write_ctf"]

#: Oxford Laue group numbers -> Laue group symbol.
CTF_LAUE = {1: "-1", 2: "2/m", 3: "mmm", 4: "4/m", 5: "4/mmm", 6: "-3", 7: "-3m", 8: "6/m",
            9: "6/mmm", 10: "m-3", 11: "m-3m"}
_RENAME = {"bc": "iq", "mad": "fit", "bands": "bands", "error": "error", "bs": "bs"}


def sniff_ctf(head: bytes) -> bool:
    """True if ``head`` looks like an Oxford channel text file."""
    return head.lstrip().startswith(b"Channel Text File")


def read_ctf(path: str | Path) -> xr.Dataset:
    """Read an Oxford ``.ctf`` EBSD map.

    Parameters
    ----------
    path : str or Path
        The ``.ctf`` file.

    Returns
    -------
    xr.Dataset
        The EBSD layout of :func:`metallo.ebsd.ebsd_dataset`; Euler angles converted to
        radians, ``iq`` = band contrast, ``fit`` = MAD (degrees), plus ``bands``, ``error``,
        ``bs`` and any further columns under their lower-case names.

    Example
    -------
    Not run by the doctest suite: it needs a real ``.ctf`` file (metallo writes none;
    ``tests/io`` reads the shared example maps):

    >>> ebsd = read_ctf("map.ctf")  # doctest: +SKIP
    """
    path = Path(path)
    source = path.name
    text = path.read_bytes().decode("latin-1")
    lines = text.split("\n")
    if not lines[0].lstrip().startswith("Channel Text File"):
        raise FormatError(f"{source}: line 1: expected 'Channel Text File', got {lines[0][:40]!r}")
    header: dict[str, Any] = {}
    phases: list[dict[str, Any]] = []
    columns: list[str] | None = None
    k = 1
    while k < len(lines):
        line = lines[k].rstrip("\r")
        fields = line.split("\t")
        key = fields[0].strip()
        if key == "Phase" and len(fields) > 3 and fields[1].strip() == "X":
            columns = [f.strip() for f in fields]
            k += 1
            break
        if key == "Phases":
            n_phases = header_int(fields[1], source, k + 1, "Phases", minimum=0, maximum=1000)
            for pid in range(1, n_phases + 1):
                k += 1
                if k >= len(lines):
                    raise FormatError(f"{source}: file ends inside the phase table (line {k + 1})")
                pf = lines[k].rstrip("\r").split("\t")
                if len(pf) < 4:
                    raise FormatError(f"{source}: line {k + 1}: phase {pid} needs lattice, angles, name, Laue group")
                lengths = [header_float(v, source, k + 1, "lattice") for v in pf[0].split(";")]
                angles = [header_float(v, source, k + 1, "lattice angle") for v in pf[1].split(";")]
                if not all(math.isfinite(v) and 0 < v <= 1000 for v in lengths + angles):
                    raise FormatError(
                        f"{source}: line {k + 1}: phase {pid} lattice must be positive lengths (Å) "
                        f"and angles (°); got {(pf[0] + ' ' + pf[1])[:80]!r}"
                    )
                laue = header_int(pf[3], source, k + 1, "Laue group", minimum=0, maximum=1000)
                if laue not in CTF_LAUE:
                    raise FormatError(
                        f"{source}: line {k + 1}: unknown Laue group {laue} for phase {pf[2].strip()!r}; expected 1-11"
                    )
                phase = {"id": pid, "name": pf[2].strip() or f"phase{pid}",
                         "symmetry": CTF_LAUE[laue], "lattice": lengths + angles}
                space_group = pf[4].strip() if len(pf) > 4 else ""
                if space_group.isdigit() and 1 <= int(space_group) <= 230:
                    phase["space_group"] = int(space_group)
                phases.append(phase)
        elif len(fields) >= 2 and key:
            header[key] = fields[1].strip()
        k += 1
    if columns is None:
        raise FormatError(f"{source}: no column header line 'Phase\\tX\\tY...' found")
    lower = [c.lower() for c in columns]
    for need in ("phase", "x", "y", "euler1", "euler2", "euler3"):
        if need not in lower:
            raise FormatError(f"{source}: column header lacks {need!r}; got {columns}")
    body = "\n".join(lines[k:])
    first_row = next((line for line in lines[k:] if line.strip()), "")
    decimal_comma = "," in first_row and "." not in first_row
    # Oxford separates the values by tabs; files written by other tools (numpy.savetxt in orix's
    # test files, some exporters) by spaces.
    sep = "\t" if "\t" in first_row else None
    n_first = len(first_row.strip().split(sep) if sep else first_row.split())
    if 6 <= n_first < len(columns) and all(need in lower[:n_first] for need in ("phase", "x", "y", "euler1", "euler2", "euler3")):
        # MTEX's testdata_sqr/hex.ctf name 11 columns and write 10 (no BS): the trailing
        # columns the rows lack are not read, rather than the whole map refused.
        warn_reader(f"{source}: the column header names {len(columns)} columns but the data rows hold "
                    f"{n_first}; {', '.join(columns[n_first:])} not read")
        columns, lower = columns[:n_first], lower[:n_first]
    data = parse_table(
        body, first_line_no=k + 1, source=source, sep=sep, decimal_comma=decimal_comma,
        n_columns=len(columns),
    )
    col = {name: data[:, i] for i, name in enumerate(lower)}
    mode = header.get("JobMode", "Grid").lower()
    scattered = mode != "grid"

    def header_value(key: str) -> float | None:
        return header_float(header[key], source, 0, key) if key in header else None

    xs, ys = header_value("XStep"), header_value("YStep")
    xc, yc = header_value("XCells"), header_value("YCells")
    placement = place_on_grid(
        col["x"], col["y"], source=source, grid="square", header_step=(xs, ys),
        header_shape=(header_count(yc, source, "YCells"), header_count(xc, source, "XCells")),
        scattered=scattered,
    )
    if scattered:
        warn_reader(f"{source}: JobMode {header.get('JobMode')}: {placement.note}")
    check_duplicates(placement, source)
    # A non-finite or huge phase becomes an unknown id, reported below.
    phase_ids = np.rint(np.where(np.abs(col["phase"]) < 2**31, col["phase"], 2**31)).astype(np.int64)
    bad = (phase_ids > len(phases)) | (phase_ids < 0)
    phase_ids[phase_ids == 0] = -1
    if bad.any():
        row = int(np.argmax(bad))
        raise FormatError(f"{source}: line {k + 1 + row}: phase {phase_ids[row]} but the header lists {len(phases)} phases")
    euler = np.deg2rad(np.column_stack([col["euler1"], col["euler2"], col["euler3"]]))
    if oxford_hexagonal_frame(euler, phase_ids, phases):
        header["crystal_x"] = OXFORD_FRAME_NOTE
    mark_invalid_points(
        euler, phase_ids,
        {n: v for n, v in col.items() if n not in ("phase", "x", "y", "euler1", "euler2", "euler3")},
        source=source, first_line_no=k + 1,
    )
    variables = {}
    for name in lower:
        if name in ("phase", "x", "y", "euler1", "euler2", "euler3"):
            continue
        out = _RENAME.get(name, name)
        variables[out] = scatter_to_grid(placement, col[name].astype(np.float32), np.float32(np.nan))
    header.update({"format": "ctf", "columns": columns, "n_points": int(len(phase_ids))})
    ds = ebsd_dataset(
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
    if scattered:
        ds.attrs["scattered"] = 1
    return ds


_LAUE_TO_CTF = {v: k for k, v in CTF_LAUE.items()}


def write_ctf(ebsd: xr.Dataset, path: str | Path) -> Path:
    """Write an EBSD map to an Oxford ``.ctf`` file (square grids only).

    Phases are numbered 1..n in the order of the phase table (0 = not indexed, as Oxford
    writes it); Euler angles go out in degrees with 5 decimals (< 1e-7 rad rounding), those of
    hexagonal and trigonal phases in Oxford's crystal frame (x || a*: phi2 + 30 deg, the inverse
    of the reader's correction).
    Columns: Phase X Y Bands Error Euler1 Euler2 Euler3 MAD BC BS, taken from ``bands``,
    ``error``, ``fit`` (MAD), ``iq`` (BC) and ``bs`` where the map has them, else 0.

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

    Raises
    ------
    ConfigError
        The map is on a hexagonal grid, which .ctf cannot hold.

    Example
    -------
    >>> write_ctf(ebsd, "map.ctf")  # doctest: +SKIP
    """
    path = Path(path)
    if ebsd.attrs.get("grid", "square") != "square":
        raise ConfigError(f"{path.name}: .ctf holds square grids only; this map is {ebsd.attrs['grid']} (write .ang or .h5)")
    phases = phases_of(ebsd)
    number = {p["id"]: k + 1 for k, p in enumerate(phases)}
    ny, nx = ebsd.sizes["y"], ebsd.sizes["x"]
    step_x = float(ebsd.attrs["step_um"])
    step_y = float(ebsd.attrs.get("step_y_um", step_x))
    euler = np.degrees(np.asarray(ebsd["euler"].values, dtype=np.float64).reshape(-1, 3))
    ids = np.asarray(ebsd["phase"].values).reshape(-1).astype(np.int64)
    phase = np.zeros(ids.size, dtype=np.int64)
    for pid, k in number.items():  # one pass per phase, not per point
        phase[ids == pid] = k
    unindexed = (phase == 0) | ~np.isfinite(euler).all(axis=1)
    euler[unindexed] = 0.0
    phase[unindexed] = 0
    rad = np.radians(euler)
    oxford_hexagonal_frame(rad, np.where(unindexed, -1, ids), phases, to_file=True)  # x || a -> Oxford's a*
    euler = np.degrees(rad)

    def column(name: str) -> np.ndarray:
        if name in ebsd:
            return np.nan_to_num(np.asarray(ebsd[name].values, dtype=np.float64).reshape(-1))
        return np.zeros(ny * nx)

    rows, cols = np.divmod(np.arange(ny * nx), nx)
    x = float(ebsd["x"].values[0]) + cols * step_x
    y = float(ebsd["y"].values[0]) + rows * step_y
    table = np.column_stack([phase, x, y, column("bands"), column("error"), euler,
                             column("fit"), column("iq"), column("bs")])
    lines = [
        "Channel Text File",
        f"Prj\t{ebsd.attrs.get('source', '') or 'metallo'}",
        "Author\tmetallo",
        "JobMode\tGrid",
        f"XCells\t{nx}",
        f"YCells\t{ny}",
        f"XStep\t{step_x:.6g}",
        f"YStep\t{step_y:.6g}",
        "AcqE1\t0",
        "AcqE2\t0",
        "AcqE3\t0",
        "Euler angles refer to Sample Coordinate system (CS0)!\tMag\t0\tCoverage\t100\tDevice\t0"
        "\tKV\t0\tTiltAngle\t0\tTiltAxis\t0",
        f"Phases\t{len(phases)}",
    ]
    for p in phases:
        lattice = list(p.get("lattice") or []) or [1.0, 1.0, 1.0, 90.0, 90.0, 90.0]
        lines.append(
            ";".join(f"{v:.4f}" for v in lattice[:3]) + "\t" + ";".join(f"{v:.4f}" for v in lattice[3:6])
            + f"\t{p['name']}\t{_LAUE_TO_CTF[p['symmetry']]}\t{int(p.get('space_group') or 0)}"
        )
    lines.append("Phase\tX\tY\tBands\tError\tEuler1\tEuler2\tEuler3\tMAD\tBC\tBS")
    with atomic_path(path) as tmp, tmp.open("w", encoding="latin-1", errors="replace", newline="\r\n") as fh:
        fh.write("\n".join(lines) + "\n")
        np.savetxt(fh, table, delimiter="\t",
                   fmt=["%d", "%.5f", "%.5f", "%d", "%d", "%.5f", "%.5f", "%.5f", "%.5f", "%d", "%d"])
    return path


register_reader("ctf", kind="ebsd", extensions=(".ctf",), sniff=sniff_ctf, read=read_ctf)
