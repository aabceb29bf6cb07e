"""``metallo ebsd``: read an EBSD map, clean it, derive grains/KAM/GOS/GAM/boundaries into a specimen.

The nodes are those of a recipe: ``ebsd/<name>`` as read, ``ebsd/clean`` (``ebsd/<name>_clean``
for another name) and ``<cleaned>/derived`` (:mod:`metallo.names`), written by the same adapters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    """Add ``metallo ebsd`` to the ``metallo`` app."""

    @app.command()
    def ebsd(
        map_file: Annotated[Path, typer.Argument(help="EBSD map: .ang, .ctf, .cpr/.crc, .osc, .h5oina, EDAX/Bruker/EMsoft/orix .h5 (sniffed by content).")],
        specimen: Annotated[
            Path | None, typer.Option("--specimen", help="Specimen file (created if absent); default MAP.metallo.h5 in the working folder.")
        ] = None,
        name: Annotated[str, typer.Option("--name", help="Node name of the map as read: ebsd/<name>.")] = "map",
        do_clean: Annotated[bool, typer.Option("--clean/--no-clean", help="OIM-style cleanup first.")] = True,
        min_ci: Annotated[float, typer.Option("--min-ci", help="Minimum confidence index.")] = 0.1,
        tolerance: Annotated[float, typer.Option("--tolerance", help="Grain tolerance angle, degrees.")] = 5.0,
        symmetry: Annotated[str | None, typer.Option(
            "--symmetry", help="Laue group of the map's phases, for files that state none (TSL grain files, "
                               "column text such as MTEX's export), e.g. m-3m.")] = None,
        lattice: Annotated[str | None, typer.Option(
            "--lattice", help="Lattice constants a,b,c[,alpha,beta,gamma] (Å, degrees) of the map's phases, for "
                              "column text that states none; a hexagonal phase's twin relations follow from c/a, "
                              "e.g. 2.95,2.95,4.68 for titanium.")] = None,
        kam_order: Annotated[int, typer.Option("--kam-order", min=1, help="KAM neighbour order.")] = 3,
        kam_kernel: Annotated[str, typer.Option(
            "--kam-kernel", help="KAM neighbours of that order: ring (the order-th shell only), mtex "
                                 "(every neighbour up to the order, as MTEX's KAM), full (the whole square).")] = "ring",
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing nodes.")] = False,
    ) -> None:
        """Read, clean and derive an EBSD map into a specimen; print a grain / KAM summary."""
        import numpy as np

        from metallo import names
        from metallo._ebsd_dataset import bcc_iron_only, grain_ecd_um
        from metallo.ebsd import check_kam_kernel, check_tolerance
        from metallo.errors import ConfigError
        from metallo.specimen import Specimen
        from metallo.steps import run_step

        check_kam_kernel(kam_kernel, "--kam-kernel")
        check_tolerance(tolerance, "--tolerance", warn=False)  # refused here, warned of by the grains
        path = specimen or Path(f"{map_file.stem}.metallo.h5")
        # Open-modify-save under the specimen's lock: a second writer waits its turn.
        with Specimen.lock(path):
            spec = Specimen.open(path) if path.exists() else Specimen.create(path, specimen_id=map_file.stem)
            given: dict[str, Any] = {"symmetry": symmetry} if symmetry else {}
            if lattice is not None:
                try:
                    given["lattice"] = [float(v) for v in lattice.replace(",", " ").split()]
                except ValueError:
                    raise ConfigError(f"--lattice must be numbers a,b,c[,alpha,beta,gamma]; got {lattice!r}") from None
            (node,) = run_step(spec, names.STEP_READ_EBSD, path=str(map_file), name=name, overwrite=overwrite, **given)
            indexed_before = float((spec[node]["phase"].values >= 0).mean())
            if do_clean:
                (node,) = run_step(spec, names.STEP_CLEAN, ebsd=node, overwrite=overwrite, min_ci=min_ci,
                                   tolerance_deg=tolerance)
            (derived_node,) = run_step(spec, names.STEP_DERIVE, ebsd=node, overwrite=overwrite, tolerance_deg=tolerance,
                                       kam_order=kam_order, kam_kernel=kam_kernel)
            saved = spec.save()
        data, derived = spec[node], spec[derived_node]
        ids = derived["grain_id"].values.ravel()
        valid = ids >= 0
        grain, first = np.unique(ids[valid], return_index=True)
        step = float(data.attrs["step_um"])
        ecd = grain_ecd_um(ids, data)
        gos = derived["gos"].values.ravel()[valid][first]
        gam = derived["gam"].values.ravel()[valid][first]
        codes = np.bincount(derived["boundaries"].values.ravel(), minlength=4)
        indexed = float((data["phase"].values >= 0).mean())
        cleaned = ""
        if do_clean:
            from metallo.ebsd import MAX_INVENTED, invented_share

            invented = invented_share(data)
            cleaned = (f", {indexed:.1%} after cleaning ({invented:.1%} of the measured points given a neighbour's "
                       "orientation" + (": an interpolation, not a measurement; --no-clean keeps the points as measured"
                                        if invented > MAX_INVENTED else "") + ")")
        typer.echo(f"{map_file.name}: {data.sizes['y']} x {data.sizes['x']} points, step {step:g} µm, "
                   f"{indexed_before:.1%} indexed as read{cleaned}")
        phases = _phase_shares(data)
        if phases:
            typer.echo(f"phases (share of the indexed points): {phases}; with a CI over fields: metallo quantify --what phases")
        if grain.size:
            from metallo.quantify import EBSD_MIN_INDEXED

            typer.echo(f"grains: {grain.size} (tolerance {tolerance:g} deg), mean ECD {ecd.mean():.2f} µm "
                       "(every grain, the edge-cut ones too; ASTM grain size: metallo quantify), "
                       f"mean GOS {_mean(gos, '.2f')} deg, mean GAM {_mean(gam, '.2f')} deg"
                       + (f" (of the {indexed:.1%} indexed: the grains that index, no grain size of the section)"
                          if indexed < EBSD_MIN_INDEXED else ""))
        else:
            typer.echo(f"grains: none (tolerance {tolerance:g} deg; {int((data['phase'].values >= 0).sum())} indexed "
                       "points form no grain of the minimum size)")
        kam = derived["kam"].values
        if np.isfinite(kam).any():
            reach = kam_order * float(data.attrs.get("step_um", float("nan")))
            typer.echo(f"KAM (order {kam_order}, {kam_kernel} kernel, reach {reach:.3g} µm: compare maps at one reach): "
                       f"mean {np.nanmean(kam):.3f} deg, median {np.nanmedian(kam):.3f} deg")
        else:
            typer.echo(f"KAM (order {kam_order}, {kam_kernel} kernel): no point has indexed neighbours of its phase at that order")
        typer.echo(f"boundary points: low-angle {codes[1]}, high-angle {codes[2]}, {_sigma3_text(data, codes[3])}"
                   + (f", hcp twins {codes[4]}" if codes.size > 4 and codes[4] else ""))
        if grain.size:
            import json

            from metallo.ebsd import twin_boundaries

            twins = twin_boundaries(data, derived["grain_id"])
            twin_line = _twin_text(data, twins)
            if twin_line:
                typer.echo(f"twin relations (share of each phase's grain-boundary segments): {twin_line}")
            # The merge the twin table made (no second one for the count).
            after = json.loads(twins.attrs.get("merged") or "{}").get("n_grains_after", grain.size)
            if after < grain.size and codes[3]:
                # (bcc iron alone has no annealing twins to merge: the twin line above says so.)
                if not bcc_iron_only(data):
                    typer.echo(f"grains with their Sigma3 twins merged: {after} (ASTM E112 counts austenite grains so: "
                               "metallo quantify --twins merge; in martensite these are block boundaries)")
            elif after < grain.size:
                typer.echo(f"parent grains with their hcp twins merged: {after} (metallo quantify --twins merge)")
            from metallo.ebsd import misorientation_distribution, misorientation_summary
            from metallo.report import misorientation_line

            for phase, summary in misorientation_summary(misorientation_distribution(data, derived["grain_id"])).items():
                typer.echo(misorientation_line(phase, summary))
        from metallo.ebsd import fibre_shares
        from metallo.report import texture_line

        fibres = fibre_shares(data, derived["grain_id"])
        if len(fibres):
            typer.echo(texture_line(fibres))
        nodes = ", ".join(dict.fromkeys([names.ebsd(name), node, derived_node]))
        typer.echo(f"written: {saved} ({nodes})")


def _phase_shares(data: Any) -> str:
    """``"austenite 48.4 %, ferrite 51.6 %"`` for a map of two or more phases, else ``""``."""
    from metallo.quantify import EBSD_MIN_INDEXED, ebsd_phase_shares

    measured = ebsd_phase_shares(data)
    if measured is None:
        return ""
    shares, indexed = measured
    text = ", ".join(f"{name} {100 * share:.1f} %" for name, share in shares.items())
    if indexed < EBSD_MIN_INDEXED:
        text += f" (only {100 * indexed:.1f} % of the points are indexed: a phase that indexes worse is under-counted)"
    from metallo.ebsd import MAX_INVENTED, invented_share

    invented = invented_share(data)
    if invented > MAX_INVENTED:
        text += (f" (cleanup gave {100 * invented:.0f} % of the measured points a neighbour's phase: the shares of an "
                 "interpolated map; metallo ebsd --no-clean gives those of the points measured)")
    return text


def _twin_text(data: Any, table: Any) -> str:
    """``"Magnesium {10-12} extension 52.3 %, ..."``: each twin relation found in the
    :func:`metallo.ebsd.twin_boundaries` table, as a share of its phase's grain-boundary segments;
    "" for a map without twin relations."""
    if not len(table):
        from metallo._ebsd_dataset import phases_of
        from metallo.ebsd import twin_systems

        bare = [str(p.get("name", p.get("id"))) for p in phases_of(data)
                if p.get("symmetry") == "6/mmm" and not twin_systems(p)]
        return (f"n/a for {', '.join(bare)} (hexagonal, but the file gives no lattice constants: the hcp twin "
                "angles follow from c/a; --lattice a,b,c gives them)") if bare else ""
    from metallo.report import twin_area_text, twin_random_text

    parts = [f"{row['phase']} {row['twin']} {100 * row['share']:.1f} %{twin_random_text(row)} ({twin_area_text(row)})"
             + ("" if row.get("reliable", True) else f" (NOT RELIABLE: {row['note']})")
             for _, row in table.iterrows() if row["n_segments"] > 0]
    if not parts and len(table):
        return "none within the relations' tolerance (" + ", ".join(dict.fromkeys(table["twin"])) + ")"
    return ", ".join(parts)


def _sigma3_text(data: Any, count: int) -> str:
    """The Sigma3 count, or why there is none: the twin is only looked for in cubic m-3m phases."""
    import numpy as np

    from metallo._ebsd_dataset import phases_of

    present = set(np.unique(data["phase"].values).tolist())
    if any(p.get("symmetry") == "m-3m" and p.get("id") in present for p in phases_of(data)):
        return f"Sigma3 {count}"
    return "Sigma3 n/a (no cubic m-3m phase)"


def _mean(values: Any, fmt: str) -> str:
    """Mean of the finite values, or "n/a" (no numpy warning on an empty selection)."""
    import numpy as np

    finite = values[np.isfinite(values)]
    return format(float(finite.mean()), fmt) if finite.size else "n/a"
