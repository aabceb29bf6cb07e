"""The reader registry: header sniffing before extensions, errors that list the formats."""

from __future__ import annotations

import pytest

from metallo.errors import ConfigError, FormatError
from metallo.io import _plugins, reader_for, reader_names, register_reader


@pytest.fixture
def scratch_readers(monkeypatch):
    """Register test readers into a copy of the registry, so other tests never see them."""
    _plugins.reader_names()  # the built-in plugins register into the real registry first
    monkeypatch.setattr(_plugins._READERS, "_items", dict(_plugins._READERS._items))
    register_reader(
        "zzz-magic",
        kind="image",
        extensions=(".zzz",),
        sniff=lambda h: h.startswith(b"ZZZ1"),
        read=lambda p, **kw: "zzz",
    )
    register_reader(
        "yyy-text",
        kind="ebsd",
        extensions=("YYY", ".yy2"),
        sniff=lambda h: b"YYY-MAP" in h[:64],
        read=lambda p, **kw: "yyy",
    )


def test_builtin_image_readers_are_registered():
    names = reader_names("image")
    assert {"tiff", "png", "jpeg"} <= set(names)
    assert all(p in reader_names() for p in names)


def test_header_beats_extension(tmp_path, scratch_readers):
    path = tmp_path / "looks_like.zzz"
    path.write_bytes(b"YYY-MAP v1\n1 2 3\n")
    assert reader_for(path).name == "yyy-text"
    assert reader_for(path).read(path) == "yyy"


def test_extension_is_the_fallback_and_case_insensitive(tmp_path, scratch_readers):
    path = tmp_path / "no_magic.YY2"
    path.write_bytes(b"plain numbers\n")
    assert reader_for(path).name == "yyy-text"
    assert reader_for(tmp_path / "no_magic.YY2", kind="ebsd").extensions == (".yyy", ".yy2")


def test_kind_filters_the_candidates(tmp_path, scratch_readers):
    path = tmp_path / "m.zzz"
    path.write_bytes(b"ZZZ1....")
    assert reader_for(path, kind="image").name == "zzz-magic"
    with pytest.raises(FormatError, match="not a known ebsd file format"):
        reader_for(path, kind="ebsd")


def test_unknown_file_lists_the_known_formats(tmp_path, scratch_readers):
    path = tmp_path / "mystery.bin"
    path.write_bytes(b"\x00\x01\x02")
    with pytest.raises(FormatError) as info:
        reader_for(path)
    message = str(info.value)
    assert "mystery.bin" in message and "zzz-magic (image: .zzz)" in message and "tiff" in message


def test_a_sniffer_that_fails_on_foreign_bytes_just_does_not_match(tmp_path, scratch_readers):
    register_reader(
        "fragile",
        kind="image",
        extensions=(".frg",),
        sniff=lambda h: h.decode("ascii") == "x",
        read=print,
    )
    path = tmp_path / "a.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    assert reader_for(path).name == "png"


def test_registration_errors(scratch_readers):
    with pytest.raises(ConfigError, match="already registered"):
        register_reader("ZZZ-MAGIC", kind="image", extensions=(".q",), sniff=bool, read=print)
    with pytest.raises(ConfigError, match="kind must be one of image, ebsd"):
        register_reader("new", kind="video", extensions=(".q",), sniff=bool, read=print)
    with pytest.raises(ConfigError, match="tuple of strings"):
        register_reader("new", kind="image", extensions=".q", sniff=bool, read=print)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="kind must be one of"):
        reader_names("video")


def test_missing_file_is_a_format_error(tmp_path):
    with pytest.raises(FormatError, match="gone.tif: no such file"):
        reader_for(tmp_path / "gone.tif")
