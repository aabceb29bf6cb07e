"""`metallo report` and the data-driven report sections, on nodes built here with the agreed names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from metallo import names, synth
from metallo.cli import app
from metallo.correlate import Grid, Registration
from metallo.ebsd import map_image
from metallo.errors import MetalloError
from metallo.quantify import quantify_step
from metallo.report import report_sections, write_report
from metallo.specimen import Specimen

SCRIPT = "<script>alert(1)</script>"
runner = CliRunner()


def _labels(spec: Specimen, classes: list[str]) -> xr.Dataset:
    truth = spec[names.annotation("truth_lom")][names.LABELS]
    labels = truth.copy(data=np.where(truth.values == 255, 0, truth.values).astype(np.uint8)).rename(names.LABELS)
    labels.attrs = {"classes": json.dumps(classes), "model": "test", "checkpoint_sha256": "",
                    "config": json.dumps({"micrograph": "lom"})}
    uncertainty = xr.zeros_like(labels, dtype=np.float32).rename(names.UNCERTAINTY)
    uncertainty[: labels.sizes["y"] // 2] = 0.8  # the upper half is uncertain
    ds = xr.Dataset({names.LABELS: labels, names.UNCERTAINTY: uncertainty}, attrs=labels.attrs)
    ds.attrs[names.QUALITY] = json.dumps({names.PASSED: False, "mean_uncertainty": float(uncertainty.mean())})
    return ds


@pytest.fixture(scope="module")
def specimen_path(tmp_path_factory):
    """A specimen with a segmentation (+ uncertainty), a registration (+ residual) and a parent node."""
    path = tmp_path_factory.mktemp("report") / "S2.h5"
    spec = Specimen.create(path, specimen_id="S2", material=SCRIPT, process={"etchant": SCRIPT})
    synth.add_synthetic_specimen(spec, 2, ebsd_shape=(60, 60))
    spec.add(names.segmentation("lom"), _labels(spec, [SCRIPT, "polygonal_ferrite"]), step=names.segment_step("checkpoint"),
             inputs=[names.micrograph("lom")])
    lom = spec[names.micrograph("lom")][names.IMAGE]
    ebsd = spec[names.EBSD_MAP]
    identity = Registration([], fixed_grid=Grid.of(lom), moving_grid=Grid.of(map_image(ebsd)), method="identity",
                            quality={names.PASSED: False, "tre_um": {"median": 3.2}})
    reg = identity.to_dataset()
    reg[names.RESIDUAL] = xr.DataArray(np.full(lom.shape[:2], 0.4, np.float32), dims=("y", "x"),
                                       coords={"y": lom.y, "x": lom.x})
    reg.attrs.update(fixed=names.micrograph("lom"), moving=names.EBSD_MAP)
    spec.add(names.registration("lom"), reg, step=names.STEP_REGISTER, inputs=[names.micrograph("lom"), names.EBSD_MAP])
    ebsd = spec[names.EBSD_MAP]
    block = (np.arange(60) // 20)
    ids = (block[:, None] * 3 + block[None, :]).astype(np.int32)  # 3 x 3 parent grains of 20 x 20 points
    misfit = np.where(ids == 4, 1.0, 3.0).astype(np.float32)
    parent = xr.Dataset({names.PARENT_GRAIN_ID: (("y", "x"), ids), names.OR_MISFIT: (("y", "x"), misfit)},
                        coords={"y": ebsd.y, "x": ebsd.x},
                        attrs={names.QUALITY: json.dumps({names.PASSED: True, "orientation_relationship": "KS"})})
    spec.add(names.parent(names.EBSD_MAP), parent, step=names.STEP_PARENT, inputs=[names.EBSD_MAP])
    quantify_step(spec, what=["phases", "grains"], labels=[names.segmentation("lom")])
    spec.save()
    return path


def test_sections_appear_for_the_nodes_that_exist(specimen_path):
    spec = Specimen.open(specimen_path)
    sections = {s.key: s for s in report_sections(spec, {"polygonal_ferrite": [0.0, 1.0]})}
    seg = names.segmentation("lom")
    parent = names.parent(names.EBSD_MAP)
    reg = sections[f"registration:{names.registration('lom')}"]
    assert [(b.badge_text, b.text) for b in reg.blocks if b.kind == "p"] == [("FAIL", "Registration quality:"), ("", "Full quality record:")]
    key = reg.tables()[0]
    assert key["figure"].tolist() == ["expected error, residual map (median µm)"] and key["result"].tolist() == [pytest.approx(0.4)]
    assert sum(b.kind == "figure" for b in reg.blocks) == 2  # residual map + overlay
    # Within the limits, but the segmentation failed its own check: the fractions are no pass.
    phases = sections[f"phases:{seg}"]
    badges = [(b.badge_text, b.text) for b in phases.blocks if b.kind == "p"]
    assert badges[0] == ("FAIL", f"These fractions rest on {seg}, which failed its quality check. They are not a QC figure.")
    assert badges[1] == ("FAIL", "Overall:")
    qc_table = phases.tables()[0]
    assert list(qc_table["QC"]) == ["PASS"]  # the limits alone pass
    segmentation = sections[f"segmentation:{seg}"]
    (summary,) = segmentation.tables()[1:]
    assert summary.loc[0, "fraction > 0.5"] == pytest.approx(0.5, abs=0.01)
    assert any(b.text == f"segmentation uncertainty {seg}" for b in segmentation.blocks)
    pag = sections[f"parent:{parent}"]
    assert [b.badge_text for b in pag.blocks if b.kind == "p"] == ["PASS"]
    quality, sizes, misfit = pag.tables()
    step = float(spec[names.EBSD_MAP].attrs["step_um"])
    # one interior grain of 20 x 20 points; eight touching the edge
    assert sizes.loc[0, "n_grains"] == 9 and sizes.loc[0, "n_edge_grains"] == 8
    # E112's mean area 1 / N_A: 1 + 4 / 2 + 4 / 4 grains counted in 3600 points (grains on the field's
    # lines are Jeffries' worst case; the section says NOT RELIABLE for 9 grains anyway)
    assert sizes.loc[0, "mean_area_um2"] == pytest.approx(900 * step**2)
    assert misfit.loc[0, "median (°)"] == pytest.approx(3.0) and misfit.loc[0, "n"] == 3600
    # no node, no section
    Specimen.open(specimen_path)
    bare = Specimen.create(specimen_path.with_name("bare.h5"), specimen_id="bare")
    assert [s.key for s in report_sections(bare)] == ["specimen", "provenance"]


def test_user_text_is_rendered_as_text(specimen_path, tmp_path):
    html = write_report(specimen_path, tmp_path / "r.html", limits={SCRIPT: [0.1, 0.9]}).read_text()
    assert "<script" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4  # material, etchant, class, QC row


def test_report_command_one_and_several(specimen_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one = runner.invoke(app, ["report", str(specimen_path), "--limit", "polygonal_ferrite=0.2:0.9"])
    assert one.exit_code == 0, one.output
    assert (tmp_path / "S2_report.html").is_file()
    other = tmp_path / "S3.h5"
    Specimen.create(other, specimen_id="S3").save()
    out = tmp_path / "batch"
    several = runner.invoke(app, ["report", str(specimen_path), str(other), "--out", str(out)])
    assert several.exit_code == 0, several.output
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("specimen,status") and len(summary) == 3
    assert (out / "S2_report.html").is_file() and (out / "S3_report.html").is_file()
    twin = tmp_path / "lot2" / specimen_path.name  # same stem in another folder: its own report
    twin.parent.mkdir()
    twin.write_bytes(specimen_path.read_bytes())
    both = runner.invoke(app, ["report", str(specimen_path), str(twin), str(twin), "--out", str(out)])
    assert both.exit_code == 0, both.output
    made = sorted(p.name for p in out.glob("*_report.html") if "lot2" in p.name or specimen_path.parent.name in p.name)
    assert made == sorted([f"{specimen_path.parent.name}_S2_report.html", "lot2_S2_1_report.html",
                           "lot2_S2_2_report.html"])
    assert len((out / "summary.csv").read_text().splitlines()) == 4
    bad = runner.invoke(app, ["report", str(specimen_path), "--limit", "ferrite=0.9"])
    assert bad.exit_code == 1 and "CLASS=MIN:MAX" in bad.output


def test_report_summary_judges_qc_as_the_batch_does(specimen_path, tmp_path):
    """S2's fractions lie within the limits but rest on a segmentation that failed its check: the
    summary table says QC fail (it said pass from the limits alone), and --strict exits 3. S3, with
    nothing measured against the limits, fails QC too."""
    import pandas as pd

    bare = tmp_path / "S3.h5"
    Specimen.create(bare, specimen_id="S3").save()
    out = tmp_path / "summary"
    limits = ["--limit", "polygonal_ferrite=0.0:1.0"]
    several = runner.invoke(app, ["report", str(specimen_path), str(bare), "--out", str(out), *limits])
    assert several.exit_code == 0, several.output
    assert "checks or QC failed: S2, S3" in several.output
    table = pd.read_csv(out / "summary.csv").set_index("specimen")
    assert table.loc["S2", "qc"] == "fail"
    assert table.loc["S2", "checks"] == f"fail: {names.registration('lom')}, {names.segmentation('lom')}"
    # S3 holds no fractions: no node failed, but a limit nothing was measured against is no pass
    # (it had been left blank, and --strict passed a batch holding it).
    assert table.loc["S3", "checks"] == "pass" and table.loc["S3", "qc"] == "fail"
    strict = runner.invoke(app, ["report", str(specimen_path), str(bare), "--out", str(out), *limits, "--strict"])
    assert strict.exit_code == 3, strict.output
    one = runner.invoke(app, ["report", str(specimen_path), "--out", str(tmp_path / "one.html"), *limits, "--strict"])
    assert one.exit_code == 3 and (tmp_path / "one.html").is_file()
    assert runner.invoke(app, ["report", str(bare), "--out", str(tmp_path / "bare.html"), "--strict"]).exit_code == 0


def test_pixel_size_is_required_where_a_length_is_measured(tmp_path):
    from metallo._xarray import image_dataarray, require_pixel_size_um

    with pytest.raises(MetalloError, match="pixel size unknown"):
        require_pixel_size_um(image_dataarray(np.zeros((4, 4))), what="lom")
    spec = Specimen.create(tmp_path / "px.h5", specimen_id="px")
    labels = image_dataarray(np.eye(8, dtype=np.uint8), name="labels",
                             attrs={"classes": json.dumps(["matrix", "particle"]), "ignore_index": 255,
                                    "rules": "{}"})
    spec.add(names.annotation("px"), labels, step="test")
    quantify_step(spec, what=["phases"])  # fractions need no µm
    with pytest.raises(MetalloError, match="pixel size unknown"):
        quantify_step(spec, what=["particles"], overwrite=True)


@pytest.mark.slow
def test_report_with_every_section_loads_in_chromium(specimen_path, tmp_path, load_page, non_blank_fraction):
    page_path = write_report(specimen_path, tmp_path / "all.html", limits={"polygonal_ferrite": [0.2, 0.9]})
    html = page_path.read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    page = load_page(page_path)
    assert page.errors == [] and page.console == []
    assert non_blank_fraction(page.screenshot) > 0.05


def test_fractions_through_a_failed_registration_are_followed_to_it(specimen_path, tmp_path):
    # An EBSD mask warped onto the micrograph through a registration that failed: the annotation's
    # fractions rest on it two provenance steps up, and the report says so.
    import shutil

    from metallo.report import failed_upstream

    path = tmp_path / "S3.h5"
    shutil.copy(specimen_path, path)
    spec = Specimen.open(path)
    reg = names.registration("lom")
    from metallo.annotate import add_annotation

    truth = spec[names.annotation("truth_lom")]
    node = add_annotation(spec, "warped", truth, inputs=[reg, names.micrograph("lom")], step=names.STEP_TO_MICROGRAPH)
    quantify_step(spec, what=["phases"], labels=[node])
    classes = json.loads(truth.attrs["classes"]) if "classes" in truth.attrs else json.loads(truth[names.LABELS].attrs["classes"])
    fractions = names.quantity(node, names.PHASE_FRACTIONS)
    assert list(failed_upstream(spec, fractions)) == [reg]
    assert failed_upstream(spec, names.micrograph("lom")) == {}
    section = {s.key: s for s in report_sections(spec, {str(classes[0]): [0.0, 1.0]})}[f"phases:{node}"]
    first = [b for b in section.blocks if b.kind == "p"][0]
    assert first.badge_text == "FAIL" and f"rest on {reg}" in first.text


def test_residual_map_cells_without_evidence_are_named_not_blank():
    # A registration's residual map is NaN where no point gives evidence; drawn blank, a QC
    # engineer reads "no colour" as nothing to worry about. The report names those cells.
    from metallo.report._figures import scalar_overlay_figure

    values = np.array([[0.5, np.nan], [1.0, 2.0]])
    fig = scalar_overlay_figure(None, values, title="t", label="µm", nan_label="not verified")
    legend = fig.axes[0].get_legend()
    assert legend is not None and [t.get_text() for t in legend.get_texts()] == ["not verified (25%)"]
    assert scalar_overlay_figure(None, values, title="t", label="µm").axes[0].get_legend() is None


def _registration_spec(tmp_path, quality):
    spec = Specimen.create(tmp_path / "R.h5", specimen_id="R")
    synth.add_synthetic_specimen(spec, 3, ebsd_shape=(40, 40))
    lom, ebsd = spec[names.micrograph("lom")][names.IMAGE], spec[names.EBSD_MAP]
    reg = Registration([], fixed_grid=Grid.of(lom), moving_grid=Grid.of(map_image(ebsd)), method="identity", quality=quality)
    ds = reg.to_dataset()
    ds.attrs.update(fixed=names.micrograph("lom"), moving=names.EBSD_MAP)
    spec.add(names.registration("lom"), ds, step=names.STEP_REGISTER, inputs=[names.micrograph("lom"), names.EBSD_MAP])
    return spec


def test_registration_section_puts_the_evidence_beside_the_start_and_says_why_it_failed(tmp_path):
    # A failed automatic registration (the record of Slice8_TFS, abridged): the reason was in the
    # record but not in the report (lists were left out of the table), and the start's fine-scale
    # structure score stood beside the result's coarse one.
    quality = {
        "method": "auto", names.PASSED: False, "failed": True,
        "failure_reasons": ["forward and inverse registrations disagree on 47% of the overlap"],
        "structure_ncc_start": 0.45, "structure_ncc": 0.48, "structure_ncc_fine_start": 0.35, "structure_ncc_fine": 0.47,
        "outline_px_start": {"median": 3.6, "p95": 14.5}, "outline_px": {"median": 2.0, "p95": 18.4},
        "control_points": {"candidates": 550, "inliers": 327, "held_out_px": {"median": 4.1}},
        "inverse_consistency_px": {"median": 8.19}, "both_ways": {"weights": {"agreed": 0.53}},
    }
    spec = _registration_spec(tmp_path, quality)
    (section,) = [s for s in report_sections(spec) if s.key.startswith("registration:")]
    texts = [b.text for b in section.blocks if b.kind == "p"]
    assert texts[1] == "Why it failed: forward and inverse registrations disagree on 47% of the overlap"
    key = section.tables()[0].set_index("figure")
    assert key.loc["structure agreement, coarse (NCC)", ["start", "result"]].tolist() == [0.45, 0.48]
    assert key.loc["structure agreement, matching scale (NCC)", ["start", "result"]].tolist() == [0.35, 0.47]
    assert key.loc["section outlines apart (p95 px)", ["start", "result"]].tolist() == [14.5, 18.4]
    assert key.loc["control points kept", "result"] == 327 and key.loc["control points kept", "reads"] == "of 550 matched"
    assert key.loc["share of the overlap where both directions agree", "result"] == 0.53


def test_registration_figures_say_when_the_gate_rejected_the_points():
    # Slice8_TFS now (abridged): 464 chance matches, rejected; the result is the affine start.
    from metallo.report import registration_key_figures

    quality = {"gate": "rejected: the block matches are no more distinctive than chance (1.17 x chance < 1.25)",
               "control_points": {"candidates": 669, "inliers": 464, "held_out_px": {"median": 8.9}},
               "both_ways": {"weights": {"agreed": 0.58}}}
    key = registration_key_figures(quality).set_index("figure")
    assert key.loc["share of the overlap where both directions agree", "reads"].endswith("of the splines the gate rejected")
    assert key.loc["control points kept", "reads"] == "of 669 matched; rejected by the gate, the result is the start"
    assert key.loc["control points, held-out error (median px)", "reads"].endswith("rejected by the gate, the result is the start")
    quality["gate"] = "kept"
    assert registration_key_figures(quality).set_index("figure").loc["control points kept", "reads"] == "of 669 matched"
    # With given points, their leave-one-out error is the evidence the kept start stands on.
    assert "given points, leave-one-out error (median px)" not in key.index
    quality.update(gate="rejected: chance", landmark_loo_px={"median": 9.82, "n": 9})
    row = registration_key_figures(quality).set_index("figure").loc["given points, leave-one-out error (median px)"]
    assert row["result"] == 9.82 and row["reads"] == "each given point predicted by the spline through the others"


def test_registration_section_asks_to_check_a_pixel_size_the_warp_had_to_scale(tmp_path):
    note = "one µm of the moving image (ebsd, 0.5 µm/px) spans 1.51 and 1.49 µm of the fixed one (lom, 0.45 µm/px) ..."
    quality = {"method": "auto", names.PASSED: True, "failed": False, "structure_ncc": 0.6,
               "calibration": {"scale_principal": [1.51, 1.49], "consistent": False, "tolerance": 1.15, "note": note}}
    (section,) = [s for s in report_sections(_registration_spec(tmp_path, quality)) if s.key.startswith("registration:")]
    check = [b for b in section.blocks if b.kind == "p" and b.badge_text == "CHECK PIXEL SIZE"]
    assert len(check) == 1 and check[0].text == f"Calibration: {note}."
    row = section.tables()[0].set_index("figure").loc["scale between the two calibrations (fixed µm per moving µm)"]
    assert row["result"] == 1.51 and row["reads"].startswith("about 1; beyond x1.15")
    # A consistent pair: the scale row, no request.
    from metallo.report import registration_key_figures

    quality["calibration"] = {"scale_principal": [1.02, 0.97], "consistent": True, "tolerance": 1.15}
    key = registration_key_figures(quality).set_index("figure")
    assert key.loc["scale between the two calibrations (fixed µm per moving µm)", "result"] == 0.97  # farther from 1


def test_registration_section_says_when_a_method_does_not_judge_itself(tmp_path):
    spec = _registration_spec(tmp_path, {"method": "sift+bspline", "mi_before": 1.0, "mi_after": 1.1})
    (section,) = [s for s in report_sections(spec) if s.key.startswith("registration:")]
    paragraphs = [b for b in section.blocks if b.kind == "p"]
    assert paragraphs[0].badge_text == "NOT ASSESSED"
    assert paragraphs[1].text.startswith("Method 'sift+bspline' does not judge its own result")
    assert len(section.tables()) == 1  # the record alone: no evidence to put beside a start


def _ebsd_specimen(tmp_path, phase, cleanup=None):
    from metallo.ebsd import derive, ebsd_dataset

    rng = np.random.default_rng(0)
    euler = np.full(phase.shape + (3,), 0.1)
    euler[:, phase.shape[1] // 2:] = [0.6, 0.4, 0.2]  # two grains, far apart
    euler += rng.uniform(0, 1e-3, euler.shape)
    ebsd = ebsd_dataset(euler, phase.astype(np.int16), step_um=0.5, phases=[
        {"id": 1, "name": "ferrite", "symmetry": "m-3m"}, {"id": 2, "name": "austenite", "symmetry": "m-3m"}])
    if cleanup is not None:
        ebsd.attrs["cleanup"] = json.dumps(cleanup)
    spec = Specimen.create(tmp_path / "E.h5", specimen_id="E")
    spec.add(names.EBSD_CLEAN, ebsd, step=names.STEP_CLEAN)
    spec.add(names.derived(names.EBSD_CLEAN), derive(ebsd), step=names.STEP_DERIVE, inputs=[names.EBSD_CLEAN])
    return spec


def test_ebsd_section_gives_each_maps_key_figures_and_says_when_they_are_no_measurement(tmp_path):
    phase = np.ones((20, 40), int)
    phase[:, 30:] = 2  # a quarter austenite
    phase[:2, :] = -1  # 2 of 20 rows unindexed: 90 % indexed
    spec = _ebsd_specimen(tmp_path, phase, cleanup=[{"step": "grain_dilation", "n_changed": 200, "n_measured": 800}])
    (section,) = [s for s in report_sections(spec) if s.key == "ebsd"]
    (row,) = section.tables()[0].to_dict("records")
    assert row["points"] == "20 x 40" and row["step_um"] == 0.5 and row["field_um"] == "20 x 10"
    assert row["indexed_pct"] == 90.0
    # 180 of the 720 indexed points are austenite
    assert row["phases"] == "ferrite 75.0 %, austenite 25.0 %"
    assert row["cleanup"] == "grain_dilation 25.0 %" and row["invented_pct"] == 25.0
    assert row["grains"] == 3  # ferrite left, ferrite right, austenite (its own phase)
    # two phases: each one's mean KAM beside the map's (grains of one orientation each: ~0)
    names_in = [part.split(" ")[0] for part in row["kam_mean_deg_by_phase"].split(", ")]
    assert names_in == ["ferrite", "austenite"]
    # KAM grows with the kernel's reach: the row gives it, order x step.
    order = json.loads(spec[names.derived(names.EBSD_CLEAN)]["kam"].attrs["parameters"])["order"]
    assert row["kam_kernel"] == f"order {order} (ring), {order * 0.5:.3g} µm"
    said = [b.text for b in section.blocks if b.kind == "p"]
    assert said == ["ebsd/clean — NOT RELIABLE: cleanup gave 25 % of its measured points a neighbour's orientation "
                    "(over 20 %): grain sizes, phase fractions and KAM of an interpolated map are not measurements"]
    # the IPF map of the derived map, and (two phases) its phase map
    assert [b.text for b in section.blocks if b.kind == "figure"] == ["IPF map ebsd/clean", "phase map ebsd/clean"]


def test_ebsd_section_of_a_sound_map_has_no_warning(tmp_path):
    phase = np.ones((20, 40), int)
    phase[0, :4] = -1  # 0.5 % unindexed
    spec = _ebsd_specimen(tmp_path, phase, cleanup=[{"step": "ci_correlation", "n_changed": 8, "n_measured": 800}])
    (section,) = [s for s in report_sections(spec) if s.key == "ebsd"]
    (row,) = section.tables()[0].to_dict("records")
    assert row["indexed_pct"] == 99.5 and row["invented_pct"] == 1.0 and row["phases"] == "ferrite 100.0 %"
    assert not [b for b in section.blocks if b.kind == "p"]
    assert [b.text for b in section.blocks if b.kind == "figure"] == ["IPF map ebsd/clean"]  # one phase: no phase map


@pytest.mark.shared_data
def test_ebsd_section_of_a_mostly_unindexed_real_map_says_so(tmp_path, shared_file):
    # MTEX-tools' 60 %-cold-rolled MEA: a third of its points index.
    path = tmp_path / "mea.h5"
    result = runner.invoke(app, ["ebsd", str(shared_file("ebsd_ctf/mtexTools_MEA_60CR_1C.ctf")), "--specimen", str(path)])
    assert result.exit_code == 0, result.output
    (section,) = [s for s in report_sections(Specimen.open(path)) if s.key == "ebsd"]
    rows = section.tables()[0].set_index("map")
    assert list(rows.index) == ["ebsd/map", "ebsd/clean"]  # as read, then cleaned
    assert rows.loc["ebsd/map", "indexed_pct"] == pytest.approx(32.93, abs=0.01)
    assert rows.loc["ebsd/map", "points"] == "375 x 500" and rows.loc["ebsd/map", "step_um"] == pytest.approx(0.96)
    said = [b.text for b in section.blocks if b.kind == "p"]
    assert said[0].startswith("ebsd/map — NOT RELIABLE: only 32.9 % of its points are indexed (below 90 %)")


@pytest.mark.shared_data
def test_ebsd_section_of_a_real_map_its_cleanup_interpolated_says_so(tmp_path, shared_file):
    # MTEX's serial section S00: 75.6 % indexed as read; the default cleanup fills the rest
    # (27 % of the measured points), so the cleaned map is 100 % indexed but interpolated.
    path = tmp_path / "s00.h5"
    result = runner.invoke(app, ["ebsd", str(shared_file("ebsd_ang/mtex_3dData_S00.ANG")), "--specimen", str(path)])
    assert result.exit_code == 0, result.output
    assert "75.6% indexed as read, 100.0% after cleaning (27.1% of the measured points" in result.output
    (section,) = [s for s in report_sections(Specimen.open(path)) if s.key == "ebsd"]
    rows = section.tables()[0].set_index("map")
    assert rows.loc["ebsd/clean", "indexed_pct"] == 100.0 and rows.loc["ebsd/clean", "invented_pct"] == pytest.approx(27.07, abs=0.01)
    assert rows.loc["ebsd/map", "indexed_pct"] == pytest.approx(75.57, abs=0.01)
    # the cleaned node's own verdict fails: what is measured on it rests on a failed node
    from metallo._step import failed_upstream, quality_checks

    checks = quality_checks(Specimen.open(path))
    assert checks["ebsd/clean"]["passed"] is False and "ebsd/map" not in checks
    assert checks["ebsd/clean"]["reasons"][0].startswith("cleanup gave 27 % of the measured points a neighbour's orientation")
    assert list(failed_upstream(Specimen.open(path), "ebsd/clean/derived")) == ["ebsd/clean"]
    said = [b.text for b in section.blocks if b.kind == "p"]
    assert said == [
        "ebsd/map — NOT RELIABLE: only 75.6 % of its points are indexed (below 90 %): what indexes is no sample of "
        "the section, and a phase that indexes worse is under-counted",
        "ebsd/clean — NOT RELIABLE: cleanup gave 27 % of its measured points a neighbour's orientation (over 20 %): "
        "grain sizes, phase fractions and KAM of an interpolated map are not measurements"]


def test_report_of_a_one_point_ebsd_map_is_written(tmp_path):
    # EMsoft's pattern simulation reads as a 1 x 1 "map": its x coordinate cannot give the pixel
    # size, and the report stopped with "pixel size unknown" though the map states its step.
    from metallo.ebsd import derive, ebsd_dataset

    ebsd = ebsd_dataset(np.full((1, 1, 3), 0.5), np.ones((1, 1), np.int16), step_um=0.25,
                        phases=[{"id": 1, "name": "Ni", "symmetry": "m-3m"}])
    spec = Specimen.create(tmp_path / "one.h5", specimen_id="one")
    spec.add(names.EBSD_CLEAN, ebsd, step=names.STEP_CLEAN)
    spec.add(names.derived(names.EBSD_CLEAN), derive(ebsd), step=names.STEP_DERIVE, inputs=[names.EBSD_CLEAN])
    html = write_report(spec, tmp_path / "one.html").read_text(encoding="utf-8")
    assert "EBSD maps" in html and "1 x 1" in html
