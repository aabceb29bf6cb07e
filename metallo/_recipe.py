"""Recipes: one specimen's analysis as YAML (or a dict), validated by data_schemas/recipe.json.

Errors name the recipe file, the YAML path of the offending value and its line, e.g.
``S1.yaml: steps.register.grid_um (line 14): -3 is less than or equal to the minimum of 0``.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
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


#: Largest recipe file read (a recipe is a page of YAML).
MAX_RECIPE_BYTES = 1 << 20
#: Most values a recipe may hold once YAML aliases are expanded (an alias bomb has billions).
MAX_RECIPE_VALUES = 100_000
#: Options of each segmentation method (the schema bounds their values).
_SEGMENT_OPTIONS = {
    "unsupervised": {"n_superpixels", "compactness", "channels", "n_conv", "n_outputs", "lr",
                     "momentum", "max_iter", "seed", "device", "progress"},
    "checkpoint": {"tile", "overlap", "batch_size", "device", "scale", "amp",
                   "progress", "tta", "pixel_size_um"},
    "annotation": set(),
}


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses duplicate keys (the later would silently win)."""

    source = "<recipe>"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                raise ConfigError(
                    f"{self.source}: line {key_node.start_mark.line + 1}: a mapping key must be "
                    "a string or number"
                ) from None
            if first is not None:
                raise ConfigError(
                    f"{self.source}: line {key_node.start_mark.line + 1}: duplicate key {key!r} "
                    f"(first at line {first}); each key may appear once"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: yaml.Node, source: str) -> int:
    """Number of values ``root`` stands for with aliases expanded (memoised: linear time)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"{source}: line {node.start_mark.line + 1}: a YAML alias refers to itself")
        active.add(key)
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(v) for v in node.value)
        else:
            total = 1
        active.discard(key)
        sizes[key] = min(total, MAX_RECIPE_VALUES + 1)
        return sizes[key]

    return size(root)


def _parse_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """The recipe's content and its YAML node tree, refusing alias bombs and duplicate keys."""
    try:
        loader = _Loader(text)  # the reader already refuses control characters
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {' '.join(str(exc).split())[:200]}") from None
    loader.source = source
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        if _expanded_size(root, source) > MAX_RECIPE_VALUES:
            raise ConfigError(
                f"{source}: expands to more than {MAX_RECIPE_VALUES:,} values through YAML "
                "aliases; a recipe is a page of settings (alias bomb refused)"
            )
        return loader.construct_document(root), root
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())[:200]
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML nested too deeply") from None
    finally:
        loader.dispose()


def _line_map(root: yaml.Node | None) -> dict[str, int]:
    """Map dotted YAML paths to 1-based line numbers (each node visited once)."""
    lines: dict[str, int] = {}
    visited: set[int] = set()

    def walk(node: yaml.Node, path: str) -> None:
        lines[path] = node.start_mark.line + 1
        if id(node) in visited:  # an alias: its content was mapped where it was defined
            return
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = f"{path}.{key.value}" if path else str(key.value)
                walk(value, sub)
                lines[sub] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                walk(value, f"{path}[{i}]")

    if root is not None:
        walk(root, "")
    return lines


def _non_finite(value: Any, path: str) -> str | None:
    """The dotted path of the first NaN or infinite number in ``value``."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "<root>"
    if isinstance(value, Mapping):
        items: Any = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for sub, v in items:
        found = _non_finite(v, sub)
        if found:
            return found
    return None


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


def _check_output(data: dict[str, Any], base_dir: Path, name: str, lines: dict[str, int]) -> None:
    """Relative output folders stay inside the recipe's folder; absolute ones are announced."""
    given = data.get("output", {}).get("dir")
    if given is None:
        return
    line = lines.get("output.dir")
    at = f"output.dir{f' (line {line})' if line else ''}"
    if Path(given).is_absolute():
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
            size = path.stat().st_size
            if size > MAX_RECIPE_BYTES:
                raise ConfigError(
                    f"{path}: {size:,} bytes; a recipe is at most {MAX_RECIPE_BYTES:,} bytes of YAML"
                )
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read recipe ({exc.strerror or exc})") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                "save the recipe as UTF-8"
            ) from None
        if "\x00" in text:
            raise ConfigError(f"{path}: contains NUL bytes; a recipe is YAML text")
        data, root = _parse_yaml(text, name)
        if not isinstance(data, dict):
            raise SchemaError(f"{path}: a recipe must be a mapping with a 'specimen' key; got {type(data).__name__}")
        lines = _line_map(root)
        base = Path(base_dir) if base_dir is not None else path.resolve().parent
    bad = _non_finite(data, "")
    if bad:
        line = lines.get(bad)
        raise SchemaError(f"{name}: {bad}{f' (line {line})' if line else ''}: NaN and infinity are not allowed")
    validator = jsonschema.Draft202012Validator(recipe_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), _dotted(e.absolute_path)))
    if errors:
        parts = []
        for err in errors[:3]:
            where = _dotted(err.absolute_path) or "<root>"
            line = lines.get(_dotted(err.absolute_path))
            message = " ".join(err.message.split())
            message = message if len(message) <= 160 else message[:157] + "..."
            parts.append(f"{where}{f' (line {line})' if line else ''}: {message}")
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        raise SchemaError(f"{name}: {'; '.join(parts)}{more}")
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
    _check_output(data, base, name, lines)
    _resolve_paths(data, base)
    return Recipe(data=data, base_dir=base, source=name, _lines=lines)
