"""Synthetic multi-phase micrographs with known phase maps for the unsupervised tests."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage


def multiphase_image(shape=(128, 128), *, n_phases=3, seed=0, noise=0.03):
    """Blobby phases of distinct mean grey level and texture, and their truth labels.

    Phase ``p`` has mean ``0.15 + 0.7 p / (n_phases - 1)``, its own fine texture (smoothed noise of
    amplitude 0.04) and white noise ``noise``; phases are the argmax of smoothed random fields,
    so boundaries are smooth and every phase covers a sizeable area.
    """
    rng = np.random.default_rng(seed)
    fields = np.stack([ndimage.gaussian_filter(rng.standard_normal(shape), sigma=min(shape) / 10)
                       for _ in range(n_phases)])
    labels = fields.argmax(axis=0)
    means = 0.15 + 0.7 * np.arange(n_phases) / max(n_phases - 1, 1)
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=1.0)
    texture *= 0.04 / texture.std()
    image = means[labels] + texture + noise * rng.standard_normal(shape)
    return image, labels


@pytest.fixture
def make_multiphase():
    return multiphase_image
