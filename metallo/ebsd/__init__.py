"""EBSD maps: orientation maths, cleanup, grains, KAM / GOS / GAM, boundaries."""

from metallo.ebsd._dataset import LAUE_GROUPS, ebsd_dataset, phases_of
from metallo.ebsd._rotations import (
    axis_angle_to_quat,
    euler_to_quat,
    quat_conjugate,
    quat_multiply,
    quat_normalize,
    quat_to_axis_angle,
    quat_to_euler,
    quat_to_matrix,
    random_quaternions,
)

__all__ = [
    "LAUE_GROUPS",
    "axis_angle_to_quat",
    "ebsd_dataset",
    "euler_to_quat",
    "phases_of",
    "quat_conjugate",
    "quat_multiply",
    "quat_normalize",
    "quat_to_axis_angle",
    "quat_to_euler",
    "quat_to_matrix",
    "random_quaternions",
]
