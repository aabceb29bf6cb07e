"""Change detection and locking of Specimen saves, duplicate ids in a batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metallo._atomic import file_lock, lock_path
from metallo.errors import ConfigError, ConflictError
from metallo.specimen import Specimen


def _table(value: float) -> pd.DataFrame:
    return pd.DataFrame({"v": np.full(5, value)})


def _saved(path):
    spec = Specimen.create(path, specimen_id="S1")
    spec.add("quantities/base", _table(0), step="t")
    spec.save()
    return path


def test_a_save_over_a_file_changed_since_open_is_refused_and_nothing_is_lost(tmp_path):
    path = _saved(tmp_path / "S1.h5")
    first, second = Specimen.open(path), Specimen.open(path)
    first.add("quantities/a", _table(1), step="t")
    first.save()
    second.add("quantities/b", _table(2), step="t")
    with pytest.raises(ConflictError, match="changed or removed by another writer"):
        second.save()
    assert Specimen.open(path).nodes() == ["quantities/a", "quantities/base"]
    # Re-opened, the second writer's step goes through.
    again = Specimen.open(path)
    again.add("quantities/b", _table(2), step="t")
    again.save()
    assert Specimen.open(path).table("quantities/b")["v"].tolist() == [2.0] * 5


def test_lazy_and_saved_specimens_keep_tracking_their_own_writes(tmp_path):
    path = _saved(tmp_path / "S1.h5")
    spec = Specimen.open(path, lazy=True)
    for i in range(3):
        spec.add(f"quantities/n{i}", _table(i), step="t")
        spec.save()  # each save updates the identity it checks next time
    assert len(Specimen.open(path).nodes()) == 4


def test_create_does_not_overwrite_a_file_another_writer_created_meanwhile(tmp_path):
    path = tmp_path / "S1.h5"
    late = Specimen.create(path, specimen_id="S1")
    _saved(path)
    with pytest.raises(ConflictError, match="created this file after Specimen.create"):
        late.save()
    forced = Specimen.create(path, specimen_id="S1", overwrite=True)
    forced.save()
    assert Specimen.open(path).nodes() == []


def test_a_held_lock_makes_a_save_wait_then_fail_clearly(tmp_path, monkeypatch):
    import multiprocessing as mp

    path = _saved(tmp_path / "S1.h5")
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(path), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        monkeypatch.setenv("METALLO_LOCK_TIMEOUT", "0.2")
        spec = Specimen.open(path)
        spec.add("quantities/x", _table(3), step="t")
        with pytest.raises(ConflictError, match=r"held its lock .*METALLO_LOCK_TIMEOUT"):
            spec.save()
    finally:
        release.set()
        holder.join(30)
    spec.save()  # the lock is free again and the file unchanged: the save goes through
    assert "quantities/x" in Specimen.open(path)
    assert lock_path(path).name == ".S1.h5.lock"


def _hold_lock(path, ready, release):
    with file_lock(path):
        ready.set()
        release.wait(60)


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    path = _saved(tmp_path / "S1.h5")
    with Specimen.lock(path):
        spec = Specimen.open(path)
        spec.add("quantities/x", _table(3), step="t")
        spec.save()  # takes the same lock again
    assert "quantities/x" in Specimen.open(path)


def test_a_bad_lock_timeout_setting_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("METALLO_LOCK_TIMEOUT", "nan")
    with pytest.raises(ConfigError, match="METALLO_LOCK_TIMEOUT"):
        _saved(tmp_path / "S1.h5")


def test_a_batch_with_two_recipes_for_one_specimen_id_runs_nothing(tmp_path):
    from metallo.batch import check_unique_ids, run_batch

    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(
            "specimen: {id: S1}\ninputs: {synthetic: {seed: 1}}\n", encoding="utf-8"
        )
    (tmp_path / "c.yaml").write_text("specimen: {id: S2}\ninputs: {synthetic: {seed: 1}}\n")
    with pytest.raises(ConfigError, match=r"a\.yaml and .*b\.yaml both write specimen id 'S1'"):
        run_batch([tmp_path], workers=1, out_dir=tmp_path / "out")
    assert not (tmp_path / "S1").exists() and not (tmp_path / "out").exists()
    check_unique_ids([tmp_path / "a.yaml", tmp_path / "c.yaml"])  # distinct ids are fine
