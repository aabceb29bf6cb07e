"""Many specimens on Dask distributed.

Each recipe runs as one task (``metallo.pipeline.run``) on a LocalCluster by default, or on an
existing cluster given by its scheduler address. A failing specimen is reported with a one-line
reason and does not stop the others. Because every pipeline step is saved atomically and
skipped when unchanged, re-running a batch (after a crash, a kill, or a fix to a bad input)
completes only what is missing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metallo._progress import ProgressCallback, notify
from metallo.errors import ConfigError, MetalloError

__all__ = ["BatchResult", "check_unique_ids", "collect_recipes", "run_batch"]


@dataclass
class BatchResult:
    """Outcome of :func:`run_batch`.

    Attributes
    ----------
    rows : list of dict
        One per specimen: recipe, specimen, status ("complete" | "failed"), reason, report, qc,
        and the mean fraction of each class.
    summary_html, summary_csv : Path
        The batch summary page and table.
    """

    rows: list[dict[str, Any]]
    summary_html: Path
    summary_csv: Path

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]

    @property
    def complete(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "complete"]

    @property
    def not_passed(self) -> list[dict[str, Any]]:
        """Complete specimens with a failed node or a QC fail."""
        return [r for r in self.complete if not row_passed(r)]


def row_passed(row: dict[str, Any]) -> bool:
    """A summary-table row (batch, ``metallo report``): no failed node and no QC fail."""
    return row.get("checks", "pass") == "pass" and row.get("qc", "pass") == "pass"


def collect_recipes(paths: Iterable[str | Path]) -> list[Path]:
    """Recipe files from files and folders (``*.yaml`` / ``*.yml`` in a folder, sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in (".yaml", ".yml")))
        elif p.is_file():
            out.append(p)
        else:
            raise ConfigError(f"{p}: no such recipe file or folder")
    if not out:
        raise ConfigError(f"no recipes (*.yaml, *.yml) found in {', '.join(map(str, paths))}")
    return out


def check_unique_ids(recipes: Sequence[str | Path]) -> None:
    """Refuse a batch in which two recipes name the same specimen (one would overwrite the other).

    Recipes that do not load are left to fail on their own when the batch runs.

    Parameters
    ----------
    recipes : sequence of paths
        Recipe files.

    Raises
    ------
    ConfigError
        Two recipes share a specimen id or a specimen file; the message names both.

    Examples
    --------
    >>> check_unique_ids(["S1.yaml", "S2.yaml"])  # doctest: +SKIP
    """
    import warnings

    from metallo._recipe import load_recipe

    seen: dict[str, str] = {}
    for path in map(str, recipes):
        try:
            # A recipe's warnings (an absolute output folder, ...) print once, from the worker
            # that runs it and named by it; here they printed a second time for every recipe.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                recipe = load_recipe(path)
        except MetalloError:
            continue
        for key in (f"id {recipe.specimen_id!r}", f"file {recipe.specimen_path}"):
            if key in seen:
                raise ConfigError(
                    f"batch: recipes {seen[key]} and {path} both write specimen {key}; give "
                    "each specimen its own id (nothing was run)"
                )
            seen[key] = path


def _run_one(recipe_path: str) -> dict[str, Any]:
    """Run one recipe (in a worker) and summarise it for the batch table."""
    import sys
    import warnings

    from metallo import pipeline

    def one_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:
        # A worker's warnings as the command line prints them: the message, named by its recipe
        # (the default format adds metallo's file, line and source line, once per worker).
        print(f"warning: {Path(recipe_path).name}: {' '.join(str(message).split())}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.showwarning = one_line
        result = pipeline.run(recipe_path)
    row: dict[str, Any] = {
        "recipe": recipe_path,
        "specimen": result.specimen_id,
        "status": "complete",
        "reason": "",
        "steps_run": len(result.ran),
        "report": str(result.report_path or ""),
    }
    # Failed steps beside the limits: a fraction within limits on a failed registration is no pass.
    row["checks"] = ("fail: " + ", ".join(result.failed_checks)) if result.failed_checks else "pass"
    if result.qc:
        row["qc"] = "pass" if result.qc_passed else "fail"
        for cls, v in result.qc.items():
            row[f"{cls} (%)"] = round(100 * v["mean"], 2) if "mean" in v else float("nan")
            # The interval beside the mean: a pass whose interval crosses a limit is a pass of the mean only.
            for end in ("ci_low", "ci_high"):
                value = v.get(end)
                row[f"{cls} {end.replace('_', ' ')} (%)"] = round(100 * value, 2) if isinstance(value, float) else float("nan")
    row.update(_grain_columns(result.specimen_path))
    return row


def _grain_columns(specimen_path: Path) -> dict[str, Any]:
    """Each EBSD map's indexed share (and the share its cleanup invented), the E112 planimetric G
    of each EBSD grain-size table of a specimen, with whether it is a size statistic, and its twin
    shares: what a batch of EBSD specimens is compared by."""
    from metallo import names
    from metallo.report import ebsd_key_figures, stored_misorientation_summary
    from metallo.specimen import Specimen

    out: dict[str, Any] = {}
    if not Path(specimen_path).is_file():
        return out
    spec = Specimen.open(specimen_path)
    # Each map's indexed share, and what its cleanup invented: the first thing to compare
    # across a batch of maps (MTEX's serial sections: S00 is 75.6 % indexed, its cleanup
    # invented 27 %; the others index 96-100 %).
    for node in names.members(spec.nodes(), names.EBSD):
        if "phase" in spec[node]:
            figures = ebsd_key_figures(spec, node)
            source = node.replace("/", ".")
            out[f"indexed % {source}"] = round(float(figures["indexed_pct"]), 1)
            if spec[node].attrs.get("cleanup"):
                out[f"invented % {source}"] = round(float(figures["invented_pct"]), 1)
    # The scale between a registration's two calibrations (about 1): a specimen whose micrograph
    # pixel size is wrong stands out in the batch, beside its lengths.
    from metallo.correlate import calibration_scale

    for node in names.members(spec.nodes(), names.REGISTRATION):
        raw = spec.describe(node)["attrs"].get(names.QUALITY)
        quality = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
        far = calibration_scale(quality)
        if far is not None:
            out[f"calibration scale {names.leaf(node)}"] = round(far, 3)
            out[f"calibration {names.leaf(node)} consistent"] = "yes" if quality["calibration"].get("consistent") else "no"
    for node in spec.nodes():
        leaf = names.leaf(node)
        source = leaf.rsplit(".", 1)[0]
        if leaf.endswith("." + names.GRAIN_SIZE):
            rows = spec.table(node)
            planimetric = rows[rows["method"] == "planimetric"]
            if len(planimetric):
                out[f"G {source}"] = round(float(planimetric["G"].iloc[0]), 2)
                out[f"G {source} reliable"] = "yes" if bool(planimetric["reliable"].iloc[0]) else "no"
        elif leaf.endswith("." + names.TWINS):
            for _, twin in spec.table(node).iterrows():
                if twin["n_segments"]:
                    out[f"{twin['twin']} {source} {twin['phase']} (% boundaries)"] = round(100 * float(twin["share"]), 1)
        elif leaf.endswith("." + names.TEXTURE):
            for _, fibre in spec.table(node).iterrows():
                out[f"{str(fibre['fibre']).split(' ')[0]} || ND {source} {fibre['phase']} (% area)"] = round(100 * float(fibre["share"]), 1)
                if "reliable" in fibre.index:  # a texture of fewer than 100 grains says so, as G does
                    out[f"texture {source} {fibre['phase']} reliable"] = "yes" if bool(fibre["reliable"]) else "no"
        elif leaf.endswith("." + names.MISORIENTATIONS):
            # The high-angle share of each phase's grain boundaries (recrystallised against
            # deformed), from the summary its step recorded.
            for phase, summary in stored_misorientation_summary(spec, node).items():
                out[f"HAGB {source} {phase} (% boundaries)"] = round(100 * float(summary["hagb_share"]), 1)
                out[f"HAGB {source} {phase} reliable"] = "no" if summary.get("note") else "yes"  # >= 50 grain pairs
    return out


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def run_batch(
    recipes: Sequence[str | Path],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    out_dir: str | Path = "metallo-batch",
    progress: ProgressCallback | None = None,
) -> BatchResult:
    """Run many recipes on Dask distributed and write a batch summary.

    Parameters
    ----------
    recipes : sequence of paths
        Recipe files or folders of recipes.
    scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://host:8786``); a LocalCluster otherwise.
    workers : int, optional
        Worker processes of the LocalCluster (one thread each); default: the CPU count.
    out_dir : path
        Folder of ``summary.html`` and ``summary.csv``.
    progress : callable, optional
        ``progress(done, total, description)`` after each specimen (see
        :mod:`metallo._progress`).

    Returns
    -------
    BatchResult

    Examples
    --------
    Not run by the doctest suite (it starts a Dask cluster; ``tests/pipeline`` runs batches):

    >>> result = run_batch(["recipes/"], workers=2)  # doctest: +SKIP
    >>> [r["specimen"] for r in result.failed]  # doctest: +SKIP
    """
    import os

    from dask.distributed import Client, LocalCluster, as_completed

    from metallo.report import write_batch_summary

    files = [str(p.resolve()) for p in collect_recipes(recipes)]
    check_unique_ids(files)
    if scheduler:
        client = Client(scheduler)
        cluster = None
    else:
        n = int(workers or os.cpu_count() or 1)
        if n < 1:
            raise ConfigError(f"workers must be >= 1; got {workers}")
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
    rows: dict[str, dict[str, Any]] = {}
    try:
        futures = {client.submit(_run_one, f, key=f"metallo-{i}-{Path(f).stem}", pure=False): f
                   for i, f in enumerate(files)}
        notify(progress, 0, len(files), "batch: specimens")
        for future in as_completed(futures):
            recipe = futures[future]
            if future.status == "error":
                rows[recipe] = {"recipe": recipe, "specimen": Path(recipe).stem, "status": "failed",
                                "reason": _one_line(future.exception()), "steps_run": 0, "report": ""}
            else:
                rows[recipe] = future.result()
            notify(progress, len(rows), len(files), "batch: specimens")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    ordered = [rows[f] for f in files]
    html_path, csv_path = write_batch_summary(ordered, out_dir)
    return BatchResult(ordered, html_path, csv_path)
