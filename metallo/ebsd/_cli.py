"""``metallo ebsd``: read an EBSD map, clean it, derive grains/KAM/GOS/GAM/boundaries into a specimen."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add ``metallo ebsd`` to the ``metallo`` app."""

    @app.command()
    def ebsd(
        map_file: Annotated[Path, typer.Argument(help="EBSD map: .ang, .ctf, .cpr/.crc, .osc, .h5oina, EDAX/Bruker/EMsoft/orix .h5 (sniffed by content).")],
        specimen: Annotated[
            Path | None, typer.Option("--specimen", help="Specimen file (created if absent); default MAP.metallo.h5.")
        ] = None,
        name: Annotated[str, typer.Option("--name", help="Node name: ebsd/<name>.")] = "map1",
        do_clean: Annotated[bool, typer.Option("--clean/--no-clean", help="OIM-style cleanup first.")] = True,
        min_ci: Annotated[float, typer.Option("--min-ci", help="Minimum confidence index.")] = 0.1,
        tolerance: Annotated[float, typer.Option("--tolerance", help="Grain tolerance angle, degrees.")] = 5.0,
        kam_order: Annotated[int, typer.Option("--kam-order", min=1, help="KAM neighbour order.")] = 3,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing nodes.")] = False,
    ) -> None:
        """Read, clean and derive an EBSD map into a specimen; print a grain / KAM summary."""
        import json

        import numpy as np

        import metallo.ebsd as mebsd
        from metallo.io import read_ebsd
        from metallo.specimen import Specimen

        path = specimen or map_file.with_suffix(".metallo.h5")
        spec = (Specimen.open(path) if path.exists()
                else Specimen.create(path, specimen_id=map_file.stem))
        data = read_ebsd(map_file)
        node = f"ebsd/{name}"
        if do_clean:
            data = mebsd.clean(data, min_ci=min_ci, tolerance_deg=tolerance)
            spec.add(node, data, step="ebsd.clean", overwrite=overwrite, inputs=[str(map_file)],
                     parameters={"min_ci": min_ci, "tolerance_deg": tolerance,
                                 "steps": json.loads(data.attrs["cleanup"])})
        else:
            spec.add(node, data, step="io.read_ebsd", overwrite=overwrite, inputs=[str(map_file)],
                     parameters={"format": map_file.suffix.lstrip(".").lower()})
        derived, grains = mebsd.derive(data, tolerance_deg=tolerance, kam_order=kam_order, return_grains=True)
        spec.add(f"{node}/derived", derived, step="ebsd.derive", overwrite=overwrite, inputs=[node],
                 parameters=json.loads(derived.attrs["parameters"]))
        saved = spec.save()
        table = grains.table
        codes = np.bincount(derived["boundaries"].values.ravel(), minlength=4)
        indexed = float((data["phase"].values >= 0).mean())
        typer.echo(f"{map_file.name}: {data.sizes['y']} x {data.sizes['x']} points, step {data.attrs['step_um']:g} µm, "
                   f"{indexed:.1%} indexed")
        typer.echo(f"grains: {len(table)} (tolerance {tolerance:g} deg), mean ECD {table['ecd_um'].mean():.2f} µm, "
                   f"mean GOS {table['gos_deg'].mean():.2f} deg, mean GAM {table['gam_deg'].mean():.2f} deg")
        typer.echo(f"KAM (order {kam_order}): mean {np.nanmean(derived['kam'].values):.3f} deg, "
                   f"median {np.nanmedian(derived['kam'].values):.3f} deg")
        typer.echo(f"boundary points: low-angle {codes[1]}, high-angle {codes[2]}, Sigma3 {codes[3]}")
        typer.echo(f"written: {saved} ({node}, {node}/derived)")
