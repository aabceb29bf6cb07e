"""Segmentation losses: cross-entropy, class-weighted CE, focal loss, Dice, CE + Dice, Lovász-softmax.

Every loss takes logits ``(N, C, ...)`` and integer targets ``(N, ...)`` and leaves pixels
equal to ``ignore_index`` out of both the numerator and the normalisation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metallo._registry import Registry
from metallo.errors import ConfigError

__all__ = ["CEDiceLoss", "DiceLoss", "FocalLoss", "LovaszSoftmaxLoss", "get_loss", "inverse_frequency_weights",
           "loss_names"]

_LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss")


def inverse_frequency_weights(labels: Any, *, n_classes: int, ignore_index: int = 255,
                              power: float = 1.0) -> np.ndarray:
    """Class weights proportional to the inverse pixel frequency (to ``power``), normalised to mean 1.

    Absent classes get the largest weight of the present ones. ``power=0.5`` (the
    ``"sqrt_inverse_frequency"`` option of the losses) is the milder weighting: a class 50x
    rarer is weighted about 7x, not 50x, which keeps a rare class from being over-predicted.

    Parameters
    ----------
    labels : array-like of int, or a sequence of label maps
    n_classes : int
    ignore_index : int
    power : float
        Exponent of the inverse frequency (1: inverse, 0.5: inverse square root, 0: uniform).

    Returns
    -------
    ndarray (n_classes,) float

    Examples
    --------
    >>> inverse_frequency_weights(np.array([0, 0, 0, 1]), n_classes=2).round(2).tolist()
    [0.5, 1.5]
    >>> inverse_frequency_weights(np.array([0, 0, 0, 1]), n_classes=2, power=0.5).round(3).tolist()
    [0.732, 1.268]
    """
    maps = labels if isinstance(labels, (list, tuple)) else [labels]
    counts = np.zeros(n_classes, dtype=np.float64)
    for lab in maps:
        flat = np.asarray(lab).ravel()
        flat = flat[flat != ignore_index].astype(np.int64)
        counts += np.bincount(flat, minlength=n_classes)[:n_classes]
    present = counts > 0
    if not present.any():
        raise ConfigError("no labelled pixels to compute class frequencies from")
    weights = np.zeros(n_classes)
    weights[present] = (counts[present].sum() / counts[present]) ** float(power)
    weights[~present] = weights[present].max()
    return weights / weights.mean()


def _as_weight(weight: Sequence[float] | np.ndarray | torch.Tensor | None) -> torch.Tensor | None:
    if weight is None:
        return None
    return torch.as_tensor(np.asarray(weight, dtype=np.float32))


class _CE(nn.Module):
    weight: torch.Tensor

    def __init__(self, weight: Any = None, ignore_index: int = 255, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1) (e.g. 0.1); got {label_smoothing}")
        self.ignore_index = ignore_index
        self.label_smoothing = float(label_smoothing)
        w = _as_weight(weight)
        self.register_buffer("weight", w if w is not None else torch.empty(0), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(logits.dtype) if self.weight.numel() else None
        if not (target != self.ignore_index).any():
            return logits.sum() * 0.0
        return F.cross_entropy(logits.float(), target.long(), weight=None if weight is None else weight.float(),
                               ignore_index=self.ignore_index, label_smoothing=self.label_smoothing)


class FocalLoss(nn.Module):
    """Focal loss ``-alpha_t (1 - p_t)**gamma log p_t`` (Lin et al. 2017), mean over labelled pixels.

    Parameters
    ----------
    gamma : float
        Focusing parameter (2, as recommended and used for UHCS).
    alpha : None, sequence of float or "inverse_frequency"
        Per-class weights; "inverse_frequency" is resolved from the training labels by
        :func:`~metallo.segment.train`.
    ignore_index : int

    Examples
    --------
    >>> loss = FocalLoss(gamma=0.0)
    >>> x, t = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    >>> bool(torch.isclose(loss(x, t), F.cross_entropy(x, t)))
    True
    """

    alpha: torch.Tensor

    def __init__(self, gamma: float = 2.0, alpha: Any = None, ignore_index: int = 255) -> None:
        super().__init__()
        if gamma < 0:
            raise ConfigError(f"focal loss gamma must be >= 0; got {gamma}")
        if isinstance(alpha, str):
            raise ConfigError(f"focal loss alpha={alpha!r} must be resolved to class weights first (train() does this)")
        self.gamma = float(gamma)
        self.ignore_index = ignore_index
        a = _as_weight(alpha)
        self.register_buffer("alpha", a if a is not None else torch.empty(0), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.long()
        valid = target != self.ignore_index
        if not valid.any():
            return logits.sum() * 0.0
        safe = target.masked_fill(~valid, 0)
        logp = F.log_softmax(logits.float(), dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
        loss = -((1.0 - logp.exp()).clamp_min(0.0) ** self.gamma) * logp
        if self.alpha.numel():
            loss = loss * self.alpha.float()[safe]
        return loss[valid].mean()


class DiceLoss(nn.Module):
    """Soft Dice loss ``1 - mean_c 2|P_c T_c| / (|P_c| + |T_c|)`` over labelled pixels.

    Parameters
    ----------
    smooth : float
        Added to numerator and denominator (1).
    ignore_index : int

    Examples
    --------
    >>> t = torch.randint(0, 2, (1, 8, 8))
    >>> perfect = F.one_hot(t, 2).permute(0, 3, 1, 2).float() * 50
    >>> float(DiceLoss()(perfect, t)) < 1e-3
    True
    """

    def __init__(self, smooth: float = 1.0, ignore_index: int = 255) -> None:
        super().__init__()
        self.smooth = float(smooth)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n_classes = logits.shape[1]
        target = target.long()
        valid = (target != self.ignore_index).unsqueeze(1)
        prob = F.softmax(logits.float(), dim=1) * valid
        onehot = F.one_hot(target.masked_fill(~valid.squeeze(1), 0), n_classes).movedim(-1, 1) * valid
        dims = (0, *range(2, logits.ndim))
        inter = (prob * onehot).sum(dims)
        denom = prob.sum(dims) + onehot.sum(dims)
        return 1.0 - ((2 * inter + self.smooth) / (denom + self.smooth)).mean()


class _CEPlus(nn.Module):
    """Cross-entropy (optionally class-weighted) plus ``term_weight`` x a region term."""

    def __init__(self, term: nn.Module, what: str, weight: Any, term_weight: float, ignore_index: int,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        if term_weight < 0:
            raise ConfigError(f"{what} must be >= 0; got {term_weight}")
        self.ce = _CE(weight, ignore_index, label_smoothing)
        self.term = term
        self.term_weight = float(term_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(logits, target) + self.term_weight * self.term(logits, target)


class CEDiceLoss(_CEPlus):
    """Cross-entropy (optionally class-weighted) plus ``dice_weight`` x soft Dice.

    The Dice term scores every class by its overlap whatever its pixel share, so a rare class
    (UHCS Widmanstätten laths, 1-5 % of the pixels) is not traded away for the majority, while
    the cross-entropy keeps the per-pixel gradients well behaved.

    Parameters
    ----------
    weight : None or sequence of float
        Class weights of the cross-entropy.
    dice_weight : float
        Factor of the Dice term (1).
    smooth : float
    ignore_index : int
    label_smoothing : float
        Of the cross-entropy term (0: hard targets; 0.1 puts 10 % of each pixel's target
        uniformly on all classes, Szegedy et al. 2016). The Dice term keeps hard targets.

    Examples
    --------
    >>> x, t = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    >>> expected = F.cross_entropy(x, t) + DiceLoss()(x, t)
    >>> bool(torch.isclose(CEDiceLoss()(x, t), expected))
    True
    """

    def __init__(self, weight: Any = None, dice_weight: float = 1.0, smooth: float = 1.0,
                 ignore_index: int = 255, label_smoothing: float = 0.0) -> None:
        super().__init__(DiceLoss(smooth, ignore_index), "ce_dice dice_weight", weight, dice_weight, ignore_index,
                         label_smoothing)


def _lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss at errors sorted in decreasing order."""
    total = gt_sorted.sum()
    intersection = total - gt_sorted.cumsum(0)
    union = total + (1.0 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


class LovaszSoftmaxLoss(nn.Module):
    """Lovász-softmax loss (Berman, Triki & Blaschko, CVPR 2018): a convex surrogate of 1 - IoU per class.

    For each class the per-pixel errors ``|[t == c] - p_c|`` are sorted and weighted by the
    gradient of the Jaccard loss's Lovász extension. The loss is the mean over the classes
    present in the batch's labelled pixels; where the probabilities are one-hot it equals
    ``1 - IoU`` of that hard prediction, class by class. Unlike soft Dice it optimises the
    measure the benchmarks report (mean IoU) directly.

    Parameters
    ----------
    ignore_index : int

    Examples
    --------
    >>> t = torch.tensor([[[0, 0, 1, 1]]])
    >>> hard = F.one_hot(torch.tensor([[[0, 1, 1, 1]]]), 2).permute(0, 3, 1, 2).float() * 1e4
    >>> round(float(LovaszSoftmaxLoss()(hard, t)), 4)  # IoU 1/2 (class 0) and 2/3 (class 1)
    0.4167
    """

    def __init__(self, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n_classes = logits.shape[1]
        prob = F.softmax(logits.float(), dim=1).movedim(1, -1).reshape(-1, n_classes)
        flat = target.long().reshape(-1)
        valid = flat != self.ignore_index
        if not valid.any():
            return logits.sum() * 0.0
        prob, flat = prob[valid], flat[valid]
        losses = []
        for c in range(n_classes):
            fg = (flat == c).float()
            if not fg.any():
                continue
            errors = (fg - prob[:, c]).abs()
            errors_sorted, order = torch.sort(errors, descending=True)
            losses.append(torch.dot(errors_sorted, _lovasz_grad(fg[order])))
        return torch.stack(losses).mean()


class CELovaszLoss(_CEPlus):
    """Cross-entropy (optionally class-weighted) plus ``lovasz_weight`` x Lovász-softmax."""

    def __init__(self, weight: Any = None, lovasz_weight: float = 1.0, ignore_index: int = 255,
                 label_smoothing: float = 0.0) -> None:
        super().__init__(LovaszSoftmaxLoss(ignore_index), "ce_lovasz lovasz_weight", weight, lovasz_weight,
                         ignore_index, label_smoothing)


@_LOSSES.register("ce")
def _ce(*, ignore_index: int = 255, label_smoothing: float = 0.0) -> nn.Module:
    return _CE(None, ignore_index, label_smoothing)


@_LOSSES.register("weighted_ce")
def _weighted_ce(*, weight: Any, ignore_index: int = 255, label_smoothing: float = 0.0) -> nn.Module:
    if isinstance(weight, str):
        raise ConfigError(f"weighted_ce weight={weight!r} must be resolved to class weights first (train() does this)")
    return _CE(weight, ignore_index, label_smoothing)


@_LOSSES.register("focal")
def _focal(*, gamma: float = 2.0, alpha: Any = None, ignore_index: int = 255) -> nn.Module:
    return FocalLoss(gamma, alpha, ignore_index)


@_LOSSES.register("dice")
def _dice(*, smooth: float = 1.0, ignore_index: int = 255) -> nn.Module:
    return DiceLoss(smooth, ignore_index)


@_LOSSES.register("ce_dice")
def _ce_dice(*, weight: Any = None, dice_weight: float = 1.0, smooth: float = 1.0,
             ignore_index: int = 255, label_smoothing: float = 0.0) -> nn.Module:
    if isinstance(weight, str):
        raise ConfigError(f"ce_dice weight={weight!r} must be resolved to class weights first (train() does this)")
    return CEDiceLoss(weight, dice_weight, smooth, ignore_index, label_smoothing)


@_LOSSES.register("lovasz")
def _lovasz(*, ignore_index: int = 255) -> nn.Module:
    return LovaszSoftmaxLoss(ignore_index)


@_LOSSES.register("ce_lovasz")
def _ce_lovasz(*, weight: Any = None, lovasz_weight: float = 1.0, ignore_index: int = 255,
               label_smoothing: float = 0.0) -> nn.Module:
    if isinstance(weight, str):
        raise ConfigError(f"ce_lovasz weight={weight!r} must be resolved to class weights first (train() does this)")
    return CELovaszLoss(weight, lovasz_weight, ignore_index, label_smoothing)


def loss_names() -> list[str]:
    """Names accepted by :func:`get_loss`.

    Examples
    --------
    >>> loss_names()
    ['ce', 'ce_dice', 'ce_lovasz', 'dice', 'focal', 'lovasz', 'weighted_ce']
    """
    return _LOSSES.names()


def get_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a loss by name.

    Parameters
    ----------
    name : str
        ``"ce"``, ``"weighted_ce"`` (``weight=``), ``"focal"`` (``gamma=``, ``alpha=``),
        ``"dice"`` (``smooth=``), ``"ce_dice"`` (``weight=``, ``dice_weight=``), ``"lovasz"`` or
        ``"ce_lovasz"`` (``weight=``, ``lovasz_weight=``). The cross-entropy losses (``ce``,
        ``weighted_ce``, ``ce_dice``, ``ce_lovasz``) also take ``label_smoothing=`` (0).
    **kwargs
        Loss options and ``ignore_index`` (255).

    Returns
    -------
    torch.nn.Module
        Called as ``loss(logits (N, C, ...), target (N, ...))``.

    Examples
    --------
    >>> loss = get_loss("focal", gamma=2.0, alpha=[1.0, 3.0])
    >>> float(loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))) > 0
    True
    """
    factory = _LOSSES.get(name)
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"loss {name!r}: bad option ({exc})") from None
