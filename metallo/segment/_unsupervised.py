"""Unsupervised segmentation of micrographs: a per-image CNN trained against SLIC superpixels.

The method of Kim, Inoue and Kasuya (2020), after Kanezaki (2018): a small CNN
(``n_conv`` blocks of 3x3 conv + ReLU + BatchNorm, then a 1x1 conv "linear classifier" + BatchNorm)
maps the image to ``n_outputs`` scores per pixel. Each iteration takes the argmax label of every
pixel, replaces it by the most frequent label of its superpixel (the *refinement*), and makes one
SGD step (lr 0.1, momentum 0.9) on the cross-entropy between the scores and the refined labels.
Training stops when the argmax has no more than ``n_classes`` distinct labels or after
``max_iter`` iterations. Labels are finally renumbered by mean intensity, darkest = 0.

The refinement is one ``scatter_add`` count over ``superpixel * n_outputs + label`` on the device and an
argmax per row: no Python loop over superpixels.

References
----------
.. [1] H. Kim, J. Inoue, T. Kasuya, "Unsupervised microstructure segmentation by mimicking
   metallurgists' approach to pattern recognition", Scientific Reports 10, 17835 (2020).
   doi:10.1038/s41598-020-74935-8
.. [2] A. Kanezaki, "Unsupervised image segmentation by backpropagation", IEEE ICASSP 2018,
   1543-1547. doi:10.1109/ICASSP.2018.8462533
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from metallo._device import resolve_device, torch_seeded
from metallo._figure import agg_figure
from metallo._progress import ProgressCallback, notify
from metallo._xarray import as_image, pixel_size_um, to_numpy
from metallo.errors import ConfigError
from metallo.segment._criteria import segmentation_criteria
from metallo.segment._data import check_image_values
from metallo.segment._superpixels import slic_superpixels

if TYPE_CHECKING:
    import pandas as pd
    import torch

__all__ = [
    "choose_n_classes",
    "plot_criteria",
    "PRESETS",
    "SuperpixelRefinement",
    "refine_by_superpixels",
    "unsupervised",
    "unsupervised_quality",
    "unsupervised_settings",
    "unsupervised_stack",
]

#: Kanezaki's ``minLabels`` default, which the paper inherits when no class count is given.
DEFAULT_MIN_LABELS = 3
#: Kanezaki's ``maxIter`` default.
DEFAULT_MAX_ITER = 1000
#: The paper's number of linear classifiers ``q`` (outputs of the 1x1 convolution).
DEFAULT_N_OUTPUTS = 50
_IGNORE = -100
_MIN_PIXELS_PER_SUPERPIXEL = 8


def _build_network(in_channels: int, channels: int, n_conv: int, n_outputs: int) -> torch.nn.Module:
    from torch import nn

    layers: list[nn.Module] = []
    width = in_channels
    for _ in range(n_conv):
        # ReLU before BatchNorm, as in the paper's Fig. 3 and Kanezaki's network.
        layers += [nn.Conv2d(width, channels, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(channels)]
        width = channels
    layers += [nn.Conv2d(channels, n_outputs, 1), nn.BatchNorm2d(n_outputs)]
    return nn.Sequential(*layers)


class SuperpixelRefinement:
    """Majority label per superpixel, with the per-image work done once.

    Holds ``superpixel * n_labels`` and an int32 count table on the device, so each call is one
    ``scatter_add_``, one ``argmax`` per row and one gather (about 1M pixels and 60k superpixels
    at the paper's image size).

    Parameters
    ----------
    superpixels : torch.Tensor of int64, shape (n,)
        Superpixel id per pixel, in ``0..n_superpixels-1``.
    n_superpixels, n_labels : int
        Number of superpixels and of possible labels.

    Examples
    --------
    >>> import torch
    >>> refine = SuperpixelRefinement(torch.tensor([0, 0, 0, 1, 1, 1]), n_superpixels=2, n_labels=3)
    >>> refine(torch.tensor([0, 1, 1, 2, 2, 0])).tolist()
    [1, 1, 1, 2, 2, 2]
    """

    def __init__(self, superpixels: torch.Tensor, *, n_superpixels: int, n_labels: int) -> None:
        import torch

        self.superpixels = superpixels
        self.n_superpixels = int(n_superpixels)
        self.n_labels = int(n_labels)
        self._base = superpixels * self.n_labels
        self._counts = torch.zeros(self.n_superpixels * self.n_labels, dtype=torch.int32, device=superpixels.device)
        self._ones = torch.ones(superpixels.numel(), dtype=torch.int32, device=superpixels.device)

    def __call__(self, labels: torch.Tensor) -> torch.Tensor:
        """Refined labels (int64, same shape as ``labels``); ties go to the smallest label."""
        self._counts.zero_()
        self._counts.scatter_add_(0, self._base + labels, self._ones)
        return self._counts.view(self.n_superpixels, self.n_labels).argmax(dim=1)[self.superpixels]


def refine_by_superpixels(
    labels: torch.Tensor, superpixels: torch.Tensor, *, n_superpixels: int, n_labels: int
) -> torch.Tensor:
    """Replace each pixel's label by the most frequent label of its superpixel.

    Ties go to the smallest label, as with ``np.argmax`` over a histogram in the paper's loop.
    For repeated calls on one image use :class:`SuperpixelRefinement`.

    Parameters
    ----------
    labels : torch.Tensor of int64, shape (n,)
        Predicted label per pixel, in ``0..n_labels-1``.
    superpixels : torch.Tensor of int64, shape (n,)
        Superpixel id per pixel, in ``0..n_superpixels-1``.
    n_superpixels, n_labels : int
        Number of superpixels and of possible labels.

    Returns
    -------
    torch.Tensor of int64, shape (n,)

    Examples
    --------
    >>> import torch
    >>> refine_by_superpixels(torch.tensor([0, 1, 1, 2, 2, 0]), torch.tensor([0, 0, 0, 1, 1, 1]),
    ...                       n_superpixels=2, n_labels=3).tolist()
    [1, 1, 1, 2, 2, 2]
    """
    return SuperpixelRefinement(superpixels, n_superpixels=n_superpixels, n_labels=n_labels)(labels)


def _check_parameters(
    n_classes: int | None, n_superpixels: int, compactness: float, channels: int, n_conv: int,
    n_outputs: int, lr: float, momentum: float, max_iter: int,
) -> int:
    target = DEFAULT_MIN_LABELS if n_classes is None else int(n_classes)
    if target < 1:
        raise ConfigError(f"n_classes must be >= 1 or None; got {n_classes}")
    if n_outputs < max(target, 2):
        raise ConfigError(f"n_outputs ({n_outputs}) must be at least n_classes ({target}) and 2")
    for name, value in (("n_superpixels", n_superpixels), ("channels", channels), ("n_conv", n_conv),
                        ("max_iter", max_iter)):
        if int(value) < 1:
            raise ConfigError(f"{name} must be >= 1; got {value}")
    if compactness <= 0 or lr <= 0 or not 0 <= momentum < 1:
        raise ConfigError(
            f"need compactness > 0, lr > 0 and 0 <= momentum < 1; got {compactness}, {lr}, {momentum}"
        )
    return target


def _as_float_stack(images: Sequence[Any]) -> list[np.ndarray]:
    """Each image as float64 (y, x, channel); all must share the channel count."""
    arrays = []
    for index, image in enumerate(images):
        raw = to_numpy(image)
        check_image_values(raw.dtype, raw.shape, f"image {index}", "Pass the images as a list, or put the channel axis last")
        values = raw.astype(np.float64)
        if values.ndim == 2:
            values = values[..., None]
        if values.ndim != 3 or min(values.shape[:2]) < 2:
            raise ConfigError(f"image {index}: expected (y, x) or (y, x, channel) of at least 2x2; got {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ConfigError(f"image {index}: has NaN or infinite pixels; unsupervised needs a value everywhere")
        arrays.append(values)
    if all(a.shape[2] > 1 and (a == a[..., :1]).all() for a in arrays):
        # Grey micrographs saved as RGB (three equal channels, as many SEM PNGs are): one channel.
        # The network is trained from scratch on each input, and three copies of the grey level
        # changed what it learnt - UHCS micrograph170 ended at 98 % cementite as RGB, 20 % as grey.
        arrays = [a[..., :1] for a in arrays]
    if len({a.shape[2] for a in arrays}) > 1:
        raise ConfigError(f"all images must have the same number of channels; got {[a.shape[2] for a in arrays]}")
    return arrays


#: Named settings. ``"paper"``: exactly the paper's configuration (seed 004, after Kanezaki 2018):
#: 50 000 superpixels, 100 channels, 2 conv blocks, 50 outputs, SGD 0.1/0.9, up to 1000
#: iterations at full resolution in float32, stopping only at ``n_classes`` labels.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"n_superpixels": 50_000, "compactness": 20.0, "channels": 100, "n_conv": 2, "n_outputs": 50,
              "lr": 0.1, "momentum": 0.9, "max_iter": DEFAULT_MAX_ITER, "max_time_s": None, "min_change": None,
              "work_pixels": None, "amp": False, "pixel_refine": False},
}
#: Working-image size of the ``"auto"`` preset: the CNN runs on the image area-downscaled to this
#: many pixels (two CPU cores need ~0.2 s per iteration at 160 000 px with 16 channels).
AUTO_WORK_PIXELS = {"cpu": 160_000, "cuda": 4_000_000}
#: Pixels per superpixel of the ``"auto"`` preset: the paper's density (1000 x 1000 / 50 000).
PIXELS_PER_SUPERPIXEL = 20
#: Iterations in a row whose label map changes on fewer than ``min_change`` of the pixels
#: before training stops as converged.
STABLE_ITERATIONS = 10
_SETTING_NAMES = ("n_superpixels", "compactness", "channels", "n_conv", "n_outputs", "lr", "momentum", "max_iter",
                  "max_time_s", "min_change", "work_pixels", "amp", "pixel_refine")


def unsupervised_settings(shape: Sequence[int], *, device: str = "auto", preset: str = "auto",
                          **overrides: Any) -> dict[str, Any]:
    """The settings :func:`unsupervised` uses for an image of ``shape`` on ``device``.

    ``preset="auto"`` chooses from the image size and the device: the CNN works on the image
    area-downscaled to ``work_pixels`` (160 000 on a CPU, 4 000 000 on CUDA), with one
    superpixel per 20 working pixels (the paper's density), 16 channels on a CPU (100 on
    CUDA), bfloat16 where the CPU has native bfloat16 units (and on CUDA), at most 500
    iterations, a time budget of 40 s on a CPU (120 s on CUDA), it stops once the label map
    changes on fewer than 0.1 % of the pixels for 10 iterations, and the class boundaries are
    refined at pixel level (nearest class mean, see :func:`unsupervised`). ``preset="paper"`` is the
    paper's exact configuration (:data:`PRESETS`). Any setting given (not None) overrides.

    Parameters
    ----------
    shape : sequence of int
        ``(y, x[, channel])`` of the (largest) image.
    device : {"auto", "cpu", "cuda"}
    preset : {"auto", "paper"}
    **overrides
        ``n_superpixels`` (for the working image), ``compactness``, ``channels``, ``n_conv``,
        ``n_outputs``, ``lr``, ``momentum``, ``max_iter``, ``max_time_s`` (``math.inf``: no
        budget), ``min_change`` (0: no stability stop), ``work_pixels`` (0: full size), ``amp``,
        ``pixel_refine``.

    Returns
    -------
    dict
        The resolved settings plus ``preset``, ``device`` and ``scale`` (working / full size).

    Examples
    --------
    >>> s = unsupervised_settings((1000, 1000), device="cpu")
    >>> s["scale"], s["n_superpixels"], s["channels"]
    (0.4, 8000, 16)
    >>> unsupervised_settings((1000, 1000), device="cpu", preset="paper")["n_superpixels"]
    50000
    """
    unknown = set(overrides) - set(_SETTING_NAMES)
    if unknown:
        raise ConfigError(f"unknown options {sorted(unknown)}; valid: {sorted(_SETTING_NAMES)}")
    torch_device = resolve_device(device)
    given = {k: v for k, v in overrides.items() if v is not None}
    area = int(shape[0]) * int(shape[1])
    if preset == "paper":
        settings = dict(PRESETS["paper"])
    elif preset == "auto":
        cpu = torch_device.type == "cpu"
        settings = {"compactness": 20.0, "channels": 16 if cpu else 100, "n_conv": 2, "n_outputs": DEFAULT_N_OUTPUTS,
                    "lr": 0.1, "momentum": 0.9, "max_iter": 500, "max_time_s": 40.0 if cpu else 120.0,
                    "min_change": 0.001, "work_pixels": AUTO_WORK_PIXELS["cpu" if cpu else "cuda"], "amp": True,
                    "pixel_refine": True}
    else:
        raise ConfigError(f"preset must be 'auto' or 'paper'; got {preset!r}")
    settings.update({k: v for k, v in given.items() if k != "n_superpixels"})
    if settings["work_pixels"] == 0:  # explicitly full size
        settings["work_pixels"] = None
    if settings["max_time_s"] is not None and math.isinf(float(settings["max_time_s"])):
        settings["max_time_s"] = None
    work = settings["work_pixels"]
    if work is not None and int(work) < 4:
        raise ConfigError(f"work_pixels must be >= 4, or 0 for the full size; got {work}")
    scale = 1.0 if work is None or area <= int(work) else math.sqrt(int(work) / area)
    if "n_superpixels" in given:
        settings["n_superpixels"] = int(given["n_superpixels"])
    elif preset == "auto":
        settings["n_superpixels"] = max(2, round(area * scale**2 / PIXELS_PER_SUPERPIXEL))
    if settings["max_time_s"] is not None and float(settings["max_time_s"]) <= 0:
        raise ConfigError(f"max_time_s must be positive or None; got {settings['max_time_s']}")
    if settings["min_change"] is not None and not 0 <= float(settings["min_change"]) < 1:
        raise ConfigError(f"min_change must be in [0, 1) or None; got {settings['min_change']}")
    settings.update(preset=preset, device=str(torch_device), scale=scale)
    return settings


def _amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    import torch

    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16
    from metallo.segment._checkpoint import cpu_has_native_bfloat16

    return torch.bfloat16 if cpu_has_native_bfloat16() else None


def _ward_groups(counts: np.ndarray, sums: np.ndarray, target: int) -> np.ndarray:
    """Group of each label after merging, pair by pair, the two groups whose union raises the
    within-group variance of the features least (Ward), until ``target`` groups remain.

    ``counts`` (n,) and ``sums`` (n, features) per label; labels with no pixels get group -1.
    """
    present = np.flatnonzero(counts > 0)
    group = np.full(counts.size, -1, dtype=np.int64)
    members = [[int(i)] for i in present]
    n = [float(counts[i]) for i in present]
    mean = [sums[i] / counts[i] for i in present]
    while len(members) > target:
        best, pair = math.inf, (0, 1)
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                cost = n[a] * n[b] / (n[a] + n[b]) * float(np.sum((mean[a] - mean[b]) ** 2))
                if cost < best:
                    best, pair = cost, (a, b)
        a, b = pair
        mean[a] = (n[a] * mean[a] + n[b] * mean[b]) / (n[a] + n[b])
        n[a] += n[b]
        members[a] += members[b]
        del members[b], n[b], mean[b]
    for g, labels in enumerate(members):
        group[labels] = g
    return group


class _Outcome:
    """What training returns: per-image group labels and scores at the working size."""

    def __init__(self, labels: list[np.ndarray], scores: list[np.ndarray] | None, n_iter: int, stop_reason: str,
                 n_labels: int, elapsed_s: float) -> None:
        self.labels, self.scores = labels, scores
        self.n_iter, self.stop_reason, self.n_labels, self.elapsed_s = n_iter, stop_reason, n_labels, elapsed_s


def _train(
    arrays: list[np.ndarray],
    superpixels: list[np.ndarray],
    *,
    target: int,
    channels: int,
    n_conv: int,
    n_outputs: int,
    lr: float,
    momentum: float,
    max_iter: int,
    seed: int,
    device: torch.device,
    progress: ProgressCallback | None = None,
    timings: dict[str, float] | None = None,
    refine: Callable[[torch.Tensor], torch.Tensor] | None = None,
    max_time_s: float | None = None,
    min_change: float | None = None,
    amp: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
    keep_scores: bool = False,
) -> _Outcome:
    """Train one network on all images; return per-image labels (at most ``target``) and why it stopped.

    Images of different sizes are reflect-padded to a common size; padded pixels carry
    superpixel id -1 and are left out of the refinement, the label count and the loss.
    Training stops at ``target`` labels (the paper's rule), when the label map changes on fewer
    than ``min_change`` of the pixels for :data:`STABLE_ITERATIONS` iterations, after
    ``max_time_s`` or after ``max_iter``; more than ``target`` labels left are merged (Ward on
    the input features). With ``keep_scores`` the per-group scores are returned for resizing.
    """
    import torch

    height = max(a.shape[0] for a in arrays)
    width = max(a.shape[1] for a in arrays)
    stacked = np.concatenate([a.reshape(-1, a.shape[2]) for a in arrays])
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    std[std == 0] = 1.0
    batch = np.empty((len(arrays), arrays[0].shape[2], height, width), dtype=np.float32)
    sp_batch = np.full((len(arrays), height, width), -1, dtype=np.int64)
    offset = 0
    for index, (values, sp) in enumerate(zip(arrays, superpixels, strict=True)):
        pad = ((0, height - values.shape[0]), (0, width - values.shape[1]))
        batch[index] = np.pad((values - mean) / std, (*pad, (0, 0)), mode="reflect").transpose(2, 0, 1)
        sp_batch[index, : sp.shape[0], : sp.shape[1]] = sp + offset
        offset += int(sp.max()) + 1
    n_superpixels = offset

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def tick(name: str, start: float) -> float:
        if timings is None:
            return start
        sync()
        now = time.perf_counter()
        timings[name] = timings.get(name, 0.0) + now - start
        return now

    amp_dtype = _amp_dtype(device, amp)
    began = time.perf_counter()
    with torch_seeded(seed, device):
        model = _build_network(batch.shape[1], channels, n_conv, n_outputs).to(device)
        x = torch.from_numpy(batch).to(device)
        if device.type == "cuda" or amp_dtype is not None:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        sp_all = torch.from_numpy(sp_batch.ravel()).to(device)
        valid = sp_all >= 0
        all_valid = bool(valid.all())
        sp_valid = sp_all if all_valid else sp_all[valid]
        if refine is None:
            refine = SuperpixelRefinement(sp_valid, n_superpixels=n_superpixels, n_labels=n_outputs)
        loss_fn = torch.nn.CrossEntropyLoss(ignore_index=_IGNORE)
        autocast = (torch.autocast(device_type=device.type, dtype=amp_dtype) if amp_dtype is not None
                    else nullcontext())
        predicted = previous = previous_kept = previous_logits = None
        iteration, stable, stop_reason, n_labels = 0, 0, "max_iter", n_outputs
        for iteration in range(1, max_iter + 1):  # noqa: B007 - the count is returned
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                scores = model(x)
            # (batch, q, y, x) -> (pixels, q) in the same order as sp_all.
            logits = scores.permute(0, 2, 3, 1).reshape(-1, n_outputs).float()
            predicted = logits.argmax(dim=1)
            start = tick("cnn", start)
            kept = predicted if all_valid else predicted[valid]
            n_labels = int(torch.count_nonzero(torch.bincount(kept, minlength=n_outputs)))
            changed = 1.0 if previous is None else float((kept != previous).float().mean())
            previous_kept, previous = previous, kept
            refined = refine(kept)
            if all_valid:
                target_labels = refined
            else:
                target_labels = torch.full_like(predicted, _IGNORE)
                target_labels[valid] = refined
            start = tick("refine", start)
            loss = loss_fn(logits, target_labels)
            loss.backward()
            if n_labels > target:
                previous_logits = logits.detach()
            optimizer.step()
            tick("cnn", start)
            elapsed = time.perf_counter() - began
            stable = stable + 1 if min_change is not None and changed < min_change else 0
            notify(progress, iteration, max_iter, f"unsupervised: {n_labels} labels, {changed:.1%} changed")
            if callback is not None:
                callback({"iteration": iteration, "max_iter": max_iter, "n_labels": n_labels, "changed": changed,
                          "elapsed_s": elapsed, "max_time_s": max_time_s})
            if n_labels <= target:
                stop_reason = "n_classes"
                if n_labels < target and previous_logits is not None and previous_kept is not None:
                    # Labels merged past the class count in one step: the previous iteration's
                    # labels (more than n_classes) are merged down to it below instead.
                    logits, kept = previous_logits, previous_kept
                    n_labels = int(torch.count_nonzero(torch.bincount(kept, minlength=n_outputs)))
                break
            if stable >= STABLE_ITERATIONS:
                stop_reason = "stable"
                break
            if max_time_s is not None and elapsed >= max_time_s:
                stop_reason = "time"
                break
        assert predicted is not None and kept is not None  # max_iter >= 1 was checked, so the loop ran
        with torch.no_grad():
            logits = logits.detach()
            features = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).float()
            if not all_valid:
                features, logits = features[valid], logits[valid]
            counts = torch.bincount(kept, minlength=n_outputs).cpu().numpy()
            sums = torch.zeros(n_outputs, features.shape[1], device=device).index_add_(0, kept, features)
            groups = _ward_groups(counts, sums.cpu().numpy().astype(np.float64), target)
            n_groups = int(groups.max()) + 1
            group_t = torch.from_numpy(np.where(groups < 0, 0, groups)).to(device)
            grouped = group_t[kept]
            full = torch.zeros(len(arrays) * height * width, dtype=torch.int64, device=device)
            full[valid] = grouped
            labels = full.view(len(arrays), height, width).cpu().numpy()
            score_maps = None
            if keep_scores:
                # Group score: the best score of its members (labels with no pixels left out), so the
                # argmax over groups is the group of the argmax label, as on the working grid. A
                # log-sum-exp would favour groups with many members: a 40-label matrix group then
                # outscored a 2-label particle group everywhere once resized (one class left).
                group_scores = torch.full((logits.shape[0], n_groups), -torch.inf, device=device)
                for g in range(n_groups):
                    group_scores[:, g] = torch.amax(logits[:, torch.from_numpy(np.flatnonzero(groups == g))
                                                           .to(device)], dim=1)
                padded = torch.zeros(len(arrays) * height * width, n_groups, device=device)
                padded[valid] = group_scores
                volume = padded.view(len(arrays), height, width, n_groups).permute(0, 3, 1, 2).cpu().numpy()
                score_maps = [volume[i, :, : a.shape[0], : a.shape[1]] for i, a in enumerate(arrays)]
    return _Outcome([labels[i, : a.shape[0], : a.shape[1]] for i, a in enumerate(arrays)], score_maps, iteration,
                    stop_reason, n_labels, time.perf_counter() - began)




#: Gaussian sigma (pixels) of the features the pixel-level refinement compares, the same smoothing
#: as the quality record's threshold; and its iteration limit.
REFINE_SIGMA_PX = 1.0
REFINE_MAX_ITER = 50


def _smoothed_grey(values: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    grey = values.mean(axis=2) if values.ndim == 3 else values
    return ndimage.gaussian_filter(grey.astype(np.float64), REFINE_SIGMA_PX)


def _separation(grey: np.ndarray, lab: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Classes present in ``lab`` ordered by mean ``grey``, and Ashman's D of each adjacent pair."""
    present = np.unique(lab)
    means = np.array([grey[lab == c].mean() for c in present])
    stds = np.array([grey[lab == c].std() for c in present])
    order = np.argsort(means)
    separation = [float(np.sqrt(2) * abs(means[b] - means[a]) / max(np.sqrt(stds[a] ** 2 + stds[b] ** 2), 1e-12))
                  for a, b in zip(order[:-1], order[1:], strict=True)]
    return present[order], separation


def _class_index(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Position of each label in ``classes`` (which holds every label present, in any order)."""
    lookup = np.zeros(int(classes.max()) + 1, dtype=np.int64)
    lookup[classes] = np.arange(classes.size)
    return lookup[labels]


def _refine_pixels(arrays: list[np.ndarray], raw: list[np.ndarray]) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Move every pixel to the class with the nearest mean, repeated until the map settles.

    The features are the input channels standardised over all images and smoothed with a
    Gaussian of :data:`REFINE_SIGMA_PX`; the classes start as the CNN's. This is k-means
    (Lloyd) started from the CNN's classes -- for a grey image and two classes the iterative
    threshold selection of Ridler and Calvard (1978), whose fixed point is Otsu's threshold --
    so boundaries follow the grey levels at pixel level instead of the superpixels that trained
    the network, and particles smaller than a superpixel are kept. It is skipped when the CNN's
    classes overlap in grey level (Ashman's D below ``QUALITY_LIMITS["min_separation"]``): the
    classes are then told apart by texture, which a pixel's grey level does not show.
    """
    from scipy import ndimage

    stacked = np.concatenate([a.reshape(-1, a.shape[2]) for a in arrays])
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    std[std == 0] = 1.0
    features = np.concatenate([
        np.stack([ndimage.gaussian_filter((a[..., c] - mean[c]) / std[c], REFINE_SIGMA_PX)
                  for c in range(a.shape[2])], axis=-1).reshape(-1, a.shape[2])
        for a in arrays])
    labels = np.concatenate([r.ravel() for r in raw]).astype(np.int64)
    grey = np.concatenate([_smoothed_grey(a).ravel() for a in arrays])
    info: dict[str, Any] = {"applied": False, "iterations": 0, "changed_fraction": 0.0}
    classes, separation = _separation(grey, labels)
    if classes.size < 2 or min(separation) < QUALITY_LIMITS["min_separation"]:
        info["skipped"] = "fewer than two classes" if classes.size < 2 else (
            f"classes overlap in grey level (Ashman's D {min(separation):.2f}): told apart by texture")
        return raw, info
    # Classes numbered 0..k-1 in the order found; the caller renumbers by intensity.
    current = _class_index(labels, classes)
    k = classes.size
    for iteration in range(1, REFINE_MAX_ITER + 1):
        counts = np.bincount(current, minlength=k)
        if np.any(counts == 0):
            break  # a class emptied: keep the last map with all of them
        centres = np.stack([np.bincount(current, weights=features[:, c], minlength=k)
                            for c in range(features.shape[1])], axis=1) / counts[:, None]
        distance = ((features[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        nearest = distance.argmin(axis=1)
        changed = float(np.mean(nearest != current))
        if np.any(np.bincount(nearest, minlength=k) == 0):
            break
        current = nearest
        info["iterations"] = iteration
        if changed < 1e-4:
            break
    refined = classes[current]
    info.update(applied=True, changed_fraction=float(np.mean(refined != labels)))
    out, start = [], 0
    for r in raw:
        out.append(refined[start:start + r.size].reshape(r.shape))
        start += r.size
    return out, info



def _collapsed(raw: list[np.ndarray], n_classes: int | None, n_superpixels: int) -> int:
    """Classes holding at least one superpixel's area when fewer than the ``n_classes`` asked for, else 0.

    The network is trained against the majority label of each superpixel, so a class smaller
    than one superpixel is a remnant it was absorbing, not a phase it found.
    """
    if n_classes is None or n_classes < 2:
        return 0
    labels = np.concatenate([r.ravel() for r in raw])
    smallest = max(1.0, labels.size / (max(1, n_superpixels) * len(raw)))
    present = int(np.count_nonzero(np.bincount(labels) >= smallest))
    return present if present < n_classes else 0


def _threshold_start(arrays: list[np.ndarray], k: int) -> list[np.ndarray] | None:
    """``k`` classes by (multi-)Otsu on the smoothed grey levels of all images together (None: too few grey levels)."""
    greys = [_smoothed_grey(a) for a in arrays]
    try:
        thresholds = _otsu_thresholds(np.concatenate([g.ravel() for g in greys]), k)
    except ValueError:  # too few grey levels for k classes: nothing to start from
        return None
    return [np.digitize(g, thresholds) for g in greys]


def _otsu_thresholds(values: np.ndarray, k: int) -> np.ndarray:
    """The ``k - 1`` thresholds of Otsu (two classes) or multi-Otsu (more)."""
    from skimage.filters import threshold_multiotsu, threshold_otsu

    return np.array([threshold_otsu(values)]) if k == 2 else threshold_multiotsu(values, classes=k)


def _relabel_by_intensity(arrays: list[np.ndarray], raw: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """Renumber labels 0..k-1 by increasing mean intensity over all images (darkest = 0)."""
    labels = np.concatenate([r.ravel() for r in raw])
    intensity = np.concatenate([a.mean(axis=2).ravel() for a in arrays])
    size = int(labels.max()) + 1
    count = np.bincount(labels, minlength=size)
    total = np.bincount(labels, weights=intensity, minlength=size)
    used = np.nonzero(count)[0]
    means = total[used] / count[used]
    order = used[np.argsort(means, kind="stable")]
    remap = np.zeros(size, dtype=np.int64)
    remap[order] = np.arange(order.size)
    return [remap[r] for r in raw], np.sort(means)


def _label_dataarray(image: Any, labels: np.ndarray, attrs: dict[str, Any]) -> xr.DataArray:
    dtype = np.uint8 if labels.max(initial=0) < 255 else np.int32
    reference = as_image(image) if not isinstance(image, xr.DataArray) else image
    coords = {name: reference.coords[name] for name in ("y", "x") if name in reference.coords}
    out = xr.DataArray(labels.astype(dtype), dims=("y", "x"), coords=coords, name="labels")
    out.attrs["pixel_size_um"] = pixel_size_um(reference) or float("nan")
    out.attrs.update(attrs)
    return out


#: Doubt thresholds of :func:`unsupervised_quality`.
QUALITY_LIMITS = {"min_separation": 1.0, "min_threshold_ari": 0.5, "max_fraction_difference": 0.03,
                  "max_boundary_ambiguity": 0.5}


def _minimum_error_labels(grey: np.ndarray, lab: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Minimum-error classes (index into ``classes``) of the grey levels, started from ``lab``.

    Each pixel goes to its most likely class under one Gaussian per class with the class's own
    mean, spread and share of the pixels, the classes are re-estimated, and so on until no pixel
    moves (hard EM; Kittler and Illingworth's minimum-error threshold for two classes).
    """
    flat = grey.ravel()
    current = _class_index(lab.ravel(), classes)
    for _ in range(REFINE_MAX_ITER):
        log_likelihood = np.empty((classes.size, flat.size))
        for i in range(classes.size):
            members = flat[current == i]
            if members.size == 0:
                return current.reshape(grey.shape)
            spread = max(float(members.std()), 1e-12)
            log_likelihood[i] = (np.log(members.size / flat.size) - np.log(spread)
                                 - 0.5 * ((flat - members.mean()) / spread) ** 2)
        nearest = log_likelihood.argmax(axis=0)
        if np.array_equal(nearest, current):
            break
        current = nearest
    return current.reshape(grey.shape)


def unsupervised_quality(image: Any, labels: Any) -> dict[str, Any]:
    """Independent evidence on an unsupervised label map, and whether it is doubtful.

    Three checks that do not use the CNN: (1) *separation*: Ashman's D between the grey-level
    distributions (Gaussian sigma = 1 px) of classes adjacent in mean intensity,
    ``sqrt(2) |m1 - m2| / sqrt(s1^2 + s2^2)`` (D > 2: cleanly separated; below
    ``min_separation`` the classes overlap); (2) *agreement with a threshold*: the same number of
    classes by (multi-)Otsu on the smoothed grey levels, compared by adjusted Rand index and by
    class fractions (classes matched in intensity order); (3) *where the boundary lies*: each
    class's fraction in the map against its fraction when every pixel goes to its most likely
    class under one Gaussian per class (own mean, spread and share: Kittler and Illingworth's
    minimum-error rule). Nearest-mean (Otsu, k-means) and minimum-error boundaries are both
    defensible; when they put a class's fraction more than ``max_boundary_ambiguity`` of itself
    apart, the grey levels do not say where the class ends and its fraction is not to be
    trusted. The result is doubtful when the classes are not separated, the map disagrees
    with the threshold (ARI below ``min_threshold_ari`` or a class fraction differing by more
    than ``max_fraction_difference``) or the boundary is that ambiguous; the limits are
    :data:`QUALITY_LIMITS`.

    Parameters
    ----------
    image : array-like or xr.DataArray
        The micrograph (y, x[, channel]).
    labels : array-like or xr.DataArray
        Its label map, classes numbered by increasing mean intensity (as :func:`unsupervised`).

    Returns
    -------
    dict
        ``passed``, ``reasons`` (list of str), ``separation`` (D per adjacent pair),
        ``threshold_ari``, ``fractions``, ``threshold_fractions``, ``fraction_difference``,
        ``minimum_error_fractions``, ``boundary_ambiguity`` (largest relative fraction
        difference), ``limits``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = np.where(np.arange(64)[None, :] < 32, 0.2, 0.8) + 0.02 * rng.standard_normal((64, 64))
    >>> unsupervised_quality(image, (image > 0.5).astype(int))["passed"]
    True
    """

    from metallo.segment._criteria import adjusted_rand_index

    grey = _smoothed_grey(to_numpy(image).astype(np.float64))
    lab = np.asarray(to_numpy(labels)).astype(np.int64)
    k = np.unique(lab).size
    result: dict[str, Any] = {"n_classes": int(k), "limits": dict(QUALITY_LIMITS), "reasons": []}
    if k < 2:
        result.update(passed=False, separation=[], threshold_ari=None, fractions=[1.0], threshold_fractions=None,
                      fraction_difference=None, minimum_error_fractions=None, boundary_ambiguity=None)
        result["reasons"].append("only one class found")
        return result
    classes, separation = _separation(grey, lab)
    fractions = np.array([np.mean(lab == c) for c in classes])
    threshold_labels = np.digitize(grey, _otsu_thresholds(grey, k))
    threshold_fractions = np.bincount(threshold_labels.ravel(), minlength=k)[:k] / threshold_labels.size
    ari = float(adjusted_rand_index(threshold_labels, lab))
    difference = float(np.abs(fractions - threshold_fractions).max())
    minimum_error = np.bincount(_minimum_error_labels(grey, lab, classes).ravel(), minlength=k) / lab.size
    relative = np.abs(minimum_error - fractions) / fractions
    ambiguous = int(np.argmax(relative))
    result.update(separation=separation, threshold_ari=ari, fractions=fractions.tolist(),
                  threshold_fractions=threshold_fractions.tolist(), fraction_difference=difference,
                  minimum_error_fractions=minimum_error.tolist(), boundary_ambiguity=float(relative[ambiguous]))
    if min(separation) < QUALITY_LIMITS["min_separation"]:
        result["reasons"].append(f"classes not separated in grey level (Ashman's D {min(separation):.2f} < "
                                 f"{QUALITY_LIMITS['min_separation']})")
    if ari < QUALITY_LIMITS["min_threshold_ari"]:
        result["reasons"].append(f"disagrees with an Otsu threshold (ARI {ari:.2f} < "
                                 f"{QUALITY_LIMITS['min_threshold_ari']})")
    if difference > QUALITY_LIMITS["max_fraction_difference"]:
        result["reasons"].append(f"a class fraction differs from an Otsu threshold's by {difference:.1%} "
                                 f"(> {QUALITY_LIMITS['max_fraction_difference']:.0%})")
    if relative[ambiguous] > QUALITY_LIMITS["max_boundary_ambiguity"]:
        result["reasons"].append(
            f"the grey levels do not say where class {ambiguous} ends: {fractions[ambiguous]:.1%} of the pixels by "
            f"nearest mean, {minimum_error[ambiguous]:.1%} by minimum error (more than "
            f"{QUALITY_LIMITS['max_boundary_ambiguity']:.0%} of the fraction apart)")
    result["passed"] = not result["reasons"]
    return result


class _Prepared:
    """Images as float stacks, their working-size versions and superpixels."""

    def __init__(self, arrays: list[np.ndarray], work: list[np.ndarray], superpixels: list[np.ndarray]) -> None:
        self.arrays, self.work, self.superpixels = arrays, work, superpixels


def _prepare(images: Sequence[Any], settings: dict[str, Any], timings: dict[str, float] | None = None) -> _Prepared:
    import cv2

    if len(images) == 0:
        raise ConfigError("no images given to segment")
    arrays = _as_float_stack(images)
    scale = float(settings["scale"])
    work = []
    for a in arrays:
        if scale < 1.0:
            size = (max(2, round(a.shape[1] * scale)), max(2, round(a.shape[0] * scale)))
            small = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
            work.append(small.reshape(size[1], size[0], a.shape[2]))
        else:
            work.append(a)
    n_superpixels = int(settings["n_superpixels"])
    smallest = min(a.shape[0] * a.shape[1] for a in work)
    if smallest < _MIN_PIXELS_PER_SUPERPIXEL * n_superpixels:
        warnings.warn(
            f"n_superpixels={n_superpixels} leaves fewer than {_MIN_PIXELS_PER_SUPERPIXEL} pixels per superpixel "
            f"on a {smallest}-pixel (working) image, so the majority vote has little to work with; the paper used "
            f"about 20 (50 000 on 1000 x 1000)",
            UserWarning, stacklevel=4,
        )
    start = time.perf_counter()
    superpixels = [slic_superpixels(a, n_superpixels=n_superpixels, compactness=float(settings["compactness"]))
                   for a in work]
    if timings is not None:
        timings["superpixels"] = timings.get("superpixels", 0.0) + time.perf_counter() - start
    return _Prepared(arrays, work, superpixels)


def _full_size_labels(prepared: _Prepared, outcome: _Outcome) -> list[np.ndarray]:
    """Labels on each image's own grid: the working labels, or the group scores resized linearly."""
    import torch

    if outcome.scores is None:
        return outcome.labels
    out = []
    for a, scores in zip(prepared.arrays, outcome.scores, strict=True):
        t = torch.from_numpy(np.ascontiguousarray(scores))[None]
        up = torch.nn.functional.interpolate(t, size=a.shape[:2], mode="bilinear", align_corners=False)
        out.append(up[0].argmax(dim=0).numpy())
    return out


def _segment(
    images: Sequence[Any],
    *,
    n_classes: int | None,
    settings: dict[str, Any],
    seed: int,
    progress: ProgressCallback | None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    prepared: _Prepared | None = None,
    timings: dict[str, float] | None = None,
    quality: bool = True,
    rescue: bool = True,
) -> list[xr.DataArray]:
    target = _check_parameters(n_classes, settings["n_superpixels"], settings["compactness"], settings["channels"],
                               settings["n_conv"], settings["n_outputs"], settings["lr"], settings["momentum"],
                               settings["max_iter"])
    if prepared is None:
        prepared = _prepare(images, settings, timings)
    scale = float(settings["scale"])
    outcome = _train(
        prepared.work, prepared.superpixels, target=target, channels=int(settings["channels"]),
        n_conv=int(settings["n_conv"]), n_outputs=int(settings["n_outputs"]), lr=float(settings["lr"]),
        momentum=float(settings["momentum"]), max_iter=int(settings["max_iter"]), seed=seed,
        device=resolve_device(settings["device"]), progress=progress, timings=timings,
        max_time_s=settings["max_time_s"], min_change=settings["min_change"], amp=bool(settings["amp"]),
        callback=callback, keep_scores=scale < 1.0,
    )
    raw = _full_size_labels(prepared, outcome)
    refinement: dict[str, Any] = {"applied": False, "skipped": "pixel_refine is off"}
    # choose_n_classes asks what the network finds at each k: no rescue there.
    collapsed = _collapsed(raw, n_classes, int(settings["n_superpixels"])) if rescue else 0
    start = None
    if collapsed and settings.get("pixel_refine"):
        # The network merged the classes asked for into fewer (on real spheroidite micrographs
        # under a vignette: a second class of 1 px, or of 5 px, when training stopped). The
        # pixel-level refinement is then started from a threshold instead.
        start = _threshold_start(prepared.arrays, int(n_classes))  # type: ignore[arg-type]
    rescued = start is not None
    if settings.get("pixel_refine"):
        raw, refinement = _refine_pixels(prepared.arrays, start if start is not None else raw)
        if rescued:
            refinement["started_from"] = "threshold"
    if rescued and not quality:  # with the quality record, its doubt carries the reason
        warnings.warn(
            f"unsupervised: the network ended with {collapsed} class(es) of the {n_classes} asked for (its labels "
            f"merged into fewer; a class smaller than one superpixel does not count); the classes come from the "
            f"pixel-level refinement started from a multi-Otsu threshold instead "
            f"(attrs['pixel_refinement']['started_from'])", UserWarning, stacklevel=3)
    labels, means = _relabel_by_intensity(prepared.arrays, raw)
    config = {"method": "unsupervised CNN + SLIC (Kim et al. 2020, after Kanezaki 2018)", "n_classes": n_classes,
              **{k: settings[k] for k in (*_SETTING_NAMES, "preset", "device", "scale")},
              "seed": seed, "n_images": len(prepared.arrays)}
    found = int(means.size)
    attrs = {
        "n_classes": found,
        "n_iterations": int(outcome.n_iter),
        "stop_reason": outcome.stop_reason,
        "train_seconds": round(outcome.elapsed_s, 3),
        "pixel_refinement": json.dumps(refinement),
        "classes": json.dumps([f"class_{i}" for i in range(found)]),
        "class_mean_intensity": json.dumps([float(m) for m in means]),
        "model": "unsupervised",
        "checkpoint_sha256": "",
        "config": json.dumps(config),
    }
    out = []
    for image, values, lab in zip(images, prepared.arrays, labels, strict=True):
        image_attrs = dict(attrs)
        if quality:
            record = unsupervised_quality(values, lab)
            record["stop_reason"] = outcome.stop_reason
            if rescued:
                # The classes are a threshold's, refined: the comparison with a threshold above is
                # then no independent evidence (pure noise split by multi-Otsu passes it).
                record["reasons"].append(
                    f"the network merged the {n_classes} classes asked for into {collapsed}; the classes are a "
                    f"grey-level threshold's, which nothing independent confirms")
                record["passed"] = False
            if outcome.stop_reason in ("time", "max_iter"):
                record["note"] = (f"training stopped at the {outcome.stop_reason} limit with {outcome.n_labels} labels "
                                  f"before the label map settled; labels were merged to {found}")
            image_attrs["quality"] = json.dumps(record)
            if not record["passed"]:
                warnings.warn("unsupervised segmentation is doubtful: " + "; ".join(record["reasons"]),
                              UserWarning, stacklevel=3)
        out.append(_label_dataarray(image, lab, image_attrs))
    return out


def unsupervised(
    image: Any,
    *,
    n_classes: int | None = None,
    preset: str = "auto",
    n_superpixels: int | None = None,
    compactness: float | None = None,
    channels: int | None = None,
    n_conv: int | None = None,
    n_outputs: int | None = None,
    lr: float | None = None,
    momentum: float | None = None,
    max_iter: int | None = None,
    max_time_s: float | None = None,
    min_change: float | None = None,
    work_pixels: int | None = None,
    amp: bool | None = None,
    pixel_refine: bool | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    quality: bool = True,
) -> xr.DataArray:
    """Segment one micrograph without labels (CNN + SLIC superpixels, Kim et al. 2020).

    A CNN is trained on this image alone against the majority label of each SLIC superpixel
    until no more than ``n_classes`` labels remain, the label map stops changing, the time
    budget is spent or ``max_iter`` is reached; labels left beyond ``n_classes`` are merged
    (Ward on the input intensities). Every setting left None comes from ``preset``
    (:func:`unsupervised_settings`): ``"auto"`` chooses from the image size and the device
    (a CPU finishes a 1000 x 1000 image in well under a minute), ``"paper"`` is the paper's
    configuration. The result carries a ``quality`` record from independent evidence
    (:func:`unsupervised_quality`) and a doubtful result also warns.

    Parameters
    ----------
    image : array-like or xr.DataArray
        Grey (y, x) or colour (y, x, channel) micrograph; no NaN.
    n_classes : int, optional
        Stop once at most this many labels remain. ``None`` uses 3, Kanezaki's ``minLabels``
        default that the paper inherits; use :func:`choose_n_classes` to pick it from the data.
        The result can have fewer classes when two merge in the same iteration.
    preset : {"auto", "paper"}
        Where the settings left None come from.
    n_superpixels : int, optional
        SLIC superpixels on the working image (auto: one per 20 px; paper: 50 000).
    compactness : float, optional
        SLIC compactness on the 0-100 lightness scale (paper: 20).
    channels : int, optional
        Filters ``p`` of each 3x3 convolution (auto: 16 on a CPU, 100 on CUDA; paper: 100).
    n_conv : int, optional
        Number of 3x3 conv + ReLU + BatchNorm blocks (paper: 2).
    n_outputs : int, optional
        Number of linear classifiers ``q`` of the final 1x1 convolution (paper: 50).
    lr, momentum : float, optional
        SGD settings (paper: 0.1 and 0.9).
    max_iter : int, optional
        Iteration limit (auto: 500; paper: 1000).
    max_time_s : float, optional
        Time budget of the training in seconds, wall clock (auto: 40 on a CPU, 120 on CUDA;
        paper: none; ``math.inf``: none).
    min_change : float, optional
        Stop when fewer than this fraction of pixels change label for 10 iterations in a row
        (auto: 0.001; paper and 0: not used).
    work_pixels : int, optional
        The CNN works on the image area-downscaled to this many pixels; labels are brought back
        to the full grid through the class scores (auto: 160 000 on a CPU; paper and 0: full
        size).
    amp : bool, optional
        bfloat16 autocast where the CPU has native bfloat16 units, and on CUDA (paper: off).
    pixel_refine : bool, optional
        Refine the class boundaries at pixel level once training ends (auto: on; paper: off):
        every pixel moves to the class with the nearest mean of the input smoothed by a 1 px
        Gaussian, repeated until the map settles (k-means started from the CNN's classes; for
        two classes of a grey image the iterative threshold of Ridler and Calvard, 1978). The
        network is trained against superpixels, so it draws boundaries at their scale and loses
        particles smaller than one; this puts them back. Skipped when the CNN's classes overlap
        in grey level (they are then told apart by texture). Attr ``pixel_refinement`` says
        whether it ran and what fraction of the pixels it changed.
    seed : int
        Seed of the network initialisation; the same seed gives the same result on one device
        (a time budget that ends training can change the result between runs).
    device : {"auto", "cpu", "cuda"}
        Where the CNN runs.
    progress : callable, optional
        ``progress(iteration, max_iter, description)`` after each iteration (see :mod:`metallo._progress`).
    callback : callable, optional
        Called after every iteration with a dict: ``iteration``, ``max_iter``, ``n_labels``,
        ``changed`` (fraction of pixels whose label changed), ``elapsed_s``, ``max_time_s``.
    quality : bool
        Compute the quality record (and warn when doubtful).

    Returns
    -------
    xr.DataArray
        Labels (y, x) on the image's coordinates, uint8, ``0..n_classes-1`` ordered by mean
        intensity (0 darkest). Attrs: ``n_classes`` (found), ``n_iterations``, ``stop_reason``
        (``n_classes``, ``stable``, ``time`` or ``max_iter``), ``train_seconds``,
        ``pixel_refinement`` (JSON: ``applied``, ``iterations``, ``changed_fraction``), ``classes``,
        ``class_mean_intensity``, ``model`` ("unsupervised"), ``checkpoint_sha256`` (""),
        ``config`` (JSON of the settings used) and ``quality`` (JSON) -- ready for
        ``Specimen.add("segmentations/...")``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = np.where(np.arange(32)[None, :] < 16, 0.2, 0.8) + 0.02 * rng.standard_normal((32, 32))
    >>> labels = unsupervised(image, n_classes=2, device="cpu")
    >>> labels.attrs["n_classes"] <= 2
    True
    """
    options = {"n_superpixels": n_superpixels, "compactness": compactness, "channels": channels, "n_conv": n_conv,
               "n_outputs": n_outputs, "lr": lr, "momentum": momentum, "max_iter": max_iter,
               "max_time_s": max_time_s, "min_change": min_change, "work_pixels": work_pixels, "amp": amp,
               "pixel_refine": pixel_refine}
    shape = to_numpy(image).shape if not hasattr(image, "shape") else image.shape
    settings = unsupervised_settings(shape, device=device, preset=preset, **options)
    return _segment([image], n_classes=n_classes, settings=settings, seed=seed, progress=progress,
                    callback=callback, quality=quality)[0]


def unsupervised_stack(
    images: Sequence[Any],
    *,
    n_classes: int | None = None,
    preset: str = "auto",
    seed: int = 0,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    quality: bool = True,
    **options: Any,
) -> list[xr.DataArray]:
    """Segment several micrographs of one material with a single network, so labels agree.

    All images are standardised with common statistics and trained as one batch, so a label
    means the same phase in every image; labels are numbered by mean intensity over the whole
    stack (0 darkest). Images may differ in size (smaller ones are reflect-padded, and the
    padding is left out of training). ``n_superpixels`` applies to each image; the working
    size follows the largest image.

    Parameters
    ----------
    images : sequence of array-like or xr.DataArray
        Micrographs with the same number of channels.
    n_classes, preset, seed, device, progress, callback, quality
        As in :func:`unsupervised`; ``n_classes`` counts labels over the whole stack.
    **options
        The settings of :func:`unsupervised` (``n_superpixels``, ``channels``, ``max_time_s``, ...).

    Returns
    -------
    list of xr.DataArray
        One label map per image, with the attrs of :func:`unsupervised`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> base = np.where(np.arange(32)[None, :] < 16, 0.2, 0.8) * np.ones((32, 1))
    >>> stack = [base + 0.02 * rng.standard_normal((32, 32)), base[:, ::-1] + 0.02 * rng.standard_normal((32, 32))]
    >>> maps = unsupervised_stack(stack, n_classes=2, device="cpu")
    >>> len(maps)
    2
    """
    images = list(images)
    if not images:
        raise ConfigError("no images given to segment")
    shapes = [to_numpy(im).shape for im in images]
    largest = max(shapes, key=lambda s: s[0] * s[1])
    settings = unsupervised_settings(largest, device=device, preset=preset, **options)
    return _segment(images, n_classes=n_classes, settings=settings, seed=seed, progress=progress,
                    callback=callback, quality=quality)


def choose_n_classes(
    image: Any,
    *,
    k_range: Sequence[int] = range(2, 7),
    repeats: int = 3,
    seed: int = 0,
    criterion: str = "Q",
    preset: str = "auto",
    progress: ProgressCallback | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> tuple[int, pd.DataFrame]:
    """Choose the number of classes by the mean of an unsupervised criterion over repeats.

    For each ``k`` the segmentation is repeated with seeds ``seed, seed+1, ...`` and F, F' and
    Q (see :func:`criterion_f`) are averaged, as in the paper (which averaged 10 repeats and
    found F the most appropriate). The default is Q: surplus labels are merged (Ward), so a run
    asked for fewer classes than the image has returns a few large, clean regions, while a run
    at the true count ends as soon as the network reaches it, with small stray regions on
    phase boundaries; F's ``sqrt(R)`` then prefers too few classes (a 4-phase texture scored
    F = 0.030, 0.043, 0.048, 0.063 for k = 2..5), whereas Q charges small regions through its
    ``(R(A) / A)^2`` term and recovers 2, 3 and 4 phases (tests/segment_unsupervised). The superpixels are computed once and shared by all runs;
    the settings come from ``preset`` as in :func:`unsupervised` (with ``"auto"`` each run has
    its own time budget, so ``max_time_s`` x runs bounds the whole search).

    Parameters
    ----------
    image : array-like or xr.DataArray
        Grey or colour micrograph.
    k_range : sequence of int
        Class counts to try (default 2..6).
    repeats : int
        Runs per class count.
    seed : int
        First seed.
    criterion : {"Q", "F", "F_prime"}
        The criterion whose mean decides (lowest wins); ``"F"`` is the paper's choice.
    preset : {"auto", "paper"}
    progress : callable, optional
        ``progress(run, runs, description)`` after each run (see :mod:`metallo._progress`).
    callback : callable, optional
        Called after every run with ``run``, ``runs``, ``k``, ``repeat`` and the run's criteria.
    **options
        Settings of :func:`unsupervised` (``n_superpixels``, ``channels``, ``device``, ...).

    Returns
    -------
    best_k : int
    table : pandas.DataFrame
        Indexed by ``k``: mean and standard deviation of F, F_prime and Q, the mean number of
        classes actually found, and ``best`` (True on the chosen row).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = np.where(np.arange(32)[None, :] < 16, 0.2, 0.8) + 0.02 * rng.standard_normal((32, 32))
    >>> k, table = choose_n_classes(image, k_range=[2, 3], repeats=1, device="cpu")
    >>> list(table.index)
    [2, 3]
    """
    import pandas as pd

    if criterion not in ("F", "F_prime", "Q"):
        raise ConfigError(f"criterion must be 'F', 'F_prime' or 'Q'; got {criterion!r}")
    ks = [int(k) for k in k_range]
    if not ks or repeats < 1:
        raise ConfigError(f"need a non-empty k_range and repeats >= 1; got {list(k_range)} and {repeats}")
    for key in ("n_classes", "seed"):
        if key in options:
            raise ConfigError(f"choose_n_classes sets {key} itself; do not pass it in options")
    device = str(options.pop("device", "auto"))
    settings = unsupervised_settings(to_numpy(image).shape, device=device, preset=preset, **options)
    prepared = _prepare([image], settings)
    values = prepared.arrays[0]
    rows = []
    total = len(ks) * repeats
    notify(progress, 0, total, "choose_n_classes")
    for k in ks:
        for r in range(repeats):
            labels = _segment([image], n_classes=k, settings=settings, seed=seed + r, progress=None,
                              prepared=prepared, quality=False, rescue=False)[0]
            crit = segmentation_criteria(values, labels.values)
            rows.append({"k": k, "repeat": r, "n_found": labels.attrs["n_classes"], **crit})
            notify(progress, len(rows), total, f"choose_n_classes: k={k}")
            if callback is not None:
                callback({"run": len(rows), "runs": total, "k": k, "repeat": r, **crit})
    runs = pd.DataFrame(rows)
    grouped = runs.groupby("k")
    table = pd.DataFrame({
        "F": grouped["F"].mean(), "F_std": grouped["F"].std(ddof=0),
        "F_prime": grouped["F_prime"].mean(), "F_prime_std": grouped["F_prime"].std(ddof=0),
        "Q": grouped["Q"].mean(), "Q_std": grouped["Q"].std(ddof=0),
        "n_found": grouped["n_found"].mean(), "n_regions": grouped["n_regions"].mean(),
    })
    best_k = int(table[criterion].idxmin())
    table["best"] = table.index == best_k
    table.attrs["criterion"] = criterion
    table.attrs["repeats"] = repeats
    table.attrs["settings"] = json.dumps({k: settings[k] for k in (*_SETTING_NAMES, "preset", "device", "scale")})
    return best_k, table


def plot_criteria(table: pd.DataFrame, path: Any, *, normalise: bool = True) -> Any:
    """Plot F, F' and Q against the number of classes (as the paper's Fig. 10) and save a PNG.

    Parameters
    ----------
    table : pandas.DataFrame
        The table from :func:`choose_n_classes`.
    path : str or Path
        Output PNG.
    normalise : bool
        Scale each criterion to [0, 1] so the three share an axis (the paper's Fig. 10b).

    Returns
    -------
    Path

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"F": [2.0, 1.0], "F_prime": [2.0, 1.5], "Q": [3.0, 1.0],
    ...                       "best": [False, True]}, index=pd.Index([2, 3], name="k"))
    >>> plot_criteria(table, "k.png").suffix
    '.png'
    """

    missing = {"F", "F_prime", "Q"} - set(table.columns)
    if missing:
        raise ConfigError(f"criteria table lacks columns {sorted(missing)}; pass the table from choose_n_classes")
    fig = agg_figure((5, 3.5))
    ax = fig.subplots()
    for column, label in (("F", "F"), ("F_prime", "F'"), ("Q", "Q")):
        values = table[column].to_numpy(dtype=float)
        if normalise:
            span = values.max() - values.min()
            values = (values - values.min()) / span if span > 0 else np.zeros_like(values)
        ax.plot(table.index, values, marker="o", label=label)
    if "best" in table.columns and table["best"].any():
        ax.axvline(int(table.index[table["best"].to_numpy()][0]), color="grey", linestyle=":", label="chosen k")
    ax.set_xlabel("number of classes k")
    ax.set_ylabel("normalised criterion" if normalise else "criterion")
    ax.set_xticks(list(table.index))
    ax.legend()
    fig.tight_layout()
    from metallo._figure import save_figure

    return save_figure(fig, path, dpi=120)
