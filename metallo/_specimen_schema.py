"""JSON Schema validation of the Specimen container (root attrs, node kinds, provenance).

The schemas live in ``data_schemas/specimen_*.json`` (seen by the package through the
``metallo/_schemas`` link). A node is validated through a *description*: a JSON-safe dict
``{"node", "attrs", "dims", "variables", "coords"}`` built from the metadata of an
``xr.Dataset`` without touching its values, so validating a lazily opened file reads no data.

Attributes that hold JSON text declare ``contentMediaType: application/json`` and a
``contentSchema``; those two keywords are annotations in plain JSON Schema, and metallo's
validator turns them into assertions so that a malformed ``classes`` or ``phases`` string is
caught and named.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import numpy as np
import xarray as xr
from jsonschema.exceptions import ValidationError, best_match

from metallo.errors import SchemaError

__all__ = [
    "NODE_KINDS",
    "describe_dataset",
    "jsonable",
    "validate_node",
    "validate_provenance",
    "validate_root",
]

#: Node kinds with a schema of their own; ``ebsd_derived`` is ``ebsd/<name>/derived``,
#: ``ebsd_parent`` is ``ebsd/<name>/parent`` (parent-austenite reconstruction).
NODE_KINDS = (
    "micrographs",
    "ebsd",
    "ebsd_derived",
    "ebsd_parent",
    "registration",
    "annotations",
    "segmentations",
    "quantities",
)


def _json_content(
    validator: Any, content_schema: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if schema.get("contentMediaType") != "application/json" or not isinstance(instance, str):
        return
    try:
        decoded = json.loads(instance)
    except json.JSONDecodeError as exc:
        yield ValidationError(
            f"is not valid JSON ({exc.msg} at character {exc.pos}): {instance[:60]!r}"
        )
        return
    yield from validator.descend(decoded, content_schema)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"contentSchema": _json_content}
)


@cache
def _validator(name: str) -> Any:
    text = (
        resources.files("metallo").joinpath("_schemas", f"specimen_{name}.json").read_text("utf-8")
    )
    schema = json.loads(text)
    _Validator.check_schema(schema)
    return _Validator(schema)


def jsonable(value: Any) -> Any:
    """An attribute value as plain JSON types (numpy scalars and arrays become numbers and lists)."""
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()] if value.ndim else jsonable(value.item())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and math.isnan(value):
        return value  # jsonschema accepts NaN as a number: pixel_size_um is NaN when unknown
    return value


def _dtype_name(dtype: np.dtype) -> str:
    return "str" if dtype.kind in "OUS" else dtype.name


def _variable(var: xr.Variable) -> dict[str, Any]:
    return {
        "dims": list(map(str, var.dims)),
        "shape": list(var.shape),
        "dtype": _dtype_name(var.dtype),
        "attrs": {str(k): jsonable(v) for k, v in var.attrs.items()},
    }


def describe_dataset(ds: xr.Dataset, node: str) -> dict[str, Any]:
    """The JSON-safe description of a node that the node schemas validate (no data is read)."""
    return {
        "node": node,
        "attrs": {str(k): jsonable(v) for k, v in ds.attrs.items()},
        "dims": {str(k): int(v) for k, v in ds.sizes.items()},
        "variables": {str(k): _variable(v.variable) for k, v in ds.data_vars.items()},
        "coords": {str(k): _variable(v.variable) for k, v in ds.coords.items()},
    }


def _field(error: ValidationError) -> str:
    path = [str(p) for p in error.absolute_path]
    if path and isinstance(error.absolute_path[0], int):
        path[0] = f"record {path[0]}:"
    if error.validator == "required" and isinstance(error.instance, Mapping):
        missing = [k for k in error.validator_value if k not in error.instance]
        if missing:
            path.append(str(missing[0]))
    return ".".join(path).replace(":.", ": ") or "(whole)"


def _raise_first(errors: Iterator[ValidationError], where: str, what: str) -> None:
    error = best_match(errors)
    if error is None:
        return
    field = _field(error)
    if error.validator == "required":
        reason = "missing"
    else:
        reason = " ".join(error.message.split())
        if isinstance(error.instance, (str, int, float)) and repr(error.instance) not in reason:
            reason = f"got {error.instance!r}; {reason}"
        if len(reason) > 160:
            reason = reason[:157] + "..."
    raise SchemaError(f"{where}: {what} field {field!r}: {reason}")


def validate_root(attrs: Mapping[str, Any], *, where: str) -> None:
    """Validate the root attributes; ``where`` names the file or specimen in the error."""
    doc = {str(k): jsonable(v) for k, v in attrs.items()}
    _raise_first(_validator("root").iter_errors(doc), where, "node '/'")


def validate_node(description: Mapping[str, Any], kind: str, *, where: str) -> None:
    """Validate a node description against the schema of ``kind`` (one of :data:`NODE_KINDS`)."""
    _raise_first(
        _validator(kind).iter_errors(description), where, f"node '/{description['node']}' ({kind})"
    )


def validate_provenance(records: Sequence[Mapping[str, Any]], *, where: str) -> None:
    """Validate the provenance records (a list of dicts)."""
    _raise_first(_validator("provenance").iter_errors(records), where, "node '/provenance'")
