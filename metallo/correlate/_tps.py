"""Thin-plate splines through point pairs: exact or regularised, with closed-form leave-one-out errors.

The smoothing spline minimises ``sum_i |y_i - f(x_i)|^2 / lambda_i + bending energy`` and solves
``[[K + diag(lambda), P], [P^T, 0]] [w; a] = [y; 0]``. With ``C`` the upper-left block of that
matrix's inverse, the leave-one-out residual of point i is exactly ``w_i / C_ii`` (the
hat-matrix identity for linear smoothers), for every smoothing including 0 (the exact
interpolant). One solve per smoothing value therefore gives the cross-validated error of every
point: it chooses the smoothing, and it is the independent per-point error estimate from which
the residual map is made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metallo.correlate._transform import TPSStep, tps_kernel
from metallo.errors import RegistrationError

__all__ = ["TPSFit", "fit_tps", "fit_tps_cv"]


@dataclass
class TPSFit:
    """A fitted thin-plate spline and the leave-one-out error of each of its points (µm)."""

    step: TPSStep
    loo_error: np.ndarray  # (n,) |leave-one-out residual|
    smoothing: float


def _kernel(q: np.ndarray) -> np.ndarray:
    """The TPS kernel between every two of the (scaled) points ``q``."""
    return tps_kernel(np.sqrt(((q[:, None, :] - q[None, :, :]) ** 2).sum(axis=2)))


def _solve(points_xy: np.ndarray, values: np.ndarray, lam: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(points_xy)
    q = points_xy / scale
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = _kernel(q) + np.diag(lam)
    system[:n, n] = 1.0
    system[:n, n + 1 :] = q
    system[n, :n] = 1.0
    system[n + 1 :, :n] = q.T
    try:
        inv = np.linalg.inv(system)
    except np.linalg.LinAlgError:
        raise RegistrationError(f"thin-plate spline through {n} points is singular (collinear or repeated points)") from None
    rhs = np.vstack([values, np.zeros((3, values.shape[1]))])
    sol = inv @ rhs
    diag = np.diag(inv)[:n]
    with np.errstate(divide="ignore", invalid="ignore"):
        loo = sol[:n] / diag[:, None]
    return sol[:n], sol[n:], np.linalg.norm(loo, axis=1)


def _smoothing_path(
    points_xy: np.ndarray, values: np.ndarray, smoothings: np.ndarray, scale: float
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`_solve` for every smoothing value at once, all points smoothed alike.

    With ``Q2`` an orthonormal basis of the complement of the affine terms ``P``, the upper-left
    block of the system's inverse is ``C = Q2 (Q2^T K Q2 + s I)^-1 Q2^T``; one eigendecomposition
    ``Q2^T K Q2 = V diag(e) V^T`` gives it, the weights and the leave-one-out residuals for
    every ``s`` in O(n^2) each, where a solve per value costs O(n^3).
    """
    n = len(points_xy)
    q = points_xy / scale
    kernel = _kernel(q)
    poly = np.hstack([np.ones((n, 1)), q])
    basis, tri = np.linalg.qr(poly, mode="complete")
    q1, q2 = basis[:, :3], basis[:, 3:]
    eig, vec = np.linalg.eigh(q2.T @ kernel @ q2)
    u = q2 @ vec
    u_values, u_sq = u.T @ values, u * u
    out = []
    for s in smoothings:
        denom = eig + s
        if np.any(np.abs(denom) <= 1e-12 * np.abs(eig).max()):
            raise RegistrationError(f"thin-plate spline through {n} points is singular (collinear or repeated points)")
        inv = 1.0 / denom
        w = u @ (inv[:, None] * u_values)
        a = np.linalg.solve(tri[:3], q1.T @ (values - kernel @ w - s * w))
        with np.errstate(divide="ignore", invalid="ignore"):
            loo = w / (u_sq @ inv)[:, None]
        out.append((w, a, np.linalg.norm(loo, axis=1)))
    return out


def fit_tps(
    points_xy: np.ndarray,
    displacements_xy: np.ndarray,
    *,
    smoothing: float | np.ndarray = 0.0,
    scale: float | None = None,
) -> TPSFit:
    """Thin-plate spline displacement through ``points_xy`` (exact for ``smoothing=0``).

    Parameters
    ----------
    points_xy : ndarray, shape (n, 2)
        Where the displacements are known (µm, x y), n >= 3 and not all on a line.
    displacements_xy : ndarray, shape (n, 2)
    smoothing : float or ndarray of shape (n,)
        Regularisation per point in units of the kernel on coordinates divided by ``scale``
        (0: the spline passes through the point).
    scale : float, optional
        Length that coordinates are divided by (default: the larger side of the points'
        bounding box), for conditioning.

    Returns
    -------
    TPSFit

    Examples
    --------
    >>> p = np.array([[0.0, 0], [10, 0], [0, 10], [10, 10], [5, 5]])
    >>> fit = fit_tps(p, np.array([[0.0, 0], [0, 0], [0, 0], [0, 0], [1, 0]]))
    >>> np.round(fit.step.displacement(p[4:])[0], 6).tolist()
    [1.0, 0.0]
    """
    p = np.asarray(points_xy, dtype=np.float64)
    d = np.asarray(displacements_xy, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or d.shape != p.shape:
        raise RegistrationError(f"fit_tps: points {p.shape} and displacements {d.shape} must both be (n, 2)")
    if len(p) < 3:
        raise RegistrationError(f"a thin-plate spline needs at least 3 point pairs; got {len(p)}")
    if scale is None:
        scale = float(max(np.ptp(p, axis=0).max(), 1e-9))
    lam = np.broadcast_to(np.asarray(smoothing, dtype=np.float64), (len(p),)).copy()
    w, a, loo = _solve(p, d, lam, scale)
    return TPSFit(TPSStep(p.copy(), w, a, scale), loo, float(np.median(lam)))


def fit_tps_cv(
    points_xy: np.ndarray,
    displacements_xy: np.ndarray,
    *,
    fixed_points: np.ndarray | None = None,
    scored: np.ndarray | None = None,
    smoothings: np.ndarray | None = None,
) -> TPSFit:
    """Regularised thin-plate spline whose smoothing minimises the leave-one-out error.

    Parameters
    ----------
    points_xy, displacements_xy : ndarray, shape (n, 2)
        Automatic point pairs (noisy): they get the chosen smoothing.
    fixed_points : ndarray of bool, shape (n,), optional
        Points the spline must pass through exactly (user landmarks); never smoothed.
    scored : ndarray of bool, shape (n,), optional
        Points whose leave-one-out error chooses the smoothing (default: all but
        ``fixed_points``); pseudo-points such as anchors to a start transform are left out.
    smoothings : ndarray, optional
        Candidate smoothing values (default: 0 and 1e-6 ... 10, eight log-spaced).

    Returns
    -------
    TPSFit
        ``loo_error`` is the leave-one-out error at the chosen smoothing.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(0, 100, (60, 2))
    >>> fit = fit_tps_cv(p, 0.02 * p + rng.normal(0, 0.5, p.shape))
    >>> fit.smoothing > 0
    True
    """
    p = np.asarray(points_xy, dtype=np.float64)
    d = np.asarray(displacements_xy, dtype=np.float64)
    exact = np.zeros(len(p), bool) if fixed_points is None else np.asarray(fixed_points, bool)
    judged = ~exact if scored is None else np.asarray(scored, bool) & ~exact
    if smoothings is None:
        smoothings = np.concatenate([[0.0], np.logspace(-6, 1, 8)])
    scale = float(max(np.ptp(p, axis=0).max(), 1e-9))
    if not exact.any() and len(p) > 3 and np.linalg.matrix_rank(np.hstack([np.ones((len(p), 1)), p / scale])) == 3:
        # Every point smoothed alike: one eigendecomposition serves all smoothing values.
        path = _smoothing_path(p, d, np.asarray(smoothings, float), scale)
        fits = (TPSFit(TPSStep(p.copy(), w, a, scale), loo, float(s)) for s, (w, a, loo) in zip(smoothings, path, strict=True))
    else:
        fits = (fit_tps(p, d, smoothing=np.where(exact, 0.0, s), scale=scale) for s in smoothings)
    best: tuple[float, TPSFit | None] = (np.inf, None)
    for s, fit in zip(smoothings, fits, strict=True):
        err = fit.loo_error[judged] if judged.any() else fit.loo_error
        # A robust CV score: errors beyond 3x the median (gross mismatches left over) are capped.
        capped = np.minimum(err, 3 * np.median(err) + 1e-12)
        score = float(capped.mean())
        if score < best[0]:
            best = (score, TPSFit(fit.step, fit.loo_error, float(s)))
    assert best[1] is not None
    return best[1]
