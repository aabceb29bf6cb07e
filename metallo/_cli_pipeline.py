"""Whole-chain commands: ``metallo analyze`` and ``metallo batch``."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the pipeline commands to the ``metallo`` app."""

    @app.command()
    def analyze(
        recipe: Path = typer.Argument(..., help="Recipe YAML file (see docs/pipeline.md)."),
        force: bool = typer.Option(False, "--force", help="Re-run every step, even unchanged ones."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
    ) -> None:
        """Run one specimen through the chain described by RECIPE (resumes an interrupted run)."""
        from rich.console import Console

        from metallo import pipeline

        result = pipeline.run(recipe, force=force, progress=not quiet)
        out = Console()
        out.print(f"specimen: {result.specimen_path}")
        if result.report_path:
            out.print(f"report:   {result.report_path}")
        for cls, qc in result.qc.items():
            mean = f"{100 * qc['mean']:.1f}%" if "mean" in qc else "-"
            out.print(f"QC {cls}: {mean} (limits {100 * qc['min']:.0f}-{100 * qc['max']:.0f}%) -> {qc['status'].upper()}")

    @app.command()
    def batch(
        recipes: list[Path] = typer.Argument(..., help="Recipe files or folders of recipes."),
        scheduler: str = typer.Option(None, "--scheduler", help="Address of an existing Dask scheduler."),
        workers: int = typer.Option(None, "--workers", "-w", min=1, help="Local worker processes (default: CPU count)."),
        out: Path = typer.Option(Path("metallo-batch"), "--out", help="Folder of summary.html and summary.csv."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        """Run many specimens on Dask; failures are reported and do not stop the others."""
        from rich.console import Console

        from metallo.batch import run_batch

        result = run_batch(recipes, scheduler=scheduler, workers=workers, out_dir=out, progress=not quiet)
        console = Console()
        for row in result.failed:
            console.print(f"[red]failed[/red] {row['specimen']}: {row['reason']}")
        console.print(f"{len(result.complete)} of {len(result.rows)} specimens complete; summary: {result.summary_html}")
        if result.failed:
            raise typer.Exit(1)
