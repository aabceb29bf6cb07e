"""Phase fractions per field and the E562-style confidence interval (coverage by simulation)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from scipy.stats import t as student_t

from metallo.errors import ConfigError
from metallo.quantify import phase_fraction_ci, phase_fractions


def test_known_fractions_with_ignore():
    labels = np.zeros((10, 10), np.uint8)
    labels[:, 6:] = 1
    labels[:3, :2] = 2
    labels[9, :] = 255
    table = phase_fractions(labels, classes=["ferrite", "bainite", "martensite"])
    counts = {"ferrite": 6 * 9 - 6, "bainite": 4 * 9, "martensite": 6}
    assert table["class"].tolist() == ["ferrite", "bainite", "martensite"]
    assert table["n_pixels"].tolist() == list(counts.values())
    np.testing.assert_allclose(table["fraction"], np.array(list(counts.values())) / 90)


def test_classes_from_dataarray_attrs():
    da = xr.DataArray(np.array([[0, 1], [1, 1]], np.uint8), dims=("y", "x"),
                      attrs={"classes": json.dumps(["matrix", "particle"]), "ignore_index": 255})
    table = phase_fractions(da)
    assert table.set_index("class").loc["particle", "fraction"] == pytest.approx(0.75)


def test_label_outside_classes_raises():
    with pytest.raises(ConfigError, match="outside"):
        phase_fractions(np.array([[0, 3]]), classes=["a", "b"])
    with pytest.raises(ConfigError, match="ignore_index"):
        phase_fractions(np.full((3, 3), 255))


def test_ci_formula_on_known_fields():
    fracs = [0.2, 0.3, 0.25, 0.35]
    fields = []
    for f in fracs:
        lab = np.zeros((20, 20), np.uint8)
        lab.ravel()[: int(f * 400)] = 1
        fields.append(lab)
    table = phase_fraction_ci(fields, classes=["a", "b"]).set_index("class")
    mean, s = np.mean(fracs), np.std(fracs, ddof=1)
    half = student_t.ppf(0.975, 3) * s / 2
    assert table.loc["b", "mean"] == pytest.approx(mean)
    assert table.loc["b", "std"] == pytest.approx(s)
    assert table.loc["b", "ci_halfwidth"] == pytest.approx(half)
    assert table.loc["b", "relative_accuracy_pct"] == pytest.approx(half / mean * 100)
    assert table.loc["a", "mean"] == pytest.approx(1 - mean)


def test_ci_coverage_is_about_95_percent():
    # Fields of 8x8 blocks of 4x4 px, each block phase 1 with probability p: spatially
    # correlated fields whose expected fraction is exactly p.
    rng = np.random.default_rng(2024)
    p, n_fields, repeats = 0.3, 8, 1500
    blocks = rng.random((repeats, n_fields, 8, 8)) < p
    fields = blocks.repeat(4, axis=2).repeat(4, axis=3).astype(np.uint8)
    covered = 0
    for r in range(repeats):
        row = phase_fraction_ci(list(fields[r]), classes=["matrix", "phase"]).iloc[1]
        covered += row["ci_low"] <= p <= row["ci_high"]
    assert 0.92 <= covered / repeats <= 0.98


def test_ci_needs_two_fields():
    with pytest.raises(ConfigError, match="at least 2"):
        phase_fraction_ci([np.zeros((3, 3), int)])


def test_fields_of_unequal_labelled_area_weigh_by_their_pixels():
    # A whole field of class 1 and a field with 25 of its 100 pixels labelled, all class 0 (the
    # edge of an EBSD-informed annotation): the fraction of the labelled pixels is 100/125.
    full = np.ones((10, 10), int)
    edge = np.full((10, 10), 255)
    edge[:5, :5] = 0
    table = phase_fraction_ci([full, edge], classes=["a", "b"]).set_index("class")
    assert table.loc["b", "mean"] == pytest.approx(0.8)
    # Ratio estimator: s^2/n = n/(n-1) sum (w_i/W)^2 (P_i - P)^2 = 2 (0.64 * 0.04 + 0.04 * 0.64)
    assert table.loc["b", "std"] / np.sqrt(2) == pytest.approx(np.sqrt(2 * (0.64 * 0.04 + 0.04 * 0.64)))
    equal = phase_fraction_ci([full, edge], classes=["a", "b"], weighting="equal").set_index("class")
    assert equal.loc["b", "mean"] == pytest.approx(0.5) and equal.loc["b", "std"] == pytest.approx(np.sqrt(0.5))
    with pytest.raises(ConfigError, match="weighting"):
        phase_fraction_ci([full, edge], weighting="area")


def test_phase_fraction_ci_of_one_label_map_says_to_pass_a_list():
    from metallo.errors import ConfigError
    from metallo.quantify import phase_fraction_ci

    labels = np.zeros((40, 50), int)
    with pytest.raises(ConfigError, match=r"sequence of field label maps .*shape \(40, 50\).*phase_fractions for one field"):
        phase_fraction_ci(labels)
    # A stack of fields (n, y, x) is a sequence of fields, as before.
    stack = np.stack([labels, 1 - labels])
    assert phase_fraction_ci(stack)["mean"].tolist() == [0.5, 0.5]
