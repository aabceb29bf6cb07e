"""Grain-boundary misorientation angles and their distribution beside the random (Mackenzie) one."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import metallo as mt
from metallo import names
from metallo.cli import app
from metallo.ebsd import (
    axis_angle_to_quat,
    boundary_misorientations,
    ebsd_dataset,
    grains,
    misorientation_distribution,
    misorientation_summary,
    quat_to_euler,
    random_misorientation_angles,
    random_quaternions,
)
from metallo.errors import ConfigError
from metallo.report import quantity_lines, report_sections
from metallo.specimen import Specimen

FERRITE = {"id": 1, "name": "ferrite", "symmetry": "m-3m"}


def _map(q: np.ndarray, phases=(FERRITE,), step=0.5) -> object:
    euler = np.mod(quat_to_euler(q.reshape(-1, 4)), [2 * np.pi, np.pi + 1e-9, 2 * np.pi]).reshape(q.shape[:2] + (3,))
    return ebsd_dataset(euler, np.ones(q.shape[:2], np.int16), step_um=step, phases=list(phases))


def test_random_reference_is_mackenzies_distribution_for_cubic_and_ends_at_each_symmetrys_largest_angle():
    cubic = random_misorientation_angles("m-3m")
    # Mackenzie (1958): mean 40.74 deg, largest disorientation 62.80 deg, mode near 45 deg.
    assert cubic.mean() == pytest.approx(40.74, abs=0.1)
    assert 62.3 < cubic.max() <= 62.81
    counts, edges = np.histogram(cubic, np.arange(0, 65, 2.5))
    assert 42.5 <= edges[counts.argmax()] <= 45.0
    # Hexagonal 6/mmm: the largest disorientation is 93.84 deg.
    assert 93.0 < random_misorientation_angles("6/mmm").max() <= 93.85
    assert random_misorientation_angles("m-3m") is cubic  # computed once


def test_a_bicrystal_gives_its_one_angle_on_every_segment():
    rows, cols = 20, 30
    q = np.tile([1.0, 0.0, 0.0, 0.0], (rows, cols, 1))
    q[:, 15:] = axis_angle_to_quat(np.array([0.0, 0.0, 1.0]), np.radians(30.0))  # 30 deg about [001]
    ebsd = _map(q)
    g = grains(ebsd, tolerance_deg=5.0)
    segments = boundary_misorientations(ebsd, g)
    assert len(segments) == rows  # one vertical boundary, one segment per row
    np.testing.assert_allclose(segments["angle_deg"], 30.0, atol=1e-6)
    table = misorientation_distribution(ebsd, g)
    (row,) = table[table["n_segments"] > 0].to_dict("records")
    assert (row["bin_low_deg"], row["bin_high_deg"], row["n_segments"], row["share"]) == (30.0, 32.5, rows, 1.0)
    summary = misorientation_summary(table)["ferrite"]
    assert summary["mean_deg"] == pytest.approx(30.0) and summary["hagb_share"] == 1.0
    # 20 segments of one boundary: one grain pair, no statistic, and the summary says so
    assert summary["n_boundaries"] == 1 and summary["note"].startswith("only 1 grain boundaries (grain pairs)")
    assert summary["random_mean_deg"] == pytest.approx(40.74, abs=0.1)
    # 45 deg about [001] and its symmetry equivalent 135 deg read the same disorientation.
    q[:, 15:] = axis_angle_to_quat(np.array([0.0, 0.0, 1.0]), np.radians(135.0))
    ebsd = _map(q)
    np.testing.assert_allclose(boundary_misorientations(ebsd, grains(ebsd))["angle_deg"], 45.0, atol=1e-6)
    with pytest.raises(ConfigError, match="bin_deg"):
        misorientation_distribution(ebsd, grains(ebsd), bin_deg=0)


def test_grains_of_random_orientation_follow_the_random_distribution():
    # 30 x 30 square grains of 8 x 8 points, each a random orientation.
    n, size = 30, 8
    q_grain = random_quaternions(n * n, rng=3).reshape(n, n, 4)
    q = np.repeat(np.repeat(q_grain, size, axis=0), size, axis=1)
    ebsd = _map(q)
    table = misorientation_distribution(ebsd, np.repeat(np.repeat(np.arange(n * n).reshape(n, n), size, 0), size, 1))
    summary = misorientation_summary(table)["ferrite"]
    # 2 x 30 x 29 = 1,740 grain pairs: the mean of a sample of Mackenzie's distribution (sd ~12 deg).
    assert summary["n_segments"] == 2 * n * (n - 1) * size
    assert summary["n_boundaries"] == 2 * n * (n - 1) and summary["note"] == ""
    assert summary["mean_deg"] == pytest.approx(40.74, abs=1.5)
    # the per-bin shares track the random ones (total variation distance)
    assert 0.5 * np.abs(table["share"] - table["random_share"]).sum() < 0.1


@pytest.mark.shared_data
def test_magnesium_twins_and_austenite_annealing_twins_make_their_peaks(shared_file):
    # MTEX's twinning example: {10-12} twins at 86.3 deg hold about half of the Mg-Mg boundaries.
    mg = mt.ebsd.clean(mt.io.read_ebsd(shared_file("ebsd_ctf/mtex_twins_Mg.ctf")))
    table = misorientation_distribution(mg, grains(mg, tolerance_deg=5.0))
    near = table[(table["bin_low_deg"] >= 82.5) & (table["bin_high_deg"] <= 90.0)]
    assert near["share"].sum() > 0.5 and near["random_share"].sum() < 0.15
    assert misorientation_summary(table)["Magnesium"]["n_segments"] == 3199  # the twin table's count
    # Duplex steel: the austenite's annealing twins (Sigma3, 60 deg) hold most of its boundaries.
    sdss = mt.ebsd.clean(mt.io.read_ebsd(shared_file("ebsd_ang/sdss_ferrite_austenite.ang")))
    table = misorientation_distribution(sdss, grains(sdss, tolerance_deg=5.0))
    austenite = table[table["phase"] == "austenite/austenite"].set_index("bin_low_deg")
    assert austenite.loc[57.5, "share"] > 0.6 and austenite.loc[57.5, "random_share"] < 0.05
    ferrite = misorientation_summary(table)["ferrite/ferrite"]
    assert abs(ferrite["mean_deg"] - ferrite["random_mean_deg"]) < 5.0  # no twin peak in the ferrite
    # ... but its 134 segments lie on 28 grain boundaries: the summary says it is no statistic
    assert ferrite["n_boundaries"] == 28 and ferrite["note"].startswith("only 28 grain boundaries")
    assert misorientation_summary(table)["austenite/austenite"]["note"] == ""  # 98 grain pairs


@pytest.mark.shared_data
def test_quantify_stores_the_distribution_and_the_cli_report_and_lines_show_it(tmp_path, shared_file):
    path = tmp_path / "mg.h5"
    result = CliRunner().invoke(app, ["ebsd", str(shared_file("ebsd_ctf/mtex_twins_Mg.ctf")), "--specimen", str(path)])
    assert result.exit_code == 0, result.output
    assert "Magnesium grain-boundary misorientation (3199 segments): mean 65.8 deg (random 60.1)" in result.output
    result = CliRunner().invoke(app, ["quantify", str(path), "--what", "grains", "--out", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    spec = Specimen.open(path)
    node = names.quantity(names.EBSD_CLEAN, names.MISORIENTATIONS)
    assert spec.table(node)["n_segments"].sum() == 3199
    (line,) = quantity_lines(spec, node)
    assert line.startswith("Magnesium grain-boundary misorientation (3199 segments): mean 65.8 deg")
    assert line in result.output
    (section,) = [s for s in report_sections(spec) if s.key == f"grains:{names.EBSD_CLEAN}"]
    summary = [t for t in section.tables() if "hagb_share" in t]
    assert len(summary) == 1 and summary[0].loc[0, "n_segments"] == 3199
    assert any(b.kind == "figure" and b.text.startswith("misorientation angles") for b in section.blocks)
