"""The synthetic EBSD map seen through metallo.ebsd: grains, KAM and GOS recover the truth."""

from __future__ import annotations

import numpy as np
import pytest

import metallo.ebsd as mebsd
from metallo.synth import make_specimen


@pytest.fixture(scope="module")
def ebsd_truth():
    return make_specimen(3, ebsd_shape=(120, 120), micrographs=False)


def test_grain_reconstruction_finds_the_true_grains(ebsd_truth):
    found = mebsd.grains(ebsd_truth.ebsd, tolerance_deg=5.0).ids.values
    truth = ebsd_truth.grain_ids
    ok = found >= 0
    # Each reconstructed grain lies (almost) wholly in one true grain and vice versa.
    pairs, counts = np.unique(np.stack([found[ok], truth[ok]]), axis=1, return_counts=True)
    purity_found = counts / np.bincount(found[ok])[pairs[0]]
    major = purity_found > 0.5
    assert np.all(purity_found[major] > 0.95)
    # Every true grain of 5+ points is found (slivers at the map edge fall under min_size_px).
    sizable = np.flatnonzero(np.bincount(truth.ravel()) >= 5)
    assert set(sizable) <= set(pairs[1][major])
    assert len(np.unique(pairs[0][major])) >= len(sizable)


def test_kam_and_gos_separate_ferrite_from_bainite(ebsd_truth):
    kam = mebsd.kam(ebsd_truth.ebsd).values
    gos = mebsd.grain_orientation_spread(ebsd_truth.ebsd, mebsd.grains(ebsd_truth.ebsd)).values
    ferrite, bainite = ebsd_truth.constituent == 0, ebsd_truth.constituent == 1
    # Ferrite: noise only (< 0.3 deg). Bainite: 1.5 deg/µm gradient plus lath boundaries.
    assert np.nanpercentile(kam[ferrite], 99) < 0.3
    assert np.nanmean(kam[bainite]) > 1.0
    assert np.nanpercentile(gos[ferrite], 95) < 0.3
    assert np.nanmean(gos[bainite]) > 2.0
