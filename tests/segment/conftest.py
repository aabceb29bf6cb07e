"""Fixtures for the supervised segmentation tests: small synthetic two-phase micrographs
from :func:`metallo.synth.make_multiphase` (dark flat phase 0, bright textured phase 1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metallo.segment._data import LabelledImage, SegmentationData
from metallo.synth import make_multiphase


def two_phase(shape: tuple[int, int] = (64, 64), *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 micrograph and its uint8 labels (0/1), blobs of about 1/8 of the width."""
    image, labels = make_multiphase(shape, n_phases=2, pixel_size_um=0.1, seed=seed)
    return np.asarray(image.values), np.asarray(labels, dtype=np.uint8)


@pytest.fixture
def two_phase_image():
    """The generator ``two_phase(shape, seed=...)`` for tests that need their own sizes."""
    return two_phase


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
