"""Step adapter of ``metallo.correlate``: register a Specimen's EBSD map onto one of its micrographs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metallo import names
from metallo._step import pick_ebsd, pick_micrograph, write

__all__ = ["register_ebsd", "register_step", "resample_ebsd_step"]


def register_ebsd(micrograph: Any, ebsd: Any, *, representation: str = "auto", boundary_deg: float = 5.0,
                  **options: Any) -> Any:
    """Register an EBSD map (moving) onto a micrograph (fixed) by its boundaries, IQ as the fallback.

    Parameters
    ----------
    micrograph : ndarray or xr.DataArray
        The fixed image.
    ebsd : xr.Dataset
        The EBSD map (metallo layout).
    representation : {"auto", "boundaries", "iq"}
        ``"boundaries"``: the grain/phase boundary image from the orientations
        (:func:`metallo.correlate.ebsd_structure_image`); ``"iq"``: the IQ/CI image
        (:func:`metallo.ebsd.map_image`); ``"auto"``: boundaries when the map has orientations,
        and the IQ registration instead when the boundary one fails its quality verdict and the
        IQ one does not.
    boundary_deg : float
        Grain tolerance (degrees) of the boundary image.
    **options
        Passed to :func:`metallo.correlate.register`.

    Returns
    -------
    Registration
        ``quality["representation"]`` names what was registered (and why, for a fallback).

    Examples
    --------
    >>> from metallo.synth import make_specimen
    >>> spec = make_specimen(0)
    >>> reg = register_ebsd(spec.lom, spec.ebsd)  # doctest: +SKIP
    >>> reg.quality["representation"]  # doctest: +SKIP
    'boundaries'
    """
    import warnings

    from metallo.correlate._register import register
    from metallo.correlate._structure import ebsd_structure_image
    from metallo.ebsd import map_image
    from metallo.errors import ConfigError

    if representation not in ("auto", "boundaries", "iq"):
        raise ConfigError(f"representation must be 'auto', 'boundaries' or 'iq'; got {representation!r}")
    has_orientations = "euler" in ebsd
    if representation == "boundaries" and not has_orientations:
        raise ConfigError(f"EBSD map {ebsd.attrs.get('source', '')!r} has no orientations ('euler'); "
                          "use representation='iq'")
    if representation == "iq" or not has_orientations:
        reg = register(micrograph, map_image(ebsd), **options)
        reg.quality["representation"] = "iq" if representation == "iq" else "iq (the map has no orientations)"
        return reg
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = register(micrograph, ebsd_structure_image(ebsd, boundary_deg=boundary_deg), **options)
    reg.quality["representation"] = "boundaries"
    if representation == "auto" and reg.quality.get("failed"):
        with warnings.catch_warnings(record=True) as caught_iq:
            warnings.simplefilter("always")
            alt = register(micrograph, map_image(ebsd), **options)
        if not alt.quality.get("failed"):
            alt.quality["representation"] = "iq (the boundary registration failed: " + \
                "; ".join(reg.quality.get("failure_reasons", [])) + ")"
            reg, caught = alt, caught_iq
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)
    return reg


def register_step(spec: Any, *, micrograph: str | None = None, ebsd: str | None = None,
                  representation: str = "auto", boundary_deg: float = 5.0,
                  overwrite: bool = False, tag: Mapping[str, Any] | None = None, **parameters: Any) -> list[str]:
    """Register the EBSD map onto a micrograph into ``registration/<micrograph>``.

    The EBSD map is registered by what it knows: its grain and phase boundaries from the
    orientations (:func:`metallo.correlate.ebsd_structure_image`), matched against the edges of
    the micrograph. With ``representation="auto"`` a map without orientations, or a boundary
    registration that fails its own quality verdict, is registered by its IQ/CI image instead
    (``quality["representation"]`` says which was used and why).

    Parameters
    ----------
    spec : Specimen
    micrograph : str, optional
        Fixed micrograph (name or node; default ``lom``, ``sem`` or the first).
    ebsd : str, optional
        Moving EBSD map (default the only current map, e.g. ``ebsd/clean``).
    representation : {"auto", "boundaries", "iq"}
        What of the EBSD map is registered: the boundary image, the IQ/CI image, or the boundary
        image with the IQ image as the fallback (default).
    boundary_deg : float
        Grain tolerance (degrees) of the boundary image.
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
    fixed = pick_micrograph(spec, micrograph)
    moving = pick_ebsd(spec, ebsd)
    reg = register_ebsd(spec[fixed][names.IMAGE], spec[moving], representation=representation,
                        boundary_deg=boundary_deg, **parameters)
    ds = reg.to_dataset()
    ds.attrs.update(fixed=fixed, moving=moving)
    params = {"micrograph": names.leaf(fixed), "representation": representation, "boundary_deg": boundary_deg,
              **parameters}
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
