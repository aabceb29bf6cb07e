"""``metallo parent``: fit the orientation relationship, reconstruct the prior-austenite grains."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer


def _is_specimen(path: Path) -> bool:
    """A metallo Specimen (not a vendor EBSD .h5, which also ends in .h5)."""
    if path.suffix.lower() != ".h5" or not path.is_file():
        return False
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "specimen_id" in f.attrs
    except OSError:
        return False


def register(app: typer.Typer) -> None:
    """Add ``metallo parent`` to the ``metallo`` app."""

    @app.command()
    def parent(
        source: Annotated[Path, typer.Argument(help="EBSD map (any format metallo reads, TSL grain file too) or a specimen (.h5).")],
        specimen: Annotated[
            Path | None,
            typer.Option("--specimen", help="Specimen to write (created if absent); default MAP.metallo.h5 in the working folder."),
        ] = None,
        name: Annotated[str, typer.Option("--name", help="EBSD map name: ebsd/<name> (read into, or taken from, the specimen).")] = "",
        orientation_relationship: Annotated[
            str, typer.Option("--or", help="'fit' (default), or KS, NW, GT, Pitsch, Bain.")
        ] = "fit",
        start: Annotated[str, typer.Option("--start", help="Starting OR of the fit ('auto': KS, NW, GT).")] = "auto",
        tolerance: Annotated[float, typer.Option("--tolerance", help="Largest child-to-parent misfit, degrees.")] = 5.0,
        child_phase: Annotated[str | None, typer.Option(
            "--child-phase", help="The child (martensite/bainite) phase, by name or id, where its name and lattice "
                                  "do not say it.")] = None,
        parent_phase: Annotated[str | None, typer.Option(
            "--parent-phase", help="The retained parent (austenite) phase, by name or id.")] = None,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing nodes.")] = False,
    ) -> None:
        """Reconstruct parent austenite grains, variants, packets and PAG size into a specimen."""
        import json

        from metallo import names
        from metallo.errors import ConfigError
        from metallo.specimen import Specimen
        from metallo.steps import run_step

        if not (math.isfinite(tolerance) and tolerance > 0):  # before a map is read or a specimen made
            raise ConfigError(f"--tolerance must be a positive angle in degrees; got {tolerance}")
        target = source if _is_specimen(source) else (specimen or Path(f"{source.stem}.metallo.h5"))
        # Open-modify-save under the specimen's lock: a second writer waits its turn.
        with Specimen.lock(target):
            if _is_specimen(source):
                spec = Specimen.open(source)
                ebsd = name or None
            else:
                path = specimen or Path(f"{source.stem}.metallo.h5")
                spec = Specimen.open(path) if path.exists() else Specimen.create(path, specimen_id=source.stem)
                leaf = name or names.leaf(names.EBSD_MAP)
                if names.ebsd(leaf) in spec and not overwrite:
                    typer.echo(f"{names.ebsd(leaf)} is already in {path}; using it (--overwrite reads {source.name} again)")
                    ebsd = names.ebsd(leaf)
                else:
                    (ebsd,) = run_step(spec, names.STEP_READ_EBSD, path=str(source), name=leaf, overwrite=overwrite)
            kwargs: dict[str, Any] = {"start": start} if orientation_relationship.lower() == "fit" else {}
            for key, value in (("child_phase", child_phase), ("parent_phase", parent_phase)):
                if value is not None:
                    kwargs[key] = int(value) if value.strip().isdigit() else value  # an id, else a name
            nodes = run_step(spec, names.STEP_PARENT, ebsd=ebsd, orientation_relationship=orientation_relationship,
                             tolerance_deg=tolerance, overwrite=overwrite, **kwargs)
            node = nodes[0]
            child = names.map_of(node)
            nodes += run_step(spec, names.STEP_QUANTIFY, what=["grains"], labels=[], ebsd=[child], overwrite=True)
            saved = spec.save()
        attrs = spec[node].attrs
        fit = json.loads(attrs.get("or_fit") or "null")
        if fit:
            q = fit["misfit_quantiles_deg"]
            typer.echo(f"OR fit ({fit['method']}, {fit['n_boundaries']} boundaries): {fit['deviation_from_ks_deg']:.2f} deg "
                       f"from KS, {fit['deviation_from_nw_deg']:.2f} deg from NW; misfit quartiles "
                       f"{q.get('q25', float('nan')):.2f} / {q.get('q50', float('nan')):.2f} / {q.get('q75', float('nan')):.2f} deg; "
                       f"{fit['explained_fraction']:.0%} of boundaries within {fit['explained_deg']:g} deg "
                       f"(random: {fit['chance_fraction']:.0%})")
            if fit.get("n_high_angle_pairs"):
                typer.echo(f"high-angle (> 15 deg) neighbour pairs explained within {fit['explained_deg']:g} deg: "
                           f"{fit['high_angle_explained_fraction']:.1%} of {fit['n_high_angle_pairs']}")
        quality = json.loads(attrs[names.QUALITY])
        table = spec.table(names.quantity(node, "parents"))
        typer.echo(f"parent grains: {len(table)}, {quality['reconstructed_fraction']:.1%} of child points reconstructed "
                   f"({'passed' if quality.get(names.PASSED) else 'FAILED'}), "
                   f"median variants per parent {table['n_variants'].median() if len(table) else 0:g}, "
                   f"median packets {table['n_packets'].median() if len(table) else 0:g}")
        size_node = names.quantity(node, names.GRAIN_SIZE)
        if size_node in spec:
            from metallo.report import grain_size_line

            for _, row in spec.table(size_node).iterrows():
                typer.echo(grain_size_line(row, "PAG size")
                           + ("" if quality.get(names.PASSED) else " (reconstruction FAILED: not prior-austenite grains)"))
        typer.echo(f"written: {saved} ({', '.join(dict.fromkeys(nodes))})")
