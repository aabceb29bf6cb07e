"""``metallo ebsd`` and recipes open every EBSD format through the reader registry."""

from __future__ import annotations

import json

import pytest

FILES = [
    "ebsd_osc/pythonEBSD_copper_hex.osc",
    "ebsd_vendor_hdf5/ebsdlib_EdaxAngOnly_Ni.h5",
    "correlative_defdap_ni_ebsd_dic/testDataEBSD.crc",
]


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize("relative", FILES)
def test_cli_ebsd_reads_vendor_formats(shared_file, relative, tmp_path):
    from typer.testing import CliRunner

    from metallo import names
    from metallo.cli import app
    from metallo.specimen import Specimen

    spec_path = tmp_path / "s.metallo.h5"
    result = CliRunner().invoke(app, ["ebsd", str(shared_file(relative)), "--specimen", str(spec_path), "--no-clean"])
    assert result.exit_code == 0, result.output
    spec = Specimen.open(spec_path)
    ebsd = spec[names.EBSD_MAP]
    expected = {".osc": (231, 104), ".h5": (151, 186), ".crc": (243, 359)}[shared_file(relative).suffix]
    assert (ebsd.sizes["y"], ebsd.sizes["x"]) == expected
    assert ebsd.attrs["monoclinic_axis"] == "y"
    assert "grains:" in result.output


@pytest.mark.shared_data
@pytest.mark.slow
def test_recipe_reads_an_osc_map(shared_file, tmp_path):
    from metallo import names, pipeline
    from metallo.specimen import Specimen

    recipe = {"specimen": {"id": "Cu"}, "inputs": {"ebsd": {"path": str(shared_file(FILES[0]))}},
              "steps": {"clean_ebsd": {}}}
    result = pipeline.run(recipe, base_dir=tmp_path)
    ebsd = Specimen.open(result.specimen_path)[names.EBSD_MAP]
    assert ebsd.attrs["grid"] == "hexagonal" and json.loads(ebsd.attrs["header"])["format"] == "osc"


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize(("relative", "sigma3"), [("ebsd_ctf/mtex_twins_Mg.ctf", r"Sigma3 n/a \(no cubic m-3m phase\)"),
                                                  ("ebsd_vendor_hdf5/ebsdlib_EdaxAngOnly_Ni.h5", r"Sigma3 \d+\n")])
def test_cli_ebsd_says_sigma3_only_for_cubic_phases(shared_file, relative, sigma3, tmp_path):
    # Sigma3 twins are looked for in cubic m-3m phases only: hexagonal Mg's twins are no Sigma3,
    # and "Sigma3 0" would read as "no twins found".
    import re

    from typer.testing import CliRunner

    from metallo.cli import app

    result = CliRunner().invoke(app, ["ebsd", str(shared_file(relative)), "--specimen", str(tmp_path / "s.h5")])
    assert result.exit_code == 0, result.output
    assert re.search(sigma3, result.output), result.output


@pytest.mark.shared_data
@pytest.mark.slow
def test_cli_ebsd_mean_ecd_on_a_hexagonal_grid_is_the_grain_tables(shared_file, tmp_path):
    # A hexagonal-grid point covers step x (sqrt(3)/2 step), not step^2: the summary used to say
    # 4.51 µm on this map, 7.5 % above the grain table's 4.19 µm.
    import re

    from typer.testing import CliRunner

    import metallo as mt
    from metallo.cli import app
    from metallo.specimen import Specimen

    spec_path = tmp_path / "s.h5"
    result = CliRunner().invoke(app, ["ebsd", str(shared_file("ebsd_osc/pythonEBSD_copper_hex.ang")),
                                      "--specimen", str(spec_path)])
    assert result.exit_code == 0, result.output
    printed = float(re.search(r"mean ECD ([\d.]+) µm", result.output).group(1))
    clean = Specimen.open(spec_path)["ebsd/clean"]
    assert clean.attrs["grid"] == "hexagonal"
    table = mt.ebsd.grains(clean, tolerance_deg=5.0).table
    assert printed == pytest.approx(table["ecd_um"].mean(), abs=0.006)


@pytest.mark.shared_data
@pytest.mark.slow
def test_cli_ebsd_does_not_call_martensites_sigma3_boundaries_twins(shared_file, tmp_path):
    # BYU's M1700 lath martensite: 24 % of its boundary segments are 60 deg <111>, the block
    # boundaries of variants. It had read "twins: 14.2 % of the area" with advice to merge them.
    from typer.testing import CliRunner

    from metallo.cli import app

    result = CliRunner().invoke(app, ["ebsd", str(shared_file("ebsd_martensite_pag/byu_M1700_martensite_cropped_gf1.txt")),
                                      "--specimen", str(tmp_path / "m.h5")])
    assert result.exit_code == 0, result.output
    assert "Martensite Sigma3 24.2 % (random 1.8 %) (grains in that relation 14.2 % of the area; bcc iron has no " \
           "annealing twins" in result.output
    assert "twins merged" not in result.output and "(twins " not in result.output
    # The austenite of a duplex steel keeps its twins and the advice to merge them (ASTM E112).
    duplex = CliRunner().invoke(app, ["ebsd", str(shared_file("ebsd_ang/sdss_ferrite_austenite.ang")),
                                      "--specimen", str(tmp_path / "d.h5")])
    assert "austenite/austenite Sigma3 68.9 % (random 1.8 %) (twins 20.1 % of the area)" in duplex.output
    assert "grains with their Sigma3 twins merged: 84" in duplex.output
