"""TSL OIM grain files (type 1 per point, type 2 per grain) on the real M1700 martensite crop."""

from __future__ import annotations

import numpy as np
import pytest

from metallo._ebsd_dataset import phases_of
from metallo.ebsd import euler_to_quat, grains, misorientation_angle
from metallo.errors import ConfigError, FormatError
from metallo.io import read_ebsd
from metallo.io._ebsd_grainfile import read_grain_file, read_grain_table
from metallo.segment import adjusted_rand_index

GF1 = "ebsd_martensite_pag/byu_M1700_martensite_cropped_gf1.txt"
GF2 = "ebsd_martensite_pag/byu_M1700_martensite_cropped_gf2.txt"


@pytest.mark.shared_data
def test_type1_reads_the_full_grid(shared_file):
    ebsd = read_ebsd(shared_file(GF1))  # sniffed, no extension of its own
    assert ebsd.sizes["y"] == 162 and ebsd.sizes["x"] == 140
    assert ebsd.attrs["step_um"] == pytest.approx(0.1)
    assert (ebsd["phase"].values == 1).all()
    # First data row: 3.00447 1.97136 0.94412 at (0, 0), CI 0.086, grain 1.
    assert np.allclose(ebsd["euler"].values[0, 0], [3.00447, 1.97136, 0.94412])
    assert ebsd["ci"].values[0, 0] == pytest.approx(0.086)
    assert ebsd["oim_grain_id"].values[0, 0] == 1
    assert ebsd["oim_grain_id"].values[-1, -1] == 3580


@pytest.mark.shared_data
def test_type2_point_counts_match_type1(shared_file):
    table = read_grain_table(shared_file(GF2))
    ebsd = read_grain_file(shared_file(GF1))
    assert len(table) == 1624
    counts = np.bincount(ebsd["oim_grain_id"].values.ravel())
    assert (counts[table.index.to_numpy()] == table["n_points"].to_numpy()).all()
    with pytest.raises(FormatError, match="type 2"):
        read_grain_file(shared_file(GF2))


def one_to_one_fraction(reference: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of points whose grain and reference grain contain exactly the same points."""
    pairs = np.unique(np.stack([reference, labels]), axis=1)
    ref_parts = np.unique(pairs[0], return_counts=True)
    lab_parts = np.unique(pairs[1], return_counts=True)
    ref_n = dict(zip(*ref_parts, strict=True))
    lab_n = dict(zip(*lab_parts, strict=True))
    one = np.array([ref_n[r] == 1 and lab_n[m] == 1 for r, m in zip(reference, labels, strict=True)])
    return float(one.mean())


def test_one_to_one_fraction_known_answer():
    ref = np.array([0, 0, 1, 1, 2, 2])
    assert one_to_one_fraction(ref, np.array([5, 5, 7, 7, 9, 9])) == 1.0
    assert one_to_one_fraction(ref, np.array([5, 5, 7, 7, 7, 7])) == pytest.approx(2 / 6)
    assert one_to_one_fraction(ref, np.array([5, 6, 7, 7, 9, 9])) == pytest.approx(4 / 6)


@pytest.mark.shared_data
def test_metallo_grains_reproduce_oim_grain_ids(shared_file):
    # OIM's "Martensite" phase was tetragonal: read as 4/mmm, metallo's 5 deg grains on the 4
    # edge neighbours (min size 1: OIM's points below its minimum size keep their own ids) are
    # OIM's grains, point for point.
    ebsd = read_grain_file(shared_file(GF1), symmetry="4/mmm")
    assert phases_of(ebsd)[0]["symmetry"] == "4/mmm" and "given (Martensite: 4/mmm)" in ebsd.attrs["header"]
    g = grains(ebsd, tolerance_deg=5.0, min_size_px=1)
    oim = ebsd["oim_grain_id"].values.ravel()
    mine = g.ids.values.ravel()
    assert adjusted_rand_index(oim, mine) == pytest.approx(1.0)
    assert one_to_one_fraction(oim, mine) == 1.0
    assert len(g.table) == 3580 and int((g.table["n_pixels"] >= 2).sum()) == 1624
    # Against the grain table (type 2): same point counts, mean orientations, centroids.
    table = read_grain_table(shared_file(GF2))
    big = g.table[g.table["n_pixels"] >= 2]
    first = np.unique(mine, return_index=True)[1]
    oim_id = oim[first][big.index.to_numpy()]
    ref = table.loc[oim_id]
    assert (ref["n_points"].to_numpy() == big["n_pixels"].to_numpy()).all()
    ang = misorientation_angle(euler_to_quat(ref[["phi1", "Phi", "phi2"]].to_numpy()),
                               big[["q0", "q1", "q2", "q3"]].to_numpy(), symmetry="4/mmm")
    assert ang.max() < 0.01  # measured 0.003 deg (the table rounds to 1e-5 rad)
    assert np.abs(ref["x_um"].to_numpy() - big["centroid_x_um"].to_numpy()).max() < 1e-3


@pytest.mark.shared_data
def test_grain_file_read_as_cubic_gives_coarser_grains(shared_file):
    # As cubic (the default, for OR work) neighbours a 90 deg c-axis turn apart join: every
    # OIM grain lies inside one metallo grain, and the grains are coarser (1,241 vs 3,580).
    ebsd = read_grain_file(shared_file(GF1))
    assert phases_of(ebsd)[0]["symmetry"] == "m-3m"
    g = grains(ebsd, tolerance_deg=5.0, min_size_px=1)
    oim = ebsd["oim_grain_id"].values.ravel()
    mine = g.ids.values.ravel()
    assert len(g.table) == 1241
    assert adjusted_rand_index(oim, mine) == pytest.approx(0.7546, abs=1e-3)
    import pandas as pd

    assert (pd.crosstab(oim, mine).gt(0).sum(axis=1) == 1).all()
    with pytest.raises(ConfigError, match="not a Laue group"):
        read_grain_file(shared_file(GF1), symmetry="bct")


def test_not_a_grain_file(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("# Header: something\n1 2 3\n")
    with pytest.raises(FormatError, match="not a TSL grain file"):
        read_grain_file(path)


def _tiny_grain_file(path):
    header = "\n".join([
        "# Header: tiny", "# Grain Tolerance Angle: 5.00", "# Minimum Grain Size: 2",
        "# Column 1-3: phi1, PHI, phi2 (orientation of point in radians)",
        "# Column 4-5: x, y (coordinates of point in microns)", "# Column 6:   IQ (image quality)",
        "# Column 7:   CI (confidence index)", "# Column 8:   Fit (degrees)", "# Column 9:   Grain ID (integer)",
        "# Column 10:  edge (1 for grains at edges of scan and 0 for interior grains)", "# Column 11:  phase name",
    ])
    rows = ["0.1 0.2 0.3 0.0 0.0 100 0.5 1.0 1 1 Martensite", "0.1 0.2 0.3 0.5 0.0 100 0.5 1.0 1 1 Martensite",
            "1.1 0.2 0.3 0.0 0.5 100 0.5 1.0 2 1 Alumina", "1.1 0.2 0.3 0.5 0.5 100 0.5 1.0 2 1 Alumina"]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_grain_file_symmetry_option(tmp_path):
    path = _tiny_grain_file(tmp_path / "tiny_gf1.txt")
    with pytest.warns(UserWarning, match="Alumina"):
        ebsd = read_grain_file(path)
    assert [p["symmetry"] for p in phases_of(ebsd)] == ["m-3m", "m-3m"]
    assert "assumed" in ebsd.attrs["header"]
    ebsd = read_grain_file(path, symmetry={"Martensite": "4/mmm", "Alumina": "-3m"})
    assert [p["symmetry"] for p in phases_of(ebsd)] == ["4/mmm", "-3m"]
    assert "given (Martensite: 4/mmm, Alumina: -3m)" in ebsd.attrs["header"]
    ebsd = read_ebsd(path, symmetry="4/mmm")  # passed on by the registry
    assert [p["symmetry"] for p in phases_of(ebsd)] == ["4/mmm", "4/mmm"]
    with pytest.raises(ConfigError, match="tiny_gf1.txt.*'Alumina'.*not a Laue group"):
        read_grain_file(path, symmetry={"Alumina": "hexagonal"})


def test_short_oim_header_and_phase_names_with_spaces(tmp_path):
    # OIM's shorter exports start at the grid line, without the "# Header:" project line, and
    # write generic phase names with a space (as in BYU's reconstruction test files).
    lines = ["# Square Grid", "#", "#",
             "# Column 1-3: phi1, PHI, phi2 (orientation of point in radians)",
             "# Column 4-5: x, y (coordinates of point in microns)", "# Column 6:   IQ (image quality)",
             "# Column 7:   CI (confidence index)", "# Column 8:   Fit (degrees)", "# Column 9:   Grain ID (integer)",
             "# Column 10:  edge (1 for grains at edges of scan and 0 for interior grains)",
             "# Column 11:  phase name", "#"]
    rows = ["  3.41482 0.99179 4.66617 0.00000 0.00000 1869.3 0.842 0.62 1 1 BCC GENERIC",
            "  3.41379 0.98923 4.66889 1.00000 0.00000 1893.5 0.812 0.66 1 1 BCC GENERIC",
            "  4.06993 1.62946 5.92167 0.00000 1.00000  812.2 0.000 1.96 7 1 FCC Generic",
            "  3.39692 0.64447 6.24650 1.00000 1.00000 1028.7 0.152 1.45 8 1 BCC GENERIC"]
    path = tmp_path / "short_gf1.txt"
    path.write_text("\n".join(lines + rows) + "\n")
    from metallo.io import read_ebsd

    ebsd = read_ebsd(path)  # found by the sniffer: no extension tells the format
    assert [p["name"] for p in phases_of(ebsd)] == ["BCC GENERIC", "FCC Generic"]
    assert ebsd.sizes["y"] == 2 and ebsd.sizes["x"] == 2
    assert ebsd["phase"].values.tolist() == [[1, 1], [2, 1]]
    assert ebsd["oim_grain_id"].values.tolist() == [[1, 1], [7, 8]]
    from metallo.ebsd._parent import _phase_ids

    assert _phase_ids(ebsd, None, None) == ([1], [2])  # child bcc, parent fcc by name


def test_grain_table_without_column_header(tmp_path):
    path = tmp_path / "short_gf2.txt"
    path.write_text("# Square Grid\n#\n#\n"
                    "     1   0.18976   0.58070   0.06843     1.000     0.000 1500.0  0.765  0.70   1      3 \n"
                    "     5   3.41005   0.62716   3.10748     4.458     3.625 1048.4  0.142  1.59   1     24 \n")
    from metallo.io import read_grain_table as public_read_grain_table

    with pytest.warns(UserWarning, match="type-2 order"):
        table = public_read_grain_table(path)
    assert table.index.tolist() == [1, 5] and table["n_points"].tolist() == [3, 24]
    assert table.loc[5, "x_um"] == pytest.approx(4.458)
    path.write_text("# Square Grid\n#\n1 2 3 4 5 6 7 8 9 1.5 3\n")
    with pytest.raises(FormatError, match="not a TSL grain file of type 2"):
        public_read_grain_table(path)


def test_type1_on_a_hexagonal_grid_is_a_hexagonal_map(tmp_path):
    """OIM scans hexagonal grids by default; a grain file of one was read as a square map."""
    header = ["# Header: Project1::scan::All data::", "# Grain Tolerance Angle: 5.00",
              "# Minimum Grain Size: 2", "# Column 1-3: phi1, PHI, phi2 (orientation of point in radians)",
              "# Column 4-5: x, y (coordinates of point in microns)", "# Column 6:   IQ (image quality)",
              "# Column 7:   CI (confidence index)", "# Column 8:   Fit (degrees)",
              "# Column 9:   Grain ID (integer)", "# Column 10:  edge (1 for grains at edges of scan and 0 for interior grains)",
              "# Column 11:  phase name"]
    rows = []
    step = 0.2
    for r in range(12):
        for c in range(16):
            grain = 1 if c < 8 else 2
            phi1 = 0.1 if grain == 1 else 0.9
            x, y = (c + 0.5 * (r % 2)) * step, r * step * np.sqrt(3) / 2
            rows.append(f"{phi1:.5f} 0.50000 0.20000 {x:.5f} {y:.5f} 1000.0 0.500 1.00 {grain} 1 Ferrite")
    path = tmp_path / "hex_gf1.txt"
    path.write_text("\n".join(header + rows) + "\n")
    ebsd = read_grain_file(path)
    assert ebsd.attrs["grid"] == "hexagonal" and ebsd.sizes["y"] == 12 and ebsd.sizes["x"] == 16
    assert ebsd.attrs["step_um"] == pytest.approx(step)
    g = grains(ebsd, tolerance_deg=5.0, min_size_px=1)
    assert sorted(g.table["n_pixels"]) == [96, 96]
    np.testing.assert_allclose(g.table["area_um2"], 96 * step**2 * np.sqrt(3) / 2, rtol=1e-6)
