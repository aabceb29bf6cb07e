"""`metallo quantify` on a small specimen with known particles, a denuded band and laths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from metallo import names
from metallo._xarray import image_dataarray
from metallo.cli import app
from metallo.ebsd import ebsd_dataset, quat_to_euler, random_quaternions
from metallo.quantify import quantify_specimen
from metallo.specimen import Specimen

runner = CliRunner()


def _annotation(labels, classes, ps):
    return image_dataarray(labels.astype(np.uint8), pixel_size_um=ps, name="labels", attrs={
        "classes": json.dumps(classes), "ignore_index": 255, "rules": json.dumps({"source": "test"})})


@pytest.fixture
def specimen_path(tmp_path, disks):
    spec = Specimen.create(tmp_path / "S1.h5", specimen_id="S1", material="UHCS")
    centres = [(30 + 40 * (k // 4), 30 + 40 * (k % 4)) for k in range(12)]
    particles = (disks((140, 180), centres, [8.0] * 12) > 0).astype(np.uint8)
    spec.add(names.annotation("particles"), _annotation(particles, ["ferrite", "particle"], 0.05),
             step="test", inputs=[])
    band = np.full((120, 120), 1, np.uint8)  # spheroidite
    band[50:70] = 0  # network
    band[40:50] = 2  # denuded matrix, 10 px
    band[70:80] = 2
    spec.add(names.annotation("constituents"),
             _annotation(band, ["network", "spheroidite", "matrix", "widmanstatten"], 0.1), step="test")
    ids = (np.arange(90)[:, None] // 9).repeat(90, 1)
    quats = random_quaternions(int(ids.max()) + 1, rng=3)
    ebsd = ebsd_dataset(quat_to_euler(quats[ids]), np.zeros(ids.shape, np.int16), step_um=0.2,
                        phases=[{"id": 0, "name": "ferrite", "symmetry": "m-3m", "lattice": [2.87, 2.87, 2.87, 90, 90, 90]}])
    spec.add(names.ebsd("laths"), ebsd, step="test")
    spec.save()
    return tmp_path / "S1.h5"


@pytest.mark.slow
def test_cli_quantify_writes_tables_figures_and_nodes(specimen_path, tmp_path):
    out = tmp_path / "q"
    result = runner.invoke(app, ["quantify", str(specimen_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    spec = Specimen.open(specimen_path)
    particles_node = names.annotation("particles")
    band_node = names.annotation("constituents")
    ebsd_node = names.ebsd("laths")
    particles = spec.table(names.quantity(particles_node, names.PARTICLES))
    assert len(particles) == 12
    np.testing.assert_allclose(particles["ecd_um"], 16 * 0.05, rtol=0.02)
    widths = spec.table(names.quantity(band_node, names.DENUDED))["width_um"]
    assert abs(widths.median() - 1.0) <= 0.1  # 10 px of 0.1 µm
    # a map without a parent reconstruction gets no lath widths unless it is named
    assert names.quantity(ebsd_node, names.LATHS) not in spec
    named = runner.invoke(app, ["quantify", str(specimen_path), "--what", "laths", "--ebsd", ebsd_node,
                                "--out", str(out), "--overwrite"])
    assert named.exit_code == 0, named.output
    spec = Specimen.open(specimen_path)
    laths = spec.table(names.quantity(ebsd_node, names.LATHS))
    assert laths["width_um"].median() == pytest.approx(9 * 0.2, rel=0.05)
    grains = spec.table(names.quantity(ebsd_node, names.GRAIN_SIZE)).set_index("method")
    assert grains.loc["planimetric", "n_grains"] == 10
    fractions = spec.table(names.quantity(band_node, names.PHASE_FRACTIONS)).set_index("class")
    assert fractions.loc["matrix", "fraction"] == pytest.approx(20 / 120)
    # 3 x 3 equal fields: the E562 mean equals the whole-map fraction; the band spans every column of fields
    assert fractions.loc["matrix", "mean"] == pytest.approx(20 / 120)
    assert fractions.loc["matrix", "n_fields"] == 9
    steps = {p["step"] for p in spec.provenance}
    assert {names.quantify_step(w) for w in names.QUANTIFY_WHAT} <= steps
    record = next(p for p in spec.provenance if p["step"] == names.quantify_step("particles"))
    assert record["parameters"]["split_touching"] is True
    # The key figures are printed, not only row counts: 12 disks of 16 px (0.8 µm) ECD, 1 µm
    # denuded bands, 1.8 µm laths, and ten grains that are no E112 statistic.
    lines = result.output.splitlines()
    ecd = next(line for line in lines if line.strip().startswith("ECD: n 12,"))
    assert float(ecd.split("median ")[1].split(" µm")[0]) == pytest.approx(0.8, rel=0.02)
    width = next(line for line in lines if line.strip().startswith("width: n "))
    assert float(width.split("median ")[1].split(" µm")[0]) == pytest.approx(1.0, abs=0.1)
    lath = next(line for line in named.output.splitlines() if line.strip().startswith("apparent width: n "))
    assert float(lath.split("median ")[1].split(" µm")[0]) == pytest.approx(1.8, rel=0.05)
    g = next(line for line in lines if "grain size (planimetric): G = " in line)
    assert f"G = {grains.loc['planimetric', 'G']:.2f}" in g and f"1/N_A {grains.loc['planimetric', 'mean_area_um2']:.3g} µm²" in g
    assert "NOT RELIABLE" in g and "fewer than the 50 grains" in g
    particles_file = names.leaf(names.quantity(particles_node, names.PARTICLES))
    assert (out / f"{particles_file}.csv").is_file()
    assert (out / f"{particles_file}.png").is_file()
    assert (out / f"{names.leaf(names.quantity(band_node, names.DENUDED))}.png").is_file()


def test_cli_unknown_quantity_is_one_red_line(specimen_path):
    result = runner.invoke(app, ["quantify", str(specimen_path), "--what", "porosity"])
    assert result.exit_code == 1
    assert "unknown quantity" in result.output


def test_quantify_specimen_selected_labels(specimen_path):
    spec = Specimen.open(specimen_path)
    node = names.annotation("particles")
    tables = quantify_specimen(spec, what=["particles"], labels=[node], min_area_um2=0.1)
    assert set(tables) == {names.quantity(node, names.PARTICLES), names.quantity(node, names.PSD)}
    particles = tables[names.quantity(node, names.PARTICLES)]
    assert len(particles) == 12
    # The PSD counts each particle with its Miles-Lantuejoul weight (>= 1: the frame's bias undone).
    assert (particles["weight"] >= 1).all()
    assert tables[names.quantity(node, names.PSD)]["count"].sum() == pytest.approx(particles["weight"].sum())


def test_cli_quantify_says_what_it_could_not_measure(tmp_path):
    """Nothing measured had printed "tables in ...; specimen updated" over an empty folder."""
    Specimen.create(tmp_path / "M.h5", specimen_id="M").save()
    result = runner.invoke(app, ["quantify", str(tmp_path / "M.h5"), "--out", str(tmp_path / "q")])
    assert result.exit_code == 1
    assert "holds no label map and no EBSD map to measure" in result.output
    # A two-phase map without a particle class: particles asked by name are said to be missing, phases measured.
    spec = Specimen.open(tmp_path / "M.h5")
    lab = np.zeros((40, 40), np.uint8)
    lab[:, 20:] = 1
    spec.add(names.annotation("phases"), _annotation(lab, ["ferrite", "bainite"], 0.1), step="test")
    spec.save()
    result = runner.invoke(app, ["quantify", str(tmp_path / "M.h5"), "--what", "particles", "--out", str(tmp_path / "q")])
    assert result.exit_code == 1
    assert "nothing measured for --what particles: particles needs a label map with a class named particle" in result.output
    result = runner.invoke(app, ["quantify", str(tmp_path / "M.h5"), "--what", "phases,particles", "--out", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    assert "note: particles: nothing measured" in result.output and "phase_fractions" in result.output
    # The default asks for everything: one line names the quantities this map gave nothing to measure.
    result = runner.invoke(app, ["quantify", str(tmp_path / "M.h5"), "--out", str(tmp_path / "q"), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert ("note: nothing to measure for particles, grains, denuded, laths, texture in this specimen "
            "(--what particles says what each needs)") in result.output


def test_area_fractions_of_a_map_without_pixel_size_are_measured(tmp_path):
    """An uncalibrated micrograph's segmentation has fractions (no µm in them): the default run had
    refused them for want of a pixel size nothing it measured needed."""
    from metallo.errors import MetalloError

    spec = Specimen.create(tmp_path / "P.h5", specimen_id="P")
    lab = np.zeros((40, 40), np.uint8)
    lab[:, 30:] = 1
    bare = image_dataarray(lab, name="labels", attrs={"classes": json.dumps(["ferrite", "bainite"]), "ignore_index": 255,
                                                     "rules": json.dumps({"source": "test"})})
    spec.add(names.annotation("phases"), bare, step="test")
    tables = quantify_specimen(spec)  # every measurement asked, as the command's default
    fractions = tables[names.quantity(names.annotation("phases"), names.PHASE_FRACTIONS)].set_index("class")
    assert fractions.loc["bainite", "mean"] == pytest.approx(0.25)
    # A class measured in µm still needs it, and says so.
    spec.add(names.annotation("dots"), bare.assign_attrs(classes=json.dumps(["ferrite", "particle"])), step="test")
    with pytest.raises(MetalloError, match=r"annotations/dots: pixel size unknown"):
        quantify_specimen(spec, overwrite=True)


def test_fields_smaller_than_the_microstructure_are_said_and_too_many_fields_refused(tmp_path):
    """Two regions cut into 600 one-pixel fields gave 33 % +- 3.8 %: neighbouring fields of one
    region are no independent samples, which the E562 interval assumes."""
    from metallo.errors import ConfigError

    spec = Specimen.create(tmp_path / "F.h5", specimen_id="F")
    lab = np.zeros((20, 30), np.uint8)
    lab[:, 20:] = 1
    spec.add(names.annotation("two"), _annotation(lab, ["ferrite", "bainite"], 0.1), step="test")
    fine = ((np.indices((60, 60)) // 2).sum(0) % 2).astype(np.uint8)  # 2-px checks: every field mixed
    spec.add(names.annotation("fine"), _annotation(fine, ["ferrite", "bainite"], 0.1), step="test")
    with pytest.warns(UserWarning, match=r"annotations/two: 600 of 600 measurement fields hold one class alone") as said:
        quantify_specimen(spec, what=["phases"], fields=[20, 30])
    assert not [w for w in said if "annotations/fine" in str(w.message)]
    node = names.quantity(names.annotation("two"), names.PHASE_FRACTIONS)
    record = [r for r in spec.provenance if node in (r.get("outputs") or [])][-1]
    assert "no independent samples" in record["parameters"]["ci_note"]
    with pytest.raises(ConfigError, match=r"fields 25x40 ask for more fields than the labelled area has pixel rows and columns \(20 x 30\)"):
        quantify_specimen(spec, what=["phases"], fields=[25, 40], labels=[names.annotation("two")], overwrite=True)


def test_quantities_of_a_label_map_replaced_since_fail_their_check_until_measured_again(tmp_path):
    """A segmentation redone with --overwrite after quantify left the old fractions in the report
    as if they were the new map's (41.6 % against 34.7 %), passing QC."""
    from metallo._step import quality_checks, stale_nodes
    from metallo.report import qc_verdict

    spec = Specimen.create(tmp_path / "S.h5", specimen_id="S")
    lab = np.zeros((40, 40), np.uint8)
    lab[:, 30:] = 1
    node = names.annotation("phases")
    spec.add(node, _annotation(lab, ["ferrite", "bainite"], 0.1), step="test")
    quantify_specimen(spec, what=["phases"], fields=[2, 2])
    fractions = names.quantity(node, names.PHASE_FRACTIONS)
    assert stale_nodes(spec) == {} and qc_verdict(spec, {"bainite": [0.2, 0.3]})["qc_passed"] is True
    lab[:, 10:] = 1  # the map redone: 75 % bainite now
    spec.add(node, _annotation(lab, ["ferrite", "bainite"], 0.1), step="test", overwrite=True)
    assert stale_nodes(spec) == {fractions: [node], names.quantity(node, names.PHASE_FIELDS): [node]}
    check = quality_checks(spec)[fractions]
    assert check["passed"] is False and check["reasons"][0].startswith(f"made from an earlier {node}, replaced since")
    verdict = qc_verdict(spec, {"bainite": [0.2, 0.3]})
    assert verdict["qc_passed"] is False and fractions in verdict["qc_rests_on_failed"]
    quantify_specimen(spec, what=["phases"], fields=[2, 2], overwrite=True)
    assert stale_nodes(spec) == {} and fractions not in quality_checks(spec)
    assert spec.table(fractions).set_index("class").loc["bainite", "mean"] == pytest.approx(0.75)


def test_qc_limits_without_measured_fractions_fail_and_limits_in_percent_are_refused(tmp_path):
    """Limits set for a specimen that holds no phase fractions had given no verdict at all: the
    report said nothing of them and a recipe run counted as passed. Limits in percent ([30, 45])
    failed every class, for the wrong reason."""
    from metallo.errors import ConfigError
    from metallo.report import check_limits, qc_verdict, write_report

    spec = Specimen.create(tmp_path / "E.h5", specimen_id="E")
    spec.add(names.micrograph("lom"), image_dataarray(np.zeros((40, 40), np.uint8), pixel_size_um=0.1, name="image",
                                                      attrs={"modality": "LOM", "source": "test", "sha256": "0" * 64}),
             step="test")
    spec.save()
    verdict = qc_verdict(spec, {"bainite": [0.3, 0.45]})
    assert verdict["qc"] == {"bainite": {"status": "missing", "min": 0.3, "max": 0.45}} and verdict["qc_passed"] is False
    assert qc_verdict(spec, {})["qc_passed"] is None  # no limits: no QC
    html = write_report(spec, tmp_path / "E.html", limits={"bainite": [0.3, 0.45]}).read_text(encoding="utf-8")
    assert "QC limits are set for bainite, but the specimen holds no measured phase fractions" in html and "FAIL" in html
    with pytest.raises(ConfigError, match=r"\[30, 45\] looks like percent: give \[0\.3, 0\.45\]"):
        check_limits({"bainite": [30, 45]})
    with pytest.raises(ConfigError, match="0 <= min <= max <= 1"):
        write_report(spec, tmp_path / "E.html", limits={"bainite": [0.45, 0.3]})
    with pytest.raises(ConfigError, match=r"must be \[min, max\]"):
        qc_verdict(spec, {"bainite": 0.3})


def test_one_field_gives_no_interval_and_says_so(tmp_path):
    """--fields 1x1 printed "95 % CI nan-nan %", and QC called a pass of the mean "the interval
    crosses a limit" where there is no interval."""
    from metallo.report import qc_verdict

    Specimen.create(tmp_path / "O.h5", specimen_id="O").save()
    spec = Specimen.open(tmp_path / "O.h5")
    lab = np.zeros((40, 40), np.uint8)
    lab[:, 30:] = 1
    spec.add(names.annotation("phases"), _annotation(lab, ["ferrite", "bainite"], 0.1), step="test")
    spec.save()
    result = runner.invoke(app, ["quantify", str(tmp_path / "O.h5"), "--what", "phases", "--fields", "1x1",
                                 "--out", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    assert "bainite: 25.0 % (no 95 % CI: ASTM E562 needs two or more fields (--fields 3x3), 1 field)" in result.output
    qc = qc_verdict(Specimen.open(tmp_path / "O.h5"), {"bainite": [0.2, 0.3]})["qc"]["bainite"]
    assert qc["status"] == "pass" and qc["ci_inside"] is None


def test_a_misspelt_limit_class_names_the_classes_measured():
    import pandas as pd

    from metallo.report import qc_status
    from metallo.report._sections import _qc_frame

    table = pd.DataFrame({"class": ["polygonal_ferrite", "lath_bainite"], "mean": [0.6, 0.4],
                          "ci_low": [0.55, 0.35], "ci_high": [0.65, 0.45]})
    qc = qc_status(table, {"Lath_Bainite": [0.3, 0.5], "lath_bainite": [0.3, 0.5]})
    assert qc["Lath_Bainite"] == {"status": "missing", "min": 0.3, "max": 0.5,
                                  "measured_classes": ["polygonal_ferrite", "lath_bainite"]}
    assert qc["lath_bainite"]["status"] == "pass"
    note = _qc_frame(qc).set_index("class").loc["Lath_Bainite", "note"]
    assert note == "class not found in the label map (its classes: polygonal_ferrite, lath_bainite)"
