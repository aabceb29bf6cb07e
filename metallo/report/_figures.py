"""Figures of the QC report, rendered with matplotlib (an explicit ``Figure``, Agg) to PNG data URIs."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from metallo._figure import agg_figure

# A colour-blind-safe palette (Okabe-Ito) for class overlays.
PALETTE = np.array(
    [
        [0.902, 0.624, 0.000],
        [0.337, 0.706, 0.914],
        [0.000, 0.620, 0.451],
        [0.941, 0.894, 0.259],
        [0.000, 0.447, 0.698],
        [0.835, 0.369, 0.000],
        [0.800, 0.475, 0.655],
    ]
)


def _figure(width: float = 6.0, height: float = 4.0) -> Any:
    return agg_figure((width, height), dpi=100, layout="constrained")


def png_data_uri(fig: Any) -> str:
    """A matplotlib figure as a ``data:image/png;base64`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _grey(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3:
        image = image[..., :3].mean(axis=2)
    lo, hi = np.nanpercentile(image, [0.5, 99.5])
    return np.clip((image - lo) / (hi - lo if hi > lo else 1.0), 0, 1)


def overlay_figure(image: np.ndarray, labels: np.ndarray, classes: Sequence[str], *, ignore_index: int = 255,
                   extent_um: tuple[float, float] | None = None) -> Any:
    """Micrograph beside the micrograph with the class overlay (alpha 0.45)."""
    grey = _grey(image)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    colours = PALETTE[np.arange(len(classes)) % len(PALETTE)]
    valid = (labels != ignore_index) & (labels < len(classes))
    tinted = rgb.copy()
    tinted[valid] = 0.55 * rgb[valid] + 0.45 * colours[labels[valid].astype(int)]
    fig = _figure(10, 4.6)
    axes = fig.subplots(1, 2)
    extent = None if extent_um is None else (0, extent_um[1], extent_um[0], 0)
    for ax, img, title in zip(axes, (rgb, tinted), ("micrograph", "segmentation overlay"), strict=True):
        ax.imshow(img, extent=extent, interpolation="nearest")
        ax.set_title(title)
        ax.set_xlabel("x (µm)" if extent else "x (px)")
    axes[0].set_ylabel("y (µm)" if extent else "y (px)")
    from matplotlib.patches import Patch

    axes[1].legend(handles=[Patch(color=colours[i], label=c) for i, c in enumerate(classes)], loc="lower right", fontsize=8)
    return fig


def fractions_figure(table: Any, limits: Mapping[str, Sequence[float]], *,
                     title: str = "phase fractions, 95% CI over fields") -> Any:
    """Bar chart of phase fractions with 95% CI error bars and the QC limits as bands."""
    fig = _figure(6, 3.6)
    ax = fig.subplots()
    classes = list(table["class"])
    x = np.arange(len(classes))
    mean = table["mean"].to_numpy() * 100
    err = np.vstack([mean - table["ci_low"].to_numpy() * 100, table["ci_high"].to_numpy() * 100 - mean])
    ax.bar(x, mean, color=PALETTE[x % len(PALETTE)], yerr=err, capsize=6)
    for i, cls in enumerate(classes):
        if cls in limits:
            lo, hi = limits[cls]
            ax.fill_between([i - 0.45, i + 0.45], lo * 100, hi * 100, color="k", alpha=0.12, label="limits" if i == 0 else None)
    ax.set_xticks(x, classes)
    ax.set_ylabel("area fraction (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    return fig


def histogram_figure(values: np.ndarray, *, xlabel: str, title: str, weights: np.ndarray | None = None) -> Any:
    """Histogram (log-spaced bins when the values span a decade) with the ECDF.

    ``weights`` (e.g. the 1/width weights of lath intercepts, which grid points hit in proportion
    to their width) makes both the number-weighted distribution of what was sampled.
    """
    fig = _figure(6, 3.4)
    ax = fig.subplots()
    values = np.asarray(values, dtype=np.float64)
    w = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = np.isfinite(values) & (values > 0) & np.isfinite(w) & (w > 0)
    values, w = values[keep], w[keep]
    if values.size == 0:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    else:
        if weights is not None:
            w = w * values.size / w.sum()  # in units of counts
        log = values.max() / values.min() > 10
        bins = np.geomspace(values.min(), values.max(), 30) if log else 30
        if log:
            ax.set_xscale("log")
        ax.hist(values, bins=bins, weights=w, color=PALETTE[1], edgecolor="white")
        ax2 = ax.twinx()
        order = np.argsort(values)
        ax2.plot(values[order], np.cumsum(w[order]) / w.sum(), color="k", lw=1)
        ax2.set_ylabel("ECDF")
        ax2.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count" if weights is None else "count (number-weighted)")
    ax.set_title(title)
    return fig


def scalar_overlay_figure(image: np.ndarray | None, values: np.ndarray, *, title: str, label: str,
                          extent_um: tuple[float, float] | None = None, nan_label: str | None = None) -> Any:
    """A scalar map (uncertainty, residual) in colour, over the grey micrograph when one is given.

    ``nan_label`` (e.g. "not verified"): NaN cells are drawn light grey and named in a legend,
    so that "no evidence" does not read as a blank (or good) region.
    """
    import matplotlib

    fig = _figure(6.4, 4.8)
    ax = fig.subplots()
    extent = None if extent_um is None else (0, extent_um[1], extent_um[0], 0)
    if image is not None:
        ax.imshow(_grey(image), cmap="gray", extent=extent, interpolation="nearest")
    values = np.asarray(values, dtype=np.float64)
    cmap = matplotlib.colormaps["magma"].copy()
    if nan_label is not None:
        cmap.set_bad((0.82, 0.82, 0.82, 1.0))
    shown = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, alpha=0.6 if image is not None else 1.0,
                      extent=extent, interpolation="nearest")
    if nan_label is not None and np.isnan(values).any():
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=(0.82, 0.82, 0.82), label=f"{nan_label} ({np.isnan(values).mean():.0%})")],
                  loc="lower right", fontsize=7)
    fig.colorbar(shown, ax=ax, label=label)
    ax.set_title(title)
    ax.set_xlabel("x (µm)" if extent else "x (px)")
    ax.set_ylabel("y (µm)" if extent else "y (px)")
    return fig


def rgb_map_figure(rgb: np.ndarray, *, title: str, extent_um: tuple[float, float] | None = None,
                   grain_ids: np.ndarray | None = None, legend: Sequence[tuple[str, Any]] = ()) -> Any:
    """An RGB map (e.g. IPF colours) on µm axes; with ``grain_ids``, their boundaries as thin black lines.

    A small map is enlarged (nearest) to about 600 px before the boundaries are drawn one
    enlarged pixel wide: drawn on the map's own pixels they would blacken a map of a few
    points per grain.
    """
    rgb = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0)
    if grain_ids is not None:
        k = int(min(8, max(1, np.ceil(600 / max(rgb.shape[:2])))))
        ids = np.repeat(np.repeat(np.asarray(grain_ids), k, axis=0), k, axis=1)
        rgb = np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)
        edge = np.zeros(ids.shape, bool)
        edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
        edge[:-1, :] |= ids[:-1, :] != ids[1:, :]
        if k >= 4:  # two enlarged pixels wide, so that the figure's downsampling keeps every line
            edge[:, 1:] |= edge[:, :-1].copy()
            edge[1:, :] |= edge[:-1, :].copy()
        rgb[edge] = 0.0
    fig = _figure(6.0, 5.0)
    ax = fig.subplots()
    extent = None if extent_um is None else (0, extent_um[1], extent_um[0], 0)
    ax.imshow(rgb, extent=extent, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (µm)" if extent else "x (px)")
    ax.set_ylabel("y (µm)" if extent else "y (px)")
    if legend:
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=colour, label=label) for label, colour in legend], loc="lower right", fontsize=8)
    return fig


def misorientation_figure(table: Any, *, title: str, few: Mapping[str, int] | None = None) -> Any:
    """Bars: each phase's share of grain-boundary segments per misorientation bin; line: the
    random (Mackenzie) distribution of its symmetry (a :func:`metallo.ebsd.misorientation_distribution` table).
    ``few``: phase -> its number of grain boundaries, for the phases too few for a statistic
    (said in their panel's title)."""
    phases = list(dict.fromkeys(table["phase"]))[:4]
    fig = _figure(4.0 * len(phases) + 1.0, 3.6)
    axes = np.atleast_1d(fig.subplots(1, len(phases)))
    for ax, phase in zip(axes, phases, strict=True):
        rows = table[table["phase"] == phase]
        lo, hi = rows["bin_low_deg"].to_numpy(), rows["bin_high_deg"].to_numpy()
        ax.bar(lo, 100 * rows["share"].to_numpy(), width=hi - lo, align="edge", color=PALETTE[0], label="grain boundaries")
        ax.step(np.r_[lo, hi[-1:]], 100 * np.r_[rows["random_share"].to_numpy(), rows["random_share"].to_numpy()[-1:]],
                where="post", color="black", lw=1.2, label="random")
        ax.set_xlabel("misorientation angle (deg)")
        n = (few or {}).get(str(phase))
        ax.set_title(str(phase) + (f"\n(no statistic: {n} grain boundaries)" if n is not None else ""), fontsize=9)
    axes[0].set_ylabel("share of segments (%)")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig


def grain_map_figure(ids: np.ndarray, *, title: str, extent_um: tuple[float, float] | None = None) -> Any:
    """A grain-id map with one random colour per grain (ids < 0 white)."""
    ids = np.asarray(ids)
    rng = np.random.default_rng(0)
    n = int(ids.max()) + 1 if ids.size and ids.max() >= 0 else 1
    colours = rng.uniform(0.15, 0.95, size=(n, 3))
    rgb = np.ones((*ids.shape, 3))
    valid = ids >= 0
    rgb[valid] = colours[ids[valid].astype(int)]
    fig = _figure(6.0, 5.0)
    ax = fig.subplots()
    extent = None if extent_um is None else (0, extent_um[1], extent_um[0], 0)
    ax.imshow(rgb, extent=extent, interpolation="nearest")
    ax.set_title(title)
    ax.set_xlabel("x (µm)" if extent else "x (px)")
    ax.set_ylabel("y (µm)" if extent else "y (px)")
    return fig


def parent_figure(parent_id: np.ndarray, pag_boundary: np.ndarray, packet: np.ndarray, *,
                  extent_um: tuple[float, float] | None = None) -> Any:
    """Reconstructed parent (prior austenite) grains (random colours, black = not
    reconstructed) with PAG boundaries, beside the packet map."""
    rng = np.random.default_rng(0)
    n = int(parent_id.max()) + 1 if parent_id.size and parent_id.max() >= 0 else 0
    palette = np.vstack([np.zeros((1, 3)), 0.2 + 0.8 * rng.random((n, 3))])
    rgb = palette[parent_id + 1]
    rgb[pag_boundary > 0] = 1.0
    pk = np.vstack([np.zeros((1, 3)), PALETTE[:4]])[np.clip(packet, -1, 3) + 1]
    fig = _figure(10, 4.6)
    axes = fig.subplots(1, 2)
    extent = None if extent_um is None else (0, extent_um[1], extent_um[0], 0)
    for ax, img, title in zip(axes, (rgb, pk), ("parent grains (white: PAG boundaries)", "packets"), strict=True):
        ax.imshow(img, extent=extent, interpolation="nearest")
        ax.set_title(title)
        ax.set_xlabel("x (µm)" if extent else "x (px)")
    axes[0].set_ylabel("y (µm)" if extent else "y (px)")
    return fig
