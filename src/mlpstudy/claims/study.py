"""Claims 1-7 of the study: accuracy against the hyperparameters, the two backends'
agreement, and training time. Each function computes its parts and decides; the prose is
in ``text``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlpstudy import stats
from mlpstudy.claims import grids as G
from mlpstudy.claims.engine import (
    DEFAULTS,
    ClaimResult,
    Part,
    Settings,
    decide,
    direction_part,
    equivalence_part,
    inconclusive_part,
    threshold_part,
)
from mlpstudy.claims.grids import NUMPY, STUDY_BACKENDS, TENSORFLOW
from mlpstudy.claims.parts import cell_equivalence
from mlpstudy.claims.text import START_NOTES, TEXT


def figure(name: str) -> str:
    """A figure of this study, relative to the study's folder (where claims.md lies)."""
    return f"figures/{name}"


def new_claim(cid: int, statistic: str, rule: str, figures: list[str], runs=None) -> ClaimResult:
    title, section, quote = TEXT[cid]
    r = ClaimResult(cid, title, section, quote, statistic, rule, figures)
    if runs is not None:
        r.start = G.start_of(runs)
    return r


def start_notes(runs: pd.DataFrame) -> list[str]:
    return [START_NOTES[s] for s in G.start_modes(runs) if s in START_NOTES]


def time_notes(runs: pd.DataFrame) -> list[str]:
    return [G.contended_note(runs)] if G.contended_count(runs) is not None else []


def claim_accuracy_vs_learning_rate(runs: pd.DataFrame, settings: Settings = DEFAULTS):
    m = settings.lr_slope_margin
    r = new_claim(
        1,
        "per trial: OLS slope of test accuracy against log10(learning rate), averaged over "
        "batch sizes (accuracy per 10x learning rate)",
        f"material direction, per backend ('markedly higher'): supported if the mean slope "
        f"is significantly above +{m} (one-sided t-test across trials, p < {settings.alpha}: "
        f"the 90 % interval lies above it); contradicted if significantly below +{m}",
        [figure("accuracy_vs_learning_rate.png")]
        + [figure(f"accuracy_heatmap_{b}.png") for b in G.present(runs)],
        runs,
    )
    _, lrs, batches = G.axes(runs)
    step = G.resolution(runs, settings)
    for b in STUDY_BACKENDS:
        part = Part(name=b, kind="", statistic="slope per 10x learning rate")
        if b not in set(runs["backend"]):
            part.reason = f"backend {b} not in this run"
        elif lrs.size < 2:
            part.reason = "only one learning rate in the grid"
        else:
            g = G.grid(runs, b, "test_accuracy")
            floor = step / np.sqrt(batches.size * G.sxx(G.log_lrs(g)))
            c = G.nanmean(G.lr_slopes(g), axis=1)
            direction_part(part, c, +1, settings, m, floor)
            r.numbers[f"mean accuracy by learning rate, {b}"] = G.mean_by(
                runs, b, "learning_rate", "test_accuracy"
            )
        r.parts.append(part)
    return decide(r, settings)


def claim_accuracy_vs_batch_size(runs: pd.DataFrame, settings: Settings = DEFAULTS):
    m = settings.batch_slope_margin
    r = new_claim(
        2,
        "per trial: (a) OLS slope of test accuracy against log2(batch size), averaged over "
        "learning rates (accuracy per doubling); (b) slope of those per-learning-rate "
        "batch-size slopes against log10(learning rate): > 0 means the decrease is "
        "steepest at small learning rates",
        f"per backend, (a) material direction: supported if the slope is significantly "
        f"below -{m}, contradicted if significantly above -{m}; (b) bare direction (the "
        f"study gives no size for 'especially', so 0 is the boundary): supported if "
        f"significantly > 0, contradicted if significantly < 0; one-sided t-tests across "
        f"trials at alpha = {settings.alpha}",
        [figure("accuracy_vs_batch_size.png")]
        + [figure(f"accuracy_heatmap_{b}.png") for b in G.present(runs)],
        runs,
    )
    _, lrs, batches = G.axes(runs)
    step = G.resolution(runs, settings)
    for b in STUDY_BACKENDS:
        main = Part(name=f"{b}: decrease", kind="", statistic="slope per doubling of batch size")
        inter = Part(
            name=f"{b}: most at small lr",
            kind="",
            statistic="change of the batch-size slope per 10x learning rate",
        )
        if b not in set(runs["backend"]):
            main.reason = inter.reason = f"backend {b} not in this run"
        elif batches.size < 2:
            main.reason = inter.reason = "only one batch size in the grid"
        else:
            g = G.grid(runs, b, "test_accuracy")
            s = G.batch_slopes(g)
            sxx_b = G.sxx(G.log_batches(g))
            floor = step / np.sqrt(lrs.size * sxx_b)
            direction_part(main, G.nanmean(s, 1), -1, settings, m, floor)
            if lrs.size < 2:
                inter.reason = "only one learning rate in the grid"
            else:
                x = G.log_lrs(g)
                floor = step / np.sqrt(G.sxx(x) * sxx_b)
                direction_part(inter, [G.slope(x, row) for row in s], +1, settings, floor=floor)
            r.numbers[f"mean accuracy by batch size, {b}"] = G.mean_by(
                runs, b, "batch_size", "test_accuracy"
            )
        r.parts += [main, inter]
    return decide(r, settings)


def claim_equal_accuracy(runs: pd.DataFrame, settings: Settings = DEFAULTS):
    m = settings.accuracy_margin
    r = new_claim(
        3,
        f"per cell: paired per-trial accuracy difference NumPy - TensorFlow; equivalence by "
        f"TOST with margin +-{m} ({m * 100:g} pp); the accuracy's step "
        f"(1 / N_test) floors the spread",
        f"supported if TOST gives p < {settings.alpha} in every cell (intersection-union "
        f"test, no adjustment needed); contradicted if in some cell the difference lies "
        f"significantly outside +-{m} (Holm-adjusted across the cells, p < "
        f"{settings.alpha}); inconclusive otherwise",
        [figure("accuracy_vs_batch_size.png"), figure("accuracy_vs_learning_rate.png")],
        runs,
    )
    r.notes += start_notes(runs)
    missing = G.missing(runs, NUMPY, TENSORFLOW)
    if missing:
        r.parts.append(inconclusive_part("pairs", missing))
        r.reason = missing
        return decide(r, settings)
    part, numbers = cell_equivalence(runs, NUMPY, TENSORFLOW, settings)
    r.parts.append(part)
    r.numbers.update(numbers)
    return decide(r, settings, adjust=False)


def _time_slope_part(g, factor, name, settings, equivalence=None, sign=0, margin=None) -> Part:
    if factor == "batch":
        part = Part(name=name, kind="", statistic="log time per doubling of batch size", ratio=True)
        if g.batches.size < 2:
            part.reason = "only one batch size in the grid"
            return part
        c = G.nanmean(G.batch_slopes(g), axis=1)
    else:
        part = Part(name=name, kind="", statistic="log time per 10x learning rate", ratio=True)
        if g.lrs.size < 2:
            part.reason = "only one learning rate in the grid"
            return part
        c = G.nanmean(G.lr_slopes(g), axis=1)
    if equivalence is not None:
        return equivalence_part(part, c, equivalence, settings)
    return direction_part(part, c, sign, settings, margin)


def _cluster_part(g: G.Grid, name: str, settings: Settings) -> Part:
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
    if not G.has(runs, "eval_time_s"):
        return np.nan
    sub = runs[runs["backend"] == backend]
    return float((sub["eval_time_s"] / sub["training_time_s"]).median())


def _time_parts(r, runs: pd.DataFrame, backend: str, parts) -> bool:
    """Claims 4 and 5: ``parts(grid, label)`` on ``backend``'s training time (the verdict)
    and on its step time (beside it), the time notes and the evaluation's share; False
    (with an inconclusive part and the reason) when the backend's grid is incomplete."""
    r.notes += time_notes(runs)
    missing = G.missing(runs, backend)
    if missing:
        r.parts.append(inconclusive_part(backend, missing))
        r.reason = missing
        return False
    r.parts += parts(G.time_grid(runs, backend, "training_time_s"), backend)
    if G.has(runs, "step_time_s"):
        r.beside += parts(G.time_grid(runs, backend, "step_time_s"), f"{backend} step time")
    r.numbers["share of training time spent in per-epoch evaluation (median)"] = _eval_share(
        runs, backend
    )
    return True


def claim_numpy_time_insensitive(runs: pd.DataFrame, settings: Settings = DEFAULTS):
    m = np.log1p(settings.time_margin)
    r = new_claim(
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
        runs,
    )

    def parts(g, label):
        return [
            _time_slope_part(g, "batch", f"{label}: batch size", settings, equivalence=m),
            _time_slope_part(g, "lr", f"{label}: learning rate", settings, equivalence=m),
            _cluster_part(g, f"{label}: tightly clustered", settings),
        ]

    if _time_parts(r, runs, NUMPY, parts):
        t = stats._finite(runs.loc[runs["backend"] == NUMPY, "training_time_s"])
        if t.size:
            r.numbers["training time range [s]"] = f"{t.min():.3g} - {t.max():.3g}"
    return decide(r, settings)


def claim_tensorflow_time_vs_batch(runs: pd.DataFrame, settings: Settings = DEFAULTS):
    m = np.log1p(settings.time_margin)
    r = new_claim(
        5,
        "per trial: OLS slope of log(training time) against log2(batch size) and against "
        "log10(learning rate), as in claim 4",
        f"batch size: material direction ('falls systematically'), supported if the slope "
        f"is significantly below -log(1 + {settings.time_margin}), contradicted if "
        f"significantly above it; learning rate: equivalence within log(1 + "
        f"{settings.time_margin})",
        [
            figure("time_vs_batch_size.png"),
            figure("time_vs_learning_rate.png"),
            figure(f"time_heatmap_{TENSORFLOW}.png"),
        ],
        runs,
    )

    def parts(g, label):
        return [
            _time_slope_part(
                g, "batch", f"{label}: falls with batch size", settings, sign=-1, margin=m
            ),
            _time_slope_part(g, "lr", f"{label}: no learning-rate effect", settings, equivalence=m),
        ]

    if _time_parts(r, runs, TENSORFLOW, parts):
        r.numbers[f"mean training time by batch size [s], {TENSORFLOW}"] = G.mean_by(
            runs, TENSORFLOW, "batch_size", "training_time_s"
        )
    return decide(r, settings)


def speed_at(runs, a: str, b: str, j: int, metric: str = "training_time_s") -> np.ndarray:
    """Per trial: mean over learning rates of log(time a / time b) at batch-size index j."""
    ga, gb = G.time_grid(runs, a, metric), G.time_grid(runs, b, metric)
    return G.nanmean(ga.values[:, :, j] - gb.values[:, :, j], axis=1)


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
    r = new_claim(
        6,
        "per trial, at the smallest batch size of the grid: mean over learning rates of "
        "log(time TensorFlow / time NumPy); exp() is how many times slower TensorFlow is",
        f"material direction ('outperform': a difference below {settings.time_margin:.0%} "
        f"is within timing noise): supported if TensorFlow is significantly more than "
        f"{1 + settings.time_margin:g} times slower, contradicted if significantly less",
        [figure("time_vs_batch_size.png")],
        runs,
    )
    r.notes += time_notes(runs)
    missing = G.missing(runs, NUMPY, TENSORFLOW)
    if missing:
        r.parts.append(inconclusive_part("speed", missing))
        r.reason = missing
        return decide(r, settings)
    batch = int(G.axes(runs)[2][0])

    def part(metric, label):
        p = Part(name=label, kind="", ratio=True, statistic="log(time TensorFlow / time NumPy)")
        return direction_part(p, speed_at(runs, TENSORFLOW, NUMPY, 0, metric), +1, settings, m)

    r.parts.append(part("training_time_s", f"batch size {batch}"))
    if G.has(runs, "step_time_s"):
        r.beside.append(part("step_time_s", f"batch size {batch}, step time"))
    r.numbers.update(_cells_from_comparison(comparison, batch, settings))
    return decide(r, settings)


def claim_tensorflow_faster_large_batches(runs, comparison=None, settings: Settings = DEFAULTS):
    thr = np.log(settings.marked_speedup)
    r = new_claim(
        7,
        "per trial, at the largest batch size of the grid: mean over learning rates of "
        "log(time NumPy / time TensorFlow), the speed-up of TensorFlow",
        f"threshold: supported if the speed-up is significantly above "
        f"{settings.marked_speedup}x (one-sided t-test across trials), contradicted if "
        f"significantly below",
        [figure("time_vs_batch_size.png")]
        + [figure(f"speed_accuracy_{b}.png") for b in STUDY_BACKENDS],
        runs,
    )
    r.notes += time_notes(runs)
    missing = G.missing(runs, NUMPY, TENSORFLOW)
    if missing:
        r.parts.append(inconclusive_part("speed", missing))
        r.reason = missing
        return decide(r, settings)
    batches = G.axes(runs)[2]
    j = batches.size - 1

    def part(metric, label):
        p = Part(name=label, kind="", ratio=True, statistic="log(time NumPy / time TensorFlow)")
        return threshold_part(p, speed_at(runs, NUMPY, TENSORFLOW, j, metric), thr, settings)

    r.parts.append(part("training_time_s", f"batch size {batches[j]}"))
    if G.has(runs, "step_time_s"):
        r.beside.append(part("step_time_s", f"batch size {batches[j]}, step time"))
    r.numbers.update(_cells_from_comparison(comparison, int(batches[j]), settings))
    return decide(r, settings)
