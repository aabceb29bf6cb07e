"""Step adapter of ``metallo.quantify``: measure a Specimen's label maps and EBSD maps.

The recipe's ``quantify`` step and ``metallo quantify`` both call :func:`quantify_step`, so the
tables land under the same names either way: ``quantities/<group>.<name>.<what>``
(:func:`metallo.names.quantity`), e.g. ``quantities/segmentations.lom.phase_fractions``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from metallo import names
from metallo._ebsd_dataset import bcc_iron_only
from metallo._step import ebsd_sources, micrograph_of, write
from metallo._xarray import pixel_size_um, require_pixel_size_um
from metallo.errors import ConfigError
from metallo.quantify._denuded import denuded_zone_width
from metallo.quantify._fractions import (
    label_agreement,
    measurement_fields,
    phase_fraction_ci,
    phase_fractions,
)
from metallo.quantify._grains import EBSD_MIN_INDEXED, grain_size
from metallo.quantify._laths import lath_width_quality, lath_widths
from metallo.quantify._particles import particle_sizes
from metallo.quantify._psd import lognormal_fit, size_distribution

__all__ = ["QUANTITIES", "quantify_specimen", "quantify_step"]

#: What :func:`quantify_step` can measure (``quantify.<what>`` in provenance).
QUANTITIES = names.QUANTIFY_WHAT

# Class names are matched by these words (case-insensitive).
_CLASS_WORDS = {
    "particle": ("particle", "cementite", "carbide", "precipitate"),
    "network": ("network",),
    "matrix": ("matrix", "denuded"),
    "widmanstatten": ("widman",),
}
#: Class names of a label map that marks single laths (boundaries between them in another class):
#: the only label maps whose region widths are lath widths without being told so.
_LATH_MASK_NAMES = ("lath", "laths")


def _classes(ds: xr.Dataset) -> list[str]:
    raw = ds.attrs.get("classes", ds[names.LABELS].attrs.get("classes", "[]"))
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


#: A field this much one class holds that class alone (a field smaller than the structure).
_PURE_FIELD = 0.98


def _phase_tables(lab: np.ndarray, classes: list[str], ignore: int, grid: tuple[int, int],
                  where: str = "label map") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-field fractions and the E562 mean with its CI over fields, plus the whole-map fraction.

    Where most fields hold one class alone while the map is mixed, the fields are smaller than the
    microstructure: neighbouring fields are no independent samples, which the interval assumes
    (a two-region map cut into 600 one-pixel fields gave 33 % +- 3.8 %). That is warned about and
    said in ``overall.attrs["ci_note"]``.
    """
    whole = phase_fractions(lab, classes=classes or None, ignore_index=ignore)
    fields = measurement_fields(lab, grid=grid, ignore_index=ignore)
    # No field may be kept at all (labels scattered over the map, each field under a quarter
    # labelled: MTEX's interactive eclogite map, 617 points, 0.3 % of its grid): no field
    # rows then, and the whole-map fraction without a CI, as for one field.
    per_field = pd.concat(
        [phase_fractions(f, classes=classes or None, ignore_index=ignore).assign(field=i) for i, f in enumerate(fields)],
        ignore_index=True,
    ) if fields else whole.iloc[:0].assign(field=pd.Series([], dtype=np.int64))
    if len(fields) >= 2:
        overall = phase_fraction_ci(fields, classes=classes or None, ignore_index=ignore)
    else:  # one usable field or none: no spread to estimate, the CI is unknown (NaN), never invented
        overall = pd.DataFrame({"label": whole["label"], "class": whole["class"], "n_fields": len(fields),
                                "mean": whole["fraction"], "std": np.nan, "ci_halfwidth": np.nan,
                                "ci_low": np.nan, "ci_high": np.nan, "relative_accuracy_pct": np.nan})
    overall = overall.merge(whole[["label", "fraction"]], on="label", how="left")
    if len(fields) >= 2 and len(per_field) and float(whole["fraction"].max()) < _PURE_FIELD:
        pure = int((per_field.groupby("field")["fraction"].max() >= _PURE_FIELD).sum())
        if pure > len(fields) / 2:
            note = (f"{pure} of {len(fields)} measurement fields hold one class alone while the map is mixed: the fields "
                    "are smaller than the microstructure and neighbouring fields are no independent samples: the "
                    "interval assumes they are (with many fields it is far too narrow); measure fewer, larger fields, "
                    "or more micrographs")
            overall.attrs["ci_note"] = note
            warnings.warn(f"{where}: {note}", UserWarning, stacklevel=3)
    return per_field, overall


def _reference_of(spec: Any, node: str, classes: list[str]) -> str | None:
    """The annotation on the micrograph of segmentation ``node`` (same pixels, a class name in
    common) that it is checked against: the first such, e.g. the EBSD-informed labels carried
    onto the micrograph by the annotate step."""
    mic = micrograph_of(spec, node)
    if mic is None:
        return None
    shape = list(spec.describe(node)["variables"][names.LABELS]["shape"])
    for ann in names.members(spec.nodes(), names.ANNOTATIONS):
        meta = spec.describe(ann)  # metadata only: no annotation is read that is not used
        labels = meta["variables"].get(names.LABELS) or {}
        raw = meta["attrs"].get("classes", (labels.get("attrs") or {}).get("classes", "[]"))
        ann_classes = json.loads(raw) if isinstance(raw, str) else list(raw)
        if list(labels.get("shape") or []) == shape and set(ann_classes) & set(classes) and micrograph_of(spec, ann) == mic:
            return ann
    return None


def _ignore_as_255(lab: np.ndarray, ignore: int) -> np.ndarray:
    """The label map with its ignored pixels as 255, the ignore value of :func:`phase_fraction_ci`."""
    return lab if ignore == 255 else np.where(lab == ignore, 255, lab)


def _modality(spec: Any, micrograph: str) -> str:
    ds = spec[micrograph]
    image = ds[names.IMAGE] if names.IMAGE in getattr(ds, "data_vars", {}) else ds
    return str(image.attrs.get("modality", ds.attrs.get("modality", "other")))


def _across_micrographs(spec: Any, maps: Mapping[str, tuple[list[str], np.ndarray]]
                        ) -> tuple[pd.DataFrame, dict[str, Any], list[str]] | None:
    """ASTM E562 over micrographs: one field per micrograph, for the label maps QC judges.

    The fields of one micrograph are neighbours, and on real micrographs they vary less than
    micrographs of the same specimen do (docs/quantify.md), so the specimen's interval takes
    each micrograph's whole-map fraction as one field. The maps are those of the group QC
    judges (segmentations, else annotations) with the classes of its first map; a map on an EBSD
    grid, a second map of one micrograph (an annotation and its warped copy image the same area)
    and a micrograph of another modality (LOM and SEM of one spot) are not new fields and are
    left out, with the reason in the parameters. None when fewer than two micrographs remain.
    """
    group = names.SEGMENTATIONS if names.members(maps, names.SEGMENTATIONS) else names.ANNOTATIONS
    nodes = names.members(maps, group)
    if not nodes:
        return None
    classes = maps[nodes[0]][0]
    used: dict[str, str] = {}
    left_out: dict[str, str] = {}
    modality: str | None = None
    for node in nodes:
        mic = micrograph_of(spec, node)
        if maps[node][0] != classes:
            left_out[node] = f"other classes than {nodes[0]}"
        elif mic is None:
            left_out[node] = "not on a micrograph"
        elif mic in used.values():
            left_out[node] = f"a second label map of {mic}"
        elif modality is not None and _modality(spec, mic) != modality:
            left_out[node] = f"{mic} is {_modality(spec, mic)}, the others {modality}"
        else:
            modality = modality or _modality(spec, mic)
            used[node] = mic
    if len(used) < 2:
        return None
    # Micrographs of different magnifications weigh by the area they labelled, not their pixels.
    sizes = [pixel_size_um(spec[n][names.LABELS]) for n in used]
    areas = None if any(p is None for p in sizes) else [
        float(np.sum(maps[n][1] != 255)) * float(p) ** 2 for n, p in zip(used, sizes, strict=True)]  # type: ignore[arg-type]
    table = phase_fraction_ci([maps[n][1] for n in used], classes=classes or None, weights=areas)
    table = table.rename(columns={"n_fields": "n_micrographs"})
    params = {"confidence": 0.95, "classes": classes, "field": "micrograph", "label_maps": list(used),
              "micrographs": list(used.values()), "left_out": left_out,
              "weights": "labelled area (µm²)" if areas is not None else "labelled pixels (a pixel size is unknown)",
              "field_weights": [float(w) for w in (areas if areas is not None
                                                   else [np.sum(maps[n][1] != 255) for n in used])]}
    return table, params, list(used)


def quantify_step(
    spec: Any,
    *,
    what: Sequence[str] = QUANTITIES,
    labels: Sequence[str] | None = None,
    ebsd: Sequence[str] | None = None,
    fields: Sequence[int] = (3, 3),
    particles_class: str | None = None,
    lath_class: str | None = None,
    min_area_um2: float = 0.0,
    grain_tolerance_deg: float = 5.0,
    twins: str = "keep",
    lath_threshold_deg: float = 2.0,
    overwrite: bool = False,
    tag: Mapping[str, Any] | None = None,
) -> list[str]:
    """Measure a specimen's label maps (and EBSD maps) and add the tables under ``quantities/``.

    Parameters
    ----------
    spec : metallo.specimen.Specimen
        The specimen; the new nodes are added to it (call ``spec.save()`` to write them).
    what : sequence of str
        Any of ``"phases"``, ``"particles"``, ``"grains"``, ``"denuded"``, ``"laths"``, ``"texture"``
        (the normal-direction fibres of each EBSD map, :func:`metallo.ebsd.fibre_shares`).
    labels : sequence of str, optional
        Label nodes (``annotations/...``, ``segmentations/...``); default all of them.
        Classes are found by name: particles ("particle", "cementite", "carbide"), network,
        matrix / denuded, Widmanstätten; laths only as ``lath_class`` says.
    ebsd : sequence of str, optional
        EBSD maps for grain sizes, phase fractions and lath widths; default every current map (a map with a
        cleaned copy is measured through the copy). Parent-austenite nodes
        (``ebsd/<map>/parent``) of these maps give the prior-austenite grain size. Lath widths
        are measured on the maps named here, or, by default, only on maps with a parent-austenite
        reconstruction: on a map of polygonal grains the "lath width" is a number without meaning.
    fields : (int, int)
        Measurement fields (rows, columns) of the E562 phase-fraction confidence interval.
    particles_class : str, optional
        The class measured as particles (default: found by name as above).
    lath_class : str, optional
        The class of a label map that marks single laths, separated by boundary pixels of
        another class (inter-lath films labelled, or a lath mask); its region widths are the
        lath widths. Default: only a class named ``"lath"`` or ``"laths"``. A phase map's
        ``lath_bainite`` or ``martensite`` region is a block or packet of laths, not one lath:
        its widths are no lath widths (``metallo demo``'s true lath_bainite map gave a median of
        11.5 µm for laths drawn 0.5-1.0 µm wide), so such maps are not measured unless named here.
    min_area_um2 : float
        Smallest particle kept (µm²).
    grain_tolerance_deg : float
        Grain reconstruction tolerance for ``metallo.ebsd.grains`` on each EBSD map.
    twins : {"keep", "merge"}
        ``"merge"``: EBSD grain sizes count each grain with its Sigma3 (annealing) twins as one
        grain (:func:`metallo.ebsd.merge_twins`), as ASTM E112 counts austenitic grains.
        ``"keep"`` (default) counts twins as grains, and warns where they are at least a
        tenth of the grains (not on maps with a parent reconstruction: in lath martensite and
        bainite the 60 deg <111> boundaries are block boundaries, which must be kept). The table's parameters record the choice and
        the grain count without twins either way.
    lath_threshold_deg : float
        Misorientation that separates laths in EBSD maps (lath boundaries in lath bainite
        are low-angle: a few degrees).
    overwrite : bool
        Replace quantity nodes from an earlier run.
    tag : mapping, optional
        Extra provenance parameters (the pipeline's cache key).

    Returns
    -------
    list of str
        The nodes added, named by :func:`metallo.names.quantity`: ``phase_fields`` and
        ``phase_fractions`` (mean over fields with the 95 % CI, and the whole-map ``fraction``),
        ``particles`` and ``psd``, ``denuded``, ``laths`` of each label map; ``grain_size``
        (rows: ASTM E112 planimetric and intercept, ASTM E2627's mean area) and ``laths``
        of each EBSD map (and ``grain_size_by_phase`` where it has grains of two or more
        phases; ``twins``, the twin share of each phase's grain boundaries, where a phase has
        twin relations: Sigma3 in cubic phases, the hcp twins in hexagonal ones with lattice
        constants, :func:`metallo.ebsd.twin_boundaries`; ``phase_fields`` / ``phase_fractions`` of its phases where its header lists two
        or more, with a quality record that fails below :data:`EBSD_MIN_INDEXED` indexed); ``grain_size`` (the two E112 rows) of each parent-austenite node. Empty tables are not
        added. With label maps of two or more micrographs of one modality (the maps QC judges:
        segmentations, else annotations, with the classes of the first), ``names.PHASES_ACROSS_MAPS``
        holds the specimen's E562 mean and CI with one field per micrograph (``n_micrographs``).

    Examples
    --------
    >>> from metallo.annotate import add_annotation, from_ebsd
    >>> from metallo.specimen import Specimen
    >>> from metallo.synth import make_specimen
    >>> ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd   # a synthetic map
    >>> spec = Specimen.create("S1.h5", specimen_id="S1", overwrite=True)
    >>> add_annotation(spec, "bainite", from_ebsd(ebsd, rules="lath_bainite"))
    'annotations/bainite'
    >>> quantify_step(spec, what=["phases"], labels=["annotations/bainite"])
    ['quantities/annotations.bainite.phase_fields', 'quantities/annotations.bainite.phase_fractions']
    >>> table = spec["quantities/annotations.bainite.phase_fractions"].to_dataframe()
    >>> print(table[["class", "fraction"]].round(3).to_string(index=False))
                class  fraction
    polygonal_ferrite     0.817
         lath_bainite     0.183
    """
    unknown = sorted(set(what) - set(QUANTITIES))
    if unknown:
        raise ConfigError(f"unknown quantity {unknown}; choose from {', '.join(QUANTITIES)}")
    if twins not in ("keep", "merge"):
        raise ConfigError(f"twins must be 'keep' or 'merge'; got {twins!r}")
    where = str(getattr(spec, "path", "specimen"))
    nodes = spec.nodes()
    if labels is None:
        labels = names.members(nodes, *names.LABEL_GROUPS)
    for node in labels:
        if node not in spec:
            raise ConfigError(f"{where}: no label node {node!r}; nodes: {', '.join(nodes)}")
    grid = (int(fields[0]), int(fields[1]))
    out: list[str] = []

    def add(node: str, table: pd.DataFrame, step: str, params: dict[str, Any], inputs: list[str],
            replace: bool = False, quality: dict[str, Any] | None = None) -> None:
        table = table.reset_index(drop=True)
        table.attrs = {"parameters": json.dumps(params, default=str)}
        if quality is not None:
            table.attrs[names.QUALITY] = json.dumps(quality)
        out.append(write(spec, node, table, step=names.quantify_step(step), parameters=params, inputs=inputs,
                         overwrite=overwrite or replace, tag=tag))

    phase_maps: dict[str, tuple[list[str], np.ndarray]] = {}
    for node in labels:
        ds = spec[node]
        lab = np.asarray(ds[names.LABELS].values)
        classes = _classes(ds)
        ignore = int(ds.attrs.get("ignore_index", 255))
        if "phases" in what:
            per_field, overall = _phase_tables(lab, classes, ignore, grid, f"{where}: {node}")
            params = {"ignore_index": ignore, "classes": classes, "fields": list(grid), "confidence": 0.95,
                      **({"ci_note": overall.attrs["ci_note"]} if "ci_note" in overall.attrs else {})}
            add(names.quantity(node, names.PHASE_FIELDS), per_field, "phases", params, [node])
            add(names.quantity(node, names.PHASE_FRACTIONS), overall, "phases", params, [node])
            phase_maps[node] = (classes, _ignore_as_255(lab, ignore))
        if not {"particles", "denuded", "laths"} & set(what):
            continue
        if particles_class is not None:
            if particles_class not in classes:
                raise ConfigError(f"{where}: {node} has no class {particles_class!r}; classes: {', '.join(classes)}")
            particle: int | None = classes.index(particles_class)
        else:
            particle = _find_class(classes, "particle")
        network = _find_class(classes, "network")
        matrix = _find_class(classes, "matrix")
        if lath_class is not None:
            if lath_class not in classes:
                raise ConfigError(f"{where}: {node} has no class {lath_class!r}; classes: {', '.join(classes)}")
            lath: int | None = classes.index(lath_class)
        else:
            lath = next((i for i, c in enumerate(classes) if c.lower() in _LATH_MASK_NAMES), None)
        in_um = ("particles" in what and particle is not None) or (
            "denuded" in what and network is not None and matrix is not None and bool((lab == network).any())) or (
            "laths" in what and lath is not None and bool((lab == lath).any()))
        if not in_um:
            continue  # area fractions need no pixel size; nothing here is measured in µm
        ps = require_pixel_size_um(ds[names.LABELS], what=f"{where}: {node}")
        if "particles" in what and particle is not None:
            # Edge particles are left out (as DeCost et al. do) and each kept particle weighs by
            # the Miles-Lantuejoul factor: a large particle is cut by the frame more often, and
            # leaving the cut ones out alone biased the mean ECD low by 0.5-5.7 % on the 11 UHCS
            # particle micrographs (the larger the particles, the more).
            table = particle_sizes(lab, pixel_size_um=ps, particle_class=particle, ignore_index=ignore,
                                   min_area_um2=min_area_um2, edge_correction="miles")
            params = {**json.loads(table.attrs["parameters"]), "class": classes[particle] if classes else particle}
            add(names.quantity(node, names.PARTICLES), table, "particles", params, [node])
            if len(table):
                psd = size_distribution(table, bins="auto", weights="weight")
                psd_params: dict[str, Any] = {**params, "column": "ecd_um", "weights": "weight (Miles-Lantuejoul)"}
                if len(table) >= 2:
                    # Particles below min_area_um2 were left out: fit the log-normal truncated there.
                    cut = 2.0 * float(np.sqrt(min_area_um2 / np.pi)) if min_area_um2 > 0 else None
                    fit = lognormal_fit(table, weights=table["weight"].to_numpy(), truncated_below_um=cut)
                    psd_params["lognormal"] = {k: (v if np.isfinite(v) else None) for k, v in fit.items()}
                add(names.quantity(node, names.PSD), psd, "particles", psd_params, [node])
        if "denuded" in what and network is not None and matrix is not None and (lab == network).any():
            dz = denuded_zone_width(lab, network_class=network, matrix_class=matrix, pixel_size_um=ps,
                                    widmanstatten_class=_find_class(classes, "widmanstatten"),
                                    ignore_index=ignore)
            add(names.quantity(node, names.DENUDED), dz.interface, "denuded", dz.parameters, [node])
        if "laths" in what and lath is not None and (lab == lath).any():
            table = lath_widths(lab, pixel_size_um=ps, lath_class=lath)
            if len(table):
                add(names.quantity(node, names.LATHS), table, "laths", json.loads(table.attrs["parameters"]), [node],
                    quality=lath_width_quality(table, ps, what=f"{where}: {node}"))

    if "phases" in what:
        for node in names.members(phase_maps, names.SEGMENTATIONS):
            reference = _reference_of(spec, node, phase_maps[node][0])
            if reference is not None:
                table = label_agreement(spec[node][names.LABELS], spec[reference][names.LABELS],
                                        classes=phase_maps[node][0], reference_classes=_classes(spec[reference]),
                                        ignore_index=int(spec[node].attrs.get("ignore_index", 255)),
                                        reference_ignore_index=int(spec[reference].attrs.get("ignore_index", 255)))
                params = {"reference": reference, "accuracy": table.attrs["accuracy"],
                          "n_pixels": table.attrs["n_pixels"],
                          "share_of_map": table.attrs["n_pixels"] / max(1, int(np.sum(phase_maps[node][1] != 255)))}
                add(names.quantity(node, names.AGREEMENT), table, "phases", params, [node, reference])
    if "phases" in what and phase_maps:
        # Every label map measured so far, not only this run's: the specimen's table sums them all,
        # and is replaced whenever a map joins (the per-map tables it rests on stay).
        for node in names.members(spec.nodes(), *names.LABEL_GROUPS):
            if node not in phase_maps and names.quantity(node, names.PHASE_FRACTIONS) in spec:
                ds = spec[node]
                phase_maps[node] = (_classes(ds), _ignore_as_255(np.asarray(ds[names.LABELS].values),
                                                                 int(ds.attrs.get("ignore_index", 255))))
        across = _across_micrographs(spec, phase_maps)
        if across is not None:
            table, params, used = across
            add(names.PHASES_ACROSS_MAPS, table, "phases", params, used, replace=True)
    ebsd_nodes = list(ebsd) if ebsd is not None else ebsd_sources(spec)
    if "phases" in what:
        for node in ebsd_nodes:
            if node not in spec:
                raise ConfigError(f"{where}: no EBSD node {node!r}; nodes: {', '.join(nodes)}")
            measured_phases = _ebsd_phase_tables(spec[node], grid, f"{where}: {node}")
            if measured_phases is not None:
                per_field, overall, params, verdict = measured_phases
                # Judged like a step: QC says FAIL on fractions of too few indexed points.
                add(names.quantity(node, names.PHASE_FIELDS), per_field, "phases", params, [node])
                add(names.quantity(node, names.PHASE_FRACTIONS), overall, "phases", params, [node], quality=verdict)
    from metallo import ebsd as mebsd

    found: dict[str, Any] = {}

    def native_grains(node: str) -> Any:
        """The grains of an EBSD node on its own grid, found once in a run (texture, grain size,
        twin shares and misorientations all count them)."""
        if node not in found:
            found[node] = mebsd.grains(spec[node], tolerance_deg=grain_tolerance_deg)
        return found[node]

    if "texture" in what:
        for node in ebsd_nodes:
            if node not in spec:
                raise ConfigError(f"{where}: no EBSD node {node!r}; nodes: {', '.join(nodes)}")
            # Counted in grains at the grain-size tolerance: a share of few crystals says so.
            fibres = mebsd.fibre_shares(spec[node], native_grains(node))
            if len(fibres):
                add(names.quantity(node, names.TEXTURE), fibres, "texture",
                    {"tolerance_deg": mebsd.FIBRE_TOLERANCE_DEG, "sample_normal": "map z", "area": "indexed points",
                     "grain_tolerance_deg": grain_tolerance_deg}, [node])
    # Laths only where the user asks for this map or a parent reconstruction shows lath structure.
    lath_maps = set(ebsd_nodes) if ebsd is not None else {n for n in ebsd_nodes if names.parent(n) in spec}
    if ebsd_nodes and {"grains", "laths"} & set(what):
        for node in ebsd_nodes:
            if node not in spec:
                raise ConfigError(f"{where}: no EBSD node {node!r}; nodes: {', '.join(nodes)}")
            # Intercepts and Jeffries counts assume square pixels: resample hexagonal grids.
            # (spec[node] reads the node anew each time: one read, so that "square is native"
            # can tell a square map, whose grains are then found once.)
            native = spec[node]
            square = mebsd.resample_to_square(native)
            grains = None
            if "grains" in what:
                grains = native_grains(node) if square is native else mebsd.grains(square, tolerance_deg=grain_tolerance_deg)
            if grains is not None and not len(grains):
                # Scattered points (an interactive map) or nothing indexed: no grain to measure,
                # which is said, and the other measurements of the run go on.
                warnings.warn(f"{where}: {node}: no grain of at least two indexed points at {grain_tolerance_deg:g} deg: "
                              "no grain size, twin shares or boundary misorientations", UserWarning, stacklevel=2)
                grains = None
            if grains is not None:
                merged = mebsd.merge_twins(square, grains)
                twin_info = json.loads(merged.attrs["parameters"])
                measured: Any = grains
                if twins == "merge":
                    # -1 stays "not indexed" (not a boundary), as in the grains' own ids.
                    measured = merged.copy(data=np.where(merged.values >= 0, merged.values + 1, -1))
                    if bcc_iron_only(square) and twin_info["n_grains_before"] > twin_info["n_grains_after"]:
                        warnings.warn(
                            f"{where}: {node}: twins='merge' on a map of bcc iron, which has no annealing twins: the "
                            f"{twin_info['n_grains_before'] - twin_info['n_grains_after']} grains merged along Sigma3 are "
                            "blocks of martensite or bainite (variants), and the grain size is of merged blocks",
                            UserWarning, stacklevel=2)
                elif names.parent(node) not in spec and not bcc_iron_only(square) and twin_info["n_grains_before"] and (
                        twin_info["n_grains_before"] - twin_info["n_grains_after"] >= 0.1 * twin_info["n_grains_before"]):
                    # (A map with a parent reconstruction is martensite, and one of bcc iron alone
                    # has no annealing twins: their Sigma3 are block boundaries.)
                    cubic = twin_info["twin"].startswith("Sigma3")
                    warnings.warn(
                        f"{where}: {node}: {twin_info['n_grains_before'] - twin_info['n_grains_after']} of its "
                        f"{twin_info['n_grains_before']} grains are "
                        + ("Sigma3 twins of a neighbour; ASTM E112 counts austenitic grains without annealing twins "
                           "(quantify with twins='merge'); in lath martensite or bainite these are block boundaries "
                           "and are rightly kept" if cubic else
                           "hcp twins of a neighbour; quantify with twins='merge' measures the parent grains "
                           "without their twins"),
                        UserWarning, stacklevel=2,
                    )
                ps_um = require_pixel_size_um(square, what=f"{where}: {node}")
                # EBSD grains: ASTM E112's two rows and E2627's (the EBSD practice), which says
                # itself where the step is too coarse for it.
                table = grain_size(measured, pixel_size_um=ps_um, what=node, method="all")
                by_phase = _by_phase(measured, square, ps_um, node)
                for sizes in (table, by_phase):
                    _mark_interpolated(sizes, square, f"{where}: {node}")
                params = {**json.loads(table.attrs["parameters"]), "tolerance_deg": grain_tolerance_deg,
                          "twins": twins, "grains_with_twins": twin_info["n_grains_before"],
                          "grains_without_twins": twin_info["n_grains_after"]}
                add(names.quantity(node, names.GRAIN_SIZE), table, "grains", params, [node])
                if by_phase is not None:
                    add(names.quantity(node, names.GRAIN_SIZE_BY_PHASE), by_phase, "grains",
                        {**params, "region": True, "by": "phase"}, [node])
                # On the map's own grid (a hexagonal map's neighbours are not the resampling's),
                # so the shares are those `metallo ebsd` prints.
                on_native = grains if square is native else native_grains(node)
                twin_table = mebsd.twin_boundaries(native, on_native)
                if len(twin_table):
                    # Twin relations of the grains as found (twins kept): what share of each
                    # phase's grain boundaries they are.
                    add(names.quantity(node, names.TWINS), twin_table, "grains",
                        {"tolerance_deg": grain_tolerance_deg, "counted": "edge-neighbour pairs in different grains"},
                        [node])
                # The misorientation-angle distribution of the same boundaries, beside the random one.
                angles = mebsd.misorientation_distribution(native, on_native)
                if len(angles):
                    add(names.quantity(node, names.MISORIENTATIONS), angles, "grains",
                        {**json.loads(angles.attrs["parameters"]), "tolerance_deg": grain_tolerance_deg}, [node])
                parent = names.parent(node)
                if parent in spec and names.PARENT_GRAIN_ID in spec[parent]:
                    # Prior-austenite grain size (E112) of the reconstructed parent grains.
                    ids = spec[parent][names.PARENT_GRAIN_ID]
                    shifted = ids.copy(data=np.where(ids.values >= 0, ids.values + 1, 0))  # 0 = unassigned
                    table = grain_size(shifted, pixel_size_um=require_pixel_size_um(ids, what=f"{where}: {parent}"),
                                       what=f"{parent} (parent grains)")
                    add(names.quantity(parent, names.GRAIN_SIZE), table, "grains",
                        json.loads(table.attrs["parameters"]), [parent])
            if "laths" in what and node in lath_maps:
                table = lath_widths(square, threshold_deg=lath_threshold_deg)
                if len(table):
                    lath_params = json.loads(table.attrs["parameters"])
                    add(names.quantity(node, names.LATHS), table, "laths", lath_params, [node],
                        quality=lath_width_quality(table, lath_params["pixel_size_um"], what=f"{where}: {node}"))
    return out


def ebsd_phase_shares(ebsd: xr.Dataset) -> tuple[dict[str, float], float] | None:
    """Each listed phase's share of a multi-phase EBSD map's indexed points, and the share of its
    points that are indexed; None for a map of one phase or without an indexed point.

    Point counts are area fractions: each point of a square or hexagonal grid stands for the same
    area. ``metallo ebsd`` prints these; :func:`quantify_step` adds the interval over fields.

    Examples
    --------
    >>> from metallo.ebsd import ebsd_dataset
    >>> phase = np.array([[1, 1, 2, -1]], np.int16)
    >>> ebsd = ebsd_dataset(np.zeros((1, 4, 3)), phase, step_um=1.0, phases=[
    ...     {"id": 1, "name": "austenite", "symmetry": "m-3m"}, {"id": 2, "name": "ferrite", "symmetry": "m-3m"}])
    >>> shares, indexed = ebsd_phase_shares(ebsd)
    >>> {k: round(v, 3) for k, v in shares.items()}, indexed
    ({'austenite': 0.667, 'ferrite': 0.333}, 0.75)
    """
    from metallo._ebsd_dataset import phases_of

    phases = phases_of(ebsd)
    phase = np.asarray(ebsd["phase"].values)
    counts = np.array([(phase == int(p["id"])).sum() for p in phases], dtype=np.float64)
    if len(phases) < 2 or counts.sum() == 0:
        return None
    return ({str(p["name"]): float(c / counts.sum()) for p, c in zip(phases, counts, strict=True)},
            float(counts.sum() / phase.size))


def _ebsd_phase_tables(
    ebsd: xr.Dataset, grid: tuple[int, int], what: str,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], dict[str, Any]] | None:
    """Area fractions of the phases of a multi-phase EBSD map, per field and as the E562 mean
    with its 95 % CI over ``grid`` fields, their parameters and their quality record; None for a
    map of one phase.

    A duplex steel's austenite/ferrite balance, retained austenite in a TRIP or Q&P steel: the
    phase map is the measurement, no segmentation needed. Unindexed points are left out and their
    share is recorded (``indexed_share``); below :data:`EBSD_MIN_INDEXED` the record fails and a
    warning says the fractions may be biased.
    """
    from metallo import ebsd as mebsd
    from metallo._ebsd_dataset import phases_of

    measured = ebsd_phase_shares(ebsd)
    if measured is None:
        if len(phases_of(ebsd)) >= 2:
            raise ConfigError(f"{what}: no indexed point; its phase fractions cannot be measured")
        return None
    shares, indexed = measured
    classes = list(shares)
    # Fields are rectangles of the square grid (a hexagonal map is resampled, as for grain size);
    # the whole-map fraction is the map's own point count.
    phase = np.asarray(mebsd.resample_to_square(ebsd)["phase"].values)
    lab = np.full(phase.shape, 255, np.uint8)
    for i, p in enumerate(phases_of(ebsd)):
        lab[phase == int(p["id"])] = i
    per_field, overall = _phase_tables(lab, classes, 255, grid, what)
    overall["fraction"] = overall["class"].map(shares).to_numpy()
    params: dict[str, Any] = {"source": "EBSD phase map", "classes": classes, "fields": list(grid), "confidence": 0.95,
                              "indexed_share": round(indexed, 4), "min_indexed_share": EBSD_MIN_INDEXED,
                              **({"ci_note": overall.attrs["ci_note"]} if "ci_note" in overall.attrs else {})}
    invented = mebsd.invented_share(ebsd)
    params["invented_share"] = round(invented, 4)
    reasons = []
    if indexed < EBSD_MIN_INDEXED:
        reasons.append(f"{what}: phase fractions of the {100 * indexed:.1f} % of points that are indexed; a phase that "
                       f"indexes worse than the others is under-counted by what is missing (below {100 * EBSD_MIN_INDEXED:.0f} %)")
    if invented > mebsd.MAX_INVENTED:
        # A cleaned map's filled points carry their neighbours' phase: the fractions of an
        # interpolation, in which a phase that indexes worse is under-counted all the same.
        reasons.append(f"{what}: cleanup gave {100 * invented:.0f} % of the measured points a neighbour's orientation "
                       f"and phase (over {100 * mebsd.MAX_INVENTED:.0f} %): phase fractions of an interpolated map")
    for reason in reasons:
        warnings.warn(reason, UserWarning, stacklevel=3)
    quality = {names.PASSED: not reasons, "indexed_share": params["indexed_share"], "invented_share": params["invented_share"],
               "failure_reasons": reasons}
    return per_field, overall, params, quality


def _mark_interpolated(sizes: pd.DataFrame | None, ebsd: xr.Dataset, what: str) -> None:
    """Mark a grain-size table not reliable (in place) where cleanup invented more than
    :data:`metallo.ebsd.MAX_INVENTED` of the map's measured points: the grains are then grown
    over points that were never measured."""
    from metallo import ebsd as mebsd

    invented = mebsd.invented_share(ebsd)
    if sizes is None or not len(sizes) or invented <= mebsd.MAX_INVENTED:
        return
    note = (f"cleanup gave {100 * invented:.0f} % of the measured points a neighbour's orientation (over "
            f"{100 * mebsd.MAX_INVENTED:.0f} %): the grains of an interpolated map")
    sizes["note"] = [f"{n}; {note}" if isinstance(n, str) and n else note for n in sizes["note"]]
    sizes["reliable"] = False
    warnings.warn(f"grain size of {what}: {note}", UserWarning, stacklevel=3)


def _by_phase(measured: Any, ebsd: xr.Dataset, pixel_size_um: float, node: str) -> pd.DataFrame | None:
    """On a map with grains of two or more phases, the grain size of each phase (``phase``
    column), or None: a duplex steel's austenite and ferrite grain sizes are two numbers, and
    their mix is neither."""
    from metallo._ebsd_dataset import phases_of

    phase = np.asarray(ebsd["phase"].values)
    # A phase of a few points is no grain-size field; with fewer than two phases there is no
    # per-phase table (and its warnings would repeat the whole map's).
    fields = [p for p in phases_of(ebsd) if (phase == int(p["id"])).sum() >= 0.01 * phase.size]
    if len(fields) < 2:
        return None
    rows = []
    for p in fields:
        region = phase == int(p["id"])
        try:
            rows.append(grain_size(measured, pixel_size_um=pixel_size_um, what=f"{node} ({p['name']})",
                                   region=region, method="all").assign(phase=str(p["name"])))
        except ConfigError:  # no grain of that phase
            continue
    if len(rows) < 2:
        return None
    out = pd.concat(rows, ignore_index=True)
    return out[["phase", *[c for c in out.columns if c != "phase"]]]

def quantify_specimen(spec: Any, **options: Any) -> dict[str, pd.DataFrame]:
    """:func:`quantify_step`, returning ``{node: table}`` of the tables added.

    Examples
    --------
    >>> tables = quantify_specimen(spec, what=["phases"])  # doctest: +SKIP
    >>> spec.save()  # doctest: +SKIP
    """
    return {node: spec.table(node) for node in quantify_step(spec, **options)}
