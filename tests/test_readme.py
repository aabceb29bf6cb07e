"""The README's Python example runs as written (on a synthetic LOM + EBSD map written to files)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_commands_are_the_ci_commands():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    install = 'pip install torch==2.13.0 && pip install -e ".[test]" && metallo demo'
    assert install in text and install in ci
    assert "python -m pytest -n auto" in text and "\npython -m pytest -n auto\n" in ci


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, monkeypatch):
    import metallo as mt

    sample = mt.synth.make_specimen(2, ebsd_shape=(100, 100))
    mt.io.write_image(sample.lom, tmp_path / "lom.tif")
    mt.io.write_ang(sample.ebsd, tmp_path / "map.ang")
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    code = code.replace("pixel_size_um=0.1266", f"pixel_size_um={sample.lom.attrs['pixel_size_um']}")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    fractions = namespace["fractions"]
    truth = sample.lom_labels[sample.lom_field].mean()
    bainite = fractions.set_index("class").loc["lath_bainite", "fraction"]
    assert abs(bainite - truth) < 0.05
    assert mt.Specimen.open(tmp_path / "S1.h5").nodes() == ["annotations/bainite"]
