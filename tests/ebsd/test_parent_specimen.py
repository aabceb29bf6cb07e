"""Parent reconstruction into a Specimen and through the ``metallo parent`` command."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from metallo.cli import app
from metallo.ebsd import add_parent_to_specimen, reconstruct_parent, substructure_sizes
from metallo.io import write_ang
from metallo.specimen import Specimen
from metallo.synth import make_martensite


def test_reconstruction_round_trips_through_the_specimen(tmp_path):
    m = make_martensite(0, shape=(100, 100), n_parents=5, unindexed=0.0)
    rec = reconstruct_parent(m.ebsd, "KS")
    spec = Specimen.create(tmp_path / "s.metallo.h5", specimen_id="s")
    spec.add("ebsd/map1", m.ebsd, step="synth")
    nodes = add_parent_to_specimen(spec, "map1", rec, ebsd=m.ebsd)
    assert nodes == ["ebsd/map1_parent", "quantities/map1_parents", "quantities/map1_pag_size",
                     "quantities/map1_substructure"]
    back = Specimen.open(spec.save())
    pm = back["ebsd/map1_parent"]
    assert np.array_equal(pm["parent_id"].values, rec.parent_ids)
    assert np.array_equal(pm["variant"].values, rec.dataset["variant"].values)
    assert json.loads(pm.attrs["orientation_relationship"])["n_variants"] == 24
    parents = back.table("quantities/map1_parents")
    assert len(parents) == len(rec.parents) and parents["n_pixels"].sum() == (rec.parent_ids >= 0).sum()
    size = back.table("quantities/map1_pag_size")
    assert set(size["method"]) == {"planimetric", "intercept"}
    sub = substructure_sizes(rec)
    # Nesting: more variant regions than blocks, more blocks than packets, packets >= parents.
    assert sub.loc["variant", "n_regions"] >= sub.loc["block", "n_regions"] >= sub.loc["packet", "n_regions"] >= 5


def test_metallo_parent_command(tmp_path):
    m = make_martensite(2, shape=(90, 90), n_parents=4)
    ang = write_ang(m.ebsd, tmp_path / "mart.ang")
    result = CliRunner().invoke(app, ["parent", str(ang), "--specimen", str(tmp_path / "out.h5")])
    assert result.exit_code == 0, result.output
    assert "OR fit (child-child" in result.output and "parent grains: " in result.output
    spec = Specimen.open(tmp_path / "out.h5")
    assert "ebsd/map1_parent" in spec.nodes() and "quantities/map1_substructure" in spec.nodes()
    bad = CliRunner().invoke(app, ["parent", str(ang), "--specimen", str(tmp_path / "out.h5"), "--or", "XYZ"])
    assert bad.exit_code == 1 and "unknown orientation relationship" in bad.output


def test_recipe_step_parent(tmp_path):
    import yaml

    from metallo.pipeline import run

    m = make_martensite(3, shape=(90, 90), n_parents=4)
    write_ang(m.ebsd, tmp_path / "mart.ang")
    recipe = {"specimen": {"id": "M1"}, "output": {"dir": "out"}, "inputs": {"ebsd": {"path": "mart.ang"}},
              "steps": {"parent": {"orientation_relationship": "KS"}}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    first = run(tmp_path / "r.yaml")
    assert [s["status"] for s in first.steps if s["step"] == "parent"] == ["ran"]
    spec = Specimen.open(first.specimen_path)
    assert "ebsd/map_parent" in spec.nodes() and "quantities/map_pag_size" in spec.nodes()
    again = run(tmp_path / "r.yaml")
    assert [s["status"] for s in again.steps if s["step"] == "parent"] == ["skipped"]


def test_report_shows_the_parent_section(tmp_path):
    from metallo.report import write_report

    m = make_martensite(0, shape=(80, 80), n_parents=4)
    rec = reconstruct_parent(m.ebsd, "KS")
    spec = Specimen.create(tmp_path / "s.metallo.h5", specimen_id="s")
    spec.add("ebsd/map1", m.ebsd, step="synth")
    add_parent_to_specimen(spec, "map1", rec, ebsd=m.ebsd)
    html = write_report(spec, tmp_path / "r.html").read_text()
    assert "Parent austenite — map1" in html and "Prior austenite grain size" in html
    assert 'alt="parent grains map1"' in html
