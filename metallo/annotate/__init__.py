"""EBSD-informed annotation: rule-based label maps on the EBSD grid, carried into micrographs.

Rules on grain-level quantities (GOS, GAM, KAM, size, shape, phase, ...) label every grain
of an EBSD map; the mask is cleaned, given an ``ignore_index`` band at class borders and at
low-confidence points, warped into micrograph pixels through a registration and exported
for training (see ``docs/annotate.md``).
"""

from metallo.annotate._adapter import annotate_step, annotation_name
from metallo.annotate._cleanup import clean_labels, ignore_band
from metallo.annotate._export import add_annotation, write_labels, write_training_tiles
from metallo.annotate._from_ebsd import from_ebsd, to_micrograph
from metallo.annotate._quantities import grain_quantities
from metallo.annotate._review import fraction_table, review_figure
from metallo.annotate._rules import (
    AnnotationRules,
    classify_grains,
    load_rules,
    preset_names,
    presets,
    quantity_names,
)
from metallo.annotate._thresholds import MIN_GRAINS_PER_SIDE, select_threshold

__all__ = [
    "MIN_GRAINS_PER_SIDE",
    "annotate_step",
    "annotation_name",
    "AnnotationRules",
    "add_annotation",
    "classify_grains",
    "clean_labels",
    "fraction_table",
    "from_ebsd",
    "grain_quantities",
    "ignore_band",
    "load_rules",
    "preset_names",
    "presets",
    "quantity_names",
    "review_figure",
    "select_threshold",
    "to_micrograph",
    "write_labels",
    "write_training_tiles",
]
