"""``metallo demo``: a synthetic correlative specimen written as a Specimen file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add ``metallo demo`` to the ``metallo`` app."""

    @app.command()
    def demo(
        out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("metallo-demo"),
        seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic specimen.")] = 0,
        size: Annotated[
            int, typer.Option("--size", min=20, help="EBSD map size (points per side).")
        ] = 200,
    ) -> None:
        """Make a synthetic ferrite + lath-bainite specimen (EBSD, LOM, SEM, truth) and save it."""
        from metallo.specimen import Specimen
        from metallo.synth import write_demo_specimen

        path = write_demo_specimen(out, seed, ebsd_shape=(size, size), progress=True)
        typer.echo(f"synthetic specimen: {path}")
        for node in Specimen.open(path).nodes():
            typer.echo(f"  {node}")
