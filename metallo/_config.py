"""YAML configuration files validated by a JSON Schema in data_schemas/, with line-numbered errors.

One loader for every YAML file a user writes (recipes, training configs): it reads the file,
parses it, checks it against ``data_schemas/<schema>.json`` and reports each violation with
its YAML path and line, e.g.
``train.yaml: lr (line 7): -0.1 is less than or equal to the minimum of 0``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from metallo.errors import ConfigError, SchemaError

__all__ = ["MAX_YAML_BYTES", "MAX_YAML_VALUES", "line_map", "load_yaml", "parse_yaml", "resolve_path", "schema",
           "validate"]

_SCHEMAS = Path(__file__).resolve().parent / "_schemas"
#: Largest configuration file read (a recipe or training config is a page of YAML).
MAX_YAML_BYTES = 1 << 20
#: Most values a file may hold once YAML aliases are expanded (an alias bomb has billions).
MAX_YAML_VALUES = 100_000


@cache
def schema(name: str) -> dict[str, Any]:
    """The JSON Schema ``data_schemas/<name>.json``.

    Examples
    --------
    >>> schema("train_config")["title"]
    'metallo training configuration'
    """
    return json.loads((_SCHEMAS / f"{name}.json").read_text(encoding="utf-8"))


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses duplicate keys (the later would silently win)."""

    source = "<yaml>"

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
                    f"{self.source}: line {key_node.start_mark.line + 1}: a mapping key must be a string or number"
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
        sizes[key] = min(total, MAX_YAML_VALUES + 1)
        return sizes[key]

    return size(root)


def _line_map(root: yaml.Node | None) -> dict[str, int]:
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


def line_map(text: str) -> dict[str, int]:
    """Map dotted YAML paths (``steps.register.grid_um``, ``classes[1]``) to 1-based line numbers.

    Examples
    --------
    >>> line_map("a: 1\\nb:\\n  c: [x, y]\\n")["b.c[1]"]
    3
    """
    try:
        return _line_map(yaml.compose(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        return {}


def parse_yaml(text: str, *, source: str) -> tuple[Any, dict[str, int]]:
    """Parse YAML text, refusing duplicate keys and alias bombs; returns the content and its line map.

    Examples
    --------
    >>> parse_yaml("a: 1\\na: 2\\n", source="x.yaml")
    Traceback (most recent call last):
    ...
    metallo.errors.ConfigError: x.yaml: line 2: duplicate key 'a' (first at line 1); each key may appear once
    """
    try:
        loader = _Loader(text)  # the reader refuses control characters already here
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {' '.join(str(exc).split())[:200]}") from None
    loader.source = source
    try:
        root = loader.get_single_node()
        if root is None:
            return None, {}
        if _expanded_size(root, source) > MAX_YAML_VALUES:
            raise ConfigError(
                f"{source}: expands to more than {MAX_YAML_VALUES:,} values through YAML aliases; "
                "a configuration is a page of settings (alias bomb refused)"
            )
        return loader.construct_document(root), _line_map(root)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())[:200]
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML nested too deeply") from None
    finally:
        loader.dispose()


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


def validate(data: Any, schema_name: str, *, source: str, lines: Mapping[str, int] | None = None) -> None:
    """Check ``data`` against ``data_schemas/<schema_name>.json``.

    Parameters
    ----------
    data : Any
        The parsed configuration.
    schema_name : str
        File stem of the schema, e.g. ``"recipe"`` or ``"train_config"``.
    source : str
        The file (or ``"<dict>"``) named in the error.
    lines : mapping, optional
        Dotted YAML path -> line number, from :func:`line_map`.

    Raises
    ------
    SchemaError
        Naming the source, then up to three violations as ``path (line N): message``.

    Examples
    --------
    >>> validate({"lr": -1}, "train_config", source="<dict>")
    Traceback (most recent call last):
    ...
    metallo.errors.SchemaError: <dict>: lr: -1 is less than or equal to the minimum of 0
    """
    import jsonschema

    lines = lines or {}
    bad = _non_finite(data, "")
    if bad:
        line = lines.get(bad)
        raise SchemaError(f"{source}: {bad}{f' (line {line})' if line else ''}: NaN and infinity are not allowed")
    validator = jsonschema.Draft202012Validator(schema(schema_name))
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), _dotted(e.absolute_path)))
    if not errors:
        return
    parts = []
    for err in errors[:3]:
        where = _dotted(err.absolute_path) or "<root>"
        line = lines.get(_dotted(err.absolute_path))
        message = " ".join(err.message.split())
        message = message if len(message) <= 160 else message[:157] + "..."
        parts.append(f"{where}{f' (line {line})' if line else ''}: {message}")
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    raise SchemaError(f"{source}: {'; '.join(parts)}{more}")


def load_yaml(path: str | Path, *, schema_name: str, what: str) -> tuple[dict[str, Any], dict[str, int]]:
    """Read a YAML mapping from ``path`` and validate it against ``data_schemas/<schema_name>.json``.

    Parameters
    ----------
    path : path
        The YAML file.
    schema_name : str
        File stem of the schema.
    what : str
        What the file is, for messages (``"recipe"``, ``"training config"``).

    Returns
    -------
    data : dict
        The parsed, valid content.
    lines : dict
        Dotted YAML path -> line number (for later, semantic checks).

    Raises
    ------
    ConfigError
        The file cannot be read or is not YAML (with the line of the syntax error).
    SchemaError
        The content is not a mapping or violates the schema (path and line of each violation).

    Examples
    --------
    >>> from pathlib import Path
    >>> _ = Path("train.yaml").write_text("model: unet\\nlr: 0\\n")
    >>> load_yaml("train.yaml", schema_name="train_config", what="training config")
    Traceback (most recent call last):
    ...
    metallo.errors.SchemaError: train.yaml: lr (line 2): 0 is less than or equal to the minimum of 0
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes; a {what} is at most {MAX_YAML_BYTES:,} bytes of YAML")
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save the {what} as UTF-8"
        ) from None
    if "\x00" in text:
        raise ConfigError(f"{path}: contains NUL bytes; a {what} is YAML text")
    data, lines = parse_yaml(text, source=str(path))
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: a {what} must be a mapping of options; got {type(data).__name__}")
    validate(data, schema_name, source=str(path), lines=lines)
    return data, lines


def resolve_path(value: str | Path, base_dir: str | Path) -> str:
    """A path written in a configuration file, made absolute.

    ``dataset:NAME`` or ``dataset:NAME/FILE`` names a registered example data set and resolves
    through :func:`metallo.datasets.path` (``METALLO_DATA`` or the download cache); a relative
    path is relative to ``base_dir`` (the file's folder).

    Examples
    --------
    >>> resolve_path("runs/a", "/data/configs")
    '/data/configs/runs/a'
    """
    text = str(value)
    if text.startswith("dataset:"):
        from metallo import datasets

        return str(datasets.path(text.removeprefix("dataset:")))
    return str((Path(base_dir) / text).resolve())
