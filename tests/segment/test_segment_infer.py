"""Tiled inference: exact agreement with untiled prediction, blending, files, specimens."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr
from PIL import Image
from torch import nn

from metallo._xarray import image_dataarray
from metallo.errors import ConfigError, ModelError
from metallo.io import read_image, write_image
from metallo.segment import (
    blend_window,
    get_model,
    load_checkpoint,
    predict,
    predict_files,
    save_checkpoint,
)
from metallo.segment._infer import predict_array


class SmallField(nn.Module):
    """Two 3x3 convolutions: receptive-field radius 2 px, far below the 8 px blend margin."""

    n_classes = 3
    in_channels = 1

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * 5


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    net = get_model("unet", n_classes=2, base_channels=4)
    return save_checkpoint(tmp_path / "unet.pt", net, classes=["ferrite", "pearlite"], mean=[0.5], std=[0.25],
                           pixel_size_um=0.1, tile={"size": 32, "scale": 1.0})


@pytest.mark.parametrize(("shape", "tile", "overlap"), [((150, 201), 48, 32), ((64, 64), 40, 16), ((33, 97), 64, 32)])
def test_tiled_equals_untiled_when_the_receptive_field_fits_the_margin(shape, tile, overlap):
    image = np.random.default_rng(1).random(shape).astype(np.float32)
    whole = predict(SmallField(), image, tile=None, overlap=overlap, probabilities=True, device="cpu")
    tiled = predict(SmallField(), image, tile=tile, overlap=overlap, batch_size=3, probabilities=True, device="cpu")
    assert np.abs(whole["probabilities"].values - tiled["probabilities"].values).max() < 1e-5
    assert np.array_equal(whole["labels"].values, tiled["labels"].values)


def test_test_time_augmentation_is_the_mean_over_the_eight_symmetries():
    image = np.random.default_rng(4).random((40, 56)).astype(np.float32)
    net = SmallField().eval()
    x = torch.from_numpy(image)[None, None]
    expected = []
    with torch.no_grad():
        for k in range(4):
            for flip in (False, True):
                xi = torch.rot90(x, k, (2, 3))
                xi = xi.flip(3) if flip else xi
                p = torch.softmax(net(xi), dim=1)
                p = p.flip(3) if flip else p
                expected.append(torch.rot90(p, -k, (2, 3))[0].permute(1, 2, 0).numpy())
    # predict mirror-pads the image, the reference zero-pads it: compare beyond the 2 px field.
    inner = (slice(2, -2), slice(2, -2))
    expected = np.mean(expected, axis=0)[inner]
    whole = predict(net, image, tile=None, overlap=16, probabilities=True, device="cpu", tta=True)
    assert np.abs(whole["probabilities"].values[inner] - expected).max() < 1e-5
    plain = predict(net, image, tile=None, overlap=16, probabilities=True, device="cpu")
    assert np.abs(plain["probabilities"].values[inner] - expected).max() > 1e-3  # the network is not symmetric
    # Tiling keeps its exactness with TTA: every symmetry of a tile sees the same context.
    tiled = predict(net, image, tile=32, overlap=16, probabilities=True, device="cpu", tta=True)
    assert np.abs(tiled["probabilities"].values - whole["probabilities"].values).max() < 1e-5
    assert json.loads(tiled.attrs["config"])["tta"] is True


def test_blend_ramps_sum_to_one():
    tile, overlap = 64, 24
    w = blend_window(tile, overlap)
    step = tile - overlap
    overlap_zone = w[step:] + w[: tile - step]
    assert np.allclose(overlap_zone, 1.0, atol=1e-6)
    assert w[: overlap // 4].max() == 0.0 and w[overlap:-overlap].min() == 1.0


def test_probabilities_sum_to_one_and_match_labels():
    out = predict(SmallField(), np.random.default_rng(2).random((40, 50)), tile=32, overlap=16,
                  probabilities=True, device="cpu")
    p = out["probabilities"].values
    assert p.shape == (40, 50, 3) and np.allclose(p.sum(-1), 1.0, atol=1e-5)
    assert np.array_equal(p.argmax(-1), out["labels"].values)


def test_memory_mapped_input_and_output(tmp_path):
    image = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.uint8, shape=(300, 260))
    image[:] = np.random.default_rng(3).integers(0, 255, (300, 260), dtype=np.uint8)
    out = np.lib.format.open_memmap(tmp_path / "labels.npy", mode="w+", dtype=np.uint8, shape=(300, 260))
    labels, probs = predict_array(SmallField(), image, mean=[0.0], std=[1.0], tile=64, overlap=16,
                                  batch_size=2, device="cpu", labels_out=out)
    assert labels is out and probs is None
    reference = predict(SmallField(), np.asarray(image), tile=None, overlap=16, device="cpu")
    assert np.array_equal(np.asarray(out), reference.values)


def test_predict_from_checkpoint_keeps_coordinates_and_records_provenance(checkpoint):
    image = image_dataarray(np.random.default_rng(4).integers(0, 255, (45, 70), dtype=np.uint8), pixel_size_um=0.2)
    labels = predict(checkpoint, image, tile=32, overlap=8, device="cpu")
    assert isinstance(labels, xr.DataArray) and labels.dims == ("y", "x") and labels.shape == (45, 70)
    assert np.allclose(labels.x.values, image.x.values) and labels.attrs["pixel_size_um"] == 0.2
    assert json.loads(labels.attrs["classes"]) == ["ferrite", "pearlite"]
    assert labels.attrs["model"] == "unet" and len(labels.attrs["checkpoint_sha256"]) == 64
    rgb = np.repeat(image.values[..., None], 3, axis=2)
    assert np.array_equal(predict(checkpoint, rgb, tile=32, overlap=8, device="cpu").values, labels.values)


def test_predict_rescales_like_training(checkpoint, tmp_path):
    import cv2

    payload = torch.load(checkpoint, weights_only=True)
    payload["tile"]["scale"] = 0.5
    payload.pop("content_sha256")  # an edited checkpoint: the digest of the original no longer holds
    torch.save(payload, tmp_path / "half.pt")
    image = np.random.default_rng(5).random((40, 60)).astype(np.float32)
    got = predict(tmp_path / "half.pt", image, tile=None, device="cpu", probabilities=True)
    assert got["labels"].shape == (40, 60) and json.loads(got["labels"].attrs["config"])["scale"] == 0.5
    # The same model at scale 1 on the image shrunk to 30 x 20 (area), probabilities back to 60 x 40.
    small = predict(checkpoint, cv2.resize(image, (30, 20), interpolation=cv2.INTER_AREA), tile=None,
                    device="cpu", probabilities=True)["probabilities"].values
    expected = np.stack([cv2.resize(small[..., c], (60, 40), interpolation=cv2.INTER_LINEAR) for c in range(2)], -1)
    np.testing.assert_allclose(got["probabilities"].values, expected, atol=1e-5)
    np.testing.assert_array_equal(got["labels"].values, expected.argmax(-1))
    # ... which is not what the model says at full size.
    full = predict(checkpoint, image, tile=None, device="cpu", probabilities=True)["probabilities"].values
    assert np.abs(full - expected).max() > 1e-2


def test_predict_files_writes_labels_overlays_and_fractions(checkpoint, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        write_image(np.random.default_rng(i).integers(0, 255, (40, 50), dtype=np.uint8), folder / f"a{i}.png",
                    pixel_size_um=0.4)
    records = predict_files(checkpoint, [folder], out_dir=tmp_path / "out", tile=32, overlap=8, device="cpu",
                            probabilities=True)
    assert len(records) == 2
    written = read_image(records[0]["labels"])
    expected = predict(checkpoint, read_image(folder / "a0.png"), tile=32, overlap=8, device="cpu")
    assert written.dtype == np.uint8 and np.array_equal(written.values, expected.values)
    assert written.attrs["pixel_size_um"] == 0.4  # the labels keep the micrograph's calibration
    lab = written.values
    assert lab.shape == (40, 50) and set(np.unique(lab)) <= {0, 1}
    assert np.asarray(Image.open(records[0]["overlay"])).shape == (40, 50, 3)
    assert np.load(records[0]["probabilities"]).shape == (40, 50, 2)
    assert sum(records[0]["fractions"].values()) == pytest.approx(1.0, abs=1e-5)
    # At 0.4 µm/px against a model of 0.1 µm/px, each image was predicted resampled 4x, and the record says so.
    assert records[0]["scale"] == pytest.approx(4.0) and "a scale it has not seen" in records[0]["scale_reason"]


def test_bad_prediction_inputs(checkpoint, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no images"):
        predict_files(checkpoint, [tmp_path / "empty"], out_dir=tmp_path / "o", device="cpu")
    with pytest.raises(ConfigError, match="no such image file or folder"):
        predict_files(checkpoint, [tmp_path / "nope.png"], out_dir=tmp_path / "o", device="cpu")
    with pytest.raises(ConfigError, match="larger than overlap"):
        predict(checkpoint, np.zeros((100, 100)), tile=16, overlap=16, device="cpu")
    # What the network would misread without a word: NaN pixels had been labelled as black (and
    # counted in the fractions), a stack of 5 images labelled as one 5 x 100 image, a zero scale run.
    image = np.full((100, 120), 0.5)
    image[:10] = np.nan
    with pytest.raises(ConfigError, match=r"1200 NaN or infinite values \(10.0%\).*fill them or crop"):
        predict(checkpoint, image, device="cpu")
    with pytest.raises(ConfigError, match=r"shape \(5, 100, 120\) has more channels \(120\).*stack of images"):
        predict(checkpoint, np.zeros((5, 100, 120)), device="cpu")
    with pytest.raises(ConfigError, match="real numbers; got dtype complex128"):
        predict(checkpoint, np.zeros((100, 120), complex), device="cpu")
    with pytest.raises(ConfigError, match="scale must be a positive number"):
        predict(checkpoint, np.zeros((100, 120)), scale=0, device="cpu")
    with pytest.raises(ModelError, match="checkpoint file not found"):
        predict(tmp_path / "missing.pt", np.zeros((10, 10)), device="cpu")
    with pytest.raises(ModelError, match="holds model 'unet', not 'pixelnet'"):
        load_checkpoint(checkpoint, model="pixelnet")


def test_an_image_at_a_scale_the_native_model_never_saw_warns(checkpoint):
    # Trained at the images' own resolution, 0.1 µm/px: an image at 0.5 µm/px holds its
    # structure 5x smaller than anything in training.
    image = image_dataarray(np.random.default_rng(0).random((40, 40)).astype(np.float32), pixel_size_um=0.5)
    with pytest.warns(UserWarning, match=r"image at 0\.5 µm/px, .* 0\.1 µm/px .* 5x the training pixel size.*scale=5"):
        predict(checkpoint, image, tta=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict(checkpoint, image_dataarray(np.full((40, 40), 0.5, np.float32), pixel_size_um=0.15), tta=False)
        predict(checkpoint, np.full((40, 40), 0.5, np.float32), tta=False)  # pixel size unknown: nothing to judge


def test_the_unseen_scale_is_judged_against_the_range_of_training_pixel_sizes(tmp_path):
    # Trained on images at 0.1 and 0.2 µm/px (median 0.15). The UHCS held-out image at 0.39 µm/px
    # was 2.6x that median but 1.996x the largest seen and slipped under the old 2x-the-median rule,
    # while an image at 0.08 (0.8x the smallest seen, which scored as in-range images) would have been flagged.
    import warnings

    torch.manual_seed(0)
    net = get_model("unet", n_classes=2, base_channels=4)
    ck = save_checkpoint(tmp_path / "unet.pt", net, classes=["a", "b"], mean=[0.5], std=[0.25], pixel_size_um=0.15,
                         tile={"size": 32, "scale": 1.0, "pixel_size_range_um": [0.1, 0.2]})
    values = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    with pytest.warns(UserWarning, match=r"image at 0\.39 µm/px, .* at 0\.1-0\.2 µm/px .* 1\.9x the nearest training pixel size.*scale=1\.95"):
        predict(ck, image_dataarray(values, pixel_size_um=0.39), tta=False)
    with pytest.warns(UserWarning, match=r"0\.5x the nearest training pixel size.*resampled to 0\.1 µm/px \(scale=0\.5\)"):
        fine = predict(ck, image_dataarray(values, pixel_size_um=0.05), tta=False)
    # Predicted resampled to the nearest pixel size the model has seen: the same labels as asking
    # for that scale, and the output says which scale was used and why.
    config = json.loads(fine.attrs["config"])
    assert config["scale"] == pytest.approx(0.5) and "not seen" in config["scale_reason"]
    asked = predict(ck, image_dataarray(values, pixel_size_um=0.05), tta=False, scale=0.5)
    np.testing.assert_array_equal(fine.values, asked.values)
    assert json.loads(asked.attrs["config"])["scale_reason"] == "given"
    own = predict(ck, image_dataarray(values, pixel_size_um=0.15), tta=False)
    assert json.loads(own.attrs["config"])["scale"] == 1.0
    assert json.loads(own.attrs["config"])["scale_reason"] == "the checkpoint's training scale"
    # A bare array has no pixel size: predicted at the training scale, and its record says that
    # this was assumed (the labels are right only if the image is at 0.1-0.2 µm/px), not checked.
    bare = json.loads(predict(ck, values, tta=False).attrs["config"])
    assert bare["scale"] == 1.0 and "pixel size is unknown, so it is assumed to be the training images' (0.1-0.2 µm/px)" in bare["scale_reason"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for px in (0.08, 0.1, 0.15, 0.2, 0.29):
            predict(ck, image_dataarray(values, pixel_size_um=px), tta=False)
    # Trained with zooms of up to 1.25x, the model is trusted to 1.5 x 1.25 = 1.875x the range: 0.36 µm/px passes.
    zoomed = save_checkpoint(tmp_path / "zoomed.pt", net, classes=["a", "b"], mean=[0.5], std=[0.25], pixel_size_um=0.15,
                             tile={"size": 32, "scale": 1.0, "pixel_size_range_um": [0.1, 0.2]},
                             config={"augment": {"scale": 0.25}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict(zoomed, image_dataarray(values, pixel_size_um=0.36), tta=False)
    with pytest.warns(UserWarning, match=r"2\.5x the nearest training pixel size"):
        predict(zoomed, image_dataarray(values, pixel_size_um=0.5), tta=False)
    # Its ONNX export is judged the same way (the export keeps the range and the zooms).
    pytest.importorskip("onnxruntime")
    from metallo.segment import export_onnx

    exported = export_onnx(zoomed, tmp_path / "zoomed.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict(exported, image_dataarray(values, pixel_size_um=0.36), tta=False)
    with pytest.warns(UserWarning, match=r"2\.5x the nearest training pixel size"):
        predict(exported, image_dataarray(values, pixel_size_um=0.5), tta=False)


def test_a_model_at_one_pixel_size_reads_it_from_the_images_x_coordinate(tmp_path):
    # metallo's one source of a pixel size is the x coordinate (metallo._xarray.pixel_size_um);
    # predict read only attrs["pixel_size_um"], so an image calibrated by its µm coordinates
    # alone was refused ("pixel size unknown") by a model trained at one physical pixel size.
    import xarray as xr

    torch.manual_seed(0)
    net = get_model("unet", n_classes=3, base_channels=4)
    model = save_checkpoint(tmp_path / "m.pt", net, classes=["a", "b", "c"], mean=[0.5], std=[0.25],
                            pixel_size_um=0.1, tile={"size": 32, "pixel_size_um": 0.1})
    values = np.random.default_rng(3).random((40, 56)).astype(np.float32)
    by_coords = xr.DataArray(values, dims=("y", "x"), coords={"y": np.arange(40) * 0.2, "x": np.arange(56) * 0.2})
    assert "pixel_size_um" not in by_coords.attrs
    got = predict(model, by_coords, tta=False, probabilities=True)
    told = predict(model, values, pixel_size_um=0.2, tta=False, probabilities=True)
    assert got["labels"].shape == (40, 56)
    assert got["labels"].attrs["pixel_size_um"] == pytest.approx(0.2)  # not NaN: the coordinate says 0.2
    np.testing.assert_array_equal(got["labels"].values, told["labels"].values)
    np.testing.assert_allclose(got["probabilities"].values, told["probabilities"].values, atol=1e-6)
    # Resampled 2x up to the model's 0.1 µm/px and back: not the same as predicting at 0.2 as given.
    native = predict(model, values, scale=1.0, tta=False, probabilities=True)
    assert not np.allclose(native["probabilities"].values, got["probabilities"].values, atol=1e-3)


@pytest.mark.shared_data
def test_predict_files_takes_pixel_sizes_from_the_uhcs_metadata(shared_file, tmp_path):
    # A model trained at one pixel size needs each new image's: on the UHCS layout
    # (<set>/metadata.csv beside <set>/images/) predict reads it as training does; before, every
    # image was refused ("pixel size unknown") unless one --pixel-size was given for all.
    folder = shared_file("uhcs_microconstituent_segmentation")
    torch.manual_seed(0)
    net = get_model("unet", n_classes=4, base_channels=4)
    model = save_checkpoint(tmp_path / "m.pt", net, classes=["matrix", "network", "spheroidite", "widmanstatten"],
                            mean=[0.5], std=[0.25], pixel_size_um=0.194, tile={"size": 64, "pixel_size_um": 0.194})
    images = [folder / "images" / "micrograph6.png", folder / "images" / "micrograph357.png"]
    assert all(p.exists() for p in images)
    records = predict_files(model, images, out_dir=tmp_path / "pred", tile=None, device="cpu", tta=False)
    assert len(records) == 2
    labels = {p.stem: read_image(tmp_path / "pred" / f"{p.stem}_labels.png") for p in images}
    # micrograph6 is at 20/124 = 0.1613 µm/px, micrograph357 at about 0.39: read from metadata.csv.
    assert labels["micrograph6"].attrs["pixel_size_um"] == pytest.approx(20.0 / 124, rel=1e-4)
    assert labels["micrograph357"].attrs["pixel_size_um"] > 0.35
    assert labels["micrograph6"].shape == (481, 645)  # resampled to the model's 0.194 and back


@pytest.mark.shared_data
def test_grey_levels_the_model_never_saw_warn(shared_file, tmp_path):
    # A real UHCS micrograph (8-bit) against a model normalised like the UHCS training images
    # (mean 0.444, std 0.16; every one of the 26 real UHCS images lies within 0.7 std of it).
    # The same image as a 12-bit camera writes it into a 16-bit TIFF reads 16x too dark, and as
    # a float array in 0-255 far too bright: both were labelled without a word.
    import warnings

    torch.manual_seed(0)
    net = get_model("unet", n_classes=2, base_channels=4)
    ckpt = save_checkpoint(tmp_path / "uhcs.pt", net, classes=["a", "b"], mean=[0.444], std=[0.16],
                           tile={"size": 64, "scale": 1.0})
    image = np.asarray(Image.open(shared_file("uhcs_microconstituent_segmentation/images/micrograph6.png")).convert("L"))
    image = image[:128, :160]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict(ckpt, image, tta=False, device="cpu")
        predict(ckpt, image.astype(np.uint16) * 257, tta=False, device="cpu")  # the full 16-bit range: the same greys
        predict(ckpt, image / 255.0, tta=False, device="cpu")
    twelve_bit = (image.astype(np.uint16) << 4) | (image.astype(np.uint16) >> 4)
    with pytest.warns(UserWarning, match=r"training standard deviations.*largest value is \d+ of the uint16 range 65535 \(a 12-bit"):
        predict(ckpt, twelve_bit, tta=False, device="cpu")
    with pytest.warns(UserWarning, match=r"float images are read as 0-1, this one reaches 2\d\d"):
        predict(ckpt, image.astype(np.float32), tta=False, device="cpu")


def test_held_out_images_at_an_unseen_pixel_size_are_scored_as_predict_segments_them(monkeypatch):
    # Cross-validation scores a held-out image at 0.4 µm/px, against training images at
    # 0.1-0.2 µm/px, resampled to 0.2 µm/px (scale 2), as predict() would segment it; an image
    # inside the range keeps the training scale.
    from metallo.segment import LabelledImage, SegmentationData, _train

    torch.manual_seed(0)
    net = get_model("unet", n_classes=2, base_channels=4).eval()
    image = np.random.default_rng(0).random((48, 48, 1)).astype(np.float32)
    labels = (np.arange(48) >= 24).astype(np.uint8)[None, :].repeat(48, 0)
    used = []
    resized = _train.predict_resized
    monkeypatch.setattr(_train, "predict_resized", lambda model, img, scale, **kw: used.append(scale) or resized(model, img, scale, **kw))

    def scale_used(px, **extra):
        used.clear()
        data = SegmentationData([LabelledImage("m", image, labels, pixel_size_um=px)], classes=["a", "b"])
        _train.evaluate_model(net, data, mean=[0.5], std=[0.25], device="cpu", amp=False, **extra)
        return used[0] if used else 1.0

    assert scale_used(0.4, seen_range_um=(0.1, 0.2)) == pytest.approx(2.0)
    assert scale_used(0.4, seen_range_um=(0.1, 0.2), scale=0.5) == pytest.approx(1.0)  # times the training scale
    assert scale_used(0.04, seen_range_um=(0.1, 0.2)) == pytest.approx(0.4)
    assert scale_used(0.15, seen_range_um=(0.1, 0.2)) == 1.0
    assert scale_used(0.4) == 1.0  # no range known: the training scale
    # Trained with zooms of up to 2x (augment scale 1.0), 0.4 µm/px is a scale the model has seen.
    assert scale_used(0.4, seen_range_um=(0.1, 0.2), zoom=1.0) == 1.0


def test_a_mosaic_too_large_to_resample_is_predicted_at_the_training_scale_with_a_warning(tmp_path, monkeypatch):
    from metallo.segment import _infer

    torch.manual_seed(0)
    net = get_model("unet", n_classes=2, base_channels=4)
    ck = save_checkpoint(tmp_path / "unet.pt", net, classes=["a", "b"], mean=[0.5], std=[0.25], pixel_size_um=0.15,
                         tile={"size": 32, "scale": 1.0, "pixel_size_range_um": [0.1, 0.2]})
    values = image_dataarray(np.random.default_rng(0).random((40, 40)).astype(np.float32), pixel_size_um=0.5)
    monkeypatch.setattr(_infer, "_RESAMPLE_MAX_PX", 40 * 40 * 2.0**2)  # 2.5x would exceed it
    with pytest.warns(UserWarning, match=r"not trustworthy; resampled it would exceed .* predict it in pieces with scale=2\.5"):
        out = predict(ck, values, tta=False)
    assert json.loads(out.attrs["config"])["scale"] == 1.0
