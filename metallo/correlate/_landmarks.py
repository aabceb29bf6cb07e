"""Landmark (control point) files: BigWarp CSV, Fiji/ImageJ point text, plain CSV.

All readers return ``(y, x)`` arrays in the units of the file (pixels for Fiji point files;
BigWarp writes the images' calibrated units). Files write ``x y`` (column, row) as Fiji does.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from metallo.errors import FormatError

__all__ = ["read_landmarks", "read_points", "write_landmarks", "write_points"]


def read_points(path: str | Path) -> np.ndarray:
    """Read one image's points from a Fiji/ImageJ point text or a plain CSV file.

    Accepted: ``x y`` per line (whitespace, comma or tab separated; ``#`` comments and a
    header line allowed), or a CSV with ``x`` and ``y`` columns (ImageJ "Measure" tables with
    ``X``/``Y`` work too).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    ndarray, shape (n, 2)
        ``(y, x)`` = (row, column) positions.

    Examples
    --------
    >>> _ = Path("pts_bse.txt").write_text("# x y\\n86 80\\n120.5 33\\n")   # a Fiji point file
    >>> read_points("pts_bse.txt")[:1]
    array([[80., 86.]])
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: landmark file not found")
    rows = _rows(path)
    if not rows:
        raise FormatError(f"{path}: no points found; expected 'x y' per line")
    header = [c.strip().lower() for c in rows[0]]
    if "x" in header and "y" in header:
        ix, iy = header.index("x"), header.index("y")
        body = rows[1:]
    else:
        ix, iy = 0, 1
        body = rows
    try:
        pts = np.array([[float(r[iy]), float(r[ix])] for r in body if r], dtype=np.float64)
    except (ValueError, IndexError):
        raise FormatError(f"{path}: expected numeric 'x y' columns on every line") from None
    if pts.ndim != 2 or len(pts) == 0:
        raise FormatError(f"{path}: no points found; expected 'x y' per line")
    return pts


def read_landmarks(path: str | Path, fixed_path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read homologous point pairs.

    Parameters
    ----------
    path : str or Path
        A BigWarp ``landmarks.csv`` (no header: name, active, mx, my, [mz], fx, fy, [fz]; only
        active rows are used), a CSV with columns ``moving_x, moving_y, fixed_x, fixed_y``, or
        (with ``fixed_path``) the MOVING image's Fiji point file.
    fixed_path : str or Path, optional
        The FIXED image's point file when points come as two Fiji files; line i matches line i.

    Returns
    -------
    (moving_yx, fixed_yx) : tuple of ndarray, each (n, 2)

    Examples
    --------
    >>> _ = write_points(np.array([[10.0, 20.0], [30.0, 5.0]]), "ebsd_pts.txt")
    >>> _ = write_points(np.array([[12.0, 21.0], [33.0, 6.0]]), "bse_pts.txt")
    >>> moving, fixed = read_landmarks("ebsd_pts.txt", "bse_pts.txt")
    >>> fixed - moving
    array([[2., 1.],
           [3., 1.]])
    """
    path = Path(path)
    if fixed_path is not None:
        moving, fixed = read_points(path), read_points(fixed_path)
        if len(moving) != len(fixed):
            raise FormatError(f"{path} has {len(moving)} points but {fixed_path} has {len(fixed)}; they must pair line by line")
        return moving, fixed
    if not path.is_file():
        raise FormatError(f"{path}: landmark file not found")
    rows = _rows(path)
    if not rows:
        raise FormatError(f"{path}: empty landmark file")
    header = [c.strip().lower() for c in rows[0]]
    named = {"moving_x", "moving_y", "fixed_x", "fixed_y"}
    if named <= set(header):
        idx = {k: header.index(k) for k in named}
        try:
            arr = np.array([[float(r[idx[k]]) for k in ("moving_y", "moving_x", "fixed_y", "fixed_x")] for r in rows[1:] if r])
        except (ValueError, IndexError):
            raise FormatError(f"{path}: non-numeric value in the moving_x/moving_y/fixed_x/fixed_y columns") from None
        return arr[:, 0:2], arr[:, 2:4]
    return _bigwarp(path, rows)


def write_points(points_yx: np.ndarray, path: str | Path) -> Path:
    """Write ``(y, x)`` points as a Fiji-style ``x y`` text file (one point per line).

    Parameters
    ----------
    points_yx : ndarray, shape (n, 2)
    path : str or Path

    Returns
    -------
    Path

    Examples
    --------
    >>> write_points(np.array([[1.0, 2.0]]), "pts.txt").read_text()   # x y
    '2 1\\n'
    """
    from metallo._atomic import atomic_write_text

    path = Path(path)
    pts = np.asarray(points_yx, dtype=float)
    atomic_write_text(path, "".join(f"{x:.6g} {y:.6g}\n" for y, x in pts))
    return path


def write_landmarks(moving_yx: np.ndarray, fixed_yx: np.ndarray, path: str | Path, *, active: np.ndarray | None = None) -> Path:
    """Write point pairs as a BigWarp ``landmarks.csv`` (name, active, mx, my, fx, fy; no header).

    Parameters
    ----------
    moving_yx, fixed_yx : ndarray, shape (n, 2)
        Homologous points (y, x) in the units BigWarp should see (pixels, or calibrated units).
    path : str or Path
    active : ndarray of bool, optional
        Rows to mark active (default all); inactive rows are kept but ignored by BigWarp and
        :func:`read_landmarks`, e.g. automatic points that were rejected.

    Returns
    -------
    Path

    Examples
    --------
    >>> write_landmarks(np.zeros((1, 2)), np.ones((1, 2)), "landmarks.csv")  # doctest: +SKIP
    """
    from metallo._atomic import atomic_path

    m = np.asarray(moving_yx, dtype=float)
    f = np.asarray(fixed_yx, dtype=float)
    if m.shape != f.shape or m.ndim != 2 or m.shape[1] != 2:
        raise FormatError(f"{path}: moving {m.shape} and fixed {f.shape} points must both be (n, 2)")
    act = np.ones(len(m), bool) if active is None else np.asarray(active, bool)
    lines = [
        f'"Pt-{k}","{str(bool(a)).lower()}","{mp[1]:.6f}","{mp[0]:.6f}","{fp[1]:.6f}","{fp[0]:.6f}"\n'
        for k, (mp, fp, a) in enumerate(zip(m, f, act, strict=True))
    ]
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text("".join(lines))
    return path


def _bigwarp(path: Path, rows: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    moving, fixed = [], []
    for k, row in enumerate(rows, start=1):
        cells = [c.strip().strip('"') for c in row]
        if len(cells) not in (6, 8):
            raise FormatError(
                f"{path}, line {k}: a BigWarp landmark row has 6 (2-D) or 8 (3-D) fields "
                f"(name, active, mx, my, [mz], fx, fy, [fz]); got {len(cells)}"
            )
        if cells[1].lower() != "true":
            continue
        try:
            values = [float(c) for c in cells[2:]]
        except ValueError:
            raise FormatError(f"{path}, line {k}: non-numeric coordinate") from None
        half = len(values) // 2
        moving.append([values[1], values[0]])
        fixed.append([values[half + 1], values[half]])
    if not moving:
        raise FormatError(f"{path}: no active landmarks")
    return np.array(moving), np.array(fixed)


def _rows(path: Path) -> list[list[Any]]:
    text = path.read_text(errors="replace")
    rows = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if "," in line:
            rows.append(next(csv.reader([line])))
        else:
            rows.append(line.split())
    return rows
