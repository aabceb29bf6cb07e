"""Fixtures for the whole-chain tests: a headless Chromium and small recipes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REQUIRE_BROWSER = os.environ.get("METALLO_REQUIRE_BROWSER", "") == "1"
_CONSOLE = re.compile(r":(INFO|WARNING|ERROR):CONSOLE[^\]]*\]\s*\"(?P<msg>.*)\", source: (?P<src>\S*)")


@dataclass
class PageLoad:
    console: list[str]
    errors: list[str]
    screenshot: Path


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a headless-capable Chromium; skipped without one (a failure in CI)."""
    found = _chromium()
    if found is None:
        if REQUIRE_BROWSER:
            pytest.fail("no chromium on PATH and METALLO_REQUIRE_BROWSER=1", pytrace=False)
        pytest.skip("no chromium on PATH (.ci/run installs Debian's chromium)")
    return found


@pytest.fixture
def load_page(chromium, tmp_path):
    """Load an HTML file in headless Chromium; return console messages, errors and a screenshot."""

    def load(page: Path, *, width: int = 1200, height: int = 2400) -> PageLoad:
        shot = tmp_path / f"{page.stem}.png"
        cmd = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
            "--hide-scrollbars", f"--window-size={width},{height}", f"--screenshot={shot}",
            page.resolve().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        console = [m.group("msg") for m in _CONSOLE.finditer(proc.stderr)]
        errors = [c for c in console if re.search(r"Uncaught|Error|Failed to load", c)]
        errors += [line for line in proc.stderr.splitlines() if "ERROR:CONSOLE" in line]
        assert shot.exists(), f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
        return PageLoad(console, errors, shot)

    return load


def _non_blank_fraction(png: Path) -> float:
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float64)
    return float((pixels < 235).mean())


@pytest.fixture
def non_blank_fraction():
    """``non_blank_fraction(png)``: fraction of screenshot pixels that are not (near) white."""
    return _non_blank_fraction
