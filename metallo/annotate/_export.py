"""Export of annotations: label images with a class table, Specimen nodes, training tiles.

References
----------
.. [1] A. R. Durmaz, M. Müller, B. Lei, A. Thomas, D. Britz, E. A. Holm, C. Eberl, F. Mücklich,
   P. Gumbsch, "A deep learning approach for complex microstructure inference",
   Nature Communications 12, 6272 (2021). doi:10.1038/s41467-021-26565-5
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from metallo import names
from metallo._atomic import atomic_write_json
from metallo._xarray import pixel_size_um
from metallo.annotate._labels import as_annotation
from metallo.errors import ConfigError
from metallo.io import write_image

__all__ = ["add_annotation", "write_labels", "write_training_tiles"]


def _class_table(labels: xr.DataArray) -> dict[str, Any]:
    attrs = as_annotation(labels).attrs
    if "classes" not in attrs:
        raise ConfigError("labels need attrs['classes'] (JSON list of names); make them with from_ebsd")
    table: dict[str, Any] = {
        "classes": json.loads(attrs["classes"]) if isinstance(attrs["classes"], str) else list(attrs["classes"]),
        "ignore_index": int(attrs.get("ignore_index", 255)),
        "pixel_size_um": pixel_size_um(labels) or math.nan,
    }
    for key in ("rules", "thresholds"):
        if key in attrs:
            table[key] = json.loads(attrs[key]) if isinstance(attrs[key], str) else attrs[key]
    return table


def write_labels(labels: xr.DataArray, path: str | Path) -> Path:
    """Write a label map as an 8-bit PNG or TIFF plus a ``.json`` class table beside it.

    Parameters
    ----------
    labels : xr.DataArray (y, x) uint8
        From :func:`~metallo.annotate.from_ebsd` or :func:`~metallo.annotate.to_micrograph`.
    path : str or Path
        ``.png``, ``.tif`` or ``.tiff``. The class table goes to the same name with ``.json``:
        ``{"classes", "ignore_index", "pixel_size_um", "rules", "thresholds"}``.

    Returns
    -------
    Path
        The image path.

    Examples
    --------
    >>> from metallo.annotate import from_ebsd
    >>> from metallo.synth import make_specimen
    >>> ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd   # a synthetic map
    >>> mask = from_ebsd(ebsd, rules="lath_bainite")
    >>> write_labels(mask, "bainite.png")
    PosixPath('bainite.png')
    >>> json.loads(Path("bainite.json").read_text())["classes"]
    ['polygonal_ferrite', 'lath_bainite']
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".tif", ".tiff"):
        raise ConfigError(f"{path}: label images are written as .png, .tif or .tiff")
    labels = as_annotation(labels, where=str(path))
    values = np.asarray(labels.values)
    if values.ndim != 2 or values.dtype != np.uint8:
        raise ConfigError(f"{path}: labels must be a 2-D uint8 map; got shape {values.shape}, dtype {values.dtype}")
    table = _class_table(labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(labels, path, pixel_size_um=pixel_size_um(labels))
    atomic_write_json(path.with_suffix(".json"), table, indent=2)
    return path


def add_annotation(
    specimen: Any,
    name: str,
    labels: xr.DataArray,
    *,
    inputs: tuple[str, ...] | list[str] = (),
    overwrite: bool = False,
    step: str = names.STEP_ANNOTATE,
    tag: Mapping[str, Any] | None = None,
) -> str:
    """Store a label map in a Specimen under ``annotations/<name>`` with its rules and thresholds.

    Parameters
    ----------
    specimen : Specimen
        An open :class:`metallo.Specimen`.
    name : str
        Node name below ``annotations/``.
    labels : xr.DataArray
        From :func:`~metallo.annotate.from_ebsd` or :func:`~metallo.annotate.to_micrograph`.
    inputs : sequence of str
        Nodes the annotation was made from (EBSD map, registration), for provenance.
    overwrite : bool
        Replace an existing node.
    step : str
        Step name of the provenance record (``annotate.to_micrograph`` for a carried mask).
    tag : mapping, optional
        Extra provenance parameters (the pipeline's cache key).

    Returns
    -------
    str
        The node, ``"annotations/<name>"``.

    Examples
    --------
    >>> from metallo.annotate import from_ebsd
    >>> from metallo.synth import make_specimen
    >>> ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd   # a synthetic map
    >>> mask = from_ebsd(ebsd, rules="lath_bainite")
    >>> from metallo.specimen import Specimen
    >>> spec = Specimen.create("S1.h5", specimen_id="S1", overwrite=True)
    >>> add_annotation(spec, "bainite", mask, inputs=["ebsd/map1"])
    'annotations/bainite'
    """
    labels = as_annotation(labels)
    table = _class_table(labels)
    node = names.annotation(name)
    parameters = {"rules": table.get("rules", {}), "thresholds": table.get("thresholds", {}),
                  "ignore_index": table["ignore_index"], **dict(tag or {})}
    specimen.add(node, labels.astype(np.uint8), step=step, parameters=parameters, inputs=list(inputs),
                 overwrite=overwrite)
    return node


def write_training_tiles(
    image: xr.DataArray,
    labels: xr.DataArray,
    out_dir: str | Path,
    *,
    tile: int | None = None,
    stem: str | None = None,
    max_ignore_fraction: float = 0.5,
) -> pd.DataFrame:
    """Cut a micrograph and its warped mask into training tiles for :mod:`metallo.segment`.

    Writes ``out_dir/images/<stem>_<row>_<col>.png`` (the micrograph, 8-bit),
    ``out_dir/labels/<stem>_<row>_<col>.png`` (class ids, ``ignore_index`` = ignore) and
    ``out_dir/classes.json``; tiles mostly ``ignore`` (outside the EBSD field, borders) are
    skipped.

    Parameters
    ----------
    image : xr.DataArray (y, x)
        The micrograph (uint8, or any grey image: scaled to 8 bit by its 0.5-99.5 % range).
    labels : xr.DataArray (y, x) uint8
        The mask on the same grid (:func:`~metallo.annotate.to_micrograph`).
    out_dir : str or Path
        Training data folder (layout in the contracts: images/, labels/, classes.json).
    tile : int, optional
        Tile side in pixels; default 512 for SEM, 256 otherwise (the tiles of Durmaz et al. 2021).
    stem : str, optional
        Prefix of the tile names; default the image name.
    max_ignore_fraction : float
        Skip tiles with more ignored pixels than this.

    Returns
    -------
    DataFrame
        One row per written tile: ``stem``, ``row``, ``col`` (pixel offsets), ``ignore_fraction``.

    Examples
    --------
    >>> from metallo.annotate import from_ebsd
    >>> from metallo.synth import make_specimen
    >>> ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd   # a synthetic map
    >>> mask = from_ebsd(ebsd, rules="lath_bainite")
    >>> from metallo.ebsd import map_image
    >>> tiles = write_training_tiles(map_image(ebsd, "iq"), mask, "train", tile=16)   # IQ as the image
    >>> len(tiles), sorted(p.name for p in Path("train").iterdir())
    (9, ['classes.json', 'images', 'labels'])
    """
    labels = as_annotation(labels)
    img = np.asarray(image.values)
    lab = np.asarray(labels.values)
    if img.shape[:2] != lab.shape:
        raise ConfigError(f"image shape {img.shape[:2]} != labels shape {lab.shape}; warp the mask onto the image first")
    if lab.dtype != np.uint8:
        raise ConfigError(f"labels must be uint8; got {lab.dtype}")
    table = _class_table(labels)
    from metallo.segment import default_tile_size

    side = int(tile or default_tile_size(image.attrs.get("modality")))
    if side < 8:
        raise ConfigError(f"tile must be at least 8 px; got {side}")
    stem = stem or str(image.name or "image")
    out = Path(out_dir)
    classes_file = out / "classes.json"
    if classes_file.exists():
        known = json.loads(classes_file.read_text(encoding="utf-8"))
        if known.get("classes") != table["classes"] or int(known.get("ignore_index", 255)) != table["ignore_index"]:
            raise ConfigError(f"{classes_file} has classes {known.get('classes')}; these tiles have {table['classes']}")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    img8 = _to_uint8(img)
    pixel = pixel_size_um(image)
    ignore = table["ignore_index"]
    rows = []
    ny, nx = lab.shape
    for r in _offsets(ny, side):  # loop over tiles (a handful per image)
        for c in _offsets(nx, side):
            lab_tile = lab[r : r + side, c : c + side]
            fraction = float(np.mean(lab_tile == ignore))
            if fraction > max_ignore_fraction:
                continue
            name = f"{stem}_{r:05d}_{c:05d}"
            write_image(img8[r : r + side, c : c + side], out / "images" / f"{name}.png", pixel_size_um=pixel)
            write_image(lab_tile, out / "labels" / f"{name}.png", pixel_size_um=pixel)
            rows.append({"stem": name, "row": r, "col": c, "ignore_fraction": fraction})
    atomic_write_json(classes_file, {"classes": table["classes"], "ignore_index": ignore,
                                     "pixel_size_um": pixel if pixel is not None else math.nan}, indent=2)
    return pd.DataFrame(rows, columns=["stem", "row", "col", "ignore_fraction"])


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    data = image.astype(np.float64)
    lo, hi = np.nanpercentile(data, [0.5, 99.5])
    return np.clip(np.nan_to_num((data - lo) / max(hi - lo, 1e-12) * 255.0), 0, 255).astype(np.uint8)


def _offsets(n: int, side: int) -> list[int]:
    """Tile starts covering ``n`` pixels; the last tile is flush with the edge (may overlap)."""
    starts = list(range(0, max(n - side, 0) + 1, side))
    if n > side and starts[-1] + side < n:
        starts.append(n - side)
    return starts
