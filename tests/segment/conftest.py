"""Fixtures for the supervised segmentation tests: small synthetic two-phase micrographs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from metallo.segment._data import LabelledImage, SegmentationData


def two_phase(shape: tuple[int, int] = (64, 64), *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A bright, rough phase 1 in a dark, smooth phase 0 (blobs of ~10 px), uint8 + labels.

    Phase 0 has mean 70 and phase 1 mean 170 with noise sigma 20: an easy, known answer.
    """
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 4, mode="wrap")
    labels = (field > 0).astype(np.uint8)
    image = np.where(labels == 1, 170.0, 70.0) + rng.normal(0, 20, shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


@pytest.fixture
def two_phase_data() -> SegmentationData:
    samples = []
    for i in range(4):
        image, labels = two_phase((64, 64), seed=i)
        samples.append(LabelledImage(f"synth{i}", image[..., None].astype(np.float32) / 255, labels, 0.1))
    return SegmentationData(samples, ["ferrite", "pearlite"])


@pytest.fixture
def data_folder(tmp_path: Path) -> Path:
    """DATA_DIR/images + labels + classes.json with four 64x64 two-phase images."""
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i in range(4):
        image, labels = two_phase((64, 64), seed=10 + i)
        Image.fromarray(image).save(tmp_path / "images" / f"m{i}.png")
        labels[:3, :3] = 255
        Image.fromarray(labels).save(tmp_path / "labels" / f"m{i}.png")
    (tmp_path / "classes.json").write_text(json.dumps({"classes": ["ferrite", "pearlite"], "ignore_index": 255,
                                                       "pixel_size_um": 0.25}))
    return tmp_path
