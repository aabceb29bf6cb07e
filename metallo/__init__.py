"""metallo: quantitative metallography from microscope to number.

The public API is loaded lazily so that ``import metallo`` stays fast and does not import
torch, SimpleITK, OpenCV or dask::

    import metallo as mt
    spec = mt.Specimen.create("S1.h5", specimen_id="S1", material="CP steel")
    lom = mt.io.read_image("lom.tif", pixel_size_um=0.1266)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from metallo._version import __version__
from metallo.errors import (
    ConfigError,
    DataNotFoundError,
    FormatError,
    MetalloError,
    ModelError,
    RegistrationError,
    SchemaError,
    UnknownNameError,
)

_SUBMODULES = (
    "io",
    "ebsd",
    "correlate",
    "annotate",
    "segment",
    "quantify",
    "synth",
    "pipeline",
    "report",
    "batch",
    "datasets",
    "names",
    "steps",
)
_ATTRIBUTES = {"Specimen": "metallo.specimen"}

__all__ = [
    "ConfigError",
    "DataNotFoundError",
    "FormatError",
    "MetalloError",
    "ModelError",
    "RegistrationError",
    "SchemaError",
    "Specimen",
    "UnknownNameError",
    "__version__",
    *_SUBMODULES,
]

if TYPE_CHECKING:  # pragma: no cover
    from metallo import (  # noqa: F401
        annotate,
        batch,
        correlate,
        datasets,
        ebsd,
        io,
        names,
        pipeline,
        quantify,
        report,
        segment,
        steps,
        synth,
    )
    from metallo.specimen import Specimen  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"metallo.{name}")
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'metallo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
