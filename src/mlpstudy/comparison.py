"""The per-cell comparison of the backends: ``{STUDY}/comparison.csv``.

One row per (learning rate, batch size, metric, pair of backends). Accuracy is compared as a
difference (a - b); training, step and steady-epoch time on the log scale, as a ratio a / b
(geometric mean of the per-trial ratios), because timings vary multiplicatively. Runs are
paired by trial (trial k of every backend shares its seed and, with ``start: shared``, its
initial weights and batch order). Column meanings: ``COLUMNS``; every row names the study's
start mode.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from mlpstudy.defaults import ALPHA, CONFIDENCE, CORRECTION
from mlpstudy.stats import (
    CELL,
    METRICS,
    accuracy_step,
    adjust,
    check_runs,
    load_runs,
    mean_ci,
    one_sample_p,
    start_of,
    summary,
    t_interval,
)

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
    backends = sorted(table["backend"].unique())
    rows = []
    for (lr, bs), cell in table.groupby(list(CELL), sort=True):
        by_backend = {m: g.set_index("trial") for m, g in cell.groupby("backend")}
        for a, b in itertools.combinations(backends, 2):
            ga, gb = by_backend.get(a, _EMPTY), by_backend.get(b, _EMPTY)
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
