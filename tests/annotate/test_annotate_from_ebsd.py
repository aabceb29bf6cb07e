"""from_ebsd on maps with known grains and classes; to_micrograph through a known transform."""

from __future__ import annotations

import json

import numpy as np
import pytest
from annotate_helpers import AffineRegistration

from metallo._xarray import image_dataarray
from metallo.annotate import from_ebsd, to_micrograph
from metallo.errors import ConfigError, RegistrationError
from metallo.quantify import phase_fractions

PLAIN = {
    "classes": ["polygonal_ferrite", "lath_bainite"],
    "default": "polygonal_ferrite",
    "rules": {"lath_bainite": {"gos": {"gt": 2.0}}},
}


def test_labels_follow_grains_exactly(known_map):
    mask = from_ebsd(known_map.ebsd, rules=PLAIN, grains=known_map.grains)
    np.testing.assert_array_equal(mask.values, known_map.truth)
    assert mask.dtype == np.uint8 and mask.dims == ("y", "x")
    np.testing.assert_allclose(mask.x.values, known_map.ebsd.x.values)
    assert json.loads(mask.attrs["classes"]) == PLAIN["classes"]
    assert mask.attrs["ignore_index"] == 255
    assert json.loads(mask.attrs["thresholds"]) == {"gos": {"value": 2.0, "method": "fixed"}}
    assert mask.attrs["pixel_size_um"] == 0.5


def test_kam_rule_uses_derived_map_and_gives_same_mask(known_map):
    rules = {**PLAIN, "rules": {"lath_bainite": {"kam_mean": {"gt": 0.6}}}}
    mask = from_ebsd(known_map.ebsd, rules=rules, grains=known_map.grains, derived=known_map.derived)
    np.testing.assert_array_equal(mask.values, known_map.truth)


def test_gmm_threshold_on_iq_is_reported(known_map):
    rules = {**PLAIN, "rules": {"lath_bainite": {"iq_mean": {"lt": "gmm"}}}}
    mask = from_ebsd(known_map.ebsd, rules=rules, grains=known_map.grains)
    np.testing.assert_array_equal(mask.values, known_map.truth)
    used = json.loads(mask.attrs["thresholds"])["iq_mean"]
    assert used["method"] == "gmm" and 0.3 < used["value"] < 0.8


def test_ignore_band_low_ci_and_ungrained_points(known_map):
    ids = known_map.ids.copy()
    ids[30:32, 50:52] = -1  # points no grain claims (e.g. removed small grains)
    grains = type(known_map.grains)(ids=ids, table=known_map.grains.table)
    rules = {**PLAIN, "ignore": {"border_um": 0.5, "min_ci": 0.1}}
    mask = from_ebsd(known_map.ebsd, rules=rules, grains=grains).values
    truth = known_map.truth
    assert mask[5, 5] == 255  # ci 0.05
    assert (mask[30:32, 50:52] == 255).all()
    # 0.5 µm = 1 px band on each side of every vertical class border (every 10 columns).
    assert (mask[12:18, 9] == 255).all() and (mask[12:18, 10] == 255).all()
    keep = mask != 255
    np.testing.assert_array_equal(mask[keep], truth[keep])
    # Interior columns of a grain are untouched.
    assert (mask[12:18, 12:18] == truth[12:18, 12:18]).all()


def test_default_ignore_leaves_unmatched_grains_out(known_map):
    rules = {**PLAIN, "default": "ignore"}
    mask = from_ebsd(known_map.ebsd, rules=rules, grains=known_map.grains).values
    np.testing.assert_array_equal(mask == 255, known_map.truth == 0)


def test_phase_preset_fractions_equal_phase_column(known_map):
    mask = from_ebsd(known_map.ebsd, rules="phase", grains=known_map.grains)
    assert json.loads(mask.attrs["classes"]) == ["austenite", "ferrite"]
    phase = known_map.ebsd["phase"].values
    fractions = phase_fractions(mask, ignore_index=255).set_index("class")["fraction"]
    assert fractions["austenite"] == pytest.approx((phase == 1).mean(), abs=1e-15)
    np.testing.assert_array_equal(mask.values, (phase == 2).astype(np.uint8))


def test_not_an_ebsd_map():
    with pytest.raises(ConfigError, match="phase"):
        from_ebsd(image_dataarray(np.zeros((4, 4))).to_dataset())


def test_to_micrograph_with_a_known_affine(known_map):
    mask = from_ebsd(known_map.ebsd, rules=PLAIN, grains=known_map.grains)
    lom = image_dataarray(np.zeros((70, 90), np.float32), pixel_size_um=0.25, name="lom")
    # EBSD field (20 x 30 µm) lands scaled 0.8 and shifted by (2, 3) µm in the 17.5 x 22.5 µm LOM.
    reg = AffineRegistration(lom, scale=0.8, shift_um=(2.0, 3.0))
    on_lom = to_micrograph(mask, reg, lom)
    assert on_lom.shape == (70, 90) and on_lom.dtype == np.uint8
    assert set(np.unique(on_lom.values)) <= {0, 1, 255}
    np.testing.assert_allclose(on_lom.x.values, lom.x.values)
    assert on_lom.attrs["pixel_size_um"] == 0.25
    # Known points: LOM (y, x) µm -> EBSD µm = (p - shift) / 0.8 -> EBSD px = / 0.5.
    for iy, ix in [(20, 30), (40, 60), (60, 80), (10, 15)]:
        ey = int(np.rint((iy * 0.25 - 2.0) / 0.8 / 0.5))
        ex = int(np.rint((ix * 0.25 - 3.0) / 0.8 / 0.5))
        assert on_lom.values[iy, ix] == known_map.truth[ey, ex]
    # Outside the EBSD field (above y = 2 µm, left of x = 3 µm): ignore.
    assert (on_lom.values[:6, :] == 255).all() and (on_lom.values[:, :10] == 255).all()
    inside = on_lom.values != 255
    assert 0.3 < (on_lom.values[inside] == 1).mean() < 0.7


def test_to_micrograph_rejects_a_foreign_fixed_grid(known_map):
    mask = from_ebsd(known_map.ebsd, rules=PLAIN, grains=known_map.grains)
    other = image_dataarray(np.zeros((50, 50)), pixel_size_um=0.25)
    reg = AffineRegistration(other, scale=1.0, shift_um=(0.0, 0.0))
    with pytest.raises(RegistrationError, match="fixed"):
        to_micrograph(mask, reg, image_dataarray(np.zeros((70, 90)), pixel_size_um=0.25))


def test_to_micrograph_takes_the_plain_array_and_says_when_the_calibration_is_not_the_registrations():
    # A plain array had raised AttributeError ('numpy.ndarray' object has no attribute 'name').
    import warnings

    from metallo.correlate import register
    from metallo.ebsd import map_image
    from metallo.synth import make_specimen

    spec = make_specimen(0, ebsd_shape=(40, 40))
    mask = from_ebsd(spec.ebsd, rules="lath_bainite")
    reg = register(spec.lom, map_image(spec.ebsd, "iq"), method="affine", inverse_consistency=False)
    ref = to_micrograph(mask, reg, spec.lom)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the registration's own grid: nothing to say
        bare = to_micrograph(mask, reg, spec.lom.values)
    assert np.array_equal(bare.values, ref.values) and np.allclose(bare.x.values, ref.x.values)
    assert bare.attrs["pixel_size_um"] == pytest.approx(float(spec.lom.attrs["pixel_size_um"]))
    recalibrated = image_dataarray(spec.lom.values, pixel_size_um=2 * float(spec.lom.attrs["pixel_size_um"]))
    with pytest.warns(UserWarning, match="is not the one the registration was made on"):
        moved = to_micrograph(mask, reg, recalibrated)
    assert np.array_equal(moved.values, ref.values)  # the labels follow the pixels
    with pytest.raises(ConfigError, match=r"got ndarray of shape \(2, 3, 4, 5\)"):
        to_micrograph(mask, reg, np.zeros((2, 3, 4, 5)))


@pytest.mark.slow
def test_hexagonal_map_masks_land_on_the_micrograph_truth():
    # The registration is found on the map's IQ image and the mask is placed by the map's µm
    # coordinates: both must share one geometry. On a hexagonal grid the IQ image used to put the
    # rows a full step apart (sqrt(3)/2 step in the map), and the mask agreed with the
    # micrograph's truth on 77 % of the pixels, with the registration not flagged.
    import metallo as mt
    from metallo.synth import make_specimen

    s = make_specimen(0, grid="hexagonal")
    reg = mt.correlate.register(s.lom, mt.ebsd.map_image(s.ebsd, "iq"))
    mask = to_micrograph(from_ebsd(s.ebsd, rules="lath_bainite"), reg, s.lom).values
    truth = np.asarray(s.lom_labels)
    both = (mask != 255) & (truth != 255)
    assert both.mean() > 0.5
    assert (mask[both] == truth[both]).mean() > 0.99  # 0.9996 measured


def test_ferrite_presets_label_the_other_phases_by_name(known_map):
    """The lath_bainite presets tell bainite from polygonal ferrite among grains of bcc iron. On a
    duplex map they had called the austenite grains polygonal ferrite (or bainite, where their
    GOS was high): the austenite now gets its own class, and a warning says why."""
    from metallo.annotate import load_rules

    for preset in ("lath_bainite", "lath_bainite_parent"):
        with pytest.warns(UserWarning, match=r"this map also holds austenite \(m-3m, a = 3\.6 Å; 50\.0 % of the "
                                             r"indexed points\): labelled as austenite, not as ferrite"):
            rules = load_rules(preset, ebsd=known_map.ebsd)
        assert rules.classes == ["polygonal_ferrite", "lath_bainite", "austenite"]
        assert list(rules.rules)[0] == "austenite" and rules.rules["austenite"] == {"phase": {"eq": 1}}
    with pytest.warns(UserWarning, match="labelled as austenite"):
        mask = from_ebsd(known_map.ebsd, rules="lath_bainite", grains=known_map.grains).values
    phase = known_map.ebsd["phase"].values
    labelled = mask != 255
    # Every austenite point labelled is austenite; every ferrite point labelled is one of the two ferrites.
    assert labelled[phase == 1].mean() > 0.5 and (mask[labelled & (phase == 1)] == 2).all()
    assert set(np.unique(mask[labelled & (phase == 2)]).tolist()) == {0, 1}
    # The ferrite grains keep the rules' verdict: odd grains (GOS 3°) bainite, even ones polygonal.
    truth = known_map.truth
    agree = labelled & (phase == 2)
    assert (mask[agree] == truth[agree]).mean() > 0.95


def test_ferrite_presets_warn_on_a_map_without_bcc_iron(known_map):
    ebsd = known_map.ebsd.copy()
    ebsd.attrs["phases"] = json.dumps([{"id": 1, "name": "Nickel", "symmetry": "m-3m", "lattice": [3.52] * 3 + [90] * 3},
                                       {"id": 2, "name": "Copper", "symmetry": "m-3m", "lattice": [3.61] * 3 + [90] * 3}])
    from metallo.annotate import load_rules

    with pytest.warns(UserWarning, match=r"none of this map's phases is bcc iron \(Nickel .*; Copper .*\): its "
                                         r"polygonal_ferrite and lath_bainite labels name nothing this map holds"):
        rules = load_rules("lath_bainite", ebsd=ebsd)
    assert rules.classes == ["polygonal_ferrite", "lath_bainite"]
    # A map of bcc iron alone, or of phases nothing tells apart, is classified as before, without a word.
    import warnings

    ebsd.attrs["phases"] = json.dumps([{"id": 1, "name": "Iron bcc (old)", "symmetry": "m-3m"},
                                       {"id": 2, "name": "phase 2", "symmetry": "m-3m"}])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_rules("lath_bainite", ebsd=ebsd).classes == ["polygonal_ferrite", "lath_bainite"]
