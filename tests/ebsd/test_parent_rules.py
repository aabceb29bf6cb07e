"""Parent quantities in the annotation rule language; the lath_bainite_parent preset on a
synthetic mixed microstructure (martensite + polygonal ferrite, exact constituent truth)."""

from __future__ import annotations

import numpy as np

from metallo.annotate import grain_quantities, quantity_names
from metallo.annotate._rules import classify_grains, load_rules
from metallo.ebsd import grains
from metallo.synth import make_martensite

PARENT = ["parent_variants", "parent_packets", "parent_fit", "parent_fraction", "or_boundary_fraction"]


def test_parent_preset_separates_martensite_from_polygonal_ferrite():
    m = make_martensite(5, shape=(240, 240), n_parents=24, ferrite_parents=0.4, ferrite_grain_um=4.0)
    g = grains(m.ebsd)
    q = grain_quantities(m.ebsd, grains=g, names=[*PARENT, "gos", "kam_mean"])
    ids = g.ids.values
    truth = np.array([np.bincount(m.constituent[ids == k]).argmax() for k in q.index])  # 0 ferrite, 1 martensite
    w = q["n_pixels"].to_numpy()
    med = q.groupby(truth).median()
    assert med.loc[1, "parent_variants"] >= 8 and med.loc[0, "parent_variants"] <= 3
    assert med.loc[1, "or_boundary_fraction"] > 0.9 and med.loc[0, "or_boundary_fraction"] < 0.5
    cls, used = classify_grains(q, "lath_bainite_parent")
    assert (w * (cls == truth)).sum() / w.sum() > 0.97
    # Without parent information (GOS / KAM preset) the two are not told apart here: both
    # carry the same 2 deg noise and no orientation gradients.
    cls_gos, _ = classify_grains(q, "lath_bainite")
    assert (w * (cls_gos == truth)).sum() / w.sum() < 0.8
    assert used["or_boundary_fraction"]["value"] == 0.7


def test_parent_quantities_are_registered_and_asked_by_name_only():
    assert set(PARENT) <= set(quantity_names())
    rules = load_rules("lath_bainite_parent")
    assert set(rules.used_quantities()) == {"parent_variants", "parent_packets", "parent_fit", "or_boundary_fraction"}
    m = make_martensite(0, shape=(50, 50), n_parents=3)
    assert not set(PARENT) & set(grain_quantities(m.ebsd).columns)
