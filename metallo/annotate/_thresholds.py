"""Data-driven thresholds on a grain-level distribution: Otsu and a two-component GMM."""

from __future__ import annotations

from typing import Any

import numpy as np

from metallo.errors import ConfigError, UnknownNameError

__all__ = ["MIN_GRAINS_PER_SIDE", "select_threshold"]

#: Fewest values (grains) on either side of a data-driven threshold for the split to stand for
#: two populations: a class of fewer grains has its fraction from individual grains.
MIN_GRAINS_PER_SIDE = 5


def select_threshold(
    values: np.ndarray,
    *,
    method: str = "otsu",
    weights: np.ndarray | None = None,
    nbins: int = 256,
    max_iter: int = 200,
) -> dict[str, Any]:
    """Split a 1-D distribution (e.g. the GOS of every grain) into two populations.

    Parameters
    ----------
    values : ndarray
        One value per grain; NaN values are left out.
    method : {"otsu", "gmm"}
        ``"otsu"``: the cut maximising the between-class variance of the (weighted)
        histogram. ``"gmm"``: a two-component 1-D Gaussian mixture fitted by EM; the cut
        is where both components are equally probable, between the two means.
    weights : ndarray, optional
        Weight per value; grain sizes in pixels make the cut follow area, not grain count.
    nbins : int
        Histogram bins for Otsu.
    max_iter : int
        EM iterations for the GMM.

    Returns
    -------
    dict
        ``value`` (the threshold), ``method``, ``n`` (values used), ``n_below`` / ``n_above``
        (values on each side), ``supported`` (at least ``MIN_GRAINS_PER_SIDE`` on each side;
        else ``reason`` says why not) and, for ``gmm``, ``means``, ``sigmas``, ``weights`` of the
        two components.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> v = np.r_[rng.normal(0.5, 0.1, 300), rng.normal(3.0, 0.3, 200)]
    >>> 0.8 < select_threshold(v, method="gmm")["value"] < 2.5
    True
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    w = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != values.shape:
        raise ConfigError(f"weights shape {w.shape} != values shape {values.shape}")
    keep = np.isfinite(values) & np.isfinite(w) & (w > 0)
    values, w = values[keep], w[keep]
    if values.size < 2 or np.ptp(values) == 0:
        raise ConfigError(f"a data-driven threshold ({method}) needs at least two distinct values; got {values.size} "
                          f"finite value(s), {np.unique(values).size} distinct")
    method = str(method).lower()
    if method == "otsu":
        out: dict[str, Any] = {"value": _otsu(values, w, nbins), "method": "otsu", "n": int(values.size)}
    elif method == "gmm":
        out = {**_gmm_threshold(values, w, max_iter), "method": "gmm", "n": int(values.size)}
    else:
        raise UnknownNameError(f"unknown threshold method {method!r}; valid names: gmm, otsu")
    # Otsu and a mixture fit cut any distribution in two, one population or two. Where one side
    # holds a handful of grains the cut follows individual grains, not a second population.
    below, above = int((values <= out["value"]).sum()), int((values > out["value"]).sum())
    out.update(n_below=below, n_above=above, supported=min(below, above) >= MIN_GRAINS_PER_SIDE)
    if not out["supported"]:
        side = "above" if above < below else "below"
        out["reason"] = (f"the {method} cut at {out['value']:.3g} leaves {min(below, above)} of {values.size} "
                         f"values {side} it (fewer than {MIN_GRAINS_PER_SIDE}): it splits off individual grains, "
                         "not a second population")
    return out


def _otsu(values: np.ndarray, w: np.ndarray, nbins: int) -> float:
    counts, edges = np.histogram(values, bins=nbins, weights=w)
    centers = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(counts)[:-1]
    w1 = np.cumsum(counts[::-1])[::-1][1:]
    m0 = np.cumsum(counts * centers)[:-1] / np.where(w0 > 0, w0, 1)
    m1 = np.cumsum((counts * centers)[::-1])[::-1][1:] / np.where(w1 > 0, w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    # The cut lies on the bin edge after the best split, so "value > cut" keeps the upper bins.
    return float(edges[1:-1][int(np.argmax(between))])


def _gmm_threshold(values: np.ndarray, w: np.ndarray, max_iter: int) -> dict[str, Any]:
    w = w / w.sum()
    lo, hi = np.quantile(values, [0.25, 0.75])
    mu: np.ndarray = np.array([lo, hi], dtype=np.float64)
    var: np.ndarray = np.full(2, max(np.var(values), 1e-12))
    pi: np.ndarray = np.array([0.5, 0.5])
    floor = 1e-6 * np.var(values) + 1e-12
    log_lik_old = -np.inf
    for _ in range(max_iter):
        log_p = (
            np.log(pi)[None, :]
            - 0.5 * np.log(2 * np.pi * var)[None, :]
            - 0.5 * (values[:, None] - mu[None, :]) ** 2 / var[None, :]
        )
        top = log_p.max(axis=1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(log_p - top).sum(axis=1))
        resp = np.exp(log_p - log_norm[:, None]) * w[:, None]
        nk = resp.sum(axis=0) + 1e-300
        pi = nk / nk.sum()
        mu = (resp * values[:, None]).sum(axis=0) / nk
        var = np.maximum((resp * (values[:, None] - mu[None, :]) ** 2).sum(axis=0) / nk, floor)
        log_lik = float((w * log_norm).sum())
        if abs(log_lik - log_lik_old) < 1e-10:
            break
        log_lik_old = log_lik
    order = np.argsort(mu)
    mu, var, pi = mu[order], var[order], pi[order]
    return {
        "value": _equal_posterior(mu, var, pi),
        "means": mu.tolist(),
        "sigmas": np.sqrt(var).tolist(),
        "weights": pi.tolist(),
    }


def _equal_posterior(mu: np.ndarray, var: np.ndarray, pi: np.ndarray) -> float:
    """The x between the two means where pi0 N(x; mu0, var0) == pi1 N(x; mu1, var1)."""
    a = 1.0 / var[1] - 1.0 / var[0]
    b = 2.0 * (mu[0] / var[0] - mu[1] / var[1])
    c = mu[1] ** 2 / var[1] - mu[0] ** 2 / var[0] + np.log(var[1] / var[0]) - 2.0 * np.log(pi[1] / pi[0])
    roots = np.array([-c / b]) if abs(a) < 1e-12 * max(abs(b), 1e-300) else np.roots([a, b, c])
    roots = np.real(roots[np.isreal(roots)])
    inside = roots[(roots >= mu[0]) & (roots <= mu[1])]
    if inside.size:
        return float(inside[0])
    # Components so unequal that one dominates everywhere between the means: split halfway
    # in units of their spreads, the natural fallback for two well separated modes.
    s = np.sqrt(var)
    return float((mu[0] * s[1] + mu[1] * s[0]) / (s[0] + s[1]))
