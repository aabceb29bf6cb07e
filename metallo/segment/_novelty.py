"""Is a new micrograph like the ones the model was trained on? (the novelty check)

A network's class probabilities say nothing about an image unlike its training images: a
UHCS-trained U-Net labels a CoNi superalloy BSE image 98 % "network" and a flat grey image
100 % "network", both with under 10 % uncertain pixels, so the entropy check passes them. What
the network *sees* does differ: the features its output layer classifies (``feature_tap``).

The check describes each ``CELL_PX`` square of an image by the mean and standard deviation of
every feature channel there, and by the input's contrast and sharpness (:func:`_acquisition`). At the end of training the cells of the training images are the
reference, standardised per descriptor dimension; the threshold is the ``NOVEL_PERCENTILE``-th
percentile of each training cell's distance to the nearest cell of *another* training image
(so an unseen image of the same kind lies within it as the training images lie within each
other, Sun et al. 2022's nearest-neighbour out-of-distribution score with a leave-one-image-out
calibration). A new image's cells farther than that from every reference cell are novel; more
than ``MAX_NOVEL_FRACTION`` novel cells fail the prediction's quality record.

Measured on the 15 UHCS micrographs (3-fold cross-validation, U-Net 16): the held-out images
have 0-8.6 % novel cells; CoNi BSE images, Gaussian noise and a flat image 100 %, an EBSD
image-quality map 84-97 %, the held-out images out of focus (blur sigma 2 px) fail 15 of 15
(docs/segment.md, "Images unlike the training images").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from torch import nn

__all__ = ["CELL_PX", "MAX_NOVEL_FRACTION", "NOVEL_PERCENTILE", "build_reference", "novel_cells", "novel_fraction",
           "novelty_map", "novelty_quality"]

#: Side of the square cells an image is described by, in pixels as the network sees them.
CELL_PX = 64
#: Percentile of the training cells' leave-one-image-out nearest distances used as threshold.
NOVEL_PERCENTILE = 99.0
#: Largest share of novel cells for which the quality record passes. The held-out UHCS images
#: reach 8.6 % (10 % with noise, JPEG or shading), the foreign images measured 84 % and more.
MAX_NOVEL_FRACTION = 0.25
#: Most feature channels described; wider taps are averaged in groups of neighbouring channels.
MAX_TAP_CHANNELS = 64
#: Reference cells kept in a checkpoint (a random subset beyond it) and per training image.
MAX_REFERENCE_CELLS = 2000
MAX_CELLS_PER_IMAGE = 400
#: Fewest training cells that calibrate a threshold (a percentile of fewer is not one).
MIN_REFERENCE_CELLS = 20


def tap_of(model: nn.Module) -> nn.Module | None:
    """The module whose output is the features the model's output layer classifies, if any."""
    tap = getattr(model, "feature_tap", None)
    return tap if isinstance(tap, nn.Module) else None


class CellCollector:
    """Collects cell descriptors of the tiles a model predicts (first forward per batch only:
    with test-time augmentation the first pass is the untransformed one)."""

    def __init__(self, cell: int = CELL_PX) -> None:
        self.cell = int(cell)
        self.descriptors: list[np.ndarray] = []
        self.positions: list[np.ndarray] = []
        self._features: torch.Tensor | None = None
        self._armed = False

    def arm(self) -> None:
        self._features = None
        self._armed = True

    def _hook(self, _module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        if self._armed:
            self._features = output.detach()
            self._armed = False

    @contextmanager
    def attached(self, model: nn.Module) -> Iterator[bool]:
        tap = tap_of(model)
        if tap is None:
            yield False
            return
        handle = tap.register_forward_hook(self._hook)
        try:
            yield True
        finally:
            handle.remove()

    def take(self, regions: list[tuple[int, int, int, int, int, int]], inputs: torch.Tensor | None = None) -> None:
        """Descriptors of the cells inside each batch item's ``(row0, rows, col0, cols, image_row, image_col)``
        region (the first four in the tile, the last two the image pixel of its corner).

        With the network's (normalised) ``inputs`` two acquisition figures join each cell's
        features (:func:`_acquisition`): what an out-of-focus, over-exposed or blank frame
        changes first, and a network's last features need not show."""
        feats = self._features
        self._features = None
        if feats is None:
            return
        for k, (r0, nr, c0, nc, y0, x0) in enumerate(regions):
            cy, cx = nr // self.cell, nc // self.cell
            if cy == 0 or cx == 0:
                continue
            f = feats[k:k + 1, :, r0:r0 + cy * self.cell, c0:c0 + cx * self.cell].float()
            if f.shape[1] > MAX_TAP_CHANNELS:
                # PixelNet's 1024 hidden units: groups of neighbouring channels averaged, so that a
                # checkpoint's reference stays small (2000 cells x 128 numbers)
                f = torch.cat([g.mean(dim=1, keepdim=True) for g in torch.tensor_split(f, MAX_TAP_CHANNELS, dim=1)], dim=1)
            mean = F.avg_pool2d(f, self.cell)[0]
            var = (F.avg_pool2d(f * f, self.cell)[0] - mean * mean).clamp_min(0.0)
            parts = [mean, var.sqrt()]
            if inputs is not None:
                parts.append(_acquisition(inputs[k:k + 1, :, r0:r0 + cy * self.cell, c0:c0 + cx * self.cell].float(),
                                          self.cell))
            desc = torch.cat(parts, dim=0)
            self.descriptors.append(desc.reshape(desc.shape[0], -1).T.cpu().numpy().astype(np.float32))
            rows, cols = np.meshgrid(y0 + self.cell * np.arange(cy), x0 + self.cell * np.arange(cx), indexing="ij")
            self.positions.append(np.stack([rows.ravel(), cols.ravel()], axis=1))

    def result(self) -> np.ndarray | None:
        return np.concatenate(self.descriptors) if self.descriptors else None

    def result_yx(self) -> np.ndarray | None:
        """Image pixel (row, column) of each cell's corner, in the order of :meth:`result`."""
        return np.concatenate(self.positions) if self.positions else None


def _acquisition(x: torch.Tensor, cell: int) -> torch.Tensor:
    """Per cell of the grey input ``x`` (1, channels, H, W): log of its grey standard deviation
    (contrast; a blank or clipped frame has none) and log of its mean fine-scale gradient over that
    standard deviation (sharpness, independent of contrast; blur lowers it, noise raises it)."""
    g = x.mean(dim=1, keepdim=True)
    mean = F.avg_pool2d(g, cell)
    std = (F.avg_pool2d(g * g, cell) - mean * mean).clamp_min(0.0).sqrt()
    dy = F.pad((g[..., 1:, :] - g[..., :-1, :]).abs(), (0, 0, 0, 1))
    dx = F.pad((g[..., :, 1:] - g[..., :, :-1]).abs(), (0, 1, 0, 0))
    grad = F.avg_pool2d(torch.sqrt(dx * dx + dy * dy), cell)
    eps = 1e-3  # in units of the training images' grey standard deviation (the input normalisation)
    return torch.cat([torch.log(std + eps), torch.log((grad + eps) / (std + eps))], dim=1)[0]


def _nearest(query: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Euclidean distance of each query row to its nearest reference row."""
    return np.asarray(cKDTree(ref).query(query)[0], dtype=np.float64)


def build_reference(per_image: list[np.ndarray | None], *, seed: int = 0) -> dict[str, Any]:
    """The novelty reference of a model from its training images' cell descriptors.

    Parameters
    ----------
    per_image : list of ndarray (cells, dims) or None
        One entry per training image (None: too small for one cell).
    seed : int
        For the random subsets of cells.

    Returns
    -------
    dict
        ``cell_px``, ``mean``, ``std``, ``reference`` (standardised cells, a list of lists),
        ``threshold``, ``percentile``, ``images``; or ``{"reason": ...}`` where the images
        cannot calibrate a threshold (fewer than two with a whole cell, or fewer than
        ``MIN_REFERENCE_CELLS`` cells).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ref = build_reference([rng.normal(size=(30, 4)) for _ in range(3)])
    >>> sorted(ref)[:3], ref["images"]
    (['cell_px', 'images', 'mean'], 3)
    """
    rng = np.random.default_rng(seed)
    usable = [d for d in per_image if d is not None and len(d)]
    if len(usable) < 2:
        return {"reason": f"{len(usable)} training image(s) hold a whole {CELL_PX}-px cell; the threshold needs two or more"}
    if sum(len(d) for d in usable) < MIN_REFERENCE_CELLS:
        return {"reason": f"the training images hold {sum(len(d) for d in usable)} whole {CELL_PX}-px cells; "
                          f"the threshold needs {MIN_REFERENCE_CELLS} or more"}
    cap = max(1, min(MAX_CELLS_PER_IMAGE, MAX_REFERENCE_CELLS // len(usable)))
    kept = [d[rng.choice(len(d), cap, replace=False)] if len(d) > cap else d for d in usable]
    cells = np.concatenate(kept).astype(np.float64)
    owner = np.concatenate([np.full(len(d), i) for i, d in enumerate(kept)])
    mean = cells.mean(axis=0)
    std = cells.std(axis=0)
    std = np.where(std > 1e-6 * max(float(std.max()), 1e-12), std, 1.0)
    z = (cells - mean) / std
    loo = np.concatenate([_nearest(z[owner == i], z[owner != i]) for i in range(len(kept))])
    return {"cell_px": CELL_PX, "mean": mean.round(6).tolist(), "std": std.round(6).tolist(),
            "reference": z.round(4).tolist(), "threshold": float(np.percentile(loo, NOVEL_PERCENTILE)),
            "percentile": NOVEL_PERCENTILE, "images": len(kept)}


def novel_cells(descriptors: np.ndarray, reference: dict[str, Any]) -> np.ndarray:
    """Whether each of ``descriptors``' cells is farther than the reference's threshold from every reference cell."""
    z = (np.asarray(descriptors, np.float64) - np.asarray(reference["mean"])) / np.asarray(reference["std"])
    d = _nearest(z, np.asarray(reference["reference"], np.float64))
    return np.asarray(d > float(reference["threshold"]))


def novel_fraction(descriptors: np.ndarray, reference: dict[str, Any]) -> float:
    """Share of ``descriptors``' cells farther than the reference's threshold from every reference cell."""
    return float(np.mean(novel_cells(descriptors, reference)))


def novelty_map(shape: tuple[int, int], cell_yx: np.ndarray, share: np.ndarray, cell: float) -> np.ndarray:
    """An image-sized float32 map: each judged cell painted with its novel share (0-1), NaN elsewhere.

    ``cell_yx`` and ``cell`` are in the image's pixels (a prediction at another scale divides
    them by it).
    """
    out = np.full(shape, np.nan, np.float32)
    side = max(1, int(round(cell)))
    for (y, x), value in zip(np.rint(cell_yx).astype(int), share, strict=True):
        out[max(y, 0):y + side, max(x, 0):x + side] = value
    return out


def novelty_quality(cells: list[np.ndarray | None], references: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The novelty part of a prediction's quality record (None where no member has a reference).

    Parameters
    ----------
    cells : list
        Per ensemble member, the image's cell descriptors (None: no tap or image too small).
    references : list
        Per member, its checkpoint's ``novelty`` entry (None for older checkpoints).

    Returns
    -------
    dict or None
        ``novel_fraction`` (mean over the members that can judge), ``max_novel_fraction``,
        ``cells``, ``novelty_passed`` and ``novelty_reason`` (a sentence, where it fails);
        ``_per_cell`` holds each cell's share of members that call it novel (not for JSON).
    """
    judged = []
    for desc, ref in zip(cells, references, strict=True):
        if desc is None or not ref or "reference" not in ref:
            continue
        if len(ref["mean"]) != desc.shape[1]:
            continue
        judged.append(novel_cells(desc, ref))
    if not judged:
        return None
    per_cell = np.mean(judged, axis=0)  # the members see the same cells (one tiling)
    share = float(np.mean(per_cell))
    n_cells = len(per_cell)
    passed = share <= MAX_NOVEL_FRACTION
    record: dict[str, Any] = {"novel_fraction": share, "max_novel_fraction": MAX_NOVEL_FRACTION, "cells": n_cells,
                              "novelty_passed": passed, "_per_cell": per_cell}
    if not passed:
        record["novelty_reason"] = (
            f"the image is unlike the model's training images: {share:.0%} of its {CELL_PX}-px cells look like no "
            f"training cell (> {MAX_NOVEL_FRACTION:.0%}; the network's features there are farther from every training "
            f"image's than {NOVEL_PERCENTILE:g}% of training cells are from other training images), so its labels "
            "and fractions are not trustworthy; train on images of this kind")
    return record
