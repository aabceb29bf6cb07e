"""Step adapters of ``metallo.ebsd``: ``ebsd.clean`` and ``ebsd.derive`` on a Specimen's EBSD map."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metallo import names
from metallo._step import pick_ebsd, write

__all__ = ["clean_step", "derive_step"]


def clean_step(spec: Any, *, ebsd: str | None = None, overwrite: bool = False,
               tag: Mapping[str, Any] | None = None, **parameters: Any) -> list[str]:
    """Clean an EBSD map (:func:`metallo.ebsd.clean`) into its cleaned node (``ebsd/map`` -> ``ebsd/clean``).

    Parameters
    ----------
    spec : Specimen
    ebsd : str, optional
        The map (name or node; default the only current map).
    overwrite : bool
    tag : mapping, optional
        Extra provenance parameters.
    **parameters
        Passed to :func:`metallo.ebsd.clean` (``min_ci``, ``tolerance_deg``, ...).

    Returns
    -------
    list of str

    Examples
    --------
    >>> clean_step(spec, min_ci=0.1)  # doctest: +SKIP
    ['ebsd/clean']
    """
    from metallo.ebsd import clean

    source = pick_ebsd(spec, ebsd)
    cleaned = clean(spec[source], **parameters)
    return [write(spec, names.cleaned(source), cleaned, step=names.STEP_CLEAN, parameters=parameters,
                  inputs=[source], overwrite=overwrite, tag=tag)]


def derive_step(spec: Any, *, ebsd: str | None = None, overwrite: bool = False,
                tag: Mapping[str, Any] | None = None, **parameters: Any) -> list[str]:
    """Grains, KAM, GOS, GAM and boundaries (:func:`metallo.ebsd.derive`) into ``ebsd/<map>/derived``.

    Returns
    -------
    list of str

    Examples
    --------
    >>> derive_step(spec, tolerance_deg=5.0)  # doctest: +SKIP
    ['ebsd/clean/derived']
    """
    from metallo.ebsd import derive

    source = pick_ebsd(spec, ebsd)
    result = derive(spec[source], **parameters)
    return [write(spec, names.derived(source), result, step=names.STEP_DERIVE, parameters=parameters,
                  inputs=[source], overwrite=overwrite, tag=tag)]
