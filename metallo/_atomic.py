"""Atomic file writes, shared by every writer in metallo (specimens, images, reports, tables).

The data is written to a temporary file in the target's folder (so the rename never crosses a
file system), flushed and fsynced, then ``os.replace``-d over the target, and the folder is
fsynced so the rename itself survives a power cut. A killed writer leaves the previous file
untouched plus, at worst, a stale temporary file. Temporary names start with a dot and end in
``.tmp`` (``.<name>.<host>.<pid>.<random>.tmp``) so that globs such as ``*.h5`` never pick them
up; the next write of the same file deletes those whose writer is gone.

:func:`file_lock` is the advisory lock (``.<name>.lock`` next to the file, via ``filelock``)
that every read-modify-write of a file holds, so that two processes never interleave; it is
re-entrant within a process.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from metallo.errors import ConfigError, ConflictError

__all__ = [
    "atomic_path",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "file_lock",
    "lock_path",
    "temp_files",
]

#: Seconds a writer waits for another one's lock (``METALLO_LOCK_TIMEOUT`` overrides).
LOCK_TIMEOUT_S = 120.0
_LOCKS: dict[str, Any] = {}
_LOCKS_GUARD = threading.Lock()

#: Temp files of other hosts (network folders) or on systems where a process cannot be
#: probed are only deleted after this long.
_STALE_AFTER_S = 24 * 3600.0


def _host() -> str:
    return "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname()) or "host"


def temp_files(path: Path) -> list[Path]:
    """Temporary files that a write of ``path`` may have left behind."""
    path = Path(path)
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
    parts = temp.name[len(".") :].rsplit(".", 4)
    try:
        age = now - temp.stat().st_mtime
    except FileNotFoundError:
        return False
    if len(parts) == 5 and parts[1] == _host() and parts[2].isdigit() and sys.platform != "win32":
        # On Windows os.kill(pid, 0) would terminate the process, so only the age is used there.
        return int(parts[2]) != os.getpid() and not _pid_alive(int(parts[2]))
    return age > _STALE_AFTER_S


def remove_stale_temp_files(path: Path) -> list[Path]:
    """Delete temporary files of earlier writes of ``path`` whose writer is gone."""
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


@contextlib.contextmanager
def atomic_path(path: str | Path, *, make_parents: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    The caller writes the temporary file (with any library) and must have closed it when the
    block ends. It is fsynced and renamed onto ``path`` when the block exits normally, and
    removed when the block raises (a KeyboardInterrupt too).

    Examples
    --------
    >>> import pathlib
    >>> target = pathlib.Path("a.txt")
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path).absolute()
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise ConfigError(f"{path}: folder {path.parent} does not exist")
    remove_stale_temp_files(path)
    temp = path.parent / f".{path.name}.{_host()}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        yield temp
        _fsync_file(temp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write(path: str | Path, write: Callable[[Path], object], *, make_parents: bool = True) -> Path:
    """Call ``write(temp)`` and atomically move ``temp`` to ``path``; returns ``path``."""
    with atomic_path(path, make_parents=make_parents) as temp:
        write(temp)
    return Path(path).absolute()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    return atomic_write(path, lambda temp: temp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def json_ready(obj: Any) -> Any:
    """``obj`` with numpy arrays/scalars as lists/numbers, paths as text and NaN/inf as ``None``.

    JSON has no NaN: Python writes a bare ``NaN`` token that jq, JavaScript and most readers
    reject, so an undefined value (a class absent from the scored images, a map cell without
    evidence) is written as ``null``.

    Examples
    --------
    >>> import numpy as np
    >>> json_ready({"iou": np.array([0.5, np.nan]), "n": np.int64(3)})
    {'iou': [0.5, None], 'n': 3}
    """
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if isinstance(obj, np.generic):
        return json_ready(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 1) -> Path:
    """Write ``obj`` as strict JSON (:func:`json_ready`) to ``path`` atomically and return the path."""
    import json

    return atomic_write_text(path, json.dumps(json_ready(obj), indent=indent, default=float))


def lock_path(path: str | Path) -> Path:
    """The lock file that guards ``path`` (``.<name>.lock`` in the same folder)."""
    path = Path(path).absolute()
    return path.parent / f".{path.name}.lock"


def _lock_timeout() -> float:
    text = os.environ.get("METALLO_LOCK_TIMEOUT", "")
    if not text:
        return LOCK_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise ConfigError(f"METALLO_LOCK_TIMEOUT={text!r}: expected seconds >= 0")
    return value


@contextlib.contextmanager
def file_lock(path: str | Path, *, timeout: float | None = None) -> Iterator[None]:
    """Hold the advisory lock of ``path`` for the block (re-entrant within a process).

    Parameters
    ----------
    path : path-like
        The file to guard; its folder must exist.
    timeout : float, optional
        Seconds to wait for another process's lock; default ``METALLO_LOCK_TIMEOUT`` or 120.

    Raises
    ------
    ConflictError
        Another process held the lock for longer than ``timeout``.
    ConfigError
        The lock file cannot be created (read-only or missing folder).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with file_lock(target):
    ...     _ = atomic_write_text(target, "mine")
    """
    from filelock import FileLock, Timeout

    lock_file = lock_path(path)
    wait = _lock_timeout() if timeout is None else float(timeout)
    key = f"{os.getpid()}:{lock_file}"  # a forked child needs its own lock object
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = FileLock(lock_file)
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        raise ConflictError(
            f"{Path(path).absolute()}: another process has held its lock {lock_file.name} for "
            f"more than {wait:g} s; try again when it has finished (METALLO_LOCK_TIMEOUT sets the wait)"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{Path(path).absolute()}: cannot create the lock file {lock_file} "
            f"({exc.strerror or exc}); the folder must exist and be writable"
        ) from None
    try:
        yield
    finally:
        lock.release()
