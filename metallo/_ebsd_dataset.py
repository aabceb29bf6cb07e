"""The EBSD map as an ``xr.Dataset``: the one layout every reader, writer and consumer uses.

A foundation module, below both :mod:`metallo.io` (whose readers build this layout) and
:mod:`metallo.ebsd` (which computes on it and re-exports :func:`ebsd_dataset`,
:func:`phases_of` and ``LAUE_GROUPS`` as its public API).

Layout (dims ``y``, ``x`` on µm coordinates; pixel ``(i, j)`` at ``y = y0 + i*step_y``,
``x = x0 + j*step_x``):

========== =================== ========= =============================================
variable   dims                dtype     meaning
========== =================== ========= =============================================
euler      (y, x, angle)       float64   Bunge Euler angles (phi1, Phi, phi2), radians
phase      (y, x)              int16     phase id from ``attrs["phases"]``; -1 = not indexed
ci         (y, x)              float32   confidence index (.ang) - optional
iq         (y, x)              float32   image quality (.ang) or band contrast (.ctf) - optional
fit        (y, x)              float32   fit (.ang) or MAD (.ctf), degrees - optional
...        (y, x)              any       other columns a format has (bands, bs, sem, ...)
========== =================== ========= =============================================

Points absent from the grid (sparse maps, hexagonal-grid padding) have ``phase == -1`` and
NaN Euler angles.

attrs: ``step_um`` (x step), ``step_y_um`` (row spacing; ``step_um * sqrt(3)/2`` on a
hexagonal grid), ``grid`` (``"square"`` or ``"hexagonal"``), ``phases`` (JSON list of
``{"id", "name", "symmetry", "lattice"}`` and, where the file has it, ``"space_group"`` (the
International Tables number); ``symmetry`` is a Laue group symbol such as ``"m-3m"`` or
``"6/mmm"``, ``lattice`` is ``[a, b, c, alpha, beta, gamma]`` in Å and degrees),
``source`` (file name or generator), ``header`` (JSON of the file header, optional),
``monoclinic_axis`` (``"y"``, the default, or ``"z"``: the unique axis of ``2/m`` phases; the
readers set it, ``read_ebsd(..., monoclinic_axis="z")`` matches orix), ``axes`` (the crystal
axis convention in words, set by the readers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from metallo.errors import FormatError

__all__ = ["LAUE_GROUPS", "ebsd_dataset", "grain_ecd_um", "bcc_iron_only", "looks_bcc_iron", "phases_of", "point_area_um2"]

#: The 11 Laue groups, by their Hermann-Mauguin symbols.
LAUE_GROUPS = ("-1", "2/m", "mmm", "4/m", "4/mmm", "-3", "-3m", "6/m", "6/mmm", "m-3", "m-3m")


def ebsd_dataset(
    euler: np.ndarray,
    phase: np.ndarray,
    *,
    step_um: float,
    phases: Sequence[Mapping[str, Any]],
    step_y_um: float | None = None,
    grid: str = "square",
    origin_um: tuple[float, float] = (0.0, 0.0),
    variables: Mapping[str, np.ndarray] | None = None,
    source: str = "",
    header: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Build an EBSD map Dataset on the layout described in this module.

    Parameters
    ----------
    euler : ndarray, (ny, nx, 3)
        Bunge Euler angles in radians.
    phase : ndarray, (ny, nx)
        Phase ids (keys of ``phases``); -1 for not indexed.
    step_um : float
        Step size along x in µm.
    phases : sequence of mappings
        ``{"id": int, "name": str, "symmetry": Laue symbol, "lattice": [a, b, c, al, be, ga]}``,
        optionally ``"space_group": int``.
    step_y_um : float, optional
        Row spacing; defaults to ``step_um`` (square) or ``step_um*sqrt(3)/2`` (hexagonal).
    grid : {"square", "hexagonal"}
    origin_um : (y0, x0)
    variables : mapping, optional
        Further per-point columns, e.g. ``{"ci": ..., "iq": ..., "fit": ...}``.
    source : str
        Where the data came from.
    header : mapping, optional
        The file header, kept as JSON.

    Returns
    -------
    xr.Dataset
    """
    euler = np.asarray(euler, dtype=np.float64)
    phase = np.asarray(phase)
    if euler.ndim != 3 or euler.shape[2] != 3:
        raise FormatError(f"{source or 'EBSD map'}: euler must have shape (ny, nx, 3); got {euler.shape}")
    if phase.shape != euler.shape[:2]:
        raise FormatError(f"{source or 'EBSD map'}: phase shape {phase.shape} != grid {euler.shape[:2]}")
    if grid not in ("square", "hexagonal"):
        raise FormatError(f"{source or 'EBSD map'}: grid must be 'square' or 'hexagonal'; got {grid!r}")
    if not step_um > 0:
        raise FormatError(f"{source or 'EBSD map'}: step_um must be positive; got {step_um}")
    phase_list = []
    for p in phases:
        sym = str(p.get("symmetry", ""))
        if sym not in LAUE_GROUPS:
            raise FormatError(
                f"{source or 'EBSD map'}: phase {p.get('name')!r} has unknown symmetry {sym!r}; "
                f"expected one of {', '.join(LAUE_GROUPS)}"
            )
        entry = {
            "id": int(p["id"]),
            "name": str(p.get("name", f"phase{p['id']}")),
            "symmetry": sym,
            "lattice": [float(v) for v in p.get("lattice", [])],
        }
        if p.get("space_group"):
            entry["space_group"] = int(p["space_group"])
        phase_list.append(entry)
    _check_phase_ids(phase, phase_list, source or "EBSD map")
    if step_y_um is None:
        step_y_um = step_um * (np.sqrt(3.0) / 2.0 if grid == "hexagonal" else 1.0)
    ny, nx = phase.shape
    coords = {
        "y": ("y", origin_um[0] + step_y_um * np.arange(ny), {"units": "um"}),
        "x": ("x", origin_um[1] + step_um * np.arange(nx), {"units": "um"}),
        "angle": ("angle", np.array(["phi1", "Phi", "phi2"])),
    }
    data_vars: dict[str, Any] = {
        "euler": (("y", "x", "angle"), euler, {"units": "rad", "convention": "Bunge ZXZ, passive"}),
        "phase": (("y", "x"), phase.astype(np.int16)),
    }
    for name, values in (variables or {}).items():
        values = np.asarray(values)
        if values.shape != phase.shape:
            raise FormatError(f"{source or 'EBSD map'}: column {name!r} has shape {values.shape}, expected {phase.shape}")
        if values.dtype.kind == "f":
            values = values.astype(np.float32)
        data_vars[name] = (("y", "x"), values)
    attrs = {
        "step_um": float(step_um),
        "step_y_um": float(step_y_um),
        "grid": grid,
        "phases": json.dumps(phase_list),
        "source": source,
    }
    if header is not None:
        attrs["header"] = json.dumps(dict(header), default=str)
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _check_phase_ids(phase: np.ndarray, phase_list: list[dict[str, Any]], where: str) -> None:
    """Refuse a phase map whose ids have no entry in ``phases`` (or repeat one): every later
    step would have to guess the symmetry of those points."""
    if phase.dtype.kind not in "iu":
        if phase.dtype.kind != "f" or not np.all(np.isfinite(phase)) or np.any(phase != np.round(phase)):
            raise FormatError(f"{where}: phase must hold whole numbers (ids; -1 = not indexed); got dtype {phase.dtype}")
    ids = [p["id"] for p in phase_list]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise FormatError(f"{where}: phases lists id {repeated} more than once; each phase id needs one entry")
    present = np.unique(phase)
    below = present[present < -1]
    if below.size:
        raise FormatError(f"{where}: phase ids {below.astype(int).tolist()} are below -1; expected -1 (not indexed) or a listed id")
    missing = np.setdiff1d(present[present >= 0], ids)
    if missing.size:
        raise FormatError(
            f"{where}: phase ids {missing.astype(int).tolist()} occur in the map but have no entry in phases "
            f"(listed: {sorted(ids)}); add them, or set those points to -1 (not indexed)"
        )


def phases_of(ebsd: xr.Dataset) -> list[dict[str, Any]]:
    """The phase table of an EBSD map as a list of dicts (id, name, symmetry, lattice)."""
    raw = ebsd.attrs.get("phases", "[]")
    return list(json.loads(raw) if isinstance(raw, str) else raw)


def point_area_um2(ebsd: xr.Dataset | xr.DataArray) -> float:
    """The area one map point stands for, in µm²: step_x x step_y.

    On a hexagonal grid the rows are sqrt(3)/2 x step apart, so a point covers 0.866 step², not
    step² (``attrs["step_y_um"]``; square grids without it use ``step_um`` both ways).

    Examples
    --------
    >>> round(point_area_um2(xr.Dataset(attrs={"step_um": 0.2, "step_y_um": 0.2 * 3**0.5 / 2})), 5)
    0.03464
    >>> point_area_um2(xr.Dataset(attrs={"step_um": 0.5}))
    0.25
    """
    step = float(ebsd.attrs["step_um"])
    return step * float(ebsd.attrs.get("step_y_um", step))


def grain_ecd_um(grain_ids: Any, ebsd: xr.Dataset) -> np.ndarray:
    """Equivalent circle diameter (µm) of each grain of a grain-id map (-1: no grain), by id.

    A grain's area is its points times :func:`point_area_um2`, as in the grain table of
    :func:`metallo.ebsd.grains`.

    Examples
    --------
    >>> ids = np.array([[0, 0, 1], [0, 0, -1]])
    >>> grain_ecd_um(ids, xr.Dataset(attrs={"step_um": 1.0})).round(3).tolist()
    [2.257, 1.128]
    """
    values = np.asarray(grain_ids).ravel()
    counts = np.bincount(values[values >= 0])
    counts = counts[counts > 0]
    return np.sqrt(4.0 * counts * point_area_um2(ebsd) / np.pi)


#: Phase names that say bcc iron (ferrite and the ferrite of bainite and martensite), and fcc or
#: other ones (:func:`looks_bcc_iron`: a stated lattice comes before the bcc names).
_BCC_NAME_WORDS = ("ferrite", "bainite", "martensite", "bcc", "alpha", "α")
_OTHER_NAME_WORDS = ("austenite", "fcc", "gamma", "γ", "cementite", "carbide", "hcp")
#: bcc iron: a = 2.866 Å (martensite's tetragonal a stays within this too).
_BCC_IRON_A = (2.80, 2.95)


def looks_bcc_iron(phase: Mapping[str, Any]) -> bool | None:
    """Whether an EBSD phase entry is bcc iron (ferrite, bainite, martensite); None where
    nothing tells.

    Not where its Laue group is neither cubic nor tetragonal, or its name says austenite, fcc,
    gamma, cementite, carbide or hcp; else its lattice decides where it states one (a = 2.80-2.95
    Å: bcc iron, a = 2.866 Å, and martensite's tetragonal a), else its name (ferrite, bainite,
    martensite, bcc, alpha).

    Examples
    --------
    >>> looks_bcc_iron({"name": "austenite/austenite", "symmetry": "m-3m", "lattice": [3.595] * 3})
    False
    >>> looks_bcc_iron({"name": "Iron bcc (old)", "symmetry": "m-3m", "lattice": [2.866] * 3})
    True
    >>> looks_bcc_iron({"name": "Nickel", "symmetry": "m-3m", "lattice": [3.52] * 3})
    False
    >>> looks_bcc_iron({"name": "Martensite", "symmetry": "m-3m"}), looks_bcc_iron({"name": "phase 1"}) is None
    (True, True)
    """
    if str(phase.get("symmetry", "")) not in ("m-3m", "4/mmm", ""):
        return False
    name = str(phase.get("name", "")).lower()
    if any(word in name for word in _OTHER_NAME_WORDS):
        return False
    lattice = [float(v) for v in (phase.get("lattice") or [])[:1]]
    if lattice and lattice[0] > 1.5:  # a placeholder lattice (1 Å) says nothing
        return bool(_BCC_IRON_A[0] <= lattice[0] <= _BCC_IRON_A[1])
    if any(word in name for word in _BCC_NAME_WORDS):
        return True
    return None


def bcc_iron_only(ebsd: xr.Dataset) -> bool:
    """Whether the map has cubic phases and every one is bcc iron (:func:`looks_bcc_iron`): a map
    without annealing twins, whose Sigma3 boundaries are blocks of martensite or bainite.

    Examples
    --------
    >>> bcc_iron_only(xr.Dataset(attrs={"phases": '[{"id": 1, "name": "Martensite", "symmetry": "m-3m"}]'}))
    True
    """
    cubic = [p for p in phases_of(ebsd) if p.get("symmetry") == "m-3m"]
    return bool(cubic) and all(looks_bcc_iron(p) is True for p in cubic)
