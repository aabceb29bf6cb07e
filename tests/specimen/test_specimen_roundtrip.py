"""One round-trip battery over every node kind: Specimen, lazy Specimen, xarray and h5py agree."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from specimen_cases import NODE_CASES

from metallo.specimen import Specimen, node_kind

ARRAY_NAME = {"micrographs": "image", "annotations": "labels", "segmentations": "labels"}


def expected_dataset(node: str, data, added: dict) -> xr.Dataset:
    """What spec[node] must return for the data that was added."""
    kind = node_kind(node)
    if isinstance(data, xr.DataArray):
        ds = data.to_dataset(name=ARRAY_NAME[kind])
        ds.attrs = dict(data.attrs)
        return ds
    if kind == "ebsd_derived":
        # DataTree semantics: a child node sees every indexed coordinate of its parent.
        return data.assign_coords(angle=added["ebsd/map1"].angle)
    return data


def assert_same(got: xr.Dataset, want: xr.Dataset) -> None:
    xr.testing.assert_identical(got, want)
    for name, var in want.variables.items():
        if var.dtype.kind not in "OU":
            assert got[name].dtype == var.dtype, (name, got[name].dtype, var.dtype)


@pytest.mark.parametrize("node", list(NODE_CASES))
def test_roundtrip_through_specimen(full_specimen, node):
    path, added = full_specimen
    spec = Specimen.open(path)
    data = added[node]
    if isinstance(data, pd.DataFrame):
        pd.testing.assert_frame_equal(spec.table(node), data)
    else:
        assert_same(spec[node], expected_dataset(node, data, added))


def test_lazy_open_reads_the_same(full_specimen):
    path, _ = full_specimen
    eager, lazy = Specimen.open(path), Specimen.open(path, lazy=True)
    assert lazy.nodes() == eager.nodes()
    for node in NODE_CASES:
        assert lazy.describe(node) == eager.describe(node), node
        assert_same(lazy[node], eager[node])


@pytest.mark.parametrize("node", list(NODE_CASES))
def test_readable_with_xarray_open_datatree(full_specimen, node):
    path, added = full_specimen
    data = added[node]
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        got = tree[node].to_dataset().load()
    if isinstance(data, pd.DataFrame):
        assert got.sizes["row"] == len(data)
        np.testing.assert_array_equal(got["ecd_um"].values, data["ecd_um"].to_numpy())
        assert list(got["constituent"].values) == ["cementite", "cementite", "martensite", ""]
    else:
        assert_same(got, expected_dataset(node, data, added))


@pytest.mark.parametrize("node", list(NODE_CASES))
def test_readable_with_plain_h5py(full_specimen, node):
    path, added = full_specimen
    want = Specimen.open(path)[node]
    with h5py.File(path, "r") as fh:
        group = fh[node]
        for name, var in want.data_vars.items():
            raw = group[name]
            assert raw.shape == var.shape
            if var.dtype == bool:
                # netCDF has no bool: int8 with attr dtype="bool" (decoded by xarray)
                assert raw.dtype == np.int8 and raw.attrs["dtype"] == "bool"
                np.testing.assert_array_equal(raw[()].astype(bool), var.values)
            elif var.dtype.kind in "OU":
                assert list(raw.asstr()[()]) == [str(v) for v in var.values]
            else:
                assert raw.dtype == var.dtype
                np.testing.assert_array_equal(raw[()], var.values)
        for key, value in want.attrs.items():
            stored = group.attrs[key]
            if isinstance(value, str):
                assert stored == value


def test_root_metadata_and_coordinates_in_um(full_specimen):
    path, added = full_specimen
    spec = Specimen.open(path)
    assert spec.specimen_id == "S1"
    assert spec.material == "CP steel"
    assert spec.process["heat_treatment"] == {"T_C": 650, "t_h": 2}
    assert spec.attrs["schema_version"] == "1.0"
    lom = spec["micrographs/lom_uint16"]["image"]
    assert lom.attrs["pixel_size_um"] == 0.125
    assert lom.x.attrs["units"] == "um"
    assert float(lom.x[-1]) == pytest.approx(31 * 0.125)
    with h5py.File(path, "r") as fh:
        assert fh.attrs["specimen_id"] == "S1"
        assert json.loads(fh.attrs["process"])["etchant"] == "2% nital"
        np.testing.assert_allclose(fh["ebsd/map1/x"][()], 0.5 * np.arange(16))
        assert fh["ebsd/map1/x"].attrs["units"] == "um"


def test_nodes_lists_every_added_node(full_specimen):
    path, added = full_specimen
    spec = Specimen.open(path)
    assert spec.nodes() == sorted(added)
    assert all(node in spec for node in added)
    assert "/micrographs/lom_uint16" in spec
    assert "micrographs/other" not in spec


def test_resave_of_an_opened_specimen_is_identical(full_specimen, tmp_path):
    path, added = full_specimen
    first = Specimen.open(path)
    copy_path = first.save(tmp_path / "copy.h5")
    assert first.path == copy_path
    second = Specimen.open(copy_path)
    assert second.nodes() == first.nodes()
    for node in first.nodes():
        assert_same(second[node], first[node])
    assert second.provenance == first.provenance


def test_table_variants_round_trip(tmp_path):
    spec = Specimen.create(tmp_path / "t.h5", specimen_id="T")
    tables = {
        "quantities/grains": pd.DataFrame(
            {"area_um2": [1.5, 2.5, 4.0], "phase": ["ferrite", "bainite", "ferrite"]},
            index=pd.Index([3, 7, 11], name="grain_id"),
        ),
        "quantities/fractions": pd.DataFrame(
            {"fraction": [0.6, 0.4]}, index=pd.Index(["ferrite", "bainite"], name="class")
        ),
        "quantities/nullable": pd.DataFrame(
            {
                "count": pd.array([1, None, 3], dtype="Int64"),
                "when": pd.to_datetime(["2024-01-02", "2024-03-04", "2025-05-06"]),
            }
        ),
        "quantities/empty": pd.DataFrame({"ecd_um": np.array([], dtype=np.float64)}),
        "quantities/zoned": pd.DataFrame(
            {
                "acquired": pd.to_datetime(["2024-01-02 10:00", "2024-07-03 11:30"]).tz_localize(
                    "Europe/Berlin"
                )
            }
        ),
    }
    for node, table in tables.items():
        spec.add(node, table, step="quantify", parameters={"node": node})
    spec.save()
    reopened = Specimen.open(tmp_path / "t.h5")
    for node, table in tables.items():
        pd.testing.assert_frame_equal(reopened.table(node), table)
        assert json.loads(reopened[node].attrs["parameters"]) == {"node": node}


def test_a_column_of_python_objects_is_named_by_their_type(tmp_path):
    from metallo.errors import ConfigError

    spec = Specimen.create(tmp_path / "t.h5", specimen_id="T")
    # Lists per row (no strings at all): the message had said the column "mixes strings and other objects".
    with pytest.raises(ConfigError, match=r"column 'widths' holds Python objects of type list; expected numbers"):
        spec.add("quantities/laths", pd.DataFrame({"widths": [[1.0, 2.0], [3.0]]}), step="quantify")


def test_xarray_fallback_reader_gives_the_same(full_specimen, monkeypatch):
    """Files the fast h5py reader does not recognise go through xarray.open_datatree."""
    import h5py

    from metallo._specimen_h5 import UnsupportedLayout

    path, _ = full_specimen
    fast = Specimen.open(path)

    def unsupported(*args, **kwargs):
        raise UnsupportedLayout("forced by the test")

    monkeypatch.setattr("metallo.specimen.read_groups", unsupported)
    for slow in (Specimen.open(path), Specimen.open(path, lazy=True)):
        assert slow.nodes() == fast.nodes()
        assert slow.provenance == fast.provenance
        for node in fast.nodes():
            assert slow.describe(node) == fast.describe(node), node
            assert_same(slow[node], fast[node])
    open_files = {i.name.decode() for i in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE)}
    assert str(path) not in open_files


def test_provenance_is_readable_without_metallo(full_specimen):
    path, added = full_specimen
    with h5py.File(path, "r") as fh:
        records = [json.loads(text) for text in fh["provenance/records"].asstr()[()]]
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        via_xarray = [json.loads(str(t)) for t in tree["provenance"].to_dataset()["records"].values]
    assert records == via_xarray == Specimen.open(path).provenance
    assert [r["outputs"] for r in records] == [["/"], *([node] for node in added)]
    assert all(r["inputs"] == ["synthetic"] and r["parameters"] == {"seed": 0} for r in records[1:])


def test_lazy_access_reads_only_the_requested_node(full_specimen):
    from metallo.specimen import _read_groups

    path, _ = full_specimen
    _, groups = _read_groups(path, load=["ebsd/map1/derived"])
    assert set(groups) == {"ebsd", "ebsd/map1", "ebsd/map1/derived"}
    np.testing.assert_array_equal(
        groups["ebsd/map1/derived"]["kam"].values[1:],
        Specimen.open(path)["ebsd/map1/derived"]["kam"].values[1:],
    )
    with pytest.raises(RuntimeError, match="not read"):
        _ = groups["ebsd/map1"]["euler"].values  # the map only lent its coordinates
