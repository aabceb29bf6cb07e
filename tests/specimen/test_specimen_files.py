"""Missing, non-HDF5, truncated, corrupt and foreign files raise FormatError naming the file."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from specimen_cases import micrograph

from metallo import FormatError, SchemaError
from metallo.specimen import Specimen


@pytest.fixture
def saved(tmp_path):
    spec = Specimen.create(tmp_path / "S1.h5", specimen_id="S1")
    spec.add("micrographs/lom", micrograph(), step="read_image")
    spec.save()
    return spec.path


def assert_format_error(path, match: str) -> None:
    with pytest.raises(FormatError) as exc:
        Specimen.open(path)
    message = str(exc.value)
    assert str(path) in message and "\n" not in message
    assert match in message, message


def test_missing_file(tmp_path):
    assert_format_error(tmp_path / "nothing.h5", "no such file")


def test_a_folder_is_not_a_specimen(tmp_path):
    assert_format_error(tmp_path, "not a file")


@pytest.mark.parametrize(
    "content", [b"", b"hello, I am a CSV\n1,2,3\n", b"\x89PNG\r\n\x1a\n" + bytes(64)]
)
def test_non_hdf5_files(tmp_path, content):
    path = tmp_path / "fake.h5"
    path.write_bytes(content)
    assert_format_error(path, "not an HDF5 file")


@pytest.mark.parametrize("keep", [0.5, 0.05, 600])
def test_truncated_specimen(saved, tmp_path, keep):
    data = saved.read_bytes()
    n = int(len(data) * keep) if keep < 1 else int(keep)
    path = tmp_path / "truncated.h5"
    path.write_bytes(data[:n])
    assert_format_error(path, "truncated")


def test_corrupt_superblock(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    data[8:96] = bytes(88)
    path = tmp_path / "corrupt.h5"
    path.write_bytes(bytes(data))
    assert_format_error(path, "corrupt")


def test_foreign_hdf5_file(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("scan/data", data=np.arange(12).reshape(3, 4))
        fh.create_group("instrument").attrs["name"] = "SEM"
    assert_format_error(path, "not a metallo specimen")
    assert_format_error(path, "instrument, scan")


def test_specimen_attrs_on_a_plain_h5py_layout(tmp_path):
    """Looks like a specimen at the root, but its datasets are not netCDF variables."""
    path = tmp_path / "half.h5"
    with h5py.File(path, "w") as fh:
        fh.attrs.update({"schema_version": "1.0", "specimen_id": "X", "metallo_version": "0.1.0"})
        fh.attrs.update({"material": "", "process": "{}"})
        fh.create_dataset("provenance/records", data=np.array([], dtype=h5py.string_dtype()))
        fh.create_dataset("micrographs/lom/image", data=np.zeros((4, 4), np.uint8))
    with pytest.raises(SchemaError) as exc:
        Specimen.open(path)
    message = str(exc.value)
    assert str(path) in message and "'/micrographs/lom'" in message


def test_unknown_group_in_a_specimen(saved, tmp_path):
    path = tmp_path / "extra.h5"
    shutil.copy(saved, path)
    with h5py.File(path, "a") as fh:
        fh.create_group("scratch")
    with pytest.raises(SchemaError, match=r"'/scratch' is not part of the specimen layout"):
        Specimen.open(path)


def test_missing_provenance(saved, tmp_path):
    path = tmp_path / "noprov.h5"
    shutil.copy(saved, path)
    with h5py.File(path, "a") as fh:
        del fh["provenance"]
    with pytest.raises(SchemaError, match=r"'/provenance' is missing"):
        Specimen.open(path)
