"""Whole-chain commands: ``metallo demo``, ``metallo analyze``, ``metallo batch`` and ``metallo step``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from metallo.cli._progress import rich_progress
from metallo.cli._strict import EXIT_CHECK_FAILED, STRICT_HELP, verdict_text

if TYPE_CHECKING:
    from metallo.pipeline import RunResult


def register(app: typer.Typer) -> None:
    """Add the pipeline commands to the ``metallo`` app."""

    @app.command()
    def demo(
        out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("metallo-demo"),
        seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic specimen.")] = 0,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
    ) -> None:
        """Run the whole chain on a synthetic specimen and write its Specimen file and QC report."""
        from metallo import pipeline

        with rich_progress(not quiet, lines=True) as progress:
            result = pipeline.run(pipeline.demo_recipe(out, seed=seed), progress=progress)
        _print_result(result)

    @app.command()
    def analyze(
        recipe: Annotated[Path, typer.Argument(help="Recipe YAML file (see docs/pipeline.md).")],
        force: Annotated[bool, typer.Option("--force", help="Re-run every step, even unchanged ones.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
        strict: Annotated[bool, typer.Option("--strict", help=STRICT_HELP)] = False,
    ) -> None:
        """Run one specimen through the chain described by RECIPE (resumes an interrupted run)."""
        from metallo import pipeline

        with rich_progress(not quiet, lines=True) as progress:
            result = pipeline.run(recipe, force=force, progress=progress)
        _print_result(result)
        if strict and not result.passed:
            raise typer.Exit(EXIT_CHECK_FAILED)

    @app.command()
    def batch(
        recipes: Annotated[list[Path], typer.Argument(help="Recipe files or folders of recipes.")],
        scheduler: Annotated[str | None, typer.Option("--scheduler", help="Address of an existing Dask scheduler.")] = None,
        workers: Annotated[int | None, typer.Option("--workers", "-w", min=1, help="Local worker processes (default: CPU count).")] = None,
        out: Annotated[Path, typer.Option("--out", help="Folder of summary.html and summary.csv.")] = Path("metallo-batch"),
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
        strict: Annotated[bool, typer.Option("--strict", help="Exit 3 when a specimen's checks or QC failed "
                                             "(errors exit 1 first).")] = False,
    ) -> None:
        """Run many specimens on Dask; failures are reported and do not stop the others."""
        from rich.console import Console

        from metallo.batch import run_batch

        with rich_progress(not quiet) as progress:
            result = run_batch(recipes, scheduler=scheduler, workers=workers, out_dir=out, progress=progress)
        console = Console(highlight=False, soft_wrap=True)
        for row in result.failed:
            console.print(f"failed {row['specimen']}: {row['reason']}", markup=False)
        console.print(f"{len(result.complete)} of {len(result.rows)} specimens complete; summary: {result.summary_html}",
                      markup=False)
        if result.failed:
            raise typer.Exit(1)
        if strict and result.not_passed:
            console.print(f"checks or QC failed: {', '.join(r['specimen'] for r in result.not_passed)}", markup=False)
            raise typer.Exit(EXIT_CHECK_FAILED)


    @app.command("step")
    def step_command(
        step: Annotated[str, typer.Argument(help="Step name: a recipe step (clean_ebsd, parent, register, segment, ...) or an adapter (ebsd.clean, metallo.steps).")],
        specimen: Annotated[Path, typer.Argument(help="Specimen file (.h5).")],
        set_: Annotated[list[str] | None, typer.Option("--set", help="Parameter KEY=VALUE (VALUE read as YAML); "
                                                       "repeat for several.")] = None,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing nodes.")] = False,
        strict: Annotated[bool, typer.Option("--strict", help=STRICT_HELP)] = False,
    ) -> None:
        """Run one step's adapter on SPECIMEN, with the parameters a recipe step takes."""
        import yaml

        from metallo.errors import ConfigError
        from metallo.pipeline import RECIPE_STEPS
        from metallo.specimen import Specimen
        from metallo.steps import ADAPTERS, run_step

        if step not in ADAPTERS and step not in RECIPE_STEPS:
            raise ConfigError(f"unknown step {step!r}; give a recipe step ({', '.join(RECIPE_STEPS)}) or an adapter "
                              f"({', '.join(sorted(ADAPTERS))})")
        params = {}
        for item in set_ or []:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"--set must look like KEY=VALUE; got {item!r}")
            params[key] = yaml.safe_load(value)
        # Open-modify-save under the specimen's lock: a second writer waits its turn.
        with Specimen.lock(specimen):
            spec = Specimen.open(specimen)
            # A recipe step's name runs its adapter (parent -> ebsd.parent), with the recipe's parameters.
            outputs = run_step(spec, RECIPE_STEPS.get(step, step), overwrite=overwrite, **params)
            spec.save()
        from metallo.report import quality_checks

        checks = quality_checks(spec)
        failed = False
        for node in outputs:
            check = checks.get(node)
            failed |= check is not None and not check["passed"]
            typer.echo(f"{step} -> {node}{verdict_text(check)}")
        from metallo._step import stale_nodes

        # What was made from the nodes this step replaced no longer describes them: say so now.
        stale = sorted(node for node, newer in stale_nodes(spec).items() if set(newer) & set(outputs))
        if stale:
            typer.echo(f"note: made from what this step replaced, now out of date until re-run: {', '.join(stale)}", err=True)
        if strict and failed:
            raise typer.Exit(EXIT_CHECK_FAILED)


def _print_result(result: RunResult) -> None:
    from rich.console import Console

    out = Console(highlight=False, soft_wrap=True)
    out.print(f"specimen: {result.specimen_path}", markup=False)
    if result.report_path:
        out.print(f"report:   {result.report_path}", markup=False)
    from metallo import names

    source = " (specimen: mean over its micrographs)" if result.qc_source == names.PHASES_ACROSS_MAPS else ""
    for cls, qc in result.qc.items():
        mean = f"{100 * qc['mean']:.1f}%" if "mean" in qc else "-"
        lo, hi = qc.get("ci_low"), qc.get("ci_high")
        known = all(isinstance(v, float) and math.isfinite(v) for v in (lo, hi))
        ci = f"95% CI {100 * lo:.1f}-{100 * hi:.1f}%; " if known else ""
        # A pass whose interval reaches past a limit is a pass of the mean only: say so here as the report does.
        doubt = " (the interval crosses a limit)" if qc["status"] == "pass" and qc.get("ci_inside") is False else ""
        measured = (f" (no class {cls!r} among {', '.join(qc['measured_classes'])})"
                    if qc["status"] == "missing" and qc.get("measured_classes") else "")
        out.print(f"QC {cls}{source}: {mean} ({ci}limits {100 * qc['min']:.0f}-{100 * qc['max']:.0f}%) -> "
                  f"{qc['status'].upper()}{doubt}{measured}", markup=False)
        if qc.get("reference_disagrees"):
            out.print(f"  the reference labels disagree: {qc['reference_disagrees']}", markup=False)
    if result.qc and result.qc_rests_on_failed:
        out.print(f"QC FAIL: the phase fractions rest on {', '.join(result.qc_rests_on_failed)}, which failed "
                  "its quality check; they are no QC figure", markup=False)
    for node in result.failed_checks:
        reasons = "; ".join(result.checks[node]["reasons"]) or "its quality record says failed"
        out.print(f"FAILED check {node}: {reasons}", markup=False)
    if result.checks and not result.failed_checks:
        out.print(f"checks: all {len(result.checks)} passed ({', '.join(result.checks)})", markup=False)
