"""Image readers distrust their headers: a pixel cap before decoding, no empty images."""

from __future__ import annotations

import pytest
from fuzz_cases import png_with_size, tiff_with_size

from metallo.errors import ConfigError, FormatError
from metallo.io import read_image


@pytest.mark.parametrize("make", [png_with_size, tiff_with_size])
def test_a_header_claiming_billions_of_pixels_is_refused_before_decoding(tmp_path, make):
    path = tmp_path / ("bomb.png" if make is png_with_size else "bomb.tif")
    path.write_bytes(make(100_000, 100_000))
    with pytest.raises(FormatError, match=r"claims 100000 x 100000 = 10,000,000,000 pixels, over the cap of 1,073,741,824 \(set METALLO_MAX_IMAGE_PIXELS"):
        read_image(path)


def test_the_cap_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    path.write_bytes(png_with_size(20, 10))
    monkeypatch.setenv("METALLO_MAX_IMAGE_PIXELS", "100")
    with pytest.raises(FormatError, match="200 pixels, over the cap of 100"):
        read_image(path)
    monkeypatch.setenv("METALLO_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ConfigError, match="METALLO_MAX_IMAGE_PIXELS"):
        read_image(path)


def test_pillows_own_bomb_limit_does_not_apply_below_metallos_cap(tmp_path):
    from PIL import Image

    path = tmp_path / "wide.png"
    Image.new("L", (20_000, 10_000)).save(path)  # 200 M pixels: over Pillow's 179 M bomb limit
    with pytest.warns(UserWarning, match="pixel size unknown"):
        image = read_image(path)
    assert image.shape == (10_000, 20_000)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # restored


@pytest.mark.parametrize(("make", "size"), [(png_with_size, (0, 0)), (tiff_with_size, (0, 0)), (tiff_with_size, (0, 10))])
def test_images_without_pixels_are_format_errors(tmp_path, make, size):
    path = tmp_path / ("empty.png" if make is png_with_size else "empty.tif")
    path.write_bytes(make(*size))
    with pytest.raises(FormatError, match=r"(no pixels|not a readable)"):
        read_image(path)
