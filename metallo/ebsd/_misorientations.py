"""Misorientation angles of a map's grain boundaries, and their distribution beside the random one.

The distribution of boundary misorientation angles is the first figure of an EBSD boundary
analysis (MTEX ``plotAngleDistribution``, OIM's misorientation chart): recrystallised or
randomly textured metal follows the random ("Mackenzie") distribution of its crystal symmetry,
deformed metal piles up below 15 deg, annealing twins make a peak at 60 deg (cubic), hcp
twins one near 86 deg (Mg {10-12}), and lath martensite peaks near 60 deg from its variant
pairs. Segments are counted as :func:`metallo.ebsd.twin_boundaries` counts them: every pair of
edge neighbours in different grains of one phase (both indexed) is one segment, so that the
distribution is weighted by boundary length (the staircase length of pixel edges).

The random reference is computed, not tabulated: the disorientation angles of 200,000 pairs
of uniformly random orientations under the phase's Laue group (for m-3m this is Mackenzie's
distribution: mean 40.7 deg, maximum 62.8 deg, mode near 45 deg).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from metallo.ebsd._grains import Grains, _ids_of
from metallo.ebsd._neighbours import (
    grain_boundary_pairs,
    laue_by_phase,
    orientation_map,
    pair_angles,
)
from metallo.ebsd._rotations import random_quaternions
from metallo.ebsd._symmetry import misorientation_angle

__all__ = ["HAGB_DEG", "MIN_BOUNDARIES", "boundary_misorientations", "misorientation_distribution", "misorientation_summary",
           "random_misorientation_angles"]

#: High-angle grain boundaries start here (degrees), as in :func:`metallo.ebsd.boundaries`.
HAGB_DEG = 15.0
#: Fewer distinct grain boundaries (grain pairs) than this, and a phase's distribution is
#: marked as no statistic (the same number of grains ASTM E112 asks for).
MIN_BOUNDARIES = 50
#: Pairs of random orientations drawn for the random reference.
_RANDOM_PAIRS = 200_000


@functools.lru_cache(maxsize=16)
def _random_angles(laue: str) -> np.ndarray:
    q1 = random_quaternions(_RANDOM_PAIRS, 1)
    q2 = random_quaternions(_RANDOM_PAIRS, 2)
    out = np.sort(misorientation_angle(q1, q2, symmetry=laue))
    out.setflags(write=False)
    return out


def random_misorientation_angles(laue: str) -> np.ndarray:
    """Disorientation angles (degrees, sorted) of 200,000 pairs of uniformly random orientations
    of Laue group ``laue``: the random (Mackenzie) reference, the same on every call.

    Examples
    --------
    >>> a = random_misorientation_angles("m-3m")
    >>> round(float(a.mean()), 1), round(float(a.max()), 0)
    (40.8, 63.0)
    """
    return _random_angles(str(laue))


def boundary_misorientations(ebsd: xr.Dataset, grains: Grains | xr.DataArray | np.ndarray) -> pd.DataFrame:
    """The misorientation angle of every grain-boundary segment of a map.

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map, square or hexagonal grid.
    grains : Grains or (y, x) ids
        Its grains (:func:`metallo.ebsd.grains`; -1 = none).

    Returns
    -------
    pd.DataFrame
        One row per segment (edge neighbours in different grains of one phase, both indexed):
        ``phase`` (its name), ``angle_deg`` (the disorientation under the phase's Laue group) and
        the two grains it separates (``grain_a`` < ``grain_b``).

    Examples
    --------
    >>> from metallo.synth import make_specimen
    >>> from metallo.ebsd import grains
    >>> ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd
    >>> segments = boundary_misorientations(ebsd, grains(ebsd))
    >>> list(segments.columns), bool((segments["angle_deg"] <= 62.81).all())
    (['phase', 'angle_deg', 'grain_a', 'grain_b'], True)
    """
    from metallo._ebsd_dataset import phases_of

    omap = orientation_map(ebsd)
    ids = _ids_of(grains, omap)
    label = {int(p["id"]): str(p.get("name", p["id"])) for p in phases_of(ebsd) if "id" in p}
    pairs = list(grain_boundary_pairs(omap, ids))
    a = np.concatenate([p[0] for p in pairs])
    b = np.concatenate([p[1] for p in pairs])
    phase = omap.phase[a]
    named = np.empty(phase.size, dtype=object)
    for pid in np.unique(phase):
        named[phase == pid] = label.get(int(pid), str(pid))
    return pd.DataFrame({"phase": named,
                         "angle_deg": pair_angles(omap, a, b),  # each phase under its own Laue group
                         "grain_a": np.minimum(ids[a], ids[b]), "grain_b": np.maximum(ids[a], ids[b])})


def misorientation_distribution(
    ebsd: xr.Dataset, grains: Grains | xr.DataArray | np.ndarray, *, bin_deg: float = 2.5
) -> pd.DataFrame:
    """The misorientation-angle distribution of each phase's grain boundaries, with the random one.

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map.
    grains : Grains or (y, x) ids
        Its grains.
    bin_deg : float
        Bin width (default 2.5 deg), from 0 to the largest disorientation of the phase's symmetry.

    Returns
    -------
    pd.DataFrame
        One row per phase and bin: ``phase``, ``bin_low_deg``, ``bin_high_deg``, ``n_segments``,
        ``share`` (of the phase's grain-boundary segments) and ``random_share`` (of random
        orientation pairs of the phase's symmetry). ``attrs["parameters"]`` (JSON) holds the bin
        width and, under ``summary``, per phase: ``laue``, ``n_segments``, ``n_boundaries``
        (distinct grain pairs; below 50 ``note`` says the distribution is no statistic),
        ``mean_deg``, ``median_deg``, ``hagb_share`` (segments at 15 deg or more) and the random
        reference's ``random_mean_deg`` and ``random_hagb_share`` (:func:`misorientation_summary`).

    Examples
    --------
    >>> from metallo.synth import make_specimen
    >>> from metallo.ebsd import grains
    >>> ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd
    >>> table = misorientation_distribution(ebsd, grains(ebsd))
    >>> round(float(table.groupby("phase")["share"].sum().iloc[0]), 6)
    1.0
    """
    from metallo.errors import ConfigError

    if not bin_deg > 0:
        raise ConfigError(f"bin_deg must be positive; got {bin_deg!r}")
    from metallo._ebsd_dataset import phases_of

    segments = boundary_misorientations(ebsd, grains)
    laue = laue_by_phase(ebsd)
    by_name = {str(p.get("name", p["id"])): laue.get(int(p["id"]), "m-3m") for p in phases_of(ebsd) if "id" in p}
    rows, summary = [], {}
    for name, group in segments.groupby("phase", sort=False):
        symmetry = by_name.get(str(name), "m-3m")
        reference = random_misorientation_angles(symmetry)
        angles = group["angle_deg"].to_numpy()
        top = max(float(reference[-1]), float(angles.max()))
        edges = np.arange(0.0, top + bin_deg, bin_deg)
        counts = np.histogram(angles, edges)[0]
        random_counts = np.histogram(reference, edges)[0]
        for lo, hi, n, r in zip(edges[:-1], edges[1:], counts, random_counts, strict=True):
            rows.append({"phase": str(name), "bin_low_deg": float(lo), "bin_high_deg": float(hi), "n_segments": int(n),
                         "share": float(n) / angles.size, "random_share": float(r) / reference.size})
        # Segments of one boundary are no independent draws: the statistic has as many as there
        # are grain pairs.
        n_boundaries = int(len(group[["grain_a", "grain_b"]].drop_duplicates()))
        note = (f"only {n_boundaries} grain boundaries (grain pairs): fewer than {MIN_BOUNDARIES}, the distribution "
                "is no statistic of the phase" if n_boundaries < MIN_BOUNDARIES else "")
        summary[str(name)] = {"laue": symmetry, "n_segments": int(angles.size), "n_boundaries": n_boundaries,
                              "note": note, "mean_deg": float(angles.mean()),
                              "median_deg": float(np.median(angles)), "hagb_share": float((angles >= HAGB_DEG).mean()),
                              "random_mean_deg": float(reference.mean()),
                              "random_hagb_share": float((reference >= HAGB_DEG).mean())}
    columns = ["phase", "bin_low_deg", "bin_high_deg", "n_segments", "share", "random_share"]
    table = pd.DataFrame(rows, columns=columns)
    table.attrs["parameters"] = json.dumps({"bin_deg": float(bin_deg), "hagb_deg": HAGB_DEG,
                                            "random_pairs": _RANDOM_PAIRS,
                                            "counted": "edge-neighbour pairs in different grains of one phase",
                                            "summary": summary})
    return table


def misorientation_summary(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per phase, the summary a :func:`misorientation_distribution` table carries in
    ``attrs["parameters"]``: ``laue``, ``n_segments``, ``n_boundaries``, ``note``, ``mean_deg``,
    ``median_deg``, ``hagb_share``, ``random_mean_deg``, ``random_hagb_share``. (A table read back
    from a Specimen has no attrs; the provenance of the step that wrote it holds the same
    parameters.)"""
    raw = table.attrs.get("parameters", "{}")
    params = json.loads(raw) if isinstance(raw, str) else dict(raw)
    return dict(params.get("summary", {}))
