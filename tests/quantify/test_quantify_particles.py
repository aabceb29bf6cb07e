"""Particle table: known disks, touching pairs, edges, ellipse shape, Feret calipers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from metallo.errors import ConfigError
from metallo.quantify import measure_particles, particle_sizes, split_touching


def test_isolated_disks_ecd_within_2_percent(disks):
    rng = np.random.default_rng(1)
    radii = [4.0, 5.5, 7.0, 9.0, 12.0, 16.0, 20.0, 25.0]
    centres = [(40 + 70 * (k // 4) + rng.uniform(-0.5, 0.5), 40 + 70 * (k % 4) + rng.uniform(-0.5, 0.5))
               for k in range(len(radii))]
    ids = disks((180, 300), centres, radii)
    table = particle_sizes(ids > 0, pixel_size_um=0.05)
    assert len(table) == len(radii)
    table = table.sort_values("area_px")
    expected = 2 * np.array(radii) * 0.05
    np.testing.assert_allclose(table["ecd_um"].to_numpy(), expected, rtol=0.02)
    # A digital disk is round: Feret max ~ Feret min ~ diameter + a pixel.
    np.testing.assert_allclose(table["feret_max_um"].to_numpy(), expected + 0.05, rtol=0.05, atol=0.05)
    np.testing.assert_allclose(table["aspect_ratio"].to_numpy()[2:], 1.0, atol=0.03)


@pytest.mark.parametrize("radius", [6.0, 10.0, 15.0])
@pytest.mark.parametrize("gap", [0.0, -0.1])
def test_touching_pairs_split_into_two(disks, radius, gap):
    # gap 0: tangent disks; gap -0.1: centres 1.9 R apart (a lens of 0.67 % of each area)
    d = (2 + gap) * radius
    centres = [(50.3, 30.2), (50.3 + d * 0.6, 30.2 + d * 0.8)]
    ids = disks((110, 110), centres, [radius, radius])
    mask = ids > 0
    naive = particle_sizes(mask, pixel_size_um=1.0, split_touching=False)
    assert len(naive) == 1
    table = particle_sizes(mask, pixel_size_um=1.0)
    assert len(table) == 2
    np.testing.assert_allclose(table["ecd_um"].to_numpy(), 2 * radius, rtol=0.02)


def test_chain_and_cluster_counts(disks):
    r = 8.0
    centres = [(30, 20 + 16 * k) for k in range(5)] + [(80, 40), (80, 56), (80 + 16 * np.sqrt(3) / 2, 48)]
    ids = disks((120, 130), centres, [r] * len(centres))
    table = particle_sizes(ids > 0, pixel_size_um=1.0)
    assert len(table) == len(centres)
    np.testing.assert_allclose(table["ecd_um"].to_numpy(), 2 * r, rtol=0.03)


def test_elongated_particle_not_oversplit():
    yy, xx = np.mgrid[:80, :120]
    a, b, angle = 40.0, 8.0, np.radians(30.0)
    u = (xx - 60) * np.cos(angle) + (yy - 40) * np.sin(angle)
    v = -(xx - 60) * np.sin(angle) + (yy - 40) * np.cos(angle)
    mask = (u / a) ** 2 + (v / b) ** 2 <= 1
    table = particle_sizes(mask, pixel_size_um=1.0)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["orientation_deg"] == pytest.approx(30.0, abs=1.0)
    assert row["aspect_ratio"] == pytest.approx(a / b, rel=0.03)
    assert row["major_axis_um"] == pytest.approx(2 * a, rel=0.02)
    assert row["feret_max_um"] == pytest.approx(2 * a, rel=0.03)
    assert row["feret_min_um"] == pytest.approx(2 * b, rel=0.08)


def test_rectangle_feret_and_axes():
    ids = np.zeros((50, 60), np.int32)
    ids[10:20, 5:45] = 1
    row = measure_particles(ids, pixel_size_um=0.5).iloc[0]
    assert row["feret_min_um"] == pytest.approx(10 * 0.5)
    assert row["feret_max_um"] == pytest.approx(np.hypot(10, 40) * 0.5, rel=1e-3)
    assert row["area_um2"] == pytest.approx(400 * 0.25)
    assert row["centroid_y_um"] == pytest.approx(14.5 * 0.5)
    assert row["centroid_x_um"] == pytest.approx(24.5 * 0.5)
    assert row["orientation_deg"] == pytest.approx(0.0, abs=1e-9)


def test_matches_regionprops_table(disks):
    from skimage.measure import regionprops_table

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:200, :200]
    ids = np.zeros((200, 200), np.int32)
    for k in range(1, 16):
        cy, cx = rng.uniform(20, 180, 2)
        a, b = rng.uniform(3, 12), rng.uniform(2, 6)
        t = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
        v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        ids[((u / a) ** 2 + (v / b) ** 2 <= 1) & (ids == 0)] = k
    ours = measure_particles(ids, pixel_size_um=1.0).set_index("label")
    ref = regionprops_table(
        ids, properties=("label", "area", "centroid", "axis_major_length", "axis_minor_length", "orientation")
    )
    order = np.argsort(ref["label"])
    lab = ref["label"][order]
    np.testing.assert_allclose(ours.loc[lab, "area_px"], ref["area"][order])
    np.testing.assert_allclose(ours.loc[lab, "centroid_y_um"], ref["centroid-0"][order])
    np.testing.assert_allclose(ours.loc[lab, "centroid_x_um"], ref["centroid-1"][order])
    # skimage takes pixel centres as points; ours adds each pixel square's own second moment,
    # 1/12 in every direction, which moves both eigenvalues by 1/12 and no axis direction.
    def cells(length):
        return 4 * np.sqrt((length / 4) ** 2 + 1 / 12)

    np.testing.assert_allclose(ours.loc[lab, "major_axis_um"], cells(ref["axis_major_length"][order]), rtol=1e-9)
    np.testing.assert_allclose(ours.loc[lab, "minor_axis_um"], cells(ref["axis_minor_length"][order]), rtol=1e-6)
    # skimage: angle of the major axis from the row axis; ours: from +x towards +y.
    ref_deg = (90.0 - np.degrees(ref["orientation"][order]) + 90.0) % 180.0 - 90.0
    diff = (ours.loc[lab, "orientation_deg"].to_numpy() - ref_deg + 90.0) % 180.0 - 90.0
    np.testing.assert_allclose(diff, 0.0, atol=1e-6)


def test_edge_and_ignore_exclusion(disks):
    ids = disks((100, 100), [(50, 50), (2, 50), (50, 97), (80, 20)], [6, 6, 6, 6])
    labels = (ids > 0).astype(np.uint8)
    labels[87:, :] = 255  # the disk at (80, 20) reaches row 86: it touches the ignore band
    kept = particle_sizes(labels, pixel_size_um=1.0)
    assert len(kept) == 1
    assert kept["centroid_y_um"].item() == pytest.approx(50.0)
    everything = particle_sizes(labels, pixel_size_um=1.0, exclude_edge=False)
    assert len(everything) == 4
    assert everything["touches_edge"].sum() == 3


def test_min_area_and_miles_weights(disks):
    ids = disks((100, 200), [(50, 40), (50, 120)], [3, 15])
    small = particle_sizes(ids > 0, pixel_size_um=0.1, min_area_um2=0.5)
    assert len(small) == 1
    ml = particle_sizes(ids > 0, pixel_size_um=0.1, edge_correction="miles").sort_values("area_px")
    box = np.array([7, 31])
    expected = 100 * 200 / ((100 - box) * (200 - box))
    np.testing.assert_allclose(ml["weight"].to_numpy(), expected)


def test_instances_input_and_pixel_size_from_attrs():
    from metallo._xarray import image_dataarray

    ids = np.zeros((30, 30), np.int32)
    ids[5:10, 5:10] = 1
    ids[5:10, 10:15] = 2  # touching, different ids: kept apart
    table = particle_sizes(image_dataarray(ids, pixel_size_um=0.2), instances=True)
    assert len(table) == 2
    np.testing.assert_allclose(table["area_um2"], 25 * 0.04)
    direct = measure_particles(image_dataarray(ids, pixel_size_um=0.2))
    np.testing.assert_allclose(direct["area_um2"], 25 * 0.04)


def test_split_touching_settings_control_split(disks):
    ids = disks((60, 80), [(30, 25), (30, 25 + 1.6 * 10)], [10, 10])
    assert split_touching(ids > 0).max() == 2
    # The neck is ~4 px deep: a larger h keeps the pair together.
    assert split_touching(ids > 0, h_px=6.0).max() == 1


def test_bad_input_raises():
    with pytest.raises(ConfigError, match="pixel_size_um"):
        particle_sizes(np.zeros((5, 5), bool))
    with pytest.raises(ConfigError, match="2-D"):
        particle_sizes(np.zeros((5, 5, 2), bool), pixel_size_um=1.0)
    with pytest.raises(ConfigError, match="edge_correction"):
        particle_sizes(np.zeros((5, 5), bool), pixel_size_um=1.0, edge_correction="guess")


def test_synthetic_particles_from_metallo_synth():
    from scipy.spatial import cKDTree

    from metallo.quantify import ks_test
    from metallo.synth import make_particles

    sp = make_particles((512, 512), n_particles=200, seed=0, pixel_size_um=0.05)
    table = particle_sizes(sp.mask, pixel_size_um=0.05)
    truth = sp.table
    assert len(table) == len(truth)  # 40 touching pairs all split
    _, nearest = cKDTree(truth[["centroid_y_um", "centroid_x_um"]].to_numpy()).query(
        table[["centroid_y_um", "centroid_x_um"]].to_numpy()
    )
    assert len(np.unique(nearest)) == len(truth)
    rel = table["ecd_um"].to_numpy() / truth["ecd_um"].to_numpy()[nearest] - 1
    assert np.median(np.abs(rel)) < 0.02
    assert ks_test(table, truth).consistent


def test_pixels_joined_only_diagonally_stay_with_their_particle():
    # Two touching disks (two markers, so the watershed runs) with a tail of pixels that touch
    # the disk and each other only at corners; twice, far apart.
    yy, xx = np.mgrid[:60, :120]
    mask = np.zeros((60, 120), bool)
    for x0 in (20, 80):
        mask |= ((yy - 20) ** 2 + (xx - x0) ** 2 < 64) | ((yy - 20) ** 2 + (xx - x0 - 15) ** 2 < 64)
        assert mask[25, x0 - 6] and not mask[25, x0 - 7] and not mask[26, x0 - 6]
        for k in range(1, 8):  # a diagonal tail from the disk's pixel (25, x0 - 6), corners only
            mask[25 + k, x0 - 6 - k] = True
    ids = split_touching(mask)
    assert ids.max() == 4 and ((ids > 0) == mask).all()
    from scipy import ndimage

    for i in range(1, 5):
        assert ndimage.label(ids == i, structure=np.ones((3, 3)))[1] == 1
    table = measure_particles(ids, pixel_size_um=1.0)
    assert table["feret_max_um"].max() < 30  # no particle spans both groups (60 px apart)


def test_thin_particles_have_the_aspect_ratio_of_their_rectangle():
    # 1 x 1, 1 x 2 and 1 x 4 px: the ellipses of the squares' area have axis ratios 1, 2 and 4.
    # Taking pixel centres as points (skimage) gave minor axes of 0 and aspect ratios of inf.
    ids = np.zeros((20, 20), np.int32)
    ids[5, 5] = 1
    ids[10, 10:12] = 2
    ids[15, 4:8] = 3
    table = measure_particles(ids, pixel_size_um=1.0).set_index("label")
    np.testing.assert_allclose(table.loc[[1, 2, 3], "aspect_ratio"], [1.0, 2.0, 4.0])
    assert table.loc[1, "major_axis_um"] == pytest.approx(4 / np.sqrt(12))


def test_miles_weights_remove_the_edge_bias_over_window_positions(disks, tmp_path):
    """Disks of radius 4 and 24 px in equal numbers on a 64-px lattice (checkerboard), seen through
    a 400 x 400 window at 64 positions over one period of the pattern: leaving out the particles
    the frame cuts drops more large than small ones, and the mean ECD falls 6.5 % below the
    population's; the Miles-Lantuejoul weights bring it within 1.2 %. quantify_step stores the
    weights, its PSD counts them and the report's summary is the weighted one."""
    import json

    from metallo import names
    from metallo._xarray import image_dataarray
    from metallo.quantify import quantify_step
    from metallo.report import report_sections
    from metallo.specimen import Specimen

    centres = [(i * 64 + 32, j * 64 + 32) for i in range(-1, 11) for j in range(-1, 11)]
    radii = [24 if (i + j) % 2 else 4 for i in range(-1, 11) for j in range(-1, 11)]
    ids = disks((656, 656), centres, radii)
    single = particle_sizes(ids[100:500, 100:500] > 0, pixel_size_um=1.0)
    true = (single["ecd_um"].min() + single["ecd_um"].max()) / 2  # equal numbers of the two sizes
    excluded, weighted = [], []
    for dy in range(0, 128, 16):
        for dx in range(0, 128, 16):
            window = ids[dy:dy + 400, dx:dx + 400] > 0
            excluded.append(particle_sizes(window, pixel_size_um=1.0)["ecd_um"].mean())
            ml = particle_sizes(window, pixel_size_um=1.0, edge_correction="miles")
            weighted.append(np.average(ml["ecd_um"], weights=ml["weight"]))
    assert np.mean(excluded) < 0.95 * true
    assert np.mean(weighted) == pytest.approx(true, rel=0.02)

    labels = image_dataarray((ids[:400, :400] > 0).astype(np.uint8), pixel_size_um=1.0, name=names.LABELS,
                             attrs={"classes": json.dumps(["matrix_free", "particle"]), "ignore_index": 255, "rules": "{}"})
    spec = Specimen.create(tmp_path / "p.h5", specimen_id="p")
    spec.add(names.annotation("particles"), labels, step="test")
    quantify_step(spec, what=["particles"])
    table = spec.table(names.quantity(names.annotation("particles"), names.PARTICLES))
    assert (table["weight"] > 1).all()
    psd = spec.table(names.quantity(names.annotation("particles"), names.PSD))
    assert psd["count"].sum() == pytest.approx(table["weight"].sum())
    section = {s.key: s for s in report_sections(spec, {})}[f"{names.PARTICLES}:{names.annotation('particles')}"]
    summary = section.tables()[0]
    assert summary.loc[0, "mean (µm)"] == pytest.approx(np.average(table["ecd_um"], weights=table["weight"]))
    assert "Miles-Lantuéjoul" in section.blocks[0].text


def test_an_inverted_mask_says_why_no_particle_is_measured():
    # Dark particles thresholded the wrong way round: the matrix is the "particle", one region touching
    # every edge. Its table had been empty without a word.
    mask = np.ones((80, 80), np.uint8)
    mask[20:30, 20:30] = 0
    mask[50:60, 40:52] = 0
    with pytest.warns(UserWarning, match=r"all 1 particle\(s\) touch the image edge.*cover 97% of the image: is particle_class the matrix"):
        table = particle_sizes(mask, pixel_size_um=0.1, split_touching=False)
    assert table.empty
    # The right way round: two particles, 100 and 120 px, nothing to say.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = particle_sizes(1 - mask, pixel_size_um=0.1, split_touching=False)
    assert sorted(table["area_px"].tolist()) == [100, 120]
