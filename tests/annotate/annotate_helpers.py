"""Helpers shared by the annotate tests (a uniquely named module: every test folder has a
``conftest``, so ``from conftest import ...`` would pick whichever was imported first)."""

from __future__ import annotations

import numpy as np
import xarray as xr


class AffineRegistration:
    """A known registration: fixed (y, x) µm = scale * moving µm + shift, for tests only."""

    def __init__(self, fixed: xr.DataArray, scale: float, shift_um: tuple[float, float]) -> None:
        self.fixed = fixed
        self.scale = scale
        self.shift = np.asarray(shift_um, dtype=np.float64)

    def warp(self, image, *, interpolation="linear", fill_value=0):
        from scipy import ndimage as ndi

        assert interpolation == "nearest"
        ps_f = float(self.fixed.attrs["pixel_size_um"])
        ps_m = float(image.attrs["pixel_size_um"])
        yy, xx = np.indices(self.fixed.shape[:2], dtype=np.float64)
        my = ((yy * ps_f) - self.shift[0]) / self.scale / ps_m
        mx = ((xx * ps_f) - self.shift[1]) / self.scale / ps_m
        out = ndi.map_coordinates(np.asarray(image.values), [my, mx], order=0, mode="constant", cval=fill_value)
        return xr.DataArray(out, dims=("y", "x"), coords={"y": self.fixed.y, "x": self.fixed.x})


def iou(labels: np.ndarray, truth: np.ndarray, cls: int, valid: np.ndarray) -> float:
    """Intersection over union of class ``cls`` over the ``valid`` pixels."""
    a, b = (labels == cls) & valid, (truth == cls) & valid
    return float((a & b).sum() / (a | b).sum())
