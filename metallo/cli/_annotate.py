"""``metallo annotate``: EBSD-informed masks from a Specimen, carried onto a micrograph."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add ``metallo annotate`` to the ``metallo`` app."""
    app.command("annotate")(annotate_command)


def annotate_command(
    specimen: Annotated[Path, typer.Argument(help="Specimen file (.h5) with an EBSD map.")],
    rules: Annotated[str, typer.Option("--rules", "-r", help="Preset name (lath_bainite, phase) or a YAML rules file.")] = "lath_bainite",
    ebsd: Annotated[str, typer.Option("--ebsd", help="EBSD node name below ebsd/ (default: the only map).")] = "",
    micrograph: Annotated[str, typer.Option("--micrograph", "-m", help="Micrograph node below micrographs/ to carry the mask onto.")] = "",
    registration: Annotated[str, typer.Option("--registration", help="Deprecated: the registration used is registration/<micrograph> (registered and stored if absent).")] = "",
    name: Annotated[str, typer.Option("--name", "-n", help="Annotation name below annotations/ (default: the preset or rules file name).")] = "",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for PNG/TIFF/JSON exports, the review figure and training tiles (default: SPECIMEN_annotate_NAME in the working folder).")] = None,
    tiles: Annotated[bool, typer.Option("--tiles/--no-tiles", help="Write training tiles of the micrograph.")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing annotation/registration nodes.")] = False,
) -> None:
    """Label an EBSD map by rules (GOS, KAM, ...), store it in the specimen, warp it onto a micrograph."""
    import json

    from rich.console import Console
    from rich.table import Table

    from metallo import annotate, names
    from metallo._step import pick_ebsd
    from metallo.ebsd import boundaries, map_image
    from metallo.specimen import Specimen
    from metallo.steps import run_step

    console = Console()
    # Open-modify-save under the specimen's lock: a second writer waits its turn.
    with Specimen.lock(specimen):
        spec = Specimen.open(specimen)
        if registration and micrograph and registration != micrograph:
            console.print(f"note: the registration of micrograph {micrograph!r} is registration/{micrograph}; "
                          f"--registration {registration!r} is not used")
        outputs = run_step(spec, names.STEP_ANNOTATE, rules=rules, ebsd=ebsd or None, micrograph=micrograph or None,
                           name=name or None, overwrite=overwrite)
        ebsd_labels = spec[outputs[0]][names.LABELS]
        name = names.leaf(outputs[0])
        source = pick_ebsd(spec, ebsd or None)  # the map the adapter labelled
        ebsd_map = spec[source]
        derived_node = names.derived(source)
        derived = spec[derived_node] if derived_node in spec else None
        out = out or Path(f"{specimen.stem}_annotate_{name}")
        out.mkdir(parents=True, exist_ok=True)
        annotate.write_labels(ebsd_labels, out / f"{name}_ebsd.png")
        annotate.write_labels(ebsd_labels, out / f"{name}_ebsd.tif")
        boundary_map = derived["boundaries"] if derived is not None and "boundaries" in derived else boundaries(ebsd_map)
        on_micrograph = None
        if micrograph:
            from metallo.correlate import Registration

            image = spec[names.micrograph(micrograph)][names.IMAGE]
            on_micrograph = spec[outputs[-1]][names.LABELS]
            reg = Registration.from_dataset(spec[names.registration(micrograph)])
            annotate.write_labels(on_micrograph, out / f"{name}_{micrograph}.png")
            annotate.write_labels(on_micrograph, out / f"{name}_{micrograph}.tif")
            bnd = reg.warp(boundary_map.assign_attrs(pixel_size_um=float(ebsd_map.attrs["step_um"])), interpolation="nearest", fill_value=0)
            annotate.review_figure(image, on_micrograph, boundaries=bnd, ebsd_labels=ebsd_labels, path=out / f"{name}_{micrograph}_review.png")
            failed = bool(reg.quality.get("failed")) or reg.quality.get(names.PASSED) is False
            if tiles and failed:
                # Training tiles from a mask carried by a failed registration teach a model the misfit.
                console.print(f"no training tiles: registration/{micrograph} failed its quality check "
                              f"({'; '.join(reg.quality.get('failure_reasons') or []) or 'see its quality record'}); "
                              "check the review figure, register again and re-run with --overwrite", markup=False)
            elif tiles:
                written = annotate.write_training_tiles(image, on_micrograph, out / "tiles", stem=f"{specimen.stem}_{micrograph}")
                console.print(f"{len(written)} training tiles -> {out / 'tiles'}")
        else:
            annotate.review_figure(map_image(ebsd_map), ebsd_labels, boundaries=boundary_map, path=out / f"{name}_ebsd_review.png")
        spec.save()
    fractions = annotate.fraction_table(ebsd_labels, on_micrograph)
    table = Table(title=f"{outputs[0]}  (thresholds: {json.loads(ebsd_labels.attrs['thresholds']) or 'none'})")
    table.add_column("class")
    for column in fractions.columns:
        table.add_column(column, justify="right")
    for cls, row in fractions.iterrows():
        table.add_row(str(cls), *(f"{v:.4g}" for v in row.to_numpy()))
    console.print(table)
    console.print(f"wrote {specimen} and {out}")
