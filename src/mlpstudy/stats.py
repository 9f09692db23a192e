"""The statistics' building blocks: the run table's checks, one-sample t-tests, TOST and the
"beyond a margin" test, Holm's and Benjamini-Hochberg's adjustments, and power.

* Every t-test takes a **resolution floor** on the standard deviation (``sd_floor``): a
  quantity measured in steps (test accuracy moves in steps of 1 / N_test) is never taken
  to have less spread than one step would give it, so three identical values give a
  finite t statistic, not p = 0.
* Power of those tests at a given number of trials (TOST's exactly), the trials needed for
  a target power, and the interval of a standard deviation estimated on few degrees of
  freedom (with 3 trials the power figures are themselves uncertain: ``sd_interval``).

The spread across trials (claim 8) is ``mlpstudy.spread``, the per-cell comparison
``{STUDY}/comparison.csv`` is ``mlpstudy.comparison``.

Diverged runs (``diverged`` true) are kept for accuracy (their low accuracy is what that
hyperparameter pair produced; dropping them would flatter the backend that diverges), and
left out of time (they stop at the epoch the loss became non-finite, so their time covers
fewer epochs); so are contended runs (``contended`` true, where the table has the column).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from mlpstudy import aggregate, runs
from mlpstudy.defaults import CONFIDENCE, CORRECTION

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
#: Every time of a run's loop in the table: blanked where the run diverged or was contended.
LOOP_TIMES = (*TIME_METRICS, "eval_time_s", "steady_step_s")
# Accuracies are fractions of the test set; one backend may store them as float32 (an
# identical 0.6416667 becomes 0.64166665077). Rounded to 6 decimals before any statistic.
ACCURACY_DECIMALS = 6
# Largest test set whose step 1 / N_test is looked for in the accuracies (accuracy_step)
MAX_TEST_SIZE = 100_000
REQUIRED = ("backend", "learning_rate", "batch_size", "trial", "training_time_s", "test_accuracy")
# The axes a study holds constant (mlpstudy.runs); a per-study table has one value of each
STUDY_AXES = tuple(runs.STUDY_COLUMNS)
MAX_TRIALS = 1000  # trials_needed searches up to here


# --------------------------------------------------------------------------- the run table


def load_runs(path: str | Path) -> pd.DataFrame:
    """Read a run table (``{STUDY}/runs.csv``, through ``aggregate.read_table``); unknown
    extra columns are kept and ignored."""
    return check_runs(aggregate.read_table(path))


def check_runs(table: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"run table lacks column(s) {missing}; has {list(table.columns)}")
    table = table.copy()
    table["backend"] = table["backend"].astype(str)
    table["learning_rate"] = table["learning_rate"].astype(float)
    table["batch_size"] = table["batch_size"].astype(int)
    table["trial"] = table["trial"].astype(int)
    for col in ("test_accuracy", *LOOP_TIMES):
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
    for col in LOOP_TIMES:
        if col in table.columns:
            table.loc[slow, col] = np.nan
    for axis in STUDY_AXES:
        if axis in table.columns and table[axis].nunique(dropna=False) > 1:
            raise ValueError(
                f"run table mixes studies: {axis} takes {sorted(map(str, table[axis].unique()))};"
                f" the statistics judge one study (one {', '.join(STUDY_AXES)})"
            )
    dup = table.duplicated(["backend", *CELL, "trial"], keep=False)
    if dup.any():
        first = table.loc[dup, ["backend", *CELL, "trial"]].iloc[0].to_dict()
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
