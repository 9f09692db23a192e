"""Test the study's claims on our own runs: ``results/claims.md`` and ``results/claims.html``.

Every claim becomes one or more *parts*, each a one-sample t-test on a contrast computed
once per independent replicate. The replicate is the **trial**: trial k of every cell and
backend shares its seed (and, with ``shared_start``, its initial weights and batch order),
so cells of one trial are not independent of each other, but trials are. A per-trial
contrast (say, the slope of accuracy against log10 learning rate, averaged over batch
sizes) therefore gives T independent numbers, and the test has T - 1 degrees of freedom.
Claim 8 (variance across trials) is the exception: there the unit is the grid cell.

A part is one of three kinds (``Settings`` holds every alpha, margin and threshold):

* direction: the contrast has the claimed sign. Supported when the one-sided t-test in the
  claimed direction has p < alpha; contradicted when the opposite one-sided test has
  p < alpha or, where a margin is given, when TOST shows the effect lies within +-margin
  (an effect too small to matter does not support a claim about an effect).
* equivalence: the contrast is negligible ("no effect", "nearly identical"). Supported when
  TOST (two one-sided t-tests) shows it lies within +-margin; contradicted when the test
  of "outside +-margin" has p < alpha.
* threshold: the contrast exceeds a stated threshold ("markedly faster" = at least
  ``marked_speedup`` times). Supported / contradicted by the one-sided t-tests above /
  below the threshold.

A claim is supported when every part is supported, contradicted when any part is
contradicted, inconclusive otherwise. Because one contradicted part suffices, the
contradiction p-values of a claim's parts are Holm-adjusted across the parts; "every part
supported" is an intersection-union test and needs no adjustment. Fewer than 2 finite
contrasts (e.g. ``trials: 1``), a grid with a single level of the factor a claim is about,
or a backend missing from the run make a part inconclusive, with the reason.
"""

from __future__ import annotations

import dataclasses
import html
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlpstudy import stats

NUMPY = "numpy"
TENSORFLOW = "tensorflow"

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"

from mlpstudy.defaults import ACCURACY_MARGIN, ALPHA  # noqa: E402
# claim 1: accuracy change per 10x learning rate below 0.5 pp counts as "no effect"
LR_SLOPE_MARGIN = 0.005
# claim 2: accuracy change per doubling of batch size below 0.5 pp counts as "no effect"
BATCH_SLOPE_MARGIN = 0.005
# claims 4-6: a training-time change below 5 % (per doubling of batch size, per 10x learning
# rate, or between backends) counts as "no effect"; the study's own NumPy spread, 14-17 s
# over 4 doublings of batch size, is about 5 % per doubling
TIME_MARGIN = 0.05
# claim 7: "markedly faster" = TensorFlow at least 1.5 times as fast at the largest batch size
MARKED_SPEEDUP = 1.5
# claim 8: standard deviations within a factor 1.5 of each other count as "equal variance"
SD_RATIO_MARGIN = 1.5
# claim 8: added to each standard deviation before the ratio (1 test image in 10 000)
SD_FLOOR = 1e-4
# claim 9: smoothness needs second differences, so at least 3 epochs
MIN_EPOCHS_SMOOTHNESS = 3
MIN_EPOCHS_SPEED = 2


@dataclass(frozen=True)
class Settings:
    alpha: float = ALPHA
    accuracy_margin: float = ACCURACY_MARGIN
    lr_slope_margin: float = LR_SLOPE_MARGIN
    batch_slope_margin: float = BATCH_SLOPE_MARGIN
    time_margin: float = TIME_MARGIN
    marked_speedup: float = MARKED_SPEEDUP
    sd_ratio_margin: float = SD_RATIO_MARGIN
    sd_floor: float = SD_FLOOR
    min_epochs_smoothness: int = MIN_EPOCHS_SMOOTHNESS
    confidence: float = stats.CONFIDENCE


DEFAULTS = Settings()


@dataclass
class Part:
    """One test inside a claim."""

    name: str
    kind: str  # direction | equivalence | threshold
    statistic: str  # what the contrast is, with its units
    n: int = 0
    unit: str = "trials"
    estimate: float = np.nan
    ci: tuple[float, float] = (np.nan, np.nan)
    p_support: float = np.nan
    p_contradict: float = np.nan
    p_contradict_adj: float = np.nan
    verdict: str = INCONCLUSIVE
    reason: str = ""
    ratio: bool = False  # contrast is a log ratio: also show exp(estimate)


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


def figure(name: str) -> str:
    return f"results/figures/{name}"


# --------------------------------------------------------------------------- tests of parts


def _finite(values) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def _prepare(part: Part, values, settings: Settings) -> np.ndarray | None:
    x = _finite(values)
    part.n = int(x.size)
    if x.size:
        mean, _, lo, hi = stats.mean_ci(x, settings.confidence)
        part.estimate, part.ci = mean, (lo, hi)
    if x.size < 2:
        part.reason = (
            f"{x.size} {part.unit} with a finite value; a t-test across {part.unit} needs "
            "at least 2" + (" (trials: 1 gives no variance)" if part.unit == "trials" else "")
        )
        return None
    return x


def direction_part(part: Part, values, sign: int, settings: Settings, margin=None) -> Part:
    """Claimed sign ``sign`` (+1 / -1); ``margin``: |effect| below it contradicts."""
    part.kind = "direction"
    x = _prepare(part, values, settings)
    if x is None:
        return part
    claimed, opposite = ("greater", "less") if sign > 0 else ("less", "greater")
    part.p_support = stats.one_sample_p(x, 0.0, claimed)
    p_opp = stats.one_sample_p(x, 0.0, opposite)
    part.p_contradict = min(p_opp, stats.tost_p(x, margin)) if margin else p_opp
    return part


def equivalence_part(part: Part, values, margin: float, settings: Settings) -> Part:
    part.kind = "equivalence"
    x = _prepare(part, values, settings)
    if x is None:
        return part
    part.p_support = stats.tost_p(x, margin)
    part.p_contradict = stats.beyond_p(x, margin)
    return part


def threshold_part(part: Part, values, threshold: float, settings: Settings) -> Part:
    part.kind = "threshold"
    x = _prepare(part, values, settings)
    if x is None:
        return part
    part.p_support = stats.one_sample_p(x, threshold, "greater")
    part.p_contradict = stats.one_sample_p(x, threshold, "less")
    return part


def inconclusive_part(name: str, reason: str, statistic: str = "") -> Part:
    return Part(name=name, kind="-", statistic=statistic, reason=reason)


def decide(result: ClaimResult, settings: Settings, adjust: bool = True) -> ClaimResult:
    """Holm-adjust the parts' contradiction p-values, give each part and the claim a verdict."""
    parts = result.parts
    if adjust:
        adj = stats.holm([p.p_contradict for p in parts]) if parts else []
        for p, a in zip(parts, adj, strict=False):
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
    verdicts = [p.verdict for p in parts]
    if not parts:
        result.verdict = INCONCLUSIVE
        result.reason = result.reason or "nothing to test"
    elif CONTRADICTED in verdicts:
        result.verdict = CONTRADICTED
        result.reason = "contradicted by: " + ", ".join(
            p.name for p in parts if p.verdict == CONTRADICTED
        )
    elif all(v == SUPPORTED for v in verdicts):
        result.verdict = SUPPORTED
        result.reason = "every part supported"
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


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    ok = np.isfinite(a)
    total = np.where(ok, a, 0.0).sum(axis=axis)
    count = ok.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def lr_slopes(g: Grid) -> np.ndarray:
    """[trial, batch]: slope of the value against log10(learning rate)."""
    x = np.log10(g.lrs)
    return np.array(
        [[slope(x, g.values[t, :, j]) for j in range(g.batches.size)] for t in range(g.trials.size)]
    ).reshape(g.trials.size, g.batches.size)


def batch_slopes(g: Grid) -> np.ndarray:
    """[trial, lr]: slope of the value against log2(batch size)."""
    x = np.log2(g.batches.astype(float))
    return np.array(
        [[slope(x, g.values[t, i, :]) for i in range(g.lrs.size)] for t in range(g.trials.size)]
    ).reshape(g.trials.size, g.lrs.size)


def _backends(runs: pd.DataFrame) -> list[str]:
    return sorted(runs["model"].unique())


def _missing(runs: pd.DataFrame, *needed: str) -> str:
    have = set(_backends(runs))
    absent = [b for b in needed if b not in have]
    return ", ".join(f"backend {b} not in this run" for b in absent)


def _mean_by(runs: pd.DataFrame, backend: str, by: str, metric: str) -> dict:
    sub = runs[runs["model"] == backend]
    return {_fmt_key(k): float(v) for k, v in sub.groupby(by)[metric].mean().items()}


def _fmt_key(k) -> str:
    return f"{k:g}" if isinstance(k, float) else str(k)


# --------------------------------------------------------------------------- the claims


def claim_accuracy_vs_learning_rate(runs: pd.DataFrame, settings: Settings = DEFAULTS):
    r = ClaimResult(
        id=1,
        title="Accuracy increases with learning rate, in every backend",
        section="7.3",
        quote=(
            "Learning rate strongly influences final performance. In both frameworks, "
            "higher learning rates yield markedly higher accuracy."
        ),
        statistic=(
            "per trial: OLS slope of test accuracy against log10(learning rate), "
            "averaged over batch sizes (accuracy per 10x learning rate)"
        ),
        rule=(
            f"direction, per backend: supported if the mean slope is > 0 (one-sided t-test "
            f"across trials, p < {settings.alpha}); contradicted if it is < 0 or lies "
            f"within +-{settings.lr_slope_margin} (TOST)"
        ),
        figures=[figure("accuracy_vs_learning_rate.png")]
        + [figure(f"accuracy_heatmap_{b}.png") for b in _backends(runs)],
    )
    _, lrs, _ = axes(runs)
    for b in _backends(runs):
        part = Part(name=b, kind="", statistic="slope per 10x learning rate")
        if lrs.size < 2:
            part.reason = "only one learning rate in the grid"
        else:
            c = _nanmean(lr_slopes(grid(runs, b, "test_accuracy")), axis=1)
            direction_part(part, c, +1, settings, settings.lr_slope_margin)
        r.parts.append(part)
        r.numbers[f"mean accuracy by learning rate, {b}"] = _mean_by(
            runs, b, "learning_rate", "test_accuracy"
        )
    return decide(r, settings)


def claim_accuracy_vs_batch_size(runs: pd.DataFrame, settings: Settings = DEFAULTS):
    r = ClaimResult(
        id=2,
        title="Accuracy decreases with batch size, most at small learning rates",
        section="7.2",
        quote=(
            "Across both frameworks, accuracy tends to decrease as batch size increases, "
            "especially at small learning rates."
        ),
        statistic=(
            "per trial: (a) OLS slope of test accuracy against log2(batch size), "
            "averaged over learning rates (accuracy per doubling); (b) slope of those "
            "per-learning-rate batch-size slopes against log10(learning rate): > 0 "
            "means the decrease is steepest at small learning rates"
        ),
        rule=(
            f"per backend, (a) direction < 0, contradicted also if within "
            f"+-{settings.batch_slope_margin} (TOST); (b) direction > 0, contradicted only "
            f"if significantly < 0; one-sided t-tests across trials at alpha = "
            f"{settings.alpha}"
        ),
        figures=[figure("accuracy_vs_batch_size.png")]
        + [figure(f"accuracy_heatmap_{b}.png") for b in _backends(runs)],
    )
    _, lrs, batches = axes(runs)
    for b in _backends(runs):
        main = Part(name=f"{b}: decrease", kind="", statistic="slope per doubling of batch size")
        inter = Part(
            name=f"{b}: most at small lr",
            kind="",
            statistic="change of the batch-size slope per 10x learning rate",
        )
        if batches.size < 2:
            main.reason = inter.reason = "only one batch size in the grid"
        else:
            s = batch_slopes(grid(runs, b, "test_accuracy"))
            direction_part(main, _nanmean(s, axis=1), -1, settings, settings.batch_slope_margin)
            if lrs.size < 2:
                inter.reason = "only one learning rate in the grid"
            else:
                x = np.log10(lrs)
                direction_part(inter, [slope(x, row) for row in s], +1, settings)
        r.parts += [main, inter]
        r.numbers[f"mean accuracy by batch size, {b}"] = _mean_by(
            runs, b, "batch_size", "test_accuracy"
        )
    return decide(r, settings)


def claim_equal_accuracy(runs: pd.DataFrame, settings: Settings = DEFAULTS):
    m = settings.accuracy_margin
    r = ClaimResult(
        id=3,
        title="For a given hyperparameter pair the implementations reach nearly identical accuracy",
        section="7.7 (also 7.2, 7.3)",
        quote=(
            "Accuracy trends aligned closely across frameworks, and for many hyperparameter "
            "pairs the resulting values were nearly identical."
        ),
        statistic=(
            f"per cell and pair of backends: paired per-trial accuracy difference; "
            f"equivalence by TOST with margin +-{m} ({m * 100:g} percentage points)"
        ),
        rule=(
            f"per pair of backends: supported if TOST gives p < {settings.alpha} in every "
            f"cell (intersection-union test, no adjustment needed); contradicted if in some "
            f"cell the difference lies significantly outside +-{m} (Holm-adjusted across "
            f"all cells and pairs, p < {settings.alpha}); inconclusive otherwise"
        ),
        figures=[figure("accuracy_vs_batch_size.png"), figure("accuracy_vs_learning_rate.png")],
    )
    backends = _backends(runs)
    if len(backends) < 2:
        r.parts.append(inconclusive_part("pairs", "fewer than 2 backends in this run"))
        return decide(r, settings)
    _, lrs, batches = axes(runs)
    pairs = list(itertools.combinations(backends, 2))
    tost, beyond, n_pairs, cell_means = [], [], [], []  # per pair: one entry per cell
    for a, b in pairs:
        diffs = grid(runs, a, "test_accuracy").values - grid(runs, b, "test_accuracy").values
        d_cells = [
            _finite(diffs[:, i, j])
            for i, j in itertools.product(range(lrs.size), range(batches.size))
        ]
        tost.append(np.array([stats.tost_p(d, m) for d in d_cells]))
        beyond.append(np.array([stats.beyond_p(d, m) for d in d_cells]))
        n_pairs.append(np.array([d.size for d in d_cells]))
        cell_means.append(np.array([d.mean() if d.size else np.nan for d in d_cells]))
    # Holm across every cell of every pair: "some cell differs" is a union of tests
    adjusted = np.split(stats.holm(np.concatenate(beyond)), len(pairs))
    for (a, b), p_tost, p_adj, n, means in zip(
        pairs, tost, adjusted, n_pairs, cell_means, strict=False
    ):
        part = Part(
            name=f"{a} vs {b}",
            kind="equivalence",
            unit="cells",
            statistic=f"accuracy difference {a} - {b}, per cell",
        )
        part.n = int(np.isfinite(means).sum())
        if part.n:
            part.estimate = float(np.nanmean(means))
            part.ci = (float(np.nanmin(means)), float(np.nanmax(means)))
        too_few = int((n < 2).sum())
        part.p_support = float(p_tost.max()) if too_few == 0 else np.nan
        part.p_contradict_adj = float(np.nanmin(p_adj)) if np.isfinite(p_adj).any() else np.nan
        n_equiv, n_beyond = (
            int((p_tost < settings.alpha).sum()),
            int((p_adj < settings.alpha).sum()),
        )
        r.numbers[f"{part.name}: cells equivalent within +-{m:g} (TOST)"] = f"{n_equiv} of {n.size}"
        r.numbers[f"{part.name}: cells with a difference beyond +-{m:g} (Holm)"] = (
            f"{n_beyond} of {n.size}"
        )
        r.numbers[f"{part.name}: largest |mean difference| in a cell"] = (
            float(np.nanmax(np.abs(means))) if part.n else np.nan
        )
        if too_few:
            part.reason = (
                f"{too_few} cell(s) with fewer than 2 paired trials: no test "
                "there (trials: 1 gives no variance)"
            )
        elif part.p_support >= settings.alpha:
            part.reason = f"equivalence not shown in {n.size - n_equiv} of {n.size} cells"
        r.parts.append(part)
    r.numbers["estimate and interval of a pair"] = (
        "mean over cells of the mean difference; smallest and largest cell mean difference"
    )
    return decide(r, settings, adjust=False)


def _time_grid(runs: pd.DataFrame, backend: str) -> Grid:
    return grid(runs, backend, "training_time_s", log=True)


def claim_numpy_time_insensitive(runs: pd.DataFrame, settings: Settings = DEFAULTS):
    m = np.log1p(settings.time_margin)
    r = ClaimResult(
        id=4,
        title="NumPy training time is tightly clustered and insensitive to batch size and "
        "learning rate",
        section="7.1, 7.4",
        quote=(
            "The NumPy scatter plot exhibits tightly clustered training times (14-17s) "
            "[...] (7.1); NumPy shows almost no dependence on batch size (7.4)"
        ),
        statistic=(
            "per trial: OLS slope of log(training time) against log2(batch size) "
            "(averaged over learning rates) and against log10(learning rate) (averaged "
            "over batch sizes); exp(slope) is the time factor per doubling / per 10x"
        ),
        rule=(
            f"equivalence for both slopes: supported if TOST shows |slope| < log(1 + "
            f"{settings.time_margin}) (a change below {settings.time_margin:.0%}), "
            f"contradicted if a slope lies significantly outside that margin"
        ),
        figures=[
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
    g = _time_grid(runs, NUMPY)
    r.parts += [
        _time_slope_part(g, "batch", f"{NUMPY}: batch size", settings, equivalence=m),
        _time_slope_part(g, "lr", f"{NUMPY}: learning rate", settings, equivalence=m),
    ]
    t = _finite(np.exp(g.values))
    if t.size:
        r.numbers["training time range [s]"] = f"{t.min():.3g} - {t.max():.3g}"
        r.numbers["coefficient of variation over all runs"] = (
            float(t.std(ddof=1) / t.mean()) if t.size > 1 else np.nan
        )
    return decide(r, settings)


def _time_slope_part(
    g: Grid,
    factor: str,
    name: str,
    settings: Settings,
    equivalence=None,
    sign: int = 0,
    margin=None,
) -> Part:
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


def claim_tensorflow_time_vs_batch(runs: pd.DataFrame, settings: Settings = DEFAULTS):
    m = np.log1p(settings.time_margin)
    r = ClaimResult(
        id=5,
        title="TensorFlow training time falls systematically with batch size; learning rate "
        "has no effect",
        section="7.4 (also 7.5)",
        quote=(
            "TensorFlow becomes significantly faster at large batches across all learning "
            "rates. Any apparent effect of learning rate on training time is almost "
            "certainly due to stochastic variations."
        ),
        statistic=(
            "per trial: OLS slope of log(training time) against log2(batch size) and "
            "against log10(learning rate), as in claim 4"
        ),
        rule=(
            f"batch size: direction < 0, contradicted also if within log(1 + "
            f"{settings.time_margin}) (TOST); learning rate: equivalence within log(1 + "
            f"{settings.time_margin})"
        ),
        figures=[
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
    g = _time_grid(runs, TENSORFLOW)
    r.parts += [
        _time_slope_part(
            g, "batch", f"{TENSORFLOW}: falls with batch size", settings, sign=-1, margin=m
        ),
        _time_slope_part(
            g, "lr", f"{TENSORFLOW}: no learning-rate effect", settings, equivalence=m
        ),
    ]
    r.numbers[f"mean training time by batch size [s], {TENSORFLOW}"] = _mean_by(
        runs, TENSORFLOW, "batch_size", "training_time_s"
    )
    return decide(r, settings)


def _speed_at(runs: pd.DataFrame, which: str):
    """Per trial: mean over learning rates of log(time numpy) - log(time tensorflow)."""
    gn, gt = _time_grid(runs, NUMPY), _time_grid(runs, TENSORFLOW)
    j = 0 if which == "smallest" else gn.batches.size - 1
    diff = gn.values[:, :, j] - gt.values[:, :, j]
    return int(gn.batches[j]), _nanmean(diff, axis=1)


def _cells_from_comparison(comparison, batch: int, settings: Settings) -> dict:
    """How many cells at ``batch`` the per-cell paired test (comparison.csv) calls faster."""
    if comparison is None or comparison.empty:
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
    return {
        f"cells at batch size {batch} (comparison.csv, {sel['correction'].iloc[0]})": (
            f"{len(sel)}; NumPy significantly faster in {int((sig & (sel['mean_diff'] < 0)).sum())}"
            f", TensorFlow significantly faster in {int((sig & (sel['mean_diff'] > 0)).sum())}"
        )
    }


def claim_numpy_faster_small_batches(runs, comparison=None, settings: Settings = DEFAULTS):
    m = np.log1p(settings.time_margin)
    r = ClaimResult(
        id=6,
        title="At small batch sizes NumPy is faster than TensorFlow",
        section="7.4",
        quote=(
            "the large computational overhead created by TensorFlow means that at small "
            "batch sizes, the NumPy models all outperform the TensorFlow equivalent."
        ),
        statistic=(
            "per trial, at the smallest batch size of the grid: mean over learning "
            "rates of log(time TensorFlow / time NumPy); exp() is how many times "
            "slower TensorFlow is"
        ),
        rule=(
            f"direction > 0 (NumPy faster); contradicted if < 0 or within log(1 + "
            f"{settings.time_margin}) (TOST)"
        ),
        figures=[figure("time_vs_batch_size.png")],
    )
    missing = _missing(runs, NUMPY, TENSORFLOW)
    if missing:
        r.parts.append(inconclusive_part("speed", missing))
        r.reason = missing
        return decide(r, settings)
    batch, c = _speed_at(runs, "smallest")
    part = Part(
        name=f"batch size {batch}",
        kind="",
        ratio=True,
        statistic="log(time TensorFlow / time NumPy)",
    )
    r.parts.append(direction_part(part, -c, +1, settings, m))
    r.numbers.update(_cells_from_comparison(comparison, batch, settings))
    return decide(r, settings)


def claim_tensorflow_faster_large_batches(runs, comparison=None, settings: Settings = DEFAULTS):
    thr = np.log(settings.marked_speedup)
    r = ClaimResult(
        id=7,
        title="TensorFlow is markedly faster at large batch sizes",
        section="abstract, 7.7",
        quote=(
            "TensorFlow delivers [...] markedly faster training—particularly at large batch "
            "sizes where kernel-level parallelism is most effective (abstract)"
        ),
        statistic=(
            "per trial, at the largest batch size of the grid: mean over learning rates "
            "of log(time NumPy / time TensorFlow), the speed-up of TensorFlow"
        ),
        rule=(
            f"threshold: supported if the speed-up is significantly above "
            f"{settings.marked_speedup}x (one-sided t-test across trials), contradicted if "
            f"significantly below"
        ),
        figures=[figure("time_vs_batch_size.png")]
        + [figure(f"speed_accuracy_{b}.png") for b in (NUMPY, TENSORFLOW)],
    )
    missing = _missing(runs, NUMPY, TENSORFLOW)
    if missing:
        r.parts.append(inconclusive_part("speed", missing))
        r.reason = missing
        return decide(r, settings)
    batch, c = _speed_at(runs, "largest")
    part = Part(
        name=f"batch size {batch}",
        kind="",
        ratio=True,
        statistic="log(time NumPy / time TensorFlow)",
    )
    r.parts.append(threshold_part(part, c, thr, settings))
    r.numbers.update(_cells_from_comparison(comparison, batch, settings))
    return decide(r, settings)


def sd_over_trials(values: np.ndarray) -> np.ndarray:
    """[lr, batch]: sample sd (ddof=1) over the trial axis of the finite values; NaN if < 2."""
    ok = np.isfinite(values)
    n = ok.sum(axis=0)
    x = np.where(ok, values, 0.0)
    mean = x.sum(axis=0) / np.maximum(n, 1)
    ss = (np.where(ok, values - mean, 0.0) ** 2).sum(axis=0)
    return np.where(n >= 2, np.sqrt(ss / np.maximum(n - 1, 1)), np.nan)


def claim_numpy_higher_variance(runs: pd.DataFrame, settings: Settings = DEFAULTS):
    m = np.log(settings.sd_ratio_margin)
    r = ClaimResult(
        id=8,
        title="NumPy shows higher variance across trials than TensorFlow",
        section="abstract, 7.1",
        quote=(
            "The NumPy implementation displays higher variance (abstract); [...] extremely "
            "wide variation in accuracy (66-97%) (7.1)"
        ),
        statistic=(
            f"per cell: log((sd NumPy + {settings.sd_floor:g}) / (sd TensorFlow + "
            f"{settings.sd_floor:g})) of test accuracy over trials; the floor (one test "
            "image) keeps cells without spread finite"
        ),
        rule=(
            f"direction > 0 across cells (one-sided t-test, the cell is the unit here); "
            f"contradicted if < 0 or within log({settings.sd_ratio_margin}) (TOST)"
        ),
        figures=[figure(f"speed_accuracy_{b}.png") for b in (NUMPY, TENSORFLOW)],
    )
    missing = _missing(runs, NUMPY, TENSORFLOW)
    if missing:
        r.parts.append(inconclusive_part("variance", missing))
        r.reason = missing
        return decide(r, settings)
    part = Part(
        name="test accuracy",
        kind="",
        unit="cells",
        ratio=True,
        statistic="log ratio of standard deviations over trials, NumPy / TensorFlow",
    )
    sds = {b: sd_over_trials(grid(runs, b, "test_accuracy").values) for b in (NUMPY, TENSORFLOW)}
    ratio = np.log((sds[NUMPY] + settings.sd_floor) / (sds[TENSORFLOW] + settings.sd_floor))
    if int(runs["trial"].nunique()) < 2:
        part.reason = "fewer than 2 trials: no variance across trials (trials: 1)"
    else:
        direction_part(part, ratio, +1, settings, m)
    r.parts.append(part)
    for b in (NUMPY, TENSORFLOW):
        r.numbers[f"median sd of test accuracy over trials, {b}"] = (
            float(np.nanmedian(sds[b])) if np.isfinite(sds[b]).any() else np.nan
        )
    return decide(r, settings)


def curve_features(histories: pd.DataFrame) -> pd.DataFrame:
    """Per run: roughness and mean log loss of the training-loss curve.

    roughness = mean |second difference| of log(train_loss) over epochs (0 for a curve
    that is a straight line in log scale, grows with epoch-to-epoch jitter); NaN with fewer
    than 3 epochs. mean_log_loss = mean of log(train_loss) over epochs, the area under
    the log-loss curve per epoch: lower means the loss came down sooner. Runs with a
    non-finite or non-positive loss (diverged) get NaN for both.
    """
    keys = ["model", "learning_rate", "batch_size", "trial"]
    rows = []
    for key, h in histories.sort_values("epoch").groupby(keys, sort=True):
        loss = h["train_loss"].to_numpy(dtype=float)
        ok = bool(np.all(np.isfinite(loss)) and np.all(loss > 0))
        y = np.log(loss) if ok else None
        rough = float(np.mean(np.abs(np.diff(y, 2)))) if ok and y.size >= 3 else np.nan
        rows.append((*key, len(loss), rough, float(np.mean(y)) if ok and y.size else np.nan))
    return pd.DataFrame(rows, columns=[*keys, "epochs", "roughness", "mean_log_loss"])


def claim_tensorflow_smoother(histories, settings: Settings = DEFAULTS):
    r = ClaimResult(
        id=9,
        title="TensorFlow's loss curves are smoother and converge slightly faster",
        section="7.6, 7.7",
        quote=(
            "TensorFlow loss curves are smoother although not by much (7.6); [...] with "
            "TensorFlow converging slightly more smoothly and quickly (7.7)"
        ),
        statistic=(
            "per run: roughness = mean |second difference| of log(train loss) over "
            "epochs; convergence = mean log(train loss) over epochs (area under the "
            "log-loss curve). Per trial: mean over cells of log(roughness NumPy / "
            "roughness TensorFlow) and of mean-log-loss NumPy - TensorFlow"
        ),
        rule=(
            f"direction > 0 for both (TensorFlow smoother, TensorFlow lower loss sooner); "
            f"contradicted if significantly < 0; no negligibility margin because the study "
            f"itself says 'not by much'; roughness needs >= "
            f"{settings.min_epochs_smoothness} epochs"
        ),
        figures=[figure("loss_curves.png")],
    )
    needed = {"model", "learning_rate", "batch_size", "trial", "epoch", "train_loss"}
    if histories is None or histories.empty or not needed <= set(histories.columns):
        r.parts.append(inconclusive_part("loss curves", "no training histories"))
        return decide(r, settings)
    have = set(histories["model"].astype(str).unique())
    missing = ", ".join(
        f"backend {b} not in this run" for b in (NUMPY, TENSORFLOW) if b not in have
    )
    if missing:
        r.parts.append(inconclusive_part("loss curves", missing))
        r.reason = missing
        return decide(r, settings)
    f = curve_features(histories.assign(model=histories["model"].astype(str)))
    keys = ["learning_rate", "batch_size", "trial"]
    both = f[f["model"] == NUMPY].merge(
        f[f["model"] == TENSORFLOW], on=keys, suffixes=("_np", "_tf")
    )
    eps = 1e-12
    both["rough"] = np.log((both["roughness_np"] + eps) / (both["roughness_tf"] + eps))
    both["speed"] = both["mean_log_loss_np"] - both["mean_log_loss_tf"]
    per_trial = both.groupby("trial")[["rough", "speed"]].mean()
    epochs = int(f["epochs"].min()) if len(f) else 0
    smooth = Part(
        name="smoother",
        kind="",
        ratio=True,
        statistic="log(roughness NumPy / roughness TensorFlow)",
    )
    if epochs < settings.min_epochs_smoothness:
        smooth.reason = (
            f"{epochs} epoch(s); roughness needs >= " f"{settings.min_epochs_smoothness}"
        )
    else:
        direction_part(smooth, per_trial["rough"], +1, settings)
    faster = Part(name="converges faster", kind="", statistic="mean log loss NumPy - TensorFlow")
    if epochs < MIN_EPOCHS_SPEED:
        faster.reason = f"{epochs} epoch(s); a loss curve needs >= {MIN_EPOCHS_SPEED}"
    else:
        direction_part(faster, per_trial["speed"], +1, settings)
    r.parts += [smooth, faster]
    bad = f[f["mean_log_loss"].isna()]
    r.numbers["runs left out (non-finite loss: diverged)"] = int(len(bad))
    for b in (NUMPY, TENSORFLOW):
        r.numbers[f"median roughness, {b}"] = float(f.loc[f["model"] == b, "roughness"].median())
    return decide(r, settings)


def evaluate_claims(
    runs: pd.DataFrame,
    histories: pd.DataFrame | None = None,
    comparison: pd.DataFrame | None = None,
    settings: Settings | None = None,
    **overrides,
) -> list[ClaimResult]:
    """All claims, in order. ``overrides`` replace fields of ``settings`` (e.g. alpha=0.01)."""
    settings = dataclasses.replace(settings or Settings(), **overrides)
    runs = stats.check_runs(runs)
    if comparison is None:
        comparison = stats.compare_cells(runs, alpha=settings.alpha)
    return [
        claim_accuracy_vs_learning_rate(runs, settings),
        claim_accuracy_vs_batch_size(runs, settings),
        claim_equal_accuracy(runs, settings),
        claim_numpy_time_insensitive(runs, settings),
        claim_tensorflow_time_vs_batch(runs, settings),
        claim_numpy_faster_small_batches(runs, comparison, settings),
        claim_tensorflow_faster_large_batches(runs, comparison, settings),
        claim_numpy_higher_variance(runs, settings),
        claim_tensorflow_smoother(histories, settings),
    ]


# --------------------------------------------------------------------------- rendering
# One list of blocks, rendered to Markdown and to HTML, so the two never disagree.


def _num(x) -> str:
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        if not np.isfinite(x):
            return "n/a" if np.isnan(x) else ("inf" if x > 0 else "-inf")
        return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"
    return str(x)


def _estimate(p: Part) -> str:
    if not np.isfinite(p.estimate):
        return "n/a"
    text = f"{_num(p.estimate)} [{_num(p.ci[0])}, {_num(p.ci[1])}]"
    if p.ratio:
        text += f" (x{np.exp(p.estimate):.2f})"
    return text


def _blocks(results: list[ClaimResult], settings: Settings, title: str) -> list[tuple]:
    b: list[tuple] = [("h1", title)]
    b.append(
        (
            "p",
            "Each claim of the study is tested on this run's data with the rule stated "
            "under it, decided before looking at the data. Verdicts: supported, "
            "contradicted, inconclusive (the data cannot tell; the reason is given).",
        )
    )
    b.append(
        (
            "table",
            ["#", "claim", "section", "verdict"],
            [[str(r.id), r.title, r.section, r.verdict.upper()] for r in results],
        )
    )
    b.append(("h2", "How verdicts are decided"))
    b.append(("p", __doc__.split("\n\n", 2)[1].replace("\n", " ")))
    b.append(
        (
            "ul",
            [
                "direction: supported if the one-sided t-test in the claimed direction gives "
                "p < alpha; contradicted if the opposite one-sided test does, or (where a "
                "margin is given) TOST shows the effect lies within +-margin.",
                "equivalence: supported if TOST (two one-sided t-tests) shows the effect within "
                "+-margin; contradicted if the effect lies significantly outside +-margin.",
                "threshold: supported / contradicted by the one-sided t-tests above / below it.",
                "A claim is supported if every part is, contradicted if any part is (contradiction "
                "p-values Holm-adjusted across the claim's parts), inconclusive otherwise.",
            ],
        )
    )
    b.append(
        (
            "table",
            ["setting", "value"],
            [[k, _num(v)] for k, v in dataclasses.asdict(settings).items()],
        )
    )
    for r in results:
        b.append(("h2", f"Claim {r.id}: {r.title} — {r.verdict.upper()}"))
        b.append(("quote", f"{r.quote} — study, section {r.section}"))
        b.append(
            (
                "ul",
                [
                    f"Verdict: {r.verdict} ({r.reason})",
                    f"Statistic: {r.statistic}",
                    f"Rule: {r.rule}",
                    "Figures: " + ", ".join(r.figures),
                ],
            )
        )
        b.append(
            (
                "table",
                [
                    "part",
                    "kind",
                    "n",
                    "estimate [95% CI]",
                    "p support",
                    "p contradict (adj.)",
                    "verdict",
                    "note",
                ],
                [
                    [
                        p.name,
                        p.kind,
                        f"{p.n} {p.unit}",
                        _estimate(p),
                        _num(p.p_support),
                        _num(p.p_contradict_adj),
                        p.verdict,
                        p.reason,
                    ]
                    for p in r.parts
                ],
            )
        )
        if r.numbers:
            items = []
            for k, v in r.numbers.items():
                if isinstance(v, dict):
                    v = ", ".join(f"{kk}: {_num(vv)}" for kk, vv in v.items())
                items.append(f"{k}: {_num(v)}")
            b.append(("ul", items))
    return b


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(
    results: list[ClaimResult],
    settings: Settings | None = None,
    title: str = "Claims of the study, tested on this run",
) -> str:
    out = []
    for kind, *rest in _blocks(results, settings or Settings(), title):
        if kind == "h1":
            out.append(f"# {rest[0]}\n")
        elif kind == "h2":
            out.append(f"## {rest[0]}\n")
        elif kind == "p":
            out.append(f"{rest[0]}\n")
        elif kind == "quote":
            out.append(f"> {rest[0]}\n")
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in rest[0]) + "\n")
        elif kind == "table":
            head, rows = rest
            lines = ["| " + " | ".join(map(_md_cell, head)) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
            out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def render_html(
    results: list[ClaimResult],
    settings: Settings | None = None,
    title: str = "Claims of the study, tested on this run",
) -> str:
    e = html.escape
    body = []
    for kind, *rest in _blocks(results, settings or Settings(), title):
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{e(rest[0])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{e(rest[0])}</p>")
        elif kind == "quote":
            body.append(f"<blockquote>{e(rest[0])}</blockquote>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in rest[0]) + "</ul>")
        elif kind == "table":
            head, rows = rest
            th = "".join(f"<th>{e(h)}</th>" for h in head)
            trs = "".join(
                "<tr>" + "".join(f'<td class="{e(str(c))}">{e(str(c))}</td>' for c in row) + "</tr>"
                for row in rows
            )
            body.append(f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>")
    style = (
        "body{font-family:sans-serif;max-width:70em;margin:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
        ".SUPPORTED,.supported{background:#dfd}.CONTRADICTED,.contradicted{background:#fdd}"
        ".INCONCLUSIVE,.inconclusive{background:#eee}"
        "blockquote{border-left:3px solid #999;margin-left:0;padding-left:1em}"
    )
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{e(title)}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_claims(
    table_path, histories_path, comparison_path, markdown_path, html_path, **overrides
) -> list[ClaimResult]:
    """Read the run table, histories and comparison; write claims.md and claims.html."""
    runs = stats.load_runs(table_path)
    histories = pd.read_parquet(histories_path) if histories_path else None
    comparison = pd.read_csv(comparison_path) if comparison_path else None
    settings = dataclasses.replace(Settings(), **overrides)
    results = evaluate_claims(runs, histories, comparison, settings)
    for path, text in (
        (markdown_path, render_markdown(results, settings)),
        (html_path, render_html(results, settings)),
    ):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
    return results
