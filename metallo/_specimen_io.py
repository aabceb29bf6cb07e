"""File-level work of the Specimen container: file identity and sniffing.

Saves are atomic through :mod:`metallo._atomic` (temporary file in the same folder, fsync,
rename; stale temporary files of killed writers are removed by the next save).
"""

from __future__ import annotations

import os
from pathlib import Path

from metallo.errors import FormatError

__all__ = ["FileStamp", "check_hdf5", "file_stamp"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

FileStamp = tuple[int, int, int, int]


def file_stamp(path: Path) -> FileStamp:
    """Identity of the file now at ``path``: (device, inode, size, mtime_ns)."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def check_hdf5(path: Path) -> None:
    """Raise :class:`FormatError` unless ``path`` exists and starts like an HDF5 file."""
    if not path.exists():
        raise FormatError(f"{path}: no such file")
    if not path.is_file():
        raise FormatError(f"{path}: not a file")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head != _HDF5_SIGNATURE:
        raise FormatError(
            f"{path}: not an HDF5 file (no HDF5 signature at byte 0); expected a metallo specimen"
        )
