"""Core commands: ``metallo info`` and ``metallo demo``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the core commands to the ``metallo`` app."""
