"""A fixed-seed sample of corrupted inputs built from the real files (benchmarks/fuzz.py runs thousands).

Every case must end in a one-line MetalloError, a documented warning with the bad points
marked, or a reading that passes every value check; nothing may escape, hang or be silently
accepted.
"""

from __future__ import annotations

import os

import pytest
from fuzz_cases import GOOD, SHARED, generate, run_isolated, table

N_CASES = int(os.environ.get("METALLO_FUZZ_CASES", "240"))


@pytest.mark.slow
@pytest.mark.shared_data
def test_corrupted_inputs_end_in_clear_errors_or_documented_warnings(shared_data, tmp_path):
    assert SHARED.resolve() == shared_data.resolve()
    cases = generate(N_CASES, seed=20261130, folder=tmp_path)
    results = run_isolated(cases, tmp_path, timeout_s=60)
    bad = [f"{o}: {c.label}: {d}" for c, (o, d) in zip(cases, results, strict=True) if o not in GOOD]
    assert not bad, table(cases, results) + "\n" + "\n".join(bad[:20])
    assert sum(o == "error" for o, _ in results) > N_CASES // 2  # the corruptions do bite
