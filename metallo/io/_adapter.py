"""Step adapters of ``metallo.io``: files into a Specimen (``io.read_image``, ``io.read_ebsd``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from metallo import names
from metallo._step import write

__all__ = ["read_ebsd_step", "read_image_step"]


def read_image_step(spec: Any, *, path: str | Path, name: str, pixel_size_um: float | None = None,
                    modality: str | None = None, databar: str | int = "crop", overwrite: bool = False,
                    tag: Mapping[str, Any] | None = None) -> list[str]:
    """Read a micrograph into ``micrographs/<name>`` (step ``io.read_image``).

    Parameters
    ----------
    spec : Specimen
    path : path
        The image file.
    name : str
        Node name below ``micrographs/``.
    pixel_size_um, modality : optional
        As for :func:`metallo.io.read_image` (the file's own calibration otherwise).
    databar : {"crop", "keep"} or int
        The SEM data bar below the frame, as for :func:`metallo.io.read_image`; the rows cropped
        are recorded in the provenance (``databar_rows``) and the node's attrs. Rows that only
        look like a bar (kept, with a warning) give the node a failed quality verdict, so that
        QC on fractions measured from it fails; ``databar="keep"`` or a row count settles it.
    overwrite : bool
    tag : mapping, optional
        Extra provenance parameters.

    Returns
    -------
    list of str
        ``["micrographs/<name>"]``.

    Examples
    --------
    >>> read_image_step(spec, path="lom.tif", name="lom", pixel_size_um=0.1)  # doctest: +SKIP
    ['micrographs/lom']
    """
    from metallo.io import read_image

    image = read_image(path, pixel_size_um=pixel_size_um, modality=modality, databar=databar)
    suspected = int(image.attrs.get("databar_rows_suspected", 0))
    if suspected:
        # Kept as image on a look alone: every fraction and registration measured on this node
        # counts the bar, so the node's verdict fails and the QC report says so beside them.
        image.attrs[names.QUALITY] = json.dumps({
            names.PASSED: False, "databar_rows_suspected": suspected,
            "failure_reasons": [f"the bottom {suspected} rows look like an SEM data bar and were kept as image; "
                                f"read with databar={suspected} to crop them, or databar='keep' if they are the specimen"],
        })
    params = {"path": str(path), **({"pixel_size_um": pixel_size_um} if pixel_size_um is not None else {}),
              **({"modality": modality} if modality is not None else {}),
              **({"databar": databar} if databar != "crop" else {}),
              **({"databar_rows": int(image.attrs["databar_rows"])} if image.attrs.get("databar_rows") else {})}
    return [write(spec, names.micrograph(name), image, step=names.STEP_READ_IMAGE, parameters=params,
                  inputs=[str(path)], overwrite=overwrite, tag=tag)]


def read_ebsd_step(spec: Any, *, path: str | Path, name: str = "map", symmetry: str | None = None,
                   lattice: Sequence[float] | None = None, overwrite: bool = False,
                   tag: Mapping[str, Any] | None = None) -> list[str]:
    """Read an EBSD map (.ang, .ctf, ...) into ``ebsd/<name>`` (step ``io.read_ebsd``).

    ``symmetry`` (a Laue group) is for the files that state none: TSL grain files and column
    text (MTEX's export); other formats refuse it. ``lattice`` (a, b, c [, angles]) likewise, for
    column text: a hexagonal phase's twin relations need its c/a.

    Returns
    -------
    list of str
        ``["ebsd/<name>"]``.

    Examples
    --------
    >>> read_ebsd_step(spec, path="map.ang")  # doctest: +SKIP
    ['ebsd/map']
    """
    from metallo.io import read_ebsd

    given: dict[str, Any] = {**({"symmetry": symmetry} if symmetry else {}),
                             **({"lattice": [float(v) for v in lattice]} if lattice is not None else {})}
    data = read_ebsd(path, **given)
    parameters = {"path": str(path), **given}
    return [write(spec, names.ebsd(name), data, step=names.STEP_READ_EBSD, parameters=parameters,
                  inputs=[str(path)], overwrite=overwrite, tag=tag)]
