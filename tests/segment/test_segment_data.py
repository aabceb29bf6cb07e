"""Training-data folders, tiling with mirror padding, augmentation and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from metallo.errors import ConfigError, FormatError
from metallo.segment import (
    Augment,
    LabelledImage,
    SegmentationData,
    TileDataset,
    default_tile_size,
    load_training_folder,
    mirror_index,
)


def test_folder_with_classes_json(data_folder):
    data = load_training_folder(data_folder)
    assert data.classes == ["ferrite", "pearlite"] and len(data) == 4 and data.in_channels == 1
    assert data.pixel_size_um == 0.25
    s = data.samples[0]
    assert s.image.dtype == np.float32 and 0.0 <= s.image.min() and s.image.max() <= 1.0
    assert s.labels[0, 0] == 255 and set(np.unique(s.labels)) == {0, 1, 255}


def test_rgb_with_equal_channels_becomes_grey(data_folder):
    grey = np.asarray(Image.open(data_folder / "images" / "m0.png"))
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(data_folder / "images" / "m0.png")
    data = load_training_folder(data_folder)
    assert data.in_channels == 1
    assert np.allclose(data.samples[0].image[..., 0], grey / 255.0)


def test_uhcs_layout_reads_pixel_size_from_metadata(shared_file):
    folder = shared_file("uhcs_microconstituent_segmentation")
    data = load_training_folder(folder, classes=["matrix", "network", "spheroidite", "widmanstatten"])
    assert len(data) == 15 and data.in_channels == 1
    by_name = {s.name: s for s in data.samples}
    assert by_name["micrograph6"].pixel_size_um == pytest.approx(20.0 / 124, rel=1e-4)
    assert by_name["micrograph6"].labels.shape == (481, 645)


def test_size_mismatch_names_the_file(data_folder):
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(data_folder / "labels" / "m1.png")
    with pytest.raises(ConfigError, match=r"m1: label map is 10x12 but the image is 64x64"):
        load_training_folder(data_folder)


def test_labels_beyond_n_classes(data_folder):
    lab = np.asarray(Image.open(data_folder / "labels" / "m2.png")).copy()
    lab[5, 5] = 7
    Image.fromarray(lab).save(data_folder / "labels" / "m2.png")
    with pytest.raises(ConfigError, match="m2: label value 7 is beyond n_classes=2"):
        load_training_folder(data_folder)


def test_empty_and_incomplete_folders(tmp_path, data_folder):
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "labels").mkdir()
    with pytest.raises(ConfigError, match="no images"):
        load_training_folder(tmp_path / "empty")
    (tmp_path / "no_labels" / "images").mkdir(parents=True)
    with pytest.raises(ConfigError, match="expected sub-folders images/ and labels/"):
        load_training_folder(tmp_path / "no_labels")
    (data_folder / "labels" / "m3.png").unlink()
    with pytest.raises(ConfigError, match="m3.png: no label map"):
        load_training_folder(data_folder)
    (data_folder / "classes.json").write_text("{bad")
    with pytest.raises(FormatError, match="classes.json: not valid JSON"):
        load_training_folder(data_folder)


def test_default_tile_sizes_follow_the_paper():
    assert default_tile_size("LOM") == 256 and default_tile_size("SEM") == 512


def test_mirror_index_reflects_without_repeating_the_edge():
    assert mirror_index(np.arange(-2, 6), 4).tolist() == [2, 1, 0, 1, 2, 3, 2, 1]
    assert mirror_index(np.arange(-1, 2), 1).tolist() == [0, 0, 0]


def test_tiles_cover_the_image_with_mirror_padding():
    image = np.arange(40 * 50, dtype=np.float32).reshape(40, 50, 1)
    labels = (np.arange(40 * 50).reshape(40, 50) % 3).astype(np.uint8)
    data = SegmentationData([LabelledImage("a", image, labels)], ["a", "b", "c"])
    tiles = TileDataset(data, tile=32, mean=[0.0], std=[1.0])
    assert len(tiles) == 4  # 2 x 2 tiles of 32 px over 40 x 50
    seen = set()
    for i in range(len(tiles)):
        x, y = tiles[i]
        assert x.shape == (1, 32, 32) and y.shape == (32, 32) and y.dtype == np.int64
        seen |= set(x.ravel().astype(int).tolist())
        assert np.array_equal(x[0].astype(int) % 3, y)  # image and labels cut at the same place
    assert seen == set(range(40 * 50))


def test_augmentation_keeps_image_and_labels_aligned_and_is_seeded(two_phase_image):
    labels = two_phase_image((32, 32), seed=0)[1]
    image = labels[None].astype(np.float32)
    aug = Augment(brightness=0, contrast=0, gamma=0, elastic=1.0, elastic_alpha=4.0)
    for seed in range(5):
        x, y = aug(image, labels, np.random.default_rng(seed))
        assert np.mean(np.round(x[0]) == y) > 0.97  # bilinear vs nearest differ only at edges
    a = aug(image, labels, np.random.default_rng(3))
    b = aug(image, labels, np.random.default_rng(3))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    noisy = Augment(brightness=0.1, contrast=0.1, gamma=0.2, blur=1.0, flips=False, rot90=False)
    x, y = noisy(image, labels, np.random.default_rng(0))
    assert np.array_equal(y, labels) and not np.array_equal(x, image)


def test_augment_from_config():
    assert Augment.from_config(False) is None
    assert Augment.from_config({"elastic": 0.5}).elastic == 0.5
    with pytest.raises(ConfigError, match="unknown option"):
        Augment.from_config({"shear": 1})


def test_rescaling_halves_the_grid_and_doubles_the_pixel_size(two_phase_data):
    half = two_phase_data.rescaled(0.5)
    assert half.samples[0].image.shape == (32, 32, 1) and half.samples[0].labels.shape == (32, 32)
    assert half.samples[0].pixel_size_um == pytest.approx(0.2)
    assert set(np.unique(half.samples[0].labels)) <= {0, 1}
