"""Why does the network vote for a class? Grad-CAM maps and activation-map dissection.

Durmaz et al. (2021) used both on their lath-bainite U-Nets: Grad-CAM (Selvaraju et al.) for
class evidence per layer, and Network Dissection (Bau et al.): each channel's activation map,
up-sampled to the image and thresholded at its top 1 % over the data set, is compared with
every class mask by IoU, ranking the channels that act as class detectors.

References
----------
.. [1] A. R. Durmaz, M. Müller, B. Lei, A. Thomas, D. Britz, E. A. Holm, C. Eberl, F. Mücklich,
   P. Gumbsch, "A deep learning approach for complex microstructure inference",
   Nature Communications 12, 6272 (2021). doi:10.1038/s41467-021-26565-5
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from metallo._device import resolve_device
from metallo._figure import agg_figure
from metallo._xarray import to_numpy
from metallo.errors import ConfigError
from metallo.segment._data import to_unit_range

__all__ = ["dissect_activations", "grad_cam", "save_dissection_figure", "save_grad_cam_figure"]


def _default_layer(model: nn.Module) -> str:
    names = dict(model.named_modules())
    for candidate in ("bottleneck", "features.29"):
        if candidate in names:
            return candidate
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ConfigError(f"{type(model).__name__} has no convolution layer to explain")
    return convs[-2] if len(convs) > 1 else convs[-1]


def _layer(model: nn.Module, layer: str | None) -> tuple[str, nn.Module]:
    name = layer or _default_layer(model)
    modules = dict(model.named_modules())
    if name not in modules:
        convs = [n for n, m in modules.items() if isinstance(m, (nn.Conv2d, nn.Sequential)) and n]
        raise ConfigError(f"layer {name!r} not in {type(model).__name__}; e.g. {', '.join(convs[-6:])}")
    return name, modules[name]


def _input_tensor(model: nn.Module, image: Any, device: torch.device) -> torch.Tensor:
    info = getattr(model, "metallo_info", {}) or {}
    in_channels = int(getattr(model, "in_channels", 1))
    norm = info.get("normalization", {"mean": [0.0] * in_channels, "std": [1.0] * in_channels})
    array = to_unit_range(to_numpy(image))
    if array.shape[2] != in_channels:
        array = np.repeat(array.mean(axis=2, keepdims=True), in_channels, axis=2)
    array = (array - np.asarray(norm["mean"], np.float32)) / np.asarray(norm["std"], np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)[None], dtype=np.float32)).to(device)


def grad_cam(model: nn.Module, image: Any, *, classes: Sequence[int] | None = None, layer: str | None = None,
             device: str = "auto") -> np.ndarray:
    """Grad-CAM evidence map of each class for one micrograph.

    The class score is the sum of the class logit over the pixels predicted as that class
    (all pixels if none), as in segmentation Grad-CAM; channel weights are the spatial means
    of its gradient; the map is ``ReLU(sum_k w_k A_k)`` up-sampled to the image, scaled to [0, 1].

    Parameters
    ----------
    model : torch.nn.Module
        A segmentation model (one loaded from a checkpoint uses its normalisation).
    image : array-like or xr.DataArray
        ``(y, x)`` or ``(y, x, channel)``.
    classes : sequence of int, optional
        Classes to explain (default all).
    layer : str, optional
        Module name (``model.named_modules()``); default the U-Net bottleneck or VGG conv5_3.
    device : str

    Returns
    -------
    ndarray (n_classes, y, x) float32 in [0, 1]

    Examples
    --------
    >>> from metallo.segment import get_model
    >>> net = get_model("unet", n_classes=2, base_channels=4)
    >>> grad_cam(net, np.random.rand(32, 32), device="cpu").shape
    (2, 32, 32)
    """
    dev = resolve_device(device)
    model = model.to(dev).eval()
    _, module = _layer(model, layer)
    x = _input_tensor(model, image, dev)
    store: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        out.retain_grad()
        store["act"] = out

    handle = module.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(x)
            pred = logits.argmax(1)
            wanted = list(range(logits.shape[1])) if classes is None else [int(c) for c in classes]
            maps: list[np.ndarray] = []
            for c in wanted:
                if not 0 <= c < logits.shape[1]:
                    raise ConfigError(f"class {c} out of range 0..{logits.shape[1] - 1}")
                mask = pred == c
                score = (logits[:, c] * mask).sum() if mask.any() else logits[:, c].sum()
                act = store["act"]
                act.grad = None
                score.backward(retain_graph=True)
                assert act.grad is not None
                weights = act.grad.mean(dim=(2, 3), keepdim=True)
                cam = F.relu((weights * act).sum(1, keepdim=True))
                cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
                maps.append((cam / cam.max().clamp_min(1e-12)).detach().cpu().numpy())
    finally:
        handle.remove()
    return np.stack(maps).astype(np.float32)


def _activations(model: nn.Module, module: nn.Module, image: Any, size: tuple[int, int],
                 device: torch.device) -> torch.Tensor:
    store: dict[str, torch.Tensor] = {}
    handle = module.register_forward_hook(lambda _m, _i, out: store.__setitem__("act", out.detach()))
    try:
        with torch.inference_mode():
            model(_input_tensor(model, image, device))
    finally:
        handle.remove()
    act = F.interpolate(store["act"].float(), size=size, mode="bilinear", align_corners=False)[0]
    return act.reshape(act.shape[0], -1)


def dissect_activations(model: nn.Module, images: Sequence[Any], labels: Sequence[Any], *, n_classes: int,
                        layer: str | None = None, top_fraction: float = 0.01, ignore_index: int = 255,
                        max_pixels: int = 65_536, classes: Sequence[str] | None = None, seed: int = 0,
                        device: str = "auto") -> pd.DataFrame:
    """Network dissection: IoU of every channel's top-activation mask with every class mask.

    Each channel's threshold is its ``1 - top_fraction`` quantile over all images (estimated
    from a random sample of up to 20 000 values per image); activations are bilinearly
    up-sampled to the label grid (reduced to ``max_pixels`` per image by nearest sampling).

    Parameters
    ----------
    model : torch.nn.Module
    images, labels : sequences
        Micrographs and their label maps (same shapes).
    n_classes : int
    layer : str, optional
        Module name; default as in :func:`grad_cam`.
    top_fraction : float
        Fraction of activations that count as "on" (0.01 = top 1 %).
    ignore_index : int
    max_pixels : int
    classes : sequence of str, optional
        Names for the ``class`` column.
    seed : int
    device : str

    Returns
    -------
    pd.DataFrame
        Columns channel, class, class_name, iou, threshold; sorted by IoU, best first.

    Examples
    --------
    >>> from metallo.segment import get_model
    >>> net = get_model("unet", n_classes=2, base_channels=4)
    >>> img = np.random.rand(32, 32); lab = (img > 0.5).astype(np.uint8)
    >>> dissect_activations(net, [img], [lab], n_classes=2, device="cpu").columns.tolist()
    ['channel', 'class', 'class_name', 'iou', 'threshold']
    """
    if len(images) != len(labels) or not images:
        raise ConfigError(f"need matching non-empty images and labels; got {len(images)} and {len(labels)}")
    if not 0 < top_fraction < 1:
        raise ConfigError(f"top_fraction must be in (0, 1); got {top_fraction}")
    dev = resolve_device(device)
    model = model.to(dev).eval()
    _, module = _layer(model, layer)
    rng = np.random.default_rng(seed)
    grids = []
    for lab in labels:
        lab = to_numpy(lab)
        step = max(1, int(np.ceil(np.sqrt(lab.size / max_pixels))))
        grids.append(lab[::step, ::step])
    samples = []
    for image, grid in zip(images, grids, strict=True):
        act = _activations(model, module, image, (grid.shape[0], grid.shape[1]), dev)
        pick = torch.from_numpy(rng.choice(act.shape[1], size=min(20_000, act.shape[1]), replace=False)).to(dev)
        samples.append(act[:, pick])
    thresholds = torch.quantile(torch.cat(samples, dim=1), 1.0 - top_fraction, dim=1)
    k = thresholds.shape[0]
    inter = torch.zeros(k, n_classes, dtype=torch.float64, device=dev)
    on_count = torch.zeros(k, dtype=torch.float64, device=dev)
    class_count = torch.zeros(n_classes, dtype=torch.float64, device=dev)
    for image, grid in zip(images, grids, strict=True):
        flat = torch.from_numpy(grid.reshape(-1).astype(np.int64)).to(dev)
        keep = flat != ignore_index
        if (flat[keep] >= n_classes).any():
            raise ConfigError(f"label values beyond n_classes={n_classes}")
        on = (_activations(model, module, image, (grid.shape[0], grid.shape[1]), dev)[:, keep] > thresholds[:, None]).float()
        onehot = F.one_hot(flat[keep], n_classes).float()
        inter += (on @ onehot).double()
        on_count += on.sum(1).double()
        class_count += onehot.sum(0).double()
    union = on_count[:, None] + class_count[None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(inter)).cpu().numpy()
    names = list(classes) if classes is not None else [str(c) for c in range(n_classes)]
    channel, cls = np.meshgrid(np.arange(k), np.arange(n_classes), indexing="ij")
    table = pd.DataFrame({"channel": channel.ravel(), "class": cls.ravel(),
                          "class_name": np.asarray(names, dtype=object)[cls.ravel()], "iou": iou.ravel(),
                          "threshold": thresholds.cpu().numpy()[channel.ravel()]})
    return table.sort_values("iou", ascending=False, kind="stable").reset_index(drop=True)


def save_grad_cam_figure(image: Any, cams: np.ndarray, path: str | Path, *,
                         classes: Sequence[str] | None = None) -> Path:
    """PNG with the micrograph and one Grad-CAM overlay per class.

    Examples
    --------
    >>> save_grad_cam_figure(np.random.rand(16, 16), np.random.rand(2, 16, 16), "cam.png").suffix
    '.png'
    """
    grey = to_unit_range(to_numpy(image)).mean(axis=2)
    names = list(classes) if classes is not None else [str(c) for c in range(len(cams))]
    fig = agg_figure((3 * (len(cams) + 1), 3))
    axes = fig.subplots(1, len(cams) + 1, squeeze=False)
    axes[0, 0].imshow(grey, cmap="gray")
    axes[0, 0].set_title("micrograph")
    for ax, cam, name in zip(axes[0, 1:], cams, names, strict=True):
        ax.imshow(grey, cmap="gray")
        ax.imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(f"Grad-CAM: {name}")
    for ax in axes[0]:
        ax.axis("off")
    return _save_figure(fig, path)


def save_dissection_figure(table: pd.DataFrame, path: str | Path, *, top: int = 10) -> Path:
    """PNG bar chart of the ``top`` channels by IoU for each class of a dissection table.

    Examples
    --------
    >>> t = pd.DataFrame({"channel": [0, 1], "class": [0, 0], "class_name": ["a", "a"], "iou": [0.5, 0.2],
    ...                   "threshold": [1.0, 1.0]})
    >>> save_dissection_figure(t, "dissect.png").suffix
    '.png'
    """
    groups = list(table.groupby("class_name", sort=False))
    fig = agg_figure((4 * len(groups), 3))
    axes = fig.subplots(1, len(groups), squeeze=False)
    for ax, (name, group) in zip(axes[0], groups, strict=True):
        best = group.nlargest(top, "iou")
        ax.bar(range(len(best)), best["iou"], color="tab:blue")
        ax.set_xticks(range(len(best)), [str(c) for c in best["channel"]], rotation=90, fontsize=7)
        ax.set_title(f"{name}: top channels")
        ax.set_xlabel("channel")
        ax.set_ylabel("IoU (top 1 % mask vs class)")
    return _save_figure(fig, path)


def _save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as PNG (parents created, atomically)."""
    from metallo._figure import save_figure

    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
