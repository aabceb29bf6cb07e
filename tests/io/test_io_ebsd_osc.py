"""EDAX .osc binary reader: the real copper HexGrid scan against its own .ang export, layout
variants and damaged files."""

from __future__ import annotations

import numpy as np
import pytest

from metallo.ebsd import phases_of
from metallo.errors import FormatError
from metallo.io import read_ebsd

OSC = "ebsd_osc/pythonEBSD_copper_hex.osc"
ANG = "ebsd_osc/pythonEBSD_copper_hex.ang"


@pytest.mark.shared_data
def test_osc_matches_its_ang_export(shared_file):
    osc = read_ebsd(shared_file(OSC))
    ang = read_ebsd(shared_file(ANG))
    assert osc.attrs["grid"] == ang.attrs["grid"] == "hexagonal"
    assert (osc.sizes["y"], osc.sizes["x"]) == (231, 104)
    assert osc.attrs["step_um"] == pytest.approx(0.2)
    assert osc.attrs["step_y_um"] == pytest.approx(0.2 * np.sqrt(3) / 2, rel=1e-9)
    np.testing.assert_array_equal(osc["x"].values, ang["x"].values)
    np.testing.assert_array_equal(osc["y"].values, ang["y"].values)
    np.testing.assert_array_equal(osc["phase"].values, ang["phase"].values)
    indexed = osc["phase"].values >= 0
    assert int(indexed.sum()) == 23909 - 2945
    # padding cell at the end of each odd row (103 points there): not a point
    assert (osc["phase"].values[1::2, -1] == -1).all()
    np.testing.assert_allclose(osc["euler"].values[indexed], ang["euler"].values[indexed], atol=1e-5, rtol=0)
    assert np.abs(osc["euler"].values[indexed] - ang["euler"].values[indexed]).max() <= 1e-5
    # IQ as float32 in .osc, printed with 3 decimals... in the .ang: within 2.4e-4 (SOURCE.md)
    ok = np.isfinite(osc["iq"].values) & np.isfinite(ang["iq"].values)
    assert np.abs(osc["iq"].values[ok] - ang["iq"].values[ok]).max() <= 2.5e-4
    assert [p["symmetry"] for p in phases_of(osc)] == ["m-3m"]


def _osc_bytes(points: np.ndarray, *, x_step: float, y_step: float, ncols_even: int, nrows: int,
               count_word: bool, phases: list[tuple[str, int, list[float]]]) -> bytes:
    """A minimal .osc: 8 header words, a phase block and a data block (synthetic layout)."""
    words = np.array([0, 1, 0, 0, ncols_even, nrows - 1, len(points), 4], "<u4").tobytes()
    block = bytes.fromhex("B90BEFFF01000000") + np.array([1.0], "<f4").tobytes()
    block += np.array([len(phases)], "<i4").tobytes()
    for name, code, lattice in phases:
        block += name.encode().ljust(256, b"\x00") + np.array([code], "<i4").tobytes()
        block += np.array(lattice, "<f4").tobytes() + np.array([0], "<i4").tobytes()
    data = np.asarray(points, "<f4").tobytes()
    steps = np.array([x_step, y_step], "<f4").tobytes()
    count = np.array([len(data) + 8], "<u4").tobytes() if count_word else b""
    return words + b"\x00" * 64 + block + bytes.fromhex("B90BEFFF02000000") + count + steps + data


def _square_points(ny: int, nx: int, n_cols: int, step: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.divmod(np.arange(ny * nx), nx)
    pts = np.zeros((ny * nx, n_cols))
    pts[:, :3] = rng.random((ny * nx, 3)) * [6.28, 3.14, 6.28]
    pts[:, 3], pts[:, 4] = xx * step, yy * step
    pts[:, 5], pts[:, 6], pts[:, 7] = 100.0, 0.5, 1 + (rng.random(ny * nx) < 0.5)
    return pts


@pytest.mark.parametrize("n_cols", [10, 13])
@pytest.mark.parametrize("count_word", [False, True])
def test_synthetic_osc_layouts(tmp_path, n_cols, count_word):
    pts = _square_points(3, 4, n_cols, 0.5)
    raw = _osc_bytes(pts, x_step=0.5, y_step=0.5, ncols_even=4, nrows=3, count_word=count_word,
                     phases=[("Iron", 43, [2.87, 2.87, 2.87, 90, 90, 90]), ("Ti", 62, [2.95, 2.95, 4.68, 90, 90, 120])])
    path = tmp_path / "map.osc"
    path.write_bytes(raw + (b"\xb9\x0b\xef\xff\x40\x00\x00\x00trailing" if n_cols == 13 else b""))
    ebsd = read_ebsd(path)
    assert (ebsd.sizes["y"], ebsd.sizes["x"]) == (3, 4) and ebsd.attrs["grid"] == "square"
    assert [p["name"] for p in phases_of(ebsd)] == ["Iron", "Ti"]
    assert [p["symmetry"] for p in phases_of(ebsd)] == ["m-3m", "6/mmm"]
    np.testing.assert_allclose(ebsd["euler"].values.reshape(-1, 3), pts[:, :3], atol=1e-6)
    np.testing.assert_array_equal(ebsd["phase"].values.ravel(), pts[:, 7])
    if n_cols == 13:
        assert "col12" in ebsd


def test_truncated_osc_is_trimmed_with_a_warning(tmp_path):
    pts = _square_points(4, 5, 10, 1.0)
    pts[:, 7] = 1
    raw = _osc_bytes(pts, x_step=1.0, y_step=1.0, ncols_even=5, nrows=4, count_word=False,
                     phases=[("Iron", 43, [2.87, 2.87, 2.87, 90, 90, 90])])
    path = tmp_path / "cut.osc"
    path.write_bytes(raw[: len(raw) - 7 * 40 - 3])  # 12 whole points and a partial one
    with pytest.warns(UserWarning, match="header says 20 points but the file holds 12"):
        ebsd = read_ebsd(path)
    assert (ebsd.sizes["y"], ebsd.sizes["x"]) == (3, 5)
    assert int((ebsd["phase"].values >= 0).sum()) == 12


def test_osc_without_data_marker(tmp_path):
    path = tmp_path / "bad.osc"
    path.write_bytes(np.zeros(20, "<u4").tobytes() + bytes.fromhex("B90BEFFF01000000") + b"\x00" * 400)
    with pytest.raises(FormatError, match="bad.osc: no data block .marker B9 0B EF FF 02"):
        read_ebsd(path)
