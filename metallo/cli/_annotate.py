"""``metallo annotate``: EBSD-informed masks from a Specimen, carried onto a micrograph."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    """Add ``metallo annotate`` to the ``metallo`` app."""
    app.command("annotate")(annotate_command)


def annotate_command(
    specimen: Annotated[Path, typer.Argument(help="Specimen file (.h5) with an EBSD map.")],
    rules: Annotated[str, typer.Option("--rules", "-r", help="Preset name (lath_bainite, phase) or a YAML rules file.")] = "lath_bainite",
    ebsd: Annotated[str, typer.Option("--ebsd", help="EBSD node name below ebsd/ (default: the only map).")] = "",
    micrograph: Annotated[str, typer.Option("--micrograph", "-m", help="Micrograph node below micrographs/ to carry the mask onto.")] = "",
    registration: Annotated[str, typer.Option("--registration", help="Registration node below registration/ (default: registration/<micrograph>; registered and stored if absent).")] = "",
    name: Annotated[str, typer.Option("--name", "-n", help="Annotation name below annotations/ (default: the preset or rules file name).")] = "",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for PNG/TIFF/JSON exports, the review figure and training tiles (default: SPECIMEN_annotate_NAME in the working folder).")] = None,
    tiles: Annotated[bool, typer.Option("--tiles/--no-tiles", help="Write training tiles of the micrograph.")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing annotation/registration nodes.")] = False,
) -> None:
    """Label an EBSD map by rules (GOS, KAM, ...), store it in the specimen, warp it onto a micrograph."""
    import json

    from rich.console import Console
    from rich.table import Table

    from metallo import annotate
    from metallo.ebsd import map_image
    from metallo.errors import ConfigError
    from metallo.specimen import Specimen

    console = Console()
    spec = Specimen.open(specimen)
    nodes = spec.nodes()
    maps = [n for n in nodes if n.startswith("ebsd/") and n.count("/") == 1]
    if ebsd:
        ebsd_node = f"ebsd/{ebsd}"
        if ebsd_node not in maps:
            raise ConfigError(f"{specimen}: no EBSD node {ebsd_node!r}; EBSD nodes: {', '.join(maps) or 'none'}")
    elif len(maps) == 1:
        ebsd_node = maps[0]
    else:
        raise ConfigError(f"{specimen}: give --ebsd, the specimen has EBSD nodes: {', '.join(maps) or 'none'}")
    micro_node = f"micrographs/{micrograph}"
    if micrograph and micro_node not in nodes:
        raise ConfigError(f"{specimen}: no micrograph {micro_node!r}; micrographs: "
                          f"{', '.join(n for n in nodes if n.startswith('micrographs/')) or 'none'}")
    ebsd_map = spec[ebsd_node]
    derived = spec[f"{ebsd_node}/derived"] if f"{ebsd_node}/derived" in nodes else None
    rule_set = annotate.load_rules(rules, ebsd=ebsd_map)
    name = name or (Path(rule_set.source).stem if rule_set.source.lower().endswith((".yaml", ".yml", ".json")) else rule_set.source)
    labels = annotate.from_ebsd(ebsd_map, rules=rule_set, derived=derived)
    inputs = [ebsd_node] + ([f"{ebsd_node}/derived"] if derived is not None else [])
    annotate.add_annotation(spec, name, labels, inputs=inputs, overwrite=overwrite)
    out = out or Path(f"{specimen.stem}_annotate_{name}")
    out.mkdir(parents=True, exist_ok=True)
    annotate.write_labels(labels, out / f"{name}_ebsd.png")
    annotate.write_labels(labels, out / f"{name}_ebsd.tif")
    iq = map_image(ebsd_map)
    boundary_map = derived["boundaries"] if derived is not None and "boundaries" in derived else _boundaries(ebsd_map)
    on_micrograph = None
    if micrograph:
        image = spec[micro_node]["image"]
        reg = _registration(spec, registration or micrograph, image, micro_node, iq, ebsd_node, overwrite, console)
        on_micrograph = annotate.to_micrograph(labels, reg, image)
        annotate.add_annotation(spec, f"{name}_{micrograph}", on_micrograph,
                                inputs=[f"annotations/{name}", f"registration/{registration or micrograph}", micro_node],
                                overwrite=overwrite)
        annotate.write_labels(on_micrograph, out / f"{name}_{micrograph}.png")
        annotate.write_labels(on_micrograph, out / f"{name}_{micrograph}.tif")
        bnd = reg.warp(boundary_map.assign_attrs(pixel_size_um=float(ebsd_map.attrs["step_um"])), interpolation="nearest", fill_value=0)
        annotate.review_figure(image, on_micrograph, boundaries=bnd, ebsd_labels=labels, path=out / f"{name}_{micrograph}_review.png")
        if tiles:
            written = annotate.write_training_tiles(image, on_micrograph, out / "tiles", stem=f"{specimen.stem}_{micrograph}")
            console.print(f"{len(written)} training tiles -> {out / 'tiles'}")
    else:
        annotate.review_figure(iq, labels, boundaries=boundary_map, path=out / f"{name}_ebsd_review.png")
    spec.save()
    fractions = annotate.fraction_table(labels, on_micrograph)
    table = Table(title=f"annotations/{name}  (thresholds: {json.loads(labels.attrs['thresholds']) or 'none'})")
    table.add_column("class")
    for column in fractions.columns:
        table.add_column(column, justify="right")
    for cls, row in fractions.iterrows():
        table.add_row(str(cls), *(f"{v:.4g}" for v in row.to_numpy()))
    console.print(table)
    console.print(f"wrote {specimen} and {out}")



def _boundaries(ebsd_map: Any) -> Any:
    from metallo import ebsd

    return ebsd.boundaries(ebsd_map)


def _registration(spec: Any, name: str, image: Any, micro_node: str, moving: Any, ebsd_node: str,
                  overwrite: bool, console: Any) -> Any:
    """The stored registration ``registration/<name>``, or a new one (registered and stored)."""
    from metallo import correlate

    node = f"registration/{name}"
    if node in spec.nodes() and not overwrite:
        return correlate.Registration.from_dataset(spec[node])
    console.print(f"registering {ebsd_node} onto {micro_node} ...")
    reg = correlate.register(image, moving)
    ds = reg.to_dataset()
    ds.attrs.update(fixed=micro_node, moving=ebsd_node)
    spec.add(node, ds, step="correlate.register", parameters={"method": reg.method}, inputs=[micro_node, ebsd_node],
             overwrite=overwrite)
    return reg
