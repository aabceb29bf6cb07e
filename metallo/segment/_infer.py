"""Prediction of whole micrographs: in one pass when the image fits a memory budget, else by
overlapping tiles with smooth (cosine-window) blending, for one model or an ensemble.

Durmaz et al. (2021) found evaluation on whole images up to 6 % IoU better than on tiles: tiles
lose context at their borders. A micrograph whose activations fit ``memory_mib`` is therefore
predicted in one forward pass, padded only to the model's size multiple. Larger images (mosaics)
are tiled: every pixel is predicted from tiles in which it lies at least ``overlap // 4`` px from
the tile edge, and neighbouring tiles are cross-faded with ``sin^2`` ramps that sum to one. The
default overlap is four times the model's *effective receptive-field radius* (measured once per
model from the input gradient of a centre pixel, the radius holding 99 % of it), so the tiled
result equals the untiled one to that precision. Tiles are processed one row of tiles at a time
into a strip buffer, so memory grows with the tile batch and the image width, not with the image
area: a 10k x 10k mosaic (or a memory-mapped array) is predicted without loading it whole.

An ensemble (the k cross-validation fold models) averages the members' class probabilities;
the normalised entropy of that mean is the per-pixel *uncertainty*, and the mutual information
between members and classes (entropy of the mean minus the mean member entropy) their
*disagreement*. Both are accumulated strip by strip like the probabilities.

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
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from metallo import names
from metallo._atomic import atomic_path
from metallo._device import resolve_device
from metallo._progress import ProgressCallback, notify
from metallo._xarray import image_dataarray
from metallo._xarray import pixel_size_um as _pixel_size_of
from metallo.errors import ConfigError, ModelError
from metallo.segment._checkpoint import load_checkpoint
from metallo.segment._data import (
    IMAGE_SUFFIXES,
    check_image_values,
    metadata_pixel_size,
    mirror_index,
    read_micrograph,
    to_unit_range,
)
from metallo.segment._footprint import (
    _ceil_to,
    _n_classes,
    activation_bytes_per_pixel,
    receptive_radius,
)
from metallo.segment._novelty import CELL_PX, CellCollector, novelty_map, novelty_quality, tap_of

__all__ = ["InferencePlan", "activation_bytes_per_pixel", "blend_window", "ensemble_checkpoints",
           "plan_inference", "predict", "predict_array", "predict_files", "predict_maps", "predict_resized",
           "predict_to_specimen", "receptive_radius", "scale_to_pixel_size"]

#: Memory for the network's activations (MiB) below which an image is predicted in one pass.
DEFAULT_MEMORY_MIB = 1024.0
#: Uncertainty (normalised entropy) above which a pixel counts as uncertain in the quality record.
UNCERTAIN_LEVEL = 0.5
#: Largest fraction of uncertain pixels for which the quality record passes.
MAX_UNCERTAIN_FRACTION = 0.10
_MAX_TILE = 1024
_MAX_BATCH = 8
#: Rows of blended probabilities turned into labels (and maps) at a time.
_WRITE_ROWS = 128


def blend_window(size: int, overlap: int) -> np.ndarray:
    """1-D tile weight: zero in the outer ``overlap // 4`` px, a ``sin^2`` ramp over the rest of
    the overlap, one inside. Ramps of neighbouring tiles (step ``size - overlap``) sum to one.

    Parameters
    ----------
    size : int
        Tile length in px.
    overlap : int
        Overlap of neighbouring tiles in px.

    Returns
    -------
    ndarray of float32, shape (size,)

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


@dataclass(frozen=True)
class InferencePlan:
    """How an image is predicted: whole or tiled, with what overlap and batch.

    Attributes
    ----------
    tile : int or None
        Tile side in px; None for one pass over the whole (padded) image.
    overlap : int
        Overlap of neighbouring tiles in px (the mirror padding of the image is half of it).
    batch_size : int
        Tiles per forward pass.
    receptive_radius : int or None
        The model's effective receptive-field radius in px, when the overlap was derived from it.
    memory_mib : float
        The activation budget the plan was made for.
    """

    tile: int | None
    overlap: int
    batch_size: int
    receptive_radius: int | None
    memory_mib: float


def plan_inference(model: nn.Module, shape: Sequence[int], *, tile: int | str | None = "auto",
                   overlap: int | None = None, batch_size: int | None = None,
                   memory_mib: float = DEFAULT_MEMORY_MIB) -> InferencePlan:
    """Choose whole-image or tiled prediction of an image of ``shape`` for ``model``.

    Parameters
    ----------
    model : torch.nn.Module
    shape : sequence of int
        ``(y, x[, channel])`` of the image as the network sees it.
    tile : "auto", int or None
        ``"auto"``: the whole image in one pass when its activations
        (:func:`activation_bytes_per_pixel`) fit ``memory_mib``, else the largest tiles (at most
        1024 px) that do; an int forces tiles of that side, None one pass.
    overlap : int, optional
        Tile overlap in px; default four times :func:`receptive_radius` when tiling, 0 for one
        pass.
    batch_size : int, optional
        Tiles per forward pass; default as many as fit the budget (1-8).
    memory_mib : float
        Memory budget in MiB: the network's activations and, when tiling, the row of blended
        class probabilities that the tiles are added into (``(classes + 2) x tile x width``
        float32; 264 MiB for 4 classes in 1024-px tiles across a 10 240-px mosaic), so the tiles
        per batch are what the rest of the budget holds (at least one).

    Returns
    -------
    InferencePlan

    Examples
    --------
    >>> from metallo.segment import get_model
    >>> net = get_model("unet", n_classes=2, base_channels=4)
    >>> plan_inference(net, (481, 645)).tile is None
    True
    >>> plan_inference(net, (10240, 10240)).tile
    1024
    """
    if memory_mib <= 0:
        raise ConfigError(f"memory_mib must be positive; got {memory_mib}")
    if overlap is not None and overlap < 0:
        raise ConfigError(f"overlap must be >= 0 px; got {overlap}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1; got {batch_size}")
    multiple = int(getattr(model, "size_multiple", 1))
    h, w = int(shape[0]), int(shape[1])
    budget_px = memory_mib * 2**20 / activation_bytes_per_pixel(model)
    if isinstance(tile, str):
        if tile != "auto":
            raise ConfigError(f"tile must be 'auto', a size in px or None; got {tile!r}")
        pad = overlap or 0
        if _ceil_to(h + pad, multiple) * _ceil_to(w + pad, multiple) <= budget_px:
            return InferencePlan(None, pad, 1, None, float(memory_mib))
        side = max(multiple, int(math.sqrt(budget_px)) // multiple * multiple)
        tile = min(_MAX_TILE, side)
    if tile is None:
        return InferencePlan(None, overlap or 0, batch_size or 1, None, float(memory_mib))
    radius = None
    if overlap is None:
        radius = receptive_radius(model)
        overlap = _ceil_to(4 * radius, 4)
        # Tiles at least twice the overlap keep the wasted margin below ~75 % of the compute.
        tile = max(int(tile), _ceil_to(2 * overlap + multiple, multiple))
    # The blending buffers of one row of tiles (class probabilities, an entropy channel, the
    # weights) live beside the activations: left out, a 10 240-px mosaic peaked above 1.5 GiB.
    strip_px = (_n_classes(model) + 2) * 4 * tile * (w + tile) / activation_bytes_per_pixel(model)
    batch = batch_size or int(min(_MAX_BATCH, max(1, (budget_px - strip_px) // tile**2)))
    return InferencePlan(int(tile), int(overlap), batch, radius, float(memory_mib))


def _unit_tiles(image: Any, rows: np.ndarray, col_sets: Sequence[np.ndarray], in_channels: int) -> np.ndarray:
    """Tiles ``(batch, y, x, channel)`` in [0, 1] with the model's channel count."""
    out = []
    for cols in col_sets:
        tile = to_unit_range(np.asarray(image[np.ix_(rows, cols)]))
        if tile.shape[2] in (2, 4):
            tile = tile[..., :-1]
        if tile.shape[2] != in_channels:
            grey = tile.mean(axis=2, keepdims=True)
            tile = np.repeat(grey, in_channels, axis=2) if in_channels > 1 else grey
        out.append(tile)
    return np.stack(out).astype(np.float32, copy=False)


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


def _entropy(p: torch.Tensor, dim: int) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=dim)


@dataclass
class _Member:
    """One model of an ensemble with its normalisation (fold models differ in it)."""

    model: nn.Module
    mean: np.ndarray
    std: np.ndarray


def _members(models: Any, mean: Any, std: Any) -> list[_Member]:
    if isinstance(models, nn.Module):
        models, mean, std = [models], [mean], [std]
    models = list(models)
    if not models:
        raise ConfigError("no models to predict with")
    if len(mean) != len(models) or len(std) != len(models):
        raise ConfigError(f"an ensemble of {len(models)} models needs one mean and std per model")
    classes = {_n_classes(m) for m in models}
    if len(classes) > 1:
        raise ConfigError(f"ensemble members predict different numbers of classes: {sorted(classes)}")
    return [_Member(m, np.asarray(mu, np.float32).reshape(1, 1, 1, -1), np.asarray(sd, np.float32).reshape(1, 1, 1, -1))
            for m, mu, sd in zip(models, mean, std, strict=True)]


def predict_maps(models: nn.Module | Sequence[nn.Module], image: Any, *, mean: Any, std: Any,
                 tile: int | str | None = "auto", overlap: int | None = None, batch_size: int | None = None,
                 memory_mib: float = DEFAULT_MEMORY_MIB, device: str | torch.device = "auto", amp: bool = True,
                 probabilities: bool = False, uncertainty: bool = False, labels_out: np.ndarray | None = None,
                 progress: ProgressCallback | None = None, tta: bool = False,
                 collect_cells: bool = False) -> dict[str, Any]:
    """Labels and optional probability / uncertainty maps of a ``(y, x[, channel])`` array.

    The image is read one row of tiles at a time, so a memory-mapped mosaic never has to fit
    in memory; write the labels into a memory-mapped ``labels_out`` to keep the output on disk.

    Parameters
    ----------
    models : torch.nn.Module or sequence of them
        Each maps ``(batch, in_channels, H, W)`` to logits ``(batch, n_classes, H, W)`` and has
        integer attributes ``n_classes`` (and ``in_channels``, default 1). Several models form
        an ensemble: their class probabilities are averaged.
    image : array-like
        ``(y, x)`` or ``(y, x, channel)``; integers are divided by their dtype maximum.
    mean, std : sequence of float (one model) or sequence of them (one per model)
        Per-channel normalisation of [0, 1] intensities (from the checkpoint).
    tile, overlap, batch_size, memory_mib
        As for :func:`plan_inference`.
    device, amp, progress, tta
        As for :func:`predict`.
    probabilities : bool
        Also return ``(y, x, class)`` float32 probabilities (image-sized).
    uncertainty : bool
        Also return the ``uncertainty`` map (entropy of the mean probabilities / log(classes),
        0 = certain, 1 = uniform) and, for an ensemble, ``disagreement`` (mutual information
        between member and class / log(classes)).
    labels_out : ndarray, optional
        Pre-allocated ``(y, x)`` array (e.g. ``np.lib.format.open_memmap``) to write into.
    collect_cells : bool
        Collect the novelty check's cell descriptors (:mod:`metallo.segment._novelty`) for
        every member, not only those whose checkpoint holds a novelty reference.

    Returns
    -------
    dict
        ``labels`` (y, x), ``probabilities``, ``uncertainty``, ``disagreement`` (or None),
        ``expected_error`` (per predicted class: mean of 1 - max probability over its pixels),
        ``plan`` (:class:`InferencePlan`), ``novelty_cells`` (per member: cell descriptors or None)
        and ``novelty_cell_yx`` (each cell's corner pixel in the image as predicted, or None).

    Examples
    --------
    >>> from metallo.segment import get_model
    >>> net = get_model("unet", n_classes=2, base_channels=4)
    >>> out = predict_maps(net, np.zeros((100, 120), np.uint8), mean=[0.5], std=[0.2], device="cpu",
    ...                    uncertainty=True)
    >>> out["labels"].shape, out["uncertainty"].shape
    ((100, 120), (100, 120))
    """
    dev = resolve_device(device)
    h, w = int(image.shape[0]), int(image.shape[1])
    if h < 1 or w < 1:
        raise ConfigError(f"cannot predict an empty image of shape {tuple(image.shape)}")
    members = _members(models, mean, std)
    first = members[0].model
    n_classes = _n_classes(first)
    in_channels = int(getattr(first, "in_channels", 1))
    multiple = max(int(getattr(m.model, "size_multiple", 1)) for m in members)
    for m in members:
        m.model.to(dev).eval()
    plan = plan_inference(first, (h, w), tile=tile, overlap=overlap, batch_size=batch_size, memory_mib=memory_mib)
    pad = plan.overlap // 2
    th, step_y, ny = _grid(h, plan.tile, plan.overlap, multiple)
    tw, step_x, nx = _grid(w, plan.tile, plan.overlap, multiple)
    window = blend_window(th, plan.overlap if ny > 1 or plan.tile is not None else 0)[:, None] * \
        blend_window(tw, plan.overlap if nx > 1 or plan.tile is not None else 0)[None, :]
    ensemble = len(members) > 1
    channels = n_classes + (1 if ensemble and uncertainty else 0)  # + mean member entropy
    width = tw + (nx - 1) * step_x
    acc = np.zeros((channels, th, width), np.float32)
    wsum = np.zeros((th, width), np.float32)
    labels = labels_out if labels_out is not None else np.empty((h, w), np.uint8 if n_classes <= 256 else np.int32)
    probs = np.empty((h, w, n_classes), np.float32) if probabilities else None
    unc = np.empty((h, w), np.float32) if uncertainty else None
    dis = np.empty((h, w), np.float32) if uncertainty and ensemble else None
    error_sum = np.zeros(n_classes, np.float64)
    error_count = np.zeros(n_classes, np.int64)
    log_c = math.log(n_classes) if n_classes > 1 else 1.0
    window_t = torch.from_numpy(window).to(dev)
    col_starts = [j * step_x - pad for j in range(nx)]
    col_sets = [mirror_index(np.arange(x0, x0 + tw), w) for x0 in col_starts]
    use_amp = amp and dev.type == "cuda"
    # The novelty check's cell descriptors, from the same forward passes (no extra cost but the
    # reductions): for every member whose checkpoint holds a reference, or all when asked.
    collectors = [CellCollector() if tap_of(m.model) is not None and (collect_cells or _novelty_reference(m.model))
                  else None for m in members]
    tiles_done = 0
    notify(progress, tiles_done, ny * nx, "predicting tiles")
    for r in range(ny):
        y0 = r * step_y - pad
        rows = mirror_index(np.arange(y0, y0 + th), h)
        for b0 in range(0, nx, plan.batch_size):
            unit = _unit_tiles(image, rows, col_sets[b0:b0 + plan.batch_size], in_channels)
            p_sum: torch.Tensor | None = None
            h_sum: torch.Tensor | None = None
            own_rows = min(step_y if r < ny - 1 else th - pad, h - r * step_y)
            regions = [(pad, own_rows, pad, min(step_x if j < nx - 1 else tw - pad, w - j * step_x), r * step_y, j * step_x)
                       for j in range(b0, min(b0 + plan.batch_size, nx))]
            for m, collector in zip(members, collectors, strict=True):
                x = torch.from_numpy(((unit - m.mean) / m.std).transpose(0, 3, 1, 2).copy()).to(dev)
                if collector is None:
                    p = _class_probabilities(m.model, x, tta=tta, use_amp=use_amp)
                else:
                    with collector.attached(m.model):
                        collector.arm()
                        p = _class_probabilities(m.model, x, tta=tta, use_amp=use_amp)
                    collector.take(regions, x)
                p_sum = p if p_sum is None else p_sum + p
                if channels > n_classes:
                    e = _entropy(p, 1)
                    h_sum = e if h_sum is None else h_sum + e
            assert p_sum is not None
            stack = p_sum / len(members)
            if h_sum is not None:
                stack = torch.cat([stack, (h_sum / len(members))[:, None]], dim=1)
            out = (stack * window_t).cpu().numpy()
            for k in range(out.shape[0]):
                c0 = (b0 + k) * step_x
                acc[:, :, c0:c0 + tw] += out[k]
                wsum[:, c0:c0 + tw] += window
            tiles_done += out.shape[0]
            notify(progress, tiles_done, ny * nx, "predicting tiles")
        done = step_y if r < ny - 1 else th
        top = r * step_y - pad  # image row of buffer row 0
        # The finished rows, in chunks: the per-pixel temporaries of a whole row of tiles
        # across a wide mosaic would otherwise add several hundred MiB to the peak.
        for lo in range(max(0, -top), min(done, h - top), _WRITE_ROWS):
            hi = min(lo + _WRITE_ROWS, done, h - top)
            block = acc[:, lo:hi, pad:pad + w] / np.maximum(wsum[lo:hi, pad:pad + w], 1e-12)
            p_block = block[:n_classes]
            lab = p_block.argmax(axis=0)
            labels[top + lo:top + hi] = lab
            error_sum += np.bincount(lab.ravel(), weights=(1.0 - p_block.max(axis=0)).ravel(),
                                     minlength=n_classes)
            error_count += np.bincount(lab.ravel(), minlength=n_classes)
            if probs is not None:
                probs[top + lo:top + hi] = p_block.transpose(1, 2, 0)
            if unc is not None:
                total_entropy = -(p_block * np.log(np.maximum(p_block, 1e-12))).sum(axis=0)
                unc[top + lo:top + hi] = total_entropy / log_c
                if dis is not None:
                    dis[top + lo:top + hi] = np.maximum(total_entropy - block[n_classes], 0.0) / log_c
        if r < ny - 1:
            acc[:, : th - step_y] = acc[:, step_y:]
            acc[:, th - step_y:] = 0.0
            wsum[: th - step_y] = wsum[step_y:]
            wsum[th - step_y:] = 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        expected_error = np.where(error_count > 0, error_sum / np.maximum(error_count, 1), np.nan)
    return {"labels": labels, "probabilities": probs, "uncertainty": unc, "disagreement": dis,
            "expected_error": expected_error, "pixel_counts": error_count, "plan": plan,
            "novelty_cells": [None if c is None else c.result() for c in collectors],
            "novelty_cell_yx": next((c.result_yx() for c in collectors if c is not None), None)}


def _novelty_reference(model: nn.Module) -> dict[str, Any] | None:
    ref = (getattr(model, "metallo_info", None) or {}).get("novelty")
    return ref if isinstance(ref, dict) and "reference" in ref else None


def predict_array(model: nn.Module, image: Any, *, mean: Sequence[float], std: Sequence[float],
                  tile: int | str | None = "auto", overlap: int | None = None, batch_size: int | None = None,
                  device: str | torch.device = "auto", amp: bool = True, probabilities: bool = False,
                  labels_out: np.ndarray | None = None, progress: ProgressCallback | None = None,
                  tta: bool = False, memory_mib: float = DEFAULT_MEMORY_MIB) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels (and optionally probabilities) of a ``(y, x[, channel])`` array with one model.

    Parameters
    ----------
    model : torch.nn.Module
        Maps ``(batch, in_channels, H, W)`` to logits ``(batch, n_classes, H, W)``; needs
        integer attributes ``n_classes`` (and ``in_channels``, default 1).
    image : array-like
        ``(y, x)`` or ``(y, x, channel)``; integers are divided by their dtype maximum.
    mean, std : sequence of float
        Per-channel normalisation of [0, 1] intensities (from the checkpoint).
    tile, overlap, batch_size, memory_mib, device, amp, progress, tta, labels_out
        As for :func:`predict_maps`.
    probabilities : bool
        Also return ``(y, x, class)`` float32 probabilities (image-sized).

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
    out = predict_maps(model, image, mean=mean, std=std, tile=tile, overlap=overlap, batch_size=batch_size,
                       memory_mib=memory_mib, device=device, amp=amp, probabilities=probabilities,
                       labels_out=labels_out, progress=progress, tta=tta)
    return out["labels"], out["probabilities"]


#: A model trained at the images' own resolution warns on an image whose pixel size lies more
#: than this factor outside the training images' pixel sizes (their range where the checkpoint
#: records it, else their median). Measured on the UHCS held-out fold whose model saw
#: 0.097-0.194 µm/px: its image at 0.8x the smallest scored as the images inside the range
#: (0.876 accuracy against 0.89-0.94), its image at 2.0x the largest 0.748.
_UNSEEN_SCALE = 1.5


#: ``predict`` resamples an image of an unseen pixel size only while the resampled image stays
#: under this many pixels (resampling is done in memory: 50 Mpx of 4 class probabilities is 0.8 GB).
_RESAMPLE_MAX_PX = 50e6


def unseen_scale_ratio(pixel_size_um: float | None, seen_um: Sequence[float] | None, zoom: float = 0.0) -> float:
    """How far an image's pixel size lies outside the pixel sizes a model was trained on.

    Parameters
    ----------
    pixel_size_um : float or None
        The image's pixel size.
    seen_um : (low, high) or None
        The training images' pixel sizes (their range, or the median twice).
    zoom : float
        The training's multi-scale augmentation (``augment: {scale: ...}``), which showed the model
        more scales: the trusted limit is ``_UNSEEN_SCALE * (1 + zoom)``.

    Returns
    -------
    float
        ``pixel_size_um`` over the nearest seen pixel size where that lies beyond the limit (the
        factor that resamples the image to the nearest scale the model has seen), else 1.0 (also
        when either size is unknown).

    Examples
    --------
    >>> round(unseen_scale_ratio(0.39, (0.1, 0.2)), 3), unseen_scale_ratio(0.29, (0.1, 0.2)), unseen_scale_ratio(None, (0.1, 0.2))
    (1.95, 1.0, 1.0)
    """
    try:
        px, lo, hi = float(pixel_size_um), float(seen_um[0]), float(seen_um[1])  # type: ignore[arg-type, index]
    except (TypeError, ValueError, IndexError):
        return 1.0
    if not (np.isfinite([px, lo, hi]).all() and px > 0 and 0 < lo <= hi):
        return 1.0
    ratio = px / min(max(px, lo), hi)
    limit = _UNSEEN_SCALE * (1.0 + max(zoom, 0.0))
    return 1.0 if 1.0 / limit <= ratio <= limit else ratio


def augment_zoom(augment: Any) -> float:
    """The multi-scale zoom of a training ``augment`` setting (``{scale: ...}``; 0 for none or a bool)."""
    return float(augment.get("scale", 0.0) or 0.0) if isinstance(augment, dict) else 0.0


def seen_pixel_sizes(info: dict[str, Any]) -> tuple[list[Any], bool, float]:
    """What a checkpoint's model has seen: ``(pixel sizes (low, high), from the median only, zoom)``.

    Checkpoints before the range was recorded give their training images' median twice."""
    recorded = (info.get("tile") or {}).get("pixel_size_range_um")
    median = recorded is None
    seen: list[Any] = [info.get("pixel_size_um")] * 2 if recorded is None else list(recorded)
    return seen, median, augment_zoom((info.get("config") or {}).get("augment"))


def _resample_unseen_scale(info: dict[str, Any], image: Any, pixel_size_um: float | None, scale: float) -> tuple[float, str]:
    """The scale to predict at, and why: a model trained at the images' own resolution (times the
    training ``scale``) that meets an image of a pixel size it has not seen predicts it resampled
    to the nearest pixel size it has seen, with a warning that says so."""
    seen, median, zoom = seen_pixel_sizes(info)
    if pixel_size_um is None and isinstance(image, xr.DataArray):
        pixel_size_um = _pixel_size_of(image)
    ratio = unseen_scale_ratio(pixel_size_um, seen, zoom)
    if ratio == 1.0:
        known = pixel_size_um is not None and np.isfinite(float(pixel_size_um)) and float(pixel_size_um) > 0
        if not known and seen[0] is not None:
            # Said in the output's record: the scale is assumed, not checked.
            return scale, ("the checkpoint's training scale; the image's pixel size is unknown, so it is assumed to "
                           f"be the training images' ({float(seen[0]):.4g}-{float(seen[1]):.4g} µm/px), not checked")
        return scale, "the checkpoint's training scale"
    px, lo, hi = float(pixel_size_um), float(seen[0]), float(seen[1])  # type: ignore[arg-type]
    trained = f"{lo:.4g} µm/px (median)" if median else f"{lo:.4g}-{hi:.4g} µm/px"
    unseen = (f"image at {px:.4g} µm/px, but the model was trained on images at {trained} at their own "
              f"resolution: {ratio:.2g}x the {'' if median else 'nearest '}training pixel size, a scale it has not seen")
    shape = getattr(image, "shape", (0, 0))
    if float(shape[0]) * float(shape[1]) * (scale * ratio) ** 2 > _RESAMPLE_MAX_PX:
        # Resampling happens in memory: a mosaic that would grow past the limit stays as it is.
        reason = (f"{unseen}, so its labels are not trustworthy; resampled it would exceed "
                  f"{_RESAMPLE_MAX_PX / 1e6:.0f} Mpx, so it was predicted at scale={scale:.3g}: predict it in pieces "
                  f"with scale={scale * ratio:.3g}, or train at one pixel size (metallo train --pixel-size)")
        warnings.warn(reason, UserWarning, stacklevel=3)
        return scale, reason
    reason = (f"{unseen}; predicted resampled to {px / ratio:.4g} µm/px (scale={scale * ratio:.3g}); pass "
              f"scale={scale:.3g} to predict it at its own resolution, or train at one pixel size (metallo train --pixel-size)")
    warnings.warn(reason, UserWarning, stacklevel=3)
    return scale * ratio, reason


#: An image whose mean grey level lies this many training standard deviations from the training
#: mean is outside what the model has seen (a 12-bit image in a 16-bit file reads 16x too dark).
_UNSEEN_GREY_Z = 2.0


def _warn_unseen_intensity(array: Any, mean: Sequence[float], std: Sequence[float]) -> None:
    """Warn when the image's grey levels (scaled as for the network) are far from the training images'."""
    step = max(1, int(math.sqrt(array.shape[0] * array.shape[1] / 250_000)))
    raw = np.asarray(array[::step, ::step])
    grey = float(to_unit_range(raw).mean())
    m, sd = float(np.mean(mean)), float(np.mean(std))
    if not (np.isfinite(grey) and sd > 0):
        return
    z = abs(grey - m) / sd
    hint = ""
    if np.issubdtype(raw.dtype, np.integer) and raw.size:
        top, full = int(raw.max()), int(np.iinfo(raw.dtype).max)
        if top < full // 4:
            hint = (f"; its largest value is {top} of the {raw.dtype} range {full} (a {int(top).bit_length()}-bit "
                    "image in a wider file?): stretch it to the full range before predicting")
    elif np.issubdtype(raw.dtype, np.floating) and raw.size and float(np.nanmax(raw)) > 1.5:
        hint = f"; float images are read as 0-1, this one reaches {float(np.nanmax(raw)):.4g}: divide it by its range"
    # Real UHCS micrographs lie within 0.7 standard deviations of the training mean.
    if z <= _UNSEEN_GREY_Z and not (hint and z > 1.0):
        return
    warnings.warn(
        f"image mean grey {grey:.3f} (0-1 scale) is {z:.1f} training standard deviations from the "
        f"training images' mean {m:.3f} (std {sd:.3f}): grey levels the model has not seen, so its labels are not "
        f"trustworthy{hint}", UserWarning, stacklevel=3)


def scale_to_pixel_size(image_pixel_size_um: float | None, pixel_size_um: float, name: str = "image") -> float:
    """Resize factor taking an image of ``image_pixel_size_um`` to ``pixel_size_um`` (µm/px).

    Parameters
    ----------
    image_pixel_size_um : float or None
        The image's pixel size.
    pixel_size_um : float
        The pixel size the model works at.
    name : str
        The image's name in the error message.

    Returns
    -------
    float

    Examples
    --------
    >>> scale_to_pixel_size(0.1, 0.2)
    0.5
    """
    if image_pixel_size_um is None or not np.isfinite(image_pixel_size_um) or image_pixel_size_um <= 0:
        raise ConfigError(f"{name}: pixel size unknown, but the model works at {pixel_size_um} µm/px; "
                          "give the image's pixel size (pixel_size_um=, metallo predict --pixel-size)")
    return float(image_pixel_size_um) / float(pixel_size_um)


def _resize_maps(maps: dict[str, Any], shape: tuple[int, int]) -> dict[str, Any]:
    """Probabilities / uncertainty maps resized (linearly) back to ``shape``; labels from them."""
    import cv2

    h, w = shape
    probs = maps["probabilities"]
    assert probs is not None
    full = np.stack([cv2.resize(probs[..., c], (w, h), interpolation=cv2.INTER_LINEAR)
                     for c in range(probs.shape[2])], axis=-1)
    labels = full.argmax(axis=-1).astype(maps["labels"].dtype)
    n_classes = full.shape[2]
    counts = np.bincount(labels.ravel(), minlength=n_classes)
    error = np.bincount(labels.ravel(), weights=(1.0 - full.max(axis=-1)).ravel(), minlength=n_classes)
    out = dict(maps, labels=labels, probabilities=full, pixel_counts=counts,
               expected_error=np.where(counts > 0, error / np.maximum(counts, 1), np.nan))
    for key in ("uncertainty", "disagreement"):
        if maps[key] is not None:
            out[key] = cv2.resize(maps[key], (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def _predict_scaled(models: Any, image: Any, scale: float, *, mean: Any, std: Any, **options: Any) -> dict[str, Any]:
    """:func:`predict_maps` at ``scale`` x the image size, every map resized back to the image grid."""
    import cv2

    if scale == 1.0:
        return predict_maps(models, image, mean=mean, std=std, **options)
    src = np.asarray(image)
    h, w = int(src.shape[0]), int(src.shape[1])
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    src = cv2.resize(src, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    maps = predict_maps(models, src, mean=mean, std=std, **{**options, "probabilities": True})
    return _resize_maps(maps, (h, w))


def predict_resized(model: nn.Module, image: Any, scale: float, *, mean: Sequence[float], std: Sequence[float],
                    **options: Any) -> np.ndarray:
    """Class probabilities ``(y, x, class)`` on the grid of ``image``, predicted at ``scale`` x its size.

    The image is resized (area interpolation down, linear up), predicted with
    :func:`predict_maps` (``options``: tile, overlap, batch_size, device, amp, tta, progress)
    and the probabilities are resized back linearly.

    Parameters
    ----------
    model : torch.nn.Module
    image : array-like
    scale : float
    mean, std : sequence of float
    **options
        Passed to :func:`predict_maps`.

    Returns
    -------
    ndarray (y, x, class) float32

    Examples
    --------
    >>> from metallo.segment import get_model
    >>> net = get_model("unet", n_classes=2, base_channels=4)
    >>> predict_resized(net, np.zeros((40, 60)), 0.5, mean=[0.5], std=[0.2], device="cpu").shape
    (40, 60, 2)
    """
    maps = _predict_scaled(model, image, scale, mean=mean, std=std, **{**options, "probabilities": True})
    return maps["probabilities"]


def _model_and_info(checkpoint_or_model: Any, device: str | torch.device) -> tuple[nn.Module, dict[str, Any]]:
    if isinstance(checkpoint_or_model, nn.Module):
        info = dict(getattr(checkpoint_or_model, "metallo_info", {}) or {})
        return checkpoint_or_model, info
    if isinstance(checkpoint_or_model, tuple) and len(checkpoint_or_model) == 2:
        return checkpoint_or_model[0], dict(checkpoint_or_model[1])
    if str(checkpoint_or_model).endswith(".onnx"):
        from metallo.segment._onnx import load_onnx

        return load_onnx(checkpoint_or_model)
    model, info = load_checkpoint(checkpoint_or_model, device=device)
    pretext = (info.get("config") or {}).get("pretext")
    if pretext:
        # A pretraining checkpoint paints images back; its "classes" are no phases.
        raise ModelError(f"{checkpoint_or_model}: a self-supervised pretraining checkpoint ({pretext}) does not "
                         "segment; train a model from it (metallo train --init-weights) and predict with that")
    return model, info


def _load_members(checkpoint_or_model: Any, device: str | torch.device) -> list[tuple[nn.Module, dict[str, Any]]]:
    if isinstance(checkpoint_or_model, list):
        if not checkpoint_or_model:
            raise ConfigError("an ensemble needs at least one checkpoint")
        return [_model_and_info(item, device) for item in checkpoint_or_model]
    return [_model_and_info(checkpoint_or_model, device)]


def ensemble_checkpoints(path: str | Path) -> list[Path]:
    """The cross-validation fold checkpoints (``fold<k>.pt``) of a training run.

    Parameters
    ----------
    path : str or Path
        The run folder (``metallo train --out``) or any checkpoint in it.

    Returns
    -------
    list of Path
        ``fold0.pt``, ``fold1.pt``, ... in fold order.

    Examples
    --------
    >>> ensemble_checkpoints("runs/uhcs/model.pt")  # doctest: +SKIP
    [PosixPath('runs/uhcs/fold0.pt'), PosixPath('runs/uhcs/fold1.pt'), PosixPath('runs/uhcs/fold2.pt')]
    """
    folder = Path(path)
    folder = folder if folder.is_dir() else folder.parent
    found = sorted(folder.glob("fold*.pt"), key=lambda p: (len(p.stem), p.stem))
    if not found:
        raise ModelError(f"{folder}: no fold<k>.pt checkpoints for an ensemble; train with --folds >= 2")
    return found


def _choose_tta(infos: list[dict[str, Any]], device: torch.device, tta: bool | None) -> tuple[bool, str]:
    """TTA and why: as asked; else as the checkpoint was evaluated, but on a CPU only where the
    checkpoint's held-out evaluation measured it to matter (>= 0.01 mean IoU)."""
    if tta is not None:
        return bool(tta), "requested"
    tile_info = infos[0].get("tile", {}) or {}
    if not tile_info.get("tta", False):
        return False, "checkpoint evaluated without TTA"
    if device.type != "cpu":
        return True, "checkpoint evaluated with TTA"
    gains = [m.get("metrics", {}).get("tta_gain") for m in infos]
    if any(g is None for g in gains):
        return False, "TTA off on CPU (8x the compute): the checkpoint has no measured TTA gain"
    gain = float(np.mean(gains))
    if gain >= 0.01:
        return True, f"TTA on: it raised held-out mean IoU by {gain:.3f} in training"
    return False, f"TTA off on CPU (8x the compute): it changed held-out mean IoU by only {gain:+.3f} in training"


def _uncertainty_quality(uncertainty: np.ndarray, expected_error: np.ndarray, counts: np.ndarray,
                         classes: Sequence[str]) -> dict[str, Any]:
    fraction = float(np.mean(uncertainty > UNCERTAIN_LEVEL))
    total = int(counts.sum())
    overall = float(np.nansum(expected_error * counts) / total) if total else float("nan")
    passed = fraction <= MAX_UNCERTAIN_FRACTION
    reasons = [] if passed else [f"{fraction:.0%} of the pixels are uncertain (normalised entropy > {UNCERTAIN_LEVEL:g}; "
                                 f"at most {MAX_UNCERTAIN_FRACTION:.0%} pass)"]
    return {"uncertain_fraction": fraction, "uncertain_level": UNCERTAIN_LEVEL,
            "max_uncertain_fraction": MAX_UNCERTAIN_FRACTION, "expected_error": overall,
            "expected_error_per_class": {c: (None if not np.isfinite(e) else float(e))
                                         for c, e in zip(classes, expected_error, strict=False)},
            "mean_uncertainty": float(uncertainty.mean()), "passed": passed, "reasons": reasons}


def _check_pixels(array: Any) -> None:
    """Refuse what the network would silently misread: complex values, a stack of images read as one
    image of many channels (``(5, 100, 120)`` had given a 5 x 100 label map), and NaN/infinite
    pixels (they were set to 0 and labelled as black, and counted in the fractions)."""
    dtype = np.dtype(getattr(array, "dtype", np.float64))
    shape = tuple(array.shape)
    check_image_values(dtype, shape, "image", "Predict one image at a time, or put the channel axis last")
    if dtype.kind == "f":
        # By bands of rows: a memory-mapped mosaic is read once, without an image-sized temporary.
        rows = max(1, (1 << 24) // max(1, int(np.prod(shape[1:]))))
        bad = sum(int(np.count_nonzero(~np.isfinite(np.asarray(array[r:r + rows])))) for r in range(0, shape[0], rows))
        if bad:
            raise ConfigError(f"image has {bad} NaN or infinite values ({bad / int(np.prod(shape)):.1%}): the network "
                              "would read them as black and label them; fill them or crop to the measured field")


def predict(checkpoint_or_model: Any, image: Any, *, tile: int | str | None = "auto",
            overlap: int | None = None, batch_size: int | None = None, device: str = "auto",
            probabilities: bool = False, uncertainty: bool | None = None, scale: float | None = None,
            amp: bool = True, progress: ProgressCallback | None = None, tta: bool | None = None,
            pixel_size_um: float | None = None, memory_mib: float = DEFAULT_MEMORY_MIB) -> xr.DataArray | xr.Dataset:
    """Segment a whole micrograph with a trained model or an ensemble of them.

    A checkpoint trained by this version holds a novelty reference (what its network sees in
    the training images, :mod:`metallo.segment._novelty`): an image unlike them (another
    material, modality or preparation, a blank or noise) is then flagged with a warning and a
    failed ``quality`` record (``novel_fraction``), whatever the class probabilities say.

    Parameters
    ----------
    checkpoint_or_model : str, Path, dict, torch.nn.Module, (model, info) or a list of them
        A checkpoint file (from :func:`~metallo.segment.train`, or an ``.onnx`` export), its
        dict, or a model (a model loaded with :func:`load_checkpoint` keeps its normalisation;
        a bare model gets none). A list is an ensemble (e.g. :func:`ensemble_checkpoints`):
        the mean of the members' class probabilities decides.
    image : xr.DataArray or ndarray
        ``(y, x)`` or ``(y, x, channel)``; integer images are divided by their dtype maximum.
        Memory-mapped arrays are read tile by tile.
    tile : "auto", int or None
        ``"auto"`` (default): one pass over the whole image when the network's activations fit
        ``memory_mib``, else tiles as large as fit; an int forces tiles of that side; None one
        pass whatever the size.
    overlap : int, optional
        Overlap of neighbouring tiles in px; default four times the model's effective
        receptive-field radius (:func:`receptive_radius`). The image is mirror-padded by half.
    batch_size : int, optional
        Tiles per forward pass (default: as many as fit ``memory_mib``, at most 8).
    device : "auto", "cpu" or "cuda"
        CUDA runs under float16 autocast when ``amp``.
    probabilities : bool
        Also return the blended class probabilities.
    uncertainty : bool, optional
        Also return the per-pixel ``uncertainty`` (normalised entropy of the mean probabilities)
        and, for an ensemble, ``disagreement``; the attrs then carry ``expected_error`` per class
        and a ``quality`` record. Default: True for an ensemble.
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
        90-degree rotations (8x the compute). Default: as the checkpoint was evaluated in
        training, except on a CPU, where it is used only if the checkpoint's held-out
        evaluation measured a gain of at least 0.01 mean IoU. ``config`` says which was used
        and why (``tta``, ``tta_reason``).
    pixel_size_um : float, optional
        The image's pixel size in µm (default: its ``pixel_size_um`` attribute); needed only
        for a model trained at one pixel size.
    memory_mib : float
        Activation budget (MiB) for one forward pass.

    Returns
    -------
    xr.DataArray or xr.Dataset
        Labels ``(y, x)`` on the image's coordinates, attrs ``classes`` (JSON), ``model``,
        ``checkpoint_sha256``, ``config``; with ``probabilities`` or ``uncertainty`` a Dataset
        with ``labels`` and ``probabilities`` ``(y, x, class)`` / ``uncertainty`` ``(y, x)`` /
        ``disagreement`` ``(y, x)``.

    Examples
    --------
    >>> from metallo.segment import get_model, save_checkpoint
    >>> checkpoint = save_checkpoint("unet.pt", get_model("unet", n_classes=2, base_channels=4),
    ...                              classes=["ferrite", "pearlite"], mean=[0.5], std=[0.25])   # untrained
    >>> labels = predict(checkpoint, np.random.default_rng(0).random((64, 64)), tile=None, device="cpu")
    >>> labels.shape, labels.attrs["classes"]
    ((64, 64), '["ferrite", "pearlite"]')
    """
    members = _load_members(checkpoint_or_model, device)
    infos = [info for _, info in members]
    models = [model for model, _ in members]
    ensemble = len(members) > 1
    uncertainty = ensemble if uncertainty is None else bool(uncertainty)
    means, stds = [], []
    for model, info in members:
        norm = info.get("normalization", {})
        in_channels = int(getattr(model, "in_channels", 1))
        means.append(norm.get("mean", [0.0] * in_channels))
        stds.append(norm.get("std", [1.0] * in_channels))
    array = image.data if isinstance(image, xr.DataArray) else image
    if not hasattr(array, "shape") or len(array.shape) not in (2, 3):
        raise ConfigError(f"image must be (y, x) or (y, x, channel); got {getattr(array, 'shape', type(image))}")
    _check_pixels(array)
    if scale is not None and not (np.isfinite(scale) and scale > 0):
        raise ConfigError(f"scale must be a positive number (the factor the image is resized by); got {scale}")
    tile_info = infos[0].get("tile", {}) or {}
    for other in infos[1:]:
        other_tile = other.get("tile", {}) or {}
        if (other_tile.get("pixel_size_um"), other_tile.get("scale", 1.0)) != (tile_info.get("pixel_size_um"),
                                                                                 tile_info.get("scale", 1.0)):
            raise ConfigError("ensemble members were trained at different scales / pixel sizes; "
                              "use checkpoints of one cross-validation run")
    scale_given = scale is not None
    if scale is None and tile_info.get("pixel_size_um"):
        # The model was trained at one physical pixel size: resample this image to it.
        if pixel_size_um is None and isinstance(image, xr.DataArray):
            pixel_size_um = _pixel_size_of(image)  # the x coordinate's spacing, as everywhere in metallo
        scale = scale_to_pixel_size(pixel_size_um, float(tile_info["pixel_size_um"]), "image")
    if scale is None:
        scale, scale_reason = _resample_unseen_scale(infos[0], image, pixel_size_um,
                                                     float(tile_info.get("scale", 1.0) or 1.0))
    else:
        scale_reason = "given" if scale_given else "the model's pixel size"
    _warn_unseen_intensity(array, means[0], stds[0])
    use_tta, tta_reason = _choose_tta(infos, resolve_device(device), tta)
    maps = _predict_scaled(models if ensemble else models[0], array, scale, mean=means if ensemble else means[0],
                           std=stds if ensemble else stds[0], tile=tile, overlap=overlap, batch_size=batch_size,
                           device=device, amp=amp, progress=progress, tta=use_tta, probabilities=probabilities,
                           uncertainty=uncertainty, memory_mib=memory_mib)
    labels = maps["labels"]
    plan: InferencePlan = maps["plan"]
    classes = infos[0].get("classes") or [f"class_{i}" for i in range(_n_classes(models[0]))]
    config = {"tile": plan.tile, "overlap": plan.overlap, "scale": scale, "scale_reason": scale_reason,
              "batch_size": plan.batch_size,
              "receptive_radius_px": plan.receptive_radius, "memory_mib": plan.memory_mib,
              "tta": bool(use_tta), "tta_reason": tta_reason, "ensemble": len(members)}
    attrs = {
        "classes": json.dumps(list(classes)),
        "model": str(infos[0].get("model", getattr(models[0], "model_name", type(models[0]).__name__))),
        "checkpoint_sha256": ",".join(str(info.get("sha256", "")) for info in infos),
        "config": json.dumps(config),
    }
    quality: dict[str, Any] = {}
    if uncertainty:
        quality = _uncertainty_quality(maps["uncertainty"], maps["expected_error"], maps["pixel_counts"], classes)
        attrs["expected_error"] = json.dumps(quality["expected_error_per_class"])
    novelty = novelty_quality(maps.get("novelty_cells") or [None] * len(infos), [info.get("novelty") for info in infos])
    novel_map = None
    if novelty is not None:
        per_cell = novelty.pop("_per_cell")
        if uncertainty and maps.get("novelty_cell_yx") is not None:
            # cells were judged on the image resized by ``scale``: back to the image's pixels
            novel_map = novelty_map(labels.shape, maps["novelty_cell_yx"] / scale, per_cell, CELL_PX / scale)
        reasons = list(quality.get("reasons", []))
        if not novelty["novelty_passed"]:
            reasons.append(novelty["novelty_reason"])
            warnings.warn(novelty["novelty_reason"], UserWarning, stacklevel=2)
        quality = {**quality, **novelty, "passed": bool(quality.get("passed", True) and novelty["novelty_passed"]),
                   "reasons": reasons}
    if quality:
        attrs["quality"] = json.dumps(quality)
    if isinstance(image, xr.DataArray):
        coords = {d: image.coords[d] for d in ("y", "x") if d in image.coords}
        out = xr.DataArray(labels, dims=("y", "x"), coords=coords, name="labels",
                           attrs={**attrs, "pixel_size_um": _pixel_size_of(image) or float("nan")})
    else:
        out = image_dataarray(labels, pixel_size_um=None, name="labels", attrs=attrs)
    if not probabilities and not uncertainty:
        return out
    variables: dict[str, xr.DataArray] = {"labels": out}
    if probabilities:
        variables["probabilities"] = xr.DataArray(maps["probabilities"], dims=("y", "x", "class"),
                                                  coords={**out.coords, "class": list(classes)},
                                                  name="probabilities")
    if uncertainty:
        variables["uncertainty"] = xr.DataArray(
            maps["uncertainty"], dims=("y", "x"), coords=out.coords, name="uncertainty",
            attrs={"long_name": "normalised entropy of the " + ("ensemble mean" if ensemble else "class probabilities"),
                   "units": "1"})
        if novel_map is not None:
            variables[names.NOVELTY] = xr.DataArray(
                novel_map, dims=("y", "x"), coords=out.coords, name=names.NOVELTY,
                attrs={"long_name": f"share of the members to which this {CELL_PX}-px cell looks like no training cell "
                                    "(NaN: not judged)", "units": "1"})
        if maps["disagreement"] is not None:
            variables["disagreement"] = xr.DataArray(
                maps["disagreement"], dims=("y", "x"), coords=out.coords, name="disagreement",
                attrs={"long_name": "mutual information between ensemble member and class / log(classes)",
                       "units": "1"})
    return xr.Dataset(variables, attrs=attrs)


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
    """Grey micrograph with class colours (tab10) blended on top, uint8 RGB.

    Parameters
    ----------
    image : ndarray
        ``(y, x)`` or ``(y, x, channel)``.
    labels : ndarray
        ``(y, x)`` class indices.
    alpha : float
        Opacity of the class colours.

    Returns
    -------
    ndarray (y, x, 3) uint8

    Examples
    --------
    >>> overlay_rgb(np.zeros((4, 5)), np.ones((4, 5), int)).shape
    (4, 5, 3)
    """
    from matplotlib import colormaps

    grey = image.astype(np.float32)
    if grey.ndim == 3:
        grey = grey[..., :3].mean(axis=2)
    lo, hi = np.percentile(grey, (0.5, 99.5))
    grey = np.clip((grey - lo) / max(hi - lo, 1e-12), 0, 1)
    colours = colormaps["tab10"](np.arange(10))[:, :3].astype(np.float32)[labels.astype(np.int64) % 10]
    rgb = (1 - alpha) * grey[..., None] + alpha * colours
    return (rgb * 255).round().astype(np.uint8)


def _write_outputs(path: Path, out: Path, image: xr.DataArray, result: xr.Dataset | xr.DataArray,
                   overlay: bool, probabilities: bool) -> dict[str, str]:
    """Write one image's label PNG, overlay, probabilities and uncertainty (runs in a thread)."""
    from metallo.io import write_image

    labels_da = result["labels"] if isinstance(result, xr.Dataset) else result
    rec = {"labels": str(out / f"{path.stem}_labels.png")}
    write_image(labels_da, rec["labels"])
    if overlay:
        rec["overlay"] = str(out / f"{path.stem}_overlay.png")
        write_image(overlay_rgb(image.values, labels_da.values), rec["overlay"], pixel_size_um=_pixel_size_of(image))
    if isinstance(result, xr.Dataset):
        if probabilities and "probabilities" in result:
            rec["probabilities"] = str(out / f"{path.stem}_probabilities.npy")
            with atomic_path(rec["probabilities"]) as tmp, open(tmp, "wb") as fh:
                np.save(fh, result["probabilities"].values)
        if "uncertainty" in result:
            rec["uncertainty"] = str(out / f"{path.stem}_uncertainty.png")
            scaled = np.clip(result["uncertainty"].values * 255.0, 0, 255).round().astype(np.uint8)
            write_image(scaled, rec["uncertainty"], pixel_size_um=_pixel_size_of(image))
    return rec


def predict_files(checkpoint: str | Path | Sequence[str | Path], inputs: Sequence[str | Path], *,
                  out_dir: str | Path, tile: int | str | None = "auto", overlap: int | None = None,
                  batch_size: int | None = None, device: str = "auto", probabilities: bool = False,
                  uncertainty: bool | None = None, overlay: bool = True, progress: ProgressCallback | None = None,
                  tta: bool | None = None, pixel_size_um: float | None = None,
                  memory_mib: float = DEFAULT_MEMORY_MIB) -> list[dict[str, Any]]:
    """Predict image files and folders, writing ``<stem>_labels.png`` (+ overlay, probabilities).

    Files are written by a background thread while the next image is predicted.

    Parameters
    ----------
    checkpoint : str, Path or a list of them
        One checkpoint, or an ensemble (e.g. :func:`ensemble_checkpoints`).
    inputs : sequence of str or Path
        Image files and/or folders of images.
    out_dir : str or Path
    tile, overlap, batch_size, device, tta, memory_mib : see :func:`predict`
    pixel_size_um : float, optional
        Pixel size (µm) of the images, overriding what the files say; needed by a model
        trained at one pixel size when the files do not carry it.
    probabilities : bool
        Also write ``<stem>_probabilities.npy`` (y, x, class) float32.
    uncertainty : bool, optional
        Also write ``<stem>_uncertainty.png`` (normalised entropy x 255); default for ensembles.
    overlay : bool
        Write ``<stem>_overlay.png`` (class colours over the micrograph).
    progress : callable, optional
        As for :func:`predict`.

    Returns
    -------
    list of dict
        One record per image: input, labels, overlay, probabilities, uncertainty paths, class
        fractions, whether TTA was used, and the quality record (uncertainty and/or novelty).

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
    paths = _expand_inputs(inputs)
    members = _load_members(list(checkpoint) if isinstance(checkpoint, (list, tuple)) else checkpoint, device)
    ensemble = members if len(members) > 1 else members[0]
    classes = members[0][1].get("classes", [])
    n_classes = _n_classes(members[0][0])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    pending: list[tuple[dict[str, Any], Future[dict[str, str]]]] = []
    tables: dict[Path, dict[str, float]] = {}
    with ThreadPoolExecutor(max_workers=1) as writer:
        for path in paths:
            # As in training: the given size, else a metadata.csv beside the images (UHCS layout),
            # else the file's own calibration.
            given = pixel_size_um if pixel_size_um is not None else metadata_pixel_size(path, tables)
            image = read_micrograph(path, pixel_size_um=given)
            result = predict(ensemble, image, tile=tile, overlap=overlap, batch_size=batch_size, device=device,
                             probabilities=probabilities, uncertainty=uncertainty, progress=progress, tta=tta,
                             memory_mib=memory_mib)
            labels = (result["labels"] if isinstance(result, xr.Dataset) else result).values
            counts = np.bincount(labels.ravel(), minlength=n_classes)
            config = json.loads(result.attrs["config"])
            rec: dict[str, Any] = {"input": str(path),
                                   "fractions": dict(zip(classes, (counts / counts.sum()).round(6).tolist(),
                                                         strict=False)),
                                   "tta": config["tta"], "tta_reason": config["tta_reason"],
                                   "scale": config["scale"], "scale_reason": config["scale_reason"],
                                   "tile": config["tile"], "overlap": config["overlap"]}
            if "quality" in result.attrs:
                rec["quality"] = json.loads(result.attrs["quality"])
            pending.append((rec, writer.submit(_write_outputs, path, out, image, result, overlay, probabilities)))
        for rec, future in pending:
            rec.update(future.result())
            records.append(rec)
    return records


def predict_to_specimen(checkpoint: str | Path | Sequence[str | Path], specimen: Any, *,
                        micrograph: str = names.micrograph("lom"), name: str | None = None,
                        tile: int | str | None = "auto", overlap: int | None = None, device: str = "auto",
                        overwrite: bool = False, suffix: str = "", tta: bool | None = None,
                        uncertainty: bool = True) -> xr.DataArray:
    """Predict a Specimen micrograph node and store it as ``segmentations/<name><suffix>``.

    The node holds ``labels`` and, with ``uncertainty``, the per-pixel ``uncertainty`` map
    (and ``disagreement`` for an ensemble), with the per-class ``expected_error`` and the
    ``quality`` record (pass/fail on the uncertain fraction, and on the novelty check where the
    checkpoint holds a reference) in its attrs.

    Parameters
    ----------
    checkpoint : str, Path or a list of them
        One checkpoint, or an ensemble (e.g. :func:`ensemble_checkpoints`).
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
    uncertainty : bool
        Store the uncertainty map and quality record.

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
    members = _load_members(list(checkpoint) if isinstance(checkpoint, (list, tuple)) else checkpoint, device)
    result = predict(members if len(members) > 1 else members[0], image, tile=tile, overlap=overlap, device=device,
                     tta=tta, uncertainty=uncertainty)
    labels = result["labels"] if isinstance(result, xr.Dataset) else result
    labels = labels.astype(np.uint8 if _n_classes(members[0][0]) <= 256 else np.int32)
    labels.attrs["pixel_size_um"] = _pixel_size_of(image) or float("nan")
    node_name = names.segmentation(f"{name or labels.attrs['model']}{suffix}")
    config = json.loads(result.attrs["config"])
    data: xr.DataArray | xr.Dataset = labels
    if isinstance(result, xr.Dataset):
        data = result.assign(labels=labels)
        data.attrs.update(labels.attrs)
    specimen.add(node_name, data, step=names.segment_step("checkpoint"), inputs=[micrograph], overwrite=overwrite,
                 parameters={"checkpoint": [str(c) for c in checkpoint] if isinstance(checkpoint, (list, tuple))
                             else str(checkpoint),
                             "checkpoint_sha256": result.attrs["checkpoint_sha256"], "tile": config["tile"],
                             "overlap": config["overlap"], "tta": config["tta"], "tta_reason": config["tta_reason"],
                             "scale": config["scale"], "scale_reason": config["scale_reason"],
                             "ensemble": config["ensemble"]})
    return labels
