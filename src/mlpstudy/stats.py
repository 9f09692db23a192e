"""Per-cell paired comparison of backends: ``results/comparison.csv``.

One row per (learning rate, batch size, metric, pair of backends). For each backend of the
pair: mean, sample standard deviation and t confidence interval over trials. For the pair:
the per-trial difference ``a - b`` (runs paired by trial index), its mean, standard deviation
and t confidence interval, the paired t-test, Cohen's d_z, and the p-value adjusted for
multiple comparisons across the grid (Holm by default). Column meanings: ``COLUMNS``.

Why a paired t-test: with ``shared_start`` on, trial k of every backend starts from the same
weights and sees the same batches, so the difference by trial removes the initialisation and
shuffling noise the two runs share. (With ``shared_start`` off the pairing is arbitrary but
still valid: differences of independent runs are independent, the test only loses power.)
The Wilcoxon signed-rank test is not used: with 3 trials its smallest attainable two-sided
p-value is 0.25, so it could never reject at 0.05; with the study's few trials the t-test on
the differences is the only paired test that can say anything.

Diverged runs (``diverged`` true) are kept for accuracy: their low accuracy is what that
hyperparameter pair produced, and dropping them would flatter the backend that diverges.
Their training time is left out (set to NaN): training stops at the epoch the loss became
non-finite, so the time covers fewer epochs. Values that are not finite are dropped
pairwise, and ``n_diverged_*`` reports how many runs of the cell diverged.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from mlpstudy.defaults import ALPHA, CONFIDENCE, CORRECTION  # noqa: E402

METRICS = ("test_accuracy", "training_time_s")
CELL = ("learning_rate", "batch_size")
# Accuracies are fractions of the test set; one backend may store them as float32 (an
# identical 0.6416667 becomes 0.64166665077), and a paired t-test on such rounding noise
# reports t = 4. Rounded to 6 decimals (far below 1 / 10 000 images) before any statistic.
ACCURACY_DECIMALS = 6
REQUIRED = ("model", "learning_rate", "batch_size", "trial", "training_time_s", "test_accuracy")
TEST_NAME = "paired t-test (scipy.stats.ttest_rel), two-sided"

COLUMNS = {
    "learning_rate": "learning rate of the cell",
    "batch_size": "batch size of the cell",
    "metric": "test_accuracy (fraction) or training_time_s (seconds)",
    "backend_a": "first backend of the pair (alphabetical order)",
    "backend_b": "second backend of the pair",
    "n_a": "runs of backend a with a finite value",
    "n_b": "runs of backend b with a finite value",
    "n_diverged_a": "runs of backend a in this cell flagged diverged (kept in the statistics)",
    "n_diverged_b": "runs of backend b in this cell flagged diverged",
    "mean_a": "mean over trials, backend a",
    "sd_a": "sample standard deviation (ddof=1) over trials, backend a; NaN with one trial",
    "ci_low_a": "lower end of the t confidence interval of mean_a",
    "ci_high_a": "upper end of the t confidence interval of mean_a",
    "mean_b": "mean over trials, backend b",
    "sd_b": "sample standard deviation over trials, backend b",
    "ci_low_b": "lower end of the t confidence interval of mean_b",
    "ci_high_b": "upper end of the t confidence interval of mean_b",
    "n_pairs": "trials present (finite) in both backends: the paired sample size",
    "mean_diff": "mean of the per-trial difference a - b",
    "sd_diff": "standard deviation of the per-trial differences",
    "ci_low_diff": "lower end of the t confidence interval of mean_diff",
    "ci_high_diff": "upper end of the t confidence interval of mean_diff",
    "ratio_of_means": "mean_a / mean_b (for time: how many times slower a is than b)",
    "t_stat": "paired t statistic, mean_diff / (sd_diff / sqrt(n_pairs))",
    "df": "degrees of freedom, n_pairs - 1",
    "p_value": "two-sided p-value of the paired t-test; NaN with fewer than 2 pairs",
    "p_adjusted": "p_value adjusted across the cells of the grid, per (metric, pair)",
    "cohen_dz": "paired effect size mean_diff / sd_diff (Cohen's d_z)",
    "significant": "p_adjusted < alpha",
    "test": "name of the test",
    "correction": "name of the multiple-comparison correction",
}


def load_runs(path: str | Path) -> pd.DataFrame:
    """Read ``tf_vs_np.csv``; unknown extra columns are kept and ignored."""
    table = pd.read_csv(path)
    return check_runs(table)


def check_runs(table: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"run table lacks column(s) {missing}; has {list(table.columns)}")
    table = table.copy()
    table["model"] = table["model"].astype(str)
    table["learning_rate"] = table["learning_rate"].astype(float)
    table["batch_size"] = table["batch_size"].astype(int)
    table["trial"] = table["trial"].astype(int)
    for col in ("training_time_s", "test_accuracy"):
        table[col] = pd.to_numeric(table[col], errors="coerce").astype(float)
    table["test_accuracy"] = table["test_accuracy"].round(ACCURACY_DECIMALS)
    if "diverged" in table.columns:
        table["diverged"] = table["diverged"].map(_as_bool).astype(bool)
    else:
        table["diverged"] = False
    # a diverged run stops at the epoch its loss became non-finite (backends/loop.py): its
    # time covers fewer epochs than the others', so it is left out of time statistics
    table.loc[table["diverged"], "training_time_s"] = np.nan
    dup = table.duplicated(["model", *CELL, "trial"], keep=False)
    if dup.any():
        first = table.loc[dup, ["model", *CELL, "trial"]].iloc[0].to_dict()
        raise ValueError(f"run table has {int(dup.sum())} rows for the same run, e.g. {first}")
    return table


def _as_bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value) if pd.notna(value) else False


def mean_ci(values, confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """(mean, sample sd, ci_low, ci_high) of the finite values; t interval on n - 1 df."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = x.size
    if n == 0:
        return (np.nan,) * 4
    mean = float(x.mean())
    if n < 2:
        return mean, np.nan, np.nan, np.nan
    sd = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sd / np.sqrt(n)
    return mean, sd, mean - half, mean + half


def _degenerate(x: np.ndarray) -> bool:
    """All values equal up to rounding: the t statistic is 0/0 or +-inf."""
    return float(np.ptp(x)) <= 1e-12 * max(1.0, float(np.abs(x).max()))


def one_sample_p(values, popmean: float = 0.0, alternative: str = "two-sided") -> float:
    """p-value of ``scipy.stats.ttest_1samp``; NaN with < 2 finite values.

    When every value is the same (no spread), the limit of the t-test is used: p = 0 if the
    common value lies strictly on the alternative's side of ``popmean``, else p = 1.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return np.nan
    if _degenerate(x):
        d = float(x.mean()) - popmean
        tol = 1e-12 * max(1.0, abs(popmean))
        if alternative == "greater":
            return 0.0 if d > tol else 1.0
        if alternative == "less":
            return 0.0 if d < -tol else 1.0
        return 0.0 if abs(d) > tol else 1.0
    return float(sps.ttest_1samp(x, popmean, alternative=alternative).pvalue)


def tost_p(values, margin: float) -> float:
    """Two one-sided t-tests: p-value for "the mean lies within (-margin, +margin)"."""
    return max(one_sample_p(values, -margin, "greater"), one_sample_p(values, margin, "less"))


def beyond_p(values, margin: float) -> float:
    """p-value for "the mean lies outside [-margin, +margin]".

    The larger of the two one-sided tests (mean > margin, mean < -margin) is taken in the
    direction the data point to, doubled because that direction was chosen after looking.
    """
    p = min(one_sample_p(values, margin, "greater"), one_sample_p(values, -margin, "less"))
    return min(1.0, 2 * p) if np.isfinite(p) else np.nan


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


def paired(a: pd.Series, b: pd.Series, confidence: float = CONFIDENCE) -> dict:
    """Paired statistics of two per-trial series (index: trial), a - b."""
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    diff = (both["a"] - both["b"]).to_numpy()
    n = diff.size
    mean, sd, lo, hi = mean_ci(diff, confidence)
    out = dict(
        n_pairs=n,
        mean_diff=mean,
        sd_diff=sd,
        ci_low_diff=lo,
        ci_high_diff=hi,
        t_stat=np.nan,
        df=n - 1 if n >= 1 else np.nan,
        p_value=np.nan,
        cohen_dz=np.nan,
    )
    if n < 2:
        return out
    if _degenerate(diff):
        # identical differences: 0/0 when they are all zero (no evidence of a difference)
        zero = abs(mean) <= 1e-12 * max(1.0, float(np.abs(both.to_numpy()).max()))
        out.update(
            t_stat=0.0 if zero else np.sign(mean) * np.inf,
            p_value=1.0 if zero else 0.0,
            cohen_dz=0.0 if zero else np.sign(mean) * np.inf,
            sd_diff=0.0,
            ci_low_diff=mean,
            ci_high_diff=mean,
        )
        return out
    res = sps.ttest_rel(both["a"], both["b"])
    out.update(t_stat=float(res.statistic), p_value=float(res.pvalue), cohen_dz=mean / sd)
    return out


def compare_cells(
    table: pd.DataFrame,
    metrics=METRICS,
    confidence: float = CONFIDENCE,
    alpha: float = ALPHA,
    correction: str = CORRECTION,
) -> pd.DataFrame:
    """The per-cell comparison of every pair of backends; columns as in ``COLUMNS``.

    The correction's family is one (metric, pair of backends) across all cells of the grid.
    """
    table = check_runs(table)
    backends = sorted(table["model"].unique())
    rows = []
    for (lr, bs), cell in table.groupby(list(CELL), sort=True):
        by_model = {m: g.set_index("trial") for m, g in cell.groupby("model")}
        for a, b in itertools.combinations(backends, 2):
            ga = by_model.get(a, _EMPTY)
            gb = by_model.get(b, _EMPTY)
            for metric in metrics:
                xa = _series(ga, metric)
                xb = _series(gb, metric)
                ma, sa, la, ha = mean_ci(xa, confidence)
                mb, sb, lb, hb = mean_ci(xb, confidence)
                rows.append(
                    dict(
                        learning_rate=lr,
                        batch_size=bs,
                        metric=metric,
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
                        **paired(xa, xb, confidence),
                        ratio_of_means=ma / mb if mb else np.nan,
                    )
                )
    out = pd.DataFrame(
        rows,
        columns=[
            c for c in COLUMNS if c not in ("p_adjusted", "significant", "test", "correction")
        ],
    )
    if out.empty:
        out = out.assign(p_adjusted=[], significant=[], test=[], correction=[])
        return out[list(COLUMNS)]
    out["p_adjusted"] = np.nan
    for _, idx in out.groupby(["metric", "backend_a", "backend_b"]).groups.items():
        out.loc[idx, "p_adjusted"] = adjust(out.loc[idx, "p_value"].to_numpy(), correction)
    out["significant"] = out["p_adjusted"] < alpha
    out["test"] = TEST_NAME
    out["correction"] = {"holm": "Holm", "bh": "Benjamini-Hochberg"}.get(correction, correction)
    out["metric"] = pd.Categorical(out["metric"], categories=list(metrics))
    out = out.sort_values(["metric", "backend_a", "backend_b", "learning_rate", "batch_size"])
    out["metric"] = out["metric"].astype(str)
    return out[list(COLUMNS)].reset_index(drop=True)


_EMPTY = pd.DataFrame(
    {"training_time_s": [], "test_accuracy": [], "diverged": []}, index=pd.Index([], name="trial")
)


def _series(group: pd.DataFrame, metric: str) -> pd.Series:
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
