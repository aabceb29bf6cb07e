"""Particle size distributions: histogram, ECDF, log-normal fit, two-sample KS comparison.

References
----------
.. [1] B. L. DeCost, B. Lei, T. Francis, E. A. Holm, "High throughput quantitative metallography
   for complex microstructures using deep learning: a case study in ultrahigh carbon steel",
   Microscopy and Microanalysis 25(1), 21-29 (2019). doi:10.1017/S1431927618015635
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from metallo.errors import ConfigError

__all__ = [
    "KSResult",
    "ks_consistency",
    "ks_test",
    "lognormal_fit",
    "size_distribution",
    "size_ecdf",
]


def _values(sample: Any, *, column: str, what: str) -> np.ndarray:
    if isinstance(sample, pd.DataFrame):
        if column not in sample.columns:
            raise ConfigError(f"{what}: table has no column {column!r}; columns: {list(sample.columns)}")
        sample = sample[column]
    values = np.asarray(sample, dtype=np.float64).ravel()
    if values.size and not np.all(np.isfinite(values)):
        raise ConfigError(f"{what}: sizes must be finite numbers")
    if values.size and values.min() < 0:
        # A negative size is no size (a difference, or a column of coordinates): binned, it made a bin below 0 µm.
        raise ConfigError(f"{what}: sizes must be >= 0 µm; got {int((values < 0).sum())} negative (smallest {values.min():g})")
    return values


def size_distribution(
    sizes: Any,
    *,
    bins: int | str | Sequence[float] = "auto",
    column: str = "ecd_um",
    weights: Any = None,
    log_bins: bool = False,
) -> pd.DataFrame:
    """Histogram of particle sizes (a PSD table).

    Parameters
    ----------
    sizes : array-like or DataFrame
        Sizes in µm, or a particle table (``column`` is used).
    bins : int, str or sequence of float
        Passed to ``numpy.histogram_bin_edges`` (edges in µm when a sequence).
    column : str
        Column of a particle table to use.
    weights : array-like or "weight", optional
        Per-particle weights (e.g. Miles-Lantuejoul); ``"weight"`` takes the table column.
    log_bins : bool
        Geometric bins between the smallest and the largest size (``bins`` must be an int).

    Returns
    -------
    pd.DataFrame
        bin_left_um, bin_right_um, count (weighted), fraction, density (per µm), cumulative.

    Examples
    --------
    >>> size_distribution([1.0, 1.5, 2.5], bins=[0, 2, 3])["count"].tolist()
    [2.0, 1.0]
    """
    if isinstance(weights, str):
        if not isinstance(sizes, pd.DataFrame):
            raise ConfigError("weights='weight' needs a particle table as sizes")
        weights = sizes[weights].to_numpy()
    values = _values(sizes, column=column, what="sizes")
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    if log_bins:
        if not isinstance(bins, int) or values.size == 0 or values.min() <= 0:
            raise ConfigError("log_bins needs an integer bins and positive sizes")
        edges = np.geomspace(values.min(), values.max(), bins + 1)
    else:
        edges = np.histogram_bin_edges(values, bins=bins)
    count, edges = np.histogram(values, bins=edges, weights=w)
    count = count.astype(np.float64)
    total = count.sum()
    fraction = count / total if total > 0 else np.zeros_like(count)
    return pd.DataFrame(
        {
            "bin_left_um": edges[:-1],
            "bin_right_um": edges[1:],
            "count": count,
            "fraction": fraction,
            "density": fraction / np.diff(edges),
            "cumulative": np.cumsum(fraction),
        }
    )


def size_ecdf(sizes: Any, *, column: str = "ecd_um") -> pd.DataFrame:
    """Empirical cumulative distribution of sizes: sorted size_um and cdf (i / n).

    Examples
    --------
    >>> size_ecdf([3.0, 1.0])["cdf"].tolist()
    [0.5, 1.0]
    """
    values = np.sort(_values(sizes, column=column, what="sizes"))
    return pd.DataFrame({"size_um": values, "cdf": np.arange(1, values.size + 1) / max(values.size, 1)})


def lognormal_fit(sizes: Any, *, column: str = "ecd_um", weights: Any = None,
                  truncated_below_um: float | None = None) -> dict[str, float]:
    """Maximum-likelihood log-normal fit of a size sample.

    A sample cut at a minimum size (``particle_sizes(min_area_um2=...)``, the usual way to drop
    segmentation noise) holds only the part of the distribution above the cut, and the plain fit
    of it moves the median up and narrows sigma. ``truncated_below_um`` gives that cut (an ECD
    in µm): the likelihood is then that of the log-normal truncated there, and the fit is of the
    whole population the sample was cut from.

    Parameters
    ----------
    sizes : array-like or DataFrame
        Positive sizes in µm (or a particle table).
    column : str
        Column of a particle table to use.
    weights : array-like, optional
        Per-particle weights.
    truncated_below_um : float, optional
        Smallest size the sample could hold (sizes below it were left out).

    Returns
    -------
    dict
        median_um (= exp(mu)), sigma (standard deviation of ln size), mu, mean_um
        (exp(mu + sigma²/2)), n, truncated_below_um (NaN without a cut).

    Examples
    --------
    >>> fit = lognormal_fit(np.exp(np.random.default_rng(0).normal(0.0, 0.3, 20000)))
    >>> round(fit["median_um"], 1), round(fit["sigma"], 1)
    (1.0, 0.3)
    """
    values = _values(sizes, column=column, what="sizes")
    if values.size < 2 or values.min() <= 0:
        raise ConfigError(f"lognormal_fit needs at least 2 sizes, all positive (the log of 0 is no number); got {values.size}"
                          + (f", {int((values <= 0).sum())} of them 0" if values.size and values.min() <= 0 else ""))
    logs = np.log(values)
    w = np.ones_like(logs) if weights is None else np.asarray(weights, dtype=np.float64)
    mu = float(np.average(logs, weights=w))
    sigma = float(np.sqrt(np.average((logs - mu) ** 2, weights=w)))
    cut = float("nan")
    if truncated_below_um is not None and truncated_below_um > 0:
        cut = float(truncated_below_um)
        if values.min() < cut * (1 - 1e-9):
            raise ConfigError(f"lognormal_fit: sizes below truncated_below_um={cut} µm; the cut must be the "
                              "smallest size the sample could hold")
        mu, sigma = _truncated_fit(logs, w, np.log(cut), mu, max(sigma, 1e-6))
    return {
        "median_um": float(np.exp(mu)),
        "sigma": sigma,
        "mu": mu,
        "mean_um": float(np.exp(mu + sigma**2 / 2)),
        "n": float(values.size),
        "truncated_below_um": cut,
    }


def _truncated_fit(logs: np.ndarray, w: np.ndarray, log_cut: float, mu0: float, sigma0: float) -> tuple[float, float]:
    """Maximum likelihood of a normal truncated below ``log_cut`` (in ln size)."""
    from scipy.optimize import minimize
    from scipy.stats import norm

    w = w / w.sum() * logs.size

    def nll(p: np.ndarray) -> float:
        m, s = p[0], np.exp(p[1])
        return float(-(w * norm.logpdf(logs, m, s)).sum() + w.sum() * norm.logsf(log_cut, m, s))

    # The sample's own mean is the truncated one: start below it, where the population lies.
    best = min((minimize(nll, np.array([m0, np.log(sigma0)]), method="Nelder-Mead",
                         options={"xatol": 1e-7, "fatol": 1e-10, "maxiter": 4000})
                for m0 in (mu0, mu0 - sigma0, mu0 - 2 * sigma0)), key=lambda r: r.fun)
    return float(best.x[0]), float(np.exp(best.x[1]))


@dataclass(frozen=True)
class KSResult:
    """Two-sample Kolmogorov-Smirnov test of two size samples.

    ``consistent`` is True when the test fails to reject, at level ``alpha``, the hypothesis
    that both samples come from the same distribution (the KS score of DeCost et al. (2019) counts
    these).
    """

    statistic: float
    pvalue: float
    n_a: int
    n_b: int
    alpha: float

    @property
    def consistent(self) -> bool:
        return bool(self.pvalue >= self.alpha)

    def as_dict(self) -> dict[str, Any]:
        return {
            "statistic": self.statistic,
            "pvalue": self.pvalue,
            "n_a": self.n_a,
            "n_b": self.n_b,
            "alpha": self.alpha,
            "consistent": self.consistent,
        }


def ks_test(sample_a: Any, sample_b: Any, *, alpha: float = 0.05, column: str = "ecd_um") -> KSResult:
    """Two-sample Kolmogorov-Smirnov test between two particle size samples.

    Parameters
    ----------
    sample_a, sample_b : array-like or DataFrame
        Sizes in µm, or particle tables (``column`` is used).
    alpha : float
        Significance level (0.05 = the 95 % confidence of DeCost et al. 2019).
    column : str
        Column of a particle table to use.

    Returns
    -------
    KSResult
        statistic, pvalue (``scipy.stats.ks_2samp``, exact or asymptotic as scipy chooses),
        n_a, n_b, alpha and ``consistent``.

    Examples
    --------
    >>> ks_test([1.0, 2.0, 3.0, 4.0], [1.1, 2.1, 3.1, 4.1]).consistent
    True
    """
    from scipy.stats import ks_2samp

    a = _values(sample_a, column=column, what="sample_a")
    b = _values(sample_b, column=column, what="sample_b")
    if a.size == 0 or b.size == 0:
        raise ConfigError(f"ks_test needs two non-empty samples; got sizes {a.size} and {b.size}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1); got {alpha}")
    res = ks_2samp(a, b)
    return KSResult(float(res.statistic), float(res.pvalue), int(a.size), int(b.size), float(alpha))


def ks_consistency(
    pairs: Mapping[str, tuple[Any, Any]], *, alpha: float = 0.05, column: str = "ecd_um"
) -> pd.DataFrame:
    """KS-test each (reference, candidate) pair of PSDs: the per-image KS score of DeCost et al. (2019).

    Parameters
    ----------
    pairs : mapping name -> (reference sample, candidate sample)
        E.g. image name -> (PSD from the annotation, PSD from a segmentation).
    alpha : float
        Significance level.
    column : str
        Column of particle tables to use.

    Returns
    -------
    pd.DataFrame
        Indexed by name: statistic, pvalue, n_a, n_b, alpha, consistent.
        ``attrs["fraction_consistent"]`` is the fraction of pairs consistent with the
        reference (the KS score of DeCost et al. 2019); an empty candidate sample counts as inconsistent.

    Examples
    --------
    >>> t = ks_consistency({"a": ([1, 2, 3], [1, 2, 3]), "b": (range(8), range(10, 18))})
    >>> t.attrs["fraction_consistent"]
    0.5
    """
    rows = {}
    for name, (ref, cand) in pairs.items():
        a = _values(ref, column=column, what=f"{name} reference")
        b = _values(cand, column=column, what=f"{name} candidate")
        if a.size == 0 or b.size == 0:
            rows[name] = {"statistic": 1.0, "pvalue": 0.0, "n_a": a.size, "n_b": b.size,
                          "alpha": alpha, "consistent": False}
            continue
        rows[name] = ks_test(a, b, alpha=alpha).as_dict()
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "name"
    table.attrs["fraction_consistent"] = float(table["consistent"].mean()) if len(table) else float("nan")
    return table
