"""Stored arrays carry Fletcher-32 checksums; open validates the values the schemas describe."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from specimen_cases import ebsd_map, micrograph

from metallo.errors import FormatError, SchemaError
from metallo.specimen import Specimen


@pytest.fixture()
def saved(tmp_path):
    path = tmp_path / "S1.h5"
    spec = Specimen.create(path, specimen_id="S1")
    spec.add("ebsd/map1", ebsd_map(), step="read_ebsd")
    spec.add("micrographs/lom", micrograph(), step="read_image")
    spec.save()
    return path


def _flip_in_data(path, dataset: str) -> None:
    with h5py.File(path, "r") as fh:
        dset = fh[dataset]
        assert dset.fletcher32 and dset.chunks is not None
        info = dset.id.get_chunk_info(0)
        offset, size = info.byte_offset, info.size
    raw = bytearray(path.read_bytes())
    raw[offset + size // 2] ^= 0x10
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("dataset", "node"), [("ebsd/map1/euler", "/ebsd/map1"), ("micrographs/lom/image", "/micrographs/lom")]
)
def test_a_flipped_byte_in_stored_values_is_a_format_error_naming_the_node(saved, dataset, node):
    _flip_in_data(saved, dataset)
    variable = dataset.rsplit("/", 1)[1]
    with pytest.raises(FormatError, match=rf"node '{node}' variable '{variable}': stored values are corrupt"):
        Specimen.open(saved)
    lazy = Specimen.open(saved, lazy=True)  # the layout is intact; the values fail when read
    with pytest.raises(FormatError, match="corrupt"):
        lazy[node]


def test_every_numeric_array_is_checksummed(saved):
    with h5py.File(saved, "r") as fh:
        unprotected = []
        fh.visititems(
            lambda name, obj: unprotected.append(name)
            if isinstance(obj, h5py.Dataset) and obj.ndim and obj.dtype.kind in "biuf"
            and not obj.fletcher32
            and not bytes(obj.attrs.get("NAME", b"")).startswith(b"This is a netCDF dimension but not")
            else None
        )
    assert unprotected == []


def _edit(path, dataset, values=None, **attrs):
    with h5py.File(path, "r+") as fh:
        if values is not None:
            fh[dataset][...] = values(fh[dataset][()])
        for key, value in attrs.items():
            fh[dataset].attrs[key] = value


@pytest.mark.parametrize(
    ("dataset", "change", "attrs", "message"),
    [
        ("ebsd/map1/euler", lambda e: np.where(np.arange(3) == 1, 1.75e306, e), {},
         r"variable 'euler': \d+ indexed points have non-finite or out-of-range angles"),
        ("ebsd/map1/euler", lambda e: e + 7.0, {}, r"'euler'.*expected phi1, phi2 in \[0, 2pi\]"),
        ("ebsd/map1/ci", lambda c: np.full_like(c, np.inf), {}, r"variable 'ci': \d+ indexed points are NaN/inf"),
        ("ebsd/map1/x", lambda x: x[::-1], {}, r"coordinate 'x': expected strictly increasing"),
        ("micrographs/lom/y", lambda y: np.where(np.arange(y.size) == 3, np.nan, y), {},
         r"coordinate 'y': expected finite"),
        ("ebsd/map1", None, {"step_um": np.nan}, r"'attrs.step_um': expected a finite step"),
    ],
)
def test_open_refuses_values_outside_what_the_schema_describes(saved, dataset, change, attrs, message):
    _edit(saved, dataset, change, **attrs)
    with pytest.raises(SchemaError, match=message):
        Specimen.open(saved)
    lazy = Specimen.open(saved, lazy=True)  # reads no values; they are checked on access
    node = "/".join(dataset.split("/")[:2])
    with pytest.raises(SchemaError, match=message):
        lazy[node]


def test_unindexed_points_may_hold_anything(tmp_path):
    ebsd = ebsd_map()
    ebsd["phase"][0, 0] = -1
    ebsd["euler"][0, 0] = [4 * np.pi, np.nan, 4 * np.pi]
    ebsd["ci"][0, 0] = np.nan
    spec = Specimen.create(tmp_path / "S1.h5", specimen_id="S1")
    spec.add("ebsd/map1", ebsd, step="read_ebsd")
    spec.save()
    assert np.isnan(Specimen.open(tmp_path / "S1.h5")["ebsd/map1"]["ci"].values[0, 0])


def test_add_refuses_out_of_range_euler_angles(tmp_path):
    ebsd = ebsd_map()
    ebsd["euler"][2, 3, 1] = 4.0  # Phi > pi at an indexed point
    spec = Specimen.create(tmp_path / "S1.h5", specimen_id="S1")
    with pytest.raises(SchemaError, match=r"first at y=2, x=3: \[.*, 4, "):
        spec.add("ebsd/map1", ebsd, step="read_ebsd")


def test_a_zeroed_global_heap_record_is_a_format_error_not_a_hang(saved):
    """HDF5 loops forever on a free-space record of size 0 in a vlen-string heap."""
    data = saved.read_bytes()
    at = data.find(b"GCOL")
    assert at >= 0
    saved.write_bytes(data[: at + 16] + b"\x00" * 64 + data[at + 80 :])
    with pytest.raises(FormatError, match=r"corrupt HDF5 global heap at byte \d+"):
        Specimen.open(saved)
