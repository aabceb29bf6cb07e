"""Recipes: bounded values, no NaN/inf, no duplicate keys, no alias bombs, safe ids and outputs."""

from __future__ import annotations

import time

import pytest

from metallo._recipe import load_recipe
from metallo.errors import ConfigError, SchemaError

BASE = "specimen: {id: S1}\ninputs: {synthetic: {seed: 1}}\n"


def _load(tmp_path, text: str | bytes, name: str = "r.yaml"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return load_recipe(path)


def test_an_alias_bomb_is_refused_in_under_a_second(tmp_path):
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    text = BASE + "limits:\n" + "\n".join("  " + line for line in lines) + "\n"
    assert len(text) < 700
    start = time.process_time()
    with pytest.raises(ConfigError, match="alias bomb refused"):
        _load(tmp_path, text)
    assert time.process_time() - start < 1.0


def test_a_self_referencing_alias_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="alias refers to itself"):
        _load(tmp_path, BASE + "limits: &x {a: *x}\n")


def test_a_few_aliases_still_work(tmp_path):
    text = BASE + "limits:\n  ferrite: &lim [0.1, 0.9]\n  bainite: *lim\n"
    assert load_recipe(_path(tmp_path, text)).data["limits"]["bainite"] == [0.1, 0.9]


def _path(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_duplicate_keys_are_refused_with_both_lines(tmp_path):
    with pytest.raises(ConfigError, match=r"line 3: duplicate key 'specimen' \(first at line 1\)"):
        _load(tmp_path, BASE + "specimen: {id: S2}\n")


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("ebsd_derive: {kam_order: 1000000}", r"steps\.ebsd_derive\.kam_order .*1000000 is greater than the maximum of 20"),
        ("ebsd_derive: {kam_kernel: diamond}", r"steps\.ebsd_derive\.kam_kernel .*'diamond' is not one of \['ring', 'mtex', 'full'\]"),
        ("clean_ebsd: {min_ci: .nan}", r"steps\.clean_ebsd\.min_ci \(line 4\): NaN and infinity are not allowed"),
        ("register: {grid_um: .inf}", r"steps\.register\.grid_um .*NaN and infinity"),
        ("segment: {options: {n_superpixels: 99999999999}}", r"greater than the maximum"),
        ("segment: {options: {bogus: 1}}", r"Additional properties are not allowed \('bogus'"),
        ("segment: {method: unsupervised, options: {tile: 512}}", r"options\.tile: not an option of method 'unsupervised'"),
        ("quantify: {fields: [1000, 3]}", r"greater than the maximum of 100"),
    ],
)
def test_numeric_options_are_bounded_and_finite(tmp_path, steps, message):
    with pytest.raises(SchemaError, match=message):
        _load(tmp_path, BASE + "steps:\n  " + steps + "\n")


@pytest.mark.parametrize("sid", [".", "..", "...", ".hidden", "a/b", "a\\\\b", "x" * 129, ""])
def test_specimen_ids_are_safe_file_names(tmp_path, sid):
    with pytest.raises(SchemaError, match=r"specimen\.id"):
        _load(tmp_path, f'specimen: {{id: "{sid}"}}\ninputs: {{synthetic: {{seed: 1}}}}\n')


def test_relative_outputs_stay_in_the_recipe_folder(tmp_path):
    with pytest.raises(SchemaError, match=r"output\.dir \(line 3\): '\.\./\.\.' leads out of the recipe's folder"):
        _load(tmp_path, BASE + "output: {dir: ../..}\n")
    inside = _load(tmp_path, BASE + "output: {dir: results/S1}\n")
    assert inside.output_dir == (tmp_path / "results" / "S1").resolve()


def test_an_absolute_output_dir_is_written_exactly_there_and_said_so(tmp_path):
    target = tmp_path.parent / "elsewhere"
    with pytest.warns(UserWarning, match=rf"writing outside the recipe's folder, to {target}"):
        recipe = _load(tmp_path, BASE + f"output: {{dir: '{target}'}}\n")
    assert recipe.specimen_path == target / "S1.h5"


@pytest.mark.parametrize(
    ("raw", "error", "message"),
    [
        (b"specimen: {id: S\xe91}\n", ConfigError, r"not UTF-8 text \(byte 0xe9 at offset 16\)"),
        (b"\x00" * 20_000, ConfigError, "NUL bytes"),
        (b"specimen: [unclosed\n", ConfigError, "not valid YAML"),
        (b"- 1\n- 2\n", SchemaError, "must be a mapping"),
        (b"specimen: !!python/object:os.system {}\n", ConfigError, "not valid YAML"),
    ],
)
def test_unreadable_recipes_are_one_short_line(tmp_path, raw, error, message):
    with pytest.raises(error, match=message) as info:
        _load(tmp_path, raw)
    text = str(info.value)
    assert "\n" not in text and len(text) < 400
