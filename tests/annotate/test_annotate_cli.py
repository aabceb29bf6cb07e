"""`metallo annotate` on the synthetic demo specimen, through typer's CliRunner."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from annotate_helpers import iou
from typer.testing import CliRunner

from metallo.cli import app
from metallo.specimen import Specimen

runner = CliRunner()


@pytest.fixture
def demo(demo_specimen, tmp_path):
    path = tmp_path / "demo.h5"
    shutil.copy(demo_specimen, path)
    return path


@pytest.mark.slow
def test_annotate_onto_lom_registers_stores_and_exports(demo, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", str(demo), "--rules", "lath_bainite", "--micrograph", "lom",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    spec = Specimen.open(demo)
    nodes = spec.nodes()
    for node in ("annotations/lath_bainite", "annotations/lath_bainite_lom", "registration/lom"):
        assert node in nodes
    on_lom = spec["annotations/lath_bainite_lom"]["labels"].values
    truth = spec["annotations/truth_lom"]["labels"].values
    # The demo truth covers the whole LOM; the mask only the EBSD field (the rest is ignore).
    valid = on_lom != 255
    assert 0.3 < valid.mean() < 0.8
    for cls in (0, 1):
        assert iou(on_lom, truth, cls, valid) >= 0.90
    assert spec["registration/lom"].attrs["moving"] == "ebsd/synth"
    steps = [r["step"] for r in spec.provenance]
    assert "correlate.register" in steps
    assert steps.count("annotate.from_ebsd") == 1 and steps.count("annotate.to_micrograph") == 1
    for name in ("lath_bainite_ebsd.png", "lath_bainite_ebsd.tif", "lath_bainite_ebsd.json", "lath_bainite_lom.png",
                 "lath_bainite_lom_review.png", "lath_bainite_lom_review.csv", "tiles/classes.json"):
        assert (out / name).is_file(), name
    assert len(list((out / "tiles" / "labels").glob("*.png"))) >= 1
    # A second run reuses the stored registration; without --overwrite the node exists.
    again = runner.invoke(app, ["annotate", str(demo), "--micrograph", "lom", "--out", str(out)])
    assert again.exit_code == 1 and "already exists" in again.output


def test_yaml_rules_file_on_the_ebsd_grid(demo, tmp_path):
    rules = tmp_path / "strain.yaml"
    rules.write_text(
        "classes: [polygonal_ferrite, lath_bainite]\n"
        "default: polygonal_ferrite\n"
        "rules:\n  lath_bainite: {gos: {gt: otsu}}\n"
        "ignore: {min_ci: 0.1}\n"
    )
    result = runner.invoke(app, ["annotate", str(demo), "--rules", str(rules), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    stored = Specimen.open(demo)["annotations/strain"]
    thresholds = json.loads(stored.attrs["thresholds"])
    assert thresholds["gos"]["method"] == "otsu"
    assert set(np.unique(stored["labels"].values)) == {0, 1, 255}
    assert (tmp_path / "o" / "strain_ebsd_review.png").is_file()


def test_unknown_preset_is_one_line_with_valid_names(demo):
    result = runner.invoke(app, ["annotate", str(demo), "--rules", "bainite_magic"])
    assert result.exit_code == 1
    assert "lath_bainite" in result.output and "phase" in result.output
    assert "Traceback" not in result.output


def test_missing_micrograph_names_the_nodes(demo, tmp_path):
    result = runner.invoke(app, ["annotate", str(demo), "--micrograph", "bse", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "micrographs/lom" in result.output


def test_a_failed_registration_gives_no_training_tiles(demo, tmp_path):
    # The mask carried by a registration that failed its check is a misfit label: the command says
    # so and writes no training tiles from it (the review figure is still written, to look at).
    from metallo import names
    from metallo.correlate import Grid, Registration
    from metallo.ebsd import map_image

    spec = Specimen.open(demo)
    lom = spec[names.micrograph("lom")][names.IMAGE]
    ebsd_node = [n for n in spec.nodes() if n.startswith("ebsd/") and n.count("/") == 1][0]
    failed = Registration([], fixed_grid=Grid.of(lom), moving_grid=Grid.of(map_image(spec[ebsd_node])), method="identity",
                          quality={"failed": True, names.PASSED: False, "failure_reasons": ["made to fail here"]})
    ds = failed.to_dataset()
    ds.attrs.update(fixed=names.micrograph("lom"), moving=ebsd_node)
    spec.add(names.registration("lom"), ds, step=names.STEP_REGISTER, inputs=[names.micrograph("lom"), ebsd_node],
             overwrite=True)
    spec.save()
    out = tmp_path / "out"
    result = runner.invoke(app, ["annotate", str(demo), "--micrograph", "lom", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "warning: registration/lom failed its quality check (made to fail here)" in result.output
    assert "no training tiles: registration/lom failed its quality check (made to fail here)" in " ".join(result.output.split())
    assert not (out / "tiles").exists() and (out / "lath_bainite_lom_review.png").is_file()
