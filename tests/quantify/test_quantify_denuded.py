"""Denuded-zone width on synthetic bands of known width."""

from __future__ import annotations

import numpy as np
import pytest

from metallo.errors import ConfigError
from metallo.quantify import denuded_zone_width

NETWORK, SPHEROIDITE, MATRIX, WIDM = 0, 1, 2, 3


def band_labels(shape, angle_deg, width_px, network_px=12.0):
    """Network band through the centre, denuded bands of width_px on both sides, spheroidite beyond."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    a = np.radians(angle_deg)
    d = np.abs(-(xx - shape[1] / 2) * np.sin(a) + (yy - shape[0] / 2) * np.cos(a))
    lab = np.full(shape, SPHEROIDITE, np.uint8)
    lab[d <= network_px / 2] = NETWORK
    lab[(d > network_px / 2) & (d <= network_px / 2 + width_px)] = MATRIX
    return lab


@pytest.mark.parametrize("angle_deg", [0.0, 23.0, 45.0, 70.0])
@pytest.mark.parametrize("width_px", [6.0, 15.0])
def test_band_width_within_one_pixel(angle_deg, width_px):
    ps = 0.2
    lab = band_labels((200, 220), angle_deg, width_px)
    dz = denuded_zone_width(lab, network_class=NETWORK, matrix_class=MATRIX, pixel_size_um=ps)
    widths = dz.interface["width_um"].to_numpy() / ps
    assert widths.size > 100
    assert abs(np.median(widths) - width_px) <= 1.0
    assert np.all(np.abs(widths - width_px) <= 1.5)
    summary = dz.summary()
    assert abs(summary["mean_um"] / ps - width_px) <= 1.0
    assert np.nanmax(dz.width_map.values[2:-2, 2:-2]) / ps <= width_px + 1.5


def test_detached_matrix_and_widmanstatten_are_removed():
    lab = band_labels((200, 200), 0.0, 8.0)
    lab[20:40, 20:60] = MATRIX  # matrix island far from the network: not a denuded zone
    lab[150:160, 100:180] = WIDM
    lab[140:150, 100:180] = MATRIX  # matrix hugging the Widmanstätten lath
    lab[160:170, 100:180] = MATRIX
    dz = denuded_zone_width(lab, network_class=NETWORK, matrix_class=MATRIX, pixel_size_um=1.0,
                            widmanstatten_class=WIDM)
    assert not dz.zone[20:40, 20:60].any()
    assert not dz.zone[140:170, 100:180].any()
    assert abs(dz.interface["width_um"].median() - 8.0) <= 1.0


def test_matrix_enclosed_by_network_is_filled():
    lab = band_labels((120, 120), 0.0, 5.0, network_px=30.0)
    lab[55:65, 50:70] = MATRIX  # a hole inside the network band
    dz = denuded_zone_width(lab, network_class=NETWORK, matrix_class=MATRIX, pixel_size_um=1.0)
    assert not dz.zone[55:65, 50:70].any()


def test_missing_network_raises():
    with pytest.raises(ConfigError, match="network_class"):
        denuded_zone_width(np.ones((10, 10), int), network_class=0, matrix_class=1, pixel_size_um=1.0)


def test_class_numbers_that_cannot_make_a_denuded_zone_are_said():
    lab = np.zeros((40, 40), np.uint8)
    lab[:, :10] = 1
    with pytest.raises(ConfigError, match="network_class and matrix_class must differ; both are 1"):
        denuded_zone_width(lab, network_class=1, matrix_class=1, pixel_size_um=0.1)
    # No matrix pixel (wrong class number): the empty table is said, not only an n = 0.
    with pytest.warns(UserWarning, match="no pixel of matrix_class=3"):
        dz = denuded_zone_width(lab, network_class=1, matrix_class=3, pixel_size_um=0.1)
    assert dz.summary()["n"] == 0
