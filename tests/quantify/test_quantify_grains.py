"""ASTM E112 grain size on hexagonal tessellations of known grain area."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from metallo.errors import ConfigError
from metallo.quantify import astm_g_intercept, astm_g_planimetric, grain_size


def expected_g(spacing_um: float) -> tuple[float, float]:
    """E112 G of regular hexagons with centre spacing d: area (sqrt3/2) d², l = pi d / 4."""
    area_mm2 = math.sqrt(3) / 2 * spacing_um**2 * 1e-6
    intercept_mm = math.pi * spacing_um / 4 * 1e-3  # l = pi / (2 L_A), L_A = 2 / d
    return 3.321928 * math.log10(1 / area_mm2) - 2.954, -6.643856 * math.log10(intercept_mm) - 3.288


@pytest.mark.parametrize("angle_deg", [0.0, 17.0, 30.0])
@pytest.mark.parametrize("spacing_px", [20.0, 36.0])
def test_hexagonal_tessellation_g(hexagons, angle_deg, spacing_px):
    ps = 0.5
    ids = hexagons((500, 600), spacing_px, angle_deg)
    table = grain_size(ids, pixel_size_um=ps).set_index("method")
    g_plan, g_int = expected_g(spacing_px * ps)
    assert table.loc["planimetric", "G"] == pytest.approx(g_plan, abs=0.05)
    assert table.loc["intercept", "G"] == pytest.approx(g_int, abs=0.1)
    area = math.sqrt(3) / 2 * (spacing_px * ps) ** 2
    # E112's mean grain area 1 / N_A: as close to the hexagon's as G is (0.05 in G is 3.5 % in area).
    row = table.loc["planimetric"]
    assert row["mean_area_um2"] == pytest.approx(1e6 / row["n_a_per_mm2"])
    assert row["mean_area_um2"] == pytest.approx(area, rel=0.035)
    assert row["mean_ecd_um"] == pytest.approx(2 * math.sqrt(row["mean_area_um2"] / math.pi))


def test_square_grains_jeffries_counts_edge_grains_half():
    ids = (np.arange(25).reshape(5, 5) + 1).repeat(20, 0).repeat(20, 1)
    row = grain_size(ids, pixel_size_um=2.0, method="planimetric").iloc[0]
    assert row["n_edge_grains"] == 16 and row["n_corner_grains"] == 4
    assert row["n_grains"] == 25
    # (9 + 12 / 2 + 4 / 4) grains in 200 µm x 200 µm = 0.04 mm²: E112's rectangle counts its corner grains 1/4
    assert row["n_a_per_mm2"] == pytest.approx(16 / 0.04)
    assert row["G"] == pytest.approx(astm_g_planimetric(16 / 0.04))


def test_boundary_pixels_and_grains_object(hexagons):
    ids = hexagons((300, 300), 30.0, 10.0)
    edge = np.zeros(ids.shape, bool)
    edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    edge[1:, :] |= ids[1:, :] != ids[:-1, :]
    with_lines = np.where(edge, 0, ids)
    ref = grain_size(ids, pixel_size_um=1.0).set_index("method")["G"]
    lined = grain_size(with_lines, pixel_size_um=1.0).set_index("method")["G"]
    np.testing.assert_allclose(lined.to_numpy(), ref.to_numpy(), atol=0.05)

    @dataclass
    class FakeGrains:  # the metallo.ebsd Grains contract: ids (-1 = no grain) and table
        ids: xr.DataArray
        table: pd.DataFrame

    da = xr.DataArray(ids - 1, dims=("y", "x"), coords={"y": np.arange(300) * 0.25, "x": np.arange(300) * 0.25})
    grains = FakeGrains(da, pd.DataFrame())
    from_grains = grain_size(grains).set_index("method")["G"]
    expected = grain_size(ids, pixel_size_um=0.25).set_index("method")["G"]
    np.testing.assert_allclose(from_grains.to_numpy(), expected.to_numpy())
    # A plain map with -1 = no grain (EBSD derived grain_id) keeps grain 0.
    from_ids = grain_size(ids - 1, pixel_size_um=0.25).set_index("method")["G"]
    np.testing.assert_allclose(from_ids.to_numpy(), expected.to_numpy())


def test_e112_formulas_table_values():
    # E112-13 Table 4: G 5 -> 248.0 grains/mm² and l = 0.0566 mm
    assert astm_g_planimetric(248.0) == pytest.approx(5.0, abs=0.01)
    assert astm_g_intercept(0.0566) == pytest.approx(5.0, abs=0.01)
    # A column of fields at once (it had raised numpy's "truth value of an array is ambiguous").
    np.testing.assert_allclose(astm_g_planimetric(np.array([62.0, 248.0, 992.0])), [3.0, 5.0, 7.0], atol=0.01)
    np.testing.assert_allclose(astm_g_intercept([0.1132, 0.0566]), [3.0, 5.0], atol=0.01)
    assert isinstance(astm_g_planimetric(248.0), float)
    with pytest.raises(ConfigError, match="N_A must be positive; got 0"):
        astm_g_planimetric(np.array([62.0, 0.0]))
    with pytest.raises(ConfigError, match="mean intercept must be positive; got nan"):
        astm_g_intercept(float("nan"))


def test_bad_method():
    with pytest.raises(ConfigError, match="method"):
        grain_size(np.ones((4, 4), int), pixel_size_um=1.0, method="guess")


def test_grains_from_metallo_ebsd(hexagons):
    from metallo.ebsd import ebsd_dataset, grains, quat_to_euler, random_quaternions

    ids = hexagons((160, 160), 24.0, 5.0)
    quats = random_quaternions(int(ids.max()) + 1, rng=11)
    bcc = {"id": 0, "name": "ferrite", "symmetry": "m-3m", "lattice": [2.87, 2.87, 2.87, 90, 90, 90]}
    ebsd = ebsd_dataset(quat_to_euler(quats[ids]), np.zeros(ids.shape, np.int16), step_um=0.5, phases=[bcc])
    from_ebsd = grain_size(grains(ebsd, tolerance_deg=5.0, min_size_px=1)).set_index("method")
    truth = grain_size(ids, pixel_size_um=0.5).set_index("method")
    np.testing.assert_allclose(from_ebsd["G"].to_numpy(), truth["G"].to_numpy(), atol=1e-9)
    g_plan, _ = expected_g(24.0 * 0.5)
    assert from_ebsd.loc["planimetric", "G"] == pytest.approx(g_plan, abs=0.1)


def test_too_few_grains_are_marked_not_reliable():
    # 5 x 5 square grains: 9 interior + 16 edge grains count as 17 < 50 (ASTM E112's minimum).
    ids = (np.arange(25).reshape(5, 5) + 1).repeat(20, 0).repeat(20, 1)
    with pytest.warns(UserWarning, match="9 interior and 16 edge grains: fewer than the 50"):
        few = grain_size(ids, pixel_size_um=2.0)
    assert not few["reliable"].any() and few["note"].str.contains("not a size statistic").all()
    # 12 x 12: 100 interior + 44 edge grains count as 122.
    ids = (np.arange(144).reshape(12, 12) + 1).repeat(10, 0).repeat(10, 1)
    many = grain_size(ids, pixel_size_um=2.0)
    assert many["reliable"].all() and (many["note"] == "").all()
    # The ECD of E112's mean area 1 / N_A. (Square grains on the field's own lines are Jeffries'
    # worst case: the 44 edge grains lie wholly inside and count half, 121 grains for 144.)
    assert many["mean_area_um2"].iloc[0] == pytest.approx(1e6 / many["n_a_per_mm2"].iloc[0]) == pytest.approx(57600 / 121)
    assert many["mean_ecd_um"].iloc[0] == pytest.approx(2 * np.sqrt(57600 / 121 / np.pi))


def test_intercept_row_of_grains_a_few_points_wide_is_not_reliable():
    # One Voronoi tessellation of 400 grains in a 2 mm field, sampled at 1000 px (a mean intercept
    # of 41 points) and at 70 px (3.1 points): planimetric G holds, the intercept G reads low.
    from scipy.spatial import cKDTree

    seeds = np.random.default_rng(1).random((400, 2)) * 2000.0
    tables = {}
    for npx in (1000, 70):
        ps = 2000.0 / npx
        yx = (np.indices((npx, npx)).reshape(2, -1).T + 0.5) * ps
        ids = cKDTree(seeds).query(yx)[1].reshape(npx, npx) + 1
        if npx == 70:
            with pytest.warns(UserWarning, match=r"intercept grain size .*mean intercept is 3\.1 points long \(under 3\.5\)"):
                tables[npx] = grain_size(ids, pixel_size_um=ps).set_index("method")
        else:
            tables[npx] = grain_size(ids, pixel_size_um=ps).set_index("method")
    fine, coarse = tables[1000], tables[70]
    assert fine["reliable"].all() and coarse.loc["planimetric", "reliable"]
    assert coarse.loc["planimetric", "G"] == pytest.approx(fine.loc["planimetric", "G"], abs=0.01)
    assert fine.loc["intercept", "G"] - coarse.loc["intercept", "G"] == pytest.approx(0.18, abs=0.03)
    assert not coarse.loc["intercept", "reliable"] and "misses intercepts" in coarse.loc["intercept", "note"]


@pytest.mark.filterwarnings("ignore:grain size of .*fewer than the 50 grains:UserWarning")
def test_quantify_counts_austenite_grains_without_twins_on_request(tmp_path):
    """A grain cut by a Sigma3 lamella: 'keep' counts 4 grains and warns that 2 of them are
    twins; 'merge' counts 2, as ASTM E112 counts austenitic grains. Both record the choice."""

    from metallo import names
    from metallo.ebsd import (
        axis_angle_to_quat,
        ebsd_dataset,
        quat_multiply,
        quat_to_euler,
        random_quaternions,
    )
    from metallo.errors import ConfigError
    from metallo.quantify import quantify_step
    from metallo.specimen import Specimen

    a = random_quaternions(1, 5)[0]
    q = np.broadcast_to(a, (40, 40, 4)).copy()
    q[:, 12:18] = quat_multiply(axis_angle_to_quat(np.array([1.0, 1.0, 1.0]), np.radians(60.0)), a)
    q[:, 30:] = quat_multiply(axis_angle_to_quat(np.array([1.0, 2.0, 0.5]), np.radians(40.0)), a)
    ebsd = ebsd_dataset(quat_to_euler(q), np.ones((40, 40), np.int16), step_um=1.0,
                        phases=[{"id": 1, "name": "austenite", "symmetry": "m-3m"}])
    spec = Specimen.create(tmp_path / "s.metallo.h5", specimen_id="s")
    spec.add(names.EBSD_MAP, ebsd, step=names.STEP_SYNTH)
    node = names.quantity(names.EBSD_MAP, names.GRAIN_SIZE)
    with pytest.warns(UserWarning, match="2 of its 4 grains are Sigma3 twins"):
        quantify_step(spec, what=["grains"], labels=[])
    kept = spec.table(node)
    # The same grains as martensite (bcc iron, no annealing twins): no advice to merge them.
    import warnings

    martensite = Specimen.create(tmp_path / "m.metallo.h5", specimen_id="m")
    martensite.add(names.EBSD_MAP, ebsd.assign_attrs(phases=json.dumps([{"id": 1, "name": "martensite", "symmetry": "m-3m"}])),
                   step=names.STEP_SYNTH)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantify_step(martensite, what=["grains"], labels=[])
    assert not [w for w in caught if "twins" in str(w.message)]
    # Asked to merge them anyway: said what is merged.
    with pytest.warns(UserWarning, match=r"twins='merge' on a map of bcc iron, which has no annealing twins: the 2 grains"):
        quantify_step(martensite, what=["grains"], labels=[], twins="merge", overwrite=True)
    quantify_step(spec, what=["grains"], labels=[], twins="merge", overwrite=True)
    merged = spec.table(node)
    e112 = kept["method"] != "e2627"
    assert set(kept[e112]["n_grains"]) == {4} and set(merged[e112]["n_grains"]) == {2}
    records = [r["parameters"] for r in spec.provenance if node in r["outputs"]]
    assert [(r["twins"], r["grains_with_twins"], r["grains_without_twins"]) for r in records][-2:] == [
        ("keep", 4, 2), ("merge", 4, 2)]
    # The QC report says which count it shows.
    from metallo.report import write_report

    html = write_report(spec, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Twins merged into their grains: 4 grains with twins, 2 without" in html
    # Without a twin relation between neighbours, no paragraph on how twins are counted.
    untwinned = ebsd.copy()
    two = np.where(np.arange(40)[None, :, None] < 20, q[:1, :1], q[:1, 30:31])  # a 40 deg bicrystal
    untwinned["euler"] = (("y", "x", "angle"), quat_to_euler(np.broadcast_to(two, (40, 40, 4)).copy()))
    other = Specimen.create(tmp_path / "u.metallo.h5", specimen_id="u")
    other.add(names.EBSD_MAP, untwinned, step=names.STEP_SYNTH)
    quantify_step(other, what=["grains"], labels=[])
    html = write_report(other, tmp_path / "u.html").read_text(encoding="utf-8")
    assert "Grain size" in html and "Twins counted as grains" not in html and "Twins merged" not in html
    with pytest.raises(ConfigError, match="twins must be"):
        quantify_step(spec, what=["grains"], labels=[], twins="drop", overwrite=True)


@pytest.mark.filterwarnings("ignore:grain size of .*fewer than the 50 grains:UserWarning")
def test_grain_size_of_one_phase_counts_its_grains_per_its_own_area():
    """36 grains of 10 x 10 µm (phase A) in the middle of a map framed by 4 large grains of
    phase B: A's own N_A is exactly 10,000 per mm² (no A grain is cut by the map edge; the
    interface to B cuts none), along rows A's intercept is 10 µm (an A|B interface closes one
    A intercept: it counts 1/2). Without the region the B frame dilutes the count."""
    ids = np.zeros((120, 120), np.int64)
    ids[:60, :] = 1
    ids[60:, :] = 2
    ids[:, :30] = 3
    ids[:, 90:] = 4
    k = 5
    for y in range(30, 90, 10):
        for x in range(30, 90, 10):
            ids[y:y + 10, x:x + 10] = k
            k += 1
    region = np.zeros(ids.shape, bool)
    region[30:90, 30:90] = True
    a = grain_size(ids, pixel_size_um=1.0, region=region, method="planimetric").iloc[0]
    assert (a["n_grains"], a["n_edge_grains"], a["field_area_um2"]) == (36, 0, 3600.0)
    assert a["n_a_per_mm2"] == pytest.approx(10_000.0)
    assert a["G"] == pytest.approx(astm_g_planimetric(10_000.0))
    # Intercepts, counted by hand: a row or column through A is 60 µm long (59 steps inside, two
    # half steps across the interfaces) with 5 inner boundaries and 2 interfaces at 1/2: P_L 0.1.
    # A diagonal has 59 x 59 steps inside and 238 half steps across the interfaces (3600 sqrt2 µm),
    # crossing 5 x 59 + 5 x 59 - 25 = 565 inner boundaries and 238 interfaces at 1/2: 684.
    p_l_diagonal = 684.0 / (3600.0 * np.sqrt(2.0))
    expected = 4.0 / (0.1 + 0.1 + 2 * p_l_diagonal)
    both = grain_size(ids, pixel_size_um=1.0, region=region)
    assert both["mean_intercept_um"].iloc[0] == pytest.approx(expected, rel=1e-9)
    everything = grain_size(ids, pixel_size_um=1.0, method="planimetric").iloc[0]
    assert everything["n_grains"] == 40 and everything["n_a_per_mm2"] < 3000
    with pytest.raises(ConfigError, match="region has shape"):
        grain_size(ids, pixel_size_um=1.0, region=region[:10])
    with pytest.raises(ConfigError, match="no grain in the region"):
        grain_size(ids, pixel_size_um=1.0, region=np.zeros(ids.shape, bool))


@pytest.mark.filterwarnings("ignore:grain size of .*fewer than the 50 grains:UserWarning")
def test_quantify_gives_each_phase_its_grain_size(tmp_path):
    """A two-phase EBSD map: the grain-size table counts all grains, as before, and a second
    table (grain_size_by_phase) each phase on its own area."""
    from metallo import names
    from metallo.ebsd import ebsd_dataset, quat_to_euler, random_quaternions
    from metallo.quantify import quantify_step
    from metallo.specimen import Specimen

    q = np.zeros((40, 40, 4))
    phase = np.ones((40, 40), np.int16)
    phase[:, 20:] = 2
    oris = random_quaternions(16, 3)
    for k in range(16):  # 4 x 4 grains of 10 x 10 px
        q[(k // 4) * 10:(k // 4) * 10 + 10, (k % 4) * 10:(k % 4) * 10 + 10] = oris[k]
    ebsd = ebsd_dataset(quat_to_euler(q), phase, step_um=1.0,
                        phases=[{"id": 1, "name": "austenite", "symmetry": "m-3m"},
                                {"id": 2, "name": "ferrite", "symmetry": "m-3m"}])
    spec = Specimen.create(tmp_path / "s.metallo.h5", specimen_id="s")
    spec.add(names.EBSD_MAP, ebsd, step=names.STEP_SYNTH)
    quantify_step(spec, what=["grains"], labels=[])
    table = spec.table(names.quantity(names.EBSD_MAP, names.GRAIN_SIZE))
    assert list(table["method"]) == ["planimetric", "intercept", "e2627"]
    assert set(table["n_grains"][:2]) == {16}
    # E2627's row counts the 4 interior grains of 100 points, and says the step is too coarse for it.
    assert table["n_grains"][2] == 4 and not table["reliable"][2]
    assert "the average interior grain holds 100 points; ASTM E2627 asks for at least 500" in table["note"][2]
    by_phase = spec.table(names.quantity(names.EBSD_MAP, names.GRAIN_SIZE_BY_PHASE))
    planimetric = by_phase[by_phase["method"] == "planimetric"].set_index("phase")
    assert list(planimetric.index) == ["austenite", "ferrite"]
    assert planimetric.loc["austenite", "n_grains"] == 8 and planimetric.loc["ferrite", "n_grains"] == 8
    assert planimetric.loc["austenite", "field_area_um2"] == pytest.approx(800.0)
    # A single-phase map gets no per-phase table.
    spec.add("ebsd/single", ebsd.assign(phase=ebsd["phase"].where(ebsd["phase"] < 0, 1)), step=names.STEP_SYNTH)
    quantify_step(spec, what=["grains"], labels=[], ebsd=["ebsd/single"])
    assert names.quantity("ebsd/single", names.GRAIN_SIZE) in spec
    assert names.quantity("ebsd/single", names.GRAIN_SIZE_BY_PHASE) not in spec


def _blocks_with_small_grains(block_px: int) -> np.ndarray:
    """20 x 20 square grains of block_px² points; 36 interior ones hold a 7 x 7 grain of their own."""
    ids = np.arange(400).reshape(20, 20).repeat(block_px, 0).repeat(block_px, 1) + 1
    for k, (by, bx) in enumerate((by, bx) for by in range(2, 14, 2) for bx in range(2, 14, 2)):
        ids[by * block_px + 5: by * block_px + 12, bx * block_px + 5: bx * block_px + 12] = 401 + k
    return ids


def test_e2627_mean_area_leaves_out_grains_under_100_points():
    ps = 0.5
    table = grain_size(_blocks_with_small_grains(30), pixel_size_um=ps, method="all").set_index("method")
    e = table.loc["e2627"]
    # 324 interior blocks (288 of 900 points, 36 of 900 - 49), the 36 grains of 49 points left out.
    mean_px = (288 * 900 + 36 * 851) / 324
    assert e["n_grains"] == 324
    assert e["mean_area_um2"] == pytest.approx(mean_px * ps**2)
    assert e["G"] == pytest.approx(3.321928 * math.log10(1e6 / (mean_px * ps**2)) - 2.954)
    # Before the cut the average interior grain holds (259200 + 30636 + 36 * 49) / 360 = 810 points.
    assert e["mean_px_per_grain"] == pytest.approx(810.0)
    assert bool(e["reliable"]) and e["note"] == ""
    # The E112 rows' mean area is E112's 1 / N_A, small grains counted.
    assert table.loc["planimetric", "mean_area_um2"] == pytest.approx(1e6 / table.loc["planimetric", "n_a_per_mm2"])
    assert list(grain_size(_blocks_with_small_grains(30), pixel_size_um=ps, method="e2627")["method"]) == ["e2627"]


def test_e2627_says_when_the_step_is_too_coarse_for_it():
    # Blocks of 20 x 20 = 400 points: the average interior grain holds (288 * 400 + 36 * 351 + 36 * 49) / 360.
    with pytest.warns(UserWarning, match="holds 360 points; ASTM E2627 asks for at least 500"):
        table = grain_size(_blocks_with_small_grains(20), pixel_size_um=1.0, method="e2627")
    assert not table["reliable"].item()
    assert table["mean_px_per_grain"].item() == pytest.approx(360.0)
    with pytest.raises(ConfigError, match="min_grain_px"):
        grain_size(_blocks_with_small_grains(20), pixel_size_um=1.0, method="e2627", min_grain_px=0)


@pytest.mark.shared_data
def test_e2627_on_the_duplex_map_is_marked_under_resolved(shared_file):
    """The sdss map's average grain holds 96 points: E2627's 100-point cut then removes most grains
    (27 of 84 interior ones are kept) and its G falls 1.1 below E112's. The row says why."""
    from metallo.ebsd import grains, resample_to_square
    from metallo.io import read_ebsd

    ebsd = resample_to_square(read_ebsd(shared_file("ebsd_ang/sdss_ferrite_austenite.ang")))
    with pytest.warns(UserWarning, match="E2627 grain size"):
        table = grain_size(grains(ebsd), pixel_size_um=float(ebsd.attrs["step_um"]), method="all").set_index("method")
    assert table.loc["planimetric", "reliable"] and not table.loc["e2627", "reliable"]
    assert table.loc["e2627", "mean_px_per_grain"] == pytest.approx(96.3, abs=0.1)
    assert table.loc["e2627", "n_grains"] == 27
    assert table.loc["planimetric", "G"] - table.loc["e2627", "G"] == pytest.approx(1.14, abs=0.02)


def test_report_names_only_the_e2627_row_where_the_e112_rows_hold(tmp_path):
    """10 x 10 grains of 10 x 10 points: E112 counts 64 + 36/2 grains (reliable); E2627 wants
    500 points per grain and has 100, so only its row is NOT RELIABLE, and the report says so."""
    from metallo import names
    from metallo.ebsd import ebsd_dataset, quat_to_euler, random_quaternions
    from metallo.quantify import quantify_step
    from metallo.report import write_report
    from metallo.specimen import Specimen

    oris = random_quaternions(100, 11)
    q = oris[(np.arange(100) // 10)[:, None] * 10 + np.arange(100)[None, :] // 10]
    ebsd = ebsd_dataset(quat_to_euler(q), np.ones((100, 100), np.int16), step_um=1.0,
                        phases=[{"id": 1, "name": "ferrite", "symmetry": "m-3m"}])
    spec = Specimen.create(tmp_path / "s.metallo.h5", specimen_id="s")
    spec.add(names.EBSD_MAP, ebsd, step=names.STEP_SYNTH)
    with pytest.warns(UserWarning, match="E2627 grain size .* holds 100 points"):
        quantify_step(spec, what=["grains"], labels=[])
    table = spec.table(names.quantity(names.EBSD_MAP, names.GRAIN_SIZE)).set_index("method")
    assert table.loc["planimetric", "reliable"] and table.loc["intercept", "reliable"]
    assert table.loc["planimetric", "n_a_per_mm2"] == pytest.approx(81 / 0.01)  # 64 + 32 / 2 + 4 corners / 4
    assert not table.loc["e2627", "reliable"] and table.loc["e2627", "n_grains"] == 64
    assert table.loc["e2627", "mean_area_um2"] == pytest.approx(100.0)
    html = write_report(spec, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "NOT RELIABLE: e2627: the average interior grain holds 100 points; ASTM E2627 asks for at least 500" in html
    assert "NOT RELIABLE: planimetric" not in html and "(planimetric" not in html


def test_jeffries_count_is_unbiased_on_randomly_placed_grains(hexagons):
    """E112's rectangle rule (corner grains 1/4) on 40 random placements of a hexagonal tessellation
    holding 23.1 grains per field: the mean count is the true one. Counting corner grains half, as
    before, added one grain (mean 24.09)."""
    rng = np.random.default_rng(1)
    shape, spacing = (240, 300), 60.0
    true_n = shape[0] * shape[1] / (math.sqrt(3) / 2 * spacing**2)
    counts = []
    for _ in range(40):
        ids = hexagons(shape, spacing, rng.uniform(0, 60), origin=(rng.uniform(0, spacing), rng.uniform(0, spacing)))
        with pytest.warns(UserWarning, match="fewer than the 50 grains"):
            row = grain_size(ids, pixel_size_um=1.0, method="planimetric").iloc[0]
        counts.append(row["n_a_per_mm2"] * shape[0] * shape[1] * 1e-6)
    assert np.mean(counts) == pytest.approx(true_n, abs=0.35)  # standard error 0.16


def test_e112_mean_area_is_one_over_n_a_not_the_interior_mean(shared_file):
    """The SDSS duplex map (cleaned, 5 deg): E112's mean grain area 1 / N_A is 246.0 µm²; the mean of
    its 84 interior grains, which the E112 rows gave before, is 216.5 µm², 12 % low: the map's edge
    cuts the large grains more often than the small ones."""
    import metallo as mt

    ebsd = mt.ebsd.clean(mt.io.read_ebsd(shared_file("ebsd_ang/sdss_ferrite_austenite.ang")))
    grains = mt.ebsd.grains(ebsd, tolerance_deg=5.0)
    with pytest.warns(UserWarning):  # the map is under-resolved for E2627 (its own row says so)
        table = grain_size(grains, method="all").set_index("method")
    row = table.loc["planimetric"]
    assert row["mean_area_um2"] == pytest.approx(1e6 / row["n_a_per_mm2"]) == pytest.approx(246.0, abs=0.5)
    ids = np.asarray(grains.ids.values)
    edge = np.unique(np.r_[ids[0], ids[-1], ids[:, 0], ids[:, -1]])
    area = np.bincount(ids[ids >= 0].ravel()) * float(ebsd.attrs["step_um"]) ** 2
    interior = np.setdiff1d(np.flatnonzero(area), edge)
    assert len(interior) == 84 and area[interior].mean() == pytest.approx(216.5, abs=0.5)


def test_an_ebsd_map_mostly_unindexed_gives_no_reliable_grain_size():
    """An EBSD grain map (-1 = not indexed): 10 x 10 square grains of 20 points, the right 60 % of
    the map not indexed (a cold-rolled region that does not index). The field is the indexed 40 %
    exactly, not grown into the unindexed region, and the size is flagged: the grains that index
    are no sample of the section. A one-point hole inside a grain is closed, as before."""
    ids = (np.arange(100).reshape(10, 10)).repeat(20, 0).repeat(20, 1)  # 0 is a grain id
    ids[:, 80:] = -1
    ids[50, 50] = -1  # one unindexed point inside grain 22
    with pytest.warns(UserWarning, match=r"only 40\.0 % of the map is indexed"):
        row = grain_size(ids, pixel_size_um=1.0, method="planimetric").iloc[0]
    assert row["field_area_um2"] == 200 * 80  # the 1-point hole closed, the region not grown into
    # 10 rows x 4 columns of grains indexed: 8 x 2 interior (the first column lies on the map's
    # edge, the fourth on the unindexed region), 24 cut, 2 of them at the map's corners.
    assert row["n_grains"] == 40 and row["n_edge_grains"] == 24 and row["n_corner_grains"] == 2
    assert row["n_a_per_mm2"] == pytest.approx((16 + 0.5 * 22 + 0.25 * 2) / (200 * 80 * 1e-6))
    assert not row["reliable"] and "not a sample of the section" in row["note"]
    # The same map fully indexed: reliable, and nothing about indexing.
    full = (np.arange(100).reshape(10, 10) + 1).repeat(20, 0).repeat(20, 1)
    row = grain_size(full, pixel_size_um=1.0, method="planimetric").iloc[0]
    assert row["reliable"] and row["field_area_um2"] == 200 * 200


def test_the_cold_rolled_map_a_third_indexed_gives_no_reliable_grain_size(shared_file):
    """MTEX-tools' 60 %-cold-rolled MEA map: 61,735 of 187,500 points in the file. Its E112 G was
    printed as reliable, on a field grown 2 points into the unindexed regions (88,653 µm² against
    the 56,851 µm² indexed). The field is now the grains' own points, and every row says why not."""
    import metallo as mt

    ebsd = mt.ebsd.clean(mt.io.read_ebsd(shared_file("ebsd_ctf/mtexTools_MEA_60CR_1C.ctf")))
    grains = mt.ebsd.grains(ebsd, tolerance_deg=5.0)
    with pytest.warns(UserWarning, match=r"only 32\.\d % of the map is indexed"):
        table = grain_size(grains, method="all").set_index("method")
    in_grains = int((np.asarray(grains.ids.values) >= 0).sum())
    step = float(ebsd.attrs["step_um"])
    # The small holes closed by the grains count; the unindexed regions do not.
    assert in_grains * step**2 <= table.loc["planimetric", "field_area_um2"] < 1.1 * in_grains * step**2  # was 1.6x
    assert not table["reliable"].any() and table["note"].str.contains("not a sample of the section").all()


def test_elongated_grains_give_their_directional_intercepts_and_a_warning():
    """A tiling of 40 x 10 µm grains (a rolled structure): along x a test line crosses a boundary
    every 40 µm, along y every 10 µm. The mean over four directions hid that; the row gives both,
    their ratio, and a warning that one section of such a structure is no 3-D grain size."""
    from metallo.report import grain_size_line

    ids = (np.arange(20)[:, None] * 100 + np.arange(20)[None, :]).repeat(10, 0).repeat(40, 1) + 1
    with pytest.warns(UserWarning, match=r"grains elongated: mean intercept 42\.1 µm along x, 10\.5 µm along y \(anisotropy 4\.0\)"):
        row = grain_size(ids, pixel_size_um=1.0, method="intercept").iloc[0]
    # 19 boundaries on each 799 µm row and each 199 µm column (the pixel pairs' length).
    assert row["intercept_x_um"] == pytest.approx(799 / 19) and row["intercept_y_um"] == pytest.approx(199 / 19)
    assert row["anisotropy"] == pytest.approx((799 / 19) / (199 / 19))
    assert "(grains elongated: mean intercept 42.1 µm along x, 10.5 µm along y (anisotropy 4.0)" in grain_size_line(row)
    # Square grains: the same intercept every way, no word about shape.
    import warnings

    square = (np.arange(20)[:, None] * 100 + np.arange(20)[None, :]).repeat(20, 0).repeat(20, 1) + 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = grain_size(square, pixel_size_um=1.0, method="intercept").iloc[0]
    assert row["intercept_x_um"] == pytest.approx(row["intercept_y_um"]) and row["anisotropy"] < 1.5
    assert "elongated" not in grain_size_line(row)


@pytest.mark.shared_data
def test_equiaxed_real_maps_are_not_called_elongated(shared_file):
    # The duplex steel's grains: intercepts 14.7 µm along x, 11.8 µm along y (1.24), under 1.5.
    import metallo as mt

    ebsd = mt.ebsd.clean(mt.io.read_ebsd(shared_file("ebsd_ang/sdss_ferrite_austenite.ang")))
    row = grain_size(mt.ebsd.grains(ebsd), method="intercept").iloc[0]
    assert row["intercept_x_um"] == pytest.approx(14.67, abs=0.05) and row["intercept_y_um"] == pytest.approx(11.80, abs=0.05)
    assert 1.1 < row["anisotropy"] < 1.5
