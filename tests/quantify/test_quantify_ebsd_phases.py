"""Phase fractions of a multi-phase EBSD map: the phase map is the measurement (duplex balance,
retained austenite), with the E562 interval over fields and a verdict on the indexed share."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from metallo import names
from metallo.ebsd import ebsd_dataset, quat_to_euler, random_quaternions
from metallo.quantify import quantify_step
from metallo.report import qc_verdict, quality_checks
from metallo.specimen import Specimen

PHASES = [{"id": 1, "name": "austenite", "symmetry": "m-3m"}, {"id": 2, "name": "ferrite", "symmetry": "m-3m"}]


def _map(phase: np.ndarray) -> object:
    q = np.broadcast_to(random_quaternions(1, 0)[0], (*phase.shape, 4))
    return ebsd_dataset(quat_to_euler(np.array(q)), phase.astype(np.int16), step_um=0.5, phases=PHASES)


def _spec(tmp_path, phase: np.ndarray) -> Specimen:
    spec = Specimen.create(tmp_path / "s.h5", specimen_id="s")
    spec.add(names.EBSD_MAP, _map(phase), step=names.STEP_SYNTH)
    return spec


def test_fractions_are_the_point_counts_with_an_interval_over_fields(tmp_path):
    # 60 x 60 points, austenite in columns 0-17: 30 % exactly; in the 3 x 3 fields (20 columns
    # each) 18/20, 0, 0 per row of fields -> field means 0.9, 0, 0, three times.
    phase = np.full((60, 60), 2)
    phase[:, :18] = 1
    spec = _spec(tmp_path, phase)
    quantify_step(spec, what=["phases"], labels=[])
    table = spec.table(names.quantity(names.EBSD_MAP, names.PHASE_FRACTIONS)).set_index("class")
    assert table.loc["austenite", "fraction"] == pytest.approx(0.30)
    assert table.loc["austenite", "mean"] == pytest.approx(0.30)
    assert table.loc["austenite", "n_fields"] == 9
    # E562: s = std of (0.9, 0, 0) x 3 (ddof 1), CI = t(0.975, 8) s / sqrt(9)
    s = np.std([0.9, 0, 0] * 3, ddof=1)
    assert table.loc["austenite", "std"] == pytest.approx(s)
    assert table.loc["austenite", "ci_halfwidth"] == pytest.approx(2.306 * s / 3, rel=1e-3)
    fields = spec.table(names.quantity(names.EBSD_MAP, names.PHASE_FIELDS))
    assert len(fields) == 18
    assert quality_checks(spec)[names.quantity(names.EBSD_MAP, names.PHASE_FRACTIONS)]["passed"] is True
    # QC judges the EBSD phases where there is no label map.
    verdict = qc_verdict(spec, {"austenite": [0.25, 0.35]})
    assert verdict["qc_source"] == names.EBSD_MAP and verdict["qc_passed"] is True


def test_few_indexed_points_are_flagged_and_fail_qc(tmp_path):
    # A fifth of the ferrite unindexed: the fractions are of the indexed points (austenite
    # 18 / (18 + 33.6) columns) and the map has 88 % of its points indexed (< 90 %).
    phase = np.full((60, 60), 2)
    phase[:, :18] = 1
    rng = np.random.default_rng(0)
    holes = (phase == 2) & (rng.random(phase.shape) < 0.2)
    phase[holes] = -1
    spec = _spec(tmp_path, phase)
    with pytest.warns(UserWarning, match="phase fractions of the 8.\\.. % of points that are indexed"):
        quantify_step(spec, what=["phases"], labels=[])
    table = spec.table(names.quantity(names.EBSD_MAP, names.PHASE_FRACTIONS)).set_index("class")
    assert table.loc["austenite", "fraction"] == pytest.approx(1080 / (phase >= 0).sum())
    check = quality_checks(spec)[names.quantity(names.EBSD_MAP, names.PHASE_FRACTIONS)]
    assert check["passed"] is False and "under-counted" in check["reasons"][0]
    verdict = qc_verdict(spec, {"austenite": [0.0, 1.0]})  # within any limits, and still no pass
    assert verdict["qc_passed"] is False


def test_a_map_of_one_phase_has_no_phase_fractions(tmp_path):
    spec = Specimen.create(tmp_path / "s.h5", specimen_id="s")
    ebsd = ebsd_dataset(quat_to_euler(np.array(np.broadcast_to(random_quaternions(1, 0)[0], (20, 20, 4)))),
                        np.ones((20, 20), np.int16), step_um=1.0, phases=PHASES[:1])
    spec.add(names.EBSD_MAP, ebsd, step=names.STEP_SYNTH)
    quantify_step(spec, what=["phases"], labels=[])
    assert names.quantity(names.EBSD_MAP, names.PHASE_FRACTIONS) not in spec


def test_duplex_steel_map_austenite_fraction(shared_file, tmp_path):
    """The SDSS ferrite/austenite map (117 x 100 points at 1.5 µm, all indexed): 5,657 of its
    11,700 points are austenite, 48.35 %."""
    from metallo.io import read_ebsd

    ebsd = read_ebsd(shared_file("ebsd_ang/sdss_ferrite_austenite.ang"))
    spec = Specimen.create(tmp_path / "d.h5", specimen_id="d")
    spec.add(names.EBSD_MAP, ebsd, step=names.STEP_SYNTH)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fully indexed: no doubt raised
        quantify_step(spec, what=["phases"], labels=[])
    table = spec.table(names.quantity(names.EBSD_MAP, names.PHASE_FRACTIONS)).set_index("class")
    assert table.loc["austenite/austenite", "fraction"] == pytest.approx(5657 / 11700)
    low, high = table.loc["austenite/austenite", ["ci_low", "ci_high"]]
    assert low < 5657 / 11700 < high and high - low < 0.2
    verdict = qc_verdict(spec, {"austenite/austenite": [0.40, 0.60]})
    assert verdict["qc_passed"] is True and verdict["qc_source"] == names.EBSD_MAP


def test_ebsd_command_prints_the_phase_shares(shared_file, tmp_path):
    from typer.testing import CliRunner

    from metallo.cli import app

    result = CliRunner().invoke(app, ["ebsd", str(shared_file("ebsd_ang/sdss_ferrite_austenite.ang")),
                                      "--specimen", str(tmp_path / "d.h5")])
    assert result.exit_code == 0, result.output
    assert "phases (share of the indexed points): austenite/austenite 48.4 %, ferrite/ferrite 51.6 %" in result.output


def test_ebsd_command_says_when_few_points_are_indexed(shared_file, tmp_path):
    # MTEX's eclogite extract: 617 points of a 432 x 497 grid (0.3 %), seven phases.
    from typer.testing import CliRunner

    from metallo.cli import app

    result = CliRunner().invoke(app, ["ebsd", str(shared_file("ebsd_ctf/mtex_eclogite_interactive.ctf")),
                                      "--specimen", str(tmp_path / "e.h5")])
    assert result.exit_code == 0, result.output
    line = next(s for s in result.output.splitlines() if s.startswith("phases"))
    assert "Omphacite 34.9 %" in line and "(only 0.3 % of the points are indexed" in line


def test_hexagonal_map_fraction_is_its_own_point_count(tmp_path):
    # The fields come from a square resampling; the whole-map fraction from the hexagonal points.
    phase = np.full((41, 50), 2)
    phase[:, :13] = 1
    phase[::3, 13] = 1  # a ragged interface, which nearest-neighbour resampling would not keep exactly
    q = np.broadcast_to(random_quaternions(1, 0)[0], (*phase.shape, 4))
    ebsd = ebsd_dataset(quat_to_euler(np.array(q)), phase.astype(np.int16), step_um=0.5, phases=PHASES, grid="hexagonal")
    spec = Specimen.create(tmp_path / "h.h5", specimen_id="h")
    spec.add(names.EBSD_MAP, ebsd, step=names.STEP_SYNTH)
    quantify_step(spec, what=["phases"], labels=[])
    table = spec.table(names.quantity(names.EBSD_MAP, names.PHASE_FRACTIONS)).set_index("class")
    assert table.loc["austenite", "fraction"] == pytest.approx((phase == 1).mean())
    assert table.loc["austenite", "mean"] == pytest.approx((phase == 1).mean(), abs=0.02)


def test_quantify_command_prints_the_fractions_with_their_interval(tmp_path):
    from typer.testing import CliRunner

    from metallo.cli import app

    phase = np.full((60, 60), 2)
    phase[:, :18] = 1
    spec = _spec(tmp_path, phase)
    spec.save()
    result = CliRunner().invoke(app, ["quantify", str(tmp_path / "s.h5"), "--what", "phases", "--out", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    s = np.std([0.9, 0, 0] * 3, ddof=1)
    low, high = max(0.0, 0.3 - 2.306 * s / 3), 0.3 + 2.306 * s / 3
    assert f"  austenite: 30.0 % (95 % CI {100 * low:.1f}-{100 * high:.1f} %, 9 fields)" in result.output


def test_fractions_of_a_map_that_cleanup_filled_are_flagged(tmp_path):
    """Austenite in the left 30 % of the map (columns 0-17), and 40 % of the ferrite points
    unindexed (CI 0). Cleanup fills them from their neighbours: 98 % of the map ends up indexed,
    so the indexed-share check passes, yet 28 % of the measured points carry an invented phase.
    The fractions' record fails on that, and the grain sizes are not reliable."""
    from metallo.ebsd import clean, invented_share

    phase = np.full((60, 60), 2)
    phase[:, :18] = 1
    rng = np.random.default_rng(3)
    holes = (phase == 2) & (rng.random(phase.shape) < 0.4)
    ci = np.where(holes, 0.0, 0.5).astype(np.float32)
    ebsd = _map(np.where(holes, -1, phase))
    ebsd["ci"] = (("y", "x"), ci)
    with pytest.warns(UserWarning, match="not a cleanup but an interpolation"):
        cleaned = clean(ebsd)
    assert invented_share(cleaned) == pytest.approx(holes.sum() / holes.size, abs=0.01)
    assert float((cleaned["phase"].values >= 0).mean()) > 0.9
    spec = Specimen.create(tmp_path / "c.h5", specimen_id="c")
    spec.add(names.EBSD_CLEAN, cleaned, step=names.STEP_SYNTH)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantify_step(spec, what=["phases", "grains"], labels=[])
    node = names.quantity(names.EBSD_CLEAN, names.PHASE_FRACTIONS)
    check = quality_checks(spec)[node]
    assert check["passed"] is False and "phase fractions of an interpolated map" in check["reasons"][0]
    sizes = spec.table(names.quantity(names.EBSD_CLEAN, names.GRAIN_SIZE))
    assert not sizes["reliable"].any() and sizes["note"].str.contains("the grains of an interpolated map").all()


def test_a_map_of_scattered_points_gets_its_fractions_without_fields_and_no_grain_size(tmp_path):
    # MTEX's interactive eclogite map: 617 points scattered over a grid, 0.3 % of it indexed. Every
    # field held under a quarter of indexed points and the field table crashed (pandas concat of
    # nothing); no grain of two points made grain size stop the whole run.
    phase = np.full((60, 60), -1)
    phase[::10, ::10] = 2  # 36 isolated points, a third of them austenite
    phase[::10, ::30] = 1
    spec = _spec(tmp_path, phase)
    with pytest.warns(UserWarning) as caught:
        quantify_step(spec, labels=[])
    said = " ".join(str(w.message) for w in caught)
    assert "no grain of at least two indexed points" in said
    table = spec.table(names.quantity(names.EBSD_MAP, names.PHASE_FRACTIONS)).set_index("class")
    assert table.loc["austenite", "fraction"] == pytest.approx(12 / 36)
    assert table.loc["austenite", "n_fields"] == 0 and np.isnan(table.loc["austenite", "ci_halfwidth"])
    assert len(spec.table(names.quantity(names.EBSD_MAP, names.PHASE_FIELDS))) == 0
    assert quality_checks(spec)[names.quantity(names.EBSD_MAP, names.PHASE_FRACTIONS)]["passed"] is False  # 1 % indexed
    assert names.quantity(names.EBSD_MAP, names.GRAIN_SIZE) not in spec
    assert names.quantity(names.EBSD_MAP, names.TEXTURE) in spec  # the orientations are still measured
