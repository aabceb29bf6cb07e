"""Orientation maths: symmetry groups, misorientation angle/axis, conversions."""

from __future__ import annotations

import numpy as np
import pytest

from metallo.ebsd import (
    LAUE_GROUPS,
    axis_angle_to_quat,
    euler_to_quat,
    misorientation,
    misorientation_angle,
    quat_multiply,
    quat_to_euler,
    quat_to_matrix,
    random_quaternions,
    symmetry_operators,
)
from metallo.errors import UnknownNameError

ORDERS = {"-1": 1, "2/m": 2, "mmm": 4, "4/m": 4, "4/mmm": 8, "-3": 3, "-3m": 6, "6/m": 6,
          "6/mmm": 12, "m-3": 12, "m-3m": 24}


@pytest.mark.parametrize("laue", LAUE_GROUPS)
def test_symmetry_group_order_and_closure(laue):
    ops = symmetry_operators(laue)
    assert len(ops) == ORDERS[laue]
    np.testing.assert_allclose(ops[0], [1, 0, 0, 0])
    products = quat_multiply(ops[:, None], ops[None, :]).reshape(-1, 4)
    # Every product is again in the group (up to sign).
    assert np.abs(products @ ops.T).max(axis=1).min() == pytest.approx(1.0)


def test_unknown_laue_group_lists_valid_names():
    with pytest.raises(UnknownNameError, match="m-3m"):
        symmetry_operators("432")


@pytest.mark.parametrize("laue", ["m-3m", "6/mmm", "mmm", "-3m", "4/mmm", "2/m"])
def test_symmetric_equivalents_have_zero_misorientation(laue):
    q = random_quaternions(500, 1)
    ops = symmetry_operators(laue)
    q2 = quat_multiply(ops[np.arange(500) % len(ops)], q)
    np.testing.assert_allclose(misorientation_angle(q, q2, symmetry=laue), 0.0, atol=1e-5)


def test_sigma3_is_60_about_111():
    q = random_quaternions(50, 2)
    twin = quat_multiply(axis_angle_to_quat(np.array([1.0, 1.0, 1.0]), np.pi / 3), q)
    angle, axis = misorientation(q, twin)
    np.testing.assert_allclose(angle, 60.0, atol=1e-6)
    np.testing.assert_allclose(axis, np.full((50, 3), 1 / np.sqrt(3)), atol=1e-6)


@pytest.mark.parametrize(("axis", "deg", "expected"), [
    ([0, 0, 1], 30.0, 30.0),
    ([0, 0, 1], 70.0, 20.0),  # 90 deg about [001] is a symmetry operation
    ([1, 1, 0], 10.0, 10.0),
    ([1, 1, 1], 60.0, 60.0),
    ([1, 1, 0], np.degrees(np.arccos(-1 / 3)), 60.0),  # 70.53 about <110> is Sigma3 too
])
def test_known_cubic_misorientations(axis, deg, expected):
    q = random_quaternions(20, 4)
    q2 = quat_multiply(axis_angle_to_quat(np.array(axis, float), np.radians(deg)), q)
    np.testing.assert_allclose(misorientation_angle(q, q2), expected, atol=1e-6)


def test_cubic_disorientation_never_exceeds_62_8_and_hexagonal_93_8():
    q1, q2 = random_quaternions(20000, 5), random_quaternions(20000, 6)
    assert misorientation_angle(q1, q2).max() <= 62.81
    assert misorientation_angle(q1, q2, symmetry="6/mmm").max() <= 93.85


def test_cubic_fast_path_matches_full_reduction():
    q1, q2 = random_quaternions(5000, 7), random_quaternions(5000, 8)
    ops = symmetry_operators("m-3m")
    full = np.degrees(2 * np.arccos(np.clip(
        np.abs(quat_multiply(ops[:, None], quat_multiply(q2, q1 * [1, -1, -1, -1]))[..., 0]).max(axis=0), 0, 1)))
    np.testing.assert_allclose(misorientation_angle(q1, q2), full, atol=1e-9)


def test_hexagonal_c_axis_rotation_of_60_deg_is_symmetric():
    q = random_quaternions(10, 9)
    q2 = quat_multiply(axis_angle_to_quat(np.array([0.0, 0.0, 1.0]), np.radians(65.0)), q)
    np.testing.assert_allclose(misorientation_angle(q, q2, symmetry="6/mmm"), 5.0, atol=1e-6)


def test_euler_quaternion_round_trip_and_bunge_matrix():
    q = random_quaternions(1000, 10)
    back = euler_to_quat(quat_to_euler(q))
    np.testing.assert_allclose(np.abs(np.sum(q * back, axis=1)), 1.0, atol=1e-12)
    g = quat_to_matrix(euler_to_quat(np.array([0.3, 0.0, 0.0])))
    np.testing.assert_allclose(g, [[np.cos(0.3), np.sin(0.3), 0], [-np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]], atol=1e-12)


def test_single_orientations_give_scalars():
    q = axis_angle_to_quat(np.array([0.0, 0.0, 1.0]), np.radians(10.0))
    assert float(misorientation_angle(q, [1, 0, 0, 0])) == pytest.approx(10.0)
    assert float(misorientation_angle(q, [1, 0, 0, 0], symmetry="6/mmm")) == pytest.approx(10.0)


def test_sigma3_deviation_is_symmetry_invariant():
    from metallo.ebsd import sigma3_deviation

    q = random_quaternions(500, 31)
    ops = symmetry_operators("m-3m")
    twin = axis_angle_to_quat(np.array([1.0, 1.0, 1.0]), np.pi / 3)
    q2 = quat_multiply(ops[np.arange(500) % 24], quat_multiply(twin, quat_multiply(ops[(7 * np.arange(500)) % 24], q)))
    np.testing.assert_allclose(sigma3_deviation(q, q2), 0.0, atol=1e-5)
    tilt = axis_angle_to_quat(np.array([1.0, 0.0, 0.0]), np.radians(3.0))
    np.testing.assert_allclose(sigma3_deviation(q, quat_multiply(tilt, quat_multiply(twin, q))), 3.0, atol=1e-6)


@pytest.mark.slow  # importing torch takes ~10 s on the shared box
@pytest.mark.parametrize("laue", ["m-3m", "6/mmm"])
def test_torch_path_matches_numpy_on_cpu(laue):
    q1, q2 = random_quaternions(2000, 40), random_quaternions(2000, 41)
    np.testing.assert_allclose(
        misorientation_angle(q1, q2, symmetry=laue, device="cpu"), misorientation_angle(q1, q2, symmetry=laue), atol=1e-8
    )


def test_orientation_inputs_of_the_wrong_kind_are_named():
    """Wrong shapes, degrees for radians and zero quaternions: each said, none a silent number.

    Before: Euler angles given as (n, 3) to misorientation_angle raised "not enough values to
    unpack"; a zero quaternion (some files store unindexed points so) gave 180 deg; Euler angles
    in degrees were read as radians without a word (90 deg became 90 rad, a valid but wrong
    orientation); a rotation about a zero axis was a NaN quaternion.
    """
    import warnings

    from metallo.ebsd import (
        axis_angle_to_quat,
        euler_to_quat,
        misorientation,
        misorientation_angle,
        random_quaternions,
    )
    from metallo.errors import ConfigError

    q = random_quaternions(3, 0)
    with pytest.raises(ConfigError, match=r"q1: orientations are \(\.\.\., 4\).*shape \(3, 3\).*euler_to_quat"):
        misorientation_angle(q[:, :3], q)
    with pytest.raises(ConfigError, match=r"q1 \(3, 4\) and q2 \(2, 4\) do not broadcast"):
        misorientation(q, q[:2])
    angles = misorientation_angle(np.array([[0.0, 0, 0, 0], [1.0, 0, 0, 0]]), np.array([1.0, 0, 0, 0]))
    assert np.isnan(angles[0]) and angles[1] == pytest.approx(0.0)
    with pytest.warns(UserWarning, match="degrees, not radians"):
        euler_to_quat(np.array([[90.0, 45.0, 30.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        euler_to_quat(np.array([[4 * np.pi, 4 * np.pi, 4 * np.pi], [6.2, 3.1, 6.2]]))  # the unindexed marker: no warning
    with pytest.raises(ConfigError, match=r"\(\.\.\., 3\).*shape \(3, 2\)"):
        euler_to_quat(np.zeros((3, 2)))
    with pytest.raises(ConfigError, match="zero axis"):
        axis_angle_to_quat([0.0, 0.0, 0.0], 1.0)
    np.testing.assert_allclose(axis_angle_to_quat([0.0, 0.0, 0.0], 0.0), [1.0, 0.0, 0.0, 0.0])  # no rotation
    with pytest.raises(ConfigError, match=">= 0"):
        random_quaternions(-1)
