"""Texture fibres of the sample normal: the share of a map's area whose normal lies near a crystal direction.

Sheet steels are judged by their normal-direction (ND) fibres: the gamma fibre (<111> || ND)
makes a deep-drawing steel (high r-value), the theta fibre (<100> || ND) spoils it; hcp sheet
(Mg, Ti, Zr) by its basal fibre (<0001> || ND). The share of each fibre is read off the map as
the area (indexed points) whose sample normal lies within ``tolerance_deg`` of any direction of
the family, beside the share a random texture gives: the fraction of the sphere within that
angle of the family's directions (for 15 deg: <111> 13.6 %, <100> 10.2 %, <110> 20.4 %,
<0001> 3.4 %), so that "times random" says how strong the fibre is. Only the sample normal is
used: it is the map's z axis whatever the scan's in-plane convention, whereas rolling-direction
fibres (alpha, <110> || RD) depend on how the specimen was mounted.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from metallo.ebsd._neighbours import laue_by_phase, orientation_map
from metallo.ebsd._rotations import quat_to_matrix
from metallo.errors import ConfigError

__all__ = ["FIBRE_TOLERANCE_DEG", "MIN_TEXTURE_GRAINS", "fibre_shares"]

#: The usual tolerance of a texture fibre or component (degrees).
FIBRE_TOLERANCE_DEG = 15.0
#: Fewer grains of a phase than this, and its fibre shares are marked not reliable: each grain is
#: one crystal orientation, so a share of n grains scatters by about sqrt(p (1 - p) / n) (0.05 for
#: a 30 % share of 100 grains).
MIN_TEXTURE_GRAINS = 100

_CUBIC = (
    ("<111> || ND (gamma fibre)", ((1, 1, 1), (-1, 1, 1), (1, -1, 1), (1, 1, -1))),
    ("<100> || ND (theta fibre)", ((1, 0, 0), (0, 1, 0), (0, 0, 1))),
    ("<110> || ND", ((1, 1, 0), (1, -1, 0), (1, 0, 1), (1, 0, -1), (0, 1, 1), (0, 1, -1))),
)
_HEXAGONAL = (("<0001> || ND (basal fibre)", ((0, 0, 1),)),)
#: The fibres metallo measures per Laue group (crystal frame: cubic axes; hexagonal z = c).
FIBRES = {"m-3m": _CUBIC, "m-3": _CUBIC, "6/mmm": _HEXAGONAL, "6/m": _HEXAGONAL, "-3m": _HEXAGONAL, "-3": _HEXAGONAL}


def _unit(directions: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    d = np.asarray(directions, dtype=np.float64)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def _within(h: np.ndarray, directions: np.ndarray, tolerance_deg: float) -> np.ndarray:
    """Whether each unit vector of ``h`` lies within the tolerance of a direction or its opposite."""
    return np.abs(h @ directions.T).max(axis=1) >= np.cos(np.radians(tolerance_deg))


@functools.lru_cache(maxsize=64)
def _random_share(directions: tuple[tuple[int, int, int], ...], tolerance_deg: float) -> float:
    """The share of uniformly random directions (200,000, seeded) within the tolerance of the family."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=(200_000, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return float(_within(v, _unit(directions), tolerance_deg).mean())


def fibre_shares(ebsd: xr.Dataset, grains: Any = None, *, tolerance_deg: float = FIBRE_TOLERANCE_DEG) -> pd.DataFrame:
    """Each phase's share of area in its normal-direction texture fibres, beside a random texture's.

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map (sample normal = the map's z axis).
    grains : Grains or (y, x) ids, optional
        The map's grains (default: :func:`metallo.ebsd.grains` at 5 deg): a share is of as many
        independent crystals as the phase has grains, and below ``MIN_TEXTURE_GRAINS`` (100) its
        row is marked not reliable.
    tolerance_deg : float
        Largest angle between the sample normal and a direction of the fibre (default 15).

    Returns
    -------
    pd.DataFrame
        One row per phase of a cubic or hexagonal Laue group and fibre: ``phase``, ``fibre``,
        ``tolerance_deg``, ``n_points`` (indexed points of the phase), ``share`` (of them in the
        fibre), ``random_share`` (of a random texture), ``times_random``, ``n_grains`` (grains of
        the phase), ``reliable`` and ``note`` (why not). Empty for a map without such a phase.

    Examples
    --------
    >>> from metallo.synth import make_specimen
    >>> table = fibre_shares(make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd)
    >>> list(table["fibre"])[:1]
    ['<111> || ND (gamma fibre)']
    """
    from metallo._ebsd_dataset import phases_of

    if not 0 < tolerance_deg < 45:
        raise ConfigError(f"tolerance_deg must lie between 0 and 45 degrees; got {tolerance_deg!r}")
    from metallo.ebsd._grains import _ids_of
    from metallo.ebsd._grains import grains as find_grains

    omap = orientation_map(ebsd)
    ids = _ids_of(find_grains(ebsd) if grains is None else grains, omap)
    laue = laue_by_phase(ebsd)
    names = {int(p["id"]): str(p.get("name", p["id"])) for p in phases_of(ebsd) if "id" in p}
    ok = omap.indexed()
    rows = []
    for pid, symmetry in laue.items():
        fibres = FIBRES.get(symmetry.split(":")[0])
        sel = np.flatnonzero(ok & (omap.phase == pid))
        if not fibres or sel.size == 0:
            continue
        # Passive g maps sample to crystal coordinates: the normal in crystal coordinates.
        h = quat_to_matrix(omap.q[sel]) @ np.array([0.0, 0.0, 1.0])
        h /= np.linalg.norm(h, axis=1, keepdims=True)
        mine = ids[sel]
        n_grains = int(np.unique(mine[mine >= 0]).size)
        note = (f"the share of {n_grains} grains (fewer than {MIN_TEXTURE_GRAINS}): a texture needs more crystals than "
                "this map holds" if n_grains < MIN_TEXTURE_GRAINS else "")
        for name, directions in fibres:
            share = float(_within(h, _unit(directions), tolerance_deg).mean())
            random = _random_share(directions, float(tolerance_deg))
            rows.append({"phase": names.get(pid, str(pid)), "fibre": name, "tolerance_deg": float(tolerance_deg),
                         "n_points": int(sel.size), "share": share, "random_share": random,
                         "times_random": share / random if random > 0 else float("nan"), "n_grains": n_grains,
                         "reliable": not note, "note": note})
    columns = ["phase", "fibre", "tolerance_deg", "n_points", "share", "random_share", "times_random", "n_grains",
               "reliable", "note"]
    return pd.DataFrame(rows, columns=columns)
