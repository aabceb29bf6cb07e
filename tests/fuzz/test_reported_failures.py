"""The failures reported in issue 16, on the real files: each is now a clear error or a
documented warning with the bad points marked."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import metallo as mt
from metallo.errors import ConfigError, FormatError

pytestmark = pytest.mark.shared_data


def _lines(path):
    return path.read_text(encoding="latin-1").split("\n")


def test_clean_with_a_min_ci_no_point_passes_is_a_config_error(shared_file):
    ebsd = mt.io.read_ebsd(shared_file("ebsd_ang/sdss_ferrite_austenite.ang"))
    with pytest.raises(ConfigError, match=r"no point is left indexed .*min_ci=0\.85.*highest CI in the map: 0\.842"):
        mt.ebsd.clean(ebsd, min_ci=0.85)


def test_one_corrupt_coordinate_is_dropped_and_the_grid_kept(shared_file, tmp_path):
    src = shared_file("ebsd_ang/sdss_ferrite_austenite.ang")
    lines = _lines(src)
    row = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")) + 500
    tokens = lines[row].split()
    tokens[3] = "1000000000.0"  # x of one point
    lines[row] = " ".join(tokens)
    bad = tmp_path / "bad.ang"
    bad.write_text("\n".join(lines), encoding="latin-1")
    with pytest.warns(UserWarning, match=r"1 points have coordinates off the .*grid .*x=1e\+09.*dropped"):
        ebsd = mt.io.read_ebsd(bad)
    assert dict(ebsd.sizes) == {"y": 100, "x": 117, "angle": 3}
    assert int((ebsd["phase"].values < 0).sum()) == 1  # its cell: not indexed
    assert ebsd.attrs["step_um"] == mt.io.read_ebsd(src).attrs["step_um"]


def test_a_header_claiming_99999999_rows_allocates_only_what_the_file_holds(shared_file, tmp_path):
    src = shared_file("ebsd_ctf/ebsdlib_Test_European_1_decimal_comma.ctf")
    text = src.read_text(encoding="latin-1")
    bad = tmp_path / "big.ctf"
    bad.write_text(re.sub(r"YCells\t\d+", "YCells\t99999999", text), encoding="latin-1")
    with pytest.warns(UserWarning, match=r"header says 99999999 rows .* holds only 200 points; using the coordinates"):
        ebsd = mt.io.read_ebsd(bad)
    assert dict(ebsd.sizes) == dict(mt.io.read_ebsd(src).sizes)


def test_missing_rows_are_reported_and_marked_not_indexed(shared_file, tmp_path):
    src = shared_file("ebsd_ang/sdss_ferrite_austenite.ang")
    lines = _lines(src)
    first = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    kept = lines[: first + 3000] + lines[first + 3500 :]  # 500 rows deleted mid-file
    bad = tmp_path / "holes.ang"
    bad.write_text("\n".join(kept), encoding="latin-1")
    with pytest.warns(UserWarning, match=r"500 of 11700 grid points are missing .* marked not indexed"):
        ebsd = mt.io.read_ebsd(bad)
    assert int((ebsd["phase"].values < 0).sum()) == 500


@pytest.mark.parametrize(("column", "value"), [(0, "1.75e306"), (6, "inf"), (5, "1e308"), (1, "-3.2")])
def test_impossible_values_are_marked_not_indexed_with_a_warning(shared_file, tmp_path, column, value):
    src = shared_file("ebsd_ang/sdss_ferrite_austenite.ang")
    lines = _lines(src)
    row = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")) + 10
    tokens = lines[row].split()
    tokens[column] = value
    lines[row] = " ".join(tokens)
    bad = tmp_path / "v.ang"
    bad.write_text("\n".join(lines), encoding="latin-1")
    with pytest.warns(UserWarning, match=rf"1 points have non-finite or out-of-range values .*line {row + 1}\)"):
        ebsd = mt.io.read_ebsd(bad)
    assert ebsd["phase"].values.reshape(-1)[10] == -1
    from metallo._specimen_schema import validate_values

    validate_values(ebsd, "ebsd/m", "ebsd", where="test")  # nothing impossible left at indexed points


def test_a_file_of_nul_bytes_gives_a_short_message(tmp_path):
    path = tmp_path / "zeros.ang"
    path.write_bytes(b"\x00" * 20_000)
    with pytest.raises(FormatError) as info:
        mt.io.read_ebsd(path)
    assert len(str(info.value)) < 400 and "\n" not in str(info.value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isfinite(0)
