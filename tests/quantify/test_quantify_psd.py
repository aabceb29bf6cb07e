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
    with pytest.raises(ConfigError, match=">= 0"):
        lognormal_fit([1.0, -2.0])


def test_lognormal_fit_of_a_sample_cut_at_a_minimum_size():
    # Median 1 µm, sigma 0.5; particles below 1.3 µm left out (70 % of them), as a minimum area does.
    sizes = np.exp(np.random.default_rng(0).normal(0.0, 0.5, 20000))
    kept = sizes[sizes >= 1.3]
    plain = lognormal_fit(kept)
    assert plain["median_um"] > 1.7 and plain["sigma"] < 0.26  # the cut sample alone misleads
    fit = lognormal_fit(kept, truncated_below_um=1.3)
    assert fit["median_um"] == pytest.approx(1.0, abs=0.05) and fit["sigma"] == pytest.approx(0.5, abs=0.03)
    assert fit["truncated_below_um"] == 1.3 and np.isnan(plain["truncated_below_um"])
    with pytest.raises(ConfigError, match="below truncated_below_um"):
        lognormal_fit(sizes, truncated_below_um=1.3)


def test_the_quantify_step_keeps_the_fit_of_its_psd(tmp_path, disks):
    import json

    from metallo import names
    from metallo._xarray import image_dataarray
    from metallo.quantify import quantify_step
    from metallo.specimen import Specimen

    rng = np.random.default_rng(2)
    centres = [(20 + 40 * (k // 8), 20 + 40 * (k % 8)) for k in range(64)]
    radii = np.exp(rng.normal(np.log(6.0), 0.25, 64))
    mask = (disks((330, 330), centres, radii) > 0).astype(np.uint8)
    labels = image_dataarray(mask, pixel_size_um=0.1, name=names.LABELS, attrs={
        "classes": json.dumps(["ferrite", "particle"]), "ignore_index": 255, "rules": "{}"})
    spec = Specimen.create(tmp_path / "p.h5", specimen_id="p")
    spec.add(names.annotation("particles"), labels, step="test")
    quantify_step(spec, what=["particles"], min_area_um2=0.3)
    psd = names.quantity(names.annotation("particles"), names.PSD)
    fit = json.loads(spec.describe(psd)["attrs"]["parameters"])["lognormal"]
    assert fit["median_um"] == pytest.approx(2 * 0.6, rel=0.1)  # ECD of disks of median radius 6 px at 0.1 µm
    assert fit["truncated_below_um"] == pytest.approx(2 * np.sqrt(0.3 / np.pi))
    from metallo.report import report_sections

    section = {s.key: s for s in report_sections(spec, {})}[f"{names.PARTICLES}:{names.annotation('particles')}"]
    assert any("Log-normal fit" in str(b) and "truncated below" in str(b) for b in section.blocks)


def test_negative_and_zero_sizes_are_refused_with_what_is_wrong():
    # A negative size had been binned (a bin from -1 to 0.33 µm) and the log-normal fit said
    # "needs at least 2 positive sizes; got 3" of a sample that held 2 positive sizes.
    with pytest.raises(ConfigError, match=r"sizes must be >= 0 µm; got 1 negative \(smallest -1\)"):
        size_distribution(np.array([-1.0, 2.0, 3.0]))
    with pytest.raises(ConfigError, match="sizes must be >= 0"):
        lognormal_fit(np.array([-1.0, 2.0, 3.0]))
    with pytest.raises(ConfigError, match="all positive .*got 3, 1 of them 0"):
        lognormal_fit(np.array([0.0, 2.0, 3.0]))
    assert size_distribution(np.array([0.0, 2.0]), bins=[0, 1, 3])["count"].tolist() == [1.0, 1.0]


def test_weighted_quantile_checks_its_arguments():
    from metallo.quantify import weighted_quantile

    assert weighted_quantile([1.0, 2.0, 3.0], [1.0, 1.0, 2.0], 0.5) == 2.0
    # Arguments in the wrong order (q where the weights go) had raised numpy's IndexError.
    with pytest.raises(ConfigError, match=r"1 weights for 3 values \(arguments: values, weights, q\)"):
        weighted_quantile([1.0, 2.0, 3.0], 0.5, [1.0, 1.0, 1.0])
    with pytest.raises(ConfigError, match="q must be in"):
        weighted_quantile([1.0, 2.0], [1.0, 1.0], 50)
    with pytest.raises(ConfigError, match="weights must be >= 0"):
        weighted_quantile([1.0, 2.0], [1.0, np.nan], 0.5)
