"""Unsupervised segmentation on a CPU: settings from image size and device, the paper preset,
stopping when the label map settles or the time budget is spent, progress callbacks, working
at a reduced size, and the quality record from independent evidence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metallo.errors import ConfigError
from metallo.segment import adjusted_rand_index, choose_n_classes, unsupervised
from metallo.segment._unsupervised import (
    PRESETS,
    STABLE_ITERATIONS,
    _ward_groups,
    unsupervised_quality,
    unsupervised_settings,
)


def test_auto_settings_follow_image_size_and_device():
    big = unsupervised_settings((1000, 1000), device="cpu")
    # 160 000 working pixels on a CPU: 1000 x 1000 -> 400 x 400, one superpixel per 20 px.
    assert big["scale"] == pytest.approx(0.4) and big["n_superpixels"] == 8000
    assert big["channels"] == 16 and big["max_time_s"] == 40.0 and big["min_change"] == 0.001
    assert big["pixel_refine"] is True
    small = unsupervised_settings((200, 300), device="cpu")
    assert small["scale"] == 1.0 and small["n_superpixels"] == 200 * 300 // 20
    custom = unsupervised_settings((1000, 1000), device="cpu", work_pixels=0, channels=8, max_time_s=5)
    assert custom["scale"] == 1.0 and custom["n_superpixels"] == 50_000 and custom["channels"] == 8
    assert custom["max_time_s"] == 5
    assert unsupervised_settings((10, 10), device="cpu", max_time_s=float("inf"))["max_time_s"] is None
    # Options left None take the preset's value.
    assert unsupervised_settings((1000, 1000), device="cpu", work_pixels=None)["scale"] == pytest.approx(0.4)
    with pytest.raises(ConfigError, match="preset must be"):
        unsupervised_settings((10, 10), preset="fast")
    with pytest.raises(ConfigError, match="unknown options"):
        unsupervised_settings((10, 10), n_superpixel=3)


def test_paper_preset_is_the_papers_configuration(multiphase):
    assert PRESETS["paper"] == {"n_superpixels": 50_000, "compactness": 20.0, "channels": 100, "n_conv": 2,
                                "n_outputs": 50, "lr": 0.1, "momentum": 0.9, "max_iter": 1000, "max_time_s": None,
                                "min_change": None, "work_pixels": None, "amp": False, "pixel_refine": False}
    settings = unsupervised_settings((1000, 1000), device="cpu", preset="paper")
    assert settings["scale"] == 1.0 and settings["n_superpixels"] == 50_000 and settings["channels"] == 100
    image, _ = multiphase(2)
    labels = unsupervised(image, n_classes=2, preset="paper", n_superpixels=1000, channels=8, max_iter=2,
                          device="cpu")
    config = json.loads(labels.attrs["config"])
    assert config["preset"] == "paper" and config["max_time_s"] is None and config["min_change"] is None
    assert config["work_pixels"] is None and config["amp"] is False and config["n_outputs"] == 50
    assert config["pixel_refine"] is False and json.loads(labels.attrs["pixel_refinement"])["applied"] is False


def test_training_stops_when_the_label_map_settles(multiphase):
    image, _ = multiphase(3)
    # Every iteration after the first changes fewer than 99.99 % of the pixels, so the map counts
    # as settled from iteration 2 and training stops STABLE_ITERATIONS later, long before 1 label.
    labels = unsupervised(image, n_classes=1, min_change=0.9999, max_iter=500, channels=8, n_superpixels=800,
                          max_time_s=float("inf"), device="cpu", quality=False)
    assert labels.attrs["stop_reason"] == "stable"
    assert labels.attrs["n_iterations"] == STABLE_ITERATIONS + 1
    assert labels.attrs["n_classes"] == 1


def test_time_budget_ends_training_and_callback_reports_each_iteration(multiphase):
    image, _ = multiphase(3)
    reports = []
    labels = unsupervised(image, n_classes=3, max_time_s=1e-6, channels=8, n_superpixels=800, device="cpu",
                          callback=reports.append)
    assert labels.attrs["stop_reason"] == "time" and labels.attrs["n_iterations"] == 1
    assert 1 <= labels.attrs["n_classes"] <= 3
    assert [r["iteration"] for r in reports] == [1]
    assert set(reports[0]) >= {"iteration", "max_iter", "n_labels", "changed", "elapsed_s", "max_time_s"}
    assert reports[0]["changed"] == 1.0
    many = []
    unsupervised(image, n_classes=3, channels=8, n_superpixels=800, max_iter=30, max_time_s=float("inf"),
                 device="cpu", callback=many.append)
    assert [r["iteration"] for r in many] == list(range(1, len(many) + 1))


def test_working_at_a_reduced_size_returns_full_size_labels(multiphase):
    image, truth = multiphase(2, shape=(256, 256))
    labels = unsupervised(image, n_classes=2, work_pixels=128 * 128, max_time_s=float("inf"), device="cpu", seed=1)
    assert labels.shape == (256, 256)
    assert json.loads(labels.attrs["config"])["scale"] == pytest.approx(0.5)
    assert adjusted_rand_index(truth, labels.values) >= 0.9


def test_a_grey_image_saved_as_rgb_is_segmented_as_the_grey_image(multiphase):
    # Many SEM PNGs hold the grey level three times; read_image returns them as (y, x, 3).
    # The network learnt differently from three copies (UHCS micrograph170: 98 % cementite
    # through `metallo analyze`, 20 % from the grey array): equal channels count as one.
    image, _ = multiphase(2, shape=(96, 96))
    grey = np.asarray(image.values if hasattr(image, "values") else image)
    options = {"n_classes": 2, "max_time_s": float("inf"), "device": "cpu", "seed": 3, "max_iter": 40}
    as_grey = unsupervised(grey, **options)
    as_rgb = unsupervised(np.repeat(grey[..., None], 3, axis=2), **options)
    np.testing.assert_array_equal(as_rgb.values, as_grey.values)
    # What the network sees: one channel for the grey-as-RGB image, three for a colour one.
    from metallo.segment._unsupervised import _as_float_stack

    rgb = np.repeat(grey[..., None], 3, axis=2)
    colour = np.stack([grey, grey[::-1], grey[:, ::-1]], axis=2)
    assert [a.shape[2] for a in _as_float_stack([rgb, rgb])] == [1, 1]
    assert [a.shape[2] for a in _as_float_stack([rgb, colour])] == [3, 3]  # a stack keeps one channel count
    assert unsupervised(colour, **options).shape == (96, 96)


def test_ward_merges_the_closest_labels_first():
    counts = np.array([10, 10, 0, 10])
    sums = np.array([[0.0], [10.0], [0.0], [100.0]])  # means 0, 1, -, 10
    groups = _ward_groups(counts, sums, 2)
    assert groups[0] == groups[1] != groups[3] and groups[2] == -1
    assert sorted(set(groups[[0, 1, 3]])) == [0, 1]


def test_quality_passes_a_clean_result_and_flags_a_wrong_one(multiphase):
    image, truth = multiphase(2)
    good = unsupervised_quality(image, truth)
    assert good["passed"] and good["threshold_ari"] > 0.8 and min(good["separation"]) > 2
    checker = (np.indices(truth.shape).sum(axis=0) // 8) % 2
    bad = unsupervised_quality(image, checker)
    assert not bad["passed"]
    assert any("not separated" in r for r in bad["reasons"]) and any("Otsu" in r for r in bad["reasons"])
    shifted = truth.copy()
    shifted[: truth.shape[0] // 4] = 1  # a quarter of the image wrongly called the bright phase
    assert any("fraction" in r for r in unsupervised_quality(image, shifted)["reasons"])


def test_a_doubtful_result_warns_and_says_why():
    rng = np.random.default_rng(0)
    noise = rng.normal(0.5, 0.1, (96, 96))  # no phases at all
    with pytest.warns(UserWarning, match="doubtful"):
        labels = unsupervised(noise, n_classes=3, channels=8, max_iter=20, device="cpu")
    quality = json.loads(labels.attrs["quality"])
    assert quality["passed"] is False and quality["reasons"]


def test_choose_n_classes_with_auto_settings_and_callback(multiphase):
    image, _ = multiphase(2)
    reports = []
    best, table = choose_n_classes(image, k_range=[2, 3], repeats=1, channels=8, max_iter=40, device="cpu",
                                   callback=reports.append)
    assert best in (2, 3) and [r["run"] for r in reports] == [1, 2] and reports[-1]["runs"] == 2
    assert json.loads(table.attrs["settings"])["preset"] == "auto"
