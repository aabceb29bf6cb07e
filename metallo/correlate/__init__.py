"""metallo.correlate: register two images (SIFT + B-spline) and carry maps between them.

The registration maps FIXED-space points to MOVING-space points (ITK convention);
:meth:`Registration.warp` resamples moving-space data onto the fixed grid and
:meth:`Registration.transform_points` maps moving µm to fixed µm.
"""

from metallo.correlate._adapter import register_step
from metallo.correlate._figures import checkerboard, overlay_figure
from metallo.correlate._landmarks import read_landmarks, read_points, write_points
from metallo.correlate._register import (
    RegistrationMethod,
    get_method,
    method_names,
    mutual_information,
    register,
)
from metallo.correlate._transform import Grid, Registration
from metallo.errors import RegistrationError

__all__ = [
    "register_step",
    "Grid",
    "Registration",
    "RegistrationError",
    "RegistrationMethod",
    "checkerboard",
    "get_method",
    "method_names",
    "mutual_information",
    "overlay_figure",
    "read_landmarks",
    "read_points",
    "register",
    "write_points",
]
