"""Self-supervised pretraining of a segmentation network on unlabelled micrographs.

A lab has far more micrographs than labelled ones. :func:`pretrain` teaches a network the
textures of a material from images alone, by *masked inpainting*: square patches of each tile
are blanked (set to the normalised mean) and the network, the same architecture that will later
segment, learns to paint them back from their surroundings (mean squared error on the blanked
pixels only). The result is a checkpoint whose weights :func:`~metallo.segment.train` takes as
its starting point (``init_weights=``, :func:`~metallo.segment.load_initial_weights`): every tensor but the output layer is copied, and
supervised training goes on from there.

Which images may be used: any micrographs of the material, labelled or not, labels ignored —
including those a held-out evaluation later scores, since their labels are never seen (issue 19
asks for all micrographs in the shared data).

References
----------
.. [1] D. Pathak, P. Krähenbühl, J. Donahue, T. Darrell, A. A. Efros, "Context encoders: feature
   learning by inpainting", CVPR 2016. doi:10.1109/CVPR.2016.278
.. [2] K. He, X. Chen, S. Xie, Y. Li, P. Dollár, R. Girshick, "Masked autoencoders are scalable
   vision learners", CVPR 2022. doi:10.1109/CVPR52688.2022.01553
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metallo._atomic import atomic_path
from metallo._device import resolve_device, torch_seeded
from metallo._progress import ProgressCallback, notify
from metallo._xarray import to_numpy
from metallo.errors import ConfigError
from metallo.segment._checkpoint import autocast_dtype, save_checkpoint
from metallo.segment._data import (
    IMAGE_SUFFIXES,
    Augment,
    LabelledImage,
    SegmentationData,
    TileDataset,
    _grey_if_equal,
    read_micrograph,
    to_unit_range,
)
from metallo.segment._models import SegmentationModel, get_model
from metallo.segment._train import _cosine_lr, _to_device

__all__ = ["PRETEXT", "PretrainResult", "pretrain", "unlabelled_images"]

#: The pretext task recorded in a pretrained checkpoint's config.
PRETEXT = "masked_inpainting"


@dataclass
class PretrainResult:
    """Outcome of :func:`pretrain`: the network, its checkpoint and the loss history.

    ``metrics`` holds ``loss`` (inpainting MSE on blanked pixels over the last epoch, normalised
    units) and ``baseline_loss`` (the same error of painting every blank with the tile's mean of
    the visible pixels): a loss well below the baseline means the network learnt the textures.
    """

    model: SegmentationModel
    checkpoint: Path | None
    history: list[dict[str, Any]]
    metrics: dict[str, Any] = field(default_factory=dict)


def unlabelled_images(sources: Iterable[Any], *, scale: float = 1.0) -> SegmentationData:
    """Micrographs from files, folders (their ``images/`` sub-folder if present) or arrays, labels ignored.

    Parameters
    ----------
    sources : iterable
        Image files, folders of images, arrays (y, x[, channel]) or :class:`SegmentationData`.
    scale : float
        Down-scaling applied to every image (as ``TrainConfig.scale``).

    Returns
    -------
    SegmentationData
        One class (``"unlabelled"``), all label maps zero; images in [0, 1].

    Examples
    --------
    >>> data = unlabelled_images([np.zeros((16, 20), np.uint8), np.ones((8, 8), np.float32)])
    >>> len(data), data.in_channels
    (2, 1)
    """
    samples: list[LabelledImage] = []

    def add(name: str, array: np.ndarray, pixel: float | None = None) -> None:
        image = to_unit_range(_grey_if_equal(np.asarray(array)))
        samples.append(LabelledImage(name, image, np.zeros(image.shape[:2], np.uint8), pixel))

    for k, source in enumerate(sources):
        if isinstance(source, SegmentationData):
            samples += [LabelledImage(s.name, s.image, np.zeros(s.image.shape[:2], np.uint8), s.pixel_size_um)
                        for s in source.samples]
        elif isinstance(source, (str, Path)):
            path = Path(source)
            if path.is_dir():
                folder = path / "images" if (path / "images").is_dir() else path
                files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                if not files:
                    raise ConfigError(f"{folder}: no images (.png/.tif/.jpg) found for pretraining")
            elif path.is_file():
                files = [path]
            else:
                raise ConfigError(f"{path}: no such image file or folder")
            for f in files:
                add(f.stem, to_numpy(read_micrograph(f)))
        else:
            add(f"array{k}", np.asarray(source))
    if not samples:
        raise ConfigError("pretraining needs at least one micrograph")
    data = SegmentationData(samples, ["unlabelled"], source="unlabelled micrographs")
    return data.rescaled(scale) if scale != 1.0 else data


def _patch_mask(shape: tuple[int, int, int], patch: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """(batch, 1, h, w) bool: ``ratio`` of the ``patch``-sized cells blanked, per tile."""
    b, h, w = shape
    gh, gw = math.ceil(h / patch), math.ceil(w / patch)
    cells = torch.rand((b, 1, gh, gw), generator=generator) < ratio
    return cells.repeat_interleave(patch, 2).repeat_interleave(patch, 3)[:, :, :h, :w]


def pretrain(images: Any, *, model: str = "unet", model_kwargs: dict[str, Any] | None = None, scale: float = 1.0,
             tile_size: int = 256, batch_size: int = 4, lr: float = 2e-3, epochs: int = 1000,
             max_cpu_s: float | None = None, max_time_s: float | None = None, patch: int = 8,
             mask_ratio: float = 0.5, device: str = "auto", amp: bool = True, seed: int = 0,
             out: str | Path | None = None, progress: ProgressCallback | None = None) -> PretrainResult:
    """Pretrain a segmentation network on unlabelled micrographs by masked inpainting.

    Parameters
    ----------
    images : str, Path, ndarray, SegmentationData or an iterable of them
        Image files, folders, arrays or labelled data (see :func:`unlabelled_images`); labels
        are never read.
    model, model_kwargs : str, dict
        The architecture that will be fine-tuned (``"unet"``, ``{"base_channels": 16}``).
    scale : float
        Down-scaling of the images, as the supervised training will use it.
    tile_size, batch_size, lr, epochs : training settings (Adam, cosine learning rate annealed
        over ``epochs`` or the time budget, whichever ends first).
    max_cpu_s, max_time_s : float, optional
        Budget in process CPU seconds / wall seconds.
    patch : int
        Side of the blanked squares, px (after ``scale``).
    mask_ratio : float
        Fraction of the squares blanked in each tile.
    device : str
        "auto", "cpu" or "cuda".
    amp : bool
        Mixed precision where the device has it (as :class:`~metallo.segment.TrainConfig`).
    seed : int
    out : str or Path, optional
        Checkpoint to write (atomically); :func:`~metallo.segment.train` reads it as ``init_weights``.
    progress : callable, optional
        ``progress(epoch, epochs, description)`` after each epoch.

    Returns
    -------
    PretrainResult

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> tex = [rng.random((48, 48)).astype(np.float32) for _ in range(2)]
    >>> res = pretrain(tex, model_kwargs={"base_channels": 4}, tile_size=32, epochs=1, device="cpu",
    ...                out="pre.pt")
    >>> res.checkpoint.name
    'pre.pt'
    """
    if not 0.0 < mask_ratio < 1.0:
        raise ConfigError(f"mask_ratio must be in (0, 1); got {mask_ratio}")
    if patch < 1 or tile_size < 8 or batch_size < 1 or epochs < 1 or not lr > 0:
        raise ConfigError(f"patch, tile_size (>= 8), batch_size, epochs and lr must be positive; got {patch}, "
                          f"{tile_size}, {batch_size}, {epochs}, {lr}")
    single = isinstance(images, (str, Path, np.ndarray, SegmentationData))
    data = unlabelled_images([images] if single else list(images), scale=scale)
    dev = resolve_device(device)
    with torch_seeded(seed, dev, deterministic=True):
        return _pretrain(data, model, dict(model_kwargs or {}), scale, tile_size, batch_size, lr, epochs, max_cpu_s,
                         max_time_s, patch, mask_ratio, dev, amp, seed, out, progress)


def _pretrain(data: SegmentationData, model_name: str, model_kwargs: dict[str, Any], scale: float, tile: int,
              batch_size: int, lr: float, epochs: int, max_cpu_s: float | None, max_time_s: float | None, patch: int,
              mask_ratio: float, device: torch.device, amp: bool, seed: int, out: str | Path | None,
              progress: ProgressCallback | None) -> PretrainResult:
    mean, std = data.mean_std()
    tiles = TileDataset(data, tile=tile, mean=mean, std=std, augment=Augment(brightness=0.0, contrast=0.0, gamma=0.0),
                        jitter=True, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    loader: Any = torch.utils.data.DataLoader(tiles, batch_size=batch_size, shuffle=True, generator=generator,  # type: ignore[arg-type]
                                              drop_last=len(tiles) > batch_size)
    channels = data.in_channels
    net = get_model(model_name, n_classes=channels, in_channels=channels, **model_kwargs).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    amp_dtype = autocast_dtype(device, amp)
    if amp_dtype == torch.bfloat16:
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    history: list[dict[str, Any]] = []
    start, cpu_start = time.perf_counter(), time.process_time()

    def done(epoch_progress: float) -> float:
        fractions = [epoch_progress / epochs]
        if max_time_s:
            fractions.append((time.perf_counter() - start) / max_time_s)
        if max_cpu_s:
            fractions.append((time.process_time() - cpu_start) / max_cpu_s)
        return min(1.0, max(fractions))

    notify(progress, 0, epochs, f"pretraining {model_name} (masked inpainting)")
    finished = False
    for epoch in range(epochs):
        tiles.set_epoch(epoch)
        net.train()
        losses: list[float] = []
        baselines: list[float] = []
        for step, (x, _) in enumerate(loader):
            fraction = done(epoch + step / max(len(loader), 1))
            if fraction >= 1.0 and losses:
                finished = True
                break
            for group in optimizer.param_groups:
                group["lr"] = _cosine_lr(lr, fraction)
            mask = _patch_mask((x.shape[0], x.shape[2], x.shape[3]), patch, mask_ratio, generator)
            visible = x * ~mask  # blanked squares at the normalised mean (0)
            blanks = mask.expand_as(x)
            with torch.no_grad():
                # The trivial painter: each blank filled with the mean of its tile's visible pixels.
                seen = (~mask).float()
                fill = (x * seen).sum(dim=(2, 3), keepdim=True) / seen.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
                baselines.append(float(((fill.expand_as(x) - x)[blanks] ** 2).mean()))
            inputs, target = _to_device(visible, device, amp_dtype), x.to(device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                painted = net(inputs)
            loss = ((painted.float() - target) ** 2)[blanks.to(device)].mean()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(float(loss.detach()))
        if losses:
            history.append({"epoch": epoch, "loss": float(np.mean(losses)), "baseline_loss": float(np.mean(baselines)),
                            "time_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu_start,
                            "steps": len(losses)})
            notify(progress, epoch + 1, epochs, f"pretraining {model_name} inpainting loss {history[-1]['loss']:.4f} "
                                                f"(mean fill {history[-1]['baseline_loss']:.4f})")
        if finished or done(epoch + 1) >= 1.0:
            break
    net = net.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    net.eval()
    last = history[-1] if history else {"loss": float("nan"), "baseline_loss": float("nan"), "cpu_s": 0.0, "time_s": 0.0}
    metrics = {"loss": last["loss"], "baseline_loss": last["baseline_loss"], "epochs_run": len(history),
               "train_steps": int(sum(r["steps"] for r in history)), "train_cpu_s": last["cpu_s"],
               "train_wall_s": last["time_s"], "images": [s.name for s in data.samples]}
    config = {"pretext": PRETEXT, "patch": patch, "mask_ratio": mask_ratio, "tile_size": tile, "scale": scale,
              "batch_size": batch_size, "lr": lr, "seed": seed}
    checkpoint = None
    if out is not None:
        with atomic_path(out) as tmp:
            save_checkpoint(tmp, net, classes=[f"reconstruction_{c}" for c in range(data.in_channels)], mean=mean,
                            std=std, pixel_size_um=data.pixel_size_um, tile={"size": tile, "scale": scale},
                            metrics=metrics, config=config)
        checkpoint = Path(out)
    return PretrainResult(net, checkpoint, history, metrics)
