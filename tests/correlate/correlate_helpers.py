"""Synthetic correlative pairs with a known mapping for the registration tests.

A Voronoi "microstructure" is defined on a continuous specimen plane (µm). The MOVING image is
an EBSD-IQ-like map of it (bright grains, dark boundaries); the FIXED image is a LOM-like
rendering with another contrast (non-monotonic grain tones), another pixel size and noise,
seen through a known affine + smooth sinusoidal deformation. (A uniquely named module: every test
folder has a ``conftest``, so ``from conftest import ...`` would pick whichever was imported first.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from metallo._xarray import image_dataarray


@dataclass
class SynthPair:
    fixed: xr.DataArray
    moving: xr.DataArray
    fixed_to_moving_xy: Callable[[np.ndarray], np.ndarray]  # truth, (x, y) µm
    moving_to_fixed_xy: Callable[[np.ndarray], np.ndarray]


def _structure(seed: int, size_um: float, grain_um: float):
    rng = np.random.default_rng(seed)
    n = int((size_um / grain_um) ** 2 * 1.5)
    seeds = rng.uniform(-0.25 * size_um, 1.25 * size_um, (n, 2))
    tree = cKDTree(seeds)
    tone_iq = rng.uniform(0.45, 1.0, n)
    tone_lom = np.sin(7.0 * tone_iq) * 0.35 + 0.5  # a different, non-monotonic contrast

    def render(xy: np.ndarray, tones: np.ndarray, boundary_um: float) -> np.ndarray:
        d, i = tree.query(xy, k=2)
        value = tones[i[:, 0]].copy()
        value[(d[:, 1] - d[:, 0]) < boundary_um] *= 0.25
        return value

    return render, tone_iq, tone_lom


def make_pair(
    seed: int = 0,
    *,
    moving_shape: tuple[int, int] = (160, 160),
    moving_px: float = 0.5,
    fixed_shape: tuple[int, int] = (260, 260),
    fixed_px: float = 0.35,
    angle_deg: float = 4.0,
    scale: float = 1.05,
    shift_um: tuple[float, float] = (3.0, -2.0),
    amplitude_um: float = 1.2,
    noise: float = 0.05,
    grain_um: float = 6.0,
) -> SynthPair:
    rng = np.random.default_rng(seed + 1000)
    size = max(moving_shape) * moving_px
    render, tone_iq, tone_lom = _structure(seed, size, grain_um)
    a = np.deg2rad(angle_deg)
    matrix = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.array([[1.0, 0.03], [0.0, 0.97]])
    fixed_extent = np.array(fixed_shape[::-1]) * fixed_px
    moving_centre = np.array(moving_shape[::-1]) * moving_px / 2
    offset = moving_centre - matrix @ (fixed_extent / 2) + np.array(shift_um)
    wavelength = 0.6 * fixed_extent

    def fixed_to_moving_xy(p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        d = amplitude_um * np.stack(
            [np.sin(2 * np.pi * p[:, 1] / wavelength[1] + 0.3), np.cos(2 * np.pi * p[:, 0] / wavelength[0] - 0.5)], axis=1
        )
        return (p + d) @ matrix.T + offset

    def moving_to_fixed_xy(q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, dtype=float)
        inv = np.linalg.inv(matrix)
        p = (q - offset) @ inv.T
        target = p.copy()
        for _ in range(100):
            p_new = target - amplitude_um * np.stack(
                [np.sin(2 * np.pi * p[:, 1] / wavelength[1] + 0.3), np.cos(2 * np.pi * p[:, 0] / wavelength[0] - 0.5)], axis=1
            )
            if np.max(np.abs(p_new - p)) < 1e-12:
                break
            p = p_new
        return p

    gy, gx = np.mgrid[: moving_shape[0], : moving_shape[1]] * moving_px
    iq = render(np.stack([gx.ravel(), gy.ravel()], 1), tone_iq, 0.6).reshape(moving_shape)
    iq = ndi.gaussian_filter(iq, 0.7) + rng.normal(0, noise, moving_shape)

    # Supersample the LOM 2x2 per pixel so that it is band-limited like a real micrograph.
    sub = (np.arange(2) + 0.5) / 2 - 0.5
    fy, fx = np.mgrid[: fixed_shape[0], : fixed_shape[1]]
    acc = np.zeros(fixed_shape)
    for dy in sub:
        for dx in sub:
            pts = np.stack([(fx.ravel() + dx) * fixed_px, (fy.ravel() + dy) * fixed_px], 1)
            acc += render(fixed_to_moving_xy(pts), tone_lom, 0.9).reshape(fixed_shape)
    lom = ndi.gaussian_filter(acc / 4, 0.8) + rng.normal(0, noise, fixed_shape)
    return SynthPair(
        fixed=image_dataarray(lom.astype(np.float32), pixel_size_um=fixed_px, attrs={"modality": "LOM"}),
        moving=image_dataarray(iq.astype(np.float32), pixel_size_um=moving_px, attrs={"modality": "EBSD-IQ"}),
        fixed_to_moving_xy=fixed_to_moving_xy,
        moving_to_fixed_xy=moving_to_fixed_xy,
    )


def tre_px(reg, pair: SynthPair, *, step: int = 4) -> np.ndarray:
    """Error (fixed pixels) of moving-grid points mapped by the registration vs the truth."""
    g = pair.moving
    ys, xs = np.meshgrid(g.y.values[::step], g.x.values[::step], indexing="ij")
    pts_yx = np.stack([ys.ravel(), xs.ravel()], 1)
    truth = pair.moving_to_fixed_xy(pts_yx[:, ::-1])[:, ::-1]
    fixed_ps = float(pair.fixed.attrs["pixel_size_um"])
    # Only points that land inside the fixed field can be checked.
    ext = np.array([pair.fixed.sizes["y"], pair.fixed.sizes["x"]]) * fixed_ps
    inside = np.all((truth > 2 * fixed_ps) & (truth < ext - 2 * fixed_ps), axis=1)
    got = reg.transform_points(pts_yx[inside])
    return np.linalg.norm(got - truth[inside], axis=1) / fixed_ps



def make_shadowed_map_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A BSE-like image and an EBSD-like map of one section whose lower sixth is shadowed in the map.

    Like coni16_459 (EBSD-Correction): the BSE section is bright and nearly featureless (a few
    pores) on a noisy mount; the map shows grains, is 1.15x wider (``x_m = 1.15 x_f - 34``,
    ``y_m = y_f + 4``), holds one fill value (58 of 255) around the section, and its lower sixth
    lies within a few grey levels of that fill. The section is turned 2 degrees and has one corner
    cut off, so that no edge runs along the pixel rows and the outline has no symmetry.

    Returns ``(fixed, moving, fixed_yx, moving_yx)``: the two images and seven homologous points
    (pixels, y x) from the known mapping.
    """
    rng = np.random.default_rng(seed)
    h, w = 240, 320
    yy, xx = np.mgrid[:h, :w].astype(float)
    top, bottom, left, right = 12.0, 228.0, 30.0, 290.0
    pores = np.c_[rng.uniform(top + 15, bottom - 15, 12), rng.uniform(left + 15, right - 15, 12)]

    def pores_at(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.min(np.hypot(y[..., None] - pores[:, 0], x[..., None] - pores[:, 1]), axis=-1) < 3.0

    def inside(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        c, s = np.cos(0.035), np.sin(0.035)
        v, u = 120 + (y - 120) * c - (x - 160) * s, 160 + (y - 120) * s + (x - 160) * c
        return (v > top) & (v < bottom) & (u > left) & (u < right) & (v + u > top + left + 70)

    inside_f = inside(yy, xx)
    fixed = np.where(inside_f, 0.77, 0.2) + rng.normal(0, 0.03, (h, w))
    mount = 0.2 + 0.1 * ndi.gaussian_filter(rng.random((h, w)), 4)
    fixed = ndi.gaussian_filter(np.where(inside_f, fixed, mount), 0.7)
    fixed[pores_at(yy, xx) & inside_f] = 0.25
    ax, bx, by = 1.15, 160 - 1.15 * 160 - 10, 4.0
    fy, fx = yy - by, (xx - bx) / ax  # where each map pixel lies in the fixed image
    seeds, tones = rng.uniform(0, 400, (900, 2)), rng.uniform(0.45, 1.0, 900)
    d, i = cKDTree(seeds).query(np.c_[fy.ravel(), fx.ravel()], k=2)
    grains = tones[i[:, 0]].reshape(h, w)
    grains[((d[:, 1] - d[:, 0]) < 1.0).reshape(h, w)] *= 0.3
    iq = np.where(fy > bottom - (bottom - top) / 6, 62 + rng.normal(0, 3, (h, w)), 58 + 190 * grains)
    iq[pores_at(fy, fx)] = 40
    moving = np.where(inside(fy, fx), np.clip(iq, 0, 255), 58.0).round().astype(np.uint8)
    fixed_yx = np.array([[52.0, 70.0], [17.0, 285.0], [223.0, 35.0], [223.0, 285.0], [223.0, 160.0], [120.0, 35.0], [120.0, 285.0]])
    moving_yx = np.c_[fixed_yx[:, 0] + by, fixed_yx[:, 1] * ax + bx]
    return fixed, moving, fixed_yx, moving_yx
