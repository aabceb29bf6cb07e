"""README.md and docs/*.md hold no link that leaves the repository.

A clone is the whole documentation: no web links (references are plain-text citations with
DOIs), no relative path that climbs out of the repository (``../shared/...``), no absolute
file-system path.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)")           # [text](target), ![alt](target)
_REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)       # [label]: target
_URL = re.compile(r"\b(?:https?|ftp|file)://\S+|\bwww\.\S+|<mailto:[^>]+>", re.I)
_CLIMB = re.compile(r"(?<![\w.])(?:\.\./)+[\w.*/-]*")           # ../x, ../../x, in links or code
_ABSOLUTE = re.compile(r"(?<![\w.~])/(?:work|home|tmp|Users|mnt)/[\w.*/-]*")


def _offences(doc: Path, text: str) -> list[str]:
    found = [f"web address {m.group(0)!r}" for m in _URL.finditer(text)]
    targets = [m.group(1) for m in _LINK.finditer(text)] + [m.group(1) for m in _REFERENCE.finditer(text)]
    for target in targets:
        path = target.split("#", 1)[0]
        if re.match(r"[a-z][a-z0-9+.-]*:", path, re.I):
            found.append(f"link {target!r} leaves the repository")
        elif path and not (doc.parent / path).resolve().is_relative_to(ROOT):
            found.append(f"link {target!r} leaves the repository")
        if path.startswith("/"):
            found.append(f"link {target!r} is an absolute path")
    # Paths in prose and code spans are read from the repository root (where commands run).
    prose = _REFERENCE.sub("", _LINK.sub("", text))
    for m in _CLIMB.finditer(prose):
        if not (ROOT / m.group(0)).resolve().is_relative_to(ROOT):
            found.append(f"path {m.group(0)!r} leaves the repository")
    found += [f"absolute path {m.group(0)!r}" for m in _ABSOLUTE.finditer(prose)]
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_link_leaves_the_repository(doc):
    assert _offences(doc, doc.read_text(encoding="utf-8")) == []


def test_the_scanner_finds_each_kind_of_outside_link():
    doc = ROOT / "docs" / "x.md"
    text = ("See [design](../../shared/DESIGN.md), ![fig](https://example.org/a.png), "
            "www.example.org, `../../shared/data/ebsd_ang`, /work/shared/seeds and\n"
            "[ref]: http://example.org\n[ok](layers.md) [up](../README.md#set-up) `metallo/datasets/`\n"
            "data in `../shared/data/uhcs` (read from the repository root)\n")
    found = _offences(doc, text)
    assert found == [
        "web address 'https://example.org/a.png),'",
        "web address 'www.example.org,'",
        "web address 'http://example.org'",
        "link '../../shared/DESIGN.md' leaves the repository",
        "link 'https://example.org/a.png' leaves the repository",
        "link 'http://example.org' leaves the repository",
        "path '../../shared/data/ebsd_ang' leaves the repository",
        "path '../shared/data/uhcs' leaves the repository",
        "absolute path '/work/shared/seeds'",
    ]


def test_docs_are_scanned():
    names = {p.name for p in DOCS}
    assert {"README.md", "architecture.md", "datasets.md"} <= names
