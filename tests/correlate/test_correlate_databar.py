"""register on plain arrays that hold an SEM data bar: one warning, the rows in the quality record."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

from metallo._xarray import image_dataarray
from metallo.correlate import read_landmarks, register


def _pair_with_bar(rows: int = 24) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    fixed = ndi.gaussian_filter(rng.random((200, 240)), 3)
    fixed = (fixed - fixed.min()) / (fixed.max() - fixed.min())
    moving = ndi.shift(fixed, (2.0, -3.0), mode="nearest")
    im = Image.new("L", (240, rows), 0)
    draw = ImageDraw.Draw(im)
    draw.text((4, 4), "HV 20 kV  WD 10 mm  mag 500 x", fill=255)
    draw.rectangle([170, 10, 230, 14], fill=255)
    return np.vstack([fixed, np.asarray(im) / 255.0]), moving


def _bar_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "data bar" in str(w.message)]


def test_a_data_bar_in_the_fixed_array_is_reported_once():
    fixed, moving = _pair_with_bar()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = register(fixed, moving)  # auto, both ways: the inner registrations do not warn again
    (message,) = _bar_warnings(caught)
    assert "fixed image's bottom 24 rows" in message and "image[:-24]" in message
    assert reg.quality["databar_suspected_rows"] == {"fixed": 24}


def test_no_bar_warning_with_a_mask_or_after_read_image_judged_it():
    fixed, moving = _pair_with_bar()
    mask = np.ones(fixed.shape, bool)
    mask[-24:] = False
    judged = image_dataarray(fixed, pixel_size_um=None, attrs={"databar_rows_suspected": 24})
    for kwargs in ({"fixed": fixed, "mask": mask}, {"fixed": judged}):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reg = register(moving=moving, method="affine", **kwargs)
        assert not _bar_warnings(caught)
        assert "databar_suspected_rows" not in reg.quality
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        register(fixed[:-24], moving, method="affine")  # the same image cropped: nothing to say
    assert not _bar_warnings(caught)


@pytest.mark.parametrize("hidden", ["masked", "as_given"])
def test_a_data_zone_over_the_section_edge_is_not_a_silent_result(shared_file, hidden):
    """Slice381's BSE image with a data zone drawn over its bottom tenth, which hides the section's
    lower edge. Masked out, the outline fit had nothing to hold it across that edge: start 28 px,
    result 14.3 / 46.4 px at the points above the zone, and nothing in the verdict objected."""
    d = "correlative_ebsd_bse_coni/Slice381_"
    bse = tifffile.imread(shared_file(d + "bse.tif")).astype(np.float64)
    ebsd = tifffile.imread(shared_file(d + "ebsd.tif"))
    moving_pts, fixed_pts = read_landmarks(shared_file(d + "ctr_pts_ebsd.txt"), shared_file(d + "ctr_pts_bse.txt"))
    rows = bse.shape[0] // 10
    im = Image.new("L", (bse.shape[1], rows), 0)
    ImageDraw.Draw(im).text((8, 6), "EHT = 20.00 kV   WD = 10.1 mm   Mag = 500 X   Signal A = BSD", fill=255)
    bse[-rows:] = bse.min() + np.asarray(im) / 255.0 * (bse.max() - bse.min())
    mask = np.ones(bse.shape, bool)
    mask[-rows:] = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = register(bse, ebsd, mask=mask if hidden == "masked" else None)
    above = fixed_pts[:, 0] < bse.shape[0] - rows
    err = np.linalg.norm(reg.transform_points(moving_pts[above]) - fixed_pts[above], axis=1)
    assert np.median(err) > 5  # wrong: the section's lower edge is hidden ...
    if hidden == "masked":  # ... and the verdict says why
        reasons = reg.quality["failure_reasons"] + reg.quality["both_ways"]["reverse"]["failure_reasons"]
        assert reg.quality["failed"] and any("runs along masked pixels" in r for r in reasons)
        assert any("registration failed" in str(w.message) for w in caught)
    else:  # ... and the zone is reported as a data bar to crop
        assert reg.quality["databar_suspected_rows"] == {"fixed": rows}
        assert _bar_warnings([w for w in caught])
