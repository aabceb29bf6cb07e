"""Readers and writers: micrographs (TIFF/PNG/JPEG with pixel size) and EBSD maps (.ang, .ctf,
.cpr/.crc, .osc, .h5oina, EDAX/Bruker/EMsoft/orix HDF5)."""

from __future__ import annotations

import importlib
from typing import Any

# name -> private module that defines it. The image engineer owns _IMAGES,
# the EBSD engineer owns _EBSD.
_IMAGES: dict[str, str] = {
    "IMAGE_FORMATS": "metallo.io._images",
    "ReaderPlugin": "metallo.io._plugins",
    "read_image": "metallo.io._images",
    "reader_for": "metallo.io._plugins",
    "reader_names": "metallo.io._plugins",
    "register_reader": "metallo.io._plugins",
    "suspected_databar_rows": "metallo.io._images",
    "write_image": "metallo.io._images",
}
_EBSD: dict[str, str] = {
    "ENTRY_POINT_GROUP": "metallo.io._plugins",
    "read_ebsd": "metallo.io._ebsd",
    "read_grain_table": "metallo.io._ebsd_grainfile",
    "write_ang": "metallo.io._ebsd",
    "write_ctf": "metallo.io._ebsd",
    "write_ebsd": "metallo.io._ebsd",
    "write_h5": "metallo.io._ebsd",
}
_ADAPTERS: dict[str, str] = {"read_ebsd_step": "metallo.io._adapter", "read_image_step": "metallo.io._adapter"}

_LAZY = {**_IMAGES, **_EBSD, **_ADAPTERS}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'metallo.io' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
