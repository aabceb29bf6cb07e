"""Full-image prediction by overlapping tiles with smooth (cosine-window) blending.

Durmaz et al. (2021) found evaluation on whole images up to 6 % IoU better than on tiles: tiles
lose context at their borders. Here every pixel is predicted from tiles in which it lies at
least ``overlap // 4`` px from the tile edge, and neighbouring tiles are cross-faded with
``sin^2`` ramps that sum to one, so a network whose receptive field is smaller than that margin
gives exactly the untiled result. Tiles are processed one row of tiles at a time into a strip
buffer, so memory grows with the tile batch and the image width, not with the image area: a
10k x 10k mosaic (or a memory-mapped array) is predicted without loading it whole.

References
----------
.. [1] A. R. Durmaz, M. Müller, B. Lei, A. Thomas, D. Britz, E. A. Holm, C. Eberl, F. Mücklich,
   P. Gumbsch, "A deep learning approach for complex microstructure inference",
   Nature Communications 12, 6272 (2021). doi:10.1038/s41467-021-26565-5
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from metallo import names
from metallo._device import resolve_device
from metallo._progress import ProgressCallback, notify
from metallo._xarray import image_dataarray
from metallo._xarray import pixel_size_um as _pixel_size_of
from metallo.errors import ConfigError
from metallo.segment._checkpoint import load_checkpoint
from metallo.segment._data import IMAGE_SUFFIXES, mirror_index, read_micrograph, to_unit_range

__all__ = ["blend_window", "predict", "predict_array", "predict_files", "predict_resized", "predict_to_specimen",
           "scale_to_pixel_size"]

DEFAULT_TILE = 512
DEFAULT_OVERLAP = 64


def blend_window(size: int, overlap: int) -> np.ndarray:
    """1-D tile weight: zero in the outer ``overlap // 4`` px, a ``sin^2`` ramp over the rest of
    the overlap, one inside. Ramps of neighbouring tiles (step ``size - overlap``) sum to one.

    Examples
    --------
    >>> w = blend_window(16, 8)
    >>> bool(np.allclose(w[8:14] + blend_window(16, 8)[0:6], 1.0))
    True
    """
    w = np.ones(size, dtype=np.float64)
    if overlap <= 0:
        return w.astype(np.float32)
    band = overlap // 4
    ramp = overlap - 2 * band
    t = np.arange(size, dtype=np.float64)
    rise = np.sin(0.5 * np.pi * (t - band + 0.5) / ramp) ** 2
    left = np.where(t < band, 0.0, np.where(t < band + ramp, rise, 1.0))
    w = np.minimum(left, left[::-1])
    return w.astype(np.float32)


def _ceil_to(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple


def _grid(length: int, tile: int | None, overlap: int, multiple: int) -> tuple[int, int, int]:
    """Tile length, step and count along one axis of an image padded by ``overlap // 2``."""
    pad = overlap // 2
    need = length + 2 * pad
    if tile is None or tile >= need:
        return _ceil_to(need, multiple), 1, 1
    if tile <= overlap:
        raise ConfigError(f"tile ({tile} px) must be larger than overlap ({overlap} px)")
    step = tile - overlap
    return tile, step, 1 + math.ceil((need - tile) / step)


def _normalised_tiles(image: Any, rows: np.ndarray, col_sets: Sequence[np.ndarray], mean: np.ndarray,
                      std: np.ndarray, in_channels: int) -> np.ndarray:
    out = []
    for cols in col_sets:
        tile = to_unit_range(np.asarray(image[np.ix_(rows, cols)]))
        if tile.shape[2] in (2, 4):
            tile = tile[..., :-1]
        if tile.shape[2] != in_channels:
            grey = tile.mean(axis=2, keepdims=True)
            tile = np.repeat(grey, in_channels, axis=2) if in_channels > 1 else grey
        out.append(((tile - mean) / std).transpose(2, 0, 1))
    return np.stack(out)


def _n_classes(model: nn.Module) -> int:
    n = getattr(model, "n_classes", None)
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"{type(model).__name__} needs an integer attribute n_classes to be used for prediction")
    return n


def _class_probabilities(model: nn.Module, x: torch.Tensor, *, tta: bool, use_amp: bool) -> torch.Tensor:
    """Softmax of ``model(x)``; with ``tta`` the mean over the 8 flips and 90-degree rotations."""
    transforms = [(k, flip) for k in range(4) for flip in (False, True)] if tta else [(0, False)]
    total = None
    for k, flip in transforms:
        xi = torch.rot90(x, k, (2, 3)) if k else x
        xi = xi.flip(3) if flip else xi
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.float16, enabled=use_amp):
            p = torch.softmax(model(xi).float(), dim=1)
        p = p.flip(3) if flip else p
        p = torch.rot90(p, -k, (2, 3)) if k else p
        total = p if total is None else total + p
    assert total is not None
    return total / len(transforms)


def predict_array(model: nn.Module, image: Any, *, mean: Sequence[float], std: Sequence[float],
                  tile: int | None = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP, batch_size: int = 4,
                  device: str | torch.device = "auto", amp: bool = True, probabilities: bool = False,
                  labels_out: np.ndarray | None = None, progress: ProgressCallback | None = None,
                  tta: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Tiled prediction of a ``(y, x[, channel])`` array (numpy, memmap or anything sliceable).

    The image is read one row of tiles at a time, so a memory-mapped mosaic never has to fit
    in memory; write the labels into a memory-mapped ``labels_out`` to keep the output on disk.

    Parameters
    ----------
    model : torch.nn.Module
        Maps ``(batch, in_channels, H, W)`` to logits ``(batch, n_classes, H, W)``; needs
        integer attributes ``n_classes`` (and ``in_channels``, default 1).
    image : array-like
        ``(y, x)`` or ``(y, x, channel)``; integers are divided by their dtype maximum.
    mean, std : sequence of float
        Per-channel normalisation of [0, 1] intensities (from the checkpoint).
    tile, overlap, batch_size, device, amp, progress, tta
        As for :func:`predict`.
    probabilities : bool
        Also return ``(y, x, class)`` float32 probabilities (image-sized).
    labels_out : ndarray, optional
        Pre-allocated ``(y, x)`` array (e.g. ``np.lib.format.open_memmap``) to write into.

    Returns
    -------
    labels : ndarray (y, x) uint8
    probabilities : ndarray (y, x, class) float32 or None

    Examples
    --------
    >>> from metallo.segment import get_model
    >>> net = get_model("unet", n_classes=2, base_channels=4)
    >>> labels, _ = predict_array(net, np.zeros((100, 120), np.uint8), mean=[0.5], std=[0.2],
    ...                           tile=64, overlap=16, device="cpu")
    >>> labels.shape
    (100, 120)
    """
    dev = resolve_device(device)
    h, w = int(image.shape[0]), int(image.shape[1])
    if h < 1 or w < 1:
        raise ConfigError(f"cannot predict an empty image of shape {tuple(image.shape)}")
    if overlap < 0:
        raise ConfigError(f"overlap must be >= 0 px; got {overlap}")
    n_classes = _n_classes(model)
    in_channels = int(getattr(model, "in_channels", 1))
    multiple = int(getattr(model, "size_multiple", 1))
    pad = overlap // 2
    th, step_y, ny = _grid(h, tile, overlap, multiple)
    tw, step_x, nx = _grid(w, tile, overlap, multiple)
    window = blend_window(th, overlap if ny > 1 or tile is not None else 0)[:, None] * \
        blend_window(tw, overlap if nx > 1 or tile is not None else 0)[None, :]
    width = tw + (nx - 1) * step_x
    acc = np.zeros((n_classes, th, width), np.float32)
    wsum = np.zeros((th, width), np.float32)
    labels = labels_out if labels_out is not None else np.empty((h, w), np.uint8 if n_classes <= 256 else np.int32)
    probs = np.empty((h, w, n_classes), np.float32) if probabilities else None
    mean_a = np.asarray(mean, np.float32).reshape(1, 1, -1)
    std_a = np.asarray(std, np.float32).reshape(1, 1, -1)
    window_t = torch.from_numpy(window).to(dev)
    col_starts = [j * step_x - pad for j in range(nx)]
    col_sets = [mirror_index(np.arange(x0, x0 + tw), w) for x0 in col_starts]
    model = model.to(dev).eval()
    use_amp = amp and dev.type == "cuda"
    tiles_done = 0
    notify(progress, tiles_done, ny * nx, "predicting tiles")
    for r in range(ny):
        y0 = r * step_y - pad
        rows = mirror_index(np.arange(y0, y0 + th), h)
        for b0 in range(0, nx, batch_size):
            batch = _normalised_tiles(image, rows, col_sets[b0:b0 + batch_size], mean_a, std_a, in_channels)
            x = torch.from_numpy(batch).to(dev, non_blocking=True)
            p = (_class_probabilities(model, x, tta=tta, use_amp=use_amp) * window_t).cpu().numpy()
            for k in range(p.shape[0]):
                c0 = (b0 + k) * step_x
                acc[:, :, c0:c0 + tw] += p[k]
                wsum[:, c0:c0 + tw] += window
            tiles_done += p.shape[0]
            notify(progress, tiles_done, ny * nx, "predicting tiles")
        done = step_y if r < ny - 1 else th
        first = r * step_y - pad  # image row of buffer row 0
        lo, hi = max(0, -first), min(done, h - first)
        if hi > lo:
            block = acc[:, lo:hi, pad:pad + w] / np.maximum(wsum[lo:hi, pad:pad + w], 1e-12)
            labels[first + lo:first + hi] = block.argmax(axis=0)
            if probs is not None:
                probs[first + lo:first + hi] = block.transpose(1, 2, 0)
        if r < ny - 1:
            acc[:, : th - step_y] = acc[:, step_y:]
            acc[:, th - step_y:] = 0.0
            wsum[: th - step_y] = wsum[step_y:]
            wsum[th - step_y:] = 0.0
    return labels, probs


def scale_to_pixel_size(image_pixel_size_um: float | None, pixel_size_um: float, name: str = "image") -> float:
    """Resize factor taking an image of ``image_pixel_size_um`` to ``pixel_size_um`` (µm/px).

    Examples
    --------
    >>> scale_to_pixel_size(0.1, 0.2)
    0.5
    """
    if image_pixel_size_um is None or not np.isfinite(image_pixel_size_um) or image_pixel_size_um <= 0:
        raise ConfigError(f"{name}: pixel size unknown, but the model works at {pixel_size_um} µm/px; "
                          "give the image's pixel size (pixel_size_um=, metallo predict --pixel-size)")
    return float(image_pixel_size_um) / float(pixel_size_um)


def predict_resized(model: nn.Module, image: Any, scale: float, *, mean: Sequence[float], std: Sequence[float],
                    **options: Any) -> np.ndarray:
    """Class probabilities ``(y, x, class)`` on the grid of ``image``, predicted at ``scale`` x its size.

    The image is resized (area interpolation down, linear up), predicted with
    :func:`predict_array` (``options``: tile, overlap, batch_size, device, amp, tta, progress)
    and the probabilities are resized back linearly.
    """
    import cv2

    src = np.asarray(image)
    h, w = int(src.shape[0]), int(src.shape[1])
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    src = cv2.resize(src, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    _, small = predict_array(model, src, mean=mean, std=std, probabilities=True, **options)
    assert small is not None
    return np.stack([cv2.resize(small[..., c], (w, h), interpolation=cv2.INTER_LINEAR)
                     for c in range(small.shape[2])], axis=-1)


def _model_and_info(checkpoint_or_model: Any, device: str | torch.device) -> tuple[nn.Module, dict[str, Any]]:
    if isinstance(checkpoint_or_model, nn.Module):
        info = dict(getattr(checkpoint_or_model, "metallo_info", {}) or {})
        return checkpoint_or_model, info
    if isinstance(checkpoint_or_model, tuple) and len(checkpoint_or_model) == 2:
        return checkpoint_or_model[0], dict(checkpoint_or_model[1])
    return load_checkpoint(checkpoint_or_model, device=device)


def predict(checkpoint_or_model: Any, image: Any, *, tile: int | None = DEFAULT_TILE,
            overlap: int = DEFAULT_OVERLAP, batch_size: int = 4, device: str = "auto",
            probabilities: bool = False, scale: float | None = None, amp: bool = True,
            progress: ProgressCallback | None = None, tta: bool | None = None,
            pixel_size_um: float | None = None) -> xr.DataArray | xr.Dataset:
    """Segment a whole micrograph with a trained model.

    Parameters
    ----------
    checkpoint_or_model : str, Path, dict or torch.nn.Module
        A checkpoint file (from :func:`~metallo.segment.train`), its dict, or a model (a model
        loaded with :func:`load_checkpoint` keeps its normalisation; a bare model gets none).
    image : xr.DataArray or ndarray
        ``(y, x)`` or ``(y, x, channel)``; integer images are divided by their dtype maximum.
        Memory-mapped arrays are read tile by tile.
    tile : int or None
        Tile side in px (512); ``None`` predicts the whole image in one pass.
    overlap : int
        Overlap of neighbouring tiles in px (64); the image is mirror-padded by half of it.
    batch_size : int
        Tiles per forward pass: this, not the image size, bounds the memory.
    device : "auto", "cpu" or "cuda"
        CUDA runs under float16 autocast when ``amp``.
    probabilities : bool
        Also return the blended class probabilities.
    scale : float, optional
        Resize factor applied before prediction; default: the training down-scaling stored in
        the checkpoint, or, for a model trained at one pixel size (``pixel_size_um`` in
        training), the factor that resamples this image to it. Results are resized back to the
        input grid.
    amp : bool
    progress : callable, optional
        ``progress(done, total, "predicting tiles")`` after each batch of tiles (see
        :mod:`metallo._progress`).
    tta : bool, optional
        Test-time augmentation: average the class probabilities over the 8 flips and
        90-degree rotations of each tile (8x the compute; micrographs have no preferred
        orientation, and the average is smoother at class borders). Default: as the
        checkpoint was evaluated in training (``eval_tta``).
    pixel_size_um : float, optional
        The image's pixel size in µm (default: its ``pixel_size_um`` attribute); needed only
        for a model trained at one pixel size.

    Returns
    -------
    xr.DataArray or xr.Dataset
        Labels ``(y, x)`` on the image's coordinates, attrs ``classes`` (JSON), ``model``,
        ``checkpoint_sha256``, ``config``; with ``probabilities`` a Dataset with ``labels`` and
        ``probabilities`` ``(y, x, class)``.

    Examples
    --------
    >>> from metallo.segment import get_model, save_checkpoint
    >>> checkpoint = save_checkpoint("unet.pt", get_model("unet", n_classes=2, base_channels=4),
    ...                              classes=["ferrite", "pearlite"], mean=[0.5], std=[0.25])   # untrained
    >>> labels = predict(checkpoint, np.random.default_rng(0).random((64, 64)), tile=None, device="cpu")
    >>> labels.shape, labels.attrs["classes"]
    ((64, 64), '["ferrite", "pearlite"]')
    """
    model, info = _model_and_info(checkpoint_or_model, device)
    norm = info.get("normalization", {})
    in_channels = int(getattr(model, "in_channels", 1))
    mean = norm.get("mean", [0.0] * in_channels)
    std = norm.get("std", [1.0] * in_channels)
    array = image.data if isinstance(image, xr.DataArray) else image
    if not hasattr(array, "shape") or len(array.shape) not in (2, 3):
        raise ConfigError(f"image must be (y, x) or (y, x, channel); got {getattr(array, 'shape', type(image))}")
    tile_info = info.get("tile", {}) or {}
    if scale is None and tile_info.get("pixel_size_um"):
        # The model was trained at one physical pixel size: resample this image to it.
        if pixel_size_um is None and isinstance(image, xr.DataArray):
            pixel_size_um = image.attrs.get("pixel_size_um")
        scale = scale_to_pixel_size(pixel_size_um, float(tile_info["pixel_size_um"]), "image")
    if scale is None:
        scale = float(tile_info.get("scale", 1.0) or 1.0)
    if tta is None:
        tta = bool(tile_info.get("tta", False))
    if scale != 1.0:
        probs_full = predict_resized(model, array, scale, mean=mean, std=std, tile=tile, overlap=overlap,
                                     batch_size=batch_size, device=device, amp=amp, progress=progress, tta=tta)
        labels = probs_full.argmax(axis=-1).astype(np.uint8)
        probs = probs_full if probabilities else None
    else:
        labels, probs = predict_array(model, array, mean=mean, std=std, tile=tile, overlap=overlap,
                                      batch_size=batch_size, device=device, amp=amp,
                                      probabilities=probabilities, progress=progress, tta=tta)
    classes = info.get("classes") or [f"class_{i}" for i in range(_n_classes(model))]
    attrs = {
        "classes": json.dumps(list(classes)),
        "model": str(info.get("model", getattr(model, "model_name", type(model).__name__))),
        "checkpoint_sha256": str(info.get("sha256", "")),
        "config": json.dumps({"tile": tile, "overlap": overlap, "scale": scale, "batch_size": batch_size,
                              "tta": bool(tta)}),
    }
    if isinstance(image, xr.DataArray):
        coords = {d: image.coords[d] for d in ("y", "x") if d in image.coords}
        out = xr.DataArray(labels, dims=("y", "x"), coords=coords, name="labels",
                           attrs={**attrs, "pixel_size_um": image.attrs.get("pixel_size_um", float("nan"))})
    else:
        out = image_dataarray(labels, pixel_size_um=None, name="labels", attrs=attrs)
    if probs is None:
        return out
    prob_da = xr.DataArray(probs, dims=("y", "x", "class"), coords={**out.coords, "class": list(classes)},
                           name="probabilities")
    return xr.Dataset({"labels": out, "probabilities": prob_da}, attrs=attrs)


def _expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ConfigError(f"{p}: no images (.png/.tif/.jpg) in this folder")
            paths += found
        elif p.is_file():
            paths.append(p)
        else:
            raise ConfigError(f"{p}: no such image file or folder")
    if not paths:
        raise ConfigError("no input images given")
    return paths


def overlay_rgb(image: np.ndarray, labels: np.ndarray, *, alpha: float = 0.4) -> np.ndarray:
    """Grey micrograph with class colours (tab10) blended on top, uint8 RGB."""
    from matplotlib import colormaps

    grey = image.astype(np.float32)
    if grey.ndim == 3:
        grey = grey[..., :3].mean(axis=2)
    lo, hi = np.percentile(grey, (0.5, 99.5))
    grey = np.clip((grey - lo) / max(hi - lo, 1e-12), 0, 1)
    colours = colormaps["tab10"](np.arange(10))[:, :3].astype(np.float32)[labels.astype(np.int64) % 10]
    rgb = (1 - alpha) * grey[..., None] + alpha * colours
    return (rgb * 255).round().astype(np.uint8)


def predict_files(checkpoint: str | Path, inputs: Sequence[str | Path], *, out_dir: str | Path,
                  tile: int | None = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP, batch_size: int = 4,
                  device: str = "auto", probabilities: bool = False, overlay: bool = True,
                  progress: ProgressCallback | None = None, tta: bool | None = None,
                  pixel_size_um: float | None = None) -> list[dict[str, Any]]:
    """Predict image files and folders, writing ``<stem>_labels.png`` (+ overlay, probabilities).

    Parameters
    ----------
    checkpoint : str or Path
    inputs : sequence of str or Path
        Image files and/or folders of images.
    out_dir : str or Path
    tile, overlap, batch_size, device, tta : see :func:`predict`
    pixel_size_um : float, optional
        Pixel size (µm) of the images, overriding what the files say; needed by a model
        trained at one pixel size when the files do not carry it.
    probabilities : bool
        Also write ``<stem>_probabilities.npy`` (y, x, class) float32.
    overlay : bool
        Write ``<stem>_overlay.png`` (class colours over the micrograph).
    progress : callable, optional
        As for :func:`predict`.

    Returns
    -------
    list of dict
        One record per image: input, labels, overlay, probabilities paths and class fractions.

    Examples
    --------
    >>> from metallo.segment import get_model, save_checkpoint
    >>> checkpoint = save_checkpoint("unet.pt", get_model("unet", n_classes=2, base_channels=4),
    ...                              classes=["ferrite", "pearlite"], mean=[0.5], std=[0.25])   # untrained
    >>> from metallo.io import write_image
    >>> _ = write_image(np.zeros((32, 48), np.uint8), Path("new_micrographs") / "m1.png")
    >>> records = predict_files(checkpoint, ["new_micrographs/"], out_dir="pred", tile=None, device="cpu")
    >>> sorted(p.name for p in Path("pred").iterdir())
    ['m1_labels.png', 'm1_overlay.png']
    """
    from metallo.io import write_image

    paths = _expand_inputs(inputs)
    model, info = load_checkpoint(checkpoint, device=device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for path in paths:
        image = read_micrograph(path, pixel_size_um=pixel_size_um)
        result = predict((model, info), image, tile=tile, overlap=overlap, batch_size=batch_size,
                         device=device, probabilities=probabilities, progress=progress, tta=tta)
        labels_da = result["labels"] if isinstance(result, xr.Dataset) else result
        labels = labels_da.values
        rec: dict[str, Any] = {"input": str(path), "labels": str(out / f"{path.stem}_labels.png")}
        write_image(labels_da, rec["labels"])
        if overlay:
            rec["overlay"] = str(out / f"{path.stem}_overlay.png")
            write_image(overlay_rgb(image.values, labels), rec["overlay"], pixel_size_um=_pixel_size_of(image))
        if probabilities and isinstance(result, xr.Dataset):
            rec["probabilities"] = str(out / f"{path.stem}_probabilities.npy")
            np.save(rec["probabilities"], result["probabilities"].values)
        counts = np.bincount(labels.ravel(), minlength=_n_classes(model))
        rec["fractions"] = dict(zip(info.get("classes", []), (counts / counts.sum()).round(6).tolist(), strict=False))
        records.append(rec)
    return records


def predict_to_specimen(checkpoint: str | Path, specimen: Any, *, micrograph: str = names.micrograph("lom"),
                        name: str | None = None, tile: int | None = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
                        device: str = "auto", overwrite: bool = False, suffix: str = "",
                        tta: bool | None = None) -> xr.DataArray:
    """Predict a Specimen micrograph node and store the labels as ``segmentations/<name><suffix>``.

    Parameters
    ----------
    checkpoint : str or Path
    specimen : Specimen
        An opened container (``spec[node]`` and ``spec.add``); save it afterwards.
    micrograph : str
        Input node.
    name : str, optional
        Segmentation name (default: the model name, ``labels.attrs["model"]``).
    tile, overlap, device, tta : see :func:`predict`
    overwrite : bool
    suffix : str
        Appended to the name, e.g. ``"_sem"`` when several micrographs of one specimen are
        predicted with one model (``metallo predict --specimen`` does this).

    Returns
    -------
    xr.DataArray
        The labels written.

    Examples
    --------
    >>> from metallo.segment import get_model, save_checkpoint
    >>> checkpoint = save_checkpoint("unet.pt", get_model("unet", n_classes=2, base_channels=4),
    ...                              classes=["ferrite", "pearlite"], mean=[0.5], std=[0.25])   # untrained
    >>> from metallo._xarray import image_dataarray
    >>> from metallo.specimen import Specimen
    >>> spec = Specimen.create("S1.h5", specimen_id="S1", overwrite=True)
    >>> spec.add("micrographs/sem", image_dataarray(np.zeros((32, 48), np.uint8), pixel_size_um=0.1,
    ...          attrs={"modality": "SEM", "source": "sem.tif", "sha256": ""}), step="io.read_image")
    >>> predict_to_specimen(checkpoint, spec, micrograph="micrographs/sem", tile=None, device="cpu").shape
    (32, 48)
    >>> spec.nodes()
    ['micrographs/sem', 'segmentations/unet']
    """
    if micrograph not in specimen:
        where = str(getattr(specimen, "path", "specimen"))
        raise ConfigError(f"{where}: no node {micrograph!r} to predict")
    node = specimen[micrograph]
    image = node["image"] if isinstance(node, xr.Dataset) else node
    model, info = load_checkpoint(checkpoint, device=device)
    labels = predict((model, info), image, tile=tile, overlap=overlap, device=device, tta=tta)
    assert isinstance(labels, xr.DataArray)
    labels = labels.astype(np.uint8 if _n_classes(model) <= 256 else np.int32)
    labels.attrs["pixel_size_um"] = _pixel_size_of(image) or float("nan")
    node_name = names.segmentation(f"{name or labels.attrs['model']}{suffix}")
    specimen.add(node_name, labels, step=names.segment_step("checkpoint"), inputs=[micrograph], overwrite=overwrite,
                 parameters={"checkpoint": str(checkpoint), "checkpoint_sha256": info.get("sha256", ""),
                             "tile": tile, "overlap": overlap, "tta": json.loads(labels.attrs["config"])["tta"]})
    return labels


