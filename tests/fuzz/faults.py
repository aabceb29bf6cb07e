"""Fault trials on the Specimen container: concurrent writers and writers killed mid-save.

Used by ``tests/fuzz/test_faults.py`` (a few trials) and ``benchmarks/fuzz.py`` (hundreds).
Each function returns counts so that both can assert or print them.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metallo._atomic import temp_files
from metallo.errors import ConflictError
from metallo.specimen import Specimen


def _table(value: int) -> pd.DataFrame:
    return pd.DataFrame({"value": np.arange(200, dtype=np.float64) + value})


def new_specimen(path: Path) -> None:
    """A small saved specimen with one table node."""
    spec = Specimen.create(path, specimen_id=path.stem, overwrite=True)
    spec.add("quantities/base", _table(0), step="test.base")
    spec.save()


def _writer(
    folder: str, writer: int, trials: int, locked: bool, barrier: Any, results: Any
) -> None:
    for trial in range(trials):
        path = Path(folder) / f"t{trial}.h5"
        barrier.wait()
        node = f"quantities/w{writer}"
        try:
            if locked:
                with Specimen.lock(path):
                    spec = Specimen.open(path)
                    spec.add(node, _table(writer), step="test.write")
                    spec.save()
            else:
                spec = Specimen.open(path)
                spec.add(node, _table(writer), step="test.write")
                spec.save()
            outcome = "saved"
        except ConflictError:
            outcome = "conflict"
        results.put((trial, writer, outcome))


def two_writer_trials(folder: Path, trials: int, *, locked: bool) -> dict[str, int]:
    """``trials`` rounds of two processes adding a node each to the same specimen at once.

    Returns counts: ``saved`` (writes that reported success), ``conflict`` (clear
    ConflictError, nothing written), ``lost`` (reported saved but missing from the file),
    ``unreadable`` (file not a valid specimen afterwards).
    """
    folder = Path(folder)
    for trial in range(trials):
        new_specimen(folder / f"t{trial}.h5")
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(str(folder), w, trials, locked, barrier, results))
        for w in range(2)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=600) for _ in range(2 * trials)]
    for p in procs:
        p.join(timeout=60)
    counts = {"saved": 0, "conflict": 0, "lost": 0, "unreadable": 0}
    for trial, writer, outcome in outcomes:
        counts[outcome] += 1
        if outcome != "saved":
            continue
        try:
            nodes = Specimen.open(folder / f"t{trial}.h5").nodes()
        except Exception:  # noqa: BLE001 - any failure to read back counts as unreadable
            counts["unreadable"] += 1
            continue
        if f"quantities/w{writer}" not in nodes:
            counts["lost"] += 1
    return counts


def _save_forever(path: str, side: int) -> None:
    spec = Specimen.open(path)
    for i in range(1, 1_000_000):
        spec.add(
            "quantities/big",
            pd.DataFrame({"v": np.full(side, i, dtype=np.float64)}),
            step="test.loop",
            overwrite=True,
        )
        spec.save()


def kill_during_save_trials(folder: Path, trials: int, *, seed: int = 0) -> dict[str, int]:
    """``trials`` writers SIGKILLed at a random moment while saving in a loop.

    After each kill the file must open and read completely, and the next save must remove
    the writer's temporary file. Returns counts ``killed``, ``corrupt``, ``temp_left``
    (temporary files left after the next save), ``temp_seen`` (kills that left one).
    """
    rng = random.Random(seed)
    path = Path(folder) / "killed.h5"
    new_specimen(path)
    ctx = mp.get_context("fork")
    counts = {"killed": 0, "corrupt": 0, "temp_left": 0, "temp_seen": 0}
    for _ in range(trials):
        proc = ctx.Process(target=_save_forever, args=(str(path), 200_000))
        proc.start()
        time.sleep(0.3 + rng.random() * 0.6)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        counts["killed"] += 1
        counts["temp_seen"] += bool(temp_files(path))
        try:
            spec = Specimen.open(path)
            for node in spec.nodes():
                spec[node].load()
        except Exception:  # noqa: BLE001 - any failure to read back counts as corrupt
            counts["corrupt"] += 1
            new_specimen(path)
            continue
        spec.add("quantities/after", _table(1), step="test.after", overwrite=True)
        spec.save()
        counts["temp_left"] += len(temp_files(path))
    return counts
