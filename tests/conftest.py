"""Shared test configuration.

Tests that need the real public data in ``../shared/data`` take the ``shared_data`` fixture:
they skip with a clear reason in a plain clone, and fail in CI, where ``.ci/run`` sets
``METALLO_REQUIRE_SHARED_DATA=1``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores: one BLAS/torch thread each avoids oversubscription.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("METALLO_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
REQUIRE_SHARED_DATA = os.environ.get("METALLO_REQUIRE_SHARED_DATA", "") == "1"


def _missing_shared(path: Path) -> None:
    reason = f"real data not found at {path} (a plain clone has no ../shared/data)"
    if REQUIRE_SHARED_DATA:
        pytest.fail(f"{reason}; METALLO_REQUIRE_SHARED_DATA=1 makes this a failure", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder ``../shared/data``; skips (or fails in CI) when absent."""
    if not SHARED_DATA.is_dir():
        _missing_shared(SHARED_DATA)
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_file(shared_data: Path):
    """``shared_file("ebsd_ang/x.ang")`` -> Path; skips (or fails in CI) if that file is absent."""

    def get(relative: str) -> Path:
        path = shared_data / relative
        if not path.exists():
            _missing_shared(path)
        return path

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
