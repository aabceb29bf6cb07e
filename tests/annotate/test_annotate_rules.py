"""The rule language: parsing, validation, evaluation per grain, data-driven thresholds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from metallo.annotate import classify_grains, from_ebsd, load_rules, preset_names, quantity_names
from metallo.errors import ConfigError, MetalloError, UnknownNameError

YAML_RULES = """
classes: [polygonal_ferrite, lath_bainite]
default: polygonal_ferrite
rules:
  lath_bainite: {any: [{gos: {gt: 2.0}}, {kam_mean: {gt: 0.6}}]}
cleanup: {min_region_um2: 2.0, fill_holes: true, smooth_px: 1}
ignore: {border_px: 1, min_ci: 0.1}
"""
DICT_RULES = {
    "classes": ["polygonal_ferrite", "lath_bainite"],
    "default": "polygonal_ferrite",
    "rules": {"lath_bainite": {"any": [{"gos": {"gt": 2.0}}, {"kam_mean": {"gt": 0.6}}]}},
    "cleanup": {"min_region_um2": 2.0, "fill_holes": True, "smooth_px": 1},
    "ignore": {"border_px": 1, "min_ci": 0.1},
}


def test_yaml_text_file_and_dict_give_identical_masks(known_map, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(YAML_RULES)
    masks = [
        from_ebsd(known_map.ebsd, rules=r, grains=known_map.grains, derived=known_map.derived)
        for r in (YAML_RULES, path, str(path), DICT_RULES)
    ]
    for mask in masks[1:]:
        np.testing.assert_array_equal(mask.values, masks[0].values)
        assert json.loads(mask.attrs["rules"]) == json.loads(masks[0].attrs["rules"])
    assert masks[1].attrs["rules_source"] == str(path)


def test_unknown_quantity_lists_valid_names():
    with pytest.raises(UnknownNameError) as info:
        load_rules({"classes": ["a", "b"], "rules": {"b": {"gos_typo": {"gt": 1}}}})
    message = str(info.value)
    assert isinstance(info.value, MetalloError)
    assert "gos_typo" in message
    for name in quantity_names():
        assert name in message


def test_kam_options_are_checked_and_take_the_kernel():
    rules = load_rules({"classes": ["a", "b"], "kam": {"order": 3, "kernel": "mtex"}})
    assert rules.kam == {"order": 3, "kernel": "mtex"}
    with pytest.raises(UnknownNameError, match="unknown key 'kernal' in rules .* kam .*valid names: order, max_deg, kernel"):
        load_rules({"classes": ["a", "b"], "kam": {"kernal": "mtex"}})


def test_unknown_preset_lists_presets():
    with pytest.raises(UnknownNameError) as info:
        load_rules("martensite_magic")
    assert all(name in str(info.value) for name in preset_names())


@pytest.mark.parametrize(
    ("rules", "fragment"),
    [
        ({"classes": ["a"], "rules": {"a": {"gos": {"greater": 1}}}}, "greater"),
        ({"classes": ["a"], "rules": {"b": {"gos": {"gt": 1}}}}, "'b'"),
        ({"classes": ["a"], "default": "c"}, "'c'"),
        ({"classes": ["a"], "colours": {}}, "colours"),
        ({"classes": ["a"], "thresholds": {"gos": "kmeans"}}, "kmeans"),
        ({"classes": ["a"], "ignore": {"border": 2}}, "border"),
    ],
)
def test_unknown_names_are_reported(rules, fragment):
    with pytest.raises(UnknownNameError, match=fragment):
        load_rules(rules)


@pytest.mark.parametrize(
    "rules",
    [
        {"classes": []},
        {"classes": ["a", "a"]},
        {"classes": ["a"], "rules": {"a": {"any": []}}},
        {"classes": ["a"], "rules": {"a": {"gos": {"between": [1]}}}},
        {"classes": ["a"], "rules": {"a": {"phase": {"eq": "otsu"}}}},
        {"classes": ["a"], "cleanup": {"min_region_um2": 1, "min_region_px": 3}},
        "classes: [a\nrules: {",
    ],
)
def test_malformed_rules_raise_config_error(rules):
    with pytest.raises(ConfigError):
        load_rules(rules)


def test_logic_priority_and_nan():
    table = pd.DataFrame(
        {
            "gos": [0.5, 3.0, 3.0, np.nan, 0.5],
            "area_um2": [10.0, 10.0, 100.0, 10.0, 100.0],
            "aspect_ratio": [1.0, 4.0, 1.0, 1.0, 1.0],
        }
    )
    rules = {
        "classes": ["ferrite", "lath", "granular", "large"],
        "default": "ignore",
        "rules": {
            "lath": {"all": [{"gos": {"gt": 2.0}}, {"aspect_ratio": {"ge": 3}}]},
            "granular": {"gos": {"gt": 2.0}, "not": {"aspect_ratio": {"ge": 3}}},
            "large": {"area_um2": {"between": [50, 200]}},
            "ferrite": {"gos": {"le": 2.0}},
        },
    }
    classes, used = classify_grains(table, rules)
    # Row 2 matches "granular" and "large": the rule written first wins; NaN GOS matches no
    # comparison, so row 3 falls to the default (ignore = -1).
    assert classes.tolist() == [0, 1, 2, -1, 3]
    assert used["gos"] == {"value": 2.0, "method": "fixed"}


def test_phase_conditions_take_names_or_ids(known_map):
    phases = json.loads(known_map.ebsd.attrs["phases"])
    table = pd.DataFrame({"phase": [1, 2, 2, 1]})
    rules = {"classes": ["fcc", "bcc"], "default": "ignore",
             "rules": {"fcc": {"phase": {"eq": "Austenite"}}, "bcc": {"phase": {"in": ["ferrite", 7]}}}}
    classes, _ = classify_grains(table, rules, phases=phases)
    assert classes.tolist() == [0, 1, 1, 0]
    with pytest.raises(UnknownNameError, match="austenite, ferrite"):
        classify_grains(table, {"classes": ["x"], "rules": {"x": {"phase": {"eq": "cementite"}}}}, phases=phases)


@pytest.mark.parametrize("method", ["otsu", "gmm"])
def test_data_driven_threshold_is_used_and_reported(method):
    rng = np.random.default_rng(1)
    gos = np.r_[rng.normal(0.5, 0.15, 400), rng.normal(4.0, 0.5, 200)]
    table = pd.DataFrame({"gos": gos})
    truth = (np.arange(600) >= 400).astype(int)
    section = {"classes": ["f", "b"], "rules": {"b": {"gos": {"gt": 10.0}}}, "thresholds": {"gos": method}}
    inline = {"classes": ["f", "b"], "rules": {"b": {"gos": {"gt": method}}}}
    for rules in (section, inline):
        classes, used = classify_grains(table, rules)
        assert used["gos"]["method"] == method
        assert gos[:400].max() < used["gos"]["value"] < gos[400:].min()
        np.testing.assert_array_equal(classes, truth)


def test_preset_lath_bainite_is_valid_and_plausible():
    rules = load_rules("lath_bainite")
    assert rules.classes == ["polygonal_ferrite", "lath_bainite"]
    assert set(rules.used_quantities()) == {"gos", "kam_mean"}
    assert rules.kam == {"order": 3, "max_deg": 5.0}  # the paper: KAM with 3rd-order neighbours
    assert rules.grains["tolerance_deg"] == 5.0  # the paper: 5° grain tolerance


def test_phase_preset_follows_the_map(known_map):
    rules = load_rules("phase", ebsd=known_map.ebsd)
    assert rules.classes == ["austenite", "ferrite"]
    with pytest.raises(ConfigError, match="EBSD map"):
        load_rules("phase")


@pytest.mark.parametrize(("step_um", "said"), [(1.5, r"reach 4\.5 µm.*too many grains as bainite: give rules with kam: \{order: 1\}"),
                                               (0.1, r"reach 0\.3 µm.*too few grains as bainite: give rules with kam: \{order: 10\}"),
                                               (0.35, None), (0.5, None)])
def test_lath_bainite_warns_where_the_kam_kernel_reaches_far_from_the_papers(step_um, said):
    """The preset's KAM threshold (0.6 deg) is the paper's, for 3rd-order KAM at 0.35 µm steps
    (1.05 µm). A lattice gradient's KAM grows with the reach, so at 1.5 µm steps the threshold
    marks strain-free-enough ferrite as bainite; within 2x of the paper's reach it is used as is."""
    import warnings

    from metallo.ebsd import ebsd_dataset

    ferrite = ebsd_dataset(np.zeros((10, 10, 3)), np.ones((10, 10), np.int16), step_um=step_um,
                           phases=[{"id": 1, "name": "ferrite", "symmetry": "m-3m", "lattice": [2.87] * 3 + [90] * 3}])
    if said is None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            load_rules("lath_bainite", ebsd=ferrite)
    else:
        with pytest.warns(UserWarning, match=said):
            load_rules("lath_bainite", ebsd=ferrite)


def test_a_threshold_from_the_data_is_chosen_among_the_grains_its_rule_sorts():
    """Ferrite grains of GOS 0.5 (40) and 3.0 (20), austenite grains of GOS 6.0 (60) claimed
    first by a phase rule. Otsu over every grain had cut at 3.4, between the ferrite's strained
    grains and the austenite, so no ferrite grain was bainite; among the ferrite it cuts between
    0.5 and 3.0."""
    rng = np.random.default_rng(0)
    gos = np.r_[rng.normal(0.5, 0.1, 40), rng.normal(3.0, 0.2, 20), rng.normal(6.0, 0.3, 60)]
    table = pd.DataFrame({"gos": gos, "phase": np.r_[np.full(60, 2), np.full(60, 1)]})
    rules = {"classes": ["ferrite", "bainite", "austenite"], "default": "ferrite",
             "rules": {"austenite": {"phase": {"eq": 1}}, "bainite": {"gos": {"gt": 2.0}}}, "thresholds": {"gos": "otsu"}}
    classes, used = classify_grains(table, rules)
    assert used["gos"]["n"] == 60 and 0.5 < used["gos"]["value"] < 3.0
    assert classes[:40].tolist() == [0] * 40 and classes[40:60].tolist() == [1] * 20 and set(classes[60:]) == {2}
