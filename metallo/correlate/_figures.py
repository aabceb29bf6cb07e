"""Quality figures of a registration: checkerboards before/after, a colour overlay, and the residual map."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metallo._figure import agg_figure, save_figure
from metallo.correlate._register import gate_rejected
from metallo.correlate._transform import AffineStep, Grid, Registration
from metallo.errors import RegistrationError


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
    import textwrap

    reasons = reg.quality.get("failure_reasons") or ["see quality.json"]
    # Wrapped, not cut: the reason's numbers (often at its end) are what a user acts on.
    text = textwrap.wrap(f"REGISTRATION FAILED - do not trust this warp: {reasons[0]}", _TITLE_CHARS)
    if len(text) > 3:
        text = [*text[:2], textwrap.shorten(" ".join(text[2:]), _TITLE_CHARS, placeholder=" ... (see quality.json)")]
    return "\n".join([title, *text]), True


#: Characters per line of the figure's title (15-inch figure, default font).
_TITLE_CHARS = 150
#: Largest side of the image drawn under the residual map (every n-th pixel beyond it).
_FIGURE_MAX_PX = 1200


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
    return save_figure(fig, path, dpi=110)


def _unverified_pixels(values: np.ndarray, edges: tuple[float, float, float, float], shape: tuple[int, ...],
                       step: int = 1) -> np.ndarray:
    """Fixed pixels whose residual-map cell is NaN or that no cell covers.

    ``edges`` = (top, bottom, left, right) of the map's cells in fixed pixel coordinates (pixel
    centres at integers, the first cell starting at ``top``/``left``); ``shape`` is that of the
    image shown, every ``step``-th fixed pixel.

    Examples
    --------
    >>> _unverified_pixels(np.array([[1.0, np.nan]]), (-0.5, 1.5, -0.5, 3.5), (2, 4)).astype(int).tolist()
    [[0, 0, 1, 1], [0, 0, 1, 1]]
    """
    y0, y1, x0, x1 = edges
    yy, xx = (a * step for a in np.indices(shape))
    row = np.floor((yy - y0) / ((y1 - y0) / values.shape[0])).astype(int)
    col = np.floor((xx - x0) / ((x1 - x0) / values.shape[1])).astype(int)
    inside = (row >= 0) & (row < values.shape[0]) & (col >= 0) & (col < values.shape[1])
    out = ~inside
    out[inside] = np.isnan(values[row[inside], col[inside]])
    return out


def residual_figure(
    reg: Registration,
    fixed: Any,
    path: str | Path,
    *,
    points_yx: np.ndarray | None = None,
    errors_px: np.ndarray | None = None,
    vmax_px: float | None = None,
) -> Path:
    """Write a PNG of where to trust the warp: the residual map over the fixed image.

    The map (``quality["residual_map_px"]``: expected error per region from the held-out
    automatic points) is drawn over the fixed image; cells without evidence (NaN: far from every
    point, or within half a block of a border) are hatched "not verified". The automatic points
    are drawn (kept green, rejected red; all red where the quality gate rejected them), the given
    points (``landmarks+tps``, or ``auto`` with landmarks) coloured by their leave-one-out error,
    and, when passed, reference points (e.g. hand-picked) coloured by their measured error on the
    same scale.

    Parameters
    ----------
    reg : Registration
        A registration with a residual map (``method="auto"`` or ``"landmarks+tps"``).
    fixed : ndarray or xr.DataArray
        The fixed image.
    path : str or Path
        Output PNG.
    points_yx : ndarray, shape (n, 2), optional
        Reference points in fixed pixels (y, x).
    errors_px : ndarray, shape (n,), optional
        Their errors in fixed pixels (e.g. :func:`metallo.correlate.tre`).
    vmax_px : float, optional
        Top of the colour scale (default: the larger of 4 px and the map's 95th percentile).

    Returns
    -------
    Path

    Raises
    ------
    RegistrationError
        When the registration has no residual map.

    Examples
    --------
    >>> residual_figure(reg, bse, "residual_map.png")  # doctest: +SKIP
    PosixPath('residual_map.png')
    """
    rmap = reg.quality.get("residual_map_px")
    if rmap is None:
        raise RegistrationError(f"{path}: registration {reg.method!r} has no residual map (method 'auto' or 'landmarks+tps' makes one)")
    values = np.asarray(rmap["values"], dtype=float)
    grid = Grid.from_dict(rmap["grid"])
    fg = reg.fixed_grid
    # Cell edges in fixed pixels (the map's grid is in µm on the fixed field).
    y0 = (grid.origin_yx[0] - 0.5 * grid.spacing_yx[0] - fg.origin_yx[0]) / fg.spacing_yx[0]
    x0 = (grid.origin_yx[1] - 0.5 * grid.spacing_yx[1] - fg.origin_yx[1]) / fg.spacing_yx[1]
    y1 = y0 + values.shape[0] * grid.spacing_yx[0] / fg.spacing_yx[0]
    x1 = x0 + values.shape[1] * grid.spacing_yx[1] / fg.spacing_yx[1]
    finite = values[np.isfinite(values)]
    top = vmax_px if vmax_px is not None else max(4.0, float(np.percentile(finite, 95)) if finite.size else 4.0)
    # Drawn from every step-th pixel (a figure shows ~1000 px; a mosaic would need GBs otherwise),
    # in fixed pixel coordinates.
    h, w = fg.shape
    step = max(1, int(np.ceil(max(h, w) / _FIGURE_MAX_PX)))
    grey = _grey(np.asarray(getattr(fixed, "values", fixed))[::step, ::step]).astype(np.float32)
    image_extent = (-0.5, w - 0.5, h - 0.5, -0.5)
    fig = agg_figure((9, 7))
    ax = fig.subplots()
    ax.imshow(grey, cmap="gray", interpolation="nearest", extent=image_extent)
    extent = (x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5)
    im = ax.imshow(np.ma.masked_invalid(values), extent=extent, cmap="viridis", alpha=0.5, vmin=0, vmax=top,
                   interpolation="nearest")
    # "Not verified" cells as diagonal stripes drawn on the shown pixels (exactly the cells).
    unverified = _unverified_pixels(values, (y0, y1, x0, x1), grey.shape[:2], step)
    yy, xx = np.indices(grey.shape[:2])
    stripes = np.zeros((*grey.shape[:2], 4), np.float32)
    period = max(1, 4 // step)
    stripes[unverified & (((yy + xx) // period) % 3 == 0)] = (0.15, 0.15, 0.15, 0.75)
    ax.imshow(stripes, interpolation="nearest", extent=image_extent)
    cp = reg.control_points
    if cp is not None and len(cp.fixed_xy):
        px = fg.to_index_xy(cp.fixed_xy)
        if gate_rejected(reg.quality):
            # None of them is part of the result: drawn as "kept" they would claim support they do not give.
            ax.scatter(px[:, 0], px[:, 1], s=5, c="red", label=f"automatic points, all rejected by the quality gate ({len(px)})")
        else:
            ax.scatter(px[cp.inlier, 0], px[cp.inlier, 1], s=5, c="lime", label=f"automatic points kept ({int(cp.inlier.sum())})")
            if (~cp.inlier).any():
                ax.scatter(px[~cp.inlier, 0], px[~cp.inlier, 1], s=5, c="red", label=f"rejected ({int((~cp.inlier).sum())})")
    given = reg.quality.get("landmark_points")
    if given is not None and len(given["loo_px"]):
        # Given points (landmarks+tps, or auto with landmarks), coloured by their leave-one-out error.
        gx = fg.to_index_xy(np.asarray(given["fixed_xy_um"], float))
        ax.scatter(gx[:, 0], gx[:, 1], s=45, c=np.asarray(given["loo_px"], float), cmap="viridis", vmin=0, vmax=top,
                   marker="o", edgecolors="white", linewidths=0.8, label="given points (colour: leave-one-out error)")
    if points_yx is not None:
        pts = np.asarray(points_yx, float)
        colour = np.asarray(errors_px, float) if errors_px is not None else "white"
        ax.scatter(pts[:, 1], pts[:, 0], s=45, c=colour, cmap="viridis", vmin=0, vmax=top, marker="X",
                   edgecolors="black", linewidths=0.6, label="reference points" + (" (colour: error)" if errors_px is not None else ""))
    fig.colorbar(im, ax=ax, fraction=0.035, label="expected error (fixed px); hatched: not verified")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=7, framealpha=0.8)
    ax.set_axis_off()
    title, failed = _title(reg)
    share = float(np.isnan(values).mean()) if values.size else 1.0
    said = (f"median {np.median(finite):.1f} px where verified; {share:.0%} of the field not verified" if finite.size else
            "no part of the field verified" + (" (the gate rejected the automatic points)" if gate_rejected(reg.quality) else ""))
    ax.set_title(f"{title}\nresidual map: {said}", fontsize=9, color="firebrick" if failed else "black")
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
