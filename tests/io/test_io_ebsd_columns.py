"""Column text EBSD maps (MTEX's export to .txt, scripts): known orientations, grids, phases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from metallo._ebsd_dataset import phases_of
from metallo.ebsd import euler_to_quat, grains, misorientation_angle
from metallo.errors import ConfigError, FormatError
from metallo.io import read_ebsd


def _rows(hexagonal: bool = False, *, degrees: bool = True, phase0: bool = True) -> tuple[list[str], np.ndarray]:
    """A 10 x 12 map: left half phase 1 at (30, 40, 50) deg, right half phase 2 at (200, 100, 300) deg,
    the corner point phase 0 (not indexed), as MTEX's export writes a two-phase map."""
    truth = np.zeros((10, 12, 3))
    lines = []
    for r in range(10):
        for c in range(12):
            phase = 1 if c < 6 else 2
            e = np.array([30.0, 40.0, 50.0]) if phase == 1 else np.array([200.0, 100.0, 300.0])
            if phase0 and r == 0 and c == 0:
                phase = 0
            truth[r, c] = e
            x = (c + (0.5 if hexagonal and r % 2 else 0.0)) * 0.25
            y = r * 0.25 * (np.sqrt(3) / 2 if hexagonal else 1.0)
            v = e if degrees else np.radians(e)
            lines.append(f"{v[0]:.5f} {v[1]:.5f} {v[2]:.5f} {phase} 0.9 1500 {x:.5f} {y:.5f}")
    return lines, truth


@pytest.mark.parametrize("hexagonal", [False, True])
def test_mtex_export_is_read_with_its_orientations_grid_and_phases(tmp_path, hexagonal):
    lines, truth = _rows(hexagonal)
    path = tmp_path / "export.txt"
    path.write_text("    phi1        Phi       phi2      phase         ci         iq          x          y\n"
                    + "\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="phase 0 read as not indexed"):
        ebsd = read_ebsd(path, symmetry={1: "m-3m", 2: "6/mmm"})  # sniffed by its header row
    assert ebsd.attrs["grid"] == ("hexagonal" if hexagonal else "square")
    assert ebsd.sizes["y"] == 10 and ebsd.sizes["x"] == 12 and ebsd.attrs["step_um"] == pytest.approx(0.25)
    assert [(p["id"], p["symmetry"]) for p in phases_of(ebsd)] == [(1, "m-3m"), (2, "6/mmm")]
    phase = ebsd["phase"].values
    assert phase[0, 0] == -1 and (phase[:, 6:] == 2).all() and (phase[1:, :6] == 1).all()
    q = euler_to_quat(ebsd["euler"].values[1:].reshape(-1, 3))
    expected = euler_to_quat(np.radians(truth[1:].reshape(-1, 3)))
    assert misorientation_angle(q, expected, symmetry="-1").max() < 1e-3
    np.testing.assert_allclose(ebsd["ci"].values[1:], 0.9)
    assert len(grains(ebsd, min_size_px=1)) == 2


def test_radians_degrees_and_angle_ranges(tmp_path):
    lines, truth = _rows(degrees=False, phase0=False)
    path = tmp_path / "rad.txt"
    path.write_text("phi1 Phi phi2 phase ci iq x y\n" + "\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="every Euler angle lies within 0 .. 2 pi: read as radians"):
        ebsd = read_ebsd(path, symmetry="m-3m")
    np.testing.assert_allclose(ebsd["euler"].values, np.radians(truth), atol=1e-5)
    # Degrees in -180 .. 180 (phi1 = -160 is 200): the same orientations.
    text = path.read_text().replace("3.49066 ", "-2.79253 ")  # 200 deg -> -160 deg, in radians
    assert text.count("-2.79253 ") == 60
    path.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = read_ebsd(path, symmetry="m-3m", degrees=False)
    np.testing.assert_allclose(again["euler"].values, ebsd["euler"].values, atol=1e-5)
    path.write_text("phi1 Phi phi2 x y\n10 200 30 0 0\n10 20 30 1 0\n")
    with pytest.raises(FormatError, match="Phi 200 deg on data row 1 is outside 0 .. 180 deg"):
        read_ebsd(path, symmetry="m-3m")
    # Negative phase ids (some exports' not indexed) are not a phase.
    path.write_text("phi1 Phi phi2 phase x y\n10 20 30 -1 0 0\n10 20 30 1 1 0\n10 20 30 1 2 0\n")
    ebsd = read_ebsd(path, symmetry="m-3m")
    assert [p["id"] for p in phases_of(ebsd)] == [1] and ebsd["phase"].values.tolist() == [[-1, 1, 1]]
    path.write_text("phi1 Phi phi2 phase x y\n10 20 30 70000 0 0\n10 20 30 1 1 0\n")
    with pytest.raises(FormatError, match="phase id 70000 is not a phase number"):
        read_ebsd(path, symmetry="m-3m")


def test_headerless_file_needs_its_columns_and_single_phase_needs_no_phase_column(tmp_path):
    lines, truth = _rows(phase0=False)
    body = "\n".join(" ".join(line.split()[i] for i in (6, 7, 0, 1, 2)) for line in lines) + "\n"
    path = tmp_path / "plain.txt"
    path.write_text(body)
    with pytest.raises(FormatError, match="not a known ebsd file format.*columns \\(ebsd: by content\\)"):
        read_ebsd(path)
    with pytest.raises(FormatError, match="no header row naming the columns; give columns="):
        read_ebsd(path, format="columns")
    with pytest.warns(UserWarning, match="phases \\[0\\] read as cubic"):
        ebsd = read_ebsd(path, format="columns", columns=["x", "y", "Euler1", "Euler2", "Euler3"])
    assert [p["id"] for p in phases_of(ebsd)] == [0] and (ebsd["phase"].values == 0).all()
    np.testing.assert_allclose(ebsd["euler"].values, np.radians(truth), atol=1e-5)
    with pytest.raises(FormatError, match="no column for y; the columns are x, z, phi1, Phi, phi2"):
        read_ebsd(path, format="columns", columns=["x", "z", "phi1", "Phi", "phi2"])
    # A column named like one of the map's own variables keeps its values under another name.
    path.write_text("x y phi1 Phi phi2 euler\n" + "".join(f"{line.rstrip()} 7\n" for line in body.splitlines()))
    with pytest.warns(UserWarning, match="read as cubic"):
        named = read_ebsd(path, format="columns")
    assert (named["column_euler"].values == 7).all()
    np.testing.assert_allclose(named["euler"].values, np.radians(truth), atol=1e-5)
    path.write_text(body)
    with pytest.raises(ConfigError, match="symmetry 'cubic' for phase 0 is not a Laue group"):
        read_ebsd(path, format="columns", columns=["x", "y", "phi1", "Phi", "phi2"], symmetry="cubic")


def test_cli_reads_an_mtex_export_with_its_symmetry_and_refuses_it_for_an_ang(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from metallo.cli import app
    from metallo.io import write_ang
    from metallo.specimen import Specimen

    lines, _ = _rows(phase0=False)
    path = tmp_path / "export.txt"
    path.write_text("phi1 Phi phi2 phase ci iq x y\n" + "\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["ebsd", str(path), "--no-clean", "--symmetry", "6/mmm"])
    assert result.exit_code == 0, result.output
    assert "grains: 2" in result.output
    spec = Specimen.open(tmp_path / "export.metallo.h5")
    assert {p["symmetry"] for p in phases_of(spec["ebsd/map"])} == {"6/mmm"}
    record = next(r for r in spec.provenance if "ebsd/map" in r["outputs"])
    assert record["parameters"]["symmetry"] == "6/mmm"
    ang = write_ang(spec["ebsd/map"], tmp_path / "map.ang")
    bad = runner.invoke(app, ["ebsd", str(ang), "--specimen", "other.h5", "--symmetry", "m-3m"])
    assert bad.exit_code == 1 and len(bad.output.strip().splitlines()) == 1
    assert "map.ang: the ang reader takes no option 'symmetry'" in bad.output
    with pytest.raises(ConfigError, match="the ang reader takes no option 'scan'"):
        read_ebsd(ang, scan="2")


def test_oxford_export_of_a_hexagonal_phase_is_turned_into_metallos_frame(tmp_path):
    """An AZtec export (x || a*): phi2 30 deg smaller in metallo's frame (x || a), as the .ctf
    reader turns it; the cubic phase is left alone, and TSL/MTEX exports are read as they stand."""
    lines, truth = _rows(phase0=False)
    path = tmp_path / "aztec.txt"
    path.write_text("Euler1 Euler2 Euler3 Phase CI IQ X Y\n" + "\n".join(lines) + "\n")
    symmetry = {1: "m-3m", 2: "6/mmm"}
    as_is = read_ebsd(path, symmetry=symmetry)
    turned = read_ebsd(path, symmetry=symmetry, oxford_frame=True)
    # Oxford's own columns (MAD, BC) say whose export it is: turned by default, with a warning.
    oxford = tmp_path / "aztec_named.txt"
    oxford.write_text("Euler1 Euler2 Euler3 Phase MAD BC X Y\n" + "\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="columns MAD, BC are Oxford's.*give oxford_frame=False"):
        guessed = read_ebsd(oxford, symmetry=symmetry)
    np.testing.assert_allclose(guessed["euler"].values, turned["euler"].values)
    np.testing.assert_allclose(read_ebsd(oxford, symmetry=symmetry, oxford_frame=False)["euler"].values,
                               as_is["euler"].values)
    delta = np.degrees(turned["euler"].values - as_is["euler"].values)
    np.testing.assert_allclose(delta[:, :6], 0.0, atol=1e-9)
    np.testing.assert_allclose(delta[:, 6:, :2], 0.0, atol=1e-9)
    np.testing.assert_allclose(delta[:, 6:, 2], -30.0, atol=1e-6)
    assert "x || a" in turned.attrs["header"] and "crystal_x" not in as_is.attrs["header"]
