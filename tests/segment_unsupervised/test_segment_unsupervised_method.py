"""The unsupervised CNN + superpixel segmentation recovers known phases."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from metallo.errors import ConfigError
from metallo.segment import (
    adjusted_rand_index,
    choose_n_classes,
    plot_criteria,
    refine_by_superpixels,
    slic_superpixels,
    unsupervised,
    unsupervised_stack,
)


def loop_refinement(labels: np.ndarray, superpixels: np.ndarray) -> np.ndarray:
    """The paper's (Kanezaki's) refinement, one superpixel at a time."""
    out = labels.copy()
    for sp in np.unique(superpixels):
        members = np.where(superpixels == sp)[0]
        values, counts = np.unique(labels[members], return_counts=True)
        out[members] = values[np.argmax(counts)]
    return out


def test_refinement_matches_loop_including_ties():
    rng = np.random.default_rng(0)
    superpixels = rng.integers(0, 40, 2000)
    labels = rng.integers(0, 6, 2000)
    superpixels[:4], labels[:4] = 40, [3, 1, 3, 1]  # a 2-2 tie: the smaller label wins
    expected = loop_refinement(labels, superpixels)
    got = refine_by_superpixels(torch.from_numpy(labels), torch.from_numpy(superpixels), n_superpixels=41, n_labels=6)
    np.testing.assert_array_equal(got.numpy(), expected)
    assert got[0].item() == 1


def test_superpixels_are_numbered_without_gaps_and_follow_a_step_edge():
    image = np.zeros((60, 60))
    image[:, 27:] = 1.0
    sp = slic_superpixels(image, n_superpixels=36, compactness=20)
    assert set(np.unique(sp)) == set(range(sp.max() + 1))
    assert np.intersect1d(sp[:, :27], sp[:, 27:]).size == 0


@pytest.mark.parametrize("n_phases", [2, 3, 4])
def test_recovers_known_phases(multiphase, fast_options, n_phases):
    image, truth = multiphase(n_phases)
    labels = unsupervised(image, n_classes=n_phases, seed=1, **fast_options)
    assert adjusted_rand_index(truth, labels.values) >= 0.9
    # Phases of make_multiphase get brighter with their index; labels are ordered the same way.
    assert np.mean(labels.values == truth) >= 0.95


def test_output_is_a_label_dataarray_on_the_image_grid(multiphase, fast_options):
    image, _ = multiphase(2)
    labels = unsupervised(image, n_classes=2, seed=0, **fast_options)
    assert isinstance(labels, xr.DataArray) and labels.dims == ("y", "x")
    np.testing.assert_allclose(labels.x.values, image.x.values)
    assert labels.attrs["pixel_size_um"] == pytest.approx(0.1)
    assert labels.attrs["model"] == "unsupervised" and labels.attrs["checkpoint_sha256"] == ""
    assert labels.attrs["n_classes"] == 2
    assert json.loads(labels.attrs["config"])["n_superpixels"] == fast_options["n_superpixels"]
    means = json.loads(labels.attrs["class_mean_intensity"])
    assert means == sorted(means)
    values = image.values.astype(float)
    assert values[labels.values == 0].mean() < values[labels.values == 1].mean()


def test_same_seed_same_result_and_plain_arrays(multiphase, fast_options):
    image, _ = multiphase(3)
    first = unsupervised(image.values, n_classes=3, seed=4, **fast_options)
    second = unsupervised(image.values, n_classes=3, seed=4, **fast_options)
    np.testing.assert_array_equal(first.values, second.values)


def test_iteration_limit_still_gives_at_most_n_classes(multiphase, fast_options):
    image, _ = multiphase(3)
    options = {**fast_options, "max_iter": 2}
    labels = unsupervised(image, n_classes=3, seed=0, **options)
    assert labels.attrs["n_iterations"] == 2
    assert 1 <= len(np.unique(labels.values)) <= 3


def test_stack_labels_mean_the_same_phase_in_every_image(multiphase, fast_options):
    (a, truth_a), (b, truth_b) = multiphase(3, seed=1), multiphase(3, seed=2, shape=(112, 128))
    maps = unsupervised_stack([a, b], n_classes=3, seed=1, **fast_options)
    assert [m.shape for m in maps] == [(128, 128), (112, 128)]
    for labels, truth in zip(maps, (truth_a, truth_b), strict=True):
        assert np.mean(labels.values == truth) >= 0.95


def test_too_many_superpixels_for_the_image_warns():
    image = np.random.default_rng(0).random((32, 32))
    with pytest.warns(UserWarning, match="pixels per superpixel"):
        unsupervised(image, n_superpixels=500, channels=4, max_iter=1, device="cpu")


def test_bad_input_raises_config_error(fast_options):
    image = np.random.default_rng(0).random((128, 128))
    with pytest.raises(ConfigError, match="n_classes"):
        unsupervised(image, n_classes=0, **fast_options)
    with pytest.raises(ConfigError, match="NaN"):
        unsupervised(np.full((32, 32), np.nan), **fast_options)
    with pytest.raises(ConfigError, match="device"):
        unsupervised(image, **{**fast_options, "device": "tpu"})
    with pytest.raises(ConfigError, match="channels"):
        unsupervised_stack([image, np.dstack([image, image])], **fast_options)
    # A stack of 5 images had been segmented as one 5 x 128 image of 128 channels.
    with pytest.raises(ConfigError, match=r"shape \(5, 128, 128\) has more channels \(128\).*stack of images"):
        unsupervised(np.stack([image] * 5), **fast_options)
    with pytest.raises(ConfigError, match="real numbers; got dtype complex128"):
        unsupervised(image.astype(complex), **fast_options)
    with pytest.raises(ConfigError, match="unknown options"):
        choose_n_classes(image, n_superpixel=100)
    with pytest.raises(ConfigError, match="criterion"):
        choose_n_classes(image, criterion="G")


@pytest.mark.slow
@pytest.mark.parametrize("n_phases", [2, 3, 4])
def test_choose_n_classes_recovers_the_true_count(multiphase, n_phases, tmp_path):
    image, _ = multiphase(n_phases)
    # The paper's method (full-size image, no early stop) with a small network: the criterion is under test.
    best, table = choose_n_classes(image, k_range=range(2, 6), repeats=2, preset="paper", n_superpixels=1000,
                                   channels=16, max_iter=60, device="cpu")
    assert best == n_phases
    assert list(table.index) == [2, 3, 4, 5]
    assert table.loc[best, "best"] and table["Q"].idxmin() == best
    assert table.attrs["criterion"] == "Q"
    png = plot_criteria(table, tmp_path / "k.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_colour_image_is_segmented_in_cielab(multiphase, fast_options):
    image, truth = multiphase(2)
    grey = image.values.astype(float) / 255
    rgb = np.dstack([grey, 0.8 * grey, 0.5 + 0.3 * grey])  # a tinted micrograph
    labels = unsupervised(rgb, n_classes=2, seed=1, **fast_options)
    assert adjusted_rand_index(truth, labels.values) >= 0.9
