"""Grad-CAM and network dissection on hand-built networks whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from metallo.errors import ConfigError
from metallo.segment import (
    dissect_activations,
    get_model,
    grad_cam,
    save_dissection_figure,
    save_grad_cam_figure,
)


class BrightDetector(nn.Module):
    """Layer ``feat`` channel 0 = relu(x) (bright phase), channel 1 = relu(1 - x) (dark phase);
    the class-1 logit is channel 0, the class-0 logit channel 1."""

    n_classes = 2
    in_channels = 1

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Conv2d(1, 2, 1)
        with torch.no_grad():
            self.feat.weight[:] = torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1)
            self.feat.bias[:] = torch.tensor([0.0, 1.0])
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.act(self.feat(x))
        return torch.cat([f[:, 1:2], f[:, 0:1]], dim=1)


def _square(size=32, lo=8, hi=24):
    image = np.zeros((size, size), np.float32)
    image[lo:hi, lo:hi] = 1.0
    return image


def test_grad_cam_highlights_the_class_region():
    image = _square()
    cams = grad_cam(BrightDetector(), image, layer="act", device="cpu")
    inside = image > 0.5
    assert cams.shape == (2, 32, 32)
    assert np.allclose(cams[1][inside], 1.0) and np.allclose(cams[1][~inside], 0.0)
    assert np.allclose(cams[0][~inside], 1.0) and np.allclose(cams[0][inside], 0.0)


def test_dissection_finds_the_detector_channels():
    rng = np.random.default_rng(0)
    image = _square() + rng.normal(0, 0.01, (32, 32)).astype(np.float32)  # break ties
    labels = (_square() > 0.5).astype(np.uint8)
    # The square is 1/4 of the image: with top_fraction 0.25 channel 0 fires exactly on it.
    table = dissect_activations(BrightDetector(), [image], [labels], n_classes=2, layer="act",
                                top_fraction=0.25, classes=["dark", "bright"], device="cpu")
    best = table.iloc[0]
    assert (best["channel"], best["class_name"]) == (0, "bright") and best["iou"] > 0.95
    dark = table[(table.channel == 1) & (table["class"] == 0)].iou.item()
    assert dark == pytest.approx(1 / 3, abs=0.03)  # top 25 % of the 75 % background
    assert len(table) == 4


def test_explanations_of_a_real_model_and_figures(tmp_path):
    net = get_model("unet", n_classes=3, base_channels=4)
    image = np.random.default_rng(0).random((48, 40))
    cams = grad_cam(net, image, classes=[0, 2], device="cpu")
    assert cams.shape == (2, 48, 40) and cams.min() >= 0 and cams.max() <= 1
    labels = np.random.default_rng(1).integers(0, 3, (48, 40))
    table = dissect_activations(net, [image, image], [labels, labels], n_classes=3, device="cpu")
    assert len(table) == 3 * 64  # bottleneck of a 4-level U-Net with base 4: 64 channels
    cam_png = save_grad_cam_figure(image, cams, tmp_path / "cam.png", classes=["a", "c"])
    dis_png = save_dissection_figure(table, tmp_path / "dissect.png")
    for path in (cam_png, dis_png):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_layer_and_class():
    with pytest.raises(ConfigError, match="layer 'nope' not in"):
        grad_cam(BrightDetector(), _square(), layer="nope", device="cpu")
    with pytest.raises(ConfigError, match="class 5 out of range"):
        grad_cam(BrightDetector(), _square(), classes=[5], layer="act", device="cpu")
