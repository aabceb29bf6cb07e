"""Shared test configuration.

Tests that need the real public example data take the ``shared_data`` / ``shared_file``
fixtures, which resolve through :mod:`metallo.datasets`: the folder named by ``METALLO_DATA``
(CI sets it to ``../shared/data``), else ``../shared/data`` beside the repository. Registered
files are checked against their SHA-256. The tests skip with a reason naming ``METALLO_DATA``
in a plain clone, and fail in CI, where ``.ci/run`` sets ``METALLO_REQUIRE_SHARED_DATA=1``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

from metallo import datasets
from metallo.errors import DataNotFoundError, UnknownNameError

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores: one BLAS/torch thread each avoids oversubscription.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = datasets.data_folder() or REPO_ROOT.parent / "shared" / "data"
REQUIRE_SHARED_DATA = os.environ.get("METALLO_REQUIRE_SHARED_DATA", "") == "1"


def _absent(path: Path) -> str:
    return (f"real example data not found at {path}: set {datasets.DATA_ENV} to the folder of the "
            "example data sets (see docs/datasets.md)")


def _missing_shared(reason: str) -> NoReturn:
    if REQUIRE_SHARED_DATA:
        pytest.fail(f"{reason}; METALLO_REQUIRE_SHARED_DATA=1 makes this a failure", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The example-data folder (``METALLO_DATA`` or ``../shared/data``); skips (fails in CI) when absent."""
    if not SHARED_DATA.is_dir():
        _missing_shared(_absent(SHARED_DATA))
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_file(shared_data: Path):
    """``shared_file("ebsd_ang/x.ang")`` -> Path, SHA-256-checked when registered; skips if absent.

    A data set name (``"ebsd_ang"``) gives its folder; an unregistered path inside the folder
    (a sub-folder such as ``"uhcs_microconstituent_segmentation/images"``) is returned as is.
    """

    def get(relative: str) -> Path:
        try:
            return datasets.path(relative, folder=shared_data, download=False)
        except UnknownNameError:
            path = shared_data / relative
            if not path.exists():
                _missing_shared(_absent(path))
            return path
        except DataNotFoundError as exc:
            _missing_shared(f"{exc} (see docs/datasets.md)")

    return get


@pytest.fixture(autouse=True)
def _run_in_a_scratch_folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in an empty working folder of its own: whatever a command or function
    writes by default (``metallo-runs/``, ``SPECIMEN-quantities/``) lands there, never in the
    repository."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


# Files that may appear in the repository during a run: the interpreter's and the tools' own
# caches (a linter run beside the tests is not the tests' doing).
_RUN_CACHES = ("__pycache__/", ".pyc", ".pytest_cache/", ".hypothesis/", ".mypy_cache/", ".ruff_cache/",
               ".grimp_cache/", ".import_linter_cache/")


def _repository_files() -> set[str] | None:
    """``git status`` of the repository, untracked and ignored files included (None: no git)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
                             cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {line for line in out.splitlines() if not any(cache in line for cache in _RUN_CACHES)}


_BEFORE = pytest.StashKey[set[str] | None]()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_BEFORE] = _repository_files()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run that executed no test must not look green (e.g. every xdist worker crashed), and a
    run must leave the repository as it found it (``git status`` unchanged)."""
    if exitstatus == 0 and session.testscollected == 0 and not session.config.option.collectonly:
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
    before = session.config.stash.get(_BEFORE, None)
    if before is None or hasattr(session.config, "workerinput"):  # no git, or an xdist worker
        return
    after = _repository_files() or set()
    left = sorted(after - before)
    if left:
        print("\nthe test run left files in the repository:\n  " + "\n  ".join(left))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
