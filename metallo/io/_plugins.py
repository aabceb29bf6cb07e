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

Formats that share a container (the HDF5 layouts of EDAX, Oxford, Bruker, EMsoft, orix) add a
``probe(path)`` that opens the file and looks at its layout; it is asked only when ``sniff``
said yes. Other packages add readers through the ``metallo.readers`` entry-point group
(:data:`ENTRY_POINT_GROUP`), loaded with metallo's own on the first lookup; the error of an
unknown file lists them with their entry point.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metallo._registry import Registry
from metallo.errors import ConfigError, FormatError

__all__ = [
    "ENTRY_POINT_GROUP",
    "KINDS",
    "SNIFF_BYTES",
    "ReaderPlugin",
    "reader_for",
    "reader_names",
    "register_reader",
]

#: The kinds of file a reader can return.
KINDS = ("image", "ebsd")

#: The entry-point group through which other packages add readers (as xarray's backends do).
ENTRY_POINT_GROUP = "metallo.readers"

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
    probe : callable, optional
        ``probe(path) -> bool``: a deeper look for formats that share a container (HDF5
        layouts of several vendors); asked only when ``sniff`` said yes.
    origin : str
        ``"metallo"`` or, for a reader added through the ``metallo.readers`` entry-point
        group, the entry point (``"name = module:object"``).
    """

    name: str
    kind: str
    extensions: tuple[str, ...]
    sniff: Callable[[bytes], bool]
    read: Callable[..., Any]
    probe: Callable[[Path], bool] | None = None
    origin: str = "metallo"

    def sniffs(self, head: bytes) -> bool:
        """Whether ``head`` (the first bytes of a file) looks like this format."""
        try:
            return bool(self.sniff(head))
        except (ValueError, TypeError, IndexError, UnicodeError):
            # A sniffer that chokes on foreign bytes has simply not recognised the file.
            return False

    def probes(self, path: Path) -> bool:
        """Whether the file at ``path`` is this format (True when there is no ``probe``)."""
        if self.probe is None:
            return True
        try:
            return bool(self.probe(path))
        except (OSError, RuntimeError, ValueError, TypeError, KeyError, IndexError, UnicodeError):
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
    probe: Callable[[Path], bool] | None = None,
    origin: str = "metallo",
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
    probe : callable, optional
        ``probe(path) -> bool``, asked after a positive ``sniff`` to tell apart formats that
        share a container (e.g. the HDF5 layouts of several vendors).
    origin : str
        Where the reader comes from; entry-point readers name their entry point.

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
    if not callable(sniff) or not callable(read) or (probe is not None and not callable(probe)):
        raise ConfigError(f"reader {name!r}: sniff, read (and probe) must be callables")
    if name in _READERS:
        raise ConfigError(f"reader {name!r} is already registered")
    _READERS.add(
        name,
        ReaderPlugin(
            name=name.lower(), kind=kind, extensions=exts, sniff=sniff, read=read, probe=probe, origin=origin
        ),
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
    _load_entry_points()


def _load_entry_points() -> None:
    """Register the readers of other packages, found in the ``metallo.readers`` entry-point group.

    An entry point names a :class:`ReaderPlugin` or a callable returning one, e.g. in the
    ``pyproject.toml`` of a lab's package::

        [project.entry-points."metallo.readers"]
        lab-map = "labformats.metallo_plugin:LAB_MAP_READER"

    A plugin that fails to load, or whose name is taken, is skipped with a warning naming it:
    one broken third-party package must not stop metallo from reading the formats it knows.
    """
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        label = f"{entry.name} = {entry.value}"
        try:
            obj = entry.load()
            plugin = obj if isinstance(obj, ReaderPlugin) else obj()
            if not isinstance(plugin, ReaderPlugin):
                raise TypeError(f"it gave a {type(plugin).__name__}, not a metallo.io.ReaderPlugin")
            register_reader(
                plugin.name, kind=plugin.kind, extensions=plugin.extensions, sniff=plugin.sniff,
                read=plugin.read, probe=plugin.probe, origin=label,
            )
        except (ImportError, AttributeError, TypeError, ValueError) as exc:
            warnings.warn(
                f"{ENTRY_POINT_GROUP} entry point {label!r} skipped: {exc}", UserWarning, stacklevel=4
            )


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
    def one(p: ReaderPlugin) -> str:
        where = "" if p.origin == "metallo" else f", plugin {p.origin}"
        return f"{p.name} ({p.kind}: {', '.join(p.extensions) or 'by content'}{where})"

    return "; ".join(one(p) for p in plugins) or "none"


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
    # Formats sharing a container (HDF5) look deeper; several may share a magic number
    # (TIFF-based ones): the extension breaks the tie.
    probed = [p for p in sniffed if p.probes(path)]
    if probed:
        by_ext = [p for p in probed if ext in p.extensions]
        return (by_ext or probed)[0]
    what = f"{kind} " if kind else ""
    if sniffed:
        raise FormatError(
            f"{path}: a {'/'.join(sorted({p.name for p in sniffed}))} container, but none of those "
            f"readers recognises its layout; known formats: {_describe(plugins)}"
        )
    by_ext = [p for p in plugins if ext in p.extensions]
    if by_ext:
        return by_ext[0]
    raise FormatError(f"{path}: not a known {what}file format; known formats: {_describe(plugins)}")
