"""Orientation relationships: presets, variants, packets, Bain groups (known crystallography)."""

from __future__ import annotations

import numpy as np
import pytest

from metallo.ebsd import (
    OrientationRelationship,
    axis_angle_to_quat,
    misorientation_angle,
    or_angle,
    or_names,
    orientation_relationship,
    quat_multiply,
    random_quaternions,
)
from metallo.errors import ConfigError, UnknownNameError


@pytest.mark.parametrize(("name", "n", "per_packet"), [("KS", 24, 6), ("NW", 12, 3), ("GT", 24, 6)])
def test_variant_counts_packets_and_bain_groups(name, n, per_packet):
    orel = orientation_relationship(name)
    assert orel.n_variants == n
    assert np.bincount(orel.packet).tolist() == [per_packet] * 4
    assert np.bincount(orel.bain).tolist() == [n // 3] * 3


def test_bain_and_pitsch_variant_counts():
    assert orientation_relationship("Bain").n_variants == 3
    assert orientation_relationship("Pitsch").n_variants == 12
    assert or_names() == ["Bain", "GT", "KS", "NW", "Pitsch"]


def test_ks_intervariant_misorientations_are_the_published_ones():
    # Morito et al. (2003) Table 1: V1-Vn disorientations of KS.
    angles = sorted(set(np.round(orientation_relationship("KS").intervariant_angles(), 1)))
    assert angles == [0.0, 10.5, 14.9, 20.6, 21.1, 47.1, 49.5, 50.5, 51.7, 57.2, 60.0]


def test_known_angles_between_ors():
    ks, nw, bain = (orientation_relationship(n) for n in ("KS", "NW", "Bain"))
    assert or_angle(ks, nw) == pytest.approx(5.26, abs=0.01)
    assert or_angle(nw, bain) == pytest.approx(9.74, abs=0.01)
    assert or_angle(ks, bain) == pytest.approx(11.06, abs=0.02)
    gt = orientation_relationship("GT")
    assert 2.0 < or_angle(gt, ks) < 3.0 and 2.5 < or_angle(gt, nw) < 3.2


def test_or_angle_is_invariant_to_symmetric_equivalents():
    ks = orientation_relationship("KS")
    s_c = axis_angle_to_quat(np.array([0.0, 0, 1]), np.pi / 2)
    s_p = axis_angle_to_quat(np.array([1.0, 1, 1]), 2 * np.pi / 3)
    eq = OrientationRelationship.from_rotation(quat_multiply(s_c, quat_multiply(ks.rotation, s_p)))
    assert or_angle(eq, ks) == pytest.approx(0.0, abs=1e-6)


def test_ks_parallelism_holds():
    m = OrientationRelationship.from_planes((1, 1, 1), (0, 1, 1), (-1, 0, 1), (-1, -1, 1))
    from metallo.ebsd import quat_to_matrix

    g = quat_to_matrix(m.rotation)
    n_child = g @ (np.array([1.0, 1, 1]) / np.sqrt(3))
    assert np.allclose(n_child, np.array([0, 1, 1]) / np.sqrt(2), atol=1e-12)
    d_child = g @ (np.array([-1.0, 0, 1]) / np.sqrt(2))
    assert np.allclose(d_child, np.array([-1, -1, 1]) / np.sqrt(3), atol=1e-12)


def test_parent_candidates_contain_the_true_parent_and_variants_round_trip():
    rng = np.random.default_rng(2)
    parent = random_quaternions(5, rng)
    for name in ("KS", "NW", "GT"):
        orel = orientation_relationship(name)
        children = orel.child_variants(parent)  # (5, n, 4)
        for i in range(5):
            v, fit = orel.variant_of(children[i], np.tile(parent[i], (orel.n_variants, 1)))
            assert v.tolist() == list(range(orel.n_variants))
            assert fit.max() < 1e-4
            cands = orel.parent_candidates(children[i, 3])
            assert misorientation_angle(cands, parent[i]).min() < 1e-4


def test_bad_or_specs():
    with pytest.raises(UnknownNameError, match="KS"):
        orientation_relationship("Kurdjumov")
    with pytest.raises(ConfigError, match="parallel"):
        OrientationRelationship.from_planes((1, 1, 1), (0, 1, 1), (1, 1, 1), (1, 0, 0))
    with pytest.raises(ConfigError, match="proper rotation"):
        OrientationRelationship.from_rotation(np.diag([1.0, 1.0, -1.0]))


@pytest.mark.parametrize(("name", "plane_dev", "dir_dev"), [
    ("KS", 0.0, 0.0), ("NW", 0.0, 5.26), ("Pitsch", 5.26, 0.0), ("Bain", 9.74, 9.74)])
def test_parallelism_known_answers(name, plane_dev, dir_dev):
    # {111}g/{110}a and <110>g/<111>a: KS both parallel; NW planes parallel, directions 5.26
    # deg apart (the KS-NW angle); Pitsch the other way round; Bain 9.74 deg for both.
    p = orientation_relationship(name).parallelism()
    assert p["plane_deviation_deg"] == pytest.approx(plane_dev, abs=0.01)
    assert p["direction_deviation_deg"] == pytest.approx(dir_dev, abs=0.01)
    assert np.dot(p["parent_plane"], p["parent_direction"]) == 0 and np.dot(p["child_plane"], p["child_direction"]) == 0
    # The parent direction, taken to the child frame (rounded to 4 decimals), lies dir_dev
    # from the child direction.
    d = np.asarray(p["parent_direction_in_child"])
    c = np.asarray(p["child_direction"]) / np.sqrt(3)
    assert np.degrees(np.arccos(np.clip(d @ c / np.linalg.norm(d), -1, 1))) == pytest.approx(dir_dev, abs=0.05)


def test_parallelism_of_a_tilted_ks():
    # KS turned 2 deg about the common plane normal: planes stay parallel, directions 2 deg apart.
    ks = orientation_relationship("KS")
    n = np.array([0, 1, 1]) / np.sqrt(2)  # the child plane of KS, in child coordinates
    tilted = OrientationRelationship(quat_multiply(axis_angle_to_quat(n, np.radians(2.0)), ks.rotation))
    p = tilted.parallelism()
    assert p["plane_deviation_deg"] == pytest.approx(0.0, abs=1e-6)
    assert p["direction_deviation_deg"] == pytest.approx(2.0, abs=1e-6)
    assert tilted.describe()["parallelism"] == p
