"""EBSD readers: every shared .ang/.ctf file, synthetic fixtures, malformed files, round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metallo.ebsd import ebsd_dataset, phases_of
from metallo.errors import FormatError
from metallo.io import read_ebsd, write_ang, write_ctf

SHARED = {
    # file: (shape (ny, nx), step_um, phase symmetries, indexed points)
    "ebsd_ang/sdss_ferrite_austenite.ang": ((100, 117), 1.5, ["m-3m", "m-3m"], 11700),
    "ebsd_ang/ebsdlib_Out_Of_Order_Ni.ang": ((201, 189), 0.25, ["m-3m"], 37989 - 6926),
    "ebsd_ang/mtex_3dData_S00.ANG": ((40, 35), 0.4, ["m-3m"], 1400 - 342),
    "ebsd_ang/mtex_ACOM.ang": ((15, 15), 2.0, ["m-3m"], None),
    "ebsd_ctf/mtexTools_MEA_60CR_1C.ctf": ((375, 500), 0.96, ["m-3m"], 61735),
    "ebsd_ctf/mtex_twins_Mg.ctf": ((137, 167), 0.3, ["6/mmm"], 22879 - 46),
    "ebsd_ctf/ebsdlib_Test_European_1_decimal_comma.ctf": ((5, 40), 0.5, ["6/mmm"], 190),
    "ebsd_ctf/mtex_eclogite_interactive.ctf": (None, None, ["mmm", "2/m", "-1", "m-3m", "2/m", "2/m", "-3m"], None),
}


@pytest.mark.shared_data
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("relative", sorted(SHARED))
def test_shared_maps_load(shared_file, relative):
    shape, step, symmetries, n_indexed = SHARED[relative]
    ebsd = read_ebsd(shared_file(relative))
    if shape is not None:
        assert (ebsd.sizes["y"], ebsd.sizes["x"]) == shape
        assert ebsd.attrs["step_um"] == pytest.approx(step)
    assert [p["symmetry"] for p in phases_of(ebsd)] == symmetries
    phase = ebsd["phase"].values
    if n_indexed is not None:
        assert int((phase >= 0).sum()) == n_indexed
    euler = ebsd["euler"].values[phase >= 0]
    assert np.isfinite(euler).all() and euler.max() <= 2 * np.pi + 1e-6
    assert ebsd["y"].attrs["units"] == "um"


@pytest.mark.shared_data
def test_out_of_order_rows_are_placed_by_coordinates(shared_file):
    path = shared_file("ebsd_ang/ebsdlib_Out_Of_Order_Ni.ang")
    ebsd = read_ebsd(path)
    rows = np.loadtxt(path, comments="#")
    # The first data row is at x = 1.75, y = 0.25 µm -> pixel (1, 7).
    np.testing.assert_allclose(ebsd["iq"].values[1, 7], rows[0, 5])
    assert ebsd["phase"].values[1, 7] == -1  # CI -1 and the 4*pi marker: not indexed


@pytest.mark.shared_data
@pytest.mark.filterwarnings("ignore:.*rows x.*:UserWarning")
def test_lying_header_warns_and_trusts_coordinates(shared_file):
    with pytest.warns(UserWarning, match="disagrees"):
        ebsd = read_ebsd(shared_file("ebsd_ang/mtex_3dData_S00.ANG"))
    assert ebsd.sizes["x"] == 35 and ebsd.attrs["step_um"] == pytest.approx(0.4)


@pytest.mark.shared_data
def test_ctf_degrees_and_decimal_comma(shared_file):
    ebsd = read_ebsd(shared_file("ebsd_ctf/ebsdlib_Test_European_1_decimal_comma.ctf"))
    # Second data row: X 0,5 -> column 1; Euler 103,85 40,207 29,394 degrees. The phase is
    # hexagonal (Laue group 9), so phi2 moves from Oxford's crystal frame (x || a*) to
    # metallo's (x || a): 29.394 - 30 = -0.606 = 359.394 deg.
    np.testing.assert_allclose(np.degrees(ebsd["euler"].values[0, 1]), [103.85, 40.207, 359.394], atol=1e-6)
    assert "a* in the file" in json.loads(ebsd.attrs["header"])["crystal_x"]
    assert ebsd["phase"].values[0, 0] == -1 and ebsd["iq"].values[0, 0] == 85


@pytest.mark.shared_data
@pytest.mark.filterwarnings("ignore:.*share a grid cell.*:UserWarning")
def test_scattered_job_is_snapped_with_warning(shared_file):
    with pytest.warns(UserWarning, match="scattered"):
        ebsd = read_ebsd(shared_file("ebsd_ctf/mtex_eclogite_interactive.ctf"))
    assert ebsd.attrs["scattered"] == 1
    n_points = json.loads(ebsd.attrs["header"])["n_points"]
    assert n_points == 617
    # Most cells are empty (phase -1); every point that kept its cell is there.
    assert 590 <= int((ebsd["phase"].values >= 0).sum()) <= 617


def _ang_text(rows: list[str], *, symmetry: int = 43, grid: str = "SqrGrid") -> str:
    header = [
        "# Phase 1", "# MaterialName  \tIron", f"# Symmetry              {symmetry}",
        "# LatticeConstants      2.870 2.870 2.870  90.000  90.000  90.000",
        f"# GRID: {grid}", "# XSTEP: 1.000000", "# YSTEP: 1.000000",
        "# NCOLS_ODD: 2", "# NCOLS_EVEN: 2", "# NROWS: 2", "#",
    ]
    return "\n".join(header + rows) + "\n"


GOOD_ROWS = [
    "0.1 0.2 0.3 0.0 0.0 50.0 0.9 1 0 0.5",
    "0.4 0.5 0.6 1.0 0.0 50.0 0.8 1 0 0.5",
    "0.7 0.8 0.9 0.0 1.0 50.0 0.7 1 0 0.5",
    "1.0 1.1 1.2 1.0 1.0 50.0 -1 1 0 0.5",
]


def test_synthetic_ang_fixture(tmp_path):
    path = tmp_path / "tiny.ang"
    path.write_text(_ang_text(GOOD_ROWS))
    ebsd = read_ebsd(path)
    assert ebsd.sizes["y"] == 2 and ebsd.sizes["x"] == 2
    np.testing.assert_allclose(ebsd["euler"].values[1, 0], [0.7, 0.8, 0.9])
    np.testing.assert_array_equal(ebsd["phase"].values, [[1, 1], [1, -1]])
    assert phases_of(ebsd)[0]["lattice"] == [2.87, 2.87, 2.87, 90.0, 90.0, 90.0]


@pytest.mark.parametrize(("rows", "line", "what"), [
    (GOOD_ROWS[:3] + ["1.0 1.1 1.2 1.0"], 15, "columns"),
    (GOOD_ROWS[:2] + ["0.7 0.8 0.9 0.0 1.0 50.0 0.7 1 0 0.5 9 9"] + GOOD_ROWS[3:], 14, "columns"),
    (GOOD_ROWS[:1] + ["nan 0.5 0.6 1.0 0.0 50.0 0.8 1 0 0.5"] + GOOD_ROWS[2:], 13, "NaN"),
])
def test_malformed_ang_names_the_line(tmp_path, rows, line, what):
    path = tmp_path / "bad.ang"
    path.write_text(_ang_text(rows))
    with pytest.raises(FormatError, match=f"line {line}.*{what}|line {line} has"):
        read_ebsd(path)


def test_unknown_symmetry_raises(tmp_path):
    path = tmp_path / "bad.ang"
    path.write_text(_ang_text(GOOD_ROWS, symmetry=99))
    with pytest.raises(FormatError, match="line 3: unknown symmetry code 99"):
        read_ebsd(path)


def test_unknown_file_lists_formats(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"\x00\x01garbage")
    with pytest.raises(FormatError, match="ang"):
        read_ebsd(path)


def _ctf_text(rows: list[str], laue: int = 11) -> str:
    head = ["Channel Text File", "Prj\ttest", "JobMode\tGrid", "XCells\t2", "YCells\t2", "XStep\t0.5",
            "YStep\t0.5", "Phases\t1", f"3.6;3.6;3.6\t90;90;90\tIron fcc\t{laue}\t225",
            "Phase\tX\tY\tBands\tError\tEuler1\tEuler2\tEuler3\tMAD\tBC\tBS"]
    return "\n".join(head + rows) + "\n"


CTF_ROWS = ["1\t0.0\t0.0\t8\t0\t10\t20\t30\t0.5\t100\t90", "1\t0.5\t0.0\t8\t0\t40\t50\t60\t0.5\t100\t90",
            "0\t0.0\t0.5\t0\t3\t0\t0\t0\t0\t20\t5", "1\t0.5\t0.5\t8\t0\t70\t80\t90\t0.5\t100\t90"]


def test_synthetic_ctf_fixture(tmp_path):
    path = tmp_path / "tiny.ctf"
    path.write_text(_ctf_text(CTF_ROWS))
    ebsd = read_ebsd(path)
    np.testing.assert_allclose(ebsd["euler"].values[0, 1], np.radians([40, 50, 60]))
    np.testing.assert_array_equal(ebsd["phase"].values, [[1, 1], [-1, 1]])
    assert ebsd["fit"].values[0, 0] == pytest.approx(0.5) and ebsd["iq"].values[1, 0] == 20


def test_ctf_with_space_separated_values(tmp_path):
    """Oxford separates the data values by tabs; files from other tools (orix's test files are
    written by numpy.savetxt) by runs of spaces. Both read the same."""
    tabs, spaces = tmp_path / "tabs.ctf", tmp_path / "spaces.ctf"
    tabs.write_text(_ctf_text(CTF_ROWS))
    spaces.write_text(_ctf_text([row.replace("\t", "   ") for row in CTF_ROWS]))
    a, b = read_ebsd(tabs), read_ebsd(spaces)
    np.testing.assert_array_equal(a["euler"].values, b["euler"].values)
    np.testing.assert_array_equal(a["phase"].values, b["phase"].values)
    np.testing.assert_allclose(b["euler"].values[0, 1], np.radians([40, 50, 60]))


def test_malformed_ctf(tmp_path):
    path = tmp_path / "bad.ctf"
    path.write_text(_ctf_text(CTF_ROWS[:2] + ["1\t0.0\t0.5\t8"] + CTF_ROWS[3:]))
    with pytest.raises(FormatError, match="line 13 has 4 columns"):
        read_ebsd(path)
    path.write_text(_ctf_text(CTF_ROWS, laue=12))
    with pytest.raises(FormatError, match="line 9: unknown Laue group 12"):
        read_ebsd(path)


@pytest.mark.parametrize("grid", ["square", "hexagonal"])
def test_write_ang_round_trip(tmp_path, grid):
    rng = np.random.default_rng(0)
    ny, nx = 7, 9
    euler = rng.random((ny, nx, 3)) * [2 * np.pi, np.pi, 2 * np.pi]
    phase = np.where(rng.random((ny, nx)) < 0.1, -1, 1 + (rng.random((ny, nx)) < 0.5)).astype(np.int16)
    if grid == "hexagonal":
        phase[1::2, -1] = -1  # the padding cell of the short rows
    phases = [{"id": 1, "name": "Ti", "symmetry": "6/mmm", "lattice": [2.95, 2.95, 4.68, 90, 90, 120]},
              {"id": 2, "name": "beta", "symmetry": "m-3m", "lattice": [3.3, 3.3, 3.3, 90, 90, 90]}]
    ci = np.round(rng.random((ny, nx)), 3)
    ebsd = ebsd_dataset(euler, phase, step_um=0.35, phases=phases, grid=grid, variables={"ci": ci})
    path = write_ang(ebsd, tmp_path / "rt.ang")
    if grid == "hexagonal":
        assert "HexGrid" in path.read_text() and "NCOLS_EVEN: 8" in path.read_text()
    back = read_ebsd(path)
    assert back.attrs["grid"] == grid and back.sizes["y"] == ny and back.sizes["x"] == nx
    assert back.attrs["step_um"] == pytest.approx(0.35)
    np.testing.assert_array_equal(back["phase"].values, phase)
    ok = phase >= 0
    np.testing.assert_allclose(back["euler"].values[ok], euler[ok], atol=1e-5)
    np.testing.assert_allclose(back["ci"].values[ok], ci[ok], atol=1e-6)
    assert [p["symmetry"] for p in phases_of(back)] == ["6/mmm", "m-3m"]


@pytest.mark.parametrize("grid", ["square", "hexagonal"])
def test_ang_grid_header_that_lies_is_read_by_the_coordinates(tmp_path, grid):
    """EbsdLib's HexHeader.ang: a square map under ``GRID: HexGrid``. Read by the header it came
    out 4 x 41 with 38 points sharing a cell and 40 cells empty; the reverse (a hexagonal map
    under SqrGrid) came out as a checkerboard, half the cells not indexed."""
    rng = np.random.default_rng(1)
    ny, nx = 6, 8
    euler = rng.random((ny, nx, 3)) * [2 * np.pi, np.pi, 2 * np.pi]
    phase = np.ones((ny, nx), np.int16)
    if grid == "hexagonal":
        phase[1::2, -1] = -1  # the padding cell of the short rows
    phases = [{"id": 1, "name": "Ni", "symmetry": "m-3m", "lattice": [3.52, 3.52, 3.52, 90, 90, 90]}]
    ebsd = ebsd_dataset(euler, phase, step_um=0.25, phases=phases, grid=grid)
    path = write_ang(ebsd, tmp_path / "map.ang")
    text = path.read_text()
    claimed = "SqrGrid" if grid == "hexagonal" else "HexGrid"
    path.write_text(text.replace("HexGrid" if grid == "hexagonal" else "SqrGrid", claimed))
    with pytest.warns(UserWarning, match=f"point coordinates form a {grid} grid"):
        back = read_ebsd(path)
    assert back.attrs["grid"] == grid and (back.sizes["y"], back.sizes["x"]) == (ny, nx)
    np.testing.assert_array_equal(back["phase"].values, phase)
    ok = phase >= 0
    np.testing.assert_allclose(back["euler"].values[ok], euler[ok], atol=1e-5)


@pytest.mark.parametrize("n_cols", [6, 7])
def test_ang_of_old_oim_versions_without_phase_column(tmp_path, n_cols):
    """OIM versions 1 and 2 wrote 6 (phi1 PHI phi2 x y IQ) and 7 (... CI) columns; they were
    refused ("expected at least 8"). A single-phase header makes every point that phase; with
    several phases and no phase column the file is refused, naming why."""
    rng = np.random.default_rng(5)
    euler = rng.random((2, 3, 3)) * [2 * np.pi, np.pi, 2 * np.pi]
    phases = [{"id": 1, "name": "Fe", "symmetry": "m-3m", "lattice": [2.87, 2.87, 2.87, 90, 90, 90]}]
    path = write_ang(ebsd_dataset(euler, np.ones((2, 3), np.int16), step_um=0.5, phases=phases), tmp_path / "v.ang")
    lines = [line if line.startswith("#") else " ".join(line.split()[:n_cols]) for line in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")
    back = read_ebsd(path)
    np.testing.assert_array_equal(back["phase"].values, 1)
    np.testing.assert_allclose(back["euler"].values, euler, atol=1e-6)
    assert ("ci" in back) == (n_cols == 7)
    two_phases = [*phases, {"id": 2, "name": "Fe-fcc", "symmetry": "m-3m", "lattice": [3.6, 3.6, 3.6, 90, 90, 90]}]
    two_path = write_ang(ebsd_dataset(euler, np.ones((2, 3), np.int16), step_um=0.5, phases=two_phases),
                         tmp_path / "two.ang")
    lines = [line if line.startswith("#") else " ".join(line.split()[:n_cols]) for line in two_path.read_text().splitlines()]
    two_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError, match="no phase column, but the header lists 2 phases"):
        read_ebsd(two_path)


def test_oim8_column_headers_name_the_extra_columns(tmp_path):
    """OIM 8 writes # COLUMN_HEADERS; its PRIAS columns were named col10..col12."""
    rng = np.random.default_rng(6)
    euler = rng.random((2, 3, 3)) * [2 * np.pi, np.pi, 2 * np.pi]
    phases = [{"id": 1, "name": "Fe", "symmetry": "m-3m", "lattice": [2.87, 2.87, 2.87, 90, 90, 90]}]
    path = write_ang(ebsd_dataset(euler, np.ones((2, 3), np.int16), step_um=0.5, phases=phases), tmp_path / "v8.ang")
    head = ("# COLUMN_COUNT: 13\n# COLUMN_HEADERS: phi1, PHI, phi2, x, y, IQ, CI, Phase index, SEM, Fit, "
            "PRIAS Bottom Strip, PRIAS Center Square, PRIAS Top Strip\n")
    lines = path.read_text().splitlines()
    last = max(i for i, line in enumerate(lines) if line.startswith("#"))
    body = [f"{line} 11 12 13" for line in lines[last + 1:] if line.strip()]
    path.write_text("\n".join(lines[: last + 1]) + "\n" + head + "\n".join(body) + "\n")
    back = read_ebsd(path)
    assert float(back["prias_bottom"].max()) == 11 and float(back["prias_top"].min()) == 13
    np.testing.assert_allclose(back["euler"].values, euler, atol=1e-6)


def test_stacked_coordinates_fall_back_to_the_header_grid(tmp_path):
    """kikuchipy's EDAX test file copies X Position into Y Position: by the coordinates 9 points
    land on a 3-cell diagonal. The header's 3 x 3 grid holds one cell per point, so the points
    go there in the file's (raster) order, with a warning."""
    rng = np.random.default_rng(2)
    ny, nx = 3, 4
    euler = rng.random((ny, nx, 3)) * [2 * np.pi, np.pi, 2 * np.pi]
    phases = [{"id": 1, "name": "Ni", "symmetry": "m-3m", "lattice": [3.52, 3.52, 3.52, 90, 90, 90]}]
    ebsd = ebsd_dataset(euler, np.ones((ny, nx), np.int16), step_um=1.5, phases=phases)
    path = write_ang(ebsd, tmp_path / "stacked.ang")
    lines = path.read_text().splitlines()
    out = []
    for line in lines:
        if line.startswith("#") or not line.strip():
            out.append(line)
            continue
        v = line.split()
        v[4] = v[3]  # y := x
        out.append(" ".join(v))
    path.write_text("\n".join(out) + "\n")
    with pytest.warns(UserWarning, match="header's 3 x 4 grid has one cell per point"):
        back = read_ebsd(path)
    assert (back.sizes["y"], back.sizes["x"]) == (ny, nx)
    np.testing.assert_allclose(back["euler"].values, euler, atol=1e-5)


@pytest.mark.shared_data
def test_ctf_space_group_is_kept(shared_file):
    ebsd = read_ebsd(shared_file("ebsd_ctf/mtex_twins_Mg.ctf"))
    [phase] = phases_of(ebsd)
    assert (phase["symmetry"], phase["space_group"]) == ("6/mmm", 194)
    ebsd = read_ebsd(shared_file("ebsd_ctf/mtexTools_MEA_60CR_1C.ctf"))
    assert "space_group" not in phases_of(ebsd)[0]  # written as 0 by MTEX: unknown, not kept


def _oxford_ctf(path, laue: int, name: str, rows: list[tuple[float, float, float]]):
    """A one-phase Oxford .ctf, one row of points with the given Euler angles (degrees),
    written by hand so that the reader is tested against the format, not against metallo's writer."""
    lines = ["Channel Text File", "Prj\ttest", "JobMode\tGrid", f"XCells\t{len(rows)}", "YCells\t1",
             "XStep\t1", "YStep\t1", "Phases\t1", f"3.2;3.2;5.2\t90;90;120\t{name}\t{laue}\t0",
             "Phase\tX\tY\tBands\tError\tEuler1\tEuler2\tEuler3\tMAD\tBC\tBS"]
    lines += [f"1\t{k}\t0\t8\t0\t{e1}\t{e2}\t{e3}\t0.5\t100\t100" for k, (e1, e2, e3) in enumerate(rows)]
    path.write_text("\r\n".join(lines) + "\r\n")
    return path


def test_oxford_hexagonal_frame_gives_the_right_ipf_colour(tmp_path):
    """Oxford's hexagonal crystal x axis is a* = [10-10] (MTEX reads .ctf with X||a*; EbsdLib/
    DREAM.3D add 30 deg to phi2 for the EDAX frame). Euler (0, 0, 0) in a .ctf puts [10-10] along
    sample x, which metallo's hexagonal key colours blue; (0, 0, 30) puts [2-1-10] there: green.
    Read as if x were a (before this correction) the colours were swapped."""
    from metallo.ebsd import ipf_colors

    ebsd = read_ebsd(_oxford_ctf(tmp_path / "mg.ctf", 9, "Magnesium", [(0, 0, 0), (0, 0, 30)]))
    rgb = np.asarray(ipf_colors(ebsd, direction="x"))[0]
    prism, a_axis = rgb[0], rgb[1]
    assert prism[2] == pytest.approx(1.0, abs=1e-6) and prism[1] < 0.05   # [10-10]: blue
    assert a_axis[1] == pytest.approx(1.0, abs=1e-6) and a_axis[2] < 0.05  # [2-1-10]: green
    # Written back as .ctf, the file holds Oxford's angles again.
    back = read_ebsd(write_ctf(ebsd, tmp_path / "again.ctf"))
    np.testing.assert_allclose(np.degrees(back["euler"].values), np.degrees(ebsd["euler"].values), atol=1e-4)
    raw = [line.split("\t")[5:8] for line in (tmp_path / "again.ctf").read_text().splitlines()[-2:]]
    np.testing.assert_allclose(np.array(raw, float) % 360, [[0, 0, 0], [0, 0, 30]], atol=1e-4)


def test_oxford_trigonal_two_fold_lies_along_b(tmp_path):
    """-3m (e.g. calcite, corundum) has two-folds along a, b and a+b. In Oxford's frame b lies
    along y, so two points 180 deg apart about sample-and-crystal y are the same orientation
    (0 deg); metallo's -3m has its two-folds along x, 60 and 120 deg, and without the frame
    correction it found them 60 deg apart."""
    from metallo.ebsd import euler_to_quat, misorientation_angle, quat_to_euler

    half_turn_y = np.degrees(quat_to_euler(np.array([0.0, 0.0, 1.0, 0.0])))
    ebsd = read_ebsd(_oxford_ctf(tmp_path / "calcite.ctf", 7, "Calcite", [(0, 0, 0), tuple(half_turn_y)]))
    q = euler_to_quat(ebsd["euler"].values[0])
    assert float(misorientation_angle(q[0], q[1], symmetry="-3m")) == pytest.approx(0.0, abs=1e-4)
    raw = euler_to_quat(np.radians([[0.0, 0.0, 0.0], half_turn_y]))
    assert float(misorientation_angle(raw[0], raw[1], symmetry="-3m")) == pytest.approx(60.0, abs=1e-4)
    # The sign of the 30 deg (which the angle above cannot tell: -3m's two-folds repeat every
    # 60 deg): Oxford's Euler (0, 0, 0) puts a* along sample x and b along y, so the crystal's a
    # axis, metallo's x, points 30 deg clockwise of sample x.
    from metallo.ebsd._rotations import quat_to_matrix

    a_in_sample = quat_to_matrix(q[0]).T @ np.array([1.0, 0.0, 0.0])
    np.testing.assert_allclose(a_in_sample, [np.cos(np.radians(30)), -0.5, 0.0], atol=1e-6)


@pytest.mark.shared_data
def test_magnesium_twin_axes_are_a_axes_in_metallos_frame(shared_file):
    """A known answer on a real Oxford map: the {10-12} extension twin of magnesium is 86.3 deg
    about <2-1-10>, an a axis (metallo's x and the directions 60 deg from it). MTEX's twins_Mg.ctf
    holds 715 such neighbour pairs; with the Oxford frame corrected, their axes lie in the basal
    plane within 0.2 deg (median) of an a axis. Read as stored (x || a* taken for x || a) they lay
    29.8 deg off, on the <10-10> directions."""
    from metallo.ebsd import euler_to_quat, misorientation
    from metallo.ebsd._neighbours import offset_pairs

    ebsd = read_ebsd(shared_file("ebsd_ctf/mtex_twins_Mg.ctf"))
    phase = ebsd["phase"].values.ravel()
    q = euler_to_quat(ebsd["euler"].values.reshape(-1, 3))
    a, b = offset_pairs(ebsd["phase"].shape, "square", (0, 1))
    ok = (phase[a] >= 0) & (phase[b] >= 0)
    angle, axis = misorientation(q[a[ok]], q[b[ok]], symmetry="6/mmm")
    twin = (angle > 84.0) & (angle < 89.0)
    assert twin.sum() > 500
    eta = np.degrees(np.arctan2(axis[twin, 1], axis[twin, 0])) % 60.0
    off_a = np.minimum(eta, 60.0 - eta)
    assert np.median(np.abs(axis[twin, 2])) < 0.02
    assert np.median(off_a) < 1.0 and np.mean(off_a < 5.0) > 0.9


def _mtex_style_test_ctf(hexagonal: bool) -> str:
    """A .ctf as MTEX's data/EBSD/testdata_generator.py writes one: 2 x 2 grains of 15 x 15
    points of a monoclinic phase (Euler angles within +-1 deg of each grain's), the header naming
    11 columns while the rows hold 10 (no BS), XStep/YStep 1 and, for the hexagonal grid,
    rows sqrt(3)/2 apart with odd rows offset by half a step. MAD and BC hold the grain's column
    and row, the known answer."""
    rng = np.random.default_rng(3)
    grain_euler = {(gx, gy): rng.uniform(0, 90, 3) for gx in range(2) for gy in range(2)}
    lines = ["Channel Text File", "Prj\ttestdata.ctf", "JobMode\tGrid", "XCells\t30", "YCells\t30",
             "XStep\t1", "YStep\t1", "Phases\t1",
             "9.541;17.74;5.295\t90;103.67;90\tGlaucophane\t2\t0",
             "Phase\tX\tY\tBands\tError\tEuler1\tEuler2\tEuler3\tMAD\tBC\tBS"]
    for y in range(30):
        for x in range(30):
            xpos = x + 1 + (0.5 if hexagonal and y % 2 else 0.0)
            ypos = y * np.sqrt(3) / 2 if hexagonal else float(y)
            e = grain_euler[(x // 15, y // 15)] + rng.uniform(-1, 1, 3)
            lines.append(f"1\t{xpos:6.4f}\t{ypos:6.4f}\t7\t0\t{e[0]:6.4f}\t{e[1]:6.4f}\t{e[2]:6.4f}\t{x // 15}\t{y // 15}")
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize("hexagonal", [False, True])
def test_ctf_on_a_hexagonal_grid_is_a_hexagonal_map(tmp_path, hexagonal):
    """The reader placed the points of a hexagonal .ctf on hexagonal rows but called the map
    square, so neighbours, areas and KAM were those of a square grid."""
    from metallo.ebsd import grains

    path = tmp_path / ("hex.ctf" if hexagonal else "sqr.ctf")
    path.write_text(_mtex_style_test_ctf(hexagonal), newline="")
    with pytest.warns(UserWarning, match="names 11 columns but the data rows hold 10; BS not read"):
        ebsd = read_ebsd(path)
    assert ebsd.attrs["grid"] == ("hexagonal" if hexagonal else "square")
    assert ebsd.sizes["y"] == 30 and ebsd.sizes["x"] == 30
    g = grains(ebsd, tolerance_deg=5.0, min_size_px=1)
    cell = np.sqrt(3) / 2 if hexagonal else 1.0
    assert sorted(g.table["n_pixels"]) == [225] * 4
    np.testing.assert_allclose(g.table["area_um2"], 225 * cell)
    truth = ebsd["fit"].values * 2 + ebsd["iq"].values  # MAD -> fit, BC -> iq
    ids = g.ids.values
    assert all(len(np.unique(truth[ids == k])) == 1 for k in range(4))
