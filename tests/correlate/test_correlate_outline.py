"""The section outline as its own matching channel: known shifts on synthetic sections, the
one-sided outline (a section cut off by one field) left alone, and the real pairs it is for."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from metallo.correlate import register
from metallo.correlate._blocks import outline_matches
from metallo.correlate._evaluate import load_point_pair, tre, tre_stats
from metallo.correlate._structure import outline_image, split_outline

SEARCH = 10


def _section(shape=(120, 160), top=20, bottom=100, left=25, right=140, bulge=0.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lower = bottom + bulge * np.sin(np.pi * (xx - left) / (right - left))
    return (yy >= top) & (yy < lower) & (xx >= left) & (xx < right)


def _match(fixed_mask, moving_mask, *, block=24, stride=8):
    ok = np.ones(fixed_mask.shape, bool)
    f = outline_image(fixed_mask, ok, sigma_px=1.5)
    m = np.pad(outline_image(moving_mask, ok, sigma_px=1.5), SEARCH)
    return outline_matches(f, m, ok, np.pad(ok, SEARCH), block=block, search=SEARCH, stride=stride)


def test_straight_outline_gives_the_normal_shift_only():
    # The moving section is 3 px lower and 2 px to the right: on the top edge only the 3 px
    # across it is measured (the shift along it is not observable there), on the left edge only the 2 px.
    fixed = _section()
    moving = _section(top=23, bottom=103, left=27, right=142)
    c, s, peak, gap = _match(fixed, moving)
    top = np.abs(c[:, 0] - 20) < 1
    left = np.abs(c[:, 1] - 25) < 1
    straight_top = top & (c[:, 1] > 45) & (c[:, 1] < 120)
    straight_left = left & (c[:, 0] > 40) & (c[:, 0] < 80)
    assert straight_top.sum() >= 5 and straight_left.sum() >= 3
    np.testing.assert_allclose(s[straight_top], [[3.0, 0.0]] * int(straight_top.sum()), atol=0.15)
    np.testing.assert_allclose(s[straight_left], [[0.0, 2.0]] * int(straight_left.sum()), atol=0.15)
    assert (peak[straight_top] > 0.9).all() and (gap[straight_top] > 0.3).all()


def test_a_non_rigid_outline_is_followed():
    # The lower edge bulges by up to 6 px in the moving section: the normal shifts follow it.
    fixed = _section()
    moving = _section(bulge=6.0)
    c, s, _, _ = _match(fixed, moving)
    bottom = (np.abs(c[:, 0] - 99) < 1.5) & (c[:, 1] > 45) & (c[:, 1] < 120)
    truth = 6.0 * np.sin(np.pi * (c[bottom, 1] - 25) / 115)
    assert bottom.sum() >= 5
    # A straight block on a curved edge is drawn toward the curve's extreme inside the block
    # (measured: up to 1.6 px at the ends, where the edge is steepest): the shape is followed,
    # the apex is exact.
    assert np.corrcoef(s[bottom, 0], truth)[0, 1] > 0.9
    assert abs(s[bottom, 0].max() - 6.0) < 0.3
    np.testing.assert_allclose(s[bottom, 1], 0.0, atol=1.0)


def test_outline_only_in_one_image_is_not_matched():
    # The moving section runs off the bottom of its field (cut off): the fixed lower outline has
    # no counterpart there and gives no match, the other sides still do.
    fixed = _section()
    moving = _section(bottom=200)
    c, _, peak, gap = _match(fixed, moving)
    # Blocks near the corners see the moving sides run on; they correlate poorly or not distinctly
    # and fail the matcher's acceptance (peak >= 0.3, distinctiveness >= 0.05, as in auto_points).
    c = c[(peak >= 0.3) & (gap >= 0.05)]
    assert len(c) > 10
    assert not ((np.abs(c[:, 0] - 99) < 2) & (c[:, 1] > 40) & (c[:, 1] < 125)).any()


def test_split_outline_keeps_interior_structure_and_drops_a_dark_band_that_is_no_outline():
    from metallo.correlate import structure_image

    img = np.zeros((120, 160))
    img[20:120, 25:140] = 0.9  # a section cut off by the bottom of the field
    img[90:120, 25:140] = 0.55  # a darker band inside it (EBSD pattern-quality drift)
    img[50:54, 70:74] = 0.1  # a pore
    ok = np.ones_like(img, bool)
    s, ridge = split_outline(structure_image(img, ok), img, ok, sigma_px=1.5)
    assert ridge is not None and ridge[20, 80] == pytest.approx(1.0)
    assert ridge[90, 80] < 0.01  # the band edge is no outline
    assert s[52, 70] > 0 and s[20, 80] == 0


CONI = "correlative_ebsd_bse_coni/Slice381_"
TFS = "correlative_ebsd_bse_more/Slice8_TFS_"


@pytest.mark.slow
def test_real_pairs_use_the_outline_channel(shared_file):
    coni = load_point_pair(shared_file(CONI + "bse.tif"), shared_file(CONI + "ebsd.tif"),
                           shared_file(CONI + "ctr_pts_bse.txt"), shared_file(CONI + "ctr_pts_ebsd.txt"))
    tfs = load_point_pair(shared_file(TFS + "bse_resized.png"), shared_file(TFS + "ebsd.png"),
                          shared_file(TFS + "ctr_pts_bse_resized.txt"), shared_file(TFS + "ctr_pts_ebsd.txt"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg_coni = register(coni.fixed, coni.moving)
        reg_tfs = register(tfs.fixed, tfs.moving)
    for reg in (reg_coni, reg_tfs):
        assert reg.quality["control_points"]["pass1_outline_candidates"] > 50
    coni_err = tre_stats(tre(reg_coni, coni.moving_yx, coni.fixed_yx))
    tfs_err = tre_stats(tre(reg_tfs, tfs.moving_yx, tfs.fixed_yx))
    # Measured: Slice381 median 2.33 px (issue target <= 2.5 met), p95 13.9 px (target <= 8 NOT
    # met: the cut-off lower edge is still extrapolated). Slice8_TFS median 8.94 px (was 12.9 with
    # the spline rejected; the best affine through its points gives 7.7: NOT met).
    assert coni_err["median"] <= 2.45
    assert tfs_err["median"] <= 9.5
    assert reg_tfs.quality["gate"] == "kept"
