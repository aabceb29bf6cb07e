"""``metallo parent``: fit the orientation relationship, reconstruct the prior-austenite grains."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add ``metallo parent`` to the ``metallo`` app."""

    @app.command()
    def parent(
        source: Annotated[Path, typer.Argument(help="EBSD map (.ang, .ctf, TSL grain file) or a specimen (.h5).")],
        specimen: Annotated[
            Path | None, typer.Option("--specimen", help="Specimen to write (created if absent); default MAP.metallo.h5.")
        ] = None,
        name: Annotated[str, typer.Option("--name", help="EBSD node name: ebsd/<name>.")] = "map1",
        orientation_relationship: Annotated[
            str, typer.Option("--or", help="'fit' (default), or KS, NW, GT, Pitsch, Bain.")
        ] = "fit",
        start: Annotated[str, typer.Option("--start", help="Starting OR of the fit ('auto': KS, NW, GT).")] = "auto",
        tolerance: Annotated[float, typer.Option("--tolerance", help="Largest child-to-parent misfit, degrees.")] = 5.0,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing nodes.")] = False,
    ) -> None:
        """Reconstruct parent austenite grains, variants, packets and PAG size into a specimen."""
        import json

        import metallo.ebsd as mebsd
        from metallo.io import read_ebsd
        from metallo.specimen import Specimen

        node = f"ebsd/{name}"
        if source.suffix.lower() == ".h5":
            spec = Specimen.open(source)
            ebsd = spec[node]
        else:
            path = specimen or source.with_suffix(".metallo.h5")
            spec = Specimen.open(path) if path.exists() else Specimen.create(path, specimen_id=source.stem)
            ebsd = read_ebsd(source)
            if node not in spec.nodes() or overwrite:
                spec.add(node, ebsd, step="io.read_ebsd", inputs=[str(source)], overwrite=overwrite,
                         parameters={"format": source.suffix.lstrip(".").lower()})
            else:
                ebsd = spec[node]
        orel: str | mebsd.ORFit = orientation_relationship
        if orientation_relationship.lower() == "fit":
            orel = mebsd.fit_orientation_relationship(ebsd, start=start)
            fit = orel.to_dict()
            q = fit["misfit_quantiles_deg"]
            typer.echo(f"OR fit ({fit['method']}, {fit['n_boundaries']} boundaries): {fit['deviation_from_ks_deg']:.2f} deg "
                       f"from KS, {fit['deviation_from_nw_deg']:.2f} deg from NW; misfit quartiles "
                       f"{q.get('q25', float('nan')):.2f} / {q.get('q50', float('nan')):.2f} / {q.get('q75', float('nan')):.2f} deg; "
                       f"{fit['explained_fraction']:.0%} of boundaries within {fit['explained_deg']:g} deg "
                       f"(random: {fit['chance_fraction']:.0%})")
        rec = mebsd.reconstruct_parent(ebsd, orel, tolerance_deg=tolerance)
        nodes = mebsd.add_parent_to_specimen(spec, name, rec, ebsd=ebsd, source_node=node, overwrite=overwrite)
        saved = spec.save()
        quality = json.loads(rec.dataset.attrs["quality"])
        table = rec.parents
        typer.echo(f"parent grains: {len(table)}, {quality['reconstructed_fraction']:.1%} of child points reconstructed, "
                   f"median variants per parent {table['n_variants'].median() if len(table) else 0:g}, "
                   f"median packets {table['n_packets'].median() if len(table) else 0:g}")
        if f"quantities/{name}_pag_size" in nodes:
            size = spec.table(f"quantities/{name}_pag_size")
            for _, row in size.iterrows():
                typer.echo(f"PAG size ({row['method']}): G = {row['G']:.2f}, mean ECD {row['mean_ecd_um']:.2f} µm")
        typer.echo(f"written: {saved} ({', '.join(nodes)})")
