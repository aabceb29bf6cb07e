"""Oxford Channel 5 / AZtec ``.cpr`` + ``.crc`` reader (project header + binary points).

The ``.cpr`` is an INI-style text header: ``[Job]`` holds the grid (``xCells``, ``yCells``,
``GridDistX``, ``GridDistY``), ``[Phases]``/``[PhaseN]`` the phase table (``StructureName``,
``a b c alpha beta gamma``, ``LaueGroup`` 1-11, ``SpaceGroup``), ``[Fields]`` the per-point
fields stored in the ``.crc``, ``[EDX Windows]`` any EDX count windows.

The ``.crc`` holds one packed little-endian record per point, in raster order (x fastest):
a phase byte (0 = not indexed) followed by the listed fields. Field codes (Oxford): 1 X,
2 Y, 3-5 Euler angles (rad), 6 MAD (deg), 12 reliability index and EDX windows (> 12) as
float32; 7 band contrast, 8 band slope, 9 (unnamed), 10 bands, 11 error as one byte.
The record size must divide the file: a short file is trimmed to the points it holds with
a warning, a record layout that does not fit the file is a :class:`FormatError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from metallo.errors import FormatError
from metallo.io._ebsd_ctf import CTF_LAUE
from metallo.io._ebsd_grid import (
    OXFORD_FRAME_NOTE,
    oxford_hexagonal_frame,
    points_dataset,
    raster_coordinates,
    warn_reader,
)
from metallo.io._plugins import register_reader

__all__ = ["CRC_FIELDS", "parse_cpr", "read_cpr", "sniff_cpr"]

#: Oxford field code -> (our variable name, numpy dtype) of the .crc records.
CRC_FIELDS: dict[int, tuple[str, str]] = {
    1: ("x", "<f4"), 2: ("y", "<f4"), 3: ("phi1", "<f4"), 4: ("Phi", "<f4"), 5: ("phi2", "<f4"),
    6: ("fit", "<f4"), 7: ("iq", "u1"), 8: ("bs", "u1"), 9: ("field9", "u1"), 10: ("bands", "u1"),
    11: ("error", "u1"), 12: ("reliability", "<f4"),
}


def sniff_cpr(head: bytes) -> bool:
    """True if ``head`` looks like an Oxford ``.cpr`` project header."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text.startswith(b"[General]") or (text.startswith(b"[") and b"[Fields]" in head and b"[Job]" in head)


def parse_cpr(text: str) -> dict[str, dict[str, str]]:
    """Sections of a ``.cpr`` header: ``{section (lower case): {key (lower case): value}}``.

    Example
    -------
    >>> parse_cpr("[Job]\\nxCells=3\\n")["job"]["xcells"]
    '3'
    """
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = sections.setdefault("", {})
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip().lower(), {})
        elif "=" in line:
            key, value = line.split("=", 1)
            current[key.strip().lower()] = value.strip()
    return sections


def _partner(path: Path, suffix: str) -> Path:
    for candidate in (path.with_suffix(suffix), path.with_suffix(suffix.upper())):
        if candidate.exists():
            return candidate
    raise FormatError(f"{path.name}: its {suffix} partner {path.with_suffix(suffix).name} is missing")


def _number(cpr: dict[str, dict[str, str]], section: str, key: str, source: str, *, required: bool = True) -> float | None:
    value = cpr.get(section, {}).get(key)
    if value is None or value == "":
        if required:
            raise FormatError(f"{source}: [{section}] {key} is missing")
        return None
    try:
        return float(value.replace(",", "."))
    except ValueError:
        raise FormatError(f"{source}: [{section}] {key} should be a number; got {value!r}") from None


def _phases(cpr: dict[str, dict[str, str]], source: str) -> list[dict[str, Any]]:
    count = int(_number(cpr, "phases", "count", source) or 0)
    if not 0 <= count <= 255:
        raise FormatError(f"{source}: [Phases] Count {count}, expected 0-255 (one byte per phase id)")
    phases = []
    for pid in range(1, count + 1):
        section = f"phase{pid}"
        if section not in cpr:
            raise FormatError(f"{source}: [Phases] Count is {count} but [Phase{pid}] is missing")
        laue = int(_number(cpr, section, "lauegroup", source) or 0)
        if laue not in CTF_LAUE:
            raise FormatError(f"{source}: [Phase{pid}] LaueGroup {laue}, expected 1-11")
        lattice = [_number(cpr, section, k, source, required=False) or 0.0
                   for k in ("a", "b", "c", "alpha", "beta", "gamma")]
        phase: dict[str, Any] = {"id": pid, "name": cpr[section].get("structurename") or f"phase{pid}",
                                 "symmetry": CTF_LAUE[laue], "lattice": lattice}
        space_group = int(_number(cpr, section, "spacegroup", source, required=False) or 0)
        if 1 <= space_group <= 230:
            phase["space_group"] = space_group
        phases.append(phase)
    return phases


def _record_dtype(cpr: dict[str, dict[str, str]], source: str) -> np.dtype:
    count = int(_number(cpr, "fields", "count", source) or 0)
    if not 0 < count <= 256:
        raise FormatError(f"{source}: [Fields] Count {count}, expected 1-256")
    edx = cpr.get("edx windows", {})
    fields: list[tuple[str, str]] = [("phase", "u1")]
    for k in range(1, count + 1):
        code = int(_number(cpr, "fields", f"field{k}", source) or 0)
        if code in CRC_FIELDS:
            name, dtype = CRC_FIELDS[code]
        elif code > 12:
            # EDX window counts (and fields newer than this list) are float32.
            window = edx.get(f"window{code - 100}", "") if code > 100 else ""
            name, dtype = (f"edx_{window}" if window else f"field{code}"), "<f4"
        else:
            raise FormatError(f"{source}: [Fields] Field{k} = {code}, expected an Oxford field code >= 1")
        if name in dict(fields):
            raise FormatError(f"{source}: [Fields] field code {code} is listed twice")
        fields.append((name, dtype))
    return np.dtype(fields)  # packed: numpy structured dtypes have no padding unless aligned


def read_cpr(path: str | Path) -> xr.Dataset:
    """Read an Oxford ``.cpr``/``.crc`` EBSD project (either file may be given).

    Parameters
    ----------
    path : str or Path
        The ``.cpr`` or the ``.crc``; the other is found next to it.

    Returns
    -------
    xr.Dataset
        The EBSD layout: ``iq`` = band contrast, ``fit`` = MAD (deg), plus ``bs``, ``bands``,
        ``error`` and any further fields (EDX windows as ``edx_<name>``).

    Raises
    ------
    FormatError
        A missing partner file, header field or phase, or a record layout that does not
        fit the ``.crc``.

    Example
    -------
    >>> ebsd = read_cpr("testDataEBSD.cpr")  # doctest: +SKIP
    """
    path = Path(path)
    if path.suffix.lower() == ".crc":
        cpr_path, crc_path = _partner(path, ".cpr"), path
    else:
        cpr_path, crc_path = path, _partner(path, ".crc")
    source = cpr_path.name
    cpr = parse_cpr(cpr_path.read_bytes()[: 1 << 22].decode("latin-1"))
    if "job" not in cpr or "fields" not in cpr:
        raise FormatError(f"{source}: no [Job] or [Fields] section: not an Oxford .cpr header")
    phases = _phases(cpr, source)
    dtype = _record_dtype(cpr, source)
    names = dtype.names or ()
    for need in ("phi1", "Phi", "phi2"):
        if need not in names:
            raise FormatError(f"{source}: [Fields] lacks the Euler angle field {need!r} (codes 3-5)")
    nx = _number(cpr, "job", "xcells", source, required=False)
    ny = _number(cpr, "job", "ycells", source, required=False)
    sx = _number(cpr, "job", "griddistx", source, required=False)
    sy = _number(cpr, "job", "griddisty", source, required=False) or sx
    explicit = "x" in names and "y" in names
    if nx and ny:
        n_header = int(nx) * int(ny)
    else:
        n_header = int(_number(cpr, "job", "noofpoints", source, required=not explicit) or 0)
    size = crc_path.stat().st_size
    n_points = size // dtype.itemsize
    if n_header and n_points != n_header:
        if n_points > n_header and size % dtype.itemsize:
            raise FormatError(
                f"{crc_path.name}: {size} bytes do not hold whole {dtype.itemsize}-byte records of the "
                f"[Fields] in {source}"
            )
        warn_reader(
            f"{crc_path.name}: {source} announces {n_header} points but the file holds {n_points} "
            f"{dtype.itemsize}-byte records ({size} bytes); the map is trimmed to the data present"
        )
    if n_points == 0:
        raise FormatError(f"{crc_path.name}: no complete {dtype.itemsize}-byte point record")
    records = np.fromfile(crc_path, dtype=dtype, count=n_points)
    if explicit:
        x, y = records["x"].astype(np.float64), records["y"].astype(np.float64)
    else:
        if not (nx and ny and sx and nx > 0 and ny > 0 and sx > 0):
            raise FormatError(f"{source}: [Job] xCells, yCells and GridDistX are needed to place the points")
        x, y = raster_coordinates(n_points, (int(ny), int(nx)), (sx, sy or sx), source=source)
    euler = np.column_stack([records["phi1"], records["Phi"], records["phi2"]]).astype(np.float64)
    phase = records["phase"].astype(np.int64)
    if phase.max() > len(phases):
        row = int(np.argmax(phase > len(phases)))
        raise FormatError(f"{crc_path.name}: point {row} has phase {phase[row]} but {source} lists {len(phases)} phases")
    phase[phase == 0] = -1
    variables = {k: records[k] for k in names if k not in ("phase", "x", "y", "phi1", "Phi", "phi2")}
    header: dict[str, Any] = {
        "format": "cpr", "n_points": int(n_points), "fields": [f"{k}:{dtype[k].str}" for k in names],
        **{f"{section}.{key}": value for section in ("general", "job", "acquisition surface")
           for key, value in cpr.get(section, {}).items()},
    }
    if oxford_hexagonal_frame(euler, phase, phases):
        header["crystal_x"] = OXFORD_FRAME_NOTE
    return points_dataset(
        euler, phase, x, y, source=source, phases=phases, header_step=(sx, sy),
        header_shape=(int(ny) if ny else None, int(nx) if nx else None) if n_points == n_header else (None, None),
        variables=variables, header=header,
    )


register_reader("cpr", kind="ebsd", extensions=(".cpr", ".crc"), sniff=sniff_cpr, read=read_cpr)
