"""The step adapters, by step name: what the pipeline loops over and every CLI command calls.

Each adapter is ``adapter(spec, *, overwrite=False, tag=None, **parameters) -> list[str]``
(see :mod:`metallo._step`): it reads its inputs from a Specimen, adds its output nodes with
provenance and returns their names. Names are in :mod:`metallo.names`.

Examples
--------
>>> from metallo import steps
>>> steps.get_adapter("ebsd.clean").__name__
'clean_step'
>>> outputs = steps.run_step(spec, "ebsd.clean", min_ci=0.1)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from metallo import names
from metallo.errors import UnknownNameError

__all__ = ["ADAPTERS", "get_adapter", "run_step"]

#: Step name -> (public module, adapter function). Imported on first use (heavy modules stay unloaded).
ADAPTERS: dict[str, tuple[str, str]] = {
    names.STEP_READ_IMAGE: ("metallo.io", "read_image_step"),
    names.STEP_READ_EBSD: ("metallo.io", "read_ebsd_step"),
    names.STEP_CLEAN: ("metallo.ebsd", "clean_step"),
    names.STEP_DERIVE: ("metallo.ebsd", "derive_step"),
    names.STEP_PARENT: ("metallo.ebsd", "parent_step"),
    names.STEP_REGISTER: ("metallo.correlate", "register_step"),
    names.STEP_RESAMPLE_EBSD: ("metallo.correlate", "resample_ebsd_step"),
    names.STEP_ANNOTATE: ("metallo.annotate", "annotate_step"),
    names.STEP_SEGMENT: ("metallo.segment", "segment_step"),
    names.STEP_QUANTIFY: ("metallo.quantify", "quantify_step"),
}


def get_adapter(step: str) -> Callable[..., list[str]]:
    """The adapter of ``step``; an :class:`~metallo.errors.UnknownNameError` lists the known steps."""
    if step not in ADAPTERS:
        raise UnknownNameError(f"unknown step {step!r}; valid steps: {', '.join(sorted(ADAPTERS))}")
    module, attr = ADAPTERS[step]
    adapter: Callable[..., list[str]] = getattr(importlib.import_module(module), attr)
    return adapter


def run_step(spec: Any, step: str, *, overwrite: bool = False, tag: Mapping[str, Any] | None = None,
             **parameters: Any) -> list[str]:
    """Run the adapter of ``step`` on ``spec``; returns the nodes it wrote (``spec.save()`` writes the file).

    Examples
    --------
    >>> run_step(spec, "segment", method="annotation", micrograph="lom")  # doctest: +SKIP
    ['segmentations/lom']
    """
    return get_adapter(step)(spec, overwrite=overwrite, tag=tag, **parameters)
