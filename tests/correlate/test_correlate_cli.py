"""``metallo register`` writes the warped image, the .tfm, the overlay and the quality JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
from correlate_helpers import make_pair
from typer.testing import CliRunner

from metallo.cli import app


def test_register_command_outputs(tmp_path):
    pair = make_pair(1, moving_shape=(120, 120), fixed_shape=(180, 180))
    tifffile.imwrite(tmp_path / "lom.tif", pair.fixed.values)
    tifffile.imwrite(tmp_path / "iq.tif", pair.moving.values)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["register", str(tmp_path / "lom.tif"), str(tmp_path / "iq.tif"), "--out", str(out),
         "--method", "sift", "--no-inverse-consistency", "--fixed-pixel-size-um", "0.35",
         "--moving-pixel-size-um", "0.5"],
    )
    assert result.exit_code == 0, result.output
    for name in ("warped.tif", "transform.tfm", "overlay.png", "quality.json"):
        assert (out / name).is_file()
    assert not (out / "residual_map.png").exists()  # a SIFT affine has no residual map
    quality = json.loads((out / "quality.json").read_text())
    assert quality["initial"] == "sift" and quality["inliers"] >= 8
    assert tifffile.imread(out / "warped.tif").shape == (180, 180)
    assert sitk.ReadTransform(str(out / "transform.tfm")).GetDimension() == 2


@pytest.mark.filterwarnings("ignore:.*pixel size unknown:UserWarning")
def test_register_command_bad_input_is_one_line(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.full((40, 40), np.nan, np.float32))
    tifffile.imwrite(tmp_path / "b.tif", np.random.default_rng(0).random((40, 40)).astype(np.float32))
    result = CliRunner().invoke(app, ["register", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "NaN" in result.output


def test_register_command_says_failed_and_strict_exits_3(tmp_path):
    # Two unrelated textures: method auto writes its result, flags it failed and says so;
    # --strict turns that into exit code 3 (errors are 1), so that a script stops on it.
    fixed = make_pair(1, moving_shape=(120, 120), fixed_shape=(180, 180)).fixed
    moving = make_pair(7, moving_shape=(120, 120), fixed_shape=(180, 180)).moving
    tifffile.imwrite(tmp_path / "lom.tif", fixed.values)
    tifffile.imwrite(tmp_path / "iq.tif", moving.values)
    args = ["register", str(tmp_path / "lom.tif"), str(tmp_path / "iq.tif"), "--fixed-pixel-size-um", "0.35",
            "--moving-pixel-size-um", "0.5"]
    for strict, code in ((False, 0), (True, 3)):
        out = tmp_path / f"out{code}"
        result = CliRunner().invoke(app, [*args, "--out", str(out), *(["--strict"] if strict else [])])
        assert result.exit_code == code, result.output
        quality = json.loads((out / "quality.json").read_text())
        assert quality["failed"] is True and quality["failure_reasons"]
        assert f"FAILED: {quality['failure_reasons'][0]}" in result.output
        assert (out / "warped.tif").is_file()  # the result is written either way


@pytest.mark.slow
def test_register_command_auto_writes_points_and_corrected_ang(tmp_path):
    from metallo.correlate import read_landmarks
    from metallo.io import read_ebsd, write_ang
    from metallo.synth import make_specimen

    spec = make_specimen(0)
    ps = float(spec.lom.attrs["pixel_size_um"])
    tifffile.imwrite(tmp_path / "lom.tif", np.asarray(spec.lom.values, np.float32))
    write_ang(spec.ebsd, tmp_path / "map.ang")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["register", str(tmp_path / "lom.tif"), str(tmp_path / "map.ang"), "--out", str(out), "--no-inverse-consistency",
         "--fixed-pixel-size-um", str(ps), "--corrected-ang", str(tmp_path / "corrected.ang")],
    )
    assert result.exit_code == 0, result.output
    # Strict JSON (no bare NaN, which jq and JavaScript reject): cells without evidence are null.
    quality = json.loads((out / "quality.json").read_text(), parse_constant=lambda token: pytest.fail(f"{token} in JSON"))
    assert quality["method"] == "auto" and quality["failed"] is False
    assert None in sum(quality["residual_map_px"]["values"], [])
    assert quality["representation"] == "iq"  # auto: the IQ image first, boundaries where it fails
    moving, fixed = read_landmarks(out / "control_points.csv")
    assert len(moving) == quality["control_points"]["inliers"] >= 20
    # The same pairs with their evidence (the BigWarp file has no scores): kept ones have a held-out error.
    table = np.genfromtxt(out / "control_points_scores.csv", delimiter=",", names=True)
    assert len(table) >= len(moving) and int(table["inlier"].sum()) == len(moving)
    assert np.isfinite(table["loo_error_px"][table["inlier"] == 1]).all() and np.isnan(table["loo_error_px"][table["inlier"] == 0]).all()
    assert np.isfinite(table["held_out_error_px"][table["inlier"] == 1]).all() and np.isnan(table["held_out_error_px"][table["inlier"] == 0]).all()
    assert ((table["score"] >= 0) & (table["score"] <= 1.0001)).all()
    # Where to trust the warp, as a figure: written with the residual map, named in the output.
    assert (out / "residual_map.png").stat().st_size > 10_000 and "residual_map.png" in result.output
    corrected = read_ebsd(tmp_path / "corrected.ang")
    # The corrected map covers the LOM field at the EBSD step.
    assert abs(corrected.sizes["x"] * float(corrected.attrs["step_um"]) - spec.lom.sizes["x"] * ps) < 1.0


@pytest.mark.slow
def test_register_writes_rejected_control_points_as_no_landmark_file(tmp_path, shared_file):
    """Slice8_TFS: its block matches are chance, the gate keeps the affine start. The points are
    written for inspection as ``control_points_rejected.csv`` with every row inactive, so that
    neither BigWarp nor ``--landmarks`` takes chance matches for landmarks."""
    from metallo.correlate import read_landmarks

    d = "correlative_ebsd_bse_more/Slice8_TFS_"
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["register", str(shared_file(d + "bse_resized.png")), str(shared_file(d + "ebsd.png")),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    quality = json.loads((out / "quality.json").read_text())
    assert quality["gate"].startswith("rejected: the block matches are no more distinctive than chance")
    assert not (out / "control_points.csv").exists() and "control_points_rejected.csv" in result.output
    rows = (out / "control_points_rejected.csv").read_text().splitlines()
    assert len(rows) >= 100 and all(r.split(",")[1].strip('"') == "false" for r in rows)
    with pytest.raises(Exception, match="active"):
        read_landmarks(out / "control_points_rejected.csv")
    summary = json.loads(next(line for line in result.output.splitlines() if line.startswith("{")))
    assert summary["gate"].startswith("rejected")

