"""Vendor HDF5 EBSD maps: EDAX OIM ``.h5``/``.oh5``, Oxford ``.h5oina``, Bruker Esprit h5ebsd,
EMsoft, and the orix crystal-map layout (read and written).

All of them are HDF5 files, told apart by their layout (:func:`hdf5_layout`), not their
extension. Every reader returns the EBSD ``xr.Dataset`` of :func:`metallo.ebsd.ebsd_dataset`;
pattern arrays are skipped (``attrs["patterns"]`` names them). A file with several scans or
slices reads the first unless ``scan=`` names another; ``attrs["scans"]`` lists them all.

Quirks handled (see ``docs/io.md``):

- EDAX: root dataset names with a leading space (``" Manufacturer"``); invalid points at
  x = y = -1111111; phase 0 = the single phase; TSL symmetry codes; hexagonal grids.
- Oxford: Euler angles, lattice angles and tilt in radians; phase 0 = not indexed; every
  numbered slice group (``1``, ``2``, ...); no ``Header/Phases`` group in some files
  (phases are then unknown: triclinic ``-1`` with a warning).
- Bruker: Euler angles in degrees; grid from the header (``isometric`` = square); points
  placed by the ``SEM IX/IY`` (or ``X/Y BEAM``) indices when those are valid, else in
  raster order; phases by space group number.
- EMsoft: crystal data (lattice in nm, space group); dictionary-indexing results in
  ``Scan 1/EBSD/Data``; a pattern-simulation file holds only the orientations it simulated:
  it reads as a 1 x n strip, with a warning that it holds no crystal map.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from metallo._atomic import atomic_path
from metallo._ebsd_dataset import phases_of
from metallo.errors import ConfigError, FormatError, MetalloError
from metallo.io._ebsd_ang import ANG_SYMMETRY, TSL_PRIAS, tsl_phase_ids
from metallo.io._ebsd_ctf import CTF_LAUE
from metallo.io._ebsd_grid import (
    OXFORD_FRAME_NOTE,
    min_spacing,
    oxford_hexagonal_frame,
    points_dataset,
    raster_coordinates,
    warn_reader,
)
from metallo.io._plugins import register_reader

__all__ = [
    "hdf5_layout",
    "laue_of_space_group",
    "read_bruker_h5",
    "read_edax_h5",
    "read_emsoft_h5",
    "read_h5oina",
    "read_orix_h5",
    "sniff_hdf5",
    "write_h5",
]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
# A dataset may not claim more bytes than this multiple of the file size (compression ratio
# allowance) plus 64 MiB: a damaged header must not make the reader allocate terabytes.
_MAX_EXPANSION = 1000
_EDAX_INVALID = -1111111.0

#: First space group number of each Laue group (International Tables), in order.
_SPACE_GROUP_STARTS = ((1, "-1"), (3, "2/m"), (16, "mmm"), (75, "4/m"), (89, "4/mmm"), (143, "-3"),
                       (149, "-3m"), (168, "6/m"), (177, "6/mmm"), (195, "m-3"), (207, "m-3m"))
_POINT_GROUP_LAUE = {
    "1": "-1", "-1": "-1", "2": "2/m", "m": "2/m", "2/m": "2/m", "222": "mmm", "mm2": "mmm",
    "mmm": "mmm", "4": "4/m", "-4": "4/m", "4/m": "4/m", "422": "4/mmm", "4mm": "4/mmm",
    "-42m": "4/mmm", "4/mmm": "4/mmm", "3": "-3", "-3": "-3", "32": "-3m", "3m": "-3m",
    "-3m": "-3m", "6": "6/m", "-6": "6/m", "6/m": "6/m", "622": "6/mmm", "6mm": "6/mmm",
    "-6m2": "6/mmm", "6/mmm": "6/mmm", "23": "m-3", "m-3": "m-3", "m3": "m-3", "432": "m-3m",
    "-43m": "m-3m", "m-3m": "m-3m", "m3m": "m-3m",
}


def laue_of_space_group(number: int) -> str:
    """The Laue group of a space group (International Tables number 1-230).

    Examples
    --------
    >>> laue_of_space_group(225), laue_of_space_group(194), laue_of_space_group(14)
    ('m-3m', '6/mmm', '2/m')
    """
    if not 1 <= int(number) <= 230:
        raise ConfigError(f"space group number must be 1-230; got {number}")
    return [laue for start, laue in _SPACE_GROUP_STARTS if start <= int(number)][-1]


def sniff_hdf5(head: bytes) -> bool:
    """True if ``head`` starts with the HDF5 signature."""
    return head.startswith(_HDF5_MAGIC)


# --------------------------------------------------------------------------- helpers


def _open(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise FormatError(f"{path.name}: not a readable HDF5 file ({exc})") from None


def _text(value: Any) -> str:
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else b""
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).split(b"\x00", 1)[0].decode("latin-1").strip()
    return str(value).strip()


def _root_value(f, name: str) -> str:
    """A root dataset by name, ignoring case and the leading space EDAX writes."""
    for key in f:
        if key.strip().lower() == name.lower() and hasattr(f[key], "shape"):
            return _text(f[key][()])
    return ""


class _Reader:
    """Bounded, error-translating access to the datasets of one file."""

    def __init__(self, f, path: Path) -> None:
        self.f = f
        self.source = path.name
        self.limit = _MAX_EXPANSION * path.stat().st_size + 2**26

    def array(self, name: str, *, dtype: Any = None) -> np.ndarray:
        import h5py

        try:
            ds = self.f[name]
        except KeyError:
            raise FormatError(f"{self.source}: dataset {name!r} is missing") from None
        if not isinstance(ds, h5py.Dataset):
            raise FormatError(f"{self.source}: {name!r} is a group, expected a dataset")
        nbytes = int(np.prod(ds.shape, dtype=np.float64) * ds.dtype.itemsize) if ds.shape else ds.dtype.itemsize
        if nbytes > self.limit:
            raise FormatError(f"{self.source}: dataset {name!r} claims {nbytes} bytes, impossible for this file")
        try:
            values = ds[()]
        except (OSError, ValueError, TypeError) as exc:
            raise FormatError(f"{self.source}: dataset {name!r} cannot be read ({exc})") from None
        return np.asarray(values) if dtype is None else np.asarray(values, dtype=dtype)

    def number(self, name: str, default: float | None = None) -> float | None:
        if name not in self.f:
            return default
        values = self.array(name)
        if values.size < 1:
            return default
        try:
            return float(np.asarray(values, dtype=np.float64).ravel()[0])
        except (TypeError, ValueError):
            raise FormatError(f"{self.source}: {name!r} should be a number; got {values.ravel()[0]!r}") from None

    def text(self, name: str, default: str = "") -> str:
        return _text(self.array(name)) if name in self.f else default

    def points(self, group: str, names: dict[str, str], n: int | None = None) -> tuple[dict[str, np.ndarray], int]:
        """Read 1-D per-point datasets of ``group`` (file name -> our name) of one length."""
        out: dict[str, np.ndarray] = {}
        for file_name, ours in names.items():
            key = f"{group}/{file_name}"
            if key not in self.f:
                continue
            values = self.array(key)
            if values.ndim == 2 and values.shape[1] == 1:
                values = values[:, 0]  # h5oina stores per-point columns as (size, 1)
            if values.ndim != 1:
                continue
            out[ours] = values
        lengths = {k: len(v) for k, v in out.items()}
        if not lengths:
            raise FormatError(f"{self.source}: {group} holds none of the point datasets {sorted(names)}")
        m = min(lengths.values()) if n is None else min(n, *lengths.values())
        if len(set(lengths.values())) > 1:
            warn_reader(
                f"{self.source}: {group}: point datasets differ in length ({lengths}); "
                f"the map is trimmed to the {m} points they all hold"
            )
        return {k: v[:m] for k, v in out.items()}, m


def _patterns_in(f, group: str) -> list[str]:
    import h5py

    names: list[str] = []
    if group in f:
        f[group].visititems(
            lambda name, obj: names.append(f"{group}/{name}")
            if isinstance(obj, h5py.Dataset) and obj.ndim == 3 and "pattern" in name.lower()
            else None
        )
    return names


def _pattern_attrs(f, groups: list[str]) -> dict[str, Any]:
    found = [name for g in groups for name in _patterns_in(f, g)]
    return {"patterns": json.dumps(found), "patterns_skipped": 1} if found else {}


def _choose(scans: list[str], scan: str | int | None, source: str, what: str) -> str:
    if not scans:
        raise FormatError(f"{source}: no {what} group with EBSD data found")
    if scan is None:
        return scans[0]
    if str(scan) in scans:
        return str(scan)
    raise ConfigError(f"{source}: no {what} {scan!r}; the file has {', '.join(scans)}")


def _natural(names: list[str]) -> list[str]:
    import re

    return sorted(names, key=lambda s: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)])


def _grid_name(text: str) -> str:
    return "hexagonal" if text.lower().startswith("hex") else "square"


# --------------------------------------------------------------------------- layouts


def hdf5_layout(path: str | Path) -> str | None:
    """Which EBSD layout an HDF5 file has: ``"edax-h5"``, ``"h5oina"``, ``"bruker-h5"``,
    ``"emsoft-h5"``, ``"orix-h5"`` or None.

    Examples
    --------
    >>> hdf5_layout("EdaxAngOnly.h5")  # doctest: +SKIP
    'edax-h5'
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return _layout_of(f)
    except _H5_ERRORS:
        return None


def _layout_of(f) -> str | None:
    maker = _root_value(f, "manufacturer").lower()
    keys = list(f.keys())
    if "orix" in maker and "crystal_map" in f:
        return "orix-h5"
    if "bruker" in maker:
        return "bruker-h5"
    if "oxford" in maker or ("Format Version" in f and any(k.isdigit() for k in keys)):
        return "h5oina"
    if "EMheader" in f or "CrystalData" in f or maker.startswith("emebsd"):
        return "emsoft-h5"
    if "edax" in maker or any(k.startswith("Scan") and f"{k}/EBSD/Data" in f for k in keys):
        return "edax-h5"
    return None


def _probe(name: str) -> Callable[[Path], bool]:
    return lambda path: hdf5_layout(path) == name


# What h5py raises on a damaged file (a flipped byte in a B-tree, an object address past the
# end): translated into a FormatError at the reader's boundary.
_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, UnicodeError, AttributeError)


def _translate_h5_errors(read: Callable[..., xr.Dataset]) -> Callable[..., xr.Dataset]:
    @functools.wraps(read)
    def wrapper(path: str | Path, **options: Any) -> xr.Dataset:
        try:
            return read(path, **options)
        except MetalloError:
            raise
        except _H5_ERRORS as exc:
            raise FormatError(
                f"{Path(path).name}: damaged or unexpected HDF5 content ({type(exc).__name__}: {exc})"
            ) from None

    return wrapper


# --------------------------------------------------------------------------- EDAX OIM


_EDAX_POINTS = {
    "Phi1": "phi1", "Phi": "Phi", "Phi2": "phi2", "X Position": "x", "Y Position": "y",
    "IQ": "iq", "CI": "ci", "Fit": "fit", "Phase": "phase", "SEM Signal": "sem", "Valid": "valid",
    **TSL_PRIAS,
}


def _edax_phases(r: _Reader, header: str) -> list[dict[str, Any]]:
    group = f"{header}/Phase"
    if group not in r.f:
        raise FormatError(f"{r.source}: {group} is missing: the file has no phase table")
    phases = []
    for key in _natural(list(r.f[group].keys())):
        base = f"{group}/{key}"
        try:
            pid = int(key)
        except ValueError:
            continue
        code = r.number(f"{base}/Symmetry")
        if code is None or int(code) not in ANG_SYMMETRY:
            point_group = r.text(f"{base}/Point Group")
            laue = next((v for k, v in _POINT_GROUP_LAUE.items() if f"[{k}]" in point_group), None)
            if laue is None:
                raise FormatError(
                    f"{r.source}: {base}/Symmetry: TSL code {code} is not one of "
                    f"{', '.join(str(c) for c in sorted(ANG_SYMMETRY))}"
                )
        else:
            laue = ANG_SYMMETRY[int(code)]
        lattice = [float(f"{r.number(f'{base}/Lattice Constant {k}', 0.0):.7g}")  # float32 in the file
                   for k in ("a", "b", "c", "alpha", "beta", "gamma")]
        name = r.text(f"{base}/MaterialName") or f"phase{pid}"
        phases.append({"id": pid, "name": name, "symmetry": laue, "lattice": lattice})
    if not phases:
        raise FormatError(f"{r.source}: {group} holds no phase")
    return phases


def _edax_like(r: _Reader, scan: str, *, fmt: str, raster: bool) -> xr.Dataset:
    """EDAX OIM (and EMsoft dictionary-indexing) ``Scan/EBSD/{Data,Header}`` groups."""
    data, header = f"{scan}/EBSD/Data", f"{scan}/EBSD/Header"
    if data not in r.f or header not in r.f:
        raise FormatError(f"{r.source}: {scan} lacks EBSD/Data or EBSD/Header")
    if "kikuchipy" in _root_value(r.f, "manufacturer").lower() and f"{data}/Phi1" not in r.f:
        raise FormatError(
            f"{r.source}: a kikuchipy h5ebsd file holds EBSD patterns ({data}/patterns), not an indexed "
            "map; index the patterns (kikuchipy, orix) and give metallo the crystal map (orix .h5 or .ang)"
        )
    phases = _edax_phases(r, header)
    cols, n = r.points(data, _EDAX_POINTS)
    euler_source = "Phi1/Phi/Phi2"
    if fmt == "emsoft-h5" and (f"{data}/RefinedEulerAngles" in r.f
                               or not all(k in cols for k in ("phi1", "Phi", "phi2"))):
        euler_source, angles = _emsoft_indexing_euler(r, data, n)
        cols.update(phi1=angles[:, 0], Phi=angles[:, 1], phi2=angles[:, 2])
    for need in ("phi1", "Phi", "phi2"):
        if need not in cols:
            raise FormatError(f"{r.source}: {data}: Euler angle dataset for {need!r} is missing")
    nx, ny = r.number(f"{header}/nColumns"), r.number(f"{header}/nRows")
    sx, sy = r.number(f"{header}/Step X"), r.number(f"{header}/Step Y")
    grid = _grid_name(r.text(f"{header}/Grid Type", "SqrGrid"))
    euler = np.column_stack([cols["phi1"], cols["Phi"], cols["phi2"]]).astype(np.float64)
    if raster or "x" not in cols or "y" not in cols:
        if not (nx and ny and sx):
            raise FormatError(f"{r.source}: {header}: nColumns, nRows and Step X are needed to place the points")
        x, y = raster_coordinates(n, (int(ny), int(nx)), (sx, sy or sx), source=r.source)
    else:
        x, y = cols["x"].astype(np.float64), cols["y"].astype(np.float64)
        invalid = (x <= _EDAX_INVALID + 1) | (y <= _EDAX_INVALID + 1)
        x[invalid] = np.nan
        y[invalid] = np.nan
    ci = cols.get("ci", np.ones(n)).astype(np.float64)
    phase = tsl_phase_ids(
        cols.get("phase", np.zeros(n)), ci, euler, phases, where=lambda row: f"{r.source}: {data}/Phase[{row}]"
    )
    variables = {k: v for k, v in cols.items() if k not in ("phi1", "Phi", "phi2", "x", "y", "phase")}
    head = {
        "format": fmt, "scan": scan, "n_points": n, "nColumns": nx, "nRows": ny, "Step X": sx, "Step Y": sy,
        "Grid Type": r.text(f"{header}/Grid Type"), "Sample Tilt": r.number(f"{header}/Sample Tilt"),
        "Working Distance": r.number(f"{header}/Working Distance"),
        "Manufacturer": _root_value(r.f, "manufacturer"), "Version": _root_value(r.f, "version"),
        "euler_source": euler_source,
    }
    return points_dataset(
        euler, phase, x, y, source=r.source, phases=phases, grid=grid, header_step=(sx, sy),
        header_shape=(int(ny) if ny else None, int(nx) if nx else None),
        variables=variables, header=head, attrs=_pattern_attrs(r.f, [scan]),
    )


def _emsoft_indexing_euler(r: _Reader, data: str, n: int) -> tuple[str, np.ndarray]:
    """Euler angles (n, 3, radians) of an EMsoft dictionary-indexing file.

    ``RefinedEulerAngles`` (radians, written by EMFitOrientation: the better result, so it is
    preferred to ``Phi1``/``Phi``/``Phi2``) when present, else the best match of each point: row
    ``TopMatchIndices[:, 0] - 1`` (1-based) of ``DictionaryEulerAngles`` (degrees), as orix
    reads such files.
    """
    refined = f"{data}/RefinedEulerAngles"
    if refined in r.f:
        angles = r.array(refined, dtype=np.float64)
        if angles.ndim != 2 or angles.shape[1] != 3 or len(angles) < n:
            raise FormatError(f"{r.source}: {refined} must be an (n, 3) array for {n} points; got {angles.shape}")
        return "RefinedEulerAngles", angles[:n]
    top, dictionary = f"{data}/TopMatchIndices", f"{data}/DictionaryEulerAngles"
    if top not in r.f or dictionary not in r.f:
        raise FormatError(
            f"{r.source}: {data}: no Euler angles (Phi1/Phi/Phi2, RefinedEulerAngles, or TopMatchIndices "
            "with DictionaryEulerAngles)"
        )
    index = r.array(top)
    index = index[:n, 0] if index.ndim == 2 else index[:n]
    table = r.array(dictionary, dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != 3:
        raise FormatError(f"{r.source}: {dictionary} must be an (m, 3) array; got {table.shape}")
    index = np.asarray(index, dtype=np.int64) - 1
    if len(index) < n or index.min() < 0 or index.max() >= len(table):
        raise FormatError(
            f"{r.source}: {top}: expected {n} indices in 1..{len(table)} (rows of {dictionary})"
        )
    return "TopMatchIndices[:, 0] of DictionaryEulerAngles", np.radians(table[index])


def _scans(f) -> list[str]:
    return _natural([k for k in f.keys() if f"{k}/EBSD/Data" in f])


def read_edax_h5(path: str | Path, *, scan: str | None = None) -> xr.Dataset:
    """Read an EDAX OIM HDF5 map (``.h5``, ``.oh5``).

    Parameters
    ----------
    path : str or Path
        The file.
    scan : str, optional
        Scan group (``"Scan_1"``, ...); default the first.

    Returns
    -------
    xr.Dataset
        The EBSD layout with ``iq``, ``ci``, ``fit`` and the other per-point datasets;
        ``attrs["scans"]`` lists the scan groups of the file.

    Example
    -------
    >>> ebsd = read_edax_h5("EdaxAngOnly.h5")  # doctest: +SKIP
    """
    path = Path(path)
    with _open(path) as f:
        r = _Reader(f, path)
        scans = _scans(f)
        ds = _edax_like(r, _choose(scans, scan, path.name, "Scan"), fmt="edax-h5", raster=False)
    ds.attrs["scans"] = json.dumps(scans)
    return ds


# --------------------------------------------------------------------------- Oxford h5oina

_OXFORD_POINTS = {
    "X": "x", "Y": "y", "Phase": "phase", "Band Contrast": "iq", "Band Slope": "bs", "Bands": "bands",
    "Error": "error", "Mean Angular Deviation": "fit", "Pattern Quality": "pattern_quality",
    "Detector Distance": "detector_distance", "Pattern Center X": "pcx", "Pattern Center Y": "pcy",
}


def _oxford_phases(r: _Reader, header: str, phase_ids: np.ndarray) -> tuple[list[dict[str, Any]], bool]:
    group = f"{header}/Phases"
    phases: list[dict[str, Any]] = []
    if group in r.f:
        for key in _natural(list(r.f[group].keys())):
            try:
                pid = int(key)
            except ValueError:
                continue
            base = f"{group}/{key}"
            space_group = int(r.number(f"{base}/Space Group", 0) or 0)
            laue = laue_of_space_group(space_group) if 1 <= space_group <= 230 else None
            if laue is None and f"{base}/Laue Group" in r.f:
                symbol = _text(r.f[f"{base}/Laue Group"].attrs.get("Symbol", b""))
                laue = _POINT_GROUP_LAUE.get(symbol.replace(" ", ""))
            if laue is None:
                code = int(r.number(f"{base}/Laue Group", 0) or 0)
                if code not in CTF_LAUE:
                    raise FormatError(f"{r.source}: {base}: Laue Group {code} is not 1-11 and there is no space group")
                laue = CTF_LAUE[code]
            dims = list(r.array(f"{base}/Lattice Dimensions", dtype=np.float64).ravel()[:3]) if f"{base}/Lattice Dimensions" in r.f else []
            angles = list(np.degrees(r.array(f"{base}/Lattice Angles", dtype=np.float64).ravel()[:3])) if f"{base}/Lattice Angles" in r.f else []
            entry = {"id": pid, "name": r.text(f"{base}/Phase Name") or f"phase{pid}", "symmetry": laue,
                     "lattice": [round(float(v), 6) for v in dims + angles]}
            if space_group:
                entry["space_group"] = space_group
            phases.append(entry)
        return phases, False
    ids = sorted(int(p) for p in np.unique(phase_ids) if p > 0)
    return [{"id": p, "name": f"phase{p}", "symmetry": "-1", "lattice": []} for p in ids], True


def read_h5oina(path: str | Path, *, scan: str | None = None) -> xr.Dataset:
    """Read an Oxford Instruments ``.h5oina`` EBSD map (AZtec 4+).

    Parameters
    ----------
    path : str or Path
        The file.
    scan : str, optional
        Slice group (``"1"``, ``"2"``, ...); default the first. ``attrs["scans"]`` lists all.

    Returns
    -------
    xr.Dataset
        The EBSD layout: ``iq`` = band contrast, ``fit`` = MAD (converted to degrees, as in
        .ctf), plus ``bs``, ``bands``,
        ``error`` and the other per-point datasets. Without a ``Header/Phases`` group the
        phases are unknown: they become triclinic (``-1``) with a warning and
        ``attrs["phases_assumed"] = 1``.

    Example
    -------
    >>> ebsd = read_h5oina("map.h5oina", scan="2")  # doctest: +SKIP
    """
    path = Path(path)
    source = path.name
    with _open(path) as f:
        r = _Reader(f, path)
        slices = _natural([k for k in f.keys() if f"{k}/EBSD/Data" in f])
        name = _choose(slices, scan, source, "slice")
        data, header = f"{name}/EBSD/Data", f"{name}/EBSD/Header"
        cols, n = r.points(data, _OXFORD_POINTS)
        euler = r.array(f"{data}/Euler", dtype=np.float64) if f"{data}/Euler" in f else None
        if euler is None or euler.ndim != 2 or euler.shape[1] != 3:
            raise FormatError(f"{source}: {data}/Euler must be an (n, 3) array of Euler angles in radians")
        n = min(n, len(euler))
        cols = {k: v[:n] for k, v in cols.items()}
        euler = euler[:n].copy()
        phase_col = np.rint(cols.pop("phase", np.ones(n))).astype(np.int64)
        phases, assumed = _oxford_phases(r, header, phase_col)
        if assumed:
            warn_reader(
                f"{source}: no {header}/Phases group: the phases' symmetry is unknown, so phases "
                f"{[p['id'] for p in phases]} are taken as triclinic (-1); give the symmetry before "
                "computing misorientations"
            )
        known = {p["id"] for p in phases}
        bad = (phase_col > 0) & ~np.isin(phase_col, list(known))
        if bad.any():
            row = int(np.argmax(bad))
            raise FormatError(f"{source}: {data}/Phase[{row}] = {phase_col[row]} is not in {header}/Phases {sorted(known)}")
        phase = np.where(phase_col > 0, phase_col, -1)
        nx, ny = r.number(f"{header}/X Cells"), r.number(f"{header}/Y Cells")
        sx, sy = r.number(f"{header}/X Step"), r.number(f"{header}/Y Step")
        if "x" in cols and "y" in cols:
            x, y = cols.pop("x").astype(np.float64), cols.pop("y").astype(np.float64)
            outside = ~(np.isfinite(x) & np.isfinite(y))
            if outside.any() and nx and ny and sx and int(nx) * int(ny) == n:
                # H5OINA sets the pixels outside an irregular acquisition area to NaN: keep the
                # whole X Cells x Y Cells frame (raster order), those pixels not indexed.
                x, y = raster_coordinates(n, (int(ny), int(nx)), (sx, sy or sx), source=source)
                phase = np.where(outside, -1, phase)
        else:
            if not (nx and ny and sx):
                raise FormatError(f"{source}: {header}: X Cells, Y Cells and X Step are needed without X/Y data")
            x, y = raster_coordinates(n, (int(ny), int(nx)), (sx, sy or sx), source=source)
        if "fit" in cols:
            cols["fit"] = np.degrees(cols["fit"].astype(np.float64))  # MAD: radians in h5oina, degrees here
        tilt = r.number(f"{header}/Tilt Angle")
        head = {
            "format": "h5oina", "scan": name, "n_points": n, "X Cells": nx, "Y Cells": ny, "X Step": sx,
            "Y Step": sy, "tilt_rad": tilt, "Beam Voltage": r.number(f"{header}/Beam Voltage"),
            "Manufacturer": _root_value(f, "manufacturer"), "Software Version": _root_value(f, "software version"),
            "Format Version": _root_value(f, "format version"),
        }
        attrs: dict[str, Any] = {"scans": json.dumps(slices), **_pattern_attrs(f, [name])}
        if assumed:
            attrs["phases_assumed"] = 1
        if oxford_hexagonal_frame(euler, phase, phases):
            head["crystal_x"] = OXFORD_FRAME_NOTE
    return points_dataset(
        euler, phase, x, y, source=source, phases=phases, header_step=(sx, sy),
        header_shape=(int(ny) if ny else None, int(nx) if nx else None), variables=cols, header=head, attrs=attrs,
    )


# --------------------------------------------------------------------------- Bruker

_BRUKER_POINTS = {
    "phi1": "phi1", "PHI": "Phi", "phi2": "phi2", "Phase": "phase", "MAD": "fit", "MADPhase": "mad_phase",
    "NIndexedBands": "bands", "RadonQuality": "iq", "RadonBandCount": "radon_bands", "PCX": "pcx",
    "PCY": "pcy", "DD": "detector_distance", "X BEAM": "x_beam", "Y BEAM": "y_beam",
    "X SAMPLE": "x_sample", "Y SAMPLE": "y_sample", "Z SAMPLE": "z_sample",
}


def _bruker_phases(r: _Reader, header: str) -> list[dict[str, Any]]:
    group = f"{header}/Phases"
    if group not in r.f:
        raise FormatError(f"{r.source}: {group} is missing: the file has no phase table")
    phases = []
    for key in _natural(list(r.f[group].keys())):
        try:
            pid = int(key)
        except ValueError:
            continue
        base = f"{group}/{key}"
        number = int(r.number(f"{base}/IT", 0) or 0)
        if not 1 <= number <= 230:
            raise FormatError(f"{r.source}: {base}/IT: space group number {number}, expected 1-230")
        lattice = ([float(f"{v:.7g}") for v in r.array(f"{base}/LatticeConstants", dtype=np.float64).ravel()]
                   if f"{base}/LatticeConstants" in r.f else [])
        phases.append({"id": pid, "name": r.text(f"{base}/Name") or f"phase{pid}",
                       "symmetry": laue_of_space_group(number), "lattice": lattice[:6], "space_group": number})
    return phases


def _bruker_cells(r: _Reader, scan: str, cols: dict[str, np.ndarray], n: int,
                  shape: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray, tuple[int, int]] | None:
    """Row, column of each point and the grid shape, from SEM IY/IX (in ``Scan/SEM`` or
    ``Scan/EBSD/SEM``) or Y/X BEAM, if those are a valid placement (one point per cell).

    A region-of-interest map numbers its beam positions from the corner of the full frame: the
    indices are shifted to start at 0, as orix does, when they do not fit the header's grid.
    """
    candidates = []
    for group in (f"{scan}/SEM", f"{scan}/EBSD/SEM"):
        for iy, ix in (("SEM IY", "SEM IX"), ("IY", "IX")):
            if f"{group}/{iy}" in r.f and f"{group}/{ix}" in r.f:
                candidates.append((r.array(f"{group}/{iy}"), r.array(f"{group}/{ix}")))
    if "y_beam" in cols and "x_beam" in cols:
        candidates.append((cols["y_beam"], cols["x_beam"]))
    for rows, cells in candidates:
        rows, cells = np.asarray(rows).ravel(), np.asarray(cells).ravel()
        if len(rows) != n or len(cells) != n or n < 1:
            continue
        rows, cells = rows.astype(np.int64), cells.astype(np.int64)
        grid = shape
        if grid is None or not ((rows >= 0) & (rows < grid[0]) & (cells >= 0) & (cells < grid[1])).all():
            rows, cells = rows - rows.min(), cells - cells.min()
            grid = (int(rows.max()) + 1, int(cells.max()) + 1)
            if grid[0] * grid[1] > 4 * n + 64:  # indices too scattered to be this map's grid
                continue
        flat = np.sort(rows * grid[1] + cells)  # sorting beats np.unique's hashing of a million ints
        if n < 2 or (np.diff(flat) > 0).all():
            return rows, cells, grid
    return None


def _bruker_step(r: _Reader, header: str, cols: dict[str, np.ndarray]) -> tuple[float, float] | None:
    """(x, y) step in µm: the header's XSTEP/YSTEP, else the spacing of X/Y SAMPLE."""
    sx, sy = r.number(f"{header}/XSTEP"), r.number(f"{header}/YSTEP")
    if sx and sx > 0:
        return float(sx), float(sy if sy and sy > 0 else sx)
    step_x, step_y = (min_spacing(np.asarray(cols.get(key, []), dtype=np.float64)) for key in ("x_sample", "y_sample"))
    if not (np.isfinite(step_x) or np.isfinite(step_y)):
        return None
    step_x = step_x if np.isfinite(step_x) else step_y
    return step_x, step_y if np.isfinite(step_y) else step_x


def read_bruker_h5(path: str | Path, *, scan: str | None = None) -> xr.Dataset:
    """Read a Bruker Esprit h5ebsd map.

    Parameters
    ----------
    path : str or Path
        The file.
    scan : str, optional
        Scan group (``"Scan 0"``, ...); default the first.

    Returns
    -------
    xr.Dataset
        The EBSD layout; Euler angles converted from degrees, ``fit`` = MAD, ``iq`` = Radon
        quality, ``bands`` = indexed bands. The grid (``NCOLS`` x ``NROWS``, ``XSTEP``,
        ``YSTEP``) comes from the header; ``isometric`` grids are square.

    Example
    -------
    >>> ebsd = read_bruker_h5("map.h5")  # doctest: +SKIP
    """
    path = Path(path)
    source = path.name
    with _open(path) as f:
        r = _Reader(f, path)
        scans = _scans(f)
        name = _choose(scans, scan, source, "Scan")
        data, header = f"{name}/EBSD/Data", f"{name}/EBSD/Header"
        phases = _bruker_phases(r, header)
        cols, n = r.points(data, _BRUKER_POINTS)
        for need in ("phi1", "Phi", "phi2"):
            if need not in cols:
                raise FormatError(f"{source}: {data}: Euler angle dataset for {need!r} is missing")
        nx, ny = r.number(f"{header}/NCOLS"), r.number(f"{header}/NROWS")
        sx, sy = r.number(f"{header}/XSTEP"), r.number(f"{header}/YSTEP")
        header_shape = (int(ny), int(nx)) if nx and ny and nx > 0 and ny > 0 else None
        step = _bruker_step(r, header, cols)
        if step is None:
            raise FormatError(f"{source}: {header}: XSTEP is missing and {data} has no X/Y SAMPLE positions to take the step from")
        cells = _bruker_cells(r, name, cols, n, header_shape)
        if cells is not None:
            x, y = cells[1] * step[0], cells[0] * step[1]
            shape, placement = cells[2], "beam indices"
        elif header_shape is not None:
            x, y = raster_coordinates(n, header_shape, step, source=source)
            shape, placement = header_shape, "raster order"
        else:
            raise FormatError(f"{source}: {header}: NCOLS and NROWS must be positive (no valid beam indices to place the points)")
        euler = np.radians(np.column_stack([cols["phi1"], cols["Phi"], cols["phi2"]]).astype(np.float64))
        phase_col = np.rint(cols.pop("phase", np.ones(n))).astype(np.int64)
        known = {p["id"] for p in phases}
        bad = (phase_col > 0) & ~np.isin(phase_col, list(known))
        if bad.any():
            row = int(np.argmax(bad))
            raise FormatError(f"{source}: {data}/Phase[{row}] = {phase_col[row]} is not in {header}/Phases {sorted(known)}")
        phase = np.where(phase_col > 0, phase_col, -1)
        variables = {k: v for k, v in cols.items() if k not in ("phi1", "Phi", "phi2")}
        head = {
            "format": "bruker-h5", "scan": name, "n_points": n, "NCOLS": nx, "NROWS": ny, "XSTEP": sx, "YSTEP": sy,
            "Grid Type": r.text(f"{header}/Grid Type"), "SampleTilt": r.number(f"{header}/SampleTilt"),
            "placement": placement, "Manufacturer": _root_value(f, "manufacturer"), "Version": _root_value(f, "version"),
        }
        attrs = {"scans": json.dumps(scans), **_pattern_attrs(f, [name])}
    return points_dataset(
        euler, phase, x, y, source=source, phases=phases, header_step=step, header_shape=shape,
        variables=variables, header=head, attrs=attrs,
    )


# --------------------------------------------------------------------------- EMsoft


def _emsoft_phase(r: _Reader) -> dict[str, Any]:
    if "CrystalData/SpaceGroupNumber" not in r.f:
        raise FormatError(f"{r.source}: CrystalData/SpaceGroupNumber is missing: no crystal data")
    number = int(r.number("CrystalData/SpaceGroupNumber", 0) or 0)
    if not 1 <= number <= 230:
        raise FormatError(f"{r.source}: CrystalData/SpaceGroupNumber {number}, expected 1-230")
    lattice = r.array("CrystalData/LatticeParameters", dtype=np.float64).ravel().tolist() if "CrystalData/LatticeParameters" in r.f else []
    if len(lattice) == 6:
        lattice = [v * 10.0 for v in lattice[:3]] + lattice[3:]  # EMsoft stores nm
    name = r.text("EMData/EBSD/xtalname") or r.text("CrystalData/Source")
    name = name.removesuffix(".xtal") if name and name != "undefined" else "phase1"
    return {"id": 1, "name": name, "symmetry": laue_of_space_group(number), "lattice": lattice, "space_group": number}


def read_emsoft_h5(path: str | Path, *, scan: str | None = None) -> xr.Dataset:
    """Read an EMsoft HDF5 file: a dictionary-indexing map or a pattern simulation.

    Parameters
    ----------
    path : str or Path
        The file.
    scan : str, optional
        Scan group of a dictionary-indexing file (``"Scan 1"``); default the first.

    Returns
    -------
    xr.Dataset
        A dictionary-indexing result (``Scan 1/EBSD/Data``) reads as its map (points in raster
        order: EMsoft's Y positions are unreliable). A pattern-simulation file (EMEBSD) holds
        no crystal map, only the orientations it simulated: it reads as a 1 x n strip with
        ``attrs["crystal_map"] = 0`` and a warning saying so.

    Example
    -------
    >>> ebsd = read_emsoft_h5("EBSD_TEST_Ni.h5")  # doctest: +SKIP
    """
    path = Path(path)
    source = path.name
    with _open(path) as f:
        r = _Reader(f, path)
        scans = _scans(f)
        if scans:
            ds = _edax_like(r, _choose(scans, scan, source, "Scan"), fmt="emsoft-h5", raster=True)
            ds.attrs["scans"] = json.dumps(scans)
            return ds
        phase = _emsoft_phase(r)
        key = "EMData/EBSD/EulerAngles"
        if key not in f:
            raise FormatError(f"{source}: EMsoft file with neither a Scan group (indexing results) nor {key}")
        euler = r.array(key, dtype=np.float64)
        if euler.ndim != 2 or euler.shape[1] != 3 or len(euler) == 0:
            raise FormatError(f"{source}: {key} must be an (n, 3) array; got shape {euler.shape}")
        n = len(euler)
        attrs = {"crystal_map": 0, **_pattern_attrs(f, ["EMData"])}
        convention = r.text("NMLparameters/EBSDNameList/eulerconvention")
        program = r.text("EMheader/EBSD/ProgramName")
    warn_reader(
        f"{source}: {program or 'EMsoft'} pattern simulation: the file holds no crystal map, only the "
        f"{n} orientation(s) it simulated ({key}); they are returned as a 1 x {n} strip"
    )
    head = {"format": "emsoft-h5", "n_points": n, "program": program, "eulerconvention": convention}
    return points_dataset(
        euler, np.ones(n, dtype=np.int64), np.arange(n, dtype=np.float64), np.zeros(n), source=source,
        phases=[phase], header=head, attrs=attrs,
    )


# --------------------------------------------------------------------------- orix layout


def read_orix_h5(path: str | Path) -> xr.Dataset:
    """Read a crystal map in orix's HDF5 layout (as written by orix or :func:`write_h5`).

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    xr.Dataset
        The EBSD layout; orix phase ids are kept (orix's -1 = not indexed), other per-point
        properties become variables.

    Example
    -------
    >>> ebsd = read_orix_h5("map.h5")  # doctest: +SKIP
    """
    path = Path(path)
    source = path.name
    with _open(path) as f:
        r = _Reader(f, path)
        data, header = "crystal_map/data", "crystal_map/header"
        cols, n = r.points(data, {k: k for k in f[data].keys()} if data in f else {"phi1": "phi1"})
        for need in ("phi1", "Phi", "phi2", "x", "y", "phase_id"):
            if need not in cols:
                raise FormatError(f"{source}: {data}/{need} is missing")
        phases: list[dict[str, Any]] = []
        if f"{header}/phases" in f:
            for key in _natural(list(f[f"{header}/phases"].keys())):
                base = f"{header}/phases/{key}"
                try:
                    pid = int(key)
                except ValueError:
                    continue
                if pid < 0:
                    continue
                sg = r.text(f"{base}/space_group", "None")
                pg = r.text(f"{base}/point_group", "None")
                if sg.isdigit() and 1 <= int(sg) <= 230:
                    laue = laue_of_space_group(int(sg))
                elif pg in _POINT_GROUP_LAUE:
                    laue = _POINT_GROUP_LAUE[pg]
                else:
                    raise FormatError(f"{source}: {base}: neither space_group ({sg}) nor point_group ({pg}) is known")
                lattice = (r.array(f"{base}/structure/lattice/abcABG", dtype=np.float64).ravel().tolist()
                           if f"{base}/structure/lattice/abcABG" in f else [])
                entry = {"id": pid, "name": r.text(f"{base}/name") or f"phase{pid}", "symmetry": laue, "lattice": lattice}
                if sg.isdigit():
                    entry["space_group"] = int(sg)
                phases.append(entry)
        in_data = cols.pop("is_in_data", np.ones(n, dtype=bool)).astype(bool)
        phase = np.rint(cols.pop("phase_id")).astype(np.int64)
        known = {p["id"] for p in phases}
        bad = (phase >= 0) & ~np.isin(phase, list(known))
        if bad.any():
            row = int(np.argmax(bad))
            raise FormatError(f"{source}: {data}/phase_id[{row}] = {phase[row]} is not in {header}/phases {sorted(known)}")
        phase[~in_data] = -1
        euler = np.column_stack([cols.pop("phi1"), cols.pop("Phi"), cols.pop("phi2")]).astype(np.float64)
        x, y = cols.pop("x").astype(np.float64), cols.pop("y").astype(np.float64)
        cols.pop("id", None)
        grid = _grid_name(r.text(f"{header}/grid_type", "square"))
        sx, sy = r.number(f"{header}/x_step"), r.number(f"{header}/y_step")
        metallo_attrs = r.text("metallo_attrs", "{}")
    try:
        extra = json.loads(metallo_attrs)
    except json.JSONDecodeError:
        raise FormatError(f"{source}: metallo_attrs is not JSON") from None
    head = {"format": "orix-h5", "n_points": n, "x_step": sx, "y_step": sy}
    variables = {k: v for k, v in cols.items() if np.asarray(v).dtype.kind in "fiub"}
    ds = points_dataset(euler, phase, x, y, source=source, phases=phases, grid=grid, header_step=(sx, sy),
                        variables=variables, header=head)
    for key in ("phases", "source", "header"):
        extra.pop(key, None)
    ds.attrs.update({k: v for k, v in extra.items() if k not in ("step_um", "step_y_um", "grid")})
    return ds


def write_h5(ebsd: xr.Dataset, path: str | Path) -> Path:
    """Write an EBSD map as an HDF5 crystal map in orix's layout (``orix.io.load`` opens it).

    Every point of the grid is written with its x/y in µm (a hexagonal grid's padding cells
    are left out); not-indexed points have orix phase id -1. Per-point variables become orix
    properties; the metallo attrs travel as JSON in ``metallo_attrs``. The root
    ``manufacturer`` reads ``"metallo (orix layout)"``, which orix recognises as its own.

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map in the layout of :func:`metallo.ebsd.ebsd_dataset`.
    path : str or Path
        Output file (``.h5``).

    Returns
    -------
    Path
        The written file.

    Example
    -------
    >>> write_h5(ebsd, "map.h5")  # doctest: +SKIP
    """
    import h5py

    from metallo import __version__

    path = Path(path)
    phases = phases_of(ebsd)
    grid = str(ebsd.attrs.get("grid", "square"))
    ny, nx = ebsd.sizes["y"], ebsd.sizes["x"]
    step_x = float(ebsd.attrs["step_um"])
    step_y = float(ebsd.attrs.get("step_y_um", step_x))
    rows, cols = np.divmod(np.arange(ny * nx), nx)
    x = float(ebsd["x"].values[0]) + cols * step_x
    y = float(ebsd["y"].values[0]) + rows * step_y
    keep = np.ones(ny * nx, dtype=bool)
    if grid == "hexagonal":
        x = x + np.where(rows % 2 == 1, 0.5 * step_x, 0.0)
        keep = ~((rows % 2 == 1) & (cols == nx - 1))
    euler: np.ndarray = np.asarray(ebsd["euler"].values, dtype=np.float64).reshape(-1, 3)
    phase: np.ndarray = np.asarray(ebsd["phase"].values).reshape(-1).astype(np.int64)
    unindexed = (phase < 0) | ~np.isfinite(euler).all(axis=1)
    euler = np.where(unindexed[:, None], 0.0, euler)
    phase = np.where(unindexed, -1, phase)
    attrs = {k: v for k, v in ebsd.attrs.items() if isinstance(v, str | int | float)}
    string = h5py.string_dtype()

    def text(group, name: str, value: str) -> None:
        group.create_dataset(name, data=np.array([value.encode()], dtype=f"S{max(1, len(value.encode()))}"))

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        text(f, "manufacturer", "metallo (orix layout)")
        text(f, "version", str(__version__))
        f.create_dataset("metallo_attrs", data=json.dumps(attrs), dtype=string)
        data = f.create_group("crystal_map/data")
        for name, values in (("phi1", euler[:, 0]), ("Phi", euler[:, 1]), ("phi2", euler[:, 2]), ("x", x), ("y", y)):
            data.create_dataset(name, data=values[keep])
        data.create_dataset("phase_id", data=phase[keep])
        data.create_dataset("id", data=np.arange(int(keep.sum()), dtype=np.int64))
        data.create_dataset("is_in_data", data=np.ones(int(keep.sum()), dtype=bool))
        for key, var in ebsd.data_vars.items():
            if key in ("euler", "phase") or var.dims != ("y", "x") or var.dtype.kind not in "fiub":
                continue
            data.create_dataset(str(key), data=np.asarray(var.values, dtype=np.float64).reshape(-1)[keep])
        header = f.create_group("crystal_map/header")
        text(header, "grid_type", grid)
        header.create_dataset("nx", data=np.array([nx]))
        header.create_dataset("ny", data=np.array([ny]))
        header.create_dataset("x_step", data=np.array([step_x]))
        header.create_dataset("y_step", data=np.array([step_y]))
        header.create_dataset("rotations_per_point", data=np.array([1]))
        text(header, "scan_unit", "um")
        groups = [{"id": -1, "name": "not_indexed", "symmetry": None, "lattice": [1, 1, 1, 90, 90, 90]}, *phases]
        for p in groups:
            g = header.create_group(f"phases/{p['id']}")
            text(g, "name", p["name"])
            text(g, "color", "white" if p["id"] < 0 else f"C{p['id'] % 10}")
            text(g, "point_group", p["symmetry"] or "None")
            if p.get("space_group"):
                g.create_dataset("space_group", data=np.array([int(p["space_group"])]))
            else:
                text(g, "space_group", "None")
            lattice = list(p.get("lattice") or []) or [1.0, 1.0, 1.0, 90.0, 90.0, 90.0]
            g.create_dataset("structure/lattice/abcABG", data=np.array(lattice[:6], dtype=np.float64))
            g.create_dataset("structure/lattice/baserot", data=np.eye(3))
            g.create_group("structure/atoms")
    return path


for _name, _exts, _read in (
    ("edax-h5", (".h5", ".oh5", ".hdf5"), read_edax_h5),
    ("h5oina", (".h5oina",), read_h5oina),
    ("bruker-h5", (".h5", ".h5ebsd"), read_bruker_h5),
    ("emsoft-h5", (".h5",), read_emsoft_h5),
    ("orix-h5", (".h5", ".hdf5"), read_orix_h5),
):
    register_reader(
        _name, kind="ebsd", extensions=_exts, sniff=sniff_hdf5, read=_translate_h5_errors(_read), probe=_probe(_name)
    )
