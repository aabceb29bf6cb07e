"""Training-data folders, tiling with mirror padding, augmentation and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from metallo.errors import ConfigError, FormatError
from metallo.io import read_image, write_image
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


def test_pixel_size_priority_metadata_csv_then_classes_json_then_file(data_folder):
    for i in range(4):  # every image now carries its own calibration (PNG pHYs)
        path = data_folder / "images" / f"m{i}.png"
        write_image(read_image(path, pixel_size_um=0.5), path)

    def sizes():
        return [s.pixel_size_um for s in load_training_folder(data_folder).samples]

    assert sizes() == [0.25] * 4  # classes.json beats the file
    (data_folder / "metadata.csv").write_text("micrograph_id,um_per_px\nm1,0.125\n")
    assert sizes() == [0.25, 0.125, 0.25, 0.25]  # metadata.csv beats both
    (data_folder / "classes.json").write_text('{"classes": ["ferrite", "pearlite"]}')
    assert sizes() == [0.5, 0.125, 0.5, 0.5]  # else the file's own


def test_labels_are_read_as_class_ids(data_folder):
    labels = np.zeros((64, 64), np.uint8)
    labels[10:20, 30:50], labels[:3, :3] = 1, 255
    palette = Image.fromarray(labels, "P")
    # A palette whose colours are not the ids: the ids must come back, not the red channel.
    palette.putpalette([200, 0, 0, 10, 250, 0] + [0, 0, 0] * 253 + [255, 255, 255])
    palette.save(data_folder / "labels" / "m0.png")
    write_image(labels.astype(np.uint16), data_folder / "labels" / "m1.tif")
    (data_folder / "labels" / "m1.png").unlink()
    data = load_training_folder(data_folder)
    for sample in data.samples[:2]:
        assert sample.labels.dtype == np.uint8 and np.array_equal(sample.labels, labels)


def test_a_colour_mask_is_refused_and_a_grey_mask_in_rgb_is_read(data_folder):
    """A mask painted in pure colours (red ferrite, blue pearlite) as RGB: its red channel had been
    taken for the ids, 255 and 0, so ferrite became ignore and training went on without a word."""
    labels = np.asarray(Image.open(data_folder / "labels" / "m0.png")).copy()
    colours = np.array([[0, 0, 255], [255, 0, 0]], np.uint8)[np.minimum(labels, 1)]
    Image.fromarray(colours, "RGB").save(data_folder / "labels" / "m0.png")
    with pytest.raises(ConfigError, match=r"m0\.png: a colour mask \(2 colours: \(0, 0, 255\), \(255, 0, 0\)\); "
                                          r"label maps hold class ids"):
        load_training_folder(data_folder)
    # The same ids written grey in three equal channels are ids.
    Image.fromarray(np.repeat(labels[..., None], 3, axis=2), "RGB").save(data_folder / "labels" / "m0.png")
    assert np.array_equal(load_training_folder(data_folder).samples[0].labels, labels)


def test_sixteen_bit_tiff_images_scale_by_65535(data_folder):
    values = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16
    write_image(values, data_folder / "images" / "m2.tif", pixel_size_um=0.1)
    (data_folder / "images" / "m2.png").unlink()
    sample = load_training_folder(data_folder).samples[2]
    assert sample.name == "m2" and np.allclose(sample.image[..., 0], values / 65535.0)


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


def test_scale_augmentation_zooms_image_and_labels_together():
    from metallo.segment._data import Augment

    image = np.zeros((1, 64, 64), np.float32)
    labels = np.zeros((64, 64), np.uint8)
    image[0, 24:40, 24:40] = 1.0
    labels[24:40, 24:40] = 1
    zoomed, zoomed_labels = Augment._zoom(image, labels, 2.0)
    # A centred 16 px square magnified 2x covers 32 x 32 px, in image and labels alike.
    assert int(zoomed_labels.sum()) == pytest.approx(32 * 32, rel=0.1)
    assert np.array_equal(zoomed[0] > 0.5, zoomed_labels == 1)
    aug = Augment(flips=False, rot90=False, brightness=0, contrast=0, gamma=0, scale=0.5)
    _, lab = aug(image, labels, np.random.default_rng(0))
    assert 16 * 16 / 1.5**2 * 0.8 <= lab.sum() <= 16 * 16 * 1.5**2 * 1.2


def test_tiles_zoom_from_the_field_around_them_not_from_a_mirror():
    from metallo.segment._data import Augment, LabelledImage, SegmentationData, TileDataset

    # A ramp rising one grey level per pixel along x, and labels that mark every 8th column.
    x = np.arange(512, dtype=np.float32)
    image = np.broadcast_to(x / 511, (512, 512))[..., None].copy()
    labels = np.broadcast_to((np.arange(512) % 8 == 0).astype(np.uint8), (512, 512)).copy()
    data = SegmentationData([LabelledImage("ramp", image, labels)], ["a", "b"])
    aug = Augment(flips=False, rot90=False, brightness=0, contrast=0, gamma=0, scale=1.0)
    tiles = TileDataset(data, tile=32, mean=[0.0], std=[1.0], augment=aug, jitter=False)
    slopes, stripes = [], []
    for epoch in range(20):
        tiles.set_epoch(epoch)
        for i in (5, 6, 9, 10):  # tiles away from the image border: nothing is mirrored there
            img, lab = tiles[i]
            steps = np.diff(img[0, 16]) * 511
            assert (steps > 0).all()  # the ramp keeps rising: the context is real, not a reflection
            slopes.append(float(np.median(steps)))
            stripes.append(lab[16].sum())
    # Magnifications from 0.5x to 2x: a tile shows 16 to 64 px of the image, one grey step per image px.
    assert min(slopes) < 0.6 and max(slopes) > 1.7 and all(0.45 < s < 2.1 for s in slopes)
    # The label stripes scale with the image: ~2 per tile at 2x, ~8 at 0.5x.
    assert min(stripes) <= 3 and max(stripes) >= 7


def test_class_balanced_tiles_oversample_a_rare_class():
    from metallo.segment._data import LabelledImage, SegmentationData, TileDataset

    labels = np.zeros((256, 256), np.uint8)
    labels[100:104, 100:104] = 1  # 16 of 65 536 px
    data = SegmentationData([LabelledImage("a", np.zeros((256, 256, 1), np.float32), labels)], ["matrix", "rare"])

    def share(balance):
        ds = TileDataset(data, tile=32, mean=[0.0], std=[1.0], balance=balance)
        hits = 0
        for epoch in range(4):
            ds.set_epoch(epoch)
            hits += sum(bool((ds[i][1] == 1).any()) for i in range(len(ds)))
        return hits / (4 * len(ds))

    assert share(0.0) <= 1 / 64 + 1e-9  # one tile of the 8 x 8 grid holds the rare pixels
    assert share(1.0) >= 0.4  # half the balanced tiles are centred on the rare class
    with pytest.raises(ConfigError, match="balance"):
        TileDataset(data, tile=32, mean=[0.0], std=[1.0], balance=2.0)


def test_boundary_band_marks_the_pixels_next_to_another_class():
    from metallo.segment import boundary_band

    labels = np.zeros((10, 20), np.uint8)
    labels[:, 10:] = 1  # one vertical class boundary between columns 9 and 10
    labels[:, :2] = 255  # unlabelled: no class boundary
    band = boundary_band(labels, 1)
    assert band.sum() == 2 * 10 and band[:, 9].all() and band[:, 10].all()
    assert boundary_band(labels, 2).sum() == 4 * 10  # two columns on each side
    assert not boundary_band(labels, 0).any()
    assert not boundary_band(np.zeros((5, 5), np.uint8), 3).any()  # one class: no boundary
    square = np.zeros((9, 9), np.uint8)
    square[3:6, 3:6] = 1
    # inside: the 8 pixels of the 3 x 3 square next to the matrix; outside: the 12 4-neighbours
    assert boundary_band(square, 1).sum() == 8 + 12


def test_without_boundaries_ignores_the_band_and_keeps_the_rest(two_phase_data):
    from metallo.segment import boundary_band

    out = two_phase_data.without_boundaries(1)
    for before, after in zip(two_phase_data.samples, out.samples, strict=True):
        band = boundary_band(before.labels, 1)
        assert band.any()
        assert (after.labels[band] == 255).all()
        assert (after.labels[~band] == before.labels[~band]).all()
    assert two_phase_data.without_boundaries(0) is two_phase_data
