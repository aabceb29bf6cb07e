"""Corrected EBSD output: orientations carried by nearest neighbour, never interpolated."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metallo.correlate import Grid, Registration
from metallo.correlate._ebsd_out import corrected_ebsd, write_corrected_ang
from metallo.correlate._transform import AffineStep
from metallo.errors import RegistrationError


@pytest.fixture(scope="module")
def ebsd():
    from metallo.synth import make_specimen

    return make_specimen(0, ebsd_shape=(40, 50), micrographs=False).ebsd


def test_known_shift_moves_orientations_exactly(ebsd):
    step = float(ebsd.attrs["step_um"])
    moving = Grid.of(ebsd["phase"])
    # The micrograph frame is the EBSD frame shifted by (+3, -2) EBSD steps: fixed (x, y) -> moving (x + 3s, y - 2s).
    reg = Registration([AffineStep(np.eye(2), np.array([3 * step, -2 * step]))], fixed_grid=moving, moving_grid=moving)
    out = corrected_ebsd(reg, ebsd)
    euler = ebsd["euler"].values
    got = out["euler"].values
    np.testing.assert_array_equal(got[2:, :-3], euler[:-2, 3:])
    np.testing.assert_array_equal(out["phase"].values[2:, :-3], ebsd["phase"].values[:-2, 3:])
    np.testing.assert_array_equal(out["ci"].values[2:, :-3], ebsd["ci"].values[:-2, 3:])
    # Outside the EBSD field: unindexed.
    assert (out["phase"].values[:2] == -1).all() and np.isnan(got[:2]).all()
    assert json.loads(out.attrs["registration"])["resampling"].startswith("nearest")


def test_rotation_never_interpolates_orientations(ebsd, tmp_path):
    moving = Grid.of(ebsd["phase"])
    a = np.deg2rad(7.0)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    reg = Registration([AffineStep(rot, np.array([1.0, -0.5]))], fixed_grid=moving, moving_grid=moving)
    out = corrected_ebsd(reg, ebsd, step_um=0.25)
    measured = {tuple(v) for v in ebsd["euler"].values.reshape(-1, 3)}
    got = out["euler"].values.reshape(-1, 3)
    got = got[np.isfinite(got).all(axis=1)]
    assert len(got) > 0.5 * out.sizes["y"] * out.sizes["x"]
    assert all(tuple(v) in measured for v in got[::7])
    from metallo.io import read_ebsd

    back = read_ebsd(write_corrected_ang(reg, ebsd, tmp_path / "corrected.ang", step_um=0.25))
    assert back.sizes["y"] == out.sizes["y"] and back.sizes["x"] == out.sizes["x"]
    # The .ang writer numbers phases 1..n, so compare which points are indexed and their phase names.
    np.testing.assert_array_equal(back["phase"].values >= 0, out["phase"].values >= 0)
    from metallo.ebsd import phases_of

    names_out = {p["id"]: p["name"] for p in phases_of(out)}
    names_back = {p["id"]: p["name"] for p in phases_of(back)}
    indexed = out["phase"].values >= 0
    assert [names_back[i] for i in back["phase"].values[indexed][::97]] == \
        [names_out[i] for i in out["phase"].values[indexed][::97]]


def test_wrong_map_is_refused(ebsd):
    g = Grid((10, 10), (1.0, 1.0))
    reg = Registration([AffineStep(np.eye(2), np.zeros(2))], fixed_grid=g, moving_grid=g)
    with pytest.raises(RegistrationError, match="register an image of this map"):
        corrected_ebsd(reg, ebsd)


def test_a_failed_registration_marks_the_corrected_map_it_makes(ebsd, tmp_path):
    """The .ang leaves metallo without the quality record: its SAMPLEID carries the verdict."""
    from metallo.io import read_ebsd

    moving = Grid.of(ebsd["phase"])
    reg = Registration([AffineStep(np.eye(2), np.zeros(2))], fixed_grid=moving, moving_grid=moving,
                       quality={"failed": True, "failure_reasons": ["the structure images agree poorly"]})
    with pytest.warns(UserWarning, match="failed its quality check .the structure images agree poorly"):
        path = write_corrected_ang(reg, ebsd, tmp_path / "c.ang")
    assert "registration FAILED its quality check" in path.read_text(encoding="latin-1").split("# SAMPLEID:")[1].splitlines()[0]
    back = read_ebsd(path)  # still a map the readers read, and the mark comes back with it
    assert back.sizes["x"] == ebsd.sizes["x"]
    assert "registration FAILED" in json.loads(back.attrs["header"])["SAMPLEID"]
    reg.quality = {"failed": False}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "FAILED" not in corrected_ebsd(reg, ebsd).attrs["source"]
