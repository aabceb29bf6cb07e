"""One progress mechanism: library functions report, the caller decides how to show it.

A long-running library function takes ``progress=None`` and, when given a callback, calls it
as ``progress(done, total, description)``: ``done`` of ``total`` units (tiles, epochs,
specimens) finished, or ``total=None`` for a stage without a count ("SIFT keypoints +
RANSAC"). The library never prints or draws a bar itself; the command line renders the calls
with rich (:mod:`metallo.cli._progress`), a notebook or a GUI can pass its own callback, and
``None`` costs nothing.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["ProgressCallback", "notify"]


class ProgressCallback(Protocol):
    """``progress(done, total, description)``; ``total=None`` for a stage without a count."""

    def __call__(self, done: int, total: int | None, description: str) -> None: ...


def notify(progress: ProgressCallback | None, done: int, total: int | None, description: str) -> None:
    """Call ``progress`` if there is one.

    Parameters
    ----------
    progress : callable or None
        The caller's callback.
    done : int
        Units finished so far.
    total : int or None
        Units in all; None for a stage without a count.
    description : str
        What is being done, in a few words.

    Examples
    --------
    >>> seen = []
    >>> notify(lambda done, total, description: seen.append((done, total, description)), 2, 5, "tiles")
    >>> notify(None, 3, 5, "tiles")    # no callback: nothing happens
    >>> seen
    [(2, 5, 'tiles')]
    """
    if progress is not None:
        progress(done, total, description)
