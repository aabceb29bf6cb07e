"""Figures and the TRE table of docs/correlate.md, made from the real Slice381 EBSD/BSE pair.

    python docs/scripts/correlate_figures.py [--data ../shared/data]

Writes docs/figures/correlate_overlay.png (checkerboards: physical placement, affine start,
automatic registration), docs/figures/correlate_residual_map.png (expected error per region
from the held-out automatic points, with the automatic points and the hand-picked points
coloured by their error), docs/figures/correlate_ebsd_boundaries.png (a synthetic EBSD map's
boundary image next to its LOM, registered by ``register(lom, ebsd_dataset)``) and prints the TRE
table in Markdown.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from metallo.correlate import (
    Registration,
    checkerboard,
    load_point_pair,
    point_baselines,
    register,
    residual_figure,
    tre,
    tre_stats,
)
from metallo.correlate._transform import AffineStep

ROOT = Path(__file__).resolve().parents[2]


def grey(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    finite = np.isfinite(a)
    lo, hi = np.percentile(a[finite], [1, 99])
    return np.clip((np.where(finite, a, lo) - lo) / max(hi - lo, 1e-12), 0, 1)


def boundary_figure(out: Path) -> None:
    """The EBSD boundary image of metallo.synth's specimen 0, its LOM, and the boundaries warped onto the LOM."""
    from metallo.correlate import ebsd_structure_image
    from metallo.synth import make_specimen

    spec = make_specimen(0)
    boundaries = ebsd_structure_image(spec.ebsd, boundary_deg=5.0)
    reg = register(spec.lom, spec.ebsd)
    err = spec.registration_error_px(reg)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    axes[0].imshow(boundaries.values, cmap="gray")
    axes[0].set_title("EBSD map rendered by its boundaries (> 5°)", fontsize=9)
    axes[1].imshow(grey(spec.lom.values), cmap="gray")
    axes[1].set_title("synthetic LOM (fixed)", fontsize=9)
    warped = reg.warp(boundaries, fill_value=1.0).values
    axes[2].imshow(grey(spec.lom.values), cmap="gray")
    axes[2].imshow(np.ma.masked_where(~(warped < 0.75), warped), cmap="autumn", alpha=0.8)
    axes[2].set_title(f"EBSD boundaries on the LOM: error median {np.median(err):.2f} px, "
                      f"p95 {np.percentile(err, 95):.2f} px", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "correlate_ebsd_boundaries.png", dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / ".." / "shared" / "data"))
    args = parser.parse_args()
    d = Path(args.data) / "correlative_ebsd_bse_coni"
    pair = load_point_pair(d / "Slice381_bse.tif", d / "Slice381_ebsd.tif", d / "Slice381_ctr_pts_bse.txt",
                           d / "Slice381_ctr_pts_ebsd.txt", name="Slice381")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = register(pair.fixed, pair.moving)
        exact = register(pair.fixed, pair.moving, method="landmarks+tps", landmarks=(pair.moving_yx, pair.fixed_yx))
    start_step = reg.steps[-1] if isinstance(reg.steps[-1], AffineStep) else None
    identity = Registration([AffineStep(np.eye(2), np.zeros(2))], fixed_grid=reg.fixed_grid, moving_grid=reg.moving_grid)
    start = Registration([start_step], fixed_grid=reg.fixed_grid, moving_grid=reg.moving_grid) if start_step else identity

    fixed = grey(pair.fixed)
    out = ROOT / "docs" / "figures"
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, (title, r) in zip(axes, (("no registration", identity), ("affine (TPS's affine part)", start), ("metallo auto", reg)), strict=True):
        warped = grey(r.warp(pair.moving.astype(np.float32)).values)
        err = tre_stats(tre(r, pair.moving_yx, pair.fixed_yx))
        ax.imshow(checkerboard(fixed, warped, squares=10), cmap="gray")
        ax.set_title(f"{title}: TRE median {err['median']:.1f} px, p95 {err['p95']:.1f} px", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "correlate_overlay.png", dpi=90)
    plt.close(fig)

    # The figure `metallo register` writes as residual_map.png, with the hand-picked points added.
    residual_figure(reg, pair.fixed, out / "correlate_residual_map.png", points_yx=pair.fixed_yx,
                    errors_px=tre(reg, pair.moving_yx, pair.fixed_yx), vmax_px=15.0)

    boundary_figure(out)

    base = point_baselines(pair.moving_yx, pair.fixed_yx)
    rows = [
        ("no registration", base["none"]),
        ("best affine through the 48 points (in-sample)", base["affine_in_sample"]),
        ("exact TPS through the points, leave-one-out", exact.quality["landmark_loo_px"]),
        ("metallo auto (no points given)", tre_stats(tre(reg, pair.moving_yx, pair.fixed_yx))),
    ]
    print("| Slice381, 48 points | median px | p95 px | max px |")
    print("|---|---|---|---|")
    for name, s in rows:
        print(f"| {name} | {s['median']:.2f} | {s['p95']:.2f} | {s['max']:.2f} |")


if __name__ == "__main__":
    main()
