"""Supervised segmentation networks and their registry.

Every model maps ``(batch, in_channels, H, W)`` to per-class logits ``(batch, n_classes, H, W)``
for any ``H, W``: inputs that are not a multiple of the model's down-sampling factor are
mirror-padded inside ``forward`` and the output is cropped back. Pass ``strict_size=True`` to
get an error that names the padded size instead.

References
----------
.. [1] A. R. Durmaz, M. Müller, B. Lei, A. Thomas, D. Britz, E. A. Holm, C. Eberl, F. Mücklich,
   P. Gumbsch, "A deep learning approach for complex microstructure inference",
   Nature Communications 12, 6272 (2021). doi:10.1038/s41467-021-26565-5
.. [2] B. L. DeCost, B. Lei, T. Francis, E. A. Holm, "High throughput quantitative metallography
   for complex microstructures using deep learning: a case study in ultrahigh carbon steel",
   Microscopy and Microanalysis 25(1), 21-29 (2019). doi:10.1017/S1431927618015635
.. [3] O. Oktay et al., "Attention U-Net: learning where to look for the pancreas", MIDL 2018.
   arXiv:1804.03999
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from metallo._registry import Registry
from metallo.errors import ConfigError
from metallo.segment._vgg import BLOCK_CHANNELS, BLOCK_ENDS, load_vgg16_state_dict, vgg16_features

__all__ = [
    "PixelNet",
    "SegmentationModel",
    "UNet",
    "UNetVGG16",
    "get_model",
    "model_names",
    "padded_size",
    "register_model",
]

_MODELS: Registry[Callable[..., Any]] = Registry("model")


def register_model(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that adds a model class (or factory) to the registry under ``name``.

    Parameters
    ----------
    name : str
        Registry name used by :func:`get_model` and stored in checkpoints.

    Returns
    -------
    callable
        The decorator.

    Examples
    --------
    Not run by the doctest suite (the name would stay registered for the whole session):

    >>> @register_model("my_net")  # doctest: +SKIP
    ... class MyNet(SegmentationModel): ...
    """
    return _MODELS.register(name)


def model_names() -> list[str]:
    """Names of the registered segmentation models.

    Returns
    -------
    list of str

    Examples
    --------
    >>> model_names()
    ['pixelnet', 'unet', 'unet_vgg16']
    """
    return _MODELS.names()


def get_model(name: str, *, n_classes: int, in_channels: int = 1, **kwargs: Any) -> SegmentationModel:
    """Build a registered segmentation model.

    Parameters
    ----------
    name : str
        ``"unet"``, ``"unet_vgg16"`` or ``"pixelnet"``; an unknown name raises
        :class:`~metallo.errors.UnknownNameError` listing the valid ones.
    n_classes : int
        Number of output classes.
    in_channels : int
        1 for grey micrographs (default), 3 for RGB.
    **kwargs
        Model options, e.g. ``base_channels`` for ``unet``, ``weights`` for the VGG16 models.

    Returns
    -------
    SegmentationModel
        A torch module; ``model.config`` holds the options that rebuild it.

    Examples
    --------
    >>> net = get_model("unet", n_classes=3, base_channels=8)
    >>> net(torch.zeros(1, 1, 37, 50)).shape
    torch.Size([1, 3, 37, 50])
    """
    factory = _MODELS.get(name)
    if int(n_classes) < 1:
        raise ConfigError(f"n_classes must be >= 1; got {n_classes}")
    if int(in_channels) < 1:
        raise ConfigError(f"in_channels must be >= 1; got {in_channels}")
    try:
        model = factory(n_classes=int(n_classes), in_channels=int(in_channels), **kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: bad option ({exc})") from None
    if not isinstance(model, SegmentationModel):
        raise ConfigError(f"model {name!r} is registered but does not build a SegmentationModel")
    model.model_name = str(name).lower()
    return model


def padded_size(shape: tuple[int, int], multiple: int) -> tuple[int, int]:
    """The smallest (H, W) >= ``shape`` whose sides are multiples of ``multiple``.

    Examples
    --------
    >>> padded_size((481, 645), 16)
    (496, 656)
    """
    return tuple(-(-int(s) // multiple) * multiple for s in shape)  # type: ignore[return-value]


def _mirror_pad(x: torch.Tensor, target: tuple[int, int]) -> torch.Tensor:
    pad_y, pad_x = target[0] - x.shape[-2], target[1] - x.shape[-1]
    if pad_y == 0 and pad_x == 0:
        return x
    # Reflection cannot pad by the side length or more; tiny inputs repeat their edge instead.
    mode = "reflect" if pad_y < x.shape[-2] and pad_x < x.shape[-1] else "replicate"
    return F.pad(x, (0, pad_x, 0, pad_y), mode=mode)


class SegmentationModel(nn.Module, abc.ABC):
    """Base class: size handling, ``config`` for checkpoints, ``dense_logits`` hook.

    Subclasses implement ``dense_logits(x)`` for inputs whose sides are multiples of
    ``size_multiple``.
    """

    size_multiple: int = 16
    sparse_training: bool = False
    model_name: str = ""
    n_classes: int
    in_channels: int
    config: dict[str, Any]
    metallo_info: dict[str, Any]

    def __init__(self, *, n_classes: int, in_channels: int, strict_size: bool = False) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.in_channels = in_channels
        self.strict_size = strict_size
        self.config = {}
        self.metallo_info = {}
        # Identity on the features the output layer classifies (no weights, so checkpoints are
        # unchanged): the novelty check (metallo.segment._novelty) reads them through a hook.
        self.feature_tap = nn.Identity()

    @abc.abstractmethod
    def dense_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (batch, n_classes, H, W) for an input whose size the model accepts."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ConfigError(
                f"{type(self).__name__} expects input (batch, {self.in_channels}, H, W); got {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        target = padded_size((h, w), self.size_multiple)
        if target != (h, w):
            if self.strict_size:
                raise ConfigError(
                    f"{type(self).__name__} needs H and W that are multiples of {self.size_multiple}; "
                    f"got {h}x{w}, pad to {target[0]}x{target[1]}"
                )
            return self.dense_logits(_mirror_pad(x, target))[..., :h, :w]
        return self.dense_logits(x)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class _ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut, then ReLU
    (He et al. 2016): the gradient reaches early layers unattenuated, at the cost of one 1x1
    convolution where the width changes."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
        )
        self.shortcut: nn.Module = nn.Identity() if cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class _AttentionGate(nn.Module):
    """Additive attention gate on a skip connection (Oktay et al. 2018, "Attention U-Net").

    ``psi = sigmoid(BN(conv1x1(relu(BN(W_g g) + BN(W_x x)))))``, one weight per pixel in [0, 1],
    scales the skip features ``x`` by what the decoder features ``g`` (up-sampled to the skip's
    resolution) say is relevant there: the skip's fine texture passes where the coarse context
    asks for it. Costs three 1x1 convolutions per level.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        inter = max(1, channels // 2)
        self.w_g = nn.Sequential(nn.Conv2d(channels, inter, 1, bias=False), nn.BatchNorm2d(inter))
        self.w_x = nn.Sequential(nn.Conv2d(channels, inter, 1, bias=False), nn.BatchNorm2d(inter))
        self.psi = nn.Sequential(nn.Conv2d(inter, 1, 1, bias=False), nn.BatchNorm2d(1), nn.Sigmoid())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x * self.psi(self.relu(self.w_g(g) + self.w_x(x)))


@register_model("unet")
class UNet(SegmentationModel):
    """The U-Net of Ronneberger et al. as used for lath bainite: 4 down-sampling levels,
    batch norm after each convolution, transposed-convolution up-sampling, same padding.

    Parameters
    ----------
    n_classes, in_channels : int
        Output classes and input channels.
    base_channels : int
        Width of the first level (64 in Durmaz et al. 2021); level ``i`` has ``base * 2**i``.
    depth : int
        Number of down-sampling levels (4).
    dropout : float
        Dropout before the bottleneck (0 disables).
    residual : bool
        Residual blocks (two conv-BN layers plus a shortcut) instead of plain double
        convolutions, at about the same compute.
    attention : bool
        Attention gates on the skip connections (Oktay et al. 2018): each skip is weighted per
        pixel by what the decoder's coarser context makes relevant there.

    Examples
    --------
    >>> UNet(n_classes=2, in_channels=1, base_channels=4)(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 2, 32, 32])
    """

    def __init__(self, *, n_classes: int, in_channels: int = 1, base_channels: int = 64,
                 depth: int = 4, dropout: float = 0.0, residual: bool = False, attention: bool = False,
                 strict_size: bool = False) -> None:
        super().__init__(n_classes=n_classes, in_channels=in_channels, strict_size=strict_size)
        self.config = {"base_channels": base_channels, "depth": depth, "dropout": dropout}
        if residual:
            self.config["residual"] = True  # absent when False: older checkpoints rebuild unchanged
        if attention:
            self.config["attention"] = True  # likewise
        block = _ResidualBlock if residual else _conv_bn_relu
        self.size_multiple = 2**depth
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for width in widths[:-1]:
            self.down.append(block(cin, width))
            cin = width
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.bottleneck = block(widths[-2], widths[-1])
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for i in range(depth, 0, -1):
            self.up.append(nn.ConvTranspose2d(widths[i], widths[i - 1], 2, stride=2))
            self.up_conv.append(block(2 * widths[i - 1], widths[i - 1]))
        self.gates = nn.ModuleList([_AttentionGate(widths[i - 1]) for i in range(depth, 0, -1)]) if attention else None
        self.head = nn.Conv2d(widths[0], n_classes, 1)

    def dense_logits(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(self.drop(x))
        for level, (up, conv, skip) in enumerate(zip(self.up, self.up_conv, reversed(skips), strict=True)):
            u = up(x)
            if self.gates is not None:
                skip = self.gates[level](u, skip)
            x = conv(torch.cat([u, skip], dim=1))
        return self.head(self.feature_tap(x))


class _VGGEncoderMixin:
    features: nn.Sequential
    block_channels: tuple[int, ...]

    def _init_encoder(self, in_channels: int, weights: str | Path | None, width_divisor: int) -> None:
        if width_divisor < 1:
            raise ConfigError(f"width_divisor must be >= 1; got {width_divisor}")
        if weights is not None and width_divisor != 1:
            raise ConfigError("pretrained VGG16 weights need width_divisor=1")
        self.features = vgg16_features(in_channels, width_divisor=width_divisor)
        self.block_channels = tuple(c // width_divisor for c in BLOCK_CHANNELS)
        if weights is not None:
            state = load_vgg16_state_dict(weights, in_channels=in_channels)
            self.features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()})

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations after conv1_2, conv2_2, conv3_3, conv4_3 and conv5_3 (post-ReLU)."""
        taps = []
        for i, layer in enumerate(list(self.features)[: BLOCK_ENDS[-1] + 1]):
            x = layer(x)
            if i in BLOCK_ENDS:
                taps.append(x)
        return taps


@register_model("unet_vgg16")
class UNetVGG16(_VGGEncoderMixin, SegmentationModel):
    """U-Net with a VGG16 encoder (torchvision names under ``features.*``) and a bilinear
    up-sampling decoder with skips from conv1_2 ... conv4_3.

    Parameters
    ----------
    n_classes, in_channels : int
        Output classes and input channels.
    weights : str or Path, optional
        ``"imagenet"`` (torch hub cache ``vgg16-397923af.pth``) or a state-dict file;
        ``None`` initialises randomly.
    decoder_channels : tuple of int
        Widths of the four decoder stages.
    width_divisor : int
        Thin the encoder by this factor (1 = VGG16; tests use 8).

    Examples
    --------
    >>> UNetVGG16(n_classes=2)(torch.zeros(1, 1, 32, 32)).shape
    torch.Size([1, 2, 32, 32])
    """

    def __init__(self, *, n_classes: int, in_channels: int = 1, weights: str | Path | None = None,
                 decoder_channels: tuple[int, ...] = (256, 128, 64, 32), width_divisor: int = 1,
                 strict_size: bool = False) -> None:
        super().__init__(n_classes=n_classes, in_channels=in_channels, strict_size=strict_size)
        decoder_channels = tuple(int(c) for c in decoder_channels)
        if len(decoder_channels) != 4:
            raise ConfigError(f"decoder_channels needs 4 widths; got {decoder_channels}")
        # weights are not part of config: the checkpoint state dict carries them.
        self.config = {"decoder_channels": list(decoder_channels), "width_divisor": width_divisor}
        self._init_encoder(in_channels, weights, width_divisor)
        self.decoder = nn.ModuleList()
        cin = self.block_channels[-1]
        for skip_ch, width in zip(reversed(self.block_channels[:-1]), decoder_channels, strict=True):
            self.decoder.append(_conv_bn_relu(cin + skip_ch, width))
            cin = width
        self.head = nn.Conv2d(cin, n_classes, 1)

    def dense_logits(self, x: torch.Tensor) -> torch.Tensor:
        taps = self.encode(x)
        y = taps[-1]
        for block, skip in zip(self.decoder, reversed(taps[:-1]), strict=True):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        return self.head(self.feature_tap(y))


@register_model("pixelnet")
class PixelNet(_VGGEncoderMixin, SegmentationModel):
    """PixelNet: VGG16 hypercolumns (conv1_2, conv2_2, conv3_3, conv4_3, conv5_3, each batch-
    normalised after its ReLU) classified pixel by pixel with an MLP.

    Training samples a sparse set of pixels per image (:meth:`sample_logits`), which keeps the
    memory of the 1472-channel hypercolumns small; inference is dense.

    Parameters
    ----------
    n_classes, in_channels : int
        Output classes and input channels.
    weights : str or Path, optional
        VGG16 initialisation, as for ``unet_vgg16``.
    hidden : int
        MLP width (1024 in DeCost et al. 2019).
    n_hidden : int
        Number of hidden MLP layers (2).
    dropout : float
        Dropout after the last hidden layer (0.1).
    pixels_per_image : int
        Pixels sampled per image during training (2048).
    width_divisor : int
        Thin the encoder by this factor (1 = VGG16; tests use 8).

    Examples
    --------
    >>> PixelNet(n_classes=4, hidden=16)(torch.zeros(1, 1, 20, 24)).shape
    torch.Size([1, 4, 20, 24])
    """

    sparse_training = True

    def __init__(self, *, n_classes: int, in_channels: int = 1, weights: str | Path | None = None,
                 hidden: int = 1024, n_hidden: int = 2, dropout: float = 0.1,
                 pixels_per_image: int = 2048, width_divisor: int = 1, strict_size: bool = False) -> None:
        super().__init__(n_classes=n_classes, in_channels=in_channels, strict_size=strict_size)
        self.config = {"hidden": hidden, "n_hidden": n_hidden, "dropout": dropout,
                       "pixels_per_image": pixels_per_image, "width_divisor": width_divisor}
        self.pixels_per_image = int(pixels_per_image)
        self._init_encoder(in_channels, weights, width_divisor)
        self.tap_norms = nn.ModuleList(nn.BatchNorm2d(c) for c in self.block_channels)
        layers: list[nn.Module] = []
        cin = sum(self.block_channels)
        for _ in range(n_hidden):
            layers += [nn.Linear(cin, hidden), nn.ReLU(inplace=True), nn.BatchNorm1d(hidden)]
            cin = hidden
        layers += [nn.Dropout(dropout), nn.Linear(cin, n_classes)]
        self.mlp = nn.Sequential(*layers)
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [norm(t) for norm, t in zip(self.tap_norms, self.encode(x), strict=True)]

    def dense_logits(self, x: torch.Tensor) -> torch.Tensor:
        # The first MLP layer is linear and bilinear up-sampling is linear, so they commute:
        # applying that layer to each low-resolution tap and up-sampling its 1024-channel
        # output avoids materialising the 1472-channel hypercolumns at full resolution.
        h, w = x.shape[-2:]
        taps = self._taps(x)
        first = self.mlp[0]
        assert isinstance(first, nn.Linear)
        hidden: torch.Tensor | None = None
        start = 0
        for tap in taps:
            weight = first.weight[:, start:start + tap.shape[1]]
            start += tap.shape[1]
            part = F.conv2d(tap, weight[:, :, None, None])
            if part.shape[-2:] != (h, w):
                part = F.interpolate(part, size=(h, w), mode="bilinear", align_corners=False)
            hidden = part if hidden is None else hidden + part
        assert hidden is not None
        y = hidden + first.bias[None, :, None, None]
        last = len(self.mlp) - 1
        for index, module in enumerate(list(self.mlp)[1:], start=1):
            if index == last:
                y = self.feature_tap(y)  # the last hidden layer: what the output layer classifies
            if isinstance(module, nn.Linear):
                y = F.conv2d(y, module.weight[:, :, None, None], module.bias)
            elif isinstance(module, nn.BatchNorm1d):
                y = F.batch_norm(y, module.running_mean, module.running_var, module.weight, module.bias,
                                 training=module.training, momentum=module.momentum or 0.0, eps=module.eps)
            elif isinstance(module, nn.Dropout):
                y = F.dropout(y, module.p, training=module.training)
            else:
                y = module(y)
        return y

    def sample_logits(self, x: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator | None = None,
                      ignore_index: int = 255) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and targets at ``pixels_per_image`` random labelled pixels of each image.

        Returns
        -------
        logits : Tensor (batch, n_classes, pixels)
        targets : Tensor (batch, pixels)
        """
        b, _, h, w = x.shape
        target_size = padded_size((h, w), self.size_multiple)
        padded = _mirror_pad(x, target_size)
        taps = self._taps(padded)
        n = self.pixels_per_image
        # Draw among labelled pixels only: random scores, ignored pixels ranked last.
        scores = torch.rand(labels.shape, generator=generator, device="cpu").to(labels.device)
        scores = scores.masked_fill(labels == ignore_index, -1.0).reshape(b, -1)
        flat_idx = scores.topk(min(n, h * w), dim=1).indices
        ys, xs = flat_idx // w, flat_idx % w
        grid = torch.stack(
            [(xs.float() + 0.5) / target_size[1] * 2 - 1, (ys.float() + 0.5) / target_size[0] * 2 - 1], dim=-1
        ).unsqueeze(1).to(x.dtype)
        cols = [F.grid_sample(t, grid, mode="bilinear", padding_mode="border", align_corners=False).squeeze(2) for t in taps]
        columns = torch.cat(cols, dim=1)  # (b, C, n)
        logits = self.mlp(columns.permute(0, 2, 1).reshape(-1, columns.shape[1]))
        logits = logits.reshape(b, -1, self.n_classes).permute(0, 2, 1)
        targets = labels.reshape(b, -1).gather(1, flat_idx)
        return logits, targets
