"""Recipes: one specimen's analysis as YAML (or a dict), validated by data_schemas/recipe.json.

Errors name the recipe file, the YAML path of the offending value and its line, e.g.
``S1.yaml: steps.register.grid_um (line 14): -3 is less than or equal to the minimum of 0``.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metallo._config import load_yaml, resolve_path, schema, validate
from metallo.errors import SchemaError

__all__ = ["Recipe", "load_recipe", "recipe_schema"]

#: Options of each segmentation method (the schema bounds their values).
_SEGMENT_OPTIONS = {
    "unsupervised": {"n_superpixels", "compactness", "channels", "n_conv", "n_outputs", "lr",
                     "momentum", "max_iter", "seed", "device", "progress"},
    "checkpoint": {"tile", "overlap", "batch_size", "device", "scale", "amp",
                   "progress", "tta", "pixel_size_um"},
    "annotation": set(),
}


def recipe_schema() -> dict[str, Any]:
    """The JSON Schema of recipes (data_schemas/recipe.json)."""
    return schema("recipe")


@dataclass(frozen=True)
class Recipe:
    """A validated recipe.

    Attributes
    ----------
    data : dict
        The recipe content with relative paths resolved against ``base_dir``.
    base_dir : Path
        Folder the recipe's relative paths are relative to.
    source : str
        The recipe file, or ``"<dict>"``.
    """

    data: dict[str, Any]
    base_dir: Path
    source: str = "<dict>"
    _lines: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def specimen_id(self) -> str:
        return str(self.data["specimen"]["id"])

    @property
    def output_dir(self) -> Path:
        return Path(self.data.get("output", {}).get("dir", self.specimen_id))

    @property
    def specimen_path(self) -> Path:
        return self.output_dir / f"{self.specimen_id}.h5"

    @property
    def report_path(self) -> Path:
        return self.output_dir / f"{self.specimen_id}_report.html"

    def step(self, name: str) -> dict[str, Any] | None:
        """Parameters of a step, or ``None`` when the recipe does not ask for it."""
        steps = self.data.get("steps", {})
        return None if name not in steps else dict(steps[name] or {})


def _resolve_paths(data: dict[str, Any], base_dir: Path) -> None:
    inputs = data.get("inputs", {})
    for spec in inputs.get("micrographs", {}).values():
        spec["path"] = resolve_path(spec["path"], base_dir)
    if "ebsd" in inputs:
        inputs["ebsd"]["path"] = resolve_path(inputs["ebsd"]["path"], base_dir)
    segment = data.get("steps", {}).get("segment") or {}
    if "checkpoint" in segment:
        segment["checkpoint"] = resolve_path(segment["checkpoint"], base_dir)
    output = data.setdefault("output", {})
    output["dir"] = str((base_dir / output.get("dir", data["specimen"]["id"])).resolve())


def _line(lines: dict[str, int], key: str) -> str:
    """`` (line N)`` for a YAML path read from a file, else ``""``."""
    return f" (line {lines[key]})" if key in lines else ""


def _check_output(data: dict[str, Any], base_dir: Path, name: str, lines: dict[str, int], *,
                  from_file: bool) -> None:
    """Relative output folders stay inside the recipe's folder; absolute ones of a recipe file are
    announced (a recipe built in the caller's own code names its folder itself)."""
    given = data.get("output", {}).get("dir")
    if given is None:
        return
    line = lines.get("output.dir")
    at = f"output.dir{f' (line {line})' if line else ''}"
    if Path(given).is_absolute():
        if not from_file:
            return
        warnings.warn(
            f"{name}: {at}: writing outside the recipe's folder, to {Path(given).resolve()} "
            "(an absolute output.dir)",
            UserWarning,
            stacklevel=3,
        )
        return
    out = (base_dir / given).resolve()
    if not out.is_relative_to(base_dir.resolve()):
        raise SchemaError(
            f"{name}: {at}: {given!r} leads out of the recipe's folder {base_dir.resolve()}; "
            "use a folder inside it, or an absolute path to write elsewhere"
        )


def load_recipe(source: str | Path | Mapping[str, Any], *, base_dir: str | Path | None = None) -> Recipe:
    """Read and validate a recipe.

    Parameters
    ----------
    source : path or mapping
        A YAML file, or the recipe as a dict.
    base_dir : path, optional
        Folder relative paths are resolved against; the recipe file's folder by default
        (the current directory for a dict).

    Returns
    -------
    Recipe

    Raises
    ------
    SchemaError
        A key or value violates the schema; the message gives its YAML path and line.
    ConfigError
        The file cannot be read or is not YAML.

    Examples
    --------
    >>> r = load_recipe({"specimen": {"id": "S1"}, "inputs": {"synthetic": {"seed": 1}}})
    >>> r.specimen_id
    'S1'
    """
    lines: dict[str, int] = {}
    if isinstance(source, Mapping):
        data = copy.deepcopy(dict(source))
        name = "<dict>"
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        validate(data, "recipe", source=name)
    else:
        path = Path(source)
        name = str(path)
        data, lines = load_yaml(path, schema_name="recipe", what="recipe")
        base = Path(base_dir) if base_dir is not None else path.resolve().parent
    inputs = data.get("inputs", {})
    if not inputs.get("synthetic") and not inputs.get("micrographs") and not inputs.get("ebsd"):
        raise SchemaError(f"{name}: inputs: give micrographs and/or ebsd files, or synthetic: {{seed: N}}")
    segment = data.get("steps", {}).get("segment") or {}
    method = segment.get("method", "unsupervised")
    unknown = sorted(set(segment.get("options") or {}) - _SEGMENT_OPTIONS[method])
    if unknown:
        raise SchemaError(
            f"{name}: steps.segment.options.{unknown[0]}: not an option of method {method!r}; "
            f"expected one of {', '.join(sorted(_SEGMENT_OPTIONS[method])) or '(none)'}"
        )
    classes = segment.get("classes")
    if classes is not None and method == "unsupervised":
        n_classes = int(segment.get("n_classes", 2))
        if len(classes) != n_classes:
            raise SchemaError(f"{name}: steps.segment.classes{_line(lines, 'steps.segment.classes')}: {len(classes)} names "
                              f"for n_classes {n_classes}; give one name per class")
    if classes is not None and len(set(map(str, classes))) != len(classes):
        raise SchemaError(f"{name}: steps.segment.classes{_line(lines, 'steps.segment.classes')}: a name occurs more "
                          "than once; each class needs its own name")
    for cls, bounds in (data.get("limits") or {}).items():
        if bounds[0] > bounds[1]:
            raise SchemaError(f"{name}: limits.{cls}{_line(lines, f'limits.{cls}')}: min {bounds[0]:g} is above max "
                              f"{bounds[1]:g}; give [min, max] as fractions")
    _check_output(data, base, name, lines, from_file=not isinstance(source, Mapping))
    _resolve_paths(data, base)
    return Recipe(data=data, base_dir=base, source=name, _lines=lines)
