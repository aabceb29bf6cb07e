"""File-level work of the Specimen container: atomic replace, stale temp files, sniffing.

Atomic save: the whole tree is written to a temporary file in the same folder (so the rename
never crosses a file system), flushed and fsynced, then ``os.replace``-d over the target and
the folder is fsynced so the rename itself survives a power cut. A killed writer leaves the
previous file untouched plus, at worst, a stale temporary file. Temporary names start with a
dot and end in ``.tmp`` so that ``*.h5`` globs and batch scans never pick them up; the next
save of the same file deletes those whose writer is gone.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from metallo.errors import ConfigError, FormatError

__all__ = ["FileStamp", "atomic_write", "check_hdf5", "file_stamp", "temp_files"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Temp files of other hosts (network folders) or on systems where a process cannot be
#: probed are only deleted after this long.
_STALE_AFTER_S = 24 * 3600.0

FileStamp = tuple[int, int, int, int]


def file_stamp(path: Path) -> FileStamp:
    """Identity of the file now at ``path``: (device, inode, size, mtime_ns)."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _host() -> str:
    return "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname()) or "host"


def temp_files(path: Path) -> list[Path]:
    """Temporary files that a save of ``path`` may have left behind."""
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale(temp: Path, now: float) -> bool:
    parts = temp.name[1:].rsplit(".", 4)  # .<name>.<host>.<pid>.<token>.tmp
    try:
        age = now - temp.stat().st_mtime
    except FileNotFoundError:
        return False
    if len(parts) == 5 and parts[1] == _host() and parts[2].isdigit() and sys.platform != "win32":
        # On Windows os.kill(pid, 0) would terminate the process, so only the age is used there.
        return int(parts[2]) != os.getpid() and not _pid_alive(int(parts[2]))
    return age > _STALE_AFTER_S


def remove_stale_temp_files(path: Path) -> list[Path]:
    """Delete temporary files of earlier saves of ``path`` whose writer is gone."""
    removed = []
    now = time.time()
    for temp in temp_files(path):
        if _is_stale(temp, now):
            try:
                temp.unlink()
            except FileNotFoundError:
                continue
            removed.append(temp)
    return removed


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    if sys.platform == "win32":  # directories cannot be opened for fsync there
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temp)`` and atomically move ``temp`` to ``path``; clean up on failure.

    ``write`` must have closed the temporary file when it returns (this also makes the
    replace work on Windows, where an open file cannot be renamed over).
    """
    path = Path(path).absolute()
    if not path.parent.is_dir():
        raise ConfigError(f"{path}: folder {path.parent} does not exist")
    remove_stale_temp_files(path)
    temp = path.parent / f".{path.name}.{_host()}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        write(temp)
        _fsync_file(temp)
        os.replace(temp, path)
    except BaseException:
        # BaseException: a KeyboardInterrupt mid-write must not leave the temp file behind.
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


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
