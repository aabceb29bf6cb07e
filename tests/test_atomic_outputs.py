"""Outputs are replaced whole or not at all: a write that fails half-way leaves the previous file."""

from __future__ import annotations

import pytest

from metallo._atomic import temp_files


class _Interrupted(RuntimeError):
    pass


def test_a_figure_that_fails_while_encoding_leaves_the_previous_file(tmp_path):
    from metallo._figure import agg_figure, save_figure

    target = tmp_path / "overlay.png"
    save_figure(agg_figure((1, 1)), target)
    before = target.read_bytes()
    assert before[:8] == b"\x89PNG\r\n\x1a\n"

    class Broken:
        def savefig(self, path, **kwargs):
            with open(path, "wb") as fh:
                fh.write(b"\x89PNG half")
            raise _Interrupted("killed mid-write")

    with pytest.raises(_Interrupted):
        save_figure(Broken(), target)
    assert target.read_bytes() == before and temp_files(target) == []


def test_a_checkpoint_save_that_fails_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    import torch

    from metallo.segment import get_model
    from metallo.segment._checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "unet.pt"
    save_checkpoint(path, get_model("unet", n_classes=2, base_channels=4), classes=["a", "b"], mean=[0.5], std=[0.2])
    before = path.read_bytes()

    def half_then_fail(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(before[: len(before) // 2])
        raise _Interrupted("killed mid-write")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(_Interrupted):
        save_checkpoint(path, get_model("unet", n_classes=2, base_channels=4), classes=["a", "b"], mean=[0.1], std=[0.2])
    monkeypatch.undo()
    assert path.read_bytes() == before and temp_files(path) == []
    assert load_checkpoint(path)[1]["normalization"]["mean"] == [0.5]
