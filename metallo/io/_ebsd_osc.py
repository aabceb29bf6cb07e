"""EDAX/TSL OIM ``.osc`` binary reader (square and hexagonal grids).

Layout (little-endian; reverse-engineered, it varies between OIM versions):

- bytes 0-31: eight uint32; word 4 = NCOLS_EVEN, word 5 = NROWS - 1, word 6 = number of points;
- a header block that starts at the marker ``B9 0B EF FF 01 00 00 00``: a float32, the number
  of phases (int32), then per phase a 256-byte name, the TSL symmetry code (int32), the
  lattice a, b, c (Å), alpha, beta, gamma (degrees) as float32 and the number of hkl families;
- the data block at the marker ``B9 0B EF FF 02 00 00 00``: in some versions a uint32 byte
  count, then XSTEP and YSTEP (float32), then one row of float32 per point: phi1 Phi phi2
  (rad), x y (µm), IQ, CI, phase, and usually SEM signal, fit and further columns.

The reader finds the data block by its marker, takes the column count from the block size
(or, when the block is followed by other data, from the second point lying one XSTEP from the
first), checks the point count against the file size and never reads past the end: a file
shorter than its header says is trimmed to the points it holds, with a warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from metallo.errors import FormatError
from metallo.io._ebsd_ang import ANG_SYMMETRY, tsl_phase_ids
from metallo.io._ebsd_grid import points_dataset, warn_reader
from metallo.io._plugins import register_reader

__all__ = ["read_osc", "sniff_osc"]

_HEADER_MARKER = bytes.fromhex("B90BEFFF01000000")
_DATA_MARKER = bytes.fromhex("B90BEFFF02000000")
_COLUMNS = ("phi1", "Phi", "phi2", "x", "y", "iq", "ci", "phase", "sem", "fit")
_PHASE_RECORD = 288  # name (256) + symmetry (4) + lattice (24) + number of hkl families (4)
_MAX_COLUMNS = 30


def sniff_osc(head: bytes) -> bool:
    """True if ``head`` (the first bytes of a file) looks like an OIM ``.osc`` file."""
    return len(head) >= 40 and (_HEADER_MARKER in head or _DATA_MARKER in head)


def _phase_at(block: bytes, offset: int) -> dict[str, Any] | None:
    """The phase record at ``offset`` of the header block, or None if it is not plausible."""
    if offset + _PHASE_RECORD > len(block):
        return None
    name = block[offset : offset + 256].split(b"\x00", 1)[0].decode("latin-1").strip()
    code = int(np.frombuffer(block, "<i4", count=1, offset=offset + 256)[0])
    lattice = np.frombuffer(block, "<f4", count=6, offset=offset + 260).astype(np.float64)
    plausible = (
        code in ANG_SYMMETRY
        and bool(name)
        and name.isprintable()
        and bool(np.all((lattice[:3] > 0.1) & (lattice[:3] < 1000.0)))
        and bool(np.all((lattice[3:] > 10.0) & (lattice[3:] < 170.0)))
    )
    if not plausible:
        return None
    return {"name": name, "symmetry": ANG_SYMMETRY[code], "lattice": [round(float(v), 6) for v in lattice]}


def _symmetry_offsets(block: bytes, start: int) -> np.ndarray:
    """Offsets ``o >= start`` of ``block`` whose int32 at ``o + 256`` is a TSL symmetry code."""
    hits = []
    for align in range(4):
        words = np.frombuffer(block, "<i4", count=(len(block) - align) // 4, offset=align)
        offsets = np.flatnonzero(np.isin(words, list(ANG_SYMMETRY))) * 4 + align - 256
        hits.append(offsets[offsets >= start])
    return np.sort(np.concatenate(hits))


def _phases(raw: bytes, data_start: int, source: str) -> list[dict[str, Any]]:
    start = raw.find(_HEADER_MARKER, 0, data_start)
    if start < 0:
        raise FormatError(f"{source}: no header block (marker B9 0B EF FF 01 00 00 00) before the data block")
    block = raw[start:data_start]
    if len(block) < 16 + _PHASE_RECORD:
        raise FormatError(f"{source}: header block of {len(block)} bytes is too short for a phase record")
    n_phases = int(np.frombuffer(block, "<i4", count=1, offset=12)[0])
    if not 1 <= n_phases <= 64:
        raise FormatError(f"{source}: header block: number of phases {n_phases}, expected 1-64")
    first = _phase_at(block, 16)
    if first is None:
        raise FormatError(f"{source}: header block: phase 1 record (name, TSL symmetry code, lattice) is not valid")
    phases = [{"id": 1, **first}]
    # Later phase records follow hkl-family tables of varying size: look for them at every
    # offset whose int32 at +256 is a TSL symmetry code (found with numpy, checked one by one).
    offset = 16 + _PHASE_RECORD
    for candidate in _symmetry_offsets(block, offset):
        if len(phases) == n_phases:
            break
        if candidate < offset:
            continue
        phase = _phase_at(block, int(candidate))
        if phase is not None:
            phases.append({"id": len(phases) + 1, **phase})
            offset = int(candidate) + _PHASE_RECORD
    if len(phases) != n_phases:
        raise FormatError(f"{source}: header block announces {n_phases} phases but holds {len(phases)} phase records")
    return phases


def _column_count(raw: bytes, start: int, n_points: int, x_step: float, source: str) -> int:
    """Columns per point: the block size if it fits exactly, else the first count whose second
    point lies one x step from the first on the same row."""
    available = (len(raw) - start) // 4
    exact = available // n_points if available % n_points == 0 else 0

    def plausible(c: int) -> bool:
        if 2 * c > available:
            return False
        rows = np.frombuffer(raw, "<f4", count=2 * c, offset=start).reshape(2, c).astype(np.float64)
        return bool(
            np.all(np.abs(rows[:, :3]) <= 4.0 * np.pi + 1e-3)
            and abs(rows[1, 3] - rows[0, 3] - x_step) <= 1e-3 * max(x_step, 1e-6)
            and rows[1, 4] == rows[0, 4]
        )

    if 8 <= exact <= _MAX_COLUMNS and (n_points < 2 or plausible(exact)):
        return exact
    for c in range(8, _MAX_COLUMNS + 1):
        if plausible(c):
            return c
    raise FormatError(
        f"{source}: data block: no column count 8-{_MAX_COLUMNS} gives {n_points} points whose "
        f"second point lies one XSTEP ({x_step:g} µm) from the first"
    )


def _header_shape(words: np.ndarray, n_points: int, grid: str) -> tuple[int | None, int | None]:
    """(rows, columns) from header words 4-5 when they agree with the point count, else None."""
    ncols_even, nrows = int(words[4]), int(words[5]) + 1
    if grid == "hexagonal":
        ncols_odd = ncols_even + 1
        expected = (nrows + 1) // 2 * ncols_odd + nrows // 2 * ncols_even
        return (nrows, ncols_odd) if expected == n_points else (None, None)
    for rows in (nrows, nrows - 1):
        if rows > 0 and rows * ncols_even == n_points:
            return rows, ncols_even
    return None, None


def read_osc(path: str | Path) -> xr.Dataset:
    """Read an EDAX/TSL OIM ``.osc`` binary EBSD map.

    Parameters
    ----------
    path : str or Path
        The ``.osc`` file.

    Returns
    -------
    xr.Dataset
        The EBSD layout of :func:`metallo.ebsd.ebsd_dataset` with ``iq``, ``ci`` and, where the
        file has them, ``sem``, ``fit`` and further columns (``col10``, ...). Unindexed points
        (CI < 0 or the 4*pi Euler marker) have phase -1.

    Raises
    ------
    FormatError
        No data block marker, an implausible point count, column layout or phase table.

    Example
    -------
    >>> ebsd = read_osc("map.osc")  # doctest: +SKIP
    """
    path = Path(path)
    source = path.name
    raw = path.read_bytes()
    if len(raw) < 32:
        raise FormatError(f"{source}: {len(raw)} bytes, too short for the 32-byte .osc header")
    words = np.frombuffer(raw, "<u4", count=8)
    n_header = int(words[6])
    marker = raw.find(_DATA_MARKER)
    if marker < 0:
        raise FormatError(f"{source}: no data block (marker B9 0B EF FF 02 00 00 00) found")
    phases = _phases(raw, marker, source)
    start = marker + len(_DATA_MARKER)
    if start + 12 > len(raw):
        raise FormatError(f"{source}: file ends inside the data block header (byte {start})")
    if n_header <= 0:
        raise FormatError(f"{source}: header word 6: point count {n_header}, expected a positive number")
    count = int(np.frombuffer(raw, "<u4", count=1, offset=start)[0])
    values = count // 4 - 2
    if count % 4 == 0 and values > 0 and values % n_header == 0 and 8 <= values // n_header <= _MAX_COLUMNS:
        start += 4  # this OIM version stores the byte count of the block first
    x_step, y_step = (float(v) for v in np.frombuffer(raw, "<f4", count=2, offset=start))
    if x_step == 0.0:
        start += 4
        x_step, y_step = (float(v) for v in np.frombuffer(raw, "<f4", count=2, offset=start))
    start += 8
    # float32 steps: 0.2 is stored as 0.200000003; keep the 7 digits float32 holds.
    x_step, y_step = float(f"{x_step:.7g}"), float(f"{y_step:.7g}")
    if not (np.isfinite(x_step) and np.isfinite(y_step) and x_step > 0 and y_step > 0):
        raise FormatError(f"{source}: data block: XSTEP {x_step:g} / YSTEP {y_step:g} must be positive numbers")
    n_cols = _column_count(raw, start, n_header, x_step, source)
    n_points = min(n_header, (len(raw) - start) // (4 * n_cols))
    if n_points < n_header:
        warn_reader(
            f"{source}: header says {n_header} points but the file holds {n_points} "
            f"({len(raw)} bytes); the map is trimmed to the points present"
        )
    if n_points == 0:
        raise FormatError(f"{source}: the data block holds no complete point")
    data = np.frombuffer(raw, "<f4", count=n_points * n_cols, offset=start).reshape(n_points, n_cols)
    hexagonal = abs(y_step - x_step * np.sqrt(3.0) / 2.0) <= 1e-3 * x_step
    grid = "hexagonal" if hexagonal else "square"
    euler = data[:, :3].astype(np.float64)
    ci = data[:, 6].astype(np.float64)
    phase = tsl_phase_ids(data[:, 7], ci, euler, phases, where=lambda row: f"{source}: point {row}")
    variables = {(_COLUMNS[c] if c < len(_COLUMNS) else f"col{c}"): data[:, c] for c in (5, 6, *range(8, n_cols))}
    header = {
        "format": "osc", "columns": n_cols, "n_points": n_points, "XSTEP": x_step, "YSTEP": y_step,
        "header_words": [int(w) for w in words], "GRID": "HexGrid" if hexagonal else "SqrGrid",
    }
    return points_dataset(
        euler, phase, data[:, 3].astype(np.float64), data[:, 4].astype(np.float64),
        source=source, phases=phases, grid=grid, header_step=(x_step, y_step),
        header_shape=_header_shape(words, n_header, grid) if n_points == n_header else (None, None),
        variables=variables, header=header,
    )


register_reader("osc", kind="ebsd", extensions=(".osc",), sniff=sniff_osc, read=read_osc)
