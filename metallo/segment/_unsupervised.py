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
from metallo._xarray import as_image, to_numpy
from metallo.errors import ConfigError
from metallo.segment._criteria import segmentation_criteria
from metallo.segment._superpixels import slic_superpixels

if TYPE_CHECKING:
    import pandas as pd
    import torch

__all__ = [
    "choose_n_classes",
    "plot_criteria",
    "SuperpixelRefinement",
    "refine_by_superpixels",
    "unsupervised",
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
        values = to_numpy(image).astype(np.float64)
        if values.ndim == 2:
            values = values[..., None]
        if values.ndim != 3 or min(values.shape[:2]) < 2:
            raise ConfigError(f"image {index}: expected (y, x) or (y, x, channel) of at least 2x2; got {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ConfigError(f"image {index}: has NaN or infinite pixels; unsupervised needs a value everywhere")
        arrays.append(values)
    if len({a.shape[2] for a in arrays}) > 1:
        raise ConfigError(f"all images must have the same number of channels; got {[a.shape[2] for a in arrays]}")
    return arrays


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
) -> tuple[list[np.ndarray], int]:
    """Train one network on all images; return per-image raw labels and the iteration count.

    Images of different sizes are reflect-padded to a common size; padded pixels carry
    superpixel id -1 and are left out of the refinement, the label count and the loss.
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

    with torch_seeded(seed, device):
        model = _build_network(batch.shape[1], channels, n_conv, n_outputs).to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        x = torch.from_numpy(batch).to(device)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        sp_all = torch.from_numpy(sp_batch.ravel()).to(device)
        valid = sp_all >= 0
        all_valid = bool(valid.all())
        sp_valid = sp_all if all_valid else sp_all[valid]
        if refine is None:
            refine = SuperpixelRefinement(sp_valid, n_superpixels=n_superpixels, n_labels=n_outputs)
        loss_fn = torch.nn.CrossEntropyLoss(ignore_index=_IGNORE)
        autocast = (
            torch.autocast(device_type="cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
        )
        predicted = None
        iteration = 0
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
            refined = refine(kept)
            if all_valid:
                target_labels = refined
            else:
                target_labels = torch.full_like(predicted, _IGNORE)
                target_labels[valid] = refined
            start = tick("refine", start)
            loss = loss_fn(logits, target_labels)
            loss.backward()
            optimizer.step()
            tick("cnn", start)
            notify(progress, iteration, max_iter, f"unsupervised: {n_labels} labels")
            if n_labels <= target:
                break
        assert predicted is not None  # max_iter >= 1 was checked, so the loop ran
        if n_labels > target:
            predicted = _keep_largest_labels(logits.detach(), kept, target, n_outputs)
        result = predicted.view(len(arrays), height, width).cpu().numpy()
    return [result[i, : a.shape[0], : a.shape[1]] for i, a in enumerate(arrays)], iteration


def _keep_largest_labels(logits: torch.Tensor, labels: torch.Tensor, target: int, n_outputs: int) -> torch.Tensor:
    """Reduce to the ``target`` most frequent labels when ``max_iter`` ran out first.

    Training often plateaus with a few extra small labels on phase boundaries; each of their
    pixels takes the network's best-scoring label among the kept ones.
    """
    import torch

    kept_labels = torch.topk(torch.bincount(labels, minlength=n_outputs), target).indices
    return kept_labels[logits[:, kept_labels].argmax(dim=1)]




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
    out.attrs["pixel_size_um"] = reference.attrs.get("pixel_size_um", float("nan"))
    out.attrs.update(attrs)
    return out


def _segment(
    images: Sequence[Any],
    *,
    n_classes: int | None,
    n_superpixels: int,
    compactness: float,
    channels: int,
    n_conv: int,
    n_outputs: int,
    lr: float,
    momentum: float,
    max_iter: int,
    seed: int,
    device: str,
    progress: ProgressCallback | None,
    superpixels: list[np.ndarray] | None = None,
    timings: dict[str, float] | None = None,
) -> list[xr.DataArray]:
    target = _check_parameters(n_classes, n_superpixels, compactness, channels, n_conv, n_outputs, lr,
                               momentum, max_iter)
    if len(images) == 0:
        raise ConfigError("no images given to segment")
    arrays = _as_float_stack(images)
    smallest = min(a.shape[0] * a.shape[1] for a in arrays)
    if smallest < _MIN_PIXELS_PER_SUPERPIXEL * n_superpixels:
        warnings.warn(
            f"n_superpixels={n_superpixels} leaves fewer than {_MIN_PIXELS_PER_SUPERPIXEL} pixels per superpixel "
            f"on a {smallest}-pixel image, so the majority vote has little to work with; the paper used "
            f"about 20 (50 000 on 1000 x 1000)",
            UserWarning, stacklevel=3,
        )
    torch_device = resolve_device(device)
    if superpixels is None:
        start = time.perf_counter()
        superpixels = [slic_superpixels(a, n_superpixels=n_superpixels, compactness=compactness) for a in arrays]
        if timings is not None:
            timings["superpixels"] = timings.get("superpixels", 0.0) + time.perf_counter() - start
    raw, n_iter = _train(
        arrays, superpixels, target=target, channels=channels, n_conv=n_conv, n_outputs=n_outputs, lr=lr,
        momentum=momentum, max_iter=max_iter, seed=seed, device=torch_device, progress=progress,
        timings=timings,
    )
    labels, means = _relabel_by_intensity(arrays, raw)
    config = {
        "method": "unsupervised CNN + SLIC (Kim et al. 2020, after Kanezaki 2018)",
        "n_classes": n_classes, "n_superpixels": n_superpixels, "compactness": compactness,
        "channels": channels, "n_conv": n_conv, "n_outputs": n_outputs, "lr": lr, "momentum": momentum,
        "max_iter": max_iter, "seed": seed, "device": str(torch_device), "n_images": len(arrays),
    }
    found = int(means.size)
    attrs = {
        "n_classes": found,
        "n_iterations": int(n_iter),
        "classes": json.dumps([f"class_{i}" for i in range(found)]),
        "class_mean_intensity": json.dumps([float(m) for m in means]),
        "model": "unsupervised",
        "checkpoint_sha256": "",
        "config": json.dumps(config),
    }
    return [_label_dataarray(image, lab, attrs) for image, lab in zip(images, labels, strict=True)]


def unsupervised(
    image: Any,
    *,
    n_classes: int | None = None,
    n_superpixels: int = 50_000,
    compactness: float = 20.0,
    channels: int = 100,
    n_conv: int = 2,
    n_outputs: int = DEFAULT_N_OUTPUTS,
    lr: float = 0.1,
    momentum: float = 0.9,
    max_iter: int = DEFAULT_MAX_ITER,
    seed: int = 0,
    device: str = "auto",
    progress: ProgressCallback | None = None,
) -> xr.DataArray:
    """Segment one micrograph without labels (CNN + SLIC superpixels, Kim et al. 2020).

    A CNN is trained on this image alone until its argmax labels agree with the majority label
    of each SLIC superpixel and no more than ``n_classes`` labels remain.

    Parameters
    ----------
    image : array-like or xr.DataArray
        Grey (y, x) or colour (y, x, channel) micrograph; no NaN.
    n_classes : int, optional
        Stop once at most this many labels remain. ``None`` uses 3, Kanezaki's ``minLabels``
        default that the paper inherits; use :func:`choose_n_classes` to pick it from the data.
        The result can have fewer classes when two merge in the same iteration.
    n_superpixels : int
        SLIC superpixel count (paper: 50 000 for 1000x1000 images; use ~3 per 100 pixels).
    compactness : float
        SLIC compactness on the 0-100 lightness scale (paper: 20).
    channels : int
        Filters ``p`` of each 3x3 convolution (paper: 100).
    n_conv : int
        Number of 3x3 conv + ReLU + BatchNorm blocks (paper: 2).
    n_outputs : int
        Number of linear classifiers ``q`` of the final 1x1 convolution (paper: 50): the most
        labels the network can start with.
    lr, momentum : float
        SGD settings (paper: 0.1 and 0.9).
    max_iter : int
        Iteration limit (Kanezaki's default 1000).
    seed : int
        Seed of the network initialisation; the same seed gives the same result on one device.
    device : {"auto", "cpu", "cuda"}
        Where the CNN runs; bfloat16 autocast on CUDA.
    progress : callable, optional
        ``progress(iteration, max_iter, description)`` after each iteration (see
        :mod:`metallo._progress`).

    Returns
    -------
    xr.DataArray
        Labels (y, x) on the image's coordinates, uint8, ``0..n_classes-1`` ordered by mean
        intensity (0 darkest). Attrs: ``n_classes`` (found), ``n_iterations``, ``classes``,
        ``class_mean_intensity``, ``model`` ("unsupervised"), ``checkpoint_sha256`` (""), ``config``
        (JSON of the parameters) -- ready for ``Specimen.add("segmentations/...")``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = np.where(np.arange(32)[None, :] < 16, 0.2, 0.8) + 0.02 * rng.standard_normal((32, 32))
    >>> labels = unsupervised(image, n_classes=2, n_superpixels=64, channels=8, max_iter=50, device="cpu")
    >>> labels.attrs["n_classes"] <= 2
    True
    """
    return _segment(
        [image], n_classes=n_classes, n_superpixels=n_superpixels, compactness=compactness, channels=channels,
        n_conv=n_conv, n_outputs=n_outputs, lr=lr, momentum=momentum, max_iter=max_iter, seed=seed,
        device=device, progress=progress,
    )[0]


def unsupervised_stack(
    images: Sequence[Any],
    *,
    n_classes: int | None = None,
    n_superpixels: int = 50_000,
    compactness: float = 20.0,
    channels: int = 100,
    n_conv: int = 2,
    n_outputs: int = DEFAULT_N_OUTPUTS,
    lr: float = 0.1,
    momentum: float = 0.9,
    max_iter: int = DEFAULT_MAX_ITER,
    seed: int = 0,
    device: str = "auto",
    progress: ProgressCallback | None = None,
) -> list[xr.DataArray]:
    """Segment several micrographs of one material with a single network, so labels agree.

    All images are standardised with common statistics and trained as one batch, so a label
    means the same phase in every image; labels are numbered by mean intensity over the whole
    stack (0 darkest). Images may differ in size (smaller ones are reflect-padded, and the
    padding is left out of training). ``n_superpixels`` applies to each image.

    Parameters
    ----------
    images : sequence of array-like or xr.DataArray
        Micrographs with the same number of channels.
    n_classes, n_superpixels, compactness, channels, n_conv, n_outputs, lr, momentum, max_iter, seed, device, progress
        As in :func:`unsupervised`; ``n_classes`` counts labels over the whole stack.

    Returns
    -------
    list of xr.DataArray
        One label map per image, with the attrs of :func:`unsupervised`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> base = np.where(np.arange(32)[None, :] < 16, 0.2, 0.8) * np.ones((32, 1))
    >>> stack = [base + 0.02 * rng.standard_normal((32, 32)), base[:, ::-1] + 0.02 * rng.standard_normal((32, 32))]
    >>> maps = unsupervised_stack(stack, n_classes=2, n_superpixels=64, channels=8, max_iter=50, device="cpu")
    >>> len(maps)
    2
    """
    return _segment(
        list(images), n_classes=n_classes, n_superpixels=n_superpixels, compactness=compactness,
        channels=channels, n_conv=n_conv, n_outputs=n_outputs, lr=lr, momentum=momentum, max_iter=max_iter,
        seed=seed, device=device, progress=progress,
    )


def choose_n_classes(
    image: Any,
    *,
    k_range: Sequence[int] = range(2, 7),
    repeats: int = 3,
    seed: int = 0,
    criterion: str = "F",
    progress: ProgressCallback | None = None,
    **options: Any,
) -> tuple[int, pd.DataFrame]:
    """Choose the number of classes by the mean of an unsupervised criterion over repeats.

    For each ``k`` the segmentation is repeated with seeds ``seed, seed+1, ...`` and F, F' and
    Q (see :func:`criterion_f`) are averaged, as in the paper (which averaged 10 repeats and
    found F the most appropriate). The superpixels are computed once and shared by all runs.

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
    criterion : {"F", "F_prime", "Q"}
        The criterion whose mean decides (lowest wins).
    progress : callable, optional
        ``progress(done, total, "choose_n_classes")`` after each run (see
        :mod:`metallo._progress`).
    **options
        Passed to :func:`unsupervised` (``n_superpixels``, ``channels``, ``device``, ...).

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
    >>> k, table = choose_n_classes(image, k_range=[2, 3], repeats=1, n_superpixels=64, channels=8,
    ...                             max_iter=50, device="cpu")
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
    n_superpixels = int(options.get("n_superpixels", 50_000))
    compactness = float(options.get("compactness", 20.0))
    parameters: dict[str, Any] = {
        "n_superpixels": n_superpixels, "compactness": compactness,
        "channels": int(options.get("channels", 100)), "n_conv": int(options.get("n_conv", 2)),
        "n_outputs": int(options.get("n_outputs", DEFAULT_N_OUTPUTS)), "lr": float(options.get("lr", 0.1)),
        "momentum": float(options.get("momentum", 0.9)), "max_iter": int(options.get("max_iter", DEFAULT_MAX_ITER)),
        "device": str(options.get("device", "auto")),
    }
    unknown = set(options) - set(parameters)
    if unknown:
        raise ConfigError(f"unknown options {sorted(unknown)}; valid: {sorted(parameters)}")
    values = _as_float_stack([image])[0]
    superpixels = [slic_superpixels(values, n_superpixels=n_superpixels, compactness=compactness)]
    rows = []
    notify(progress, 0, len(ks) * repeats, "choose_n_classes")
    for k in ks:
        for r in range(repeats):
            labels = _segment([image], n_classes=k, seed=seed + r, progress=None, superpixels=superpixels,
                              **parameters)[0]
            crit = segmentation_criteria(values, labels.values)
            rows.append({"k": k, "repeat": r, "n_found": labels.attrs["n_classes"], **crit})
            notify(progress, len(rows), len(ks) * repeats, "choose_n_classes")
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
    from pathlib import Path

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
    out = Path(path)
    fig.savefig(out, dpi=120)
    return out
