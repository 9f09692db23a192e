"""Test the study's claims on one study's runs: ``{STUDY}/claims.md`` and ``claims.html``.

Every claim becomes one or more *parts*; a part is a test on a contrast computed once per
independent replicate. The replicate is the **trial**: trial k of every cell and backend
shares its seed (and, with `start: shared`, its initial weights and batch order), so the
cells of one trial are not independent of each other, but trials are. A per-trial contrast
(say, the slope of accuracy against log10 learning rate, averaged over batch sizes) gives T
independent numbers, and its t-test has T - 1 degrees of freedom. Claim 8 (spread across
trials) compares variances with a model that has a random trial effect shared by the cells
of a trial (`stats.spread_ratio`): its degrees of freedom fall to T - 1 when that effect
dominates, so 25 cells of 3 trials never count as 25 replicates.

A part is one of three kinds (``Settings`` holds every alpha, margin and threshold):

* direction: the contrast has the claimed sign. Supported when the one-sided test in the
  claimed direction has p < alpha; contradicted when the opposite one-sided test has
  p < alpha or, where a margin is given, when TOST shows the effect lies within +-margin
  (an effect too small to matter does not support a claim about an effect).
* equivalence: the contrast is negligible ("no effect", "nearly identical"). Supported when
  TOST shows it lies within +-margin; contradicted when the test of "outside +-margin" has
  p < alpha (its direction chosen after looking, so doubled).
* threshold: the contrast lies beyond a stated threshold ("markedly faster" = at least
  ``marked_speedup`` times). Supported / contradicted by the one-sided tests either side.

Every test is one-sided at alpha, so the intervals shown are the two-sided 1 - 2 alpha
(90 %) ones: a direction part is supported exactly when its interval excludes 0, an
equivalence part exactly when its interval lies inside +-margin.

A claim is supported when every part is supported, contradicted when any part is
contradicted, inconclusive otherwise. Because one contradicted part suffices, the
contradiction p-values of a claim's parts are Holm-adjusted across the parts; "every part
supported" is an intersection-union test and needs no adjustment. An inconclusive part
states its power: if the true effect and spread were what this run estimated, the chance
that a run with this many trials reaches the verdict the estimate points to, and the number
of trials that gives ``power_target``.

Claims 1-9 are about the study's two backends, NumPy and TensorFlow; every other backend in
the table is compared with NumPy in a section of its own (``other_backends``).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlpstudy import stats
from mlpstudy.defaults import ACCURACY_MARGIN, ALPHA

NUMPY = "numpy"
TENSORFLOW = "tensorflow"
STUDY_BACKENDS = (NUMPY, TENSORFLOW)

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"

# claim 1: accuracy change per 10x learning rate below 0.5 pp counts as "no effect"
LR_SLOPE_MARGIN = 0.005
# claim 2: accuracy change per doubling of batch size below 0.5 pp counts as "no effect"
BATCH_SLOPE_MARGIN = 0.005
# claims 4-6: a training-time change below 5 % (per doubling of batch size, per 10x learning
# rate, or between backends) counts as "no effect"; the study's own NumPy spread, 14-17 s
# over 4 doublings of batch size, is about 5 % per doubling
TIME_MARGIN = 0.05
# claim 4: "tightly clustered (14-17 s)": the spread of NumPy's time over the grid within
# one trial, as a geometric standard deviation, below 10 % (the study's 14-17 s is about 6 %)
CLUSTER_MARGIN = 0.10
# claim 7: "markedly faster" = TensorFlow at least 1.5 times as fast at the largest batch size
MARKED_SPEEDUP = 1.5
# claim 8: standard deviations within a factor 1.5 of each other count as "equal variance"
SD_RATIO_MARGIN = 1.5
# claim 9: a difference below 0.01 in log loss (1 % of the loss) is negligible, both for the
# noise of a curve (its RMS distance from the closest non-increasing curve) and for the
# mean log loss over epochs (how soon it comes down)
SMOOTHNESS_MARGIN = 0.01
CONVERGENCE_MARGIN = 0.01
# claim 9: the loss is recorded in float32: log-loss differences below this are rounding
LOSS_RESOLUTION = float(np.finfo(np.float32).eps)
MIN_EPOCHS_SMOOTHNESS = 3
MIN_EPOCHS_SPEED = 2
POWER_TARGET = 0.8


@dataclass(frozen=True)
class Settings:
    alpha: float = ALPHA
    accuracy_margin: float = ACCURACY_MARGIN
    lr_slope_margin: float = LR_SLOPE_MARGIN
    batch_slope_margin: float = BATCH_SLOPE_MARGIN
    time_margin: float = TIME_MARGIN
    cluster_margin: float = CLUSTER_MARGIN
    marked_speedup: float = MARKED_SPEEDUP
    sd_ratio_margin: float = SD_RATIO_MARGIN
    smoothness_margin: float = SMOOTHNESS_MARGIN
    convergence_margin: float = CONVERGENCE_MARGIN
    min_epochs_smoothness: int = MIN_EPOCHS_SMOOTHNESS
    power_target: float = POWER_TARGET
    # 1 / N_test; None: inferred from the accuracies (stats.accuracy_step)
    accuracy_step: float | None = None
    # descriptive intervals (other backends, models); the tests' intervals are 1 - 2 alpha
    confidence: float = stats.CONFIDENCE

    @property
    def test_confidence(self) -> float:
        return 1 - 2 * self.alpha


DEFAULTS = Settings()


@dataclass
class Part:
    """One test inside a claim."""

    name: str
    kind: str  # direction | equivalence | threshold
    statistic: str  # what the contrast is, with its units
    n: int = 0
    unit: str = "trials"
    trials: int = 0  # trials behind the test (= n when the unit is the trial)
    estimate: float = np.nan
    ci: tuple[float, float] = (np.nan, np.nan)
    sd: float = np.nan  # spread of the per-unit contrast (floored)
    sign: int = 1
    margin: float | None = None
    threshold: float | None = None
    p_support: float = np.nan
    p_contradict: float = np.nan
    p_contradict_adj: float = np.nan
    verdict: str = INCONCLUSIVE
    reason: str = ""
    ratio: bool = False  # contrast is a log ratio: also show exp(estimate)
    df: float = np.nan
    power: float = np.nan  # for an inconclusive part: at this run's trials
    power_for: str = ""  # the verdict the power is about
    trials_needed: int | None = None
    power_of: Callable | None = field(default=None, repr=False)  # trials -> power
    details: dict = field(default_factory=dict)  # e.g. claim 8's variance components


@dataclass
class ClaimResult:
    id: int
    title: str
    section: str
    quote: str
    statistic: str
    rule: str
    figures: list[str]
    parts: list[Part] = field(default_factory=list)
    verdict: str = INCONCLUSIVE
    reason: str = ""
    numbers: dict = field(default_factory=dict)
    beside: list[Part] = field(default_factory=list)  # same tests on step time, not decisive
    notes: list[str] = field(default_factory=list)
    p_verdict: float = np.nan  # p-value behind the verdict (for the family across claims)


def figure(name: str) -> str:
    """A figure of this study, relative to the study's folder (where claims.md lies)."""
    return f"figures/{name}"


# --------------------------------------------------------------------------- tests of parts


def _prepare(part: Part, values, settings: Settings, floor: float) -> np.ndarray | None:
    x = stats._finite(values)
    part.n = int(x.size)
    if part.unit == "trials":
        part.trials = part.n
    if x.size:
        n, mean, sd = stats.summary(x, floor)
        part.estimate, part.sd, part.df = mean, sd, n - 1
        part.ci = stats.t_interval(x, settings.test_confidence, floor)
    if x.size < 2:
        part.reason = (
            f"{x.size} {part.unit} with a finite value; a test across {part.unit} needs "
            "at least 2" + (" (trials: 1 gives no variance)" if part.unit == "trials" else "")
        )
        return None
    if not part.sd > 0:
        part.reason = (
            f"all {x.size} values identical and the quantity has no known resolution: "
            "the t statistic is undefined"
        )
        return None
    return x


def direction_part(part, values, sign: int, settings: Settings, margin=None, floor=0.0) -> Part:
    """Claimed sign ``sign`` (+1 / -1); ``margin``: |effect| below it contradicts."""
    part.kind, part.sign, part.margin = "direction", sign, margin
    x = _prepare(part, values, settings, floor)
    if x is None:
        return part
    claimed, opposite = ("greater", "less") if sign > 0 else ("less", "greater")
    part.p_support = stats.one_sample_p(x, 0.0, claimed, floor)
    p_opp = stats.one_sample_p(x, 0.0, opposite, floor)
    part.p_contradict = min(p_opp, stats.tost_p(x, margin, floor)) if margin else p_opp
    part.power_of = _t_power(part, settings)
    return part


def equivalence_part(part, values, margin: float, settings: Settings, floor=0.0) -> Part:
    part.kind, part.margin = "equivalence", margin
    x = _prepare(part, values, settings, floor)
    if x is None:
        return part
    part.p_support = stats.tost_p(x, margin, floor)
    part.p_contradict = stats.beyond_p(x, margin, floor)
    part.power_of = _t_power(part, settings)
    return part


def threshold_part(part, values, threshold: float, settings: Settings, sign=1, floor=0.0):
    """Supported if the mean lies beyond ``threshold`` on the side ``sign`` (+1: above)."""
    part.kind, part.threshold, part.sign = "threshold", threshold, sign
    x = _prepare(part, values, settings, floor)
    if x is None:
        return part
    above = stats.one_sample_p(x, threshold, "greater", floor)
    below = stats.one_sample_p(x, threshold, "less", floor)
    part.p_support, part.p_contradict = (above, below) if sign > 0 else (below, above)
    part.power_of = _t_power(part, settings)
    return part


def _t_power(part: Part, settings: Settings):
    """(the verdict the estimate points to, trials -> power of reaching it) for a t-part."""
    e, sd, a = part.estimate, part.sd, settings.alpha
    if not (np.isfinite(e) and np.isfinite(sd) and sd > 0):
        return None
    power = stats.power_one_sided
    if part.kind == "direction":
        d, m = part.sign * e, part.margin or 0.0
        if d > m:
            return SUPPORTED, lambda n: power(d, sd, n, a)
        if part.margin and abs(e) < m:
            return CONTRADICTED, lambda n: np.maximum(
                stats.power_tost(e, sd, n, m, a), power(-d, sd, n, a)
            )
        return CONTRADICTED, lambda n: power(-d, sd, n, a)
    if part.kind == "equivalence":
        if abs(e) < part.margin:
            return SUPPORTED, lambda n: stats.power_tost(e, sd, n, part.margin, a)
        return CONTRADICTED, lambda n: power(abs(e) - part.margin, sd, n, a / 2)
    d = part.sign * (e - part.threshold)
    return (SUPPORTED if d > 0 else CONTRADICTED), lambda n: power(abs(d), sd, n, a)


def inconclusive_part(name: str, reason: str, statistic: str = "") -> Part:
    return Part(name=name, kind="-", statistic=statistic, reason=reason)


def _fill_power(part: Part, settings: Settings) -> None:
    if part.power_of is None or part.trials < 2:
        return
    part.power_for, fn = part.power_of
    part.power = float(np.asarray(fn(np.array([part.trials])), dtype=float)[0])
    part.trials_needed = stats.trials_needed(fn, settings.power_target)


def decide(result: ClaimResult, settings: Settings, adjust: bool = True) -> ClaimResult:
    """Holm-adjust the parts' contradiction p-values, give each part and the claim a verdict."""
    parts = result.parts
    if adjust and parts:
        for p, a in zip(parts, stats.holm([p.p_contradict for p in parts]), strict=True):
            p.p_contradict_adj = a
    for p in parts:
        if p.p_contradict_adj < settings.alpha:
            p.verdict = CONTRADICTED
        elif p.p_support < settings.alpha:
            p.verdict = SUPPORTED
        else:
            p.verdict = INCONCLUSIVE
            if not p.reason:
                p.reason = f"neither test reaches alpha = {settings.alpha}"
            _fill_power(p, settings)
    for p in result.beside:
        p.verdict = (
            CONTRADICTED
            if p.p_contradict < settings.alpha
            else SUPPORTED
            if p.p_support < settings.alpha
            else INCONCLUSIVE
        )
    verdicts = [p.verdict for p in parts]
    if not parts:
        result.verdict = INCONCLUSIVE
        result.reason = result.reason or "nothing to test"
    elif CONTRADICTED in verdicts:
        result.verdict = CONTRADICTED
        bad = [p for p in parts if p.verdict == CONTRADICTED]
        result.reason = "contradicted by: " + ", ".join(p.name for p in bad)
        result.p_verdict = min(p.p_contradict_adj for p in bad)
    elif all(v == SUPPORTED for v in verdicts):
        result.verdict = SUPPORTED
        result.reason = "every part supported"
        result.p_verdict = max(p.p_support for p in parts)
    else:
        result.verdict = INCONCLUSIVE
        result.reason = "; ".join(
            f"{p.name}: {p.reason}" for p in parts if p.verdict == INCONCLUSIVE
        )
    return result


# --------------------------------------------------------------------------- data shaping


@dataclass
class Grid:
    """One backend's metric as an array [trial, learning rate, batch size] (NaN = missing)."""

    trials: np.ndarray
    lrs: np.ndarray
    batches: np.ndarray
    values: np.ndarray


def axes(runs: pd.DataFrame):
    return (
        np.array(sorted(runs["trial"].unique())),
        np.array(sorted(runs["learning_rate"].unique()), dtype=float),
        np.array(sorted(runs["batch_size"].unique())),
    )


def grid(runs: pd.DataFrame, backend: str, metric: str, log: bool = False) -> Grid:
    trials, lrs, batches = axes(runs)
    values = np.full((trials.size, lrs.size, batches.size), np.nan)
    sub = runs[runs["model"] == backend]
    if metric not in sub.columns:
        return Grid(trials, lrs, batches, values)
    ti = np.searchsorted(trials, sub["trial"].to_numpy())
    li = np.searchsorted(lrs, sub["learning_rate"].to_numpy())
    bi = np.searchsorted(batches, sub["batch_size"].to_numpy())
    v = sub[metric].to_numpy(dtype=float)
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(v > 0, np.log(v), np.nan)
    values[ti, li, bi] = v
    return Grid(trials, lrs, batches, values)


def slope(x: np.ndarray, y: np.ndarray) -> float:
    """OLS slope of y on x over the finite points; NaN with < 2 distinct x."""
    ok = np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return np.nan
    xs, ys = x[ok], y[ok]
    xc = xs - xs.mean()
    return float((xc * (ys - ys.mean())).sum() / (xc**2).sum())


def _sxx(x: np.ndarray) -> float:
    return float(((x - x.mean()) ** 2).sum())


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    ok = np.isfinite(a)
    total = np.where(ok, a, 0.0).sum(axis=axis)
    count = ok.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _log_lrs(g: Grid) -> np.ndarray:
    return np.log10(g.lrs)


def _log_batches(g: Grid) -> np.ndarray:
    return np.log2(g.batches.astype(float))


def lr_slopes(g: Grid) -> np.ndarray:
    """[trial, batch]: slope of the value against log10(learning rate)."""
    x = _log_lrs(g)
    return np.array(
        [[slope(x, g.values[t, :, j]) for j in range(g.batches.size)] for t in range(g.trials.size)]
    ).reshape(g.trials.size, g.batches.size)


def batch_slopes(g: Grid) -> np.ndarray:
    """[trial, lr]: slope of the value against log2(batch size)."""
    x = _log_batches(g)
    return np.array(
        [[slope(x, g.values[t, i, :]) for i in range(g.lrs.size)] for t in range(g.trials.size)]
    ).reshape(g.trials.size, g.lrs.size)


def _backends(runs: pd.DataFrame) -> list[str]:
    return sorted(runs["model"].unique())


def _missing(runs: pd.DataFrame, *needed: str) -> str:
    have = set(_backends(runs))
    return ", ".join(f"backend {b} not in this run" for b in needed if b not in have)


def _mean_by(runs: pd.DataFrame, backend: str, by: str, metric: str) -> dict:
    sub = runs[runs["model"] == backend]
    return {_fmt_key(k): float(v) for k, v in sub.groupby(by)[metric].mean().items()}


def _fmt_key(k) -> str:
    return f"{k:g}" if isinstance(k, float) else str(k)


def _step(runs: pd.DataFrame, settings: Settings) -> float:
    """The accuracy's resolution 1 / N_test (a setting, or inferred from the table)."""
    if settings.accuracy_step is not None:
        return float(settings.accuracy_step)
    step = stats.accuracy_step(runs["test_accuracy"])
    return step if np.isfinite(step) else 0.0


def start_modes(runs: pd.DataFrame) -> list[str]:
    """The start modes of the table ("shared" / "independent"), also from a legacy
    ``shared_start`` column."""
    if "start" in runs.columns:
        return sorted(map(str, runs["start"].dropna().unique()))
    if "shared_start" in runs.columns:
        shared = runs["shared_start"].map(stats._as_bool)
        return sorted({"shared" if s else "independent" for s in shared})
    return []


# --------------------------------------------------------------------------- the claims
# Quotations and titles are data; each claim function computes and decides.

TEXT = {
    1: (
        "Accuracy increases with learning rate, in both backends",
        "7.3",
        "Learning rate strongly influences final performance. In both frameworks, higher "
        "learning rates yield markedly higher accuracy.",
    ),
    2: (
        "Accuracy decreases with batch size, most at small learning rates",
        "7.2",
        "Across both frameworks, accuracy tends to decrease as batch size increases, "
        "especially at small learning rates.",
    ),
    3: (
        "For a given hyperparameter pair the implementations reach nearly identical accuracy",
        "7.7 (also 7.2, 7.3)",
        "Accuracy trends aligned closely across frameworks, and for many hyperparameter "
        "pairs the resulting values were nearly identical.",
    ),
    4: (
        "NumPy training time is tightly clustered and insensitive to batch size and learning rate",
        "7.1, 7.4",
        "The NumPy scatter plot exhibits tightly clustered training times (14-17s) [...] "
        "(7.1); NumPy shows almost no dependence on batch size (7.4)",
    ),
    5: (
        "TensorFlow training time falls systematically with batch size; learning rate has "
        "no effect",
        "7.4 (also 7.5)",
        "TensorFlow becomes significantly faster at large batches across all learning "
        "rates. Any apparent effect of learning rate on training time is almost certainly "
        "due to stochastic variations.",
    ),
    6: (
        "At small batch sizes NumPy is faster than TensorFlow",
        "7.4",
        "the large computational overhead created by TensorFlow means that at small batch "
        "sizes, the NumPy models all outperform the TensorFlow equivalent.",
    ),
    7: (
        "TensorFlow is markedly faster at large batch sizes",
        "abstract, 7.7",
        "TensorFlow delivers [...] markedly faster training—particularly at large batch "
        "sizes where kernel-level parallelism is most effective (abstract)",
    ),
    8: (
        "NumPy shows higher variance across trials than TensorFlow",
        "abstract, 7.1, 7.5",
        "The NumPy implementation displays higher variance (abstract); [...] extremely "
        "wide variation in accuracy (66-97%) (7.1); the NumPy implementation (Figure 10) "
        "shows irregular patterns [...] reflecting instability and high variance across "
        "trials (7.5, training time)",
    ),
    9: (
        "TensorFlow's loss curves are smoother and converge slightly faster",
        "7.6, 7.7",
        "TensorFlow loss curves are smoother although not by much (7.6); [...] with "
        "TensorFlow converging slightly more smoothly and quickly (7.7)",
    ),
}

# What the start mode means for the claims about the two backends' agreement and spread
START_NOTES = {
    "shared": (
        "start: shared — both backends start from the same weights and see the same "
        "batches in each trial. This claim then asks whether the implementations compute "
        "the same thing from the same start; the study's backends each drew their own "
        "start (start: independent, compared in results/starts.md when configured)."
    ),
    "independent": (
        "start: independent — each backend draws its own initial weights and batch order, "
        "as in the study: differences include those of the starts."
    ),
}


def _claim(cid: int, statistic: str, rule: str, figures: list[str]) -> ClaimResult:
    title, section, quote = TEXT[cid]
    return ClaimResult(cid, title, section, quote, statistic, rule, figures)


def _present(runs: pd.DataFrame) -> list[str]:
    return [b for b in STUDY_BACKENDS if b in set(runs["model"])]


def claim_accuracy_vs_learning_rate(runs: pd.DataFrame, settings: Settings = DEFAULTS):
    r = _claim(
        1,
        "per trial: OLS slope of test accuracy against log10(learning rate), averaged over "
        "batch sizes (accuracy per 10x learning rate)",
        f"direction, per backend: supported if the mean slope is > 0 (one-sided t-test "
        f"across trials, p < {settings.alpha}); contradicted if it is < 0 or lies within "
        f"+-{settings.lr_slope_margin} (TOST)",
        [figure("accuracy_vs_learning_rate.png")]
        + [figure(f"accuracy_heatmap_{b}.png") for b in _present(runs)],
    )
    _, lrs, batches = axes(runs)
    step = _step(runs, settings)
    for b in STUDY_BACKENDS:
        part = Part(name=b, kind="", statistic="slope per 10x learning rate")
        if b not in set(runs["model"]):
            part.reason = f"backend {b} not in this run"
        elif lrs.size < 2:
            part.reason = "only one learning rate in the grid"
        else:
            g = grid(runs, b, "test_accuracy")
            floor = step / np.sqrt(batches.size * _sxx(_log_lrs(g)))
            c = _nanmean(lr_slopes(g), axis=1)
            direction_part(part, c, +1, settings, settings.lr_slope_margin, floor)
            r.numbers[f"mean accuracy by learning rate, {b}"] = _mean_by(
                runs, b, "learning_rate", "test_accuracy"
            )
        r.parts.append(part)
    return decide(r, settings)


def claim_accuracy_vs_batch_size(runs: pd.DataFrame, settings: Settings = DEFAULTS):
    r = _claim(
        2,
        "per trial: (a) OLS slope of test accuracy against log2(batch size), averaged over "
        "learning rates (accuracy per doubling); (b) slope of those per-learning-rate "
        "batch-size slopes against log10(learning rate): > 0 means the decrease is "
        "steepest at small learning rates",
        f"per backend, (a) direction < 0, contradicted also if within "
        f"+-{settings.batch_slope_margin} (TOST); (b) direction > 0, contradicted only if "
        f"significantly < 0; one-sided t-tests across trials at alpha = {settings.alpha}",
        [figure("accuracy_vs_batch_size.png")]
        + [figure(f"accuracy_heatmap_{b}.png") for b in _present(runs)],
    )
    _, lrs, batches = axes(runs)
    step = _step(runs, settings)
    for b in STUDY_BACKENDS:
        main = Part(name=f"{b}: decrease", kind="", statistic="slope per doubling of batch size")
        inter = Part(
            name=f"{b}: most at small lr",
            kind="",
            statistic="change of the batch-size slope per 10x learning rate",
        )
        if b not in set(runs["model"]):
            main.reason = inter.reason = f"backend {b} not in this run"
        elif batches.size < 2:
            main.reason = inter.reason = "only one batch size in the grid"
        else:
            g = grid(runs, b, "test_accuracy")
            s = batch_slopes(g)
            sxx_b = _sxx(_log_batches(g))
            floor = step / np.sqrt(lrs.size * sxx_b)
            direction_part(main, _nanmean(s, 1), -1, settings, settings.batch_slope_margin, floor)
            if lrs.size < 2:
                inter.reason = "only one learning rate in the grid"
            else:
                x = _log_lrs(g)
                floor = step / np.sqrt(_sxx(x) * sxx_b)
                direction_part(inter, [slope(x, row) for row in s], +1, settings, floor=floor)
            r.numbers[f"mean accuracy by batch size, {b}"] = _mean_by(
                runs, b, "batch_size", "test_accuracy"
            )
        r.parts += [main, inter]
    return decide(r, settings)


def cell_equivalence(runs, a: str, b: str, settings: Settings, name: str | None = None):
    """Per-cell TOST of the accuracy difference a - b within +-accuracy_margin.

    Returns (Part, numbers). The part is supported if TOST holds in every cell (an
    intersection-union test), contradicted if some cell's difference lies significantly
    beyond the margin (Holm across the cells). Estimate and interval: the cell whose mean
    difference is largest in size.
    """
    m, alpha = settings.accuracy_margin, settings.alpha
    floor = np.sqrt(2) * _step(runs, settings)
    _, lrs, batches = axes(runs)
    diffs = grid(runs, a, "test_accuracy").values - grid(runs, b, "test_accuracy").values
    cells = list(itertools.product(range(lrs.size), range(batches.size)))
    d_cells = [stats._finite(diffs[:, i, j]) for i, j in cells]
    tost = np.array([stats.tost_p(d, m, floor) for d in d_cells])
    beyond = stats.holm([stats.beyond_p(d, m, floor) for d in d_cells])
    summ = [stats.summary(d, floor) for d in d_cells]
    means = np.array([s[1] for s in summ])
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
        part.power_of = _cells_power(means, sds, m, alpha)
    return part, numbers


def _cells_power(means, sds, m, alpha):
    """Power of the per-cell rule with every cell at the grid's mean difference and pooled
    spread (a cell's own 2-df estimates are too rough to plan with), cells taken as
    independent: every cell's TOST (support), or some cell's beyond-margin test after
    Bonferroni (contradiction)."""
    k = means.size
    delta = float(np.mean(means))
    sd = float(np.sqrt(np.mean(np.square(sds))))
    if abs(delta) < m:
        return SUPPORTED, lambda n: stats.power_tost(delta, sd, n, m, alpha) ** k
    return (
        CONTRADICTED,
        lambda n: 1 - (1 - stats.power_one_sided(abs(delta) - m, sd, n, alpha / (2 * k))) ** k,
    )


def claim_equal_accuracy(runs: pd.DataFrame, settings: Settings = DEFAULTS):
    m = settings.accuracy_margin
    r = _claim(
        3,
        f"per cell: paired per-trial accuracy difference NumPy - TensorFlow; equivalence by "
        f"TOST with margin +-{m} ({m * 100:g} pp); the accuracy's step "
        f"(1 / N_test) floors the spread",
        f"supported if TOST gives p < {settings.alpha} in every cell (intersection-union "
        f"test, no adjustment needed); contradicted if in some cell the difference lies "
        f"significantly outside +-{m} (Holm-adjusted across the cells, p < "
        f"{settings.alpha}); inconclusive otherwise",
        [figure("accuracy_vs_batch_size.png"), figure("accuracy_vs_learning_rate.png")],
    )
    missing = _missing(runs, NUMPY, TENSORFLOW)
    if missing:
        r.parts.append(inconclusive_part("pairs", missing))
        r.reason = missing
        return decide(r, settings)
    part, numbers = cell_equivalence(runs, NUMPY, TENSORFLOW, settings)
    r.parts.append(part)
    r.numbers.update(numbers)
    return decide(r, settings, adjust=False)


def _time_grid(runs: pd.DataFrame, backend: str, metric: str = "training_time_s") -> Grid:
    return grid(runs, backend, metric, log=True)


def _has(runs: pd.DataFrame, metric: str) -> bool:
    return metric in runs.columns and runs[metric].notna().any()


def _time_slope_part(g, factor, name, settings, equivalence=None, sign=0, margin=None) -> Part:
    if factor == "batch":
        part = Part(name=name, kind="", statistic="log time per doubling of batch size", ratio=True)
        if g.batches.size < 2:
            part.reason = "only one batch size in the grid"
            return part
        c = _nanmean(batch_slopes(g), axis=1)
    else:
        part = Part(name=name, kind="", statistic="log time per 10x learning rate", ratio=True)
        if g.lrs.size < 2:
            part.reason = "only one learning rate in the grid"
            return part
        c = _nanmean(lr_slopes(g), axis=1)
    if equivalence is not None:
        return equivalence_part(part, c, equivalence, settings)
    return direction_part(part, c, sign, settings, margin)


def _cluster_part(g: Grid, name: str, settings: Settings) -> Part:
    part = Part(
        name=name,
        kind="",
        ratio=True,
        statistic="per trial: standard deviation over the grid's cells of log time "
        "(x: geometric standard deviation)",
    )
    if g.lrs.size * g.batches.size < 2:
        part.reason = "a single cell: no spread over the grid"
        return part
    flat = g.values.reshape(g.values.shape[0], -1)
    sd = [
        np.std(stats._finite(row), ddof=1) if np.isfinite(row).sum() > 1 else np.nan for row in flat
    ]
    return threshold_part(part, sd, np.log1p(settings.cluster_margin), settings, sign=-1)


def _eval_share(runs: pd.DataFrame, backend: str) -> float:
    if not _has(runs, "eval_time_s"):
        return np.nan
    sub = runs[runs["model"] == backend]
    return float((sub["eval_time_s"] / sub["training_time_s"]).median())


def claim_numpy_time_insensitive(runs: pd.DataFrame, settings: Settings = DEFAULTS):
    m = np.log1p(settings.time_margin)
    r = _claim(
        4,
        "per trial: OLS slope of log(training time) against log2(batch size) (averaged over "
        "learning rates) and against log10(learning rate) (averaged over batch sizes), "
        "exp(slope) = time factor per doubling / per 10x; and the spread of log time over "
        "the grid's cells",
        f"slopes: equivalence, supported if TOST shows |slope| < log(1 + "
        f"{settings.time_margin}) (a change below {settings.time_margin:.0%}), contradicted "
        f"if a slope lies significantly outside; clustered: supported if the geometric "
        f"standard deviation over the grid is significantly below {settings.cluster_margin:.0%}"
        f", contradicted if significantly above",
        [
            figure("time_vs_batch_size.png"),
            figure("time_vs_learning_rate.png"),
            figure(f"speed_accuracy_{NUMPY}.png"),
            figure(f"time_heatmap_{NUMPY}.png"),
        ],
    )
    missing = _missing(runs, NUMPY)
    if missing:
        r.parts.append(inconclusive_part(NUMPY, missing))
        r.reason = missing
        return decide(r, settings)

    def parts(metric, label):
        g = _time_grid(runs, NUMPY, metric)
        return [
            _time_slope_part(g, "batch", f"{label}: batch size", settings, equivalence=m),
            _time_slope_part(g, "lr", f"{label}: learning rate", settings, equivalence=m),
            _cluster_part(g, f"{label}: tightly clustered", settings),
        ]

    r.parts += parts("training_time_s", NUMPY)
    if _has(runs, "step_time_s"):
        r.beside += parts("step_time_s", f"{NUMPY} step time")
    t = stats._finite(runs.loc[runs["model"] == NUMPY, "training_time_s"])
    if t.size:
        r.numbers["training time range [s]"] = f"{t.min():.3g} - {t.max():.3g}"
    r.numbers["share of training time spent in per-epoch evaluation (median)"] = _eval_share(
        runs, NUMPY
    )
    return decide(r, settings)


def claim_tensorflow_time_vs_batch(runs: pd.DataFrame, settings: Settings = DEFAULTS):
    m = np.log1p(settings.time_margin)
    r = _claim(
        5,
        "per trial: OLS slope of log(training time) against log2(batch size) and against "
        "log10(learning rate), as in claim 4",
        f"batch size: direction < 0, contradicted also if within log(1 + "
        f"{settings.time_margin}) (TOST); learning rate: equivalence within log(1 + "
        f"{settings.time_margin})",
        [
            figure("time_vs_batch_size.png"),
            figure("time_vs_learning_rate.png"),
            figure(f"time_heatmap_{TENSORFLOW}.png"),
        ],
    )
    missing = _missing(runs, TENSORFLOW)
    if missing:
        r.parts.append(inconclusive_part(TENSORFLOW, missing))
        r.reason = missing
        return decide(r, settings)

    def parts(metric, label):
        g = _time_grid(runs, TENSORFLOW, metric)
        return [
            _time_slope_part(
                g, "batch", f"{label}: falls with batch size", settings, sign=-1, margin=m
            ),
            _time_slope_part(g, "lr", f"{label}: no learning-rate effect", settings, equivalence=m),
        ]

    r.parts += parts("training_time_s", TENSORFLOW)
    if _has(runs, "step_time_s"):
        r.beside += parts("step_time_s", f"{TENSORFLOW} step time")
    r.numbers[f"mean training time by batch size [s], {TENSORFLOW}"] = _mean_by(
        runs, TENSORFLOW, "batch_size", "training_time_s"
    )
    r.numbers["share of training time spent in per-epoch evaluation (median)"] = _eval_share(
        runs, TENSORFLOW
    )
    return decide(r, settings)


def speed_at(runs, a: str, b: str, j: int, metric: str = "training_time_s") -> np.ndarray:
    """Per trial: mean over learning rates of log(time a / time b) at batch-size index j."""
    ga, gb = _time_grid(runs, a, metric), _time_grid(runs, b, metric)
    return _nanmean(ga.values[:, :, j] - gb.values[:, :, j], axis=1)


def _cells_from_comparison(comparison, batch: int, settings: Settings) -> dict:
    """What the per-cell paired tests (comparison.csv, log scale) say at ``batch``."""
    if comparison is None or comparison.empty or "scale" not in comparison.columns:
        return {}
    sel = comparison[
        (comparison["metric"] == "training_time_s")
        & (comparison["backend_a"] == NUMPY)
        & (comparison["backend_b"] == TENSORFLOW)
        & (comparison["batch_size"] == batch)
    ]
    if sel.empty:
        return {}
    sig = sel["p_adjusted"] < settings.alpha
    faster = sel["mean_diff"] < 0
    key = f"cells at batch size {batch} (comparison.csv, per-cell paired tests on log time)"
    return {
        key: (
            f"{len(sel)}; NumPy faster by the estimate in {int(faster.sum())}, TensorFlow in "
            f"{int((~faster & sel['mean_diff'].notna()).sum())}; significant after "
            f"{sel['correction'].iloc[0]}: NumPy faster in {int((sig & faster).sum())}, "
            f"TensorFlow faster in {int((sig & ~faster).sum())} (a cell needs |t| > "
            f"{sel['t_critical'].iloc[0]:.3g}; the claim's own test pools the learning rates "
            "per trial)"
        )
    }


def claim_numpy_faster_small_batches(runs, comparison=None, settings: Settings = DEFAULTS):
    m = np.log1p(settings.time_margin)
    r = _claim(
        6,
        "per trial, at the smallest batch size of the grid: mean over learning rates of "
        "log(time TensorFlow / time NumPy); exp() is how many times slower TensorFlow is",
        f"direction > 0 (NumPy faster); contradicted if < 0 or within log(1 + "
        f"{settings.time_margin}) (TOST)",
        [figure("time_vs_batch_size.png")],
    )
    missing = _missing(runs, NUMPY, TENSORFLOW)
    if missing:
        r.parts.append(inconclusive_part("speed", missing))
        r.reason = missing
        return decide(r, settings)
    batch = int(axes(runs)[2][0])

    def part(metric, label):
        p = Part(name=label, kind="", ratio=True, statistic="log(time TensorFlow / time NumPy)")
        return direction_part(p, speed_at(runs, TENSORFLOW, NUMPY, 0, metric), +1, settings, m)

    r.parts.append(part("training_time_s", f"batch size {batch}"))
    if _has(runs, "step_time_s"):
        r.beside.append(part("step_time_s", f"batch size {batch}, step time"))
    r.numbers.update(_cells_from_comparison(comparison, batch, settings))
    return decide(r, settings)


def claim_tensorflow_faster_large_batches(runs, comparison=None, settings: Settings = DEFAULTS):
    thr = np.log(settings.marked_speedup)
    r = _claim(
        7,
        "per trial, at the largest batch size of the grid: mean over learning rates of "
        "log(time NumPy / time TensorFlow), the speed-up of TensorFlow",
        f"threshold: supported if the speed-up is significantly above "
        f"{settings.marked_speedup}x (one-sided t-test across trials), contradicted if "
        f"significantly below",
        [figure("time_vs_batch_size.png")]
        + [figure(f"speed_accuracy_{b}.png") for b in STUDY_BACKENDS],
    )
    missing = _missing(runs, NUMPY, TENSORFLOW)
    if missing:
        r.parts.append(inconclusive_part("speed", missing))
        r.reason = missing
        return decide(r, settings)
    batches = axes(runs)[2]
    j = batches.size - 1

    def part(metric, label):
        p = Part(name=label, kind="", ratio=True, statistic="log(time NumPy / time TensorFlow)")
        return threshold_part(p, speed_at(runs, NUMPY, TENSORFLOW, j, metric), thr, settings)

    r.parts.append(part("training_time_s", f"batch size {batches[j]}"))
    if _has(runs, "step_time_s"):
        r.beside.append(part("step_time_s", f"batch size {batches[j]}, step time"))
    r.numbers.update(_cells_from_comparison(comparison, int(batches[j]), settings))
    return decide(r, settings)


def logit_accuracy(acc: np.ndarray, step: float) -> np.ndarray:
    """Empirical logit log((k + 0.5) / (N - k + 0.5)) of k correct out of N = 1 / step."""
    if not step > 0:
        step = 10.0**-stats.ACCURACY_DECIMALS
    n = 1.0 / step
    k = np.clip(np.asarray(acc, dtype=float), 0.0, 1.0) * n
    return np.log((k + 0.5) / (n - k + 0.5))


def complete_cells(g: Grid) -> np.ndarray:
    """[cell, trial] of the cells with a finite value in every trial."""
    y = g.values.reshape(g.values.shape[0], -1).T
    return y[np.isfinite(y).all(axis=1)]


def spread_part(y1, y2, name, statistic, settings: Settings, floors=(0.0, 0.0)) -> Part:
    """Claim 8's test: backend 1 spreads more across trials than backend 2 (direction > 0,
    contradicted if less or within a factor ``sd_ratio_margin``), on layouts [cell, trial]."""
    part = Part(
        name=name,
        kind="direction",
        ratio=True,
        statistic=statistic,
        margin=float(np.log(settings.sd_ratio_margin)),
    )
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
    ratio, df, det = stats.spread_ratio(y1, y2, *floors)
    if not np.isfinite(ratio) or ratio <= 0:
        part.reason = "no spread in either backend and no known resolution"
        return part
    tests = stats.f_ratio_tests(ratio, df, settings.sd_ratio_margin, settings.test_confidence)
    part.df = df
    part.estimate = 0.5 * np.log(ratio)
    part.ci = tuple(0.5 * np.log(tests["ci"]))
    part.p_support = tests["p_greater"]
    part.p_contradict = min(tests["p_less"], tests["p_tost"])
    part.reason = ""
    scale = (df / (t - 1)) if t > 1 else np.nan

    def df_of(n):
        return scale * (n - 1)

    d, m = part.estimate, part.margin
    if d > m:
        part.power_of = SUPPORTED, stats.f_power(ratio, df_of, settings.alpha, "greater")
    elif abs(d) < m:
        tost = stats.f_power(ratio, df_of, settings.alpha, "tost", settings.sd_ratio_margin)
        less = stats.f_power(ratio, df_of, settings.alpha, "less")
        part.power_of = CONTRADICTED, lambda n: np.maximum(tost(n), less(n))
    else:
        part.power_of = CONTRADICTED, stats.f_power(ratio, df_of, settings.alpha, "less")
    part.details = det
    return part


def claim_numpy_higher_variance(runs: pd.DataFrame, settings: Settings = DEFAULTS):
    r = _claim(
        8,
        "the variance of each backend across trials within a cell, pooled over the cells "
        "with every trial finite, from a model with a random trial effect shared by the "
        "cells of a trial (variance components, Satterthwaite degrees of freedom: T - 1 "
        "when the trial effect dominates, C (T - 1) when it is absent); the estimate is "
        "log(sd NumPy / sd TensorFlow). Two readings of 'variance': (a) test accuracy, on "
        "the logit scale, (b) training time, on the log scale",
        f"per reading: direction > 0 (F test of the variance ratio, one-sided, p < "
        f"{settings.alpha}); contradicted if significantly < 0 or within a factor "
        f"{settings.sd_ratio_margin} (TOST on the F distribution)",
        [figure(f"speed_accuracy_{b}.png") for b in STUDY_BACKENDS]
        + [figure(f"time_heatmap_{b}.png") for b in STUDY_BACKENDS],
    )
    missing = _missing(runs, NUMPY, TENSORFLOW)
    if missing:
        r.parts.append(inconclusive_part("variance", missing))
        r.reason = missing
        return decide(r, settings)
    step = _step(runs, settings)
    acc = {b: grid(runs, b, "test_accuracy").values for b in STUDY_BACKENDS}
    trials = acc[NUMPY].shape[0]
    y_acc = {b: logit_accuracy(v, step).reshape(trials, -1).T for b, v in acc.items()}
    # the accuracy's step, on the logit scale at the cells' median accuracy
    p_mid = np.clip(np.nanmedian(acc[NUMPY]), 0.01, 0.99) if np.isfinite(acc[NUMPY]).any() else 0.5
    floor = step / (p_mid * (1 - p_mid))
    r.parts.append(
        spread_part(
            y_acc[NUMPY],
            y_acc[TENSORFLOW],
            "(a) test accuracy",
            "log(sd NumPy / sd TensorFlow) of logit(test accuracy) across trials",
            settings,
            (floor, floor),
        )
    )

    def time_part(metric, label):
        y = {b: _time_grid(runs, b, metric).values.reshape(trials, -1).T for b in STUDY_BACKENDS}
        return spread_part(
            y[NUMPY],
            y[TENSORFLOW],
            label,
            f"log(sd NumPy / sd TensorFlow) of log({metric}) across trials",
            settings,
        )

    r.parts.append(time_part("training_time_s", "(b) training time"))
    if _has(runs, "step_time_s"):
        r.beside.append(time_part("step_time_s", "(b) step time"))
    for p in r.parts + r.beside:
        det = p.details
        if det:
            r.numbers[f"{p.name}: cells, df, trial-effect share NumPy / TensorFlow"] = (
                f"{det['cells']} cells x {det['trials']} trials, df {det['df']:.3g}, "
                f"{det['trial_share1']:.0%} / {det['trial_share2']:.0%}"
            )
    for b in STUDY_BACKENDS:
        sd = np.nanstd(acc[b], axis=0, ddof=1) if trials > 1 else np.full(1, np.nan)
        r.numbers[f"median sd of test accuracy over trials, {b}"] = (
            float(np.nanmedian(sd)) if np.isfinite(sd).any() else np.nan
        )
    r.notes += _start_notes(runs)
    return decide(r, settings)


def _start_notes(runs: pd.DataFrame) -> list[str]:
    return [START_NOTES[s] for s in start_modes(runs) if s in START_NOTES]


def curve_features(histories: pd.DataFrame, epochs: int | None = None) -> pd.DataFrame:
    """Per run: noise and mean log loss of the training-loss curve (log scale).

    noise = RMS distance of log(train_loss) from its closest non-increasing curve (isotonic
    regression): 0 for any curve that never goes up, however fast it bends, and it grows
    with every rise of the loss. rises = number of epochs whose loss is above the previous
    one. mean_log_loss = mean of log(train_loss) over the epochs (lower: came down sooner).

    A diverged run (a non-finite loss, or fewer epochs than ``epochs``) is counted, not
    dropped: from the epoch it diverged on, its log loss is taken to be the worst finite log
    loss of any run in the table (the loss went back up and stayed), which gives it a rise
    and a high mean.
    """
    from scipy.optimize import isotonic_regression

    keys = ["model", "learning_rate", "batch_size", "trial"]
    h = histories.sort_values("epoch")
    loss = h["train_loss"].to_numpy(dtype=float)
    ok = np.isfinite(loss) & (loss > 0)
    worst = float(np.log(loss[ok]).max()) if ok.any() else np.nan
    epochs = int(h["epoch"].max()) if epochs is None and len(h) else (epochs or 0)
    rows = []
    for key, run in h.groupby(keys, sort=True):
        v = run["train_loss"].to_numpy(dtype=float)
        good = np.isfinite(v) & (v > 0)
        y = np.full(max(epochs, v.size), worst)
        first_bad = int(np.argmin(good)) if not good.all() else v.size
        y[:first_bad] = np.log(v[:first_bad])
        diverged = first_bad < y.size
        if y.size >= 2 and np.isfinite(y).all():
            fit = isotonic_regression(y, increasing=False).x
            noise = float(np.sqrt(np.mean((y - fit) ** 2)))
            rises = int((np.diff(y) > 0).sum())
        else:
            noise, rises = np.nan, 0
        rows.append((*key, v.size, diverged, noise, rises, float(np.mean(y))))
    return pd.DataFrame(
        rows, columns=[*keys, "epochs", "diverged", "noise", "rises", "mean_log_loss"]
    )


def claim_tensorflow_smoother(histories, settings: Settings = DEFAULTS, runs=None):
    r = _claim(
        9,
        "per run: noise = RMS distance of log(train loss) from its closest non-increasing "
        "curve (isotonic fit; 0 for a curve that never rises, whatever its curvature); "
        "convergence = mean log(train loss) over epochs. Per trial: mean over cells of "
        "noise NumPy - noise TensorFlow and of mean log loss NumPy - TensorFlow. A diverged "
        "run counts as a curve that rises to the worst loss of the study and stays",
        f"direction > 0 for both (TensorFlow less noisy, TensorFlow lower loss sooner); "
        f"contradicted if significantly < 0 or within +-{settings.smoothness_margin} "
        f"(noise) / +-{settings.convergence_margin} (mean log loss) by TOST: a difference "
        f"of 1 % of the loss is negligible, 'not by much' is still more than that",
        [figure("loss_curves.png")],
    )
    needed = {"model", "learning_rate", "batch_size", "trial", "epoch", "train_loss"}
    if histories is None or histories.empty or not needed <= set(histories.columns):
        r.parts.append(inconclusive_part("loss curves", "no training histories"))
        return decide(r, settings)
    have = set(histories["model"].astype(str).unique())
    missing = ", ".join(f"backend {b} not in this run" for b in STUDY_BACKENDS if b not in have)
    if missing:
        r.parts.append(inconclusive_part("loss curves", missing))
        r.reason = missing
        return decide(r, settings)
    epochs = None
    if runs is not None and "epochs" in runs.columns and runs["epochs"].notna().any():
        epochs = int(pd.to_numeric(runs["epochs"]).max())
    f = curve_features(histories.assign(model=histories["model"].astype(str)), epochs)
    keys = ["learning_rate", "batch_size", "trial"]
    both = f[f["model"] == NUMPY].merge(
        f[f["model"] == TENSORFLOW], on=keys, suffixes=("_np", "_tf")
    )
    both["noise"] = both["noise_np"] - both["noise_tf"]
    both["speed"] = both["mean_log_loss_np"] - both["mean_log_loss_tf"]
    per_trial = both.groupby("trial")[["noise", "speed"]].mean()
    n_epochs = int(f["epochs"].max()) if len(f) else 0
    smooth = Part(name="smoother", kind="", statistic="noise NumPy - noise TensorFlow (log loss)")
    if n_epochs < settings.min_epochs_smoothness:
        smooth.reason = f"{n_epochs} epoch(s); the noise of a curve needs >= " + str(
            settings.min_epochs_smoothness
        )
    else:
        direction_part(
            smooth, per_trial["noise"], +1, settings, settings.smoothness_margin, LOSS_RESOLUTION
        )
    faster = Part(name="converges faster", kind="", statistic="mean log loss NumPy - TensorFlow")
    if n_epochs < MIN_EPOCHS_SPEED:
        faster.reason = f"{n_epochs} epoch(s); a loss curve needs >= {MIN_EPOCHS_SPEED}"
    else:
        direction_part(
            faster, per_trial["speed"], +1, settings, settings.convergence_margin, LOSS_RESOLUTION
        )
    r.parts += [smooth, faster]
    for b in STUDY_BACKENDS:
        fb = f[f["model"] == b]
        r.numbers[f"diverged runs, {b} (counted as curves that rise to the worst loss)"] = int(
            fb["diverged"].sum()
        )
        r.numbers[f"runs whose loss ever rises, {b}"] = (
            f"{int((fb['rises'] > 0).sum())} of {len(fb)}"
        )
        r.numbers[f"median noise, {b}"] = float(fb["noise"].median())
    r.notes += _start_notes(runs) if runs is not None else []
    return decide(r, settings)


def evaluate_claims(
    runs: pd.DataFrame,
    histories: pd.DataFrame | None = None,
    comparison: pd.DataFrame | None = None,
    settings: Settings | None = None,
    **overrides,
) -> list[ClaimResult]:
    """All claims, in order. ``overrides`` replace fields of ``settings`` (e.g. alpha=0.01).

    ``comparison`` (comparison.csv), if given, adds what the per-cell tests say to claims 6
    and 7."""
    settings = dataclasses.replace(settings or Settings(), **overrides)
    runs = stats.check_runs(runs)
    if settings.accuracy_step is None:  # inferred once
        settings = dataclasses.replace(settings, accuracy_step=_step(runs, settings))
    results = [
        claim_accuracy_vs_learning_rate(runs, settings),
        claim_accuracy_vs_batch_size(runs, settings),
        claim_equal_accuracy(runs, settings),
        claim_numpy_time_insensitive(runs, settings),
        claim_tensorflow_time_vs_batch(runs, settings),
        claim_numpy_faster_small_batches(runs, comparison, settings),
        claim_tensorflow_faster_large_batches(runs, comparison, settings),
        claim_numpy_higher_variance(runs, settings),
        claim_tensorflow_smoother(histories, settings, runs),
    ]
    results[2].notes += _start_notes(runs)
    return results


def family(results: list[ClaimResult], alpha: float) -> list[bool | None]:
    """Whether each decided verdict survives Holm across the claims (the nine as one family);
    None for an inconclusive claim."""
    adj = stats.holm([r.p_verdict for r in results])
    return [None if not np.isfinite(p) else bool(p < alpha) for p in adj]


# --------------------------------------------------------------------------- other backends


@dataclass
class OtherBackend:
    """A backend other than NumPy compared with NumPy (section of claims.md)."""

    backend: str
    time: list[dict]  # per batch size: ratio backend / NumPy with interval, p
    accuracy: Part | None
    accuracy_numbers: dict


def other_backends(runs: pd.DataFrame, settings: Settings = DEFAULTS) -> list[OtherBackend]:
    """Every backend but NumPy against NumPy: time ratio per batch size (per trial: mean
    over learning rates of log(time backend / time NumPy); t interval across trials at
    ``confidence``, two-sided t-test), and per-cell accuracy equivalence (as claim 3)."""
    runs = stats.check_runs(runs)
    if NUMPY not in set(runs["model"]):
        return []
    batches = axes(runs)[2]
    out = []
    for b in _backends(runs):
        if b == NUMPY:
            continue
        rows = []
        for j, bs in enumerate(batches):
            row = {"batch_size": int(bs)}
            for metric in ("training_time_s", "step_time_s"):
                if not _has(runs, metric):
                    continue
                c = speed_at(runs, b, NUMPY, j, metric)
                n, mean, _ = stats.summary(c)
                lo, hi = stats.t_interval(c, settings.confidence)
                row[metric] = dict(
                    n=n,
                    ratio=np.exp(mean),
                    ci=(np.exp(lo), np.exp(hi)),
                    p=stats.one_sample_p(c, 0.0),
                )
            rows.append(row)
        acc, numbers = cell_equivalence(runs, b, NUMPY, settings)
        if acc.p_contradict < settings.alpha:
            acc.verdict = CONTRADICTED
        elif acc.p_support < settings.alpha:
            acc.verdict = SUPPORTED
        else:
            _fill_power(acc, settings)
        out.append(OtherBackend(b, rows, acc, numbers))
    return out
