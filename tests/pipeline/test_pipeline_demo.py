"""`metallo demo`: the whole chain on a synthetic specimen, checked against its ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from metallo import names, pipeline
from metallo.cli import app
from metallo.specimen import Specimen


@pytest.mark.slow
def test_demo_writes_specimen_and_report_that_match_the_truth(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"specimen: {out / 'demo-0.h5'}" in result.output
    assert f"report:   {out / 'demo-0_report.html'}" in result.output
    spec = Specimen.open(out / "demo-0.h5")
    seg = names.segmentation("lom")
    for node in (names.registration("lom"), names.annotation_on("lath_bainite", "lom"), seg,
                 names.quantity(seg, names.PHASE_FRACTIONS)):
        assert node in spec, node
    # The unsupervised segmentation and the EBSD-informed annotation agree with the truth.
    truth = spec[names.annotation("truth_lom")]["labels"].values
    seg = spec[seg]["labels"]
    classes = json.loads(seg.attrs["classes"])
    bainite = seg.values == classes.index("lath_bainite")
    assert np.mean(bainite == (truth == 1)) > 0.85
    ann = spec[names.annotation_on("lath_bainite", "lom")]["labels"].values
    valid = ann != 255
    assert np.mean(ann[valid] == truth[valid]) > 0.95
    report = (out / "demo-0_report.html").read_text()
    assert "QC report" in report and "lath_bainite" in report


def test_demo_recipe_is_valid_and_names_the_output(tmp_path):
    recipe = pipeline.demo_recipe(tmp_path / "d", seed=4)
    assert recipe.specimen_path == (tmp_path / "d" / "demo-4.h5").resolve()
    assert recipe.step("segment")["method"] == "unsupervised"


def test_demo_help_lists_its_options():
    result = CliRunner().invoke(app, ["demo", "--help"])
    assert result.exit_code == 0
    assert "--out" in result.output and "--seed" in result.output
