"""`metallo step`: any adapter by its step name, with a recipe step's parameters."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from metallo import names
from metallo.cli import app
from metallo.segment import get_model, predict, save_checkpoint
from metallo.specimen import Specimen
from metallo.synth import write_demo_specimen

runner = CliRunner()


def test_segment_step_with_a_checkpoint_matches_predict(tmp_path):
    path = write_demo_specimen(tmp_path / "demo", ebsd_shape=(40, 40))
    torch.manual_seed(0)
    net = get_model("unet", n_classes=2, base_channels=4)
    checkpoint = save_checkpoint(tmp_path / "unet.pt", net, classes=["polygonal_ferrite", "lath_bainite"],
                                 mean=[0.5], std=[0.25], pixel_size_um=0.3, tile={"size": 32, "scale": 1.0})
    result = runner.invoke(app, ["step", names.STEP_SEGMENT, str(path), "--set", "method=checkpoint",
                                 "--set", f"checkpoint={checkpoint}", "--set", "options={device: cpu}"])
    assert result.exit_code == 0, result.output
    spec = Specimen.open(path)
    seg = spec[names.segmentation("lom")]
    expected = predict(checkpoint, spec[names.micrograph("lom")][names.IMAGE], device="cpu")
    assert np.array_equal(seg[names.LABELS].values, expected.values)
    assert json.loads(seg.attrs["classes"]) == ["polygonal_ferrite", "lath_bainite"]
    assert spec.provenance[-1]["step"] == names.segment_step("checkpoint")


def test_unknown_step_lists_the_known_ones(tmp_path):
    path = write_demo_specimen(tmp_path / "demo", ebsd_shape=(40, 40))
    result = runner.invoke(app, ["step", "segment.magic", str(path)])
    assert result.exit_code == 1
    assert "unknown step 'segment.magic'" in result.output and names.STEP_QUANTIFY in result.output


def test_a_recipe_steps_name_runs_its_adapter(tmp_path):
    # `metallo step clean_ebsd` is the recipe's clean_ebsd: the same node and provenance as ebsd.clean.
    path = write_demo_specimen(tmp_path / "demo", ebsd_shape=(40, 40))
    result = runner.invoke(app, ["step", "clean_ebsd", str(path), "--set", "min_ci=0.1", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert result.output == f"clean_ebsd -> {names.cleaned(names.ebsd('synth'))}\n"
    record = Specimen.open(path).provenance[-1]
    assert record["step"] == names.STEP_CLEAN and record["parameters"]["min_ci"] == 0.1
    # Derived from that cleaned map, then the map cleaned again: the derived map is said to be out of date.
    assert runner.invoke(app, ["step", "ebsd_derive", str(path)]).exit_code == 0
    again = runner.invoke(app, ["step", "clean_ebsd", str(path), "--set", "min_ci=0.2", "--set", "ebsd=synth", "--overwrite"])
    assert again.exit_code == 0, again.output
    assert f"now out of date until re-run: {names.derived(names.cleaned(names.ebsd('synth')))}" in again.output


def test_every_measurement_is_reachable_from_a_recipe(tmp_path):
    from metallo import pipeline

    truth = names.annotation("truth_lom")
    result = pipeline.run({
        "specimen": {"id": "Q1"}, "output": {"dir": str(tmp_path / "Q1"), "report": False},
        "inputs": {"synthetic": {"seed": 1, "ebsd_shape": [60, 60]}},
        "steps": {"quantify": {"labels": [truth], "what": ["phases", "particles", "laths", "grains"],
                               "particles_class": "lath_bainite", "lath_class": "lath_bainite", "fields": [2, 2]}},
    })
    spec = Specimen.open(result.specimen_path)
    for what in (names.PHASE_FRACTIONS, names.PHASE_FIELDS, names.PARTICLES, names.PSD, names.LATHS):
        assert names.quantity(truth, what) in spec, what
    assert names.quantity(names.EBSD_MAP, names.GRAIN_SIZE) in spec
    fractions = spec.table(names.quantity(truth, names.PHASE_FRACTIONS)).set_index("class")
    labels = spec[truth][names.LABELS].values
    assert fractions.loc["lath_bainite", "fraction"] == pytest.approx((labels == 1).sum() / (labels != 255).sum())
    assert {names.quantify_step(w) for w in ("phases", "particles", "laths", "grains")} <= \
        {r["step"] for r in spec.provenance}


def test_annotate_registers_again_when_its_registration_was_made_from_a_replaced_micrograph(tmp_path):
    from metallo._step import stale_nodes
    from metallo.steps import run_step

    path = write_demo_specimen(tmp_path / "demo", ebsd_shape=(40, 40))
    spec = Specimen.open(path)
    run_step(spec, names.STEP_ANNOTATE, rules="lath_bainite", micrograph="lom")
    reg = names.registration("lom")
    first = [r for r in spec.provenance if reg in (r.get("outputs") or [])]
    assert len(first) == 1
    lom = spec[names.micrograph("lom")]
    spec.add(names.micrograph("lom"), lom, step=names.STEP_READ_IMAGE, overwrite=True)  # read again, the same
    assert not stale_nodes(spec) and spec.provenance[-1]["unchanged"] is True
    spec.add(names.micrograph("lom"), lom.assign_attrs(pixel_size_um=0.5), step=names.STEP_READ_IMAGE, overwrite=True)
    assert stale_nodes(spec)[reg] == [names.micrograph("lom")]  # recalibrated: made again
    with pytest.warns(UserWarning, match=r"registration/lom was made from an earlier micrographs/lom, replaced since; registering again"):
        run_step(spec, names.STEP_ANNOTATE, rules="lath_bainite", micrograph="lom", overwrite=True)
    assert len([r for r in spec.provenance if reg in (r.get("outputs") or [])]) == 2
    # The registration and the mask carried through it are current; the synthetic truth labels of
    # the micrograph are not (drawn on its earlier version), and stay flagged until made again.
    assert stale_nodes(spec) == {names.annotation("truth_lom"): [names.micrograph("lom")]}
