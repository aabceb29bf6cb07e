"""make_specimen: determinism, EBSD layout, and the ground truth checked against the data."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from metallo.ebsd import euler_to_quat, misorientation_angle, phases_of
from metallo.errors import ConfigError
from metallo.synth import ebsd_points_um, make_specimen
from metallo.synth._transforms import random_field_transform


def _small_angle_deg(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Rotation angle between nearby orientations, without symmetry (they are a few deg apart)."""
    dot = np.abs(np.sum(q1 * q2, axis=-1))
    return np.degrees(2.0 * np.arccos(np.clip(dot, -1.0, 1.0)))


def test_same_seed_same_specimen_other_seed_other_specimen():
    a = make_specimen(5, ebsd_shape=(40, 50))
    b = make_specimen(5, ebsd_shape=(40, 50))
    c = make_specimen(6, ebsd_shape=(40, 50))
    np.testing.assert_array_equal(a.ebsd.euler.values, b.ebsd.euler.values)
    np.testing.assert_array_equal(a.ebsd.iq.values, b.ebsd.iq.values)
    np.testing.assert_array_equal(a.lom.values, b.lom.values)
    np.testing.assert_array_equal(a.sem_labels, b.sem_labels)
    assert not np.array_equal(a.grain_ids, c.grain_ids)
    assert not np.array_equal(a.lom.values, c.lom.values)


def test_ebsd_map_follows_the_layout(specimen):
    ebsd = specimen.ebsd
    assert ebsd.euler.dims == ("y", "x", "angle") and ebsd.euler.shape == (120, 120, 3)
    assert ebsd.phase.dtype == np.int16
    assert set(np.unique(ebsd.phase.values)) <= {-1, 0}
    for name in ("ci", "iq", "fit"):
        assert ebsd[name].dtype == np.float32 and ebsd[name].dims == ("y", "x")
    assert ebsd.attrs["step_um"] == 0.5 and ebsd.attrs["grid"] == "square"
    assert ebsd.attrs["source"] == "metallo.synth"
    assert phases_of(ebsd) == [
        {
            "id": 0,
            "name": "ferrite",
            "symmetry": "m-3m",
            "lattice": [2.87, 2.87, 2.87, 90.0, 90.0, 90.0],
        }
    ]
    np.testing.assert_allclose(ebsd.x.values[[0, -1]], [0.0, 59.5])
    unindexed = ebsd.phase.values == -1
    assert 0 < unindexed.sum() < 0.01 * unindexed.size
    np.testing.assert_array_equal(ebsd.ci.values[unindexed], -1.0)
    assert (ebsd.ci.values[~unindexed] >= 0).all() and (ebsd.ci.values <= 1).all()
    assert specimen.truth["unindexed_points"] == unindexed.sum()


def test_ferrite_grains_are_single_orientations_and_bainite_blocks_are_not(specimen):
    q = euler_to_quat(specimen.ebsd.euler.values)
    indexed = specimen.ebsd.phase.values == 0
    mean = specimen.grain_quaternions[specimen.grain_ids]
    spread = _small_angle_deg(q, mean)
    ferrite = indexed & (specimen.constituent == 0)
    bainite = indexed & (specimen.constituent == 1)
    # Measurement noise only in ferrite: capped at 3 x 0.08 deg.
    assert spread[ferrite].max() < 0.3
    # Lath rotations + a 1.5 deg/µm gradient over blocks of ~7 µm: several degrees.
    assert np.median(spread[bainite]) > 1.5
    assert np.percentile(spread[bainite], 95) > 3.0


def test_neighbouring_grains_are_mostly_high_angle(specimen):
    ids = specimen.grain_ids
    pairs = np.concatenate(
        [
            np.stack([ids[:, :-1].ravel(), ids[:, 1:].ravel()], axis=1),
            np.stack([ids[:-1, :].ravel(), ids[1:, :].ravel()], axis=1),
        ]
    )
    pairs = np.unique(np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1), axis=0)
    q = specimen.grain_quaternions
    angle = misorientation_angle(q[pairs[:, 0]], q[pairs[:, 1]])
    # Random cubic orientations: ~97 % of the Mackenzie distribution lies above 15 deg.
    assert len(pairs) > 100
    assert np.mean(angle > 15.0) > 0.9


def test_neighbouring_laths_are_a_few_degrees_apart(specimen):
    q = euler_to_quat(specimen.ebsd.euler.values)
    ids, cons = specimen.grain_ids, specimen.constituent
    ok = specimen.ebsd.phase.values == 0
    same = (ids[:, :-1] == ids[:, 1:]) & (cons[:, :-1] == 1) & ok[:, :-1] & ok[:, 1:]
    step = _small_angle_deg(q[:, :-1][same], q[:, 1:][same])
    # Along a row inside a block: mostly the 0.75 deg gradient per step, with lath boundaries
    # of a few degrees in between; never a high-angle jump.
    assert step.max() < 8.0
    assert np.mean(step > 1.5) > 0.05
    assert np.median(step) < 1.5


@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_bainite_fraction_is_close_to_the_request(fraction):
    spec = make_specimen(11, ebsd_shape=(200, 200), bainite_fraction=fraction, micrographs=False)
    measured = spec.constituent.mean()
    assert measured == pytest.approx(fraction, abs=0.06)
    assert spec.truth["bainite_fraction"] == pytest.approx(measured)


def test_iq_ci_contrast_between_constituents_and_at_boundaries(specimen):
    iq, ci = specimen.ebsd.iq.values, specimen.ebsd.ci.values
    ok = specimen.ebsd.phase.values == 0
    interior = specimen.truth["boundary_distance_um"] > 1.0
    boundary = specimen.truth["boundary_distance_um"] < 0.1
    ferrite, bainite = specimen.constituent == 0, specimen.constituent == 1
    assert iq[ok & interior & ferrite].mean() > 1.3 * iq[ok & interior & bainite].mean()
    assert iq[ok & boundary].mean() < 0.6 * iq[ok & interior & ferrite].mean()
    assert ci[ok & boundary].mean() < 0.5 * ci[ok & interior].mean()


def test_micrographs_are_images_with_pixel_size_and_checksums(specimen):
    for image, modality, ps in ((specimen.lom, "LOM", 0.3), (specimen.sem, "SEM", 0.1)):
        assert image.dims == ("y", "x") and image.dtype == np.uint8
        assert image.attrs["modality"] == modality
        assert image.attrs["pixel_size_um"] == ps
        assert image.attrs["sha256"] == hashlib.sha256(image.values.tobytes()).hexdigest()
        assert float(image.x[1] - image.x[0]) == pytest.approx(ps)
    assert specimen.lom_labels.shape == specimen.lom.shape == specimen.lom_field.shape
    assert specimen.sem_labels.shape == specimen.sem.shape == specimen.sem_field.shape


@pytest.mark.parametrize("name, ps", [("lom", 0.3), ("sem", 0.1)])
def test_transforms_invert_each_other(specimen, name, ps):
    forward = getattr(specimen, f"ebsd_to_{name}")
    inverse = getattr(specimen, f"{name}_to_ebsd")
    rng = np.random.default_rng(0)
    p = rng.uniform(-10, 70, (500, 2))
    assert np.abs(inverse(forward(p)) - p).max() / ps < 1e-3
    q = rng.uniform(0, 40, (500, 2))
    assert np.abs(forward(inverse(q)) - q).max() / ps < 1e-3


@pytest.mark.parametrize("name, ps", [("lom", 0.3), ("sem", 0.1)])
def test_transform_is_affine_plus_a_deformation_of_a_few_pixels(specimen, name, ps):
    affine = specimen.truth[f"{name}_affine_px"]
    rows, cols = np.meshgrid(np.arange(0, 120, 7), np.arange(0, 120, 7), indexing="ij")
    px = np.stack([rows.ravel(), cols.ravel()], axis=1).astype(float)
    exact = getattr(specimen, f"ebsd_to_{name}")(px * 0.5) / ps
    linear = px @ affine[:2, :2].T + affine[:2, 2]
    residual = np.linalg.norm(exact - linear, axis=1)
    assert residual.max() <= specimen.truth[f"{name}_deformation_px"] + 1e-9
    assert residual.max() > 0.3  # the deformation is there, not only the affine part
    rotation = np.degrees(np.arctan2(affine[1, 0], affine[0, 0]))
    assert 0.5 < abs(rotation) < 5.5


@pytest.mark.parametrize("name, ps", [("lom", 0.3), ("sem", 0.1)])
def test_micrograph_labels_agree_with_the_ebsd_constituent(specimen, name, ps):
    forward = getattr(specimen, f"ebsd_to_{name}")
    labels = getattr(specimen, f"{name}_labels")
    field = getattr(specimen, f"{name}_field")
    rows, cols = np.nonzero(specimen.truth["boundary_distance_um"] > 0.6)
    where = np.rint(forward(np.stack([rows, cols], axis=1) * 0.5) / ps).astype(int)
    inside = (
        (where >= 0).all(axis=1) & (where[:, 0] < labels.shape[0]) & (where[:, 1] < labels.shape[1])
    )
    assert inside.sum() > 1000
    r, c = where[inside].T
    np.testing.assert_array_equal(labels[r, c], specimen.constituent[rows[inside], cols[inside]])
    assert field[r, c].all()


def test_lom_covers_the_field_with_a_margin_and_sem_a_part_of_it(specimen):
    assert specimen.lom_field.any() and not specimen.lom_field.all()
    corners = np.array([[0, 0], [0, 59.5], [59.5, 0], [59.5, 59.5]])
    lom_px = specimen.ebsd_to_lom(corners) / 0.3
    assert (lom_px > 2).all() and (lom_px < np.array(specimen.lom.shape) - 3).all()
    # The SEM field is smaller than the EBSD field and overhangs it a little.
    assert 0.7 < specimen.sem_field.mean() < 1.0
    # A known field area: the LOM field covers the EBSD field area (60 µm)^2 within 3 %.
    assert specimen.lom_field.sum() * 0.3**2 == pytest.approx(60.0**2, rel=0.03)


def test_micrograph_contrast_differs_by_constituent(specimen):
    lom = specimen.lom.values.astype(float)
    assert lom[specimen.lom_labels == 0].mean() > lom[specimen.lom_labels == 1].mean() + 40
    sem = specimen.sem.values.astype(float)
    assert sem[specimen.sem_labels == 1].mean() > sem[specimen.sem_labels == 0].mean()


def test_micrographs_can_be_skipped_and_then_transforms_say_so():
    spec = make_specimen(0, ebsd_shape=(30, 30), micrographs=False)
    assert spec.lom is None and spec.sem_labels is None
    with pytest.raises(ConfigError, match="micrographs=False"):
        spec.ebsd_to_lom(np.zeros((1, 2)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"bainite_fraction": 1.5}, "bainite_fraction"),
        ({"ebsd_shape": (1, 10)}, "ebsd_shape"),
        ({"lath_width_um": (1.0, 0.5)}, "lath_width_um"),
        ({"step_um": 0.0}, "positive"),
    ],
)
def test_bad_parameters_raise_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_specimen(0, **kwargs)


def test_hexagonal_grid_specimen_is_consistent():
    spec = make_specimen(7, ebsd_shape=(60, 70), step_um=0.35, grid="hexagonal")
    ebsd = spec.ebsd
    assert ebsd.attrs["grid"] == "hexagonal"
    assert ebsd.attrs["step_y_um"] == pytest.approx(0.35 * np.sqrt(3) / 2)
    points = ebsd_points_um(ebsd)
    np.testing.assert_allclose(points[1, 0], [0.35 * np.sqrt(3) / 2, 0.175])
    np.testing.assert_allclose(points[2, 3], [0.7 * np.sqrt(3) / 2, 1.05])
    # The micrograph truth agrees with the EBSD constituent at the true hexagonal positions.
    far = spec.truth["boundary_distance_um"] > 0.6
    where = np.rint(spec.ebsd_to_lom(points[far]) / 0.3).astype(int)
    np.testing.assert_array_equal(spec.lom_labels[where[:, 0], where[:, 1]], spec.constituent[far])


def test_grain_table_areas_add_up_to_the_field(specimen):
    table = specimen.truth["grain_table"]
    assert table["ebsd_points"].sum() == specimen.grain_ids.size
    np.testing.assert_array_equal(
        table["ebsd_points"].to_numpy(),
        np.bincount(specimen.grain_ids.ravel(), minlength=len(table)),
    )
    assert table["ebsd_area_um2"].sum() == pytest.approx(120 * 120 * 0.25)
    # Ferrite grains: mean ECD of whole grains near the requested 7 µm.
    ferrite = table[(table["constituent"] == 0) & (table["ebsd_points"] > 0)]
    interior = ferrite[(ferrite["y_um"].between(10, 50)) & (ferrite["x_um"].between(10, 50))]
    ecd = 2 * np.sqrt(interior["ebsd_area_um2"] / np.pi)
    assert ecd.mean() == pytest.approx(7.0, rel=0.15)


@pytest.mark.parametrize("seed", range(6))
def test_random_field_transforms_invert_to_a_thousandth_of_a_pixel(seed):
    rng = np.random.default_rng(seed)
    ps = 0.1
    t = random_field_transform(
        rng, ebsd_extent_um=(80.0, 120.0), centre_ebsd_um=(40.0, 60.0), centre_micrograph_um=(50.0, 70.0),
        rotation_deg=(1.0, 5.0), scale_error=0.01, shear=0.005, deformation_um=10 * ps,
    )  # fmt: skip
    p = rng.uniform(-20, 140, (2000, 2))
    assert np.abs(t.inverse(t.forward(p)) - p).max() / ps < 1e-3
    # The deformation is as large as asked and no larger.
    size = np.linalg.norm(t.displacement(p), axis=1)
    assert size.max() <= 10 * ps + 1e-12 and size.max() > 2 * ps
