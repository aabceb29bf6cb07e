"""One specimen made twice, from a recipe and command by command: the same nodes, the same report."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from metallo import names, pipeline, synth
from metallo.cli import app
from metallo.io import write_ang, write_image
from metallo.report import report_sections
from metallo.specimen import Specimen

LIMITS = {"lath_bainite": [0.05, 0.95], "polygonal_ferrite": [0.9, 1.0]}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("equivalence")
    made = synth.make_specimen(5, ebsd_shape=(100, 100))
    pixel = float(made.lom.attrs["pixel_size_um"])
    lom = write_image(made.lom, tmp / "lom.tif", pixel_size_um=pixel)
    ang = write_ang(made.ebsd, tmp / "map.ang")
    return tmp, lom, ang, pixel


@pytest.fixture(scope="module")
def by_recipe(inputs):
    tmp, lom, ang, pixel = inputs
    result = pipeline.run({
        "specimen": {"id": "S1"},
        "output": {"dir": str(tmp / "recipe")},
        "inputs": {"micrographs": {"lom": {"path": str(lom), "pixel_size_um": pixel}}, "ebsd": {"path": str(ang)}},
        "steps": {
            "clean_ebsd": {"min_ci": 0.1, "tolerance_deg": 5.0},
            "ebsd_derive": {"tolerance_deg": 5.0, "kam_order": 3},
            "register": {"micrograph": "lom"},
            "annotate": {"rules": "lath_bainite", "micrograph": "lom"},
            "segment": {"micrograph": "lom", "method": "annotation"},
            "quantify": {"fields": [3, 3]},
        },
        "limits": LIMITS,
    })
    return result


@pytest.fixture(scope="module")
def by_commands(inputs):
    tmp, lom, ang, pixel = inputs
    folder = tmp / "commands"
    folder.mkdir()
    path = folder / "S1.h5"
    runner = CliRunner()
    for args in (
        ["micrograph", str(lom), "--specimen", str(path), "--id", "S1", "--name", "lom", "--pixel-size-um", str(pixel)],
        ["ebsd", str(ang), "--specimen", str(path), "--min-ci", "0.1", "--tolerance", "5", "--kam-order", "3"],
        ["annotate", str(path), "--rules", "lath_bainite", "--micrograph", "lom", "--out", str(folder / "ann"),
         "--no-tiles"],
        ["step", names.STEP_SEGMENT, str(path), "--set", "method=annotation", "--set", "micrograph=lom"],
        ["quantify", str(path), "--labels", names.segmentation("lom"), "--out", str(folder / "tables")],
        ["report", str(path), "--out", str(folder / "S1_report.html"),
         *[f"--limit={cls}={lo}:{hi}" for cls, (lo, hi) in LIMITS.items()]],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"metallo {' '.join(args)}\n{result.output}"
    return path, folder / "S1_report.html"


@pytest.mark.slow
def test_recipe_and_commands_write_the_same_nodes(by_recipe, by_commands):
    recipe_spec = Specimen.open(by_recipe.specimen_path)
    command_spec = Specimen.open(by_commands[0])
    assert recipe_spec.nodes() == command_spec.nodes()
    seg = names.segmentation("lom")
    for node in (names.EBSD_MAP, names.EBSD_CLEAN, names.derived(names.EBSD_CLEAN), names.registration("lom"),
                 names.annotation_on("lath_bainite", "lom"), seg, names.quantity(seg, names.PHASE_FRACTIONS),
                 names.quantity(names.EBSD_CLEAN, names.GRAIN_SIZE)):
        assert node in command_spec, node
    recipe_steps = sorted({r["step"] for r in recipe_spec.provenance})
    command_steps = sorted({r["step"] for r in command_spec.provenance})
    assert recipe_steps == command_steps


@pytest.mark.slow
def test_recipe_and_commands_give_the_same_report(by_recipe, by_commands):
    recipe = report_sections(Specimen.open(by_recipe.specimen_path), LIMITS)
    commands = report_sections(Specimen.open(by_commands[0]), LIMITS)
    assert [s.title for s in recipe] == [s.title for s in commands]
    titles = [s.title for s in recipe]
    assert "Phase fractions and QC — segmentations/lom" in titles and "Registration — lom" in titles
    assert "Grain size — ebsd/clean" in titles
    for a, b in zip(recipe, commands, strict=True):
        if a.key == "provenance":  # times differ; the steps are compared above
            continue
        assert len(a.tables()) == len(b.tables()), a.title
        for ta, tb in zip(a.tables(), b.tables(), strict=True):
            pd.testing.assert_frame_equal(ta, tb, check_exact=False, rtol=1e-9)
        assert [blk.rows for blk in a.blocks if blk.kind == "meta"] == [blk.rows for blk in b.blocks if blk.kind == "meta"]
    # Both HTML reports carry the same QC verdicts.
    recipe_html = by_recipe.report_path.read_text()
    command_html = by_commands[1].read_text()
    assert recipe_html.count(">PASS<") == command_html.count(">PASS<") >= 1
    assert recipe_html.count(">FAIL<") == command_html.count(">FAIL<") >= 1


@pytest.mark.slow
def test_command_report_loads_in_chromium(by_commands, load_page, non_blank_fraction):
    html = by_commands[1].read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert html.count("data:image/png;base64,") >= 4
    page = load_page(by_commands[1])
    assert page.errors == []
    assert non_blank_fraction(page.screenshot) > 0.05


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_ebsd_map_recipe_and_commands_agree(shared_file, tmp_path):
    """A real duplex-steel map (orix-data, 5,657 austenite and 6,043 ferrite points) both ways."""
    ang = shared_file("ebsd_ang/sdss_ferrite_austenite.ang")
    phase = names.annotation("phase")
    steps = {"clean_ebsd": {"min_ci": 0.1, "tolerance_deg": 5.0}, "ebsd_derive": {"tolerance_deg": 5.0},
             "annotate": {"rules": "phase"}, "quantify": {"labels": [phase], "what": ["phases", "grains"]}}
    result = pipeline.run({"specimen": {"id": "sdss"}, "output": {"dir": str(tmp_path / "recipe"), "report": False},
                           "inputs": {"ebsd": {"path": str(ang)}}, "steps": steps})
    path = tmp_path / "sdss.h5"
    runner = CliRunner()
    for args in (["ebsd", str(ang), "--specimen", str(path)],
                 ["annotate", str(path), "--rules", "phase", "--out", str(tmp_path / "ann")],
                 ["quantify", str(path), "--labels", phase, "--what", "phases,grains", "--out", str(tmp_path / "q")]):
        out = runner.invoke(app, args)
        assert out.exit_code == 0, f"metallo {' '.join(args)}\n{out.output}"
    recipe_spec, command_spec = Specimen.open(result.specimen_path), Specimen.open(path)
    assert recipe_spec.nodes() == command_spec.nodes()
    fractions = names.quantity(phase, names.PHASE_FRACTIONS)
    a, b = recipe_spec.table(fractions), command_spec.table(fractions)
    pd.testing.assert_frame_equal(a, b)
    ferrite = a.set_index("class").filter(like="ferrite", axis=0)["fraction"].item()
    assert ferrite == pytest.approx(6043 / 11700, abs=0.01)  # the file's phase column, less the ignore band
    grains = names.quantity(names.EBSD_CLEAN, names.GRAIN_SIZE)
    pd.testing.assert_frame_equal(recipe_spec.table(grains), command_spec.table(grains))
