"""EBSD maps: orientation maths, cleanup, grains, KAM / GOS / GAM, boundaries, parent grains."""

from metallo._ebsd_dataset import LAUE_GROUPS, ebsd_dataset, phases_of
from metallo.ebsd._adapter import clean_step, derive_step, parent_step
from metallo.ebsd._boundaries import BOUNDARY_CLASSES, boundaries, sigma3_deviation
from metallo.ebsd._clean import MAX_INVENTED, clean, invented_share
from metallo.ebsd._derive import derive
from metallo.ebsd._grains import (
    Grains,
    check_tolerance,
    gam,
    gos,
    grain_average_misorientation,
    grain_orientation_spread,
    grains,
)
from metallo.ebsd._grid import resample_to_square
from metallo.ebsd._image import map_image
from metallo.ebsd._ipf import ipf_colors
from metallo.ebsd._kam import check_kam_kernel, kam
from metallo.ebsd._misorientations import (
    HAGB_DEG,
    MIN_BOUNDARIES,
    boundary_misorientations,
    misorientation_distribution,
    misorientation_summary,
    random_misorientation_angles,
)
from metallo.ebsd._neighbours import KAM_KERNELS, laue_by_phase
from metallo.ebsd._or import OrientationRelationship, or_angle, or_names, orientation_relationship
from metallo.ebsd._parent import (
    ORFit,
    ParentReconstruction,
    ParentReconstructionError,
    boundary_f1,
    fit_orientation_relationship,
    grain_parent_quantities,
    parent_map,
    reconstruct_parent,
    substructure_sizes,
)
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
from metallo.ebsd._symmetry import misorientation, misorientation_angle, symmetry_operators
from metallo.ebsd._texture import FIBRE_TOLERANCE_DEG, MIN_TEXTURE_GRAINS, fibre_shares
from metallo.ebsd._twins import (
    TwinSystem,
    merge_twins,
    twin_boundaries,
    twin_deviation,
    twin_systems,
)

__all__ = [
    "KAM_KERNELS",
    "clean_step",
    "derive_step",
    "parent_step",
    "ORFit",
    "OrientationRelationship",
    "ParentReconstruction",
    "ParentReconstructionError",
    "boundary_f1",
    "fit_orientation_relationship",
    "grain_parent_quantities",
    "or_angle",
    "or_names",
    "orientation_relationship",
    "parent_map",
    "reconstruct_parent",
    "substructure_sizes",
    "map_image",
    "BOUNDARY_CLASSES",
    "LAUE_GROUPS",
    "Grains",
    "axis_angle_to_quat",
    "boundaries",
    "check_kam_kernel",
    "check_tolerance",
    "clean",
    "derive",
    "ebsd_dataset",
    "euler_to_quat",
    "gam",
    "grain_average_misorientation",
    "grain_orientation_spread",
    "grains",
    "gos",
    "ipf_colors",
    "kam",
    "laue_by_phase",
    "merge_twins",
    "misorientation",
    "misorientation_angle",
    "phases_of",
    "quat_conjugate",
    "quat_multiply",
    "quat_normalize",
    "quat_to_axis_angle",
    "quat_to_euler",
    "quat_to_matrix",
    "random_quaternions",
    "resample_to_square",
    "sigma3_deviation",
    "symmetry_operators",
    "MAX_INVENTED",
    "invented_share",
    "TwinSystem",
    "twin_boundaries",
    "FIBRE_TOLERANCE_DEG",
    "MIN_TEXTURE_GRAINS",
    "fibre_shares",
    "HAGB_DEG",
    "MIN_BOUNDARIES",
    "boundary_misorientations",
    "misorientation_distribution",
    "misorientation_summary",
    "random_misorientation_angles",
    "twin_deviation",
    "twin_systems",
]
