"""The QC report: one self-contained HTML file per specimen (figures embedded as PNG data URIs,
inline CSS, no scripts), and a batch summary page with a CSV beside it."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metallo._atomic import atomic_write_text
from metallo._version import __version__
from metallo.report import _figures as figs

__all__ = ["report_is_current", "report_key", "write_batch_summary", "write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{border-bottom:3px solid #0072b2;padding-bottom:.2em}
h2{margin-top:1.6em;color:#0072b2}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eef4f8}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{background:#d9f2e3;color:#0a5c2f;font-weight:bold}
.fail{background:#f9dcdc;color:#8a1414;font-weight:bold}
.missing{background:#fff3cd}
.badge{display:inline-block;padding:.15em .6em;border-radius:.3em}
img{max-width:100%;height:auto;border:1px solid #ddd}
.meta td:first-child{font-weight:bold;width:14em}
footer{margin-top:3em;font-size:.8em;color:#666}
.scroll{overflow-x:auto;max-width:100%}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _table(df: pd.DataFrame, *, float_format: str = "{:.4g}", classes: Mapping[int, str] | None = None) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in df.columns)
    rows = []
    for i, (_, row) in enumerate(df.iterrows()):
        cells = []
        for value in row:
            if isinstance(value, (float, np.floating)):
                cells.append(f'<td class="num">{float_format.format(float(value))}</td>')
            elif isinstance(value, (int, np.integer)):
                cells.append(f'<td class="num">{int(value)}</td>')
            else:
                cells.append(f"<td>{_esc(value)}</td>")
        cls = f' class="{classes[i]}"' if classes and i in classes else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _img(uri: str, alt: str) -> str:
    return f'<p><img src="{uri}" alt="{_esc(alt)}"></p>'


def _qc_table(qc: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for cls, r in qc.items():
        status = r["status"]
        if status == "missing":
            rows.append(f'<tr><td>{_esc(cls)}</td><td colspan="3">class not found in the segmentation</td>'
                        f'<td class="num">{r["min"] * 100:.1f}–{r["max"] * 100:.1f}</td>'
                        f'<td><span class="badge missing">MISSING</span></td></tr>')
            continue
        note = "" if r["ci_inside"] else " (CI crosses a limit)"
        rows.append(
            f"<tr><td>{_esc(cls)}</td><td class=num>{r['mean'] * 100:.1f}</td>"
            f"<td class=num>{r['ci_low'] * 100:.1f}</td><td class=num>{r['ci_high'] * 100:.1f}</td>"
            f"<td class=num>{r['min'] * 100:.1f}–{r['max'] * 100:.1f}</td>"
            f'<td><span class="badge {status}">{status.upper()}</span>{_esc(note)}</td></tr>'
        )
    return ("<table><thead><tr><th>class</th><th>mean (%)</th><th>95% CI low (%)</th><th>95% CI high (%)</th>"
            f"<th>limits (%)</th><th>QC</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _nodes(spec: Any, prefix: str) -> list[str]:
    return [n for n in spec.nodes() if n.startswith(prefix) and n.count("/") == 1]


def _registration_figure(spec: Any, node: str) -> str | None:
    """Checkerboards before/after and the colour overlay of a stored registration, as a data URI."""
    import base64
    import tempfile

    from metallo.correlate import Registration, overlay_figure
    from metallo.ebsd import map_image

    ds = spec[node]
    fixed, moving = str(ds.attrs.get("fixed", "")), str(ds.attrs.get("moving", ""))
    if fixed not in spec or moving not in spec:
        return None
    moving_ds = spec[moving]
    moving_image = moving_ds["image"] if "image" in moving_ds else map_image(moving_ds)
    with tempfile.TemporaryDirectory() as tmp:
        png = overlay_figure(Registration.from_dataset(ds), spec[fixed]["image"], moving_image, Path(tmp) / "reg.png")
        return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _particles_class(spec: Any) -> str:
    for record in reversed(spec.provenance):
        if "quantities/particles" in (record.get("outputs") or []):
            params = record.get("parameters") or {}
            return str(params.get("class", "particles"))
    return "particles"


def _grain_ecd_um(spec: Any) -> np.ndarray | None:
    derived = [n for n in spec.nodes() if n.startswith("ebsd/") and n.endswith("/derived")]
    if not derived:
        return None
    node = derived[0]
    ds = spec[node]
    if "grain_id" not in ds:
        return None
    step = float(spec[node.rsplit("/", 1)[0]].attrs["step_um"])
    ids = ds["grain_id"].values.ravel()
    counts = np.bincount(ids[ids >= 0])
    counts = counts[counts > 0]
    return np.sqrt(4.0 * counts * step * step / np.pi)


def report_key(spec: Any, limits: Mapping[str, Sequence[float]] | None) -> str:
    """What a report shows depends on: the specimen's steps so far and the QC limits."""
    import hashlib

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
    from metallo.pipeline import qc_status
    from metallo.specimen import Specimen

    spec = specimen if isinstance(specimen, Specimen) else Specimen.open(specimen)
    limits = dict(limits or {})
    attrs = spec.attrs
    sid = attrs.get("specimen_id", "?")
    parts: list[str] = [f"<h1>QC report — specimen {_esc(sid)}</h1>"]

    process = attrs.get("process", "{}")
    process = json.loads(process) if isinstance(process, str) else dict(process)
    meta = [("specimen", sid), ("material", attrs.get("material", "")),
            *[(k.replace("_", " "), v) for k, v in process.items()],
            ("metallo version", attrs.get("metallo_version", "")),
            ("micrographs", ", ".join(n.split("/", 1)[1] for n in _nodes(spec, "micrographs/")) or "none"),
            ("EBSD maps", ", ".join(n.split("/", 1)[1] for n in _nodes(spec, "ebsd/")) or "none")]
    parts.append("<h2>Specimen and process</h2><table class=meta>"
                 + "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in meta) + "</table>")

    qc: dict[str, Any] = {}
    if "quantities/phase_fractions" in spec:
        table = spec.table("quantities/phase_fractions")
        qc = qc_status(table, limits)
        parts.append("<h2>Phase fractions and QC</h2>")
        if qc:
            verdict = "pass" if all(r["status"] == "pass" for r in qc.values()) else "fail"
            parts.append(f'<p>Overall: <span class="badge {verdict}">{verdict.upper()}</span></p>' + _qc_table(qc))
        parts.append("<h3>Overall, over fields (ASTM E562)</h3>" + _table(table))
        parts.append(_img(figs.png_data_uri(figs.fractions_figure(table, limits)), "phase fractions"))
        if "quantities/phase_fields" in spec:
            fields = spec.table("quantities/phase_fields")
            wide = fields.pivot_table(index="field", columns="class", values="fraction").reset_index()
            parts.append("<h3>Per field</h3>" + _table(wide))

    for node in _nodes(spec, "segmentations/"):
        name = node.split("/", 1)[1]
        seg = spec[node]
        labels = seg["labels"]
        classes = json.loads(labels.attrs.get("classes", "[]"))
        mic = f"micrographs/{name}"
        if mic in spec:
            image = spec[mic]["image"]
            extent = (float(image.y[-1] - image.y[0]), float(image.x[-1] - image.x[0]))
            fig = figs.overlay_figure(image.values, labels.values, classes, extent_um=extent)
            parts.append(f"<h2>Segmentation — {_esc(name)} ({_esc(labels.attrs.get('model', ''))})</h2>")
            parts.append(_img(figs.png_data_uri(fig), f"segmentation overlay {name}"))

    if "quantities/particles" in spec:
        particles = spec.table("quantities/particles")
        column = "ecd_um" if "ecd_um" in particles else particles.columns[0]
        what = _particles_class(spec)
        parts.append(f"<h2>Size distribution — {_esc(what)}</h2>")
        if len(particles):
            parts.append(f"<p>{len(particles)} particles (edge-touching ones excluded); median ECD "
                         f"{np.median(particles[column]):.3g} µm.</p>")
        parts.append(_img(figs.png_data_uri(figs.histogram_figure(particles[column].to_numpy(), xlabel="ECD (µm)",
                                                                     title=f"size distribution: {what}")), "PSD"))
    grain_ecd = _grain_ecd_um(spec)
    if grain_ecd is not None or "quantities/grain_size" in spec:
        parts.append("<h2>Grain size</h2>")
        if "quantities/grain_size" in spec:
            parts.append(_table(spec.table("quantities/grain_size")))
        if grain_ecd is not None:
            parts.append(_img(figs.png_data_uri(figs.histogram_figure(grain_ecd, xlabel="grain ECD (µm)",
                                                                         title="EBSD grain size distribution")), "grain size"))

    regs = _nodes(spec, "registration/")
    if regs:
        parts.append("<h2>Registration quality</h2>")
        rows = []
        for node in regs:
            ds = spec[node]
            quality = ds.attrs.get("quality", "{}")
            quality = json.loads(quality) if isinstance(quality, str) else dict(quality)
            flat = {k: v for k, v in quality.items() if isinstance(v, (int, float, str, bool))}
            rows.append({"registration": node.split("/", 1)[1], "fixed": ds.attrs.get("fixed", ""),
                         "moving": ds.attrs.get("moving", ""), "transform": ds.attrs.get("transform_type", ""), **flat})
        parts.append(_table(pd.DataFrame(rows)))
        for node in regs:
            uri = _registration_figure(spec, node)
            if uri:
                parts.append(_img(uri, f"registration {node}"))

    prov = pd.DataFrame(
        [{"#": i + 1, "step": r.get("step", ""), "outputs": ", ".join(r.get("outputs") or []),
          "inputs": ", ".join(r.get("inputs") or []), "time (UTC)": r.get("time_utc", r.get("time", "")),
          "version": r.get("metallo_version", "")} for i, r in enumerate(spec.provenance)]
    )
    parts.append("<h2>Provenance</h2>" + (_table(prov) if len(prov) else "<p>no steps recorded</p>"))
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(parts)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="metallo-report-key" content="{report_key(spec, limits)}">'
            f"<title>metallo QC — {_esc(sid)}</title><style>{_CSS}</style></head><body>{body}"
            f"<footer>metallo {__version__} — written {created} from {_esc(Path(str(spec.path)).name)}</footer>"
            f"</body></html>\n")
    return atomic_write_text(out, page)


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
    """
    out_dir = Path(out_dir)
    df = pd.DataFrame(list(rows))
    csv_path = atomic_write_text(out_dir / "summary.csv", df.to_csv(index=False))
    n_ok = int((df["status"] == "complete").sum()) if len(df) else 0
    head = "".join(f"<th>{_esc(c)}</th>" for c in df.columns)
    body_rows = []
    for _, row in df.iterrows():
        cells = []
        for col, value in row.items():
            if col == "report" and isinstance(value, str) and value:
                rel = Path(value)
                try:
                    rel = rel.relative_to(out_dir.resolve())
                except ValueError:
                    pass
                cells.append(f'<td><a href="{_esc(rel.as_posix())}">report</a></td>')
            elif col in ("status", "qc") and isinstance(value, str):
                cls = {"complete": "pass", "pass": "pass", "failed": "fail", "fail": "fail"}.get(value, "")
                cells.append(f'<td><span class="badge {cls}">{_esc(value)}</span></td>')
            elif isinstance(value, (float, np.floating)):
                cells.append("<td></td>" if np.isnan(value) else f'<td class="num">{float(value):.4g}</td>')
            else:
                cells.append(f"<td>{_esc(value)}</td>")
        body_rows.append(f"<tr>{''.join(cells)}</tr>")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>metallo batch summary</title>'
            f"<style>{_CSS}</style></head><body><h1>Batch summary</h1>"
            f"<p>{n_ok} of {len(df)} specimens complete.</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body_rows)}</tbody></table>"
            f'<p><a href="summary.csv">summary.csv</a></p><footer>metallo {__version__}</footer></body></html>\n')
    html_path = atomic_write_text(out_dir / "summary.html", page)
    return html_path, csv_path
