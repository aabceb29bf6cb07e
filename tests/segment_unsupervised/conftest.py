"""Small synthetic multi-phase micrographs and CPU settings for the unsupervised tests."""

from __future__ import annotations

import pytest

from metallo.synth import make_multiphase

#: Reduced settings for 128 x 128 test images (the paper's 50 000 superpixels and 100 channels
#: are for 1000 x 1000 images on a GPU): ~16 px per superpixel as in the paper; no time budget,
#: so a busy machine changes the duration, not the result. The CNN is under test here, so
#: without the pixel-level refinement (tested on its own in test_segment_unsupervised_refine.py).
FAST = {"n_superpixels": 1000, "channels": 16, "max_iter": 100, "device": "cpu", "max_time_s": float("inf"),
        "pixel_refine": False}


@pytest.fixture
def fast_options() -> dict:
    return dict(FAST)


@pytest.fixture
def multiphase():
    """``multiphase(k, seed)`` -> (image DataArray, truth labels), 128 x 128, blobs ~40 px."""

    def make(n_phases: int, seed: int = 1, shape: tuple[int, int] = (128, 128)):
        return make_multiphase(shape, n_phases=n_phases, seed=seed, region_size_um=4.0)

    return make
