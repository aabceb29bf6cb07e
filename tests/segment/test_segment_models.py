"""One battery for every registered model: shapes, backward pass, save/load, grey and RGB."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metallo.errors import ConfigError, ModelError, UnknownNameError
from metallo.segment import (
    get_model,
    load_checkpoint,
    load_vgg16_state_dict,
    model_names,
    save_checkpoint,
)
from metallo.segment._vgg import VGG16, vgg16_features

SMALL = {
    "unet": {"base_channels": 4},
    "unet_vgg16": {"width_divisor": 16, "decoder_channels": (16, 8, 8, 8)},
    "pixelnet": {"width_divisor": 16, "hidden": 16, "pixels_per_image": 64},
}


def test_registry_lists_the_three_models():
    assert model_names() == ["pixelnet", "unet", "unet_vgg16"]
    assert set(SMALL) == set(model_names())


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownNameError, match="pixelnet, unet, unet_vgg16"):
        get_model("segnet", n_classes=2)


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("shape", [(37, 50), (17, 23), (32, 32)])
def test_output_shape_for_odd_sizes(name, in_channels, shape):
    torch.manual_seed(0)
    net = get_model(name, n_classes=3, in_channels=in_channels, **SMALL[name]).eval()
    with torch.no_grad():
        out = net(torch.rand(2, in_channels, *shape))
    assert out.shape == (2, 3, *shape)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_strict_size_names_the_padded_size(name):
    net = get_model(name, n_classes=2, strict_size=True, **SMALL[name])
    with pytest.raises(ConfigError, match="pad to 48x64"):
        net(torch.rand(1, 1, 37, 50))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_wrong_channel_count_is_a_config_error(name):
    net = get_model(name, n_classes=2, in_channels=1, **SMALL[name])
    with pytest.raises(ConfigError, match=r"expects input \(batch, 1, H, W\)"):
        net(torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_backward_reaches_the_first_layer(name):
    torch.manual_seed(0)
    net = get_model(name, n_classes=2, **SMALL[name]).train()
    x, y = torch.rand(2, 1, 32, 32), torch.randint(0, 2, (2, 32, 32))
    torch.nn.functional.cross_entropy(net(x), y).backward()
    first = next(p for p in net.parameters() if p.ndim == 4)
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_few_steps_lower_the_loss(name):
    torch.manual_seed(0)
    net = get_model(name, n_classes=2, **SMALL[name]).train()
    x = torch.rand(4, 1, 32, 32)
    y = (x[:, 0] > 0.5).long()
    # The plain VGG encoder has no batch norm and needs a larger step to move in 16 steps.
    opt = torch.optim.Adam(net.parameters(), lr=1e-2 if name == "unet_vgg16" else 3e-3)
    losses = []
    for _ in range(16):
        opt.zero_grad()
        if net.sparse_training:
            logits, target = net.sample_logits(x, y, generator=torch.Generator().manual_seed(0))
        else:
            logits, target = net(x), y
        loss = torch.nn.functional.cross_entropy(logits, target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])


@pytest.mark.parametrize("name", sorted(SMALL))
def test_checkpoint_round_trip_gives_identical_output(name, tmp_path):
    torch.manual_seed(0)
    net = get_model(name, n_classes=3, in_channels=3, **SMALL[name]).eval()
    path = save_checkpoint(tmp_path / "m.pt", net, classes=["a", "b", "c"], mean=[0.5] * 3, std=[0.2] * 3,
                           pixel_size_um=0.1, tile={"size": 32}, metrics={"mean_iou": 0.5})
    loaded, info = load_checkpoint(path)
    x = torch.rand(1, 3, 40, 24)
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))
    assert info["classes"] == ["a", "b", "c"] and info["model"] == name
    assert info["pixel_size_um"] == 0.1 and info["tile"]["size"] == 32 and len(info["sha256"]) == 64


def test_checkpoint_of_another_model_is_a_model_error(tmp_path):
    net = get_model("unet", n_classes=2, **SMALL["unet"])
    path = save_checkpoint(tmp_path / "u.pt", net, classes=["a", "b"], mean=[0.0], std=[1.0])
    with pytest.raises(ModelError, match="holds model 'unet', not 'pixelnet'"):
        load_checkpoint(path, model="pixelnet")
    payload = torch.load(path, weights_only=True)
    payload["model"], payload["model_kwargs"] = "unet_vgg16", {"n_classes": 2, "in_channels": 1, "width_divisor": 16}
    torch.save(payload, tmp_path / "swapped.pt")
    with pytest.raises(ModelError, match="weights do not fit model 'unet_vgg16'"):
        load_checkpoint(tmp_path / "swapped.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ModelError, match="not a metallo segmentation checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_pixelnet_sparse_samples_equal_dense_prediction():
    torch.manual_seed(0)
    net = get_model("pixelnet", n_classes=3, **SMALL["pixelnet"]).eval()
    x = torch.rand(1, 1, 24, 40)
    position = torch.arange(24 * 40).reshape(1, 24, 40)  # the "label" of a pixel is its index
    with torch.no_grad():
        dense = net(x).reshape(3, -1)
        sparse, picked = net.sample_logits(x, position, ignore_index=-1)
    assert torch.allclose(dense[:, picked[0]], sparse[0], atol=1e-5)


def test_pixelnet_samples_only_labelled_pixels():
    net = get_model("pixelnet", n_classes=2, **SMALL["pixelnet"])
    labels = torch.full((1, 32, 32), 255)
    labels[0, :4, :4] = 1
    _, target = net.sample_logits(torch.rand(1, 1, 32, 32), labels)
    assert (target[0, :16] == 1).all()  # the 16 labelled pixels come first
    assert (target[0, 16:] == 255).all()


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A randomly initialised VGG16 state dict under torchvision's names (features only: the
    classifier is not used by the encoders and would add 500 MB)."""
    torch.manual_seed(1)
    state = {f"features.{k}": v for k, v in vgg16_features().state_dict().items()}
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("name", ["unet_vgg16", "pixelnet"])
def test_vgg16_weights_load_from_a_file(name, vgg_file):
    path, state = vgg_file
    rgb = get_model(name, n_classes=2, in_channels=3, weights=str(path))
    assert torch.equal(rgb.state_dict()["features.28.weight"], state["features.28.weight"])
    assert torch.equal(rgb.state_dict()["features.0.weight"], state["features.0.weight"])
    grey = get_model(name, n_classes=2, in_channels=1, weights=str(path))
    assert torch.allclose(grey.state_dict()["features.0.weight"], state["features.0.weight"].sum(1, keepdim=True))
    # A grey image must give the same first-layer response as that image replicated over RGB.
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(grey.features[0](x), rgb.features[0](x.repeat(1, 3, 1, 1)), atol=1e-5)


def test_imagenet_weights_resolve_to_the_torch_hub_cache(vgg_file, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ModelError, match="vgg16-397923af.pth"):
        load_vgg16_state_dict("imagenet", in_channels=3)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "vgg16-397923af.pth").write_bytes(vgg_file[0].read_bytes())
    loaded = load_vgg16_state_dict("imagenet", in_channels=3)
    assert torch.equal(loaded["features.0.weight"], vgg_file[1]["features.0.weight"])


def test_vgg16_has_torchvision_parameter_names():
    with torch.device("meta"):
        names = list(VGG16().state_dict())
    assert names[:2] == ["features.0.weight", "features.0.bias"] and names[-2:] == ["classifier.6.weight",
                                                                                      "classifier.6.bias"]
    assert "features.28.weight" in names and len(names) == 32


def test_a_state_dict_that_is_not_vgg16_is_rejected(tmp_path):
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(ModelError, match="has shape"):
        load_vgg16_state_dict(tmp_path / "bad.pth", in_channels=3)
    with pytest.raises(ConfigError, match="width_divisor=1"):
        get_model("unet_vgg16", n_classes=2, weights=tmp_path / "bad.pth", width_divisor=2)


def _unet_option_costs_and_round_trips(option: str, tmp_path) -> float:
    """Parameter ratio of a U-Net-4 with ``option`` on over the plain one; the option is recorded
    only when on, and the checkpoint rebuilds the same network."""
    plain = get_model("unet", n_classes=3, base_channels=4)
    torch.manual_seed(0)
    net = get_model("unet", n_classes=3, base_channels=4, **{option: True}).eval()
    assert option not in plain.config and net.config[option] is True
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / f"{option}.pt", net, classes=["a", "b", "c"],
                                                mean=[0.5], std=[0.2]))
    x = torch.rand(1, 1, 40, 24)
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))
    return sum(p.numel() for p in net.parameters()) / sum(p.numel() for p in plain.parameters())


def test_residual_unet_adds_the_shortcut_and_round_trips(tmp_path):
    from metallo.segment._models import _ResidualBlock

    block = _ResidualBlock(4, 4).eval()
    for module in block.body:
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.zeros_(module.weight)          # body outputs BN(0) = BN's shift (0 by default)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        assert torch.equal(block(x), torch.relu(x))       # identity shortcut, then ReLU
    assert 1.0 < _unet_option_costs_and_round_trips("residual", tmp_path) < 1.1   # 1x1 projections where the width changes


def test_attention_unet_gates_its_skips_and_round_trips(tmp_path):
    from metallo.segment._models import _AttentionGate

    gate = _AttentionGate(4).eval()
    torch.nn.init.zeros_(gate.psi[0].weight)              # psi = sigmoid(BN(0)) = sigmoid(0): half of every skip
    g, x = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        assert torch.allclose(gate(g, x), 0.5 * x)
    assert 1.0 < _unet_option_costs_and_round_trips("attention", tmp_path) < 1.05  # three 1x1 convolutions per level
