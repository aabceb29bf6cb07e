"""One synthetic specimen through the whole chain: outputs, QC against truth, skip/resume, report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from metallo import names, pipeline, report, synth
from metallo.cli import app
from metallo.specimen import Specimen

SEED = 3
SHAPE = [100, 100]


def recipe(tmp, **changes):
    data = {
        "specimen": {"id": "S1", "material": "synthetic CP steel",
                     "process": {"route": "synthetic", "heat_treatment": "none", "etchant": "nital 2 %"}},
        "output": {"dir": str(tmp / "S1")},
        "inputs": {"synthetic": {"seed": SEED, "ebsd_shape": SHAPE}},
        "steps": {
            "clean_ebsd": {"min_ci": 0.1},
            "ebsd_derive": {},
            "register": {"micrograph": "lom"},
            "annotate": {"rules": "lath_bainite", "micrograph": "lom"},
            "segment": {"micrograph": "lom", "method": "annotation"},
            "quantify": {"fields": [3, 3], "grain_size": True},
        },
        "limits": {"lath_bainite": [0.05, 0.95], "polygonal_ferrite": [0.9, 1.0]},
    }
    data["steps"].update(changes)
    return data


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chain")
    return tmp, pipeline.run(recipe(tmp))


@pytest.mark.slow
def test_every_step_runs_and_writes_its_nodes(first_run):
    tmp, result = first_run
    assert result.ran == ["inputs", "clean_ebsd", "ebsd_derive", "register", "annotate", "segment", "quantify", "report"]
    spec = Specimen.open(result.specimen_path)  # validates against data_schemas/
    seg = names.segmentation("lom")
    for node in (names.micrograph("lom"), names.micrograph("sem"), names.EBSD_MAP, names.EBSD_CLEAN,
                 names.derived(names.EBSD_CLEAN), names.registration("lom"), names.annotation("lath_bainite"),
                 names.annotation_on("lath_bainite", "lom"), seg, names.quantity(seg, names.PHASE_FRACTIONS),
                 names.quantity(seg, names.PHASE_FIELDS), names.quantity(names.EBSD_CLEAN, names.GRAIN_SIZE)):
        assert node in spec, node
    steps = [r["step"] for r in spec.provenance]
    for step in (names.STEP_REGISTER, names.STEP_ANNOTATE, names.STEP_TO_MICROGRAPH, names.segment_step("annotation"),
                 names.quantify_step("phases"), names.quantify_step("grains")):
        assert step in steps, step
    assert all("cache_key" in r["parameters"] for r in spec.provenance if r["step"] != "create")


@pytest.mark.slow
def test_phase_fractions_match_the_synthetic_truth(first_run):
    _, result = first_run
    truth = synth.make_specimen(SEED, ebsd_shape=tuple(SHAPE))
    true_bainite = float(truth.lom_labels[truth.lom_field].mean())
    qc = result.qc
    assert qc["lath_bainite"]["status"] == "pass"
    assert qc["lath_bainite"]["mean"] == pytest.approx(true_bainite, abs=0.06)
    assert qc["lath_bainite"]["ci_low"] < true_bainite < qc["lath_bainite"]["ci_high"]
    assert qc["polygonal_ferrite"]["status"] == "fail"  # limits 90-100 % cannot hold


@pytest.mark.slow
def test_rerun_skips_unchanged_steps_and_reruns_downstream_of_a_change(first_run):
    tmp, _ = first_run
    again = pipeline.run(recipe(tmp))
    assert again.ran == []
    assert set(again.skipped) == {"inputs", "clean_ebsd", "ebsd_derive", "register", "annotate", "segment", "quantify", "report"}
    changed = pipeline.run(recipe(tmp, quantify={"fields": [2, 2], "grain_size": True}))
    assert changed.ran == ["quantify", "report"]
    phase_fields = names.quantity(names.segmentation("lom"), names.PHASE_FIELDS)
    fields = Specimen.open(changed.specimen_path).table(phase_fields)
    assert fields["field"].nunique() <= 4
    # Going back to the first parameters re-runs the step: the node now holds the 2 x 2 result.
    back = pipeline.run(recipe(tmp))
    assert back.ran == ["quantify", "report"]
    assert Specimen.open(back.specimen_path).table(phase_fields)["field"].nunique() > 4


@pytest.mark.slow
def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, monkeypatch):
    real = pipeline.run_step

    def crash(spec, step, **kwargs):  # the annotate adapter stops the run, as Ctrl-C would
        if step == names.STEP_ANNOTATE:
            raise KeyboardInterrupt
        return real(spec, step, **kwargs)

    monkeypatch.setattr(pipeline, "run_step", crash)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(recipe(tmp_path))
    monkeypatch.undo()
    Specimen.open(tmp_path / "S1" / "S1.h5")  # the file saved after 'register' is intact
    resumed = pipeline.run(recipe(tmp_path))
    assert resumed.skipped[:4] == ["inputs", "clean_ebsd", "ebsd_derive", "register"]
    assert resumed.ran == ["annotate", "segment", "quantify", "report"]


@pytest.mark.slow
def test_report_loads_in_chromium_without_console_errors(first_run, load_page, non_blank_fraction):
    _, result = first_run
    html = result.report_path.read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html  # self-contained
    assert html.count("data:image/png;base64,") >= 4  # fractions, overlay, grain sizes, registration
    assert "QC report" in html and "lath_bainite" in html and "Provenance" in html
    page = load_page(result.report_path)
    assert page.errors == []
    assert non_blank_fraction(page.screenshot) > 0.05


def test_cli_analyze_reports_a_bad_recipe_in_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"specimen": {"id": "S1"}, "inputs": {"synthetic": {"seed": 0}},
                                    "steps": {"segment": {"method": "magic"}}}))
    out = CliRunner().invoke(app, ["analyze", str(path)])
    assert out.exit_code == 1
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "steps.segment.method" in lines[0]


@pytest.mark.parametrize(("qc", "checks", "rests_on", "qc_passed", "passed"), [
    ({}, {}, [], None, True),  # no limits, no verdicts: nothing failed
    ({"a": {"status": "pass"}}, {"registration/x": {"passed": True, "reasons": []}}, [], True, True),
    ({"a": {"status": "pass"}, "b": {"status": "fail"}}, {}, [], False, False),
    ({"a": {"status": "missing"}}, {}, [], False, False),  # a class with limits but no fraction is no pass
    ({"a": {"status": "pass"}}, {"segmentations/s": {"passed": False, "reasons": ["r"]}}, ["segmentations/s"], False, False),
    ({}, {"registration/x": {"passed": False, "reasons": ["r"]}}, [], None, False),  # a failed node without QC limits
])
def test_run_result_passes_only_when_no_check_and_no_limit_failed(tmp_path, qc, checks, rests_on, qc_passed, passed):
    result = pipeline.RunResult("S", tmp_path / "s.h5", None, qc=qc, checks=checks, qc_rests_on_failed=rests_on)
    assert result.qc_passed is qc_passed and result.passed is passed


def test_qc_status_pass_fail_and_ci_flag():
    import pandas as pd

    table = pd.DataFrame({"class": ["a", "b"], "mean": [0.35, 0.65], "ci_low": [0.28, 0.6], "ci_high": [0.42, 0.7]})
    qc = report.qc_status(table, {"a": [0.30, 0.45], "b": [0.0, 0.6], "c": [0.1, 0.2]})
    assert qc["a"]["status"] == "pass" and qc["a"]["ci_inside"] is False
    assert qc["b"]["status"] == "fail"
    assert qc["c"]["status"] == "missing"
    assert json.dumps(qc)
    assert np.isclose(qc["a"]["mean"], 0.35)


@pytest.mark.slow
def test_every_gridded_node_is_on_micrometre_coordinates(first_run):
    _, result = first_run
    spec = Specimen.open(result.specimen_path)
    for node in spec.nodes():
        ds = spec[node]
        for dim in ("y", "x"):
            if dim in ds.coords:
                assert ds[dim].attrs.get("units") == "um", f"{node}:{dim}"


@pytest.mark.slow
def test_changing_only_the_limits_rewrites_the_report(first_run):
    tmp, _ = first_run
    data = recipe(tmp)
    data["limits"] = {"lath_bainite": [0.0, 0.01]}
    result = pipeline.run(data)
    assert result.ran == ["report"]
    assert result.qc["lath_bainite"]["status"] == "fail"
    assert "FAIL" in result.report_path.read_text()
    again = pipeline.run(data)
    assert again.ran == [] and "report" in again.skipped
