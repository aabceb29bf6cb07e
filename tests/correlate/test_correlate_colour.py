"""Colour images: a colour-coded map is made grey along the direction its colours differ most."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from metallo.correlate import register
from metallo.correlate._evaluate import load_point_pair, tre
from metallo.correlate._register import _colour_to_grey, _prepare

CONI = "correlative_ebsd_bse_coni/Slice381_"


def test_equal_channels_give_exactly_their_mean():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (40, 50)).astype(np.uint8)
    out, how = _colour_to_grey(np.repeat(grey[..., None], 3, axis=2))
    np.testing.assert_array_equal(out, grey.astype(np.float64))
    assert "equal" in how
    # Grey + alpha: the grey channel, the alpha dropped.
    out, how = _colour_to_grey(np.stack([grey, np.full_like(grey, 255)], axis=2))
    np.testing.assert_array_equal(out, grey.astype(np.float64))
    assert "alpha" in how


def test_colours_of_equal_mean_stay_apart_and_black_stays_darkest():
    # Two grains of equal channel mean (red and green, 100 each on average): the mean makes them
    # one grey level and loses their boundary; the projection keeps them apart.
    img = np.zeros((20, 30, 3), np.uint8)
    img[:, 10:20] = (200, 50, 50)
    img[:, 20:] = (50, 200, 50)
    assert img[:, 10:20].mean() == img[:, 20:].mean()
    out, how = _colour_to_grey(img)
    left, right, black = out[0, 15], out[0, 25], out[0, 5]
    assert abs(left - right) > 0.5 * (max(left, right) - black)
    assert black == out.min() == 0.0
    assert "principal component" in how


def test_the_grey_rises_with_brightness():
    # A colour photo of grey structure (a warm tint): its grey follows its brightness.
    rng = np.random.default_rng(1)
    level = rng.uniform(0.2, 1.0, (30, 30))
    img = np.stack([level * 240, level * 200 + 5, level * 150 + 10], axis=2)
    out, _ = _colour_to_grey(img)
    assert np.corrcoef(out.ravel(), level.ravel())[0, 1] > 0.999


def test_nan_colours_stay_unmeasured():
    img = np.random.default_rng(2).uniform(0, 1, (32, 32, 3))
    img[:4, :4] = np.nan
    out, _ = _colour_to_grey(img)
    assert np.isnan(out[:4, :4]).all() and np.isfinite(out[4:]).all()
    p = _prepare(img, "moving")
    assert p.grey_from is not None and "principal component" in p.grey_from


@pytest.mark.slow
def test_an_ipf_coloured_map_registers_onto_its_micrograph():
    """The synthetic specimen's IPF map onto its LOM (seed 1): the mean of its channels ended
    217 px off (failed); along the first principal component it is about a pixel off."""
    from metallo.ebsd._ipf import ipf_colors
    from metallo.synth import make_specimen

    spec = make_specimen(1)
    iq = spec.ebsd["iq"]
    rgb = xr.DataArray((ipf_colors(spec.ebsd) * 255).astype(np.uint8), dims=("y", "x", "channel"),
                       coords={"y": iq.y, "x": iq.x})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = register(spec.lom, rgb)
    err = spec.registration_error_px(reg, every=4)
    assert np.median(err) <= 1.5
    assert np.percentile(err, 95) <= 3.0
    assert not reg.quality["failed"]
    assert "principal component" in reg.quality["grey_from"]["moving"]


@pytest.mark.slow
def test_slice381_map_in_a_colour_map_registers_as_well_as_its_best_affine(shared_file):
    """Slice381's map rendered with viridis, as map exports often are: with the mean of its
    channels 4.09 / 18.6 px and flagged failed; now 3.09 / 11.4 px, under the best affine through
    the 48 points (5.44 / 12.6) and not flagged."""
    import matplotlib

    pair = load_point_pair(shared_file(CONI + "bse.tif"), shared_file(CONI + "ebsd.tif"),
                           shared_file(CONI + "ctr_pts_bse.txt"), shared_file(CONI + "ctr_pts_ebsd.txt"))
    m = pair.moving.astype(np.float64)
    rgb = (matplotlib.colormaps["viridis"]((m - m.min()) / np.ptp(m))[..., :3] * 255).astype(np.uint8)
    rgb[pair.moving == pair.moving.min()] = 0  # the map's empty points stay black
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = register(pair.fixed, rgb)
    err = tre(reg, pair.moving_yx, pair.fixed_yx)
    assert np.median(err) <= 3.5
    assert np.percentile(err, 95) <= 12.6
    assert not reg.quality["failed"]
