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
        keep_databar: Annotated[bool, typer.Option("--keep-databar", help="Keep the SEM data bar rows that the file's "
                                                   "FEI/Thermo, Zeiss or TESCAN metadata puts below the frame (cropped by default).")] = False,
        databar_rows: Annotated[int | None, typer.Option("--databar-rows", min=0, help="Crop this many rows from the bottom "
                                                         "(a data bar whose metadata was lost).")] = None,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing micrograph node.")] = False,
    ) -> None:
        """Add IMAGE to SPECIMEN as micrographs/NAME on µm coordinates (step io.read_image).

        An SEM data bar stored below the frame (FEI/Thermo, Zeiss, TESCAN) is cropped."""
        from metallo import names
        from metallo.errors import ConfigError
        from metallo.specimen import Specimen
        from metallo.steps import run_step

        if keep_databar and databar_rows is not None:
            raise ConfigError("--keep-databar and --databar-rows exclude each other")
        databar: str | int = "keep" if keep_databar else ("crop" if databar_rows is None else databar_rows)
        # Open-modify-save under the specimen's lock: a second writer waits its turn.
        with Specimen.lock(specimen):
            spec = Specimen.open(specimen) if specimen.exists() else \
                Specimen.create(specimen, specimen_id=specimen_id or specimen.stem.split(".")[0])
            (node,) = run_step(spec, names.STEP_READ_IMAGE, path=str(image), name=name, pixel_size_um=pixel_size_um,
                               modality=modality, databar=databar, overwrite=overwrite)
            spec.save()
        typer.echo(f"{image} -> {specimen}:{node}")
