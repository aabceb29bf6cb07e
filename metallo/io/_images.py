"""Micrographs in and out: TIFF (tifffile), PNG and JPEG (Pillow), with the pixel size in µm.

Where the pixel size comes from when reading, first found wins:

1. the ``pixel_size_um`` argument;
2. TIFF: the SEM vendor tags (FEI/Thermo ``[Scan] PixelWidth``, TESCAN ``PixelSizeX``, also from
   its ``-tif.hdr``/``-png.hdr`` sidecar for any format, Zeiss ``CZ_SEM`` image pixel
   size, JEOL's ``<image>.txt`` sidecar (``$$SM_MICRON_MARKER`` over ``$$SM_MICRON_BAR``) or
   Hitachi's (``[SemImageFile]`` ``PixelSize`` in nm, ``DataSize`` the frame);
   these also make the default modality "SEM"), the Olympus SIS tag 33560 (analySIS, Stream,
   cellSens; the page that carries it is read, not an 8-bit preview before it), Gatan
   DigitalMicrograph's scale tags 65009/65010 with their units, OME-TIFF's ``PhysicalSizeX``
   (ZEN, cellSens, NIS, LAS X, QuPath and Bio-Formats exports), the ImageJ description
   (``unit=micron``, ``µm``, ``nm``, ``mm``) with the resolution tags, or
   ``XResolution``/``YResolution`` with ``ResolutionUnit`` centimetre or inch;
   PNG: the ``pHYs`` chunk (pixels per metre);
3. a TIFF description written by metallo (JSON ``{"metallo": {"pixel_size_um": ...}}``);
4. a sidecar file ``<image>.json`` (``lom.tif.json``, or ``lom.json``) holding
   ``{"pixel_size_um": 0.1266}`` (and optionally ``"modality"``);
5. otherwise unknown: one warning, coordinates in pixels, ``attrs["pixel_size_um"]`` NaN.

Resolutions coarser than 50 µm per pixel are print/screen defaults (72, 96, 300 dpi), not a
calibration, and are ignored.

SEM data bars: an FEI/Thermo Fisher TIFF stores the scanned image (``[Image] ResolutionY`` rows,
else ``[Scan] VerFieldsize / PixelHeight``) with the instrument's data bar (text, scale bar) in
the rows below it; a Zeiss TIFF states its stored frame as ``DP_IMAGE_STORE`` ("1024 * 768"); a
TESCAN header (TIFF tag 50431, or the ``<image>-tif.hdr`` / ``-png.hdr`` sidecar) states the
info strip's height as ``ImageStripSize`` and the pixel size as ``PixelSizeX`` (metres). A JEOL
sidecar states the frame as ``$CM_FULL_SIZE <columns> <rows>``.
Rows beyond the stated frame are the data bar, and :func:`read_image` crops them by default
(``databar="crop"``), so that no phase fraction, particle count or registration sees the bar.
``attrs["databar_rows"]`` says how many rows were cropped. A bar drawn over the frame itself (a
Zeiss data zone) or one whose metadata was lost (an exported PNG) is not stated by the file: it
is looked for by its look (:func:`suspected_databar_rows`), kept and reported with a warning,
and ``databar=<rows>`` crops it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from metallo._atomic import atomic_path, atomic_write_text
from metallo._xarray import image_dataarray, to_numpy
from metallo._xarray import pixel_size_um as _pixel_size_of
from metallo.errors import ConfigError, FormatError, MetalloError
from metallo.io._plugins import reader_for, register_reader

__all__ = ["IMAGE_FORMATS", "read_image", "suspected_databar_rows", "write_image"]

MODALITIES = ("LOM", "SEM", "EBSD-IQ", "other")

#: Writable formats by extension.
IMAGE_FORMATS = {".tif": "tiff", ".tiff": "tiff", ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}

#: Default cap on the pixels (y * x) of an image read; ``METALLO_MAX_IMAGE_PIXELS`` overrides.
#: A header may claim any size: the cap is checked before the pixels are decoded.
MAX_IMAGE_PIXELS = 1 << 30
_PIL_LOCK = threading.Lock()

# A calibration coarser than this is a print/screen dpi default, not a microscope's.
_MAX_CALIBRATED_UM = 50.0
_UNIT_UM = {
    "micron": 1.0,
    "microns": 1.0,
    "um": 1.0,
    "µm": 1.0,
    "\u03bcm": 1.0,
    "\\u00b5m": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "inch": 25400.0,
    "å": 1e-4,
    "angstrom": 1e-4,
}
_JPEG_QUALITY = 95


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def read_image(
    path: str | Path,
    *,
    pixel_size_um: float | None = None,
    modality: str | None = None,
    palette: str = "index",
    as_gray: bool = False,
    databar: str | int = "crop",
) -> xr.DataArray:
    """Read a micrograph (TIFF, PNG, JPEG, BMP) as an image on µm coordinates.

    Parameters
    ----------
    path : str or Path
        The image file. Its format is recognised by its header, then by its extension.
    pixel_size_um : float, optional
        Pixel size in µm; overrides whatever the file says. See the module docstring for
        where it is looked for when not given.
    modality : {"LOM", "SEM", "EBSD-IQ", "other"}, optional
        Imaging modality stored in ``attrs``; default: the one recorded by metallo in the
        file or its sidecar, else ``"other"``.
    palette : {"index", "rgb"}
        Palette (indexed-colour) images: return the indices (label masks keep their class
        ids) or the colours they display.
    as_gray : bool
        Convert colour images to one channel (ITU-R 601 luma, or the one channel if all
        three are equal), keeping the dtype.
    databar : {"crop", "keep"} or int
        The SEM data bar below the scanned frame. ``"crop"`` (default): crop the rows that the
        file's FEI/Thermo, Zeiss or TESCAN metadata puts below the frame (none for other files).
        ``"keep"``: keep every row. An int: crop that many rows from the bottom (a bar whose
        metadata was lost). With ``"crop"``, bottom rows that look like a bar the metadata does
        not state (:func:`suspected_databar_rows`) are kept, with a warning and
        ``attrs["databar_rows_suspected"]``. ``attrs["databar_rows"]`` records the rows cropped
        (``attrs["databar_rows_kept"]`` the bar the file states, when kept).

    Returns
    -------
    xr.DataArray
        dims ``(y, x)`` or ``(y, x, channel)`` (RGB; alpha is dropped), the file's dtype
        (uint8, uint16, float32, ...); attrs ``pixel_size_um`` (NaN if unknown), ``source``
        (file name), ``sha256`` (of the file), ``modality``.

    Raises
    ------
    FormatError
        The file is missing, truncated, or not an image format metallo knows; it has no
        pixels; or its header claims more pixels (y * x) than ``METALLO_MAX_IMAGE_PIXELS``
        (default 2**30), checked before any pixel is decoded.
    ConfigError
        ``databar`` is not "crop", "keep" or a row count that leaves rows of the image.

    Examples
    --------
    >>> import numpy as np
    >>> _ = write_image(np.zeros((3, 4), np.uint8), "lom.tif")
    >>> lom = read_image("lom.tif", pixel_size_um=0.1266, modality="LOM")
    >>> lom.attrs["pixel_size_um"], lom.attrs["modality"], lom.shape
    (0.1266, 'LOM', (3, 4))
    """
    if modality is not None:
        canonical = {m.lower(): m for m in MODALITIES}.get(str(modality).lower())
        if canonical is None:
            raise ConfigError(f"modality must be one of {', '.join(MODALITIES)}; got {modality!r}")
        modality = canonical
    if palette not in ("index", "rgb"):
        raise ConfigError(f"palette must be 'index' or 'rgb'; got {palette!r}")
    if pixel_size_um is not None and (isinstance(pixel_size_um, bool) or not isinstance(pixel_size_um, (int, float, np.number))
                                      or not (math.isfinite(pixel_size_um) and pixel_size_um > 0)):
        raise ConfigError(f"pixel_size_um must be a positive number (µm); got {pixel_size_um!r}")
    if isinstance(databar, bool) or not (databar in ("crop", "keep") or isinstance(databar, (int, np.integer))):
        raise ConfigError(f"databar must be 'crop', 'keep' or a number of rows; got {databar!r}")
    path = Path(path)
    plugin = reader_for(path, kind="image")
    image = plugin.read(
        path, pixel_size_um=pixel_size_um, modality=modality, palette=palette, as_gray=as_gray
    )
    image = _crop_databar(image, path, databar)
    if not math.isfinite(image.attrs["pixel_size_um"]):
        warnings.warn(
            f"{path.name}: pixel size unknown (no argument, resolution tags or {path.name}.json "
            "sidecar); coordinates are in pixels",
            UserWarning,
            stacklevel=2,
        )
    return image


def _crop_databar(image: xr.DataArray, path: Path, databar: str | int) -> xr.DataArray:
    """``image`` without its data bar rows (:func:`read_image`'s ``databar``), recorded in attrs."""
    stated = int(image.attrs.pop("databar_rows_in_file", 0) or 0)
    rows = image.sizes["y"]
    if databar == "keep":
        n = 0
    elif databar == "crop":
        n = stated
    else:
        n = int(databar)
        if not 0 <= n < rows:
            raise ConfigError(f"{path}: databar={n} rows must be >= 0 and leave rows of the {rows}-row image")
    if n:
        image = image.isel(y=slice(0, rows - n))
        image.attrs["databar_rows"] = n
    elif stated:
        image.attrs["databar_rows_kept"] = stated  # the file states a bar; the caller kept it
    elif databar == "crop":
        suspected = suspected_databar_rows(image.values)
        if suspected:
            image.attrs["databar_rows_suspected"] = suspected
            warnings.warn(
                f"{path.name}: the bottom {suspected} rows look like an SEM data bar (one flat colour with text) that "
                f"the file's metadata does not state; they were kept and count as image - pass databar={suspected} to "
                "crop them, or databar='keep' if they are the specimen",
                UserWarning, stacklevel=3,
            )
    return image


#: A data bar found by its look (:func:`suspected_databar_rows`) spans this share of the rows.
_SUSPECTED_BAR_SHARE = (0.03, 0.25)


def suspected_databar_rows(values: np.ndarray) -> int:
    """Rows at the bottom of an image that look like an instrument data bar, or 0.

    The look of a rendered bar: full-width rows in which at least 35 % of the pixels hold one
    flat colour (within 1 % of the image's 0.5-99.5 % range), with text: the other pixels are one
    ink colour at least 40 % of the range away, and antialiasing between the two. The colour is
    rare above the bar (< 20 % of the pixels: not an EBSD map's fill, not a clipped mount). A
    rule line in the ink colour on top of the bar belongs to it. Measured: no false alarm on the 42
    real images and maps in the example data; bars of three colourings, two fonts and a rule
    line, appended or drawn over the bottom rows, are found to the row on every micrograph
    there (docs/io.md).
    """
    a = np.asarray(values)
    if a.ndim not in (2, 3):
        return 0
    rows, cols = a.shape[:2]
    if rows < 64 or cols < 64:
        return 0
    stride, col_stride = max(1, rows // 512), max(1, cols // 2048)

    def grey(y: slice) -> np.ndarray:
        """Rows ``y`` (every ``col_stride``-th column) as float32 grey; only these are converted."""
        part = a[y, ::col_stride]
        return part[..., :3].mean(axis=2, dtype=np.float32) if part.ndim == 3 else part.astype(np.float32)

    sample = grey(slice(None, None, stride)).astype(np.float64)
    if not np.isfinite(sample).all():
        return 0
    lo, hi = np.percentile(sample, [0.5, 99.5])
    span = float(hi - lo)
    if not span > 0:
        return 0
    tol = 0.01 * span
    top = rows - int(_SUSPECTED_BAR_SHARE[1] * rows) - 2
    band_all = grey(slice(max(top, 0), None))  # every row, <= ~4096 columns
    bottom = band_all[-1]
    bins, counts = np.unique(np.round((bottom - lo) / tol), return_counts=True)
    flat = lo + bins[np.argmax(counts)] * tol
    is_flat = np.abs(band_all - flat) <= tol
    barlike = is_flat.mean(axis=1) >= 0.35
    if not barlike[-1]:
        return 0
    r0 = len(barlike)
    while r0 > 0 and barlike[r0 - 1]:
        r0 -= 1
    if r0 == 0:  # the whole searched band is flat: no bar on an image above
        return 0
    n = len(barlike) - r0
    if not max(8, _SUSPECTED_BAR_SHARE[0] * rows) <= n <= _SUSPECTED_BAR_SHARE[1] * rows:
        return 0
    band = band_all[r0:]
    other = band[~is_flat[r0:]]
    if other.size < 0.005 * band.size:
        return 0
    bins, counts = np.unique(np.round((other - lo) / (5 * tol)), return_counts=True)
    ink = lo + bins[np.argmax(counts)] * 5 * tol
    between = (other >= min(flat, ink) - 5 * tol) & (other <= max(flat, ink) + 5 * tol)
    if abs(ink - flat) < 0.4 * span or (np.abs(other - ink) <= 5 * tol).mean() < 0.2 or between.mean() < 0.95:
        return 0
    for _ in range(3):  # a rule line in the ink colour, up to three rows, on top belongs to the bar
        if r0 < 2 or (np.abs(band_all[r0 - 1] - ink) <= 5 * tol).mean() < 0.9:
            break
        r0, n = r0 - 1, n + 1
    above = grey(slice(None, rows - n, stride))
    if (np.abs(above - flat) <= tol).mean() > 0.2:
        return 0
    return int(n)


def max_image_pixels() -> int:
    """The pixel cap of :func:`read_image`: ``METALLO_MAX_IMAGE_PIXELS`` or :data:`MAX_IMAGE_PIXELS`."""
    text = os.environ.get("METALLO_MAX_IMAGE_PIXELS", "")
    if not text:
        return MAX_IMAGE_PIXELS
    try:
        value = int(float(text))
    except (ValueError, OverflowError):
        value = 0
    if value < 1:
        raise ConfigError(f"METALLO_MAX_IMAGE_PIXELS={text!r}: expected a positive pixel count")
    return value


def _check_pixels(path: Path, shape: tuple[int, ...], what: str) -> None:
    """Refuse empty images and ones over the pixel cap before decoding them."""
    dims = [int(n) for n in shape]
    if not dims or min(dims) <= 0:
        raise FormatError(f"{path}: {what} has no pixels ({' x '.join(map(str, dims)) or 'no size'}); expected an image")
    pixels = math.prod(dims)
    cap = max_image_pixels()
    if pixels > cap:
        raise FormatError(
            f"{path}: {what} claims {' x '.join(map(str, dims))} = {pixels:,} pixels, over the cap of "
            f"{cap:,} (set METALLO_MAX_IMAGE_PIXELS to read larger images)"
        )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(path: Path) -> dict[str, Any]:
    for candidate in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if candidate.is_file():
            try:
                meta = json.loads(candidate.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise FormatError(f"{candidate}: sidecar is not valid JSON ({exc})") from None
            if not isinstance(meta, dict):
                raise FormatError(
                    f'{candidate}: sidecar must be a JSON object like {{"pixel_size_um": 0.1}}'
                )
            return meta
    return {}


def _positive(value: Any, where: str) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise FormatError(f"{where}: pixel_size_um must be a number; got {value!r}") from None
    if not (math.isfinite(out) and out > 0):
        raise FormatError(f"{where}: pixel_size_um must be positive; got {value!r}")
    return out


def _calibrated(pixel_size: float | None, *, cap: bool = True) -> float | None:
    if pixel_size is None or not math.isfinite(pixel_size) or pixel_size <= 0:
        return None
    # 12 significant digits: hides unit-conversion round-off (2.5e-08 m -> 0.025 µm).
    return float(f"{pixel_size:.12g}") if pixel_size <= _MAX_CALIBRATED_UM or not cap else None


def _to_gray(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return array
    rgb = array[..., :3]
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return rgb[..., 0].copy()
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if np.issubdtype(array.dtype, np.integer):
        return np.rint(luma).astype(array.dtype)
    return luma.astype(array.dtype)


def _finish(
    array: np.ndarray,
    path: Path,
    *,
    pixel_size_um: float | None,
    file_pixel_size_um: float | None,
    file_meta: dict[str, Any],
    modality: str | None,
    as_gray: bool,
    stated: bool = False,
) -> xr.DataArray:
    """Pixel size and modality by priority, attrs, and the DataArray."""
    if array.size == 0:
        raise FormatError(f"{path}: the image has no pixels (shape {array.shape}); expected an image")
    if array.dtype.kind not in "iufb":
        # A complex-valued TIFF (an FFT, say) is no micrograph; 1-bit (bool) images are read.
        raise FormatError(f"{path}: holds pixel values of dtype {array.dtype}; expected real grey or colour values")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[2] in (2, 4):  # gray+alpha, RGBA: drop alpha
        array = array[..., : array.shape[2] - 1]
        if array.shape[2] == 1:
            array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise FormatError(
            f"{path}: holds an array of shape {array.shape} (a stack or multi-channel image); "
            "read_image reads one 2-D gray or RGB image"
        )
    if as_gray:
        array = _to_gray(array)
    sidecar: dict[str, Any] = {}
    ps = pixel_size_um
    if ps is None:
        # A microscope's own statement (SEM vendor tags) is taken at any size; a resolution tag
        # coarser than _MAX_CALIBRATED_UM is a dpi default.
        ps = _calibrated(file_pixel_size_um, cap=not stated)
    if ps is None:
        ps = _positive(file_meta.get("pixel_size_um"), f"{path} (metallo description)")
    if ps is None or modality is None:
        sidecar = _sidecar(path)
    if ps is None:
        ps = _positive(sidecar.get("pixel_size_um"), f"{path.name}.json")
    mod = modality or file_meta.get("modality") or sidecar.get("modality") or "other"
    if mod not in MODALITIES:
        mod = "other"
    attrs = {"source": path.name, "sha256": _file_sha256(path), "modality": mod}
    if file_meta.get("databar_rows_in_file"):
        attrs["databar_rows_in_file"] = int(file_meta["databar_rows_in_file"])
    return image_dataarray(np.ascontiguousarray(array), pixel_size_um=ps, name="image", attrs=attrs)


def _read_tiff(
    path: Path,
    *,
    pixel_size_um: float | None = None,
    modality: str | None = None,
    palette: str = "index",
    as_gray: bool = False,
) -> xr.DataArray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            sis_index, sis_ps = _sis_calibration(tif)
            # An Olympus SIS file may put an 8-bit RGB preview first and the calibrated camera
            # data on the page that carries the SIS tag: read that page.
            series = tif.pages[sis_index] if sis_index else tif.series[0]
            _check_pixels(
                path,
                tuple(n for n, a in zip(series.shape, series.axes, strict=False) if a not in "SC"),
                "TIFF header",
            )
            axes = series.axes
            by_pillow = False
            try:
                array = series.asarray()
            except ValueError as exc:
                # tifffile decodes LZW and JPEG only with imagecodecs; Pillow, already
                # installed, decodes the common ones (coni16_459_eds.tif of EBSD-Correction is LZW).
                if "imagecodecs" not in str(exc):
                    raise
                array = _pillow_pixels(path, series.shape, exc)
                axes = "YXS"[: array.ndim]  # Pillow gives channels last
                by_pillow = True  # which inverts MinIsWhite itself
            page = tif.pages.first
            meta = _metallo_description(page)
            if sis_index:
                meta["tiff_page"] = sis_index
            tescan = _tescan_header(path, page)
            fei, zeiss = tif.fei_metadata, tif.sem_metadata
            tiff_ps = (sis_ps or _ome_pixel_size(tif.ome_metadata if tif.is_ome else None, path)
                       or _gatan_pixel_size(page, path) or _tiff_pixel_size(page, tif.imagej_metadata, path))
            frame = _sem_frame_shape(fei, zeiss)
            page_colormap = page.colormap if page.photometric == 3 else None
            colormap = page_colormap if palette == "rgb" else None
            min_is_white = page.photometric == 0 and not sis_index and not by_pillow
            bits = int(page.bitspersample or 8)
    except MetalloError:
        raise
    except (tifffile.TiffFileError, ValueError, OSError, struct.error, IndexError, KeyError,
            TypeError, ZeroDivisionError, AttributeError, MemoryError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise FormatError(f"{path}: not a readable TIFF image ({reason})") from None
    # Planar RGB comes as (sample, y, x); metallo wants channels last.
    if axes and axes[0] in "SC" and array.ndim == 3:
        array = np.moveaxis(array, 0, -1)
    if colormap is not None:
        array = np.moveaxis(colormap, 0, -1)[array]
    elif page_colormap is not None and array.ndim == 2:
        _warn_colour_palette(path, np.moveaxis(page_colormap, 0, -1), array)
    if array.ndim > 3 or (array.ndim == 3 and axes and axes[0] not in "SC" and axes[-1] not in "SC"):
        # A stack (FIB-SEM slices, a multi-page Zeiss file, an ImageJ hyperstack): said before the
        # vendor tags are read for a frame that the stack's shape would not match.
        frames = array.shape if array.ndim == 3 else array.shape[:-1]  # (..., rows, columns), samples dropped
        raise FormatError(
            f"{path}: holds {int(np.prod(frames[:-2]))} images of {frames[-2]} x {frames[-1]} pixels "
            f"(array shape {array.shape}: a multi-page TIFF or stack); read_image reads one 2-D gray or RGB image: "
            "save the page you want as its own file"
        )
    if min_is_white and array.ndim == 2:
        # PhotometricInterpretation 0: 0 is white. Every viewer shows it inverted, and so must the
        # values that thresholds, phases and particles see.
        if array.dtype == bool:
            array = ~array
        elif np.issubdtype(array.dtype, np.unsignedinteger):
            array = (np.asarray((1 << min(bits, 8 * array.dtype.itemsize)) - 1, array.dtype) - array).astype(array.dtype)
    side_ps, side_frame = _sem_sidecar(path, array.shape)
    sem_ps = _sem_vendor_pixel_size(fei, zeiss, frame, array.shape, path) or _tescan_pixel_size(tescan) or side_ps
    file_ps = sem_ps or tiff_ps
    fei_sections = fei or {}
    navcam = bool(fei_sections.get("IRBeam")) and not (fei_sections.get("Scan") or fei_sections.get("EScan"))
    if sem_ps is not None and not navcam:  # (a navigation-camera image is no SEM micrograph)
        meta.setdefault("modality", "SEM")
    bar = _databar_rows(array.shape[:2], frame or _tescan_frame(tescan, array.shape[0]) or side_frame, path)
    if bar:
        meta = {**meta, "databar_rows_in_file": bar}
    return _finish(
        array, path, pixel_size_um=pixel_size_um, file_pixel_size_um=file_ps, file_meta=meta,
        modality=modality, as_gray=as_gray, stated=sem_ps is not None,
    )  # fmt: skip


def _pillow_pixels(path: Path, shape: tuple[int, ...], why: Exception) -> np.ndarray:
    """The first image of a compressed TIFF decoded by Pillow (the tags are still tifffile's)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.seek(0)
            array = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise FormatError(
            f"{path}: its compression cannot be decoded here ({' '.join(str(why).split())[:120]}; Pillow: "
            f"{' '.join(str(exc).split())[:120]}); install imagecodecs or save the image uncompressed"
        ) from None
    if array.shape != tuple(shape) and array.shape != tuple(shape[1:]) + tuple(shape[:1]):
        raise FormatError(f"{path}: Pillow decoded an image of shape {array.shape}, the TIFF header says {tuple(shape)}")
    return array


#: Olympus Soft Imaging Solutions (analySIS, Stream, cellSens) private tag; tifffile parses it
#: into a dict with ``pixelsizex``/``pixelsizey`` in metres.
_OLYMPUS_SIS_TAG = 33560


def _sis_calibration(tif: Any) -> tuple[int, float | None]:
    """(page index, pixel size in µm) of the first page with an Olympus SIS calibration,
    else (0, None). A preview page before it is skipped only when it has the same rows and
    columns (the file holds one picture twice)."""
    for index, page in enumerate(tif.pages[:4]):
        tag = page.tags.get(_OLYMPUS_SIS_TAG)
        value = tag.value if tag is not None else None
        if not isinstance(value, dict):
            continue
        size = value.get("pixelsizex")
        if not (isinstance(size, (int, float)) and math.isfinite(size) and size > 0):
            continue
        first = tif.pages.first
        same_picture = index == 0 or tuple(page.shape[:2]) == tuple(first.shape[:2])
        return (index if same_picture else 0), (float(size) * 1e6 if same_picture else None)
    return 0, None


def _ome_pixel_size(ome_xml: str | None, path: Path) -> float | None:
    """Pixel size in µm from an OME-TIFF's first ``Image/Pixels`` (``PhysicalSizeX`` in
    ``PhysicalSizeXUnit``, µm by default), or None. OME-TIFF is what ZEN, cellSens, NIS,
    LAS X, QuPath and Bio-Formats export."""
    if not ome_xml:
        return None
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    sizes = []
    for axis in ("X", "Y"):
        value = pixels.get(f"PhysicalSize{axis}")
        factor = _UNIT_UM.get(pixels.get(f"PhysicalSize{axis}Unit", "µm").strip().lower())
        try:
            size = float(value) * factor if value is not None and factor is not None else math.nan
        except ValueError:
            size = math.nan
        sizes.append(size)
    if not (sizes[0] > 0 and math.isfinite(sizes[0])):
        return None
    return _square_pixel(sizes[0], sizes[1], path, "OME PhysicalSizeX / PhysicalSizeY")


#: Gatan DigitalMicrograph's TIFF export: x/y scale (tags 65009/65010) in the units of tags
#: 65003/65004 (e.g. "µm", "nm").
_GATAN_SCALE_TAGS = (65009, 65010)
_GATAN_UNIT_TAGS = (65003, 65004)


def _gatan_pixel_size(page: Any, path: Path) -> float | None:
    """Pixel size in µm from a Gatan DigitalMicrograph TIFF export's scale tags, or None."""
    sizes = []
    for scale_tag, unit_tag in zip(_GATAN_SCALE_TAGS, _GATAN_UNIT_TAGS, strict=True):
        scale, unit = page.tags.get(scale_tag), page.tags.get(unit_tag)
        if scale is None or unit is None:
            return None
        value = scale.value
        factor = _UNIT_UM.get(str(unit.value).strip().lower().replace("\x00", ""))
        if not isinstance(value, (int, float)) or not (value > 0) or factor is None:
            return None
        sizes.append(float(value) * factor)
    return _square_pixel(sizes[0], sizes[1], path, "Gatan scale tags 65009 / 65010")


def _square_pixel(size_x: float, size_y: float, path: Path, source: str) -> float:
    """The column size of a calibration that states both axes, with a warning where the row
    size differs by more than 1 % (metallo's images have square pixels)."""
    if size_y > 0 and abs(size_x - size_y) > 0.01 * size_x:
        warnings.warn(
            f"{path}: {source} give {size_x:g} µm per column and {size_y:g} µm per row; metallo uses "
            "square pixels: taking the column size",
            UserWarning,
            stacklevel=5,
        )
    return size_x


def _tiff_pixel_size(page: Any, imagej: dict[str, Any] | None, path: Path) -> float | None:
    """Pixel size in µm from the resolution tags (and the ImageJ unit), or None; a row size
    (``YResolution``) other than the column size is warned of (:func:`_square_pixel`)."""
    tags = page.tags
    if "XResolution" not in tags:
        return None
    num, den = tags["XResolution"].value
    if not num or not den:
        return None
    per_unit = num / den
    unit_code = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    if imagej and imagej.get("unit"):
        unit = str(imagej["unit"]).strip().lower()
        size = _UNIT_UM.get(unit)
        unit_um = size
    elif unit_code in (2, 3):
        unit_um = 25400.0 if unit_code == 2 else 10000.0
    else:
        return None  # unit NONE: the numbers mean nothing physical
    if unit_um is None:
        return None
    y_num, y_den = tags["YResolution"].value if "YResolution" in tags else (0, 0)
    size_y = unit_um * y_den / y_num if y_num and y_den else 0.0
    return _square_pixel(unit_um / per_unit, size_y, path, "TIFF XResolution / YResolution")


def _zeiss_length_um(entry: Any) -> float | None:
    """A Zeiss CZ_SEM ``(label, value, unit)`` length in µm, or None."""
    if isinstance(entry, tuple) and len(entry) == 3 and isinstance(entry[1], (int, float)):
        size = _UNIT_UM.get(str(entry[2]).strip().lower())
        if size is not None and entry[1] > 0:
            return float(entry[1]) * size
    return None


def _stated_sem_pixel_size(
    fei: dict[str, Any] | None, zeiss: dict[str, Any] | None
) -> tuple[float, float | None, float | None] | None:
    """(pixel size, field width, field height) in µm stated by FEI/Thermo or Zeiss tags, or None."""
    fei = fei or {}
    for section in ("Scan", "EScan"):
        scan = fei.get(section) or {}
        width = scan.get("PixelWidth")
        if isinstance(width, (int, float)) and width > 0:
            fields = [scan.get(k) for k in ("HorFieldsize", "VerFieldsize")]
            hor, ver = (float(f) * 1e6 if isinstance(f, (int, float)) and f > 0 else None for f in fields)
            return float(width) * 1e6, hor, ver
    # A navigation-camera image (FEI/Thermo Helios "navcam") has no [Scan]: its field width is the
    # [IRBeam] section's HFW over the [Image] columns (as rosettasciio reads it: 0.2640 mm/px).
    ir, image = fei.get("IRBeam") or {}, fei.get("Image") or {}
    hfw, cols = ir.get("HFW"), image.get("ResolutionX")
    if isinstance(hfw, (int, float)) and hfw > 0 and isinstance(cols, (int, float)) and cols > 0:
        vfw = ir.get("VFW")
        return (float(hfw) * 1e6 / float(cols), float(hfw) * 1e6,
                float(vfw) * 1e6 if isinstance(vfw, (int, float)) and vfw > 0 else None)
    zeiss = zeiss or {}
    size = _zeiss_length_um(zeiss.get("ap_image_pixel_size")) or _zeiss_length_um(zeiss.get("ap_pixel_size"))
    if size is None:
        return None
    return size, _zeiss_length_um(zeiss.get("ap_width")), _zeiss_length_um(zeiss.get("ap_height"))


def _sem_vendor_pixel_size(
    fei: dict[str, Any] | None, zeiss: dict[str, Any] | None, frame: tuple[float, float | None] | None,
    shape: tuple[int, ...], path: Path,
) -> float | None:
    """Pixel size in µm of the image as stored, from FEI/Thermo (``[Scan] PixelWidth`` in m) or Zeiss
    (CZ_SEM) tags, ``frame`` being the frame they state (:func:`_sem_frame_shape`).

    The instruments state the pixel size of the scanned frame, and older Zeiss software only that
    of a 1024-column display (``ap_pixel_size``; ``ap_image_pixel_size``, where present, is the
    image's). Without a stated frame, the field width and height over that size give it.
    :func:`_for_stored_image` then makes it the size of the image's own pixels.
    """
    stated = _stated_sem_pixel_size(fei, zeiss)
    if stated is None:
        return None
    size, field_w, field_h = stated
    frame_cols = frame[1] if frame is not None and frame[1] is not None else (field_w / size if field_w else None)
    frame_rows = frame[0] if frame is not None else (field_h / size if field_h else None)
    return _for_stored_image(size, (frame_rows, frame_cols), shape, path, "the SEM metadata")


def _for_stored_image(size: float, frame: tuple[float | None, float | None], shape: tuple[int, ...], path: Path,
                      source: str, *, stacklevel: int = 5) -> float:
    """A pixel size stated for a scanned ``frame`` (rows, columns; None where unknown), as the size
    of the pixels of the image as stored.

    An image stored with other columns (a 512-column Zeiss image stating its 1024-column display's
    size, a resized export that kept its metadata) is off by the factor between the two. Where its
    rows match the frame scaled by that factor (plus at most a data bar), the size is scaled, with
    a warning. Columns that differ otherwise (a crop that kept the tags) leave the stated size,
    with a warning that it may not apply.
    """
    frame_rows, frame_cols = frame
    rows, cols = shape[0], shape[1]
    if frame_cols is None or abs(frame_cols - cols) <= 0.5 + 0.005 * cols:
        return size
    factor = frame_cols / cols
    resized_rows = frame_rows / factor if frame_rows else None
    if resized_rows is not None and (1.0 - _DATABAR_MAX_SHARE) * rows - 0.5 <= resized_rows <= rows + 0.5:
        scaled = size * factor
        warnings.warn(
            f"{path.name}: {source} states {size:.6g} µm/px for a {frame_cols:.0f}-column frame, but the image has "
            f"{cols} columns: its pixel size is {scaled:.6g} µm (the frame over the image's columns); give "
            "pixel_size_um= if that is wrong",
            UserWarning, stacklevel=stacklevel,
        )
        return scaled
    warnings.warn(
        f"{path.name}: {source} states {size:.6g} µm/px for a {frame_cols:.0f} x {frame_rows or float('nan'):.0f} "
        f"(columns x rows) frame, but the image is {cols} x {rows}: cropped or resized after acquisition; the "
        "stated pixel size is used, give pixel_size_um= if it does not apply",
        UserWarning, stacklevel=stacklevel,
    )
    return size


#: TESCAN's private TIFF tag: a binary prefix, then the ``[MAIN]``/``[SEM]`` key=value header text.
_TESCAN_TAG = 50431


def _tescan_header(path: Path, page: Any) -> dict[str, str]:
    """TESCAN's key=value header, from its TIFF tag or the ``<stem>-<ext>.hdr`` sidecar; {} if none.

    The header names the instrument (``Company=TESCAN``), the pixel size in metres
    (``PixelSizeX``) and the height of the info strip it draws below the image
    (``ImageStripSize``, rows).
    """
    text = ""
    tag = page.tags.get(_TESCAN_TAG) if page is not None else None
    if tag is not None and isinstance(tag.value, (bytes, str)):
        raw = tag.value
        text = raw.decode("latin-1", errors="replace") if isinstance(raw, bytes) else raw
    if not text:
        sidecar = path.with_name(f"{path.stem}-{path.suffix.lstrip('.').lower()}.hdr")
        if sidecar.is_file():
            text = sidecar.read_text(encoding="latin-1", errors="replace")
    found: dict[str, str] = {}
    for line in text.replace("\x00", "\n").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().isidentifier():
            found.setdefault(key.strip(), value.strip())
    return found if "PixelSizeX" in found or "ImageStripSize" in found else {}


def _tescan_pixel_size(header: dict[str, str]) -> float | None:
    """µm per pixel from a TESCAN header's ``PixelSizeX`` (metres), or None."""
    try:
        size = float(header.get("PixelSizeX", "nan"))
    except ValueError:
        return None
    return size * 1e6 if math.isfinite(size) and size > 0 else None


def _tescan_frame(header: dict[str, str], rows: int) -> tuple[float, float | None] | None:
    """(rows, None) of the image above the info strip a TESCAN header states, or None."""
    try:
        strip = int(float(header.get("ImageStripSize", "0")))
    except ValueError:
        return None
    return (float(rows - strip), None) if strip > 0 else None


#: JEOL's scale-bar label, ``$$SM_MICRON_MARKER 5um`` (also ``500nm``, ``1.5µm``, ``1mm``).
_JEOL_MARKER_UM = {"nm": 1e-3, "um": 1.0, "µm": 1.0, "\u03bcm": 1.0, "mm": 1e3}


def _jeol_header(text: str) -> dict[str, str]:
    """The ``$KEY value`` lines of a JEOL SEM's ``<stem>.txt`` sidecar text; {} if it is not one.

    Only a sidecar that holds both ``$$SM_MICRON_BAR`` (the scale bar's length in pixels) and
    ``$$SM_MICRON_MARKER`` (its label, e.g. ``5um``) counts: another ``.txt`` beside an image is
    not JEOL's.
    """
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key.startswith("$"):
            found.setdefault(key, value.strip())
    return found if "$$SM_MICRON_BAR" in found and "$$SM_MICRON_MARKER" in found else {}


def _jeol_frame(header: dict[str, str]) -> tuple[float, float] | None:
    """(rows, columns) of the scanned frame, ``$CM_FULL_SIZE <columns> <rows>``, or None."""
    parts = header.get("$CM_FULL_SIZE", "").split()
    try:
        cols, rows = (float(v) for v in parts[:2])
    except ValueError:
        return None
    return (rows, cols) if len(parts) >= 2 and rows > 0 and cols > 0 else None


def _jeol_pixel_size(header: dict[str, str], shape: tuple[int, ...], path: Path) -> float | None:
    """µm per pixel from a JEOL sidecar: the scale bar's label over its length in pixels.

    The bar is drawn on the ``$CM_FULL_SIZE`` frame (:func:`_for_stored_image` for an image
    stored with other columns).
    """
    if not header:
        return None
    marker = header["$$SM_MICRON_MARKER"].replace(" ", "").lower()
    unit = next((u for u in sorted(_JEOL_MARKER_UM, key=len, reverse=True) if marker.endswith(u)), None)
    try:
        length_um = float(marker[: -len(unit)]) * _JEOL_MARKER_UM[unit] if unit else math.nan
        bar_px = float(header["$$SM_MICRON_BAR"])
    except ValueError:
        length_um = bar_px = math.nan
    if not (length_um > 0 and bar_px > 0):
        warnings.warn(
            f"{path.with_suffix('.txt').name}: JEOL scale bar {header['$$SM_MICRON_BAR']!r} px = "
            f"{header['$$SM_MICRON_MARKER']!r} is not a length over a pixel count; pixel size not read from it",
            UserWarning, stacklevel=5,
        )
        return None
    frame = _jeol_frame(header)
    return _for_stored_image(length_um / bar_px, frame or (None, None), shape, path,
                             f"the JEOL scale bar ({header['$$SM_MICRON_MARKER']} = {header['$$SM_MICRON_BAR']} px)", stacklevel=6)


def _sidecar_text(path: Path) -> str:
    """The text of ``<stem>.txt`` beside an image ('' if none): Latin-1, or UTF-16 where it
    starts with a byte-order mark or holds NUL bytes (Hitachi writes either)."""
    sidecar = path.with_suffix(".txt")
    if sidecar == path or not sidecar.is_file() or sidecar.stat().st_size > 1_000_000:
        return ""
    raw = sidecar.read_bytes()
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in raw[:200]:
        return raw.decode("utf-16", errors="replace")
    return raw.decode("latin-1", errors="replace")


def _hitachi_header(text: str) -> dict[str, str]:
    """The ``key=value`` lines of a Hitachi SEM sidecar's ``[SemImageFile]`` section; {} if the
    text is not one (or lacks ``PixelSize``)."""
    found: dict[str, str] = {}
    inside = False
    for line in text.splitlines():
        line = line.strip().lstrip("\ufeff")
        if line.startswith("["):
            inside = line.lower() == "[semimagefile]"
            continue
        key, sep, value = line.partition("=")
        if inside and sep:
            found.setdefault(key.strip(), value.strip())
    return found if "PixelSize" in found else {}


def _hitachi_frame(header: dict[str, str]) -> tuple[float, float] | None:
    """(rows, columns) of the scanned frame, ``DataSize=<columns>x<rows>``, or None."""
    parts = header.get("DataSize", "").lower().split("x")
    try:
        cols, rows = (float(v) for v in parts)
    except ValueError:
        return None
    return (rows, cols) if rows > 0 and cols > 0 else None


def _hitachi_pixel_size(header: dict[str, str], shape: tuple[int, ...], path: Path) -> float | None:
    """µm per pixel from a Hitachi sidecar's ``PixelSize`` (nm; a TM3000 at 40x states about
    3000, an S-4800 at 10,000x about 10), for the ``DataSize`` frame."""
    try:
        nm = float(header["PixelSize"])
    except ValueError:
        nm = math.nan
    if not (nm > 0 and math.isfinite(nm)):
        warnings.warn(
            f"{path.with_suffix('.txt').name}: Hitachi PixelSize {header['PixelSize']!r} is not a positive "
            "number of nm; pixel size not read from it",
            UserWarning, stacklevel=5,
        )
        return None
    return _for_stored_image(nm * 1e-3, _hitachi_frame(header) or (None, None), shape, path,
                             f"the Hitachi sidecar (PixelSize={header['PixelSize']} nm)", stacklevel=6)


def _sem_sidecar(path: Path, shape: tuple[int, ...]) -> tuple[float | None, tuple[float, float] | None]:
    """(µm per pixel, scanned frame) from a JEOL or Hitachi SEM's ``<stem>.txt``; (None, None) if neither."""
    text = _sidecar_text(path)
    if not text:
        return None, None
    jeol = _jeol_header(text)
    if jeol:
        return _jeol_pixel_size(jeol, shape, path), _jeol_frame(jeol)
    hitachi = _hitachi_header(text)
    if hitachi:
        return _hitachi_pixel_size(hitachi, shape, path), _hitachi_frame(hitachi)
    return None, None


def _sem_frame_shape(fei: dict[str, Any] | None, zeiss: dict[str, Any] | None) -> tuple[float, float | None] | None:
    """(rows, columns or None) of the scanned frame the FEI/Thermo or Zeiss metadata states, or None."""
    image = (fei or {}).get("Image") or {}
    rows, cols = image.get("ResolutionY"), image.get("ResolutionX")
    if isinstance(rows, (int, float)) and rows > 0:
        return float(rows), float(cols) if isinstance(cols, (int, float)) and cols > 0 else None
    scan = (fei or {}).get("Scan") or (fei or {}).get("EScan") or {}
    height, size = scan.get("VerFieldsize"), scan.get("PixelHeight")
    if isinstance(height, (int, float)) and isinstance(size, (int, float)) and height > 0 and size > 0:
        return height / size, None
    store = (zeiss or {}).get("dp_image_store")
    if isinstance(store, tuple) and len(store) >= 2:
        parts = str(store[1]).lower().replace("x", "*").split("*")
        try:
            cols_z, rows_z = (float(v) for v in parts)
        except ValueError:
            return None
        if cols_z > 0 and rows_z > 0:
            return rows_z, cols_z
    return None


#: Largest share of the image rows a data bar below the frame may take; a stated frame that leaves
#: more is metadata of another image (a crop or a resize kept the tags) and is not cropped.
_DATABAR_MAX_SHARE = 0.25


def _databar_rows(shape: tuple[int, ...], frame: tuple[float, float | None] | None, path: Path) -> int:
    """Rows below the stated scanned ``frame``: the instrument's data bar (0 when none)."""
    if frame is None:
        return 0
    rows, cols = shape[0], shape[1]
    frame_rows, frame_cols = frame
    if frame_cols is not None and abs(frame_cols - cols) > 0.5:
        frame_rows *= cols / frame_cols  # the image was resized with its bar after acquisition
    bar = rows - int(round(frame_rows))
    if bar <= 0:
        return 0
    if bar > _DATABAR_MAX_SHARE * rows:
        warnings.warn(
            f"{path.name}: the SEM metadata states a {int(round(frame_rows))}-row frame in a {rows}-row image; "
            f"{bar} rows are too many for a data bar, so none were cropped (give databar=<rows> to crop)",
            UserWarning, stacklevel=4,
        )
        return 0
    return bar


def _metallo_description(page: Any) -> dict[str, Any]:
    text = page.description or ""
    if not text.lstrip().startswith("{"):
        return {}
    try:
        meta = json.loads(text)
    except json.JSONDecodeError:
        return {}
    inner = meta.get("metallo") if isinstance(meta, dict) else None
    return inner if isinstance(inner, dict) else {}


def _read_with_pillow(
    path: Path,
    *,
    pixel_size_um: float | None = None,
    modality: str | None = None,
    palette: str = "index",
    as_gray: bool = False,
) -> xr.DataArray:
    from PIL import Image, UnidentifiedImageError

    with path.open("rb") as fh:
        head = fh.read(32)
    if head.startswith(b"\x89PNG") and len(head) >= 26 and head[24] == 16 and head[25] in (2, 6):
        array, dpi = _read_png16_color(path), _png_dpi(path)
    else:
        # metallo's own cap replaces Pillow's decompression-bomb limit (a global), so the
        # error names the file and the setting that raises the cap.
        with _PIL_LOCK:
            pil_cap, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(path) as im:
                    _check_pixels(path, (im.size[1], im.size[0]), f"{im.format} header")
                    im.load()
                    dpi = im.info.get("dpi") if im.format == "PNG" else None
                    array = _pillow_array(im, palette, path)
            except MetalloError:
                raise
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error,
                    IndexError, TypeError, ZeroDivisionError, MemoryError) as exc:
                reason = " ".join(str(exc).split())[:200] or type(exc).__name__
                raise FormatError(f"{path}: not a readable image ({reason})") from None
            finally:
                Image.MAX_IMAGE_PIXELS = pil_cap
    file_ps = 25400.0 / float(dpi[0]) if dpi and float(dpi[0]) > 0 else None
    tescan = _tescan_header(path, None)
    meta: dict[str, Any] = {}
    side_ps, side_frame = _sem_sidecar(path, array.shape)
    sem_ps = _tescan_pixel_size(tescan) or side_ps
    if sem_ps is not None:
        file_ps, meta["modality"] = sem_ps, "SEM"
    bar = _databar_rows(array.shape[:2], _tescan_frame(tescan, array.shape[0]) or side_frame, path)
    if bar:
        meta["databar_rows_in_file"] = bar
    return _finish(
        array, path, pixel_size_um=pixel_size_um, file_pixel_size_um=file_ps, file_meta=meta,
        modality=modality, as_gray=as_gray,
    )  # fmt: skip


def _warn_colour_palette(path: Path, colours: np.ndarray, indices: np.ndarray) -> None:
    """Warn when an indexed image read as its indices shows colours, or greys out of index order.

    The indices are the right reading of a label mask (class ids) and of a grey-ramp palette
    (its indices rise with the grey it shows). Of a colour micrograph saved with a palette they
    are not grey values at all: thresholds, registration and segmentation would see arbitrary
    numbers, so the reader says so and names ``palette="rgb"``.
    """
    used = np.unique(indices)
    used = used[(used >= 0) & (used < len(colours))]
    if used.size < 2:
        return
    rgb = np.asarray(colours, dtype=np.float64)[used, :3]
    grey = bool(np.all(rgb[:, 0] == rgb[:, 1]) and np.all(rgb[:, 1] == rgb[:, 2]))
    if grey and bool(np.all(np.diff(rgb[:, 0]) > 0)):
        return
    what = "a colour palette" if not grey else "a grey palette whose greys do not rise with the index"
    warnings.warn(
        f"{path}: an indexed image with {what}: its {used.size} palette indices are returned (the reading "
        "for label masks), not the values it shows; for a micrograph read it with palette='rgb' "
        "(and as_gray=True for one channel)", UserWarning, stacklevel=4,
    )


def _pillow_array(im: Any, palette: str, path: Path | None = None) -> np.ndarray:
    mode = im.mode
    if mode == "P" or mode == "PA":
        if palette == "index":
            indices = np.asarray(im.convert("P") if mode == "PA" else im)
            colours = im.getpalette()
            if path is not None and colours:
                _warn_colour_palette(path, np.asarray(colours, dtype=np.int64).reshape(-1, 3), indices)
            return indices
        return np.asarray(im.convert("RGBA" if "transparency" in im.info else "RGB"))
    if mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(im).astype(np.uint16)
    if mode == "I":
        values = np.asarray(im)
        return values.astype(np.uint16) if values.min() >= 0 and values.max() < 65536 else values
    if mode == "1":
        return np.asarray(im).astype(np.uint8)
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(im.convert("RGB"))
    return np.asarray(im)


def _read_png16_color(path: Path) -> np.ndarray:
    """16-bit RGB(A) PNG, which Pillow would reduce to 8 bits."""
    import cv2

    data = np.frombuffer(path.read_bytes(), np.uint8)
    width, height = struct.unpack(">II", data[16:24].tobytes())
    _check_pixels(path, (height, width), "PNG header")
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if array is None:
        raise FormatError(f"{path}: not a readable PNG image (truncated or corrupt)")
    return np.ascontiguousarray(array[..., [2, 1, 0, 3][: array.shape[2]]])


def _png_dpi(path: Path) -> tuple[float, float] | None:
    data = path.read_bytes()
    at = data.find(b"pHYs")
    if at < 0 or len(data) < at + 13 or data[at + 12] != 1:
        return None
    ppm_x, ppm_y = struct.unpack(">II", data[at + 4 : at + 12])
    return ppm_x * 0.0254, ppm_y * 0.0254


def _sniff_tiff(head: bytes) -> bool:
    return head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


register_reader(
    "tiff", kind="image", extensions=(".tif", ".tiff"), sniff=_sniff_tiff, read=_read_tiff
)
register_reader(
    "png",
    kind="image",
    extensions=(".png",),
    sniff=lambda h: h.startswith(b"\x89PNG\r\n\x1a\n"),
    read=_read_with_pillow,
)
register_reader(
    "jpeg",
    kind="image",
    extensions=(".jpg", ".jpeg"),
    sniff=lambda h: h.startswith(b"\xff\xd8\xff"),
    read=_read_with_pillow,
)
register_reader(
    "bmp",
    kind="image",
    extensions=(".bmp",),
    sniff=lambda h: h.startswith(b"BM"),
    read=_read_with_pillow,
)


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def write_image(
    image: xr.DataArray | np.ndarray, path: str | Path, *, pixel_size_um: float | None = None
) -> Path:
    """Write an image to TIFF, PNG or JPEG (by extension), atomically, keeping its pixel size.

    TIFF keeps every dtype and the pixel size in its resolution tags (centimetre unit) plus
    a metallo JSON description (pixel size, modality). PNG holds 8/16-bit gray and RGB, the
    pixel size in its ``pHYs`` chunk. JPEG holds 8-bit only, is lossy (a warning if the
    image looks like a label map) and keeps the pixel size in a ``<file>.json`` sidecar.
    Boolean masks are written as uint8 0/1.

    Parameters
    ----------
    image : xr.DataArray or ndarray
        (y, x) or (y, x, 3) image.
    path : str or Path
        Target file; the extension picks the format (.tif, .tiff, .png, .jpg, .jpeg).
    pixel_size_um : float, optional
        Overrides ``image.attrs["pixel_size_um"]``.

    Returns
    -------
    Path
        The written file.

    Examples
    --------
    >>> import numpy as np
    >>> out = "a.tif"
    >>> write_image(np.zeros((4, 4), np.uint8), out, pixel_size_um=0.5).name
    'a.tif'
    >>> read_image(out).attrs["pixel_size_um"]
    0.5
    """
    path = Path(path)
    fmt = IMAGE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise FormatError(
            f"{path}: cannot write {path.suffix or 'files without extension'!r}; "
            f"known extensions: {', '.join(IMAGE_FORMATS)}"
        )
    array = to_numpy(image)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.size == 0:
        raise FormatError(f"{path}: the image has no pixels (shape {array.shape}); expected an image")
    if array.dtype.kind not in "iuf":
        # A complex TIFF was written, which no image program (and not read_image's callers) expects.
        raise ConfigError(f"{path.name}: pixel values must be real numbers; got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ConfigError(
            f"{path.name}: can write (y, x) or (y, x, 3|4) images; got shape {array.shape}"
        )
    ps = pixel_size_um if pixel_size_um is not None else _pixel_size_of(image)
    if ps is not None and not (math.isfinite(ps) and ps > 0):
        raise ConfigError(f"pixel_size_um must be a positive number; got {ps}")
    meta: dict[str, Any] = {"pixel_size_um": ps}
    modality = getattr(image, "attrs", {}).get("modality")
    if modality is not None:
        meta["modality"] = str(modality)
    if fmt == "tiff":
        _write_tiff(array, path, ps, meta)
    elif fmt == "png":
        _write_png(array, path, ps)
    else:
        array = _check_integer(array, path, "JPEG", 8)
        if str(getattr(image, "name", "") or "") == "labels" or len(np.unique(array)) <= 32:
            warnings.warn(
                f"{path.name}: JPEG is lossy and changes label values at edges; "
                "write labels as PNG or TIFF",
                UserWarning,
                stacklevel=2,
            )
        _write_jpeg(array, path, meta)
    return path


def _write_tiff(array: np.ndarray, path: Path, ps: float | None, meta: dict[str, Any]) -> None:
    import tifffile

    per_cm = 1e4 / ps if ps is not None else None
    rgba = array.ndim == 3 and array.shape[2] == 4
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            array,
            photometric="rgb" if array.ndim == 3 else "minisblack",
            extrasamples=(2,) if rgba else None,  # 2 = unassociated alpha
            description=json.dumps({"metallo": meta}),
            metadata=None,
            software="metallo",
            resolution=(per_cm, per_cm) if per_cm is not None else None,
            resolutionunit=tifffile.RESUNIT.CENTIMETER if per_cm is not None else None,
        )


def _check_integer(array: np.ndarray, path: Path, fmt: str, max_bits: int) -> np.ndarray:
    allowed = (np.uint8, np.uint16) if max_bits == 16 else (np.uint8,)
    if array.dtype in allowed:
        return array
    if np.issubdtype(array.dtype, np.integer) and array.size and array.min() >= 0:
        top = int(array.max())
        if top < 256:
            return array.astype(np.uint8)
        if max_bits == 16 and top < 65536:
            return array.astype(np.uint16)
    raise ConfigError(
        f"{path.name}: {fmt} holds {'8/16' if max_bits == 16 else '8'}-bit unsigned integers; got "
        f"{array.dtype} (range {array.min() if array.size else 0}..{array.max() if array.size else 0}); "
        "write a .tif or convert the image"
    )


def _write_png(array: np.ndarray, path: Path, ps: float | None) -> None:
    from PIL import Image

    array = _check_integer(array, path, "PNG", 16)
    dpi = (25400.0 / ps, 25400.0 / ps) if ps is not None else None
    with atomic_path(path) as tmp:
        if array.dtype == np.uint16 and array.ndim == 3:
            _write_png16_color(array, tmp, ps)
            return
        im = Image.fromarray(array)
        if dpi is not None:
            im.save(tmp, format="PNG", dpi=dpi)
        else:
            im.save(tmp, format="PNG")


def _write_png16_color(array: np.ndarray, tmp: Path, ps: float | None) -> None:
    """16-bit RGB(A) PNG via OpenCV (Pillow cannot write it); pHYs added by hand."""
    import zlib

    import cv2

    bgr = array[..., [2, 1, 0, 3][: array.shape[2]]]
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(bgr))
    if not ok:
        raise FormatError(f"{tmp}: OpenCV could not encode a 16-bit colour PNG")
    data = encoded.tobytes()
    if ps is not None:
        ppm = int(round(1e6 / ps))
        body = b"pHYs" + struct.pack(">IIB", ppm, ppm, 1)
        chunk = struct.pack(">I", 9) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
        end_ihdr = 8 + 8 + 13 + 4
        data = data[:end_ihdr] + chunk + data[end_ihdr:]
    tmp.write_bytes(data)


def _write_jpeg(array: np.ndarray, path: Path, meta: dict[str, Any]) -> None:
    from PIL import Image

    if array.ndim == 3 and array.shape[2] == 4:
        array = array[..., :3]
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="JPEG", quality=_JPEG_QUALITY)
    sidecar = path.with_name(path.name + ".json")
    if meta.get("pixel_size_um") is not None:
        atomic_write_text(sidecar, json.dumps(meta))
    elif sidecar.exists():
        sidecar.unlink()  # a stale sidecar would give the new image an old pixel size
