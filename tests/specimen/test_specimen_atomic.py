"""Atomic save: a writer killed mid-save leaves the previous file intact and valid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from specimen_cases import micrograph

from metallo._atomic import temp_files
from metallo._xarray import image_dataarray
from metallo.specimen import Specimen

SIDE = 2048  # 16 MB float32 per save: long enough to be caught mid-write

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from metallo._xarray import image_dataarray
    from metallo.specimen import Specimen

    spec = Specimen.open(sys.argv[1])
    side = int(sys.argv[2])
    for i in range(1, 10_000):
        image = image_dataarray(
            np.full((side, side), i, dtype=np.float32),
            pixel_size_um=0.1,
            attrs={"modality": "SEM", "source": f"iteration {i}", "sha256": ""},
        )
        spec.add("micrographs/big", image, step="write", parameters={"iteration": i}, overwrite=True)
        spec.save()
        print(i, flush=True)
    """
)


def big_image(value: int):
    return image_dataarray(
        np.full((SIDE, SIDE), value, dtype=np.float32),
        pixel_size_um=0.1,
        attrs={"modality": "SEM", "source": f"iteration {value}", "sha256": ""},
    )


def kill_writer_mid_save(path) -> int:
    """Start a writer that saves `path` in a loop, SIGKILL it while a save is under way.

    Returns the last iteration the writer reported as completely saved.
    """
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(SIDE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        first = writer.stdout.readline()  # one complete save before we start aiming
        assert first.strip() == "1", writer.stderr.read() if writer.stderr else first
        deadline = time.monotonic() + 60
        while not temp_files(path) and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == -signal.SIGKILL
    return max([1, *(int(line) for line in writer.stdout.read().split())])


@pytest.mark.slow
def test_killed_writer_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "S1.h5"
    spec = Specimen.create(path, specimen_id="S1")
    spec.add("micrographs/big", big_image(0), step="write", parameters={"iteration": 0})
    spec.save()
    # Under heavy load the kill can land just after a rename; then aim again.
    for _attempt in range(5):
        last_complete = kill_writer_mid_save(path)
        if temp_files(path):
            break
    assert temp_files(path), "the writer was never killed mid-save"

    # The file at `path` is one whole earlier save: valid, untorn, matching its provenance.
    reopened = Specimen.open(path)
    image = reopened["micrographs/big"]["image"].values
    value = int(image[0, 0])
    assert last_complete <= value <= last_complete + 1  # at most one save beyond the last report
    assert (image == value).all()
    assert reopened.provenance[-1]["parameters"] == {"iteration": value}
    assert reopened["micrographs/big"].attrs["source"] == f"iteration {value}"

    # The partial file is hidden from *.h5 globs and removed by the next save.
    assert sorted(p.name for p in tmp_path.glob("*.h5")) == ["S1.h5"]
    assert temp_files(path)
    reopened.save()
    assert temp_files(path) == []
    # The lock file stays (deleting it would race with a waiting writer); no temp file does.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".S1.h5.lock", "S1.h5"]


def test_failed_save_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    spec = Specimen.create(tmp_path / "S1.h5", specimen_id="S1")
    spec.add("micrographs/lom", micrograph(), step="read_image")
    spec.save()
    before = spec.path.read_bytes()

    def fail(_path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("metallo._atomic._fsync_file", fail)
    spec.add("micrographs/sem", micrograph(seed=3), step="read_image")
    with pytest.raises(OSError, match="No space"):
        spec.save()
    assert spec.path.read_bytes() == before
    assert temp_files(spec.path) == []
    assert Specimen.open(spec.path).nodes() == ["micrographs/lom"]


def test_stale_temp_files_are_removed_only_when_their_writer_is_gone(tmp_path):
    spec = Specimen.create(tmp_path / "S1.h5", specimen_id="S1")
    host = "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname())
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        names = {
            "dead": f".S1.h5.{host}.{dead.pid}.aaaa.tmp",
            "alive": f".S1.h5.{host}.{alive.pid}.bbbb.tmp",
            "other_host_old": ".S1.h5.elsewhere.123.cccc.tmp",
            "other_host_new": ".S1.h5.elsewhere.456.dddd.tmp",
            "other_file": f".S2.h5.{host}.{dead.pid}.eeee.tmp",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"partial")
        old = time.time() - 2 * 24 * 3600
        os.utime(tmp_path / names["other_host_old"], (old, old))
        spec.save()
        left = {p.name for p in tmp_path.iterdir()}
        assert names["dead"] not in left
        assert names["other_host_old"] not in left
        assert {names["alive"], names["other_host_new"], names["other_file"], "S1.h5"} <= left
    finally:
        alive.kill()
        alive.wait()
