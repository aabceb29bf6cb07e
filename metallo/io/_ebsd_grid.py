"""Shared parsing helpers of the EBSD text readers: numeric tables and grid placement.

Both .ang and .ctf store one row per measured point with its x/y position. Files lie about
their size, omit points (sparse maps) and store rows out of raster order, so points are
placed on the grid by their coordinates, never by their row number.
"""

from __future__ import annotations

import io
import sys
import warnings
from dataclasses import dataclass
from types import FrameType

import numpy as np
import pandas as pd

from metallo.errors import ConfigError, FormatError

__all__ = [
    "GridPlacement",
    "check_duplicates",
    "header_count",
    "mark_invalid_points",
    "parse_table",
    "place_on_grid",
    "points_dataset",
    "raster_coordinates",
    "warn_reader",
]

#: A grid (from the header or the coordinates) is allocated only if the file holds at least
#: this fraction of its points, or it is small: a corrupt NROWS/YCells or coordinate must not
#: allocate the grid it claims. Real sparse maps hold a third of their grid or more.
_MIN_FILL = 1 / 64
_SMALL_GRID = 1 << 16
#: Points off the grid (corrupt coordinates) are dropped with a warning if at most this
#: fraction of the points; more is a FormatError.
_MAX_OFF_GRID = 0.01
_EULER_MAX = np.array([2 * np.pi, np.pi, 2 * np.pi])


def warn_reader(message: str) -> None:
    """Warn with the caller of the reader (the first frame outside ``metallo.io``) as the place.

    Readers nest to different depths (``read_ebsd`` -> a format reader -> the grid helpers),
    so a fixed ``stacklevel`` would point into metallo for some formats.
    """
    frame: FrameType | None = sys._getframe(1)
    level = 2
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("metallo.io"):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


def header_float(text: str, source: str, line_no: int, key: str, *, first_token: bool = False) -> float:
    """A header value as a number (a decimal comma is read as a point); ``FormatError`` names the line.

    ``first_token`` reads only the first whitespace-separated token (``.ang`` headers carry
    comments after the value).
    """
    try:
        return float((text.split()[0] if first_token else text.strip()).replace(",", "."))
    except (ValueError, IndexError) as exc:
        raise FormatError(f"{source}: line {line_no}: {key} is not a number: {text!r}") from exc


def header_int(text: str, source: str, line_no: int, key: str, *, first_token: bool = False,
               minimum: int = -(2**31) + 1, maximum: int = 2**31 - 1) -> int:
    """A header value that must be a whole number in ``[minimum, maximum]``; ``FormatError`` otherwise."""
    value = header_float(text, source, line_no, key, first_token=first_token)
    if not (np.isfinite(value) and value.is_integer() and minimum <= value <= maximum):
        raise FormatError(f"{source}: line {line_no}: {key} must be a whole number {minimum}-{maximum}; "
                          f"got {text.strip()[:40]!r}")
    return int(value)


def _first_bad_line(lines: list[str], first_line_no: int, n_expected: int, sep: str | None) -> tuple[int, int]:
    """Line number and token count of the first data line whose column count is wrong."""
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        n = len(line.split(sep) if sep else line.split())
        if n != n_expected:
            return first_line_no + k, n
    return -1, n_expected


def parse_table(
    text: str,
    *,
    first_line_no: int,
    source: str,
    sep: str | None = None,
    decimal_comma: bool = False,
    n_columns: int | None = None,
) -> np.ndarray:
    """Parse whitespace- or ``sep``-separated numbers into a float64 ``(n_rows, n_cols)`` array.

    Raises :class:`FormatError` naming the (1-based) file line of the first row with the
    wrong number of columns, a non-numeric token or a NaN.
    """
    stripped = text.lstrip("\n")
    first_line_no += len(text) - len(stripped)
    text = stripped.rstrip()
    if not text:
        raise FormatError(f"{source}: no data rows after the header (line {first_line_no})")
    if decimal_comma:
        text = text.replace(",", ".")
    end = text.find("\n")
    first = text if end < 0 else text[:end]
    n_expected = n_columns or len(first.split(sep) if sep else first.split())
    try:
        frame = pd.read_csv(
            # Bytes parse faster than a StringIO, which pandas re-encodes chunk by chunk.
            io.BytesIO(text.encode("latin-1", errors="replace")),
            sep=r"\s+" if sep is None else sep,
            header=None,
            names=range(n_expected),
            dtype=np.float64,
            skip_blank_lines=True,
            engine="c",
            encoding="latin-1",
        )
    except (pd.errors.ParserError, ValueError) as exc:
        line_no, n = _first_bad_line(text.split("\n"), first_line_no, n_expected, sep)
        if line_no > 0:
            raise FormatError(
                f"{source}: line {line_no} has {n} columns, expected {n_expected}"
            ) from exc
        reason = " ".join(str(exc).split())
        reason = reason if len(reason) <= 120 else reason[:117] + "..."
        raise FormatError(f"{source}: non-numeric data after line {first_line_no}: {reason}") from None
    values = frame.to_numpy()
    bad = np.isnan(values).any(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        lines = text.split("\n")
        non_blank = [k for k, line in enumerate(lines) if line.strip()]
        line_no = first_line_no + non_blank[row]
        raw = lines[non_blank[row]]
        n = len(raw.split(sep) if sep else raw.split())
        what = f"has {n} columns, expected {n_expected}" if n != n_expected else "contains NaN"
        raise FormatError(f"{source}: line {line_no} {what}")
    return values


@dataclass
class GridPlacement:
    """Where each point of a table goes on the output grid."""

    shape: tuple[int, int]
    rows: np.ndarray
    cols: np.ndarray
    step_x: float
    step_y: float
    origin: tuple[float, float]
    grid: str
    note: str = ""


def min_spacing(values: np.ndarray) -> float:
    """The smallest positive spacing between coordinate values (to 6 significant digits), NaN if none."""
    # Sorting beats np.unique's hashing of a million floats; repeated values give zero steps.
    u = np.sort(np.round(values, 6))
    if u.size < 2:
        return float("nan")
    d = np.diff(u)
    d = d[d > 1e-6 * max(1.0, float(np.abs(u).max()))]
    return float(f"{d.min():.6g}") if d.size else float("nan")


def _close(a: float, b: float, rtol: float = 0.01) -> bool:
    return bool(np.isfinite(a) and np.isfinite(b) and abs(a - b) <= rtol * max(abs(a), abs(b)))


def data_lattice(x: np.ndarray, y: np.ndarray) -> str | None:
    """The lattice the point coordinates form: ``"square"``, ``"hexagonal"``, or None if they
    cannot tell (one row, too few points, irregular).

    Rows are the distinct y values. Within a row the points lie a column step apart; on a
    hexagonal grid alternate rows are offset by half that step, on a square grid they are
    not. A header can claim the wrong one (EbsdLib's ``HexHeader.ang`` test file: ``HexGrid``
    over a square grid), and reading by the header then scatters the points into a grid half
    empty, so the readers trust the coordinates (with a warning).

    Examples
    --------
    >>> yy, xx = np.mgrid[0:4, 0:5].astype(float)
    >>> data_lattice(xx.ravel(), yy.ravel())
    'square'
    >>> data_lattice((xx + 0.5 * (yy % 2)).ravel(), (yy * np.sqrt(3) / 2).ravel())
    'hexagonal'
    """
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    if x.size < 6:
        return None
    far = _far_out(x, y)
    x, y = x[~far], y[~far]
    sy = min_spacing(y)
    if not np.isfinite(sy):
        return None
    rows = np.round((y - y.min()) / sy).astype(np.int64)
    if rows.max() < 1:
        return None
    head = rows < 64  # the first rows tell as well as all of them, at a fraction of the cost
    x, rows = x[head], rows[head]
    order = np.lexsort((x, rows))
    xs, rs = x[order], rows[order]
    same_row = rs[1:] == rs[:-1]
    dx = np.diff(xs)[same_row]
    dx = dx[dx > 1e-6 * max(1.0, float(np.abs(xs).max()))]
    if dx.size < 2:
        return None
    step = float(np.median(dx[dx < 1.5 * dx.min()]))  # the column step within a row
    phase = np.exp(2j * np.pi * (x - x.min()) / step)
    odd = rows % 2 == 1
    if not odd.any() or odd.all():
        return None
    even_mean, odd_mean = phase[~odd].mean(), phase[odd].mean()
    if min(abs(even_mean), abs(odd_mean)) < 0.8:  # the points do not keep to a column step
        return None
    offset = abs(np.angle(odd_mean / even_mean)) / (2 * np.pi)  # 0 (square) .. 0.5 (hexagonal)
    if offset < 0.1:
        return "square"
    if offset > 0.4:
        return "hexagonal"
    return None


def place_on_grid(
    x: np.ndarray,
    y: np.ndarray,
    *,
    source: str,
    grid: str = "square",
    header_step: tuple[float | None, float | None] = (None, None),
    header_shape: tuple[int | None, int | None] = (None, None),
    scattered: bool = False,
    max_cells: int | None = None,
) -> GridPlacement:
    """Infer the measurement grid from point coordinates and place every point on it.

    The step comes from the coordinates when they disagree with the header (a warning names
    both). ``scattered=True`` (non-grid "Interactive" jobs) snaps the points onto a square grid
    whose step is the smallest point spacing over sqrt(2), so that no two points share a cell,
    coarsened if that grid would exceed ``max_cells`` (default 400 cells per point, at most
    one million; points that then share a cell are reported by :func:`check_duplicates`).
    """
    # Binary headers hold float32 steps (0.2 -> 0.200000003): keep the 7 digits float32 has.
    hx, hy = (float(f"{h:.7g}") if h is not None and np.isfinite(h) and h > 0 else None for h in header_step)
    hrows, hcols = header_shape
    if hrows and hcols and hrows * hcols > max(len(x) / _MIN_FILL, _SMALL_GRID):
        warn_reader(
            f"{source}: header says {hrows} rows x {hcols} columns but the file holds only "
            f"{len(x)} points; using the coordinates"
        )
        hrows = hcols = None
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise FormatError(f"{source}: point coordinates contain infinite values")
    x0, y0 = float(x.min()), float(y.min())
    if scattered:
        from scipy.spatial import cKDTree

        pts = np.column_stack([x, y])
        if len(pts) > 1:
            dist, _ = cKDTree(pts).query(pts, k=2)
            nearest = float(dist[:, 1][dist[:, 1] > 0].min())
        else:
            nearest = 1.0
        span = max(float(x.max()) - x0, float(y.max()) - y0, nearest)
        cells = max_cells or min(1_000_000, 400 * len(pts))
        step = max(nearest / np.sqrt(2.0), span / np.sqrt(cells))
        step = float(f"{step:.3g}")
        rows = np.round((y - y0) / step).astype(np.int64)
        cols = np.round((x - x0) / step).astype(np.int64)
        return GridPlacement(
            (int(rows.max()) + 1, int(cols.max()) + 1), rows, cols, step, step, (y0, x0), "square",
            note=f"{len(x)} scattered points snapped to a {step:g} µm square grid",
        )
    lattice = data_lattice(x, y)
    if lattice is not None and lattice != grid:
        how = "offset" if lattice == "hexagonal" else "not offset"
        warn_reader(
            f"{source}: the header says a {grid} grid but the point coordinates form a {lattice} grid "
            f"(alternate rows {how} by half a column step); using the {lattice} grid of the data"
        )
        grid = lattice
    if grid == "hexagonal":
        step_y = min_spacing(y)
        # Alternate rows are offset by half a step, so x spacing is step/2 across rows.
        step_x = hx if hx else 2.0 * min_spacing(x)
        if not np.isfinite(step_x):
            step_x = 1.0
        ideal = step_x * np.sqrt(3.0) / 2.0
        if not np.isfinite(step_y):
            step_y = ideal
        rows = np.round((y - y0) / step_y).astype(np.int64)
        if rows.max() > 0:
            # The span over many rows is more precise than one rounded row spacing.
            step_y = (float(y.max()) - y0) / float(rows.max())
        if _close(step_y, ideal, rtol=1e-3):
            step_y = ideal  # a regular hexagonal grid, whatever rounding the file applied
        if hy and not _close(hy, step_y):
            warn_reader(
                f"{source}: header YSTEP {hy:g} disagrees with the row spacing {step_y:g} µm of the data; using the data"
            )
        shift = np.where(rows % 2 == 1, 0.5 * step_x, 0.0)
        x0 = float((x - shift).min())
        cols = np.round((x - x0 - shift) / step_x).astype(np.int64)
        shape = (int(rows.max()) + 1, int(cols.max()) + 1)
        _check_span(shape, len(x), source)
        _warn_shape(source, header_shape, shape)
        return GridPlacement(shape, rows, cols, float(step_x), float(step_y), (y0, x0), "hexagonal")
    far = _far_out(x, y)
    sx, sy = min_spacing(x[~far]), min_spacing(y[~far])
    if not np.isfinite(sx):
        sx = hx or sy
    if not np.isfinite(sy):
        sy = hy or sx
    if not (sx and np.isfinite(sx)):
        sx = sy = 1.0
    steps_ok = True
    for label, h, d in (("XSTEP", hx, sx), ("YSTEP", hy, sy)):
        if h and not _close(h, d):
            steps_ok = False
            warn_reader(
                f"{source}: header {label} {h:g} µm disagrees with the point coordinates ({d:g} µm); using the coordinates"
            )
    if steps_ok:
        sx, sy = float(hx or sx), float(hy or sy)
    off = _off_grid(x, y, sx, sy)
    if off.any():
        if off.mean() > _MAX_OFF_GRID:
            raise FormatError(f"{source}: point coordinates do not lie on a {sx:g} x {sy:g} µm grid")
        first = int(np.argmax(off))
        warn_reader(
            f"{source}: {int(off.sum())} points have coordinates off the {sx:g} x {sy:g} µm grid "
            f"(first: data row {first + 1}, x={x[first]:g}, y={y[first]:g}); they are dropped and "
            "their cells marked not indexed"
        )
    keep = ~off
    x0, y0 = float(x[keep].min()), float(y[keep].min())
    rows = np.round((y - y0) / sy).astype(np.int64)
    cols = np.round((x - x0) / sx).astype(np.int64)
    rows[off], cols[off] = -1, -1
    shape = (int(rows.max()) + 1, int(cols.max()) + 1)
    _check_span(shape, len(x), source)
    if hrows and hcols and hrows * hcols == len(x):
        ok = rows >= 0
        shared = int(ok.sum()) - np.unique(rows[ok] * shape[1] + cols[ok]).size
        if shared:
            # Coordinates that stack points (kikuchipy's EDAX test file copies X Position into
            # Y Position) cannot be right, while a header grid with one cell per point is.
            warn_reader(
                f"{source}: the point coordinates put {shared} points in cells that other points hold, "
                f"but the header's {hrows} x {hcols} grid has one cell per point: placing the points in "
                "the file's order (raster, x fastest) instead"
            )
            index = np.arange(len(x), dtype=np.int64)
            return GridPlacement((hrows, hcols), index // hcols, index % hcols, float(hx or sx),
                                 float(hy or sy), (0.0, 0.0), "square")
    _warn_shape(source, (hrows, hcols), shape)
    return GridPlacement(shape, rows, cols, float(sx), float(sy), (y0, x0), "square")


def _check_span(shape: tuple[int, int], n_points: int, source: str) -> None:
    """Refuse a grid far larger than the points (a corrupt coordinate or step), before allocating it."""
    cells = shape[0] * shape[1]
    if cells > max(n_points / _MIN_FILL, _SMALL_GRID):
        raise FormatError(
            f"{source}: the point coordinates span {shape[0]} x {shape[1]} grid cells for only "
            f"{n_points} points; expected a grid the points fill (corrupt coordinates or steps?)"
        )


def _far_out(x: np.ndarray, y: np.ndarray, steps: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Points far outside the map: beyond the 0.1-99.9 % quantile range of the coordinates by
    more than 5 % of that range plus two steps (robust to a few corrupt coordinates)."""
    far = np.zeros(x.shape, dtype=bool)
    if x.size < 20:  # too few points for quantiles to tell
        return far
    for values, step in ((x, steps[0]), (y, steps[1])):
        lo, hi = np.quantile(values, [0.001, 0.999])
        margin = 0.05 * (hi - lo) + 2 * step + 1e-9 * max(1.0, abs(hi))
        far |= (values < lo - margin) | (values > hi + margin)
    return far


def _off_grid(x: np.ndarray, y: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Points whose coordinates are corrupt: far outside the map, or between grid nodes."""
    off = _far_out(x, y, (sx, sy))
    if (~off).any():
        x0, y0 = x[~off].min(), y[~off].min()
        for values, start, step in ((x, x0, sx), (y, y0, sy)):
            ratio = (values - start) / step
            off |= np.abs(ratio - np.round(ratio)) > 0.25
    return off


def _warn_shape(source: str, header_shape: tuple[int | None, int | None], shape: tuple[int, int]) -> None:
    """Warn once when the header's grid differs from the one the data span.

    The map is never padded to the header's size: a truncated file (the header promises more
    rows than the data hold) is trimmed to the data present, so that empty cells are not
    mistaken for unindexed points.
    """
    hrows, hcols = header_shape
    if hrows and hcols and (hrows, hcols) != shape:
        what = "is truncated or its header lies" if hrows * hcols > shape[0] * shape[1] else "lies"
        warn_reader(
            f"{source}: header says {hrows} rows x {hcols} columns but the data span {shape[0]} x "
            f"{shape[1]}; the file {what}: using the {shape[0]} x {shape[1]} grid of the data"
        )


def scatter_to_grid(placement: GridPlacement, values: np.ndarray, fill: float | np.generic) -> np.ndarray:
    """Put per-point ``values`` (n, ...) onto the grid, ``fill`` where no point landed.

    Points dropped by :func:`place_on_grid` (row -1) are left out.
    """
    out = np.full(placement.shape + values.shape[1:], fill, dtype=values.dtype)
    ok = placement.rows >= 0
    out[placement.rows[ok], placement.cols[ok]] = values[ok]
    return out


def check_duplicates(placement: GridPlacement, source: str) -> None:
    """Warn when two points land in the same cell (the later one wins) or cells stay empty.

    Empty cells (a truncated file, deleted rows) are marked not indexed by the readers; the
    padding cell at the end of the short rows of a hexagonal grid and scattered
    ("Interactive") maps are expected to leave cells empty and are not reported.
    """
    ok = placement.rows >= 0
    flat = placement.rows[ok] * placement.shape[1] + placement.cols[ok]
    counts = np.bincount(flat, minlength=placement.shape[0] * placement.shape[1])
    n_unique = int(np.count_nonzero(counts))
    if n_unique < flat.size:
        warn_reader(
            f"{source}: {flat.size - n_unique} points share a grid cell with another point; the later row wins"
        )
    if placement.note:  # scattered points snapped to a grid
        return
    empty = (counts == 0).reshape(placement.shape)
    if placement.grid == "hexagonal":
        empty[1::2, -1] = False
    n_empty = int(empty.sum())
    if n_empty:
        row, col = np.unravel_index(int(np.argmax(empty)), empty.shape)
        warn_reader(
            f"{source}: {n_empty} of {empty.size} grid points are missing from the file (truncated "
            f"or sparse map; first at row {row}, column {col}); they are marked not indexed"
        )


def header_count(value: float | None, source: str, key: str) -> int | None:
    """A positive row/column count from a header value; None (with a warning) if it is not one."""
    if value is None or value == 0:
        return None
    if not (np.isfinite(value) and 0 < value < 2**31 and float(value).is_integer()):
        warn_reader(
            f"{source}: header {key} {value!r} is not a positive whole number; using the coordinates"
        )
        return None
    return int(value)


def mark_invalid_points(
    euler: np.ndarray, phase: np.ndarray, columns: dict[str, np.ndarray], *, source: str,
    first_line_no: int,
) -> None:
    """Mark indexed points with impossible values not indexed (``phase`` -1), with one warning.

    Impossible: Euler angles (radians) non-finite or outside phi1, phi2 in [0, 2pi], Phi in
    [0, pi] (+-1e-3), or a non-finite value in any of ``columns`` (e.g. CI, IQ). ``phase`` is
    changed in place; ``first_line_no`` is the file line of the first data row.
    """
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(euler) & (euler >= -1e-3) & (euler <= _EULER_MAX + 1e-3)).all(axis=1)
        for values in columns.values():  # stored as float32: 1e308 would become inf
            bad |= ~(np.abs(values) <= np.finfo(np.float32).max)
    bad &= phase >= 0
    if bad.any():
        first = int(np.argmax(bad))
        names = ", ".join(["Euler angles", *columns])
        warn_reader(
            f"{source}: {int(bad.sum())} points have non-finite or out-of-range values ({names}; "
            f"first at line {first_line_no + first}); they are marked not indexed"
        )
        phase[bad] = -1


def raster_coordinates(
    n_points: int, shape: tuple[int, int], step: tuple[float, float], *, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """x, y (µm) of ``n_points`` stored in raster order (x fastest) on a square grid.

    Formats without per-point coordinates (.crc, some HDF5 layouts) store points row by row.
    A file with fewer points than its header's grid is trimmed to the rows it reaches, never
    padded to the header (:func:`place_on_grid` warns with both sizes); one with more points
    than the grid (a lying header) keeps its extra rows.
    """
    ny, nx = shape
    if nx <= 0 or ny <= 0:
        raise FormatError(f"{source}: header grid {ny} x {nx} must have positive sizes")
    index = np.arange(n_points, dtype=np.int64)
    rows, cols = np.divmod(index, nx)
    return cols * float(step[0]), rows * float(step[1])


def given_laue(symmetry: object, source: str, what: str) -> str:
    """A Laue group the caller gave for a file that states none, checked (ConfigError naming ``what``)."""
    from metallo._ebsd_dataset import LAUE_GROUPS

    if symmetry not in LAUE_GROUPS:
        raise ConfigError(f"{source}: symmetry {symmetry!r} for {what} is not a Laue group; "
                          f"expected one of {', '.join(LAUE_GROUPS)}")
    return str(symmetry)


#: Laue groups of hexagonal and trigonal phases, whose Cartesian crystal frame differs between
#: vendors: Oxford (Channel 5 and AZtec: ``.ctf``, ``.cpr``/``.crc``, ``.h5oina``) puts x along
#: a* ([10-10]); TSL/EDAX, EMsoft, orix and metallo put it along a ([2-1-10]), 30 deg about c
#: from a* (MTEX reads Oxford files with X||a* and .ang files with X||a; DREAM.3D's ReadCtfData
#: offers the same 30 deg phi2 correction).
HEXAGONAL_LAUE = ("6/mmm", "6/m", "-3m", "-3")
#: ``header["crystal_x"]`` of a map whose orientations :func:`oxford_hexagonal_frame` moved.
OXFORD_FRAME_NOTE = "a* in the file (Oxford); hexagonal and trigonal phi2 - 30 deg on reading (x || a)"


def oxford_hexagonal_frame(euler: np.ndarray, phase: np.ndarray, phases: list[dict], *, to_file: bool = False) -> int:
    """Move hexagonal and trigonal orientations between Oxford's crystal frame and metallo's, in place.

    Oxford's x axis is a*, metallo's is a, which lies 30 deg from a* about c: the same
    orientation has phi2 30 deg smaller in metallo's frame. Reading subtracts 30 deg, writing
    (``to_file=True``) adds it back, so a file read and written again is unchanged. In 6/mmm
    the two frames share their symmetry (misorientation angles do not change), but IPF colours
    ([2-1-10] against [10-10]) and every -3m misorientation do.

    Parameters
    ----------
    euler : ndarray, (n, 3)
        Bunge Euler angles in radians (changed in place).
    phase : ndarray, (n,)
        Phase id of each point (ids of ``phases``; others are left alone).
    phases : list of dict
        The phase table (``id``, ``symmetry``).
    to_file : bool
        False: Oxford -> metallo (reading); True: metallo -> Oxford (writing).

    Returns
    -------
    int
        How many points were changed.

    Examples
    --------
    >>> e = np.radians([[10.0, 20.0, 40.0], [10.0, 20.0, 40.0]])
    >>> oxford_hexagonal_frame(e, np.array([1, 2]), [{"id": 1, "symmetry": "6/mmm"}, {"id": 2, "symmetry": "m-3m"}])
    1
    >>> np.degrees(e[:, 2]).round(6).tolist()
    [10.0, 40.0]
    """
    ids = [int(p["id"]) for p in phases if p.get("symmetry") in HEXAGONAL_LAUE]
    if not ids:
        return 0
    sel = np.isin(phase, ids) & np.isfinite(euler[:, 2])
    delta = np.pi / 6 if to_file else -np.pi / 6
    euler[sel, 2] = np.mod(euler[sel, 2] + delta, 2 * np.pi)
    return int(sel.sum())


def points_dataset(
    euler: np.ndarray,
    phase: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    source: str,
    phases: list[dict],
    grid: str = "square",
    header_step: tuple[float | None, float | None] = (None, None),
    header_shape: tuple[int | None, int | None] = (None, None),
    variables: dict[str, np.ndarray] | None = None,
    header: dict | None = None,
    attrs: dict | None = None,
):
    """Place per-point columns on their grid and build the EBSD ``xr.Dataset``.

    Parameters
    ----------
    euler : ndarray, (n, 3)
        Bunge Euler angles in radians; NaN where a point has no orientation.
    phase : ndarray, (n,)
        Phase ids of ``phases``; -1 = not indexed.
    x, y : ndarray, (n,)
        Point coordinates in µm.
    source : str
        File name, used in messages.
    phases : list of dict
        The phase table (id, name, symmetry, lattice, optional space_group).
    grid : {"square", "hexagonal"}
    header_step, header_shape
        What the header says: (x step, y step) and (rows, columns); the coordinates win and
        a disagreement is warned about.
    variables : dict, optional
        Further per-point columns (n,).
    header : dict, optional
        The file header, kept as JSON in ``attrs["header"]``.
    attrs : dict, optional
        Further attrs of the Dataset.

    Returns
    -------
    xr.Dataset
        See :func:`metallo.ebsd.ebsd_dataset`.
    """
    from metallo._ebsd_dataset import ebsd_dataset

    keep = np.isfinite(x) & np.isfinite(y)
    if not keep.any():
        raise FormatError(f"{source}: no point has finite x/y coordinates")
    if not keep.all():
        euler, phase, x, y = euler[keep], phase[keep], x[keep], y[keep]
        variables = {k: v[keep] for k, v in (variables or {}).items()}
    placement = place_on_grid(
        x, y, source=source, grid=grid, header_step=header_step, header_shape=header_shape
    )
    check_duplicates(placement, source)
    columns = {
        name: scatter_to_grid(placement, np.asarray(values).astype(np.float32), np.float32(np.nan))
        for name, values in (variables or {}).items()
    }
    ds = ebsd_dataset(
        scatter_to_grid(placement, np.asarray(euler, dtype=np.float64), np.nan),
        scatter_to_grid(placement, np.asarray(phase).astype(np.int16), np.int16(-1)),
        step_um=placement.step_x,
        step_y_um=placement.step_y,
        grid=placement.grid,
        phases=phases,
        origin_um=placement.origin,
        variables=columns,
        source=source,
        header=header,
    )
    ds.attrs.update(attrs or {})
    return ds
