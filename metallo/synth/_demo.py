"""The demo specimen: a synthetic correlative specimen written as a Specimen file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from metallo._xarray import image_dataarray
from metallo.synth._specimen import SynthSpecimen, make_specimen

__all__ = ["DEMO_FILE", "write_demo_specimen"]

#: File name of the demo specimen inside the output folder.
DEMO_FILE = "synthetic-specimen.h5"


def write_demo_specimen(
    out_dir: str | Path,
    seed: int = 0,
    *,
    ebsd_shape: tuple[int, int] = (200, 200),
    progress: bool = False,
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
    progress : bool
        Print what is being made (rich).

    Returns
    -------
    Path
        The specimen file.

    Examples
    --------
    >>> path = write_demo_specimen("metallo-demo")  # doctest: +SKIP
    >>> Specimen.open(path).nodes()  # doctest: +SKIP
    ['annotations/truth_lom', 'annotations/truth_sem', 'ebsd/synth', 'micrographs/lom', 'micrographs/sem']
    """
    from metallo.specimen import Specimen

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    console = None
    if progress:
        from rich.console import Console

        console = Console(stderr=True)
        console.print(
            f"making synthetic specimen (seed {seed}, EBSD {ebsd_shape[0]} x {ebsd_shape[1]})"
        )
    synth = make_specimen(seed, ebsd_shape=ebsd_shape)
    parameters = {"seed": seed, "ebsd_shape": list(ebsd_shape)}
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
    step = "synth.make_specimen"
    spec.add("ebsd/synth", synth.ebsd, step=step, parameters=parameters)
    for name in ("lom", "sem"):
        spec.add(f"micrographs/{name}", getattr(synth, name), step=step, parameters=parameters)
        spec.add(
            f"annotations/truth_{name}",
            _truth_labels(synth, name),
            step=step,
            parameters=parameters,
            inputs=[f"micrographs/{name}"],
        )
    path = spec.save()
    if console is not None:
        console.print(f"wrote {path}")
    return path


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
