"""ASTM E112 grain size (planimetric and intercept), ASTM E2627 (EBSD, mean grain area) and mean ECD from a grain map."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from metallo.errors import ConfigError
from metallo.quantify._common import label_array, resolve_pixel_size

__all__ = ["EBSD_MIN_INDEXED", "ELONGATED_ANISOTROPY", "INTERCEPT_COLUMNS", "astm_g_intercept", "astm_g_planimetric",
           "elongation_text", "grain_size"]

# ASTM E112-13 eqs: planimetric G = 3.321928 log10(N_A) - 2.954 (N_A in grains/mm²);
# intercept G = -6.643856 log10(l) - 3.288 (l in mm).

#: Fewest grains (interior + half the edge grains) a size statistic is given for without doubt:
#: ASTM E112 asks for a field (or fields) holding at least 50 grains in the count.
MIN_GRAINS = 50

#: Grains whose mean intercepts along the four test-line directions differ by this factor (the
#: longest over the shortest) are elongated: ASTM E112 measures such a structure on three
#: sections. The shared maps of equiaxed grains give 1.12-1.24 (Mg, Ni, M1700, duplex); the
#: 60 % cold-rolled MEA map 1.50.
ELONGATED_ANISOTROPY = 1.5
#: The mean intercept along each test-line direction: rows, columns and the two diagonals.
INTERCEPT_COLUMNS = ("intercept_x_um", "intercept_y_um", "intercept_diagonal_um", "intercept_other_diagonal_um")


def elongation_text(intercepts_um: Sequence[float]) -> str:
    """What the directional mean intercepts (x, y, and the two diagonals, µm) of a grain map say
    about its grain shape, for a warning or a report line.

    Examples
    --------
    >>> elongation_text([40.0, 10.0, 14.1, 14.1])
    'grains elongated: mean intercept 40 µm along x, 10 µm along y (anisotropy 4.0); ASTM E112 measures a non-equiaxed structure on its longitudinal, transverse and planar sections: the G of one section is no 3-D grain size'
    """
    labels = ("x", "y", "the diagonal", "the other diagonal")
    longest = int(np.argmax(intercepts_um))
    shortest = int(np.argmin(intercepts_um))
    return (f"grains elongated: mean intercept {intercepts_um[longest]:.3g} µm along {labels[longest]}, "
            f"{intercepts_um[shortest]:.3g} µm along {labels[shortest]} (anisotropy "
            f"{intercepts_um[longest] / intercepts_um[shortest]:.1f}); ASTM E112 measures a non-equiaxed structure "
            "on its longitudinal, transverse and planar sections: the G of one section is no 3-D grain size")


#: ASTM E2627 (grain size from EBSD): grains of fewer points than this are left out of the mean
#: area, and the average interior grain must hold at least ``E2627_MIN_MEAN_PX`` points before
#: that cut (the standard's resolution requirement; also E. J. Payton's mtex-grain-size).
E2627_MIN_GRAIN_PX = 100
E2627_MIN_MEAN_PX = 500

#: The intercept count on the pixel grid misses crossings where grains are a few points wide: on
#: Voronoi tessellations of 400 grains sampled ever coarser (against 60 points per intercept), the
#: intercept G fell by 0.07 at a mean intercept of 6.3 points, 0.13 at 4.3, 0.15 at 3.7, 0.19-0.20
#: at 3.1 and 0.31 at 2.3, while the planimetric G stayed within 0.003. Below this mean intercept
#: (in points) the intercept row is not reliable.
INTERCEPT_MIN_STEPS = 3.5

#: Share of indexed points below which an EBSD map's measurements are flagged (phase fractions
#: fail their quality record; grain sizes are not reliable): what indexes is no sample of the
#: whole when a phase or a deformed region indexes worse than the rest.
EBSD_MIN_INDEXED = 0.9


def _positive_log10(value: Any, what: str) -> Any:
    """log10 of a positive number, or elementwise of an array of them (a column of fields)."""
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr) & (arr > 0)):
        bad = arr[~(np.isfinite(arr) & (arr > 0))]
        raise ConfigError(f"{what} must be positive; got {bad.ravel()[0] if bad.size else value}")
    return float(math.log10(float(arr))) if arr.ndim == 0 else np.log10(arr)


def astm_g_planimetric(n_a_per_mm2: Any) -> Any:
    """ASTM E112 grain size number from the number of grains per mm² (a number, or an array of them).

    Examples
    --------
    >>> round(astm_g_planimetric(62.0), 2)  # E112 Table 4: N_A = 62.0 mm⁻² at G 3
    3.0
    >>> astm_g_planimetric(np.array([62.0, 496.0])).round(2).tolist()  # G 3 and 6
    [3.0, 6.0]
    """
    return 3.321928 * _positive_log10(n_a_per_mm2, "N_A") - 2.954


def astm_g_intercept(mean_intercept_mm: Any) -> Any:
    """ASTM E112 grain size number from the mean lineal intercept length in mm (a number, or an array of them).

    Examples
    --------
    >>> round(astm_g_intercept(0.1132), 2)  # E112 Table 4: l = 113.2 µm at G 3
    3.0
    """
    return -6.643856 * _positive_log10(mean_intercept_mm, "the mean intercept") - 3.288


def _grain_map(labels_or_grains: Any, pixel_size_um: float | None) -> tuple[np.ndarray, float, str, bool]:
    """Grain ids (> 0; 0 = no grain), the pixel size, a description of the source, and whether
    the map's "no grain" points are unindexed points (an EBSD grain map) rather than boundaries."""
    ids_da = getattr(labels_or_grains, "ids", None)
    if ids_da is not None and hasattr(labels_or_grains, "table"):
        source = "grains"
        data = ids_da
    else:
        source = "labels"
        data = labels_or_grains
    ps = resolve_pixel_size(data, pixel_size_um, what=source)
    array = np.asarray(label_array(data, what=source)).astype(np.int64)
    # Maps with negative values (Grains.ids, EBSD grain_id) use -1 for "no grain" and 0 as a
    # grain id; plain label maps use 0 for boundaries / background.
    unindexed = bool(source == "grains" or (array.size and array.min() < 0))
    if unindexed:
        array = np.where(array < 0, 0, array + 1)
    return array, ps, source, unindexed


def grain_size(
    labels_or_grains: Any,
    *,
    pixel_size_um: float | None = None,
    method: str = "both",
    boundary_px: int = 2,
    what: str | None = None,
    region: Any = None,
    min_grain_px: int = E2627_MIN_GRAIN_PX,
) -> pd.DataFrame:
    """ASTM E112 grain size number G and mean grain ECD from a grain map.

    Planimetric (Jeffries, on the map's rectangle as E112 counts a rectangle): ``N_A = (N_inside +
    N_edge / 2 + N_corner / 4) / A`` with grains cut by the field edge counted half and the
    grains at its four corners a quarter (``N_edge`` here without them), ``G = 3.321928
    log10(N_A [mm⁻²]) - 2.954``. Intercept: label
    changes along every row, column and both diagonals give the mean lineal intercept
    ``l = L / P`` (four test-line directions, as E112 asks for), ``G = -6.643856 log10(l [mm])
    - 3.288``. The E112 rows' mean area is E112's ``1 / N_A`` and their mean ECD the ECD of that
    area (the interior grains' own mean is biased low by the edge, 12-29 % on the shared maps);
    the E2627 row's are the standard's mean over its interior grains.

    Parameters
    ----------
    labels_or_grains : (y, x) int array / DataArray, or metallo.ebsd Grains
        Grain ids (> 0; 0 = boundary or background; if the map has negative values, -1 = no
        grain and 0 is a grain id), or a ``Grains`` object (its ``ids``, -1 = no grain).
    pixel_size_um : float, optional
        Pixel size in µm; from ``attrs["pixel_size_um"]`` or the x coordinate when omitted.
    method : {"both", "planimetric", "intercept", "e2627", "all"}
        Which estimate(s) to return: E112 planimetric and intercept ("both"), one of them,
        ASTM E2627's (the EBSD practice: ``G`` from the mean area of the interior grains of at
        least ``min_grain_px`` points, ``N_A = 1 / A``; reliable where the average interior
        grain holds at least 500 points before that cut, which is the standard's demand on the
        step size), or all three.
    min_grain_px : int
        E2627's smallest grain, in points (default 100, the standard's).
    boundary_px : int
        Boundary pixels (0) are given to the nearest grain up to this distance; what is
        left (unindexed holes) is outside the field, and grains touching it count as edge
        grains.
    what : str, optional
        What the map is (a node name), for the messages.
    region : (y, x) bool array, optional
        Measure only the grains of this region, e.g. one phase of a two-phase map (ASTM E112
        on a phase: its grains per mm² of its own area, its intercepts per length of test line
        inside it). A grain belongs to the region where most of its pixels lie. Grains cut by
        the map edge or by unindexed holes count half; grains next to the other phase count
        whole (they are not cut). Along test lines, a boundary between two grains of the
        region counts 1 and an interface to the other phase 1/2 (it closes one intercept of
        the region, not two).

    Returns
    -------
    pd.DataFrame
        One row per method: method, G, n_grains, n_edge_grains, n_a_per_mm2,
        mean_intercept_um, mean_area_um2, mean_ecd_um, field_area_um2, mean_px_per_grain (of
        the interior grains), reliable (at least ``MIN_GRAINS`` = 50 grains counted, edge
        grains as half, as ASTM E112 asks; fewer warn) and note (why not). The e2627 row
        counts only its grains (``n_grains``; ``n_a_per_mm2`` = 1 / mean area) and is also
        unreliable below E2627's 500 points per grain.

    Examples
    --------
    >>> # 4 interior, 8 edge (counted half) and 4 corner grains (a quarter) in 0.01 mm²
    >>> ids = np.arange(16).reshape(4, 4).repeat(25, 0).repeat(25, 1) + 1
    >>> grain_size(ids, pixel_size_um=1.0, method="planimetric")["n_a_per_mm2"].item()
    900.0
    """
    from scipy import ndimage
    from skimage.segmentation import expand_labels

    if method not in ("both", "planimetric", "intercept", "e2627", "all"):
        raise ConfigError(f"method must be 'both', 'planimetric', 'intercept', 'e2627' or 'all'; got {method!r}")
    if int(min_grain_px) < 1:
        raise ConfigError(f"min_grain_px must be >= 1; got {min_grain_px}")
    ids, ps, source, unindexed = _grain_map(labels_or_grains, pixel_size_um)
    indexed_share = float((ids > 0).mean()) if unindexed and ids.size else 1.0
    if boundary_px > 0 and (ids == 0).any():
        grown = expand_labels(ids, distance=boundary_px)
        if unindexed:
            # An EBSD map's unindexed points are no boundaries: the grains close the small holes
            # (a few points inside or between grains), but a large unindexed region stays out of
            # the field. Grown into it, the grains and the field gained a rim of points that were
            # never measured (on a 33 %-indexed cold-rolled map, 56 % more field than indexed).
            holes, _ = ndimage.label(ids == 0)
            still_open = np.unique(holes[(grown == 0) & (holes > 0)])
            grown = np.where(np.isin(holes, still_open), ids, grown)
        ids = grown
    inside = ids > 0
    if not inside.any():
        raise ConfigError(f"{source}: no grain in the map")
    n = int(ids.max())
    edge = np.zeros(n + 1, bool)
    edge[np.concatenate([ids[0, :], ids[-1, :], ids[:, 0], ids[:, -1]])] = True
    if not inside.all():
        near_out = ndimage.binary_dilation(~inside, structure=np.ones((3, 3), bool))
        edge[ids[near_out]] = True
    edge[0] = False
    area_px = np.bincount(ids.ravel(), minlength=n + 1)
    present = area_px > 0
    present[0] = False
    mine: np.ndarray = np.ones(n + 1, bool)  # grains measured (all, or those of the region)
    if region is not None:
        region = np.asarray(region, bool)
        if region.shape != ids.shape:
            raise ConfigError(f"{what or source}: region has shape {region.shape}, the grain map {ids.shape}")
        mine = np.bincount(ids.ravel(), weights=region.ravel().astype(float), minlength=n + 1) > 0.5 * area_px
        mine[0] = False
        if not (present & mine).any():
            raise ConfigError(f"{what or source}: no grain in the region")
        present = present & mine
        inside = inside & mine[ids]
    n_edge = int((present & edge).sum())
    n_inside = int((present & ~edge).sum())
    # The field is a rectangle: E112 counts each of its corner grains 1/4, not 1/2 (a grain cut
    # by two edges lies about a quarter inside). Counting them half adds one grain to every field
    # (measured on randomly placed tessellations of 23 grains: +0.99 grains).
    corner_ids = np.array([ids[0, 0], ids[0, -1], ids[-1, 0], ids[-1, -1]])
    corner_ids = corner_ids[(corner_ids > 0) & present[corner_ids]]
    n_corner = len(set(corner_ids.tolist()))
    field_um2 = float(inside.sum()) * ps**2
    n_counted = n_inside + 0.5 * (n_edge - n_corner) + 0.25 * corner_ids.size
    n_a = n_counted / (field_um2 * 1e-6)
    # E112's average grain area is 1 / N_A (its Table 4), and the E112 rows give it with the ECD
    # of that area. The mean over the interior grains alone is biased low: the field's edge cuts
    # large grains more often than small ones (on the shared maps 12-29 % below 1 / N_A: SDSS
    # duplex 216.5 against 246.0 µm², EDAX Ni 165.4 / 197.5, M1700 0.62 / 0.83).
    mean_area = 1e6 / n_a if n_a > 0 else float("nan")
    mean_ecd = float(2 * np.sqrt(mean_area / np.pi)) if n_a > 0 else float("nan")

    # Label changes between neighbouring pixels along four line directions.
    pairs = (
        (ids[:, 1:], ids[:, :-1], 1.0),
        (ids[1:, :], ids[:-1, :], 1.0),
        (ids[1:, 1:], ids[:-1, :-1], math.sqrt(2)),
        (ids[1:, :-1], ids[:-1, 1:], math.sqrt(2)),
    )
    p_l = []
    for a, b, step in pairs:
        valid = (a > 0) & (b > 0)
        # Share of each step in the measured grains (1, 1/2 across an interface, 0 outside).
        share = (mine[a].astype(float) + mine[b]) / 2.0
        length = (share * valid).sum() * step * ps
        p_l.append((((a != b) & valid) * share).sum() / length if length > 0 else np.nan)
    mean_p_l = float(np.nanmean(p_l))
    intercept_um = 1.0 / mean_p_l if mean_p_l > 0 else float("inf")
    # E112 on a non-equiaxed structure: the intercepts along and across it differ, and one
    # section's G is no 3-D grain size. The directions' intercepts and their ratio say how much.
    directional = [1.0 / v if np.isfinite(v) and v > 0 else float("inf") for v in p_l]
    finite = [v for v in directional if math.isfinite(v)]
    anisotropy = max(finite) / min(finite) if len(finite) == len(directional) else float("nan")

    notes = []
    if n_counted < MIN_GRAINS:
        notes.append(f"{n_inside} interior and {n_edge} edge grains: fewer than the {MIN_GRAINS} grains ASTM E112 "
                     "counts; not a size statistic")
    if indexed_share < EBSD_MIN_INDEXED:
        # The grains that index are no sample of the section when a deformed or fine region does
        # not: the size is of what indexed, and most grains are cut by the holes.
        notes.append(f"only {100 * indexed_share:.1f} % of the map is indexed (below "
                     f"{100 * EBSD_MIN_INDEXED:.0f} %): the grains measured are those that index, not a sample "
                     f"of the section ({n_edge} of {n_inside + n_edge} touch an unindexed region or the edge)")
    reliable = not notes
    note = "; ".join(notes)
    if not reliable:
        warnings.warn(f"grain size of {what or source}: {note}", UserWarning, stacklevel=2)
    if anisotropy >= ELONGATED_ANISOTROPY and n_counted >= MIN_GRAINS:
        warnings.warn(f"grain size of {what or source}: {elongation_text(directional)}", UserWarning, stacklevel=2)
    common = {
        "n_grains": n_inside + n_edge,
        "n_edge_grains": n_edge,
        "n_corner_grains": n_corner,
        "n_a_per_mm2": n_a,
        "mean_intercept_um": intercept_um,
        **dict(zip(INTERCEPT_COLUMNS, directional, strict=True)),
        "anisotropy": anisotropy,
        "mean_area_um2": mean_area,
        "mean_ecd_um": mean_ecd,
        "field_area_um2": field_um2,
        "reliable": bool(reliable),
        "note": note,
    }
    interior_px = area_px[present & ~edge]
    common["mean_px_per_grain"] = float(interior_px.mean()) if interior_px.size else float("nan")
    rows = []
    if method in ("both", "planimetric", "all"):
        rows.append({"method": "planimetric", "G": astm_g_planimetric(n_a), **common})
    if method in ("both", "intercept", "all"):
        g = astm_g_intercept(intercept_um * 1e-3) if math.isfinite(intercept_um) else float("nan")
        row = {"method": "intercept", "G": g, **common}
        if intercept_um / ps < INTERCEPT_MIN_STEPS:
            coarse = (f"the mean intercept is {intercept_um / ps:.1f} points long (under {INTERCEPT_MIN_STEPS:g}): the "
                      "pixel grid misses intercepts and G reads low (0.2 at 3.1 points, 0.3 at 2.3); the planimetric row holds "
                      "(a finer step for both)")
            if common["reliable"]:
                warnings.warn(f"intercept grain size of {what or source}: {coarse}", UserWarning, stacklevel=2)
            row.update(reliable=False, note="; ".join(n for n in (common["note"], coarse) if n))
        rows.append(row)
    if method in ("e2627", "all"):
        rows.append(_e2627_row(interior_px, ps, int(min_grain_px), common, what or source))
    table = pd.DataFrame(rows)
    table.attrs["parameters"] = json.dumps(
        {"pixel_size_um": ps, "method": method, "boundary_px": boundary_px, "source": source,
         "region": region is not None, **({"indexed_share": round(indexed_share, 4)} if unindexed else {}),
         **({"min_grain_px": int(min_grain_px)} if method in ("e2627", "all") else {})}
    )
    return table


def _e2627_row(interior_px: np.ndarray, ps: float, min_grain_px: int, common: dict[str, Any], what: str) -> dict[str, Any]:
    """ASTM E2627's row: mean area of the interior grains of at least ``min_grain_px`` points."""
    kept = interior_px[interior_px >= min_grain_px] * ps**2
    mean_px = common["mean_px_per_grain"]
    notes = []
    if kept.size < MIN_GRAINS:
        notes.append(f"{kept.size} interior grains of >= {min_grain_px} points: fewer than {MIN_GRAINS}")
    if not mean_px >= E2627_MIN_MEAN_PX:
        notes.append(f"the average interior grain holds {mean_px:.0f} points; ASTM E2627 asks for at least "
                     f"{E2627_MIN_MEAN_PX} (a finer step)")
    note = "; ".join(notes)
    if note and common["reliable"]:
        warnings.warn(f"E2627 grain size of {what}: {note}", UserWarning, stacklevel=3)
    mean_area = float(kept.mean()) if kept.size else float("nan")
    n_a = 1e6 / mean_area if kept.size else float("nan")
    return {
        "method": "e2627",
        "G": astm_g_planimetric(n_a) if kept.size else float("nan"),
        **common,
        "n_grains": int(kept.size),
        "n_a_per_mm2": n_a,
        "mean_area_um2": mean_area,
        "mean_ecd_um": float((2 * np.sqrt(kept / np.pi)).mean()) if kept.size else float("nan"),
        "reliable": common["reliable"] and not note,
        "note": "; ".join(n for n in (common["note"], note) if n),
    }
