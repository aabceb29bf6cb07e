"""The annotation rule language: parse, validate and evaluate per-grain class rules.

A rule set is a mapping (given as a dict, YAML text, a YAML file or a preset name)::

    classes: [polygonal_ferrite, lath_bainite]
    default: polygonal_ferrite          # class of grains no rule matches, or "ignore"
    rules:                              # tried in the order written; first match wins
      lath_bainite: {any: [{gos: {gt: 2.0}}, {kam_mean: {gt: 0.6}}]}
    thresholds: {gos: otsu}             # optional: data-driven value replaces 2.0
    cleanup: {min_region_um2: 2.0, fill_holes: true, smooth_px: 1}
    ignore: {border_px: 2, min_ci: 0.1}
    grains: {tolerance_deg: 5.0}        # options of metallo.ebsd.grains
    kam: {order: 3, max_deg: 5.0}       # options of metallo.ebsd.kam

A condition is ``{quantity: {op: value, ...}}`` (all ops must hold), ``{all: [...]}``,
``{any: [...]}`` or ``{not: condition}``; a mapping with several quantities means all of
them. Operators: ``gt ge lt le eq ne in between``. A comparison with an undefined value
(NaN, e.g. the GOS of a one-pixel grain) is false.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from metallo._ebsd_dataset import looks_bcc_iron
from metallo._registry import Registry
from metallo.errors import ConfigError, UnknownNameError

__all__ = [
    "AnnotationRules",
    "classify_grains",
    "load_rules",
    "preset_names",
    "presets",
    "quantity_names",
]

#: Keys allowed at the top level of a rule set.
RULE_KEYS = ("classes", "default", "rules", "thresholds", "cleanup", "ignore", "grains", "kam")
CLEANUP_KEYS = ("min_region_um2", "min_region_px", "fill_holes", "smooth_px", "smooth_um")
IGNORE_KEYS = ("border_px", "border_um", "min_ci")
COMPARISONS: dict[str, Callable[[np.ndarray, Any], np.ndarray]] = {
    "gt": lambda v, t: v > t,
    "ge": lambda v, t: v >= t,
    "lt": lambda v, t: v < t,
    "le": lambda v, t: v <= t,
    "eq": lambda v, t: v == t,
    "ne": lambda v, t: (v != t) & ~np.isnan(v),
    "in": lambda v, t: np.isin(v, np.asarray(t, dtype=np.float64)),
    "between": lambda v, t: (v >= t[0]) & (v <= t[1]),
}
#: Operators whose value a data-driven threshold may replace.
ORDERED_OPS = ("gt", "ge", "lt", "le")
LOGIC = ("all", "any", "not")
THRESHOLD_METHODS = ("otsu", "gmm")
IGNORE_CLASS = "ignore"

#: Quantity name -> one-line description (unit). The computation lives in ``_quantities``.
quantities: Registry[str] = Registry("annotation quantity")
for _name, _text in {
    "gos": "grain orientation spread, degrees",
    "gam": "grain average misorientation, degrees",
    "area_um2": "grain area, µm²",
    "ecd_um": "equivalent circle diameter, µm",
    "aspect_ratio": "major / minor axis of the grain's best-fit ellipse (>= 1)",
    "phase": "EBSD phase (id or name)",
    "n_pixels": "grain size in map points",
    "kam_mean": "mean kernel average misorientation over the grain, degrees",
    "kam_median": "median kernel average misorientation over the grain, degrees",
    "iq_mean": "mean image quality over the grain",
    "ci_mean": "mean confidence index over the grain",
    "fit_mean": "mean fit (.ang) / MAD (.ctf) over the grain, degrees",
    "boundary_density": "boundary-map points in the grain per unit area, µm⁻¹ (≈ boundary length / area)",
    # Parent-austenite quantities (metallo.ebsd.grain_parent_quantities; OR fitted to the map).
    "parent_variants": "distinct OR variants in the grain's reconstructed parent (prior austenite) grain",
    "parent_packets": "distinct packets (habit-plane groups) in the grain's parent grain",
    "parent_fit": "mean misfit of the grain's points to their ideal OR variant, degrees",
    "parent_fraction": "share of the grain's points that got a parent orientation (0-1)",
    "or_boundary_fraction": "share of the grain's boundary length explained by an OR variant pair within 5° (0-1)",
}.items():
    quantities.add(_name, _text)


def quantity_names() -> list[str]:
    """Names of the grain-level quantities a rule may test.

    Returns
    -------
    list of str

    Examples
    --------
    >>> "gos" in quantity_names()
    True
    """
    return quantities.names()


#: Preset name -> function ``(ebsd or None) -> rule dict``.
presets: Registry[Callable[[xr.Dataset | None], dict[str, Any]]] = Registry("annotation preset")


def _describe_phase(phase: Mapping[str, Any], share: float) -> str:
    lattice = [float(v) for v in (phase.get("lattice") or [])[:1]]
    a = f", a = {lattice[0]:.4g} Å" if lattice and lattice[0] > 0 else ""
    return f"{phase.get('name', phase.get('id'))} ({phase.get('symmetry', '?')}{a}; {100 * share:.1f} % of the indexed points)"


def _ferrite_rules(rules: dict[str, Any], ebsd: xr.Dataset | None, preset: str) -> dict[str, Any]:
    """A ferrite preset's rules for ``ebsd``'s phases. The rules tell bainite from polygonal
    ferrite among grains of bcc iron: on a map that also holds other phases (the austenite of a
    duplex steel, retained austenite) their grains get a class of their phase's name, first,
    instead of being called ferrite; on a map without any phase of bcc iron (nickel, an fcc
    phase) the classes mean nothing, and a warning says so."""
    if ebsd is None or "phase" not in getattr(ebsd, "data_vars", {}):
        return rules
    import warnings

    from metallo.ebsd import phases_of

    values = np.asarray(ebsd["phase"].values).ravel()
    indexed = values[values >= 0] if values.size else values
    entries = {int(p["id"]): p for p in phases_of(ebsd) if "id" in p}
    ids, counts = np.unique(indexed, return_counts=True)
    present = [(entries[int(i)], int(c) / max(int(indexed.size), 1)) for i, c in zip(ids, counts, strict=True)
               if int(i) in entries]
    if not present:
        return rules
    verdict = [(p, share, looks_bcc_iron(p)) for p, share in present]
    others = [(p, share) for p, share, bcc in verdict if bcc is False]
    if len(others) == len(present):
        warnings.warn(
            f"the {preset} rules tell bainite from polygonal ferrite in grains of bcc iron, and none of this map's "
            f"phases is bcc iron ({'; '.join(_describe_phase(p, share) for p, share in others)}): its "
            f"{' and '.join(rules['classes'])} labels name nothing this map holds; use rules for its phases "
            "(the 'phase' preset labels each phase)", UserWarning, stacklevel=4)
        return rules
    if not others:
        return rules
    taken = set(rules["classes"])
    names = []
    for p, _ in others:
        name = str(p.get("name", p["id"]))
        name = name if name not in taken and name != IGNORE_CLASS else f"phase {p['id']} {name}"
        taken.add(name)
        names.append(name)
    warnings.warn(
        f"the {preset} rules tell bainite from polygonal ferrite in grains of bcc iron; this map also holds "
        f"{'; '.join(_describe_phase(p, share) for p, share in others)}: labelled as "
        f"{', '.join(names)}, not as ferrite", UserWarning, stacklevel=4)
    out = dict(rules)
    out["classes"] = [*rules["classes"], *names]
    out["rules"] = {**{name: {"phase": {"eq": int(p["id"])}} for name, (p, _) in zip(names, others, strict=True)},
                    **rules["rules"]}
    return out


@presets.register("lath_bainite")
def _lath_bainite(ebsd: xr.Dataset | None = None) -> dict[str, Any]:
    # Lath bainite forms by displacive transformation at low temperature: its grains carry a
    # high dislocation density, hence orientation gradients (GOS, KAM high); polygonal ferrite
    # grows by diffusion and is nearly strain-free (GOS < ~1-2°, 3rd-order KAM < ~0.5°).
    # GOS > 2° is the cut commonly used for "deformed/bainitic" vs "recrystallized/polygonal"
    # grains; a high KAM alone also marks bainite, since lath packets broken into small grains
    # by the 5° grain tolerance have a small GOS but keep the strain in their KAM.
    _warn_kam_reach(ebsd, order=3, threshold_deg=0.6)
    return _ferrite_rules({
        "classes": ["polygonal_ferrite", "lath_bainite"],
        "default": "polygonal_ferrite",
        "rules": {"lath_bainite": {"any": [{"gos": {"gt": 2.0}}, {"kam_mean": {"gt": 0.6}}]}},
        "cleanup": {"min_region_um2": 1.0, "fill_holes": True, "smooth_px": 0},
        "ignore": {"border_px": 1, "min_ci": 0.1},
        "grains": {"tolerance_deg": 5.0},
        "kam": {"order": 3, "max_deg": 5.0},
    }, ebsd, "lath_bainite")


#: The paper's EBSD step (hexagonal grid, µm): its 3rd-order KAM reached 1.05 µm.
PAPER_STEP_UM = 0.35
#: A KAM reach beyond this factor of the paper's (either way) is warned of.
_KAM_REACH_FACTOR = 2.0


def _warn_kam_reach(ebsd: xr.Dataset | None, *, order: int, threshold_deg: float) -> None:
    """Warn where a map's KAM kernel reaches much farther or nearer (order x step, µm) than the
    paper's, for which the preset's KAM threshold was set: the KAM of a lattice gradient grows
    with the reach, so the threshold marks too many grains (or too few) as bainite."""
    if ebsd is None:
        return
    try:
        step = float(ebsd.attrs.get("step_um", float("nan")))
    except (TypeError, ValueError):
        return
    paper, reach = order * PAPER_STEP_UM, order * step
    if not (np.isfinite(step) and step > 0) or 1 / _KAM_REACH_FACTOR <= reach / paper <= _KAM_REACH_FACTOR:
        return
    import warnings

    better = max(1, int(round(paper / step)))
    warnings.warn(
        f"the lath_bainite preset's KAM threshold ({threshold_deg:g} deg) was set for the paper's KAM of order {order} "
        f"at {PAPER_STEP_UM:g} µm steps (reach {paper:.3g} µm); this map's step {step:.3g} µm makes it reach "
        f"{reach:.3g} µm, and the KAM of a lattice gradient grows with the reach, so the threshold marks "
        f"{'too many' if reach > paper else 'too few'} grains as bainite: give rules with kam: {{order: {better}}} "
        f"(reach {better * step:.3g} µm), or check the threshold against the map's KAM distribution",
        UserWarning, stacklevel=4)


@presets.register("lath_bainite_parent")
def _lath_bainite_parent(ebsd: xr.Dataset | None = None) -> dict[str, Any]:
    # Laths of one prior austenite grain share a few OR variants, so a lath-bainite or
    # martensite grain sits in a reconstructed parent with several variants and packets, and
    # most of its boundary is a variant-pair boundary. Polygonal ferrite nucleates at random
    # orientations: its neighbours are unrelated (a random boundary fits KS within 5° about
    # a quarter of the time) and the parents it falls into, if any, hold few variants.
    return _ferrite_rules({
        "classes": ["polygonal_ferrite", "lath_bainite"],
        "default": "polygonal_ferrite",
        "rules": {"lath_bainite": {"any": [
            {"all": [{"parent_variants": {"ge": 4}}, {"parent_packets": {"ge": 2}}, {"parent_fit": {"lt": 4.0}}]},
            {"or_boundary_fraction": {"gt": 0.7}},
        ]}},
        "cleanup": {"min_region_um2": 1.0, "fill_holes": True, "smooth_px": 0},
        "ignore": {"border_px": 1, "min_ci": 0.1},
        "grains": {"tolerance_deg": 5.0},
    }, ebsd, "lath_bainite_parent")


@presets.register("phase")
def _phase(ebsd: xr.Dataset | None = None) -> dict[str, Any]:
    if ebsd is None:
        raise ConfigError("the 'phase' preset needs the EBSD map to know its phases")
    from metallo.ebsd import phases_of

    phases = phases_of(ebsd)
    if not phases:
        raise ConfigError("the 'phase' preset needs attrs['phases'] on the EBSD map; it has none")
    names = [str(p["name"]) for p in phases]
    return {
        "classes": names,
        "default": IGNORE_CLASS,
        "rules": {name: {"phase": {"eq": int(p["id"])}} for name, p in zip(names, phases, strict=True)},
        # One-pixel grains kept, so every indexed point is labelled with its own phase.
        "grains": {"tolerance_deg": 5.0, "min_size_px": 1},
    }


def preset_names() -> list[str]:
    """Names of the built-in rule presets.

    Returns
    -------
    list of str

    Examples
    --------
    >>> preset_names()
    ['lath_bainite', 'lath_bainite_parent', 'phase']
    """
    return presets.names()


@dataclass(frozen=True)
class AnnotationRules:
    """A validated rule set (see the module docstring for the language).

    Attributes
    ----------
    classes : list of str
        Class names; the label value of a class is its index.
    default : str
        Class of grains no rule matches, or ``"ignore"``.
    rules : dict
        Class name -> condition, in priority order.
    thresholds : dict
        Quantity -> ``"otsu"`` | ``"gmm"``: data-driven values replacing the written ones.
    cleanup, ignore, grains, kam : dict
        Options of the clean-up, the ignore band, grain reconstruction and KAM.
    source : str
        Preset name, file name or ``"dict"``.
    """

    classes: list[str]
    default: str
    rules: dict[str, Any]
    thresholds: dict[str, str] = field(default_factory=dict)
    cleanup: dict[str, Any] = field(default_factory=dict)
    ignore: dict[str, Any] = field(default_factory=dict)
    grains: dict[str, Any] = field(default_factory=dict)
    kam: dict[str, Any] = field(default_factory=dict)
    source: str = "dict"

    def to_dict(self) -> dict[str, Any]:
        """The rule set as a plain dict (the YAML/JSON form, without ``source``)."""
        return {
            "classes": list(self.classes),
            "default": self.default,
            "rules": copy.deepcopy(self.rules),
            "thresholds": dict(self.thresholds),
            "cleanup": dict(self.cleanup),
            "ignore": dict(self.ignore),
            "grains": dict(self.grains),
            "kam": dict(self.kam),
        }

    def to_json(self) -> str:
        """The rule set as a JSON string (stored in the ``rules`` attr of an annotation)."""
        return json.dumps(self.to_dict(), sort_keys=False)

    def used_quantities(self) -> list[str]:
        """Quantity names the rules test, in first-use order."""
        found: list[str] = []
        for cond in self.rules.values():
            _collect_quantities(cond, found)
        return found


def load_rules(rules: str | Path | Mapping[str, Any] | AnnotationRules, *, ebsd: xr.Dataset | None = None) -> AnnotationRules:
    """Read a rule set from a preset name, YAML text, a YAML/JSON file or a mapping.

    Parameters
    ----------
    rules : str, Path, mapping or AnnotationRules
        A preset name (:func:`preset_names`), a path to a ``.yaml``/``.yml``/``.json`` file,
        YAML text, or a dict in the rule language.
    ebsd : xr.Dataset, optional
        The EBSD map; data-dependent presets (``phase``) need it.

    Returns
    -------
    AnnotationRules

    Raises
    ------
    UnknownNameError
        An unknown preset, quantity, operator, class or key; the message lists valid names.

    Examples
    --------
    >>> r = load_rules("classes: [a, b]\\ndefault: a\\nrules: {b: {gos: {gt: 2}}}")
    >>> r.classes, r.used_quantities()
    (['a', 'b'], ['gos'])
    """
    if isinstance(rules, AnnotationRules):
        return rules
    source = "dict"
    if isinstance(rules, Path) or (isinstance(rules, str) and _looks_like_path(rules)):
        path = Path(rules)
        if not path.is_file():
            raise ConfigError(f"rules file {path} does not exist")
        raw = _parse_yaml(path.read_text(encoding="utf-8"), str(path))
        source = str(path)
    elif isinstance(rules, str):
        if ":" not in rules and "{" not in rules:
            raw = presets.get(rules.strip())(ebsd)
            source = rules.strip().lower()
        else:
            raw = _parse_yaml(rules, "rules text")
            source = "yaml"
    elif isinstance(rules, Mapping):
        raw = copy.deepcopy(dict(rules))
    else:
        raise ConfigError(f"rules must be a preset name, YAML text, a file or a dict; got {type(rules).__name__}")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"rules ({source}) must be a mapping with keys {', '.join(RULE_KEYS)}")
    return _validate(dict(raw), source)


def _looks_like_path(text: str) -> bool:
    return "\n" not in text and text.strip().lower().endswith((".yaml", ".yml", ".json"))


def _parse_yaml(text: str, where: str) -> Any:
    # The shared loader refuses duplicate keys and alias bombs, as for recipes.
    from metallo._config import parse_yaml

    return parse_yaml(text, source=where)[0]


def _check_keys(given: Mapping[str, Any], valid: tuple[str, ...], where: str) -> None:
    for key in given:
        if key not in valid:
            raise UnknownNameError(f"unknown key {key!r} in {where}; valid names: {', '.join(valid)}")


def _validate(raw: dict[str, Any], source: str) -> AnnotationRules:
    _check_keys(raw, RULE_KEYS, f"rules ({source})")
    classes = raw.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ConfigError(f"rules ({source}): 'classes' must be a non-empty list of names")
    if len(set(classes)) != len(classes) or IGNORE_CLASS in classes:
        raise ConfigError(f"rules ({source}): class names must be unique and not {IGNORE_CLASS!r}")
    if len(classes) > 255:
        raise ConfigError(f"rules ({source}): at most 255 classes fit a uint8 label map; got {len(classes)}")
    default = raw.get("default", classes[0])
    valid_default = (*classes, IGNORE_CLASS)
    if default not in valid_default:
        raise UnknownNameError(f"unknown default class {default!r}; valid names: {', '.join(valid_default)}")
    body = raw.get("rules", {}) or {}
    if not isinstance(body, Mapping):
        raise ConfigError(f"rules ({source}): 'rules' must map class names to conditions")
    for name, cond in body.items():
        if name not in classes:
            raise UnknownNameError(f"rule for unknown class {name!r}; valid names: {', '.join(classes)}")
        _validate_condition(cond, f"rule {name!r}")
    thresholds = dict(raw.get("thresholds", {}) or {})
    for qname, method in thresholds.items():
        quantities.get(qname)
        if str(method).lower() not in THRESHOLD_METHODS:
            raise UnknownNameError(
                f"unknown threshold method {method!r} for {qname!r}; valid names: {', '.join(THRESHOLD_METHODS)}"
            )
        thresholds[qname] = str(method).lower()
    cleanup = dict(raw.get("cleanup", {}) or {})
    _check_keys(cleanup, CLEANUP_KEYS, "rules cleanup")
    ignore = dict(raw.get("ignore", {}) or {})
    _check_keys(ignore, IGNORE_KEYS, "rules ignore")
    exclusive = [(cleanup, "min_region_um2", "min_region_px"), (cleanup, "smooth_um", "smooth_px"),
                 (ignore, "border_um", "border_px")]
    for section, in_um, in_px in exclusive:
        if in_um in section and in_px in section:
            raise ConfigError(f"rules ({source}): give one of {in_um} or {in_px}, not both")
    kam = dict(raw.get("kam", {}) or {})
    _check_keys(kam, ("order", "max_deg", "kernel"), f"rules ({source}) kam (metallo.ebsd.kam)")
    return AnnotationRules(
        classes=list(classes),
        default=str(default),
        rules={str(k): v for k, v in body.items()},
        thresholds=thresholds,
        cleanup=cleanup,
        ignore=ignore,
        grains=dict(raw.get("grains", {}) or {}),
        kam=kam,
        source=source,
    )


def _validate_condition(cond: Any, where: str) -> None:
    if not isinstance(cond, Mapping) or not cond:
        raise ConfigError(f"{where}: a condition must be a non-empty mapping; got {cond!r}")
    for key, value in cond.items():
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{where}: {key!r} takes a non-empty list of conditions")
            for sub in value:
                _validate_condition(sub, where)
        elif key == "not":
            _validate_condition(value, where)
        else:
            quantities.get(key)
            if not isinstance(value, Mapping) or not value:
                raise ConfigError(f"{where}: {key!r} takes a mapping of comparisons, e.g. {{gt: 2.0}}")
            for op, threshold in value.items():
                if op not in COMPARISONS:
                    raise UnknownNameError(
                        f"unknown comparison {op!r} for {key!r} in {where}; valid names: {', '.join(COMPARISONS)}"
                    )
                if op == "between" and (not isinstance(threshold, list | tuple) or len(threshold) != 2):
                    raise ConfigError(f"{where}: 'between' takes [low, high]; got {threshold!r}")
                if isinstance(threshold, str) and threshold.lower() in THRESHOLD_METHODS and op not in ORDERED_OPS:
                    raise ConfigError(f"{where}: a data-driven threshold needs gt/ge/lt/le, not {op!r}")


def _collect_quantities(cond: Mapping[str, Any], found: list[str]) -> None:
    for key, value in cond.items():
        if key in ("all", "any"):
            for sub in value:
                _collect_quantities(sub, found)
        elif key == "not":
            _collect_quantities(value, found)
        elif key not in found:
            found.append(key)


def _data_driven(rules: AnnotationRules) -> dict[str, str]:
    """Quantity -> method for every threshold chosen from the data (section or inline)."""
    methods = dict(rules.thresholds)

    def walk(cond: Mapping[str, Any]) -> None:
        for key, value in cond.items():
            if key in ("all", "any"):
                for sub in value:
                    walk(sub)
            elif key == "not":
                walk(value)
            else:
                for threshold in value.values():
                    if isinstance(threshold, str) and threshold.lower() in THRESHOLD_METHODS:
                        methods.setdefault(key, threshold.lower())

    for cond in rules.rules.values():
        walk(cond)
    return methods


def classify_grains(
    quantities_table: pd.DataFrame,
    rules: str | Path | Mapping[str, Any] | AnnotationRules,
    *,
    phases: list[dict[str, Any]] | None = None,
) -> tuple[np.ndarray, dict[str, dict[str, Any]]]:
    """Assign a class to every grain from its grain-level quantities.

    Parameters
    ----------
    quantities_table : DataFrame
        One row per grain, one column per quantity the rules test (see
        :func:`~metallo.annotate.grain_quantities`); column ``n_pixels`` (if present)
        weights grains by size for data-driven thresholds.
    rules : preset name, YAML, file, dict or AnnotationRules
    phases : list of dict, optional
        The EBSD phase table, to resolve phase names in ``phase`` conditions.

    Returns
    -------
    grain_class : ndarray (n_grains,) int16
        Class index per row; -1 for ``ignore``.
    thresholds : dict
        Quantity -> ``{"value", "method", ...}`` for every numeric threshold used:
        ``method`` is ``"fixed"`` for written values, else ``"otsu"``/``"gmm"`` with details.

    Examples
    --------
    >>> table = pd.DataFrame({"gos": [0.5, 3.0, np.nan]})
    >>> cls, used = classify_grains(table, "classes: [f, b]\\ndefault: f\\nrules: {b: {gos: {gt: 2}}}")
    >>> cls.tolist(), used["gos"]["value"]
    ([0, 1, 0], 2.0)
    """
    from metallo.annotate._thresholds import select_threshold

    rules = load_rules(rules)
    missing = [q for q in rules.used_quantities() if q not in quantities_table.columns]
    if missing:
        raise ConfigError(f"quantities table lacks column(s) {', '.join(missing)} that the rules test")
    weights = quantities_table["n_pixels"].to_numpy(np.float64) if "n_pixels" in quantities_table else None
    methods = _data_driven(rules)
    for qname in methods:
        if qname not in quantities_table.columns:
            raise ConfigError(f"threshold for {qname!r} chosen from the data, but the rules do not test it")
    chosen: dict[str, dict[str, Any]] = {}
    used: dict[str, dict[str, Any]] = {}
    phase_ids = {str(p["name"]).lower(): int(p["id"]) for p in (phases or [])}
    # Grains an earlier rule has claimed (rules are tried in order, the first match wins).
    assigned = np.zeros(len(quantities_table), dtype=bool)

    def choose(qname: str) -> dict[str, Any]:
        # A threshold chosen from the data is chosen among the grains its rule sorts: those no
        # earlier rule claimed. An austenite phase claimed first had pulled the Otsu cut of the
        # ferrite's GOS up among its own values.
        column = quantities_table[qname].to_numpy(np.float64)
        pool = ~assigned if int((~assigned).sum()) >= 2 else np.ones_like(assigned)
        return select_threshold(column[pool], method=methods[qname], weights=None if weights is None else weights[pool])

    def value_of(qname: str, op: str, threshold: Any) -> Any:
        if qname in methods and op in ORDERED_OPS:
            if qname not in chosen:
                chosen[qname] = choose(qname)
            used[qname] = dict(chosen[qname])
            return chosen[qname]["value"]
        if qname == "phase":
            return _phase_value(threshold, phase_ids)
        if op in ("between", "in"):
            return [float(t) for t in threshold]
        try:
            number = float(threshold)
        except (TypeError, ValueError):
            raise ConfigError(f"threshold for {qname!r} must be a number; got {threshold!r}") from None
        if op in ORDERED_OPS:
            used.setdefault(qname, {"value": number, "method": "fixed"})
        return number

    def evaluate(cond: Mapping[str, Any]) -> np.ndarray:
        out = np.ones(len(quantities_table), dtype=bool)
        for key, value in cond.items():
            if key == "all":
                part = np.logical_and.reduce([evaluate(c) for c in value])
            elif key == "any":
                part = np.logical_or.reduce([evaluate(c) for c in value])
            elif key == "not":
                part = ~evaluate(value)
            else:
                column = quantities_table[key].to_numpy(np.float64)
                part = np.ones_like(out)
                with np.errstate(invalid="ignore"):
                    for op, threshold in value.items():
                        part &= np.asarray(COMPARISONS[op](column, value_of(key, op, threshold)), dtype=bool)
            out &= part
        return out

    default = -1 if rules.default == IGNORE_CLASS else rules.classes.index(rules.default)
    grain_class = np.full(len(quantities_table), default, dtype=np.int16)
    for name, cond in rules.rules.items():
        hit = evaluate(cond) & ~assigned
        grain_class[hit] = rules.classes.index(name)
        assigned |= hit
    return grain_class, used


def _phase_value(threshold: Any, phase_ids: dict[str, int]) -> Any:
    if isinstance(threshold, list | tuple):
        return [_phase_value(t, phase_ids) for t in threshold]
    if isinstance(threshold, str):
        key = threshold.lower()
        if key not in phase_ids:
            raise UnknownNameError(
                f"unknown phase {threshold!r} in a phase condition; valid names: {', '.join(sorted(phase_ids))}"
            )
        return float(phase_ids[key])
    return float(threshold)
