"""``metallo report``: the QC report of one specimen, or of several with the batch summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from metallo.cli._strict import EXIT_CHECK_FAILED


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
    """The batch table's row of one specimen: its checks and QC judged as ``metallo batch`` judges them."""
    from metallo.report import measured_fractions, qc_verdict

    row: dict[str, Any] = {"specimen": spec.specimen_id, "status": "complete", "reason": "", "report": str(report)}
    verdict = qc_verdict(spec, limits)
    row["checks"] = ("fail: " + ", ".join(verdict["failed_checks"])) if verdict["failed_checks"] else "pass"
    if verdict["qc_passed"] is not None:
        row["qc"] = "pass" if verdict["qc_passed"] else "fail"
    measured = measured_fractions(spec)
    if measured is not None:
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
        strict: Annotated[bool, typer.Option("--strict", help="Exit 3 when a specimen's checks or QC failed "
                                             "(the reports are still written; errors exit 1 first).")] = False,
    ) -> None:
        """Write the QC report of each SPECIMEN from whatever it holds; several -> also summary.html + summary.csv."""
        from metallo.batch import row_passed
        from metallo.errors import MetalloError
        from metallo.report import write_batch_summary, write_report
        from metallo.specimen import Specimen

        limits = _limits(limit)
        if len(specimens) == 1:
            spec = Specimen.open(specimens[0])
            target = out if out is not None and out.suffix.lower() in (".html", ".htm") else \
                (out or Path.cwd()) / f"{specimens[0].stem}_report.html"
            typer.echo(f"report: {write_report(spec, target, limits=limits)}")
            row = _summary_row(spec, target, limits)
            if not row_passed(row):
                typer.echo(f"checks {row['checks']}; QC {row.get('qc', 'not judged')}", err=True)
                if strict:
                    raise typer.Exit(EXIT_CHECK_FAILED)
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
        not_passed = [r["specimen"] for r in rows if not row_passed(r)]
        if not_passed:
            typer.echo(f"checks or QC failed: {', '.join(not_passed)}", err=True)
            if strict:
                raise typer.Exit(EXIT_CHECK_FAILED)
