"""What a segmentation model costs and sees: activation memory per pixel and receptive-field radius.

Inference plans its tiles from these (:func:`metallo.segment.plan_inference`), and an ONNX export
records them, so an exported model is planned the same way without torch's autograd.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from metallo.errors import ConfigError

__all__ = ["activation_bytes_per_pixel", "receptive_radius"]


def _ceil_to(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple



def _n_classes(model: nn.Module) -> int:
    n = getattr(model, "n_classes", None)
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"{type(model).__name__} needs an integer attribute n_classes to be used for prediction")
    return n


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def activation_bytes_per_pixel(model: nn.Module) -> float:
    """Bytes of activations per input pixel of one forward pass (an upper bound), measured once.

    The outputs of all leaf modules of a forward pass over a small probe are summed; inference
    frees most of them on the way, so the true peak is lower (about half for the U-Net).
    Models that cannot be probed (an ONNX Runtime engine) carry the value measured at export
    in ``bytes_per_pixel``.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    float

    Examples
    --------
    >>> from metallo.segment import get_model
    >>> activation_bytes_per_pixel(get_model("unet", n_classes=2, base_channels=4)) > 0
    True
    """
    cached = getattr(model, "bytes_per_pixel", None)
    if isinstance(cached, float) and cached > 0:
        return cached
    in_channels = int(getattr(model, "in_channels", 1))
    side = _ceil_to(64, int(getattr(model, "size_multiple", 1)))
    total = 0

    def count(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, in_channels, side, side, device=_device_of(model)))
    finally:
        for handle in handles:
            handle.remove()
    value = max(total / side**2, 4.0 * (in_channels + _n_classes(model)))
    setattr(model, "bytes_per_pixel", float(value))  # noqa: B010 - a plain attribute, not a submodule
    return float(value)


def receptive_radius(model: nn.Module, *, mass: float = 0.99) -> int:
    """Effective receptive-field radius (px): the Chebyshev radius around a pixel that holds
    ``mass`` of the input gradient of its class scores, measured once per model.

    The gradient is taken on a random probe at least 256 px wide; a radius reaching the probe's
    edge is reported as half the probe (a lower bound).

    Parameters
    ----------
    model : torch.nn.Module
    mass : float
        Fraction of the gradient magnitude the radius must hold.

    Returns
    -------
    int

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Conv2d(1, 2, 5, padding=2); net.n_classes = 2
    >>> receptive_radius(net)
    2
    """
    cached = getattr(model, "receptive_radius_px", None)
    if isinstance(cached, int) and cached >= 0:
        return cached
    in_channels = int(getattr(model, "in_channels", 1))
    side = _ceil_to(257, 2 * int(getattr(model, "size_multiple", 1)))
    centre = side // 2
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, in_channels, side, side, generator=generator).to(_device_of(model)).requires_grad_(True)
    weights = torch.randn(_n_classes(model), generator=generator).to(x.device)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            out = model(x)
            (grad,) = torch.autograd.grad((out[0, :, centre, centre] * weights).sum(), x)
    finally:
        model.train(was_training)
    g = grad.detach().abs().sum(dim=1)[0].cpu().numpy().astype(np.float64)
    idx = np.arange(side) - centre
    dist = np.maximum(np.abs(idx)[:, None], np.abs(idx)[None, :])
    by_radius = np.cumsum(np.bincount(dist.ravel(), weights=g.ravel()))
    if by_radius[-1] <= 0:
        radius = 0
    else:
        radius = int(np.searchsorted(by_radius, mass * by_radius[-1]))
    radius = min(radius, side // 2)
    setattr(model, "receptive_radius_px", radius)  # noqa: B010 - a plain attribute, not a submodule
    return radius
