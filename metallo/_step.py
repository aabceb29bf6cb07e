"""What every step adapter shares: writing a node with provenance, and choosing its inputs.

An adapter is ``adapter(spec, *, overwrite=False, tag=None, **parameters) -> list[str]``: it
reads its inputs from a :class:`~metallo.specimen.Specimen`, adds its outputs (each with one
provenance record) and returns their node names. ``tag`` holds extra provenance parameters
(the pipeline's ``cache_key``). The pipeline and the CLI call the same adapters, so a specimen
made command by command holds the same nodes as one made from a recipe.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from metallo import names
from metallo.errors import ConfigError

__all__ = ["ebsd_sources", "failed_upstream", "file_sha256", "latest_output", "micrograph_of", "pick_ebsd", "pick_micrograph",
           "quality_checks", "stale_nodes", "write"]


def write(spec: Any, node: str, data: Any, *, step: str, parameters: Mapping[str, Any], inputs: Sequence[str],
          overwrite: bool = False, tag: Mapping[str, Any] | None = None) -> str:
    """Add ``data`` as ``node`` with a provenance record; returns ``node``.

    Examples
    --------
    >>> write(spec, names.EBSD_CLEAN, cleaned, step=names.STEP_CLEAN, parameters={}, inputs=[names.EBSD_MAP])  # doctest: +SKIP
    'ebsd/clean'
    """
    spec.add(node, data, step=step, parameters={**dict(parameters), **dict(tag or {})}, inputs=list(inputs),
             overwrite=overwrite)
    return node


def _where(spec: Any) -> str:
    return str(getattr(spec, "path", "specimen"))


def pick_micrograph(spec: Any, wanted: str | None = None) -> str:
    """The micrograph node a step works on: ``wanted`` (a name or node), else ``lom``, ``sem`` or the first.

    Examples
    --------
    >>> pick_micrograph(spec)  # doctest: +SKIP
    'micrographs/lom'
    """
    nodes = names.members(spec.nodes(), names.MICROGRAPHS)
    if wanted:
        node = wanted if names.group_of(wanted) == names.MICROGRAPHS and "/" in wanted else names.micrograph(wanted)
        if node not in nodes:
            raise ConfigError(f"{_where(spec)}: no micrograph {node!r}; micrographs: {', '.join(nodes) or 'none'}")
        return node
    for preferred in ("lom", "sem"):
        if names.micrograph(preferred) in nodes:
            return names.micrograph(preferred)
    if not nodes:
        raise ConfigError(f"{_where(spec)}: the specimen has no micrograph to work on")
    return nodes[0]


def _config(spec: Any, node: str) -> dict[str, Any]:
    """The ``config`` attribute (JSON) of a node or of its labels, read from the node metadata."""
    meta = spec.describe(node)
    label_attrs = (meta.get("variables", {}).get(names.LABELS) or {}).get("attrs", {})
    raw = meta["attrs"].get("config") or label_attrs.get("config") or "{}"
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    return dict(value) if isinstance(value, Mapping) else {}


def micrograph_of(spec: Any, node: str) -> str | None:
    """The micrograph a label map (or other node) lies on, or None (e.g. a map on an EBSD grid).

    Read from the inputs of the provenance record that wrote ``node`` (a segmentation's or a
    warped annotation's micrograph), else its ``config`` attribute's ``micrograph``, else a
    micrograph of the same name.

    Examples
    --------
    >>> micrograph_of(spec, "annotations/lath_bainite_lom")  # doctest: +SKIP
    'micrographs/lom'
    """
    candidates: list[str] = []
    for record in reversed(spec.provenance):
        if node in (record.get("outputs") or []):
            candidates = [str(i) for i in record.get("inputs") or []]
            break
    config = _config(spec, node)
    if config.get("micrograph"):
        candidates.append(names.micrograph(str(config["micrograph"])))
    candidates.append(names.micrograph(names.leaf(node)))
    for cand in candidates:
        if names.group_of(cand) == names.MICROGRAPHS and cand in spec:
            return cand
    return None


def latest_output(spec: Any, step: str, *, prefix: bool = False) -> str | None:
    """The last node written by ``step`` (or any step starting with it) that still exists."""
    for record in reversed(spec.provenance):
        name = str(record.get("step", ""))
        if name == step or (prefix and name.startswith(step)):
            for node in reversed(record.get("outputs") or []):
                if node in spec:
                    return str(node)
    return None


def ebsd_sources(spec: Any) -> list[str]:
    """The EBSD maps that measurements use: every ``ebsd/<name>`` not superseded by a cleaned copy
    and not a resampled copy of another map."""
    maps = names.members(spec.nodes(), names.EBSD)
    superseded: set[str] = set()
    for record in spec.provenance:
        step = record.get("step")
        outputs = [o for o in record.get("outputs") or [] if o in maps]
        if step == names.STEP_CLEAN and outputs:
            superseded.update(i for i in record.get("inputs") or [] if i in maps)
        if step == names.STEP_RESAMPLE_EBSD:
            superseded.update(outputs)
    return [m for m in maps if m not in superseded]


def pick_ebsd(spec: Any, wanted: str | None = None) -> str:
    """The EBSD map a step works on: ``wanted`` (a name or node), else the only current map."""
    maps = names.members(spec.nodes(), names.EBSD)
    if wanted:
        node = wanted if names.group_of(wanted) == names.EBSD and "/" in wanted else names.ebsd(wanted)
        if node not in maps:
            raise ConfigError(f"{_where(spec)}: no EBSD node {node!r}; EBSD nodes: {', '.join(maps) or 'none'}")
        return node
    current = ebsd_sources(spec)
    if len(current) == 1:
        return current[0]
    raise ConfigError(f"{_where(spec)}: name the EBSD map (--ebsd); the specimen has EBSD nodes: "
                      f"{', '.join(maps) or 'none'}")


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def quality_checks(spec: Any) -> dict[str, dict[str, Any]]:
    """Every node whose quality record gives an explicit verdict (registration, parent
    reconstruction, ...), read from the node metadata without loading its data.

    A QC pass on the phase fractions means little when a step they rest on failed (a
    registration that did not hold, a parent reconstruction the map does not support): the
    batch table and ``metallo analyze`` show these verdicts beside the limits.

    Parameters
    ----------
    spec : Specimen

    Returns
    -------
    dict
        ``{node: {"passed": bool, "reasons": [str, ...]}}``.

    Examples
    --------
    >>> {n: c["passed"] for n, c in quality_checks(spec).items()}  # doctest: +SKIP
    {'correlate/ebsd_on_lom': True, 'ebsd/map/parent': False}
    """
    out: dict[str, dict[str, Any]] = {}
    for node in spec.nodes():
        raw = spec.describe(node)["attrs"].get(names.QUALITY)
        if not raw:
            continue
        try:
            record = json.loads(raw) if isinstance(raw, str) else dict(raw)
        except (TypeError, ValueError):
            continue
        if isinstance(record, dict) and names.PASSED in record:
            out[node] = {"passed": bool(record[names.PASSED]), "reasons": check_reasons(record)}
    for node, newer in stale_nodes(spec).items():
        # A node made from an earlier version of its input (the input was replaced since, e.g. a
        # segmentation re-run with --overwrite after quantify) no longer says what the specimen holds.
        reason = f"made from an earlier {', '.join(newer)}, replaced since; re-run the step that made it"
        before = out.get(node, {"passed": True, "reasons": []})
        out[node] = {"passed": False, "reasons": [reason, *(before["reasons"] if not before["passed"] else [])]}
    return out


def stale_nodes(spec: Any) -> dict[str, list[str]]:
    """Nodes whose inputs were written again after them: ``{node: [those inputs]}``.

    Each node's provenance is its last record; an input whose last record comes later was
    replaced (``--overwrite``) after the node was computed from it, so the node describes data
    the specimen no longer holds (fractions of a segmentation that has been redone). A record
    that wrote a node again with identical data and attrs (``"unchanged": true``) does not count.

    Examples
    --------
    >>> stale_nodes(spec)  # doctest: +SKIP
    {'quantities/segmentations.lom.phase_fractions': ['segmentations/lom']}
    """
    made: dict[str, int] = {}  # the last record that computed each node
    version: dict[str, int] = {}  # the last record that changed it (what its users were made from)
    inputs: dict[str, list[str]] = {}
    for k, record in enumerate(spec.provenance):
        for node in record.get("outputs") or []:
            made[str(node)] = k
            inputs[str(node)] = [str(i) for i in record.get("inputs") or []]
            if not (record.get("unchanged") and str(node) in version):
                version[str(node)] = k
    present = set(spec.nodes())
    out: dict[str, list[str]] = {}
    for node, used in inputs.items():
        if node in present:
            newer = [i for i in used if i != node and i in present and version.get(i, -1) > made[node]]
            if newer:
                out[node] = newer
    return out


def check_reasons(record: Mapping[str, Any]) -> list[str]:
    """The reasons a quality record gives for its verdict (``failure_reasons``, ``reasons`` or ``warnings``).

    Examples
    --------
    >>> check_reasons({"passed": False, "failure_reasons": ["too few points"]})
    ['too few points']
    """
    reasons = record.get("failure_reasons") or record.get("reasons") or record.get("warnings") or []
    return [str(r) for r in reasons] if isinstance(reasons, (list, tuple)) else [str(reasons)]


def failed_upstream(spec: Any, node: str, checks: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, list[str]]:
    """The nodes ``node`` rests on (itself included, through the provenance inputs) whose
    quality record failed: ``{node: reasons}``.

    Phase fractions from a segmentation that failed its own check, or from an annotation
    warped through a failed registration, are no QC figure however they compare with the
    limits; the report and ``metallo quantify`` say so beside them.

    Parameters
    ----------
    spec : Specimen
    node : str
    checks : dict, optional
        :func:`quality_checks` of ``spec``, when already computed.

    Returns
    -------
    dict

    Examples
    --------
    >>> failed_upstream(spec, "quantities/segmentations.unsupervised.phase_fractions")  # doctest: +SKIP
    {'segmentations/unsupervised': ['the grey levels do not say where class 1 ends ...']}
    """
    checks = quality_checks(spec) if checks is None else checks
    inputs: dict[str, list[str]] = {}
    for record in spec.provenance:
        for out in record.get("outputs") or []:
            inputs[str(out)] = [str(i) for i in record.get("inputs") or []]
    failed: dict[str, list[str]] = {}
    seen, todo = set(), [node]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        check = checks.get(current)
        if check is not None and not check["passed"]:
            failed[current] = list(check["reasons"])
        todo += [i for i in inputs.get(current, []) if i not in seen]
    return failed
