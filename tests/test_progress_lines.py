"""The command line's progress where stderr is a log file, not a terminal."""

from __future__ import annotations

import re


def test_counted_work_into_a_log_is_said_in_timed_lines(capsys, monkeypatch):
    """rich draws no bars into a log: a 20-minute training had left its log empty until it ended.
    Counted work now says its start, its end, and a line at most every LOG_EVERY_S between."""
    from metallo.cli import _progress

    with _progress.rich_progress(True) as progress:
        assert progress is not None
        progress(0, 10, "training unet")
        progress(3, 10, "training unet")  # within LOG_EVERY_S of the last line: not said
        monkeypatch.setattr(_progress, "LOG_EVERY_S", 0.0)
        progress(5, 10, "training unet loss 0.5")
        monkeypatch.setattr(_progress, "LOG_EVERY_S", 1e9)
        progress(7, 10, "training unet")
        progress(10, 10, "training unet loss 0.2")
        progress(0, 4, "next image")  # a new run of counted work
        progress(None, None, "a stage")  # type: ignore[arg-type]
    said = [re.sub(r"^\[\s*[\d.]+ s\] ", "", line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert said == ["training unet: 0/10", "training unet loss 0.5: 5/10", "training unet loss 0.2: 10/10",
                    "next image: 0/4", "a stage"]
    with _progress.rich_progress(False) as quiet:
        assert quiet is None
