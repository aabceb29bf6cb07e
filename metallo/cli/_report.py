"""``metallo report``: the QC report of one specimen, or of several with the batch summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def _limits(items: list[str] | None) -> dict[str, list[float]]:
    """``CLASS=MIN:MAX`` (fractions) -> ``{class: [min, max]}``."""
    from metallo.errors import ConfigError

    out: dict[str, list[float]] = {}
    for item in items or []:
        cls, _, span = item.partition("=")
        try:
            lo, hi = (float(v) for v in span.split(":"))
        except ValueError:
            raise ConfigError(f"--limit must look like CLASS=MIN:MAX with fractions (e.g. bainite=0.3:0.45); "
                              f"got {item!r}") from None
        if not cls or not 0 <= lo <= hi <= 1:
            raise ConfigError(f"--limit {item!r}: needs a class name and 0 <= MIN <= MAX <= 1")
        out[cls] = [lo, hi]
    return out


def _report_names(paths: list[Path]) -> list[str]:
    """One distinct report file name per specimen path.

    The file stem names the report; where two specimens share a stem (``lot1/S1.h5`` and ``lot2/S1.h5``)
    their folder names are prefixed, then a running number, so no report overwrites another.
    """
    stems = [p.stem for p in paths]
    names = [s if stems.count(s) == 1 else f"{p.resolve().parent.name}_{s}" for p, s in zip(paths, stems, strict=True)]
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if names.count(name) == 1 else f"{name}_{seen[name]}")
    return [f"{n}_report.html" for n in out]


def _summary_row(spec: Any, report: Path, limits: dict[str, list[float]]) -> dict[str, Any]:
    from metallo.report import measured_fractions, qc_status

    row: dict[str, Any] = {"specimen": spec.specimen_id, "status": "complete", "reason": "", "report": str(report)}
    measured = measured_fractions(spec)
    if measured is not None:
        qc = qc_status(measured[1], limits)
        if qc:
            row["qc"] = "pass" if all(v["status"] == "pass" for v in qc.values()) else "fail"
        for cls, mean in zip(measured[1]["class"], measured[1]["mean"], strict=True):
            row[str(cls)] = float(mean)
    return row


def register(app: typer.Typer) -> None:
    """Add ``metallo report`` to the ``metallo`` app."""

    @app.command("report")
    def report_command(
        specimens: Annotated[list[Path], typer.Argument(help="Specimen file(s) (.h5).")],
        out: Annotated[Path | None, typer.Option("--out", "-o", help="Report file (one specimen, .html) or folder "
                                                 "(default: the working directory).")] = None,
        limit: Annotated[list[str] | None, typer.Option("--limit", help="Phase-fraction limit CLASS=MIN:MAX "
                                                        "(fractions); repeat for several classes.")] = None,
    ) -> None:
        """Write the QC report of each SPECIMEN from whatever it holds; several -> also summary.html + summary.csv."""
        from metallo.errors import MetalloError
        from metallo.report import write_batch_summary, write_report
        from metallo.specimen import Specimen

        limits = _limits(limit)
        if len(specimens) == 1:
            spec = Specimen.open(specimens[0])
            target = out if out is not None and out.suffix.lower() in (".html", ".htm") else \
                (out or Path.cwd()) / f"{specimens[0].stem}_report.html"
            typer.echo(f"report: {write_report(spec, target, limits=limits)}")
            return
        folder = out or Path.cwd()
        rows: list[dict[str, Any]] = []
        for path, name in zip(specimens, _report_names(specimens), strict=True):
            try:
                spec = Specimen.open(path)
                report = write_report(spec, folder / name, limits=limits)
                rows.append(_summary_row(spec, report.resolve(), limits))
                typer.echo(f"report: {report}")
            except MetalloError as exc:  # one bad specimen does not stop the others
                rows.append({"specimen": path.stem, "status": "failed", "reason": " ".join(str(exc).split()),
                             "report": ""})
                typer.echo(f"failed {path}: {' '.join(str(exc).split())}", err=True)
        html, csv = write_batch_summary(rows, folder)
        typer.echo(f"summary: {html} and {csv}")
        if any(r["status"] == "failed" for r in rows):
            raise typer.Exit(1)
