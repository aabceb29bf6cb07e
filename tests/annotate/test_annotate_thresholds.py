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
