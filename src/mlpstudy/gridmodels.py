"""Whole-grid mixed models beside the per-cell table (statsmodels ``MixedLM``).

One model per quantity, fitted to every run of a study, with a random intercept per trial
(the cells of a trial share their seed and, with a shared start, their start) and one per
backend within a trial (with independent starts each backend's start is its own):

* log(training time) ~ backend x (log2 batch + log10 lr + their product)
  + (1 | trial) + (1 | trial:backend)
* log(step time), the same (optimisation steps only, no per-epoch evaluation)
* logit(test accuracy), the same, on the empirical logit of k correct out of N test images

The predictors are centred on the grid (log2 batch and log10 lr minus their means over the
grid's levels), so a backend's main effect is its difference from NumPy in the middle of the
grid. Reported per backend, with t intervals at ``confidence`` on between-within degrees of
freedom ((T - 1)(K - 1) for a backend's difference, which the trial effects carry; the runs'
for a slope; normal quantiles would be too narrow with 3 trials): the ratio to NumPy (time)
or the odds ratio and the difference in percentage points at NumPy's mean accuracy
(accuracy), and each backend's own factor per doubling of batch size and per 10x learning
rate. The trial-level share (intra-class correlation) says how much of the spread around
the model is shared by the runs of a trial (of a backend). With a single trial, an ordinary
least-squares fit (no trial effect) is used and said so.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from mlpstudy import stats
from mlpstudy.defaults import CONFIDENCE, REFERENCE


@dataclass
class Effect:
    backend: str
    what: str  # e.g. "time ratio to numpy at the grid's centre"
    estimate: float
    low: float
    high: float


@dataclass
class GridModel:
    quantity: str  # "log training time", ...
    formula: str
    n_runs: int
    method: str
    trial_share: float = np.nan
    effects: list[Effect] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _design(runs: pd.DataFrame) -> pd.DataFrame:
    lb = np.log2(runs["batch_size"].astype(float))
    ll = np.log10(runs["learning_rate"].astype(float))
    return runs.assign(
        lb=lb - np.log2(np.unique(runs["batch_size"]).astype(float)).mean(),
        ll=ll - np.log10(np.unique(runs["learning_rate"]).astype(float)).mean(),
    )


def fit(data: pd.DataFrame, y: str, reference: str):
    """Fit y ~ backend x (lb + ll) + (1 | trial) + (1 | trial:backend) (OLS with one trial).

    Returns (result, formula, method, warnings' first lines)."""
    import statsmodels.formula.api as smf

    backends = sorted(data["backend"].unique())
    terms = []
    if data["batch_size"].nunique() > 1:
        terms.append("lb")
    if data["learning_rate"].nunique() > 1:
        terms.append("ll")
    if len(terms) == 2:  # the batch-size effect depends on the learning rate (claim 2)
        terms.append("lb:ll")
    rhs = "1" if not terms else " + ".join(terms)
    if len(backends) > 1:
        factor = f"C(backend, Treatment(reference='{reference}'))"
        rhs = f"{factor} * ({rhs})" if terms else factor
    formula = f"{y} ~ {rhs}"
    notes: list[str] = []
    if data["trial"].nunique() < 2:
        res = smf.ols(formula, data).fit()
        return res, formula, "OLS (one trial: no trial effect can be estimated)", notes
    vc = {"backend": "0 + C(backend)"} if len(backends) > 1 else None
    model = smf.mixedlm(formula, data, groups="trial", re_formula="1", vc_formula=vc)
    res = None
    for method in ("lbfgs", "powell", "nm"):  # the first that converges
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                res = model.fit(reml=True, method=[method])
            except (np.linalg.LinAlgError, ValueError) as exc:
                notes.append(f"{method}: {exc}")
                continue
        if res.converged:
            break
    if res is None:
        raise np.linalg.LinAlgError("; ".join(notes))
    notes = []
    for w in caught:
        text = str(w.message).split("\n")[0]
        if "singular" in text or "boundary" in text:
            text = "a trial variance is estimated at its boundary, 0"
        if text not in notes:
            notes.append(text)
    if not res.converged:
        notes.append("the optimiser did not converge: read the intervals with care")
    re_text = " + (1 | trial)" + (" + (1 | trial:backend)" if vc else "")
    method = f"MixedLM (REML, {method}), random intercepts per trial" + (
        " and per backend within a trial" if vc else ""
    )
    return res, formula + re_text, method, notes


def _combo(res, names: list[str], weights: list[float], confidence: float, df: float):
    """Estimate and t interval (``df`` degrees of freedom) of sum(w * beta[name])."""
    fe = res.fe_params if hasattr(res, "fe_params") else res.params
    cov = res.cov_params().loc[fe.index, fe.index]
    w = pd.Series(0.0, index=fe.index)
    for n, v in zip(names, weights, strict=True):
        if n in w.index:
            w[n] += v
    est = float(w @ fe)
    se = float(np.sqrt(max(w @ cov @ w, 0.0)))
    q = float(sps.t.ppf(0.5 + confidence / 2, df))
    return est, est - q * se, est + q * se


def grid_models(runs: pd.DataFrame, confidence: float = CONFIDENCE, step=None) -> list[GridModel]:
    """The three models of the module docstring, fitted to one study's run table."""
    runs = _design(stats.check_runs(runs))
    backends = sorted(runs["backend"].unique())
    ref = REFERENCE if REFERENCE in backends else backends[0]
    if step is None:
        step = stats.accuracy_step(runs["test_accuracy"])
    n_test = 1.0 / step if step and np.isfinite(step) else 1e6
    k = runs["test_accuracy"].clip(0, 1) * n_test
    runs["y_acc"] = np.log((k + 0.5) / (n_test - k + 0.5))
    out = []
    for col, quantity in (
        ("training_time_s", "log training time"),
        ("step_time_s", "log step time"),
        ("test_accuracy", "logit test accuracy"),
    ):
        if col not in runs.columns or runs[col].notna().sum() < 3:
            continue
        if col == "test_accuracy":
            data = runs.dropna(subset=["y_acc"]).assign(y=lambda d: d["y_acc"])
        else:
            data = runs[runs[col] > 0].assign(y=lambda d, c=col: np.log(d[c]))
        if data.empty:
            continue
        try:
            res, formula, method, notes = fit(data, "y", ref)
        except (ValueError, np.linalg.LinAlgError) as exc:
            out.append(GridModel(quantity, "", len(data), "not fitted", notes=[str(exc)]))
            continue
        m = GridModel(quantity, formula, len(data), method, notes=notes)
        if hasattr(res, "cov_re"):
            trial = float(np.asarray(res.cov_re).ravel()[0]) + float(np.sum(res.vcomp))
            m.trial_share = trial / (trial + float(res.scale))
        trials = data["trial"].nunique()
        # between-within degrees of freedom: a backend's difference varies with the
        # trial-by-backend effects ((T - 1)(K - 1) df), a slope with the runs
        between = max(1, (trials - 1) * max(1, len(backends) - 1))
        within = max(1, len(data) - len(res.model.exog_names))
        m.effects = _effects(res, data, backends, ref, col, confidence, between, within)
        out.append(m)
    return out


def _effects(res, data, backends, ref, col, confidence, between, within) -> list[Effect]:
    factor = f"C(backend, Treatment(reference='{ref}'))"
    effects = []
    is_acc = col == "test_accuracy"
    p_ref = float(data.loc[data["backend"] == ref, "test_accuracy"].mean()) if is_acc else np.nan
    for b in backends:
        main = [] if b == ref else [f"{factor}[T.{b}]"]
        if b != ref:
            est, lo, hi = _combo(res, main, [1.0], confidence, between)
            if is_acc:
                effects.append(
                    Effect(b, f"odds ratio of a correct answer vs {ref}", *np.exp([est, lo, hi]))
                )
                pp = [_pp(p_ref, v) for v in (est, lo, hi)]
                effects.append(Effect(b, f"difference from {ref} at its mean accuracy [pp]", *pp))
            else:
                effects.append(
                    Effect(b, f"time ratio to {ref} at the grid's centre", *np.exp([est, lo, hi]))
                )
        for term, label in (("lb", "per doubling of batch size"), ("ll", "per 10x learning rate")):
            if term not in res.model.exog_names:
                continue
            names = ["lb" if term == "lb" else "ll"] + ([f"{main[0]}:{term}"] if main else [])
            est, lo, hi = _combo(res, names, [1.0] * len(names), confidence, within)
            what = ("odds factor " if is_acc else "time factor ") + label
            effects.append(Effect(b, what, *np.exp([est, lo, hi])))
    return effects


def _pp(p: float, log_odds_ratio: float) -> float:
    """Percentage points between p and p shifted by ``log_odds_ratio`` on the logit scale."""
    if not 0 < p < 1:
        return np.nan
    q = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + log_odds_ratio)))
    return 100 * (q - p)
