"""The ``metallo`` command line: a thin layer over the library.

Each module contributes its commands from ``metallo/<module>/_cli.py`` through a
``register(app)`` function; those modules import heavy libraries only inside the commands,
so ``metallo --help`` stays fast. A :class:`~metallo.errors.MetalloError` is printed as one
red line and the exit code is 1.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from metallo import __version__
from metallo.errors import MetalloError, user_message

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class _MetalloGroup(TyperGroup):
    """Turns a MetalloError from any command into one red line and exit code 1."""

    def invoke(self, ctx: Any) -> Any:  # typer vendors click; its Context type is private
        try:
            return super().invoke(ctx)
        except MetalloError as exc:
            from rich.markup import escape

            # File names and file content are user text: never Rich markup ('x[/b].h5').
            err_console.print(f"[red]error:[/red] {escape(user_message(exc))}")
            ctx.exit(1)


app = typer.Typer(
    cls=_MetalloGroup,
    name="metallo",
    help="Quantitative metallography: EBSD, registration, annotation, segmentation, quantification.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_COMMAND_MODULES = (
    "metallo._cli_core",
    "metallo.ebsd._cli",
    "metallo.correlate._cli",
    "metallo.annotate._cli",
    "metallo.segment._cli",
    "metallo.segment._cli_unsupervised",
    "metallo.quantify._cli",
    "metallo._cli_pipeline",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"metallo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """metallo: follow one specimen from microscope to number."""


for _name in _COMMAND_MODULES:
    if importlib.util.find_spec(_name) is not None:
        importlib.import_module(_name).register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``metallo`` console script."""
    app(args=argv)


if __name__ == "__main__":  # pragma: no cover
    main()
