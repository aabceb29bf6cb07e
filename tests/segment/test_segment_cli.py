"""metallo train / predict / evaluate through the real CLI app."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from metallo.cli import app

runner = CliRunner()


def test_train_with_folds_side_by_side(data_folder, tmp_path):
    """--jobs 2: both folds trained in worker processes, their checkpoints and metrics written."""
    config = tmp_path / "train.yaml"
    config.write_text(f"data: {data_folder}\nmodel: unet\nmodel_kwargs: {{base_channels: 4}}\n"
                      "epochs: 2\ntile_size: 32\nbatch_size: 4\ndevice: cpu\n")
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(config), "--folds", "2", "--jobs", "2", "--no-final", "--out", str(out),
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    cv = json.loads((out / "cv_metrics.json").read_text())
    assert [f["fold"] for f in cv["folds"]] == [0, 1] and cv["config"]["jobs"] == 2
    assert (out / "fold0.pt").is_file() and (out / "fold1.pt").is_file() and not (out / "model.pt").exists()
    result = runner.invoke(app, ["train", str(config), "--folds", "2", "--jobs", "0", "--out", str(out), "--quiet"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "jobs must be a whole number >= 1" in lines[0]


@pytest.mark.slow
def test_train_predict_evaluate(data_folder, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(f"data: {data_folder}\nmodel: unet\nmodel_kwargs: {{base_channels: 4}}\n"
                      "epochs: 2\ntile_size: 32\nbatch_size: 4\ndevice: cpu\n")
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(config), "--folds", "2", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "2-fold cross-validation" in result.output
    cv = json.loads((out / "cv_metrics.json").read_text())
    assert len(cv["folds"]) == 2 and cv["classes"] == ["ferrite", "pearlite"]
    assert (out / "model.pt").is_file()

    pred = tmp_path / "pred"
    result = runner.invoke(app, ["predict", str(out / "model.pt"), str(data_folder / "images" / "m0.png"),
                                 str(data_folder / "images" / "m1.png"), "--out", str(pred), "--tile", "32",
                                 "--overlap", "8", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    assert np.asarray(Image.open(pred / "m0_labels.png")).shape == (64, 64)
    assert (pred / "m1_overlay.png").is_file() and len(json.loads((pred / "predictions.json").read_text())) == 2

    metrics = tmp_path / "metrics.json"
    result = runner.invoke(app, ["evaluate", str(out / "model.pt"), str(data_folder), "--out", str(metrics),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    saved = json.loads(metrics.read_text())
    assert "mean IoU" in result.output and saved["n_pixels"] == 4 * (64 * 64 - 9)
    # Where the model errs, the command says how much of it is at the labelled boundaries.
    assert ("of a labelled class boundary" in result.output) == (saved["accuracy"] < 1.0)


def test_errors_are_one_red_line(data_folder, tmp_path):
    (tmp_path / "empty").mkdir()
    ckpt = tmp_path / "not_a_checkpoint.pt"
    ckpt.write_bytes(b"garbage")
    result = runner.invoke(app, ["predict", str(ckpt), str(tmp_path / "empty"), "--device", "cpu"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "no images" in lines[0]
    result = runner.invoke(app, ["evaluate", str(ckpt), str(data_folder), "--device", "cpu"])
    assert result.exit_code == 1 and "not a readable metallo checkpoint" in result.output
    result = runner.invoke(app, ["train", str(tmp_path / "empty"), "--device", "cpu", "--quiet"])
    assert result.exit_code == 1 and "expected sub-folders images/ and labels/" in result.output


@pytest.mark.slow
def test_the_uhcs_training_recipe_trains_and_predicts_real_micrographs(shared_file, tmp_path, monkeypatch):
    """examples/train_uhcs.yaml: valid, names the example data set, and runs end to end (1 epoch)."""
    import yaml

    from metallo.segment import TrainConfig, load_checkpoint

    recipe = Path(__file__).resolve().parents[2] / "examples" / "train_uhcs.yaml"
    folder = shared_file("uhcs_microconstituent_segmentation")
    monkeypatch.setenv("METALLO_DATA", str(folder.parent))
    cfg = TrainConfig.from_any(recipe)
    assert Path(cfg.data) == folder
    assert cfg.classes == ["matrix", "network", "spheroidite", "widmanstatten"] and cfg.eval_tta
    config = yaml.safe_load(recipe.read_text())
    config["data"] = str(folder)
    (tmp_path / "uhcs.yaml").write_text(yaml.safe_dump(config))
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(tmp_path / "uhcs.yaml"), "--epochs", "1", "--folds", "0",
                                 "--out", str(tmp_path / "run"), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    model, info = load_checkpoint(tmp_path / "run" / "model.pt")
    assert info["classes"] == config["classes"] and info["tile"]["tta"] is True
    assert info["pixel_size_um"] is None or info["pixel_size_um"] > 0
    image = folder / "images" / "micrograph295.png"
    result = runner.invoke(app, ["predict", str(tmp_path / "run" / "model.pt"), str(image), "--out",
                                 str(tmp_path / "pred"), "--tile", "0", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    labels = np.asarray(Image.open(tmp_path / "pred" / "micrograph295_labels.png"))
    assert labels.shape == (481, 645) and labels.max() <= 3
