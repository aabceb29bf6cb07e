"""Metrics on label maps whose confusion is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metallo.errors import ConfigError
from metallo.segment import (
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
