"""VGG16 defined in metallo with torchvision's parameter names.

torchvision is not a dependency, but its ImageNet VGG16 weights are the standard
initialisation of the U-Net-VGG16 and PixelNet encoders. Keeping the exact module layout
(``features.0.weight`` ... ``classifier.6.bias``) lets ``vgg16-397923af.pth`` from the torch
hub cache, or any file saved from ``torchvision.models.vgg16().state_dict()``, load as is.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from metallo.errors import ModelError

__all__ = ["VGG16", "VGG16_IMAGENET_FILE", "load_vgg16_state_dict", "vgg16_features", "vgg16_weights_path"]

VGG16_IMAGENET_FILE = "vgg16-397923af.pth"

# "M" is a 2x2 max-pool; numbers are 3x3 conv widths (torchvision configuration "D").
_CFG_D: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)

# Index in ``features`` of the ReLU after conv1_2, conv2_2, conv3_3, conv4_3, conv5_3: the
# last activation of each block, the taps of the U-Net skips and of PixelNet's hypercolumns.
BLOCK_ENDS: tuple[int, ...] = (3, 8, 15, 22, 29)
BLOCK_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)


class VGG16(nn.Module):
    """VGG16 (configuration D, no batch norm) with torchvision's module names.

    Parameters
    ----------
    in_channels : int
        1 for grey micrographs, 3 for RGB.
    n_classes : int
        Size of the classifier output (1000 for ImageNet).
    width_divisor : int
        Divide every width by this (1 = VGG16; larger values give small test networks that
        cannot load ImageNet weights).

    Examples
    --------
    >>> net = VGG16(in_channels=1)
    >>> sorted(net.state_dict())[0]
    'classifier.0.bias'
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 1000, width_divisor: int = 1) -> None:
        super().__init__()
        self.features = vgg16_features(in_channels, width_divisor=width_divisor)
        channels = 512 // width_divisor
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        hidden = 4096 // width_divisor
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, hidden), nn.ReLU(True), nn.Dropout(),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def vgg16_features(in_channels: int = 3, *, width_divisor: int = 1) -> nn.Sequential:
    """The convolutional part of VGG16 (``features``), without the 120M-parameter classifier.

    Examples
    --------
    >>> len(vgg16_features())
    31
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for item in _CFG_D:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            width = int(item) // width_divisor
            layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = width
    return nn.Sequential(*layers)


def vgg16_weights_path(weights: str | Path) -> Path:
    """Resolve ``"imagenet"`` to the torch hub cache file, or check a given path.

    Parameters
    ----------
    weights : str or Path
        ``"imagenet"`` or the path of a saved torchvision VGG16 state dict.

    Returns
    -------
    Path

    Examples
    --------
    >>> vgg16_weights_path("imagenet").name
    'vgg16-397923af.pth'
    """
    if str(weights).lower() == "imagenet":
        return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_IMAGENET_FILE
    return Path(weights)


def load_vgg16_state_dict(weights: str | Path, *, in_channels: int) -> dict[str, torch.Tensor]:
    """Load the ``features.*`` tensors of a torchvision VGG16 state dict.

    The first convolution is adapted to ``in_channels``: for grey input the RGB filters are
    summed, so a grey image gives the same response as that image replicated over RGB.

    Parameters
    ----------
    weights : str or Path
        ``"imagenet"`` (torch hub cache) or a file path.
    in_channels : int
        Channels of the model that receives the weights.

    Returns
    -------
    dict
        ``features.<i>.weight`` / ``features.<i>.bias`` tensors.

    Examples
    --------
    >>> path = "vgg.pth"
    >>> torch.save({f"features.{k}": v for k, v in vgg16_features().state_dict().items()}, path)
    >>> load_vgg16_state_dict(path, in_channels=1)["features.0.weight"].shape
    torch.Size([64, 1, 3, 3])
    """
    path = vgg16_weights_path(weights)
    if not path.is_file():
        hint = " (run torchvision once to download it, or pass weights='path/to/vgg16.pth')" if str(weights).lower() == "imagenet" else ""
        raise ModelError(f"VGG16 weights not found at {path}{hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise ModelError(f"{path}: not a readable torch state dict ({exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    with torch.device("meta"):  # shapes only, no memory
        reference = vgg16_features(3).state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, ref in reference.items():
        name = f"features.{key}"
        if name not in state:
            raise ModelError(f"{path}: not a torchvision VGG16 state dict (missing {name!r})")
        tensor = state[name]
        if tuple(tensor.shape) != tuple(ref.shape):
            raise ModelError(f"{path}: {name} has shape {tuple(tensor.shape)}, VGG16 expects {tuple(ref.shape)}")
        out[name] = tensor.float()
    first = out["features.0.weight"]
    if in_channels == 1:
        out["features.0.weight"] = first.sum(dim=1, keepdim=True)
    elif in_channels != 3:
        out["features.0.weight"] = first.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) * (3.0 / in_channels)
    return out
