"""One configuration system: YAML files validated by data_schemas/*.json with line-numbered errors.

Recipes (tests/pipeline/test_pipeline_recipe.py) and training configs go through the same loader.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from metallo import datasets
from metallo._config import load_yaml, resolve_path, schema, validate
from metallo._recipe import load_recipe
from metallo.errors import ConfigError, DataNotFoundError, SchemaError
from metallo.segment import TrainConfig

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_uhcs.yaml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


def test_train_schema_mirrors_train_config_and_bounds_every_number():
    props = schema("train_config")["properties"]
    assert set(props) == {f.name for f in dataclasses.fields(TrainConfig)}
    for name, prop in props.items():
        types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        if "integer" in types or "number" in types:
            assert "minimum" in prop or "exclusiveMinimum" in prop, name
            assert "maximum" in prop, name
    validate(json.loads(json.dumps(dataclasses.asdict(TrainConfig()))), "train_config", source="defaults")


def test_a_bad_training_config_names_the_field_and_its_line(tmp_path):
    path = _write(tmp_path, "model: unet\nepochs: 10\n\nlr: -0.1   # typo\nbatch_size: 4\n")
    with pytest.raises(SchemaError, match=r"train\.yaml: lr \(line 4\): -0\.1 is less than or equal to the minimum of 0"):
        TrainConfig.from_any(path)
    path = _write(tmp_path, "model: unet\nmodel_kwargs:\n  base_channels: 16\nfolds: 1\n")
    with pytest.raises(SchemaError, match=r"folds \(line 4\): 1 is less than the minimum of 2"):
        TrainConfig.from_any(path)
    # PyYAML reads 1e-3 (no dot) as a string: the schema says so instead of a TypeError in training.
    path = _write(tmp_path, "lr: 1e-3\n")
    with pytest.raises(SchemaError, match=r"lr \(line 1\): '1e-3' is not of type 'number'"):
        TrainConfig.from_any(path)
    path = _write(tmp_path, "classes: [matrix, network]\naugment: {blur: 0.2}\nepocs: 3\n")
    with pytest.raises(SchemaError, match=r"'epocs' was unexpected"):
        TrainConfig.from_any(path)
    path = _write(tmp_path, "device: gpu\n")
    with pytest.raises(SchemaError, match=r"device \(line 1\): 'gpu' does not match"):
        TrainConfig.from_any(path)


def test_several_errors_on_one_line_and_yaml_syntax_errors(tmp_path):
    with pytest.raises(SchemaError) as info:
        TrainConfig.from_any(_write(tmp_path, "epochs: 0\nbatch_size: 0\nscale: 100\nseed: -1\n"))
    message = str(info.value)
    assert "\n" not in message and "(+1 more)" in message
    assert "batch_size (line 2)" in message and "epochs (line 1)" in message
    with pytest.raises(ConfigError, match=r"not valid YAML \(line 2\)"):
        TrainConfig.from_any(_write(tmp_path, "model: unet\n  lr: [\n"))
    with pytest.raises(SchemaError, match="a training config must be a mapping"):
        TrainConfig.from_any(_write(tmp_path, "- unet\n"))


def test_a_valid_config_loads_with_paths_relative_to_the_file(tmp_path):
    (tmp_path / "data").mkdir()
    cfg = TrainConfig.from_any(_write(tmp_path, "data: data\nmodel: unet\nlr: 0.002\nmodality: sem\n"), epochs=2)
    assert cfg.data == str(tmp_path / "data") and cfg.lr == 0.002 and cfg.epochs == 2 and cfg.tile == 512


def test_the_example_training_config_is_valid():
    data, lines = load_yaml(EXAMPLE, schema_name="train_config", what="training config")
    assert data["data"] == "dataset:uhcs_microconstituent_segmentation"
    assert lines["classes"] < lines["model"]


def test_a_dataset_reference_resolves_through_metallo_datasets(tmp_path, monkeypatch):
    content = b"P1\n1 1\n0\n"
    monkeypatch.setitem(datasets.DATASETS, "toy", ("toy", "A. Author, Toy, 2026.", "nowhere"))
    monkeypatch.setitem(datasets.FILES, "toy", (("a.pbm", hashlib.sha256(content).hexdigest(), None, "CC0"),))
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "a.pbm").write_bytes(content)
    monkeypatch.setenv("METALLO_DATA", str(tmp_path))
    assert resolve_path("dataset:toy", "/elsewhere") == str(tmp_path / "toy")
    assert resolve_path("dataset:toy/a.pbm", "/elsewhere") == str(tmp_path / "toy" / "a.pbm")
    recipe = load_recipe({"specimen": {"id": "S1"},
                          "inputs": {"micrographs": {"lom": {"path": "dataset:toy/a.pbm", "pixel_size_um": 0.5}}}})
    assert recipe.data["inputs"]["micrographs"]["lom"]["path"] == str(tmp_path / "toy" / "a.pbm")
    monkeypatch.delenv("METALLO_DATA")
    monkeypatch.setenv("METALLO_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError, match="METALLO_DATA is not set"):
        TrainConfig.from_any(_write(tmp_path, "data: dataset:toy\n"))


def test_recipe_quantify_twins_is_keep_or_merge():
    from metallo._recipe import load_recipe
    from metallo.errors import SchemaError

    base = {"specimen": {"id": "S1"}, "inputs": {"synthetic": {"seed": 1}}}
    recipe = load_recipe({**base, "steps": {"quantify": {"twins": "merge"}}})
    assert recipe.step("quantify")["twins"] == "merge"
    with pytest.raises(SchemaError, match="twins"):
        load_recipe({**base, "steps": {"quantify": {"twins": "drop"}}})
