"""EBSD-informed annotation: rule-based label maps on the EBSD grid, carried into micrographs.

Rules on grain-level quantities (GOS, GAM, KAM, size, shape, phase, ...) label every grain
of an EBSD map; the mask is cleaned, given an ``ignore_index`` band at class borders and at
low-confidence points, warped into micrograph pixels through a registration and exported
for training (see ``docs/annotate.md``).
"""

from metallo.annotate._cleanup import area_fractions, clean_labels, ignore_band
from metallo.annotate._from_ebsd import from_ebsd, to_micrograph
from metallo.annotate._quantities import grain_quantities
from metallo.annotate._rules import (
    AnnotationRules,
    classify_grains,
    load_rules,
    preset_names,
    presets,
    quantity_names,
)
from metallo.annotate._thresholds import select_threshold

__all__ = [
    "AnnotationRules",
    "area_fractions",
    "classify_grains",
    "clean_labels",
    "from_ebsd",
    "grain_quantities",
    "ignore_band",
    "load_rules",
    "preset_names",
    "presets",
    "quantity_names",
    "select_threshold",
    "to_micrograph",
]
