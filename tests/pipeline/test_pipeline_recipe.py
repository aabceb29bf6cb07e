"""Recipe validation: errors name the YAML path and line; paths resolve against the recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from metallo._recipe import load_recipe
from metallo.errors import ConfigError, SchemaError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "S1.yaml"
    path.write_text(text)
    return path


def test_minimal_synthetic_recipe_resolves_output_dir(tmp_path):
    recipe = load_recipe(_write(tmp_path, "specimen: {id: S1}\ninputs:\n  synthetic: {seed: 3}\n"))
    assert recipe.specimen_id == "S1"
    assert recipe.output_dir == tmp_path / "S1"
    assert recipe.specimen_path == tmp_path / "S1" / "S1.h5"
    assert recipe.step("register") is None


def test_unknown_key_reports_yaml_path_and_line(tmp_path):
    text = "specimen: {id: S1}\ninputs:\n  synthetic: {seed: 1}\nsteps:\n  register:\n    grid: 5\n"
    with pytest.raises(SchemaError) as info:
        load_recipe(_write(tmp_path, text))
    message = str(info.value)
    assert "S1.yaml" in message
    assert "steps.register (line 5)" in message
    assert "'grid' was unexpected" in message


def test_bad_value_reports_its_path(tmp_path):
    text = "specimen: {id: S1}\ninputs:\n  synthetic: {seed: 1}\nlimits:\n  lath_bainite: [0.3, 1.5]\n"
    with pytest.raises(SchemaError, match=r"limits\.lath_bainite\[1\] \(line 5\): 1\.5 is greater than the maximum of 1"):
        load_recipe(_write(tmp_path, text))


def test_limits_upside_down_and_class_names_that_do_not_fit_are_refused_before_anything_runs(tmp_path):
    head = "specimen: {id: S1}\ninputs:\n  synthetic: {seed: 1}\n"
    with pytest.raises(SchemaError, match=r"S1\.yaml: limits\.bainite \(line 6\): min 0\.45 is above max 0\.3"):
        load_recipe(_write(tmp_path, head + "limits:\n  ferrite: [0.1, 0.2]\n  bainite: [0.45, 0.3]\n"))
    steps = "steps:\n  segment:\n    method: unsupervised\n    n_classes: 3\n    classes: [{}]\n"
    with pytest.raises(SchemaError, match=r"steps\.segment\.classes \(line 8\): 2 names for n_classes 3"):
        load_recipe(_write(tmp_path, head + steps.format("a, b")))
    with pytest.raises(SchemaError, match=r"steps\.segment\.classes \(line 8\): a name occurs more than once"):
        load_recipe(_write(tmp_path, head + steps.format("a, b, a")))
    assert load_recipe(_write(tmp_path, head + steps.format("a, b, c"))).step("segment")["classes"] == ["a", "b", "c"]


def test_several_errors_are_listed_on_one_line(tmp_path):
    text = "specimen: {id: 'bad id'}\ninputs:\n  synthetic: {seed: -1}\n"
    with pytest.raises(SchemaError) as info:
        load_recipe(_write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    assert "specimen.id" in message and "inputs.synthetic.seed" in message


def test_recipe_without_inputs_is_rejected():
    with pytest.raises(SchemaError, match="inputs"):
        load_recipe({"specimen": {"id": "S1"}})


def test_relative_input_paths_resolve_against_the_recipe_folder(tmp_path):
    text = "specimen: {id: S1}\ninputs:\n  micrographs:\n    lom: {path: img/lom.tif, pixel_size_um: 0.2}\n  ebsd: {path: map.ang}\n"
    recipe = load_recipe(_write(tmp_path, text))
    assert recipe.data["inputs"]["micrographs"]["lom"]["path"] == str(tmp_path / "img" / "lom.tif")
    assert recipe.data["inputs"]["ebsd"]["path"] == str(tmp_path / "map.ang")


def test_unreadable_and_non_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read recipe"):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"not valid YAML \(line 2\)"):
        load_recipe(_write(tmp_path, "specimen: {id: S1}\n  bad: [\n"))
    with pytest.raises(SchemaError, match="must be a mapping"):
        load_recipe(_write(tmp_path, "- just\n- a list\n"))


def test_a_recipe_gives_column_text_its_symmetry_and_lattice(tmp_path):
    # MTEX's column-text export states no symmetry and no lattice: a recipe gives both, as
    # `metallo ebsd --symmetry --lattice` does, and the hcp twin relations follow from c/a.
    import json

    import numpy as np

    from metallo import names
    from metallo.ebsd import axis_angle_to_quat, quat_multiply, quat_to_euler, twin_systems
    from metallo.pipeline import run
    from metallo.specimen import Specimen

    mg = {"symmetry": "6/mmm", "lattice": [3.2089, 3.2089, 5.2101, 90, 90, 120]}
    twin = twin_systems(mg)[0]  # {10-12} extension, 86.3 deg about <11-20>
    host = np.array([1.0, 0.0, 0.0, 0.0])
    band = quat_multiply(axis_angle_to_quat(np.array([1.0, 0.0, 0.0]), np.radians(twin.angle_deg)), host)
    lines = ["phi1 Phi phi2 phase x y"]
    for r in range(20):
        for c in range(20):
            e = np.degrees(np.mod(quat_to_euler(band if 8 <= r < 12 else host), 2 * np.pi))
            lines.append(f"{e[0]:.4f} {e[1]:.4f} {e[2]:.4f} 1 {c * 0.5} {r * 0.5}")
    (tmp_path / "mg.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "r.yaml").write_text(
        "specimen: {id: R}\noutput: {dir: out}\n"
        "inputs:\n  ebsd: {path: mg.txt, symmetry: 6/mmm, lattice: [3.2089, 3.2089, 5.2101]}\n"
        "steps:\n  ebsd_derive: {}\n  quantify: {what: [grains]}\n")
    result = run(tmp_path / "r.yaml")
    spec = Specimen.open(result.specimen_path)
    (phase,) = json.loads(spec[names.EBSD_MAP].attrs["phases"])
    assert phase["symmetry"] == "6/mmm" and phase["lattice"][:3] == [3.2089, 3.2089, 5.2101]
    twins = spec.table(names.quantity(names.EBSD_MAP, names.TWINS)).set_index("twin")
    assert twins.loc["{10-12} extension", "share"] == 1.0  # both band edges, every segment
    with pytest.raises(SchemaError, match="lattice"):
        (tmp_path / "bad.yaml").write_text("specimen: {id: B}\ninputs:\n  ebsd: {path: mg.txt, lattice: [3.2, 5.2]}\n")
        load_recipe(tmp_path / "bad.yaml")
