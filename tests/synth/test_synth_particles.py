"""make_particles and make_multiphase: the truth tables and labels match the images."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from metallo.errors import ConfigError
from metallo.synth import make_multiphase, make_particles


@pytest.fixture(scope="module")
def particles():
    return make_particles(
        (512, 512), pixel_size_um=0.05, n_particles=150, touching_fraction=0.3, seed=4
    )


def test_particle_table_matches_the_labels(particles):
    table, labels = particles.table, particles.labels
    assert labels.dtype == np.int32 and labels.max() == len(table) == 150
    np.testing.assert_array_equal(np.unique(labels), np.arange(151))
    measured = np.bincount(labels.ravel())[1:] * 0.05**2
    rel = measured / table["area_um2"].to_numpy() - 1.0
    # Pixelised discs of ~6 px radius: a few % each, unbiased on average.
    assert np.abs(rel).max() < 0.12
    assert abs(rel.mean()) < 0.02
    np.testing.assert_array_equal(table["n_pixels"].to_numpy(), np.bincount(labels.ravel())[1:])
    com = np.array(ndimage.center_of_mass(np.ones_like(labels), labels, np.arange(1, 151))) * 0.05
    single = ~table["touching"].to_numpy()
    np.testing.assert_allclose(
        com[single], table[["centroid_y_um", "centroid_x_um"]].to_numpy()[single], atol=0.02
    )
    np.testing.assert_allclose(table["ecd_um"], 2 * table["radius_um"])
    np.testing.assert_array_equal(particles.mask, labels > 0)


def test_touching_pairs_touch_and_nothing_else_does(particles):
    table, labels = particles.table, particles.labels
    assert table["touching"].mean() == pytest.approx(0.3, abs=0.01)
    partner = table["partner"].to_numpy()
    touching = np.flatnonzero(partner) + 1
    np.testing.assert_array_equal(partner[partner[touching - 1] - 1], touching)
    # Pixels of different particles that are 4-neighbours: exactly the declared pairs.
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
    contact = (a > 0) & (b > 0) & (a != b)
    found = {tuple(sorted(p)) for p in np.stack([a[contact], b[contact]], axis=1).tolist()}
    declared = {tuple(sorted((i, int(partner[i - 1])))) for i in touching}
    assert found == declared
    # Touching pairs merge into one blob of the mask; the others are separate blobs.
    n_blobs = ndimage.label(particles.mask)[1]
    assert n_blobs == len(table) - len(declared)


def test_radii_follow_the_requested_lognormal():
    p = make_particles(
        (1024, 1024), pixel_size_um=0.1, n_particles=600, radius_um=(0.4, 0.2), seed=9
    )
    log_r = np.log(p.table["radius_um"].to_numpy())
    assert np.exp(np.median(log_r)) == pytest.approx(0.4, rel=0.05)
    assert log_r.std() == pytest.approx(0.2, rel=0.15)


def test_particles_are_brighter_than_the_matrix_and_seeded(particles):
    image = particles.image
    assert image.attrs["pixel_size_um"] == 0.05 and image.dtype == np.uint8
    inner = ndimage.binary_erosion(particles.mask, iterations=2)
    outer = ~ndimage.binary_dilation(particles.mask, iterations=3)
    assert image.values[inner].mean() > image.values[outer].mean() + 60
    again = make_particles(
        (512, 512), pixel_size_um=0.05, n_particles=150, touching_fraction=0.3, seed=4
    )
    np.testing.assert_array_equal(again.image.values, image.values)


def test_too_many_particles_is_a_config_error():
    with pytest.raises(ConfigError, match="do not fit"):
        make_particles((64, 64), n_particles=500, radius_um=(0.3, 0.1))
    with pytest.raises(ConfigError, match="touching_fraction"):
        make_particles(touching_fraction=1.5)


@pytest.mark.parametrize("n_phases", [2, 3, 6])
def test_multiphase_has_the_requested_phases_with_distinct_levels(n_phases):
    image, labels = make_multiphase((128, 160), n_phases=n_phases, pixel_size_um=0.2, seed=n_phases)
    assert image.shape == labels.shape == (128, 160) and labels.dtype == np.uint8
    assert image.attrs["pixel_size_um"] == 0.2
    np.testing.assert_array_equal(np.unique(labels), np.arange(n_phases))
    core = [ndimage.binary_erosion(labels == k, iterations=2) for k in range(n_phases)]
    means = np.array([image.values[c].mean() for c in core])
    assert (np.diff(means) > 20).all()  # phase k is brighter than phase k-1


def test_multiphase_regions_are_blobs_not_speckle():
    _, labels = make_multiphase((256, 256), n_phases=4, seed=0)
    n_regions = sum(ndimage.label(labels == k)[1] for k in range(4))
    assert n_regions < 80
    edges = np.mean(labels[:, 1:] != labels[:, :-1])
    assert edges < 0.05


def test_multiphase_rejects_bad_phase_counts():
    with pytest.raises(ConfigError, match="n_phases"):
        make_multiphase(n_phases=7)
