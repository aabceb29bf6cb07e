"""Batch on Dask: 12 specimens, one corrupt, killed mid-way and re-run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from metallo import names
from metallo.batch import collect_recipes, run_batch
from metallo.errors import ConfigError
from metallo.specimen import Specimen


def _write_recipes(folder: Path, n: int, corrupt: int) -> None:
    folder.mkdir(parents=True)
    bad = folder / "corrupt.ang"
    bad.write_text("# this is not an EBSD map\n1 2 3\n")
    for i in range(n):
        inputs = {"ebsd": {"path": bad.name}} if i == corrupt else {"synthetic": {"seed": i, "ebsd_shape": [48, 48]}}
        recipe = {
            "specimen": {"id": f"B{i:02d}", "material": "synthetic"},
            "output": {"dir": str((folder.parent / "out" / f"B{i:02d}").resolve())},
            "inputs": inputs,
            "steps": {"clean_ebsd": {"min_ci": 0.1}, "ebsd_derive": {}},
        }
        (folder / f"B{i:02d}.yaml").write_text(yaml.safe_dump(recipe))


@pytest.mark.slow
def test_batch_killed_midway_and_rerun_completes_every_good_specimen(tmp_path):
    recipes, out = tmp_path / "recipes", tmp_path / "summary"
    _write_recipes(recipes, 12, corrupt=7)
    cmd = [sys.executable, "-m", "metallo.cli", "batch", str(recipes), "--workers", "2", "--out", str(out), "-q"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((tmp_path / "out").glob("*/*_report.html"))) >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the batch finished before it could be killed: " + proc.stdout.read().decode()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list((tmp_path / "out").glob("*/*_report.html")))
    assert 3 <= done_before < 11

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 1  # one specimen failed
    failed_lines = [line for line in rerun.stdout.splitlines() if line.startswith("failed")]
    assert len(failed_lines) == 1 and "B07" in failed_lines[0] and "FormatError" in failed_lines[0]
    assert "11 of 12 specimens complete" in rerun.stdout

    summary = pd.read_csv(out / "summary.csv")
    assert (summary["status"] == "complete").sum() == 11
    bad = summary[summary["status"] == "failed"]
    assert list(bad["specimen"]) == ["B07"] and "corrupt.ang" in bad["reason"].iloc[0]
    assert "\n" not in bad["reason"].iloc[0]
    assert (out / "summary.html").read_text().count("<tr>") == 13
    for i in range(12):
        if i == 7:
            continue
        spec = Specimen.open(tmp_path / "out" / f"B{i:02d}" / f"B{i:02d}.h5")  # none is corrupt
        assert names.derived(names.EBSD_CLEAN) in spec
    # The specimens finished before the kill were skipped, not re-computed.
    steps = summary.set_index("specimen")["steps_run"]
    assert (steps == 0).sum() >= done_before


def test_collect_recipes_reads_folders_and_rejects_missing(tmp_path):
    (tmp_path / "a.yaml").write_text("x: 1")
    (tmp_path / "b.yml").write_text("x: 1")
    (tmp_path / "notes.txt").write_text("")
    assert [p.name for p in collect_recipes([tmp_path])] == ["a.yaml", "b.yml"]
    with pytest.raises(ConfigError, match="no such recipe"):
        collect_recipes([tmp_path / "nope.yaml"])
    with pytest.raises(ConfigError, match="no recipes"):
        collect_recipes([tmp_path / "empty"] if (tmp_path / "empty").mkdir() is None else [])


@pytest.mark.slow
def test_run_batch_in_process_reports_failures_without_stopping(tmp_path):
    recipes = tmp_path / "recipes"
    _write_recipes(recipes, 3, corrupt=1)
    result = run_batch([recipes], workers=1, out_dir=tmp_path / "summary")
    assert [r["status"] for r in result.rows] == ["complete", "failed", "complete"]
    assert result.failed[0]["reason"].startswith("FormatError")
    assert result.summary_csv.exists() and result.summary_html.exists()


@pytest.mark.slow
def test_run_batch_on_an_existing_cluster_by_address(tmp_path):
    from dask.distributed import LocalCluster

    recipes = tmp_path / "recipes"
    _write_recipes(recipes, 2, corrupt=-1)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        result = run_batch([recipes], scheduler=cluster.scheduler_address, out_dir=tmp_path / "summary")
        assert cluster.scheduler_address.startswith("tcp://")
    assert [r["status"] for r in result.rows] == ["complete", "complete"]


@pytest.mark.shared_data
def test_fractions_within_limits_from_a_doubtful_segmentation_are_no_qc_pass(tmp_path, shared_file, monkeypatch):
    # Real UHCS micrograph170 (spheroidite, labels: 12.6 % cementite), segmented without labels:
    # the unsupervised quality check fails (the grey levels do not say where the cementite
    # ends: 20 % by nearest mean, 7 % by minimum error). The 20 % lies inside wide limits, and
    # the run said "QC pass" while its own segmentation said DOUBTFUL.
    import yaml
    from typer.testing import CliRunner

    from metallo.batch import run_batch
    from metallo.cli import app

    image = shared_file("uhcs_spheroidite_particle_segmentation/images/micrograph170.png")
    recipe = {"specimen": {"id": "U170"}, "output": {"dir": "out"},
              "inputs": {"micrographs": {"sem": {"path": str(image), "pixel_size_um": 0.09709, "modality": "SEM"}}},
              "steps": {"segment": {"micrograph": "sem", "method": "unsupervised", "n_classes": 2,
                                    "classes": ["ferrite", "cementite"]},  # darkest first
                        "quantify": {"what": ["phases"]}},
              "limits": {"cementite": [0.0, 0.5]}}
    (tmp_path / "u.yaml").write_text(yaml.safe_dump(recipe))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["analyze", str(tmp_path / "u.yaml"), "-q"])
    assert result.exit_code == 0, result.output
    assert re.search(r"QC cementite: 20\.2% \(95% CI \d+\.\d-\d+\.\d%; limits 0-50%\) -> PASS\n", result.output)  # the limits alone
    assert "QC FAIL: the phase fractions rest on segmentations/sem" in result.output
    # --strict: the same run (nothing to redo) exits 3, so that a lab's script stops on it.
    strict = CliRunner().invoke(app, ["analyze", str(tmp_path / "u.yaml"), "-q", "--strict"])
    assert strict.exit_code == 3, strict.output
    assert "QC FAIL: the phase fractions rest on segmentations/sem" in strict.output
    batch = run_batch([tmp_path / "u.yaml"], workers=1, out_dir=tmp_path / "summary")
    row = batch.rows[0]
    assert row["status"] == "complete" and row["qc"] == "fail" and row["checks"] == "fail: segmentations/sem"
    # The batch table holds the interval beside the mean.
    assert row["cementite ci low (%)"] < row["cementite (%)"] < row["cementite ci high (%)"]
    assert batch.not_passed == [row] and batch.failed == []
    # The same step alone says its verdict beside its node, and --strict exits 3 on it.
    specimen = tmp_path / "out" / "U170.h5"
    step = CliRunner().invoke(app, ["step", "segment", str(specimen), "--set", "method=unsupervised", "--set", "micrograph=sem",
                                    "--set", "n_classes=2", "--set", "classes=[ferrite, cementite]", "--overwrite",
                                    "--strict"])
    assert step.exit_code == 3, step.output
    assert "segment -> segmentations/sem (FAIL: the grey levels" in step.output
    html = (tmp_path / "out" / "U170_report.html").read_text()
    assert "These fractions rest on segmentations/sem, which failed its quality check: the grey levels" in html


@pytest.mark.parametrize(("rows", "strict", "code"), [
    ([{"specimen": "A", "status": "complete", "checks": "pass", "qc": "pass"}], True, 0),
    ([{"specimen": "A", "status": "complete", "checks": "pass", "qc": "fail"}], False, 0),
    ([{"specimen": "A", "status": "complete", "checks": "pass", "qc": "fail"}], True, 3),
    ([{"specimen": "A", "status": "complete", "checks": "fail: registration/lom"}], True, 3),
    ([{"specimen": "A", "status": "complete", "checks": "pass", "qc": "fail"},
      {"specimen": "B", "status": "failed", "reason": "FormatError: x"}], True, 1),  # an error first
])
def test_batch_command_exit_codes(tmp_path, monkeypatch, rows, strict, code):
    from typer.testing import CliRunner

    import metallo.batch
    from metallo.batch import BatchResult
    from metallo.cli import app

    (tmp_path / "a.yaml").write_text("x: 1")
    monkeypatch.setattr(metallo.batch, "run_batch", lambda *a, **k: BatchResult(rows, tmp_path / "s.html", tmp_path / "s.csv"))
    result = CliRunner().invoke(app, ["batch", str(tmp_path / "a.yaml"), "-q", *(["--strict"] if strict else [])])
    assert result.exit_code == code, result.output
    assert ("checks or QC failed: A" in result.output) is (code == 3)


def test_the_batch_row_carries_each_ebsd_maps_grain_size_and_twin_share(tmp_path):
    """A map of two cubic grains in a Sigma3 twin relation: the batch row gives the planimetric G
    of its table, says it is no size statistic (2 grains), and 100 % of its boundary is Sigma3."""
    import numpy as np

    from metallo.batch import _grain_columns
    from metallo.ebsd import (
        axis_angle_to_quat,
        ebsd_dataset,
        quat_multiply,
        quat_to_euler,
        random_quaternions,
    )
    from metallo.quantify import quantify_specimen

    parent = random_quaternions(1, rng=5)
    twin = quat_multiply(axis_angle_to_quat(np.array([1.0, 1.0, 1.0]), np.pi / 3), parent)
    q = np.repeat(parent, 3600, axis=0).reshape(60, 60, 4)
    q[:, 30:] = twin[0]
    ebsd = ebsd_dataset(quat_to_euler(q), np.ones((60, 60), np.int16), step_um=1.0,
                        phases=[{"id": 1, "name": "austenite", "symmetry": "m-3m", "lattice": [3.6, 3.6, 3.6, 90, 90, 90]}])
    spec = Specimen.create(tmp_path / "t.h5", specimen_id="t", material="316L")
    spec.add(names.ebsd("map"), ebsd, step="test")
    cleaned = ebsd.copy()
    cleaned.attrs["cleanup"] = json.dumps([{"step": "grain_dilation", "n_changed": 900, "n_measured": 3600}])
    spec.add(names.EBSD_CLEAN, cleaned, step="test")
    with pytest.warns(UserWarning):  # two grains: no E112 statistic
        quantify_specimen(spec, what=["grains", "texture"])
    spec.save()
    columns = _grain_columns(tmp_path / "t.h5")
    table = spec.table(names.quantity(names.ebsd("map"), names.GRAIN_SIZE)).set_index("method")
    assert columns["G ebsd.map"] == round(float(table.loc["planimetric", "G"]), 2)
    assert columns["G ebsd.map reliable"] == "no"
    assert columns["Sigma3 ebsd.map austenite (% boundaries)"] == 100.0
    assert columns["indexed % ebsd.map"] == 100.0 and "invented % ebsd.map" not in columns  # never cleaned
    assert columns["invented % ebsd.clean"] == 25.0
    assert columns["HAGB ebsd.map austenite (% boundaries)"] == 100.0  # its one boundary is a 60 deg twin
    fibres = spec.table(names.quantity(names.EBSD_CLEAN, names.TEXTURE)).set_index("fibre")
    assert columns["<111> || ND ebsd.clean austenite (% area)"] == round(100 * fibres.loc["<111> || ND (gamma fibre)", "share"], 1)
    # two grains, one boundary: neither the texture nor the boundary distribution is a statistic
    assert columns["texture ebsd.clean austenite reliable"] == "no" and columns["HAGB ebsd.map austenite reliable"] == "no"


@pytest.mark.slow
def test_a_recipes_warning_prints_once_named_by_it(tmp_path):
    # The ids are checked in the main process before the workers load each recipe again: the
    # absolute output folder's warning had printed twice per recipe (118 lines for 59 recipes).
    recipes = tmp_path / "recipes"
    _write_recipes(recipes, 2, corrupt=-1)
    proc = subprocess.run([sys.executable, "-m", "metallo.cli", "batch", str(recipes), "--workers", "1", "-q",
                           "--out", str(tmp_path / "summary")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "writing outside the recipe's folder" in ln]
    assert len(lines) == 2, proc.stderr
    assert sorted(ln.split(":")[1].strip() for ln in lines) == ["B00.yaml", "B01.yaml"]


def test_batch_columns_carry_each_registrations_calibration_scale(tmp_path):
    from metallo import names, synth
    from metallo.batch import _grain_columns
    from metallo.correlate import Grid, Registration
    from metallo.ebsd import map_image
    from metallo.specimen import Specimen

    spec = Specimen.create(tmp_path / "c.h5", specimen_id="c")
    synth.add_synthetic_specimen(spec, 3, ebsd_shape=(40, 40))
    lom, ebsd = spec[names.micrograph("lom")][names.IMAGE], spec[names.EBSD_MAP]
    quality = {"method": "auto", "passed": True, "calibration": {"scale_principal": [1.49, 1.51], "consistent": False}}
    ds = Registration([], fixed_grid=Grid.of(lom), moving_grid=Grid.of(map_image(ebsd)), method="identity",
                      quality=quality).to_dataset()
    ds.attrs.update(fixed=names.micrograph("lom"), moving=names.EBSD_MAP)
    spec.add(names.registration("lom"), ds, step=names.STEP_REGISTER, inputs=[names.micrograph("lom"), names.EBSD_MAP])
    spec.save()
    columns = _grain_columns(tmp_path / "c.h5")
    assert columns["calibration scale lom"] == 1.51 and columns["calibration lom consistent"] == "no"
