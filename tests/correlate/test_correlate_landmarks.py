"""Landmark files: BigWarp CSV, Fiji point text, paired CSV."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from metallo.correlate import read_landmarks, read_points, write_points
from metallo.errors import FormatError


def test_fiji_point_files_pair_line_by_line(tmp_path):
    (tmp_path / "m.txt").write_text("86 80\n115 57\n126 283\n")
    (tmp_path / "f.txt").write_text("# x y\n90 82\n118 60\n130 285\n")
    moving, fixed = read_landmarks(tmp_path / "m.txt", tmp_path / "f.txt")
    np.testing.assert_array_equal(moving[0], [80, 86])  # (y, x) = (row, col)
    np.testing.assert_array_equal(fixed[2], [285, 130])
    (tmp_path / "short.txt").write_text("1 2\n")
    with pytest.raises(FormatError, match="line by line"):
        read_landmarks(tmp_path / "m.txt", tmp_path / "short.txt")


def test_bigwarp_csv_active_rows_2d_and_3d(tmp_path):
    path = tmp_path / "landmarks.csv"
    path.write_text(
        '"Pt-0","true","10.0","20.0","11.0","22.0"\n'
        '"Pt-1","false","1.0","2.0","3.0","4.0"\n'
        '"Pt-2","true","30.0","40.0","0.0","33.0","44.0","0.0"\n'
    )
    moving, fixed = read_landmarks(path)
    np.testing.assert_array_equal(moving, [[20, 10], [40, 30]])
    np.testing.assert_array_equal(fixed, [[22, 11], [44, 33]])
    path.write_text('"Pt-0","true","10.0","20.0"\n')
    with pytest.raises(FormatError, match="6 \\(2-D\\) or 8"):
        read_landmarks(path)


def test_paired_csv_and_points_round_trip(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("moving_x,moving_y,fixed_x,fixed_y\n1,2,3,4\n5,6,7,8\n")
    moving, fixed = read_landmarks(path)
    np.testing.assert_array_equal(moving, [[2, 1], [6, 5]])
    np.testing.assert_array_equal(fixed, [[4, 3], [8, 7]])
    pts = np.array([[1.5, 2.25], [3.0, 4.0]])
    np.testing.assert_array_equal(read_points(write_points(pts, tmp_path / "p.txt")), pts)
    (tmp_path / "xy.csv").write_text("X,Y\n7,9\n")
    np.testing.assert_array_equal(read_points(tmp_path / "xy.csv"), [[9, 7]])
    (tmp_path / "bad.txt").write_text("a b\n")
    with pytest.raises(FormatError, match="numeric"):
        read_points(tmp_path / "bad.txt")


def _calibrated(shape, pixel_um, seed):
    from metallo._xarray import image_dataarray

    rng = np.random.default_rng(seed)
    return image_dataarray(rng.random(shape).astype(np.float32), pixel_size_um=pixel_um, name="img")


def test_landmarks_that_look_like_micrometres_are_warned_about():
    """BigWarp and ImageJ Measure tables give calibrated (µm) coordinates for calibrated images.
    Read as pixels (the default), the exact spline through them was not flagged: on Slice381
    with 0.25 / 0.1 µm pixels it came back 'ok'. Now a warning names the likely mix-up and
    landmarks_units='um' reads them right."""
    from metallo.correlate import register

    fixed, moving = _calibrated((120, 160), 0.2, 0), _calibrated((120, 160), 0.2, 1)
    px = np.array([[10.0, 12.0], [100.0, 20.0], [60.0, 150.0], [20.0, 130.0]])  # (y, x) spread over the image
    um = px * 0.2
    with pytest.warns(UserWarning, match="inside the image's extent in µm") as record:
        register(fixed, moving, method="landmarks+tps", landmarks=(um, um), inverse_consistency=False)
    assert sum("landmarks: the" in str(w.message) for w in record) == 2  # moving and fixed
    shift = np.array([3.0, -2.0])  # px
    for units, scale in (("um", 0.2), ("px", 1.0)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reg = register(fixed, moving, method="landmarks+tps", landmarks=(px * scale, (px + shift) * scale),
                           landmarks_units=units, inverse_consistency=False)
        assert not [w for w in caught if "landmarks: the" in str(w.message)]
        # the exact spline takes each moving point (µm) onto its fixed point (µm) either way
        np.testing.assert_allclose(reg.transform_points(px * 0.2), (px + shift) * 0.2, atol=1e-3)
    outside = px * 2.5  # e.g. µm of a 2.5 µm EBSD step read as pixels
    with pytest.warns(UserWarning, match="lie outside the 160 x 120 px image"):
        register(fixed, moving, method="landmarks+tps", landmarks=(outside, px), inverse_consistency=False)
