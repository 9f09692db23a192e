"""The spread across trials of two layouts y[cell, trial] (claim 8, the starts contrast): a
two-way layout with a random trial effect shared by the cells of a trial, the pooled
within-cell variance as the estimate, and each layout's own degrees of freedom, which fall
to T - 1 when its trial effect dominates (the trial is then the replicate) and rise
towards C (T - 1) when it is absent. Vectorised over leading axes, for the Monte Carlo
tests."""

from __future__ import annotations

import numpy as np
from scipy import stats as sps


def variance_components(y: np.ndarray):
    """Two-way layout y[..., cell, trial] (complete): the pooled within-cell variance split
    into its trial part and its cell-by-trial part (vectorised over leading axes).

    Returns (a, b, C, T) with a = MS_trial / C and b = (C - 1) / C MS_residual, so that
    a + b = the within-cell variance pooled over cells (unbiased for the variance across
    trials, trial effect included), a on T - 1 and b on (C - 1)(T - 1) degrees of freedom.
    """
    y = np.asarray(y, dtype=float)
    c, t = y.shape[-2:]
    cell_mean = y.mean(axis=-1, keepdims=True)
    trial_mean = y.mean(axis=-2, keepdims=True)
    grand = y.mean(axis=(-2, -1), keepdims=True)
    ms_trial = c * ((trial_mean - grand) ** 2).sum(axis=(-2, -1)) / (t - 1)
    if c > 1:
        resid = y - cell_mean - trial_mean + grand
        ms_resid = (resid**2).sum(axis=(-2, -1)) / ((c - 1) * (t - 1))
    else:
        ms_resid = np.zeros_like(ms_trial)
    a, b = ms_trial / c, (c - 1) / c * ms_resid
    if np.ndim(a) == 0:
        a, b = float(a), float(b)
    return a, b, c, t


def satterthwaite_df(a, b, c: int, t: int):
    """Degrees of freedom of a + b (variance_components), Satterthwaite's approximation."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    terms = a**2 / (t - 1) + (b**2 / ((c - 1) * (t - 1)) if c > 1 else 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        df = np.where(terms > 0, (a + b) ** 2 / np.where(terms > 0, terms, 1.0), t - 1.0)
    return float(df) if df.ndim == 0 else df


def heterogeneity_df(y: np.ndarray):
    """Degrees of freedom of one layout's variance pooled over cells whose variances differ.

    Each cell's variance counts by its size: Satterthwaite's (sum v_c)^2 / sum(v_c^2 /
    (T - 1)), with v_c^2 shrunk by (T - 1) / T (the excess a cell's own noisy estimate
    adds), so that equal cells give C (T - 1) and a few dominant cells give about their
    own degrees of freedom (vectorised over leading axes).
    """
    y = np.asarray(y, dtype=float)
    c, t = y.shape[-2:]
    v = np.var(y, axis=-1, ddof=1)
    total, square = v.sum(axis=-1), (v**2).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        df = np.where(square > 0, t * total**2 / np.where(square > 0, square, 1.0), c * (t - 1))
    df = np.minimum(float(c * (t - 1)), df)
    return float(df) if df.ndim == 0 else df


def spread_of(y: np.ndarray, floor: float = 0.0, level: float = 0.1):
    """One layout's variance across trials and its own degrees of freedom (vectorised).

    Returns (variance a + b, df, trial share a / (a + b), floored). df: Satterthwaite's for
    a + b with the trial mean square at the upper end of its one-sided 1 - ``level``
    interval relative to the residual one (``spread_df``), and at most ``heterogeneity_df``.
    A variance below floor^2 (the resolution) is raised to it as a trial-level component
    (T - 1 degrees of freedom, the conservative choice).
    """
    a, b, c, t = variance_components(y)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    floored = a + b < floor**2
    df = spread_df(a * c, b * c / (c - 1) if c > 1 else 0 * b, c, t, t, level)
    df = np.minimum(df, heterogeneity_df(y))
    a, b = np.where(floored, floor**2, a), np.where(floored, 0.0, b)
    df = np.where(floored, t - 1.0, df)
    v = a + b
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(v > 0, a / np.where(v > 0, v, 1.0), np.nan)
    if v.ndim == 0:
        return float(v), float(df), float(share), bool(floored)
    return v, df, share, floored


def spread_df(ms_trial, ms_resid, c: int, t: int, n, level: float = 0.1):
    """Degrees of freedom of the variance across trials at ``n`` trials, from the mean
    squares observed with ``t`` trials (C cells): Satterthwaite's for a + b with
    E(MS_trial) / E(MS_resid) at the upper end of its one-sided 1 - ``level`` interval
    (the F bound with n - 1 and (C - 1)(n - 1) df).

    With 3 trials the trial mean square has 2 degrees of freedom: Satterthwaite's df from
    the point estimate come out high exactly when the trial part, and so the variance, is
    low by chance, which made the F test anti-conservative (10-16 % instead of 5 % when one
    backend's spread is a trial effect and the other's is not). The bound keeps the size
    at or below alpha over trial shares of 0-95 % either way round.
    """
    n = np.asarray(n, dtype=float)
    ms_trial, ms_resid = np.asarray(ms_trial, dtype=float), np.asarray(ms_resid, dtype=float)
    if c < 2:
        return n - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(ms_resid > 0, ms_trial / np.where(ms_resid > 0, ms_resid, 1.0), np.inf)
    # the bound at n trials, with the observed ratio of mean squares as the point value
    k = np.maximum(ratio / sps.f.ppf(level, n - 1, (c - 1) * (n - 1)), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        a_up, b = k * ms_resid / c, (c - 1) / c * ms_resid
        terms = a_up**2 / (n - 1) + b**2 / ((c - 1) * (n - 1))
        df = np.where(terms > 0, (a_up + b) ** 2 / np.where(terms > 0, terms, 1.0), n - 1)
    df = np.where(np.isfinite(ratio), df, n - 1)
    return float(df) if df.ndim == 0 else df


def spread_ratio(y1: np.ndarray, y2: np.ndarray, floor1: float = 0.0, floor2: float = 0.0):
    """Compare the spread across trials of two layouts y[cell, trial] (same shape).

    Returns (variance ratio R = var1 / var2, (df1, df2), details). Each variance has its own
    degrees of freedom (``spread_of``): under equal spread R is about F(df1, df2). A layout
    whose spread is mostly a trial effect has about T - 1, one without a trial effect about
    C (T - 1), whichever backend it is (tests/test_claims.py checks the size with the trial
    share unequal both ways round).
    """
    v1, df1, s1, f1 = spread_of(y1, floor1)
    v2, df2, s2, f2 = spread_of(y2, floor2)
    c, t = np.shape(y1)[-2:]
    ratio = v1 / v2 if v2 > 0 else (np.inf if v1 > 0 else np.nan)
    details = dict(
        var1=v1,
        var2=v2,
        trial_share1=s1,
        trial_share2=s2,
        floored1=f1,
        floored2=f2,
        cells=c,
        trials=t,
        df1=df1,
        df2=df2,
    )
    return ratio, (df1, df2), details


def f_ratio_tests(ratio: float, df1: float, df2: float, bound: float, confidence: float):
    """For a variance ratio R ~ rho F(df1, df2): p-values of rho > ``bound`` and of
    rho < ``bound``, and the two-sided interval of rho at ``confidence``."""
    if not np.isfinite(ratio) or ratio <= 0 or not (df1 > 0 and df2 > 0):
        return dict(p_above=np.nan, p_below=np.nan, ci=(np.nan, np.nan))
    f = sps.f
    lo_q, hi_q = f.ppf([0.5 - confidence / 2, 0.5 + confidence / 2], df1, df2)
    return dict(
        p_above=float(f.sf(ratio / bound, df1, df2)),
        p_below=float(f.cdf(ratio / bound, df1, df2)),
        ci=(float(ratio / hi_q), float(ratio / lo_q)),
    )


def f_power(rho: float, df_of, alpha: float, side: str, bound: float = 1.0):
    """Power of the one-sided tests of ``f_ratio_tests`` against ``bound`` when the true
    variance ratio is ``rho``: side "above" (rho > bound) or "below"; ``df_of(n)`` gives
    (df1, df2) at n trials."""

    def power(n):
        df1, df2 = df_of(np.asarray(n, dtype=float))
        f = sps.f
        if side == "above":
            return f.sf(bound * f.ppf(1 - alpha, df1, df2) / rho, df1, df2)
        return f.cdf(bound * f.ppf(alpha, df1, df2) / rho, df1, df2)

    return power
