"""Quantification: particle sizes and PSDs, denuded zones, lath widths, phase fractions, grain size.

Every length is in µm, every angle in degrees; results are pandas DataFrames that go into a
Specimen under ``quantities/<name>``.
"""

from metallo.quantify._common import weighted_quantile
from metallo.quantify._denuded import DenudedZone, denuded_zone_width
from metallo.quantify._fractions import (
    label_agreement,
    measurement_fields,
    phase_fraction_ci,
    phase_fractions,
)
from metallo.quantify._grains import (
    EBSD_MIN_INDEXED,
    ELONGATED_ANISOTROPY,
    INTERCEPT_COLUMNS,
    astm_g_intercept,
    astm_g_planimetric,
    elongation_text,
    grain_size,
)
from metallo.quantify._laths import (
    lath_boundaries_from_ebsd,
    lath_orientation,
    lath_width_quality,
    lath_width_summary,
    lath_widths,
)
from metallo.quantify._particles import measure_particles, particle_sizes, split_touching
from metallo.quantify._psd import (
    KSResult,
    ks_consistency,
    ks_test,
    lognormal_fit,
    size_distribution,
    size_ecdf,
)
from metallo.quantify._specimen import (
    QUANTITIES,
    ebsd_phase_shares,
    quantify_specimen,
    quantify_step,
)

__all__ = [
    "weighted_quantile",
    "EBSD_MIN_INDEXED",
    "ELONGATED_ANISOTROPY",
    "INTERCEPT_COLUMNS",
    "elongation_text",
    "ebsd_phase_shares",
    "measurement_fields",
    "QUANTITIES",
    "DenudedZone",
    "KSResult",
    "astm_g_intercept",
    "astm_g_planimetric",
    "denuded_zone_width",
    "grain_size",
    "label_agreement",
    "ks_consistency",
    "ks_test",
    "lath_boundaries_from_ebsd",
    "lath_orientation",
    "lath_width_quality",
    "lath_width_summary",
    "lath_widths",
    "lognormal_fit",
    "measure_particles",
    "particle_sizes",
    "phase_fraction_ci",
    "phase_fractions",
    "quantify_specimen",
    "quantify_step",
    "size_distribution",
    "size_ecdf",
    "split_touching",
]
