"""One registry of file readers for every kind of file metallo opens (images, EBSD maps).

A reader is a :class:`ReaderPlugin`: a name, a kind (``"image"`` or ``"ebsd"``), the file
extensions it claims, a ``sniff`` function that looks at the first bytes of a file and says
whether it recognises the format, and a ``read`` function ``read(path, **options)``.

:func:`reader_for` picks the reader of a file by its sniffed header first (so a TIFF saved
as ``.dat`` or an ``.ang`` renamed ``.txt`` still opens) and by its extension second.

Plugin modules register themselves when imported. Every private module of ``metallo.io``
whose name starts with ``_image`` or ``_ebsd`` (e.g. ``_images.py``, ``_ebsd_ang.py``) is
imported on the first lookup, so a new format only needs a new module that calls
:func:`register_reader` at import time::

    register_reader("ang", kind="ebsd", extensions=(".ang",),
                    sniff=lambda head: head.startswith(b"# "), read=read_ang)
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metallo._registry import Registry
from metallo.errors import ConfigError, FormatError

__all__ = ["KINDS", "SNIFF_BYTES", "ReaderPlugin", "reader_for", "reader_names", "register_reader"]

#: The kinds of file a reader can return.
KINDS = ("image", "ebsd")

#: How many leading bytes of a file the sniff functions receive.
SNIFF_BYTES = 4096

# Module-name prefixes of the plugin modules inside metallo.io (imported on first lookup).
_PLUGIN_PREFIXES = ("_image", "_ebsd")


@dataclass(frozen=True)
class ReaderPlugin:
    """A file format metallo can read.

    Attributes
    ----------
    name : str
        Short format name, e.g. ``"tiff"``, ``"ang"``.
    kind : {"image", "ebsd"}
        What ``read`` returns: an image ``xr.DataArray`` or an EBSD ``xr.Dataset``.
    extensions : tuple of str
        Lower-case extensions with the dot, e.g. ``(".tif", ".tiff")``.
    sniff : callable
        ``sniff(head: bytes) -> bool``, True if the first bytes look like this format.
    read : callable
        ``read(path, **options)``, returns the data.
    """

    name: str
    kind: str
    extensions: tuple[str, ...]
    sniff: Callable[[bytes], bool]
    read: Callable[..., Any]

    def sniffs(self, head: bytes) -> bool:
        """Whether ``head`` (the first bytes of a file) looks like this format."""
        try:
            return bool(self.sniff(head))
        except (ValueError, TypeError, IndexError, UnicodeError):
            # A sniffer that chokes on foreign bytes has simply not recognised the file.
            return False


_READERS: Registry[ReaderPlugin] = Registry("reader")
_loaded = False


def register_reader(
    name: str,
    *,
    kind: str,
    extensions: tuple[str, ...],
    sniff: Callable[[bytes], bool],
    read: Callable[..., Any],
) -> None:
    """Add a file format to the reader registry.

    Parameters
    ----------
    name : str
        Unique format name (case-insensitive), e.g. ``"ang"``.
    kind : {"image", "ebsd"}
        What the reader returns.
    extensions : tuple of str
        File extensions it claims, with or without the leading dot (case-insensitive).
    sniff : callable
        ``sniff(head: bytes) -> bool`` on the first :data:`SNIFF_BYTES` bytes of the file.
    read : callable
        ``read(path, **options)``.

    Returns
    -------
    None

    Examples
    --------
    Not run by the doctest suite (the reader would stay registered for the whole session):

    >>> register_reader("demo-npy", kind="image", extensions=(".npy",),
    ...                 sniff=lambda head: head.startswith(b"\\x93NUMPY"),
    ...                 read=lambda path, **kw: None)  # doctest: +SKIP
    """
    if kind not in KINDS:
        raise ConfigError(f"reader {name!r}: kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if isinstance(extensions, str):
        raise ConfigError(
            f"reader {name!r}: extensions must be a tuple of strings, e.g. ('.tif',); got {extensions!r}"
        )
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    if not callable(sniff) or not callable(read):
        raise ConfigError(f"reader {name!r}: sniff and read must be callables")
    if name in _READERS:
        raise ConfigError(f"reader {name!r} is already registered")
    _READERS.add(
        name, ReaderPlugin(name=name.lower(), kind=kind, extensions=exts, sniff=sniff, read=read)
    )


def _load_plugins() -> None:
    """Import the plugin modules of metallo.io once, so that they register their readers."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    package = importlib.import_module("metallo.io")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith(_PLUGIN_PREFIXES):
            importlib.import_module(f"metallo.io.{info.name}")


def _plugins(kind: str | None) -> list[ReaderPlugin]:
    _load_plugins()
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)} or None; got {kind!r}")
    return [
        _READERS.get(n) for n in _READERS.names() if kind is None or _READERS.get(n).kind == kind
    ]


def reader_names(kind: str | None = None) -> list[str]:
    """Names of the registered readers, optionally only those of one ``kind``.

    Examples
    --------
    >>> "tiff" in reader_names("image")
    True
    """
    return [p.name for p in _plugins(kind)]


def _describe(plugins: list[ReaderPlugin]) -> str:
    return "; ".join(f"{p.name} ({p.kind}: {', '.join(p.extensions)})" for p in plugins) or "none"


def reader_for(path: str | Path, *, kind: str | None = None) -> ReaderPlugin:
    """The reader of a file: by its sniffed header first, then by its extension.

    Parameters
    ----------
    path : str or Path
        The file.
    kind : {"image", "ebsd"}, optional
        Only consider readers of this kind.

    Returns
    -------
    ReaderPlugin

    Raises
    ------
    FormatError
        The file does not exist, cannot be read, or no reader recognises it; the message
        lists the known formats.

    Examples
    --------
    >>> import numpy as np
    >>> from metallo.io import write_image
    >>> reader_for(write_image(np.zeros((2, 2), np.uint8), "lom.tif")).name
    'tiff'
    """
    path = Path(path)
    plugins = _plugins(kind)
    try:
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except FileNotFoundError:
        raise FormatError(f"{path}: no such file") from None
    except OSError as exc:
        raise FormatError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    ext = path.suffix.lower()
    sniffed = [p for p in plugins if p.sniffs(head)]
    if sniffed:
        # Several formats may share a magic number (TIFF-based ones); the extension breaks the tie.
        by_ext = [p for p in sniffed if ext in p.extensions]
        return (by_ext or sniffed)[0]
    by_ext = [p for p in plugins if ext in p.extensions]
    if by_ext:
        return by_ext[0]
    what = f"{kind} " if kind else ""
    raise FormatError(f"{path}: not a known {what}file format; known formats: {_describe(plugins)}")
