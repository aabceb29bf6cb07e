"""Metrics on label maps whose confusion is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metallo.errors import ConfigError
from metallo.segment import (
    boundary_errors,
    boundary_summary,
    confusion_matrix,
    mean_iou,
    metrics_from_confusion,
    pixel_accuracy,
    segmentation_metrics,
)


def test_known_confusion_and_scores():
    truth = np.array([[0, 0, 0, 1], [1, 1, 2, 2], [255, 255, 2, 2]])
    pred = np.array([[0, 0, 1, 1], [1, 2, 2, 2], [0, 1, 2, 2]])
    cm = confusion_matrix(truth, pred, n_classes=3)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 1], [0, 0, 4]]
    m = metrics_from_confusion(cm, classes=["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(8 / 10)
    assert m["iou"] == pytest.approx([2 / 3, 2 / 4, 4 / 5])
    assert m["precision"] == pytest.approx([1.0, 2 / 3, 4 / 5])
    assert m["recall"] == pytest.approx([2 / 3, 2 / 3, 1.0])
    assert m["mean_iou"] == pytest.approx((2 / 3 + 0.5 + 0.8) / 3)
    assert m["n_pixels"] == 10


def test_absent_class_is_nan_and_left_out_of_the_mean():
    m = segmentation_metrics([0, 0, 1], [0, 0, 1], n_classes=3)
    assert math.isnan(m["iou"][2]) and m["mean_iou"] == 1.0
    assert pixel_accuracy([0, 1], [1, 1], n_classes=2) == 0.5
    assert mean_iou([0, 1], [0, 1], n_classes=2) == 1.0


def test_bad_labels_raise():
    with pytest.raises(ConfigError, match="truth labels must be in 0..1"):
        confusion_matrix([0, 5], [0, 1], n_classes=2)
    with pytest.raises(ConfigError, match="differ in size"):
        confusion_matrix([0, 1], [0, 1, 1], n_classes=2)


def test_boundary_errors_tell_a_misplaced_boundary_from_a_wrong_region():
    truth = np.zeros((40, 40), int)
    truth[:, 20:] = 1                         # one boundary, between columns 19 and 20
    shifted = np.zeros_like(truth)
    shifted[:, 22:] = 1                       # the boundary placed 2 px off: 2 columns wrong
    counts = boundary_errors(truth, shifted, band_px=2)
    assert counts == {"errors_within": 80, "errors": 80, "pixels_within": 6 * 40, "pixels": 1600}
    assert boundary_summary(counts) == {"band_px": 2, "error_share": 1.0, "pixel_share": 0.15, "accuracy_beyond": 1.0}
    # A wrong 5 x 5 patch far from the boundary: all its errors lie beyond the band.
    wrong = truth.copy()
    wrong[5:10, 2:7] = 1
    counts = boundary_errors(truth, wrong, band_px=2)
    assert (counts["errors_within"], counts["errors"]) == (0, 25)
    assert boundary_summary(counts)["accuracy_beyond"] == pytest.approx(1 - 25 / (1600 - 240))


def test_boundary_errors_ignore_unlabelled_edges():
    truth = np.zeros((10, 10), int)
    truth[:, 6:] = 255                        # unlabelled: its edge is no class boundary
    pred = np.ones_like(truth)                # every labelled pixel wrong
    counts = boundary_errors(truth, pred)
    assert counts == {"errors_within": 0, "errors": 60, "pixels_within": 0, "pixels": 60}
    summary = boundary_summary(counts)
    assert summary["error_share"] == 0.0 and summary["accuracy_beyond"] == 0.0
    assert math.isnan(boundary_summary(boundary_errors(truth, np.zeros_like(truth)))["error_share"])
    with pytest.raises(ConfigError, match="one shape"):
        boundary_errors(truth, pred[:5])
