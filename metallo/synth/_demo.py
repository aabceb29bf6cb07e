"""The demo specimen: a synthetic correlative specimen written as a Specimen file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from metallo import names
from metallo._progress import ProgressCallback, notify
from metallo._xarray import image_dataarray
from metallo.synth._specimen import SynthSpecimen, make_specimen

__all__ = ["DEMO_FILE", "add_synthetic_specimen", "write_demo_specimen"]

#: File name of the demo specimen inside the output folder.
DEMO_FILE = "synthetic-specimen.h5"


def write_demo_specimen(
    out_dir: str | Path,
    seed: int = 0,
    *,
    ebsd_shape: tuple[int, int] = (200, 200),
    progress: ProgressCallback | None = None,
) -> Path:
    """Make a synthetic specimen and write it as a Specimen file, with provenance.

    Nodes: ``micrographs/lom``, ``micrographs/sem`` (uint8 micrographs with pixel sizes),
    ``ebsd/synth`` (the EBSD map), and the ground truth ``annotations/truth_lom`` /
    ``annotations/truth_sem`` (constituent under every pixel: 0 polygonal ferrite, 1 lath
    bainite) for scoring later steps. The file is ``out_dir/synthetic-specimen.h5``,
    replaced if it exists.

    Parameters
    ----------
    out_dir : str or Path
        Output folder (created if missing).
    seed : int
        Seed of :func:`metallo.synth.make_specimen`.
    ebsd_shape : (int, int)
        EBSD map size.
    progress : callable, optional
        ``progress(done, 1, description)`` before making and after writing (see
        :mod:`metallo._progress`).

    Returns
    -------
    Path
        The specimen file.

    Examples
    --------
    >>> from metallo.specimen import Specimen
    >>> path = write_demo_specimen("metallo-demo", ebsd_shape=(40, 40))
    >>> Specimen.open(path).nodes()
    ['annotations/truth_lom', 'annotations/truth_sem', 'ebsd/synth', 'micrographs/lom', 'micrographs/sem']
    """
    from metallo.specimen import Specimen

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notify(progress, 0, 1, f"making synthetic specimen (seed {seed}, EBSD {ebsd_shape[0]} x {ebsd_shape[1]})")
    spec = Specimen.create(
        out / DEMO_FILE,
        specimen_id=f"synth-{seed}",
        material="synthetic complex-phase steel (polygonal ferrite + lath bainite)",
        process={
            "route": "metallo.synth.make_specimen",
            "seed": seed,
            "preparation": "simulated: EBSD on the polished state, LOM after 2% nital, SEM secondary electrons",
            "etchant": "2% nital (rendered)",
        },
        overwrite=True,
    )
    add_synthetic_specimen(spec, seed, ebsd_name="synth", ebsd_shape=ebsd_shape)
    path = spec.save()
    notify(progress, 1, 1, f"wrote {path}")
    return path


def add_synthetic_specimen(
    spec: Any,
    seed: int = 0,
    *,
    ebsd_name: str = "map",
    step: str = "synth.make_specimen",
    extra_parameters: dict[str, Any] | None = None,
    **make_kwargs: Any,
) -> list[str]:
    """Make a synthetic specimen and add its inputs and ground truth to a Specimen.

    Nodes: ``ebsd/<ebsd_name>``, ``micrographs/lom``, ``micrographs/sem`` and the truth
    ``annotations/truth_lom`` / ``annotations/truth_sem`` (0 polygonal ferrite, 1 lath bainite),
    each with a provenance record of ``step``.

    Parameters
    ----------
    spec : Specimen
        The container to add to (existing nodes of the same names are replaced).
    seed : int
        Seed of :func:`metallo.synth.make_specimen`.
    ebsd_name : str
        Name of the EBSD node.
    step : str
        Step name in the provenance records.
    extra_parameters : dict, optional
        Recorded with the parameters (e.g. a pipeline cache key).
    **make_kwargs
        Passed to :func:`metallo.synth.make_specimen` (``ebsd_shape``, ``bainite_fraction``, ...).

    Returns
    -------
    list of str
        The nodes added.
    """
    synth = make_specimen(seed, **make_kwargs)
    parameters = {
        "seed": seed,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in make_kwargs.items()},
        **(extra_parameters or {}),
    }
    added = [names.ebsd(ebsd_name)]
    spec.add(added[0], synth.ebsd, step=step, parameters=parameters, overwrite=added[0] in spec)
    for name in ("lom", "sem"):
        for node, data, inputs in (
            (names.micrograph(name), getattr(synth, name), []),
            (names.annotation(f"truth_{name}"), _truth_labels(synth, name), [names.micrograph(name)]),
        ):
            spec.add(node, data, step=step, parameters=parameters, inputs=inputs, overwrite=node in spec)
            added.append(node)
    return added


def _truth_labels(synth: SynthSpecimen, name: str) -> xr.DataArray:
    image = getattr(synth, name)
    labels = np.asarray(getattr(synth, f"{name}_labels"), dtype=np.uint8)
    attrs = {
        "classes": json.dumps(synth.classes),
        "ignore_index": 255,
        "rules": json.dumps({"source": "metallo.synth ground truth", "seed": synth.truth["seed"]}),
    }
    return image_dataarray(
        labels, pixel_size_um=image.attrs["pixel_size_um"], name="labels", attrs=attrs
    )
