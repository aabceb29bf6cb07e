"""The command line's renderer of library progress callbacks (:mod:`metallo._progress`).

Library functions report ``progress(done, total, description)``; here those calls become rich
progress bars (counted work: tiles, epochs, specimens) or timed lines (stages without a
count, or every call in ``lines`` mode), on stderr so that stdout keeps the results.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from metallo._progress import ProgressCallback

__all__ = ["rich_progress"]


#: Where stderr is no terminal (a log file, a batch job), bars are not drawn: counted work is
#: said in a timed line at its start, its end, and at most every this many seconds between.
LOG_EVERY_S = 30.0


class _RichProgress:
    """One bar per run of counted work; a line per stage. Into a log (stderr no terminal), timed
    lines instead of bars, which rich draws only when the work ends (a 20-minute training had
    left its log empty until then)."""

    def __init__(self, bar: Any, lines: bool) -> None:
        self.bar = bar
        self.lines = lines
        self.log = not bar.console.is_terminal
        self.t0 = time.perf_counter()
        self.task: Any = None
        self.total: int | None = None
        self.done = 0
        self.last_line = -float("inf")

    def _line(self, text: str) -> None:
        self.bar.console.print(f"[{time.perf_counter() - self.t0:6.1f} s] {text}", markup=False)
        self.last_line = time.perf_counter()

    def __call__(self, done: int, total: int | None, description: str) -> None:
        if total is None or self.lines:
            self._line(description)
            return
        if self.log:
            new = total != self.total or done < self.done
            if new or done >= total or time.perf_counter() - self.last_line >= LOG_EVERY_S:
                self._line(f"{description}: {done}/{total}")
            self.total, self.done = total, done
            return
        if self.task is None or total != self.total or done < self.done:
            # A new run of counted work (the next image, fold, ...) gets its own bar.
            self.task = self.bar.add_task(description, total=total, completed=done)
        else:
            self.bar.update(self.task, completed=done, description=description)
        self.total, self.done = total, done


@contextmanager
def rich_progress(enabled: bool = True, *, lines: bool = False) -> Iterator[ProgressCallback | None]:
    """A progress callback that renders with rich while the block runs (None when disabled).

    Parameters
    ----------
    enabled : bool
        False (``--quiet``) gives None: the library reports nothing.
    lines : bool
        One timed line per call instead of bars (the chain's steps).

    Examples
    --------
    >>> with rich_progress(False) as progress:
    ...     print(progress)
    None
    """
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True, highlight=False)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console)
    with bar:
        yield _RichProgress(bar, lines)
