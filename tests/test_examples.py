"""The scripts in examples/ run as a user would run them, and print what they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_full_specimen_example(tmp_path):
    out = _run("full_specimen.py", "--out", "fs", cwd=tmp_path)
    assert "registration quality" in out and "lath_bainite" in out and "report:" in out
    assert (tmp_path / "fs" / "S1.h5").exists() and (tmp_path / "fs" / "S1_report.html").exists()
    agreement = float(out.split("agrees with the truth on ")[1].split("%")[0])
    assert agreement > 85


@pytest.mark.slow
def test_qc_report_example(tmp_path):
    out = _run("qc_report.py", "--n", "2", "--workers", "2", "--out", "qc", cwd=tmp_path)
    assert "summary:" in out
    assert (tmp_path / "qc" / "summary.html").exists() and (tmp_path / "qc" / "summary.csv").exists()
    assert len(list((tmp_path / "qc" / "specimens").glob("*/*_report.html"))) == 2


@pytest.mark.slow
def test_register_only_example_recovers_the_known_transform(tmp_path):
    import json

    _run("register_only.py", "--out", "reg", cwd=tmp_path)
    quality = json.loads((tmp_path / "reg" / "quality.json").read_text())
    assert quality["true_error_px_median"] < 0.5
    for name in ("warped.tif", "transform.tfm", "overlay.png"):
        assert (tmp_path / "reg" / name).exists(), name
