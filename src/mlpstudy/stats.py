"""The statistics' building blocks and the per-cell comparison ``{STUDY}/comparison.csv``.

Building blocks (used by ``mlpstudy.claims`` and ``mlpstudy.starts``):

* one-sample t-tests on per-trial contrasts, TOST and the "beyond a margin" test, each with a
  **resolution floor** on the standard deviation (``sd_floor``): a quantity measured in steps
  (test accuracy moves in steps of 1 / N_test) is never taken to have less spread than one
  step would give it, so three identical values give a finite t statistic, not p = 0;
* Holm's and Benjamini-Hochberg's adjustments;
* power of those tests at a given number of trials, and the trials needed for a target power;
* the variance-components comparison of two backends' spread across trials (claim 8): a
  two-way layout (cells x trials) with a random trial effect shared by the cells of a trial,
  the pooled within-cell variance as the estimate and Satterthwaite's degrees of freedom,
  which fall to T - 1 when the trial effect dominates (the trial is then the replicate) and
  rise to C (T - 1) when it is absent.

The per-cell comparison: one row per (learning rate, batch size, metric, pair of backends).
Accuracy is compared as a difference (a - b); training and step time on the log scale, as a
ratio a / b (geometric mean of the per-trial ratios), because timings vary multiplicatively.
Runs are paired by trial (trial k of every backend shares its seed and, with
``start: shared``, its initial weights and batch order). Column meanings: ``COLUMNS``.

Diverged runs (``diverged`` true) are kept for accuracy (their low accuracy is what that
hyperparameter pair produced; dropping them would flatter the backend that diverges), and
left out of time (they stop at the epoch the loss became non-finite, so their time covers
fewer epochs). ``n_diverged_*`` counts them.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from mlpstudy.defaults import ALPHA, CONFIDENCE, CORRECTION

CELL = ("learning_rate", "batch_size")
# The metrics compared per cell, with the scale of the comparison: "difference" (a - b) or
# "log" (log a - log b, shown as the ratio a / b). step_time_s and steady_epoch_s (the median
# epoch time after the first) only where the table has them.
METRICS = {
    "test_accuracy": "difference",
    "training_time_s": "log",
    "step_time_s": "log",
    "steady_epoch_s": "log",
}
TIME_METRICS = ("training_time_s", "step_time_s", "steady_epoch_s")
# Accuracies are fractions of the test set; one backend may store them as float32 (an
# identical 0.6416667 becomes 0.64166665077). Rounded to 6 decimals before any statistic.
ACCURACY_DECIMALS = 6
# Largest test set whose step 1 / N_test is looked for in the accuracies (accuracy_step)
MAX_TEST_SIZE = 100_000
REQUIRED = ("model", "learning_rate", "batch_size", "trial", "training_time_s", "test_accuracy")
# The axes a study holds constant (mlpstudy.runs); a per-study table has one value of each
STUDY_AXES = ("dataset", "optimizer", "start", "threads")
MAX_TRIALS = 1000  # trials_needed searches up to here

COLUMNS = {
    "start": "the study's start mode (shared / independent): the setting of every row; with "
    "a shared start an accuracy comparison asks whether the implementations compute the "
    "same thing from the same start",
    "learning_rate": "learning rate of the cell",
    "batch_size": "batch size of the cell",
    "metric": "test_accuracy (fraction), training_time_s, step_time_s or steady_epoch_s (seconds)",
    "scale": "difference: a - b; log: log(a) - log(b), also shown as the ratio a / b",
    "backend_a": "first backend of the pair (alphabetical order)",
    "backend_b": "second backend of the pair",
    "n_a": "runs of backend a with a finite value",
    "n_b": "runs of backend b with a finite value",
    "n_diverged_a": "runs of backend a in this cell flagged diverged (kept for accuracy only)",
    "n_diverged_b": "runs of backend b in this cell flagged diverged",
    "mean_a": "mean over trials, backend a (in the metric's unit)",
    "sd_a": "sample standard deviation (ddof=1) over trials, backend a; NaN with one trial",
    "ci_low_a": "lower end of the 95 % t interval of mean_a",
    "ci_high_a": "upper end of the 95 % t interval of mean_a",
    "mean_b": "mean over trials, backend b",
    "sd_b": "sample standard deviation over trials, backend b",
    "ci_low_b": "lower end of the 95 % t interval of mean_b",
    "ci_high_b": "upper end of the 95 % t interval of mean_b",
    "n_pairs": "trials present (finite) in both backends: the paired sample size",
    "mean_diff": "mean of the per-trial difference on the metric's scale (a - b or log a/b)",
    "sd_diff": "standard deviation of the per-trial differences, at least sd_floor",
    "ci_low_diff": "lower end of the 95 % t interval of mean_diff",
    "ci_high_diff": "upper end of the 95 % t interval of mean_diff",
    "ratio": "exp(mean_diff) for log-scale metrics: a / b (for time: how many times slower a "
    "is); empty for accuracy",
    "ci_low_ratio": "exp(ci_low_diff) for log-scale metrics",
    "ci_high_ratio": "exp(ci_high_diff) for log-scale metrics",
    "t_stat": "paired t statistic, mean_diff / (sd_diff / sqrt(n_pairs))",
    "df": "degrees of freedom, n_pairs - 1",
    "p_value": "two-sided p-value of the paired t-test; NaN with fewer than 2 pairs, or with "
    "no spread and no known resolution",
    "p_adjusted": "p_value adjusted across the cells of the grid, per (metric, pair)",
    "significant": "p_adjusted < alpha",
    "t_critical": "|t| a cell needs to be significant at the strictest step of the correction",
    "sd_floor": "resolution floor of sd_diff: one accuracy step (1 / N_test) in each backend "
    "(sqrt(2) / N_test); 0 for time",
    "test": "name of the test",
    "correction": "name of the multiple-comparison correction and its family",
}
TEST_NAME = "paired t-test on the per-trial differences (log scale for time), two-sided"


# --------------------------------------------------------------------------- the run table


def load_runs(path: str | Path) -> pd.DataFrame:
    """Read a run table (``{STUDY}/runs.csv``); unknown extra columns are kept and ignored."""
    return check_runs(pd.read_csv(path))


def check_runs(table: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"run table lacks column(s) {missing}; has {list(table.columns)}")
    table = table.copy()
    table["model"] = table["model"].astype(str)
    table["learning_rate"] = table["learning_rate"].astype(float)
    table["batch_size"] = table["batch_size"].astype(int)
    table["trial"] = table["trial"].astype(int)
    for col in ("training_time_s", "test_accuracy", *TIME_METRICS[1:], "eval_time_s"):
        if col in table.columns:
            table[col] = pd.to_numeric(table[col], errors="coerce").astype(float)
    table["test_accuracy"] = table["test_accuracy"].round(ACCURACY_DECIMALS)
    if "diverged" in table.columns:
        table["diverged"] = table["diverged"].map(_as_bool).astype(bool)
    else:
        table["diverged"] = False
    # a diverged run stops at the epoch its loss became non-finite (backends/loop.py): its
    # times cover fewer epochs than the others', so they are left out of time statistics
    # a contended run's timed loop shared its cores even after re-timing (aggregate.py):
    # its times are not the backend's, so they too are left out; without the column every
    # time counts, as before the column existed
    slow = table["diverged"].copy()
    if "contended" in table.columns:
        table["contended"] = table["contended"].map(_as_bool).astype(bool)
        slow |= table["contended"]
    for col in (*TIME_METRICS, "eval_time_s"):
        if col in table.columns:
            table.loc[slow, col] = np.nan
    for axis in STUDY_AXES:
        if axis in table.columns and table[axis].nunique(dropna=False) > 1:
            raise ValueError(
                f"run table mixes studies: {axis} takes {sorted(map(str, table[axis].unique()))};"
                " the statistics judge one study (one dataset, optimizer, start, threads)"
            )
    dup = table.duplicated(["model", *CELL, "trial"], keep=False)
    if dup.any():
        first = table.loc[dup, ["model", *CELL, "trial"]].iloc[0].to_dict()
        raise ValueError(f"run table has {int(dup.sum())} rows for the same run, e.g. {first}")
    return table


def _as_bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value) if pd.notna(value) else False


def start_modes(table: pd.DataFrame) -> list[str]:
    """The start modes of a run table ("shared" / "independent"), also from a legacy
    ``shared_start`` column."""
    if "start" in table.columns:
        return sorted(map(str, table["start"].dropna().unique()))
    if "shared_start" in table.columns:
        shared = table["shared_start"].map(_as_bool)
        return sorted({"shared" if s else "independent" for s in shared})
    return []


def start_of(table: pd.DataFrame) -> str:
    """The study's start mode as one word ("not recorded" without a start column)."""
    return ", ".join(start_modes(table)) or "not recorded"


def accuracy_step(values, max_test_size: int = MAX_TEST_SIZE) -> float:
    """The step 1 / N in which the accuracies move: N is the smallest test-set size for which
    every value is a whole number of correct images (exactly, else within the 6-decimal
    rounding).

    Every dataset here has 10 000 test images (step 1e-4); a tiny synthetic test set has a
    coarser step. Without any finite value, NaN; if no N up to ``max_test_size`` fits, the
    rounding unit 1e-6.
    """
    x = np.unique(np.round(_finite(values), ACCURACY_DECIMALS))
    if x.size == 0:
        return np.nan
    # exact first (N dividing 10^6 leaves k / N unrounded), then within the rounding
    for tol in (0.0, 0.5 * 10.0**-ACCURACY_DECIMALS):
        n = np.arange(1, max_test_size + 1, dtype=float)  # candidates, filtered by each value
        for v in x:
            k = v * n
            n = n[np.abs(k - np.round(k)) <= n * (tol + 1e-12)]
            if n.size == 0:
                break
        if n.size:
            return float(1.0 / n[0])
    return 10.0**-ACCURACY_DECIMALS


# --------------------------------------------------------------------------- one sample


def _finite(values) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def mean_ci(values, confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """(mean, sample sd, ci_low, ci_high) of the finite values; t interval on n - 1 df."""
    x = _finite(values)
    n = x.size
    if n == 0:
        return (np.nan,) * 4
    mean = float(x.mean())
    if n < 2:
        return mean, np.nan, np.nan, np.nan
    sd = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sd / np.sqrt(n)
    return mean, sd, mean - half, mean + half


def summary(values, sd_floor: float = 0.0) -> tuple[int, float, float]:
    """(n, mean, sd) of the finite values, the sd raised to ``sd_floor`` (NaN if n < 2)."""
    x = _finite(values)
    if x.size == 0:
        return 0, np.nan, np.nan
    if x.size < 2:
        return 1, float(x.mean()), np.nan
    return int(x.size), float(x.mean()), max(float(x.std(ddof=1)), float(sd_floor))


def summaries(x: np.ndarray, sd_floor: float = 0.0):
    """Column-wise ``summary`` of x[value, column] (NaN = missing): (n, mean, sd) arrays,
    the sd raised to ``sd_floor`` (NaN where n < 2)."""
    x = np.asarray(x, dtype=float)
    ok = np.isfinite(x)
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.where(ok, x, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)
        dev = np.where(ok, x - mean, 0.0)
        sd = np.sqrt((dev**2).sum(axis=0) / np.maximum(n - 1, 1))
    sd = np.where(n >= 2, np.maximum(sd, sd_floor), np.nan)
    return n, mean, sd


def t_p(mean, sd, n, popmean, alternative: str):
    """One-sided t-test p-values from summaries (vectorised ``one_sample_p``): NaN where
    n < 2 or the sd is not positive."""
    mean, sd, n = (np.asarray(v, dtype=float) for v in (mean, sd, n))
    ok = (n >= 2) & (sd > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (mean - popmean) / (sd / np.sqrt(n))
        p = sps.t.sf(t, n - 1) if alternative == "greater" else sps.t.cdf(t, n - 1)
    return np.where(ok, p, np.nan)


def t_interval(values, confidence: float, sd_floor: float = 0.0) -> tuple[float, float]:
    """Two-sided t interval of the mean at ``confidence``, with the floored sd."""
    n, mean, sd = summary(values, sd_floor)
    if n < 2 or not sd > 0:
        return (mean, mean) if n >= 2 else (np.nan, np.nan)
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sd / np.sqrt(n)
    return mean - half, mean + half


def one_sample_p(values, popmean=0.0, alternative="two-sided", sd_floor=0.0) -> float:
    """p-value of the one-sample t-test of the finite ``values`` against ``popmean``.

    The sd is at least ``sd_floor`` (the spread the measurement's resolution alone gives).
    NaN with fewer than 2 values, or with no spread at all and no floor (t undefined).
    """
    n, mean, sd = summary(values, sd_floor)
    if n < 2 or not sd > 0:
        return np.nan
    t = (mean - popmean) / (sd / np.sqrt(n))
    if alternative == "greater":
        return float(sps.t.sf(t, n - 1))
    if alternative == "less":
        return float(sps.t.cdf(t, n - 1))
    return float(min(1.0, 2 * sps.t.sf(abs(t), n - 1)))


def tost_p(values, margin: float, sd_floor: float = 0.0) -> float:
    """Two one-sided t-tests: p-value for "the mean lies within (-margin, +margin)"."""
    return max(
        one_sample_p(values, -margin, "greater", sd_floor),
        one_sample_p(values, margin, "less", sd_floor),
    )


def beyond_p(values, margin: float, sd_floor: float = 0.0) -> float:
    """p-value for "the mean lies outside [-margin, +margin]".

    The one-sided test in the direction the data point to, doubled because that direction
    was chosen after looking: it rejects at alpha when the two-sided 1 - alpha interval
    lies wholly beyond one end of the margin.
    """
    p = min(
        one_sample_p(values, margin, "greater", sd_floor),
        one_sample_p(values, -margin, "less", sd_floor),
    )
    return min(1.0, 2 * p) if np.isfinite(p) else np.nan


# --------------------------------------------------------------------------- corrections


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment (controls the family-wise error rate); NaN stays NaN.

    Sorted ascending, p_(i) becomes max_{j<=i} min(1, (m - j + 1) p_(j)), m = number of
    finite p-values.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def benjamini_hochberg(pvalues) -> np.ndarray:
    """Benjamini-Hochberg (false discovery rate) via scipy; NaN stays NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = sps.false_discovery_control(p[ok], method="bh")
    return out


def adjust(pvalues, method: str = CORRECTION) -> np.ndarray:
    if method == "holm":
        return holm(pvalues)
    if method in ("bh", "fdr_bh"):
        return benjamini_hochberg(pvalues)
    raise ValueError(f"unknown correction {method!r}: use 'holm' or 'bh'")


# --------------------------------------------------------------------------- power


def power_one_sided(delta, sd: float, n, alpha: float):
    """Power of a one-sided one-sample t-test at level ``alpha`` with ``n`` values, when the
    true mean lies ``delta`` beyond the null value in the tested direction (noncentral t)."""
    n = np.asarray(n, dtype=float)
    df = n - 1
    crit = sps.t.ppf(1 - alpha, df)
    return sps.nct.sf(crit, df, np.asarray(delta) * np.sqrt(n) / sd)


def power_tost(delta, sd: float, n, margin: float, alpha: float, nodes: int = 200):
    """Power of TOST within +-margin at level ``alpha`` with ``n`` values when the true mean
    is ``delta``: exact, by integrating over the sample sd.

    Given the sample sd s, both one-sided tests reject exactly when the mean lies in
    (-margin + c s / sqrt(n), margin - c s / sqrt(n)), c the t quantile; the mean is normal
    and independent of s, and s^2 is sd^2 chi^2_(n-1) / (n - 1): the integral over s is a
    mean over ``nodes`` equally likely quantiles of that chi-square.
    """
    n = np.atleast_1d(np.asarray(n, dtype=float))
    delta = float(delta)
    df = n - 1
    u = (np.arange(nodes) + 0.5) / nodes
    s = sd * np.sqrt(sps.chi2.ppf(u[None, :], df[:, None]) / df[:, None])  # [n, node]
    se = sd / np.sqrt(n)[:, None]
    half = margin - sps.t.ppf(1 - alpha, df)[:, None] * s / np.sqrt(n)[:, None]
    p = sps.norm.cdf((half - delta) / se) - sps.norm.cdf((-half - delta) / se)
    out = np.where(half > 0, p, 0.0).mean(axis=1)
    return out


def sd_interval(sd: float, df: float, confidence: float) -> tuple[float, float]:
    """Two-sided interval of a standard deviation estimated on ``df`` degrees of freedom
    (chi-square): with 2 df the 90 % interval is 0.58 to 4.4 times the estimate."""
    if not (np.isfinite(sd) and df > 0):
        return np.nan, np.nan
    lo_q, hi_q = sps.chi2.ppf([0.5 + confidence / 2, 0.5 - confidence / 2], df)
    return float(sd * np.sqrt(df / lo_q)), float(sd * np.sqrt(df / hi_q))


def trials_needed(power_of, target: float, n_max: int = MAX_TRIALS) -> int | None:
    """Smallest number of trials n in [2, n_max] with ``power_of(n) >= target``; None if
    even n_max falls short. ``power_of`` takes an array of trial counts and rises with n:
    one call on a coarse grid finds the bracket, bisection the number."""

    def powers(n) -> np.ndarray:
        with np.errstate(all="ignore"):
            p = np.asarray(power_of(np.asarray(n)), dtype=float).ravel()
        return np.where(np.isfinite(p), p, -1.0)

    coarse = np.unique(np.geomspace(2, n_max, 24).round().astype(int))
    ok = powers(coarse) >= target
    if not ok.any():
        return None
    k = int(np.argmax(ok))
    if k == 0:
        return int(coarse[0])
    lo, hi = int(coarse[k - 1]), int(coarse[k])  # not ok at lo, ok at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if powers([mid])[0] >= target else (mid, hi)
    return hi


# --------------------------------------------------------------------------- spread


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


# --------------------------------------------------------------------------- per cell


def paired(a: pd.Series, b: pd.Series, confidence=CONFIDENCE, sd_floor=0.0, log=False) -> dict:
    """Paired statistics of two per-trial series (index: trial): a - b, or log a - log b."""
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner")
    if log:
        both = np.log(both.where(both > 0))
    both = both.dropna()
    diff = (both["a"] - both["b"]).to_numpy()
    n, mean, sd = summary(diff, sd_floor)
    lo, hi = t_interval(diff, confidence, sd_floor)
    t_stat = mean / (sd / np.sqrt(n)) if n >= 2 and sd > 0 else np.nan
    return dict(
        n_pairs=n,
        mean_diff=mean,
        sd_diff=sd,
        ci_low_diff=lo,
        ci_high_diff=hi,
        t_stat=t_stat,
        df=n - 1 if n >= 1 else np.nan,
        p_value=one_sample_p(diff, 0.0, "two-sided", sd_floor),
    )


def compare_cells(
    table: pd.DataFrame,
    metrics=None,
    confidence: float = CONFIDENCE,
    alpha: float = ALPHA,
    correction: str = CORRECTION,
    step: float | None = None,
) -> pd.DataFrame:
    """The per-cell comparison of every pair of backends; columns as in ``COLUMNS``.

    The correction's family is one (metric, pair of backends) across all cells of the grid.
    ``step``: the accuracy's resolution 1 / N_test (default: inferred, ``accuracy_step``).
    """
    table = check_runs(table)
    start = start_of(table)
    if metrics is None:
        metrics = [m for m in METRICS if m in table.columns and table[m].notna().any()]
        metrics = metrics or ["test_accuracy"]
    if step is None:
        step = accuracy_step(table["test_accuracy"])
    acc_floor = float(np.sqrt(2) * step) if np.isfinite(step) else 0.0
    backends = sorted(table["model"].unique())
    rows = []
    for (lr, bs), cell in table.groupby(list(CELL), sort=True):
        by_model = {m: g.set_index("trial") for m, g in cell.groupby("model")}
        for a, b in itertools.combinations(backends, 2):
            ga, gb = by_model.get(a, _EMPTY), by_model.get(b, _EMPTY)
            for metric in metrics:
                log = METRICS[metric] == "log"
                floor = 0.0 if log else acc_floor
                xa, xb = _series(ga, metric), _series(gb, metric)
                ma, sa, la, ha = mean_ci(xa, confidence)
                mb, sb, lb, hb = mean_ci(xb, confidence)
                pair = paired(xa, xb, confidence, floor, log)
                ratio = {
                    k: np.exp(pair[d]) if log else np.nan
                    for k, d in (
                        ("ratio", "mean_diff"),
                        ("ci_low_ratio", "ci_low_diff"),
                        ("ci_high_ratio", "ci_high_diff"),
                    )
                }
                rows.append(
                    dict(
                        start=start,
                        learning_rate=lr,
                        batch_size=bs,
                        metric=metric,
                        scale=METRICS[metric],
                        backend_a=a,
                        backend_b=b,
                        n_a=int(np.isfinite(xa).sum()),
                        n_b=int(np.isfinite(xb).sum()),
                        n_diverged_a=int(ga["diverged"].sum()),
                        n_diverged_b=int(gb["diverged"].sum()),
                        mean_a=ma,
                        sd_a=sa,
                        ci_low_a=la,
                        ci_high_a=ha,
                        mean_b=mb,
                        sd_b=sb,
                        ci_low_b=lb,
                        ci_high_b=hb,
                        **pair,
                        **ratio,
                        sd_floor=floor,
                    )
                )
    late = ("p_adjusted", "significant", "t_critical", "test", "correction")
    out = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in late])
    for col in late:
        out[col] = pd.Series(dtype=object if col in ("test", "correction") else float)
    if out.empty:
        return out[list(COLUMNS)]
    name = {"holm": "Holm", "bh": "Benjamini-Hochberg"}.get(correction, correction)
    for _, idx in out.groupby(["metric", "backend_a", "backend_b"]).groups.items():
        p = out.loc[idx, "p_value"].to_numpy()
        out.loc[idx, "p_adjusted"] = adjust(p, correction)
        m = int(np.isfinite(p).sum())
        df = out.loc[idx, "df"].max()
        # the strictest step: alpha / m for Holm (and BH's first step), two-sided
        out.loc[idx, "t_critical"] = (
            float(sps.t.ppf(1 - alpha / (2 * m), df)) if m and df >= 1 else np.nan
        )
    out["significant"] = out["p_adjusted"] < alpha
    out["test"] = TEST_NAME
    out["correction"] = f"{name} across the {out.groupby(list(CELL)).ngroups} cells"
    order = {m: i for i, m in enumerate(metrics)}
    out = out.sort_values(
        ["metric", "backend_a", "backend_b", "learning_rate", "batch_size"],
        key=lambda s: s.map(order) if s.name == "metric" else s,
    )
    return out[list(COLUMNS)].reset_index(drop=True)


_EMPTY = pd.DataFrame({m: [] for m in (*METRICS, "diverged")}, index=pd.Index([], name="trial"))


def _series(group: pd.DataFrame, metric: str) -> pd.Series:
    if metric not in group.columns:
        return pd.Series(np.nan, index=group.index)
    return group[metric].astype(float)


def write_comparison(
    table_path,
    out_path,
    alpha: float = ALPHA,
    confidence: float = CONFIDENCE,
    correction: str = CORRECTION,
) -> pd.DataFrame:
    """Read the run table, compare, write the CSV (the rule ``compare``)."""
    result = compare_cells(
        load_runs(table_path), confidence=confidence, alpha=alpha, correction=correction
    )
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    result.to_csv(out_path, index=False)
    return result
