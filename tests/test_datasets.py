"""metallo.datasets: the registry, local folders (METALLO_DATA), checksums and the pooch download path.

No test touches the network: downloads go through a replaced downloader that copies local bytes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from metallo import datasets
from metallo.errors import DataNotFoundError, FormatError, UnknownNameError

TOY = b"# toy .ang header\n0.1 0.2 0.3 1.0 2.0 100 0.9 1\n"
TOY_SHA = hashlib.sha256(TOY).hexdigest()
TOY_URL = "https://example.invalid/toy/map.ang"


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """A registered two-file data set 'toy' with a cache in tmp_path and no METALLO_DATA."""
    other = b"x y\n1 2\n"
    monkeypatch.setitem(datasets.DATASETS, "toy", ("toy map", "A. Author, Toy, 2026.", "nowhere @ 0"))
    monkeypatch.setitem(datasets.FILES, "toy", (
        ("map.ang", TOY_SHA, TOY_URL, "CC0"),
        ("sub/points.txt", hashlib.sha256(other).hexdigest(), "https://example.invalid/toy/points.txt", "CC0"),
    ))
    monkeypatch.delenv("METALLO_DATA", raising=False)
    monkeypatch.setenv("METALLO_CACHE", str(tmp_path / "cache"))
    served = {TOY_URL: TOY, "https://example.invalid/toy/points.txt": other}
    calls: list[str] = []

    def fake_download(url, output_file, pup):
        calls.append(url)
        Path(output_file).write_bytes(served[url])

    monkeypatch.setattr(datasets, "_download", fake_download)
    return calls, served


def test_registry_is_complete_and_well_formed():
    assert len(datasets.list()) == 10
    for name in datasets.list():
        ds = datasets.info(name)
        assert ds.title and ds.citation and ds.upstream and ds.files and ds.licences
        for f in ds.files:
            assert re.fullmatch(r"[0-9a-f]{64}", f.sha256), (name, f.name)
            assert f.url is None or re.fullmatch(
                r"https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/\S+", f.url), f.url
    # Licences and citations are stated, not guessed: GPL data says so, unlicensed data says so.
    assert datasets.info("ebsd_osc").licences == ["GPL-3.0-or-later"]
    assert datasets.info("ebsd_martensite_pag").licences == ["none (no licence upstream)"]
    assert "doi:10.1017/S1431927618015635" in datasets.info("uhcs_microconstituent_segmentation").citation
    # The converted UHCS labels have no upstream copy to download.
    labels = [f for f in datasets.info("uhcs_microconstituent_segmentation").files if f.name.startswith("labels/")]
    assert len(labels) == 15 and all(f.url is None for f in labels)


@pytest.mark.shared_data
def test_every_local_file_is_registered_and_matches_its_checksum(shared_data):
    on_disk = {str(p.relative_to(shared_data)) for p in shared_data.rglob("*")
               if p.is_file() and p.name not in ("SOURCE.md", "README.md")}
    registered = {f"{name}/{f.name}" for name in datasets.list() for f in datasets.info(name).files}
    assert on_disk == registered
    for name in datasets.list():  # a whole data set: every file hashed
        assert datasets.path(name, folder=shared_data, download=False) == shared_data / name


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownNameError, match="valid names: correlative_defdap_ni_ebsd_dic, "):
        datasets.info("ebsd_angg")
    with pytest.raises(UnknownNameError, match="its files: .*sdss_ferrite_austenite.ang"):
        datasets.path("ebsd_ang/duplex.ang")


def test_local_folder_wins_and_a_changed_file_is_a_clear_error(toy, tmp_path, monkeypatch):
    calls, _ = toy
    local = tmp_path / "data"
    (local / "toy").mkdir(parents=True)
    (local / "toy" / "map.ang").write_bytes(TOY)
    monkeypatch.setenv("METALLO_DATA", str(local))
    assert datasets.data_folder() == local
    assert datasets.path("toy/map.ang") == local / "toy" / "map.ang"
    assert calls == []
    (local / "toy" / "map.ang").write_bytes(TOY.replace(b"0.9", b"0.8"))
    with pytest.raises(FormatError, match=r"map\.ang: SHA-256 .* does not match the registered " + TOY_SHA):
        datasets.path("toy/map.ang")


def test_absent_and_offline_names_metallo_data(toy, monkeypatch):
    with pytest.raises(DataNotFoundError, match="METALLO_DATA is not set.*download=False; set METALLO_DATA"):
        datasets.path("toy/map.ang", download=False)

    def offline(url, output_file, pup):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(datasets, "_download", offline)
    with pytest.raises(DataNotFoundError, match="download from https://example.invalid/toy/map.ang failed "
                                                r"\(Temporary failure.*set METALLO_DATA"):
        datasets.path("toy/map.ang")
    with pytest.raises(DataNotFoundError, match="no registered download address.*METALLO_DATA"):
        datasets.path("uhcs_microconstituent_segmentation/labels/micrograph6.png")


def test_pooch_downloads_into_the_cache_once(toy, tmp_path):
    calls, _ = toy
    got = datasets.path("toy/map.ang")
    assert got == tmp_path / "cache" / "toy" / "map.ang" and got.read_bytes() == TOY
    assert datasets.path("toy/map.ang") == got and calls == [TOY_URL]  # cached: not downloaded again
    folder = datasets.path("toy")  # the whole set: the missing file is fetched, the folder returned
    assert folder == tmp_path / "cache" / "toy" and (folder / "sub" / "points.txt").read_bytes() == b"x y\n1 2\n"
    assert len(calls) == 2


def test_a_download_with_the_wrong_bytes_is_rejected(toy):
    _, served = toy
    served[TOY_URL] = TOY + b"tampered"
    with pytest.raises(FormatError, match="does not match the registered SHA-256"):
        datasets.path("toy/map.ang")
    assert not (datasets.cache_folder() / "toy" / "map.ang").exists()


def test_the_docs_list_every_data_set_and_the_import_stays_light():
    import subprocess
    import sys

    text = (Path(__file__).resolve().parents[1] / "docs" / "datasets.md").read_text(encoding="utf-8")
    for name in datasets.list():
        assert f"| `{name}` |" in text and f"- **{name}**: {datasets.info(name).citation}" in text
    proc = subprocess.run([sys.executable, "-c", "import sys, metallo; metallo.datasets.list(); "
                           "print(sorted({'pooch', 'requests', 'torch'} & set(sys.modules)))"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
