"""Clean-up (specks, gaps, smoothing), the ignore band and area fractions on built label maps."""

from __future__ import annotations

import numpy as np
import pytest

from metallo.annotate import clean_labels, ignore_band
from metallo.errors import ConfigError


def test_small_islands_take_the_surrounding_class():
    labels = np.zeros((30, 30), np.uint8)
    labels[5:7, 5:7] = 1  # 4 px speck
    labels[15:25, 15:25] = 1  # 100 px region stays
    out = clean_labels(labels, n_classes=2, min_region_px=5)
    assert out[5:7, 5:7].max() == 0
    assert (out[15:25, 15:25] == 1).all()
    assert (out == 1).sum() == 100


def test_fill_holes_fills_gaps_but_keeps_embedded_grains():
    labels = np.ones((30, 30), np.uint8)
    labels[4:8, 4:8] = 255  # unindexed gap inside class 1
    labels[15:22, 15:22] = 0  # an embedded ferrite grain: must stay
    labels[0, :] = 255  # a gap on the map edge is not enclosed: stays
    out = clean_labels(labels, n_classes=2, fill_holes=True)
    assert (out[4:8, 4:8] == 1).all()
    assert (out[15:22, 15:22] == 0).all()
    assert (out[0] == 255).all()


def test_majority_smoothing_removes_a_one_pixel_bump_keeps_ignore():
    labels = np.zeros((20, 20), np.uint8)
    labels[:, 10:] = 1
    labels[5, 10] = 0  # a one-pixel notch in the straight border
    labels[15, 3] = 255
    out = clean_labels(labels, n_classes=2, smooth_px=1)
    expected = np.zeros((20, 20), np.uint8)
    expected[:, 10:] = 1
    expected[15, 3] = 255
    np.testing.assert_array_equal(out, expected)


def test_ignore_band_has_the_requested_width():
    labels = np.zeros((10, 40), np.uint8)
    labels[:, 20:] = 1
    for border in (1, 2, 3):
        out = ignore_band(labels, border_px=border)
        ignored_columns = np.flatnonzero((out == 255).all(axis=0))
        assert ignored_columns.tolist() == list(range(20 - border, 20 + border))
        assert (out == 255).sum() == 10 * 2 * border


def test_ignore_pixels_do_not_make_a_border_and_mask_is_applied():
    labels = np.zeros((10, 10), np.uint8)
    labels[4, 4] = 255
    mask = np.zeros((10, 10), bool)
    mask[0, 0] = True
    out = ignore_band(labels, border_px=2, mask=mask)
    assert (out == 255).sum() == 2
    with pytest.raises(ConfigError, match="shape"):
        ignore_band(labels, mask=np.zeros((3, 3), bool))


def test_labels_must_be_integer_2d():
    with pytest.raises(ConfigError, match="2-D integer"):
        clean_labels(np.zeros((4, 4)), n_classes=2)


def test_cleanup_refuses_classes_it_was_not_told_of_and_negative_widths():
    """A 3-class map cleaned with n_classes=2: class 2 had been left uncleaned and the smoothing
    had overwritten it with class 0 or 1. A 1000-px band on a small map had run out of memory."""
    lab = np.zeros((50, 60), np.uint8)
    lab[:, 20:40] = 1
    lab[:, 40:] = 2
    lab[0, 0] = 255
    with pytest.raises(ConfigError, match=r"class ids \[2\] outside 0\.\.1 \(n_classes=2\)"):
        clean_labels(lab, n_classes=2, smooth_px=2)
    with pytest.raises(ConfigError, match="n_classes must be a whole number >= 1"):
        clean_labels(lab, n_classes=0)
    with pytest.raises(ConfigError, match="smooth_px must be >= 0"):
        clean_labels(lab, n_classes=3, smooth_px=-1)
    assert (clean_labels(lab, n_classes=3, smooth_px=2)[:, 45:] == 2).all()
    with pytest.raises(ConfigError, match="border_px must be >= 0"):
        ignore_band(lab, border_px=-1)
    # Wider than the map: every labelled pixel is within reach of another class, as with the diagonal's width.
    wide = ignore_band(lab, border_px=1000)
    assert (wide == 255).all() and np.array_equal(wide, ignore_band(lab, border_px=79))
