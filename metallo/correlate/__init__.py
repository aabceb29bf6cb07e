"""metallo.correlate: register two images (automatic control points + thin-plate spline) and carry maps between them.

The registration maps FIXED-space points to MOVING-space points (ITK convention);
:meth:`Registration.warp` resamples moving-space data onto the fixed grid and
:meth:`Registration.transform_points` maps moving µm to fixed µm.
"""

from metallo.correlate._adapter import register_ebsd, register_step, resample_ebsd_step
from metallo.correlate._auto import ControlPoints, structure_image
from metallo.correlate._ebsd_out import corrected_ebsd, write_corrected_ang
from metallo.correlate._evaluate import (
    PointPair,
    load_point_pair,
    pair_variant,
    point_baselines,
    residual_calibration,
    tre,
    tre_stats,
)
from metallo.correlate._figures import checkerboard, overlay_figure, residual_figure
from metallo.correlate._landmarks import read_landmarks, read_points, write_landmarks, write_points
from metallo.correlate._register import (
    RegistrationMethod,
    calibration_scale,
    gate_rejected,
    get_method,
    method_names,
    mutual_information,
    register,
)
from metallo.correlate._structure import ebsd_structure_image
from metallo.correlate._transform import Grid, Registration
from metallo.errors import RegistrationError

__all__ = [
    "register_step",
    "resample_ebsd_step",
    "ControlPoints",
    "Grid",
    "PointPair",
    "Registration",
    "RegistrationError",
    "RegistrationMethod",
    "calibration_scale",
    "checkerboard",
    "corrected_ebsd",
    "ebsd_structure_image",
    "gate_rejected",
    "get_method",
    "load_point_pair",
    "method_names",
    "mutual_information",
    "overlay_figure",
    "residual_calibration",
    "residual_figure",
    "pair_variant",
    "point_baselines",
    "read_landmarks",
    "read_points",
    "register",
    "register_ebsd",
    "structure_image",
    "tre",
    "tre_stats",
    "write_corrected_ang",
    "write_landmarks",
    "write_points",
]
