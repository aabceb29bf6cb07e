"""Grain-level quantities gathered per grain, on maps whose per-grain answers are known."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from metallo.annotate import grain_quantities, quantity_names
from metallo.errors import ConfigError, UnknownNameError


def test_pixel_means_and_table_columns(known_map):
    names = ["iq_mean", "ci_mean", "kam_mean", "kam_median", "gos", "area_um2"]
    table = grain_quantities(known_map.ebsd, grains=known_map.grains, derived=known_map.derived, names=names)
    np.testing.assert_allclose(table["iq_mean"], np.where(known_map.bainite, 0.3, 0.8), atol=1e-6)
    np.testing.assert_allclose(table["kam_mean"], np.where(known_map.bainite, 1.0, 0.2), atol=0.01)
    np.testing.assert_allclose(table["kam_median"], np.where(known_map.bainite, 1.0, 0.2), atol=0.01)
    np.testing.assert_array_equal(table["gos"], np.where(known_map.bainite, 3.0, 0.4))
    assert (table["n_pixels"] == 100).all() and (table["area_um2"] == 25.0).all()
    ci = table["ci_mean"].to_numpy()
    assert ci[0] == pytest.approx((99 * 0.9 + 0.05) / 100) and ci[1] == pytest.approx(0.9)


def test_boundary_density_is_boundary_length_per_area(known_map):
    boundaries = np.zeros(known_map.ids.shape, np.uint8)
    boundaries[:, 9::10] = 2  # the last column of every 10 x 10 grain: 10 points
    derived = xr.Dataset({"boundaries": (("y", "x"), boundaries)})
    table = grain_quantities(known_map.ebsd, grains=known_map.grains, derived=derived, names=["boundary_density"])
    # 10 points x 0.5 µm = 5 µm of boundary in 25 µm² = 0.2 µm⁻¹.
    np.testing.assert_allclose(table["boundary_density"], 0.2)


def test_derived_kam_is_reused_only_with_matching_parameters(known_map):
    derived = known_map.derived.copy()
    derived["kam"].attrs["parameters"] = json.dumps({"order": 1, "max_deg": 5.0})
    reused = grain_quantities(known_map.ebsd, grains=known_map.grains, derived=derived, names=["kam_mean"],
                              kam_options={"order": 1})
    assert reused["kam_mean"].max() > 0.9
    # Asked for 3rd order: recomputed by metallo.ebsd.kam on the map, whose orientations are
    # all identical, so the KAM is exactly zero.
    fresh = grain_quantities(known_map.ebsd, grains=known_map.grains, derived=derived, names=["kam_mean"],
                             kam_options={"order": 3})
    np.testing.assert_allclose(fresh["kam_mean"], 0.0, atol=1e-6)


def test_a_derived_kam_of_another_kernel_is_not_reused(known_map):
    derived = known_map.derived.copy()
    derived["kam"].attrs["parameters"] = json.dumps({"order": 3, "max_deg": 5.0, "kernel": "mtex"})
    # The rules' default kernel is the ring: the stored MTEX-kernel map (its values here are
    # the fixture's) is recomputed, and the identical orientations give exactly zero.
    fresh = grain_quantities(known_map.ebsd, grains=known_map.grains, derived=derived, names=["kam_mean"],
                             kam_options={"order": 3})
    np.testing.assert_allclose(fresh["kam_mean"], 0.0, atol=1e-6)
    reused = grain_quantities(known_map.ebsd, grains=known_map.grains, derived=derived, names=["kam_mean"],
                              kam_options={"order": 3, "kernel": "mtex"})
    assert reused["kam_mean"].max() > 0.9


def test_unknown_or_unavailable_quantities(known_map):
    with pytest.raises(UnknownNameError, match="kam_mean"):
        grain_quantities(known_map.ebsd, grains=known_map.grains, names=["kam"])
    with pytest.raises(ConfigError, match="'fit'"):
        grain_quantities(known_map.ebsd, grains=known_map.grains, names=["fit_mean"])
    with pytest.raises(ConfigError, match="gam_deg"):
        grain_quantities(known_map.ebsd, grains=known_map.grains, names=["gam"])


def test_reconstructs_grains_with_metallo_ebsd(synth_specimen):
    table = grain_quantities(synth_specimen.ebsd, grain_options={"tolerance_deg": 5.0})
    parent = {"parent_variants", "parent_packets", "parent_fit", "parent_fraction", "or_boundary_fraction"}
    # The map has iq, ci and fit; parent quantities (a reconstruction) are computed by name only.
    assert set(table.columns) == {"n_pixels", *quantity_names()} - parent
    assert (table["phase"] == 0).all() and (table["aspect_ratio"] >= 1).all()
    # Ferrite grains are strain-free (GOS ~ the 0.08° noise), bainite blocks carry gradients.
    gos = np.sort(table["gos"].to_numpy())
    assert gos[0] < 0.5 and gos[-1] > 2.0
    assert table["n_pixels"].sum() <= synth_specimen.ebsd["phase"].size
