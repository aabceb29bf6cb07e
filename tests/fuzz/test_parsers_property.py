"""Property-based layer: the text parsers either return valid data or raise one MetalloError."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metallo._recipe import load_recipe
from metallo._specimen_schema import validate_values
from metallo.errors import MetalloError, user_message
from metallo.io import read_ebsd
from metallo.io._ebsd_grid import parse_table

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(-10, 10).map(float),
    st.floats(0, 7),
)
tokens = st.one_of(numbers.map(lambda v: f"{v:g}"), st.sampled_from(["", "x", "1,5", "--", "\x00", "1e999"]))


def _one_line(exc: BaseException) -> None:
    text = str(exc)
    assert "\n" not in text and len(text) < 1000, text[:200]
    assert len(user_message(exc)) <= 500


@SETTINGS
@given(st.lists(st.lists(tokens, min_size=1, max_size=6), min_size=0, max_size=12))
def test_parse_table_returns_finite_rows_or_a_format_error(rows):
    text = "\n".join(" ".join(r) for r in rows)
    try:
        values = parse_table(text, first_line_no=1, source="t.txt")
    except MetalloError as exc:
        _one_line(exc)
        return
    assert values.ndim == 2 and not np.isnan(values).any()


ANG_HEADER = """# TEM_PIXperUM 1.000000
# Phase 1
# MaterialName Iron
# Symmetry {sym}
# LatticeConstants 2.870 2.870 2.870 90.000 90.000 90.000
# GRID: SqrGrid
# XSTEP: {step}
# YSTEP: {step}
# NCOLS_ODD: {nx}
# NCOLS_EVEN: {nx}
# NROWS: {ny}
#
"""

row_values = st.tuples(
    st.floats(-1, 13), st.floats(-1, 4), st.floats(-1, 13),  # Euler angles (rad), some out of range
    st.floats(0, 1000), st.sampled_from([-1.0, 0.0, 0.2, 0.9, float("inf")]), st.sampled_from([0, 1, 2]),
)


@SETTINGS
@given(
    st.integers(1, 6), st.integers(1, 6), st.sampled_from(["43", "nan", "99", "1e308", "-5"]),
    st.sampled_from(["1.0", "0", "-1", "nan", "1e308"]), st.data(),
)
def test_ang_files_give_valid_maps_or_one_line_errors(tmp_path_factory, ny, nx, sym, step, data):
    values = data.draw(st.lists(row_values, min_size=ny * nx, max_size=ny * nx))
    drop = data.draw(st.sets(st.integers(0, ny * nx - 1), max_size=2))
    lines = []
    for k, (p1, p, p2, iq, ci, ph) in enumerate(values):
        if k in drop:
            continue
        y, x = divmod(k, nx)
        lines.append(f"{p1:.5f} {p:.5f} {p2:.5f} {x * 1.0:.5f} {y * 1.0:.5f} {iq:.1f} {ci:.3f} {ph} 0 0.5")
    text = ANG_HEADER.format(sym=sym, step=step, nx=nx, ny=ny) + "\n".join(lines) + "\n"
    path = tmp_path_factory.mktemp("ang") / "m.ang"
    path.write_text(text, encoding="latin-1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ebsd = read_ebsd(path)
        except MetalloError as exc:
            _one_line(exc)
            return
    validate_values(ebsd, "ebsd/m", "ebsd", where=str(path))  # nothing impossible at indexed points
    assert ebsd.sizes["y"] * ebsd.sizes["x"] <= max(4 * len(lines), 1 << 16)


yaml_text = st.text(
    alphabet=st.sampled_from(list("abcdefghijklmnopqrstuvwxyz0123456789 :-[]{},&*!|>'\"#\n.") + ["\t", "\x00", "é"]),
    max_size=300,
)


@SETTINGS
@given(yaml_text)
def test_any_recipe_text_loads_or_is_one_metallo_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("r") / "r.yaml"
    path.write_text(text, encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            load_recipe(path)
        except MetalloError as exc:
            _one_line(exc)


@SETTINGS
@given(st.text(max_size=3000))
def test_user_messages_are_one_printable_line(text):
    message = user_message(MetalloError(text))
    assert len(message) <= 500 and "\n" not in message and message.isprintable()


@pytest.mark.parametrize("levels", [4, 8, 12])
def test_nested_alias_levels_are_refused_fast(tmp_path, levels):
    lines = ["specimen: {id: S1}", "inputs: {synthetic: {seed: 1}}", "limits:", "  a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    path = tmp_path / "r.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(MetalloError):
        load_recipe(path)
