"""Exports: label PNG/TIFF + class JSON, Specimen node, training tiles, fractions, review figure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from annotate_helpers import AffineRegistration
from PIL import Image

from metallo._xarray import image_dataarray
from metallo.annotate import (
    add_annotation,
    fraction_table,
    from_ebsd,
    review_figure,
    to_micrograph,
    write_labels,
    write_training_tiles,
)
from metallo.errors import ConfigError

RULES = {
    "classes": ["polygonal_ferrite", "lath_bainite"],
    "rules": {"lath_bainite": {"gos": {"gt": 2.0}}},
    "ignore": {"border_px": 1},
}


@pytest.fixture
def mask(known_map):
    return from_ebsd(known_map.ebsd, rules=RULES, grains=known_map.grains)


@pytest.fixture
def lom_and_mask(known_map, mask):
    rng = np.random.default_rng(0)
    lom = image_dataarray(rng.integers(0, 255, (70, 90), dtype=np.uint8), pixel_size_um=0.25, name="lom",
                          attrs={"modality": "LOM"})
    return lom, to_micrograph(mask, AffineRegistration(lom, 0.8, (2.0, 3.0)), lom)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_write_labels_round_trips_values_and_class_table(mask, tmp_path, suffix):
    path = write_labels(mask, tmp_path / f"bainite{suffix}")
    values = np.asarray(Image.open(path)) if suffix == ".png" else tifffile.imread(path)
    np.testing.assert_array_equal(values, mask.values)
    table = json.loads(path.with_suffix(".json").read_text())
    assert table["classes"] == ["polygonal_ferrite", "lath_bainite"]
    assert table["ignore_index"] == 255 and table["pixel_size_um"] == 0.5
    assert table["thresholds"]["gos"]["value"] == 2.0
    assert table["rules"]["rules"] == RULES["rules"]
    with pytest.raises(ConfigError, match=".jpg"):
        write_labels(mask, tmp_path / "bainite.jpg")


def test_training_tiles_skip_mostly_ignored_tiles(lom_and_mask, tmp_path):
    lom, on_lom = lom_and_mask
    written = write_training_tiles(lom, on_lom, tmp_path, tile=32)
    # Offsets 0, 32 and the edge-flush 38 (rows) / 58 (cols): 3 x 3 candidates.
    all_tiles = [(r, c) for r in (0, 32, 38) for c in (0, 32, 58)]
    expected = [(r, c) for r, c in all_tiles if (on_lom.values[r : r + 32, c : c + 32] == 255).mean() <= 0.5]
    assert sorted(zip(written["row"], written["col"], strict=True)) == sorted(expected)
    assert 0 < len(expected) < len(all_tiles)
    first = written.iloc[0]
    image = np.asarray(Image.open(tmp_path / "images" / f"{first['stem']}.png"))
    labels = np.asarray(Image.open(tmp_path / "labels" / f"{first['stem']}.png"))
    r, c = int(first["row"]), int(first["col"])
    np.testing.assert_array_equal(image, lom.values[r : r + 32, c : c + 32])
    np.testing.assert_array_equal(labels, on_lom.values[r : r + 32, c : c + 32])
    classes = json.loads((tmp_path / "classes.json").read_text())
    assert classes == {"classes": ["polygonal_ferrite", "lath_bainite"], "ignore_index": 255, "pixel_size_um": 0.25}
    # metallo.segment reads the folder back: same pairs, classes and ignore index.
    from metallo.segment import load_training_folder

    data = load_training_folder(tmp_path)
    assert len(data.samples) == len(expected)
    assert list(data.classes) == ["polygonal_ferrite", "lath_bainite"] and data.ignore_index == 255


def test_training_tiles_refuse_a_different_class_table(lom_and_mask, tmp_path):
    lom, on_lom = lom_and_mask
    (tmp_path / "classes.json").write_text(json.dumps({"classes": ["matrix", "cementite"], "ignore_index": 255}))
    with pytest.raises(ConfigError, match="matrix"):
        write_training_tiles(lom, on_lom, tmp_path, tile=32)


def test_default_tile_follows_modality(lom_and_mask, tmp_path):
    lom, on_lom = lom_and_mask
    big = image_dataarray(np.zeros((600, 600), np.uint8), pixel_size_um=0.1, name="sem", attrs={"modality": "SEM"})
    labels = image_dataarray(np.zeros((600, 600), np.uint8), pixel_size_um=0.1, attrs=dict(on_lom.attrs))
    written = write_training_tiles(big, labels, tmp_path / "sem")
    assert sorted(set(written["row"])) == [0, 88]  # 512 px tiles: 0 and the edge-flush 600 - 512


def test_fraction_table_on_both_grids(mask, lom_and_mask):
    _, on_lom = lom_and_mask
    table = fraction_table(mask, on_lom)
    valid = mask.values != 255
    assert table.loc["lath_bainite", "ebsd_fraction"] == pytest.approx((mask.values[valid] == 1).mean())
    assert table.loc["ignore", "ebsd_fraction"] == pytest.approx(1 - valid.mean())
    assert table.loc["lath_bainite", "ebsd_area_um2"] == pytest.approx((mask.values == 1).sum() * 0.25)
    assert table.loc["lath_bainite", "micrograph_area_um2"] == pytest.approx((on_lom.values == 1).sum() * 0.0625)
    on_valid = on_lom.values != 255
    assert table.loc["lath_bainite", "micrograph_fraction"] == pytest.approx((on_lom.values[on_valid] == 1).mean())
    assert table.loc["lath_bainite", "difference"] == pytest.approx(
        (on_lom.values[on_valid] == 1).mean() - (mask.values[valid] == 1).mean()
    )


def test_review_figure_writes_png_and_csv(lom_and_mask, mask, tmp_path):
    lom, on_lom = lom_and_mask
    boundaries = np.zeros(lom.shape, np.uint8)
    boundaries[::10, :] = 2
    fig = review_figure(lom, on_lom, boundaries=boundaries, ebsd_labels=mask, path=tmp_path / "review.png")
    assert len(fig.axes) == 4
    assert fig.axes[1].get_title() == "EBSD boundaries (grey 2-15°, black >15°)"
    # Sigma3 (code 3) is drawn yellow, and the title says so where there is any.
    boundaries[5, :] = 3
    titled = review_figure(lom, on_lom, boundaries=boundaries, ebsd_labels=mask)
    assert titled.axes[1].get_title() == "EBSD boundaries (grey 2-15°, black >15°, yellow Σ3)"
    assert Image.open(tmp_path / "review.png").size[0] > 1000
    csv = (tmp_path / "review.csv").read_text()
    assert "lath_bainite" in csv and "micrograph_fraction" in csv
    with pytest.raises(ConfigError, match="warp"):
        review_figure(lom, mask)


def test_add_annotation_stores_node_with_rules(mask, lom_and_mask, tmp_path):
    from metallo.specimen import Specimen

    spec = Specimen.create(tmp_path / "s.h5", specimen_id="s")
    node = add_annotation(spec, "bainite", mask, inputs=["ebsd/map"])
    spec.save()
    again = Specimen.open(tmp_path / "s.h5")
    stored = again[node]
    np.testing.assert_array_equal(stored["labels"].values, mask.values)
    assert json.loads(stored.attrs["classes"]) == ["polygonal_ferrite", "lath_bainite"]
    assert json.loads(stored.attrs["thresholds"])["gos"]["value"] == 2.0
    record = again.provenance[-1]
    assert record["outputs"] == [node] and record["inputs"] == ["ebsd/map"]
    assert record["parameters"]["rules"]["rules"] == RULES["rules"]
    # The node read back works wherever the DataArray does.
    lom, on_lom = lom_and_mask
    again_on_lom = to_micrograph(stored, AffineRegistration(lom, 0.8, (2.0, 3.0)), lom)
    np.testing.assert_array_equal(again_on_lom.values, on_lom.values)
    assert fraction_table(stored).loc["lath_bainite", "ebsd_fraction"] == fraction_table(mask).loc["lath_bainite", "ebsd_fraction"]
