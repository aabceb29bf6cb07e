"""The :class:`Registration` result: a chain of transforms on physical (µm) coordinates.

Conventions (the same as ITK, so exported ``.tfm`` files mean the same thing in Fiji/3D Slicer):

* A registration maps points of the FIXED image space to the MOVING image space
  (``T: fixed µm -> moving µm``). Resampling the moving image onto the fixed grid needs exactly
  this direction: every fixed pixel looks up its value at ``T(p)`` in the moving image.
* Internally, points are ``(x, y)`` in µm (ITK order). The public API takes and returns
  ``(y, x)`` in µm, like image coordinates everywhere else in metallo.
* :meth:`Registration.transform_points` maps MOVING µm -> FIXED µm (``T^-1``), which is what a
  user wants for carrying an EBSD point onto the micrograph.

Every step evaluates in numpy (B-spline coefficients with ``scipy.ndimage.map_coordinates`` and
``prefilter=False``, which is the same cubic B-spline sum ITK evaluates), so warping and point
mapping are vectorised and need no SimpleITK; SimpleITK is only used for ``.tfm`` import/export.
"""

from __future__ import annotations

import abc
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from scipy import ndimage as ndi
from scipy import sparse
from scipy.sparse.linalg import lsqr

from metallo import names
from metallo._atomic import json_ready
from metallo._xarray import image_dataarray
from metallo.errors import ConfigError, FormatError, RegistrationError

__all__ = ["AffineStep", "BSplineStep", "DisplacementStep", "Grid", "InverseTPSStep", "Registration", "TPSStep"]

_FIXED_POINT_ITERATIONS = 100


@dataclass(frozen=True)
class Grid:
    """A regular pixel grid on physical coordinates: pixel (i, j) centre at origin + (i, j) * spacing."""

    shape: tuple[int, int]
    spacing_yx: tuple[float, float]
    origin_yx: tuple[float, float] = (0.0, 0.0)
    pixel_size_known: bool = True

    @classmethod
    def of(cls, image: Any) -> Grid:
        """The grid of a DataArray (from its y/x coords) or a plain array (1 unit per pixel)."""
        if isinstance(image, xr.DataArray):
            shape = (int(image.sizes["y"]), int(image.sizes["x"]))
            y = np.asarray(image["y"].values, dtype=float) if "y" in image.coords else np.arange(shape[0], dtype=float)
            x = np.asarray(image["x"].values, dtype=float) if "x" in image.coords else np.arange(shape[1], dtype=float)
            sy = float(y[1] - y[0]) if shape[0] > 1 else float(x[1] - x[0]) if shape[1] > 1 else 1.0
            sx = float(x[1] - x[0]) if shape[1] > 1 else sy
            ps = image.attrs.get("pixel_size_um")
            if ps is not None:
                known = math.isfinite(float(ps))
            else:
                # e.g. a variable of an EBSD Dataset: calibrated coords without the attr.
                known = "x" in image.coords and image["x"].attrs.get("units", "um") != "px"
            return cls(shape, (sy, sx), (float(y[0]), float(x[0])), known)
        array = np.asarray(image)
        return cls((int(array.shape[0]), int(array.shape[1])), (1.0, 1.0), (0.0, 0.0), False)

    def points_xy(self) -> np.ndarray:
        """Physical (x, y) of every pixel centre, shape (ny * nx, 2), row-major."""
        yy = self.origin_yx[0] + self.spacing_yx[0] * np.arange(self.shape[0])
        xx = self.origin_yx[1] + self.spacing_yx[1] * np.arange(self.shape[1])
        gx, gy = np.meshgrid(xx, yy)
        return np.stack([gx.ravel(), gy.ravel()], axis=1)

    def to_index_xy(self, points_xy: np.ndarray) -> np.ndarray:
        """Continuous (col, row) pixel index of physical (x, y) points."""
        return (points_xy - np.array(self.origin_yx[::-1])) / np.array(self.spacing_yx[::-1])

    @property
    def extent_xy(self) -> np.ndarray:
        return np.array([self.shape[1] * self.spacing_yx[1], self.shape[0] * self.spacing_yx[0]])

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "spacing_yx": list(self.spacing_yx),
            "origin_yx": list(self.origin_yx),
            "pixel_size_known": self.pixel_size_known,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Grid:
        return cls(
            tuple(int(v) for v in d["shape"]),  # type: ignore[arg-type]
            tuple(float(v) for v in d["spacing_yx"]),  # type: ignore[arg-type]
            tuple(float(v) for v in d["origin_yx"]),  # type: ignore[arg-type]
            bool(d.get("pixel_size_known", True)),
        )


def _invert_displacement(apply: Any, points_xy: np.ndarray) -> np.ndarray:
    """Solve ``p + d(p) = q`` for p by fixed-point iteration (converges while |grad d| < 1).

    Each point leaves the iteration once its step is below the tolerance: a few points where
    the deformation is steep can take 30 iterations where the rest take 8 (Slice381's reverse
    spline: 0.28 s -> 0.1 s over its 78,000 field nodes).
    """
    p = points_xy.copy()
    tol = 1e-9 * (1.0 + np.max(np.abs(points_xy), initial=0.0))
    active = np.arange(len(p))
    for _ in range(_FIXED_POINT_ITERATIONS):
        if len(active) == 0:
            break
        residual = apply(p[active]) - points_xy[active]
        p[active] -= residual
        active = active[np.abs(residual).max(axis=1) >= tol]
    return p


@dataclass
class AffineStep:
    """``p -> matrix @ p + offset`` on (x, y) µm."""

    matrix: np.ndarray
    offset: np.ndarray
    kind: str = field(default="affine", init=False)

    def apply(self, p: np.ndarray) -> np.ndarray:
        return p @ self.matrix.T + self.offset

    def apply_inverse(self, p: np.ndarray) -> np.ndarray:
        return (p - self.offset) @ np.linalg.inv(self.matrix).T

    def inverse(self, grid: Grid | None = None) -> AffineStep:
        inv = np.linalg.inv(self.matrix)
        return AffineStep(inv, -inv @ self.offset)


class _DisplacementMapping(abc.ABC):
    """``p -> p + d(p)`` for a step that defines ``displacement``; inverted numerically."""

    @abc.abstractmethod
    def displacement(self, p: np.ndarray) -> np.ndarray:
        """Displacement (x, y) in µm at points ``p`` (n, 2)."""

    def apply(self, p: np.ndarray) -> np.ndarray:
        return p + self.displacement(p)

    def apply_inverse(self, p: np.ndarray) -> np.ndarray:
        return _invert_displacement(self._apply_for(len(p)), p)

    def _apply_for(self, n: int) -> Any:
        """``apply`` as it evaluates a query of ``n`` points, for every subset of that query too
        (the inversion iterates on fewer and fewer points)."""
        return self.apply

    def inverse(self, grid: Grid) -> DisplacementStep:
        return DisplacementStep.inverse_of(self, grid)


@dataclass
class BSplineStep(_DisplacementMapping):
    """Cubic B-spline displacement ``p -> p + d(p)``; ``coefficients`` (2, ny, nx) in µm (x, y).

    ``origin_xy`` and ``spacing_xy`` place the coefficient grid; ``d`` is zero outside the
    transform domain, as in ITK's ``BSplineTransform``.
    """

    coefficients: np.ndarray
    origin_xy: np.ndarray
    spacing_xy: np.ndarray
    kind: str = field(default="bspline", init=False)

    def displacement(self, p: np.ndarray) -> np.ndarray:
        u = (p - self.origin_xy) / self.spacing_xy
        coords = [u[:, 1], u[:, 0]]
        d = np.stack(
            [ndi.map_coordinates(c, coords, order=3, prefilter=False, mode="constant") for c in self.coefficients],
            axis=1,
        )
        size = np.array(self.coefficients.shape[:0:-1])
        inside = np.all((u >= 1) & (u < size - 2), axis=1)
        d[~inside] = 0.0
        return d


    def to_sitk(self) -> Any:
        import SimpleITK as sitk

        images = []
        for c in self.coefficients:
            img = sitk.GetImageFromArray(np.ascontiguousarray(c, dtype=np.float64))
            img.SetOrigin(tuple(float(v) for v in self.origin_xy))
            img.SetSpacing(tuple(float(v) for v in self.spacing_xy))
            images.append(img)
        return sitk.BSplineTransform(images, 3)

    @classmethod
    def from_sitk(cls, tx: Any) -> BSplineStep:
        import SimpleITK as sitk

        tx = sitk.BSplineTransform(tx)
        direction = np.asarray(tx.GetTransformDomainDirection())
        if not np.allclose(direction, np.eye(2).ravel()):
            raise FormatError(f"B-spline transform with a rotated grid (direction {direction.tolist()}) is not supported")
        images = tx.GetCoefficientImages()
        coefs = np.stack([sitk.GetArrayFromImage(img).astype(np.float64) for img in images])
        return cls(coefs, np.asarray(images[0].GetOrigin(), float), np.asarray(images[0].GetSpacing(), float))


@dataclass
class DisplacementStep(_DisplacementMapping):
    """Dense displacement ``p -> p + d(p)``, d bilinear on a grid, zero outside (ITK convention)."""

    field_xy: np.ndarray  # (ny, nx, 2)
    grid: Grid
    kind: str = field(default="displacement", init=False)

    def displacement(self, p: np.ndarray) -> np.ndarray:
        idx = self.grid.to_index_xy(p)
        coords = [idx[:, 1], idx[:, 0]]
        return np.stack(
            [ndi.map_coordinates(self.field_xy[..., c], coords, order=1, mode="nearest") for c in (0, 1)], axis=1
        ) * _inside(idx, self.grid.shape)[:, None]


    @classmethod
    def inverse_of(cls, step: _DisplacementMapping, grid: Grid) -> DisplacementStep:
        """The inverse sampled on ``grid``: at each grid point q, ``p - q`` with ``step(p) = q``."""
        q = grid.points_xy()
        p = step.apply_inverse(q)
        return cls((p - q).reshape(grid.shape[0], grid.shape[1], 2), grid)

    def to_sitk(self) -> Any:
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(np.ascontiguousarray(self.field_xy, dtype=np.float64), isVector=True)
        img.SetOrigin((self.grid.origin_yx[1], self.grid.origin_yx[0]))
        img.SetSpacing((self.grid.spacing_yx[1], self.grid.spacing_yx[0]))
        return sitk.DisplacementFieldTransform(img)

    @classmethod
    def from_sitk(cls, tx: Any) -> DisplacementStep:
        import SimpleITK as sitk

        img = sitk.DisplacementFieldTransform(tx).GetDisplacementField()
        arr = sitk.GetArrayFromImage(img).astype(np.float64)
        sx, sy = img.GetSpacing()
        ox, oy = img.GetOrigin()
        return cls(arr, Grid((arr.shape[0], arr.shape[1]), (sy, sx), (oy, ox)))


#: OpenCV's remap takes maps and images below this size on each side.
_REMAP_MAX_SIDE = 32767


def sample_linear(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, *, outside: float | None = None) -> np.ndarray:
    """Bilinear samples of a 2-D ``image`` at continuous (row, col) indices, as float32.

    ``scipy.ndimage.map_coordinates(order=1)`` costs 5x more for the whole-image samples a
    registration takes dozens of (8 ms vs 1.6 ms for 483 x 644 points); OpenCV's ``remap`` gives
    the same values with the sample position rounded to 1/32 pixel, which suits masks that are
    then thresholded (image values that block matching reads stay exact). ``outside=None``
    repeats the border pixels beyond the image (``mode="nearest"``); a number fills there instead.
    """
    import cv2

    rows = np.asarray(rows, np.float32).ravel()
    cols = np.asarray(cols, np.float32).ravel()
    n = len(rows)
    if max(image.shape) >= _REMAP_MAX_SIDE:
        mode = {"mode": "nearest"} if outside is None else {"mode": "constant", "cval": outside}
        return ndi.map_coordinates(np.asarray(image, np.float32), [rows, cols], order=1, **mode)
    width = 4096
    height = max(1, -(-n // width))
    pad = height * width - n
    map_r = np.pad(rows, (0, pad)).reshape(height, width)
    map_c = np.pad(cols, (0, pad)).reshape(height, width)
    border = cv2.BORDER_REPLICATE if outside is None else cv2.BORDER_CONSTANT
    out = cv2.remap(
        np.ascontiguousarray(image, np.float32), map_c, map_r, cv2.INTER_LINEAR, borderMode=border,
        borderValue=0.0 if outside is None else float(outside),
    ).ravel()[:n]
    if outside is not None:
        # Like scipy's mode="constant": no interpolation towards the fill beyond the last pixel centres.
        beyond = (rows < 0) | (rows > image.shape[0] - 1) | (cols < 0) | (cols > image.shape[1] - 1)
        out[beyond] = outside
    return out


def tps_kernel(r: np.ndarray) -> np.ndarray:
    """The thin-plate spline radial function ``r^2 log r`` (0 at r = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r > 0, r * r * np.log(np.maximum(r, 1e-300)), 0.0)


def _tps_kernel_sq(r2: np.ndarray) -> np.ndarray:
    """``r^2 log r`` from squared distances (``0.5 r2 log r2``), in place; 0 at r = 0."""
    np.maximum(r2, 1e-300, out=r2)
    out = np.log(r2)
    out *= r2
    out *= 0.5
    return out


class _LatticeCache:
    """A smooth displacement tabulated once on a lattice (cubic spline coefficients) and reused.

    Warping an image or inverting a spline by fixed-point iteration evaluates the same smooth
    displacement at many, slowly moving points; the lattice is rebuilt only when a query leaves
    it (then over the union of both boxes, with a margin).
    """

    def __init__(self, step: float) -> None:
        self.step = float(step)
        self.lo: np.ndarray | None = None
        self.hi = np.zeros(2)
        self.coef: list[np.ndarray] = []

    def __call__(self, displacement: Any, p: np.ndarray) -> np.ndarray:
        # Column by column: numpy reduces a tall (n, 2) array along axis 0 30x slower.
        lo = np.array([p[:, 0].min(), p[:, 1].min()])
        hi = np.array([p[:, 0].max(), p[:, 1].max()])
        if self.lo is None or np.any(lo < self.lo) or np.any(hi > self.hi):
            if self.lo is not None:
                lo, hi = np.minimum(lo, self.lo), np.maximum(hi, self.hi)
            margin = 0.05 * (hi - lo) + 4 * self.step
            self.lo, self.hi = lo - margin, hi + margin
            n = np.maximum(2, np.ceil((self.hi - self.lo) / self.step).astype(int) + 1)
            mx, my = np.meshgrid(self.lo[0] + self.step * np.arange(n[0]), self.lo[1] + self.step * np.arange(n[1]))
            lattice = displacement(np.stack([mx.ravel(), my.ravel()], axis=1)).reshape(n[1], n[0], 2)
            self.coef = [ndi.spline_filter(lattice[..., k], order=3, mode="nearest") for k in (0, 1)]
        idx = (p - self.lo) / self.step
        return np.stack(
            [ndi.map_coordinates(c, [idx[:, 1], idx[:, 0]], order=3, mode="nearest", prefilter=False) for c in self.coef], axis=1
        )


#: Above this many query points, a TPS is evaluated on a lattice and interpolated (cubic).
_TPS_DIRECT_MAX = 10000


@dataclass
class TPSStep(_DisplacementMapping):
    """Thin-plate spline displacement ``p -> p + d(p)`` on (x, y) µm.

    ``d(p) = sum_i weights_i * phi(|p - centres_i| / scale) + [1, p / scale] @ poly`` with
    ``phi(r) = r^2 log r``. Through many query points (warping a whole image) it is evaluated on
    a lattice of ``scale / 128`` spacing and interpolated with cubic splines, which agrees with
    the direct sum to far below a pixel for this smooth function.
    """

    centres_xy: np.ndarray  # (n, 2) µm
    weights: np.ndarray  # (n, 2)
    poly: np.ndarray  # (3, 2): constant, x, y (coordinates divided by scale)
    scale: float
    kind: str = field(default="tps", init=False)

    _lattice: Any = field(default=None, init=False, repr=False, compare=False)

    def _direct(self, p: np.ndarray) -> np.ndarray:
        from scipy.spatial.distance import cdist

        out = np.empty((len(p), 2))
        c = self.centres_xy / self.scale
        for start in range(0, len(p), 8192):
            q = p[start : start + 8192] / self.scale
            out[start : start + 8192] = _tps_kernel_sq(cdist(q, c, "sqeuclidean")) @ self.weights + self.poly[0] + q @ self.poly[1:]
        return out

    def displacement(self, p: np.ndarray) -> np.ndarray:
        return self._direct(p) if len(p) <= _TPS_DIRECT_MAX else self._tabulated(p)

    def _tabulated(self, p: np.ndarray) -> np.ndarray:
        if self._lattice is None:
            self._lattice = _LatticeCache(self.scale / 128)
        return self._lattice(self._direct, p)

    def _apply_for(self, n: int) -> Any:
        return self.apply if n <= _TPS_DIRECT_MAX else (lambda p: p + self._tabulated(p))

    def to_bspline(self, grid: Grid, *, spacing_px: float = 8.0) -> BSplineStep:
        """A cubic B-spline (control points every ``spacing_px`` pixels of ``grid``) fitted to this TPS.

        ITK files have no thin-plate spline; :meth:`Registration.save_tfm` writes this
        approximation, which follows a smooth TPS to a small fraction of a pixel.
        """
        return _bspline_approximation(self, grid, spacing_px)


@dataclass
class InverseTPSStep(_DisplacementMapping):
    """The inverse of a thin-plate spline that maps MOVING µm to FIXED µm.

    A spline through homologous points can be smooth in either image's coordinates. The
    distortion of an EBSD map is a smooth function of where the beam was, i.e. of the MOVING
    (EBSD) coordinates, and the TRE is judged by carrying moving points to the fixed image; so
    ``register(method="landmarks+tps")`` fits ``tps: moving -> fixed`` (its leave-one-out error
    is then the TRE of the left-out point in fixed pixels) and this step applies its inverse in
    the fixed -> moving chain, by Newton's method (the spline's linear part may hold any scale
    or rotation between the images).
    """

    tps: TPSStep
    kind: str = field(default="tps_inverse", init=False)

    def _direct(self, p: np.ndarray) -> np.ndarray:
        """Displacement ``tps^-1(p) - p`` by Newton's method at each point (analytic Jacobian)."""
        tps = self.tps
        c = tps.centres_xy / tps.scale
        q = np.array(p, dtype=np.float64, copy=True)
        tol = 1e-9 * (1.0 + np.max(np.abs(p), initial=0.0))
        active = np.arange(len(q))
        for _ in range(_FIXED_POINT_ITERATIONS):
            u = q[active] / tps.scale
            diff = u[:, None, :] - c[None, :, :]  # (n, m, 2)
            r = np.sqrt((diff**2).sum(axis=2))
            residual = q[active] + tps_kernel(r) @ tps.weights + tps.poly[0] + u @ tps.poly[1:] - p[active]
            # Row-vector Jacobian of q -> q + d(q): I + sum_i (2 log r_i + 1) (u - c_i)^T w_i / s + poly[1:] / s.
            with np.errstate(divide="ignore", invalid="ignore"):
                g = np.where(r > 0, 2 * np.log(np.maximum(r, 1e-300)) + 1, 0.0)
            jac = np.eye(2) + (np.einsum("nm,nma,mb->nab", g, diff, tps.weights) + tps.poly[1:]) / tps.scale
            q[active] -= np.linalg.solve(jac, residual[:, :, None])[:, :, 0]
            active = active[np.abs(residual).max(axis=1) >= tol]
            if len(active) == 0:
                break
        return q - p

    _lattice: Any = field(default=None, init=False, repr=False, compare=False)

    def displacement(self, p: np.ndarray) -> np.ndarray:
        if len(p) <= _TPS_DIRECT_MAX:
            return self._direct(p)
        if self._lattice is None:
            self._lattice = _LatticeCache(self.tps.scale / 256)
        return self._lattice(self._direct, p)

    def apply_inverse(self, p: np.ndarray) -> np.ndarray:
        return self.tps.apply(p)

    def to_bspline(self, grid: Grid, *, spacing_px: float = 8.0) -> BSplineStep:
        """A cubic B-spline fitted to this step over ``grid`` (for ``.tfm`` export), as :meth:`TPSStep.to_bspline`."""
        return _bspline_approximation(self, grid, spacing_px)


def _bspline_approximation(step: _DisplacementMapping, grid: Grid, spacing_px: float) -> BSplineStep:
    """A cubic B-spline with control points every ``spacing_px`` pixels of ``grid``, fitted to ``step``."""
    sub_step = max(1, int(spacing_px // 2))
    sub = Grid(
        (len(range(0, grid.shape[0], sub_step)), len(range(0, grid.shape[1], sub_step))),
        (grid.spacing_yx[0] * sub_step, grid.spacing_yx[1] * sub_step),
        grid.origin_yx,
    )
    pts = sub.points_xy()
    return fit_bspline(pts, step.displacement(pts), grid, spacing_um=spacing_px * grid.spacing_yx[1], smoothness=1e-4)


def _inside(idx_xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return (
        (idx_xy[:, 0] >= -0.5) & (idx_xy[:, 0] <= shape[1] - 0.5) & (idx_xy[:, 1] >= -0.5) & (idx_xy[:, 1] <= shape[0] - 0.5)
    )


Step = AffineStep | BSplineStep | DisplacementStep | TPSStep | InverseTPSStep

_INTERPOLATION_ORDER = {"nearest": 0, "linear": 1, "cubic": 3}


class Registration:
    """A fitted registration of a MOVING image onto a FIXED image.

    ``steps`` are applied in order to a FIXED-space point to give its MOVING-space position
    (ITK direction). Build one with :func:`metallo.correlate.register`.

    Attributes
    ----------
    fixed_grid, moving_grid : Grid
        Pixel grids (shape, spacing and origin in µm, or pixels when unknown) of both images.
    quality : dict
        Metrics of the fit: ``inliers``, ``mi_before``, ``mi_after``, ``tre_px`` (with landmarks), ...
    """

    def __init__(
        self,
        steps: Sequence[Step],
        *,
        fixed_grid: Grid,
        moving_grid: Grid,
        method: str = "",
        fixed: str = "fixed",
        moving: str = "moving",
        quality: dict[str, Any] | None = None,
    ) -> None:
        self.steps: list[Step] = list(steps)
        self.fixed_grid = fixed_grid
        self.moving_grid = moving_grid
        self.method = method
        self.fixed = fixed
        self.moving = moving
        self.quality: dict[str, Any] = dict(quality or {})
        #: Automatic control points (``method="auto"``): a :class:`~metallo.correlate._auto.ControlPoints`.
        self.control_points: Any = None
        #: ``method="auto"`` with the gate deferred: the start the combination is judged against.
        self._fallback_steps: list[Step] = []
        #: And that start's own residual map where it has one (the spline through given landmarks).
        self._fallback_map: dict[str, Any] | None = None

    def __repr__(self) -> str:
        kinds = "+".join(s.kind for s in self.steps) or "identity"
        return f"Registration({self.moving!r} -> {self.fixed!r}, {kinds}, method={self.method!r})"

    @property
    def transform_type(self) -> str:
        """The step kinds in application order, e.g. ``"bspline+affine"`` (``"identity"`` if none)."""
        return "+".join(s.kind for s in self.steps) or "identity"

    # -- point mapping -------------------------------------------------------------------
    def fixed_to_moving_xy(self, points_xy: np.ndarray) -> np.ndarray:
        """ITK direction on (x, y) µm arrays: fixed -> moving."""
        p = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        for step in self.steps:
            p = step.apply(p)
        return p

    def moving_to_fixed_xy(self, points_xy: np.ndarray) -> np.ndarray:
        """Inverse direction on (x, y) µm arrays: moving -> fixed."""
        p = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        for step in reversed(self.steps):
            p = step.apply_inverse(p)
        return p

    def transform_points(self, points_yx_um: np.ndarray) -> np.ndarray:
        """Map points from the MOVING image to the FIXED image.

        Parameters
        ----------
        points_yx_um : ndarray, shape (n, 2)
            (y, x) positions in the moving image, in µm (in pixels when its pixel size is unknown).

        Returns
        -------
        ndarray, shape (n, 2)
            (y, x) positions in the fixed image, in µm.

        Examples
        --------
        >>> reg = Registration([AffineStep(np.eye(2), np.array([2.0, 0.0]))],
        ...                    fixed_grid=Grid((8, 8), (1.0, 1.0)), moving_grid=Grid((8, 8), (1.0, 1.0)))
        >>> reg.transform_points(np.array([[0.0, 5.0]])).tolist()
        [[0.0, 3.0]]
        """
        pts = np.asarray(points_yx_um, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ConfigError(f"points_yx_um must have shape (n, 2); got {pts.shape}")
        return self.moving_to_fixed_xy(pts[:, ::-1])[:, ::-1]

    def fixed_to_moving(self, points_yx_um: np.ndarray) -> np.ndarray:
        """Map (y, x) µm points from the FIXED image to the MOVING image (the ITK direction).

        Parameters
        ----------
        points_yx_um : ndarray, shape (n, 2)

        Returns
        -------
        ndarray, shape (n, 2)

        Examples
        --------
        >>> g = Grid((8, 8), (1.0, 1.0))
        >>> reg = Registration([AffineStep(np.eye(2), np.array([2.0, 0.0]))], fixed_grid=g, moving_grid=g)
        >>> reg.fixed_to_moving(np.array([[0.0, 3.0]])).tolist()
        [[0.0, 5.0]]
        """
        pts = np.asarray(points_yx_um, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ConfigError(f"points_yx_um must have shape (n, 2); got {pts.shape}")
        return self.fixed_to_moving_xy(pts[:, ::-1])[:, ::-1]

    # -- resampling ------------------------------------------------------------------------
    def warp(
        self,
        image_or_labels: Any,
        *,
        interpolation: str | None = None,
        fill_value: float = 0,
    ) -> xr.DataArray:
        """Resample an image or label map from the MOVING grid onto the FIXED grid.

        Parameters
        ----------
        image_or_labels : ndarray or xr.DataArray
            (y, x) or (y, x, channel) data on the moving image. A DataArray is placed by its own
            y/x coordinates (so a map at another resolution over the same field works); a plain
            array must have the moving image's shape.
        interpolation : {"linear", "nearest", "cubic"}, optional
            Default: "nearest" for integer and boolean 2-D data (labels keep their values
            exactly), "linear" otherwise.
        fill_value : float
            Value where the fixed pixel maps outside the moving data (e.g. 255 = ignore for labels).

        Returns
        -------
        xr.DataArray
            On the fixed grid (fixed coordinates and pixel size), same dtype as the input for
            "nearest"; float32 (or the input float dtype) otherwise.

        Examples
        --------
        >>> reg = Registration([AffineStep(np.eye(2), np.array([1.0, 0.0]))],
        ...                    fixed_grid=Grid((2, 3), (1.0, 1.0)), moving_grid=Grid((2, 3), (1.0, 1.0)))
        >>> reg.warp(np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8), fill_value=255).values.tolist()
        [[2, 3, 255], [5, 6, 255]]
        """
        data = np.asarray(image_or_labels.values if isinstance(image_or_labels, xr.DataArray) else image_or_labels)
        if data.ndim not in (2, 3):
            raise RegistrationError(f"warp expects a (y, x) or (y, x, channel) array; got shape {data.shape}")
        if isinstance(image_or_labels, xr.DataArray) and "y" in image_or_labels.dims:
            source_grid = Grid.of(image_or_labels)
            image_or_labels = image_or_labels.transpose("y", "x", ...)
            data = np.asarray(image_or_labels.values)
        else:
            if data.shape[:2] != self.moving_grid.shape:
                stack = data.ndim == 3 and data.shape[1:] == self.moving_grid.shape
                raise RegistrationError(
                    f"warp input has shape {data.shape[:2]} (of {data.shape}) but the moving image is {self.moving_grid.shape}; "
                    + ("a stack (n, y, x) of moving images? Warp each, or put the stacked axis last (y, x, n)"
                       if stack else "pass a DataArray with y/x coordinates to warp data on another grid")
                )
            source_grid = self.moving_grid
        is_discrete = data.dtype.kind in "iub"
        if interpolation is None:
            interpolation = "nearest" if is_discrete and data.ndim == 2 else "linear"
        if interpolation not in _INTERPOLATION_ORDER:
            raise ConfigError(f"interpolation must be one of {sorted(_INTERPOLATION_ORDER)}; got {interpolation!r}")
        if interpolation == "nearest" and data.dtype.kind in "iu":
            info = np.iinfo(data.dtype)
            if not (np.isfinite(fill_value) and float(fill_value) == int(fill_value) and info.min <= fill_value <= info.max):
                raise RegistrationError(
                    f"fill_value {fill_value!r} does not fit the label dtype {data.dtype}; "
                    f"use an integer in [{info.min}, {info.max}] (e.g. 255 for uint8 'ignore')"
                )
        if data.dtype.kind == "f" and not np.isfinite(data).any():
            raise RegistrationError("warp input is all NaN/inf; nothing to resample")

        moving_xy = self.fixed_to_moving_xy(self.fixed_grid.points_xy())
        idx = source_grid.to_index_xy(moving_xy)
        inside = _inside(idx, source_grid.shape)
        out_shape = self.fixed_grid.shape + data.shape[2:]
        order = _INTERPOLATION_ORDER[interpolation]
        if order == 0:
            ii = np.clip(np.rint(idx[:, 1]).astype(np.int64), 0, source_grid.shape[0] - 1)
            jj = np.clip(np.rint(idx[:, 0]).astype(np.int64), 0, source_grid.shape[1] - 1)
            values = data[ii, jj]
            fill = np.asarray(fill_value).astype(data.dtype) if data.dtype.kind in "iub" else fill_value
            values[~inside] = fill
            out = values.reshape(out_shape)
        else:
            out_dtype = data.dtype if data.dtype.kind == "f" else np.float32
            src = data.astype(np.float64)
            channels = src[..., None] if src.ndim == 2 else src
            coords = [idx[:, 1], idx[:, 0]]
            cols = [
                ndi.map_coordinates(channels[..., c], coords, order=order, mode="nearest", prefilter=order > 1)
                for c in range(channels.shape[2])
            ]
            values = np.stack(cols, axis=1)
            values[~inside] = fill_value
            out = values.reshape(out_shape).astype(out_dtype)
        attrs = dict(getattr(image_or_labels, "attrs", {}) or {})
        attrs["registration"] = f"{self.moving} -> {self.fixed} ({self.transform_type})"
        name = str(getattr(image_or_labels, "name", None) or "image")
        return image_dataarray(
            out,
            pixel_size_um=self.fixed_grid.spacing_yx[0] if self.fixed_grid.pixel_size_known else None,
            origin_um=self.fixed_grid.origin_yx,
            name=name,
            attrs=attrs,
        )

    # -- inverse -----------------------------------------------------------------------------
    def inverse(self) -> Registration:
        """The registration of the FIXED image onto the MOVING image.

        Affine steps are inverted exactly; B-spline and displacement steps are inverted
        numerically (fixed-point iteration) and sampled as a displacement field on the fixed
        grid (at most 512 samples per side), which is accurate to well below a pixel for smooth
        deformations.

        Returns
        -------
        Registration

        Examples
        --------
        >>> g = Grid((8, 8), (1.0, 1.0))
        >>> reg = Registration([AffineStep(2 * np.eye(2), np.zeros(2))], fixed_grid=g, moving_grid=g)
        >>> reg.inverse().steps[0].matrix.tolist()
        [[0.5, 0.0], [0.0, 0.5]]
        """
        g = self.fixed_grid
        factor = max(1, int(math.ceil(max(g.shape) / 512)))
        # The inverse field must cover where the forward deformation lands: the fixed field plus a margin.
        margin = 2 * factor
        sampling = Grid(
            ((g.shape[0] + 2 * margin) // factor + 1, (g.shape[1] + 2 * margin) // factor + 1),
            (g.spacing_yx[0] * factor, g.spacing_yx[1] * factor),
            (g.origin_yx[0] - margin * g.spacing_yx[0], g.origin_yx[1] - margin * g.spacing_yx[1]),
        )
        steps = [s.inverse(sampling) for s in reversed(self.steps)]
        quality = {"inverse_of": self.quality}
        return Registration(
            steps,
            fixed_grid=self.moving_grid,
            moving_grid=self.fixed_grid,
            method=f"inverse({self.method})",
            fixed=self.moving,
            moving=self.fixed,
            quality=quality,
        )

    # -- storage -----------------------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        """The registration as an ``xr.Dataset`` for ``spec.add("registration/<name>", ...)``.

        Variables ``step<k>_matrix``/``step<k>_offset`` (affine), ``step<k>_coefficients``
        (B-spline, dims (component, gy, gx)) or ``step<k>_field`` (displacement); attrs
        ``fixed``, ``moving``, ``transform_type``, ``method``, ``quality`` (JSON),
        ``fixed_grid``/``moving_grid`` and ``steps`` (JSON descriptions).

        Returns
        -------
        xr.Dataset

        Examples
        --------
        >>> g = Grid((4, 4), (1.0, 1.0))
        >>> ds = Registration([AffineStep(np.eye(2), np.zeros(2))], fixed_grid=g, moving_grid=g).to_dataset()
        >>> ds.attrs["transform_type"]
        'affine'
        """
        data_vars: dict[str, Any] = {}
        meta: list[dict[str, Any]] = []
        for k, step in enumerate(self.steps):
            if isinstance(step, AffineStep):
                data_vars[f"step{k}_matrix"] = ((f"s{k}_row", f"s{k}_col"), step.matrix)
                data_vars[f"step{k}_offset"] = ((f"s{k}_col",), step.offset)
                meta.append({"kind": "affine"})
            elif isinstance(step, BSplineStep):
                data_vars[f"step{k}_coefficients"] = ((f"s{k}_component", f"s{k}_gy", f"s{k}_gx"), step.coefficients)
                meta.append({"kind": "bspline", "origin_xy": step.origin_xy.tolist(), "spacing_xy": step.spacing_xy.tolist()})
            elif isinstance(step, TPSStep | InverseTPSStep):
                tps = step if isinstance(step, TPSStep) else step.tps
                data_vars[f"step{k}_centres"] = ((f"s{k}_point", f"s{k}_component"), tps.centres_xy)
                data_vars[f"step{k}_weights"] = ((f"s{k}_point", f"s{k}_component"), tps.weights)
                data_vars[f"step{k}_poly"] = ((f"s{k}_term", f"s{k}_component"), tps.poly)
                meta.append({"kind": step.kind, "scale": tps.scale})
            else:
                data_vars[f"step{k}_field"] = ((f"s{k}_gy", f"s{k}_gx", f"s{k}_component"), step.field_xy)
                meta.append({"kind": "displacement", "grid": step.grid.to_dict()})
        rmap = self.quality.get("residual_map_px")
        coords: dict[str, Any] = {}
        if rmap is not None:
            # Expected error per region on a coarse grid over the fixed field, in µm (NaN: no
            # evidence there), named as the Specimen layout and the QC report know it.
            rgrid = Grid.from_dict(rmap["grid"])
            values = np.asarray(rmap["values"], dtype=np.float64) * float(self.fixed_grid.spacing_yx[1])
            data_vars[names.RESIDUAL] = (("y", "x"), values, {"units": "um", "long_name": "expected registration error"})
            coords = {"y": ("y", rgrid.origin_yx[0] + rgrid.spacing_yx[0] * np.arange(values.shape[0]), {"units": "um"}),
                      "x": ("x", rgrid.origin_yx[1] + rgrid.spacing_yx[1] * np.arange(values.shape[1]), {"units": "um"})}
        attrs = {
            "fixed": self.fixed,
            "moving": self.moving,
            "transform_type": self.transform_type,
            "method": self.method,
            "direction": "fixed_to_moving_xy_um (ITK)",
            "quality": json.dumps(json_ready(self.quality)),
            "fixed_grid": json.dumps(self.fixed_grid.to_dict()),
            "moving_grid": json.dumps(self.moving_grid.to_dict()),
            "steps": json.dumps(meta),
        }
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> Registration:
        """Rebuild a registration written by :meth:`to_dataset` (e.g. ``spec["registration/x"]``).

        Parameters
        ----------
        ds : xr.Dataset

        Returns
        -------
        Registration

        Examples
        --------
        >>> g = Grid((4, 4), (1.0, 1.0))
        >>> reg = Registration([AffineStep(np.eye(2), np.ones(2))], fixed_grid=g, moving_grid=g)
        >>> Registration.from_dataset(reg.to_dataset()).steps[0].offset.tolist()
        [1.0, 1.0]
        """
        try:
            meta = json.loads(ds.attrs["steps"])
            fixed_grid = Grid.from_dict(json.loads(ds.attrs["fixed_grid"]))
            moving_grid = Grid.from_dict(json.loads(ds.attrs["moving_grid"]))
            quality = json.loads(ds.attrs.get("quality", "{}"))
        except (KeyError, json.JSONDecodeError) as exc:
            raise FormatError(f"registration dataset lacks or has a malformed attr: {exc}") from None
        steps: list[Step] = []
        for k, m in enumerate(meta):
            try:
                if m["kind"] == "affine":
                    steps.append(AffineStep(np.asarray(ds[f"step{k}_matrix"].values, float), np.asarray(ds[f"step{k}_offset"].values, float)))
                elif m["kind"] == "bspline":
                    steps.append(
                        BSplineStep(np.asarray(ds[f"step{k}_coefficients"].values, float), np.asarray(m["origin_xy"], float), np.asarray(m["spacing_xy"], float))
                    )
                elif m["kind"] in ("tps", "tps_inverse"):
                    tps = TPSStep(
                        np.asarray(ds[f"step{k}_centres"].values, float), np.asarray(ds[f"step{k}_weights"].values, float),
                        np.asarray(ds[f"step{k}_poly"].values, float), float(m["scale"]),
                    )
                    steps.append(tps if m["kind"] == "tps" else InverseTPSStep(tps))
                elif m["kind"] == "displacement":
                    steps.append(DisplacementStep(np.asarray(ds[f"step{k}_field"].values, float), Grid.from_dict(m["grid"])))
                else:
                    raise FormatError(f"registration step {k} has unknown kind {m['kind']!r}")
            except KeyError as exc:
                raise FormatError(f"registration dataset lacks variable {exc} for step {k} ({m.get('kind')})") from None
        return cls(
            steps,
            fixed_grid=fixed_grid,
            moving_grid=moving_grid,
            method=str(ds.attrs.get("method", "")),
            fixed=str(ds.attrs.get("fixed", "fixed")),
            moving=str(ds.attrs.get("moving", "moving")),
            quality=quality,
        )

    def to_sitk(self) -> Any:
        """The mapping as a SimpleITK transform (fixed -> moving, physical (x, y))."""
        import SimpleITK as sitk

        parts = []
        for step in self.steps:
            if isinstance(step, AffineStep):
                parts.append(sitk.AffineTransform(step.matrix.ravel().tolist(), step.offset.tolist(), (0.0, 0.0)))
            elif isinstance(step, TPSStep | InverseTPSStep):
                parts.append(step.to_bspline(self.fixed_grid).to_sitk())
            else:
                parts.append(step.to_sitk())
        if len(parts) == 1:
            return parts[0]
        # ITK composite transforms apply the LAST added transform first.
        return sitk.CompositeTransform(parts[::-1])

    def save_tfm(self, path: str | Path) -> Path:
        """Write the transform as an ITK transform file (``.tfm``/``.txt``: dense fields as fitted B-splines; ``.h5``: exact).

        The file holds the ITK mapping FIXED -> MOVING in physical (x, y) units, so
        ``sitk.ReadTransform(path)`` resamples the moving image onto the fixed one, as in
        Fiji's and 3D Slicer's ITK transform readers. Dense displacement fields (inverse of a
        B-spline) need an ``.h5`` file.

        Parameters
        ----------
        path : str or Path

        Returns
        -------
        Path

        Examples
        --------
        >>> g = Grid((4, 4), (1.0, 1.0))
        >>> reg = Registration([AffineStep(np.eye(2), np.ones(2))], fixed_grid=g, moving_grid=g)
        >>> reg.save_tfm("t.tfm").suffix
        '.tfm'
        """
        import SimpleITK as sitk

        path = Path(path)
        reg = self
        if any(isinstance(s, DisplacementStep) for s in self.steps) and path.suffix.lower() in {".tfm", ".txt"}:
            # A text ITK file holds no dense field: a cubic B-spline fitted to it (control points
            # every 8 fixed pixels, as for a TPS) follows a smooth field to a fraction of a pixel.
            steps = []
            for step in self.steps:
                if isinstance(step, DisplacementStep):
                    g = step.grid
                    factor = np.array(g.spacing_yx) / np.array(self.fixed_grid.spacing_yx)
                    n = np.ceil((np.array(g.shape) - 1) * factor).astype(int) + 1
                    dense = Grid((int(n[0]), int(n[1])), self.fixed_grid.spacing_yx, g.origin_yx, g.pixel_size_known)
                    step = _bspline_approximation(step, dense, 8.0)
                steps.append(step)
            reg = Registration(steps, fixed_grid=self.fixed_grid, moving_grid=self.moving_grid)
        sitk.WriteTransform(reg.to_sitk(), str(path))
        if any(isinstance(s, DisplacementStep | TPSStep | InverseTPSStep) for s in self.steps):
            self._check_written(path)
        return path

    #: A written transform that departs from the registration by more than this (fixed pixels) is reported.
    _WRITTEN_TOLERANCE_PX = 0.5

    def _check_written(self, path: Path) -> None:
        """Warn where the file (B-splines fitted to a spline or a dense field) departs from the transform.

        A cubic B-spline with control points every 8 pixels follows a smooth deformation to a
        small fraction of a pixel (Slice381: 0.33 px at most), but not a field with sharp local
        changes, such as a combination of two disagreeing registrations (Slice8_TFS: 9.6 px at
        most, over 0.5 px on 1.3 % of the field). The file is read back and compared on every
        second pixel of the fixed grid (sparser on mosaics: a million points at most).
        """
        import warnings

        g = self.fixed_grid
        stride = max(2, int(math.ceil(math.sqrt(g.shape[0] * g.shape[1] / 1e6))))
        sub = Grid(
            (len(range(0, g.shape[0], stride)), len(range(0, g.shape[1], stride))),
            (stride * g.spacing_yx[0], stride * g.spacing_yx[1]), g.origin_yx, g.pixel_size_known,
        )
        pts = sub.points_xy()
        written = Registration.load_tfm(path, fixed=g, moving=self.moving_grid)
        err = np.linalg.norm(written.fixed_to_moving_xy(pts) - self.fixed_to_moving_xy(pts), axis=1) / float(g.spacing_yx[1])
        worst = float(err.max(initial=0.0))
        if worst > self._WRITTEN_TOLERANCE_PX:
            exact = "" if any(isinstance(s, TPSStep | InverseTPSStep) for s in self.steps) else "; an .h5 file holds the field exactly"
            warnings.warn(
                f"{path}: the written transform departs from the registration by up to {worst:.2f} px "
                f"(over {self._WRITTEN_TOLERANCE_PX} px on {100 * float((err > self._WRITTEN_TOLERANCE_PX).mean()):.1f} % "
                f"of the field): its cubic B-splines cannot follow the deformation's sharp local changes{exact}",
                UserWarning,
                stacklevel=3,
            )

    @classmethod
    def load_tfm(
        cls,
        path: str | Path,
        *,
        fixed: Any,
        moving: Any,
    ) -> Registration:
        """Read an ITK transform file (fixed -> moving, physical (x, y)) as a Registration.

        Parameters
        ----------
        path : str or Path
            ``.tfm``, ``.txt``, ``.h5`` or ``.mat`` written by ITK/SimpleITK, Slicer or :meth:`save_tfm`.
        fixed, moving : ndarray, xr.DataArray or Grid
            The images (or their grids) the transform relates.

        Returns
        -------
        Registration

        Examples
        --------
        >>> g = Grid((4, 4), (1.0, 1.0))
        >>> _ = Registration([AffineStep(np.eye(2), np.ones(2))], fixed_grid=g, moving_grid=g).save_tfm("t.tfm")
        >>> reg = Registration.load_tfm("t.tfm", fixed=g, moving=g)
        >>> reg.fixed_to_moving_xy(np.array([[0.0, 0.0]]))
        array([[1., 1.]])
        """
        import SimpleITK as sitk

        path = Path(path)
        if not path.is_file():
            raise FormatError(f"{path}: transform file not found")
        try:
            tx = sitk.ReadTransform(str(path))
        except RuntimeError as exc:
            raise FormatError(f"{path}: not an ITK transform file ({str(exc).splitlines()[-1][:120]})") from None
        steps = _steps_from_sitk(tx, path)
        fixed_grid = fixed if isinstance(fixed, Grid) else Grid.of(fixed)
        moving_grid = moving if isinstance(moving, Grid) else Grid.of(moving)
        return cls(steps, fixed_grid=fixed_grid, moving_grid=moving_grid, method=f"tfm:{path.name}")


def _steps_from_sitk(tx: Any, path: Path) -> list[Step]:
    import SimpleITK as sitk

    name = tx.GetName()
    if name == "CompositeTransform":
        comp = sitk.CompositeTransform(tx)
        parts = [comp.GetNthTransform(i) for i in range(comp.GetNumberOfTransforms())]
        steps: list[Step] = []
        for part in reversed(parts):
            steps.extend(_steps_from_sitk(part, path))
        return steps
    if tx.GetDimension() != 2:
        raise FormatError(f"{path}: expected a 2-D transform; got {tx.GetDimension()}-D {name}")
    if name == "BSplineTransform":
        return [BSplineStep.from_sitk(tx)]
    if name == "DisplacementFieldTransform":
        return [DisplacementStep.from_sitk(tx)]
    if name in {
        "AffineTransform",
        "Euler2DTransform",
        "Similarity2DTransform",
        "TranslationTransform",
        "ScaleTransform",
        "ScaleLogarithmicTransform",
        "MatrixOffsetTransformBase",
    } or "Affine" in name:
        return [_affine_from_sitk(tx)]
    raise FormatError(f"{path}: unsupported ITK transform type {name}")


def _affine_from_sitk(tx: Any) -> AffineStep:
    # Probe the transform: exact for every linear transform type regardless of its parametrisation.
    o = np.asarray(tx.TransformPoint((0.0, 0.0)))
    ex = np.asarray(tx.TransformPoint((1.0, 0.0))) - o
    ey = np.asarray(tx.TransformPoint((0.0, 1.0))) - o
    return AffineStep(np.stack([ex, ey], axis=1), o)


def fit_bspline(
    points_xy: np.ndarray,
    displacements_xy: np.ndarray,
    grid: Grid,
    *,
    spacing_um: float,
    weights: np.ndarray | None = None,
    smoothness: float = 0.05,
) -> BSplineStep:
    """Least-squares cubic B-spline displacement through scattered (point, displacement) pairs.

    The coefficient grid covers ``grid`` like ITK's ``BSplineTransformInitializer`` (one
    control point outside each side). A first-difference penalty on the coefficients keeps
    the field smooth where there are no points.
    """
    extent = grid.extent_xy
    origin = np.array(grid.origin_yx[::-1]) - 0.5 * np.array(grid.spacing_yx[::-1])
    mesh = np.maximum(1, np.round(extent / spacing_um)).astype(int)
    spacing = extent / mesh
    size = mesh + 3  # (nx, ny) coefficients
    coef_origin = origin - spacing
    u = (points_xy - coef_origin) / spacing
    base = np.floor(u).astype(int) - 1
    frac = u - np.floor(u)
    wx, wy = _cubic_weights(frac[:, 0]), _cubic_weights(frac[:, 1])
    n = len(points_xy)
    rows, cols, vals = [], [], []
    for a in range(4):
        for b in range(4):
            ix = np.clip(base[:, 0] + a, 0, size[0] - 1)
            iy = np.clip(base[:, 1] + b, 0, size[1] - 1)
            rows.append(np.arange(n))
            cols.append(iy * size[0] + ix)
            vals.append(wx[:, a] * wy[:, b])
    w = np.ones(n) if weights is None else np.asarray(weights, float)
    design = sparse.csr_matrix(
        (np.concatenate(vals) * np.tile(w, 16), (np.concatenate(rows), np.concatenate(cols))), shape=(n, size[0] * size[1])
    )
    penalty = _difference_operator(size) * (smoothness * np.sqrt(max(n, 1) / (size[0] * size[1])))
    system = sparse.vstack([design, penalty]).tocsr()
    rhs = [np.concatenate([displacements_xy[:, k] * w, np.zeros(penalty.shape[0])]) for k in range(2)]
    solution = _least_squares(system, rhs) if n else [np.zeros(system.shape[1])] * 2
    coefs = np.stack([x.reshape(size[1], size[0]) for x in solution])
    return BSplineStep(coefs, coef_origin, spacing)


#: Up to this many B-spline coefficients the least-squares fit solves its normal equations
#: directly (sparse LU, once for both components: 0.1 s and ~30 MB for 5,000 coefficients,
#: ~300 MB for 30,000); beyond it LSQR, whose memory stays that of the system but which took
#: 5 s for 5,000 coefficients (4,300 iterations per component).
_BSPLINE_DIRECT_MAX = 30_000


def _least_squares(system: sparse.csr_matrix, rhs: list[np.ndarray]) -> list[np.ndarray]:
    """``argmin |system x - b|`` for each ``b`` in ``rhs``."""
    from scipy.sparse.linalg import splu

    if system.shape[1] <= _BSPLINE_DIRECT_MAX:
        try:
            lu = splu((system.T @ system).tocsc(), permc_spec="MMD_AT_PLUS_A")
            return [lu.solve(system.T @ b) for b in rhs]
        except RuntimeError:  # singular normal equations: LSQR gives the least-norm solution
            pass
    return [lsqr(system, b, atol=1e-10, btol=1e-10, iter_lim=5000)[0] for b in rhs]


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    return np.stack(
        [(1 - t) ** 3 / 6, (3 * t**3 - 6 * t**2 + 4) / 6, (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6, t**3 / 6], axis=1
    )


def _difference_operator(size: np.ndarray) -> sparse.csr_matrix:
    nx, ny = int(size[0]), int(size[1])
    dx = sparse.diags_array([-np.ones(nx - 1), np.ones(nx - 1)], offsets=[0, 1], shape=(nx - 1, nx))
    dy = sparse.diags_array([-np.ones(ny - 1), np.ones(ny - 1)], offsets=[0, 1], shape=(ny - 1, ny))
    return sparse.vstack([sparse.kron(sparse.eye_array(ny), dx), sparse.kron(dy, sparse.eye_array(nx))]).tocsr()
