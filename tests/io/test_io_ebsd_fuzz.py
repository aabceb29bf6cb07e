"""Seeded fuzzing of every EBSD reader: truncated files, flipped bytes and lying header sizes
give a FormatError (or another MetalloError) or a map - never another exception, and never a
map padded beyond the data without a warning."""

from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from ebsd_io_helpers import synthetic

from metallo.errors import MetalloError
from metallo.io import read_ebsd, write_ebsd

N_CASES = 24
SHARED = {
    "osc": "ebsd_osc/pythonEBSD_copper_hex.osc",
    "cpr": "correlative_defdap_ni_ebsd_dic/testDataEBSD.cpr",
    "edax-h5": "ebsd_vendor_hdf5/ebsdlib_EdaxAngOnly_Ni.h5",
    "h5oina": "ebsd_vendor_hdf5/kikuchipy_oxford_dummy_3x3.h5oina",
    "bruker-h5": "ebsd_vendor_hdf5/kikuchipy_bruker_dummy_3x3.h5",
    "emsoft-h5": "ebsd_vendor_hdf5/kikuchipy_emsoft_EBSD_TEST_Ni.h5",
}
# Header fields whose numbers the "lying header" cases change.
SIZE_FIELDS = {
    "ang": rb"(NCOLS_ODD|NCOLS_EVEN|NROWS|XSTEP|YSTEP):\s*[\d.]+",
    "ctf": rb"(XCells|YCells|XStep|YStep)\t[\d.]+",
    "cpr": rb"(xCells|yCells|GridDistX|Count|Field\d)=[\d.]+",
}


def _original(fmt: str, tmp_path: Path, shared_data: Path | None) -> Path:
    if fmt in ("ang", "ctf", "h5"):
        return write_ebsd(synthetic("square"), tmp_path / f"orig.{fmt}")
    assert shared_data is not None
    source = shared_data / SHARED[fmt]
    if not source.exists():
        if os.environ.get("METALLO_REQUIRE_SHARED_DATA", "") == "1":
            pytest.fail(f"{source} is absent; METALLO_REQUIRE_SHARED_DATA=1 makes this a failure", pytrace=False)
        pytest.skip(f"{source} is absent")
    target = tmp_path / f"orig{source.suffix}"
    shutil.copyfile(source, target)
    if fmt == "cpr":
        shutil.copyfile(source.with_suffix(".crc"), target.with_suffix(".crc"))
    return target


def _mutations(raw: bytes, fmt: str, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    cases = []
    for _ in range(8):
        cut = int(rng.integers(0, len(raw)))
        cases.append((f"truncated at {cut}", raw[:cut]))
    for _ in range(10):
        flipped = bytearray(raw)
        # flips near the start hit headers; the rest anywhere
        where = np.concatenate([rng.integers(0, min(len(raw), 4096), 4), rng.integers(0, len(raw), 4)])
        for k in where:
            flipped[k] = int(rng.integers(0, 256))
        cases.append((f"bytes flipped at {sorted(where.tolist())}", bytes(flipped)))
    pattern = SIZE_FIELDS.get(fmt)
    for _ in range(N_CASES - len(cases)):
        if pattern is not None and re.search(pattern, raw):
            value = rng.choice([b"0", b"-3", b"1", b"7", b"100000", b"99999999999", b"0.0001"])
            lied = re.sub(rb"(" + pattern[:pattern.index(b")") + 1] + rb"[:=\t]\s*)[\d.]+",
                          lambda m, v=value: m.group(1) + v, raw, count=int(rng.integers(1, 3)))
            cases.append((f"header sizes set to {value!r}", lied))
        else:  # binary headers: the .osc's column/row/point counts, else the HDF5 superblock
            lied = bytearray(raw)
            k = int(rng.choice([16, 20, 24])) if fmt == "osc" else int(rng.integers(0, min(64, len(raw) - 4)))
            lied[k : k + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
            cases.append((f"header word at {k} changed", bytes(lied)))
    return cases


@pytest.mark.parametrize("fmt", ["ang", "ctf", "h5", "osc", "cpr", "edax-h5", "h5oina", "bruker-h5", "emsoft-h5"])
def test_fuzzed_files_fail_cleanly(fmt, tmp_path, request):
    shared = request.getfixturevalue("shared_data") if fmt in SHARED else None
    original = _original(fmt, tmp_path, shared)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = read_ebsd(original)
    cells = reference.sizes["y"] * reference.sizes["x"]
    rng = np.random.default_rng(sum(map(ord, fmt)))
    cases = [(original, label, mutated) for label, mutated in _mutations(original.read_bytes(), fmt, rng)]
    if fmt == "cpr":  # the binary .crc is damaged too (truncation, flips)
        crc = original.with_suffix(".crc")
        cases = [c for c in cases if c[1].startswith("header")] + [
            (crc, label, mutated) for label, mutated in _mutations(crc.read_bytes(), "crc", rng)
            if not label.startswith("header")
        ]
    outcomes = {"error": 0, "map": 0}
    pristine = {path: path.read_bytes() for path in {c[0] for c in cases}}
    for target, label, mutated in cases:
        for path, content in pristine.items():
            path.write_bytes(content)
        target.write_bytes(mutated)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ebsd = read_ebsd(original)
            except MetalloError as exc:
                assert original.name in str(exc) or target.name in str(exc), (label, str(exc))
                outcomes["error"] += 1
                continue
        outcomes["map"] += 1
        grown = ebsd.sizes["y"] * ebsd.sizes["x"] > cells
        if grown or label.startswith("truncated"):
            # a map larger than the data, or from a cut file, comes with a warning - unless
            # the cut fell where no point is lost (e.g. after the last row)
            lost = int((reference["phase"].values >= 0).sum()) - int((ebsd["phase"].values >= 0).sum())
            assert not grown or caught, (label, "padded without a warning")
            assert lost <= 0 or caught or fmt in ("h5", "edax-h5", "h5oina", "bruker-h5", "emsoft-h5"), (
                label, f"{lost} points lost without a warning")
    assert outcomes["error"] + outcomes["map"] == len(cases) >= N_CASES


def test_truncated_ctf_is_trimmed_not_padded(tmp_path, shared_file):
    """The case of the issue: the header promises every row, the data stop early."""
    lines = shared_file("ebsd_ctf/mtex_twins_Mg.ctf").read_text(encoding="latin-1").splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("Phase\tX\tY"))
    path = tmp_path / "cut.ctf"
    path.write_text("\n".join(lines[: start + 1 + 38 * 167]) + "\n", encoding="latin-1")
    with pytest.warns(UserWarning, match=r"header says 137 rows x 167 columns but the data span 38 x 167") as record:
        ebsd = read_ebsd(path)
    assert len([w for w in record if "header says" in str(w.message)]) == 1  # warned once
    assert (ebsd.sizes["y"], ebsd.sizes["x"]) == (38, 167)
    full = read_ebsd(shared_file("ebsd_ctf/mtex_twins_Mg.ctf"))
    np.testing.assert_array_equal(ebsd["phase"].values, full["phase"].values[:38])
