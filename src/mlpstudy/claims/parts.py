"""Parts tested on a [cell, trial] layout: the spread across trials of two backends
(claim 8, the starts contrast) and per-cell equivalence (claim 3, the other backends)."""

from __future__ import annotations

import itertools

import numpy as np

from mlpstudy import spread, stats
from mlpstudy.claims.engine import CONTRADICTED, SUPPORTED, Part, Plan, Settings
from mlpstudy.claims.grids import axes, grid, resolution


def spread_part(y1, y2, name, statistic, settings: Settings, floors=(0.0, 0.0)) -> Part:
    """Layout 1 spreads across trials at least ``sd_ratio_margin`` times as much as layout 2
    (a material direction on log(sd1 / sd2), boundary log(margin)); layouts [cell, trial].

    Each variance has its own degrees of freedom (``spread.spread_of``), so the F test has
    df1 and df2: a backend whose spread is a trial effect counts as T - 1 replicates
    whatever the other backend's spread is made of."""
    margin = float(np.log(settings.sd_ratio_margin))
    part = Part(name=name, kind="direction", ratio=True, statistic=statistic, margin=margin)
    part.threshold = margin
    t = y1.shape[1] if y1.ndim == 2 else 0
    part.n = part.trials = t
    if t < 2:
        part.reason = "fewer than 2 trials: no variance across trials (trials: 1)"
        return part
    keep = np.isfinite(y1).all(axis=1) & np.isfinite(y2).all(axis=1)
    y1, y2 = y1[keep], y2[keep]
    if y1.shape[0] == 0:
        part.reason = "no cell with every trial finite in both backends"
        return part
    ratio, (df1, df2), det = spread.spread_ratio(y1, y2, *floors)
    if not np.isfinite(ratio) or ratio <= 0:
        part.reason = "no spread in either backend and no known resolution"
        return part
    bound = settings.sd_ratio_margin**2
    tests = spread.f_ratio_tests(ratio, df1, df2, bound, settings.test_confidence)
    part.df = min(df1, df2)
    part.estimate = 0.5 * np.log(ratio)
    part.ci = tuple(0.5 * np.log(tests["ci"]))
    part.p_support, part.p_contradict = tests["p_above"], tests["p_below"]
    part.details = det
    part.plan = _spread_plan(ratio, det, y1, y2, settings)
    return part


def _spread_plan(ratio, det, y1, y2, settings: Settings) -> Plan:
    """Power of the F test at n trials: each backend's df at n from its own mean squares
    (``spread.spread_df``); low: every df at n - 1 (the trial effect dominating both), high:
    every df at C (n - 1) (no trial effect): the range the trial shares allow."""
    bound, a = settings.sd_ratio_margin**2, settings.alpha
    c, t = y1.shape
    ms = []
    for y in (y1, y2):
        at, bt, _, _ = spread.variance_components(y)
        ms.append((at * c, bt * c / (c - 1) if c > 1 else 0.0))
    floored = (det["floored1"], det["floored2"])

    def df_of(n):
        return tuple(
            n - 1 if f else spread.spread_df(mt, me, c, t, n) for (mt, me), f in zip(ms, floored)
        )

    side = "above" if ratio > bound else "below"
    verdict = SUPPORTED if side == "above" else CONTRADICTED
    return Plan(
        verdict,
        spread.f_power(ratio, df_of, a, side, bound),
        spread.f_power(ratio, lambda n: (n - 1, n - 1), a, side, bound),
        spread.f_power(ratio, lambda n: (c * (n - 1), c * (n - 1)), a, side, bound),
    )


def cell_equivalence(runs, a: str, b: str, settings: Settings, name: str | None = None):
    """Per-cell TOST of the accuracy difference a - b within +-accuracy_margin.

    Returns (Part, numbers). The part is supported if TOST holds in every cell (an
    intersection-union test), contradicted if some cell's difference lies significantly
    beyond the margin (Holm across the cells). Estimate and interval: the cell whose mean
    difference is largest in size.
    """
    m, alpha = settings.accuracy_margin, settings.alpha
    floor = np.sqrt(2) * resolution(runs, settings)
    _, lrs, batches = axes(runs)
    diffs = grid(runs, a, "test_accuracy").values - grid(runs, b, "test_accuracy").values
    cells = list(itertools.product(range(lrs.size), range(batches.size)))
    d = diffs.reshape(diffs.shape[0], -1)  # [trial, cell], in the order of ``cells``
    n_c, means, sds = stats.summaries(d, floor)
    tost = np.maximum(
        stats.t_p(means, sds, n_c, -m, "greater"), stats.t_p(means, sds, n_c, m, "less")
    )
    beyond = np.minimum(
        1.0,
        2
        * np.minimum(
            stats.t_p(means, sds, n_c, m, "greater"), stats.t_p(means, sds, n_c, -m, "less")
        ),
    )
    beyond = stats.holm(beyond)
    summ = list(zip(n_c, means, sds, strict=True))
    d_cells = [stats._finite(d[:, k]) for k in range(d.shape[1])]
    part = Part(
        name=name or f"{a} vs {b}",
        kind="equivalence",
        unit="cells",
        margin=m,
        statistic=f"accuracy difference {a} - {b} per cell; shown: the largest in size",
    )
    part.n = int(np.isfinite(means).sum())
    part.trials = int(runs["trial"].nunique())
    numbers = {}
    if part.n:
        worst = int(np.nanargmax(np.abs(means)))
        part.estimate, part.sd = means[worst], summ[worst][2]
        part.ci = stats.t_interval(d_cells[worst], settings.test_confidence, floor)
        i, j = cells[worst]
        numbers["largest |mean difference|"] = (
            f"{part.estimate:.3g} (lr {lrs[i]:g}, batch size {batches[j]})"
        )
    too_few = sum(s[0] < 2 for s in summ)
    part.p_support = float(tost.max()) if too_few == 0 else np.nan
    part.p_contradict = part.p_contradict_adj = (
        float(np.nanmin(beyond)) if np.isfinite(beyond).any() else np.nan
    )
    n_cells = len(cells)
    numbers[f"cells equivalent within +-{m:g} (TOST)"] = f"{int((tost < alpha).sum())} of {n_cells}"
    numbers[f"cells with a difference beyond +-{m:g} (Holm)"] = (
        f"{int((beyond < alpha).sum())} of {n_cells}"
    )
    same = [d.size >= 1 and np.all(d == 0) for d in d_cells]
    numbers["cells where both backends have the same accuracy in every trial"] = (
        f"{sum(same)} of {n_cells}"
    )
    if too_few:
        part.reason = (
            f"{too_few} cell(s) with fewer than 2 paired trials: no test there "
            "(trials: 1 gives no variance)"
        )
    elif part.p_support >= alpha:
        part.reason = f"equivalence not shown in {int((tost >= alpha).sum())} of {n_cells} cells"
    sds = np.array([s[2] for s in summ])
    if too_few == 0 and np.all(sds > 0):
        part.plan = cells_plan(means, sds, m, alpha, part.trials, settings.test_confidence)
    return part, numbers


def shrunk_means(means: np.ndarray, sd: float, trials: int) -> np.ndarray:
    """The cells' mean differences shrunk towards their grand mean by what their own noise
    (sd^2 / trials) explains of their spread (empirical Bayes): planning with the raw 3-trial
    means would take their noise for real differences between cells."""
    grand = float(np.mean(means))
    tau2 = max(float(np.var(means, ddof=1)) - sd**2 / trials, 0.0) if means.size > 1 else 0.0
    w = tau2 / (tau2 + sd**2 / trials) if tau2 > 0 else 0.0
    return grand + w * (means - grand)


def cells_power(deltas, sd, m: float, alpha: float):
    """(support, contradiction) power of the per-cell rule as functions of n, every cell at
    its own true difference ``deltas`` and spread ``sd``, the cells independent: every
    cell's TOST (support); some cell's beyond-margin test, Bonferroni over the cells (a
    lower bound for Holm; contradiction)."""
    deltas = np.asarray(deltas, dtype=float)
    k = deltas.size

    def support(n):
        n = np.atleast_1d(np.asarray(n, dtype=float))
        # equal differences have equal powers: one evaluation per distinct |difference|
        size, count = np.unique(np.round(np.abs(deltas), 12), return_counts=True)
        return np.prod(
            [stats.power_tost(x, sd, n, m, alpha) ** c for x, c in zip(size, count)], axis=0
        )

    def contradict(n):
        n = np.atleast_1d(np.asarray(n, dtype=float))
        miss = [1 - _beyond_power(d, sd, n, m, alpha / k) for d in deltas]
        return 1 - np.prod(miss, axis=0)

    return support, contradict


def _beyond_power(delta, sd, n, m, alpha):
    """Power of ``stats.beyond_p`` < alpha: either one-sided test at alpha / 2."""
    return stats.power_one_sided(abs(delta) - m, sd, n, alpha / 2) + stats.power_one_sided(
        -abs(delta) - m, sd, n, alpha / 2
    )


def cells_plan(means, sds, m, alpha, trials, confidence) -> Plan:
    """The per-cell rule's plan: each cell at its shrunk mean difference, the spread pooled
    over cells; the range over the pooled sd's interval on T - 1 degrees of freedom (the
    cells of a trial share it)."""
    sd = float(np.sqrt(np.mean(np.square(sds))))
    deltas = shrunk_means(np.asarray(means, dtype=float), sd, trials)
    verdict = SUPPORTED if np.all(np.abs(deltas) < m) else CONTRADICTED
    lo, hi = stats.sd_interval(sd, trials - 1, confidence)
    pick = 0 if verdict == SUPPORTED else 1

    def at(s):
        return cells_power(deltas, s, m, alpha)[pick]

    return Plan(verdict, at(sd), at(hi), at(lo))
