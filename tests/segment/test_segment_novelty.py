"""The novelty check: a prediction on an image unlike the training images fails its quality record.

Known answers: a trained model's own kind of image (unseen draws) passes with few novel cells;
a flat image, Gaussian noise and a foreign real micrograph fail with a warning, whatever the
class probabilities say.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy import ndimage as ndi

from metallo.segment import (
    LabelledImage,
    SegmentationData,
    load_checkpoint,
    predict,
    save_checkpoint,
    train,
)
from metallo.segment._novelty import (
    CELL_PX,
    MAX_NOVEL_FRACTION,
    build_reference,
    novel_fraction,
    novelty_quality,
)


def _blobs(seed: int, side: int = 192) -> tuple[np.ndarray, np.ndarray]:
    """Dark round particles in a bright noisy matrix (a spheroidised steel's look) and their labels."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.normal(size=(side, side)), 4.0)
    labels = (field > np.percentile(field, 80)).astype(np.uint8)
    image = 0.75 - 0.45 * labels + rng.normal(0, 0.04, (side, side))
    return np.clip(image, 0, 1).astype(np.float32)[..., None], labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("novelty")
    data = SegmentationData([LabelledImage(f"b{i}", *_blobs(i)) for i in range(5)], classes=["matrix", "particle"])
    result = train(data, model="unet", model_kwargs={"base_channels": 4}, epochs=6, tile_size=96, batch_size=4,
                   out_dir=out, device="cpu", seed=0, eval_tta=False)
    return result


def _quality(model, image):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = predict(model, image, device="cpu", tta=False, tile=None)
    said = [str(w.message) for w in caught if "unlike the model's training images" in str(w.message)]
    return json.loads(out.attrs["quality"]), said, out


def test_training_stores_a_reference_calibrated_on_other_training_images(trained):
    ref = trained.info["novelty"]
    # 5 images of 192 px hold 3 x 3 cells of 64 px each; one mean and one std per feature channel (4).
    assert CELL_PX == 64
    assert ref["images"] == 5
    assert len(ref["reference"]) == 45
    assert len(ref["mean"]) == len(ref["std"]) == 2 * 4 + 2  # + the input's contrast and sharpness
    assert ref["threshold"] > 0
    _, info = load_checkpoint(trained.checkpoint)
    assert info["novelty"] == ref


def test_unseen_images_of_the_training_kind_pass(trained):
    _, info = load_checkpoint(trained.checkpoint)
    for seed in (100, 101, 102):
        image, labels = _blobs(seed)
        q, said, out = _quality(trained.checkpoint, image[..., 0])
        assert q["novel_fraction"] <= MAX_NOVEL_FRACTION, seed
        assert q["novelty_passed"] and q["passed"] and not said
        assert q["cells"] == 9
        # and the model does segment them: the check does not pass a model that cannot
        assert np.mean(out.values == labels) > 0.9


@pytest.mark.parametrize("kind", ["flat", "noise", "stripes"])
def test_images_unlike_the_training_ones_fail_with_a_warning(trained, kind):
    rng = np.random.default_rng(7)
    image = {
        "flat": np.full((192, 192), 0.6, np.float32),
        "noise": rng.random((192, 192)).astype(np.float32),
        "stripes": (0.5 + 0.4 * np.sin(np.arange(192) / 1.5))[None, :].repeat(192, 0).astype(np.float32),
    }[kind]
    q, said, _ = _quality(trained.checkpoint, image)
    assert q["novel_fraction"] > 0.5
    assert not q["novelty_passed"] and not q["passed"]
    assert q["reasons"] and "unlike the model's training images" in q["reasons"][-1]
    assert len(said) == 1


def test_an_ensemble_averages_its_members_and_old_checkpoints_have_no_check(trained, tmp_path):
    flat = np.full((192, 192), 0.6, np.float32)
    q1, _, _ = _quality(trained.checkpoint, flat)
    q2, _, _ = _quality([trained.checkpoint, trained.checkpoint], flat)
    assert q2["novel_fraction"] == pytest.approx(q1["novel_fraction"])
    # A checkpoint written without a reference (before this check, or by hand) predicts as before:
    # no novelty keys and, without uncertainty, no quality record at all.
    net, info = load_checkpoint(trained.checkpoint)
    old = save_checkpoint(tmp_path / "old.pt", net, classes=info["classes"], mean=info["normalization"]["mean"],
                          std=info["normalization"]["std"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = predict(old, flat, device="cpu", tta=False, tile=None)
    assert "quality" not in out.attrs
    out = predict(old, flat, device="cpu", tta=False, tile=None, uncertainty=True)
    assert "novel_fraction" not in json.loads(out.attrs["quality"])


def test_tiled_prediction_judges_the_same_cells(trained):
    image = np.concatenate([_blobs(200)[0][..., 0], np.full((192, 192), 0.6, np.float32)], axis=1)  # half flat
    whole, _, _ = _quality(trained.checkpoint, image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tiled = json.loads(predict(trained.checkpoint, image, device="cpu", tta=False, tile=128, overlap=32).attrs["quality"])
    assert whole["cells"] == 18
    assert whole["novel_fraction"] == pytest.approx(0.5, abs=0.12)  # the flat half, not the particle half
    assert tiled["novel_fraction"] == pytest.approx(whole["novel_fraction"], abs=0.2)


def test_reference_arithmetic():
    rng = np.random.default_rng(0)
    same = [rng.normal(size=(50, 3)) for _ in range(4)]
    ref = build_reference(same)
    # Cells drawn like the training cells are novel about as often as the percentile says (1 %).
    assert novel_fraction(rng.normal(size=(2000, 3)), ref) < 0.05
    assert novel_fraction(rng.normal(size=(200, 3)) + 10.0, ref) == 1.0
    assert "reason" in build_reference([rng.normal(size=(10, 3))])  # one image cannot calibrate
    assert "reason" in build_reference([rng.normal(size=(4, 3))] * 3)  # nor 12 cells
    assert novelty_quality([None], [ref]) is None
    assert novelty_quality([rng.normal(size=(5, 4))], [ref]) is None  # another model's features: not judged


@pytest.mark.shared_data
def test_a_uhcs_model_flags_a_superalloy_bse_image(shared_file, tmp_path):
    # Real: a U-Net trained briefly on four UHCS micrographs judges a fifth (same kind) and the
    # CoNi superalloy BSE image of the correlative pair (another material and microscope).
    # A fixed number of float32 steps (480), not a time budget: how foreign an image looks depends
    # on how far the features have trained (docs/segment.md; a 40-s budget on a loaded machine
    # ended with the BSE image under the limit).
    from metallo.correlate._evaluate import _grey
    from metallo.segment._data import load_training_folder

    data = load_training_folder(shared_file("uhcs_microconstituent_segmentation"),
                                classes=["matrix", "network", "spheroidite", "widmanstatten"])
    names = ["micrograph1061", "micrograph1219", "micrograph295", "micrograph6", "micrograph1289"]
    by_name = {s.name: s for s in data.samples}
    train_data = SegmentationData([by_name[n] for n in names[:4]], data.classes)
    result = train(train_data, model="unet", model_kwargs={"base_channels": 8}, epochs=20, tile_size=128,
                   batch_size=4, device="cpu", seed=0, eval_tta=False, amp=False)
    assert result.metrics["train_steps"] == 480
    q_same, said_same, _ = _quality(result.model, by_name[names[4]].image[..., 0])
    assert q_same["novelty_passed"] and not said_same
    bse = _grey(shared_file("correlative_ebsd_bse_coni/Slice381_bse.tif"))
    q_bse, said_bse, _ = _quality(result.model, bse)
    assert not q_bse["novelty_passed"] and said_bse
    assert q_bse["novel_fraction"] > 2 * q_same["novel_fraction"] + 0.25


def test_the_qc_checks_of_a_specimen_show_a_novel_image(trained, tmp_path):
    from metallo._xarray import image_dataarray
    from metallo.report._qc import quality_checks
    from metallo.segment import predict_to_specimen
    from metallo.specimen import Specimen

    spec = Specimen.create(tmp_path / "S1.h5", specimen_id="S1", overwrite=True)
    for name, image in (("same", _blobs(300)[0][..., 0]), ("flat", np.full((192, 192), 0.6, np.float32))):
        spec.add(f"micrographs/{name}", image_dataarray((image * 255).astype(np.uint8), pixel_size_um=0.1,
                                                          attrs={"modality": "SEM", "source": f"{name}.png", "sha256": ""}),
                 step="io.read_image")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predict_to_specimen(trained.checkpoint, spec, micrograph=f"micrographs/{name}", name=name, tile=None, device="cpu",
                                    uncertainty=False)  # the 6-epoch model is unsure everywhere: judge novelty alone
    checks = quality_checks(spec)
    assert checks["segmentations/same"]["passed"] is True
    assert checks["segmentations/flat"]["passed"] is False
    assert "unlike the model's training images" in checks["segmentations/flat"]["reasons"][0]


def test_the_novelty_map_marks_the_foreign_half_and_the_report_shows_it(trained, tmp_path):
    from metallo._xarray import image_dataarray
    from metallo.report import report_sections
    from metallo.segment import predict_to_specimen
    from metallo.specimen import Specimen

    image = np.concatenate([_blobs(200)[0][..., 0], np.full((192, 192), 0.6, np.float32)], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = predict(trained.checkpoint, image, device="cpu", tta=False, tile=None, uncertainty=True)
        double = predict(trained.checkpoint, np.kron(image, np.ones((2, 2), np.float32)), device="cpu", tta=False,
                         tile=None, uncertainty=True, scale=0.5)
    novel = out["novelty"].values
    assert novel.shape == image.shape
    assert np.nanmean(novel[:, 192:]) == 1.0 and np.nanmean(novel[:, :192]) == 0.0
    assert np.isfinite(novel).all()  # 192 x 384 holds 3 x 6 whole cells
    # the same image at twice the size, predicted at scale 0.5 (the network sees the original):
    # its cells are 128 image pixels and mark the same half
    big = double["novelty"].values
    assert big.shape == (384, 768) and np.isfinite(big).all()
    assert np.mean(big[:, 384:]) == 1.0 and np.mean(big[:, :384]) == 0.0
    spec = Specimen.create(tmp_path / "S2.h5", specimen_id="S2", overwrite=True)
    spec.add("micrographs/sem", image_dataarray((image * 255).astype(np.uint8), pixel_size_um=0.1,
                                                attrs={"modality": "SEM", "source": "x.png", "sha256": ""}),
             step="io.read_image")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predict_to_specimen(trained.checkpoint, spec, micrograph="micrographs/sem", name="half", tile=None, device="cpu")
    assert "novelty" in spec["segmentations/half"]
    blocks = [b for section in report_sections(spec) for b in section.blocks]
    assert any(b.kind == "figure" and b.text == "segmentation novelty segmentations/half" for b in blocks)


@pytest.mark.parametrize(("name", "kwargs", "channels"), [
    ("unet", {"base_channels": 4}, 4),
    ("unet_vgg16", {"width_divisor": 8, "decoder_channels": (8, 8, 8, 8)}, 8),
    ("pixelnet", {"width_divisor": 8, "hidden": 16}, 16),
    ("pixelnet", {"width_divisor": 8, "hidden": 100}, 64),  # wider taps are averaged into 64 channel groups
])
def test_every_model_exposes_the_features_its_output_layer_classifies(name, kwargs, channels):
    import torch

    from metallo.segment import get_model
    from metallo.segment._train import novelty_cells

    torch.manual_seed(0)
    net = get_model(name, n_classes=2, **kwargs).eval()
    data = SegmentationData([LabelledImage(f"b{i}", *_blobs(i, side=128)) for i in range(6)], classes=["m", "p"])
    cells = novelty_cells(net, data, mean=[0.5], std=[0.25], device="cpu")
    # 128 px = 2 x 2 cells per image; per channel of the tap one mean and one standard deviation
    assert [c.shape for c in cells] == [(4, 2 * channels + 2)] * 6  # + contrast and sharpness of the input
    net.metallo_info = {"novelty": build_reference(cells), "normalization": {"mean": [0.5], "std": [0.25]}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = json.loads(predict(net, _blobs(50, side=128)[0][..., 0], device="cpu", tile=None).attrs["quality"])
    assert q["cells"] == 4 and 0.0 <= q["novel_fraction"] <= 1.0
