"""YAML configuration files validated by a JSON Schema in data_schemas/, with line-numbered errors.

One loader for every YAML file a user writes (recipes, training configs): it reads the file,
parses it, checks it against ``data_schemas/<schema>.json`` and reports each violation with
its YAML path and line, e.g.
``train.yaml: lr (line 7): -0.1 is less than or equal to the minimum of 0``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from metallo.errors import ConfigError, SchemaError

__all__ = ["line_map", "load_yaml", "resolve_path", "schema", "validate"]

_SCHEMAS = Path(__file__).resolve().parent / "_schemas"


@cache
def schema(name: str) -> dict[str, Any]:
    """The JSON Schema ``data_schemas/<name>.json``.

    Examples
    --------
    >>> schema("train_config")["title"]
    'metallo training configuration'
    """
    return json.loads((_SCHEMAS / f"{name}.json").read_text(encoding="utf-8"))


def line_map(text: str) -> dict[str, int]:
    """Map dotted YAML paths (``steps.register.grid_um``, ``classes[1]``) to 1-based line numbers.

    Examples
    --------
    >>> line_map("a: 1\\nb:\\n  c: [x, y]\\n")["b.c[1]"]
    3
    """
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = f"{path}.{key.value}" if path else str(key.value)
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

    validator = jsonschema.Draft202012Validator(schema(schema_name))
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), _dotted(e.absolute_path)))
    if not errors:
        return
    lines = lines or {}
    parts = []
    for err in errors[:3]:
        where = _dotted(err.absolute_path) or "<root>"
        line = lines.get(_dotted(err.absolute_path))
        parts.append(f"{where}{f' (line {line})' if line else ''}: {err.message}")
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
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: a {what} must be a mapping of options; got {type(data).__name__}")
    lines = line_map(text)
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
