"""The content of a QC report, built from whatever a specimen holds.

Each section appears only when its nodes exist (names from :mod:`metallo.names`), so a specimen
made by a recipe and one made command by command give the same report. The sections are plain
data (titles, tables as DataFrames, figures as data URIs); ``_html`` renders them with jinja2.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from metallo import names
from metallo._ebsd_dataset import grain_ecd_um
from metallo._step import check_reasons, micrograph_of
from metallo._xarray import require_pixel_size_um
from metallo.errors import FormatError
from metallo.report import _figures as figs
from metallo.report._qc import (
    across_label_maps,
    across_parameters,
    check_limits,
    failed_upstream,
    judged_qc,
    measured_fractions,
    quality_checks,
)

__all__ = ["Block", "Cell", "Section", "ebsd_key_figures", "grain_size_line", "misorientation_line", "quantity_lines",
           "report_sections", "stored_misorientation_summary", "texture_line"]


@dataclass(frozen=True)
class Cell:
    """One table cell: its text, whether it is a number, and a pass/fail badge class."""

    text: str
    numeric: bool = False
    badge: str = ""


@dataclass
class Block:
    """A heading (``h3``), paragraph (``p``), table, key-value table (``meta``) or figure."""

    kind: str
    text: str = ""
    badge: str = ""
    badge_text: str = ""
    frame: pd.DataFrame | None = None
    rows: list[list[Cell]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    uri: str = ""


@dataclass
class Section:
    """One ``<h2>`` section of the report."""

    key: str
    title: str
    blocks: list[Block] = field(default_factory=list)

    def tables(self) -> list[pd.DataFrame]:
        """The tables shown, as DataFrames (for comparing two reports)."""
        return [b.frame for b in self.blocks if b.kind == "table" and b.frame is not None]


# blocks ------------------------------------------------------------------------------------------
def _cell(value: Any) -> Cell:
    if isinstance(value, (bool, np.bool_)):
        return Cell(str(bool(value)))
    if isinstance(value, (int, np.integer)):
        return Cell(str(int(value)), numeric=True)
    if isinstance(value, (float, np.floating)):
        return Cell("" if np.isnan(value) else f"{float(value):.4g}", numeric=True)
    text = str(value)
    badge = {"PASS": "pass", "FAIL": "fail", "MISSING": "missing", "NOT ASSESSED": "missing"}.get(text, "")
    return Cell(text, badge=badge)


def table(frame: pd.DataFrame) -> Block:
    """A table block of a DataFrame (floats to 4 significant digits, PASS/FAIL as badges)."""
    frame = frame.reset_index(drop=True)
    rows = [[_cell(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    return Block("table", frame=frame, rows=rows, columns=[str(c) for c in frame.columns])


def _p(text: str, *, badge: str = "", badge_text: str = "") -> Block:
    return Block("p", text=text, badge=badge, badge_text=badge_text)


def _figure(fig: Any, alt: str) -> Block:
    return Block("figure", text=alt, uri=figs.png_data_uri(fig))


def _json_attr(attrs: Mapping[str, Any], key: str) -> dict[str, Any]:
    raw = attrs.get(key, "{}")
    value = json.loads(raw) if isinstance(raw, str) else raw
    return dict(value) if isinstance(value, Mapping) else {}


def _verdict(quality: Mapping[str, Any]) -> tuple[str, str]:
    """Badge class and text of a quality record's explicit pass/fail (``names.PASSED``)."""
    if names.PASSED not in quality:
        return "missing", "NOT ASSESSED"
    return ("pass", "PASS") if bool(quality[names.PASSED]) else ("fail", "FAIL")


def _quality_blocks(quality: Mapping[str, Any], what: str, **extra: Any) -> list[Block]:
    """The verdict badge and the quality record as a one-row table (run time left out)."""
    badge, text = _verdict(quality)
    record = {**extra, **_flat(quality)}
    for key in (names.PASSED, "seconds"):
        record.pop(key, None)
    blocks = [_p(f"{what}:", badge=badge, badge_text=text)]
    # The reasons are a list, which the one-row table leaves out: a FAIL badge without them
    # sent the reader to the Specimen file.
    reasons = check_reasons(quality) if names.PASSED in quality else []
    if reasons:
        blocks.append(_p(("Why it failed: " if not quality[names.PASSED] else "Notes: ") + "; ".join(reasons)))
    return [*blocks, table(pd.DataFrame([record]))]


def _flat(record: Mapping[str, Any]) -> dict[str, Any]:
    """Scalars of a quality record; nested summaries as ``key.sub``."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            out.update({f"{key}.{k}": v for k, v in value.items() if isinstance(v, (int, float, str, bool))})
        elif isinstance(value, (int, float, str, bool)):
            out[key] = value
    return out


def _extent(da: Any) -> tuple[float, float] | None:
    if "x" not in da.coords or da.x.attrs.get("units") != "um" or da.sizes["x"] < 2:
        return None
    return float(da.y[-1] - da.y[0]), float(da.x[-1] - da.x[0])


def _producer(spec: Any, node: str) -> dict[str, Any]:
    for record in reversed(spec.provenance):
        if node in (record.get("outputs") or []):
            return dict(record)
    return {}


# sections ----------------------------------------------------------------------------------------
def _specimen_section(spec: Any) -> Section:
    attrs = spec.attrs
    process = attrs.get("process", "{}")
    process = json.loads(process) if isinstance(process, str) else dict(process)
    nodes = spec.nodes()
    meta = [("specimen", attrs.get("specimen_id", "?")), ("material", attrs.get("material", "")),
            *[(k.replace("_", " "), v if isinstance(v, str) else json.dumps(v)) for k, v in process.items()],
            ("metallo version", attrs.get("metallo_version", "")),
            ("micrographs", ", ".join(names.leaf(n) for n in names.members(nodes, names.MICROGRAPHS)) or "none"),
            ("EBSD maps", ", ".join(names.leaf(n) for n in names.members(nodes, names.EBSD)) or "none")]
    block = Block("meta", rows=[[Cell(str(k)), Cell(str(v))] for k, v in meta])
    return Section("specimen", "Specimen and process", [block])


def _qc_frame(qc: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    rows = []
    for cls, r in qc.items():
        if r["status"] == "missing":
            rows.append({"class": cls, "mean (%)": np.nan, "95% CI low (%)": np.nan, "95% CI high (%)": np.nan,
                         "limits (%)": f"{r['min'] * 100:.1f}–{r['max'] * 100:.1f}", "QC": "MISSING",
                         "note": "class not found in the label map"
                                 + (f" (its classes: {', '.join(r['measured_classes'])})" if r.get("measured_classes") else "")})
            continue
        rows.append({"class": cls, "mean (%)": r["mean"] * 100, "95% CI low (%)": r["ci_low"] * 100,
                     "95% CI high (%)": r["ci_high"] * 100, "limits (%)": f"{r['min'] * 100:.1f}–{r['max'] * 100:.1f}",
                     "QC": r["status"].upper(),
                     "note": "; ".join(({True: [], False: ["CI crosses a limit"]}.get(r["ci_inside"],
                                                                                      ["no CI: one field"]))
                                       + ([f"reference labels disagree: {r['reference_disagrees']}"]
                                          if r.get("reference_disagrees") else []))})
    return pd.DataFrame(rows)


def _qc_blocks(spec: Any, quantity: str, frame: pd.DataFrame, limits: Mapping[str, Sequence[float]],
               checks: Mapping[str, Any], overall: str = "Overall:", segmentations: Sequence[str] = ()) -> list[Block]:
    """The QC badge and table of one phase-fraction table, FAIL where it rests on a failed node or
    where reference labels of the same pixels contradict the segmentations it comes from."""
    blocks: list[Block] = []
    qc = judged_qc(spec, frame, limits, segmentations, checks=checks)
    # Fractions that rest on a failed step are no QC figure, whatever the limits say.
    upstream = failed_upstream(spec, quantity, checks)
    if qc:
        ok = all(r["status"] == "pass" for r in qc.values()) and not upstream
        blocks += [_p(overall, badge="pass" if ok else "fail", badge_text="PASS" if ok else "FAIL"),
                   table(_qc_frame(qc))]
    for failed, reasons in upstream.items():
        blocks.insert(0, _p(f"These fractions rest on {failed}, which failed its quality check"
                            + (f": {reasons[0]}" if reasons else "") + ". They are not a QC figure.",
                            badge="fail", badge_text="FAIL"))
    return blocks


_ONE_IMAGE = ("Mean over the fields of this map with 95 % CI (ASTM E562). The fields of one micrograph show how "
              "this image varies, not how the specimen does; measure several micrographs for the specimen's interval")


_ONE_MAP = ("Mean over the fields of this map with 95 % CI (ASTM E562). The fields of one map show how this "
            "area varies, not how the specimen does; measure several maps for the specimen's interval")


def _phase_sections(spec: Any, limits: Mapping[str, Sequence[float]]) -> list[Section]:
    out = []
    checks = quality_checks(spec)
    across = across_label_maps(spec)
    for node in names.members(spec.nodes(), names.SEGMENTATIONS, names.ANNOTATIONS, names.EBSD):
        quantity = names.quantity(node, names.PHASE_FRACTIONS)
        if quantity not in spec:
            continue
        frame = spec.table(quantity)
        is_ebsd = names.group_of(node) == names.EBSD
        section = Section(f"phases:{node}", f"Phase fractions and QC — {node}" + (" (EBSD phases)" if is_ebsd else ""))
        if is_ebsd:
            params = _producer(spec, quantity).get("parameters") or {}
            share = float(params.get("indexed_share", float("nan")))
            low = share < float(params.get("min_indexed_share", 0.0))
            section.blocks.append(_p(f"Fractions of the indexed points of the map ({100 * share:.1f} % of its points): "
                                     + ("a phase that indexes worse than the others is under-counted by what is missing."
                                        if low else "point counts, each point standing for the same area."),
                                     badge="fail" if low else "", badge_text="DOUBTFUL" if low else ""))
        if node in across:
            section.blocks.append(_p(f"One of {len(across)} micrographs: the specimen's QC judges their mean "
                                     "(section \"Phase fractions of the specimen\")."))
        section.blocks += _qc_blocks(spec, quantity, frame, limits, checks,
                                     overall="This micrograph alone:" if node in across else "Overall:",
                                     segmentations=[node])
        agreement = names.quantity(node, names.AGREEMENT)
        if agreement in spec:
            params = _producer(spec, agreement).get("parameters") or {}
            section.blocks += [Block("h3", text=f"Against the reference labels of this micrograph "
                                                f"({params.get('reference', '?')}): accuracy "
                                                f"{100 * float(params.get('accuracy', float('nan'))):.1f} % on "
                                                f"{100 * float(params.get('share_of_map', float('nan'))):.0f} % of the map"),
                               table(spec.table(agreement))]
        section.blocks += [Block("h3", text=_ONE_MAP if is_ebsd else _ONE_IMAGE), table(frame),
                           _figure(figs.fractions_figure(frame, limits), f"phase fractions {node}")]
        fields_node = names.quantity(node, names.PHASE_FIELDS)
        if fields_node in spec:
            fields = spec.table(fields_node)
            wide = fields.pivot_table(index="field", columns="class", values="fraction").reset_index()
            wide.columns = [str(c) for c in wide.columns]
            section.blocks += [Block("h3", text="Per field"), table(wide)]
        out.append(section)
    if names.PHASES_ACROSS_MAPS in spec:
        frame = spec.table(names.PHASES_ACROSS_MAPS)
        params = across_parameters(spec)
        section = Section("phases:across", f"Phase fractions of the specimen — mean over {len(across)} micrographs")
        judged = measured_fractions(spec)
        section.blocks += _qc_blocks(spec, names.PHASES_ACROSS_MAPS, frame, limits, checks,
                                     overall="The specimen:" if judged and judged[0] == names.PHASES_ACROSS_MAPS else "Overall:",
                                     segmentations=across)
        section.blocks += [Block("h3", text="Mean over micrographs with 95 % CI (ASTM E562, one field per micrograph)"),
                           table(frame), _figure(figs.fractions_figure(frame, limits, title="phase fractions, 95% CI over micrographs"),
                                                 "phase fractions of the specimen")]
        used = dict(zip(params.get("label_maps") or [], params.get("micrographs") or [], strict=False))
        rows = [{"label map": n, "micrograph": m, "used": "yes"} for n, m in used.items()]
        rows += [{"label map": n, "micrograph": "", "used": f"no: {why}"} for n, why in (params.get("left_out") or {}).items()]
        section.blocks.append(table(pd.DataFrame(rows)))
        out.append(section)
    if limits and not out:
        # Limits set and nothing to judge: a verdict (FAIL), not a report silent on its limits.
        section = Section("phases:none", "Phase fractions and QC")
        section.blocks.append(_p(
            f"QC limits are set for {', '.join(limits)}, but the specimen holds no measured phase fractions "
            "(metallo quantify measures them from a label map or a multi-phase EBSD map): nothing is within "
            "its limits.", badge="fail", badge_text="FAIL"))
        out.append(section)
    return out


def _segmentation_sections(spec: Any) -> list[Section]:
    out = []
    for node in names.members(spec.nodes(), names.SEGMENTATIONS):
        seg = spec[node]
        labels = seg[names.LABELS]
        classes = json.loads(labels.attrs.get("classes", seg.attrs.get("classes", "[]")))
        model = labels.attrs.get("model", seg.attrs.get("model", ""))
        section = Section(f"segmentation:{node}", f"Segmentation — {names.leaf(node)} ({model})")
        mic = micrograph_of(spec, node)
        image = spec[mic][names.IMAGE] if mic is not None else None
        if image is not None and image.shape[:2] == labels.shape:
            section.blocks.append(_figure(figs.overlay_figure(image.values, labels.values, classes,
                                                              extent_um=_extent(image)),
                                          f"segmentation overlay {node}"))
        quality = _json_attr(seg.attrs, names.QUALITY)
        if quality:
            section.blocks += _quality_blocks(quality, "Segmentation quality")
        if names.UNCERTAINTY in seg:
            unc = np.asarray(seg[names.UNCERTAINTY].values, dtype=np.float64)
            section.blocks.append(table(pd.DataFrame([{
                "mean uncertainty": float(np.nanmean(unc)), "median uncertainty": float(np.nanmedian(unc)),
                "fraction > 0.5": float(np.nanmean(unc > 0.5))}])))
            backdrop = image.values if image is not None and image.shape[:2] == unc.shape else None
            section.blocks.append(_figure(figs.scalar_overlay_figure(backdrop, unc, title="segmentation uncertainty",
                                                                     label="uncertainty (0 certain – 1 uncertain)",
                                                                     extent_um=_extent(seg[names.UNCERTAINTY])),
                                          f"segmentation uncertainty {node}"))
        if names.NOVELTY in seg:
            novel = np.asarray(seg[names.NOVELTY].values, dtype=np.float64)
            backdrop = image.values if image is not None and image.shape[:2] == novel.shape else None
            section.blocks.append(_figure(figs.scalar_overlay_figure(
                backdrop, novel, title="regions unlike the training images",
                label="novel (share of models to which the region looks like no training image)",
                extent_um=_extent(seg[names.NOVELTY]), nan_label="not judged (edge strip narrower than a cell)"),
                f"segmentation novelty {node}"))
        out.append(section)
    return out


def _summary(frame: pd.DataFrame, column: str, unit: str, weights: np.ndarray | None = None) -> pd.DataFrame:
    """n, median, mean and p90 of a column; weighted (quantiles of the weighted distribution) with ``weights``."""
    values = frame[column].to_numpy(dtype=np.float64)
    w = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    ok = np.isfinite(values) & np.isfinite(w)
    values, w = values[ok], w[ok]
    if not values.size:
        return pd.DataFrame([{"n": 0, f"median ({unit})": np.nan, f"mean ({unit})": np.nan, f"p90 ({unit})": np.nan}])

    from metallo.quantify import weighted_quantile

    def quantile(q: float) -> float:
        return float(np.percentile(values, 100 * q)) if weights is None else weighted_quantile(values, w, q)

    return pd.DataFrame([{"n": int(values.size), f"median ({unit})": quantile(0.5),
                          f"mean ({unit})": float(np.average(values, weights=w)), f"p90 ({unit})": quantile(0.9)}])


def grain_size_line(row: Mapping[str, Any], what: str = "grain size") -> str:
    """One printed line for a grain-size row: G, the figure it rests on, and its doubt.

    The figure is E112's mean grain area 1/N_A (or the mean lineal intercept), not the interior
    grains' mean ECD: on a small map the interior grains are the fragments.
    """
    if row.get("method") == "intercept":
        basis = f"mean lineal intercept {float(row['mean_intercept_um']):.3g} µm"
        from metallo.quantify import ELONGATED_ANISOTROPY, INTERCEPT_COLUMNS, elongation_text

        anisotropy = row.get("anisotropy")
        if anisotropy is not None and np.isfinite(float(anisotropy)) and float(anisotropy) >= ELONGATED_ANISOTROPY:
            basis += f" ({elongation_text([float(row[c]) for c in INTERCEPT_COLUMNS])})"
    else:
        # E112's planimetric figure is 1/N_A over the whole field; E2627's is the interior grains' mean.
        area = "mean grain area" + (" 1/N_A" if row.get("method") == "planimetric" else "")
        basis = (f"{area} {float(row['mean_area_um2']):.3g} µm² "
                 f"(ECD of that area {float(row['mean_ecd_um']):.3g} µm)")
    phase = f" of {row['phase']}" if isinstance(row.get("phase"), str) and row.get("phase") else ""
    reliable = row.get("reliable", True)
    doubt = "" if reliable is None or bool(reliable) else f" (NOT RELIABLE: {row.get('note')})"
    return f"{what}{phase} ({row.get('method')}): G = {float(row['G']):.2f}, {basis}{doubt}"


def _failed(spec: Any, node: str) -> list[str]:
    """The reasons of a node's failed quality record; [] where it passed or has none."""
    check = quality_checks(spec).get(node) if node in spec else None
    return list(check["reasons"]) if check and not check["passed"] else []


def quantity_lines(spec: Any, node: str) -> list[str]:
    """The key figures of a quantity table, as lines for a terminal (``metallo quantify``).

    Grain sizes (G and what it rests on, with the reliability note), twin shares, and the weighted summary
    of particle sizes, denuded-zone widths and lath widths that the report's sections show.
    Other tables give no lines.
    """
    kind = names.leaf(node).rsplit(".", 1)[-1]
    frame = spec.table(node)
    if kind in (names.GRAIN_SIZE, names.GRAIN_SIZE_BY_PHASE):
        return [grain_size_line(row) for _, row in frame.iterrows()]
    if kind == names.TWINS:
        return [f"{row['phase']} {row['twin']} ({row['angle_deg']:g} deg {row['axis']}): {100 * row['share']:.1f} % of "
                f"{int(row['n_boundary_segments'])} grain-boundary segments{twin_random_text(row)}"
                + (f"; {twin_area_text(row)}" if "area_share" in row.index else "")
                + (f" (NOT RELIABLE: {row['note']})" if _unreliable(row) else "")
                for _, row in frame.iterrows()]
    if kind == names.TEXTURE:
        return [texture_line(frame)] if len(frame) else []
    if kind == names.MISORIENTATIONS:
        return [misorientation_line(phase, summary) for phase, summary in stored_misorientation_summary(spec, node).items()]
    columns = {names.PARTICLES: ("ecd_um", "ECD"), names.DENUDED: ("width_um", "width"),
               names.LATHS: ("width_um", "apparent width")}
    if kind not in columns or not len(frame) or columns[kind][0] not in frame:
        return []
    column, label = columns[kind]
    if kind == names.LATHS and "weight" in frame:
        from metallo.quantify import lath_width_summary

        stats = lath_width_summary(frame)
        return [f"{label}: n {int(stats['n'])} intercepts, median {stats['median_um']:.3g} µm, "
                f"mean {stats['mean_um']:.3g} µm (number-weighted)"
                + "".join(f" (NOT RELIABLE: {reason})" for reason in _failed(spec, node))]
    weights = frame["weight"].to_numpy(dtype=np.float64) if kind == names.PARTICLES and "weight" in frame else None
    row = _summary(frame, column, "µm", weights).iloc[0]
    corrected = weights is not None and bool(np.any(weights != 1.0))
    return [f"{label}: n {int(row['n'])}, median {row['median (µm)']:.3g} µm, mean {row['mean (µm)']:.3g} µm, "
            f"p90 {row['p90 (µm)']:.3g} µm" + (" (edge-corrected, Miles-Lantuéjoul weights)" if corrected else "")]


def twin_random_text(row: Any) -> str:
    """``" (random 1.8 %)"``: the share randomly oriented grains give, where the table has it."""
    random = row.get("random_share") if hasattr(row, "get") else None
    return f" (random {100 * float(random):.1f} %)" if random is not None and np.isfinite(float(random)) else ""


def twin_area_text(row: Any) -> str:
    """``"twins 16.7 % of the area"``, or for a phase of bcc iron (``boundary`` "no twin (bcc
    iron)") what its Sigma3-related grains are not: annealing twins."""
    share = f"{100 * float(row['area_share']):.1f} % of the area"
    if hasattr(row, "get") and row.get("boundary") == "no twin (bcc iron)":
        return (f"grains in that relation {share}; bcc iron has no annealing twins: in martensite or bainite "
                "these are block boundaries between variants")
    return f"twins {share}"


def _unreliable(row: Any) -> bool:
    """A table row marked not reliable (``reliable`` False); rows without the column are not."""
    reliable = row.get("reliable", True)
    return reliable is not None and not (isinstance(reliable, float) and np.isnan(reliable)) and not bool(reliable)


def stored_misorientation_summary(spec: Any, node: str) -> dict[str, dict[str, Any]]:
    """The per-phase summary (:func:`metallo.ebsd.misorientation_summary`) of a stored
    misorientation table, from the parameters its step recorded (a table read back from the
    Specimen has no attrs)."""
    params = _producer(spec, node).get("parameters") or {}
    params = json.loads(params) if isinstance(params, str) else params
    return dict(params.get("summary", {}))


def texture_line(fibres: pd.DataFrame) -> str:
    """``"texture (sample normal within 15 deg of): ferrite <111> 62.6 % (4.6 x random), ..."``:
    a :func:`metallo.ebsd.fibre_shares` table for a terminal."""
    parts = []
    for phase, rows in fibres.groupby("phase", sort=False):
        note = str(rows["note"].iloc[0]) if "note" in rows and rows["note"].iloc[0] else ""
        parts.append(f"{phase} " + ", ".join(f"{str(r['fibre']).split(' ')[0]} {100 * r['share']:.1f} % "
                                            f"({r['times_random']:.1f} x random)" for _, r in rows.iterrows())
                     + (f" (NOT RELIABLE: {note})" if note else ""))
    return f"texture (sample normal within {fibres['tolerance_deg'].iloc[0]:g} deg of): " + "; ".join(parts)


def misorientation_line(phase: str, summary: Mapping[str, Any]) -> str:
    """``"ferrite grain-boundary misorientation: mean 38.0 deg (random 40.8), ..."``: one phase's
    :func:`metallo.ebsd.misorientation_summary` for a terminal."""
    return (f"{phase} grain-boundary misorientation ({int(summary['n_segments'])} segments): mean "
            f"{summary['mean_deg']:.1f} deg (random {summary['random_mean_deg']:.1f}), median {summary['median_deg']:.1f} deg, "
            f"high-angle (>= 15 deg) {100 * summary['hagb_share']:.1f} % (random {100 * summary['random_hagb_share']:.1f} %)"
            + (f" (NOT RELIABLE: {summary['note']})" if summary.get("note") else ""))


def _distribution_sections(spec: Any) -> list[Section]:
    """Particles, denuded zones and lath widths of every source that has them."""
    kinds = ((names.PARTICLES, "Size distribution", "ecd_um", "ECD (µm)"),
             (names.DENUDED, "Denuded zones", "width_um", "denuded-zone width (µm)"),
             (names.LATHS, "Lath widths", "width_um", "apparent lath width (µm)"))
    nodes = spec.nodes()
    sources = [*names.members(nodes, *names.LABEL_GROUPS), *names.members(nodes, names.EBSD)]
    out = []
    for what, title, column, xlabel in kinds:
        for source in sources:
            quantity = names.quantity(source, what)
            if quantity not in spec:
                continue
            frame = spec.table(quantity)
            col = column if column in frame else str(frame.columns[0])
            params = _producer(spec, quantity).get("parameters") or {}
            detail = f" ({params['class']})" if what == names.PARTICLES and "class" in params else ""
            weights = frame["weight"].to_numpy(dtype=np.float64) if what in (names.LATHS, names.PARTICLES) and "weight" in frame else None
            if weights is not None and what == names.LATHS:
                from metallo.quantify import lath_width_summary

                stats = lath_width_summary(frame)
                summary = pd.DataFrame([{"n (intercepts)": int(stats["n"]), "median (µm)": stats["median_um"],
                                         "mean (µm)": stats["mean_um"], "std (µm)": stats["std_um"],
                                         "point-sampled mean (µm)": stats["mean_point_sampled_um"]}])
            else:
                summary = _summary(frame, col, "µm", weights)
            section = Section(f"{what}:{source}", f"{title} — {source}{detail}", [table(summary)])
            for reason in _failed(spec, quantity):
                section.blocks.insert(0, _p(f"NOT RELIABLE: {reason}", badge="fail", badge_text="FAIL"))
            if weights is not None and what == names.LATHS:
                section.blocks.insert(0, _p("Number-weighted: each lath crossing counts once. The grid points that "
                                            "sample the laths hit wide laths more often; their plain mean (point-"
                                            "sampled) is the length-weighted one."))
            if what == names.PARTICLES:
                corrected = weights is not None and bool(np.any(weights != 1.0))
                section.blocks.insert(0, _p("Particles touching the image edge are excluded"
                                            + ("; each kept particle weighs by the Miles-Lantuéjoul factor, which "
                                               "makes up for the large particles the edge cuts more often." if corrected else ".")))
                fit = (_producer(spec, names.quantity(source, names.PSD)).get("parameters") or {}).get("lognormal")
                if isinstance(fit, Mapping) and "median_um" in fit:
                    cut = fit.get("truncated_below_um")
                    section.blocks.append(_p(
                        f"Log-normal fit (maximum likelihood): median ECD {float(fit['median_um']):.3g} µm, "
                        f"sigma of ln ECD {float(fit['sigma']):.3g}, mean {float(fit['mean_um']):.3g} µm"
                        + (f"; fitted as truncated below the {float(cut):.3g} µm ECD of the minimum area, so it "
                           "describes the population the kept particles were cut from"
                           if isinstance(cut, (int, float)) and np.isfinite(cut) else "")))
            section.blocks.append(_figure(figs.histogram_figure(frame[col].to_numpy(), xlabel=xlabel, weights=weights,
                                                                title=f"{title.lower()}: {source}"), f"{what} {source}"))
            out.append(section)
    return out


def _too_few_grains(sizes: pd.DataFrame) -> str:
    """" — NOT RELIABLE: <why>" for a grain-size table counted on too few grains, else ""."""
    if "reliable" not in sizes or sizes["reliable"].all():
        return ""
    by_phase = "phase" in sizes  # per-phase rows of a multi-phase map: say which sizes
    doubtful = sizes[~sizes["reliable"].astype(bool)]
    # Which rows: all of them need no name; where only some are doubtful (E2627's row on a map
    # too coarse for it, beside sound E112 rows) their methods are named.
    parts: dict[tuple[str, str], list[str]] = {}
    for _, r in doubtful.iterrows():
        parts.setdefault((str(r["phase"]) if by_phase else "", str(r["note"])), []).append(str(r.get("method", "")))
    named = "method" in sizes and (len(doubtful) < len(sizes) or len(parts) > len({p for p, _ in parts}))
    texts = []
    for (phase, note), methods in parts.items():
        # E2627's note repeats E112's where both fail: say only what it adds.
        said = [n for (p, n) in parts if p == phase and n != note and note.startswith(n + "; ")]
        if said:
            note = note[len(said[0]) + 2:]
        listed = ", ".join(methods) if named else ""
        who = f"{phase} ({listed})" if phase and listed else phase or listed
        texts.append(f"{who}: {note}" if who else note)
    return " — NOT RELIABLE: " + "; ".join(texts)


def ebsd_key_figures(spec: Any, node: str) -> dict[str, Any]:
    """What a QC engineer checks of an EBSD map before trusting a number from it.

    Parameters
    ----------
    spec : Specimen
    node : str
        An EBSD map node (``ebsd/map``, ``ebsd/clean``).

    Returns
    -------
    dict
        ``map``, ``points`` (rows x columns), ``step_um``, ``field_um`` (width x height),
        ``indexed_pct`` (share of the grid's points that carry a phase), ``phases`` (each listed
        phase's share of the indexed points), ``cleanup`` (each step with the % of the measured
        points it changed), ``invented_pct`` (points given a neighbour's orientation), and from
        the map's derived node ``grains``, ``kam_mean_deg``, ``kam_kernel`` (its order, kernel
        and reach, order x step in µm: KAM grows with the reach), ``gos_mean_deg``; ``problems``: why
        numbers from the map are not measurements (below ``EBSD_MIN_INDEXED`` indexed, more than
        ``MAX_INVENTED`` invented), empty when none.

    Examples
    --------
    >>> ebsd_key_figures(spec, "ebsd/clean")["indexed_pct"]  # doctest: +SKIP
    98.7
    """
    from metallo._ebsd_dataset import phases_of
    from metallo.ebsd import MAX_INVENTED, invented_share
    from metallo.quantify import EBSD_MIN_INDEXED

    data = spec[node]
    phase = np.asarray(data["phase"].values)
    step = float(data.attrs.get("step_um", float("nan")))
    step_y = float(data.attrs.get("step_y_um", step))
    rows, cols = int(data.sizes["y"]), int(data.sizes["x"])
    indexed = float((phase >= 0).mean()) if phase.size else 0.0
    counts = {str(p.get("name", p.get("id"))): int((phase == int(p["id"])).sum()) for p in phases_of(data)}
    total = sum(counts.values())
    phases = ", ".join(f"{k} {100 * v / total:.1f} %" for k, v in counts.items() if v) if total else "none indexed"
    record = json.loads(data.attrs.get("cleanup", "[]") or "[]")
    cleanup = ", ".join(f"{r['step']} {100 * r.get('n_changed', 0) / max(1, r.get('n_measured') or phase.size):.1f} %"
                        for r in record) or "none"
    invented = invented_share(data)
    out: dict[str, Any] = {
        "map": node, "points": f"{rows} x {cols}", "step_um": step, "field_um": f"{cols * step:.4g} x {rows * step_y:.4g}",
        "indexed_pct": round(100 * indexed, 2), "phases": phases, "cleanup": cleanup,
        "invented_pct": round(100 * invented, 2),
    }
    derived = names.derived(node)
    if derived in spec:
        d = spec[derived]
        ids = np.asarray(d["grain_id"].values)
        valid = ids >= 0
        out["grains"] = int(np.unique(ids[valid]).size)
        kam = np.asarray(d["kam"].values, dtype=np.float64)
        out["kam_mean_deg"] = float(np.nanmean(kam)) if np.isfinite(kam).any() else float("nan")
        # KAM grows with the kernel's reach in µm (order x step): maps scanned at other steps are
        # compared only at one reach, so the row gives it.
        kam_params = json.loads(d["kam"].attrs.get("parameters", "{}") or "{}")
        if "order" in kam_params and np.isfinite(step):
            out["kam_kernel"] = (f"order {int(kam_params['order'])} ({kam_params.get('kernel', 'ring')}), "
                                 f"{int(kam_params['order']) * step:.3g} µm")
        present = [p for p in phases_of(data) if (phase == int(p["id"])).any()]
        if len(present) > 1 and kam.shape == phase.shape:
            # One mean over a duplex map mixes a soft and a hard phase: each phase's beside it.
            out["kam_mean_deg_by_phase"] = ", ".join(
                f"{p.get('name', p['id'])} {np.nanmean(kam[phase == int(p['id'])]):.3g}" for p in present
                if np.isfinite(kam[phase == int(p["id"])]).any())
        _, first = np.unique(ids[valid], return_index=True)
        gos = np.asarray(d["gos"].values, dtype=np.float64)[valid][first]
        out["gos_mean_deg"] = float(np.nanmean(gos)) if np.isfinite(gos).any() else float("nan")
    problems = []
    if indexed < EBSD_MIN_INDEXED:
        problems.append(f"only {100 * indexed:.1f} % of its points are indexed (below {100 * EBSD_MIN_INDEXED:.0f} %): "
                        "what indexes is no sample of the section, and a phase that indexes worse is under-counted")
    if invented > MAX_INVENTED:
        problems.append(f"cleanup gave {100 * invented:.0f} % of its measured points a neighbour's orientation (over "
                        f"{100 * MAX_INVENTED:.0f} %): grain sizes, phase fractions and KAM of an interpolated map are "
                        "not measurements")
    out["problems"] = "; ".join(problems)
    return out


def _ebsd_sections(spec: Any) -> list[Section]:
    """The EBSD maps: one row of key figures each, their problems, and the IPF map of each derived map."""
    from metallo._ebsd_dataset import phases_of
    from metallo.ebsd import ipf_colors, resample_to_square

    # As read first, then cleaned (the order of the chain, not of the alphabet).
    maps = sorted((n for n in names.members(spec.nodes(), names.EBSD) if "phase" in spec[n]),
                  key=lambda n: (bool(spec[n].attrs.get("cleanup")), n))
    if not maps:
        return []
    section = Section("ebsd", "EBSD maps")
    figures = [ebsd_key_figures(spec, n) for n in maps]
    for f in figures:
        if f["problems"]:
            section.blocks.append(_p(f"{f['map']} — NOT RELIABLE: {f['problems']}", badge="fail", badge_text="FAIL"))
    section.blocks.append(table(pd.DataFrame([{k: v for k, v in f.items() if k != "problems"} for f in figures])))
    for node in maps:
        texture = names.quantity(node, names.TEXTURE)
        if texture in spec:
            section.blocks += [
                Block("h3", text=f"Texture fibres of the sample normal — {node}"),
                _p("The share of each phase's area (indexed points) whose sample normal (the map's z axis) lies within "
                   "the tolerance of a direction of the fibre, beside a random texture's: a deep-drawing steel has a "
                   "strong <111> (gamma) fibre and a weak <100> (theta) one; hcp sheet a basal fibre."),
                table(spec.table(texture))]
        derived = names.derived(node)
        if derived not in spec:
            continue
        # A hexagonal grid is shown on square pixels (nearest point), as metallo's map images are.
        shown = resample_to_square(spec[node].assign(grain_id=spec[derived]["grain_id"]))
        tolerance = _json_attr(spec[derived].attrs, "parameters").get("grains", {}).get("tolerance_deg")
        said = f" ({tolerance:g} deg)" if isinstance(tolerance, (int, float)) else ""
        fig = figs.rgb_map_figure(ipf_colors(shown, direction="z"), grain_ids=np.asarray(shown["grain_id"].values),
                                  title=f"{node}: IPF colours of the sample normal (z)\nblack: grain boundaries{said}, "
                                        "unindexed points", extent_um=_extent(shown["phase"]))
        section.blocks.append(_figure(fig, f"IPF map {node}"))
        phases = [p for p in phases_of(shown) if (np.asarray(shown["phase"].values) == int(p["id"])).any()]
        if len(phases) > 1:
            # A multi-phase map's balance is read off its phase map (a duplex steel's austenite).
            phase = np.asarray(shown["phase"].values)
            rgb = np.zeros(phase.shape + (3,))
            legend = []
            for k, p in enumerate(phases):
                colour = figs.PALETTE[k % len(figs.PALETTE)]
                rgb[phase == int(p["id"])] = colour
                legend.append((str(p.get("name", p["id"])), colour))
            fig = figs.rgb_map_figure(rgb, grain_ids=np.asarray(shown["grain_id"].values), legend=legend,
                                      title=f"{node}: phases; black: grain boundaries{said}, unindexed points",
                                      extent_um=_extent(shown["phase"]))
            section.blocks.append(_figure(fig, f"phase map {node}"))
    return [section]


def _grain_sections(spec: Any) -> list[Section]:
    out = []
    for source in names.members(spec.nodes(), names.EBSD):
        quantity = names.quantity(source, names.GRAIN_SIZE)
        derived = names.derived(source)
        has_ids = derived in spec and "grain_id" in spec[derived]
        if quantity not in spec and not has_ids:
            continue
        section = Section(f"grains:{source}", f"Grain size — {source}")
        if quantity in spec:
            sizes = spec.table(quantity)
            if _too_few_grains(sizes):
                section.blocks.append(_p(_too_few_grains(sizes).removeprefix(" — ")))
            params = _producer(spec, quantity).get("parameters") or {}
            params = json.loads(params) if isinstance(params, str) else params
            kept, merged = params.get("grains_with_twins"), params.get("grains_without_twins")
            # Only where some grain is a twin of a neighbour: a map without any (a monoclinic
            # mineral, untwinned ferrite) needs no paragraph on how twins are counted.
            if "twins" in params and kept != merged:
                section.blocks.append(_p(
                    f"Twins {'merged into their grains' if params['twins'] == 'merge' else 'counted as grains'}: "
                    f"{kept} grains with twins, {merged} without. ASTM E112 counts austenitic (fcc) grains without "
                    "their annealing (Sigma3) twins; in ferrite, bainite or martensite a Sigma3 boundary is no "
                    "annealing twin and the grains are rightly counted with it. In hexagonal phases the twins are "
                    "those of the hcp twin relations, and merged grains are the parent grains."))
            section.blocks.append(table(sizes))
        by_phase = names.quantity(source, names.GRAIN_SIZE_BY_PHASE)
        if by_phase in spec:
            sizes = spec.table(by_phase)
            section.blocks += [Block("h3", text="Each phase on its own area" + _too_few_grains(sizes)), table(sizes)]
        twins = names.quantity(source, names.TWINS)
        if twins in spec:
            section.blocks += [Block("h3", text="Twin boundaries"),
                               _p("Share of each phase's grain-boundary segments (edge-neighbour pairs in different "
                                  "grains) whose misorientation lies within the tolerance of a twin relation: Sigma3 "
                                  "(60 deg <111>, Brandon) in cubic phases; the hcp twins at the phase's c/a "
                                  "(within 5 deg) in hexagonal ones. area_share: the share of the phase's area in "
                                  "twins of the relation (grains merged into a parent grain, other than its largest). "
                                  "random_share: the share boundaries between randomly oriented grains give (1.8 % "
                                  "for Sigma3): a share near it is no sign of twinning. Below 50 grain boundaries "
                                  "(n_grain_pairs) a share is no statistic of the phase. bcc iron has no annealing "
                                  "twins (boundary: no twin): in martensite and bainite a Sigma3 boundary is a block "
                                  "boundary between two variants."),
                               table(spec.table(twins))]
        angles = names.quantity(source, names.MISORIENTATIONS)
        if angles in spec:
            frame = spec.table(angles)
            summary = stored_misorientation_summary(spec, angles)
            section.blocks += [
                Block("h3", text="Boundary misorientation angles"),
                _p("The disorientation angle of each grain-boundary segment (edge neighbours in different grains of "
                   "one phase), beside the random distribution of the phase's symmetry (Mackenzie's for cubic "
                   "phases): a peak at 60 deg in austenite marks annealing twins, near 86 deg in magnesium "
                   "{10-12} twins; a share below 15 deg above the random one, deformation substructure."),
                table(pd.DataFrame([{"phase": k, **v} for k, v in summary.items()])),
                _figure(figs.misorientation_figure(frame, title=f"grain-boundary misorientation angles: {source}",
                                                   few={k: int(v.get("n_boundaries", 0)) for k, v in summary.items()
                                                        if v.get("note")}),
                        f"misorientation angles {source}")]
        if has_ids:
            require_pixel_size_um(spec[source], what=source)
            ids = np.asarray(spec[derived]["grain_id"].values)
            # Grains cut by the map edge show only part of their area: the histogram leaves them out.
            cut = np.unique(np.concatenate([ids[0, :], ids[-1, :], ids[:, 0], ids[:, -1]]))
            ecd = grain_ecd_um(np.where(np.isin(ids, cut[cut >= 0]), -1, ids), spec[source])
            section.blocks.append(_figure(figs.histogram_figure(ecd, xlabel="grain ECD (µm)",
                                                                title=f"EBSD grain size distribution (grains inside the "
                                                                      f"map, {ecd.size}): {source}"),
                                          f"grain size {source}"))
        out.append(section)
    return out


def _stat(record: Mapping[str, Any], key: str, sub: str = "median") -> float | None:
    """``record[key][sub]`` (or ``record[key]`` when it is a number), None when absent."""
    value = record.get(key)
    if isinstance(value, Mapping):
        value = value.get(sub)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def registration_key_figures(quality: Mapping[str, Any], residual_um: np.ndarray | None = None) -> pd.DataFrame:
    """The evidence a registration was judged by, each figure beside the affine start's.

    Rows only for what the record holds (``method="auto"`` records all of them; the other methods
    few). Columns: ``figure``, ``start`` (the affine start), ``result`` and ``reads`` (which way
    is better, or what it is).

    Examples
    --------
    >>> q = {"structure_ncc_start": 0.66, "structure_ncc": 0.70, "inverse_consistency_px": {"median": 0.04}}
    >>> registration_key_figures(q)["figure"].tolist()
    ['structure agreement, coarse (NCC)', 'forward -> reverse -> forward round trip (median px)']
    """
    def part(record: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = record.get(key)
        return value if isinstance(value, Mapping) else {}

    cp = part(quality, "control_points")
    weights = part(part(quality, "both_ways"), "weights")
    from metallo.correlate import calibration_scale, gate_rejected

    # Points the gate rejected are no part of the result (the affine start): say so where they are counted.
    rejected = "; rejected by the gate, the result is the start" if gate_rejected(quality) else ""
    rows: list[tuple[str, float | None, float | None, str]] = [
        ("structure agreement, coarse (NCC)", _stat(quality, "structure_ncc_start"), _stat(quality, "structure_ncc"), "higher is better"),
        ("structure agreement, matching scale (NCC)", _stat(quality, "structure_ncc_fine_start"), _stat(quality, "structure_ncc_fine"),
         "higher is better"),
        ("section outlines apart (median px)", _stat(quality, "outline_px_start"), _stat(quality, "outline_px"), "lower is better"),
        ("section outlines apart (p95 px)", _stat(quality, "outline_px_start", "p95"), _stat(quality, "outline_px", "p95"), "lower is better"),
        ("control points kept", None, _stat(cp, "inliers"), (f"of {int(cp['candidates'])} matched" if "candidates" in cp else "") + rejected),
        ("control points, held-out error (median px)", None, _stat(cp, "held_out_px"), "each point predicted without its tile" + rejected),
        ("given points, leave-one-out error (median px)", None, _stat(quality, "landmark_loo_px"),
         "each given point predicted by the spline through the others"),
        ("forward -> reverse -> forward round trip (median px)", None, _stat(quality, "inverse_consistency_px"), "lower is better"),
        ("share of the overlap where both directions agree", None, _stat(weights, "agreed"),
         "higher is better (judged with the round trip)" + (rejected and "; of the splines the gate rejected")),
        ("overlap (share of the fixed field)", None, _stat(quality, "overlap_fraction"), ""),
    ]
    far = calibration_scale(quality)
    if far is not None:
        # Both images calibrated: it should be about 1.
        tolerance = float(part(quality, "calibration").get("tolerance", 1.15))
        rows.append(("scale between the two calibrations (fixed µm per moving µm)", None, far,
                     f"about 1; beyond x{tolerance:g} (or below 1/{tolerance:g}) one pixel size is wrong"))
    if residual_um is not None and np.isfinite(residual_um).any():
        rows.append(("expected error, residual map (median µm)", None, float(np.nanmedian(residual_um)), "see the map below"))
    frame = pd.DataFrame([r for r in rows if r[1] is not None or r[2] is not None], columns=["figure", "start", "result", "reads"])
    return frame


def _registration_sections(spec: Any) -> list[Section]:
    out = []
    for node in names.members(spec.nodes(), names.REGISTRATION):
        ds = spec[node]
        quality = _json_attr(ds.attrs, names.QUALITY)
        blocks = _quality_blocks(quality, "Registration quality", fixed=ds.attrs.get("fixed", ""),
                                 moving=ds.attrs.get("moving", ""), transform=ds.attrs.get("transform_type", ""))
        if names.PASSED not in quality:
            method = quality.get("method", "this method")
            blocks.insert(1, _p(f"Method {method!r} does not judge its own result: nothing here says whether the warp "
                                "can be trusted. method='auto' (the default) is judged by evidence it was not fitted to."))
        else:
            residual = np.asarray(ds[names.RESIDUAL].values, dtype=np.float64) if names.RESIDUAL in ds else None
            key = registration_key_figures(quality, residual)
            note = (quality.get("calibration") or {}).get("note") if isinstance(quality.get("calibration"), Mapping) else None
            if note:
                blocks.insert(1, _p(f"Calibration: {note}.", badge="missing", badge_text="CHECK PIXEL SIZE"))
            if len(key):
                # The evidence first, beside the start's; the whole record after it.
                blocks.insert(len(blocks) - 1, table(key))
                blocks.insert(len(blocks) - 1, _p("Full quality record:"))
        section = Section(f"registration:{node}", f"Registration — {names.leaf(node)}", blocks)
        if names.RESIDUAL in ds:
            res = ds[names.RESIDUAL]
            section.blocks.append(_figure(figs.scalar_overlay_figure(None, np.asarray(res.values, dtype=np.float64),
                                                                     title="registration residual: expected error per region",
                                                                     label="expected error (µm)", extent_um=_extent(res),
                                                                     nan_label="not verified (no evidence)"),
                                          f"registration residual {node}"))
        try:
            uri = _registration_overlay(spec, node)
        except FormatError as exc:  # a registration node this version cannot rebuild: say so, show the rest
            section.blocks.append(_p(f"Overlay not drawn: {exc}"))
            uri = None
        if uri:
            section.blocks.append(Block("figure", text=f"registration {node}", uri=uri))
        out.append(section)
    return out


def _registration_overlay(spec: Any, node: str) -> str | None:
    """Checkerboards before/after and the colour overlay of a stored registration, as a data URI."""
    import base64
    import tempfile
    from pathlib import Path

    from metallo.correlate import Registration, overlay_figure
    from metallo.ebsd import map_image

    ds = spec[node]
    fixed, moving = str(ds.attrs.get("fixed", "")), str(ds.attrs.get("moving", ""))
    if fixed not in spec or moving not in spec:
        return None
    moving_ds = spec[moving]
    moving_image = moving_ds[names.IMAGE] if names.IMAGE in moving_ds else map_image(moving_ds)
    with tempfile.TemporaryDirectory() as tmp:
        png = overlay_figure(Registration.from_dataset(ds), spec[fixed][names.IMAGE], moving_image, Path(tmp) / "reg.png")
        return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _parent_sections(spec: Any) -> list[Section]:
    out = []
    for node in names.sub_nodes(spec.nodes(), names.PARENT):
        ds = spec[node]
        section = Section(f"parent:{node}", f"Parent austenite — {names.map_of(node)}")
        quality = _json_attr(ds.attrs, names.QUALITY)
        orel = _json_attr(ds.attrs, "orientation_relationship")
        fit = _json_attr(ds.attrs, "or_fit")
        rows = []
        if orel:
            rows.append({"": "orientation relationship",
                         "value": f"{orel.get('name', '')}: {orel.get('deviation_from_ks_deg', float('nan')):.2f}° from KS, "
                                  f"{orel.get('deviation_from_nw_deg', float('nan')):.2f}° from NW"})
        if fit:
            q = fit.get("misfit_quantiles_deg", {})
            rows.append({"": "OR fit",
                         "value": f"{fit.get('method', '')}, {fit.get('n_boundaries', 0)} boundaries; misfit quartiles "
                                  f"{q.get('q25', float('nan')):.2f} / {q.get('q50', float('nan')):.2f} / "
                                  f"{q.get('q75', float('nan')):.2f}°; {fit.get('explained_fraction', float('nan')):.0%} "
                                  f"within {fit.get('explained_deg', 5):g}° (random: {fit.get('chance_fraction', float('nan')):.0%})"})
            if fit.get("n_high_angle_pairs"):
                rows.append({"": "high-angle pixel pairs explained",
                             "value": f"{fit['high_angle_explained_fraction']:.1%} of {fit['n_high_angle_pairs']} "
                                      f"neighbour pairs > 15° apart, within {fit.get('explained_deg', 5):g}°"})
        if quality:
            section.blocks += _quality_blocks(quality, "Reconstruction quality")
            rows += [{"": "warning", "value": str(w)} for w in quality.get("warnings", [])]
        if rows:
            section.blocks.append(table(pd.DataFrame(rows)))
        if names.PARENT_GRAIN_ID in ds:
            ids = ds[names.PARENT_GRAIN_ID]
            if "pag_boundary" in ds and "packet" in ds:
                fig = figs.parent_figure(np.asarray(ids.values), np.asarray(ds["pag_boundary"].values),
                                         np.asarray(ds["packet"].values), extent_um=_extent(ids))
            else:
                fig = figs.grain_map_figure(np.asarray(ids.values), title="parent austenite grains", extent_um=_extent(ids))
            section.blocks.append(_figure(fig, f"parent grains {node}"))
        pag = names.quantity(node, names.GRAIN_SIZE)
        if pag in spec:
            failed = bool(quality) and not quality.get(names.PASSED, True)
            sizes = spec.table(pag)
            section.blocks += [Block("h3", text="Prior-austenite grain size (ASTM E112)"
                                     + (" — FAIL: the reconstruction failed, these are not prior-austenite grains" if failed else "")
                                     + _too_few_grains(sizes)),
                               table(sizes)]
        substructure = names.quantity(node, "substructure")
        if substructure in spec:
            section.blocks += [Block("h3", text="Packets, blocks, variants"), table(spec.table(substructure))]
        if names.OR_MISFIT in ds:
            misfit = np.asarray(ds[names.OR_MISFIT].values, dtype=np.float64)
            misfit = misfit[np.isfinite(misfit)]
            if misfit.size:
                section.blocks += [Block("h3", text="Orientation-relationship misfit"),
                                   table(pd.DataFrame([{"n": int(misfit.size), "median (°)": float(np.median(misfit)),
                                                        "mean (°)": float(misfit.mean()),
                                                        "p90 (°)": float(np.percentile(misfit, 90))}]))]
        out.append(section)
    return out


def _provenance_section(spec: Any) -> Section:
    frame = pd.DataFrame(
        [{"#": i + 1, "step": r.get("step", ""), "outputs": ", ".join(r.get("outputs") or []),
          "inputs": ", ".join(r.get("inputs") or []), "time (UTC)": r.get("time_utc", ""),
          "version": r.get("metallo_version", "")} for i, r in enumerate(spec.provenance)]
    )
    return Section("provenance", "Provenance", [table(frame)] if len(frame) else [_p("no steps recorded")])


def report_sections(spec: Any, limits: Mapping[str, Sequence[float]] | None = None) -> list[Section]:
    """The sections of a specimen's QC report, each present only when its nodes exist.

    Parameters
    ----------
    spec : Specimen
    limits : mapping, optional
        Phase-fraction limits ``{class: [min, max]}`` as fractions.

    Returns
    -------
    list of Section
        Specimen; phase fractions and QC (per label map); segmentations (overlay, uncertainty);
        particle sizes, denuded zones, lath widths; EBSD maps (key figures, texture fibres, IPF
        and phase maps); grain size (with twin shares and boundary misorientations); registration (quality with
        pass/fail, residual map); parent austenite (grain map, PAG size, OR misfit); provenance.

    Examples
    --------
    >>> [s.title for s in report_sections(spec)][:1]  # doctest: +SKIP
    ['Specimen and process']
    """
    limits = check_limits(limits)
    return [_specimen_section(spec), *_phase_sections(spec, limits), *_segmentation_sections(spec),
            *_distribution_sections(spec), *_ebsd_sections(spec), *_grain_sections(spec), *_registration_sections(spec),
            *_parent_sections(spec), _provenance_section(spec)]
