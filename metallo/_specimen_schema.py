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

#: Tolerance (rad) of the Euler-angle ranges (files store 5 decimals).
_EULER_TOL = 1e-3
_EULER_MAX = np.array([2 * np.pi, np.pi, 2 * np.pi])

__all__ = [
    "NODE_KINDS",
    "describe_dataset",
    "jsonable",
    "validate_node",
    "validate_provenance",
    "validate_root",
    "validate_values",
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


def _first_point(bad: np.ndarray, ds: xr.Dataset) -> str:
    index = np.unravel_index(int(np.argmax(bad)), bad.shape)
    names = [str(d) for d in ds["phase"].dims] if "phase" in ds else ["y", "x"]
    return ", ".join(f"{n}={i}" for n, i in zip(names, index, strict=False))


def _check_coords(ds: xr.Dataset, where: str) -> None:
    for name in ("y", "x"):
        if name not in ds.coords or ds[name].dtype.kind != "f":
            continue
        values = np.asarray(ds[name].values)
        if not np.isfinite(values).all():
            raise SchemaError(f"{where} coordinate {name!r}: expected finite positions (µm); got NaN/inf")
        if values.size > 1 and not (np.diff(values) > 0).all():
            raise SchemaError(f"{where} coordinate {name!r}: expected strictly increasing positions")


def validate_values(ds: xr.Dataset, node: str, kind: str, *, where: str) -> None:
    """Check the values the schemas describe but JSON Schema cannot see (reads the data).

    EBSD maps: finite, strictly increasing ``y``/``x``; finite ``step_um``; at indexed points
    (``phase >= 0``) finite Euler angles with phi1, phi2 in [0, 2π] and Phi in [0, π] rad
    (±1e-3), unit quaternions, finite ``ci`` and ``iq``. Unindexed points may hold anything.
    Micrographs, annotations and segmentations: finite, increasing ``y``/``x``.

    Parameters
    ----------
    ds : xr.Dataset
        The node's data.
    node, kind : str
        Node path and its kind (one of :data:`NODE_KINDS`).
    where : str
        The file or specimen, for the message.

    Raises
    ------
    SchemaError
        Naming the node, the variable, the first bad point and the expected range.

    Examples
    --------
    >>> validate_values(ebsd, "ebsd/map1", "ebsd", where="S1.h5")  # doctest: +SKIP
    """
    at = f"{where}: node '/{node}'"
    if kind in ("ebsd", "micrographs", "annotations", "segmentations"):
        _check_coords(ds, at)
    if kind == "micrographs" and np.isinf(np.asarray(ds.attrs.get("pixel_size_um", 1.0), dtype=float)).any():
        raise SchemaError(f"{at} field 'attrs.pixel_size_um': expected a positive pixel size in µm or NaN; got inf")
    if kind != "ebsd":
        return
    try:
        lattices = [p.get("lattice", []) for p in json.loads(str(ds.attrs.get("phases", "[]")))]
    except (ValueError, AttributeError):
        lattices = []  # the schema reports malformed phases
    if not all(np.isfinite(np.asarray(v, dtype=float)).all() for v in lattices if isinstance(v, list)):
        raise SchemaError(f"{at} field 'attrs.phases': lattice constants must be finite numbers")
    for key in ("step_um", "step_y_um"):
        if key in ds.attrs and not np.isfinite(np.asarray(ds.attrs[key], dtype=float)).all():
            raise SchemaError(f"{at} field 'attrs.{key}': expected a finite step in µm; got {ds.attrs[key]!r}")
    indexed = np.asarray(ds["phase"].values) >= 0
    if "euler" in ds.data_vars:
        euler = np.asarray(ds["euler"].values, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(euler) & (euler >= -_EULER_TOL) & (euler <= _EULER_MAX + _EULER_TOL)
        bad = indexed & ~ok.all(axis=-1)
        if bad.any():
            raise SchemaError(
                f"{at} variable 'euler': {int(bad.sum())} indexed points have non-finite or "
                f"out-of-range angles (first at {_first_point(bad, ds)}: "
                f"[{', '.join(f'{v:.4g}' for v in euler[bad][0])}]); expected phi1, phi2 in [0, 2pi] and "
                "Phi in [0, pi] rad, or phase -1"
            )
    if "quaternion" in ds.data_vars:
        q = np.asarray(ds["quaternion"].values, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            norm = np.sqrt((q * q).sum(axis=-1))
            bad = indexed & ~(np.abs(norm - 1) <= 1e-3)
        if bad.any():
            raise SchemaError(
                f"{at} variable 'quaternion': {int(bad.sum())} indexed points are not finite unit "
                f"quaternions (first at {_first_point(bad, ds)}); expected |q| = 1, or phase -1"
            )
    for name in ("ci", "iq"):
        if name in ds.data_vars and ds[name].dims == ds["phase"].dims:
            bad = indexed & ~np.isfinite(np.asarray(ds[name].values, dtype=np.float64))
            if bad.any():
                raise SchemaError(
                    f"{at} variable {name!r}: {int(bad.sum())} indexed points are NaN/inf "
                    f"(first at {_first_point(bad, ds)}); expected finite values, or phase -1"
                )
