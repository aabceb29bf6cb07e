"""PSD tables, log-normal fit and the two-sample KS test (checked against scipy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from metallo.errors import ConfigError
from metallo.quantify import (
    ks_consistency,
    ks_test,
    lognormal_fit,
    size_distribution,
    size_ecdf,
)


@pytest.mark.parametrize("n_a,n_b,shift", [(30, 40, 0.0), (200, 150, 0.3), (1000, 3000, 0.05), (12, 12, 1.0)])
def test_ks_matches_scipy(n_a, n_b, shift):
    rng = np.random.default_rng(n_a + n_b)
    a = rng.lognormal(0.0, 0.4, n_a)
    b = rng.lognormal(shift, 0.4, n_b)
    ours = ks_test(a, b)
    ref = ks_2samp(a, b)
    assert ours.statistic == pytest.approx(ref.statistic, abs=1e-12)
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)
    assert ours.consistent == (ref.pvalue >= 0.05)
    assert (ours.n_a, ours.n_b) == (n_a, n_b)


def test_ks_on_particle_tables_uses_column():
    a = pd.DataFrame({"ecd_um": [1.0, 2.0, 3.0], "area_um2": [9.0, 9.0, 9.0]})
    b = pd.DataFrame({"ecd_um": [1.5, 2.5, 3.5], "area_um2": [1.0, 1.0, 1.0]})
    assert ks_test(a, b).statistic == pytest.approx(ks_2samp([1, 2, 3], [1.5, 2.5, 3.5]).statistic)
    assert ks_test(a, b, column="area_um2").statistic == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="no column"):
        ks_test(a, b, column="feret")


def test_ks_consistency_fraction():
    rng = np.random.default_rng(0)
    ref = rng.lognormal(0, 0.3, 300)
    pairs = {
        "same": (ref, rng.lognormal(0, 0.3, 300)),
        "shifted": (ref, rng.lognormal(0.5, 0.3, 300)),
        "empty": (ref, []),
        "small": (ref, rng.lognormal(0, 0.3, 50)),
    }
    table = ks_consistency(pairs)
    assert table.loc["shifted", "consistent"] == np.False_
    assert table.loc["empty", "consistent"] == np.False_
    assert table.loc["same", "pvalue"] == pytest.approx(ks_2samp(*pairs["same"]).pvalue)
    assert table.attrs["fraction_consistent"] == pytest.approx(table["consistent"].mean())


def test_lognormal_fit_recovers_parameters():
    rng = np.random.default_rng(5)
    sizes = rng.lognormal(np.log(0.4), 0.25, 50_000)
    fit = lognormal_fit(sizes)
    assert fit["median_um"] == pytest.approx(0.4, rel=0.01)
    assert fit["sigma"] == pytest.approx(0.25, rel=0.02)
    assert fit["mean_um"] == pytest.approx(0.4 * np.exp(0.25**2 / 2), rel=0.01)


def test_histogram_and_ecdf():
    sizes = np.array([0.5, 1.0, 1.0, 2.0, 3.5])
    hist = size_distribution(sizes, bins=[0, 1, 2, 4])
    assert hist["count"].tolist() == [1.0, 2.0, 2.0]
    assert hist["cumulative"].iloc[-1] == pytest.approx(1.0)
    np.testing.assert_allclose((hist["density"] * (hist["bin_right_um"] - hist["bin_left_um"])).sum(), 1.0)
    table = pd.DataFrame({"ecd_um": sizes, "weight": [1, 1, 1, 1, 4.0]})
    weighted = size_distribution(table, bins=[0, 1, 2, 4], weights="weight")
    assert weighted["count"].tolist() == [1.0, 2.0, 5.0]
    logh = size_distribution(sizes, bins=4, log_bins=True)
    np.testing.assert_allclose(logh["bin_right_um"] / logh["bin_left_um"], 7 ** 0.25)
    ecdf = size_ecdf(sizes)
    assert ecdf["cdf"].tolist() == [0.2, 0.4, 0.6, 0.8, 1.0]


def test_bad_samples_raise():
    with pytest.raises(ConfigError, match="non-empty"):
        ks_test([], [1.0])
    with pytest.raises(ConfigError, match="positive"):
        lognormal_fit([1.0, -2.0])
