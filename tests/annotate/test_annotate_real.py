"""The phase preset on a real two-phase EBSD map (super duplex stainless steel, orix-data)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metallo.annotate import fraction_table, from_ebsd
from metallo.io import read_ebsd


@pytest.mark.shared_data
def test_phase_preset_fractions_equal_the_phase_column(shared_file):
    ebsd = read_ebsd(shared_file("ebsd_ang/sdss_ferrite_austenite.ang"))
    mask = from_ebsd(ebsd, rules="phase")
    phases = json.loads(ebsd.attrs["phases"])
    assert json.loads(mask.attrs["classes"]) == [p["name"] for p in phases]
    phase = ebsd["phase"].values
    labels = mask.values
    indexed = phase >= 0
    # Every indexed point is labelled (one-pixel grains kept, no clean-up, no band) ...
    assert (labels[indexed] != 255).all()
    table = fraction_table(mask)
    for k, p in enumerate(phases):
        expected = np.sum(phase == p["id"]) / np.sum(indexed)
        assert table.loc[p["name"], "ebsd_fraction"] == pytest.approx(expected, abs=1e-12)
        # ... with its own phase, point by point.
        np.testing.assert_array_equal(labels == k, phase == p["id"])
    # SOURCE.md: ferrite 6,043 and austenite 5,657 of 11,700 points.
    ferrite = next(k for k, p in enumerate(phases) if "ferrite" in p["name"])
    assert np.sum(labels == ferrite) == 6043


@pytest.mark.shared_data
def test_lath_bainite_preset_runs_on_real_bcc_iron(shared_file):
    with pytest.warns(UserWarning, match="using the coordinates"):  # its header lies (SOURCE.md)
        ebsd = read_ebsd(shared_file("ebsd_ang/mtex_3dData_S00.ANG"))
    mask = from_ebsd(ebsd, rules="lath_bainite")
    thresholds = json.loads(mask.attrs["thresholds"])
    assert thresholds["gos"]["value"] == 2.0 and thresholds["kam_mean"]["value"] == 0.6
    assert mask.shape == ebsd["phase"].shape
    assert set(np.unique(mask.values)) <= {0, 1, 255}
    # Points whose CI is below 0.1 are never labelled.
    assert (mask.values[ebsd["ci"].values < 0.1] == 255).all()


@pytest.mark.shared_data
def test_lath_bainite_preset_on_a_duplex_map_keeps_the_austenite_apart(shared_file):
    """Super duplex steel, 48.4 % austenite: the preset had labelled 87.6 % of it polygonal
    ferrite, austenite included. The austenite is its own class now, its phase point for point."""
    ebsd = read_ebsd(shared_file("ebsd_ang/sdss_ferrite_austenite.ang"))
    with pytest.warns(UserWarning, match=r"this map also holds austenite/austenite \(m-3m, a = 3\.595 Å; 48\.4 %"):
        mask = from_ebsd(ebsd, rules="lath_bainite")
    classes = json.loads(mask.attrs["classes"])
    assert classes == ["polygonal_ferrite", "lath_bainite", "austenite/austenite"]
    labels, phase = mask.values, ebsd["phase"].values
    austenite = next(p["id"] for p in json.loads(ebsd.attrs["phases"]) if p["name"].startswith("austenite"))
    labelled = labels != 255
    # (The clean-up fills one one-point hole of another class: 1 of 9,092 labelled points.)
    assert ((labels[labelled] == 2) != (phase[labelled] == austenite)).sum() <= 2
    table = fraction_table(mask)
    assert table.loc["austenite/austenite", "ebsd_fraction"] == pytest.approx(0.48, abs=0.03)
