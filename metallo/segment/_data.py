"""Training data for supervised segmentation: labelled images, tiles and augmentation.

Images are held as float32 ``(y, x, channel)`` arrays scaled to [0, 1] (8-bit / 255, 16-bit /
65535); normalisation by the training mean and std happens after augmentation so that gamma
and contrast act on physical intensities. Tiles are cut on a regular grid over a mirror-padded
image (Durmaz et al. 2021: 256 px for LOM, 512 px for SEM, optional down-scaling first).

References
----------
.. [1] A. R. Durmaz, M. Müller, B. Lei, A. Thomas, D. Britz, E. A. Holm, C. Eberl, F. Mücklich,
   P. Gumbsch, "A deep learning approach for complex microstructure inference",
   Nature Communications 12, 6272 (2021). doi:10.1038/s41467-021-26565-5
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from scipy import ndimage

from metallo import names
from metallo._xarray import pixel_size_um as _pixel_size_of
from metallo._xarray import to_numpy
from metallo.errors import ConfigError, FormatError

__all__ = [
    "Augment",
    "LabelledImage",
    "SegmentationData",
    "TileDataset",
    "default_tile_size",
    "read_label_map",
    "read_micrograph",
    "load_training_folder",
    "mirror_index",
    "segmentation_data_from_specimen",
]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
DEFAULT_TILE = {"LOM": 256, "SEM": 512}


def default_tile_size(modality: str | None) -> int:
    """Training tile size of the lath-bainite paper: 256 px for LOM, 512 px for SEM.

    Examples
    --------
    >>> default_tile_size("SEM")
    512
    """
    return DEFAULT_TILE.get(str(modality).upper(), 256)


def _resample_tile(image: np.ndarray, labels: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``(channel, y, x)`` field and its labels resampled to ``tile`` x ``tile`` (area / linear; labels nearest)."""
    import cv2

    shrink = image.shape[1] > tile
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(np.ascontiguousarray(c, np.float32), (tile, tile), interpolation=interp) for c in image])
    lab = cv2.resize(np.ascontiguousarray(labels).astype(np.int32), (tile, tile), interpolation=cv2.INTER_NEAREST)
    return out, lab.astype(labels.dtype)


def mirror_index(index: np.ndarray, n: int) -> np.ndarray:
    """Map indices outside ``[0, n)`` back inside by mirror reflection (``d c b | a b c d | c b a``).

    Examples
    --------
    >>> mirror_index(np.arange(-3, 7), 4).tolist()
    [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    """
    index = np.asarray(index)
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    folded = np.mod(index, period)
    return np.where(folded >= n, period - folded, folded)


def check_image_values(dtype: Any, shape: tuple[int, ...], what: str, remedy: str) -> None:
    """Refuse an image the networks would misread: complex values, and a stack ``(n, y, x)`` that
    reads as one image of ``x`` channels (more channels than rows or columns; five 100 x 120
    images had given a 5 x 100 label map). ``remedy`` ends the stack's message.

    Examples
    --------
    >>> check_image_values(np.dtype("uint8"), (100, 120, 3), "image", "")
    >>> check_image_values(np.dtype("uint8"), (5, 100, 120), "image", "one at a time")
    Traceback (most recent call last):
    ...
    metallo.errors.ConfigError: image: shape (5, 100, 120) has more channels (120) than rows or columns: a stack of images (n, y, x)? one at a time
    """
    if np.dtype(dtype).kind not in "iufb":
        raise ConfigError(f"{what}: pixel values must be real numbers; got dtype {dtype}")
    if len(shape) == 3 and shape[2] > min(shape[:2]):
        raise ConfigError(f"{what}: shape {tuple(shape)} has more channels ({shape[2]}) than rows or columns: a stack of "
                          f"images (n, y, x)? {remedy}")


def to_unit_range(array: np.ndarray) -> np.ndarray:
    """Integer images divided by their dtype maximum, floats kept; float32 (y, x, channel)."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ConfigError(f"an image must be (y, x) or (y, x, channel); got shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        return (array.astype(np.float32) / float(np.iinfo(array.dtype).max)).astype(np.float32)
    if array.dtype == bool:
        return array.astype(np.float32)
    return np.nan_to_num(array.astype(np.float32, copy=False))


def read_micrograph(path: str | Path, *, pixel_size_um: float | None = None, palette: str = "index",
                    as_gray: bool = False, databar: str | int = "crop") -> xr.DataArray:
    """:func:`metallo.io.read_image` without its unknown-pixel-size warning.

    Segmentation works on the pixel grid; the pixel size is carried along when the folder
    metadata or the file knows it, and is optional otherwise.

    Examples
    --------
    >>> from metallo.io import write_image
    >>> p = write_image(np.zeros((3, 4), np.uint8), "a.png")
    >>> read_micrograph(p).shape
    (3, 4)
    """
    from metallo.io import read_image

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pixel size unknown", category=UserWarning)
        return read_image(path, pixel_size_um=pixel_size_um, palette=palette, as_gray=as_gray, databar=databar)


def _grey_if_equal(array: np.ndarray) -> np.ndarray:
    """One channel from an RGB image whose three channels are equal (typical SEM PNGs)."""
    if array.ndim == 3 and array.shape[2] == 3 and bool(
            np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2])):
        return array[..., 0]
    return array


def read_label_map(path: str | Path) -> np.ndarray:
    """A label PNG/TIFF as uint8 class ids (palette images give their indices, 255 = ignore).

    Examples
    --------
    >>> from metallo.io import write_image
    >>> p = write_image(np.array([[0, 1], [2, 255]], np.uint8), "l.png")
    >>> read_label_map(p).tolist()
    [[0, 1], [2, 255]]
    """
    # Class ids, not an image: an ignore band at the bottom is not a data bar (rows are matched
    # to the image's own crop by the caller).
    with warnings.catch_warnings():
        # A mask's palette colours its classes; its indices are what is wanted here.
        warnings.filterwarnings("ignore", message=".*palette indices are returned", category=UserWarning)
        labels = to_numpy(read_micrograph(path, palette="index", databar="keep"))
    if labels.ndim == 3:
        # A grey mask stored as RGB (R = G = B) holds its ids in every channel; a colour mask holds
        # colours, and one channel of it merges classes (pure red, green and blue give 255, 0, 0).
        channels = labels[..., :3] if labels.shape[2] >= 3 else labels
        if channels.shape[2] > 1 and not all(np.array_equal(channels[..., 0], channels[..., c])
                                             for c in range(1, channels.shape[2])):
            colours = np.unique(channels.reshape(-1, channels.shape[2]), axis=0)
            shown = ", ".join(str(tuple(int(v) for v in c)) for c in colours[:6]) + (", ..." if len(colours) > 6 else "")
            raise ConfigError(f"{path}: a colour mask ({len(colours)} colours: {shown}); label maps hold class ids "
                              "0..254 (255 = ignore) in one channel or as a palette PNG's indices: convert each "
                              "colour to its class id")
        labels = labels[..., 0]
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() > 255:
        raise ConfigError(f"{path}: labels must be integer class ids 0..254 (255 = ignore)")
    return labels.astype(np.uint8)


@dataclass
class LabelledImage:
    """One micrograph (float32 (y, x, channel) in [0, 1]) with its label map (uint8 (y, x))."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    pixel_size_um: float | None = None


@dataclass
class SegmentationData:
    """A set of labelled images with class names: what ``train`` and ``cross_validate`` consume.

    Examples
    --------
    >>> img = LabelledImage("a", np.zeros((8, 8, 1), np.float32), np.zeros((8, 8), np.uint8))
    >>> SegmentationData([img], classes=["matrix", "network"]).n_classes
    2
    """

    samples: list[LabelledImage]
    classes: list[str]
    ignore_index: int = 255
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.samples:
            raise ConfigError(f"no labelled images in {self.source or 'the data set'}")
        channels = {s.image.shape[2] for s in self.samples}
        if len(channels) != 1:
            raise ConfigError(f"images of {self.source or 'the data set'} mix channel counts {sorted(channels)}")
        for s in self.samples:
            _check_pair(s.image, s.labels, len(self.classes), self.ignore_index, s.name)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.samples[0].image.shape[2])

    @property
    def pixel_size_um(self) -> float | None:
        sizes = [s.pixel_size_um for s in self.samples if s.pixel_size_um]
        return float(np.median(sizes)) if sizes else None

    @property
    def pixel_size_range_um(self) -> tuple[float, float] | None:
        """The smallest and largest pixel size of the images (µm/px), None where none is known."""
        sizes = [s.pixel_size_um for s in self.samples if s.pixel_size_um]
        return (float(min(sizes)), float(max(sizes))) if sizes else None

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, indices: Iterable[int]) -> SegmentationData:
        """The images at ``indices`` (for cross-validation folds)."""
        return replace(self, samples=[self.samples[i] for i in indices])

    def rescaled(self, scale: float) -> SegmentationData:
        """Every image resized by ``scale`` (area interpolation down, linear up; labels nearest)."""
        if scale == 1.0:
            return self
        return replace(self, samples=[rescale_sample(s, scale) for s in self.samples])

    def resampled_to(self, pixel_size_um: float) -> SegmentationData:
        """Every image resized to ``pixel_size_um`` (µm/px) from its own pixel size.

        Micrographs taken at different magnifications then show their features at one
        physical scale. Raises ConfigError naming an image whose pixel size is unknown.
        """
        if not pixel_size_um or pixel_size_um <= 0:
            raise ConfigError(f"pixel_size_um must be a positive size in µm; got {pixel_size_um}")
        out = []
        for s in self.samples:
            if not s.pixel_size_um or not np.isfinite(s.pixel_size_um):
                raise ConfigError(f"{s.name}: pixel size unknown, cannot resample to {pixel_size_um} µm/px "
                                  "(give it in metadata.csv (um_per_px), classes.json or the TIFF tags)")
            factor = s.pixel_size_um / pixel_size_um
            out.append(s if abs(factor - 1.0) < 1e-6 else rescale_sample(s, factor))
        return replace(self, samples=out)

    def without_boundaries(self, px: float) -> SegmentationData:
        """Labels within ``px`` pixels of another class set to ``ignore_index`` (0: unchanged).

        See :func:`boundary_band`; for training on labels whose class edges are placed a few
        pixels off (``TrainConfig.ignore_boundary_px``).
        """
        if not px:
            return self
        out = []
        for s in self.samples:
            labels = s.labels.copy()
            labels[boundary_band(s.labels, px, ignore_index=self.ignore_index)] = self.ignore_index
            out.append(replace(s, labels=labels))
        return replace(self, samples=out)

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and standard deviation over all pixels of all images."""
        total = sum(s.image.shape[0] * s.image.shape[1] for s in self.samples)
        mean = sum(s.image.reshape(-1, s.image.shape[2]).sum(0, dtype=np.float64) for s in self.samples) / total
        sq = sum(((s.image.reshape(-1, s.image.shape[2]) - mean) ** 2).sum(0) for s in self.samples) / total
        std = np.sqrt(np.maximum(sq, 1e-12))
        return [float(v) for v in mean], [float(v) for v in std]


def boundary_band(labels: np.ndarray, px: float, *, ignore_index: int = 255) -> np.ndarray:
    """Labelled pixels within ``px`` pixels (Euclidean) of a pixel of another labelled class.

    ``px=1`` marks the pixels 4-adjacent to another class: one pixel on each side of every
    class boundary. Unlabelled pixels and the image edge are no class boundaries.

    Examples
    --------
    >>> labels = np.zeros((3, 6), np.uint8); labels[:, 3:] = 1; labels[0, 0] = 255
    >>> boundary_band(labels, 1).astype(int)[0].tolist()
    [0, 0, 1, 1, 0, 0]
    >>> int(boundary_band(labels, 2).sum())
    12
    """
    from scipy import ndimage as ndi

    if px < 0:
        raise ConfigError(f"the boundary band must be >= 0 px; got {px}")
    valid = labels != ignore_index
    band = np.zeros(labels.shape, bool)
    if not px:
        return band
    for c in np.unique(labels[valid]):
        inside = labels == c
        if inside.all():
            continue
        band |= valid & ~inside & (ndi.distance_transform_edt(~inside) <= px)
    return band


def _check_pair(image: np.ndarray, labels: np.ndarray, n_classes: int, ignore_index: int, name: str) -> None:
    if image.shape[:2] != labels.shape:
        raise ConfigError(f"{name}: label map is {labels.shape[0]}x{labels.shape[1]} but the image is "
                          f"{image.shape[0]}x{image.shape[1]} (rows x columns)")
    bad = (labels >= n_classes) & (labels != ignore_index)
    if bad.any():
        raise ConfigError(f"{name}: label value {int(labels[bad].max())} is beyond n_classes={n_classes} "
                          f"(valid 0..{n_classes - 1} and {ignore_index} = ignore)")


def rescale_sample(sample: LabelledImage, scale: float) -> LabelledImage:
    """Resize one labelled image by ``scale`` (the optional down-scaling of Durmaz et al. 2021)."""
    import cv2

    if scale <= 0:
        raise ConfigError(f"scale must be positive; got {scale}")
    h, w = sample.labels.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    image = cv2.resize(sample.image, size, interpolation=interp)
    if image.ndim == 2:
        image = image[..., None]
    labels = cv2.resize(sample.labels, size, interpolation=cv2.INTER_NEAREST)
    ps = sample.pixel_size_um / scale if sample.pixel_size_um else None
    return LabelledImage(sample.name, image.astype(np.float32), labels, ps)


def _read_classes_json(folder: Path) -> dict[str, Any]:
    path = folder / "classes.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}: not valid JSON ({exc.msg})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("classes", []), list):
        raise FormatError(f"{path}: expected {{'classes': [names...], 'ignore_index': 255, 'pixel_size_um': float}}")
    return meta


def _read_metadata_csv(folder: Path) -> dict[str, float]:
    path = folder / "metadata.csv"
    if not path.is_file():
        return {}
    import pandas as pd

    table = pd.read_csv(path)
    if "um_per_px" not in table.columns:
        return {}
    key = "micrograph_id" if "micrograph_id" in table.columns else table.columns[0]
    out = {}
    for ident, ps in zip(table[key], table["um_per_px"], strict=True):
        out[f"micrograph{ident}"] = float(ps)
        out[str(ident)] = float(ps)
    return out


def metadata_pixel_size(path: str | Path, cache: dict[Path, dict[str, float]] | None = None) -> float | None:
    """Pixel size (µm) of an image from a ``metadata.csv`` (``um_per_px``) in its folder or the
    folder above (the UHCS layout: ``<set>/metadata.csv`` beside ``<set>/images/``), or None.
    ``cache`` keeps each folder's table across calls (a folder of images)."""
    path = Path(path)
    cache = {} if cache is None else cache
    for folder in (path.parent, path.parent.parent):
        if folder not in cache:
            cache[folder] = _read_metadata_csv(folder)
        size = cache[folder].get(path.stem)
        if size is not None and np.isfinite(size) and size > 0:
            return float(size)
    return None


def load_training_folder(folder: str | Path, *, n_classes: int | None = None, classes: Sequence[str] | None = None,
                         grayscale: bool | str = "auto", ignore_index: int | None = None) -> SegmentationData:
    """Read ``folder/images/<stem>.*`` with ``folder/labels/<stem>.png`` into :class:`SegmentationData`.

    ``classes.json`` (``{"classes": [...], "ignore_index": 255, "pixel_size_um": ...}``) and a
    ``metadata.csv`` with ``um_per_px`` (as in the UHCS sets) are used when present. An SEM
    image's data bar is cropped on reading (:func:`metallo.io.read_image`); a label map drawn on
    the file as stored, bar rows included, loses the same rows.

    Parameters
    ----------
    folder : str or Path
        The training-data folder.
    n_classes : int, optional
        Number of classes; default from classes.json, else the largest label + 1.
    classes : sequence of str, optional
        Class names (override classes.json).
    grayscale : bool or "auto"
        Convert RGB to one channel; "auto" does so when R = G = B (typical SEM PNGs).
    ignore_index : int, optional
        Label of unannotated pixels (classes.json or 255).

    Returns
    -------
    SegmentationData

    Examples
    --------
    >>> from metallo.io import write_image
    >>> labels = (np.arange(32) >= 16).astype(np.uint8)[None, :].repeat(32, 0)     # ferrite | pearlite
    >>> for i in range(2):
    ...     _ = write_image((60 + 120 * labels).astype(np.uint8), f"uhcs/images/m{i}.png")
    ...     _ = write_image(labels, f"uhcs/labels/m{i}.png")
    >>> _ = Path("uhcs/classes.json").write_text('{"classes": ["ferrite", "pearlite"]}')
    >>> data = load_training_folder("uhcs")
    >>> len(data), data.classes
    (2, ['ferrite', 'pearlite'])
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: training-data folder not found")
    img_dir, lab_dir = folder / "images", folder / "labels"
    if not img_dir.is_dir() or not lab_dir.is_dir():
        raise ConfigError(f"{folder}: expected sub-folders images/ and labels/ (image/label pairs with the same stem)")
    meta = _read_classes_json(folder)
    ignore = int(ignore_index if ignore_index is not None else meta.get("ignore_index", 255))
    sizes = _read_metadata_csv(folder)
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ConfigError(f"{img_dir}: no images (.png/.tif/.jpg) found")
    label_files = {p.stem: p for p in lab_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    samples = []
    for path in images:
        if path.stem not in label_files:
            raise ConfigError(f"{path}: no label map {lab_dir / (path.stem + '.png')}")
        # metadata.csv, then classes.json, then what the file itself says.
        given = sizes.get(path.stem, meta.get("pixel_size_um"))
        image = read_micrograph(path, pixel_size_um=float(given) if given else None, as_gray=grayscale is True)
        array = _grey_if_equal(to_numpy(image)) if grayscale == "auto" else to_numpy(image)
        labels = read_label_map(label_files[path.stem])
        bar = int(image.attrs.get("databar_rows", 0))
        if bar and labels.shape == (array.shape[0] + bar, array.shape[1]):
            labels = labels[: array.shape[0]]  # drawn on the file as stored: its data bar rows go too
        samples.append(LabelledImage(path.stem, to_unit_range(array), labels, _pixel_size_of(image)))
    names = list(classes) if classes is not None else [str(c) for c in meta.get("classes", [])]
    if n_classes is None:
        n_classes = len(names) if names else int(max(int(s.labels[s.labels != ignore].max(initial=0)) for s in samples)) + 1
    if not names:
        names = [f"class_{i}" for i in range(n_classes)]
    if len(names) != n_classes:
        raise ConfigError(f"{folder}: {len(names)} class names but n_classes={n_classes}")
    return SegmentationData(samples, names, ignore, source=str(folder))


def segmentation_data_from_specimen(specimens: Any, *, micrograph: str = names.micrograph("lom"),
                                    annotation: str = names.annotation("bainite")) -> SegmentationData:
    """Pairs of ``micrographs/<m>`` and ``annotations/<a>`` nodes of one or more Specimens.

    Parameters
    ----------
    specimens : Specimen or sequence of Specimen
        Opened containers (:class:`metallo.specimen.Specimen`).
    micrograph, annotation : str
        Node names; the annotation must lie on the micrograph's grid.

    Returns
    -------
    SegmentationData

    Examples
    --------
    >>> from metallo.specimen import Specimen
    >>> from metallo.synth import write_demo_specimen
    >>> spec = Specimen.open(write_demo_specimen("demo", ebsd_shape=(40, 40)))   # LOM + its true labels
    >>> data = segmentation_data_from_specimen(spec, micrograph="micrographs/lom",
    ...                                        annotation="annotations/truth_lom")
    >>> len(data), data.classes
    (1, ['polygonal_ferrite', 'lath_bainite'])
    """
    specs = list(specimens) if isinstance(specimens, (list, tuple)) else [specimens]
    samples, classes, ignore = [], None, 255
    for i, spec in enumerate(specs):
        where = str(getattr(spec, "path", f"specimen {i}"))
        missing = [node for node in (micrograph, annotation) if node not in spec]
        if missing:
            raise ConfigError(f"{where}: node {missing[0]!r} not found (need {micrograph!r} and {annotation!r})")
        mic, ann = spec[micrograph], spec[annotation]
        image_da = mic["image"] if "image" in mic else mic
        labels_da = ann["labels"] if "labels" in ann else ann
        attrs = {**getattr(ann, "attrs", {}), **getattr(labels_da, "attrs", {})}
        names = attrs.get("classes")
        if isinstance(names, str):
            names = json.loads(names)
        if names is None:
            raise ConfigError(f"{where}: {annotation} has no 'classes' attribute")
        if classes is not None and list(names) != classes:
            raise ConfigError(f"{where}: {annotation} classes {names} differ from {classes}")
        classes = list(names)
        ignore = int(attrs.get("ignore_index", 255))
        image = _grey_if_equal(to_numpy(image_da))
        name = str(getattr(spec, "specimen_id", where))
        samples.append(LabelledImage(f"{name}:{micrograph}", to_unit_range(image),
                                     to_numpy(labels_da).astype(np.uint8), _pixel_size_of(image_da)))
    return SegmentationData(samples, classes or [], ignore, source=f"{len(specs)} specimen(s)")


@dataclass
class Augment:
    """Random flips, 90-degree rotations, brightness/contrast, gamma, blur and elastic warps.

    Parameters
    ----------
    flips : bool
        Horizontal and vertical mirror flips.
    rot90 : bool
        Rotations by multiples of 90 degrees (180 only on non-square tiles).
    brightness : float
        Additive shift up to ±brightness (intensities in [0, 1]).
    contrast : float
        Multiplicative contrast factor in [1 - contrast, 1 + contrast] about the tile mean.
    gamma : float
        ``image ** exp(u)`` with ``u`` uniform in ±gamma.
    blur : float
        Probability of a Gaussian blur with sigma uniform in [0.5, blur_sigma] px.
    blur_sigma : float
    elastic : float
        Probability of an elastic warp (smooth random displacement, labels nearest).
    elastic_alpha : float
        Displacement amplitude in px.
    elastic_sigma : float
        Smoothness of the displacement field in px.
    scale : float
        Multi-scale augmentation: zoom each tile about its centre by a factor drawn
        log-uniformly from ``[1 / (1 + scale), 1 + scale]`` (image linear, labels nearest), so a
        model trained at one physical pixel size tolerates the calibration spread of real
        micrographs (0 disables). In :class:`TileDataset` the zoom is taken from the image
        around the tile (a tile zoomed out 2x shows the 2x larger field it stands in), so that
        wide ranges (``scale=1``: 0.5x to 2x, other magnifications) add no mirrored structure;
        :meth:`__call__` alone zooms about the tile centre and mirrors beyond it.

    Examples
    --------
    >>> aug = Augment(elastic=1.0)
    >>> img, lab = aug(np.random.rand(1, 32, 32).astype(np.float32), np.zeros((32, 32), np.uint8),
    ...                np.random.default_rng(0))
    >>> img.shape, lab.shape
    ((1, 32, 32), (32, 32))
    """

    flips: bool = True
    rot90: bool = True
    brightness: float = 0.05
    contrast: float = 0.1
    gamma: float = 0.2
    blur: float = 0.0
    blur_sigma: float = 1.5
    elastic: float = 0.0
    elastic_alpha: float = 8.0
    elastic_sigma: float = 8.0
    scale: float = 0.0

    @classmethod
    def from_config(cls, value: Any) -> Augment | None:
        """``True`` -> defaults, ``False``/``None`` -> no augmentation, a dict -> those options."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, Augment):
            return value
        if isinstance(value, dict):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise ConfigError(f"augment: unknown option(s) {sorted(unknown)}; valid: {sorted(cls.__dataclass_fields__)}")
            return cls(**value)
        raise ConfigError(f"augment must be true, false or a mapping of options; got {value!r}")

    def zoom_factor(self, rng: np.random.Generator) -> float:
        """A magnification drawn log-uniformly from ``[1 / (1 + scale), 1 + scale]`` (1 without ``scale``)."""
        return float(np.exp(rng.uniform(-1, 1) * math.log1p(self.scale))) if self.scale > 0 else 1.0

    def __call__(self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator, *,
                 zoom: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Augment a ``(channel, y, x)`` image in [0, 1] and its ``(y, x)`` label map together.

        ``zoom=False``: no multi-scale zoom here (the caller has zoomed from context).
        """
        if self.flips:
            if rng.random() < 0.5:
                image, labels = image[:, :, ::-1], labels[:, ::-1]
            if rng.random() < 0.5:
                image, labels = image[:, ::-1, :], labels[::-1, :]
        if self.rot90:
            k = int(rng.integers(4)) if image.shape[1] == image.shape[2] else 2 * int(rng.integers(2))
            image, labels = np.rot90(image, k, axes=(1, 2)), np.rot90(labels, k)
        if self.elastic > 0 and rng.random() < self.elastic:
            image, labels = self._elastic(image, labels, rng)
        if self.scale > 0 and zoom:
            image, labels = self._zoom(image, labels, self.zoom_factor(rng))
        image = np.ascontiguousarray(image, dtype=np.float32)
        if self.blur > 0 and rng.random() < self.blur:
            sigma = rng.uniform(0.5, self.blur_sigma)
            image = ndimage.gaussian_filter(image, (0, sigma, sigma), mode="mirror")
        if self.gamma > 0:
            image = np.clip(image, 0.0, 1.0) ** np.float32(math.exp(rng.uniform(-self.gamma, self.gamma)))
        if self.contrast > 0:
            mean = image.mean(axis=(1, 2), keepdims=True)
            image = (image - mean) * np.float32(rng.uniform(1 - self.contrast, 1 + self.contrast)) + mean
        if self.brightness > 0:
            image = image + np.float32(rng.uniform(-self.brightness, self.brightness))
        return image.astype(np.float32, copy=False), np.ascontiguousarray(labels)

    @staticmethod
    def _zoom(image: np.ndarray, labels: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
        """Magnify by ``factor`` about the tile centre, keeping the tile size (mirror outside)."""
        h, w = labels.shape
        centre = np.array([(h - 1) / 2, (w - 1) / 2])
        offset = centre - centre / factor
        zoomed = np.stack([ndimage.affine_transform(np.asarray(c, np.float32), [1 / factor, 1 / factor], offset=offset,
                                                    order=1, mode="mirror") for c in image])
        zoomed_labels = ndimage.affine_transform(np.ascontiguousarray(labels), [1 / factor, 1 / factor], offset=offset,
                                                 order=0, mode="mirror")
        return zoomed, zoomed_labels.astype(labels.dtype)

    def _elastic(self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        h, w = labels.shape
        dy, dx = (ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), self.elastic_sigma, mode="mirror")
                  for _ in range(2))
        norm = max(np.abs(dy).max(), np.abs(dx).max(), 1e-12)
        yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        coords = np.stack([yy + dy / norm * self.elastic_alpha, xx + dx / norm * self.elastic_alpha])
        warped = np.stack([ndimage.map_coordinates(c, coords, order=1, mode="mirror") for c in image])
        warped_labels = ndimage.map_coordinates(labels, coords, order=0, mode="mirror")
        return warped.astype(np.float32), warped_labels.astype(labels.dtype)


class TileDataset:
    """Torch-style dataset of ``(image (C, th, tw) float32, labels (th, tw) int64)`` tiles.

    Tiles lie on a regular grid over each image, mirror-padded where the grid overhangs; with
    ``jitter`` the grid is shifted randomly each epoch so that training sees every context.

    Parameters
    ----------
    data : SegmentationData
    tile : int
        Tile side in px (after any scaling of ``data``).
    mean, std : sequence of float
        Per-channel normalisation applied after augmentation.
    augment : Augment, optional
    jitter : bool
    seed : int
    balance : float
        Class-balanced sampling: this fraction of the tiles is centred instead on a random
        pixel of a class drawn uniformly from the classes present, so a rare class (the
        Widmanstätten laths of UHCS, 1-5 % of the pixels) is seen as often as the others.

    Examples
    --------
    >>> img = LabelledImage("a", np.zeros((40, 50, 1), np.float32), np.zeros((40, 50), np.uint8))
    >>> ds = TileDataset(SegmentationData([img], ["a"]), tile=32, mean=[0.0], std=[1.0])
    >>> len(ds), ds[0][0].shape
    (4, (1, 32, 32))
    """

    def __init__(self, data: SegmentationData, *, tile: int, mean: Sequence[float], std: Sequence[float],
                 augment: Augment | None = None, jitter: bool = False, seed: int = 0, balance: float = 0.0) -> None:
        if tile < 1:
            raise ConfigError(f"tile size must be >= 1 px; got {tile}")
        if not 0 <= balance <= 1:
            raise ConfigError(f"balance must be in [0, 1]; got {balance}")
        self.balance = float(balance)
        # Per class: (sample, flat pixel index) of its labelled pixels, for balanced tiles.
        self.class_pixels: list[np.ndarray] = []
        if balance > 0:
            for c in range(data.n_classes):
                found = [np.stack([np.full(idx.size, k), idx], axis=1)
                         for k, s in enumerate(data.samples) if (idx := np.flatnonzero(s.labels == c)).size]
                if found:
                    self.class_pixels.append(np.concatenate(found))
        self.data, self.tile, self.augment, self.jitter, self.seed = data, int(tile), augment, jitter, seed
        self.mean = np.asarray(mean, np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(-1, 1, 1)
        self.epoch = 0
        self.index: list[tuple[int, int, int]] = []
        for k, s in enumerate(data.samples):
            h, w = s.labels.shape
            ny, nx = max(1, math.ceil(h / tile)), max(1, math.ceil(w / tile))
            # Centre the grid so the mirror padding is split over both sides.
            oy, ox = (ny * tile - h) // 2, (nx * tile - w) // 2
            self.index += [(k, r * tile - oy, c * tile - ox) for r in range(ny) for c in range(nx)]

    def set_epoch(self, epoch: int) -> None:
        """Reseed augmentation and jitter for a new epoch (deterministic per seed and epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        k, y0, x0 = self.index[i]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        if self.class_pixels and rng.random() < self.balance:
            pixels = self.class_pixels[int(rng.integers(len(self.class_pixels)))]
            k, flat = pixels[int(rng.integers(len(pixels)))]
            cy, cx = divmod(int(flat), self.data.samples[int(k)].labels.shape[1])
            k, y0, x0 = int(k), cy - self.tile // 2, cx - self.tile // 2
        sample = self.data.samples[k]
        if self.jitter:
            y0 += int(rng.integers(-self.tile // 2, self.tile // 2 + 1))
            x0 += int(rng.integers(-self.tile // 2, self.tile // 2 + 1))
        h, w = sample.labels.shape
        # Multi-scale zoom from context: the field of side tile / factor about the tile's centre,
        # resampled to the tile (mirrored only beyond the image, like the tile itself).
        factor = self.augment.zoom_factor(rng) if self.augment is not None else 1.0
        side = max(2, int(round(self.tile / factor)))
        y0, x0 = y0 + (self.tile - side) // 2, x0 + (self.tile - side) // 2
        rows = mirror_index(np.arange(y0, y0 + side), h)
        cols = mirror_index(np.arange(x0, x0 + side), w)
        image = sample.image[np.ix_(rows, cols)].transpose(2, 0, 1)
        labels = sample.labels[np.ix_(rows, cols)]
        if side != self.tile:
            image, labels = _resample_tile(image, labels, self.tile)
        if self.augment is not None:
            image, labels = self.augment(image, labels, rng, zoom=False)
        image = (image - self.mean) / self.std
        return np.ascontiguousarray(image, dtype=np.float32), labels.astype(np.int64)
