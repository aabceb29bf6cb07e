"""Training, k-fold cross-validation and evaluation of supervised segmentation models.

Defaults follow Durmaz et al. (2021): Adam with cosine annealing, tiles of
256 px (LOM) / 512 px (SEM), 5-fold cross-validation, evaluation on whole images; focal loss
with gamma = 2 and inverse-frequency alpha and AdamW are available as in DeCost et al. (2019).

References
----------
.. [1] A. R. Durmaz, M. Müller, B. Lei, A. Thomas, D. Britz, E. A. Holm, C. Eberl, F. Mücklich,
   P. Gumbsch, "A deep learning approach for complex microstructure inference",
   Nature Communications 12, 6272 (2021). doi:10.1038/s41467-021-26565-5
.. [2] B. L. DeCost, B. Lei, T. Francis, E. A. Holm, "High throughput quantitative metallography
   for complex microstructures using deep learning: a case study in ultrahigh carbon steel",
   Microscopy and Microanalysis 25(1), 21-29 (2019). doi:10.1017/S1431927618015635
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from metallo._atomic import atomic_write_json
from metallo._config import load_yaml, resolve_path
from metallo._device import resolve_device, torch_seeded
from metallo._progress import ProgressCallback, notify
from metallo.errors import ConfigError
from metallo.segment._checkpoint import (
    autocast_dtype,
    load_checkpoint,
    load_initial_weights,
    save_checkpoint,
)
from metallo.segment._data import (
    Augment,
    SegmentationData,
    TileDataset,
    default_tile_size,
    load_training_folder,
)
from metallo.segment._infer import (
    _predict_scaled,
    augment_zoom,
    predict_array,
    predict_resized,
    scale_to_pixel_size,
    seen_pixel_sizes,
    unseen_scale_ratio,
)
from metallo.segment._losses import get_loss, inverse_frequency_weights
from metallo.segment._metrics import (
    boundary_errors,
    boundary_summary,
    confusion_matrix,
    metrics_from_confusion,
)
from metallo.segment._models import PixelNet, get_model
from metallo.segment._novelty import build_reference
from metallo.segment._parallel import run_parallel

__all__ = ["CVResult", "TrainConfig", "TrainResult", "cross_validate", "evaluate", "train"]


#: Smallest training tile (px): the U-Nets halve a tile four times (2 px left at 32).
MIN_TILE = 32


@dataclass
class TrainConfig:
    """Everything a training run needs; a YAML file or dict with these keys builds one.

    Parameters
    ----------
    data : str, optional
        Training-data folder (``images/`` + ``labels/`` [+ ``classes.json``]).
    model : str
        ``"unet"``, ``"unet_vgg16"`` or ``"pixelnet"``.
    model_kwargs : dict
        Model options (``base_channels``, ``weights="imagenet"``, ...).
    n_classes : int, optional
        Default: from the data.
    classes : list of str, optional
        Class names for a data folder without ``classes.json`` (label value i is
        ``classes[i]``).
    loss : str
        ``"ce"``, ``"weighted_ce"``, ``"focal"``, ``"dice"``, ``"ce_dice"``, ``"lovasz"`` or
        ``"ce_lovasz"``.
    loss_kwargs : dict
        e.g. ``{"gamma": 2, "alpha": "inverse_frequency"}``; ``weight``/``alpha`` may be
        ``"inverse_frequency"`` or the milder ``"sqrt_inverse_frequency"`` (computed from the
        training labels).
    modality : str
        "LOM" or "SEM": sets the default tile size (256 / 512 px).
    tile_size : int, optional
        Training tile side in px after scaling.
    scale : float
        Down-scaling factor applied to images before tiling (1 = native).
    pixel_size_um : float, optional
        Resample every image to this pixel size (µm/px) from its own pixel size before tiling,
        instead of ``scale``: micrographs at different magnifications then show features at one
        physical scale, and prediction resamples new micrographs the same way (their pixel
        size must be known).
    epochs, batch_size : int
    lr, weight_decay : float
    optimizer : "adam" or "adamw"
    schedule : "cosine", "plateau" or "none"
        ``"cosine"`` anneals the learning rate to 0, step by step, over ``epochs`` or over
        ``max_time_s`` / ``max_cpu_s`` when one runs out first (training then ends at the
        budget with a fully annealed model).
    patience : int, optional
        Early stopping after this many epochs without improvement (None: off).
    folds : int
        Folds of :func:`cross_validate` (5).
    jobs : int
        Folds of :func:`cross_validate` trained side by side in this many worker processes,
        each with its share of the CPU threads (1: one after the other). On a CPU this runs
        more optimiser steps per CPU-second (see :mod:`metallo.segment._parallel`); on a GPU
        the folds always run in turn. A script using it needs ``if __name__ == "__main__":``.
    augment : bool or dict
        ``True`` for the defaults of :class:`~metallo.segment.Augment`, or its options.
    jitter : bool
        Shift the tile grid randomly each epoch.
    balance_classes : float
        Fraction of the training tiles centred on a pixel of a uniformly drawn class
        (class-balanced sampling for rare classes; see :class:`~metallo.segment.TileDataset`).
    ignore_boundary_px : float
        Leave the labels within this many pixels of another class out of the loss (at the
        training scale; 1: one pixel on each side of every class boundary; 0: train on every
        labelled pixel). For labels whose class edges are placed a few pixels off; see
        :func:`~metallo.segment.boundary_band`. Evaluation still scores every labelled pixel.
    freeze_encoder_epochs : int
        Epochs with the VGG16 encoder frozen (PixelNet recipe), then fine-tuning.
    init_weights : str, optional
        Start from the weights of this checkpoint instead of a random initialisation: a
        :func:`~metallo.segment.pretrain` output (self-supervised, on unlabelled micrographs) or
        any metallo checkpoint of the same model and options. Every tensor but the output layer
        is copied (see :func:`~metallo.segment.load_initial_weights`).
    steps_per_epoch : int, optional
        Cap on batches per epoch.
    max_time_s : float, optional
        Stop training after this wall time (seconds).
    max_cpu_s : float, optional
        Stop training after this much CPU time of the training process (user + system
        seconds over all its threads). Unlike wall time it does not shrink when other jobs
        share the machine, so arms compared under one budget get the same compute.
    ema_decay : float, optional
        Keep an exponential moving average of the weights (decay per optimiser step, e.g.
        0.995: the last ~200 steps weigh most) and use the averaged weights as the trained model
        (Polyak averaging; batch-norm statistics are re-estimated with them). ``None``: the
        last weights.
    eval_tile, eval_overlap : int
        Tiling of whole-image evaluation (``eval_tile=None``: one pass per image).
    eval_tta : bool
        Evaluate with test-time augmentation (8 flips/rotations averaged, see
        :func:`~metallo.segment.predict`).
    device : str
        "auto", "cpu" or "cuda".
    amp : bool
        Mixed-precision training: float16 autocast with gradient scaling on CUDA, bfloat16
        autocast (and channels-last tensors) on CPUs with AMX or AVX512-BF16 units, where a
        U-Net trains 2-3x faster; float32 elsewhere. Weights stay float32.
    seed : int
    out_dir : str, optional
        Where checkpoints and metrics go (None: nothing written).
    num_workers : int
        DataLoader workers.
    """

    data: str | None = None
    model: str = "unet"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    n_classes: int | None = None
    classes: list[str] | None = None
    loss: str = "ce"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    modality: str = "LOM"
    tile_size: int | None = None
    scale: float = 1.0
    pixel_size_um: float | None = None
    epochs: int = 50
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    schedule: str = "cosine"
    patience: int | None = None
    folds: int = 5
    jobs: int = 1
    augment: bool | dict[str, Any] = True
    jitter: bool = True
    balance_classes: float = 0.0
    ignore_boundary_px: float = 0.0
    freeze_encoder_epochs: int = 0
    init_weights: str | None = None
    steps_per_epoch: int | None = None
    max_time_s: float | None = None
    max_cpu_s: float | None = None
    ema_decay: float | None = None
    eval_tile: int | None = None
    eval_overlap: int = 64
    eval_tta: bool = False
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    out_dir: str | None = "metallo-runs"
    num_workers: int = 0

    @classmethod
    def from_any(cls, config: Any = None, **overrides: Any) -> TrainConfig:
        """Build from a TrainConfig, a mapping, a YAML file or a data folder, plus overrides.

        Examples
        --------
        >>> TrainConfig.from_any({"model": "unet", "epochs": 3}, lr=1e-4).lr
        0.0001
        """
        if isinstance(config, TrainConfig):
            values = asdict(config)
        elif config is None:
            values = {}
        elif isinstance(config, Mapping):
            values = dict(config)
        elif isinstance(config, (str, Path)):
            path = Path(config)
            if path.is_dir():
                values = {"data": str(path)}
            elif path.is_file():
                # data_schemas/train_config.json: errors name the key and its line
                values, _ = load_yaml(path, schema_name="train_config", what="training config")
                for key in ("data", "init_weights"):
                    if values.get(key):
                        values[key] = resolve_path(values[key], path.parent)
            else:
                raise ConfigError(f"{path}: neither a YAML config file nor a training-data folder")
        else:
            raise ConfigError(f"config must be a mapping, YAML file or data folder; got {type(config).__name__}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - valid)
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; valid: {sorted(valid)}")
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ConfigError on values that cannot work."""
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch_size must be >= 1; got {self.epochs}, {self.batch_size}")
        if self.optimizer.lower() not in ("adam", "adamw"):
            raise ConfigError(f"optimizer must be 'adam' or 'adamw'; got {self.optimizer!r}")
        if self.schedule.lower() not in ("cosine", "plateau", "none"):
            raise ConfigError(f"schedule must be 'cosine', 'plateau' or 'none'; got {self.schedule!r}")
        if self.folds < 2:
            raise ConfigError(f"folds must be >= 2; got {self.folds}")
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, (int, np.integer)) or self.jobs < 1:
            raise ConfigError(f"jobs must be a whole number >= 1 (worker processes); got {self.jobs!r}")
        if self.lr <= 0 or self.scale <= 0:
            raise ConfigError(f"lr and scale must be positive; got lr={self.lr}, scale={self.scale}")
        for name in ("max_time_s", "max_cpu_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be a positive number of seconds or null; got {value}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be between 0 and 1 (e.g. 0.995) or null; got {self.ema_decay}")
        if self.pixel_size_um is not None and not self.pixel_size_um > 0:
            raise ConfigError(f"pixel_size_um must be a positive size in µm/px; got {self.pixel_size_um}")
        if not self.ignore_boundary_px >= 0:
            raise ConfigError(f"ignore_boundary_px must be a distance >= 0 in pixels; got {self.ignore_boundary_px}")
        if self.pixel_size_um is not None and self.scale != 1.0:
            raise ConfigError("give either scale or pixel_size_um, not both")
        if self.tile_size is not None and not (isinstance(self.tile_size, (int, np.integer))
                                               and MIN_TILE <= self.tile_size):
            # A 7-px tile trained for minutes without one line of output: an epoch of tens of
            # thousands of tiles, each smaller than what the network halves four times.
            raise ConfigError(f"tile_size must be a whole number of pixels >= {MIN_TILE} (the networks halve a tile "
                              f"four times; the papers' tiles are 256 px for LOM, 512 for SEM); got {self.tile_size!r}")

    @property
    def tile(self) -> int:
        return int(self.tile_size or default_tile_size(self.modality))


@dataclass
class TrainResult:
    """Outcome of :func:`train`: the model (best epoch), its checkpoint and history."""

    model: nn.Module
    checkpoint: Path | None
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    config: TrainConfig
    info: dict[str, Any]


@dataclass
class CVResult:
    """Outcome of :func:`cross_validate`: per-fold metrics, mean and standard deviation.

    ``pooled`` holds the metrics of the summed confusion matrix over all held-out images.
    """

    folds: list[dict[str, Any]]
    mean: dict[str, Any]
    std: dict[str, Any]
    pooled: dict[str, Any]
    classes: list[str]
    checkpoints: list[Path | None]
    config: TrainConfig

    def table(self) -> pd.DataFrame:
        """One row per fold plus ``mean`` and ``std``: accuracy, mean IoU, IoU per class."""
        rows = []
        for k, m in enumerate(self.folds):
            rows.append({"fold": str(k), "accuracy": m["accuracy"], "mean_iou": m["mean_iou"],
                         **{f"iou_{c}": v for c, v in zip(self.classes, m["iou"], strict=True)}})
        for label, agg in (("mean", self.mean), ("std", self.std)):
            rows.append({"fold": label, "accuracy": agg["accuracy"], "mean_iou": agg["mean_iou"],
                         **{f"iou_{c}": v for c, v in zip(self.classes, agg["iou"], strict=True)}})
        return pd.DataFrame(rows).set_index("fold")

    def to_dict(self) -> dict[str, Any]:
        return {"classes": self.classes, "folds": self.folds, "mean": self.mean, "std": self.std,
                "pooled": self.pooled, "checkpoints": [str(c) if c else None for c in self.checkpoints],
                "config": asdict(self.config)}


def _resolve_class_weights(kwargs: dict[str, Any], data: SegmentationData) -> dict[str, Any]:
    out = dict(kwargs)
    for key in ("alpha", "weight"):
        if isinstance(out.get(key), str):
            powers = {"inverse_frequency": 1.0, "sqrt_inverse_frequency": 0.5}
            if out[key] not in powers:
                raise ConfigError(f"loss option {key}={out[key]!r}: expected a list of floats or one of "
                                  f"{sorted(powers)}")
            out[key] = inverse_frequency_weights([s.labels for s in data.samples], n_classes=data.n_classes,
                                                 ignore_index=data.ignore_index, power=powers[out[key]]).tolist()
    out.setdefault("ignore_index", data.ignore_index)
    return out


def _load_data(cfg: TrainConfig, data: SegmentationData | None) -> SegmentationData:
    if data is not None:
        return data
    if not cfg.data:
        raise ConfigError("no training data: give a SegmentationData, a data folder or config key 'data'")
    return load_training_folder(cfg.data, n_classes=cfg.n_classes, classes=cfg.classes)


#: Most training images whose cells make a model's novelty reference.
MAX_REFERENCE_IMAGES = 64


def novelty_cells(model: nn.Module, data: SegmentationData, *, mean: list[float], std: list[float],
                  scale: float = 1.0, device: str | torch.device = "auto",
                  pixel_size_um: float | None = None) -> list[np.ndarray | None]:
    """Cell descriptors (:mod:`metallo.segment._novelty`) of each image of ``data``, predicted as
    :func:`~metallo.segment.predict` would (same scale, whole image where it fits, no TTA).

    At most ``MAX_REFERENCE_IMAGES`` images, evenly spread over the set: the reference keeps
    2000 cells, and a forward pass per image is the cost."""
    out: list[np.ndarray | None] = []
    samples = data.samples
    if len(samples) > MAX_REFERENCE_IMAGES:
        samples = [samples[i] for i in np.linspace(0, len(samples) - 1, MAX_REFERENCE_IMAGES).round().astype(int)]
    for s in samples:
        image_scale = scale if pixel_size_um is None else scale_to_pixel_size(s.pixel_size_um, pixel_size_um, s.name)
        maps = _predict_scaled(model, s.image, image_scale, mean=mean, std=std, device=device, collect_cells=True)
        out.append(maps["novelty_cells"][0])
    return out


def evaluate_model(model: nn.Module, data: SegmentationData, *, mean: list[float], std: list[float],
                   scale: float = 1.0, tile: int | None = None, overlap: int = 64,
                   device: str | torch.device = "auto", amp: bool = True, tta: bool = False,
                   pixel_size_um: float | None = None, seen_range_um: Sequence[float] | None = None,
                   zoom: float = 0.0) -> dict[str, Any]:
    """Whole-image metrics of ``model`` on ``data`` (pooled confusion plus per image).

    Images are resized by ``scale``, or to ``pixel_size_um`` from their own pixel size, for
    the prediction; the metrics are counted on the original label grid. With ``seen_range_um``
    (the training images' pixel sizes, for a model trained at their own resolution), an image
    whose pixel size lies outside it beyond :func:`~metallo.segment._infer.unseen_scale_ratio`'s
    limit is resampled to the nearest seen size, as :func:`~metallo.segment.predict` does.
    ``boundary`` (pooled) and each image's ``boundary_error_share`` say how many of the errors lie
    within 2 px of a labelled class boundary (:func:`~metallo.segment.boundary_errors`).
    """
    total = np.zeros((data.n_classes, data.n_classes), np.int64)
    per_image = []
    near: dict[str, int] = {}
    for s in data.samples:
        if pixel_size_um is None:
            image_scale = scale * unseen_scale_ratio(s.pixel_size_um, seen_range_um, zoom)
        else:
            image_scale = scale_to_pixel_size(s.pixel_size_um, pixel_size_um, s.name)
        probs: np.ndarray | None
        if image_scale != 1.0:
            probs = predict_resized(model, s.image, image_scale, mean=mean, std=std, tile=tile, overlap=overlap,
                                    device=device, amp=amp, tta=tta)
        else:
            _, probs = predict_array(model, s.image, mean=mean, std=std, tile=tile, overlap=overlap, device=device,
                                     amp=amp, probabilities=True, tta=tta)
        assert probs is not None
        pred = probs.argmax(axis=-1)
        cm = confusion_matrix(s.labels, pred, n_classes=data.n_classes, ignore_index=data.ignore_index)
        total += cm
        m = metrics_from_confusion(cm, classes=data.classes)
        counts = boundary_errors(s.labels, pred, ignore_index=data.ignore_index)
        near = {k: near.get(k, 0) + v for k, v in counts.items()}
        per_image.append({"image": s.name, "accuracy": m["accuracy"], "mean_iou": m["mean_iou"], "iou": m["iou"],
                          "boundary_error_share": boundary_summary(counts)["error_share"]})
    metrics = metrics_from_confusion(total, classes=data.classes)
    metrics["images"] = per_image
    metrics["boundary"] = boundary_summary(near)
    return metrics


def _progress(epochs_done: float, cfg: TrainConfig, elapsed_s: float, cpu_s: float = 0.0) -> float:
    """Fraction of the training budget used: epochs, wall or CPU time, whichever runs out first."""
    progress = epochs_done / cfg.epochs
    if cfg.max_time_s is not None:
        progress = max(progress, elapsed_s / cfg.max_time_s)
    if cfg.max_cpu_s is not None:
        progress = max(progress, cpu_s / cfg.max_cpu_s)
    return min(1.0, progress)


def _cosine_lr(lr: float, progress: float) -> float:
    """Cosine annealing from ``lr`` to 0 over ``progress`` in [0, 1]."""
    return 0.5 * lr * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def _to_device(x: torch.Tensor, device: torch.device, amp_dtype: torch.dtype | None) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if amp_dtype == torch.bfloat16 and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _recalibrate_batchnorm(model: nn.Module, loader: Any, *, device: torch.device, ignore_index: int,
                           generator: torch.Generator, amp_dtype: torch.dtype | None,
                           max_batches: int = 50) -> None:
    """Re-estimate batch-norm running statistics with the final weights ("precise BN").

    The exponential running averages lag behind the weights; after short trainings (tens of
    steps) the lag makes eval-mode predictions much worse than train-mode ones.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the recalibration batches
    model.train()
    with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        for i, (x, y) in enumerate(loader):
            if i >= max_batches:
                break
            x, y = _to_device(x, device, amp_dtype), y.to(device)
            if isinstance(model, PixelNet):
                model.sample_logits(x, y, generator=generator, ignore_index=ignore_index)
            else:
                model(x)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


def train(config_or_dataset: Any = None, *, val_data: SegmentationData | None = None,
          select_on_val: bool = False, checkpoint_name: str = "model.pt",
          progress: ProgressCallback | None = None, **overrides: Any) -> TrainResult:
    """Train a segmentation model on tiles of labelled micrographs.

    Parameters
    ----------
    config_or_dataset : TrainConfig, dict, str, Path or SegmentationData
        A config (mapping or YAML file), a training-data folder, or loaded data.
    val_data : SegmentationData, optional
        Held-out images evaluated on whole images at the end (and each epoch when
        ``select_on_val``).
    select_on_val : bool
        Keep the epoch with the best validation mean IoU and stop early on it; otherwise
        the training loss drives the plateau schedule and early stopping, and the held-out
        images stay unseen until the final evaluation.
    checkpoint_name : str
        File name inside ``out_dir``.
    progress : callable, optional
        ``progress(epoch, epochs, description)`` after each epoch (see :mod:`metallo._progress`).
    **overrides
        Any :class:`TrainConfig` field.

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> from metallo.segment import LabelledImage, SegmentationData
    >>> labels = (np.arange(32) >= 16).astype(np.uint8)[None, :].repeat(32, 0)     # ferrite | pearlite
    >>> images = [(0.2 + 0.5 * labels + 0.05 * i)[..., None].astype(np.float32) for i in range(2)]
    >>> data = SegmentationData([LabelledImage(f"m{i}", im, labels) for i, im in enumerate(images)],
    ...                         classes=["ferrite", "pearlite"])
    >>> result = train(data, model="unet", model_kwargs={"base_channels": 4}, epochs=1, tile_size=32,
    ...                device="cpu", out_dir="runs")        # or train("data/uhcs", ...) on a folder
    >>> result.checkpoint
    PosixPath('runs/model.pt')
    """
    data = config_or_dataset if isinstance(config_or_dataset, SegmentationData) else None
    cfg = TrainConfig.from_any(None if data is not None else config_or_dataset, **overrides)
    data = _load_data(cfg, data)
    if cfg.n_classes is not None and cfg.n_classes != data.n_classes:
        raise ConfigError(f"n_classes={cfg.n_classes} but the data has {data.n_classes} classes {data.classes}")
    device = resolve_device(cfg.device)
    # Tiles, augmentation and shuffling draw from seeded generators of their own; weight
    # initialisation draws from torch's global one, forked and seeded here.
    with torch_seeded(cfg.seed, device, deterministic=True):
        return _fit(cfg, data, device, val_data=val_data, select_on_val=select_on_val,
                    checkpoint_name=checkpoint_name, progress=progress)


class _WeightAverage:
    """Exponential moving average of a model's floating-point weights and buffers (Polyak averaging).

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so that a
    short training is not dominated by its random initial weights.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        state = model.state_dict()
        keys = list(self.shadow)
        torch._foreach_lerp_([self.shadow[k] for k in keys], [state[k].detach() for k in keys], 1.0 - decay)

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """``model``'s state with the averaged tensors in place of its own."""
        return {k: self.shadow[k].clone() if k in self.shadow else v.clone() for k, v in model.state_dict().items()}


def _fit(cfg: TrainConfig, data: SegmentationData, device: torch.device, *, val_data: SegmentationData | None,
         select_on_val: bool, checkpoint_name: str, progress: ProgressCallback | None) -> TrainResult:
    """The training loop of :func:`train`, under its seeded torch generators."""
    scaled = data.rescaled(cfg.scale) if cfg.pixel_size_um is None else data.resampled_to(cfg.pixel_size_um)
    mean, std = scaled.mean_std()
    augment = Augment.from_config(cfg.augment)
    # Held-out images at a pixel size the training images do not cover are judged as predict()
    # would segment them: resampled to the nearest one seen.
    seen: dict[str, Any] = {"seen_range_um": data.pixel_size_range_um if cfg.pixel_size_um is None else None,
                            "zoom": augment_zoom(cfg.augment)}
    tiles = TileDataset(scaled.without_boundaries(cfg.ignore_boundary_px), tile=cfg.tile, mean=mean, std=std, augment=augment, jitter=cfg.jitter, seed=cfg.seed,
                        balance=cfg.balance_classes)
    generator = torch.Generator().manual_seed(cfg.seed)
    # TileDataset is a map-style dataset without subclassing torch's Dataset.
    loader: Any = torch.utils.data.DataLoader(tiles, batch_size=cfg.batch_size, shuffle=True, generator=generator,  # type: ignore[arg-type]
                                              num_workers=cfg.num_workers, drop_last=len(tiles) > cfg.batch_size)
    model = get_model(cfg.model, n_classes=data.n_classes, in_channels=data.in_channels, **cfg.model_kwargs)
    initial = None
    if cfg.init_weights:
        initial = load_initial_weights(model, cfg.init_weights)
    model = model.to(device)
    loss_fn = get_loss(cfg.loss, **_resolve_class_weights(cfg.loss_kwargs, scaled)).to(device)
    opt_cls = torch.optim.AdamW if cfg.optimizer.lower() == "adamw" else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = cfg.schedule.lower()
    scheduler: Any = None
    if schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5,
                                                               patience=max(1, (cfg.patience or 10) // 3))
    amp_dtype = autocast_dtype(device, cfg.amp)
    if amp_dtype == torch.bfloat16:
        # oneDNN's fast layout for bfloat16 convolutions
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    averager = _WeightAverage(model, cfg.ema_decay) if cfg.ema_decay is not None else None
    encoder = getattr(model, "features", None)
    history: list[dict[str, Any]] = []
    best_score, best_state, best_epoch, stale = -math.inf, None, 0, 0
    start, cpu_start = time.perf_counter(), time.process_time()
    notify(progress, 0, cfg.epochs, f"training {cfg.model}")
    for epoch in range(cfg.epochs):
        tiles.set_epoch(epoch)
        if encoder is not None:
            encoder.requires_grad_(epoch >= cfg.freeze_encoder_epochs)
        model.train()
        losses: list[float] = []
        n_steps = len(loader) if cfg.steps_per_epoch is None else min(len(loader), cfg.steps_per_epoch)
        for step, (x, y) in enumerate(loader):
            if step >= n_steps:
                break
            if schedule == "cosine":
                done_fraction = _progress(epoch + step / max(n_steps, 1), cfg, time.perf_counter() - start,
                                          time.process_time() - cpu_start)
                if done_fraction >= 1.0 and losses:
                    break  # the budget ran out mid-epoch: the learning rate is already 0
                for group in optimizer.param_groups:
                    group["lr"] = _cosine_lr(cfg.lr, done_fraction)
            x, y = _to_device(x, device, amp_dtype), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                if isinstance(model, PixelNet):
                    logits, target = model.sample_logits(x, y, generator=generator, ignore_index=data.ignore_index)
                else:
                    logits, target = model(x), y
            loss = loss_fn(logits.float(), target)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if averager is not None:
                averager.update(model)
            losses.append(float(loss.detach()))
        record: dict[str, Any] = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"),
                                  "lr": optimizer.param_groups[0]["lr"], "time_s": time.perf_counter() - start,
                                  "cpu_s": time.process_time() - cpu_start, "steps": len(losses)}
        score = -record["loss"]
        # With weight averaging, the averaged weights are the model that is judged and kept.
        if select_on_val and val_data is not None:
            if averager is not None:
                live = copy.deepcopy(model.state_dict())
                model.load_state_dict(averager.state_dict(model))
            vm = evaluate_model(model, val_data, mean=mean, std=std, scale=cfg.scale, tile=cfg.eval_tile,
                                overlap=cfg.eval_overlap, device=device, amp=cfg.amp, tta=cfg.eval_tta,
                                pixel_size_um=cfg.pixel_size_um, **seen)
            if averager is not None:
                model.load_state_dict(live)
            record.update(val_accuracy=vm["accuracy"], val_mean_iou=vm["mean_iou"])
            score = vm["mean_iou"]
        history.append(record)
        if scheduler is not None:
            scheduler.step(score)
        if score > best_score:
            best_score, best_epoch, stale = score, epoch, 0
            best_state = averager.state_dict(model) if averager is not None else copy.deepcopy(model.state_dict())
        else:
            stale += 1
        notify(progress, epoch + 1, cfg.epochs, f"training {cfg.model} loss {record['loss']:.4f}")
        if cfg.patience is not None and stale >= cfg.patience:
            break
        if cfg.max_time_s is not None and record["time_s"] >= cfg.max_time_s:
            break
        if cfg.max_cpu_s is not None and record["cpu_s"] >= cfg.max_cpu_s:
            break
        if schedule == "cosine" and _progress(epoch + 1, cfg, record["time_s"], record["cpu_s"]) >= 1.0:
            break
    if best_state is not None and (select_on_val or schedule == "plateau" or cfg.patience is not None):
        model.load_state_dict(best_state)
    elif averager is not None:
        model.load_state_dict(averager.state_dict(model))
    _recalibrate_batchnorm(model, loader, device=device, ignore_index=data.ignore_index, generator=generator,
                           amp_dtype=amp_dtype)
    model = model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    model.eval()
    metrics: dict[str, Any] = {"best_epoch": best_epoch, "epochs_run": len(history),
                               "train_steps": int(sum(r["steps"] for r in history)),
                               "train_cpu_s": history[-1]["cpu_s"] if history else 0.0,
                               "train_wall_s": history[-1]["time_s"] if history else 0.0}
    if initial is not None:
        metrics["init_weights"] = initial
    if val_data is not None:
        metrics.update(evaluate_model(model, val_data, mean=mean, std=std, scale=cfg.scale, tile=cfg.eval_tile,
                                      overlap=cfg.eval_overlap, device=device, amp=cfg.amp, tta=cfg.eval_tta,
                                    pixel_size_um=cfg.pixel_size_um, **seen))
        if cfg.eval_tta:
            # Prediction on a CPU uses TTA (8x the compute) only where this measured gain matters.
            plain = evaluate_model(model, val_data, mean=mean, std=std, scale=cfg.scale, tile=cfg.eval_tile,
                                   overlap=cfg.eval_overlap, device=device, amp=cfg.amp, tta=False,
                                   pixel_size_um=cfg.pixel_size_um, **seen)
            metrics.update(accuracy_without_tta=plain["accuracy"], mean_iou_without_tta=plain["mean_iou"],
                           tta_gain=metrics["mean_iou"] - plain["mean_iou"])
    tile_info = {"size": cfg.tile, "scale": cfg.scale, "overlap": cfg.eval_overlap, "modality": cfg.modality,
                 "tta": cfg.eval_tta, "pixel_size_um": cfg.pixel_size_um}
    if cfg.pixel_size_um is None and data.pixel_size_range_um is not None:
        # The pixel sizes the model has seen (before the training scale), which predict judges new images by.
        tile_info["pixel_size_range_um"] = list(data.pixel_size_range_um)
    pixel_size = cfg.pixel_size_um if cfg.pixel_size_um is not None else data.pixel_size_um
    # What the network sees in its training images, for predict's novelty check.
    novelty = build_reference(novelty_cells(model, data, mean=mean, std=std, scale=cfg.scale, device=device,
                                            pixel_size_um=cfg.pixel_size_um), seed=cfg.seed)
    info = {"model": model.model_name, "classes": data.classes, "ignore_index": data.ignore_index,
            "normalization": {"mean": mean, "std": std}, "pixel_size_um": pixel_size,
            "tile": tile_info, "metrics": metrics, "novelty": novelty, "sha256": ""}
    model.metallo_info = info
    checkpoint = None
    if cfg.out_dir is not None:
        checkpoint = save_checkpoint(Path(cfg.out_dir) / checkpoint_name, model, classes=data.classes, mean=mean,
                                     std=std, pixel_size_um=pixel_size, tile=tile_info, metrics=metrics,
                                     config=asdict(cfg), ignore_index=data.ignore_index, novelty=novelty)
    return TrainResult(model, checkpoint, history, metrics, cfg, info)


def fold_indices(n_images: int, folds: int, *, seed: int = 0) -> list[np.ndarray]:
    """Held-out image indices of each fold: a seeded permutation split into ``folds`` parts.

    Examples
    --------
    >>> [f.tolist() for f in fold_indices(5, 2, seed=0)]
    [[2, 4, 3], [0, 1]]
    """
    if folds > n_images:
        raise ConfigError(f"{folds}-fold cross-validation needs at least {folds} images; got {n_images}")
    order = np.random.default_rng(seed).permutation(n_images)
    return list(np.array_split(order, folds))


def _aggregate(fold_metrics: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    acc = np.array([m["accuracy"] for m in fold_metrics])
    miou = np.array([m["mean_iou"] for m in fold_metrics])
    iou = np.array([m["iou"] for m in fold_metrics], dtype=np.float64)
    prec = np.array([m["precision"] for m in fold_metrics], dtype=np.float64)
    rec = np.array([m["recall"] for m in fold_metrics], dtype=np.float64)
    ddof = 1 if len(fold_metrics) > 1 else 0
    # Folds without a class give NaN IoU for it; nanmean/nanstd warn when all folds lack it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = {"accuracy": float(acc.mean()), "mean_iou": float(miou.mean()), "iou": np.nanmean(iou, 0).tolist(),
                "precision": np.nanmean(prec, 0).tolist(), "recall": np.nanmean(rec, 0).tolist()}
        std = {"accuracy": float(acc.std(ddof=ddof)), "mean_iou": float(miou.std(ddof=ddof)),
               "iou": np.nanstd(iou, 0, ddof=ddof).tolist(), "precision": np.nanstd(prec, 0, ddof=ddof).tolist(),
               "recall": np.nanstd(rec, 0, ddof=ddof).tolist()}
    return mean, std


def _fold_outcome(train_data: SegmentationData, /, *, progress: ProgressCallback | None = None,
                  **kwargs: Any) -> tuple[dict[str, Any], Path | None]:
    """:func:`train` for one fold, keeping only its metrics and checkpoint (not the model)."""
    result = train(train_data, progress=progress, **kwargs)
    return result.metrics, result.checkpoint


def train_folds(data: SegmentationData, parts: Sequence[np.ndarray], folds: Iterable[int], /, *,
                progress: ProgressCallback | None = None,
                **settings: Any) -> list[tuple[dict[str, Any], Path | None]]:
    """Train one model per fold ``k`` in ``folds`` on the images outside ``parts[k]``, scored on ``parts[k]``.

    ``settings`` are :func:`train` options (``out_dir`` etc.); with ``jobs > 1`` on a CPU the
    folds run side by side in worker processes (:func:`~metallo.segment._parallel.run_parallel`),
    otherwise in turn. The checkpoint of fold ``k`` is ``fold<k>.pt``. ``init_weights`` may also
    map each fold to its own checkpoint (``{k: "earlier/fold<k>.pt"}``): each fold model then goes
    on from the same fold's model of an earlier cross-validation.

    Returns
    -------
    list of (metrics, checkpoint)
        In the order of ``folds``.
    """
    folds = list(folds)
    jobs = int(settings.get("jobs") or 1)
    init = settings.get("init_weights")
    if isinstance(init, Mapping) and set(folds) - set(init):
        raise ConfigError(f"init_weights maps folds {sorted(init)}; it must map every trained fold {folds}")

    def fold_settings(k: int) -> dict[str, Any]:
        return {**settings, "init_weights": init[k]} if isinstance(init, Mapping) else settings

    tasks = [(_fold_outcome, (data.subset(np.setdiff1d(np.arange(len(data)), parts[k])),),
              dict(val_data=data.subset(parts[k]), checkpoint_name=f"fold{k}.pt", **fold_settings(k))) for k in folds]
    if jobs > 1 and resolve_device(settings.get("device", "auto")).type == "cpu":
        return run_parallel(tasks, jobs=jobs, labels=[f"fold {k}" for k in folds], progress=progress)
    return [func(*args, progress=progress, **kwargs) for func, args, kwargs in tasks]


def cross_validate(config_or_dataset: Any = None, *, folds: int | None = None,
                   progress: ProgressCallback | None = None, **overrides: Any) -> CVResult:
    """k-fold cross-validation over images: train on k-1 folds, evaluate whole held-out images.

    Parameters
    ----------
    config_or_dataset : TrainConfig, dict, str, Path or SegmentationData
        As for :func:`train`.
    folds : int, optional
        Number of folds (config ``folds``, default 5).
    progress : callable, optional
        Passed to :func:`train` for each fold.
    **overrides
        Any :class:`TrainConfig` field.

    Returns
    -------
    CVResult
        Per-fold metrics (IoU per class, mean IoU, accuracy, precision, recall, confusion),
        their mean and standard deviation, and the pooled metrics; with ``out_dir`` also
        ``fold<k>.pt`` checkpoints and ``cv_metrics.json``.

    Examples
    --------
    >>> from metallo.segment import LabelledImage, SegmentationData
    >>> labels = (np.arange(32) >= 16).astype(np.uint8)[None, :].repeat(32, 0)     # ferrite | pearlite
    >>> images = [(0.2 + 0.5 * labels + 0.05 * i)[..., None].astype(np.float32) for i in range(2)]
    >>> data = SegmentationData([LabelledImage(f"m{i}", im, labels) for i, im in enumerate(images)],
    ...                         classes=["ferrite", "pearlite"])
    >>> cv = cross_validate(data, model="unet", model_kwargs={"base_channels": 4}, folds=2, epochs=1,
    ...                     tile_size=32, device="cpu", out_dir=None)
    >>> cv.table().index.tolist()        # per fold, then mean and standard deviation
    ['0', '1', 'mean', 'std']
    """
    data = config_or_dataset if isinstance(config_or_dataset, SegmentationData) else None
    cfg = TrainConfig.from_any(None if data is not None else config_or_dataset, folds=folds, **overrides)
    data = _load_data(cfg, data)
    parts = fold_indices(len(data), cfg.folds, seed=cfg.seed)
    fold_metrics, checkpoints = [], []
    total = np.zeros((data.n_classes, data.n_classes), np.int64)
    outcomes = train_folds(data, parts, range(len(parts)), progress=progress, **asdict(cfg))
    for k, (held, (metrics, checkpoint)) in enumerate(zip(parts, outcomes, strict=True)):
        m = dict(metrics)
        m["fold"] = k
        m["held_out"] = [data.samples[i].name for i in held]
        fold_metrics.append(m)
        checkpoints.append(checkpoint)
        total += np.asarray(m["confusion"], np.int64)
    mean, std = _aggregate(fold_metrics)
    cv = CVResult(fold_metrics, mean, std, metrics_from_confusion(total, classes=data.classes), data.classes,
                  checkpoints, cfg)
    if cfg.out_dir is not None:
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "cv_metrics.json", cv.to_dict())
    return cv


def evaluate(checkpoint: Any, data: Any, *, tile: int | None = None, overlap: int = 64,
             device: str = "auto", tta: bool | None = None) -> dict[str, Any]:
    """Metrics of a checkpoint on a labelled folder (or SegmentationData), on whole images.

    Parameters
    ----------
    checkpoint : str, Path or dict
    data : str, Path or SegmentationData
        Must use the checkpoint's classes.
    tile, overlap, device : see :func:`~metallo.segment.predict`
    tta : bool, optional
        Test-time augmentation; default: as in the checkpoint's cross-validation.

    Returns
    -------
    dict
        Pooled ``iou``, ``mean_iou``, ``accuracy``, ``precision``, ``recall``, ``confusion`` and
        per-image ``images``.

    Examples
    --------
    >>> from metallo.segment import LabelledImage, SegmentationData
    >>> labels = (np.arange(32) >= 16).astype(np.uint8)[None, :].repeat(32, 0)     # ferrite | pearlite
    >>> images = [(0.2 + 0.5 * labels + 0.05 * i)[..., None].astype(np.float32) for i in range(2)]
    >>> data = SegmentationData([LabelledImage(f"m{i}", im, labels) for i, im in enumerate(images)],
    ...                         classes=["ferrite", "pearlite"])
    >>> result = train(data, model="unet", model_kwargs={"base_channels": 4}, epochs=1, tile_size=32,
    ...                device="cpu", out_dir="runs")
    >>> metrics = evaluate(result.checkpoint, data, device="cpu")      # or a labelled folder
    >>> metrics["classes"], metrics["n_pixels"]
    (['ferrite', 'pearlite'], 2048)
    """
    model, info = load_checkpoint(checkpoint, device=device)
    if not isinstance(data, SegmentationData):
        data = load_training_folder(data, n_classes=int(model.n_classes))
    if data.n_classes != int(model.n_classes):
        raise ConfigError(f"data has {data.n_classes} classes but the checkpoint model predicts {model.n_classes}")
    norm = info["normalization"]
    tile_info = info.get("tile", {})
    seen, _, zoom = seen_pixel_sizes(info)
    return evaluate_model(model, data, mean=norm["mean"], std=norm["std"],
                          scale=float(tile_info.get("scale", 1.0) or 1.0), tile=tile, overlap=overlap,
                          device=device, tta=bool(tile_info.get("tta", False)) if tta is None else tta,
                          pixel_size_um=tile_info.get("pixel_size_um"), seen_range_um=seen, zoom=zoom)
