"""register on plain arrays that hold an SEM data bar: one warning, the rows in the quality record."""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

from metallo._xarray import image_dataarray
from metallo.correlate import register


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
