"""Review of an annotation: fractions on both grids and the side-by-side figure of Durmaz et al. (2021).

References
----------
.. [1] A. R. Durmaz, M. Müller, B. Lei, A. Thomas, D. Britz, E. A. Holm, C. Eberl, F. Mücklich,
   P. Gumbsch, "A deep learning approach for complex microstructure inference",
   Nature Communications 12, 6272 (2021). doi:10.1038/s41467-021-26565-5
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from metallo._figure import agg_figure
from metallo.annotate._labels import as_annotation
from metallo.errors import ConfigError

__all__ = ["fraction_table", "review_figure"]

#: Class colours (RGB 0-1): ferrite-like first class blue, second red, then a qualitative set.
CLASS_COLORS = np.array(
    [[0.12, 0.47, 0.71], [0.89, 0.10, 0.11], [0.20, 0.63, 0.17], [1.00, 0.50, 0.00],
     [0.42, 0.24, 0.60], [0.65, 0.34, 0.16], [0.97, 0.51, 0.75], [0.50, 0.50, 0.50]]
)


def _classes(labels: Any, classes: list[str] | None) -> list[str]:
    if classes is not None:
        return list(classes)
    raw = getattr(labels, "attrs", {}).get("classes")
    if raw is None:
        raise ConfigError("give classes= or labels with attrs['classes'] (from metallo.annotate.from_ebsd)")
    return list(json.loads(raw) if isinstance(raw, str) else raw)


def _ignore(labels: Any, ignore_index: int | None) -> int:
    if ignore_index is not None:
        return int(ignore_index)
    return int(getattr(labels, "attrs", {}).get("ignore_index", 255))


def fraction_table(
    ebsd_labels: xr.DataArray,
    micrograph_labels: xr.DataArray | None = None,
    *,
    classes: list[str] | None = None,
    ignore_index: int | None = None,
) -> pd.DataFrame:
    """Per-class area fractions on the EBSD grid and on the micrograph grid, side by side.

    Parameters
    ----------
    ebsd_labels : xr.DataArray
        Label map on the EBSD grid (:func:`~metallo.annotate.from_ebsd`).
    micrograph_labels : xr.DataArray, optional
        The same annotation warped onto a micrograph (:func:`~metallo.annotate.to_micrograph`).
    classes : list of str, optional
        Default ``ebsd_labels.attrs["classes"]``.
    ignore_index : int, optional
        Default ``ebsd_labels.attrs["ignore_index"]``; those pixels are left out.

    Returns
    -------
    DataFrame
        Indexed by class: ``ebsd_fraction``, ``ebsd_area_um2``, and with a micrograph
        ``micrograph_fraction``, ``micrograph_area_um2``, ``difference``; the row
        ``ignore`` gives the share of ignored pixels of each grid.

    Examples
    --------
    >>> lab = xr.DataArray(np.array([[0, 1], [1, 255]], np.uint8), dims=("y", "x"),
    ...                    attrs={"classes": '["a", "b"]', "pixel_size_um": 1.0})
    >>> fraction_table(lab)["ebsd_fraction"].round(3).tolist()
    [0.333, 0.667, 0.25]
    """
    from metallo.quantify import phase_fractions

    ebsd_labels = as_annotation(ebsd_labels)
    if micrograph_labels is not None:
        micrograph_labels = as_annotation(micrograph_labels)
    names = _classes(ebsd_labels, classes)
    ignore = _ignore(ebsd_labels, ignore_index)
    columns: dict[str, Any] = {}
    for prefix, labels in (("ebsd", ebsd_labels), ("micrograph", micrograph_labels)):
        if labels is None:
            continue
        values = np.asarray(getattr(labels, "values", labels))
        table = phase_fractions(values, classes=names, ignore_index=ignore)
        ignored = float(np.mean(values == ignore))
        pixel = float(getattr(labels, "attrs", {}).get("pixel_size_um", np.nan))
        counts = np.r_[table["n_pixels"].to_numpy(np.float64), np.sum(values == ignore)]
        columns[f"{prefix}_fraction"] = np.r_[table["fraction"].to_numpy(np.float64), ignored]
        columns[f"{prefix}_area_um2"] = counts * pixel * pixel
    frame = pd.DataFrame(columns, index=pd.Index([*names, "ignore"], name="class"))
    if micrograph_labels is not None:
        frame["difference"] = frame["micrograph_fraction"] - frame["ebsd_fraction"]
        frame.loc["ignore", "difference"] = np.nan
    return frame


def _grey(image: Any) -> np.ndarray:
    data = np.asarray(getattr(image, "values", image), dtype=np.float64)
    if data.ndim == 3:
        data = data[..., :3].mean(axis=2)
    lo, hi = np.nanpercentile(data, [1, 99]) if np.isfinite(data).any() else (0.0, 1.0)
    return np.clip((data - lo) / max(hi - lo, 1e-12), 0, 1)


def _overlay(grey: np.ndarray, labels: np.ndarray, ignore: int, alpha: float) -> np.ndarray:
    rgb = np.repeat(grey[..., None], 3, axis=2)
    colors = CLASS_COLORS[np.clip(labels.astype(np.int64), 0, None) % len(CLASS_COLORS)]
    has_class = labels != ignore
    rgb[has_class] = (1 - alpha) * rgb[has_class] + alpha * colors[has_class]
    return rgb


def _grain_colors(ids: np.ndarray) -> np.ndarray:
    """Unique grain colours: a fixed pseudo-random colour per grain id, black where no grain."""
    ids = np.asarray(ids).astype(np.int64)
    palette = np.random.default_rng(7).uniform(0.15, 1.0, (int(max(ids.max(), 0)) + 1, 3))
    out = palette[np.maximum(ids, 0)]
    out[ids < 0] = 0.0
    return out


def review_figure(
    micrograph: xr.DataArray,
    labels: xr.DataArray,
    *,
    boundaries: xr.DataArray | np.ndarray | None = None,
    grain_ids: xr.DataArray | np.ndarray | None = None,
    ebsd_labels: xr.DataArray | None = None,
    alpha: float = 0.45,
    path: str | Path | None = None,
) -> Any:
    """The review figure: micrograph | boundary map (or grain colours) | mask overlay + fractions.

    Parameters
    ----------
    micrograph : xr.DataArray
        The image the mask was drawn on (LOM, SEM, or an EBSD IQ map for the EBSD grid).
    labels : xr.DataArray
        The mask on the micrograph grid.
    boundaries : array (y, x), optional
        Boundary map on the micrograph grid (warped with the same registration), 0 interior,
        1 low-angle, 2 high-angle, 3 special, as from :func:`metallo.ebsd.boundaries`.
    grain_ids : array (y, x), optional
        Grain ids on the micrograph grid, shown as unique grain colours when no boundary map
        is given.
    ebsd_labels : xr.DataArray, optional
        The mask on the EBSD grid; adds its fractions to the table.
    alpha : float
        Opacity of the class colours.
    path : str or Path, optional
        Save the figure as PNG there (and the fraction table as CSV beside it).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from metallo.annotate import from_ebsd
    >>> from metallo.ebsd import map_image
    >>> from metallo.synth import make_specimen
    >>> ebsd = make_specimen(0, ebsd_shape=(40, 40), micrographs=False).ebsd
    >>> fig = review_figure(map_image(ebsd, "iq"), from_ebsd(ebsd, rules="lath_bainite"), path="review.png")
    >>> sorted(p.name for p in Path(".").glob("review.*"))      # the figure and its fraction table
    ['review.csv', 'review.png']
    """
    from matplotlib.patches import Patch

    labels = as_annotation(labels)
    names = _classes(labels, None)
    ignore = _ignore(labels, None)
    grey = _grey(micrograph)
    values = np.asarray(labels.values)
    if values.shape != grey.shape:
        raise ConfigError(f"labels shape {values.shape} != micrograph shape {grey.shape}; warp them first (to_micrograph)")
    fig = agg_figure((15, 6.8), layout="constrained")
    grid = fig.add_gridspec(2, 3, height_ratios=[5, 1.2])
    axes = [fig.add_subplot(grid[0, i]) for i in range(3)]
    axes[0].imshow(grey, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"micrograph ({micrograph.attrs.get('modality', micrograph.name or '')})")
    if boundaries is not None:
        bnd = np.asarray(getattr(boundaries, "values", boundaries))
        rgb = np.repeat(grey[..., None], 3, axis=2)
        for level, color in ((1, (0.6, 0.6, 0.6)), (2, (0.0, 0.0, 0.0)), (3, (1.0, 0.8, 0.0)), (4, (1.0, 0.45, 0.0))):
            rgb[bnd == level] = color
        axes[1].imshow(rgb)
        # Every colour drawn is named: yellow Sigma3 and orange hcp twins only where present.
        special = [text for level, text in ((3, "yellow Σ3"), (4, "orange hcp twin")) if (bnd == level).any()]
        axes[1].set_title("EBSD boundaries (grey 2-15°, black >15°" + "".join(f", {t}" for t in special) + ")")
    elif grain_ids is not None:
        axes[1].imshow(_grain_colors(np.asarray(getattr(grain_ids, "values", grain_ids))))
        axes[1].set_title("unique grain colours")
    else:
        axes[1].imshow(grey, cmap="gray", vmin=0, vmax=1)
        axes[1].set_title("(no boundary map given)")
    axes[2].imshow(_overlay(grey, values, ignore, alpha))
    axes[2].set_title("annotation")
    axes[2].legend(
        handles=[Patch(color=CLASS_COLORS[i % len(CLASS_COLORS)], label=n) for i, n in enumerate(names)]
        + [Patch(facecolor=(0.5, 0.5, 0.5), alpha=0.3, label=f"ignore ({ignore})")],
        loc="lower right", fontsize=8, framealpha=0.8,
    )
    for ax in axes:
        ax.set_axis_off()
    table = fraction_table(ebsd_labels, labels) if ebsd_labels is not None else fraction_table(labels).rename(
        columns=lambda c: c.replace("ebsd", "micrograph"))
    shown = table[[c for c in table.columns if c.endswith("fraction") or c == "difference"]]
    ax_table = fig.add_subplot(grid[1, :])
    ax_table.set_axis_off()
    ax_table.table(
        cellText=[[f"{v:.3f}" if np.isfinite(v) else "" for v in row] for row in shown.to_numpy()],
        rowLabels=list(shown.index), colLabels=list(shown.columns), loc="center", cellLoc="center",
    )
    if path is not None:
        from metallo._atomic import atomic_write_text
        from metallo._figure import save_figure

        path = save_figure(fig, path, dpi=110)
        atomic_write_text(path.with_suffix(".csv"), table.to_csv())
    return fig
