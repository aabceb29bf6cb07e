"""EBSD-informed label maps: rules per grain, clean-up, ignore band; and their warp to a micrograph."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from metallo import names
from metallo._xarray import pixel_size_um
from metallo.annotate._cleanup import clean_labels, ignore_band
from metallo.annotate._labels import as_annotation
from metallo.annotate._quantities import _Context, quantity_table
from metallo.annotate._rules import AnnotationRules, classify_grains, load_rules
from metallo.errors import ConfigError, RegistrationError

__all__ = ["from_ebsd", "to_micrograph"]

RulesLike = str | Path | Mapping[str, Any] | AnnotationRules


def from_ebsd(
    ebsd: xr.Dataset,
    *,
    rules: RulesLike = "lath_bainite",
    grains: Any = None,
    derived: xr.Dataset | None = None,
    ignore_index: int = 255,
) -> xr.DataArray:
    """Label an EBSD map by rules on grain-level quantities (GOS, KAM, size, phase, ...).

    Every grain gets one class, so labels follow grain boundaries; then small regions are
    removed, enclosed gaps filled, borders smoothed, and an ``ignore_index`` band is set
    along class borders and at low-confidence points (see ``docs/annotate.md``).

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map (layout of :func:`metallo.ebsd.ebsd_dataset`), ideally cleaned.
    rules : str, Path, mapping or AnnotationRules
        A preset (``"lath_bainite"``, ``"phase"``), YAML text, a YAML file or a dict.
    grains : Grains, optional
        Result of :func:`metallo.ebsd.grains`; reconstructed with ``rules["grains"]``
        options when omitted.
    derived : xr.Dataset, optional
        An ``ebsd/<name>/derived`` node: its ``kam`` (when made with the rules' ``kam``
        options) and ``boundaries`` maps are reused instead of recomputed.
    ignore_index : int
        Label of pixels without a class (not indexed, no grain, border band, low CI).

    Returns
    -------
    xr.DataArray (y, x) uint8
        On the EBSD coordinates, named ``labels``; attrs ``classes`` (JSON list),
        ``ignore_index``, ``rules`` (JSON), ``thresholds`` (JSON: quantity ->
        value/method), ``pixel_size_um``, ``source``.

    Examples
    --------
    >>> import metallo as mt
    >>> spec = mt.synth.make_specimen(0, ebsd_shape=(60, 60), micrographs=False)
    >>> mask = from_ebsd(spec.ebsd, rules="lath_bainite")
    >>> json.loads(mask.attrs["classes"]), mask.dtype.name
    (['polygonal_ferrite', 'lath_bainite'], 'uint8')
    """
    if not isinstance(ebsd, xr.Dataset) or "phase" not in ebsd:
        raise ConfigError("from_ebsd needs an EBSD map Dataset with a 'phase' variable (see metallo.io.read_ebsd)")
    if not 0 <= int(ignore_index) <= 255:
        raise ConfigError(f"ignore_index must fit uint8 (0..255); got {ignore_index}")
    rules = load_rules(rules, ebsd=ebsd)
    if len(rules.classes) > int(ignore_index):
        raise ConfigError(f"{len(rules.classes)} classes collide with ignore_index {ignore_index}")
    from metallo.ebsd import phases_of

    ctx = _Context(ebsd, grains, derived, {"grains": rules.grains, "kam": rules.kam})
    table = quantity_table(ctx, rules.used_quantities())
    grain_class, thresholds = classify_grains(table, rules, phases=phases_of(ebsd))
    # A data-driven threshold that splits off a few grains makes class fractions of individual
    # grains: the annotation says so in its quality record (QC of fractions resting on it fails).
    unsupported = [f"{q}: {t['reason']}" for q, t in thresholds.items() if t.get("supported") is False]
    quality: dict[str, Any] | None = None
    if any(t.get("method") in ("otsu", "gmm") for t in thresholds.values()):
        quality = {names.PASSED: not unsupported, "failure_reasons": unsupported}
    for reason in unsupported:
        warnings.warn(f"annotation of {ebsd.attrs.get('source', 'the EBSD map')}: data-driven threshold of {reason}",
                      UserWarning, stacklevel=2)
    ids = ctx.ids
    lut = np.full(max(ctx.n, 1), ignore_index, dtype=np.uint8)
    lut[table.index.to_numpy()] = np.where(grain_class < 0, ignore_index, grain_class).astype(np.uint8)
    labels = np.where(ids >= 0, lut[np.maximum(ids, 0)], ignore_index).astype(np.uint8)

    step = float(ebsd.attrs.get("step_um", math.nan))
    step_y = float(ebsd.attrs.get("step_y_um", step))
    labels = clean_labels(
        labels,
        n_classes=len(rules.classes),
        ignore_index=ignore_index,
        min_region_px=_pixels(rules.cleanup, "min_region", step * step_y, area=True),
        fill_holes=bool(rules.cleanup.get("fill_holes", False)),
        smooth_px=_pixels(rules.cleanup, "smooth", step),
    )
    low_confidence = None
    if rules.ignore.get("min_ci") is not None:
        if "ci" in ebsd:
            low_confidence = ~(np.asarray(ebsd["ci"].values) >= float(rules.ignore["min_ci"]))
        else:
            warnings.warn("rules ask for ignore.min_ci but the EBSD map has no 'ci' column; not applied", stacklevel=2)
    labels = ignore_band(labels, border_px=_pixels(rules.ignore, "border", step), ignore_index=ignore_index,
                         mask=low_confidence)
    return xr.DataArray(
        labels,
        dims=("y", "x"),
        coords={"y": ebsd["y"], "x": ebsd["x"]},
        name="labels",
        attrs={
            "classes": json.dumps(rules.classes),
            "ignore_index": int(ignore_index),
            "rules": rules.to_json(),
            "rules_source": rules.source,
            "thresholds": json.dumps(thresholds),
            "pixel_size_um": step,
            "n_grains": int(len(table)),
            "source": str(ebsd.attrs.get("source", "")),
            **({names.QUALITY: json.dumps(quality)} if quality is not None else {}),
        },
    )


def _pixels(section: Mapping[str, Any], stem: str, step_um: float, *, area: bool = False) -> int:
    """A length (or area) option given in px or µm (µm²) as a pixel count on the EBSD grid."""
    if area:
        if f"{stem}_px" in section:
            return int(section[f"{stem}_px"])
        value = float(section.get(f"{stem}_um2", 0.0))
        return int(math.ceil(value / step_um)) if value > 0 else 0
    if f"{stem}_px" in section:
        return int(section[f"{stem}_px"])
    value = float(section.get(f"{stem}_um", 0.0))
    return int(round(value / step_um)) if value > 0 else 0


def to_micrograph(
    labels: xr.DataArray,
    registration: Any,
    micrograph: xr.DataArray | np.ndarray,
    *,
    ignore_index: int | None = None,
) -> xr.DataArray:
    """Carry an EBSD-grid label map into micrograph pixels through a registration.

    Labels are resampled with nearest-neighbour interpolation, so every value is one of the
    input's; micrograph pixels outside the EBSD field get ``ignore_index``.

    Parameters
    ----------
    labels : xr.DataArray (y, x) uint8 or xr.Dataset
        Output of :func:`from_ebsd` (on the EBSD = moving grid), or its ``annotations/<name>``
        node read from a Specimen.
    registration : Registration
        From :func:`metallo.correlate.register` with ``fixed`` = the micrograph and
        ``moving`` = an EBSD map image (e.g. IQ) on the EBSD coordinates.
    micrograph : xr.DataArray or ndarray
        The fixed image; the result lies on its grid. A plain array takes the registration's
        fixed grid (coordinates, pixel size); a DataArray whose pixel size is not the one the
        registration was made on is warned about (the labels follow the pixels).
    ignore_index : int, optional
        Defaults to ``labels.attrs["ignore_index"]`` (255).

    Returns
    -------
    xr.DataArray (y, x) uint8
        On the micrograph coordinates, with the attrs of ``labels`` (pixel size of the
        micrograph).

    Examples
    --------
    >>> from metallo.correlate import register
    >>> from metallo.ebsd import map_image
    >>> from metallo.synth import make_specimen
    >>> spec = make_specimen(0, ebsd_shape=(40, 40))              # EBSD map + LOM micrograph
    >>> mask = from_ebsd(spec.ebsd, rules="lath_bainite")
    >>> reg = register(spec.lom, map_image(spec.ebsd, "iq"), method="affine")
    >>> on_lom = to_micrograph(mask, reg, spec.lom)
    >>> on_lom.shape == spec.lom.shape, on_lom.attrs["classes"]
    (True, '["polygonal_ferrite", "lath_bainite"]')
    """
    labels = as_annotation(labels)
    if ignore_index is None:
        ignore_index = int(labels.attrs.get("ignore_index", 255))
    grid = getattr(registration, "fixed_grid", None)
    if not isinstance(micrograph, xr.DataArray):
        # A plain array: the registration's fixed grid gives its coordinates (an AttributeError before).
        array = np.asarray(micrograph)
        if array.ndim not in (2, 3) or grid is None:
            raise ConfigError(f"micrograph must be the image the registration was made with (a DataArray from "
                              f"read_image, or its (y, x) array); got {type(micrograph).__name__} of shape {array.shape}")
        micrograph = xr.DataArray(
            array, dims=("y", "x", "channel")[: array.ndim], name="micrograph",
            coords={"y": grid.origin_yx[0] + grid.spacing_yx[0] * np.arange(array.shape[0]),
                    "x": grid.origin_yx[1] + grid.spacing_yx[1] * np.arange(array.shape[1])},
            attrs={"pixel_size_um": float(grid.spacing_yx[1]) if grid.pixel_size_known else math.nan})
    elif grid is not None and micrograph.sizes.get("x", 0) > 1 and grid.pixel_size_known:
        step = float(micrograph["x"].values[1] - micrograph["x"].values[0])
        if not math.isclose(step, grid.spacing_yx[1], rel_tol=0.01):
            warnings.warn(f"{micrograph.name or 'micrograph'}: its pixel size ({step:.4g} µm) is not the one the "
                          f"registration was made on ({grid.spacing_yx[1]:.4g} µm); the labels follow the pixels, and "
                          "take this image's calibration", UserWarning, stacklevel=2)
    warped = registration.warp(labels, interpolation="nearest", fill_value=ignore_index)
    values = np.asarray(getattr(warped, "values", warped))
    shape = tuple(micrograph.shape[:2])
    if values.shape != shape:
        raise RegistrationError(
            f"registration warps onto a {values.shape} grid but the micrograph is {shape}; "
            "register with fixed = this micrograph"
        )
    values = np.where(np.isfinite(values), values, ignore_index) if values.dtype.kind == "f" else values
    attrs = dict(labels.attrs)
    attrs["ignore_index"] = int(ignore_index)
    attrs["pixel_size_um"] = pixel_size_um(micrograph) or math.nan
    attrs["grid"] = str(micrograph.name or "micrograph")
    return xr.DataArray(
        np.rint(values).astype(np.uint8) if values.dtype.kind == "f" else values.astype(np.uint8),
        dims=("y", "x"),
        coords={"y": micrograph["y"], "x": micrograph["x"]},
        name="labels",
        attrs=attrs,
    )
