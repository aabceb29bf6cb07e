"""Oxford HKL / AZtec ``.ctf`` reader.

Euler angles are stored in degrees, phase 0 means not indexed, Laue groups are numbered 1-11.
Numbers may use a decimal comma (European locale exports). Points are placed by their X/Y,
so sparse maps (non-indexed points omitted) keep the acquisition grid of the header. A
non-grid "Interactive" job (scattered points) is snapped onto a square grid whose step keeps
every point in its own cell; the cells without a point are phase -1 (``attrs["scattered"]``).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from metallo.ebsd._dataset import ebsd_dataset
from metallo.errors import FormatError
from metallo.io._ebsd_grid import (
    check_duplicates,
    header_count,
    mark_invalid_points,
    parse_table,
    place_on_grid,
    scatter_to_grid,
)
from metallo.io._plugins import register_reader

__all__ = ["CTF_LAUE", "read_ctf", "sniff_ctf"]

#: Oxford Laue group numbers -> Laue group symbol.
CTF_LAUE = {1: "-1", 2: "2/m", 3: "mmm", 4: "4/m", 5: "4/mmm", 6: "-3", 7: "-3m", 8: "6/m",
            9: "6/mmm", 10: "m-3", 11: "m-3m"}
_RENAME = {"bc": "iq", "mad": "fit", "bands": "bands", "error": "error", "bs": "bs"}


def sniff_ctf(head: bytes) -> bool:
    """True if ``head`` looks like an Oxford channel text file."""
    return head.lstrip().startswith(b"Channel Text File")


def _number(text: str, source: str, line_no: int, key: str) -> float:
    try:
        return float(text.strip().replace(",", "."))
    except ValueError as exc:
        raise FormatError(f"{source}: line {line_no}: {key} is not a number: {text!r}") from exc


def _whole(text: str, source: str, line_no: int, key: str, maximum: int) -> int:
    value = _number(text, source, line_no, key)
    if not (math.isfinite(value) and value.is_integer() and 0 <= value <= maximum):
        raise FormatError(f"{source}: line {line_no}: {key} must be a whole number 0-{maximum}; got {text.strip()!r}")
    return int(value)


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
            n_phases = _whole(fields[1], source, k + 1, "Phases", 1000)
            for pid in range(1, n_phases + 1):
                k += 1
                if k >= len(lines):
                    raise FormatError(f"{source}: file ends inside the phase table (line {k + 1})")
                pf = lines[k].rstrip("\r").split("\t")
                if len(pf) < 4:
                    raise FormatError(f"{source}: line {k + 1}: phase {pid} needs lattice, angles, name, Laue group")
                lengths = [_number(v, source, k + 1, "lattice") for v in pf[0].split(";")]
                angles = [_number(v, source, k + 1, "lattice angle") for v in pf[1].split(";")]
                if not all(math.isfinite(v) and 0 < v <= 1000 for v in lengths + angles):
                    raise FormatError(
                        f"{source}: line {k + 1}: phase {pid} lattice must be positive lengths (Å) "
                        f"and angles (°); got {(pf[0] + ' ' + pf[1])[:80]!r}"
                    )
                laue = _whole(pf[3], source, k + 1, "Laue group", 1000)
                if laue not in CTF_LAUE:
                    raise FormatError(
                        f"{source}: line {k + 1}: unknown Laue group {laue} for phase {pf[2].strip()!r}; expected 1-11"
                    )
                phases.append({"id": pid, "name": pf[2].strip() or f"phase{pid}",
                               "symmetry": CTF_LAUE[laue], "lattice": lengths + angles})
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
    data = parse_table(
        body, first_line_no=k + 1, source=source, sep="\t", decimal_comma=decimal_comma,
        n_columns=len(columns),
    )
    col = {name: data[:, i] for i, name in enumerate(lower)}
    mode = header.get("JobMode", "Grid").lower()
    scattered = mode != "grid"

    def header_number(key: str) -> float | None:
        return _number(header[key], source, 0, key) if key in header else None

    xs, ys = header_number("XStep"), header_number("YStep")
    xc, yc = header_number("XCells"), header_number("YCells")
    placement = place_on_grid(
        col["x"], col["y"], source=source, grid="square", header_step=(xs, ys),
        header_shape=(header_count(yc, source, "YCells"), header_count(xc, source, "XCells")),
        scattered=scattered,
    )
    if scattered:
        warnings.warn(f"{source}: JobMode {header.get('JobMode')}: {placement.note}", UserWarning, stacklevel=2)
    check_duplicates(placement, source)
    # A non-finite or huge phase becomes an unknown id, reported below.
    phase_ids = np.rint(np.where(np.abs(col["phase"]) < 2**31, col["phase"], 2**31)).astype(np.int64)
    bad = (phase_ids > len(phases)) | (phase_ids < 0)
    phase_ids[phase_ids == 0] = -1
    if bad.any():
        row = int(np.argmax(bad))
        raise FormatError(f"{source}: line {k + 1 + row}: phase {phase_ids[row]} but the header lists {len(phases)} phases")
    euler = np.deg2rad(np.column_stack([col["euler1"], col["euler2"], col["euler3"]]))
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
        grid="square",
        phases=phases,
        origin_um=placement.origin,
        variables=variables,
        source=source,
        header=header,
    )
    if scattered:
        ds.attrs["scattered"] = 1
    return ds


register_reader("ctf", kind="ebsd", extensions=(".ctf",), sniff=sniff_ctf, read=read_ctf)
