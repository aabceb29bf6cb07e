"""Grains, KAM, GOS, GAM, boundaries and derive on maps with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ebsd_helpers import map_from_quaternions, orix_misorientation_deg

from metallo.ebsd import (
    axis_angle_to_quat,
    boundaries,
    derive,
    gam,
    gos,
    grains,
    kam,
    misorientation_angle,
    quat_multiply,
    random_quaternions,
)
from metallo.errors import ConfigError


def _same_partition(ids: np.ndarray, truth: np.ndarray) -> bool:
    pairs = np.unique(np.stack([ids.ravel(), truth.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def test_grains_recovers_known_grains(known_grains):
    ebsd, truth, oris = known_grains
    g = grains(ebsd, tolerance_deg=5.0)
    ids = g.ids.values
    assert ids.dtype == np.int32 and ids.shape == truth.shape
    assert len(g) == 6 and ids.min() == 0
    assert _same_partition(ids, truth)
    sizes = np.bincount(truth.ravel())
    np.testing.assert_array_equal(g.table["n_pixels"].to_numpy(), sizes[truth.ravel()[np.unique(ids.ravel(), return_index=True)[1]]])
    np.testing.assert_allclose(g.table["area_um2"], g.table["n_pixels"] * 0.25)
    np.testing.assert_allclose(g.table["ecd_um"], 2 * np.sqrt(g.table["area_um2"] / np.pi))
    # Mean orientations are the truth orientations up to symmetry (noise is 0.2 deg at most).
    first = truth.ravel()[np.unique(ids.ravel(), return_index=True)[1]]
    assert misorientation_angle(g.mean_quaternions, oris[first]).max() < 0.1
    # Grain 0 is the 20 x 20 square at the origin: aspect ratio 1, centroid (4.75, 4.75) µm.
    row = g.table.loc[ids[0, 0]]
    assert row["aspect_ratio"] == pytest.approx(1.0)
    assert (row["centroid_y_um"], row["centroid_x_um"]) == pytest.approx((4.75, 4.75))
    assert g.colors().shape == truth.shape + (3,)


def test_grains_elongated_grain_aspect_ratio():
    truth = np.zeros((10, 40), dtype=int)
    truth[4:6, :] = 1  # a 2 x 40 band
    q = random_quaternions(2, 11)[truth]
    g = grains(map_from_quaternions(q))
    band = g.table.loc[g.ids.values[5, 0]]
    # Second moments of a 2 x 40 rectangle of cells: axes ratio 40 / 2.
    assert band["aspect_ratio"] == pytest.approx(20.0, rel=1e-6)


def test_min_size_removes_single_pixel_grain_and_unindexed_get_minus_one():
    q = np.broadcast_to(random_quaternions(1, 12), (20, 20, 4)).copy()
    q[10, 10] = random_quaternions(1, 13)[0]
    phase = np.ones((20, 20), dtype=np.int16)
    phase[0, 0] = -1
    g = grains(map_from_quaternions(q, phase), min_size_px=2)
    assert g.ids.values[10, 10] == -1 and g.ids.values[0, 0] == -1
    assert len(g) == 1 and g.table["n_pixels"].iloc[0] == 398
    g1 = grains(map_from_quaternions(q, phase), min_size_px=1)
    assert len(g1) == 2


def test_tolerance_splits_at_the_right_angle():
    q0 = random_quaternions(1, 14)[0]
    q = np.broadcast_to(q0, (10, 20, 4)).copy()
    q[:, 10:] = quat_multiply(axis_angle_to_quat(np.array([0.0, 0.0, 1.0]), np.radians(4.0)), q0)
    assert len(grains(map_from_quaternions(q), tolerance_deg=5.0)) == 1
    assert len(grains(map_from_quaternions(q), tolerance_deg=3.0)) == 2


def test_phases_never_share_a_grain():
    q = np.broadcast_to(random_quaternions(1, 15), (10, 10, 4)).copy()
    phase = np.ones((10, 10), dtype=np.int16)
    phase[:, 5:] = 2
    phases = [{"id": 1, "name": "austenite", "symmetry": "m-3m"}, {"id": 2, "name": "ferrite", "symmetry": "m-3m"}]
    g = grains(map_from_quaternions(q, phase, phases=phases))
    assert len(g) == 2 and sorted(g.table["phase"]) == [1, 2]
    b = boundaries(map_from_quaternions(q, phase, phases=phases))
    assert (b.values[:, 4] == 2).all() and b.values[:, :4].max() == 0


def test_kam_on_lattice_rotation_gradient(gradient_map):
    ebsd, rate = gradient_map
    for order in (1, 2, 3):
        k = kam(ebsd, order=order, max_deg=5.0).values
        inner = k[order:-order, order:-order]
        # Ring at Chebyshev distance n on an x-gradient: mean |dx| = 0.75 n.
        np.testing.assert_allclose(inner, 0.75 * order * rate, atol=1e-6)
    assert kam(ebsd, order=3).attrs["units"] == "deg"


@pytest.mark.parametrize(("kernel", "order", "mean_dx"), [
    # MTEX's EBSDsquare/KAM: weights = |i| + |j| <= order (centre left out). Order 1: the 4 edge
    # neighbours, mean |dx| 1/2; order 2: 12 pixels, sum |dx| 10; order 3: 24 pixels, sum 28.
    ("mtex", 1, 1 / 2), ("mtex", 2, 10 / 12), ("mtex", 3, 28 / 24),
    # The whole (2n+1)^2 square: mean |dx| = (2n+1)/4.
    ("full", 1, 3 / 4), ("full", 3, 7 / 4),
    # The ring alone: 3rd order 24 pixels, sum |dx| 54.
    ("ring", 3, 54 / 24),
])
def test_kam_kernels_on_lattice_rotation_gradient(gradient_map, kernel, order, mean_dx):
    ebsd, rate = gradient_map
    k = kam(ebsd, order=order, max_deg=5.0, kernel=kernel)
    np.testing.assert_allclose(k.values[order:-order, order:-order], mean_dx * rate, atol=1e-6)
    assert json.loads(k.attrs["parameters"])["kernel"] == kernel


def test_kam_mtex_kernel_on_a_hexagonal_grid():
    """MTEX's EBSDhex/KAM takes every ring up to the order: 2nd order = 6 + 12 pixels."""
    ny, nx, rate = 20, 30, 0.1
    rows = np.arange(ny)[:, None]
    x = np.arange(nx)[None, :] + np.where(rows % 2 == 1, 0.5, 0.0)
    rot = axis_angle_to_quat(np.broadcast_to([0.0, 0.0, 1.0], (ny, nx, 3)), np.radians(rate) * x)
    ebsd = map_from_quaternions(quat_multiply(random_quaternions(1, 5)[0], rot), grid="hexagonal")
    # Sum |dx| over ring 1 is 4 and over ring 2 is 14 (test_hexagonal_grid_grains_and_kam): 18 / 18.
    for kernel in ("mtex", "full"):
        np.testing.assert_allclose(kam(ebsd, order=2, kernel=kernel).values[3:-3, 3:-3], rate, atol=1e-6)


def test_kam_kernel_is_checked(gradient_map):
    ebsd, _ = gradient_map
    with pytest.raises(ConfigError, match="kernel must be one of ring, mtex, full"):
        kam(ebsd, kernel="diamond")
    with pytest.raises(ConfigError, match="kernel"):
        derive(ebsd, kam_kernel="square")
    d = derive(ebsd, kam_kernel="mtex", kam_order=1)
    np.testing.assert_allclose(d["kam"].values[1:-1, 1:-1], 0.05, atol=1e-6)
    assert json.loads(d.attrs["parameters"])["kam"]["kernel"] == "mtex"


def test_kam_max_deg_excludes_larger_angles(gradient_map):
    ebsd, rate = gradient_map
    # Cut-off between 0.2 and 0.3 deg keeps |dx| <= 2 of the order-3 ring: only the
    # ring's top and bottom rows with |dx| in {0, 1, 2} remain: mean (0+1+1+2+2)/5.
    k = kam(ebsd, order=3, max_deg=0.25).values[5:-5, 5:-5]
    np.testing.assert_allclose(k, rate * 6 / 5, atol=1e-6)


def test_kam_nan_at_unindexed(gradient_map):
    ebsd, _ = gradient_map
    ebsd["phase"][5, 5] = -1
    k = kam(ebsd, order=1).values
    assert np.isnan(k[5, 5]) and np.isfinite(k[5, 6])


def test_gos_and_gam_on_gradient(gradient_map):
    ebsd, rate = gradient_map
    ny, nx = ebsd.sizes["y"], ebsd.sizes["x"]
    g = grains(ebsd)
    assert len(g) == 1
    # Misorientation to the mean (the central orientation) is |j - (nx-1)/2| * rate.
    expected_gos = np.mean(np.abs(np.arange(nx) - (nx - 1) / 2)) * rate
    np.testing.assert_allclose(gos(ebsd, g).values, expected_gos, atol=1e-4)
    np.testing.assert_allclose(gos(ebsd, g.ids).values, expected_gos, atol=1e-4)  # bare ids
    assert g.table["gos_deg"].iloc[0] == pytest.approx(expected_gos, abs=1e-4)
    # GAM: horizontal neighbours differ by `rate`, vertical ones by 0.
    horiz = np.full((ny, nx), 2.0)
    horiz[:, [0, -1]] = 1.0
    vert = np.full((ny, nx), 2.0)
    vert[[0, -1], :] = 1.0
    expected_gam = np.mean(horiz * rate / (horiz + vert))
    np.testing.assert_allclose(gam(ebsd, g).values, expected_gam, atol=1e-6)
    assert g.table["gam_deg"].iloc[0] == pytest.approx(expected_gam, abs=1e-6)


def test_boundaries_low_high_and_sigma3():
    q0 = random_quaternions(1, 16)[0]
    q = np.broadcast_to(q0, (12, 30, 4)).copy()
    q[:, 10:20] = quat_multiply(axis_angle_to_quat(np.array([1.0, 0.0, 0.0]), np.radians(8.0)), q0)
    q[:, 20:] = quat_multiply(axis_angle_to_quat(np.array([1.0, 1.0, 1.0]), np.radians(60.0)), q[0, 10])
    b = boundaries(map_from_quaternions(q)).values
    assert b.dtype == np.uint8
    assert (b[:, 9] == 1).all()  # 8 deg: low-angle
    assert (b[:, 19] == 3).all()  # Sigma3
    interior = np.ones(30, dtype=bool)
    interior[[9, 19]] = False
    assert b[:, interior].max() == 0
    no_special = boundaries(map_from_quaternions(q), special=False).values
    assert (no_special[:, 19] == 2).all()
    with pytest.raises(ConfigError):
        boundaries(map_from_quaternions(q), low_deg=20, high_deg=15)


def test_known_grain_boundaries_are_high_angle(known_grains):
    ebsd, truth, _ = known_grains
    b = boundaries(ebsd, grains(ebsd)).values
    right = np.zeros_like(truth, dtype=bool)
    right[:, :-1] = truth[:, :-1] != truth[:, 1:]
    down = np.zeros_like(truth, dtype=bool)
    down[:-1] = truth[:-1] != truth[1:]
    assert (b[right | down] >= 2).all()
    assert (b[~(right | down)] == 0).all()


def test_hexagonal_grid_grains_and_kam():
    ny, nx, rate = 20, 30, 0.1
    rows = np.arange(ny)[:, None]
    x = np.arange(nx)[None, :] + np.where(rows % 2 == 1, 0.5, 0.0)  # in steps
    base = random_quaternions(1, 17)[0]
    rot = axis_angle_to_quat(np.broadcast_to([0.0, 0.0, 1.0], (ny, nx, 3)), np.radians(rate) * x)
    q = quat_multiply(base, rot)
    ebsd = map_from_quaternions(q, grid="hexagonal")
    # First ring: 2 neighbours at |dx| = 1, 4 at |dx| = 1/2 -> mean 2/3 rate.
    np.testing.assert_allclose(kam(ebsd, order=1).values[2:-2, 2:-2], rate * 2 / 3, atol=1e-6)
    # Second ring (12 pixels): |dx| = 2 x2 (same row), 1.5 x4 (rows +-1), 1 x4 and 0 x2
    # (rows +-2): sum 14 -> mean 7/6 rate.
    np.testing.assert_allclose(kam(ebsd, order=2).values[3:-3, 3:-3], rate * 7 / 6, atol=1e-6)
    q2 = q.copy()
    q2[:, 15:] = quat_multiply(axis_angle_to_quat(np.array([0.0, 1.0, 0.0]), 0.5), q[:, 15:])
    g = grains(map_from_quaternions(q2, grid="hexagonal"))
    assert len(g) == 2 and g.parameters["connectivity"] == 6
    assert g.table["area_um2"].sum() == pytest.approx(ny * nx * 0.5 * 0.5 * np.sqrt(3) / 2)


def test_derive_has_every_map_with_parameters(known_grains):
    ebsd, truth, _ = known_grains
    d, g = derive(ebsd, return_grains=True)
    assert set(d.data_vars) == {"grain_id", "kam", "gos", "gam", "boundaries"}
    for name in d.data_vars:
        assert d[name].dims == ("y", "x")
        assert isinstance(json.loads(d[name].attrs["parameters"]), dict)
    assert _same_partition(d["grain_id"].values, truth)
    np.testing.assert_allclose(d["kam"].values, kam(ebsd).values, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(d["gos"].values, gos(ebsd, g).values, atol=1e-5)
    assert d["boundaries"].dtype == np.uint8 and len(g) == d.attrs["n_grains"] == 6


def test_mean_orientation_and_gos_ignore_stored_symmetric_equivalents(known_grains):
    from metallo.ebsd import euler_to_quat, symmetry_operators

    ebsd, truth, oris = known_grains
    q = euler_to_quat(ebsd["euler"].values)
    ops = symmetry_operators("m-3m")
    pick = np.random.default_rng(30).integers(0, 24, truth.shape)
    scrambled = map_from_quaternions(quat_multiply(ops[pick], q))
    g0, g1 = grains(ebsd), grains(scrambled)
    np.testing.assert_array_equal(g0.ids.values, g1.ids.values)
    assert misorientation_angle(g1.mean_quaternions, g0.mean_quaternions).max() < 1e-5
    np.testing.assert_allclose(g1.table["gos_deg"], g0.table["gos_deg"], atol=1e-6)
    assert g1.table["gos_deg"].max() < 0.2


@pytest.mark.shared_data
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(("min_size_px", "expected"), [(1, 141), (10, 109), (100, 76)])
def test_grain_count_matches_defdap_on_its_nickel_map(shared_file, min_size_px, expected):
    """DefDAP's own test (tests/test_ebsd.py, TestMapFindGrains) reconstructs its Ni map
    (testDataEBSD.cpr) at a 5 deg boundary tolerance into 141 grains, 109 of at least 10 px and
    76 of at least 100 px; its grain maps (expected_output/ebsd_grains_5deg_*.npz) and metallo's
    partition the map identically (checked by hand: every grain's pixels are the same set)."""
    from metallo.io import read_ebsd

    ebsd = read_ebsd(shared_file("correlative_defdap_ni_ebsd_dic/testDataEBSD.cpr"))
    g = grains(ebsd, tolerance_deg=5.0, min_size_px=min_size_px)
    assert len(g.table) == expected


@pytest.mark.shared_data
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(("low_deg", "expected"), [(5.0, 5854), (10.0, 5821)])
def test_boundary_pixels_match_defdap_on_its_nickel_map(shared_file, low_deg, expected):
    """DefDAP's expected boundaries of the same map (expected_output/ebsd_grain_boundaries_5deg
    and _10deg.npz: 3250 + 3730 and 3229 + 3710 pixels whose +x / +y neighbour is more than the
    tolerance away) cover 5854 and 5821 distinct pixels. metallo marks a pixel by its +x and +y
    neighbours too, and the two pixel sets were equal point by point when checked by hand."""
    from metallo.ebsd import boundaries
    from metallo.io import read_ebsd

    ebsd = read_ebsd(shared_file("correlative_defdap_ni_ebsd_dic/testDataEBSD.cpr"))
    b = boundaries(ebsd, low_deg=low_deg, high_deg=low_deg + 5.0, special=False).values
    assert int((b > 0).sum()) == expected


@pytest.mark.shared_data
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_gos_of_real_grains_agrees_with_orix(shared_file, tmp_path):
    """GOS of every grain of DefDAP's Ni map (5 deg, >= 10 px): the mean of orix's disorientation
    angles between each pixel and metallo's grain mean. (DefDAP 1.3's own grain misorientations
    differ from both by up to 1.3e-3 deg: its half-angle cosines lose precision near 1; its mean
    orientations agree with metallo's to 5e-6 deg.)"""
    from metallo.ebsd import quat_to_euler
    from metallo.io import read_ebsd

    ebsd = read_ebsd(shared_file("correlative_defdap_ni_ebsd_dic/testDataEBSD.cpr"))
    g = grains(ebsd, tolerance_deg=5.0, min_size_px=10)
    ids = g.ids.values.ravel()
    inside = ids >= 0   # -1: pixels left in grains below min_size_px
    means = quat_to_euler(g.table[["q0", "q1", "q2", "q3"]].to_numpy(float))
    row = {gid: k for k, gid in enumerate(g.table.index)}
    mean_of_pixel = means[[row[i] for i in ids[inside]]]
    ang = orix_misorientation_deg(ebsd["euler"].values.reshape(-1, 3)[inside], mean_of_pixel, "m-3m", tmp_path)
    expected = np.bincount(ids[inside], weights=ang) / np.maximum(np.bincount(ids[inside]), 1)
    ours = g.table["gos_deg"].to_numpy(float)
    assert len(ours) == 109
    np.testing.assert_allclose(ours, expected[g.table.index.to_numpy()], atol=1e-6)
    assert 0.1 < np.median(ours) < 1.0   # a recrystallised Ni map: grains spread by a fraction of a degree



def _twinned_map(noise_pixels: bool = False):
    """Columns 0-9 grain A, 10-14 a twin lamella of A (60 deg about <111>), 15-24 A again,
    25-34 an unrelated grain B; optionally two pixels on the A|B boundary twin-related to A."""
    from metallo.ebsd import axis_angle_to_quat, quat_multiply

    a = random_quaternions(1, 5)[0]
    b = quat_multiply(axis_angle_to_quat(np.array([1.0, 2.0, 0.5]), np.radians(40.0)), a)
    twin = quat_multiply(axis_angle_to_quat(np.array([1.0, 1.0, 1.0]), np.radians(60.0)), a)
    q = np.broadcast_to(a, (12, 35, 4)).copy()
    q[:, 10:15] = twin
    q[:, 25:] = b
    if noise_pixels:
        q[3:5, 25] = twin  # a twin-related speck on B's side of the A|B boundary
    return map_from_quaternions(q)


def test_merge_twins_joins_a_grain_split_by_its_twin_lamella():
    """A grain cut by a Sigma3 lamella is three grains by misorientation; with twins merged it is
    one again (ASTM E112 counting), and the unrelated neighbour stays apart."""
    from metallo.ebsd import merge_twins

    ebsd = _twinned_map()
    g = grains(ebsd, tolerance_deg=5.0, min_size_px=1)
    assert len(g) == 4
    merged = merge_twins(ebsd, g)
    params = json.loads(merged.attrs["parameters"])
    assert (params["n_grains_before"], params["n_grains_after"], params["twin_pairs_merged"]) == (4, 2, 2)
    ids = merged.values
    assert len(np.unique(ids[:, :25])) == 1 and len(np.unique(ids[:, 25:])) == 1 and ids[0, 0] != ids[0, 30]


def test_merge_twins_needs_the_grain_means_to_be_twins_too():
    """Two twin-related pixels on an ordinary boundary (a speck of B's side that was mis-indexed)
    make a grain of their own that is merged into A, but they do not merge B with A."""
    from metallo.ebsd import merge_twins

    ebsd = _twinned_map(noise_pixels=True)
    g = grains(ebsd, tolerance_deg=5.0, min_size_px=1)
    merged = merge_twins(ebsd, g).values
    assert merged[0, 0] != merged[0, 30]
    assert merged[3, 25] == merged[0, 0]  # the speck is A's twin, so it joins A
    with pytest.raises(ConfigError, match="max_deviation_deg"):
        merge_twins(ebsd, g, max_deviation_deg=0)


@pytest.mark.shared_data
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_merge_twins_on_the_duplex_steel_map(shared_file):
    """sdss_ferrite_austenite.ang (cleaned, 5 deg): its annealing twins are in the austenite
    (fcc): 98 austenite grains become 51 with their twins merged, while the ferrite (bcc,
    no annealing twins) keeps 33 of its 34. Every merge joins grains whose mean orientations
    are within Brandon's 8.66 deg of the twin."""
    from metallo.ebsd import clean, merge_twins, sigma3_deviation
    from metallo.io import read_ebsd

    ebsd = clean(read_ebsd(shared_file("ebsd_ang/sdss_ferrite_austenite.ang")))
    g = grains(ebsd)
    merged = merge_twins(ebsd, g)
    phase = ebsd["phase"].values
    counts = {pid: (len(np.unique(g.ids.values[(phase == pid) & (g.ids.values >= 0)])),
                    len(np.unique(merged.values[(phase == pid) & (merged.values >= 0)]))) for pid in (1, 2)}
    assert counts == {1: (98, 51), 2: (34, 33)}
    ids, new = g.ids.values.ravel(), merged.values.ravel()
    mean = g.mean_quaternions
    for m in np.unique(new[new >= 0]):
        members = np.unique(ids[new == m])
        if len(members) > 1:  # each member is a twin of some other member
            dev = sigma3_deviation(mean[members][:, None], mean[members][None, :])
            np.fill_diagonal(dev, np.inf)
            assert (dev.min(axis=1) <= 8.67).all()


@pytest.mark.parametrize("shape", [(1, 2), (2, 1), (2, 3)])
def test_kam_kernel_longer_than_the_map(shape):
    """EbsdLib's ZeroXYCells.ctf and ShortFile.ctf are 1 x 2 maps: a 3rd-order kernel offset
    longer than the map made a negative slice stop that counts from the end, and `metallo ebsd`
    stopped with a numpy broadcast traceback. Now there are no pairs at that order (NaN), and
    the first order still sees the 2 deg between neighbours."""
    ny, nx = shape
    q = np.zeros((ny, nx, 4))
    q[..., 0] = 1.0
    q[0, 0] = axis_angle_to_quat(np.array([0.0, 0.0, 1.0]), np.radians(2.0))
    ebsd = map_from_quaternions(q)
    assert np.isnan(kam(ebsd, order=3).values).all()
    first = kam(ebsd, order=1).values
    assert first[0, 0] == pytest.approx(2.0, abs=1e-6)


@pytest.mark.shared_data
def test_grain_counts_match_mtex_on_its_magnesium_twins_map(shared_file):
    """MTEX's TwinningAnalysis page on the same file (mtexdata twins): 22,833 indexed points,
    calcGrains at 5 deg gives 126 grains; after deleting the points of grains of <= 2 pixels
    (39 points: 22,794 left) and computing again, 91 grains. MTEX's grains of the remaining points
    cover the deleted ones (the points' cells fill the holes), so they are filled here from the
    nearest kept point first."""
    from scipy import ndimage

    from metallo.io import read_ebsd

    ebsd = read_ebsd(shared_file("ebsd_ctf/mtex_twins_Mg.ctf"))
    g = grains(ebsd, tolerance_deg=5.0, min_size_px=1)
    assert int((ebsd["phase"].values >= 0).sum()) == 22833
    assert len(g) == 126 and int(g.table["n_pixels"].sum()) == 22833
    drop = np.isin(g.ids.values, g.table.index[g.table["n_pixels"] <= 2])
    assert int(drop.sum()) == 22833 - 22794
    _, (iy, ix) = ndimage.distance_transform_edt(drop, return_indices=True)
    filled = ebsd.copy(deep=True)
    filled["euler"].values[drop] = ebsd["euler"].values[iy, ix][drop]
    filled["phase"].values[drop] = ebsd["phase"].values[iy, ix][drop]
    assert len(grains(filled, tolerance_deg=5.0, min_size_px=1)) == 91


def test_ebsd_dataset_refuses_phase_ids_without_entry():
    from metallo._ebsd_dataset import ebsd_dataset
    from metallo.errors import FormatError

    euler = np.zeros((3, 4, 3))
    fe = [{"id": 1, "name": "Fe", "symmetry": "m-3m"}]
    ok = ebsd_dataset(euler, np.array([[1, 1, -1, 1]] * 3), step_um=1.0, phases=fe, source="a.ang")
    assert set(np.unique(ok.phase.values)) == {-1, 1}
    with pytest.raises(FormatError, match=r"a\.ang: phase ids \[2\] occur in the map but have no entry"):
        ebsd_dataset(euler, np.array([[1, 2, -1, 1]] * 3), step_um=1.0, phases=fe, source="a.ang")
    with pytest.raises(FormatError, match=r"phase ids \[-3\] are below -1"):
        ebsd_dataset(euler, np.full((3, 4), -3), step_um=1.0, phases=fe)
    with pytest.raises(FormatError, match=r"lists id \[1\] more than once"):
        ebsd_dataset(euler, np.ones((3, 4), int), step_um=1.0, phases=fe + fe)
    with pytest.raises(FormatError, match="whole numbers"):
        ebsd_dataset(euler, np.full((3, 4), 1.5), step_um=1.0, phases=fe)


def test_a_grain_tolerance_must_be_a_positive_angle_and_one_above_15_degrees_warns(tmp_path):
    """derive() (what metallo ebsd runs) took --tolerance 0 or -5 and printed "grains: none";
    70 deg joined the duplex map's grains across high-angle boundaries without a word."""
    from typer.testing import CliRunner

    from metallo.cli import app
    from metallo.ebsd import derive
    from metallo.errors import ConfigError
    from metallo.synth import make_specimen

    ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd
    for bad in (0.0, -5.0, float("nan")):
        with pytest.raises(ConfigError, match="tolerance_deg must be a positive angle in degrees"):
            derive(ebsd, tolerance_deg=bad)
    with pytest.warns(UserWarning, match=r"tolerance_deg 20 deg is above the 15 deg where high-angle boundaries start"):
        derive(ebsd, tolerance_deg=20.0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        derive(ebsd, tolerance_deg=15.0)
    from metallo.io import write_ang

    path = write_ang(ebsd, tmp_path / "m.ang")
    result = CliRunner().invoke(app, ["ebsd", str(path), "--specimen", str(tmp_path / "m.h5"), "--tolerance", "0"])
    assert result.exit_code == 1 and result.output.strip() == "error: --tolerance must be a positive angle in degrees; got 0.0"
