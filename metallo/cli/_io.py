"""``metallo micrograph``: read a micrograph into a specimen (the recipe's ``inputs.micrographs``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add ``metallo micrograph`` to the ``metallo`` app."""

    @app.command("micrograph")
    def micrograph_command(
        image: Annotated[Path, typer.Argument(help="Image file (TIFF, PNG, JPEG, ...).")],
        specimen: Annotated[Path, typer.Option("--specimen", help="Specimen file (created if absent).")],
        name: Annotated[str, typer.Option("--name", "-n", help="Node name: micrographs/<name>.")] = "lom",
        pixel_size_um: Annotated[float | None, typer.Option("--pixel-size-um", help="Pixel size in µm "
                                                             "(default: the file's calibration).")] = None,
        modality: Annotated[str | None, typer.Option("--modality", help="LOM, SEM or other.")] = None,
        specimen_id: Annotated[str | None, typer.Option("--id", help="Specimen id of a new file (default: its stem).")] = None,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing micrograph node.")] = False,
    ) -> None:
        """Add IMAGE to SPECIMEN as micrographs/NAME on µm coordinates (step io.read_image)."""
        from metallo import names
        from metallo.specimen import Specimen
        from metallo.steps import run_step

        # Open-modify-save under the specimen's lock: a second writer waits its turn.
        with Specimen.lock(specimen):
            spec = Specimen.open(specimen) if specimen.exists() else \
                Specimen.create(specimen, specimen_id=specimen_id or specimen.stem.split(".")[0])
            (node,) = run_step(spec, names.STEP_READ_IMAGE, path=str(image), name=name, pixel_size_um=pixel_size_um,
                               modality=modality, overwrite=overwrite)
            spec.save()
        typer.echo(f"{image} -> {specimen}:{node}")
