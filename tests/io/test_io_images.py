"""Image I/O: one round-trip battery over every writer, dtype and channel layout, plus the
pixel size from foreign TIFF tags, ImageJ metadata, PNG pHYs and sidecars, and bad files."""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

from metallo._xarray import image_dataarray
from metallo.errors import ConfigError, FormatError
from metallo.io import read_image, reader_for, write_image


def _smooth(shape: tuple[int, ...], top: int, dtype: type) -> np.ndarray:
    """A smooth test pattern (JPEG-friendly) spanning most of the dtype's range."""
    yy, xx = np.meshgrid(np.linspace(0, 1, shape[0]), np.linspace(0, 1, shape[1]), indexing="ij")
    base = 0.5 + 0.4 * np.sin(3 * yy) * np.cos(2 * xx)
    if len(shape) == 3:
        base = np.stack([base, base[::-1], base[:, ::-1]], axis=-1)
    return np.rint(base * top).astype(dtype)


# (extension, dtype, channels, lossless)
CASES = [
    (".tif", np.uint8, 1, True),
    (".tif", np.uint8, 3, True),
    (".tif", np.uint16, 1, True),
    (".tif", np.uint16, 3, True),
    (".tif", np.float32, 1, True),
    (".tif", np.int32, 1, True),
    (".tiff", np.uint8, 1, True),
    (".png", np.uint8, 1, True),
    (".png", np.uint8, 3, True),
    (".png", np.uint16, 1, True),
    (".png", np.uint16, 3, True),
    (".jpg", np.uint8, 1, False),
    (".jpeg", np.uint8, 3, False),
]


@pytest.mark.parametrize(
    "ext, dtype, channels, lossless", CASES, ids=lambda v: getattr(v, "__name__", str(v))
)
class TestRoundTrip:
    """Every writer/reader pair: values, dtype, shape, pixel size, modality, coordinates."""

    @pytest.fixture
    def written(self, tmp_path, ext, dtype, channels, lossless):
        shape = (37, 53) if channels == 1 else (37, 53, 3)
        top = {np.uint8: 255, np.uint16: 65000, np.float32: 1, np.int32: 100000}[dtype]
        array = (
            _smooth(shape, top, dtype)
            if dtype != np.float32
            else _smooth(shape, 1, np.float64).astype(np.float32)
        )
        if dtype == np.float32:
            array = (array + np.linspace(0, 0.5, 53, dtype=np.float32)).astype(np.float32)
        image = image_dataarray(array, pixel_size_um=0.1266, attrs={"modality": "SEM"})
        path = tmp_path / f"micrograph{ext}"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # smooth images: no lossy-label warning, no unknown size
            assert write_image(image, path) == path
        return array, path, lossless

    def test_values_and_dtype(self, written):
        array, path, lossless = written
        back = read_image(path)
        assert back.dtype == array.dtype
        assert back.shape == array.shape
        if lossless:
            np.testing.assert_array_equal(back.values, array)
        else:
            assert np.abs(back.values.astype(float) - array).mean() < 2.0

    def test_pixel_size_and_coordinates(self, written):
        _, path, _ = written
        back = read_image(path)
        assert back.attrs["pixel_size_um"] == pytest.approx(0.1266, rel=1e-6)
        assert float(back.x[10]) == pytest.approx(10 * 0.1266, rel=1e-6)
        assert back.dims[:2] == ("y", "x")

    def test_attrs(self, written):
        _, path, _ = written
        back = read_image(path, modality="LOM")
        assert back.attrs["source"] == path.name
        assert back.attrs["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert back.attrs["modality"] == "LOM"  # the argument wins

    def test_explicit_pixel_size_wins(self, written):
        _, path, _ = written
        assert read_image(path, pixel_size_um=2.0).attrs["pixel_size_um"] == 2.0

    def test_reader_chosen_by_header_not_extension(self, written, tmp_path, ext):
        _, path, _ = written
        renamed = tmp_path / "renamed.dat"
        renamed.write_bytes(path.read_bytes())
        expected = {
            ".tif": "tiff",
            ".tiff": "tiff",
            ".png": "png",
            ".jpg": "jpeg",
            ".jpeg": "jpeg",
        }[ext]
        assert reader_for(renamed, kind="image").name == expected


def test_modality_is_checked_and_case_insensitive(tmp_path):
    write_image(np.zeros((4, 4), np.uint8), tmp_path / "a.png", pixel_size_um=1.0)
    assert read_image(tmp_path / "a.png", modality="sem").attrs["modality"] == "SEM"
    with pytest.raises(ConfigError, match="modality must be one of LOM, SEM, EBSD-IQ, other"):
        read_image(tmp_path / "a.png", modality="TEM")


def test_pixel_size_argument_must_be_a_positive_number(tmp_path):
    write_image(np.zeros((4, 4), np.uint8), tmp_path / "a.png", pixel_size_um=1.0)
    for bad in (0, -1.0, float("nan"), "0.5", True):  # a string had raised TypeError from math.isfinite
        with pytest.raises(ConfigError, match="pixel_size_um must be a positive number"):
            read_image(tmp_path / "a.png", pixel_size_um=bad)
    assert read_image(tmp_path / "a.png", pixel_size_um=np.float32(0.5)).attrs["pixel_size_um"] == 0.5


def test_tiff_modality_written_by_metallo_comes_back(tmp_path):
    image = image_dataarray(
        np.zeros((8, 8), np.uint8), pixel_size_um=0.3, attrs={"modality": "LOM"}
    )
    write_image(image, tmp_path / "a.tif")
    assert read_image(tmp_path / "a.tif").attrs["modality"] == "LOM"


@pytest.mark.parametrize(
    "unit, per_unit, expected_um",
    [("CENTIMETER", 1e4 / 0.25, 0.25), ("INCH", 25400 / 0.5, 0.5)],
)
def test_pixel_size_from_foreign_tiff_resolution_tags(tmp_path, unit, per_unit, expected_um):
    path = tmp_path / "foreign.tif"
    tifffile.imwrite(
        path, np.zeros((10, 12), np.uint16), resolution=(per_unit, per_unit),
        resolutionunit=getattr(tifffile.RESUNIT, unit), metadata=None,
    )  # fmt: skip
    assert read_image(path).attrs["pixel_size_um"] == pytest.approx(expected_um, rel=1e-6)


def test_tiff_resolution_tags_with_rows_and_columns_of_different_sizes_warn(tmp_path):
    # A tilt-corrected or stretched SEM export: 0.25 µm per column, 0.5 µm per row. metallo's
    # pixels are square, so the column size is taken, and the row size is said, not dropped.
    path = tmp_path / "stretched.tif"
    tifffile.imwrite(path, np.zeros((10, 12), np.uint16), resolution=(1e4 / 0.25, 1e4 / 0.5),
                     resolutionunit=tifffile.RESUNIT.CENTIMETER, metadata=None)
    with pytest.warns(UserWarning, match=r"TIFF XResolution / YResolution give 0\.25 µm per column and 0\.5 µm per row"):
        image = read_image(path)
    assert image.attrs["pixel_size_um"] == pytest.approx(0.25)


@pytest.mark.parametrize("compression", ["tiff_lzw", "tiff_adobe_deflate", "packbits"])
@pytest.mark.parametrize("mode", ["L", "I;16", "RGB"])
def test_compressed_tiffs_are_read_without_imagecodecs(tmp_path, compression, mode):
    """LZW, Deflate and PackBits TIFFs (microscope exports, Photoshop, GIMP), with their pixel size.

    tifffile decodes LZW only with the optional imagecodecs package (Deflate and PackBits it reads); without it
    read_image refused coni16_459_eds.tif (EBSD-Correction) as "not a readable TIFF image".
    """
    rng = np.random.default_rng(0)
    top = 65535 if mode == "I;16" else 255
    shape = (30, 41, 3) if mode == "RGB" else (30, 41)
    data = rng.integers(0, top, shape).astype(np.uint16 if mode == "I;16" else np.uint8)
    path = tmp_path / "compressed.tif"
    img = Image.fromarray(data) if mode != "I;16" else Image.frombytes("I;16", (41, 30), data.tobytes())
    img.save(path, compression=compression, resolution=1e4 / 0.4, resolution_unit=3)  # 0.4 µm/px, in px/cm
    with tifffile.TiffFile(path) as tif:
        assert tif.pages.first.compression != 1  # really compressed
    out = read_image(path)
    np.testing.assert_array_equal(out.values, data)
    assert out.attrs["pixel_size_um"] == pytest.approx(0.4, rel=1e-4)


@pytest.mark.parametrize(
    "unit, expected_um", [("micron", 0.2), ("\\u00B5m", 0.2), ("um", 0.2), ("nm", 0.0002)]
)
def test_pixel_size_from_imagej_metadata(tmp_path, unit, expected_um):
    # ImageJ itself writes µm as the escaped text "\\u00B5m" in its ASCII description.
    path = tmp_path / "imagej.tif"
    tifffile.imwrite(
        path,
        np.zeros((10, 12), np.uint8),
        imagej=True,
        resolution=(5.0, 5.0),
        metadata={"unit": unit},
    )
    assert read_image(path).attrs["pixel_size_um"] == pytest.approx(expected_um, rel=1e-6)


def test_pixel_size_and_modality_from_fei_sem_tags(tmp_path):
    path = tmp_path / "fei.tif"
    ini = "[User]\nDate=01/02/2024\n[Scan]\nPixelWidth=2.5e-08\nPixelHeight=2.5e-08\n"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), extratags=[(34682, "s", 0, ini, True)])
    image = read_image(path)
    assert image.attrs["pixel_size_um"] == 0.025
    assert image.attrs["modality"] == "SEM"


def test_pixel_size_of_an_fei_navigation_camera_image(tmp_path):
    """A Helios navcam image (rosettasciio's FEI-Helios-navcam.tif) has no [Scan]: its pixel is the
    [IRBeam] HFW over the [Image] columns, 0.202732 m / 768 = 264.0 µm (rosettasciio reads 0.2640
    mm), above the 50 µm that a resolution tag may state; it is no SEM micrograph. Without the
    [IRBeam] section the size stays unknown, as rosettasciio's."""
    ini = "[IRBeam]\nHFW=0.202732\nVFW=0.135155\n[Image]\nResolutionX=768\nResolutionY=512\n"
    tifffile.imwrite(tmp_path / "nav.tif", np.zeros((512, 768), np.uint8), extratags=[(34682, "s", 0, ini, True)])
    image = read_image(tmp_path / "nav.tif")
    assert image.attrs["pixel_size_um"] == pytest.approx(202732 / 768) and image.attrs["modality"] == "other"
    bare = "[Image]\nResolutionX=768\nResolutionY=512\n"
    tifffile.imwrite(tmp_path / "bare.tif", np.zeros((512, 768), np.uint8), extratags=[(34682, "s", 0, bare, True)])
    with pytest.warns(UserWarning, match="pixel size unknown"):
        assert np.isnan(read_image(tmp_path / "bare.tif").attrs["pixel_size_um"])


def test_pixel_size_from_zeiss_sem_tags(tmp_path):
    path = tmp_path / "zeiss.tif"
    text = "\r\n".join(
        ["0", "AP_IMAGE_PIXEL_SIZE", "Image Pixel Size = 27.70 nm", "AP_WD", "WD = 5.0 mm"]
    )
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), extratags=[(34118, "s", 0, text, True)])
    image = read_image(path, modality="other")
    assert image.attrs["pixel_size_um"] == pytest.approx(0.0277)
    assert image.attrs["modality"] == "other"  # the argument still wins


def test_print_dpi_is_not_a_calibration(tmp_path):
    path = tmp_path / "scan.tif"
    tifffile.imwrite(
        path, np.zeros((6, 6), np.uint8), resolution=(72, 72), resolutionunit=tifffile.RESUNIT.INCH
    )
    with pytest.warns(UserWarning, match="pixel size unknown"):
        image = read_image(path)
    assert np.isnan(image.attrs["pixel_size_um"])
    assert image.x.attrs["units"] == "px"


@pytest.mark.parametrize("sidecar_name", ["plain.png.json", "plain.json"])
def test_pixel_size_from_sidecar(tmp_path, sidecar_name):
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / "plain.png")
    (tmp_path / sidecar_name).write_text(json.dumps({"pixel_size_um": 0.05, "modality": "SEM"}))
    image = read_image(tmp_path / "plain.png")
    assert image.attrs["pixel_size_um"] == 0.05
    assert image.attrs["modality"] == "SEM"


def test_unknown_pixel_size_warns_once_from_the_callers_line(tmp_path):
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / "bare.png")
    with pytest.warns(UserWarning) as record:
        image = read_image(tmp_path / "bare.png")
    assert len(record) == 1
    assert record[0].filename == __file__
    assert np.isnan(image.attrs["pixel_size_um"]) and image.attrs["modality"] == "other"


def test_bad_sidecar_is_a_format_error(tmp_path):
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "x.png.json").write_text("{not json")
    with pytest.raises(FormatError, match="x.png.json"):
        read_image(tmp_path / "x.png")


def test_rgba_drops_alpha_and_palette_gives_indices(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = read_image(tmp_path / "rgba.png", pixel_size_um=1.0)
    assert out.shape == (4, 5, 3) and (out.values[..., 0] == 200).all()

    labels = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    pal = Image.fromarray(labels, "P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (3 * 253))
    pal.save(tmp_path / "pal.png")
    with pytest.warns(UserWarning, match="pal.png: an indexed image with a colour palette: its 3 palette indices"):
        np.testing.assert_array_equal(
            read_image(tmp_path / "pal.png", pixel_size_um=1.0).values, labels
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rgb = read_image(tmp_path / "pal.png", pixel_size_um=1.0, palette="rgb").values
    np.testing.assert_array_equal(rgb[0, 1], [255, 0, 0])


def test_palette_indices_warn_only_where_they_are_not_the_greys_shown(tmp_path):
    """A micrograph saved with a palette: a grey ramp's indices are its grey values (read
    quietly); a colour palette's, or greys out of index order, are arbitrary numbers: the
    reader says so and names palette='rgb'. Label masks read by metallo keep their ids quietly."""
    import tifffile

    from metallo.segment._data import read_label_map

    idx = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], np.uint8)
    ramp = Image.fromarray(idx, "P")
    ramp.putpalette([v for g in range(256) for v in (g, g, g)])
    ramp.save(tmp_path / "ramp.png")
    shuffled = Image.fromarray(idx, "P")
    shuffled.putpalette([200, 200, 200, 10, 10, 10, 120, 120, 120, 60, 60, 60] + [0] * (3 * 252))
    shuffled.save(tmp_path / "shuffled.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(read_image(tmp_path / "ramp.png", pixel_size_um=1.0).values, idx)
    with pytest.warns(UserWarning, match="a grey palette whose greys do not rise with the index.*palette='rgb'"):
        read_image(tmp_path / "shuffled.png", pixel_size_um=1.0)
    grey = read_image(tmp_path / "shuffled.png", pixel_size_um=1.0, palette="rgb", as_gray=True).values
    np.testing.assert_array_equal(grey[0], [200, 10, 120, 60])
    # A TIFF with a colour map (PhotometricInterpretation 3), colours on indices 0..3.
    cmap = np.zeros((3, 256), np.uint16)
    cmap[:, 1], cmap[0, 2], cmap[1, 3] = 65535, 65535, 65535
    tifffile.imwrite(tmp_path / "pal.tif", idx, photometric="palette", colormap=cmap)
    with pytest.warns(UserWarning, match="pal.tif: an indexed image with a colour palette"):
        np.testing.assert_array_equal(read_image(tmp_path / "pal.tif", pixel_size_um=1.0).values, idx)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(read_label_map(tmp_path / "pal.tif"), idx)
        np.testing.assert_array_equal(read_label_map(tmp_path / "shuffled.png"), idx)


def test_as_gray_collapses_equal_channels_and_converts_colour(tmp_path):
    gray = _smooth((9, 11), 255, np.uint8)
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "g.png")
    np.testing.assert_array_equal(
        read_image(tmp_path / "g.png", pixel_size_um=1, as_gray=True).values, gray
    )
    red = np.zeros((3, 3, 3), np.uint8)
    red[..., 0] = 100
    Image.fromarray(red).save(tmp_path / "r.png")
    assert (read_image(tmp_path / "r.png", pixel_size_um=1, as_gray=True).values == 30).all()


def test_one_bit_tiffs_are_read_and_complex_ones_refused(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "mask.tif", np.eye(20, dtype=bool))
    mask = read_image(tmp_path / "mask.tif", pixel_size_um=1.0)
    # tifffile stores bool as MinIsWhite: read as a viewer shows it (Pillow's reading), the diagonal dark.
    np.testing.assert_array_equal(np.asarray(mask), np.asarray(Image.open(tmp_path / "mask.tif")))
    assert int(np.asarray(mask).sum()) == 380
    tifffile.imwrite(tmp_path / "fft.tif", np.zeros((20, 20), np.complex64))
    with pytest.raises(FormatError, match="fft.tif: holds pixel values of dtype complex64"):
        read_image(tmp_path / "fft.tif", pixel_size_um=1.0)


def test_bmp_is_read_with_values_intact(tmp_path):
    rgb = _smooth((12, 17, 3), 255, np.uint8)
    Image.fromarray(rgb).save(tmp_path / "old.bmp")
    image = read_image(tmp_path / "old.bmp", pixel_size_um=0.5)
    np.testing.assert_array_equal(image.values, rgb)
    assert reader_for(tmp_path / "old.bmp").name == "bmp"


def test_bool_masks_are_written_as_uint8(tmp_path):
    mask = np.eye(6, dtype=bool)
    write_image(mask, tmp_path / "m.png")
    np.testing.assert_array_equal(
        read_image(tmp_path / "m.png", pixel_size_um=1).values, mask.astype(np.uint8)
    )


def test_jpeg_warns_for_labels_and_refuses_16_bit(tmp_path):
    labels = np.zeros((16, 16), np.uint8)
    labels[4:12, 4:12] = 1
    with pytest.warns(UserWarning, match="lossy"):
        write_image(labels, tmp_path / "labels.jpg", pixel_size_um=0.5)
    with pytest.raises(ConfigError, match="8-bit"):
        write_image(np.zeros((4, 4), np.uint16) + 1000, tmp_path / "deep.jpg")


def test_png_refuses_floats_and_unknown_extensions_are_format_errors(tmp_path):
    with pytest.raises(ConfigError, match="PNG"):
        write_image(np.zeros((4, 4), np.float32), tmp_path / "f.png")
    with pytest.raises(FormatError, match=r"\.gif"):
        write_image(np.zeros((4, 4), np.uint8), tmp_path / "f.gif")
    with pytest.raises(ConfigError, match="real numbers; got dtype complex128"):  # it had written a complex TIFF
        write_image(np.zeros((4, 4), complex), tmp_path / "c.tif")
    assert not (tmp_path / "c.tif").exists()


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "a.tif"
    write_image(np.ones((4, 4), np.uint8), path, pixel_size_um=1.0)
    write_image(np.full((4, 4), 7, np.uint8), path, pixel_size_um=1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]
    assert (read_image(path).values == 7).all()


@pytest.mark.parametrize("ext", [".tif", ".png", ".jpg"])
def test_truncated_files_are_format_errors_naming_the_file(tmp_path, ext):
    good = tmp_path / f"good{ext}"
    write_image(_smooth((64, 64), 255, np.uint8), good, pixel_size_um=1.0)
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(good.read_bytes()[:120])
    with pytest.raises(FormatError, match=f"cut{ext}"):
        read_image(cut, pixel_size_um=1.0)


def test_stacks_are_refused_with_their_shape(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((5, 16, 16), np.uint8))
    with pytest.raises(FormatError, match=r"stack.tif: holds 5 images of 16 x 16 pixels \(array shape \(5, 16, 16\)"):
        read_image(tmp_path / "stack.tif", pixel_size_um=1.0)


def test_a_multi_page_sem_file_is_refused_before_its_frame_is_misread(tmp_path):
    """rosettasciio's ZEISS_SEM_multipage.tif (two FIB slices of 1536 x 2048, CZ_SEM tags) was
    refused only after a warning that its 2048 x 1536 frame did not match "an image of 1536 x 2"."""
    import warnings

    pages = np.zeros((2, 30, 40), np.uint8)
    tifffile.imwrite(tmp_path / "fib.tif", pages, metadata=None,
                     extratags=[(34682, "s", 0, "[Scan]\r\nPixelWidth=1e-08\r\n", True)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning about a frame before the refusal
        with pytest.raises(FormatError, match="holds 2 images of 30 x 40 pixels"):
            read_image(tmp_path / "fib.tif")
    rgb = np.zeros((30, 40, 3), np.uint8)  # samples last: one colour image, not a stack
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    assert read_image(tmp_path / "rgb.tif", pixel_size_um=1.0).shape == (30, 40, 3)


def test_unknown_and_missing_files_are_format_errors(tmp_path):
    junk = tmp_path / "notes.xyz"
    junk.write_text("hello")
    with pytest.raises(FormatError, match="known formats: .*tiff"):
        read_image(junk)
    with pytest.raises(FormatError, match="no such file"):
        read_image(tmp_path / "missing.tif")


def test_reads_the_real_float_bse_tiff(shared_file):
    path = shared_file("correlative_ebsd_bse_coni/Slice381_bse.tif")
    with pytest.warns(UserWarning, match="pixel size unknown"):
        image = read_image(path, modality="SEM")
    assert image.shape == (483, 644) and image.dtype == np.float32
    assert 0.0 <= float(image.min()) and float(image.max()) < 1.0


def test_reads_a_real_uhcs_png_with_the_metadata_pixel_size(shared_file):
    path = shared_file("uhcs_microconstituent_segmentation/images/micrograph1061.png")
    image = read_image(path, pixel_size_um=0.5, as_gray=True)
    assert image.dims == ("y", "x") and image.dtype == np.uint8
    assert image.shape == (481, 645)


def _zeiss_tiff(path, shape, lines):
    text = "\r\n".join(["0", *lines])
    tifffile.imwrite(path, np.zeros(shape, np.uint8), extratags=[(34118, "s", 0, text, True)])


def test_zeiss_pixel_size_of_a_1024_display_is_rescaled_to_the_image_columns(tmp_path):
    # Older Zeiss SmartSEM states only the pixel size of a 1024-column display (AP_PIXEL_SIZE); a
    # 512-column image then has twice that (the field width over its columns). Numbers of
    # test_tiff_Zeiss_SEM_512pix.tif of rosettasciio's tests, which read 0.011649976 µm.
    path = tmp_path / "zeiss512.tif"
    _zeiss_tiff(path, (384, 512), ["AP_PIXEL_SIZE", "Pixel Size = 5.825 nm", "AP_WIDTH", "Width = 5.965 um",
                                   "AP_HEIGHT", "Height = 4.474 um"])
    with pytest.warns(UserWarning, match="1024-column frame, but the image has 512 columns"):
        image = read_image(path)
    assert image.attrs["pixel_size_um"] == pytest.approx(5.965 / 512)
    # The same tags on a 1024-column image: as stated, without a warning.
    path = tmp_path / "zeiss1024.tif"
    _zeiss_tiff(path, (768, 1024), ["AP_PIXEL_SIZE", "Pixel Size = 5.825 nm", "AP_WIDTH", "Width = 5.965 um",
                                    "AP_HEIGHT", "Height = 4.474 um"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(path).attrs["pixel_size_um"] == pytest.approx(0.005825)


def _fei_tiff(path, shape, image_section):
    ini = f"[Scan]\nPixelWidth=2.5e-08\nPixelHeight=2.5e-08\n[Image]\n{image_section}\n"
    tifffile.imwrite(path, np.zeros(shape, np.uint8), extratags=[(34682, "s", 0, ini, True)])


def test_fei_image_saved_at_half_its_scan_size_gets_twice_the_pixel_size(tmp_path):
    path = tmp_path / "half.tif"
    _fei_tiff(path, (7, 8), "ResolutionX=16\nResolutionY=12")  # 6 rows of frame + a 1-row data bar
    with pytest.warns(UserWarning, match="16-column frame, but the image has 8 columns"):
        image = read_image(path)
    assert image.attrs["pixel_size_um"] == pytest.approx(0.05)
    assert image.sizes["y"] == 6  # the bar, scaled the same way, is cropped


def test_fei_image_cropped_after_acquisition_keeps_the_stated_size_with_a_warning(tmp_path):
    path = tmp_path / "cropped.tif"
    _fei_tiff(path, (16, 8), "ResolutionX=16\nResolutionY=16")  # half the columns, all the rows
    with pytest.warns(UserWarning, match="cropped or resized after acquisition"):
        image = read_image(path)
    assert image.attrs["pixel_size_um"] == pytest.approx(0.025)


JEOL_TXT = ("$CM_FORMAT JEOL/SEM\n$CM_INSTRUMENT JSM-7800F\n$CM_SIGNAL SEI\n$CM_MAG 5000\n"
            "$CM_FULL_SIZE 64 48\n$$SM_MICRON_BAR 16\n$$SM_MICRON_MARKER 2um\n")


@pytest.mark.parametrize("suffix", [".tif", ".bmp"])
def test_jeol_sidecar_gives_pixel_size_and_data_bar(tmp_path, suffix):
    # JEOL writes <stem>.txt beside the image: a 16-px scale bar labelled 2 µm -> 0.125 µm/px;
    # $CM_FULL_SIZE 64 48 is the frame, so the 8 rows below it are the data bar.
    image = np.zeros((56, 64), np.uint8)
    image[48:] = 255
    path = tmp_path / f"steel{suffix}"
    Image.fromarray(image).save(path)
    (tmp_path / "steel.txt").write_text(JEOL_TXT, encoding="latin-1")
    out = read_image(path)
    assert out.attrs["pixel_size_um"] == pytest.approx(2.0 / 16)
    assert out.attrs["modality"] == "SEM"
    assert out.shape == (48, 64) and out.attrs["databar_rows"] == 8
    assert read_image(path, pixel_size_um=0.5).attrs["pixel_size_um"] == 0.5  # the argument wins


def test_jeol_sidecar_of_a_resized_image_and_foreign_txt_files(tmp_path):
    path = tmp_path / "half.png"
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(path)  # the 64 x 48 frame saved at half size
    (tmp_path / "half.txt").write_text(JEOL_TXT.replace("2um", "500nm"), encoding="latin-1")
    with pytest.warns(UserWarning, match="64-column frame, but the image has 32 columns") as record:
        out = read_image(path)
    assert out.attrs["pixel_size_um"] == pytest.approx(0.5 / 16 * 2)
    assert record[0].filename == __file__
    # Notes beside an image are no JEOL sidecar; a bar without a length is refused with a warning.
    other = tmp_path / "notes.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(other)
    (tmp_path / "notes.txt").write_text("polished 3 um diamond, etched nital 2 %\n")
    with pytest.warns(UserWarning, match="pixel size unknown"):
        assert np.isnan(read_image(other).attrs["pixel_size_um"])
    (tmp_path / "notes.txt").write_text("$$SM_MICRON_BAR 0\n$$SM_MICRON_MARKER 5um\n")
    with pytest.warns(UserWarning, match="is not a length over a pixel count") as record:
        assert np.isnan(read_image(other).attrs["pixel_size_um"])
    assert record[0].filename == __file__


HITACHI_TXT = ("[SemImageFile]\r\nInstructName=S-4800\r\nSerialNumber=1234\r\nDataSize=64x48\r\n"
               "Magnification=10000\r\nPixelSize=125.0\r\nSignalName=SE(U)\r\n")


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_hitachi_sidecar_gives_pixel_size_and_data_bar(tmp_path, encoding):
    """Hitachi writes ``[SemImageFile]`` ... ``PixelSize=`` in nm (a TM3000 at 40x states about
    3000, an S-4800 at 10,000x about 10) and ``DataSize=<columns>x<rows>`` for the frame,
    in Latin-1 or UTF-16. These images came in without a pixel size before."""
    image = np.zeros((56, 64), np.uint8)
    image[48:] = 255
    path = tmp_path / "steel.tif"
    Image.fromarray(image).save(path)
    (tmp_path / "steel.txt").write_text(HITACHI_TXT, encoding=encoding)
    out = read_image(path)
    assert out.attrs["pixel_size_um"] == pytest.approx(0.125)
    assert out.attrs["modality"] == "SEM"
    assert out.shape == (48, 64) and out.attrs["databar_rows"] == 8


def test_hitachi_sidecar_of_a_resized_image_warns_from_the_callers_line(tmp_path):
    path = tmp_path / "half.png"
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(path)  # the 64 x 48 frame saved at half size
    (tmp_path / "half.txt").write_text(HITACHI_TXT, encoding="latin-1")
    with pytest.warns(UserWarning, match="64-column frame, but the image has 32 columns") as record:
        out = read_image(path)
    assert out.attrs["pixel_size_um"] == pytest.approx(0.25)
    assert record[0].filename == __file__
    (tmp_path / "half.txt").write_text(HITACHI_TXT.replace("PixelSize=125.0", "PixelSize=n/a"), encoding="latin-1")
    with pytest.warns(UserWarning, match="Hitachi PixelSize 'n/a' is not a positive") as record:
        assert np.isnan(read_image(path).attrs["pixel_size_um"])
    assert record[0].filename == __file__


def _olympus_sis_tiff(path, size_um, *, preview=True):
    """A TIFF as Olympus SIS software (analySIS, Stream, cellSens) writes it: an optional 8-bit RGB
    preview first, then the camera data with the private SIS tag 33560. The tag's general block
    (lenexp, x and y calibration, magnification) sits at an absolute file offset, patched in
    after writing."""
    import struct

    head = struct.pack("<4s6xhhhhh6x32sH", b"SIS0", 30, 12, 5, 10, 125, b"test", 1)
    block = struct.pack("<10xhdd8xd2x34s32s", -6, size_um, size_um, 50.0, b"cam", b"pic")
    value = head + struct.pack("<hhI", 1, 1, 0) + block
    raw = (np.arange(30 * 40).reshape(30, 40) * 3 % 4096).astype(np.uint16)
    with tifffile.TiffWriter(path) as w:
        if preview:
            w.write(np.zeros((30, 40, 3), np.uint8), photometric="rgb")
        w.write(raw, extratags=[(33560, 1, len(value), value, True)])
    data = bytearray(path.read_bytes())
    at = data.index(b"SIS0")
    data[at + 64 : at + 68] = struct.pack("<I", at + 68)  # the general block follows the one entry
    path.write_bytes(bytes(data))
    return raw


@pytest.mark.parametrize("preview", [True, False])
def test_olympus_sis_calibration_and_data_page(tmp_path, preview):
    """rosettasciio's olympus_SIS.tif (an RGB preview, then the uint16 data with the SIS tag)
    read as the 8-bit preview without a pixel size; now the calibrated page and its size."""
    path = tmp_path / "sis.tif"
    raw = _olympus_sis_tiff(path, 0.5, preview=preview)
    image = read_image(path)
    assert image.attrs["pixel_size_um"] == pytest.approx(0.5)
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image.values, raw)


def test_gatan_digitalmicrograph_tiff_scale(tmp_path):
    """A TIFF exported by Gatan DigitalMicrograph states its scale in tags 65009/65010 with the
    unit in 65003/65004 (rosettasciio's test file: 0.16867 µm); it was read without a size."""
    path = tmp_path / "dm.tif"
    tags = [(65003, "s", 0, "nm", True), (65004, "s", 0, "nm", True),
            (65009, "d", 1, 42.5, True), (65010, "d", 1, 42.5, True)]
    tifffile.imwrite(path, np.zeros((16, 16), np.int32), extratags=tags)
    assert read_image(path).attrs["pixel_size_um"] == pytest.approx(0.0425)


@pytest.mark.parametrize(("size", "unit", "um"), [(0.25, "µm", 0.25), (250.0, "nm", 0.25), (0.0005, "mm", 0.5)])
def test_ome_tiff_physical_size(tmp_path, size, unit, um):
    """OME-TIFF (what ZEN, cellSens, NIS, LAS X, QuPath and Bio-Formats export) states the pixel
    size as PhysicalSizeX in PhysicalSizeXUnit in its XML; it was read without a pixel size."""
    gray, rgb = tmp_path / "gray.ome.tif", tmp_path / "rgb.ome.tif"
    meta = {"PhysicalSizeX": size, "PhysicalSizeXUnit": unit, "PhysicalSizeY": size, "PhysicalSizeYUnit": unit}
    tifffile.imwrite(gray, np.zeros((20, 30), np.uint16), ome=True, metadata={"axes": "YX", **meta})
    tifffile.imwrite(rgb, np.zeros((20, 30, 3), np.uint8), ome=True, photometric="rgb", metadata={"axes": "YXS", **meta})
    assert read_image(gray).attrs["pixel_size_um"] == pytest.approx(um)
    out = read_image(rgb)
    assert out.shape == (20, 30, 3) and out.attrs["pixel_size_um"] == pytest.approx(um)


def test_ome_tiff_rectangular_pixels_warn(tmp_path):
    path = tmp_path / "rect.ome.tif"
    meta = {"axes": "YX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.3}  # µm by default
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), ome=True, metadata=meta)
    with pytest.warns(UserWarning, match="OME PhysicalSizeX / PhysicalSizeY give 0.2 µm per column and 0.3 µm per row") as record:
        assert read_image(path).attrs["pixel_size_um"] == pytest.approx(0.2)
    assert record[0].filename == __file__


@pytest.mark.parametrize(("dtype", "top"), [(np.uint8, 255), (np.uint16, 65535)])
def test_min_is_white_tiff_is_inverted(tmp_path, dtype, top):
    """PhotometricInterpretation 0 (MinIsWhite: 0 is white) was read raw, so a dark phase
    came out bright against every viewer (Pillow, Fiji) and every threshold flipped."""
    values = (np.arange(20 * 30).reshape(20, 30) % 200).astype(dtype)
    path = tmp_path / "minisw.tif"
    tifffile.imwrite(path, values, photometric="miniswhite")
    out = read_image(path, pixel_size_um=1.0)
    np.testing.assert_array_equal(out.values, top - values.astype(np.int64))
    if dtype == np.uint8:
        np.testing.assert_array_equal(out.values, np.asarray(Image.open(path)))  # as Pillow shows it
