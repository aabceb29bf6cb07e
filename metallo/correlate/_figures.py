"""Quality figures of a registration: checkerboards before/after and a colour overlay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metallo._figure import agg_figure
from metallo.correlate._transform import AffineStep, Registration


def _grey(image: Any) -> np.ndarray:
    a = np.asarray(getattr(image, "values", image), dtype=np.float64)
    if a.ndim == 3:
        a = a[..., :3].mean(axis=2)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros_like(a)
    lo, hi = np.percentile(a[finite], [1, 99])
    return np.clip((np.where(finite, a, lo) - lo) / max(hi - lo, 1e-12), 0, 1)


def checkerboard(a: np.ndarray, b: np.ndarray, *, squares: int = 8) -> np.ndarray:
    """Alternate squares of two same-shape images (``squares`` along the longer side).

    Parameters
    ----------
    a, b : ndarray
        Images of the same shape (e.g. fixed and warped moving).
    squares : int
        Number of squares along the longer side.

    Returns
    -------
    ndarray

    Examples
    --------
    >>> checkerboard(np.zeros((4, 4)), np.ones((4, 4)), squares=2)[:, 0].tolist()
    [0.0, 0.0, 1.0, 1.0]
    """
    size = max(1, max(a.shape[:2]) // squares)
    yy, xx = np.indices(a.shape[:2]) // size
    return np.where((yy + xx) % 2 == 0, a, b)


def _title(reg: Registration) -> tuple[str, bool]:
    """The figure's title, and whether the registration was flagged failed (then said in it)."""
    title = f"{reg.moving} -> {reg.fixed}: {reg.method} ({reg.transform_type})"
    if not reg.quality.get("failed"):
        return title, False
    reasons = reg.quality.get("failure_reasons") or ["see quality.json"]
    return f"{title}\nREGISTRATION FAILED - do not trust this warp: {str(reasons[0])[:110]}", True


def overlay_figure(reg: Registration, fixed: Any, moving: Any, path: str | Path, *, squares: int = 8) -> Path:
    """Write a PNG: checkerboard before (physical placement), checkerboard after, colour overlay.

    Parameters
    ----------
    reg : Registration
    fixed, moving : ndarray or xr.DataArray
        The images that were registered.
    path : str or Path
        Output PNG.
    squares : int
        Checkerboard squares along the longer side.

    Returns
    -------
    Path

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage as ndi
    >>> fixed = ndi.gaussian_filter(np.random.default_rng(0).random((96, 96)), 3)
    >>> moving = ndi.shift(fixed, (2.0, -3.0), mode="nearest")     # content moved by (+2, -3) px
    >>> from metallo.correlate import register
    >>> overlay_figure(register(fixed, moving, method="affine"), fixed, moving, "overlay.png")
    PosixPath('overlay.png')
    """
    f = _grey(fixed)
    identity = Registration(
        [AffineStep(np.eye(2), np.zeros(2))], fixed_grid=reg.fixed_grid, moving_grid=reg.moving_grid
    )
    before = _grey(identity.warp(_grey(moving), interpolation="linear", fill_value=np.nan).values)
    after = _grey(reg.warp(_grey(moving), interpolation="linear", fill_value=np.nan).values)
    rgb = np.stack([f, after, f], axis=2)
    fig = agg_figure((15, 5.4))
    axes = fig.subplots(1, 3)
    panels = (
        (checkerboard(f, before, squares=squares), f"before (MI {reg.quality.get('mi_before', float('nan')):.3f})"),
        (checkerboard(f, after, squares=squares), f"after (MI {reg.quality.get('mi_after', float('nan')):.3f})"),
        (rgb, "overlay: fixed magenta, warped moving green"),
    )
    for ax, (img, title) in zip(axes, panels, strict=True):
        ax.imshow(img, cmap="gray", interpolation="nearest")
        ax.set_title(title)
        ax.set_axis_off()
    title, failed = _title(reg)
    fig.suptitle(title, color="firebrick" if failed else "black")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
