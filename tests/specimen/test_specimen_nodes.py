"""Adding nodes: layout, overwrite rules, provenance records, copies, tables, lazy reads."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from specimen_cases import annotation_labels, ebsd_derived, ebsd_map, micrograph, psd_table

from metallo import ConfigError, FormatError, UnknownNameError, __version__
from metallo.errors import ConflictError
from metallo.specimen import Specimen, node_kind


@pytest.fixture
def spec(tmp_path):
    return Specimen.create(tmp_path / "S1.h5", specimen_id="S1", material="CP steel")


def test_create_writes_nothing_until_save(tmp_path):
    path = tmp_path / "new.h5"
    spec = Specimen.create(path, specimen_id="new", process={"etchant": "LePera"})
    assert not path.exists()
    assert spec.save() == path
    reopened = Specimen.open(path)
    assert reopened.nodes() == []
    assert reopened.process == {"etchant": "LePera"}
    assert [r["step"] for r in reopened.provenance] == ["create"]
    assert reopened.provenance[0]["parameters"]["specimen_id"] == "new"


def test_create_refuses_an_existing_file_unless_overwrite(tmp_path):
    path = tmp_path / "S.h5"
    Specimen.create(path, specimen_id="A").save()
    with pytest.raises(ConfigError, match="already exists"):
        Specimen.create(path, specimen_id="B")
    replacement = Specimen.create(path, specimen_id="B", overwrite=True)
    assert Specimen.open(path).specimen_id == "A"  # replaced only by the atomic save
    replacement.save()
    assert Specimen.open(path).specimen_id == "B"
    with pytest.raises(ConfigError, match="does not exist"):
        Specimen.create(tmp_path / "no" / "S.h5", specimen_id="C")
    with pytest.raises(ConfigError, match="does not exist"):
        replacement.save(tmp_path / "no" / "S.h5")


@pytest.mark.parametrize(
    ("node", "kind"),
    [
        ("micrographs/lom", "micrographs"),
        ("/ebsd/map1", "ebsd"),
        ("ebsd/map1/derived", "ebsd_derived"),
        ("registration/lom_ebsd", "registration"),
        ("annotations/bainite", "annotations"),
        ("segmentations/unet", "segmentations"),
        ("quantities/psd", "quantities"),
    ],
)
def test_node_kind(node, kind):
    assert node_kind(node) == kind


@pytest.mark.parametrize(
    "node",
    [
        "lom",
        "images/lom",
        "micrographs/lom/extra",
        "ebsd/m/other",
        "micrographs/my lom",
        "provenance",
    ],
)
def test_nodes_outside_the_layout_are_refused(spec, node):
    with pytest.raises(ConfigError, match=re.escape(node.split("/")[-1])):
        spec.add(node, micrograph(), step="read")


def test_add_existing_node_needs_overwrite(spec):
    spec.add("micrographs/lom", micrograph(seed=1), step="read_image")
    with pytest.raises(ConfigError, match="micrographs/lom.*overwrite=True"):
        spec.add("micrographs/lom", micrograph(seed=2), step="read_image")
    spec.add("micrographs/lom", micrograph(seed=2), step="read_image", overwrite=True)
    spec.save()
    stored = Specimen.open(spec.path)["micrographs/lom"]["image"].values
    np.testing.assert_array_equal(stored, micrograph(seed=2).values)
    assert [r["step"] for r in spec.provenance] == ["create", "read_image", "read_image"]


def test_provenance_record_of_a_step(spec):
    before = datetime.now(UTC)
    spec.add(
        "quantities/psd",
        psd_table(),
        step="quantify.particle_sizes",
        parameters={"min_area_um2": np.float32(0.05), "split_touching": True},
        inputs=["segmentations/unet", "micrographs/lom"],
    )
    spec.save()
    record = Specimen.open(spec.path).provenance[-1]
    assert record["step"] == "quantify.particle_sizes"
    assert record["parameters"] == {"min_area_um2": pytest.approx(0.05), "split_touching": True}
    assert record["inputs"] == ["segmentations/unet", "micrographs/lom"]
    assert record["outputs"] == ["quantities/psd"]
    assert record["metallo_version"] == __version__
    when = datetime.strptime(record["time_utc"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before.replace(microsecond=0) <= when <= datetime.now(UTC)
    # The step's parameters become the table's parameters attr when it has none.
    assert (
        json.loads(Specimen.open(spec.path)["quantities/psd"].attrs["parameters"])["split_touching"]
        is True
    )


def test_step_parameters_must_be_json(spec):
    with pytest.raises(ConfigError, match="parameters"):
        spec.add("quantities/psd", psd_table(), step="q", parameters={"model": object()})
    assert "quantities/psd" not in spec
    assert len(spec.provenance) == 1


def test_getitem_returns_a_copy_the_stored_node_is_not_mutated(spec):
    spec.add("micrographs/lom", micrograph(), step="read_image")
    ds = spec["micrographs/lom"]
    ds.attrs["modality"] = "SEM"
    ds["image"].attrs["source"] = "changed"
    assert spec["micrographs/lom"].attrs["modality"] == "LOM"
    assert spec["micrographs/lom"]["image"].attrs["source"] == "lom.tif"
    records = spec.provenance
    records[0]["step"] = "changed"
    assert spec.provenance[0]["step"] == "create"


def test_unknown_node_lists_the_nodes(spec):
    spec.add("micrographs/lom", micrograph(), step="read_image")
    with pytest.raises(UnknownNameError, match="micrographs/sem.*micrographs/lom"):
        spec["micrographs/sem"]
    with pytest.raises(KeyError):
        spec.describe("ebsd/map9")


def test_derived_needs_its_map_and_its_grid(spec):
    ebsd = ebsd_map()
    with pytest.raises(ConfigError, match="ebsd/map1.*before"):
        spec.add("ebsd/map1/derived", ebsd_derived(ebsd), step="derive")
    spec.add("ebsd/map1", ebsd, step="read_ebsd")
    shifted = ebsd_derived(ebsd).assign_coords(x=ebsd.x + 0.25)
    with pytest.raises(ConfigError, match="ebsd/map1/derived.*grid"):
        spec.add("ebsd/map1/derived", shifted, step="derive")
    spec.add("ebsd/map1/derived", ebsd_derived(ebsd), step="derive")
    # Replacing the map by one on another grid would orphan its derived node.
    with pytest.raises(ConfigError, match="grid"):
        spec.add("ebsd/map1", ebsd_map(shape=(10, 16)), step="read_ebsd", overwrite=True)


def test_derived_variables_get_the_step_parameters_when_missing(spec):
    ebsd = ebsd_map()
    spec.add("ebsd/map1", ebsd, step="read_ebsd")
    kam = xr.Dataset(
        {"kam": (("y", "x"), np.zeros((12, 16), np.float32))}, coords={"y": ebsd.y, "x": ebsd.x}
    )
    spec.add("ebsd/map1/derived", kam, step="ebsd.kam", parameters={"order": 3, "max_deg": 5.0})
    assert json.loads(spec["ebsd/map1/derived"]["kam"].attrs["parameters"]) == {
        "order": 3,
        "max_deg": 5.0,
    }


def test_attribute_values_are_stored_as_netcdf_can(spec):
    lom = micrograph()
    lom.attrs.update(
        {
            "calibrated": True,
            "stage_um": [1.5, 2.5],
            "tags": ["etched", "polished"],
            "settings": {"kv": 20},
        }
    )
    spec.add("micrographs/lom", lom, step="read_image")
    assert lom.attrs["calibrated"] is True  # the caller's object is not converted in place
    spec.save()
    attrs = Specimen.open(spec.path)["micrographs/lom"].attrs
    assert attrs["calibrated"] == 1
    np.testing.assert_array_equal(attrs["stage_um"], [1.5, 2.5])
    assert attrs["tags"] == ["etched", "polished"]
    assert json.loads(attrs["settings"]) == {"kv": 20}
    bad = micrograph()
    bad.attrs["operator"] = None
    with pytest.raises(ConfigError, match="operator"):
        spec.add("micrographs/bad", bad, step="read_image")


def test_unsupported_data_is_refused(spec):
    with pytest.raises(ConfigError, match="DataArray, xr.Dataset or pandas DataFrame"):
        spec.add("micrographs/lom", np.zeros((4, 4)), step="read_image")
    half = micrograph("float32").astype(np.float16)
    with pytest.raises(ConfigError, match="float16"):
        spec.add("micrographs/lom", half, step="read_image")
    with pytest.raises(ConfigError, match="NUL"):
        spec.add("quantities/names", psd_table().assign(constituent="ferr\x00ite"), step="q")
    with pytest.raises(ConfigError, match="period"):
        spec.add(
            "quantities/p",
            pd.DataFrame({"month": pd.period_range("2024-01", periods=3, freq="M")}),
            step="q",
        )
    with pytest.raises(ConfigError, match="MultiIndex"):
        spec.add("quantities/m", psd_table().set_index(["phase", "n_pixels"]), step="q")


def test_eager_open_survives_a_later_replace_lazy_open_refuses(spec, tmp_path):
    spec.add("annotations/bainite", annotation_labels(), step="annotate")
    spec.save()
    eager = Specimen.open(spec.path)
    lazy = Specimen.open(spec.path, lazy=True)
    other = Specimen.open(spec.path)
    other.add("micrographs/lom", micrograph(), step="read_image")
    other.save()
    np.testing.assert_array_equal(
        eager["annotations/bainite"]["labels"].values, annotation_labels().values
    )
    with pytest.raises(FormatError, match="replaced"):
        lazy["annotations/bainite"]
    # Saving the eagerly opened copy would drop the other writer's node: refused, nothing lost.
    eager.add("quantities/psd", psd_table(), step="q")
    with pytest.raises(ConflictError, match="another writer"):
        eager.save()
    assert Specimen.open(spec.path).nodes() == ["annotations/bainite", "micrographs/lom"]


def test_save_and_open_hold_no_file_handle(spec):
    """No HDF5 handle stays open on the file (Windows cannot os.replace an open file)."""
    import h5py

    spec.add("micrographs/lom", micrograph(), step="read_image")
    spec.save()
    Specimen.open(spec.path)["micrographs/lom"]
    Specimen.open(spec.path, lazy=True)["micrographs/lom"]
    open_ids = h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE)
    assert str(spec.path) not in {i.name.decode() for i in open_ids}
