"""The QC report: one self-contained HTML file per specimen (figures embedded as PNG data URIs,
inline CSS, no scripts), and a batch summary page with a CSV beside it.

Pages are rendered from jinja2 templates (``metallo/report/templates``) with autoescaping, so
user text (specimen ids, material, class names, process fields) is always shown as text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metallo._atomic import atomic_write_text
from metallo._version import __version__
from metallo.report._sections import report_sections

__all__ = ["report_is_current", "report_key", "write_batch_summary", "write_report"]


@cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("metallo.report", "templates"),
        autoescape=True,  # every template is HTML: escape all substituted text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def report_key(spec: Any, limits: Mapping[str, Sequence[float]] | None) -> str:
    """What a report shows depends on: the specimen's steps so far and the QC limits."""
    state = {"provenance": spec.provenance, "limits": dict(limits or {}), "version": __version__}
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:16]


def report_is_current(path: str | Path, spec: Any, limits: Mapping[str, Sequence[float]] | None) -> bool:
    """True when ``path`` is a report of this specimen state and these limits (no need to rewrite)."""
    path = Path(path)
    if not path.is_file():
        return False
    head = path.read_text(encoding="utf-8", errors="replace")[:2000]
    return f'<meta name="metallo-report-key" content="{report_key(spec, limits)}">' in head


def write_report(specimen: Any, out: str | Path, *, limits: Mapping[str, Sequence[float]] | None = None) -> Path:
    """Write the QC report of one specimen as a self-contained HTML file.

    Parameters
    ----------
    specimen : Specimen or path
        The specimen (its file holds everything the report shows).
    out : path
        The HTML file to write (atomically).
    limits : mapping, optional
        Phase-fraction limits ``{class: [min, max]}`` as fractions; pass/fail is shown for them.

    Returns
    -------
    Path
        ``out``.

    Examples
    --------
    >>> from metallo.synth import write_demo_specimen
    >>> specimen = write_demo_specimen("S1", ebsd_shape=(40, 40))        # a small synthetic specimen file
    >>> report = write_report(specimen, "S1/S1_report.html", limits={"lath_bainite": [0.3, 0.45]})
    >>> report.name, report.is_file()
    ('S1_report.html', True)
    """
    from metallo.specimen import Specimen

    spec = specimen if isinstance(specimen, Specimen) else Specimen.open(specimen)
    limits = dict(limits or {})
    page = _environment().get_template("report.html.j2").render(
        key=report_key(spec, limits),
        specimen_id=spec.attrs.get("specimen_id", "?"),
        sections=report_sections(spec, limits),
        version=__version__,
        created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        source=Path(str(spec.path)).name,
    )
    return atomic_write_text(out, page + "\n")


def _batch_cell(column: str, value: Any, out_dir: Path) -> dict[str, Any]:
    if column == "report" and isinstance(value, str) and value:
        rel = Path(value)
        try:
            rel = rel.relative_to(out_dir.resolve())
        except ValueError:
            pass
        return {"text": "report", "link": rel.as_posix()}
    if column in ("status", "qc") and isinstance(value, str):
        badge = {"complete": "pass", "pass": "pass", "failed": "fail", "fail": "fail"}.get(value, "missing")
        return {"text": value, "badge": badge, "numeric": False, "link": ""}
    if isinstance(value, (float, np.floating)):
        return {"text": "" if np.isnan(value) else f"{float(value):.4g}", "numeric": True, "badge": "", "link": ""}
    return {"text": str(value), "numeric": False, "badge": "", "link": ""}


def write_batch_summary(rows: Sequence[Mapping[str, Any]], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``summary.html`` and ``summary.csv`` for a batch of specimens.

    Parameters
    ----------
    rows : sequence of mappings
        One per specimen: ``specimen``, ``status`` ("complete" | "failed"), ``reason``,
        ``report`` (path), and ``<class>`` fraction / ``qc`` entries.
    out_dir : path

    Returns
    -------
    (Path, Path)
        The HTML page and the CSV file.

    Examples
    --------
    >>> write_batch_summary([{"specimen": "S1", "status": "complete", "report": ""}], "batch")  # doctest: +SKIP
    """
    out_dir = Path(out_dir)
    df = pd.DataFrame(list(rows))
    csv_path = atomic_write_text(out_dir / "summary.csv", df.to_csv(index=False))
    n_ok = int((df["status"] == "complete").sum()) if len(df) else 0
    table_rows = [[_batch_cell(str(col), value, out_dir) for col, value in row.items()] for _, row in df.iterrows()]
    page = _environment().get_template("batch.html.j2").render(
        n_ok=n_ok, n_total=len(df), columns=[str(c) for c in df.columns], rows=table_rows, version=__version__)
    html_path = atomic_write_text(out_dir / "summary.html", page + "\n")
    return html_path, csv_path
