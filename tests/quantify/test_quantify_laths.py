"""Lath widths from intercepts perpendicular to parallel laths of known width."""

from __future__ import annotations

import numpy as np
import pytest

from metallo.errors import ConfigError
from metallo.quantify import lath_orientation, lath_width_summary, lath_widths


def lath_field(shape, angle_deg, period_px, width_px=None):
    """Parallel laths along angle_deg (from +x towards +y). Ids (no boundary pixels) when
    width_px is None, else a mask: laths of width_px separated by (period - width) px of boundary."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    a = np.radians(angle_deg)
    across = -xx * np.sin(a) + yy * np.cos(a) + 0.37
    if width_px is None:
        return (np.floor(across / period_px) + 1000).astype(np.int64)
    return np.mod(across, period_px) < width_px


@pytest.mark.parametrize("angle_deg", [0.0, 20.0, 45.0, 60.0, 90.0, 135.0])
def test_lath_ids_width_within_5_percent(angle_deg):
    ps = 0.05
    ids = lath_field((200, 200), angle_deg, 10.0)
    table = lath_widths(ids, pixel_size_um=ps)
    assert len(table) > 200
    summary = lath_width_summary(table)
    assert summary["mean_um"] == pytest.approx(10.0 * ps, rel=0.05)
    assert summary["median_um"] == pytest.approx(10.0 * ps, rel=0.05)
    wrapped = (table["lath_angle_deg"] - ((angle_deg + 90) % 180 - 90) + 90) % 180 - 90
    assert np.median(np.abs(wrapped)) < 2.0


@pytest.mark.parametrize("angle_deg", [10.0, 75.0, 120.0])
def test_lath_mask_with_boundaries(angle_deg):
    mask = lath_field((220, 220), angle_deg, 16.0, width_px=13.0)
    table = lath_widths(mask, pixel_size_um=1.0)
    assert lath_width_summary(table)["mean_um"] == pytest.approx(13.0, rel=0.05)


def test_class_label_map_and_two_widths_number_weighted():
    # Period 24 px: a 6 px lath, a boundary pixel, a 16 px lath, a boundary pixel (class 2).
    # Number-weighted mean 11; the point-sampled mean is biased to the wide laths.
    pos = (np.arange(121)[:, None].repeat(80, 1) + 23) % 24  # boundary rows at 0 and 120: 5 laths each
    labels = np.where((pos == 6) | (pos == 23), 2, 1).astype(np.uint8)
    # spacing_px=1: every pixel is an intercept point, no aliasing with the 24 px period.
    table = lath_widths(labels, pixel_size_um=1.0, lath_class=1, integration_sigma_px=12.0, spacing_px=1)
    summary = lath_width_summary(table)
    widths = np.unique(np.round(table["width_um"]))
    assert set(widths) == {6.0, 16.0}
    assert summary["mean_um"] == pytest.approx(11.0, rel=0.05)
    assert summary["mean_point_sampled_um"] > summary["mean_um"]


def test_orientation_of_stripes():
    ids = lath_field((128, 128), 30.0, 8.0)
    angle, coherence = lath_orientation(ids)
    assert np.median(angle[30:-30, 30:-30]) == pytest.approx(30.0, abs=1.0)
    assert np.median(coherence[30:-30, 30:-30]) > 0.9


def test_bad_options():
    with pytest.raises(ConfigError):
        lath_widths(np.ones((10, 10), bool), pixel_size_um=1.0, step_px=0)
    with pytest.raises(ConfigError, match="pixel_size_um"):
        lath_widths(np.ones((10, 10), bool))


@pytest.mark.parametrize("angle_deg", [0.0, 35.0, 100.0])
def test_lath_widths_from_ebsd(angle_deg):
    from metallo.ebsd import ebsd_dataset, quat_to_euler, random_quaternions

    step = 0.1
    ids = lath_field((120, 120), angle_deg, 9.0)
    ids -= ids.min()
    # One random orientation per lath; neighbours differ by far more than 5°.
    quats = random_quaternions(int(ids.max()) + 1, rng=7)
    euler = quat_to_euler(quats[ids])
    phase = np.zeros(ids.shape, np.int16)
    ebsd = ebsd_dataset(euler, phase, step_um=step,
                        phases=[{"id": 0, "name": "ferrite", "symmetry": "m-3m", "lattice": [2.87, 2.87, 2.87, 90, 90, 90]}])
    table = lath_widths(ebsd, threshold_deg=5.0)
    assert lath_width_summary(table)["mean_um"] == pytest.approx(9.0 * step, rel=0.05)


def test_hexagonal_ebsd_grid_is_refused():
    from metallo.ebsd import ebsd_dataset

    bcc = {"id": 0, "name": "ferrite", "symmetry": "m-3m", "lattice": [2.87, 2.87, 2.87, 90, 90, 90]}
    ebsd = ebsd_dataset(np.zeros((6, 6, 3)), np.zeros((6, 6), np.int16), step_um=0.1, phases=[bcc], grid="hexagonal")
    with pytest.raises(ConfigError, match="resample_to_square"):
        lath_widths(ebsd)


@pytest.mark.parametrize(("axis", "n_laths"), [("y", 2), ("z", 1)])
def test_lath_ids_follow_the_maps_monoclinic_setting(axis, n_laths):
    """Two pixels 180 deg apart about crystal z: one lath when 2/m's two-fold is z, two when it
    is y. The lath ids used the bare Laue group and ignored a map's monoclinic_axis before."""
    from metallo.ebsd import ebsd_dataset
    from metallo.quantify import lath_boundaries_from_ebsd

    euler = np.array([[[0.3, 0.6, 0.2], [0.3, 0.6, 0.2 + np.pi]]])
    ebsd = ebsd_dataset(euler, np.ones((1, 2), np.int16), step_um=1.0,
                        phases=[{"id": 1, "name": "glaucophane", "symmetry": "2/m"}])
    ids = lath_boundaries_from_ebsd(ebsd.assign_attrs(monoclinic_axis=axis))
    assert len(np.unique(ids)) == n_laths


def test_the_report_gives_the_number_weighted_lath_width(tmp_path):
    """Laths 4 and 12 px wide in turn: as many of each, so the mean lath is 8 px wide, while grid
    points land in the wide ones three times as often (point-sampled mean 10 px)."""
    import json

    from metallo import names
    from metallo._xarray import image_dataarray
    from metallo.quantify import quantify_step
    from metallo.report import report_sections
    from metallo.specimen import Specimen

    period = [1] * 4 + [0] + [1] * 12 + [0]
    row = np.array(period * 12, np.uint8)
    lab = np.repeat(row[None, :], 160, axis=0)
    labels = image_dataarray(lab, pixel_size_um=0.1, name=names.LABELS, attrs={
        "classes": json.dumps(["ferrite", "lath_bainite"]), "ignore_index": 255, "rules": "{}"})
    spec = Specimen.create(tmp_path / "l.h5", specimen_id="l")
    spec.add(names.annotation("laths"), labels, step="test")
    # Named: its lath_bainite regions are single laths, separated by one-pixel ferrite lines.
    quantify_step(spec, what=["laths"], lath_class="lath_bainite")
    section = {s.key: s for s in report_sections(spec, {})}[f"{names.LATHS}:{names.annotation('laths')}"]
    summary = next(b for b in section.blocks if b.kind == "table")
    header = [c for c in summary.columns]
    values = dict(zip(header, [c.text for c in summary.rows[0]], strict=True))
    assert float(values["mean (µm)"]) == pytest.approx(0.8, abs=0.03)
    assert float(values["point-sampled mean (µm)"]) == pytest.approx(1.0, abs=0.05)


def test_a_phase_map_is_not_measured_as_laths_unless_named(tmp_path):
    """metallo demo's true lath_bainite map holds blocks of laths drawn 0.5-1.0 µm wide: the widths
    of its regions (median 11.5 µm) were reported as lath widths. A phase map's region is no lath:
    it is measured only when its class is named as one, and a map of laths is found by its name."""
    import json

    from metallo import names
    from metallo._xarray import image_dataarray
    from metallo.quantify import lath_width_summary, quantify_step
    from metallo.specimen import Specimen
    from metallo.synth import add_synthetic_specimen

    spec = Specimen.create(tmp_path / "d.h5", specimen_id="d")
    add_synthetic_specimen(spec, 0, ebsd_shape=(60, 60))
    truth = names.annotation("truth_lom")
    quantify_step(spec, what=["laths"], labels=[truth])
    assert names.quantity(truth, names.LATHS) not in spec
    quantify_step(spec, what=["laths"], labels=[truth], lath_class="lath_bainite")
    blocks = lath_width_summary(spec.table(names.quantity(truth, names.LATHS)))
    assert blocks["median_um"] > 5.0  # block widths, ten times the laths: why it is not the default
    # A lath mask (laths 6 px wide, one-pixel boundaries) is measured by its class name.
    row = np.array(([1] * 6 + [0]) * 20, np.uint8)
    mask = image_dataarray(np.repeat(row[None, :], 100, axis=0), pixel_size_um=0.1, name=names.LABELS,
                           attrs={"classes": json.dumps(["boundary", "lath"]), "ignore_index": 255, "rules": "{}"})
    spec.add(names.annotation("laths"), mask, step="test")
    quantify_step(spec, what=["laths"], labels=[names.annotation("laths")])
    laths = lath_width_summary(spec.table(names.quantity(names.annotation("laths"), names.LATHS)))
    assert laths["median_um"] == pytest.approx(0.6, abs=0.05)


def test_laths_at_the_maps_resolution_are_flagged():
    """Laths 2 px wide (lath ids, no boundary pixels; measured 2.25 px) are no width measurement: the record fails
    with the share at resolution; 10 px laths pass. Known widths: 2 and 10 px."""
    from metallo.quantify import lath_width_quality

    thin = lath_widths(lath_field((200, 200), 30.0, 2.0), pixel_size_um=0.1)
    with pytest.warns(UserWarning, match="at the resolution of the map"):
        record = lath_width_quality(thin, 0.1, what="thin")
    assert not record["passed"] and record["share_at_resolution"] > 0.5  # 2.25 px, or 3.25 px across the 30 deg slant
    wide = lath_widths(lath_field((200, 200), 30.0, 10.0), pixel_size_um=0.1)
    record = lath_width_quality(wide, 0.1, what="wide")
    assert record["passed"] and record["share_at_resolution"] < 0.05


@pytest.mark.shared_data
def test_the_real_martensite_laths_are_flagged_at_resolution(shared_file, tmp_path):
    """The M1700 crop (0.1 µm step): its lath intercepts gave a number-weighted median of 0.125 µm,
    1.25 steps, printed as the lath width. 57 % of the laths (number-weighted) are one or two points
    across: the quantify step's record now fails and `metallo quantify` says NOT RELIABLE."""
    from typer.testing import CliRunner

    from metallo import names
    from metallo.cli import app
    from metallo.specimen import Specimen

    out = tmp_path / "m.h5"
    runner = CliRunner()
    parent = runner.invoke(app, ["parent", str(shared_file("ebsd_martensite_pag/byu_M1700_martensite_cropped_gf1.txt")),
                                 "--specimen", str(out)])
    assert parent.exit_code == 0, parent.output
    result = runner.invoke(app, ["quantify", str(out), "--what", "laths", "--out", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.strip().startswith("apparent width:"))
    assert "NOT RELIABLE" in line and "at the resolution of the map" in line
    from metallo._step import quality_checks

    checks = quality_checks(Specimen.open(out))
    node = names.quantity(names.ebsd("map"), names.LATHS)
    assert checks[node]["passed"] is False
