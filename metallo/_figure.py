"""Figures for files: an explicit matplotlib ``Figure`` on its own Agg canvas.

Library code draws on figures made here and never touches pyplot or ``matplotlib.use``: no
global backend switch, no figure registry to leak into, nothing that changes a user's
interactive session. matplotlib is imported only when a figure is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["agg_figure", "save_figure"]


def agg_figure(
    figsize: tuple[float, float] = (6.0, 4.0),
    *,
    dpi: float = 100,
    layout: Literal["constrained", "compressed", "tight"] | None = None,
) -> Figure:
    """A new figure attached to a non-interactive Agg canvas.

    Parameters
    ----------
    figsize : (width, height)
        In inches.
    dpi : float
        Dots per inch of the canvas (``savefig`` may override it).
    layout : {None, "constrained", "tight"}
        matplotlib's layout engine.

    Returns
    -------
    matplotlib.figure.Figure
        Draw on it with ``fig.subplots()``; write it with ``fig.savefig``. No ``close`` is
        needed: the figure is freed with its last reference.

    Examples
    --------
    >>> fig = agg_figure((2, 1))
    >>> ax = fig.subplots()
    >>> type(fig.canvas).__name__
    'FigureCanvasAgg'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: str | Path, *, dpi: float | None = None) -> Path:
    """Write ``fig`` to ``path`` atomically (format from the suffix, PNG when it has none).

    A crash or an interrupt while the image is encoded leaves the previous file (or none),
    never a truncated one.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or Path
    dpi : float, optional

    Returns
    -------
    Path

    Examples
    --------
    >>> save_figure(agg_figure((1, 1)), "blank.png").name
    'blank.png'
    """
    from metallo._atomic import atomic_path

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, **({} if dpi is None else {"dpi": dpi}))
    return path
