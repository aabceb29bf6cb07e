"""Step adapters of ``metallo.ebsd``: ``ebsd.clean``, ``ebsd.derive`` and ``ebsd.parent`` on a Specimen's EBSD map."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from metallo import names
from metallo._step import pick_ebsd, write

__all__ = ["clean_step", "derive_step", "parent_step"]


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
    from metallo.ebsd import MAX_INVENTED, clean, invented_share

    source = pick_ebsd(spec, ebsd)
    cleaned = clean(spec[source], **parameters)
    invented = invented_share(cleaned)
    if invented > MAX_INVENTED:
        # clean() warned; the node's verdict fails too, so that the fractions, grain sizes and
        # QC verdicts measured on it (and the batch table) say they rest on an interpolated map.
        cleaned.attrs[names.QUALITY] = json.dumps({
            names.PASSED: False, "invented_share": round(invented, 4),
            "failure_reasons": [f"cleanup gave {100 * invented:.0f} % of the measured points a neighbour's orientation "
                                f"(over {100 * MAX_INVENTED:.0f} %): an interpolated map, not a measurement; clean with "
                                "steps=('ci_threshold',) (metallo ebsd --no-clean keeps the points as measured)"],
        })
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


def parent_step(spec: Any, *, ebsd: str | None = None, orientation_relationship: str = "fit",
                overwrite: bool = False, tag: Mapping[str, Any] | None = None, **parameters: Any) -> list[str]:
    """Parent-austenite reconstruction (:func:`metallo.ebsd.reconstruct_parent`) into ``ebsd/<map>/parent``.

    The node is the reconstructed austenite as an EBSD map (orientations, ``parent_grain_id``,
    ``variant``, ``packet``, ``bain``, ``or_misfit_deg``) with the fitted orientation relationship
    and the quality record (``passed``) in its attrs; the per-parent and packet/block tables go
    to ``quantities/<map>.parent.parents`` and ``.substructure``. The prior-austenite grain size
    is a quantity: the ``quantify`` step measures it from this node.

    Parameters
    ----------
    spec : Specimen
    ebsd : str, optional
        The child map (name or node; default the only current map).
    orientation_relationship : str
        ``"fit"`` (fit it from the map) or a preset name (KS, NW, GT, Pitsch, Bain).
    overwrite : bool
    tag : mapping, optional
        Extra provenance parameters.
    **parameters
        Passed to :func:`metallo.ebsd.reconstruct_parent`.

    Returns
    -------
    list of str

    Examples
    --------
    >>> parent_step(spec, orientation_relationship="KS")  # doctest: +SKIP
    ['ebsd/clean/parent', 'quantities/ebsd.clean.parent.parents', 'quantities/ebsd.clean.parent.substructure']
    """
    from metallo.ebsd._parent import parent_map, reconstruct_parent, substructure_sizes

    source = pick_ebsd(spec, ebsd)
    child = spec[source]
    rec = reconstruct_parent(child, orientation_relationship, **parameters)
    node = names.parent(source)
    parent = parent_map(rec, ebsd=child).rename({"parent_id": names.PARENT_GRAIN_ID, "misfit": names.OR_MISFIT})
    params = {"orientation_relationship": orientation_relationship, **parameters}
    out = [write(spec, node, parent, step=names.STEP_PARENT, parameters=params, inputs=[source],
                 overwrite=overwrite, tag=tag)]
    for what, table in (("parents", rec.parents.reset_index()), ("substructure", substructure_sizes(rec).reset_index())):
        out.append(write(spec, names.quantity(node, what), table, step=names.STEP_PARENT, parameters=params,
                         inputs=[node], overwrite=overwrite, tag=tag))
    return out
