"""Package-level promises: a light `import metallo`, the version, the error hierarchy, the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import metallo
from metallo import errors
from metallo._registry import Registry
from metallo.cli import app

HEAVY = ("torch", "SimpleITK", "cv2", "dask", "distributed", "matplotlib")
# What `metallo --help` must not load either (they cost most of a second together).
HELP_HEAVY = (*HEAVY, "numpy", "scipy", "pandas", "xarray", "h5py", "skimage", "pydantic")
COMMANDS = ("info", "demo", "analyze", "batch", "register", "annotate", "quantify", "train", "predict",
            "evaluate", "segment-unsupervised", "ebsd")


@pytest.mark.parametrize("statement", [
    "import metallo",
    "import metallo.io, metallo.ebsd, metallo.correlate, metallo.annotate, metallo.segment, metallo.quantify",
    "import metallo.cli",
])
def test_light_imports_do_not_load_heavy_libraries(statement):
    code = f"import sys; {statement}; print(__import__('json').dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_version_and_lazy_attributes():
    assert metallo.__version__.count(".") == 2
    assert metallo.Specimen.__name__ == "Specimen"
    with pytest.raises(AttributeError):
        metallo.no_such_thing  # noqa: B018


def test_every_error_is_a_metallo_error():
    for name in ("FormatError", "SchemaError", "ConfigError", "UnknownNameError", "RegistrationError", "ModelError"):
        assert issubclass(getattr(errors, name), errors.MetalloError)
    assert issubclass(errors.UnknownNameError, KeyError)


def test_registry_lists_valid_names_in_its_error():
    reg: Registry[int] = Registry("widget")
    reg.add("Alpha", 1)
    reg.add("beta", 2)
    assert reg.get("ALPHA") == 1 and "beta" in reg and len(reg) == 2
    with pytest.raises(errors.UnknownNameError, match="unknown widget 'gamma'; valid names: alpha, beta"):
        reg.get("gamma")
    with pytest.raises(ValueError, match="already registered"):
        reg.add("alpha", 3)


def test_cli_help_and_version():
    runner = CliRunner()
    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0 and out.output.strip() == f"metallo {metallo.__version__}"
    out = runner.invoke(app, ["--help"])
    assert out.exit_code == 0
    for command in COMMANDS:
        assert command in out.output, command


def test_cli_metallo_error_is_one_line_and_exit_1(tmp_path):
    bogus = tmp_path / "not_a_specimen.h5"
    bogus.write_text("hello")
    out = CliRunner().invoke(app, ["info", str(bogus)])
    assert out.exit_code == 1
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "not_a_specimen.h5" in lines[0]
    assert "Traceback" not in out.output


def test_import_contracts_hold(capsys):
    """The layer, private-module and acyclic contracts of .importlinter (docs/layers.md)."""
    from importlinter.cli import lint_imports

    exit_code = lint_imports(config_filename=str(Path(__file__).resolve().parents[1] / ".importlinter"))
    out = capsys.readouterr().out
    assert exit_code == 0, out
    assert "3 kept, 0 broken" in out


# name: (pattern, a line it must catch)
GLOBAL_STATE = {
    "matplotlib.use": (re.compile(r"\bmatplotlib\.use\("), 'matplotlib.use("Agg")'),
    "pyplot": (re.compile(r"\bmatplotlib\.pyplot\b|\bfrom matplotlib import pyplot\b"), "import matplotlib.pyplot as plt"),
    "torch.manual_seed": (re.compile(r"\btorch\.manual_seed\("), "    torch.manual_seed(seed)"),
    "rich": (re.compile(r"^\s*(import rich\b|from rich\b)", re.MULTILINE), "        from rich.progress import Progress"),
}


@pytest.mark.parametrize("what", sorted(GLOBAL_STATE))
def test_library_code_changes_no_global_state(what):
    """Figures via metallo._figure, progress via metallo._progress, seeds via metallo._device:
    only the command line (metallo/cli/) may switch backends, print with rich, or reseed torch."""
    pattern, example = GLOBAL_STATE[what]
    assert pattern.search(example)
    package = Path(metallo.__file__).parent
    offenders = [str(path.relative_to(package)) for path in sorted(package.rglob("*.py"))
                 if path.relative_to(package).parts[0] != "cli" and pattern.search(path.read_text(encoding="utf-8"))]
    assert offenders == [], f"{what} in library modules: {offenders}"


def test_every_help_is_light():
    """`metallo --help` and every `COMMAND --help` load no numeric library (fast help; the time
    itself is measured by hand, CPU time about 0.3 s here, not asserted)."""
    code = (
        "import sys, json\n"
        "from metallo.cli import main\n"
        f"for args in [[]] + [[c] for c in {COMMANDS!r}]:\n"
        "    try:\n"
        "        main([*args, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(json.dumps(sorted(m for m in {HELP_HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_has_no_type_noise(command):
    out = CliRunner().invoke(app, [*command.split(), "--help"])
    assert out.exit_code == 0, out.output
    assert "<bool>" not in out.output
    usage = out.output.splitlines()[0]
    assert usage.startswith("Usage: ") and "{" not in usage, usage
    if command == "analyze":
        assert usage.endswith("analyze [OPTIONS] RECIPE")


def test_cli_warnings_are_one_line_and_errors_speak_cli(tmp_path):
    import warnings

    import typer

    from metallo.cli import _MetalloGroup
    from metallo.errors import ConfigError

    demo = typer.Typer(cls=_MetalloGroup, rich_markup_mode=None)

    @demo.command()
    def step(overwrite: bool = typer.Option(False, "--overwrite")) -> None:
        warnings.warn("pixel size unknown;\n   registering in pixels", UserWarning, stacklevel=2)
        raise ConfigError("node 'ebsd/map1' already exists; pass overwrite=True to re-run step 'ebsd.clean' [x]")

    @demo.command()
    def other() -> None:
        """A second command, so that `step` stays a subcommand."""

    before = warnings.showwarning
    out = CliRunner().invoke(demo, ["step"])
    assert warnings.showwarning is before  # restored after the command
    assert out.exit_code == 1
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert lines == ["warning: pixel size unknown; registering in pixels",
                     "error: node 'ebsd/map1' already exists; pass --overwrite to re-run step 'ebsd.clean' [x]"]
