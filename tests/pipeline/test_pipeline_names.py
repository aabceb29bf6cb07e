"""Node and step names are defined once, in metallo.names (issue 15): no literal elsewhere in metallo/."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from metallo import names
from metallo.specimen import node_kind

ROOT = Path(__file__).resolve().parents[2] / "metallo"
# A string that starts like a node path ("quantities/...", "/ebsd/...") or ends in an EBSD sub-node.
NODE_LITERAL = re.compile(rf"^/?({'|'.join(names.GROUPS)})/|/({'|'.join(names.EBSD_SUBNODES)})$")


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def node_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal (f-string parts too) that spells a node name; docstrings excepted."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            for part in node.values:
                skip.add(id(part))
            head = node.values[0] if node.values else None
            text = head.value if isinstance(head, ast.Constant) and isinstance(head.value, str) else ""
            tail = node.values[-1] if node.values else None
            text_end = tail.value if isinstance(tail, ast.Constant) and isinstance(tail.value, str) else ""
            if NODE_LITERAL.search(text) or NODE_LITERAL.search(text_end):
                found.append((node.lineno, ast.unparse(node)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            if NODE_LITERAL.search(node.value):
                found.append((node.lineno, node.value))
    return found


def test_the_check_finds_literals_it_should():
    src = 'x = "quantities/psd"\ny = f"ebsd/{n}"\nz = f"{m}/derived"\n"""docstring: micrographs/lom"""\n'
    assert [line for line, _ in node_literals(src)] == [2, 3, 1]
    assert node_literals('def f():\n    """spec["ebsd/map"]"""\n    return "ebsd"\n') == []


def test_no_node_name_literal_outside_names():
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.name == "names.py" and path.parent == ROOT:
            continue
        for line, text in node_literals(path.read_text(encoding="utf-8")):
            offenders.append(f"{path.relative_to(ROOT.parent)}:{line}: {text}")
    assert offenders == [], "node names belong in metallo/names.py:\n" + "\n".join(offenders)


def test_names_are_valid_specimen_nodes():
    examples = [names.micrograph("lom"), names.EBSD_MAP, names.EBSD_CLEAN, names.derived(names.EBSD_CLEAN),
                names.parent(names.EBSD_CLEAN), names.resampled(names.EBSD_CLEAN, "lom"), names.registration("lom"),
                names.annotation_on("lath_bainite", "lom"), names.segmentation("lom"),
                names.quantity(names.segmentation("lom"), names.PHASE_FRACTIONS),
                names.quantity(names.parent(names.EBSD_CLEAN), names.GRAIN_SIZE), names.PHASES_ACROSS_MAPS]
    kinds = [node_kind(n) for n in examples]
    assert kinds == ["micrographs", "ebsd", "ebsd", "ebsd_derived", "ebsd_parent", "ebsd", "registration",
                     "annotations", "segmentations", "quantities", "quantities", "quantities"]
    assert len(set(names.STEPS)) == len(names.STEPS)


def test_the_schemas_mirror_the_names():
    schemas = ROOT.parent / "data_schemas"
    for kind in (*names.GROUPS, "ebsd_derived", "ebsd_parent"):
        schema = json.loads((schemas / f"specimen_{kind}.json").read_text(encoding="utf-8"))
        assert schema["title"].startswith("metallo specimen"), kind
    recipe = json.loads((schemas / "recipe.json").read_text(encoding="utf-8"))
    quantify = recipe["properties"]["steps"]["properties"]["quantify"]["properties"]
    assert quantify["what"]["items"]["enum"] == list(names.QUANTIFY_WHAT)
    segment = recipe["properties"]["steps"]["properties"]["segment"]["properties"]
    assert segment["method"]["enum"] == list(names.SEGMENT_METHODS)
