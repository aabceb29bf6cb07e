"""Done-when checks on the synthetic specimen: masks against known bainite/ferrite regions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from annotate_helpers import iou

from metallo.annotate import from_ebsd, load_rules, to_micrograph


@pytest.fixture(scope="module")
def ebsd_mask(synth_specimen):
    return from_ebsd(synth_specimen.ebsd, rules="lath_bainite")


def test_ebsd_grid_iou_per_class(ebsd_mask, synth_specimen):
    labels = ebsd_mask.values
    valid = labels != 255
    assert valid.mean() > 0.85  # the band and low-CI points are a small share
    for cls in (0, 1):
        assert iou(labels, synth_specimen.constituent, cls, valid) >= 0.95
    fraction = (labels[valid] == 1).mean()
    assert fraction == pytest.approx(synth_specimen.truth["bainite_fraction"], abs=0.03)


@pytest.mark.parametrize("method", ["otsu", "gmm"])
def test_data_driven_thresholds_reach_the_same_iou(synth_specimen, method):
    rules = load_rules("lath_bainite").to_dict()
    rules["thresholds"] = {"gos": method, "kam_mean": method}
    mask = from_ebsd(synth_specimen.ebsd, rules=rules)
    used = json.loads(mask.attrs["thresholds"])
    assert used["gos"]["method"] == method and used["kam_mean"]["method"] == method
    labels = mask.values
    valid = labels != 255
    for cls in (0, 1):
        assert iou(labels, synth_specimen.constituent, cls, valid) >= 0.95


def test_unindexed_and_low_ci_points_are_ignored(ebsd_mask, synth_specimen):
    ci = synth_specimen.ebsd["ci"].values
    assert (ebsd_mask.values[ci < 0.1] == 255).all()
    assert (synth_specimen.ebsd["phase"].values == -1).any()


@pytest.mark.slow
def test_lom_grid_iou_with_recovered_registration(ebsd_mask, synth_specimen, synth_registration):
    on_lom = to_micrograph(ebsd_mask, synth_registration, synth_specimen.lom)
    assert on_lom.shape == synth_specimen.lom.shape
    field = synth_specimen.lom_field
    # Outside the EBSD field there is no evidence: ignore everywhere but a rim of rounding.
    assert (on_lom.values[~field] == 255).mean() > 0.99
    valid = field & (on_lom.values != 255)
    for cls in (0, 1):
        assert iou(on_lom.values, synth_specimen.lom_labels, cls, valid) >= 0.90
    # Nearest-neighbour warping keeps the label values exactly.
    assert set(np.unique(on_lom.values)) <= {0, 1, 255}
