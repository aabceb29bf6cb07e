"""Cross-validation folds trained side by side in worker processes (``jobs``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from metallo.errors import ConfigError, MetalloError, SchemaError
from metallo.segment import TrainConfig, cross_validate, load_checkpoint
from metallo.segment._parallel import run_parallel, task_threads

FAST = {"epochs": 2, "tile_size": 32, "batch_size": 4, "device": "cpu", "model": "unet",
        "model_kwargs": {"base_channels": 4}}


@pytest.fixture
def two_threads():
    """The parent holds two torch threads, so two workers get one each (as on a 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_threads_are_shared_out_by_waves():
    assert task_threads(2, 2, threads=2) == [1, 1]
    # Three folds on two cores: two one-thread folds, then the last one alone on both threads.
    assert task_threads(3, 2, threads=2) == [1, 1, 2]
    assert task_threads(5, 2, threads=4) == [2, 2, 2, 2, 4]
    assert task_threads(2, 8, threads=2) == [1, 1]          # never more workers than tasks
    assert task_threads(4, 3, threads=1) == [1, 1, 1, 1]    # at least one thread each
    assert task_threads(3, 1, threads=2) == [2, 2, 2]       # in turn: every task on all threads


def test_folds_side_by_side_equal_the_folds_in_turn(two_phase_data, tmp_path, two_threads):
    """Each worker runs the same seeded training on one thread: the same folds, to the last bit."""
    seen = []
    side = cross_validate(two_phase_data, folds=2, jobs=2, out_dir=str(tmp_path / "side"),
                          progress=lambda done, total, what: seen.append((done, total, what)), **FAST)
    torch.set_num_threads(1)
    turn = cross_validate(two_phase_data, folds=2, jobs=1, out_dir=str(tmp_path / "turn"), **FAST)
    for a, b in zip(side.folds, turn.folds, strict=True):
        assert a["held_out"] == b["held_out"]
        assert a["confusion"] == b["confusion"]
        assert a["train_steps"] == b["train_steps"] == 2 * 2   # 2 epochs x (2 images x 4 tiles) / batch 4
    for k in range(2):
        net_side, _ = load_checkpoint(tmp_path / "side" / f"fold{k}.pt")
        net_turn, _ = load_checkpoint(tmp_path / "turn" / f"fold{k}.pt")
        for (name, x), (_, y) in zip(net_side.state_dict().items(), net_turn.state_dict().items(), strict=True):
            assert torch.equal(x, y), name
    assert side.pooled["confusion"] == turn.pooled["confusion"]
    assert (tmp_path / "side" / "cv_metrics.json").is_file()
    # Progress from both workers reached the caller, counted over both folds.
    assert {what.split(":")[0] for _, _, what in seen} == {"fold 0", "fold 1"}
    assert seen[-1][:2] == (2 + 2, 2 + 2)          # both folds' 2 epochs done, of both folds' 2
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)   # one rising count, one bar


def test_each_fold_goes_on_from_its_own_checkpoint(two_phase_data, tmp_path, two_threads):
    """``init_weights`` as a mapping: fold k starts from fold k of an earlier cross-validation."""
    from metallo.segment._train import fold_indices, train_folds

    cross_validate(two_phase_data, folds=2, jobs=1, out_dir=str(tmp_path / "first"), **FAST)
    parts = fold_indices(len(two_phase_data), 2, seed=0)
    earlier = {k: str(tmp_path / "first" / f"fold{k}.pt") for k in (0, 1)}
    outcomes = train_folds(two_phase_data, parts, [0, 1], jobs=2, out_dir=str(tmp_path / "second"),
                           init_weights=earlier, **FAST)
    for k, (metrics, checkpoint) in enumerate(outcomes):
        assert metrics["init_weights"]["path"] == earlier[k]
        assert Path(checkpoint).name == f"fold{k}.pt"
    with pytest.raises(ConfigError, match=r"must map every trained fold \[0, 1\]"):
        train_folds(two_phase_data, parts, [0, 1], out_dir=None, init_weights={0: earlier[0]}, **FAST)


def test_a_failing_fold_names_itself(two_phase_data, tmp_path, two_threads):
    with pytest.raises(ConfigError, match=r"^fold [01]: init_weights"):
        cross_validate(two_phase_data, folds=2, jobs=2, out_dir=None,
                       init_weights=str(tmp_path / "missing.pt"), **FAST)


def test_jobs_must_be_a_whole_number_of_processes(tmp_path, data_folder):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="jobs must be a whole number >= 1"):
            TrainConfig.from_any({"jobs": bad})
    path = tmp_path / "train.yaml"
    path.write_text(f"data: {data_folder}\njobs: 0\n")
    with pytest.raises(SchemaError, match="jobs"):
        TrainConfig.from_any(path)
    path.write_text(f"data: {data_folder}\njobs: 2\n")
    assert TrainConfig.from_any(path).jobs == 2


def test_jobs_on_one_fold_set_is_still_in_order(two_phase_data, two_threads):
    """More jobs than folds: one worker per fold, results in fold order."""
    cv = cross_validate(two_phase_data, folds=2, jobs=4, out_dir=None, **FAST)
    assert [f["fold"] for f in cv.folds] == [0, 1]
    held = sorted(name for f in cv.folds for name in f["held_out"])
    assert held == sorted(s.name for s in two_phase_data.samples)
    assert np.asarray(cv.pooled["confusion"]).sum() == 4 * 64 * 64


def _die(code: int, progress=None) -> None:
    os._exit(code)   # a worker killed mid-task (out of memory, kill -9)


def _square(x: int, progress=None) -> int:
    progress(1, 1, "squared")
    return x * x


def test_a_dead_worker_is_a_clear_error_and_results_keep_task_order(two_threads):
    assert run_parallel([(_square, (k,), {}) for k in range(3)], jobs=2, labels=["a", "b", "c"]) == [0, 1, 4]
    with pytest.raises(MetalloError, match=r"^dead: its worker process ended abruptly .* jobs=1"):
        run_parallel([(_die, (3,), {})], jobs=2, labels=["dead"])
