"""Seeded corrupted inputs built from the real files, and the outcome of feeding them to metallo.

Every case is one corrupted file (or recipe, or checkpoint) and the reader that must cope
with it. :func:`run_case` classifies what happened:

``error``     a one-line :class:`~metallo.errors.MetalloError` (<= 600 characters);
``warning``   accepted with a documented warning, and the result passes every value check;
``accepted``  accepted without warning and the result passes every value check and equals
              the uncorrupted reading where it must (the corruption hit a comment, padding...);
``short``     a file cut at a row boundary whose header states no grid size (mtex_ACOM.ang,
              scattered .ctf): indistinguishable from a smaller complete map; the reading
              passes every value check but has fewer points than the original;
``long``      a MetalloError whose message is multi-line or too long;
``silent``    accepted, but the result has non-finite/out-of-range values or differs from the
              original reading without any warning (silently accepted garbage);
``other``     another exception escaped;
``hang``/``crash``  the case ran past its time limit / killed its worker process.

Used by ``tests/fuzz/test_fuzz.py`` (a fixed-seed sample) and ``benchmarks/fuzz.py`` (thousands).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Outcomes that pass the acceptance criteria.
GOOD = ("error", "warning", "accepted", "short")
OUTCOMES = ("error", "warning", "accepted", "short", "long", "silent", "other", "hang", "crash")
MAX_MESSAGE = 600

SHARED = Path(os.environ.get("METALLO_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))

#: Real source files per reader (small ones: thousands of cases must run in minutes).
SOURCES = {
    "ang": ["ebsd_ang/mtex_ACOM.ang", "ebsd_ang/mtex_3dData_S00.ANG", "ebsd_ang/sdss_ferrite_austenite.ang"],
    "ctf": ["ebsd_ctf/ebsdlib_Test_European_1_decimal_comma.ctf", "ebsd_ctf/mtex_eclogite_interactive.ctf"],
    "image": ["correlative_ebsd_bse_more/Slice8_TFS_ebsd.png", "correlative_ebsd_bse_coni/Slice381_ebsd.tif"],
}


@dataclass
class Case:
    """One corrupted input: ``target`` names the reader, ``data`` the file bytes."""

    target: str
    source: str
    mutation: str
    data: bytes
    suffix: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.target}:{Path(self.source).name}:{self.mutation}"


# ------------------------------------------------------------------------------ mutations
ABSURD = ["nan", "inf", "-inf", "1e308", "-1", "0", "99999999", "1.75e306", "abc", "", "1e-300", "-0"]


def _flip(data: bytes, rng: random.Random, n: int) -> bytes:
    out = bytearray(data)
    for _ in range(n):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _text_lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _is_header(line: bytes, kind: str) -> bool:
    if kind == "ang":
        return line.lstrip().startswith(b"#")
    return not line[:1].isdigit() and not line[:1] == b"-"


def _edit_header(data: bytes, rng: random.Random, kind: str) -> tuple[bytes, str]:
    lines = _text_lines(data)
    heads = [i for i, line in enumerate(lines[:300]) if _is_header(line, kind) and any(c.isdigit() for c in line.decode("latin-1"))]
    if not heads:
        return data, "header-none"
    i = rng.choice(heads)
    tokens = lines[i].split()
    nums = [k for k, t in enumerate(tokens) if any(c in b"0123456789" for c in t)]
    k = rng.choice(nums)
    value = rng.choice(ABSURD).encode()
    tokens[k] = value
    lines[i] = b" ".join(tokens) if kind == "ang" else b"\t".join(tokens)
    return b"\n".join(lines), f"header line {i + 1} -> {value.decode() or '<empty>'}"


def _data_rows(lines: list[bytes], kind: str) -> list[int]:
    return [i for i, line in enumerate(lines) if line.strip() and not _is_header(line, kind)]


def _edit_value(data: bytes, rng: random.Random, kind: str) -> tuple[bytes, str]:
    lines = _text_lines(data)
    rows = _data_rows(lines, kind)
    if not rows:
        return data, "value-none"
    i = rng.choice(rows)
    sep = b"\t" if kind == "ctf" else None
    tokens = lines[i].split(sep) if sep else lines[i].split()
    k = rng.randrange(len(tokens))
    value = rng.choice(ABSURD + ["12.56637", "7", "-3.2", "1e9"]).encode()
    tokens[k] = value
    lines[i] = (sep or b" ").join(tokens)
    return b"\n".join(lines), f"line {i + 1} col {k} -> {value.decode() or '<empty>'}"


def _drop_rows(data: bytes, rng: random.Random, kind: str) -> tuple[bytes, str]:
    lines = _text_lines(data)
    rows = _data_rows(lines, kind)
    if len(rows) < 4:
        return data, "drop-none"
    frac = rng.choice([0.01, 0.1, 0.5])
    drop = set(rng.sample(rows, max(1, int(frac * len(rows)))))
    return b"\n".join(line for i, line in enumerate(lines) if i not in drop), f"drop {len(drop)} rows"


def _duplicate_rows(data: bytes, rng: random.Random, kind: str) -> tuple[bytes, str]:
    lines = _text_lines(data)
    rows = _data_rows(lines, kind)
    if not rows:
        return data, "dup-none"
    i = rng.choice(rows)
    lines.insert(i, lines[i])
    return b"\n".join(lines), f"duplicate line {i + 1}"


def _truncate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    at = rng.randrange(len(data))
    if rng.random() < 0.5:  # at a line boundary: looks like a complete, shorter file
        nl = data.rfind(b"\n", 0, at)
        at = nl + 1 if nl > 0 else at
    return data[:at], f"truncate at {at}/{len(data)}"


def _generic(data: bytes, rng: random.Random, name: str) -> tuple[bytes, str]:
    if name == "flip":
        n = rng.choice([1, 2, 8, 64])
        return _flip(data, rng, n), f"flip {n} bits"
    if name == "truncate":
        return _truncate(data, rng)
    if name == "nul":
        choice = rng.randrange(3)
        if choice == 0:
            return b"\x00" * rng.choice([0, 1, 100, 20_000]), "all NUL"
        at = rng.randrange(len(data))
        return data[:at] + b"\x00" * 64 + data[at + 64 :], f"64 NUL at {at}"
    if name == "garbage":
        return bytes(rng.randrange(256) for _ in range(rng.choice([10, 500, 5000]))), "random bytes"
    raise ValueError(name)


TEXT_MUTATIONS = ("flip", "truncate", "nul", "garbage", "header", "value", "drop", "duplicate")


def ebsd_cases(kind: str, n: int, rng: random.Random) -> Iterator[Case]:
    """``n`` corrupted .ang or .ctf files."""
    sources = [SHARED / s for s in SOURCES[kind]]
    blobs = {p: p.read_bytes() for p in sources}
    for _ in range(n):
        src = rng.choice(sources)
        data = blobs[src]
        m = rng.choice(TEXT_MUTATIONS)
        if m == "header":
            out, what = _edit_header(data, rng, kind)
        elif m == "value":
            out, what = _edit_value(data, rng, kind)
        elif m == "drop":
            out, what = _drop_rows(data, rng, kind)
        elif m == "duplicate":
            out, what = _duplicate_rows(data, rng, kind)
        else:
            out, what = _generic(data, rng, m)
        yield Case(kind, str(src), what, out, src.suffix)


# ------------------------------------------------------------------------------ images
def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` (valid CRCs) with one tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def tiff_with_size(width: int, height: int) -> bytes:
    """A little-endian baseline TIFF claiming ``width x height`` 8-bit pixels, with 16 bytes of data."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 1), (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, max(height, 1)),
               (279, 4, 1, width * height if width * height < 2**32 else 2**32 - 1)]
    ifd_offset = 8 + 16
    head = b"II*\x00" + struct.pack("<I", ifd_offset) + b"\x00" * 16
    body = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        body += struct.pack("<HHI", tag, typ, count) + (struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value))
    return head + body + struct.pack("<I", 0)


def image_cases(n: int, rng: random.Random) -> Iterator[Case]:
    sources = [SHARED / s for s in SOURCES["image"]]
    blobs = {p: p.read_bytes() for p in sources}
    sizes = [(0, 0), (0, 10), (1, 1), (100_000, 100_000), (2**31 - 1, 2**31 - 1), (65535, 65535), (50_000, 3)]
    for _ in range(n):
        m = rng.choice(["flip", "truncate", "nul", "garbage", "size"])
        if m == "size":
            w, h = rng.choice(sizes)
            if rng.random() < 0.5:
                yield Case("image", "synthetic.png", f"PNG header {w}x{h}", png_with_size(w, h), ".png")
            else:
                yield Case("image", "synthetic.tif", f"TIFF header {w}x{h}", tiff_with_size(w, h), ".tif")
            continue
        src = rng.choice(sources)
        out, what = _generic(blobs[src], rng, m)
        yield Case("image", str(src), what, out, src.suffix)


# ------------------------------------------------------------------------------ recipes
RECIPE = """specimen:
  id: S1
  material: CP steel
inputs:
  synthetic: {seed: 3, ebsd_shape: [64, 64], step_um: 0.5, bainite_fraction: 0.3}
steps:
  clean_ebsd: {min_ci: 0.1, tolerance_deg: 5.0}
  ebsd_derive: {tolerance_deg: 5.0, kam_order: 3, kam_max_deg: 5.0}
  register: {micrograph: lom, grid_um: 20.0}
  segment: {micrograph: lom, method: unsupervised, n_classes: 2, options: {n_superpixels: 500, max_iter: 5}}
  quantify: {fields: [3, 3], grain_size: true}
limits:
  lath_bainite: [0.1, 0.5]
"""
_RECIPE_NUMBERS = ["3", "64", "0.5", "0.3", "0.1", "5.0", "20.0", "500", "2", "0.5"]


def recipe_cases(n: int, rng: random.Random) -> Iterator[Case]:
    base = RECIPE.encode()
    bombs = [
        "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"a{i}: &a{i} [{', '.join([f'*a{i - 1}' if i > 1 else '*a'] * 9)}]\n" for i in range(1, 9)
        ),
        "limits: &x {a: *x}\n",
    ]
    for _ in range(n):
        m = rng.choice(["flip", "truncate", "nul", "garbage", "number", "duplicate", "bomb", "type", "id", "output", "delete"])
        text = RECIPE
        if m in ("flip", "truncate", "nul", "garbage"):
            out, what = _generic(base, rng, m)
            yield Case("recipe", "recipe.yaml", what, out, ".yaml")
            continue
        if m == "number":
            old = rng.choice(_RECIPE_NUMBERS)
            new = rng.choice([".nan", ".inf", "-.inf", "1e308", "-1", "0", "1000000", "99999999999", "1e-300", "'x'"])
            text = text.replace(old, new, 1)
            what = f"{old} -> {new}"
        elif m == "duplicate":
            text = text + "specimen: {id: S2}\n" if rng.random() < 0.5 else text.replace("  material:", "  id: S3\n  material:")
            what = "duplicate key"
        elif m == "bomb":
            text = text + rng.choice(bombs)
            what = "YAML alias bomb"
        elif m == "type":
            key = rng.choice(["seed", "kam_order", "min_ci", "fields", "n_classes", "options"])
            text = text.replace(f"{key}:", f"{key}: {{x: [1, 2]}} #", 1)
            what = f"{key} -> mapping"
        elif m == "id":
            sid = rng.choice([".", "..", "...", "../x", "a/b", "/etc", "x" * 300, "S 1", "S\u00e91"])
            text = text.replace("id: S1", f"id: {sid!r}")
            what = f"id {sid!r}"
        elif m == "output":
            d = rng.choice(["../..", "../../x", "/tmp/../..", "sub/../../..", "ok"])
            text = text + f"output: {{dir: {d!r}}}\n"
            what = f"output.dir {d!r}"
        else:
            lines = text.splitlines()
            k = rng.randrange(len(lines))
            what = f"delete line {k + 1}"
            text = "\n".join(lines[:k] + lines[k + 1 :]) + "\n"
        yield Case("recipe", "recipe.yaml", what, text.encode(), ".yaml")


# ------------------------------------------------------------------------------ specimens
def build_specimen(folder: Path) -> Path:
    """A specimen from real data: the ACOM .ang map, a real micrograph, a table."""
    import pandas as pd

    import metallo as mt
    from metallo.specimen import Specimen

    path = folder / "S1.h5"
    spec = Specimen.create(path, specimen_id="S1", material="steel", overwrite=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ebsd = mt.io.read_ebsd(SHARED / SOURCES["ang"][0])
        image = mt.io.read_image(SHARED / SOURCES["image"][0], pixel_size_um=0.1)
    spec.add("ebsd/map1", ebsd, step="io.read_ebsd")
    spec.add("micrographs/lom", image, step="io.read_image")
    spec.add("quantities/psd", pd.DataFrame({"ecd_um": np.linspace(0.5, 3, 50), "cls": ["a", "b"] * 25}), step="quantify")
    spec.save()
    return path


def _h5_edit_cases(path: Path, rng: random.Random) -> tuple[bytes, str]:
    """Edit a copy through h5py (checksums stay valid): values the schema must refuse."""
    import shutil
    import tempfile

    import h5py

    edits = [
        ("ebsd/map1/euler", lambda a: np.where(np.arange(a.shape[-1]) == 0, 1.75e306, a)),
        ("ebsd/map1/euler", lambda a: a + 100.0),
        ("ebsd/map1/ci", lambda a: np.full_like(a, np.inf)),
        ("ebsd/map1/iq", lambda a: np.full_like(a, np.nan)),
        ("ebsd/map1/x", lambda a: a * np.nan),
        ("micrographs/lom/y", lambda a: a[::-1].copy()),
    ]
    attr_edits = [
        ("ebsd/map1", "step_um", np.nan),
        ("ebsd/map1", "step_um", -1.0),
        ("micrographs/lom", "pixel_size_um", -3.0),
        ("ebsd/map1", "grid", "triangular"),
        ("ebsd/map1", "phases", "[{]"),
        ("/", "schema_version", "9.9"),
        ("/", "specimen_id", ""),
    ]
    tmp = Path(tempfile.mkdtemp()) / "e.h5"
    shutil.copy(path, tmp)
    with h5py.File(tmp, "r+") as fh:
        if rng.random() < 0.5:
            name, fn = rng.choice(edits)
            fh[name][...] = fn(fh[name][()])
            what = f"h5py edit {name}"
        else:
            node, key, value = rng.choice(attr_edits)
            fh[node].attrs[key] = value
            what = f"h5py attr {node}.{key} = {value!r}"
    data = tmp.read_bytes()
    shutil.rmtree(tmp.parent)
    return data, what


def specimen_cases(n: int, rng: random.Random, path: Path) -> Iterator[Case]:
    data = path.read_bytes()
    for _ in range(n):
        m = rng.choice(["flip", "flip", "flip", "truncate", "nul", "garbage", "edit"])
        if m == "edit":
            out, what = _h5_edit_cases(path, rng)
        else:
            out, what = _generic(data, rng, m)
        yield Case("specimen", str(path), what, out, ".h5")


# ------------------------------------------------------------------------------ checkpoints
def build_checkpoint(folder: Path) -> Path:
    from metallo.segment import get_model, save_checkpoint

    model = get_model("unet", n_classes=2, base_channels=4)
    return save_checkpoint(folder / "unet.pt", model, classes=["matrix", "particle"], mean=[0.5], std=[0.2],
                           pixel_size_um=0.1)


def checkpoint_cases(n: int, rng: random.Random, path: Path) -> Iterator[Case]:
    import io

    import torch

    data = path.read_bytes()
    payload = torch.load(path, weights_only=True)
    edits: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
        ("model_kwargs.n_classes=10**9", lambda p: p["model_kwargs"].update(n_classes=10**9)),
        ("model_kwargs.base_channels=10**7", lambda p: p["model_kwargs"].update(base_channels=10**7)),
        ("model_kwargs.bogus=1", lambda p: p["model_kwargs"].update(bogus=1)),
        ("model_kwargs=list", lambda p: p.update(model_kwargs=[1, 2])),
        ("model=None", lambda p: p.update(model=None)),
        ("model=unknown", lambda p: p.update(model="resnet9000")),
        ("classes=7", lambda p: p.update(classes=7)),
        ("normalization.std=[0]", lambda p: p["normalization"].update(std=[0.0])),
        ("normalization.mean=[nan]", lambda p: p["normalization"].update(mean=[float("nan")])),
        ("normalization=missing", lambda p: p.pop("normalization")),
        ("pixel_size_um=-1", lambda p: p.update(pixel_size_um=-1.0)),
        ("pixel_size_um=inf", lambda p: p.update(pixel_size_um=float("inf"))),
        ("state_dict=list", lambda p: p.update(state_dict=[1])),
        ("state_dict tensor reshaped", lambda p: p["state_dict"].update(
            {next(iter(p["state_dict"])): torch.zeros(3)})),
        ("state_dict nan weights", lambda p: p["state_dict"].update(
            {k: torch.full_like(v, float("nan")) for k, v in p["state_dict"].items() if v.is_floating_point()})),
        ("tile=str", lambda p: p.update(tile="big")),
        ("format missing", lambda p: p.pop("format")),
        ("ignore_index=-5", lambda p: p.update(ignore_index=-5)),
    ]
    for _ in range(n):
        m = rng.choice(["flip", "flip", "truncate", "nul", "garbage", "edit", "edit"])
        if m == "edit":
            import copy

            what, fn = rng.choice(edits)
            p = copy.deepcopy(payload)
            fn(p)
            if rng.random() < 0.5:  # as a crafted or pre-digest checkpoint: only field checks apply
                p.pop("content_sha256", None)
                what += " (no digest)"
            buf = io.BytesIO()
            torch.save(p, buf)
            yield Case("checkpoint", str(path), what, buf.getvalue(), ".pt")
        else:
            out, what = _generic(data, rng, m)
            yield Case("checkpoint", str(path), what, out, ".pt")


# ------------------------------------------------------------------------------ running
class _Baselines:
    """Readings of the uncorrupted sources, to tell harmless corruptions from silent damage."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def get(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


_BASE = _Baselines()


def _check_ebsd(ds: Any, case: Case, warned: bool) -> list[str]:
    import metallo as mt
    from metallo._specimen_schema import validate_values
    from metallo.errors import SchemaError

    problems = []
    try:
        validate_values(ds, "ebsd/fuzz", "ebsd", where=case.label)
    except SchemaError as exc:
        problems.append(str(exc))
    # Text formats carry no checksum: an edit that turns one valid value into another (a CI,
    # a phase -1 = not indexed) cannot be detected. Only mutations that lose rows are compared
    # with the original reading, which must then warn.
    if warned or not case.mutation.startswith(("truncate", "drop")):
        return problems

    def reference() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mt.io.read_ebsd(case.source)

    ref = _BASE.get(case.source, reference)
    head = Path(case.source).read_bytes()[:5000]
    sized = (b"NROWS" in head or b"YCells" in head) and b"Interactive" not in head
    if not problems and not sized and case.mutation.startswith("truncate"):
        return ["short"]
    if dict(ds.sizes) != dict(ref.sizes):
        problems.append(f"grid {dict(ds.sizes)} differs from the original {dict(ref.sizes)} without a warning")
        return problems
    n_ref = int((ref["phase"].values >= 0).sum())
    n_now = int((ds["phase"].values >= 0).sum())
    if n_now < n_ref:
        problems.append(f"{n_ref - n_now} fewer indexed points than the original without a warning")
    return problems


def _check_image(da: Any, case: Case, warned: bool) -> list[str]:
    values = np.asarray(da.values)
    if values.size == 0:
        return ["an empty image was accepted"]
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        return ["non-finite pixel values accepted"]
    return []


def _check_specimen(spec: Any, case: Case, warned: bool) -> list[str]:
    from metallo.specimen import Specimen

    ref = _BASE.get(case.source, lambda: Specimen.open(case.source))
    problems = []
    if spec.nodes() != ref.nodes():
        problems.append(f"nodes {spec.nodes()} differ from the original {ref.nodes()}")
        return problems
    if spec.attrs != ref.attrs:
        problems.append("root attributes differ from the original")
    if spec.provenance != ref.provenance:
        problems.append("provenance differs from the original")
    for node in spec.nodes():
        a, b = spec[node], ref[node]
        if not a.identical(b):
            problems.append(f"node {node!r} differs from the original")
    return problems


def _check_checkpoint(result: Any, case: Case, warned: bool) -> list[str]:
    import torch

    from metallo.segment import load_checkpoint

    net, info = result
    ref_net, ref_info = _BASE.get(case.source, lambda: load_checkpoint(case.source))
    problems = []
    for (k, v), (_, w) in zip(net.state_dict().items(), ref_net.state_dict().items(), strict=False):
        if v.shape != w.shape or not torch.equal(v, w):
            problems.append(f"weights {k} differ from the original")
            break
    for key in ("classes", "normalization", "pixel_size_um", "model", "model_kwargs"):
        if info.get(key) != ref_info.get(key):
            problems.append(f"{key} differs from the original")
    return problems


def _check_recipe(recipe: Any, case: Case, warned: bool) -> list[str]:
    return []


def _call(case: Case, path: Path) -> tuple[Any, Callable[[Any, Case, bool], list[str]]]:
    import metallo as mt

    if case.target in ("ang", "ctf"):
        return mt.io.read_ebsd(path), _check_ebsd
    if case.target == "image":
        return mt.io.read_image(path), _check_image
    if case.target == "specimen":
        from metallo.specimen import Specimen

        return Specimen.open(path), _check_specimen
    if case.target == "checkpoint":
        from metallo.segment import load_checkpoint

        return load_checkpoint(path), _check_checkpoint
    if case.target == "recipe":
        from metallo._recipe import load_recipe

        return load_recipe(path), _check_recipe
    raise ValueError(case.target)


#: Warnings that are documented outcomes (the reader says what it did with the input).
DOCUMENTED_WARNINGS = (
    "disagrees with", "share a grid cell", "header says", "pixel size unknown", "missing",
    "unindexed", "outside the recipe's folder", "marked", "rows",
)


def run_case(case: Case, folder: Path) -> tuple[str, str]:
    """Feed one case to its reader; returns (outcome, detail)."""
    from metallo.errors import MetalloError

    path = folder / f"case{case.suffix}"
    path.write_bytes(case.data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result, check = _call(case, path)
        except MetalloError as exc:
            text = str(exc)
            if "\n" in text or len(text) > MAX_MESSAGE:
                return "long", f"{type(exc).__name__} of {len(text)} chars: {text[:200]!r}"
            return "error", f"{type(exc).__name__}: {text[:300]}"
        except Exception as exc:  # noqa: BLE001 - what escapes is exactly what is measured
            return "other", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    documented = [m for m in messages if any(key in m for key in DOCUMENTED_WARNINGS)]
    problems = check(result, case, bool(documented))
    if problems == ["short"]:
        return "short", "cut at a row boundary; the header states no grid size"
    if problems:
        return "silent", "; ".join(problems)[:300]
    if documented:
        return "warning", documented[0][:300]
    return "accepted", ""


def generate(n: int, seed: int, folder: Path) -> list[Case]:
    """``n`` cases spread over every target (fixed ``seed`` -> the same cases)."""
    rng = random.Random(seed)
    spec = build_specimen(folder)
    ckpt = build_checkpoint(folder)
    shares = {"ang": 0.22, "ctf": 0.16, "image": 0.14, "specimen": 0.2, "recipe": 0.16, "checkpoint": 0.12}
    counts = {k: max(1, round(v * n)) for k, v in shares.items()}
    cases: list[Case] = []
    cases += ebsd_cases("ang", counts["ang"], rng)
    cases += ebsd_cases("ctf", counts["ctf"], rng)
    cases += image_cases(counts["image"], rng)
    cases += specimen_cases(counts["specimen"], rng, spec)
    cases += recipe_cases(counts["recipe"], rng)
    cases += checkpoint_cases(counts["checkpoint"], rng, ckpt)
    return cases


def _worker(folder: str, todo: Any, done: Any) -> None:
    import torch

    torch.set_num_threads(1)
    for i, case in iter(todo.get, None):
        done.put((i, *run_case(case, Path(folder))))


def run_isolated(cases: list[Case], folder: Path, *, timeout_s: float = 60.0) -> list[tuple[str, str]]:
    """Run every case in a worker process; a case past ``timeout_s`` is a hang, a dead worker a crash.

    Workers are spawned (torch's thread pools do not survive a fork) and replaced after a hang
    or crash.
    """
    ctx = mp.get_context("spawn")
    results: list[tuple[str, str] | None] = [None] * len(cases)
    i = 0
    while i < len(cases):
        todo, done = ctx.Queue(), ctx.Queue()
        proc = ctx.Process(target=_worker, args=(str(folder), todo, done), daemon=True)
        proc.start()
        try:
            while i < len(cases):
                todo.put((i, cases[i]))
                try:
                    j, outcome, detail = done.get(timeout=timeout_s)
                    results[j] = (outcome, detail)
                except Exception:  # noqa: BLE001 - queue.Empty: timed out or the worker died
                    alive = proc.is_alive()
                    results[i] = ("hang", f"no result in {timeout_s:g} s") if alive else ("crash", f"worker exit {proc.exitcode}")
                    i += 1
                    break
                i += 1
        finally:
            todo.put(None)
            proc.join(timeout=1)
            if proc.is_alive():
                proc.kill()
                proc.join()
    return [r if r is not None else ("crash", "no result") for r in results]


def table(cases: list[Case], results: list[tuple[str, str]]) -> str:
    """The outcome table (targets x outcomes) as text."""
    targets = sorted({c.target for c in cases})
    lines = [f"{'target':12}" + "".join(f"{o:>10}" for o in OUTCOMES) + f"{'total':>8}"]
    for t in [*targets, "all"]:
        rows = [r for c, r in zip(cases, results, strict=True) if t in ("all", c.target)]
        counts = [sum(1 for r in rows if r[0] == o) for o in OUTCOMES]
        lines.append(f"{t:12}" + "".join(f"{n:>10}" for n in counts) + f"{len(rows):>8}")
    return "\n".join(lines)
