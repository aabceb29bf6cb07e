"""Training, cross-validation and evaluation on synthetic two-phase micrographs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from metallo.errors import ConfigError, SchemaError
from metallo.segment import (
    LabelledImage,
    SegmentationData,
    TrainConfig,
    cross_validate,
    evaluate,
    fold_indices,
    load_checkpoint,
    predict,
    train,
)
from metallo.segment._checkpoint import autocast_dtype

FAST = {"epochs": 3, "tile_size": 32, "batch_size": 4, "device": "cpu", "out_dir": None}
SMALL = {
    "unet": {"base_channels": 4},
    "unet_vgg16": {"width_divisor": 16, "decoder_channels": (16, 8, 8, 8)},
    "pixelnet": {"width_divisor": 16, "hidden": 16, "pixels_per_image": 128},
}


def _held_out(two_phase_image, seed=99, shape=(96, 96)):
    image, labels = two_phase_image(shape, seed=seed)
    return SegmentationData([LabelledImage("held", image[..., None] / np.float32(255), labels, 0.1)], ["a", "b"])


@pytest.mark.slow
def test_tiny_unet_reaches_iou_0_9_on_an_easy_two_phase_task(two_phase_data, two_phase_image):
    result = train(two_phase_data, val_data=_held_out(two_phase_image), model="unet",
                   model_kwargs={"base_channels": 8}, epochs=10, tile_size=32, batch_size=4, lr=1e-2,
                   device="cpu", out_dir=None, seed=0)
    assert min(result.metrics["iou"]) >= 0.9
    assert result.metrics["accuracy"] >= 0.95
    assert result.history[-1]["loss"] < result.history[0]["loss"]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_model_trains_and_the_loss_falls(name, two_phase_data):
    result = train(two_phase_data, model=name, model_kwargs=SMALL[name], lr=1e-2 if name == "unet_vgg16" else 3e-3,
                   epochs=4, tile_size=32, batch_size=4, device="cpu", out_dir=None, augment=False, jitter=False)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]


def test_checkpoint_carries_what_prediction_needs(two_phase_data, tmp_path):
    result = train(two_phase_data, model="unet", model_kwargs={"base_channels": 4}, scale=0.5, eval_tta=True,
                   **{**FAST, "out_dir": str(tmp_path)})
    assert result.checkpoint == tmp_path / "model.pt"
    payload = torch.load(result.checkpoint, weights_only=True)
    assert payload["classes"] == ["ferrite", "pearlite"]
    assert payload["pixel_size_um"] == pytest.approx(0.1)
    assert payload["tile"] == {"size": 32, "scale": 0.5, "overlap": 64, "modality": "LOM", "tta": True,
                               "pixel_size_um": None, "pixel_size_range_um": [pytest.approx(0.1), pytest.approx(0.1)]}
    mean = np.mean([s.image.mean() for s in two_phase_data.rescaled(0.5).samples])
    assert payload["normalization"]["mean"][0] == pytest.approx(mean, rel=1e-3)
    assert payload["config"]["epochs"] == 3 and payload["metrics"]["epochs_run"] == 3
    model, info = load_checkpoint(result.checkpoint)
    assert info["model"] == "unet" and not model.training
    # Prediction re-applies the down-scaling; the evaluation's TTA only where a gain was measured,
    # which needs held-out images (none here), so a CPU prediction goes without and says why.
    image = two_phase_data.samples[0].image[..., 0]
    labels = predict(result.checkpoint, image, tile=None, device="cpu")
    config = json.loads(labels.attrs["config"])
    assert {k: config[k] for k in ("tile", "overlap", "scale", "batch_size", "tta", "ensemble")} == {
        "tile": None, "overlap": 0, "scale": 0.5, "batch_size": 1, "tta": False, "ensemble": 1}
    assert "no measured TTA gain" in config["tta_reason"]
    assert json.loads(predict(result.checkpoint, image, tile=None, device="cpu", tta=True).attrs["config"])["tta"]


def test_training_with_tta_records_its_held_out_gain(two_phase_data, two_phase_image):
    result = train(two_phase_data, val_data=_held_out(two_phase_image), model="unet",
                   model_kwargs={"base_channels": 4}, eval_tta=True, **FAST)
    metrics = result.metrics
    assert metrics["tta_gain"] == pytest.approx(metrics["mean_iou"] - metrics["mean_iou_without_tta"])
    assert 0 <= metrics["accuracy_without_tta"] <= 1


def test_same_seed_same_weights(two_phase_data):
    a = train(two_phase_data, model="unet", model_kwargs={"base_channels": 4}, seed=3, **FAST)
    b = train(two_phase_data, model="unet", model_kwargs={"base_channels": 4}, seed=3, **FAST)
    c = train(two_phase_data, model="unet", model_kwargs={"base_channels": 4}, seed=4, **FAST)
    sa, sb, sc = (r.model.state_dict() for r in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_focal_with_inverse_frequency_alpha_and_plateau_early_stopping(two_phase_data):
    result = train(two_phase_data, model="unet", model_kwargs={"base_channels": 4}, loss="focal",
                   loss_kwargs={"gamma": 2.0, "alpha": "inverse_frequency"}, optimizer="adamw",
                   schedule="plateau", patience=1, lr=1e-6, **{**FAST, "epochs": 20})
    # With a learning rate this small the loss cannot improve for long: early stopping ends it.
    assert result.metrics["epochs_run"] < 20


def test_cosine_schedule_anneals_per_step_over_the_epochs(two_phase_data):
    result = train(two_phase_data, model="unet", model_kwargs={"base_channels": 4}, schedule="cosine", lr=0.01,
                   steps_per_epoch=2, **{**FAST, "epochs": 4})
    # The lr recorded after each epoch is the one of its last step: progress (e + 1/2) / 4.
    expected = [0.005 * (1 + np.cos(np.pi * (e + 0.5) / 4)) for e in range(4)]
    assert [h["lr"] for h in result.history] == pytest.approx(expected)


def test_cosine_schedule_over_a_time_budget_ends_annealed(two_phase_data):
    result = train(two_phase_data, model="unet", model_kwargs={"base_channels": 4}, schedule="cosine", lr=0.01,
                   max_time_s=2.0, **{**FAST, "epochs": 100_000})
    lrs = [h["lr"] for h in result.history]
    assert len(lrs) < 100_000 and result.history[-1]["time_s"] >= 2.0  # the budget, not the epochs, ended it
    assert all(b <= a for a, b in zip(lrs, lrs[1:], strict=False)) and lrs[-1] < 0.005


def test_cpu_time_budget_ends_training_annealed_and_is_reported(two_phase_data):
    result = train(two_phase_data, model="unet", model_kwargs={"base_channels": 4}, schedule="cosine", lr=0.01,
                   max_cpu_s=3.0, **{**FAST, "epochs": 100_000})
    last = result.history[-1]
    assert len(result.history) < 100_000 and last["cpu_s"] >= 3.0 and last["lr"] < 0.005
    assert result.metrics["train_cpu_s"] == last["cpu_s"]
    assert result.metrics["train_steps"] == sum(h["steps"] for h in result.history) > 0
    with pytest.raises(ConfigError):
        TrainConfig.from_any({"max_cpu_s": -1.0})


def test_autocast_dtype_per_device(monkeypatch):
    from metallo.segment import _checkpoint

    assert autocast_dtype(torch.device("cuda"), amp=True) == torch.float16
    assert autocast_dtype(torch.device("cuda"), amp=False) is None
    monkeypatch.setattr(_checkpoint, "cpu_has_native_bfloat16", lambda: False)
    assert autocast_dtype(torch.device("cpu"), amp=True) is None  # bfloat16 would be slower than float32
    monkeypatch.setattr(_checkpoint, "cpu_has_native_bfloat16", lambda: True)
    assert autocast_dtype(torch.device("cpu"), amp=True) == torch.bfloat16


def test_bfloat16_training_on_cpu_learns_and_keeps_float32_weights(two_phase_data, monkeypatch):
    from metallo.segment import _checkpoint

    # Force the bfloat16 path so that it runs on every CPU (it is only chosen by default where fast).
    monkeypatch.setattr(_checkpoint, "cpu_has_native_bfloat16", lambda: True)
    options = {"model": "unet", "model_kwargs": {"base_channels": 4}, "lr": 1e-2, **{**FAST, "epochs": 6},
               "augment": False, "jitter": False}
    bf16 = train(two_phase_data, amp=True, **options)
    fp32 = train(two_phase_data, amp=False, **options)
    losses = [h["loss"] for h in bf16.history]
    assert losses[-1] < 0.7 * losses[0]
    params = list(bf16.model.parameters())
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in params)
    state32 = fp32.model.state_dict()
    assert not all(torch.equal(v, state32[k]) for k, v in bf16.model.state_dict().items())  # really ran in bf16


def test_training_at_one_pixel_size_resamples_every_image(two_phase_data, tmp_path):
    # Two magnifications: image 0 at 0.05 µm/px (twice the size), the others at 0.1 µm/px.
    import cv2

    first = two_phase_data.samples[0]
    big = LabelledImage("fine", cv2.resize(first.image, (128, 128), interpolation=cv2.INTER_LINEAR)[..., None],
                        cv2.resize(first.labels, (128, 128), interpolation=cv2.INTER_NEAREST), 0.05)
    data = SegmentationData([big, *two_phase_data.samples[1:]], two_phase_data.classes)
    resampled = data.resampled_to(0.2)
    assert [s.image.shape[:2] for s in resampled.samples] == [(32, 32)] * 4
    assert all(s.pixel_size_um == pytest.approx(0.2) for s in resampled.samples)
    result = train(data, val_data=data.subset([0]), model="unet", model_kwargs={"base_channels": 4}, pixel_size_um=0.2,
                   **{**FAST, "out_dir": str(tmp_path)})
    assert result.metrics["n_pixels"] == 128 * 128  # metrics on the original label grid
    payload = torch.load(result.checkpoint, weights_only=True)
    assert payload["pixel_size_um"] == 0.2 and payload["tile"]["pixel_size_um"] == 0.2
    # Prediction resamples each image by its own pixel size, and needs to know it.
    image = xr.DataArray(big.image[..., 0], dims=("y", "x"), attrs={"pixel_size_um": 0.05})
    labels = predict(result.checkpoint, image, tile=None, device="cpu")
    assert labels.shape == (128, 128) and json.loads(labels.attrs["config"])["scale"] == pytest.approx(0.25)
    with pytest.raises(ConfigError, match=r"pixel size unknown, but the model works at 0.2 µm/px"):
        predict(result.checkpoint, big.image[..., 0], device="cpu")
    same = predict(result.checkpoint, big.image[..., 0], pixel_size_um=0.05, tile=None, device="cpu")
    assert np.array_equal(same.values, labels.values)


def test_pixel_size_training_errors(two_phase_data):
    unknown = SegmentationData([LabelledImage("nosize", np.zeros((8, 8, 1), np.float32), np.zeros((8, 8), np.uint8))],
                               ["a", "b"])
    with pytest.raises(ConfigError, match=r"nosize: pixel size unknown, cannot resample to 0.2 µm/px"):
        unknown.resampled_to(0.2)
    with pytest.raises(ConfigError, match="either scale or pixel_size_um"):
        TrainConfig.from_any({"scale": 0.5, "pixel_size_um": 0.2})
    with pytest.raises(ConfigError, match="pixel_size_um must be a positive"):
        TrainConfig.from_any({"pixel_size_um": -1})


def test_cross_validation_reports_folds_mean_and_std(two_phase_data, tmp_path):
    cv = cross_validate(two_phase_data, folds=2, model="unet", model_kwargs={"base_channels": 4},
                        **{**FAST, "epochs": 2, "out_dir": str(tmp_path)})
    assert len(cv.folds) == 2
    held = sorted(name for f in cv.folds for name in f["held_out"])
    assert held == sorted(s.name for s in two_phase_data.samples)  # each image held out once
    accs = [f["accuracy"] for f in cv.folds]
    assert cv.mean["accuracy"] == pytest.approx(np.mean(accs))
    assert cv.std["accuracy"] == pytest.approx(np.std(accs, ddof=1))
    assert np.asarray(cv.pooled["confusion"]).sum() == 4 * 64 * 64
    table = cv.table()
    assert list(table.index) == ["0", "1", "mean", "std"] and "iou_pearlite" in table.columns
    assert (tmp_path / "cv_metrics.json").is_file() and (tmp_path / "fold1.pt").is_file()


def test_fold_indices_partition_the_images():
    parts = fold_indices(11, 5, seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(11))
    assert [len(p) for p in parts] == [3, 2, 2, 2, 2]
    with pytest.raises(ConfigError, match="at least 5 images"):
        fold_indices(3, 5)


def test_evaluate_a_checkpoint_on_a_folder(data_folder, tmp_path):
    result = train(str(data_folder), model="unet", model_kwargs={"base_channels": 4},
                   **{**FAST, "out_dir": str(tmp_path / "run")})
    metrics = evaluate(result.checkpoint, data_folder, device="cpu")
    assert metrics["classes"] == ["ferrite", "pearlite"]
    assert metrics["n_pixels"] == 4 * (64 * 64 - 9)  # 3x3 corner of each image is ignore
    assert len(metrics["images"]) == 4
    # The errors near the labelled boundaries and beyond them add up to all the errors.
    near, n = metrics["boundary"], metrics["n_pixels"]
    errors = (1 - metrics["accuracy"]) * n
    if errors:
        beyond = (1 - near["accuracy_beyond"]) * (1 - near["pixel_share"]) * n
        assert near["error_share"] * errors + beyond == pytest.approx(errors)
    assert 0 < near["pixel_share"] < 1
    assert all("boundary_error_share" in image for image in metrics["images"])


def test_config_from_yaml_and_bad_options(data_folder, tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(f"data: {data_folder}\nmodel: unet\nepochs: 2\nloss: focal\nfolds: 3\n")
    cfg = TrainConfig.from_any(path, lr=1e-4)
    assert (cfg.model, cfg.epochs, cfg.loss, cfg.folds, cfg.lr) == ("unet", 2, "focal", 3, 1e-4)
    assert TrainConfig.from_any(data_folder).data == str(data_folder)
    assert TrainConfig.from_any({"modality": "SEM"}).tile == 512
    with pytest.raises(ConfigError, match="unknown training option"):
        TrainConfig.from_any({"epochz": 3})
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig.from_any({"optimizer": "sgd"})
    with pytest.raises(ConfigError, match="neither a YAML config file nor a training-data folder"):
        TrainConfig.from_any(tmp_path / "missing")
    with pytest.raises(ConfigError, match="2 class names but n_classes=3"):
        train(str(data_folder), n_classes=3, **FAST)


def test_weight_average_is_the_ramped_exponential_average():
    from metallo.segment._train import _WeightAverage

    model = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(0.0)
    average = _WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    for _ in range(3):
        average.update(model)
    # From 0 towards a constant 1 the average is 1 - prod(decay_n), decay_n = min(0.5, (1 + n) / (10 + n)).
    expected = 1.0 - (2 / 11) * (3 / 12) * (4 / 13)
    state = average.state_dict(model)
    assert float(state["0.weight"]) == pytest.approx(expected, rel=1e-6)
    # Integer buffers are the model's own; the model itself is not changed.
    assert state["1.num_batches_tracked"].dtype == torch.int64
    assert float(model[0].weight.detach()) == 1.0
    # After many updates the ramp is over and the decay is the one asked for.
    for _ in range(200):
        average.update(model)
    with torch.no_grad():
        model[0].weight.fill_(3.0)
    before = float(average.shadow["0.weight"])
    average.update(model)
    assert float(average.shadow["0.weight"]) == pytest.approx(0.5 * before + 0.5 * 3.0, rel=1e-6)


def test_training_with_weight_averaging_keeps_the_averaged_weights(two_phase_data):
    kwargs = dict(model="unet", model_kwargs={"base_channels": 4}, lr=1e-2, augment=False, **FAST)
    last = train(two_phase_data, **kwargs).model.state_dict()
    # A decay of ~0 averages nothing: the last weights, as without averaging.
    same = train(two_phase_data, ema_decay=1e-9, **kwargs).model.state_dict()
    averaged = train(two_phase_data, ema_decay=0.9, **kwargs).model.state_dict()
    weights = [k for k, v in last.items() if k.endswith("weight") and v.ndim == 4]
    assert all(torch.allclose(last[k], same[k], atol=1e-6) for k in weights)
    assert not any(torch.allclose(last[k], averaged[k], atol=1e-6) for k in weights)
    with pytest.raises(ConfigError, match="ema_decay"):
        TrainConfig.from_any({"ema_decay": 1.0})


def test_yaml_config_takes_ema_decay(tmp_path, data_folder):
    path = tmp_path / "train.yaml"
    path.write_text(f"data: {data_folder}\nema_decay: 0.995\n")
    assert TrainConfig.from_any(path).ema_decay == 0.995
    path.write_text(f"data: {data_folder}\nema_decay: 2\n")
    with pytest.raises(SchemaError, match=r"ema_decay \(line 2\)"):
        TrainConfig.from_any(path)


def test_ignore_boundary_px_leaves_the_band_out_of_the_loss(two_phase_data):
    kwargs = dict(model="unet", model_kwargs={"base_channels": 4}, lr=1e-2, augment=False, **FAST)
    init = train(two_phase_data, epochs=1, steps_per_epoch=0, **{k: v for k, v in kwargs.items() if k != "epochs"})
    trained = train(two_phase_data, **kwargs)
    # Every labelled pixel lies within 1000 px of the other class: nothing is left to learn from.
    nothing = train(two_phase_data, ignore_boundary_px=1000, **kwargs)
    weights = [k for k, v in init.model.state_dict().items() if k.endswith("weight") and v.ndim == 4]
    assert all(torch.equal(init.model.state_dict()[k], nothing.model.state_dict()[k]) for k in weights)
    assert not any(torch.equal(init.model.state_dict()[k], trained.model.state_dict()[k]) for k in weights)
    assert all(h["loss"] == 0.0 for h in nothing.history)
    with pytest.raises(ConfigError, match="ignore_boundary_px"):
        TrainConfig.from_any({"ignore_boundary_px": -1})


def test_a_tile_smaller_than_the_network_can_halve_is_refused():
    """metallo train --tile 7 ran for minutes without a line of output (tens of thousands of
    7-px tiles an epoch); the U-Nets halve a tile four times."""
    for bad in (7, 31, 0, 64.5):
        with pytest.raises(ConfigError, match="tile_size must be a whole number of pixels >= 32"):
            TrainConfig.from_any({"tile_size": bad})
    assert TrainConfig.from_any({"tile_size": 32}).tile == 32
    assert TrainConfig.from_any({}).tile == 256  # LOM default, the paper's
