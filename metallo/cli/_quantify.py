"""``metallo quantify``: measure a specimen, store the tables, write CSV / Parquet and histograms."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# Which column of each kind of table gets a histogram figure.
_HISTOGRAMS = {
    "_particles": ("ecd_um", "equivalent circle diameter (µm)"),
    "_denuded": ("width_um", "denuded-zone width (µm)"),
    "_laths": ("width_um", "apparent lath width (µm)"),
}


def register(app: typer.Typer) -> None:
    """Add ``metallo quantify`` to the ``metallo`` app."""

    @app.command()
    def quantify(
        specimen: Annotated[Path, typer.Argument(help="Specimen file (.h5).")],
        what: Annotated[
            str, typer.Option("--what", help="Comma list of particles,phases,grains,denuded,laths.")
        ] = "particles,phases,grains,denuded,laths",
        labels: Annotated[
            list[str] | None,
            typer.Option("--labels", help="Label node(s) to measure (default: every annotation and segmentation)."),
        ] = None,
        out: Annotated[
            Path | None, typer.Option("--out", help="Folder for CSV / Parquet tables and histograms (default: SPECIMEN-quantities in the working folder).")
        ] = None,
        min_area_um2: Annotated[float, typer.Option("--min-area-um2", help="Smallest particle (µm²).")] = 0.0,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace earlier quantities.")] = False,
    ) -> None:
        """Quantify a specimen: tables go to /quantities/<name> (with parameters in provenance)."""
        import importlib.util

        import matplotlib
        import numpy as np

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from metallo.quantify._specimen import quantify_specimen
        from metallo.specimen import Specimen

        spec = Specimen.open(specimen)
        label_nodes = [n for item in labels for n in item.split(",") if n] if labels else None
        tables = quantify_specimen(
            spec,
            what=[w.strip() for w in what.split(",") if w.strip()],
            labels=label_nodes,
            min_area_um2=min_area_um2,
            overwrite=overwrite,
        )
        spec.save()
        folder = out or Path(f"{specimen.stem}-quantities")
        folder.mkdir(parents=True, exist_ok=True)
        parquet = importlib.util.find_spec("pyarrow") is not None
        for node, table in tables.items():
            name = node.split("/", 1)[1]
            table.to_csv(folder / f"{name}.csv", index=False)
            if parquet:
                table.to_parquet(folder / f"{name}.parquet", index=False)
            for suffix, (column, xlabel) in _HISTOGRAMS.items():
                if name.endswith(suffix) and len(table):
                    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=120)
                    weights = table["weight"] if suffix == "_laths" else None
                    edges = np.histogram_bin_edges(table[column], bins="auto")
                    ax.hist(table[column], bins=edges.tolist(), weights=weights, color="#4477aa")
                    ax.set_xlabel(xlabel)
                    ax.set_ylabel("count" if weights is None else "number fraction")
                    ax.set_title(name, fontsize=9)
                    fig.tight_layout()
                    fig.savefig(folder / f"{name}.png")
                    plt.close(fig)
            typer.echo(f"{node}: {len(table)} rows")
        typer.echo(f"tables in {folder}; specimen updated: {specimen}")
