"""SEM data bars: the rows an FEI/Thermo or Zeiss TIFF stores below the scanned frame are cropped
on reading (``read_image(databar=...)``), so that no fraction or registration counts them."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from metallo.errors import ConfigError, SchemaError
from metallo.io import read_image, suspected_databar_rows, write_image
from metallo.quantify import measure_particles, phase_fractions


def _bar(width: int, rows: int) -> np.ndarray:
    """An FEI-style data bar: black, a white rule on top, white text and a scale bar."""
    im = Image.new("L", (width, rows), 0)
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, 0, width - 1, 1], fill=255)
    draw.text((6, 6), "HV 20.00 kV  WD 10.1 mm  mag 2 000 x  det BSED  HFW 64 um", fill=255)
    draw.rectangle([width - 120, 8, width - 30, 14], fill=255)
    draw.text((width - 100, rows - 16), "10 um", fill=255)
    return np.asarray(im)


def _fei_ini(rows: int, cols: int, *, image_section: bool = True) -> str:
    ini = f"[User]\nDate=01/02/2024\n[Scan]\nPixelWidth=2.5e-08\nPixelHeight=2.5e-08\nVerFieldsize={rows * 2.5e-08!r}\n"
    if image_section:
        ini += f"[Image]\nResolutionX={cols}\nResolutionY={rows}\n"
    return ini


def _frame(rows: int = 120, cols: int = 80) -> np.ndarray:
    return np.random.default_rng(0).integers(40, 200, (rows, cols)).astype(np.uint8)


@pytest.mark.parametrize("image_section", [True, False], ids=["ResolutionY", "VerFieldsize"])
def test_fei_tiff_data_bar_is_cropped_exactly(tmp_path, image_section):
    frame = _frame()
    path = tmp_path / "fei.tif"
    tifffile.imwrite(path, np.vstack([frame, _bar(80, 24)]),
                     extratags=[(34682, "s", 0, _fei_ini(120, 80, image_section=image_section), True)])
    image = read_image(path)
    assert image.shape == (120, 80)
    np.testing.assert_array_equal(image.values, frame)
    assert image.attrs["databar_rows"] == 24
    assert image.attrs["pixel_size_um"] == pytest.approx(0.025)
    # y coordinates still start at the top row, one pixel size apart
    np.testing.assert_allclose(image["y"].values[[0, -1]], [0.0, 119 * 0.025])
    kept = read_image(path, databar="keep")
    assert kept.shape == (144, 80) and kept.attrs["databar_rows_kept"] == 24 and "databar_rows" not in kept.attrs


def test_zeiss_store_resolution_below_the_image_is_a_data_bar(tmp_path):
    text = "\r\n".join(["0", "AP_IMAGE_PIXEL_SIZE", "Image Pixel Size = 27.70 nm",
                        "DP_IMAGE_STORE", "Store resolution = 80 * 120"])
    path = tmp_path / "zeiss.tif"
    tifffile.imwrite(path, np.vstack([_frame(), _bar(80, 16)]), extratags=[(34118, "s", 0, text, True)])
    image = read_image(path)
    assert image.shape == (120, 80) and image.attrs["databar_rows"] == 16
    # A data zone drawn over the frame (image rows == the stored frame) cannot be told: nothing cropped.
    tifffile.imwrite(path, _frame(), extratags=[(34118, "s", 0, text, True)])
    image = read_image(path)
    assert image.shape == (120, 80) and "databar_rows" not in image.attrs


def test_resized_fei_image_scales_the_stated_frame(tmp_path):
    # A 2x-downsampled export that kept its tags: 60 frame rows + 12 bar rows at 40 columns.
    path = tmp_path / "half.tif"
    small = np.vstack([_frame(60, 40), _bar(40, 12)])
    tifffile.imwrite(path, small, extratags=[(34682, "s", 0, _fei_ini(120, 80), True)])
    assert read_image(path).shape == (60, 40)


def test_metadata_of_another_frame_is_not_cropped_and_warns(tmp_path):
    path = tmp_path / "crop.tif"
    tifffile.imwrite(path, _frame(), extratags=[(34682, "s", 0, _fei_ini(40, 0, image_section=False), True)])
    with pytest.warns(UserWarning, match="too many for a data bar"):
        image = read_image(path)
    assert image.shape == (120, 80) and "databar_rows" not in image.attrs


def test_images_without_vendor_metadata_are_untouched_unless_told(tmp_path):
    frame = np.vstack([_frame(), _bar(80, 10)])
    path = write_image(frame, tmp_path / "export.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert read_image(path).shape == (130, 80)
        image = read_image(path, databar=10)
    assert image.shape == (120, 80) and image.attrs["databar_rows"] == 10
    np.testing.assert_array_equal(image.values, frame[:120])


def _styled_bar(width: int, rows: int, background: int, ink: int, style: str) -> np.ndarray:
    """Data bars as microscopes and exports render them: bitmap or antialiased text, a rule line."""
    from matplotlib import font_manager

    im = Image.new("L", (width, rows), background)
    draw = ImageDraw.Draw(im)
    font = (ImageFont.truetype(font_manager.findfont("DejaVu Sans"), max(9, rows // 4)) if style == "antialiased"
            else ImageFont.load_default())
    if style == "rule":
        draw.rectangle([0, 0, width - 1, 1], fill=ink)
    draw.text((6, 4), "HV 20.00 kV  WD 10.1 mm  mag 2 000 x  det BSED", fill=ink, font=font)
    draw.text((6, rows // 2), "HFW 64.0 um  2019-03-05 14:22", fill=ink, font=font)
    draw.rectangle([width - width // 5, rows // 3, width - 20, rows // 3 + 4], fill=ink)
    draw.text((width - width // 6, rows // 2 + 2), "10 um", fill=ink, font=font)
    return np.asarray(im, dtype=np.float64) / 255.0


def test_a_bar_without_metadata_is_found_by_its_look_on_every_real_micrograph(shared_file):
    """No false alarm on the real micrographs; a bar of any of three colourings, two fonts or a
    rule line, appended or drawn over the bottom rows, found to the row."""
    images = [shared_file("correlative_ebsd_bse_coni") / "Slice381_bse.tif",
              shared_file("correlative_ebsd_bse_more") / "Slice8_TFS_bse_resized.png"]
    for folder in ("uhcs_microconstituent_segmentation", "uhcs_spheroidite_particle_segmentation"):
        images += sorted((shared_file(folder) / "images").glob("*.png"))
    assert len(images) == 28
    found = []
    for path in images:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.filterwarnings("error", message=".*data bar")  # a false alarm would be this warning
            grey = np.asarray(read_image(path, as_gray=True).values, dtype=np.float64)
        assert suspected_databar_rows(grey) == 0, path.name
        lo, hi = np.percentile(grey, [0.5, 99.5])
        rows = max(24, grey.shape[0] // 12)
        for style in ("bitmap", "antialiased", "rule"):
            for background, ink in ((0, 255), (255, 0), (40, 230)):
                bar = lo + _styled_bar(grey.shape[1], rows, background, ink, style) * (hi - lo)
                for image in (np.vstack([grey, bar]), np.vstack([grey[:-rows], bar])):
                    found.append(suspected_databar_rows(image) - rows)
    found = np.array(found)
    assert not np.any(found), np.unique(found)


def test_read_image_warns_about_a_bar_the_metadata_does_not_state(tmp_path, shared_file):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its pixel size is unknown
        raw = np.asarray(read_image(shared_file("correlative_ebsd_bse_coni") / "Slice381_bse.tif").values, np.float64)
    grey = np.rint(255 * (raw - raw.min()) / (raw.max() - raw.min())).astype(np.uint8)
    bar = np.rint(_styled_bar(grey.shape[1], 40, 0, 255, "bitmap") * 255).astype(np.uint8)
    path = write_image(np.vstack([grey, bar]), tmp_path / "export.png", pixel_size_um=0.5)
    with pytest.warns(UserWarning, match="bottom 40 rows look like an SEM data bar.*databar=40"):
        image = read_image(path)
    assert image.shape == (grey.shape[0] + 40, grey.shape[1]) and image.attrs["databar_rows_suspected"] == 40
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*data bar")
        assert read_image(path, databar=40).shape == grey.shape
        assert read_image(path, databar="keep").shape == image.shape


@pytest.mark.parametrize("bad", ["auto", True, -1, 120, 1.5])
def test_bad_databar_argument_is_a_config_error(tmp_path, bad):
    path = write_image(_frame(), tmp_path / "a.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ConfigError, match="databar"):
            read_image(path, databar=bad)


def test_real_micrograph_measures_are_unchanged_by_its_data_bar(tmp_path, shared_file):
    """A real UHCS particle micrograph saved as an FEI TIFF with its bar: the cementite fraction
    and particle count measured on what read_image returns are the original's; with the bar kept,
    the bar's pixels enter the fraction and its glyphs are counted as particles."""
    folder = shared_file("uhcs_spheroidite_particle_segmentation")
    original = np.asarray(Image.open(folder / "images" / "micrograph1013.png").convert("L"))
    rows, cols = original.shape
    bar = _bar(cols, max(24, rows // 12))
    path = tmp_path / "micrograph1013_fei.tif"
    tifffile.imwrite(path, np.vstack([original, bar]), extratags=[(34682, "s", 0, _fei_ini(rows, cols), True)])
    level = threshold_otsu(original)  # one threshold for all: only the pixels counted differ

    def measures(image: np.ndarray) -> tuple[float, int]:
        mask = image > level
        table = phase_fractions(mask.astype(np.uint8), classes=["ferrite", "cementite"])
        cementite = float(table.set_index("class").loc["cementite", "fraction"])
        return cementite, len(measure_particles(ndi.label(mask)[0], pixel_size_um=0.025))

    truth_fraction, truth_count = measures(original)
    read = read_image(path)
    assert read.shape == original.shape and read.attrs["databar_rows"] == bar.shape[0]
    fraction, count = measures(read.values)
    assert fraction == pytest.approx(truth_fraction, abs=1e-12) and count == truth_count
    kept_fraction, kept_count = measures(read_image(path, databar="keep").values)
    bright = int((bar > level).sum())
    assert kept_fraction == pytest.approx((truth_fraction * original.size + bright) / (original.size + bar.size), rel=1e-9)
    assert kept_count >= truth_count + 20  # the bar's glyphs and scale bar


def test_cli_micrograph_crops_the_bar_and_records_it(tmp_path):
    from typer.testing import CliRunner

    from metallo.cli import app
    from metallo.specimen import Specimen

    path = tmp_path / "fei.tif"
    tifffile.imwrite(path, np.vstack([_frame(), _bar(80, 24)]), extratags=[(34682, "s", 0, _fei_ini(120, 80), True)])
    runner = CliRunner()
    spec_path = tmp_path / "s.h5"
    result = runner.invoke(app, ["micrograph", str(path), "--specimen", str(spec_path), "--name", "bse"])
    assert result.exit_code == 0, result.output
    spec = Specimen.open(spec_path)
    node = spec["micrographs/bse"]
    assert node["image"].shape == (120, 80) and int(node.attrs["databar_rows"]) == 24
    (record,) = [r for r in spec.provenance if r["step"] == "io.read_image"]
    assert record["parameters"]["databar_rows"] == 24
    result = runner.invoke(app, ["micrograph", str(path), "--specimen", str(spec_path), "--name", "full", "--keep-databar"])
    assert result.exit_code == 0, result.output
    assert Specimen.open(spec_path)["micrographs/full"]["image"].shape == (144, 80)
    result = runner.invoke(app, ["micrograph", str(path), "--specimen", str(spec_path), "--name", "x", "--keep-databar",
                                 "--databar-rows", "3"])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1 and "--keep-databar" in result.output


def test_recipe_micrograph_takes_a_databar_setting(tmp_path):
    from metallo._recipe import load_recipe

    def recipe(databar: object) -> dict:
        return {"specimen": {"id": "S1"},
                "inputs": {"micrographs": {"bse": {"path": str(tmp_path / "fei.tif"), "databar": databar}}}}

    for ok in ("crop", "keep", 40):
        assert load_recipe(recipe(ok)).data["inputs"]["micrographs"]["bse"]["databar"] == ok
    for bad in ("sometimes", -3):
        with pytest.raises(SchemaError, match="inputs.micrographs.bse.databar"):
            load_recipe(recipe(bad))


def test_training_folder_labels_drawn_with_the_bar_lose_its_rows(tmp_path):
    from metallo.segment import load_training_folder

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    frame = _frame()
    labels = np.vstack([(frame > 120).astype(np.uint8), np.full((24, 80), 255, np.uint8)])  # bar: ignore
    tifffile.imwrite(tmp_path / "images" / "a.tif", np.vstack([frame, _bar(80, 24)]),
                     extratags=[(34682, "s", 0, _fei_ini(120, 80), True)])
    write_image(labels, tmp_path / "labels" / "a.png")
    data = load_training_folder(tmp_path, n_classes=2)
    (sample,) = data.samples
    assert sample.image.shape[:2] == (120, 80)
    np.testing.assert_array_equal(sample.labels, labels[:120])


def test_fractions_from_a_micrograph_with_a_suspected_bar_fail_qc(tmp_path, shared_file, monkeypatch):
    """Real UHCS micrograph1013 exported as PNG with a bar and no metadata: the bar is kept (a look
    is not proof), so the analysis' QC fails on the micrograph; databar=<rows> settles it."""
    import yaml
    from typer.testing import CliRunner

    from metallo.cli import app

    grey = np.asarray(Image.open(shared_file("uhcs_spheroidite_particle_segmentation/images/micrograph1013.png")).convert("L"))
    bar = np.rint(_styled_bar(grey.shape[1], 40, 0, 255, "bitmap") * 255).astype(np.uint8)
    write_image(np.vstack([grey, bar]), tmp_path / "m1013.png", pixel_size_um=0.09709)
    monkeypatch.chdir(tmp_path)

    def analyze(micrograph: dict, name: str) -> str:
        recipe = {"specimen": {"id": name}, "output": {"dir": "out"},
                  "inputs": {"micrographs": {"sem": {"path": "m1013.png", "modality": "SEM", **micrograph}}},
                  "steps": {"segment": {"micrograph": "sem", "method": "unsupervised", "n_classes": 2,
                                        "classes": ["ferrite", "cementite"]},
                            "quantify": {"what": ["phases"]}},
                  "limits": {"cementite": [0.0, 0.9]}}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(recipe))
        result = CliRunner().invoke(app, ["analyze", f"{name}.yaml", "-q"])
        assert result.exit_code == 0, result.output
        return result.output

    kept = analyze({}, "kept")
    assert "FAILED check micrographs/sem: the bottom 40 rows look like an SEM data bar" in kept
    (line,) = [ln for ln in kept.splitlines() if ln.startswith("QC FAIL: the phase fractions rest on")]
    assert "micrographs/sem" in line
    assert "micrographs/sem" not in analyze({"databar": 40}, "cropped")


_TESCAN = ("[MAIN]\r\nCompany=TESCAN\r\nDevice=MIRA3\r\nImageStripSize=24\r\nPixelSizeX=4.1e-008\r\n"
           "PixelSizeY=4.1e-008\r\n[SEM]\r\nHV=15000.0\r\nWD=0.0100\r\n")


def test_tescan_tag_gives_pixel_size_and_info_strip(tmp_path):
    path = tmp_path / "mira.tif"
    frame = _frame()
    header = b"\x01\x00\x02\x00TESCAN binary prefix\x00" + _TESCAN.encode("latin-1")
    tifffile.imwrite(path, np.vstack([frame, _bar(80, 24)]), extratags=[(50431, "B", len(header), header, True)])
    image = read_image(path)
    assert image.attrs["pixel_size_um"] == pytest.approx(0.041)
    assert image.attrs["modality"] == "SEM"
    assert image.attrs["databar_rows"] == 24
    np.testing.assert_array_equal(image.values, frame)


def test_tescan_sidecar_header_serves_an_exported_png(tmp_path):
    frame = _frame()
    path = write_image(np.vstack([frame, _bar(80, 24)]), tmp_path / "mira.png")
    (tmp_path / "mira-png.hdr").write_text(_TESCAN, encoding="latin-1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pixel size known, bar stated: nothing to warn about
        image = read_image(path)
    assert image.attrs["pixel_size_um"] == pytest.approx(0.041) and image.attrs["databar_rows"] == 24
    np.testing.assert_array_equal(image.values, frame)
