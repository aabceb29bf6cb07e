"""Concurrent writers and writers killed mid-save: no lost write, no corrupt file."""

from __future__ import annotations

import pytest
from faults import kill_during_save_trials, two_writer_trials


@pytest.mark.slow
def test_two_unlocked_writers_never_lose_a_write(tmp_path):
    counts = two_writer_trials(tmp_path, 6, locked=False)
    assert counts["lost"] == 0 and counts["unreadable"] == 0
    # Each round: one writer saves, the other either saves after it or gets a ConflictError.
    assert counts["saved"] + counts["conflict"] == 12
    assert counts["saved"] >= 6


@pytest.mark.slow
def test_two_locked_writers_both_succeed_in_turn(tmp_path):
    counts = two_writer_trials(tmp_path, 6, locked=True)
    assert counts == {"saved": 12, "conflict": 0, "lost": 0, "unreadable": 0}


@pytest.mark.slow
def test_writers_killed_mid_save_leave_valid_files_and_the_next_save_cleans_up(tmp_path):
    counts = kill_during_save_trials(tmp_path, 6, seed=1)
    assert counts["killed"] == 6
    assert counts["corrupt"] == 0
    assert counts["temp_left"] == 0
