"""Step adapter of ``metallo.correlate``: register a Specimen's EBSD map onto one of its micrographs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metallo import names
from metallo._step import pick_ebsd, pick_micrograph, write

__all__ = ["register_step", "resample_ebsd_step"]


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


def resample_ebsd_step(spec: Any, *, micrograph: str | None = None, step_um: float | None = None,
                       overwrite: bool = False, tag: Mapping[str, Any] | None = None) -> list[str]:
    """The registered EBSD map resampled into the micrograph frame, as ``ebsd/<map>_on_<micrograph>``.

    Orientations are taken from the nearest measured point (never interpolated, see
    :func:`metallo.correlate.corrected_ebsd`); the registration node is the provenance input, so
    the transform that made the map stays with it.

    Parameters
    ----------
    spec : Specimen
    micrograph : str, optional
        The micrograph whose ``registration/<micrograph>`` is used (default ``lom``, ``sem`` or the first).
    step_um : float, optional
        Step of the resampled map (default: the EBSD step).
    overwrite : bool
    tag : mapping, optional
        Extra provenance parameters.

    Returns
    -------
    list of str

    Examples
    --------
    >>> resample_ebsd_step(spec, micrograph="lom")  # doctest: +SKIP
    ['ebsd/clean_on_lom']
    """
    from metallo.correlate import Registration, corrected_ebsd

    fixed = pick_micrograph(spec, micrograph)
    reg_node = names.registration(names.leaf(fixed))
    if reg_node not in spec:
        from metallo.errors import ConfigError

        raise ConfigError(f"{getattr(spec, 'path', 'specimen')}: no {reg_node}; register the EBSD map onto "
                          f"{fixed} first (step {names.STEP_REGISTER})")
    reg_ds = spec[reg_node]
    source = pick_ebsd(spec, str(reg_ds.attrs.get("moving", "")) or None)
    resampled = corrected_ebsd(Registration.from_dataset(reg_ds), spec[source], step_um=step_um)
    node = names.resampled(source, names.leaf(fixed))
    return [write(spec, node, resampled, step=names.STEP_RESAMPLE_EBSD,
                  parameters={"micrograph": names.leaf(fixed), "step_um": step_um},
                  inputs=[source, reg_node], overwrite=overwrite, tag=tag)]
