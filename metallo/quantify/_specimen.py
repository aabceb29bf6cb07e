"""Run the quantifications on the label maps and EBSD maps of a Specimen."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from metallo.errors import ConfigError
from metallo.quantify._denuded import denuded_zone_width
from metallo.quantify._fractions import phase_fraction_ci, phase_fractions
from metallo.quantify._grains import grain_size
from metallo.quantify._laths import lath_widths
from metallo.quantify._particles import particle_sizes
from metallo.quantify._psd import lognormal_fit, size_distribution

__all__ = ["QUANTITIES", "quantify_specimen"]

#: What :func:`quantify_specimen` can measure.
QUANTITIES = ("particles", "phases", "grains", "denuded", "laths")

# Class names are matched by these words (case-insensitive).
_CLASS_WORDS = {
    "particle": ("particle", "cementite", "carbide", "precipitate"),
    "network": ("network",),
    "matrix": ("matrix", "denuded"),
    "widmanstatten": ("widman",),
    "lath": ("lath", "bainite", "martensite"),
}


def _classes(ds: xr.Dataset) -> list[str]:
    raw = ds.attrs.get("classes", ds["labels"].attrs.get("classes", "[]"))
    return list(json.loads(raw) if isinstance(raw, str) else raw)


def _find_class(classes: list[str], kind: str) -> int | None:
    words = _CLASS_WORDS[kind]
    for i, name in enumerate(classes):
        low = name.lower()
        if kind == "particle" and "network" in low:
            continue
        if any(w in low for w in words):
            return i
    return None


def _pixel_size(ds: xr.Dataset, node: str) -> float:
    for attrs in (ds["labels"].attrs, ds.attrs):
        value = attrs.get("pixel_size_um")
        if value is not None and math.isfinite(float(value)):
            return float(value)
    if "x" in ds.coords and ds.sizes.get("x", 0) > 1 and ds.x.attrs.get("units", "um") != "px":
        return float(abs(ds.x.values[1] - ds.x.values[0]))
    raise ConfigError(f"{node}: no pixel size (attrs pixel_size_um or x coordinates in µm)")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)


def quantify_specimen(
    spec: Any,
    *,
    what: Sequence[str] = QUANTITIES,
    labels: Sequence[str] | None = None,
    min_area_um2: float = 0.0,
    grain_tolerance_deg: float = 5.0,
    lath_threshold_deg: float = 2.0,
    overwrite: bool = False,
) -> dict[str, pd.DataFrame]:
    """Measure a specimen's label maps (and EBSD maps) and add the tables under ``quantities/``.

    Parameters
    ----------
    spec : metallo.specimen.Specimen
        The specimen; the new nodes are added to it (call ``spec.save()`` to write them).
    what : sequence of str
        Any of ``"particles"``, ``"phases"``, ``"grains"``, ``"denuded"``, ``"laths"``.
    labels : sequence of str, optional
        Label nodes (``annotations/...``, ``segmentations/...``); default all of them.
        Classes are found by name: particles ("particle", "cementite", "carbide"), network,
        matrix / denuded, Widmanstätten, laths ("lath", "bainite", "martensite").
    min_area_um2 : float
        Smallest particle kept (µm²).
    grain_tolerance_deg : float
        Grain reconstruction tolerance for ``metallo.ebsd.grains`` on each EBSD map.
    lath_threshold_deg : float
        Misorientation that separates laths in EBSD maps (lath boundaries in lath bainite
        are low-angle: a few degrees).
    overwrite : bool
        Replace quantity nodes from an earlier run.

    Returns
    -------
    dict
        Node name (``quantities/<label>_<what>``) -> the table added. Grain sizes come from
        ``ebsd/<map>`` (``metallo.ebsd.grains``) as ``quantities/<map>_grain_size``, EBSD lath
        widths as ``quantities/<map>_laths``; empty tables are not added. With
        two or more label maps sharing classes, ``quantities/phase_fractions_ci`` holds the
        E562 confidence interval over them.

    Examples
    --------
    >>> from metallo.annotate import add_annotation, from_ebsd
    >>> from metallo.specimen import Specimen
    >>> from metallo.synth import make_specimen
    >>> ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd   # a synthetic map
    >>> spec = Specimen.create("S1.h5", specimen_id="S1", overwrite=True)
    >>> add_annotation(spec, "bainite", from_ebsd(ebsd, rules="lath_bainite"))
    'annotations/bainite'
    >>> tables = quantify_specimen(spec, what=["phases"])
    >>> tables["quantities/bainite_phases"][["class", "fraction"]].round(3)
                   class  fraction
    0  polygonal_ferrite     0.817
    1       lath_bainite     0.183
    >>> spec.save().name
    'S1.h5'
    """
    unknown = sorted(set(what) - set(QUANTITIES))
    if unknown:
        raise ConfigError(f"unknown quantity {unknown}; choose from {', '.join(QUANTITIES)}")
    nodes = spec.nodes()
    if labels is None:
        labels = [n for n in nodes if n.startswith(("annotations/", "segmentations/"))]
    for node in labels:
        if node not in spec:
            raise ConfigError(f"{spec.path}: no label node {node!r}; nodes: {', '.join(nodes)}")
    out: dict[str, pd.DataFrame] = {}

    def add(name: str, table: pd.DataFrame, step: str, params: dict[str, Any], inputs: list[str]) -> None:
        node = f"quantities/{_safe(name)}"
        table = table.reset_index(drop=True)
        table.attrs = {"parameters": json.dumps(params)}
        spec.add(node, table, step=f"quantify.{step}", parameters=params, inputs=inputs, overwrite=overwrite)
        out[node] = table

    fields: dict[str, list[np.ndarray]] = {}
    for node in labels:
        ds = spec[node]
        lab = np.asarray(ds["labels"].values)
        classes = _classes(ds)
        ignore = int(ds.attrs.get("ignore_index", 255))
        short = node.split("/", 1)[1]
        if "phases" in what:
            table = phase_fractions(lab, classes=classes or None, ignore_index=ignore)
            add(f"{short}_phases", table, "phases", {"ignore_index": ignore, "classes": classes}, [node])
            fields.setdefault(json.dumps(classes), []).append(lab)
        if not {"particles", "denuded", "laths"} & set(what):
            continue
        ps = _pixel_size(ds, node)
        particle = _find_class(classes, "particle")
        if "particles" in what and particle is not None:
            table = particle_sizes(lab, pixel_size_um=ps, particle_class=particle, ignore_index=ignore,
                                   min_area_um2=min_area_um2)
            params = json.loads(table.attrs["parameters"])
            add(f"{short}_particles", table, "particles", params, [node])
            if len(table):
                psd = size_distribution(table, bins="auto")
                if len(table) >= 2:
                    psd.attrs["lognormal"] = json.dumps(lognormal_fit(table))
                add(f"{short}_psd", psd, "particles.psd", {**params, "column": "ecd_um"}, [node])
        network = _find_class(classes, "network")
        matrix = _find_class(classes, "matrix")
        if "denuded" in what and network is not None and matrix is not None and (lab == network).any():
            dz = denuded_zone_width(lab, network_class=network, matrix_class=matrix, pixel_size_um=ps,
                                    widmanstatten_class=_find_class(classes, "widmanstatten"),
                                    ignore_index=ignore)
            add(f"{short}_denuded", dz.interface, "denuded", dz.parameters, [node])
        lath = _find_class(classes, "lath")
        if "laths" in what and lath is not None and (lab == lath).any():
            table = lath_widths(lab, pixel_size_um=ps, lath_class=lath)
            if len(table):
                add(f"{short}_laths", table, "laths", json.loads(table.attrs["parameters"]), [node])

    if "phases" in what:
        for key, maps in fields.items():
            if len(maps) >= 2:
                classes = json.loads(key)
                table = phase_fraction_ci(maps, classes=classes or None)
                add("phase_fractions_ci", table, "phases.ci", {"confidence": 0.95, "classes": classes},
                    list(labels))
    ebsd_nodes = [n for n in nodes if n.startswith("ebsd/") and n.count("/") == 1]
    if ebsd_nodes and {"grains", "laths"} & set(what):
        from metallo import ebsd as mebsd

        for node in ebsd_nodes:
            # Intercepts and Jeffries counts assume square pixels: resample hexagonal grids.
            ebsd = mebsd.resample_to_square(spec[node])
            step = float(ebsd.attrs["step_um"])
            if "grains" in what:
                table = grain_size(mebsd.grains(ebsd, tolerance_deg=grain_tolerance_deg), pixel_size_um=step)
                params = {**json.loads(table.attrs["parameters"]), "tolerance_deg": grain_tolerance_deg}
                add(f"{node[5:]}_grain_size", table, "grains", params, [node])
            if "laths" in what:
                table = lath_widths(ebsd, threshold_deg=lath_threshold_deg)
                if len(table):
                    add(f"{node[5:]}_laths", table, "laths", json.loads(table.attrs["parameters"]), [node])
    return out
