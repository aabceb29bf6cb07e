"""Core commands: ``metallo info`` (``metallo demo`` comes from metallo.synth)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

_MAX_ATTR = 70


def _short(value: Any, limit: int = _MAX_ATTR) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def info(file: Path = typer.Argument(..., help="A specimen file (.h5).")) -> None:  # noqa: B008
    """Show a specimen: root metadata, nodes with variables, shapes, dtypes, units, provenance."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.tree import Tree

    from metallo.specimen import Specimen

    spec = Specimen.open(file, lazy=True)
    console = Console(highlight=False)
    tree = Tree(f"[bold]{escape(spec.specimen_id)}[/bold]  {escape(str(spec.path))}")
    for key, value in spec.attrs.items():
        if key != "process":
            tree.add(f"[cyan]{escape(key)}[/cyan] = {escape(_short(value))}")
    process = tree.add("[cyan]process[/cyan]")
    for key, value in spec.process.items():
        text = value if isinstance(value, str) else json.dumps(value)
        process.add(f"[cyan]{escape(key)}[/cyan] = {escape(_short(text))}")
    groups: dict[str, Tree] = {}
    for node in spec.nodes():
        description = spec.describe(node)
        parent_key, _, name = node.rpartition("/")
        parent = groups.get(parent_key)
        if parent is None:
            parent = groups[parent_key] = tree.add(f"[bold blue]{escape(parent_key)}/[/bold blue]")
        sizes = ", ".join(f"{k}: {v}" for k, v in description["dims"].items())
        branch = groups[node] = parent.add(f"[bold]{escape(name)}[/bold]  ({escape(sizes)})")
        for var_name, var in description["variables"].items():
            shape = "×".join(str(n) for n in var["shape"]) or "scalar"
            dims = ", ".join(var["dims"])
            units = var["attrs"].get("units", "")
            unit_text = f"  [{escape(str(units))}]" if units else ""
            branch.add(
                f"[green]{escape(var_name)}[/green] ({escape(dims)}) {shape} {var['dtype']}{escape(unit_text)}"
            )
        for coord_name in ("y", "x"):
            coord = description["coords"].get(coord_name)
            if coord and coord["shape"]:
                units = escape(f"[{coord['attrs'].get('units', '?')}]")
                branch.add(f"[dim]{coord_name}: {coord['shape'][0]} points {units}[/dim]")
        for key, value in description["attrs"].items():
            branch.add(f"[cyan]{escape(key)}[/cyan] = {escape(_short(value))}")
    console.print(tree)
    table = Table(title="provenance", show_lines=False)
    for column in ("#", "step", "time (UTC)", "inputs", "outputs", "parameters", "version"):
        table.add_column(column)
    for i, record in enumerate(spec.provenance):
        table.add_row(
            str(i),
            escape(record["step"]),
            escape(record["time_utc"][:19].replace("T", " ")),
            escape(_short(", ".join(record["inputs"]), 40)),
            escape(_short(", ".join(record["outputs"]), 40)),
            escape(_short(json.dumps(record["parameters"]), 50)),
            escape(record["metallo_version"]),
        )
    console.print(table)
    # The verdicts are in the nodes' quality attrs above, cut short; say them whole, failures first.
    from metallo.report import quality_checks

    checks = quality_checks(spec)
    for node, check in sorted(checks.items(), key=lambda item: item[1]["passed"]):
        reasons = "; ".join(map(str, check["reasons"]))
        console.print(f"{'PASS' if check['passed'] else 'FAIL'} {escape(node)}" + (f": {escape(reasons)}" if reasons else ""),
                      soft_wrap=True)
    if not checks:
        console.print("checks: no node gives a verdict")


def register(app: typer.Typer) -> None:
    """Add the core commands to the ``metallo`` app."""
    app.command("info")(info)
