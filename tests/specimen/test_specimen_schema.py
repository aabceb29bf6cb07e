"""Schema violations on add, save and open name the node and the field."""

from __future__ import annotations

import json
import re
from importlib import resources

import h5py
import jsonschema
import numpy as np
import pytest
import xarray as xr
from specimen_cases import (
    annotation_labels,
    ebsd_derived,
    ebsd_map,
    micrograph,
    psd_table,
    registration,
    segmentation,
)

from metallo import SchemaError
from metallo._specimen_schema import NODE_KINDS
from metallo.specimen import Specimen


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def without(data, attr):
    data.attrs.pop(attr)
    return data


def with_attrs(data, **attrs):
    data.attrs.update(attrs)
    return data


@pytest.fixture
def spec(tmp_path):
    spec = Specimen.create(tmp_path / "S1.h5", specimen_id="S1", material="CP steel")
    spec.save()
    return spec


def test_every_schema_is_a_valid_json_schema():
    folder = resources.files("metallo").joinpath("_schemas")
    for name in (*NODE_KINDS, "root", "provenance"):
        schema = json.loads(folder.joinpath(f"specimen_{name}.json").read_text("utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize(
    ("node", "make", "field"),
    [
        ("annotations/bainite", lambda: annotation_labels("int32"), "variables.labels.dtype"),
        (
            "annotations/bainite",
            lambda: annotation_labels().assign_attrs(classes="ferrite, bainite"),
            "attrs.classes",
        ),
        (
            "annotations/bainite",
            lambda: annotation_labels().assign_attrs(ignore_index=300),
            "attrs.ignore_index",
        ),
        ("micrographs/lom", lambda: micrograph().assign_attrs(modality="XRD"), "attrs.modality"),
        ("micrographs/lom", lambda: without(micrograph(), "sha256"), "attrs.sha256"),
        (
            "ebsd/map1",
            lambda: ebsd_map().assign_attrs(phases='[{"id": 0, "name": "ferrite"}]'),
            "attrs.phases.0.symmetry",
        ),
        ("ebsd/map1", lambda: ebsd_map().assign_attrs(phases="[{not json"), "attrs.phases"),
        ("ebsd/map1", lambda: ebsd_map().assign_attrs(grid="triangular"), "attrs.grid"),
        ("ebsd/map1", lambda: ebsd_map().drop_vars("phase"), "variables.phase"),
        ("registration/r", lambda: registration().assign_attrs(quality="good"), "attrs.quality"),
        (
            "segmentations/unet",
            lambda: segmentation().assign(labels=lambda d: d.labels.astype(np.float32)),
            "variables.labels.dtype",
        ),
        (
            "segmentations/unet",
            lambda: without(segmentation(), "checkpoint_sha256"),
            "attrs.checkpoint_sha256",
        ),
        (
            "quantities/psd",
            lambda: xr.Dataset(
                {"v": (("row", "col"), np.zeros((2, 2)))}, attrs={"parameters": "{}"}
            ),
            "dims",
        ),
        (
            "quantities/psd",
            lambda: with_attrs(psd_table(), parameters="[1, 2]"),
            "attrs.parameters",
        ),
    ],
)
def test_add_refuses_a_node_that_violates_its_schema(spec, node, make, field):
    with pytest.raises(SchemaError) as exc:
        spec.add(node, make(), step="test")
    message = one_line(exc)
    assert f"'/{node}'" in message
    assert f"field {field!r}" in message
    assert node not in spec


def test_derived_variable_parameters_must_be_a_json_object(spec):
    ebsd = ebsd_map()
    spec.add("ebsd/map1", ebsd, step="read")
    derived = ebsd_derived(ebsd)
    derived["kam"].attrs["parameters"] = "[3]"
    with pytest.raises(SchemaError, match=r"ebsd/map1/derived.*variables\.kam\.attrs\.parameters"):
        spec.add("ebsd/map1/derived", derived, step="derive")


def test_missing_root_attr_in_a_file(spec):
    with h5py.File(spec.path, "r+") as fh:
        del fh.attrs["material"]
    with pytest.raises(SchemaError) as exc:
        Specimen.open(spec.path)
    message = one_line(exc)
    assert str(spec.path) in message and "node '/'" in message and "'material'" in message


def test_newer_schema_version_is_refused(spec):
    with h5py.File(spec.path, "r+") as fh:
        fh.attrs["schema_version"] = "2.0"
    with pytest.raises(SchemaError, match="schema_version"):
        Specimen.open(spec.path)


def test_wrong_annotation_dtype_in_a_file_is_caught_on_open(spec, tmp_path):
    spec.add("annotations/bainite", annotation_labels(), step="annotate")
    spec.save()
    with xr.open_datatree(spec.path, engine="h5netcdf") as tree:
        tree = tree.load()
    tree["annotations/bainite"] = (
        tree["annotations/bainite"].to_dataset().assign(labels=lambda d: d.labels.astype(np.int16))
    )
    bad = tmp_path / "bad.h5"
    tree.to_netcdf(bad, engine="h5netcdf")
    with pytest.raises(SchemaError, match=r"'/annotations/bainite'.*variables\.labels\.dtype"):
        Specimen.open(bad)


def test_bad_attr_in_a_file_is_caught_on_open(spec):
    spec.add("micrographs/lom", micrograph(), step="read_image")
    spec.save()
    with h5py.File(spec.path, "r+") as fh:
        fh["micrographs/lom"].attrs["modality"] = "X-ray"
    with pytest.raises(SchemaError, match=r"'/micrographs/lom'.*attrs\.modality"):
        Specimen.open(spec.path)


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (
            {
                "parameters": {},
                "inputs": [],
                "outputs": ["x"],
                "metallo_version": "0.1",
                "time_utc": "2024-01-01T00:00:00Z",
            },
            "step",
        ),
        (
            {
                "step": "s",
                "parameters": {},
                "inputs": [],
                "outputs": ["x"],
                "metallo_version": "0.1",
                "time_utc": "yesterday",
            },
            "time_utc",
        ),
        (
            {
                "step": "s",
                "parameters": [],
                "inputs": [],
                "outputs": ["x"],
                "metallo_version": "0.1",
                "time_utc": "2024-01-01T00:00:00Z",
            },
            "parameters",
        ),
        (
            {
                "step": "s",
                "parameters": {},
                "inputs": "a.tif",
                "outputs": ["x"],
                "metallo_version": "0.1",
                "time_utc": "2024-01-01T00:00:00Z",
            },
            "inputs",
        ),
    ],
)
def test_bad_provenance_record_names_record_and_field(spec, record, field):
    spec.add("micrographs/lom", micrograph(), step="read_image")
    spec.save()
    with h5py.File(spec.path, "r+") as fh:
        fh["provenance/records"][1] = json.dumps(record)
    with pytest.raises(SchemaError) as exc:
        Specimen.open(spec.path)
    message = one_line(exc)
    assert "'/provenance'" in message
    assert re.search(rf"record 1: {field}", message), message


def test_provenance_record_that_is_not_json(spec):
    with h5py.File(spec.path, "r+") as fh:
        fh["provenance/records"][0] = "{step: create"
    with pytest.raises(SchemaError, match=r"'/provenance' record 0: not a JSON object"):
        Specimen.open(spec.path)


def test_save_validates_again(spec):
    """A node changed after add (here through the private store) is caught by save()."""
    spec.add("annotations/bainite", annotation_labels(), step="annotate")
    spec._nodes["annotations/bainite"].attrs["ignore_index"] = -1
    with pytest.raises(SchemaError, match=r"'/annotations/bainite'.*attrs\.ignore_index"):
        spec.save()
    assert Specimen.open(spec.path).nodes() == []


def test_extra_attrs_and_variables_are_allowed(spec):
    lom = micrograph().assign_attrs(operator="A. Sorby", magnification=500)
    spec.add("micrographs/lom", lom, step="read_image")
    ann = annotation_labels().to_dataset(name="labels").assign_attrs(annotation_labels().attrs)
    ann["confidence"] = ann.labels.astype(np.float32) / 255
    spec.add("annotations/bainite", ann, step="annotate")
    spec.save()
    reopened = Specimen.open(spec.path)
    assert reopened["micrographs/lom"].attrs["operator"] == "A. Sorby"
    assert "confidence" in reopened["annotations/bainite"]
