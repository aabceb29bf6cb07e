"""``metallo quantify``: measure a specimen, store the tables, write CSV / Parquet and histograms.

A thin wrapper over the quantify adapter (:func:`metallo.quantify.quantify_step`), the same one a
recipe's ``quantify`` step runs: the tables land under the same ``quantities/...`` names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

#: What each quantity needs, said when it measured nothing.
_NEEDS = {
    "phases": "needs a label map (annotation or segmentation) or an EBSD map of two or more phases",
    "particles": "needs a label map with a class named particle, cementite, carbide or precipitate "
                 "(--particles-class names another)",
    "grains": "needs an EBSD map",
    "denuded": "needs a label map with a network class present and a matrix (or denuded) class",
    "laths": "needs a label map with a class named lath or laths (--lath-class names another), or an EBSD map "
             "with a parent-austenite reconstruction (--ebsd names others)",
    "texture": "needs an EBSD map",
}

#: Table names (the last part of a quantity node) each quantity writes.
_WRITES = {
    "phases": ("phase_fractions", "phase_fields", "phase_fractions_ci"),
    "particles": ("particles", "psd"),
    "grains": ("grain_size", "grain_size_by_phase"),
    "denuded": ("denuded",),
    "laths": ("laths",),
    "texture": ("texture",),
}


def _not_measured(nodes: list[str], asked: list[str]) -> list[str]:
    """The quantities in ``asked`` that wrote no table."""
    leaves = {node.rsplit("/", 1)[-1].rsplit(".", 1)[-1] for node in nodes}
    return [kind for kind in asked if kind in _WRITES and not leaves & set(_WRITES[kind])]


def _holdings(spec: Any) -> str | None:
    """What a specimen holds to be measured: its label maps with their classes, and its EBSD maps (None: nothing)."""
    import json

    from metallo import names

    nodes = spec.nodes()
    maps = []
    for node in names.members(nodes, *names.LABEL_GROUPS):
        raw = spec[node].attrs.get("classes", "[]")
        classes = json.loads(raw) if isinstance(raw, str) else list(raw)
        maps.append(f"{node} (classes {', '.join(map(str, classes)) or 'unnamed'})")
    ebsd = names.members(nodes, names.EBSD)
    if not maps and not ebsd:
        return None
    return ("label maps: " + ("; ".join(maps) if maps else "none") + "; EBSD maps: " + (", ".join(ebsd) if ebsd else "none"))


def register(app: typer.Typer) -> None:
    """Add ``metallo quantify`` to the ``metallo`` app."""

    @app.command()
    def quantify(
        specimen: Annotated[Path, typer.Argument(help="Specimen file (.h5).")],
        what: Annotated[
            str, typer.Option("--what", help="Comma list of phases,particles,grains,denuded,laths,texture.")
        ] = "phases,particles,grains,denuded,laths,texture",
        labels: Annotated[
            list[str] | None,
            typer.Option("--labels", help="Label node(s) to measure (default: every annotation and segmentation)."),
        ] = None,
        ebsd: Annotated[
            list[str] | None,
            typer.Option("--ebsd", help="EBSD node(s) for grain size and laths (default: every current map; laths only on maps with a parent reconstruction)."),
        ] = None,
        fields: Annotated[str, typer.Option("--fields", help="Measurement fields ROWSxCOLUMNS for the phase-fraction CI.")] = "3x3",
        particles_class: Annotated[
            str | None, typer.Option("--particles-class", help="Class measured as particles (default: found by name).")
        ] = None,
        lath_class: Annotated[
            str | None, typer.Option("--lath-class", help="Class of a label map that marks single laths (boundaries in "
                                     "another class); default: a class named 'lath' or 'laths'. Phase maps "
                                     "(lath_bainite vs ferrite) are not measured: their regions are blocks of laths.")
        ] = None,
        out: Annotated[
            Path | None, typer.Option("--out", help="Folder for CSV / Parquet tables and histograms (default: SPECIMEN-quantities in the working folder).")
        ] = None,
        min_area_um2: Annotated[float, typer.Option("--min-area-um2", help="Smallest particle (µm²).")] = 0.0,
        twins: Annotated[
            str, typer.Option("--twins", help="EBSD grain size: 'keep' twins as grains, or 'merge' them into their grains (Sigma3 in cubic phases: ASTM E112 for austenite; the hcp twins in hexagonal phases: the parent grains).")
        ] = "keep",
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace earlier quantities.")] = False,
    ) -> None:
        """Quantify a specimen: tables go to /quantities/<group>.<name>.<what> (parameters in provenance)."""
        import importlib.util

        import numpy as np

        from metallo import names
        from metallo._atomic import atomic_path, atomic_write_text
        from metallo._figure import save_figure
        from metallo.errors import ConfigError
        from metallo.report import (
            across_parameters,
            failed_upstream,
            histogram_figure,
            quality_checks,
            quantity_lines,
        )
        from metallo.specimen import Specimen
        from metallo.steps import run_step

        try:
            grid = [int(n) for n in fields.lower().split("x")]
        except ValueError:
            grid = []
        if len(grid) != 2 or min(grid) < 1:
            raise ConfigError(f"--fields must look like ROWSxCOLUMNS (e.g. 3x3); got {fields!r}")
        # Open-modify-save under the specimen's lock: a second writer waits its turn.
        with Specimen.lock(specimen):
            spec = Specimen.open(specimen)
            split = [n for item in labels for n in item.split(",") if n] if labels else None
            nodes = run_step(
                spec, names.STEP_QUANTIFY, overwrite=overwrite,
                what=[w.strip() for w in what.split(",") if w.strip()], labels=split,
                ebsd=[n for item in ebsd for n in item.split(",") if n] if ebsd else None,
                fields=grid, particles_class=particles_class, lath_class=lath_class, min_area_um2=min_area_um2, twins=twins,
            )
            spec.save()
        asked = [w.strip() for w in what.split(",") if w.strip()]
        missing = _not_measured(nodes, asked)
        if not nodes:
            # A folder of nothing and "tables in ..." had been the whole answer.
            holds = _holdings(spec)
            if holds is None:
                raise ConfigError(f"{specimen}: holds no label map and no EBSD map to measure; add one first "
                                  "(metallo predict, annotate, segment-unsupervised or ebsd)")
            raise ConfigError(f"{specimen}: nothing measured for --what {','.join(asked)}: "
                              + "; ".join(f"{k} {_NEEDS[k]}" for k in missing) + f"; it holds {holds}")
        if set(asked) != set(names.QUANTIFY_WHAT):
            # Asked for by name and not measured: say why, rather than leave it out without a word.
            for kind in missing:
                typer.echo(f"note: {kind}: nothing measured; {kind} {_NEEDS[kind]}")
        elif missing:
            # The default asks for everything: one line names what this specimen gave nothing to
            # measure, so that a missing table is not taken for a table lost.
            typer.echo(f"note: nothing to measure for {', '.join(missing)} in this specimen "
                       f"(--what {missing[0]} says what {'it needs' if len(missing) == 1 else 'each needs'})")
        folder = out or Path(f"{specimen.stem}-quantities")
        folder.mkdir(parents=True, exist_ok=True)
        parquet = importlib.util.find_spec("pyarrow") is not None
        histograms = {names.PARTICLES: ("ecd_um", "equivalent circle diameter (µm)"),
                      names.DENUDED: ("width_um", "denuded-zone width (µm)"),
                      names.LATHS: ("width_um", "apparent lath width (µm)")}
        checks = quality_checks(spec)
        for node in nodes:
            table = spec.table(node)
            name = names.leaf(node)
            atomic_write_text(folder / f"{name}.csv", table.to_csv(index=False))
            if parquet:
                with atomic_path(folder / f"{name}.parquet") as tmp:
                    table.to_parquet(tmp, index=False)
            kind = name.rsplit(".", 1)[-1]
            if kind in histograms and len(table):
                column, xlabel = histograms[kind]
                weights = table["weight"].to_numpy() if kind in (names.LATHS, names.PARTICLES) and "weight" in table else None
                save_figure(histogram_figure(table[column].to_numpy(), xlabel=xlabel, title=name, weights=weights),
                            folder / f"{name}.png")
            typer.echo(f"{node}: {len(table)} rows")
            for line in quantity_lines(spec, node):
                typer.echo(f"  {line}")
            if node == names.PHASES_ACROSS_MAPS:
                params = across_parameters(spec)
                typer.echo(f"  the specimen: one field per micrograph ({', '.join(map(names.leaf, params.get('micrographs', [])))})"
                           + "".join(f"; left out {n}: {why}" for n, why in (params.get("left_out") or {}).items()))
            if names.leaf(node).endswith(names.PHASE_FRACTIONS) or node == names.PHASES_ACROSS_MAPS:
                # The numbers themselves, each with its 95 % interval (E562), not only a row count.
                for _, row in table.iterrows():
                    if {"class", "mean", "ci_low", "ci_high"} <= set(row.index):
                        n = (f", {int(row['n_micrographs'])} micrographs" if "n_micrographs" in row.index
                             else f", {int(row['n_fields'])} field{'' if int(row['n_fields']) == 1 else 's'}"
                             if "n_fields" in row.index else "")
                        known = bool(np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"]))
                        ci = (f"95 % CI {100 * row['ci_low']:.1f}-{100 * row['ci_high']:.1f} %" if known else
                              "no 95 % CI: ASTM E562 needs two or more fields (--fields 3x3)")
                        typer.echo(f"  {row['class']}: {100 * row['mean']:.1f} % ({ci}{n})")
                for failed, reasons in failed_upstream(spec, node, checks).items():
                    basis = "their own quality check failed" if failed == node else (
                        f"these fractions rest on {failed}, which failed its quality check")
                    typer.echo(f"  FAILED: {basis}" + (f" ({reasons[0]})" if reasons else "") + "; they are no QC figure")
        typer.echo(f"tables in {folder}; specimen updated: {specimen}")
