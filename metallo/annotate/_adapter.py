"""Step adapter of ``metallo.annotate``: label a Specimen's EBSD map by rules, carry it onto a micrograph."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metallo import names
from metallo._step import pick_ebsd, pick_micrograph, stale_nodes

__all__ = ["annotate_step", "annotation_name"]


def annotation_name(rule_set: Any) -> str:
    """The default node name of an annotation: the preset name or rules file stem ("rules" for a dict)."""
    source = str(rule_set.source)
    if source.lower().endswith((".yaml", ".yml", ".json")):
        source = Path(source).stem
    return source if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*", source) and source not in ("dict", "yaml") \
        else "rules"


def annotate_step(spec: Any, *, rules: Any = "lath_bainite", ebsd: str | None = None, micrograph: str | None = None,
                  name: str | None = None, overwrite: bool = False,
                  tag: Mapping[str, Any] | None = None) -> list[str]:
    """Label an EBSD map by rules (``annotate.from_ebsd``) and carry the labels onto a micrograph
    (``annotate.to_micrograph``) through ``registration/<micrograph>``, registering first if absent.

    Parameters
    ----------
    spec : Specimen
    rules : str, path or mapping
        A preset name, a YAML/JSON rules file or a rules dict (:func:`metallo.annotate.load_rules`).
    ebsd : str, optional
        The EBSD map (default the only current map); its ``derived`` node is used when present.
    micrograph : str, optional
        Carry the labels onto this micrograph (none: EBSD grid only).
    name : str, optional
        Node name below ``annotations/`` (default :func:`annotation_name`).
    overwrite : bool
    tag : mapping, optional
        Extra provenance parameters.

    Returns
    -------
    list of str
        ``annotations/<name>`` and, with a micrograph, ``annotations/<name>_<micrograph>``
        (plus ``registration/<micrograph>`` when it had to be registered).

    Examples
    --------
    >>> annotate_step(spec, rules="lath_bainite", micrograph="lom")  # doctest: +SKIP
    ['annotations/lath_bainite', 'annotations/lath_bainite_lom']
    """
    from metallo import annotate, correlate

    source = pick_ebsd(spec, ebsd)
    ebsd_map = spec[source]
    derived = names.derived(source)
    derived_ds = spec[derived] if derived in spec else None
    rule_set = annotate.load_rules(rules, ebsd=ebsd_map)
    name = name or annotation_name(rule_set)
    labels = annotate.from_ebsd(ebsd_map, rules=rule_set, derived=derived_ds)
    inputs = [source] + ([derived] if derived_ds is not None else [])
    outputs = [annotate.add_annotation(spec, name, labels, inputs=inputs, overwrite=overwrite, tag=tag)]
    if micrograph:
        fixed = pick_micrograph(spec, micrograph)
        reg_node = names.registration(names.leaf(fixed))
        replaced = stale_nodes(spec).get(reg_node) if reg_node in spec else None
        if reg_node not in spec or replaced:
            from metallo.correlate import register_step

            if replaced:
                # Made from an earlier micrograph or map: no registration of the images the
                # specimen holds now, so it is made again, as an absent one would be.
                warnings.warn(f"{reg_node} was made from an earlier {', '.join(replaced)}, replaced since; registering "
                              "again", UserWarning, stacklevel=2)
            outputs += register_step(spec, micrograph=fixed, ebsd=source, overwrite=overwrite or bool(replaced), tag=tag)
        reg = correlate.Registration.from_dataset(spec[reg_node])
        if reg.quality.get("failed") or reg.quality.get(names.PASSED) is False:
            reasons = "; ".join(reg.quality.get("failure_reasons") or []) or "its quality record says failed"
            warnings.warn(f"{reg_node} failed its quality check ({reasons}): the mask carried onto {fixed} "
                          "rests on it and is no trustworthy label (see the review figure; register again, "
                          "e.g. with landmarks, and re-run with overwrite)", UserWarning, stacklevel=2)
        warped = annotate.to_micrograph(labels, reg, spec[fixed][names.IMAGE])
        outputs.append(annotate.add_annotation(
            spec, names.leaf(names.annotation_on(name, names.leaf(fixed))), warped,
            inputs=[outputs[0], reg_node, fixed], overwrite=overwrite, step=names.STEP_TO_MICROGRAPH, tag=tag))
    return outputs
