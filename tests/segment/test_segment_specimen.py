"""Segmentation with a real Specimen file: training pairs from its nodes, predictions into
/segmentations/<name> (API and ``metallo predict --specimen``), reopened and validated."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from metallo.cli import app
from metallo.errors import ConfigError
from metallo.segment import (
    get_model,
    predict,
    predict_to_specimen,
    save_checkpoint,
    segmentation_data_from_specimen,
)
from metallo.specimen import Specimen
from metallo.synth import write_demo_specimen

CLASSES = ["polygonal_ferrite", "lath_bainite"]


@pytest.fixture
def specimen_file(tmp_path):
    """Demo specimen with micrographs/lom (97 x 97 px at 0.3 µm) and annotations/truth_lom."""
    return write_demo_specimen(tmp_path / "demo", ebsd_shape=(40, 40))


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    net = get_model("unet", n_classes=2, base_channels=4)
    return save_checkpoint(tmp_path / "unet.pt", net, classes=CLASSES, mean=[0.5], std=[0.25],
                           pixel_size_um=0.3, tile={"size": 32, "scale": 1.0})


def test_training_pairs_from_a_specimen_file(specimen_file):
    spec = Specimen.open(specimen_file)
    data = segmentation_data_from_specimen([spec, spec], annotation="annotations/truth_lom")
    lom, truth = spec["micrographs/lom"]["image"], spec["annotations/truth_lom"]["labels"]
    assert data.classes == CLASSES and data.ignore_index == 255 and len(data) == 2 and data.in_channels == 1
    sample = data.samples[0]
    assert sample.name == "synth-0:micrographs/lom" and sample.pixel_size_um == 0.3
    assert sample.image.shape == (97, 97, 1) and sample.labels.dtype == np.uint8
    assert np.allclose(sample.image[..., 0], lom.values / 255.0)
    assert np.array_equal(sample.labels, truth.values) and set(np.unique(sample.labels)) == {0, 1}
    with pytest.raises(ConfigError, match=r"synthetic-specimen.h5: node 'annotations/bainite' not found"):
        segmentation_data_from_specimen(spec)


def _check_segmentation_node(path, node, checkpoint, *, tile, overlap):
    """Reopen (which validates) and compare the node with a direct prediction of the LOM."""
    spec = Specimen.open(path)
    assert node in spec.nodes()
    lom = spec["micrographs/lom"]["image"]
    ds = spec[node]
    labels = ds["labels"]
    expected = predict(checkpoint, lom, tile=tile, overlap=overlap, device="cpu")
    assert labels.dtype == np.uint8 and labels.dims == ("y", "x") and labels.shape == (97, 97)
    assert np.array_equal(labels.values, expected.values)
    assert np.allclose(labels.x.values, lom.x.values) and np.allclose(labels.y.values, lom.y.values)
    attrs = {**ds.attrs, **labels.attrs}
    assert json.loads(attrs["classes"]) == CLASSES and attrs["model"] == "unet"
    assert attrs["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert json.loads(attrs["config"])["tile"] == tile and json.loads(attrs["config"])["overlap"] == overlap
    assert attrs["pixel_size_um"] == 0.3
    record = [r for r in spec.provenance if r["outputs"] == [node]][-1]
    assert record["step"] == "segment.checkpoint" and record["inputs"] == ["micrographs/lom"]
    assert record["parameters"]["checkpoint_sha256"] == attrs["checkpoint_sha256"]


def test_predict_to_specimen_saves_a_valid_segmentation_node(specimen_file, checkpoint):
    spec = Specimen.open(specimen_file)
    returned = predict_to_specimen(checkpoint, spec, micrograph="micrographs/lom", name="unet_lom",
                                   tile=32, overlap=8, device="cpu")
    spec.save()
    _check_segmentation_node(specimen_file, "segmentations/unet_lom", checkpoint, tile=32, overlap=8)
    assert np.array_equal(Specimen.open(specimen_file)["segmentations/unet_lom"]["labels"].values, returned.values)
    spec = Specimen.open(specimen_file)
    with pytest.raises(ConfigError, match="'segmentations/unet_lom' already exists"):
        predict_to_specimen(checkpoint, spec, micrograph="micrographs/lom", name="unet_lom", device="cpu")
    with pytest.raises(ConfigError, match=r"synthetic-specimen.h5: no node 'micrographs/optical' to predict"):
        predict_to_specimen(checkpoint, spec, micrograph="micrographs/optical", device="cpu")


def test_cli_predict_into_a_specimen(specimen_file, checkpoint):
    runner = CliRunner()
    args = ["predict", str(checkpoint), "micrographs/lom", "--specimen", str(specimen_file), "--tile", "32",
            "--overlap", "8", "--device", "cpu", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    # Without --name the node is named after the model, and the command says so.
    assert "micrographs/lom -> segmentations/unet" in result.output
    # The untrained model is unsure of every pixel: the node's verdict is printed beside it.
    assert "segmentations/unet (UNCERTAIN: 100% of the pixels are" in " ".join(result.output.split())
    _check_segmentation_node(specimen_file, "segmentations/unet", checkpoint, tile=32, overlap=8)
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "already exists" in result.output
    result = runner.invoke(app, [*args, "--name", "strict", "--strict"])
    assert result.exit_code == 3 and "segmentations/strict" in Specimen.open(specimen_file).nodes()
    result = runner.invoke(app, [*args, "--overwrite", "--name", "again"])
    assert result.exit_code == 0, result.output
    assert {"segmentations/unet", "segmentations/again"} <= set(Specimen.open(specimen_file).nodes())


def test_cli_predict_several_micrographs_gives_one_segmentation_each(specimen_file, checkpoint):
    args = ["predict", str(checkpoint), "micrographs/lom", "micrographs/sem", "--specimen", str(specimen_file),
            "--tile", "32", "--overlap", "8", "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "micrographs/lom -> segmentations/unet_lom" in result.output
    assert "micrographs/sem -> segmentations/unet_sem" in result.output
    _check_segmentation_node(specimen_file, "segmentations/unet_lom", checkpoint, tile=32, overlap=8)
    spec = Specimen.open(specimen_file)
    sem = spec["segmentations/unet_sem"]["labels"]
    expected = predict(checkpoint, spec["micrographs/sem"]["image"], tile=32, overlap=8, device="cpu")
    assert sem.shape == spec["micrographs/sem"]["image"].shape and np.array_equal(sem.values, expected.values)
    # With --name the suffix follows the given name.
    result = CliRunner().invoke(app, [*args, "--name", "uhcs"])
    assert result.exit_code == 0, result.output
    assert {"segmentations/uhcs_lom", "segmentations/uhcs_sem"} <= set(Specimen.open(specimen_file).nodes())
