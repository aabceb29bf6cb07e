"""Pass/fail of measured phase fractions against limits, and which measurement QC uses."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from metallo import names
from metallo._step import failed_upstream, quality_checks

__all__ = ["across_label_maps", "across_parameters", "check_limits", "fractions_node", "judged_qc", "measured_fractions",
           "qc_status", "quality_checks", "reference_disagreements"]


def qc_status(phase_fractions: Any, limits: Mapping[str, Any]) -> dict[str, Any]:
    """Pass/fail of each limited class: the mean must lie within ``[min, max]``.

    ``ci_inside`` says whether the whole 95% confidence interval lies within the limits too
    (None where there is no interval: fractions of one field).

    Parameters
    ----------
    phase_fractions : pandas.DataFrame
        A ``phase_fractions`` table (columns ``class``, ``mean``, ``ci_low``, ``ci_high``).
    limits : mapping
        ``{class: [min, max]}`` as fractions.

    Returns
    -------
    dict
        ``{class: {"status": "pass" | "fail" | "missing", "mean", "ci_low", "ci_high", "min", "max", "ci_inside"}}``.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"class": ["a"], "mean": [0.35], "ci_low": [0.3], "ci_high": [0.4]})
    >>> qc_status(table, {"a": [0.3, 0.45]})["a"]["status"]
    'pass'
    """
    out: dict[str, Any] = {}
    table = phase_fractions.set_index("class") if "class" in phase_fractions else phase_fractions
    for cls, (lo, hi) in limits.items():
        if cls not in table.index:
            # The classes measured, so that a misspelt limit (Lath_Bainite) is seen for what it is.
            out[cls] = {"status": "missing", "min": lo, "max": hi, "measured_classes": [str(c) for c in table.index]}
            continue
        row = table.loc[cls]
        mean = float(row["mean"])
        ci_lo, ci_hi = float(row["ci_low"]), float(row["ci_high"])
        out[cls] = {
            "status": "pass" if lo <= mean <= hi else "fail",
            "mean": mean,
            "ci_low": ci_lo,
            "ci_high": ci_hi,
            "min": lo,
            "max": hi,
            # None where there is no interval (one field: ASTM E562 needs two or more).
            "ci_inside": bool(lo <= ci_lo and ci_hi <= hi) if math.isfinite(ci_lo) and math.isfinite(ci_hi) else None,
        }
    return out


def measured_fractions(spec: Any) -> tuple[str, Any] | None:
    """The phase fractions QC judges: of the first segmentation that has them, else the first
    annotation, else the first EBSD map's phases (a duplex steel's austenite balance measured by
    EBSD alone); or, where ``names.PHASES_ACROSS_MAPS`` was measured over that map and the label
    maps of the specimen's other micrographs, the specimen's mean over micrographs.

    Fields of one micrograph show how that image varies, not how the specimen does (measured on
    six UHCS micrographs of one specimen: the 3 x 3-field interval of one micrograph missed the
    others' mean in 6 of 24 class comparisons). With several micrographs, QC therefore judges
    their mean, with one E562 field per micrograph.

    Returns
    -------
    (str, pandas.DataFrame) or None
        The label node (or ``names.PHASES_ACROSS_MAPS``) and its phase-fraction table; None when
        nothing was quantified.
    """
    for group in (names.SEGMENTATIONS, names.ANNOTATIONS, names.EBSD):
        for node in names.members(spec.nodes(), group):
            quantity = names.quantity(node, names.PHASE_FRACTIONS)
            if quantity in spec:
                if node in across_label_maps(spec):
                    return names.PHASES_ACROSS_MAPS, spec.table(names.PHASES_ACROSS_MAPS)
                return node, spec.table(quantity)
    return None


def fractions_node(measured: str) -> str:
    """The quantity node of what :func:`measured_fractions` names (a label map or the across-micrographs table)."""
    return measured if measured == names.PHASES_ACROSS_MAPS else names.quantity(measured, names.PHASE_FRACTIONS)


def across_parameters(spec: Any) -> dict[str, Any]:
    """The parameters of ``names.PHASES_ACROSS_MAPS`` (label maps, micrographs, maps left out,
    field weights), read from the node metadata; empty without the node."""
    if names.PHASES_ACROSS_MAPS not in spec:
        return {}
    raw = spec.describe(names.PHASES_ACROSS_MAPS)["attrs"].get("parameters", "{}")
    try:
        params = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    return dict(params) if isinstance(params, Mapping) else {}


def across_label_maps(spec: Any) -> list[str]:
    """The label maps whose micrographs are the fields of ``names.PHASES_ACROSS_MAPS`` (empty without it)."""
    return [str(n) for n in (across_parameters(spec).get("label_maps") or [])]


def judged_qc(spec: Any, table: Any, limits: Mapping[str, Any], segmentations: Sequence[str],
              checks: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """:func:`qc_status` of a phase-fraction table, with the classes whose verdict the reference
    labels of its segmentations turn marked fail (:func:`reference_disagreements`). The one rule
    that ``qc_verdict`` and the report both apply."""
    qc = qc_status(table, limits)
    segs = names.members(segmentations, names.SEGMENTATIONS)
    for cls, why in reference_disagreements(spec, segs, qc, checks=checks).items():
        qc[cls].update(status="fail", reference_disagrees=why)
    return qc


def reference_disagreements(spec: Any, segmentations: Sequence[str], qc: Mapping[str, Any],
                            checks: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, str]:
    """Limited classes whose verdict the reference labels of the same pixels would turn.

    Where a segmentation has an ``agreement`` table (:func:`metallo.quantify.label_agreement`
    against an annotation of the same micrograph, e.g. the EBSD-informed labels carried onto it),
    its error there (segmentation minus reference, on the same pixels) is known. The judged mean
    is corrected by it (for the mean over micrographs: each micrograph by its own error at its
    weight in the mean, those without reference labels unchanged; references that rest on a failed check, such as labels
    warped through a failed registration, are not used). Where the corrected fraction and the mean fall on
    different sides of a limit, the verdict rests on the segmentation's error, and the class is
    no pass: its status becomes fail, with the reason.

    Parameters
    ----------
    spec : Specimen
    segmentations : sequence of str
        The segmentations behind the judged fractions (one, or those of the mean over micrographs).
    qc : mapping
        :func:`qc_status` of the judged fractions.
    checks : mapping, optional
        :func:`quality_checks` of ``spec``, when already computed.

    Returns
    -------
    dict
        ``{class: reason}``.
    """
    errors: dict[str, dict[str, tuple[float, float, str]]] = {}
    if checks is None:
        checks = quality_checks(spec) if segmentations else {}
    # Each micrograph's share of the judged mean: its weight in the mean over micrographs, else 1.
    share = {node: 1.0 for node in segmentations}
    if len(segmentations) > 1:
        params = across_parameters(spec)
        weights = dict(zip(params.get("label_maps") or [], params.get("field_weights") or [], strict=False))
        total = sum(float(weights.get(n, 0.0)) for n in segmentations)
        share = {n: (float(weights.get(n, 0.0)) / total if total > 0 else 1.0 / len(segmentations)) for n in segmentations}
    for node in segmentations:
        agreement_node = names.quantity(node, names.AGREEMENT)
        if agreement_node not in spec:
            continue
        raw = spec.describe(agreement_node)["attrs"].get("parameters", "{}")
        reference = str((json.loads(raw) if isinstance(raw, str) else dict(raw)).get("reference", "the reference"))
        if reference in spec and failed_upstream(spec, reference, checks):
            continue  # labels warped through a failed registration are no reference
        table = spec.table(agreement_node)
        for cls, ours, ref in zip(table["class"], table["fraction"], table["reference_fraction"], strict=True):
            errors.setdefault(str(cls), {})[node] = (float(ours), float(ref), reference)
    out: dict[str, str] = {}
    for cls, record in qc.items():
        if record.get("status") == "missing" or cls not in errors:
            continue
        known = errors[cls]
        corrected = float(record["mean"]) - sum(share[node] * (ours - ref) for node, (ours, ref, _) in known.items())
        inside = record["min"] <= record["mean"] <= record["max"]
        if inside == (record["min"] <= corrected <= record["max"]):
            continue
        where = "; ".join(f"{node} {100 * ours:.1f}% against {100 * ref:.1f}% in {reference}"
                          for node, (ours, ref, reference) in known.items())
        out[str(cls)] = (f"on the same pixels {where}; corrected by that error the fraction is {100 * corrected:.1f}%, "
                         f"{'outside' if inside else 'inside'} the limits: the verdict rests on the segmentation's error")
    return out


def qc_verdict(spec: Any, limits: Mapping[str, Any]) -> dict[str, Any]:
    """Everything QC says about one specimen: the limits, the nodes' own checks, and whether the
    judged fractions rest on a failed node.

    ``metallo analyze``, ``metallo batch`` and ``metallo report`` judge a specimen with this one
    function, so that a fraction within its limits from a failed segmentation or through a failed
    registration is a QC fail in every table, not only in the report page.

    Parameters
    ----------
    spec : Specimen
    limits : mapping
        ``{class: [min, max]}`` as fractions.

    Returns
    -------
    dict
        ``qc`` (:func:`qc_status` of :func:`measured_fractions`; empty without fractions or limits),
        ``qc_source`` (the label node judged, or ``names.PHASES_ACROSS_MAPS`` for the mean over micrographs),
        ``checks`` (:func:`quality_checks`), ``qc_rests_on_failed`` (the failed nodes the judged
        fractions rest on, :func:`failed_upstream`), ``failed_checks`` (nodes whose check failed) and
        ``qc_passed`` (None without QC limits; False when a class is outside its limits or has no
        fraction, or the fractions rest on a failed node). A class also fails where the reference
        labels of a judged segmentation's own micrograph would turn its verdict
        (:func:`reference_disagreements`; ``qc[class]["reference_disagrees"]``).

    Examples
    --------
    >>> qc_verdict(spec, {"bainite": [0.3, 0.45]})["qc_passed"]  # doctest: +SKIP
    False
    """
    limits = check_limits(limits)
    measured = measured_fractions(spec)
    checks = quality_checks(spec)
    qc: dict[str, Any] = {}
    if measured is not None:
        segmentations = across_label_maps(spec) if measured[0] == names.PHASES_ACROSS_MAPS else [measured[0]]
        qc = judged_qc(spec, measured[1], limits, segmentations, checks=checks)
    else:
        # Limits set and no fraction measured: every limited class is missing, a fail; had been
        # no verdict at all, which a recipe run counted as passed.
        qc = {cls: {"status": "missing", "min": lo, "max": hi} for cls, (lo, hi) in limits.items()}
    rests_on = list(failed_upstream(spec, fractions_node(measured[0]), checks)) if measured is not None else []
    return {"qc": qc, "qc_source": measured[0] if measured is not None else None, "checks": checks,
            "qc_rests_on_failed": rests_on,
            "failed_checks": [node for node, c in checks.items() if not c["passed"]], "qc_passed": qc_passed(qc, rests_on)}


def check_limits(limits: Mapping[str, Any] | None) -> dict[str, list[float]]:
    """QC limits as ``{class: [min, max]}``, checked: two fractions (0-1), min not above max.

    Raises
    ------
    ConfigError
        Limits in percent (``[30, 45]``: every fraction would fail), reversed, or not two numbers.

    Examples
    --------
    >>> check_limits({"bainite": (0.3, 0.45)})
    {'bainite': [0.3, 0.45]}
    """
    from metallo.errors import ConfigError

    out: dict[str, list[float]] = {}
    for cls, bounds in (limits or {}).items():
        try:
            lo, hi = (float(v) for v in bounds)
        except (TypeError, ValueError):
            raise ConfigError(f"QC limits of {cls!r} must be [min, max] as fractions (e.g. [0.3, 0.45]); got {bounds!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi)) or not 0.0 <= lo <= hi <= 1.0:
            hint = (f"; [{lo:g}, {hi:g}] looks like percent: give [{lo / 100:g}, {hi / 100:g}]"
                    if 1.0 < hi <= 100.0 and 0.0 <= lo <= hi else "")
            raise ConfigError(f"QC limits of {cls!r} must be fractions with 0 <= min <= max <= 1; got {list(bounds)!r}{hint}")
        out[str(cls)] = [lo, hi]
    return out


def qc_passed(qc: Mapping[str, Any], rests_on: Sequence[str]) -> bool | None:
    """Every class within its limits and no failed node under the fractions; None without QC limits."""
    return (all(v["status"] == "pass" for v in qc.values()) and not rests_on) if qc else None
