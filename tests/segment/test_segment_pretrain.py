"""Self-supervised pretraining (masked inpainting) and starting supervised training from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from metallo.errors import ConfigError
from metallo.segment import (
    TrainConfig,
    get_model,
    load_checkpoint,
    load_initial_weights,
    pretrain,
    train,
    unlabelled_images,
)


def _stripes(seed: int, shape=(64, 64), period=8.0) -> np.ndarray:
    """A periodic texture: what a blank square holds follows from its surroundings."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    phase = rng.uniform(0, 2 * np.pi)
    return (0.5 + 0.4 * np.sin(2 * np.pi * (xx + 0.5 * yy) / period + phase)).astype(np.float32)


def test_inpainting_learns_to_paint_a_texture_back(tmp_path):
    images = [_stripes(i) for i in range(4)]
    res = pretrain(images, model_kwargs={"base_channels": 8}, tile_size=32, epochs=30, lr=3e-3, patch=8,
                   device="cpu", seed=0, out=tmp_path / "pre.pt")
    first, last = res.history[0], res.history[-1]
    # Painting each blank with the mean of the visible pixels leaves the stripes' whole variance
    # (about 1 in normalised units); the network, which sees the stripes around the blank, far less.
    assert 0.7 < last["baseline_loss"] < 1.3
    assert last["loss"] < 0.35 * last["baseline_loss"]
    assert last["loss"] < first["loss"]
    net, info = load_checkpoint(res.checkpoint)
    assert info["config"]["pretext"] == "masked_inpainting"
    assert info["metrics"]["images"] == ["array0", "array1", "array2", "array3"]
    assert net.n_classes == 1


def test_initial_weights_copy_every_tensor_but_the_output_layer(tmp_path):
    res = pretrain([_stripes(0)], model_kwargs={"base_channels": 4}, tile_size=32, epochs=1, device="cpu",
                   out=tmp_path / "pre.pt")
    torch.manual_seed(123)
    fresh = get_model("unet", n_classes=3, base_channels=4)
    head_before = fresh.head.weight.detach().clone()
    info = load_initial_weights(fresh, res.checkpoint)
    given = res.model.state_dict()
    mine = fresh.state_dict()
    copied = [k for k in mine if not k.startswith("head.")]
    assert info["loaded"] == len(copied) and info["kept_fresh"] == 2
    assert all(torch.equal(mine[k], given[k]) for k in copied)
    assert torch.equal(fresh.head.weight, head_before)  # 3 classes: the output layer stays its own
    assert info["pretext"] == "masked_inpainting" and len(info["sha256"]) == 64


def test_training_from_pretrained_weights_records_them(two_phase_data, tmp_path):
    pre = pretrain(two_phase_data, model_kwargs={"base_channels": 4}, tile_size=32, epochs=1, device="cpu",
                   out=tmp_path / "pre.pt")
    result = train(two_phase_data, model="unet", model_kwargs={"base_channels": 4}, epochs=1, tile_size=32,
                   device="cpu", out_dir=str(tmp_path / "run"), init_weights=str(pre.checkpoint))
    assert result.metrics["init_weights"]["path"] == str(pre.checkpoint)
    _, info = load_checkpoint(result.checkpoint)
    assert info["config"]["init_weights"] == str(pre.checkpoint)
    assert info["metrics"]["init_weights"]["loaded"] > 0


def test_weights_of_another_architecture_are_refused_naming_file_and_tensor(tmp_path):
    pre = pretrain([_stripes(0)], model_kwargs={"base_channels": 4}, tile_size=32, epochs=1, device="cpu",
                   out=tmp_path / "pre.pt")
    with pytest.raises(ConfigError, match=r"pre\.pt: init_weights tensor '.*' does not fit the model"):
        load_initial_weights(get_model("unet", n_classes=2, base_channels=8), pre.checkpoint)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"init_weights: .*junk\.pt: not a readable metallo checkpoint"):
        load_initial_weights(get_model("unet", n_classes=2, base_channels=4), tmp_path / "junk.pt")


def test_yaml_init_weights_is_relative_to_the_config_file(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "train.yaml").write_text("model: unet\ninit_weights: pre.pt\n")
    cfg = TrainConfig.from_any(tmp_path / "cfg" / "train.yaml")
    assert cfg.init_weights == str(tmp_path / "cfg" / "pre.pt")


def test_unlabelled_images_read_folders_and_ignore_labels(data_folder, tmp_path):
    data = unlabelled_images([data_folder, np.zeros((10, 12), np.uint16)], scale=0.5)
    assert len(data) == 5 and data.classes == ["unlabelled"]
    assert data.samples[0].image.shape == (32, 32, 1)
    assert all(int(s.labels.max()) == 0 for s in data.samples)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty: no images"):
        unlabelled_images([tmp_path / "empty"])
    with pytest.raises(ConfigError, match="nowhere: no such image file or folder"):
        unlabelled_images([tmp_path / "nowhere"])
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "one.png")
    assert len(unlabelled_images([tmp_path / "one.png"])) == 1


def test_bad_pretraining_settings_are_refused():
    with pytest.raises(ConfigError, match="mask_ratio"):
        pretrain([_stripes(0)], mask_ratio=1.0, device="cpu")
    with pytest.raises(ConfigError, match="tile_size"):
        pretrain([_stripes(0)], tile_size=4, device="cpu")


def test_cli_pretrain_then_train_from_it(data_folder, tmp_path):
    from typer.testing import CliRunner

    from metallo.cli import app

    runner = CliRunner()
    pre = tmp_path / "pre.pt"
    result = runner.invoke(app, ["pretrain", str(data_folder), "--out", str(pre), "--base-channels", "4", "--tile", "32",
                                 "--epochs", "2", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "pretrained on 4 images" in result.output and pre.is_file()
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(data_folder), "--init-weights", str(pre), "--folds", "0", "--epochs", "1",
                                 "--tile", "32", "--device", "cpu", "--out", str(out), "--quiet"])
    assert result.exit_code != 0  # the default model is U-Net 64: the 4-channel weights do not fit
    assert "does not fit the model" in result.output
    config = tmp_path / "train.yaml"
    config.write_text(f"data: {data_folder}\nmodel_kwargs: {{base_channels: 4}}\ninit_weights: {pre}\n")
    result = runner.invoke(app, ["train", str(config), "--folds", "0", "--epochs", "1", "--tile", "32", "--device", "cpu",
                                 "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    _, info = load_checkpoint(out / "model.pt")
    assert info["metrics"]["init_weights"]["pretext"] == "masked_inpainting"
    result = runner.invoke(app, ["pretrain", str(data_folder), "--out", str(pre)])
    assert result.exit_code == 1 and "give a budget" in result.output
    result = runner.invoke(app, ["pretrain", str(tmp_path / "nope"), "--out", str(pre)])
    assert result.exit_code == 1 and "nope: no such image file or folder" in result.output


@pytest.mark.parametrize("name, kwargs", [
    ("unet_vgg16", {"width_divisor": 16, "decoder_channels": (16, 8, 8, 8)}),
    ("pixelnet", {"width_divisor": 16, "hidden": 16}),
])
def test_every_model_pretrains_and_hands_over_all_but_its_output_layer(name, kwargs, tmp_path):
    res = pretrain([_stripes(0)], model=name, model_kwargs=kwargs, tile_size=32, epochs=1, device="cpu",
                   out=tmp_path / "pre.pt")
    target = get_model(name, n_classes=4, **kwargs)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    info = load_initial_weights(target, res.checkpoint)
    assert info["kept_fresh"] == 2 and info["loaded"] == len(before) - 2
    after, given = target.state_dict(), res.model.state_dict()
    kept = sorted(k for k in after if not torch.equal(after[k], given.get(k, torch.empty(0))))
    # Only the last layer, one output per class (4 here, 1 in the pretrained net), stays fresh.
    assert len(kept) == 2 and all(after[k].shape[0] == 4 and torch.equal(after[k], before[k]) for k in kept)
    assert kept[0].rsplit(".", 1)[0] == list(after)[-1].rsplit(".", 1)[0]


def test_a_pretraining_checkpoint_is_not_taken_for_a_segmentation_model(tmp_path):
    from metallo.errors import ModelError
    from metallo.segment import predict

    pre = pretrain([_stripes(0)], model_kwargs={"base_channels": 4}, tile_size=32, epochs=1, device="cpu",
                   out=tmp_path / "pre.pt")
    with pytest.raises(ModelError, match=r"pre\.pt: a self-supervised pretraining checkpoint \(masked_inpainting\) does not segment"):
        predict(pre.checkpoint, _stripes(1), device="cpu")
