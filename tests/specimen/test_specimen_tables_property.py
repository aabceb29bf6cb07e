"""Property test: any table of the supported column types comes back equal."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from metallo.specimen import Specimen

NUMERIC = [
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float32",
    "float64",
    "bool",
]
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)


@st.composite
def tables(draw):
    n = draw(st.integers(0, 12))
    names = draw(
        st.lists(
            st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
            min_size=1,
            max_size=5,
            unique=True,
        )
    )
    columns = {}
    for name in names:
        kind = draw(st.sampled_from([*NUMERIC, "str", "category"]))
        if kind in NUMERIC:
            columns[name] = draw(hnp.arrays(np.dtype(kind), n))
        elif kind == "str":
            columns[name] = pd.array(
                draw(st.lists(st.one_of(TEXT, st.none()), min_size=n, max_size=n)), dtype="str"
            )
        else:
            values = draw(
                st.lists(
                    st.sampled_from(["ferrite", "bainite", "pearlite"]), min_size=n, max_size=n
                )
            )
            columns[name] = pd.Categorical(values, categories=["ferrite", "bainite", "pearlite"])
    return pd.DataFrame(columns)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables())
def test_any_table_round_trips(table):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.h5"
        spec = Specimen.create(path, specimen_id="T")
        spec.add("quantities/t", table, step="property")
        spec.save()
        pd.testing.assert_frame_equal(Specimen.open(path).table("quantities/t"), table)
