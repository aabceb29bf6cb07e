"""F, F', Q and the adjusted Rand index against direct loop implementations written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import adjusted_rand_score

from metallo.errors import ConfigError
from metallo.segment import (
    adjusted_rand_index,
    criterion_f,
    criterion_f_prime,
    criterion_q,
    region_statistics,
    segmentation_criteria,
)


def reference_regions(image, labels):
    """Regions as (area, squared colour error), one label and one component at a time."""
    pixels = image.reshape(labels.shape + (-1,)).astype(float)
    regions = []
    for value in np.unique(labels):
        components, n = ndimage.label(labels == value)
        for c in range(1, n + 1):
            members = pixels[components == c]
            mean = members.mean(axis=0)
            error2 = sum(float(np.sum((p - mean) ** 2)) for p in members)
            regions.append((len(members), error2))
    return regions


def reference_criteria(image, labels):
    regions = reference_regions(image, labels)
    n_pixels = labels.size
    r = len(regions)
    fit = sum(e / math.sqrt(a) for a, e in regions)
    areas = [a for a, _ in regions]
    same_area = {a: areas.count(a) for a in areas}
    penalty = sum(count ** (1 + 1 / a) for a, count in same_area.items())
    q_sum = sum(e / (1 + math.log(a)) + (same_area[a] / a) ** 2 for a, e in regions)
    return {
        "F": math.sqrt(r) * fit / (1000 * n_pixels),
        "F_prime": math.sqrt(penalty) * fit / (1000 * n_pixels),
        "Q": math.sqrt(r) * q_sum / (1000 * n_pixels),
    }


def small_cases():
    rng = np.random.default_rng(7)
    cases = []
    for shape, n_labels, channels in (((6, 7), 2, 1), ((9, 8), 3, 1), ((12, 10), 4, 3), ((5, 5), 5, 1)):
        labels = rng.integers(0, n_labels, shape)
        image = rng.uniform(0, 255, shape + ((channels,) if channels > 1 else ()))
        cases.append((image, labels))
    blocks = np.zeros((8, 8), dtype=int)
    blocks[:, 4:] = 1
    blocks[2:4, 1:3] = 1  # an island: label 1 in two separate regions
    cases.append((np.arange(64, dtype=float).reshape(8, 8), blocks))
    return cases


@pytest.mark.parametrize("case", range(5))
def test_criteria_match_direct_loop_reference(case):
    image, labels = small_cases()[case]
    expected = reference_criteria(image, labels)
    assert criterion_f(image, labels) == pytest.approx(expected["F"], rel=1e-10)
    assert criterion_f_prime(image, labels) == pytest.approx(expected["F_prime"], rel=1e-10)
    assert criterion_q(image, labels) == pytest.approx(expected["Q"], rel=1e-10)
    together = segmentation_criteria(image, labels)
    assert together["F"] == pytest.approx(expected["F"], rel=1e-10)
    assert together["n_regions"] == len(reference_regions(image, labels))


def test_regions_are_connected_components_of_a_label():
    labels = np.zeros((8, 8), dtype=int)
    labels[:, 4:] = 1
    labels[2:4, 1:3] = 1
    stats = region_statistics(np.ones((8, 8)), labels)
    assert sorted(stats["area"].tolist()) == [4, 28, 32]
    assert np.all(stats["error2"] == 0)
    # Diagonal neighbours join only with 8-connectivity.
    checker = np.eye(4, dtype=int)
    assert region_statistics(np.ones((4, 4)), checker, connectivity=1)["area"].size == 6
    assert region_statistics(np.ones((4, 4)), checker, connectivity=2)["area"].size == 2


def test_f_is_lowest_for_the_true_partition():
    rng = np.random.default_rng(0)
    truth = np.zeros((40, 40), dtype=int)
    truth[:, 20:] = 1
    truth[25:, :] = 2
    image = np.array([40.0, 120.0, 200.0])[truth] + rng.normal(0, 5, truth.shape)
    merged = np.where(truth == 2, 1, truth)
    split = truth + 3 * (rng.random(truth.shape) < 0.1)
    assert criterion_f(image, truth) < criterion_f(image, merged)
    assert criterion_f(image, truth) < criterion_f(image, split)


def test_adjusted_rand_index_matches_sklearn():
    rng = np.random.default_rng(3)
    for _ in range(10):
        a = rng.integers(0, rng.integers(1, 6), (30, 20))
        b = np.where(rng.random(a.shape) < 0.7, a * 7 + 2, rng.integers(0, 4, a.shape))
        assert adjusted_rand_index(a, b) == pytest.approx(adjusted_rand_score(a.ravel(), b.ravel()), abs=1e-12)
    labels = rng.integers(0, 3, (10, 10))
    assert adjusted_rand_index(labels, (labels + 1) % 3) == pytest.approx(1.0)


def test_bad_inputs_raise_config_error():
    with pytest.raises(ConfigError, match="share"):
        criterion_f(np.zeros((4, 5)), np.zeros((4, 4), dtype=int))
    with pytest.raises(ConfigError, match="NaN"):
        criterion_q(np.full((4, 4), np.nan), np.zeros((4, 4), dtype=int))
    with pytest.raises(ConfigError, match="same size"):
        adjusted_rand_index(np.zeros(4), np.zeros(5))
