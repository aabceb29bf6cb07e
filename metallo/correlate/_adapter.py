"""Step adapter of ``metallo.correlate``: register a Specimen's EBSD map onto one of its micrographs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metallo import names
from metallo._step import pick_ebsd, pick_micrograph, write

__all__ = ["register_step"]


def register_step(spec: Any, *, micrograph: str | None = None, ebsd: str | None = None,
                  overwrite: bool = False, tag: Mapping[str, Any] | None = None, **parameters: Any) -> list[str]:
    """Register the EBSD map (moving: its IQ/CI image) onto a micrograph into ``registration/<micrograph>``.

    Parameters
    ----------
    spec : Specimen
    micrograph : str, optional
        Fixed micrograph (name or node; default ``lom``, ``sem`` or the first).
    ebsd : str, optional
        Moving EBSD map (default the only current map, e.g. ``ebsd/clean``).
    overwrite : bool
    tag : mapping, optional
        Extra provenance parameters.
    **parameters
        Passed to :func:`metallo.correlate.register` (``method``, ``grid_um``, ...).

    Returns
    -------
    list of str
        ``["registration/<micrograph>"]``; the node's attrs ``fixed`` and ``moving`` name its inputs.

    Examples
    --------
    >>> register_step(spec, micrograph="lom", method="sift+bspline")  # doctest: +SKIP
    ['registration/lom']
    """
    from metallo.correlate import register
    from metallo.ebsd import map_image

    fixed = pick_micrograph(spec, micrograph)
    moving = pick_ebsd(spec, ebsd)
    reg = register(spec[fixed][names.IMAGE], map_image(spec[moving]), **parameters)
    ds = reg.to_dataset()
    ds.attrs.update(fixed=fixed, moving=moving)
    params = {"micrograph": names.leaf(fixed), **parameters}
    return [write(spec, names.registration(names.leaf(fixed)), ds, step=names.STEP_REGISTER, parameters=params,
                  inputs=[fixed, moving], overwrite=overwrite, tag=tag)]
