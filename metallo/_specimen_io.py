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


def _check_global_heaps(path: Path) -> None:
    """Refuse global heap collections whose free-space record has size 0.

    HDF5 (1.14) loops forever decoding such a collection (a zeroed object header), so a few
    NUL bytes in a vlen-string heap would hang :meth:`Specimen.open`; this walks the object
    headers of every ``GCOL`` collection the way HDF5 does, before HDF5 sees them.
    """
    import mmap
    import struct

    size = path.stat().st_size
    if size < 32:
        return
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        at = data.find(b"GCOL")
        while at >= 0:
            if at + 16 <= size and data[at + 4] == 1:
                (length,) = struct.unpack_from("<Q", data, at + 8)
                end = at + length
                if 4096 <= length and end <= size:
                    p = at + 16
                    while p + 16 <= end:
                        idx, _, _, obj = struct.unpack_from("<HHIQ", data, p)
                        need = obj if idx == 0 else 16 + ((obj + 7) // 8) * 8
                        if need <= 0:
                            raise FormatError(
                                f"{path}: corrupt HDF5 global heap at byte {at} (a zeroed object "
                                "record); the file is damaged"
                            )
                        p += need
            at = data.find(b"GCOL", at + 4)


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
    _check_global_heaps(path)
