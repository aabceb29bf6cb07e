"""Otsu and two-component GMM thresholds on grain-level distributions with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from metallo.annotate import select_threshold
from metallo.errors import ConfigError, UnknownNameError


def test_gmm_recovers_components_and_equal_posterior_cut():
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(1.0, 0.2, 6000), rng.normal(5.0, 0.2, 4000)]
    result = select_threshold(values, method="gmm")
    np.testing.assert_allclose(result["means"], [1.0, 5.0], atol=0.02)
    np.testing.assert_allclose(result["sigmas"], [0.2, 0.2], atol=0.02)
    np.testing.assert_allclose(result["weights"], [0.6, 0.4], atol=0.01)
    # Equal sigmas: cut = midpoint + sigma^2 ln(w0/w1) / (mu1 - mu0), analytically.
    expected = 3.0 + 0.2**2 * np.log(0.6 / 0.4) / 4.0
    assert result["value"] == pytest.approx(expected, abs=0.02)
    assert result["n"] == 10000


def test_otsu_splits_two_spikes_between_them():
    values = np.r_[np.full(50, 1.0), np.full(50, 3.0)]
    cut = select_threshold(values, method="otsu")["value"]
    assert 1.0 <= cut < 3.0
    assert ((values > cut) == (values == 3.0)).all()


def test_weights_move_the_cut_towards_the_light_population():
    rng = np.random.default_rng(2)
    values = np.r_[rng.normal(1.0, 0.5, 500), rng.normal(4.0, 0.5, 500)]
    heavy_low = np.r_[np.full(500, 10.0), np.ones(500)]
    plain = select_threshold(values, method="gmm")["value"]
    weighted = select_threshold(values, method="gmm", weights=heavy_low)["value"]
    assert weighted > plain


def test_nan_values_are_left_out():
    values = np.array([0.1, 0.2, np.nan, 3.0, 3.1, np.nan])
    result = select_threshold(values, method="otsu")
    assert result["n"] == 4 and 0.2 <= result["value"] < 3.0


def test_bad_input():
    with pytest.raises(ConfigError, match="two distinct"):
        select_threshold(np.ones(5))
    with pytest.raises(UnknownNameError, match="gmm, otsu"):
        select_threshold(np.arange(5.0), method="kmeans")


def test_a_cut_that_splits_off_a_few_grains_is_not_supported():
    # 60 grains of one population and one large outlier (weighted by area, as the rules weigh):
    # Otsu cuts the outlier off, a class of one grain.
    rng = np.random.default_rng(3)
    values = np.r_[rng.normal(0.5, 0.15, 60), 3.0]
    weights = np.r_[np.full(60, 100.0), 900.0]
    result = select_threshold(values, method="otsu", weights=weights)
    assert result["n_above"] == 1 and result["n_below"] == 60 and result["supported"] is False
    assert "leaves 1 of 61 values above it" in result["reason"]
    two = select_threshold(np.r_[rng.normal(0.5, 0.15, 60), rng.normal(3.0, 0.3, 20)], method="otsu")
    assert two["supported"] is True and two["n_above"] == 20 and "reason" not in two


@pytest.mark.shared_data
def test_a_data_driven_gos_cut_on_a_real_map_without_bainite_fails_its_check(shared_file, tmp_path):
    """The shared duplex stainless steel (ferrite + austenite) has no bainite. With ``thresholds:
    {gos: otsu}`` the cut (1.45 deg) leaves one grain above it (GOS 3.0 deg, 885 points), which
    made 7.6 % "lath bainite" without a word; the annotation now fails its check and says why, and
    fractions resting on it are no QC pass."""
    import json
    import warnings

    from metallo import names
    from metallo.annotate import from_ebsd
    from metallo.ebsd import clean
    from metallo.io import read_ebsd
    from metallo.quantify import quantify_step
    from metallo.report import qc_verdict
    from metallo.specimen import Specimen

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ebsd = clean(read_ebsd(shared_file("ebsd_ang/sdss_ferrite_austenite.ang")))
    rules = {"classes": ["polygonal_ferrite", "lath_bainite"], "default": "polygonal_ferrite",
             "rules": {"lath_bainite": {"gos": {"gt": 2.0}}}, "thresholds": {"gos": "otsu"}}
    with pytest.warns(UserWarning, match="splits off individual grains"):
        labels = from_ebsd(ebsd, rules=rules)
    gos = json.loads(labels.attrs["thresholds"])["gos"]
    assert gos["n_above"] == 1 and gos["value"] == pytest.approx(1.45, abs=0.01)
    assert ((labels.values == 1).sum() / (labels.values != 255).sum()) == pytest.approx(0.076, abs=0.002)
    quality = json.loads(labels.attrs[names.QUALITY])
    assert quality[names.PASSED] is False and "gos: the otsu cut" in quality["failure_reasons"][0]
    spec = Specimen.create(tmp_path / "d.h5", specimen_id="d")
    spec.add(names.annotation("bainite"), labels, step=names.STEP_ANNOTATE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantify_step(spec, what=["phases"])
    verdict = qc_verdict(spec, {"lath_bainite": [0.0, 0.2]})
    assert verdict["qc"]["lath_bainite"]["status"] == "pass"  # 7.6 % lies inside the limits...
    assert verdict["qc_rests_on_failed"] == [names.annotation("bainite")] and verdict["qc_passed"] is False
