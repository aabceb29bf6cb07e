"""Vendor formats on the real shared files (known answers read independently with h5py /
numpy), synthetic HDF5 layouts (slices, hexagonal grids, phase tables), and the reader
registry (HDF5 probes, the metallo.readers entry-point group)."""

from __future__ import annotations

import importlib.metadata
import json
import sys
import warnings

import h5py
import numpy as np
import pytest

import metallo.io._plugins as plugins
from metallo.ebsd import phases_of
from metallo.errors import ConfigError, FormatError
from metallo.io import read_ebsd, reader_names
from metallo.io._plugins import ReaderPlugin, reader_for

EDAX = "ebsd_vendor_hdf5/ebsdlib_EdaxAngOnly_Ni.h5"
OINA = "ebsd_vendor_hdf5/kikuchipy_oxford_dummy_3x3.h5oina"
BRUKER = "ebsd_vendor_hdf5/kikuchipy_bruker_dummy_3x3.h5"
EMSOFT = "ebsd_vendor_hdf5/kikuchipy_emsoft_EBSD_TEST_Ni.h5"
CPR = "correlative_defdap_ni_ebsd_dic/testDataEBSD.cpr"


@pytest.mark.shared_data
def test_edax_h5_nickel(shared_file):
    path = shared_file(EDAX)
    assert reader_for(path, kind="ebsd").name == "edax-h5"
    ebsd = read_ebsd(path)
    assert (ebsd.sizes["y"], ebsd.sizes["x"]) == (151, 186)
    assert ebsd.attrs["step_um"] == 1.5 and ebsd.attrs["grid"] == "square"
    assert phases_of(ebsd) == [{"id": 1, "name": "Nickel", "symmetry": "m-3m", "lattice": [3.56, 3.56, 3.56, 90.0, 90.0, 90.0]}]
    assert int((ebsd["phase"].values == 1).sum()) == 28086  # phase 0 = the single phase, CI >= 0 everywhere
    with h5py.File(path) as f:
        data = f["Scan_1/EBSD/Data"]
        phi1, x, y, ci = data["Phi1"][()], data["X Position"][()], data["Y Position"][()], data["CI"][()]
    k = 1000  # an arbitrary point: placed at its own x/y
    row, col = int(round(y[k] / 1.5)), int(round(x[k] / 1.5))
    assert ebsd["euler"].values[row, col, 0] == pytest.approx(phi1[k], abs=1e-7)
    assert float(ebsd["ci"].mean()) == pytest.approx(float(ci.mean()), rel=1e-6)
    assert ebsd["x"].values[-1] == pytest.approx(277.5) and ebsd["y"].values[-1] == pytest.approx(225.0)
    assert json.loads(ebsd.attrs["scans"]) == ["Scan_1"] and "patterns" not in ebsd.attrs


@pytest.mark.shared_data
def test_cpr_hexagonal_phase_moves_to_metallos_frame(shared_file, tmp_path):
    """The same .crc records under a .cpr that names the phase hexagonal (LaueGroup 9): phi2 is
    30 deg smaller than the file's (Oxford's x || a* to metallo's x || a), phi1 and Phi are not."""
    import shutil

    src = shared_file(CPR)
    cubic = read_ebsd(src)
    text = src.read_text(encoding="latin-1").replace("LaueGroup=11", "LaueGroup=9").replace("SpaceGroup=225", "SpaceGroup=194")
    (tmp_path / "hex.cpr").write_text(text, encoding="latin-1")
    shutil.copy(src.with_suffix(".crc"), tmp_path / "hex.crc")
    hexagonal = read_ebsd(tmp_path / "hex.cpr")
    assert phases_of(hexagonal)[0]["symmetry"] == "6/mmm"
    a, b = cubic["euler"].values, hexagonal["euler"].values
    on = cubic["phase"].values >= 0
    np.testing.assert_allclose(b[on][:, :2], a[on][:, :2], atol=1e-6)
    shift = np.mod(b[on][:, 2] - a[on][:, 2] + np.pi, 2 * np.pi) - np.pi
    np.testing.assert_allclose(shift, -np.pi / 6, atol=1e-5)


@pytest.mark.shared_data
def test_cpr_crc_defdap_nickel(shared_file):
    path = shared_file(CPR)
    ebsd = read_ebsd(path)
    assert read_ebsd(path.with_suffix(".crc")).identical(ebsd)  # either file of the pair
    assert (ebsd.sizes["y"], ebsd.sizes["x"]) == (243, 359) and ebsd.attrs["step_um"] == pytest.approx(0.12)
    [phase] = phases_of(ebsd)
    assert (phase["name"], phase["symmetry"], phase["space_group"]) == ("Ni-superalloy", "m-3m", 225)
    assert phase["lattice"] == [3.57, 3.57, 3.57, 90.0, 90.0, 90.0]
    # Independent decoding of the first and the last 25-byte record (phase u1, 3 x f4 Euler,
    # f4 MAD, u1 BC, BS, bands, error, f4 reliability).
    raw = path.with_suffix(".crc").read_bytes()
    for k, (row, col) in ((0, (0, 0)), (87236, (242, 358))):
        rec = raw[25 * k : 25 * (k + 1)]
        euler = np.frombuffer(rec, "<f4", count=3, offset=1)
        np.testing.assert_allclose(ebsd["euler"].values[row, col], euler, rtol=0, atol=0)
        assert ebsd["fit"].values[row, col] == np.frombuffer(rec, "<f4", count=1, offset=13)[0]
        assert (ebsd["iq"].values[row, col], ebsd["bands"].values[row, col]) == (rec[17], rec[19])
    # The header's Coverage=94.1 %: points with bands found (the others were filled by cleaning).
    assert float((ebsd["bands"].values > 0).mean()) == pytest.approx(0.941, abs=0.002)
    assert int((ebsd["error"].values == 3).sum()) == 5199


@pytest.mark.shared_data
def test_h5oina_dummy(shared_file):
    path = shared_file(OINA)
    with pytest.warns(UserWarning, match="no 1/EBSD/Header/Phases group"):
        ebsd = read_ebsd(path)
    assert (ebsd.sizes["y"], ebsd.sizes["x"]) == (3, 3) and ebsd.attrs["step_um"] == 1.5
    assert ebsd.attrs["phases_assumed"] == 1 and phases_of(ebsd)[0]["symmetry"] == "-1"
    assert json.loads(ebsd.attrs["patterns"]) == ["1/EBSD/Data/Processed Patterns"]
    with h5py.File(path) as f:
        euler = f["1/EBSD/Data/Euler"][()]
        tilt = float(f["1/EBSD/Header/Tilt Angle"][()])
    np.testing.assert_allclose(ebsd["euler"].values.reshape(-1, 3), euler, atol=1e-7)
    assert json.loads(ebsd.attrs["header"])["tilt_rad"] == pytest.approx(tilt)


@pytest.mark.shared_data
def test_bruker_dummy(shared_file):
    ebsd = read_ebsd(shared_file(BRUKER))
    assert (ebsd.sizes["y"], ebsd.sizes["x"]) == (3, 3) and ebsd.attrs["step_um"] == 1.5
    assert phases_of(ebsd)[0] | {"lattice": None} == {"id": 1, "name": "Nickel", "symmetry": "m-3m",
                                                      "lattice": None, "space_group": 225}
    np.testing.assert_allclose(ebsd["euler"].values, np.radians(1.0))  # placeholder 1 degree
    # the beam indices are all 1 (placeholders): the points stay in raster order
    assert json.loads(ebsd.attrs["header"])["placement"] == "raster order"
    assert ebsd.attrs["patterns_skipped"] == 1


@pytest.mark.shared_data
def test_emsoft_pattern_file_says_it_has_no_map(shared_file):
    with pytest.warns(UserWarning, match="holds no crystal map"):
        ebsd = read_ebsd(shared_file(EMSOFT))
    assert ebsd.attrs["crystal_map"] == 0 and ebsd.sizes["x"] == 1
    np.testing.assert_allclose(ebsd["euler"].values[0, 0], [2.094396, 0.7853985, 1.0471979], atol=1e-6)
    [phase] = phases_of(ebsd)
    assert phase["space_group"] == 225 and phase["lattice"][0] == pytest.approx(3.5236)


def _write_h5oina(path, *, slices=("1", "2"), phases=True):
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        f["Manufacturer"], f["Format Version"] = "Oxford Instruments", "5.0"
        for k, s in enumerate(slices):
            d = f.create_group(f"{s}/EBSD/Data")  # per-point columns are (size, 1) in the spec
            yy, xx = np.divmod(np.arange(12), 4)
            d["X"], d["Y"] = (xx * 0.5).astype("f4")[:, None], (yy * 0.5).astype("f4")[:, None]
            d["Euler"] = (rng.random((12, 3)) * [6, 3, 6]).astype("f4")
            d["Phase"] = np.array([0, 1, 2] * 4, "u1")[:, None]
            d["Band Contrast"] = np.full((12, 1), 100 + k, "u1")
            d["Mean Angular Deviation"] = np.full((12, 1), np.radians(0.4), "f4")
            h = f.create_group(f"{s}/EBSD/Header")
            h["X Cells"], h["Y Cells"], h["X Step"], h["Y Step"] = 4, 3, 0.5, 0.5
            if phases:
                for pid, (name, sg, laue, angles) in enumerate(
                    (("Iron bcc", 229, 11, 90.0), ("Mg", 194, 0, 120.0)), start=1
                ):
                    g = h.create_group(f"Phases/{pid}")
                    g["Phase Name"], g["Laue Group"] = name, laue
                    if pid == 1:
                        g["Space Group"] = sg
                    else:  # no space group: the Laue Group's Symbol attribute decides
                        g["Laue Group"].attrs["Symbol"] = "6/mmm"
                    g["Lattice Dimensions"] = np.array([2.87, 2.87, 2.87], "f4")
                    g["Lattice Angles"] = np.radians([90.0, 90.0, angles]).astype("f4")


def test_h5oina_slices_and_phases(tmp_path):
    path = tmp_path / "map.h5oina"
    _write_h5oina(path)
    first, second = read_ebsd(path), read_ebsd(path, scan="2")
    assert json.loads(first.attrs["scans"]) == ["1", "2"]
    assert float(first["iq"].max()) == 100 and float(second["iq"].max()) == 101
    phases = phases_of(first)
    assert [(p["name"], p["symmetry"], p.get("space_group")) for p in phases] == [("Iron bcc", "m-3m", 229), ("Mg", "6/mmm", None)]
    assert float(first["fit"].max()) == pytest.approx(0.4, rel=1e-5)  # MAD: radians in the file, degrees here
    assert phases[1]["lattice"][5] == pytest.approx(120.0)  # radians in the file, degrees here
    np.testing.assert_array_equal(first["phase"].values[0], [-1, 1, 2, -1])
    with pytest.raises(ConfigError, match="no slice '7'; the file has 1, 2"):
        read_ebsd(path, scan="7")
    # The Mg points move from Oxford's crystal frame (x || a*) to metallo's (x || a): phi2 - 30
    # deg; the iron points keep the file's angles.
    with h5py.File(path) as f:
        stored = np.asarray(f["1/EBSD/Data/Euler"], np.float64).reshape(3, 4, 3)
    got, ids = first["euler"].values, first["phase"].values
    np.testing.assert_allclose(got[ids == 1], stored[ids == 1], atol=1e-6)
    np.testing.assert_allclose(got[ids == 2][:, :2], stored[ids == 2][:, :2], atol=1e-6)
    np.testing.assert_allclose(np.mod(got[ids == 2][:, 2] - stored[ids == 2][:, 2] + np.pi, 2 * np.pi) - np.pi,
                               -np.pi / 6, atol=1e-6)
    assert "a* in the file" in json.loads(first.attrs["header"])["crystal_x"]


@pytest.mark.shared_data
def test_edax_h5_hexagonal_and_invalid_points(tmp_path, shared_file):
    """An EDAX OIM .h5 built from the real copper HexGrid .ang reads as that .ang does."""
    ang = read_ebsd(shared_file("ebsd_osc/pythonEBSD_copper_hex.ang"))
    rows = np.loadtxt(shared_file("ebsd_osc/pythonEBSD_copper_hex.ang"), comments="#")
    rows[5, 3:5] = -1111111.0  # OIM's invalid point: dropped
    path = tmp_path / "hex.oh5"
    with h5py.File(path, "w") as f:
        f[" Manufacturer"] = np.array([b"EDAX"])
        d = f.create_group("Scan 2/EBSD/Data")
        for k, name in enumerate(("Phi1", "Phi", "Phi2", "X Position", "Y Position", "IQ", "CI", "Phase")):
            d[name] = rows[:, k].astype("f4" if name != "Phase" else "i1")
        h = f.create_group("Scan 2/EBSD/Header")
        h["Grid Type"], h["nColumns"], h["nRows"] = np.array([b"HexGrid"]), np.array([104], ">i4"), np.array([231], ">i4")
        h["Step X"], h["Step Y"] = np.array([0.2], ">f4"), np.array([0.1732], ">f4")
        p = h.create_group("Phase/1")
        p["MaterialName"], p["Symmetry"] = np.array([b"Copper"]), np.array([43], ">i4")
    ebsd = read_ebsd(path)
    assert ebsd.attrs["grid"] == "hexagonal" and (ebsd.sizes["y"], ebsd.sizes["x"]) == (231, 104)
    np.testing.assert_array_equal(ebsd["x"].values, ang["x"].values)
    expected = ang["phase"].values.copy()
    expected[0, 5] = -1
    np.testing.assert_array_equal(ebsd["phase"].values, expected)
    ok = expected >= 0
    np.testing.assert_allclose(ebsd["euler"].values[ok], ang["euler"].values[ok], atol=1e-6)


def test_hdf5_without_ebsd_layout_lists_formats(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["something"] = np.zeros(3)
    with pytest.raises(FormatError, match="none of those readers recognises its layout.*edax-h5"):
        read_ebsd(path)


@pytest.fixture
def fresh_registry(monkeypatch):
    """A registry that loads its plugins again (and forgets third-party ones afterwards)."""
    from metallo._registry import Registry

    # Load the built-in readers into the real registry first: the modules this fixture imports
    # afresh stay in sys.modules after it, and a later first load would find them imported and
    # register nothing (formats then went missing from whichever tests ran after this one).
    plugins._load_plugins()
    monkeypatch.setattr(plugins, "_READERS", Registry("reader"))
    monkeypatch.setattr(plugins, "_loaded", False)
    import metallo.io._ebsd as ebsd_module

    monkeypatch.setattr(ebsd_module, "_REGISTRY", plugins._READERS)
    for name in [m for m in list(sys.modules) if m.startswith(("metallo.io._ebsd_", "metallo.io._image"))]:
        monkeypatch.delitem(sys.modules, name)
    return plugins


class _FakeEntryPoint:
    def __init__(self, name, value, obj):
        self.name, self.value, self.group, self._obj = name, value, "metallo.readers", obj

    def load(self):
        if isinstance(self._obj, Exception):
            raise self._obj
        return self._obj


def test_entry_point_reader_is_found_and_listed(tmp_path, monkeypatch, fresh_registry):
    def read_lab(path, **options):
        from metallo.ebsd import ebsd_dataset

        return ebsd_dataset(np.zeros((1, 2, 3)), np.ones((1, 2), np.int16), step_um=1.0,
                            phases=[{"id": 1, "name": "Fe", "symmetry": "m-3m"}], source=path.name)

    plugin = ReaderPlugin(name="labmap", kind="ebsd", extensions=(".lab",),
                          sniff=lambda head: head.startswith(b"LABMAP"), read=read_lab)
    entries = [_FakeEntryPoint("labmap", "labpkg.io:READER", plugin),
               _FakeEntryPoint("broken", "brokenpkg:READER", ImportError("No module named 'brokenpkg'"))]

    def fake_entry_points(*, group=None, **kw):
        return entries if group == "metallo.readers" else []

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    with pytest.warns(UserWarning, match="'broken = brokenpkg:READER' skipped: No module named"):
        names = reader_names("ebsd")
    assert "labmap" in names and "ang" in names
    path = tmp_path / "scan.dat"
    path.write_bytes(b"LABMAP v1\n")
    assert read_ebsd(path).sizes["x"] == 2  # sniffed by content, not by extension
    unknown = tmp_path / "x.bin"
    unknown.write_bytes(b"\x00garbage")
    with pytest.raises(FormatError, match=r"labmap \(ebsd: \.lab, plugin labmap = labpkg\.io:READER\)"):
        read_ebsd(unknown)


@pytest.mark.parametrize(("axis", "n_grains"), [("y", 2), ("z", 1)])
def test_monoclinic_axis_is_explicit_and_selectable(tmp_path, axis, n_grains):
    """Two points related by 180 deg about z: the same orientation only if 2/m's axis is z."""
    from metallo.ebsd import ebsd_dataset, grains
    from metallo.io import write_ang

    euler = np.array([[[0.3, 0.6, 0.2], [0.3, 0.6, 0.2 + np.pi]]])  # phi2 + 180 deg: 180 deg about crystal z
    ebsd = ebsd_dataset(euler, np.ones((1, 2), np.int16), step_um=1.0,
                        phases=[{"id": 1, "name": "glaucophane", "symmetry": "2/m"}])
    path = write_ang(ebsd, tmp_path / "mono.ang")
    back = read_ebsd(path, monoclinic_axis=axis)
    assert back.attrs["monoclinic_axis"] == axis and f"2/m unique axis {axis}" in back.attrs["axes"]
    assert len(grains(back, tolerance_deg=5.0, min_size_px=1).table) == n_grains
    with pytest.raises(ConfigError, match="monoclinic_axis must be"):
        read_ebsd(path, monoclinic_axis="b")



@pytest.mark.parametrize(("angles", "warned"), [((90, 90, 118.5), "unique axis is c"), ((90, 105.9, 90), None),
                                                ((93.0, 90, 90), "unique axis is a"), ((90, 90, 90), None)])
def test_a_monoclinic_lattice_that_is_not_b_unique_is_warned(tmp_path, angles, warned):
    """MTEX reads a 2/m phase's unique axis from its lattice angles (the one departing from 90 deg).
    metallo reads every 2/m phase b-unique unless told otherwise, so a c-unique cell (gamma 118.5)
    would get the wrong two-fold silently: it is warned, with the setting that fixes it, and
    reading it with that setting is quiet. b-unique cells (the clinopyroxene of MTEX's
    eclogite.ctf: beta 105.9) and cells stating no angle are not warned."""
    import warnings

    from metallo.ebsd import ebsd_dataset
    from metallo.io import write_ctf

    phases = [{"id": 1, "name": "monoclinic", "symmetry": "2/m", "lattice": [5.0, 6.0, 7.0, *angles]}]
    ebsd = ebsd_dataset(np.full((2, 2, 3), 0.3), np.ones((2, 2), np.int16), step_um=1.0, phases=phases)
    path = write_ctf(ebsd, tmp_path / "mono.ctf")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_ebsd(path)
    messages = [str(w.message) for w in caught if "monoclinic" in str(w.message)]
    if warned is None:
        assert messages == []
    else:
        assert len(messages) == 1 and warned in messages[0] and "mono.ctf: phase 1" in messages[0]
    if warned == "unique axis is c":
        assert "monoclinic_axis='z'" in messages[0]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert read_ebsd(path, monoclinic_axis="z").attrs["monoclinic_axis"] == "z"


def _bruker_roi_file(path, *, step=True):
    """A Bruker Esprit layout as orix's readers expect it: beam indices in ``Scan 1/EBSD/SEM``
    (shuffled within each row), a region of interest starting at row 5, column 10 of the frame,
    and (``step=False``) no XSTEP/YSTEP, only X/Y SAMPLE positions in µm."""
    rng = np.random.default_rng(3)
    ny, nx, dx = 4, 5, 0.75
    rows, cols = np.divmod(np.arange(ny * nx), nx)
    for r in range(ny):  # the file's order within a row is not the map's
        sel = rows == r
        cols[sel] = rng.permutation(cols[sel])
    euler = rng.random((ny * nx, 3)) * [360, 180, 360]
    with h5py.File(path, "w") as f:
        f["Manufacturer"], f["Version"] = b"Bruker Nano", b"Esprit 2.X"
        d = f.create_group("Scan 1/EBSD/Data")
        d["phi1"], d["PHI"], d["phi2"] = euler[:, 0], euler[:, 1], euler[:, 2]
        d["Phase"] = np.ones(ny * nx, np.int32)
        d["X SAMPLE"], d["Y SAMPLE"] = ((nx - 1 - cols) * dx).astype("f4"), (rows * dx).astype("f4")
        d["MAD"] = np.full(ny * nx, 0.5, "f4")
        h = f.create_group("Scan 1/EBSD/Header")
        h["NROWS"], h["NCOLS"], h["Grid Type"] = np.int32(ny), np.int32(nx), b"isometric"
        if step:
            h["XSTEP"], h["YSTEP"] = dx, dx
        g = h.create_group("Phases/1")
        g["Name"], g["IT"], g["LatticeConstants"] = b"Iron bcc", 229, np.array([2.87] * 3 + [90.0] * 3)
        s = f.create_group("Scan 1/EBSD/SEM")
        s["IY"], s["IX"] = rows + 5, cols + 10
    truth = np.zeros((ny, nx, 3))
    truth[rows, cols] = np.radians(euler)
    return truth, dx


@pytest.mark.parametrize("step", [True, False])
def test_bruker_beam_indices_in_ebsd_sem_group_and_roi(tmp_path, step):
    """orix's Bruker layout: indices in Scan/EBSD/SEM, numbered from the full frame's corner;
    without XSTEP the step is the X/Y SAMPLE spacing."""
    path = tmp_path / "roi.h5"
    truth, dx = _bruker_roi_file(path, step=step)
    ebsd = read_ebsd(path)
    assert (ebsd.sizes["y"], ebsd.sizes["x"]) == truth.shape[:2]
    assert ebsd.attrs["step_um"] == pytest.approx(dx)
    assert json.loads(ebsd.attrs["header"])["placement"] == "beam indices"
    np.testing.assert_allclose(ebsd["euler"].values, truth, atol=1e-9)


def _emsoft_di_file(path, *, refined):
    rng = np.random.default_rng(4)
    ny, nx, n_dict = 3, 4, 50
    dictionary = rng.random((n_dict, 3)) * [360, 180, 360]
    top = rng.integers(1, n_dict + 1, size=(ny * nx, 5))  # 1-based, best match first
    refined_euler = rng.random((ny * nx, 3)) * [6, 3, 6]
    with h5py.File(path, "w") as f:
        f["Manufacturer"] = "EMEBSDDictionaryIndexing.f90"
        d = f.create_group("Scan 1/EBSD/Data")
        d["X Position"] = np.tile(np.arange(nx) * 1.5, ny).astype("f4")
        d["Y Position"] = np.tile(np.arange(nx) * 1.5, ny).astype("f4")  # wrong in EMsoft, as orix notes
        d["Phase"], d["CI"] = np.zeros(ny * nx, "u1"), np.full(ny * nx, 0.9, "f4")
        d["TopMatchIndices"], d["DictionaryEulerAngles"] = top.astype("i4"), dictionary.astype("f4")
        d["FZcnt"] = np.array([n_dict], "i4")
        if refined:  # the refinement's output, beside the indexing's own best match
            d["RefinedEulerAngles"] = refined_euler.astype("f4")
            d["Phi1"], d["Phi"], d["Phi2"] = (np.zeros(ny * nx, "f4") for _ in range(3))
        h = f.create_group("Scan 1/EBSD/Header")
        h["nRows"], h["nColumns"] = np.array([ny], "i4"), np.array([nx], "i4")
        h["Step X"], h["Step Y"] = np.array([1.5], "f4"), np.array([1.5], "f4")
        p = h.create_group("Phase/1")
        p["Point Group"], p["MaterialName"] = np.array([b"Cubic (Oh) [m3m]"]), np.array([b"Ni/Ni"])
        for k, v in zip("a b c alpha beta gamma".split(), ["3.52"] * 3 + ["90.0"] * 3, strict=True):
            p[f"Lattice Constant {k}"] = np.array([v.encode()])
    best = np.radians(dictionary[top[:, 0] - 1].astype("f4"))
    return (refined_euler.astype("f4") if refined else best).reshape(ny, nx, 3)


@pytest.mark.parametrize("refined", [True, False])
def test_emsoft_dictionary_indexing_without_phi_datasets(tmp_path, refined):
    """An EMsoft dictionary-indexing file with only TopMatchIndices + DictionaryEulerAngles
    (degrees), or with RefinedEulerAngles (radians) beside Phi1/Phi/Phi2: the orientations come
    from the best match, or from the refinement."""
    path = tmp_path / "di.h5"
    truth = _emsoft_di_file(path, refined=refined)
    ebsd = read_ebsd(path)
    assert (ebsd.sizes["y"], ebsd.sizes["x"]) == (3, 4)
    np.testing.assert_allclose(ebsd["euler"].values, truth, atol=1e-6)
    source = json.loads(ebsd.attrs["header"])["euler_source"]
    assert source == ("RefinedEulerAngles" if refined else "TopMatchIndices[:, 0] of DictionaryEulerAngles")
    assert phases_of(ebsd)[0]["symmetry"] == "m-3m"


def test_kikuchipy_pattern_file_is_refused_with_what_to_do(tmp_path):
    """kikuchipy's own h5ebsd (root manufacturer "kikuchipy") holds patterns only; it was refused
    as an EDAX file without a phase table, which says nothing about what the user can do."""
    path = tmp_path / "patterns.h5"
    with h5py.File(path, "w") as f:
        f["manufacturer"], f["version"] = np.array([b"kikuchipy"]), np.array([b"0.8"])
        f["Scan 1/EBSD/Data/patterns"] = np.zeros((4, 8, 8), np.uint8)
        f["Scan 1/EBSD/Header/n_columns"], f["Scan 1/EBSD/Header/n_rows"] = 2, 2
    with pytest.raises(FormatError, match="holds EBSD patterns .* not an indexed map; index the patterns"):
        read_ebsd(path)


def test_h5oina_irregular_area_keeps_the_frame_without_warnings(tmp_path):
    """The H5OINA specification sets the pixels outside an irregular acquisition area to NaN
    (positions and angles). Those points were dropped, the map cropped to the rest with two
    warnings calling the file truncated; now the X Cells x Y Cells frame is kept in raster
    order, with the outside pixels not indexed and no warning."""
    nx, ny, n = 12, 10, 120
    yy, xx = np.divmod(np.arange(n), nx)
    outside = (xx - 6) ** 2 + (yy - 5) ** 2 > 20
    rng = np.random.default_rng(7)
    euler = (rng.random((n, 3)) * [6, 3, 6]).astype("f4")
    x, y = (xx * 0.5).astype("f4"), (yy * 0.5).astype("f4")
    x[outside] = y[outside] = np.nan
    euler[outside] = np.nan
    path = tmp_path / "irregular.h5oina"
    with h5py.File(path, "w") as f:
        f["Manufacturer"], f["Format Version"] = "Oxford Instruments", "8.0"
        d = f.create_group("1/EBSD/Data")
        d["X"], d["Y"], d["Euler"] = x[:, None], y[:, None], euler
        d["Phase"] = np.where(outside, 0, 1).astype("u1")[:, None]
        h = f.create_group("1/EBSD/Header")
        h["X Cells"], h["Y Cells"], h["X Step"], h["Y Step"] = np.int32(nx), np.int32(ny), np.float32(0.5), np.float32(0.5)
        g = h.create_group("Phases/1")
        g["Phase Name"], g["Laue Group"], g["Space Group"] = "Iron bcc", np.int32(11), np.int32(229)
        g["Lattice Dimensions"] = np.array([[2.87, 2.87, 2.87]], "f4")
        g["Lattice Angles"] = np.radians([[90.0, 90.0, 90.0]]).astype("f4")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ebsd = read_ebsd(path)
    assert (ebsd.sizes["y"], ebsd.sizes["x"]) == (ny, nx)
    np.testing.assert_array_equal(ebsd["phase"].values >= 0, ~outside.reshape(ny, nx))
    inside = ~outside.reshape(ny, nx)
    np.testing.assert_allclose(ebsd["euler"].values[inside], euler.reshape(ny, nx, 3)[inside], atol=1e-6)
