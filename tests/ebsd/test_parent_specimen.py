"""Parent reconstruction into a Specimen (the ``ebsd.parent`` step adapter) and through ``metallo parent``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from metallo import names
from metallo.cli import app
from metallo.ebsd import reconstruct_parent, substructure_sizes
from metallo.io import write_ang
from metallo.specimen import Specimen
from metallo.steps import run_step
from metallo.synth import make_martensite


def test_reconstruction_round_trips_through_the_specimen(tmp_path):
    m = make_martensite(0, shape=(100, 100), n_parents=5, unindexed=0.0)
    rec = reconstruct_parent(m.ebsd, "KS")
    spec = Specimen.create(tmp_path / "s.metallo.h5", specimen_id="s")
    spec.add(names.EBSD_MAP, m.ebsd, step=names.STEP_SYNTH)
    nodes = run_step(spec, names.STEP_PARENT, orientation_relationship="KS")
    node = names.parent(names.EBSD_MAP)
    assert nodes == [node, names.quantity(node, "parents"), names.quantity(node, "substructure")]
    nodes += run_step(spec, names.STEP_QUANTIFY, what=["grains"], labels=[])
    back = Specimen.open(spec.save())
    pm = back[node]
    # The adapter stores the same reconstruction as the library call.
    assert np.array_equal(pm[names.PARENT_GRAIN_ID].values, rec.parent_ids)
    assert np.array_equal(pm["variant"].values, rec.dataset["variant"].values)
    assert json.loads(pm.attrs["orientation_relationship"])["n_variants"] == 24
    assert json.loads(pm.attrs[names.QUALITY])[names.PASSED] is True
    parents = back.table(names.quantity(node, "parents"))
    assert len(parents) == len(rec.parents) and parents["n_pixels"].sum() == (rec.parent_ids >= 0).sum()
    size = back.table(names.quantity(node, names.GRAIN_SIZE))
    assert set(size["method"]) == {"planimetric", "intercept"}
    sub = substructure_sizes(rec)
    # Nesting: more variant regions than blocks, more blocks than packets, packets >= parents.
    assert sub.loc["variant", "n_regions"] >= sub.loc["block", "n_regions"] >= sub.loc["packet", "n_regions"] >= 5


def test_metallo_parent_names_the_child_phase_on_the_command_line(tmp_path):
    """The library's child_phase= on the command line: a phase by id or name; a phase the map
    does not hold is a one-line error that lists its phases."""
    m = make_martensite(2, shape=(60, 60), n_parents=2)
    ang = write_ang(m.ebsd, tmp_path / "mart.ang")
    runner = CliRunner()
    by_id = runner.invoke(app, ["parent", str(ang), "--specimen", str(tmp_path / "a.h5"), "--child-phase", "1"])
    assert by_id.exit_code == 0, by_id.output
    record = next(r for r in Specimen.open(tmp_path / "a.h5").provenance if r["step"] == names.STEP_PARENT)
    assert record["parameters"]["child_phase"] == 1
    wrong = runner.invoke(app, ["parent", str(ang), "--specimen", str(tmp_path / "b.h5"), "--child-phase", "Austenite"])
    assert wrong.exit_code == 1 and "no phase 'Austenite' for the child; phases: 1=" in wrong.output


def test_metallo_parent_command(tmp_path):
    m = make_martensite(2, shape=(90, 90), n_parents=4)
    ang = write_ang(m.ebsd, tmp_path / "mart.ang")
    result = CliRunner().invoke(app, ["parent", str(ang), "--specimen", str(tmp_path / "out.h5")])
    assert result.exit_code == 0, result.output
    assert "OR fit (child-child" in result.output and "parent grains: " in result.output
    assert "PAG size (planimetric)" in result.output
    # Four parents on the map are no E112 count: the size is given, marked as not reliable.
    assert "NOT RELIABLE" in result.output and "fewer than the 50 grains ASTM E112 counts" in result.output
    spec = Specimen.open(tmp_path / "out.h5")
    node = names.parent(names.EBSD_MAP)
    assert node in spec.nodes() and names.quantity(node, "substructure") in spec.nodes()
    fit = json.loads(spec[node].attrs["or_fit"])
    assert fit["n_high_angle_pairs"] > 0
    assert (f"explained within 5 deg: {fit['high_angle_explained_fraction']:.1%} of {fit['n_high_angle_pairs']}"
            in result.output)
    # The command on the specimen itself reuses its map.
    again = CliRunner().invoke(app, ["parent", str(tmp_path / "out.h5"), "--or", "KS", "--overwrite"])
    assert again.exit_code == 0, again.output
    bad = CliRunner().invoke(app, ["parent", str(ang), "--specimen", str(tmp_path / "out.h5"), "--or", "XYZ",
                                   "--overwrite"])
    assert bad.exit_code == 1 and "unknown orientation relationship" in bad.output


def test_recipe_step_parent(tmp_path):
    import yaml

    from metallo.pipeline import run

    m = make_martensite(3, shape=(90, 90), n_parents=4)
    write_ang(m.ebsd, tmp_path / "mart.ang")
    recipe = {"specimen": {"id": "M1"}, "output": {"dir": "out"}, "inputs": {"ebsd": {"path": "mart.ang"}},
              "steps": {"parent": {"orientation_relationship": "KS"}, "quantify": {"what": ["grains"]}}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    first = run(tmp_path / "r.yaml")
    assert [s["status"] for s in first.steps if s["step"] == "parent"] == ["ran"]
    spec = Specimen.open(first.specimen_path)
    node = names.parent(names.EBSD_MAP)
    assert node in spec.nodes() and names.quantity(node, names.GRAIN_SIZE) in spec.nodes()
    # The same reconstruction as the library call on the map read back from the .ang.
    rec = reconstruct_parent(spec[names.EBSD_MAP], "KS")
    assert np.array_equal(spec[node][names.PARENT_GRAIN_ID].values, rec.parent_ids)
    again = run(tmp_path / "r.yaml")
    assert [s["status"] for s in again.steps if s["step"] == "parent"] == ["skipped"]
    html = first.report_path.read_text()
    assert f"Parent austenite — {names.EBSD_MAP}" in html and "Prior-austenite grain size" in html
    assert f'alt="parent grains {node}"' in html
    # A handful of parents: the report says the PAG size is no statistic.
    assert "Prior-austenite grain size (ASTM E112) — NOT RELIABLE:" in html and "edge grains: fewer than the 50" in html


@pytest.mark.shared_data
def test_a_failed_step_is_said_beside_the_qc_in_analyze_and_batch(tmp_path, shared_file, monkeypatch):
    # The real duplex ferrite/austenite map through a recipe with a parent step: the
    # reconstruction fails its OR-support check, and the run says so (not only the report).
    import shutil

    import yaml

    from metallo.batch import run_batch

    shutil.copy(shared_file("ebsd_ang/sdss_ferrite_austenite.ang"), tmp_path / "duplex.ang")
    recipe = {"specimen": {"id": "D1"}, "output": {"dir": "out"},
              "inputs": {"ebsd": {"path": "duplex.ang"}}, "steps": {"parent": {}}}
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(recipe))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["analyze", str(tmp_path / "d.yaml"), "-q"])
    assert result.exit_code == 0, result.output
    node = names.parent(names.EBSD_MAP)
    assert f"FAILED check {node}: " in result.output and "does not look like a transformation product" in result.output
    batch = run_batch([tmp_path / "d.yaml"], workers=1, out_dir=tmp_path / "summary")
    assert batch.rows[0]["status"] == "complete" and batch.rows[0]["checks"] == f"fail: {node}"
