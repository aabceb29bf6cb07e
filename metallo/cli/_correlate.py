"""``metallo register FIXED MOVING``: registration alone, on any two images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from metallo.cli._progress import rich_progress
from metallo.cli._strict import EXIT_CHECK_FAILED, STRICT_HELP


def register(app: typer.Typer) -> None:
    """Add ``metallo register`` to the ``metallo`` app."""

    @app.command("register")
    def register_command(
        fixed: Annotated[Path, typer.Argument(help="Fixed image (e.g. the LOM/SEM micrograph).")],
        moving: Annotated[Path, typer.Argument(help="Moving image (e.g. the EBSD IQ map), warped onto FIXED.")],
        out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("registration"),
        landmarks: Annotated[
            list[Path] | None,
            typer.Option("--landmarks", help="BigWarp/paired CSV, or twice: MOVING then FIXED Fiji point files (pixels)."),
        ] = None,
        landmarks_units: Annotated[str, typer.Option("--landmarks-units", help="Units of the landmark coordinates: 'px', or 'um' (BigWarp and ImageJ Measure tables of calibrated images).")] = "px",
        grid_um: Annotated[float | None, typer.Option("--grid-um", help="B-spline control-point spacing in µm.")] = None,
        method: Annotated[str, typer.Option("--method", help="auto, landmarks+tps, sift+bspline, sift, affine, affine+bspline, bspline, landmarks, landmarks+bspline.")] = "auto",
        fixed_pixel_size_um: Annotated[float | None, typer.Option("--fixed-pixel-size-um", help="Override the fixed pixel size.")] = None,
        moving_pixel_size_um: Annotated[float | None, typer.Option("--moving-pixel-size-um", help="Override the moving pixel size.")] = None,
        inverse_consistency: Annotated[bool, typer.Option("--inverse-consistency/--no-inverse-consistency", help="Also register backwards and report the round-trip error.")] = True,
        corrected_ang: Annotated[Path | None, typer.Option("--corrected-ang", help="MOVING is an EBSD map: write it corrected onto FIXED (nearest neighbour) as this .ang.")] = None,
        both_ways: Annotated[str, typer.Option("--both-ways", help="Method auto: also register the other way round, average the two where they agree and use the locally better one where they disagree ('mean', default), the same with the forward transform where they agree ('gate'), or the forward direction alone ('off').")] = "mean",
        representation: Annotated[str, typer.Option("--representation", help="MOVING is an EBSD map: register its grain/phase boundaries ('boundaries'), its IQ image ('iq'), or boundaries with IQ as the fallback ('auto').")] = "auto",
        strict: Annotated[bool, typer.Option("--strict", help=STRICT_HELP)] = False,
    ) -> None:
        """Register MOVING onto FIXED; write the warped image, the transform (.tfm), an overlay PNG and quality.json."""
        import json
        import warnings

        from metallo._atomic import atomic_write_json, json_ready
        from metallo._xarray import image_dataarray
        from metallo.correlate import gate_rejected, overlay_figure, register_ebsd, residual_figure
        from metallo.correlate import register as run_register
        from metallo.errors import ConfigError
        from metallo.io import read_image, reader_for, write_image

        if representation not in ("auto", "boundaries", "iq"):
            raise ConfigError(f"--representation must be auto, boundaries or iq; got {representation!r}")
        f = read_image(fixed, pixel_size_um=fixed_pixel_size_um)
        ebsd = None
        if reader_for(moving).kind == "ebsd":  # by content, so every EBSD format is recognised
            from metallo.ebsd import map_image
            from metallo.io import read_ebsd

            ebsd = read_ebsd(moving)
            m = map_image(ebsd)
        else:
            m = read_image(moving, pixel_size_um=moving_pixel_size_um)
        if (f.attrs.get("pixel_size_um") == f.attrs.get("pixel_size_um")) != (m.attrs.get("pixel_size_um") == m.attrs.get("pixel_size_um")):
            # One calibrated image and one not: register both in pixels rather than fail.
            if ebsd is not None and representation == "boundaries":
                raise ConfigError(f"{fixed}: the boundary registration of an EBSD map needs the micrograph's pixel "
                                  "size; give --fixed-pixel-size-um")
            typer.echo("note: only one image has a pixel size; registering in pixels"
                       + (" (the EBSD map by its IQ image)" if ebsd is not None else ""), err=True)
            f = image_dataarray(f.values, name="fixed", attrs={k: v for k, v in f.attrs.items() if k != "pixel_size_um"})
            m = image_dataarray(m.values, name="moving", attrs={k: v for k, v in m.attrs.items() if k != "pixel_size_um"})
            ebsd_registration = False
        else:
            ebsd_registration = ebsd is not None
        lm = None
        if landmarks:
            lm = str(landmarks[0]) if len(landmarks) == 1 else (str(landmarks[0]), str(landmarks[1]))
        with warnings.catch_warnings(record=True) as caught, rich_progress() as progress:
            warnings.simplefilter("always")
            options: dict[str, Any] = {"method": method, "landmarks": lm, "landmarks_units": landmarks_units, "grid_um": grid_um,
                       "inverse_consistency": inverse_consistency, "both_ways": both_ways, "progress": progress}
            if ebsd_registration:
                reg = register_ebsd(f, ebsd, representation=representation, **options)
            else:
                reg = run_register(f, m, **options)
        for w in caught:
            typer.echo(f"warning: {w.message}", err=True)
        out.mkdir(parents=True, exist_ok=True)
        warped = reg.warp(m)
        write_image(warped.astype("float32"), out / "warped.tif")
        reg.save_tfm(out / "transform.tfm")
        overlay_figure(reg, f, m, out / "overlay.png")
        written = ["warped.tif", "transform.tfm", "overlay.png"]
        if "residual_map_px" in reg.quality:
            residual_figure(reg, f, out / "residual_map.png")
            written.append("residual_map.png")
        atomic_write_json(out / "quality.json", reg.quality, indent=2)
        written.append("quality.json")
        cp = reg.control_points
        if cp is not None and gate_rejected(reg.quality):
            import numpy as np

            # The result does not use them: never a ready-made landmark file (BigWarp, --landmarks).
            cp.write_bigwarp(out / "control_points_rejected.csv", active=np.zeros(len(cp.fixed_xy), bool))
            cp.write_table(out / "control_points_rejected_scores.csv")
            written += ["control_points_rejected.csv", "control_points_rejected_scores.csv"]
            typer.echo("note: the quality gate rejected the automatic control points (quality.json 'gate'); they are written "
                       "as control_points_rejected.csv, every row inactive", err=True)
        elif cp is not None:
            cp.write_bigwarp(out / "control_points.csv")
            cp.write_table(out / "control_points_scores.csv")
            written += ["control_points.csv", "control_points_scores.csv"]
        if corrected_ang is not None:
            if ebsd is None:
                raise typer.BadParameter("--corrected-ang needs MOVING to be an EBSD map (.ang or .ctf)")
            from metallo.correlate import write_corrected_ang

            write_corrected_ang(reg, ebsd, corrected_ang)
            typer.echo(f"wrote corrected EBSD map {corrected_ang}")
        typer.echo(json.dumps(json_ready(_summary(reg.quality))))
        typer.echo(f"wrote {out}/{', '.join(written)}")
        if reg.quality.get("failed"):
            typer.echo("FAILED: " + ("; ".join(map(str, reg.quality.get("failure_reasons") or []))
                                     or "the registration failed its quality check"), err=True)
            if strict:
                raise typer.Exit(EXIT_CHECK_FAILED)


def _summary(quality: dict[str, Any]) -> dict[str, Any]:
    """The figures the verdict rests on, for the one-line summary (quality.json has them all).

    The report's registration figures (:func:`metallo.report.registration_key_figures`), each
    beside the start's. Mutual information is left out: the optimised metric is no evidence
    (issue 14: MI rose while the warp dragged an edge 26 px off).
    """
    from metallo.report import registration_key_figures

    out: dict[str, Any] = {k: quality[k] for k in ("method", "representation", "initial", "gate") if k in quality}
    for row in registration_key_figures(quality).itertuples(index=False):
        out[row.figure] = row.result if row.start is None or row.start != row.start else {"start": row.start, "result": row.result}
    out.update({k: quality[k] for k in ("inliers", "tre_px", "failed", "failure_reasons") if k in quality})
    return out
