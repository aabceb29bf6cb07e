"""Recipes: one specimen's analysis as YAML (or a dict), validated by data_schemas/recipe.json.

Errors name the recipe file, the YAML path of the offending value and its line, e.g.
``S1.yaml: steps.register.grid_um (line 14): -3 is less than or equal to the minimum of 0``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from metallo.errors import ConfigError, SchemaError

__all__ = ["Recipe", "load_recipe", "recipe_schema"]

_SCHEMAS = Path(__file__).resolve().parent / "_schemas"


@cache
def recipe_schema() -> dict[str, Any]:
    """The JSON Schema of recipes (data_schemas/recipe.json)."""
    return json.loads((_SCHEMAS / "recipe.json").read_text(encoding="utf-8"))


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


def _line_map(text: str) -> dict[str, int]:
    """Map dotted YAML paths to 1-based line numbers."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = f"{path}.{key.value}" if path else str(key.value)
                lines[sub] = key.start_mark.line + 1
                walk(value, sub)
                lines[sub] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                walk(value, f"{path}[{i}]")

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, "")
    return lines


def _dotted(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _resolve_paths(data: dict[str, Any], base_dir: Path) -> None:
    inputs = data.get("inputs", {})
    for spec in inputs.get("micrographs", {}).values():
        spec["path"] = str((base_dir / spec["path"]).resolve())
    if "ebsd" in inputs:
        inputs["ebsd"]["path"] = str((base_dir / inputs["ebsd"]["path"]).resolve())
    segment = data.get("steps", {}).get("segment") or {}
    if "checkpoint" in segment:
        segment["checkpoint"] = str((base_dir / segment["checkpoint"]).resolve())
    output = data.setdefault("output", {})
    output["dir"] = str((base_dir / output.get("dir", data["specimen"]["id"])).resolve())


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
    import jsonschema

    lines: dict[str, int] = {}
    if isinstance(source, Mapping):
        data = copy.deepcopy(dict(source))
        name = "<dict>"
        base = Path(base_dir) if base_dir is not None else Path.cwd()
    else:
        path = Path(source)
        name = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read recipe ({exc.strerror or exc})") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
        if not isinstance(data, dict):
            raise SchemaError(f"{path}: a recipe must be a mapping with a 'specimen' key; got {type(data).__name__}")
        lines = _line_map(text)
        base = Path(base_dir) if base_dir is not None else path.resolve().parent
    validator = jsonschema.Draft202012Validator(recipe_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), _dotted(e.absolute_path)))
    if errors:
        parts = []
        for err in errors[:3]:
            where = _dotted(err.absolute_path) or "<root>"
            line = lines.get(_dotted(err.absolute_path))
            parts.append(f"{where}{f' (line {line})' if line else ''}: {err.message}")
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        raise SchemaError(f"{name}: {'; '.join(parts)}{more}")
    inputs = data.get("inputs", {})
    if not inputs.get("synthetic") and not inputs.get("micrographs") and not inputs.get("ebsd"):
        raise SchemaError(f"{name}: inputs: give micrographs and/or ebsd files, or synthetic: {{seed: N}}")
    _resolve_paths(data, base)
    return Recipe(data=data, base_dir=base, source=name, _lines=lines)
