"""Fixtures of the specimen tests; the node builders live in specimen_cases.py."""

from __future__ import annotations

import pytest
from specimen_cases import NODE_CASES


@pytest.fixture(scope="module")
def full_specimen(tmp_path_factory):
    """A saved specimen with one node of every kind; returns (path, {node: data added}).

    Module-scoped: tests only read it (a test that writes uses its own tmp_path).
    """
    from metallo.specimen import Specimen

    path = tmp_path_factory.mktemp("full") / "S1.h5"
    spec = Specimen.create(
        path,
        specimen_id="S1",
        material="CP steel",
        process={
            "route": "hot rolled",
            "heat_treatment": {"T_C": 650, "t_h": 2},
            "etchant": "2% nital",
        },
    )
    added = {}
    for node, build in NODE_CASES.items():
        data = build()
        spec.add(
            node,
            data,
            step=f"make.{node.split('/')[0]}",
            parameters={"seed": 0},
            inputs=["synthetic"],
        )
        added[node] = data
    spec.save()
    return path, added
