"""The ``metallo`` command line: a thin layer over the library.

Each step has one module ``metallo/cli/_<step>.py`` that adds its commands through a
``register(app)`` function; those modules import heavy libraries only inside the commands,
so ``metallo --help`` stays fast. While a command runs:

- a :class:`~metallo.errors.MetalloError` is printed as one red line, in the command line's
  words (``--overwrite``, not ``overwrite=True``), and the exit code is 1;
- a warning is printed as one line (``warning: ...``), without the library source line;
- with ``--strict`` (``analyze``, ``batch``, ``report``, ``step``, ``register``, ``predict``,
  ``segment-unsupervised``), a run that finished but whose result failed its quality check (a
  failed registration, a failed node, a QC FAIL, an UNCERTAIN or DOUBTFUL segmentation) exits with
  :data:`metallo.cli._strict.EXIT_CHECK_FAILED` (3), so that a script tells an untrustworthy result (3) from one that
  could not be made (1);
- library progress callbacks are rendered with rich (:mod:`metallo.cli._progress`).

Help is plain text; it lists flags without a ``<bool>`` type and arguments in capitals
(``RECIPE``).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
import warnings
from collections.abc import Sequence
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperArgument, TyperGroup, TyperOption

from metallo import __version__
from metallo.errors import MetalloError, user_message

err_console = Console(stderr=True, highlight=False, soft_wrap=True)

# A library keyword in an error message: ``overwrite=True``, ``device='cpu'``, ``tile=0``.
_KEYWORD = re.compile(r"\b([a-z][a-z0-9_]*)=(True|False|'[^']*'|\"[^\"]*\"|[-\w.]+)")


def cli_words(message: str, options: Sequence[str]) -> str:
    """Rewrite a library error message in the command line's words, on one line.

    ``name=value`` becomes the command's option where the command has one called ``name``
    (``overwrite=True`` -> ``--overwrite``, ``device='cpu'`` -> ``--device cpu``); other
    text is kept.

    Examples
    --------
    >>> cli_words("node exists; pass overwrite=True to re-run", ["overwrite"])
    'node exists; pass --overwrite to re-run'
    >>> cli_words("no GPU;  use device='cpu' or 'auto'", ["device"])
    "no GPU; use --device cpu or 'auto'"
    >>> cli_words("pass weights='x.pth'", ["overwrite"])
    "pass weights='x.pth'"
    """

    def replace(match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2)
        flag = "--" + name.replace("_", "-")
        if flag not in options and name not in options:
            return match.group(0)
        if value == "True":
            return flag
        if value == "False":
            return "--no-" + name.replace("_", "-")
        return f"{flag} {value.strip(chr(39) + chr(34))}"

    return _KEYWORD.sub(replace, " ".join(message.split()))


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: Any = None, line: str | None = None) -> None:
    """``warnings.showwarning`` of the command line: the message alone, on one line."""
    err_console.print(f"[yellow]warning:[/yellow] {escape(user_message(str(message)))}")


def _usage_name(param: TyperArgument) -> str:
    name = (param.name or "").upper() + ("..." if param.nargs != 1 else "")
    return name if param.required else f"[{name}]"


def _plain_help(params: Sequence[Any]) -> None:
    """Flags show no ``<bool>`` type; arguments show as NAME in usage lines, not ``{name}``."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
            if param.default is None and param.type_descriptor.annotation is bool and not param.secondary_opts:
                # --help: an absent flag is False, which typer passes through without loading
                # its pydantic coercion layer (a third of the help's start-up time). A tri-state
                # --x/--no-x flag keeps None: there "absent" means "decide" (--tta, --uncertainty).
                param.default = False
        elif isinstance(param, TyperArgument) and param.metavar is None:
            param.metavar = (param.name or "").upper()
            # typer wraps required arguments in braces in usage lines; say NAME as click does.
            param._usage_display_name = functools.partial(_usage_name, param)  # type: ignore[method-assign]


class _MetalloGroup(TyperGroup):
    """Runs every command with CLI-worded errors and one-line warnings; plain help."""

    def get_params(self, ctx: Any) -> list[Any]:  # typer vendors click; its Context type is private
        params = super().get_params(ctx)
        _plain_help(params)
        return params

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _plain_help(command.get_params(ctx))
        return command

    def invoke(self, ctx: Any) -> Any:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            try:
                return super().invoke(ctx)
            except MetalloError as exc:
                command = self.get_command(ctx, ctx.invoked_subcommand or "")
                options = [opt for p in (command.params if command else []) for opt in p.opts]
                # One printable line of bounded length (a corrupt file's content is quoted short),
                # escaped: "[0.3, 0.45]" or 'x[/b].h5' in a message is text, not rich markup.
                err_console.print(f"[red]error:[/red] {escape(user_message(cli_words(str(exc), options)))}")
                ctx.exit(1)


app = typer.Typer(
    cls=_MetalloGroup,
    name="metallo",
    help="Quantitative metallography: EBSD, registration, annotation, segmentation, quantification.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help text: it renders in a fifth of the time of rich's panels (metallo --help
    # stays well under 0.5 s) and reads the same in a terminal, a pipe or a log.
    rich_markup_mode=None,
)

_COMMAND_MODULES = (
    "metallo.cli._core",
    "metallo.cli._io",
    "metallo.cli._ebsd",
    "metallo.cli._parent",
    "metallo.cli._correlate",
    "metallo.cli._annotate",
    "metallo.cli._segment",
    "metallo.cli._segment_unsupervised",
    "metallo.cli._quantify",
    "metallo.cli._pipeline",
    "metallo.cli._report",
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
    app(args=argv, prog_name="metallo")

