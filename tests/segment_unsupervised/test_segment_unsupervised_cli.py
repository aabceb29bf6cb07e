"""``metallo segment-unsupervised`` writes label maps, overlays, criteria and Specimen nodes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from metallo.cli import app
from metallo.io import write_image
from metallo.segment import adjusted_rand_index

FAST_ARGS = ["--superpixels", "1000", "--channels", "16", "--max-iter", "100", "--device", "cpu", "--quiet"]


def test_cli_writes_labels_overlays_and_criteria(multiphase, tmp_path):
    image, truth = multiphase(3)
    path = write_image(image, tmp_path / "mp.tif")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["segment-unsupervised", str(path), "--classes", "3", "--seed", "1",
                                      "--out", str(out), *FAST_ARGS])
    assert result.exit_code == 0, result.output
    labels = np.asarray(Image.open(out / "mp_labels.png"))
    assert adjusted_rand_index(truth, labels) >= 0.9
    assert np.asarray(Image.open(out / "mp_overlay.png")).shape == (128, 128, 3)
    table = pd.read_csv(out / "criteria.csv")
    assert table.loc[0, "n_classes"] == 3 and table.loc[0, "F"] > 0


def test_cli_auto_classes_into_a_specimen(multiphase, tmp_path):
    from metallo.specimen import Specimen

    image, truth = multiphase(2)
    spec = Specimen.create(tmp_path / "s.h5", specimen_id="S1")
    spec.add("micrographs/lom", image.assign_attrs(modality="LOM", source="synth"), step="test")
    spec.save()
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["segment-unsupervised", "micrographs/lom", "--specimen", str(tmp_path / "s.h5"),
                                      "--classes", "auto", "--k-range", "2:3", "--repeats", "1",
                                      "--out", str(out), *FAST_ARGS])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out / "criteria_vs_k.csv")["k"].tolist() == [2, 3]
    reopened = Specimen.open(tmp_path / "s.h5")
    node = reopened["segmentations/unsupervised"]
    assert node.attrs["model"] == "unsupervised"
    assert json.loads(node.attrs["classes"]) == ["class_0", "class_1"]
    assert adjusted_rand_index(truth, node["labels"].values) >= 0.9


def test_cli_says_doubtful_and_strict_exits_3(tmp_path):
    # White noise has no phases: two classes split it at the mean, and the check says the grey
    # levels do not tell where one ends (a minimum-error threshold puts 99.7 % in one class).
    noise = np.random.default_rng(0).random((128, 128)).astype(np.float32)
    path = write_image(noise, tmp_path / "noise.tif")
    for strict, code in ((False, 0), (True, 3)):
        out = tmp_path / f"out{code}"
        result = CliRunner().invoke(app, ["segment-unsupervised", str(path), "--classes", "2", "--out", str(out),
                                          *FAST_ARGS, *(["--strict"] if strict else [])])
        assert result.exit_code == code, result.output
        assert "noise: DOUBTFUL the grey levels do not say where class 1 ends" in result.output
        assert (out / "noise_labels.png").is_file()
        assert not pd.read_csv(out / "criteria.csv").loc[0, "quality_passed"]


def test_cli_bad_classes_is_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["segment-unsupervised", "x.png", "--classes", "many"])
    assert result.exit_code == 1
    assert "--classes" in result.output
    # One class segments nothing: it had run and written a map of one label (a 100 % phase).
    one = CliRunner().invoke(app, ["segment-unsupervised", "x.png", "--classes", "1"])
    assert one.exit_code == 1 and "--classes must be an integer of 2 or more" in one.output
    image = write_image(np.zeros((16, 16), np.uint8), tmp_path / "x.png")
    k1 = CliRunner().invoke(app, ["segment-unsupervised", str(image), "--classes", "auto", "--k-range", "1:4"])
    assert k1.exit_code == 1 and "--k-range needs 2 <= FIRST <= LAST" in k1.output


@pytest.mark.slow
def test_cli_stack_gives_one_labelling_for_all_images(multiphase, tmp_path):
    paths, truths = [], []
    for seed in (1, 2):
        image, truth = multiphase(3, seed=seed)
        paths.append(str(write_image(image, tmp_path / f"mp{seed}.tif")))
        truths.append(truth)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["segment-unsupervised", *paths, "--classes", "3", "--stack", "--seed", "1",
                                      "--out", str(out), *FAST_ARGS])
    assert result.exit_code == 0, result.output
    for seed, truth in zip((1, 2), truths, strict=True):
        labels = np.asarray(Image.open(out / f"mp{seed}_labels.png"))
        assert np.mean(labels == truth) >= 0.95
    assert len(pd.read_csv(out / "criteria.csv")) == 2
