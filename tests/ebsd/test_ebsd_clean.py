"""Cleanup, IPF colours, hexagonal resampling, synth maps, specimen storage and the CLI."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from ebsd_helpers import CUBIC, map_from_quaternions

from metallo.ebsd import (
    axis_angle_to_quat,
    clean,
    derive,
    euler_to_quat,
    grains,
    ipf_colors,
    misorientation_angle,
    quat_multiply,
    random_quaternions,
    resample_to_square,
)
from metallo.errors import ConfigError
from metallo.synth import make_specimen


def _same_partition(ids: np.ndarray, truth: np.ndarray) -> bool:
    pairs = np.unique(np.stack([ids.ravel(), truth.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def test_clean_restores_known_grains(known_grains):
    ebsd, truth, oris = known_grains
    rng = np.random.default_rng(20)
    bad = rng.random(truth.shape) < 0.08
    q = euler_to_quat(ebsd["euler"].values)
    q[bad] = random_quaternions(int(bad.sum()), 21)
    ci = np.where(bad, 0.02, 0.9)
    phase = np.ones(truth.shape, dtype=np.int16)
    phase[5, 5] = -1
    noisy = map_from_quaternions(q, phase, ci=ci)
    assert not _same_partition(grains(noisy).ids.values, truth)
    cleaned = clean(noisy, min_ci=0.1, tolerance_deg=5.0)
    assert (cleaned["phase"].values >= 0).all()
    ids = grains(cleaned).ids.values
    assert ids.max() == 5 and ids.min() == 0
    # A bad point copies its best neighbour, which across a boundary is the other grain:
    # only points next to a boundary may change grain.
    mapped = np.array([np.bincount(truth[ids == k]).argmax() for k in range(6)])[ids]
    wrong = mapped != truth
    near_boundary = np.zeros_like(wrong)
    near_boundary[:, 1:] |= truth[:, 1:] != truth[:, :-1]
    near_boundary[:, :-1] |= truth[:, 1:] != truth[:, :-1]
    near_boundary[1:] |= truth[1:] != truth[:-1]
    near_boundary[:-1] |= truth[1:] != truth[:-1]
    assert not (wrong & ~near_boundary).any() and wrong.mean() < 0.02
    own = misorientation_angle(euler_to_quat(cleaned["euler"].values), oris[truth])
    assert own[~near_boundary].max() < 1.0
    record = json.loads(cleaned.attrs["cleanup"])
    assert [r["step"] for r in record] == ["ci_correlation", "ci_threshold", "grain_dilation"]
    assert record[0]["parameters"] == {"min_ci": 0.1} and record[0]["n_changed"] > 0.9 * bad.sum()


def test_ci_threshold_alone_marks_low_ci_unindexed(known_grains):
    ebsd, truth, _ = known_grains
    ci = np.full(truth.shape, 0.9)
    ci[3, 4] = 0.05
    ebsd["ci"] = (("y", "x"), ci.astype(np.float32))
    out = clean(ebsd, steps=("ci_threshold",))
    assert out["phase"].values[3, 4] == -1 and (out["phase"].values >= 0).sum() == truth.size - 1
    assert np.isnan(out["euler"].values[3, 4]).all()
    with pytest.raises(ConfigError, match="unknown cleanup steps"):
        clean(ebsd, steps=("median",))


def test_ipf_colors_cubic_and_hexagonal_corners():
    tilt_111 = np.arccos(1 / np.sqrt(3))
    euler = np.array([[[0.0, 0.0, 0.0], [0.0, np.pi / 4, 0.0], [0.0, tilt_111, np.pi / 4]]])
    cubic = map_from_quaternions(euler_to_quat(euler))
    rgb = ipf_colors(cubic)
    np.testing.assert_allclose(rgb[0], np.eye(3), atol=1e-9)  # [001] red, [011] green, [111] blue
    hexa = [{"id": 1, "name": "Ti", "symmetry": "6/mmm"}]
    # z || [0001]; z || a = [2-1-10] (Phi 90 deg, phi2 90 deg); z || [10-10] (phi2 60 deg more).
    euler_h = np.array([[[0.0, 0.0, 0.0], [0.0, np.pi / 2, np.pi / 2], [0.0, np.pi / 2, np.pi / 3]]])
    rgb_h = ipf_colors(map_from_quaternions(euler_to_quat(euler_h), phases=hexa))
    np.testing.assert_allclose(rgb_h[0], np.eye(3), atol=1e-9)
    with pytest.raises(ConfigError):
        ipf_colors(cubic, direction="w")


@pytest.mark.parametrize("laue", ["m-3", "4/m", "6/m", "-3m", "-3"])
def test_ipf_key_of_lower_laue_groups_tells_apart_what_the_group_does(laue):
    """Each sector is a fundamental domain: orientations related by the group's operations get
    one colour, and its corners pure red, green and blue. Orientations related by an operation of
    the higher group only (the group's twins) got one colour from the higher group's triangle;
    now they differ."""
    from metallo.ebsd import quat_multiply, symmetry_operators

    phases = [{"id": 1, "name": "x", "symmetry": laue}]
    q = random_quaternions(200, 4)
    ops = symmetry_operators(laue)
    # Crystal symmetry acts on the crystal side of a passive orientation: g' = S g, as quaternions s * q.
    equivalent = quat_multiply(ops[np.arange(200) % len(ops)], q)
    rgb = ipf_colors(map_from_quaternions(np.stack([q, equivalent]), phases=phases))
    np.testing.assert_allclose(rgb[0], rgb[1], atol=1e-9)
    higher = {"m-3": ("m-3m", [0, 0, 1], 4), "4/m": ("4/mmm", [1, 0, 0], 2), "6/m": ("6/mmm", [1, 0, 0], 2),
              "-3m": ("6/mmm", [0, 0, 1], 6), "-3": ("-3m", [1, 0, 0], 2)}[laue]
    twin = quat_multiply(np.broadcast_to(axis_angle_to_quat(np.array(higher[1], float), 2 * np.pi / higher[2]), q.shape), q)
    ours = ipf_colors(map_from_quaternions(np.stack([q, twin]), phases=phases))
    theirs = ipf_colors(map_from_quaternions(np.stack([q, twin]), phases=[{**phases[0], "symmetry": higher[0]}]))
    np.testing.assert_allclose(theirs[0], theirs[1], atol=1e-9)
    assert np.median(np.abs(ours[0] - ours[1]).max(axis=1)) > 0.1


def test_ipf_key_corners_of_lower_laue_groups():
    # z || c ([001]) is red in every group; z || a (Phi 90, phi2 90 deg) is green for 4/m, 6/m, -3
    # and m-3; for -3m the green corner is [10-10] (phi2 60 deg: azimuth 30 deg from a).
    red, green = [0.0, 0.0, 0.0], [0.0, np.pi / 2, np.pi / 2]
    for laue, g in (("4/m", green), ("6/m", green), ("-3", green), ("m-3", green), ("-3m", [0.0, np.pi / 2, np.pi / 3])):
        rgb = ipf_colors(map_from_quaternions(euler_to_quat(np.array([[red, g]])), phases=[{"id": 1, "name": "x", "symmetry": laue}]))
        np.testing.assert_allclose(rgb[0], [[1, 0, 0], [0, 1, 0]], atol=1e-9, err_msg=laue)


def test_resample_hexagonal_to_square_keeps_grains():
    ny, nx = 23, 20
    truth = np.zeros((ny, nx), dtype=int)
    truth[:, 10:] = 1
    oris = random_quaternions(2, 22)
    hexmap = map_from_quaternions(oris[truth], grid="hexagonal", step_um=1.0)
    sq = resample_to_square(hexmap)
    assert sq.attrs["grid"] == "square" and sq.attrs["step_um"] == 1.0
    assert sq.sizes["y"] == int(np.floor((ny - 1) * np.sqrt(3) / 2)) + 1 and sq.sizes["x"] == nx
    g = grains(sq)
    assert len(g) == 2
    assert resample_to_square(sq) is sq


def test_synth_map_grains_and_gradient():
    spec = make_specimen(0, ebsd_shape=(80, 80))
    d, g = derive(clean(spec.ebsd), return_grains=True)
    truth_n = len(np.unique(spec.grain_ids))
    assert 0.5 * truth_n <= len(g) <= 2 * truth_n
    assert np.nanmean(d["kam"].values) < 5.0


def test_specimen_round_trip_and_cli(tmp_path, known_grains):
    from typer.testing import CliRunner

    from metallo import names
    from metallo.cli import app
    from metallo.io import read_ebsd, write_ang
    from metallo.specimen import Specimen

    ebsd, truth, _ = known_grains
    ang = write_ang(ebsd, tmp_path / "known.ang")
    spec_path = tmp_path / "s.metallo.h5"
    result = CliRunner().invoke(app, ["ebsd", str(ang), "--specimen", str(spec_path)])
    assert result.exit_code == 0, result.output
    assert "grains: 6" in result.output
    spec = Specimen.open(spec_path)
    derived = spec[names.derived(names.EBSD_CLEAN)]  # the recipe's nodes: ebsd/map, ebsd/clean, its derived
    assert _same_partition(derived["grain_id"].values, truth)
    assert json.loads(derived["kam"].attrs["parameters"])["order"] == 3
    steps = [p["step"] for p in spec.provenance]
    assert steps[-2:] == ["ebsd.clean", "ebsd.derive"]
    assert read_ebsd(ang).sizes["x"] == truth.shape[1]


def test_cli_reports_indexing_before_and_after_cleaning_writes_in_the_working_folder(tmp_path, known_grains,
                                                                                      monkeypatch):
    from typer.testing import CliRunner

    from metallo.cli import app
    from metallo.io import write_ang

    ebsd, truth, oris = known_grains
    unindexed = np.zeros(truth.shape, bool)
    unindexed[::4] = True  # every 4th row: 25 % of the points, 75 % indexed as read
    q = oris[truth]
    raw = map_from_quaternions(q, np.where(unindexed, -1, 1).astype(np.int16),
                               ci=np.where(unindexed, -1.0, 0.9))
    (tmp_path / "in").mkdir()
    (tmp_path / "work").mkdir()
    ang = write_ang(raw, tmp_path / "in" / "holes.ang")
    monkeypatch.chdir(tmp_path / "work")
    result = CliRunner().invoke(app, ["ebsd", str(ang)])
    assert result.exit_code == 0, result.output
    assert "75.0% indexed as read, 100.0% after cleaning" in result.output
    # The holes were filled from their neighbours: the line says how much, and what it means.
    assert ("100.0% after cleaning (25.0% of the measured points given a neighbour's orientation: an "
            "interpolation, not a measurement; --no-clean keeps the points as measured)") in result.output
    assert "phases (share" not in result.output  # one phase: no shares to print
    # No --specimen: the specimen goes into the working folder, not beside the input.
    assert (tmp_path / "work" / "holes.metallo.h5").is_file()
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["holes.ang"]
    again = CliRunner().invoke(app, ["ebsd", str(ang)])
    assert again.exit_code == 1
    assert "--overwrite" in again.output and "overwrite=True" not in again.output


def test_cells_missing_from_the_file_are_not_filled_and_heavy_filling_warns(known_grains):
    ebsd, truth, _ = known_grains
    q = euler_to_quat(ebsd["euler"].values)
    # No CI (a .ctf): a block of cells absent from the file has NaN in every measurement column.
    phase = np.ones(truth.shape, dtype=np.int16)
    absent = np.zeros(truth.shape, bool)
    absent[:, :15] = True
    phase[absent] = -1
    from metallo.ebsd import ebsd_dataset, quat_to_euler

    bc = np.where(absent, np.nan, 120.0).astype(np.float32)
    sparse = ebsd_dataset(quat_to_euler(q), phase, step_um=0.5, phases=CUBIC, variables={"bc": bc})
    out = clean(sparse)
    assert (out["phase"].values[absent] == -1).all() and (out["phase"].values[~absent] >= 0).all()
    # The same cells as unindexed measurements (band contrast measured) are filled, 15 columns
    # of 60 = 25 % of the points: more than a cleanup, and it says so.
    measured = sparse.copy(deep=True)
    measured["bc"] = (("y", "x"), np.full(truth.shape, 120.0, np.float32))
    with pytest.warns(UserWarning, match=r"cleanup gave \d+ of \d+ measured points \(2\d%\)"):
        filled = clean(measured)
    assert (filled["phase"].values >= 0).all()
    # A few bad points are a cleanup: no warning.
    few = measured.copy(deep=True)
    few["phase"].values[:] = 1
    few["phase"].values[2, 3] = -1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean(few)


@pytest.mark.shared_data
def test_sparse_ctf_stays_sparse_after_cleaning(shared_file):
    # mtexTools' MEA .ctf omits its 125,765 non-indexed cells (67 % of the grid); cleaning had
    # filled every one of them from the neighbouring grains (32.9 % -> 100 % indexed).
    from metallo.io import read_ebsd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ebsd = read_ebsd(shared_file("ebsd_ctf/mtexTools_MEA_60CR_1C.ctf"))
    indexed = (ebsd["phase"].values >= 0).mean()
    assert indexed == pytest.approx(61735 / 187500, abs=1e-6)
    assert (clean(ebsd)["phase"].values >= 0).mean() == pytest.approx(indexed, abs=1e-6)


def test_cli_on_a_map_without_grains_says_so(tmp_path, monkeypatch):
    # Scattered single points (an interactive-mode file): no grain of 2 points, no KAM neighbour.
    from typer.testing import CliRunner

    from metallo.cli import app
    from metallo.io import write_ang

    phase = np.full((12, 12), -1, np.int16)
    phase[::4, ::4] = 1
    q = random_quaternions(144, 5).reshape(12, 12, 4)
    ang = write_ang(map_from_quaternions(q, phase, ci=np.where(phase > 0, 0.9, -1.0)), tmp_path / "dots.ang")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["ebsd", str(ang), "--no-clean"])
    assert result.exit_code == 0, result.output
    assert "grains: none (tolerance 5 deg; 9 indexed points form no grain of the minimum size)" in result.output
    assert "KAM (order 3, ring kernel): no point has indexed neighbours" in result.output
    assert "nan" not in result.output and "Mean of empty slice" not in result.output


def test_cli_kam_kernel_reaches_the_derived_map_and_a_wrong_one_is_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from metallo.cli import app
    from metallo.io import write_ang
    from metallo.specimen import Specimen

    # A lattice rotating 0.1 deg per pixel about z: MTEX's 1st-order kernel (4 edge neighbours)
    # gives 0.05 deg inside the map, the ring (8 pixels) 0.075 deg.
    ny, nx = 12, 16
    angle = np.radians(0.1) * np.arange(nx)[None, :].repeat(ny, axis=0)
    rot = axis_angle_to_quat(np.broadcast_to([0.0, 0.0, 1.0], (ny, nx, 3)), angle)
    q = quat_multiply(axis_angle_to_quat(np.array([1.0, 2.0, 3.0]), 0.4), rot)
    ang = write_ang(map_from_quaternions(q, ci=np.full((ny, nx), 0.9)), tmp_path / "grad.ang")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["ebsd", str(ang), "--no-clean", "--kam-order", "1", "--kam-kernel", "mtex"])
    assert result.exit_code == 0, result.output
    assert "KAM (order 1, mtex kernel, reach " in result.output
    derived = Specimen.open(tmp_path / "grad.metallo.h5")["ebsd/map/derived"]
    assert json.loads(derived["kam"].attrs["parameters"])["kernel"] == "mtex"
    np.testing.assert_allclose(derived["kam"].values[1:-1, 1:-1], 0.05, atol=2e-3)
    bad = runner.invoke(app, ["ebsd", str(ang), "--specimen", "other.h5", "--kam-kernel", "diamond"])
    assert bad.exit_code == 1
    assert bad.output.strip().splitlines() == [bad.output.strip()]
    assert "--kam-kernel must be one of ring, mtex, full; got 'diamond'" in bad.output
    assert not (tmp_path / "other.h5").exists()


def test_a_map_without_an_indexed_point_gives_no_grains_and_a_clear_cleanup_error():
    """EbsdLib's Test_1.ang is such a map (every point at the 4 pi marker, CI -1): derive crashed
    with an IndexError, and clean asked to lower thresholds that were not the reason."""
    from metallo.ebsd import derive, ebsd_dataset, grains

    ebsd = ebsd_dataset(np.zeros((4, 40, 3)), np.full((4, 40), -1, np.int16), step_um=0.25,
                        phases=[{"id": 1, "name": "Ni", "symmetry": "m-3m"}], source="none.ang")
    assert len(grains(ebsd)) == 0 and (np.asarray(grains(ebsd).ids.values) == -1).all()
    assert int(derive(ebsd).attrs["n_grains"]) == 0
    with pytest.raises(ConfigError, match="no point of the map is indexed"):
        clean(ebsd)
