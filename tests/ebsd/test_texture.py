"""Normal-direction texture fibres: known orientations, a random texture, and a deep-drawing steel."""

from __future__ import annotations

import numpy as np
import pytest

from metallo import names
from metallo.ebsd import (
    axis_angle_to_quat,
    ebsd_dataset,
    fibre_shares,
    quat_multiply,
    quat_to_euler,
    random_quaternions,
)
from metallo.errors import ConfigError

FERRITE = {"id": 1, "name": "ferrite", "symmetry": "m-3m"}
MG = {"id": 1, "name": "Magnesium", "symmetry": "6/mmm", "lattice": [3.2089, 3.2089, 5.2101, 90, 90, 120]}


def _map(q: np.ndarray, phase: dict) -> object:
    euler = quat_to_euler(q.reshape(-1, 4)).reshape(q.shape[:-1] + (3,))
    return ebsd_dataset(euler, np.ones(q.shape[:-1], np.int16), step_um=1.0, phases=[phase])


def _normal_along(direction, n: int, tilt_deg: float = 0.0, rng: int = 0) -> np.ndarray:
    """n orientations whose sample normal (z) is the crystal ``direction`` tilted by ``tilt_deg``,
    each turned about the normal by a random angle (a fibre)."""
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(d, z)
    base = axis_angle_to_quat(axis / np.linalg.norm(axis), np.arccos(d @ z)) if np.linalg.norm(axis) > 1e-9 else np.array([1.0, 0, 0, 0])
    spin = axis_angle_to_quat(np.tile(z, (n, 1)), np.random.default_rng(rng).uniform(0, 2 * np.pi, n))
    tilt = axis_angle_to_quat(np.array([1.0, 0.0, 0.0]), np.radians(tilt_deg))
    # crystal -> sample rotation R = spin * tilt * base brings d onto z (tilted); the passive orientation is its inverse
    active = quat_multiply(spin, quat_multiply(np.tile(tilt, (n, 1)), np.tile(base, (n, 1))))
    return active * np.array([1.0, -1.0, -1.0, -1.0])


def test_the_random_share_is_the_analytic_cap_area_of_the_family():
    # Directions within t of one of N axes (both senses): N (1 - cos t) of the sphere (caps apart).
    q = random_quaternions(40_000, rng=2).reshape(200, 200, 4)
    table = fibre_shares(_map(q, FERRITE)).set_index("fibre")
    cap = 1 - np.cos(np.radians(15.0))
    for fibre, axes in (("<111> || ND (gamma fibre)", 4), ("<100> || ND (theta fibre)", 3), ("<110> || ND", 6)):
        assert table.loc[fibre, "random_share"] == pytest.approx(axes * cap, abs=0.002)
        # a map of random orientations measures the random share (40,000 points: sd 0.002)
        assert table.loc[fibre, "share"] == pytest.approx(axes * cap, abs=0.008)
        assert table.loc[fibre, "times_random"] == pytest.approx(1.0, abs=0.06)


def test_a_gamma_fibre_map_is_all_gamma_and_no_theta():
    # 12 x 12 grains of 5 x 5 points, each normal 10 deg from <111> and turned about it at random
    q = np.repeat(np.repeat(_normal_along([1, 1, 1], 144, tilt_deg=10.0).reshape(12, 12, 4), 5, 0), 5, 1)
    table = fibre_shares(_map(q, FERRITE)).set_index("fibre")
    assert table.loc["<111> || ND (gamma fibre)", "share"] == 1.0
    assert table.loc["<100> || ND (theta fibre)", "share"] == 0.0
    # (two neighbours may fall within 5 deg of each other and make one grain: 143 with this draw)
    assert (table["n_grains"] >= 140).all() and table["reliable"].all() and (table["note"] == "").all()
    # one crystal per point (a few neighbours within 5 deg make grains of two): the shares stand,
    # marked as of too few grains
    q = _normal_along([1, 1, 1], 400, tilt_deg=10.0).reshape(20, 20, 4)
    table = fibre_shares(_map(q, FERRITE)).set_index("fibre")
    assert table.loc["<111> || ND (gamma fibre)", "share"] == 1.0
    n = int(table["n_grains"].iloc[0])
    assert n < 100 and not table["reliable"].any()
    assert table["note"].iloc[0].startswith(f"the share of {n} grains (fewer than 100)")
    # tilted 20 deg off <111>: outside a 15 deg fibre, inside a 25 deg one
    q = _normal_along([-1, 1, 1], 400, tilt_deg=20.0).reshape(20, 20, 4)
    assert fibre_shares(_map(q, FERRITE)).set_index("fibre").loc["<111> || ND (gamma fibre)", "share"] == 0.0
    assert fibre_shares(_map(q, FERRITE), tolerance_deg=25.0).set_index("fibre").loc["<111> || ND (gamma fibre)", "share"] == 1.0
    with pytest.raises(ConfigError, match="tolerance_deg"):
        fibre_shares(_map(q, FERRITE), tolerance_deg=60.0)


def test_a_basal_hcp_map_and_half_a_map_unindexed():
    q = _normal_along([0, 0, 1], 400, tilt_deg=5.0).reshape(20, 20, 4)
    q[:, 10:] = _normal_along([1, 0, 0], 200).reshape(20, 10, 4)  # c in the plane: not basal
    ebsd = _map(q, MG)
    table = fibre_shares(ebsd)
    assert list(table["fibre"]) == ["<0001> || ND (basal fibre)"]
    assert table.loc[0, "share"] == 0.5 and table.loc[0, "random_share"] == pytest.approx(1 - np.cos(np.radians(15)), abs=0.002)
    # unindexed points are no area of the phase
    ebsd["phase"][:, 10:] = -1
    assert fibre_shares(ebsd).loc[0, "share"] == 1.0 and fibre_shares(ebsd).loc[0, "n_points"] == 200


@pytest.mark.shared_data
def test_fibres_of_the_real_duplex_map_and_the_cli_and_report(tmp_path, shared_file):
    from typer.testing import CliRunner

    from metallo.cli import app
    from metallo.report import report_sections
    from metallo.specimen import Specimen

    path = tmp_path / "sdss.h5"
    result = CliRunner().invoke(app, ["ebsd", str(shared_file("ebsd_ang/sdss_ferrite_austenite.ang")), "--specimen", str(path)])
    assert result.exit_code == 0, result.output
    # the duplex plate: its ferrite has a <100> || ND fibre (2.2 x random), almost no gamma (0.3 x)
    assert "ferrite/ferrite <111> 4.3 % (0.3 x random), <100> 22.8 % (2.2 x random)" in result.output
    result = CliRunner().invoke(app, ["quantify", str(path), "--what", "texture", "--out", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    spec = Specimen.open(path)
    fibres = spec.table(names.quantity(names.EBSD_CLEAN, names.TEXTURE))
    assert set(fibres["phase"]) == {"austenite/austenite", "ferrite/ferrite"} and len(fibres) == 6
    # 34 ferrite grains: a texture of so few crystals says so (in the table and the printed line)
    ferrite = fibres[fibres["phase"] == "ferrite/ferrite"]
    assert (ferrite["n_grains"] == 34).all() and not ferrite["reliable"].any()
    assert "(NOT RELIABLE: the share of 34 grains (fewer than 100)" in result.output
    (section,) = [s for s in report_sections(spec) if s.key == "ebsd"]
    assert any(t.equals(fibres) for t in section.tables())
