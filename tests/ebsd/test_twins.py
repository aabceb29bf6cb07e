"""Twin relations: hcp twin angles from c/a, twin deviation, boundary codes, twin shares, merging."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metallo.ebsd import (
    axis_angle_to_quat,
    boundaries,
    ebsd_dataset,
    grains,
    merge_twins,
    quat_multiply,
    quat_to_euler,
    random_quaternions,
    symmetry_operators,
    twin_boundaries,
    twin_deviation,
    twin_systems,
)

MG = {"id": 1, "name": "Magnesium", "symmetry": "6/mmm", "lattice": [3.2089, 3.2089, 5.2101, 90, 90, 120]}


def _by_name(phase):
    return {s.name: s for s in twin_systems(phase)}


def test_hcp_twin_angles_follow_c_over_a():
    # Zirconium (c/a 1.593): the tabulated 85.2 deg {10-12}, 64.2 deg {11-22}, 34.9 deg {11-21}.
    zr = _by_name({"symmetry": "6/mmm", "lattice": [3.232, 3.232, 5.147, 90, 90, 120]})
    assert zr["{10-12} extension"].reduced_angle_deg == pytest.approx(85.2, abs=0.1)
    assert zr["{11-22} contraction"].reduced_angle_deg == pytest.approx(64.2, abs=0.1)
    assert zr["{11-21} extension"].reduced_angle_deg == pytest.approx(34.9, abs=0.1)
    # Magnesium (c/a 1.624): 86.3 deg about <11-20> (MTEX's twinning tutorial on this very phase).
    mg = _by_name(MG)["{10-12} extension"]
    assert mg.reduced_angle_deg == pytest.approx(86.3, abs=0.05) and mg.axis == (1.0, 0.0, 0.0)
    # Zinc (c/a 1.856 > sqrt 3): {10-12} twinning contracts c; 2 atan(1.856 / sqrt 3) = 94.0 -> 86.0 deg.
    zn = twin_systems({"symmetry": "6/mmm", "lattice": [2.665, 2.665, 4.947, 90, 90, 120]})[0]
    assert zn.name == "{10-12} contraction" and zn.reduced_angle_deg == pytest.approx(86.0, abs=0.1)
    # No lattice constants, no hcp twins (the angles would be guesses); cubic: Sigma3 only.
    assert twin_systems({"symmetry": "6/mmm"}) == []
    assert [s.name for s in twin_systems({"symmetry": "m-3m"})] == ["Sigma3"]
    assert twin_systems({"symmetry": "mmm", "lattice": [1, 2, 3, 90, 90, 90]}) == []


def test_twin_deviation_is_zero_for_the_exact_twin_under_any_symmetry_equivalent():
    system = _by_name(MG)["{10-12} extension"]
    twin = axis_angle_to_quat(np.array([1.0, 0.0, 0.0]), np.radians(system.angle_deg))
    q1 = random_quaternions(50, rng=1)
    q2 = quat_multiply(twin, q1)  # misorientation q2 * conj(q1) = the twin
    ops = symmetry_operators("6/mmm")
    q2_sym = quat_multiply(ops[np.arange(50) % len(ops)], q2)  # the same crystals, other settings
    q1_sym = quat_multiply(ops[(np.arange(50) * 5) % len(ops)], q1)
    np.testing.assert_allclose(twin_deviation(q1, q2, system), 0.0, atol=1e-5)
    np.testing.assert_allclose(twin_deviation(q1_sym, q2_sym, system), 0.0, atol=1e-5)
    np.testing.assert_allclose(twin_deviation(q2, q1, system), 0.0, atol=1e-5)  # either crystal first
    # 2 deg further about the same axis: 2 deg off.
    off = quat_multiply(axis_angle_to_quat(np.array([1.0, 0.0, 0.0]), np.radians(2.0)), q2)
    np.testing.assert_allclose(twin_deviation(q1, off, system), 2.0, atol=1e-4)
    # The same angle about <10-10> (y) is no {10-12} twin.
    wrong = quat_multiply(axis_angle_to_quat(np.array([0.0, 1.0, 0.0]), np.radians(system.angle_deg)), q1)
    assert (twin_deviation(q1, wrong, system) > 10).all()


def _twinned_map():
    """A 60 x 60 magnesium map: one grain with a 10-point {10-12} twin band across it."""
    system = _by_name(MG)["{10-12} extension"]
    parent = random_quaternions(1, rng=7)
    twin = quat_multiply(axis_angle_to_quat(np.array([1.0, 0.0, 0.0]), np.radians(system.angle_deg)), parent)
    q = np.repeat(parent, 3600, axis=0).reshape(60, 60, 4)
    q[25:35] = twin[0]
    return ebsd_dataset(quat_to_euler(q), np.ones((60, 60), np.int16), step_um=0.5, phases=[MG])


def test_a_twin_band_is_marked_counted_and_merged():
    ebsd = _twinned_map()
    g = grains(ebsd)
    assert len(g) == 3  # parent above, twin band, parent below
    codes = boundaries(ebsd, g).values
    # Each pair's code goes to its upper point: the row above the band and the band's last row.
    assert (codes == 4).sum() == 120 and (codes[24] == 4).all() and (codes[34] == 4).all()
    table = twin_boundaries(ebsd, g).set_index("twin")
    row = table.loc["{10-12} extension"]
    assert row["n_segments"] == 120 and row["n_boundary_segments"] == 120 and row["share"] == 1.0
    assert row["length_um"] == pytest.approx(120 * 0.5)
    assert row["area_share"] == pytest.approx(10 / 60)  # the band: 10 of the 60 rows
    assert table.loc["{11-22} contraction", "n_segments"] == 0
    # Two grain boundaries (parent above / band, band / parent below): a share, but no statistic.
    assert row["n_grain_pairs"] == 2 and not row["reliable"] and "only 2 grain boundaries" in row["note"]
    merged = merge_twins(ebsd, g)
    assert json.loads(merged.attrs["parameters"])["n_grains_after"] == 1
    assert np.unique(merged.values).tolist() == [0]


def test_a_random_boundary_is_no_hcp_twin():
    ebsd = _twinned_map()
    q = random_quaternions(2, rng=3)
    euler = np.asarray(ebsd["euler"].values).copy()
    euler[:, :30] = quat_to_euler(q[:1])[0]
    euler[:, 30:] = quat_to_euler(q[1:])[0]
    plain = ebsd_dataset(euler, np.ones((60, 60), np.int16), step_um=0.5, phases=[MG])
    g = grains(plain)
    assert (boundaries(plain, g).values != 4).all()
    assert json.loads(merge_twins(plain, g).attrs["parameters"])["n_grains_after"] == 2


@pytest.mark.shared_data
def test_magnesium_twin_share_agrees_with_mtex(shared_file):
    """MTEX's twinning tutorial on this map (``mtexdata twins``, grains at 5 deg): 1,649 of its
    3,164 Mg-Mg boundary segments lie within 5 deg of the {10-12} twin (52.1 %). metallo's
    grains at 5 deg give 3,199 segments, 52.3 % of them {10-12} twins."""
    import metallo as mt

    ebsd = mt.ebsd.clean(mt.io.read_ebsd(shared_file("ebsd_ctf/mtex_twins_Mg.ctf")))
    g = mt.ebsd.grains(ebsd, tolerance_deg=5.0)
    table = twin_boundaries(ebsd, g).set_index("twin")
    row = table.loc["{10-12} extension"]
    assert row["n_boundary_segments"] == pytest.approx(3164, rel=0.03)
    assert row["share"] == pytest.approx(1649 / 3164, abs=0.015)
    # The other three relations are (nearly) absent, as the tutorial's misorientation histogram shows.
    assert table.drop(index="{10-12} extension")["share"].max() < 0.01
    # Random grains would put 0.3 % of their boundaries there; the share rests on enough boundaries.
    assert row["random_share"] < 0.005 and row["reliable"] and row["n_grain_pairs"] >= 50
    # Merged along the twins, the 96 grains become the parent grains.
    params = json.loads(mt.ebsd.merge_twins(ebsd, g).attrs["parameters"])
    assert params["n_grains_before"] == len(g) and params["n_grains_after"] < 0.5 * len(g)


def test_quantify_writes_the_twin_table_and_prints_it(tmp_path):
    from typer.testing import CliRunner

    from metallo import names
    from metallo.cli import app
    from metallo.specimen import Specimen

    spec = Specimen.create(tmp_path / "mg.h5", specimen_id="mg", material="AZ31")
    spec.add(names.ebsd("map"), _twinned_map(), step="test")
    spec.save()
    result = CliRunner().invoke(app, ["quantify", str(tmp_path / "mg.h5"), "--what", "grains", "--out", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    assert ("Magnesium {10-12} extension (86.3 deg <11-20>): 100.0 % of 120 grain-boundary segments (random 0.3 %); "
            "twins 16.7 % of the area (NOT RELIABLE: only 2 grain boundaries (grain pairs): fewer than 50") in result.output
    table = Specimen.open(tmp_path / "mg.h5").table(names.quantity(names.ebsd("map"), names.TWINS))
    assert table.set_index("twin").loc["{10-12} extension", "n_segments"] == 120
    # The parent grain with its twin band is one grain when twins are merged.
    merged = CliRunner().invoke(app, ["quantify", str(tmp_path / "mg.h5"), "--what", "grains", "--twins", "merge",
                                      "--overwrite", "--out", str(tmp_path / "q")])
    assert merged.exit_code == 0, merged.output
    sizes = Specimen.open(tmp_path / "mg.h5").table(names.quantity(names.ebsd("map"), names.GRAIN_SIZE))
    assert (sizes.set_index("method").loc["planimetric", "n_grains"]) == 1


def test_metallo_ebsd_says_why_a_hexagonal_map_without_lattice_gets_no_twins(tmp_path):
    """MTEX's column-text titanium export states no lattice constants: no twin relation can be
    placed, and the command says so instead of printing nothing."""
    from typer.testing import CliRunner

    from metallo.cli import app

    rows = ["phi1 Phi phi2 phase x y"]
    for y in range(12):
        for x in range(12):
            rows.append(f"{10 if x < 6 else 70} 30 0 0 {x} {y}")
    path = tmp_path / "ti.txt"
    path.write_text("\n".join(rows) + "\n")
    result = CliRunner().invoke(app, ["ebsd", str(path), "--specimen", str(tmp_path / "ti.h5"), "--symmetry", "6/mmm"])
    assert result.exit_code == 0, result.output
    assert "twin relations (share of each phase's grain-boundary segments): n/a for" in result.output
    assert "no lattice constants" in result.output
    # --lattice gives them: the two halves (60 deg apart in phi1) are no hcp twin, and it is said.
    given = CliRunner().invoke(app, ["ebsd", str(path), "--specimen", str(tmp_path / "ti2.h5"), "--symmetry", "6/mmm",
                                     "--lattice", "2.95,2.95,4.68"])
    assert given.exit_code == 0, given.output
    assert "none within the relations' tolerance ({10-12} extension" in given.output
    from metallo.specimen import Specimen

    phases = json.loads(Specimen.open(tmp_path / "ti2.h5")["ebsd/map"].attrs["phases"])
    assert phases[0]["lattice"] == [2.95, 2.95, 4.68, 90.0, 90.0, 120.0]
    bad = CliRunner().invoke(app, ["ebsd", str(path), "--specimen", str(tmp_path / "ti3.h5"), "--symmetry", "6/mmm",
                                   "--lattice", "2.95,4.68"])
    assert bad.exit_code == 1 and "lattice must be 3 or 6 positive numbers" in bad.output


def test_twin_band_on_a_hexagonal_grid():
    """The same twin band on a hexagonal grid: each point has two neighbours across the band's
    edge, so about 2 x 60 segments per edge, each step / sqrt(3) long (the hexagonal cell's side)."""
    square = _twinned_map()
    q = np.asarray(square["euler"].values)
    hexmap = ebsd_dataset(q, np.ones((60, 60), np.int16), step_um=0.5, step_y_um=0.5 * np.sqrt(3) / 2,
                          grid="hexagonal", phases=[MG])
    g = grains(hexmap)
    assert len(g) == 3
    row = twin_boundaries(hexmap, g).set_index("twin").loc["{10-12} extension"]
    assert row["share"] == 1.0 and 2 * (2 * 60 - 1) <= row["n_segments"] <= 2 * 2 * 60
    assert row["length_um"] == pytest.approx(row["n_segments"] * 0.5 / np.sqrt(3))
    assert row["area_share"] == pytest.approx(10 / 60)


def test_the_random_sigma3_share_is_mackenzies():
    """Randomly oriented cubic grains: the share of their boundaries within Brandon's 8.66 deg of
    Sigma3 is the volume of the 96 symmetry-equivalent Sigma3 misorientations' balls of radius
    theta in SO(3), 96 (theta - sin theta) / pi = 1.76 %."""
    from metallo.ebsd._twins import SIGMA3, random_twin_shares

    theta = np.radians(15.0 / np.sqrt(3.0))
    expected = 96 * (theta - np.sin(theta)) / np.pi
    assert expected == pytest.approx(0.0176, abs=5e-5)
    # 200,000 random pairs: standard error 0.03 percentage points.
    assert random_twin_shares((SIGMA3,))[0] == pytest.approx(expected, abs=0.001)


@pytest.mark.shared_data
def test_a_duplex_maps_sigma3_shares_are_read_against_random_and_the_number_of_boundaries(shared_file):
    """Duplex stainless steel: the austenite's Sigma3 share (annealing twins) is 40x the random
    1.8 %; the ferrite's 8 % rests on 28 grain boundaries and is marked no statistic, and, bcc,
    is not called twinning."""
    import metallo as mt

    ebsd = mt.ebsd.clean(mt.io.read_ebsd(shared_file("ebsd_ang/sdss_ferrite_austenite.ang")))
    table = twin_boundaries(ebsd, mt.ebsd.grains(ebsd)).set_index("phase")
    austenite, ferrite = table.loc["austenite/austenite"], table.loc["ferrite/ferrite"]
    assert austenite["share"] > 30 * austenite["random_share"] and austenite["reliable"]
    assert austenite["n_grain_pairs"] >= 50
    assert ferrite["n_grain_pairs"] < 50 and not ferrite["reliable"]
    assert f"only {ferrite['n_grain_pairs']} grain boundaries" in ferrite["note"]
    # bcc iron has no annealing twins: the ferrite's Sigma3 boundaries are not called twins.
    assert austenite["boundary"] == "twin" and ferrite["boundary"] == "no twin (bcc iron)"
    from metallo.report import twin_area_text

    assert twin_area_text(austenite).startswith("twins ")
    assert "bcc iron has no annealing twins" in twin_area_text(ferrite) and "twins 8" not in twin_area_text(ferrite)
