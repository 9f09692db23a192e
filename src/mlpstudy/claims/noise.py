"""Claims 8 and 9 of the study: NumPy's higher variance across trials, and TensorFlow's
smoother, slightly faster loss curves."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from mlpstudy.claims import grids as G
from mlpstudy.claims.engine import (
    DEFAULTS,
    MIN_EPOCHS_SPEED,
    Part,
    Settings,
    decide,
    direction_part,
    inconclusive_part,
)
from mlpstudy.claims.grids import NUMPY, STUDY_BACKENDS, TENSORFLOW
from mlpstudy.claims.parts import spread_part
from mlpstudy.claims.study import figure, new_claim, start_notes, time_notes

# the loss is recorded in float32: log-loss differences below this are rounding
LOSS_RESOLUTION = float(np.finfo(np.float32).eps)
# the local trend of a loss curve: a quadratic over this many epochs (Savitzky-Golay)
TREND_WINDOW = 5


def claim_numpy_higher_variance(runs: pd.DataFrame, settings: Settings = DEFAULTS):
    m = settings.sd_ratio_margin
    r = new_claim(
        8,
        "the variance of each backend across trials within a cell, pooled over the cells "
        "with every trial finite, from a model with a random trial effect shared by the "
        "cells of a trial (variance components; each backend its own Satterthwaite "
        "degrees of freedom, T - 1 when its trial effect dominates, up to C (T - 1) when it "
        "is absent); the estimate is log(sd NumPy / sd TensorFlow). Two readings of "
        "'variance': (a) test accuracy, on the logit scale, (b) training time, on the log "
        "scale",
        f"per reading, material direction ('higher variance'): supported if the sd ratio is "
        f"significantly above {m} (F test with df1, df2, one-sided p < {settings.alpha}), "
        f"contradicted if significantly below {m}",
        [figure(f"speed_accuracy_{b}.png") for b in STUDY_BACKENDS]
        + [figure(f"time_heatmap_{b}.png") for b in STUDY_BACKENDS],
        runs,
    )
    r.notes += start_notes(runs) + time_notes(runs)
    missing = G.missing(runs, NUMPY, TENSORFLOW)
    if missing:
        r.parts.append(inconclusive_part("variance", missing))
        r.reason = missing
        return decide(r, settings)
    step = G.resolution(runs, settings)
    acc = {b: G.grid(runs, b, "test_accuracy").values for b in STUDY_BACKENDS}
    trials = acc[NUMPY].shape[0]
    y_acc = {b: G.logit_accuracy(v, step).reshape(trials, -1).T for b, v in acc.items()}
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
        y = {b: G.time_grid(runs, b, metric).values.reshape(trials, -1).T for b in STUDY_BACKENDS}
        return spread_part(
            y[NUMPY],
            y[TENSORFLOW],
            label,
            f"log(sd NumPy / sd TensorFlow) of log({metric}) across trials",
            settings,
        )

    r.parts.append(time_part("training_time_s", "(b) training time"))
    if G.has(runs, "step_time_s"):
        r.beside.append(time_part("step_time_s", "(b) step time"))
    for p in r.parts + r.beside:
        det = p.details
        if det:
            r.numbers[f"{p.name}: cells, df NumPy / TensorFlow, trial-effect share"] = (
                f"{det['cells']} cells x {det['trials']} trials, df {det['df1']:.3g} / "
                f"{det['df2']:.3g}, {det['trial_share1']:.0%} / {det['trial_share2']:.0%}"
            )
    for b in STUDY_BACKENDS:
        sd = np.nanstd(acc[b], axis=0, ddof=1) if trials > 1 else np.full(1, np.nan)
        r.numbers[f"median sd of test accuracy over trials, {b}"] = (
            float(np.nanmedian(sd)) if np.isfinite(sd).any() else np.nan
        )
    return decide(r, settings)


@functools.lru_cache(maxsize=32)
def _trend_matrix(epochs: int) -> np.ndarray:
    """I - S, S the local quadratic smoother over ``TREND_WINDOW`` epochs (rows: epochs)."""
    from scipy.signal import savgol_filter

    eye = np.eye(epochs)
    smooth = savgol_filter(eye, TREND_WINDOW, 2, axis=0, mode="interp")
    return eye - smooth


def roughness(y: np.ndarray) -> np.ndarray:
    """Per row of y[run, epoch] (log loss): the sd of the curve around its local trend, a
    quadratic fitted over every window of ``TREND_WINDOW`` epochs (Savitzky-Golay). It is 0
    for any curve that is quadratic in every window, however fast it falls or bends, and
    it sees a jagged curve whether or not the jags make the loss rise. Scaled so that
    white noise of sd s around a smooth curve gives s (in log loss)."""
    y = np.asarray(y, dtype=float)
    e = y.shape[-1]
    if e < TREND_WINDOW:
        return np.full(y.shape[:-1], np.nan)
    r = _trend_matrix(e)
    resid = y @ r.T
    return np.sqrt((resid**2).sum(axis=-1) / float((r**2).sum()))


def curve_features(histories: pd.DataFrame, epochs: int | None = None) -> pd.DataFrame:
    """Per run: roughness, rises and mean log loss of the training-loss curve (log scale).

    roughness: ``roughness`` of log(train_loss); rises: the epochs whose loss is above the
    previous one; mean_log_loss: the mean of log(train_loss) over the epochs (lower: came
    down sooner). A diverged run (a non-finite loss, or fewer epochs than ``epochs``) is
    counted, not dropped: from the epoch it diverged on, its log loss is taken to be the
    worst finite log loss of any run in the table (the loss went back up and stayed),
    which gives it a jump, a rise and a high mean.
    """
    keys = ["backend", "learning_rate", "batch_size", "trial"]
    h = histories.sort_values("epoch")
    loss = h["train_loss"].to_numpy(dtype=float)
    ok = np.isfinite(loss) & (loss > 0)
    worst = float(np.log(loss[ok]).max()) if ok.any() else np.nan
    epochs = int(h["epoch"].max()) if epochs is None and len(h) else (epochs or 0)
    names, curves, sizes, diverged = [], [], [], []
    for key, run in h.groupby(keys, sort=True):
        v = run["train_loss"].to_numpy(dtype=float)
        good = np.isfinite(v) & (v > 0)
        y = np.full(max(epochs, v.size), worst)
        first_bad = int(np.argmin(good)) if not good.all() else v.size
        y[:first_bad] = np.log(v[:first_bad])
        names.append(key)
        curves.append(y)
        sizes.append(v.size)
        diverged.append(first_bad < y.size)
    cols = [*keys, "epochs", "diverged", "roughness", "rises", "mean_log_loss"]
    if not names:
        return pd.DataFrame(columns=cols)
    width = max(c.size for c in curves)
    y = np.vstack([np.r_[c, np.full(width - c.size, c[-1])] for c in curves])
    rough = roughness(y) if np.isfinite(y).all() else np.full(len(curves), np.nan)
    rises = (np.diff(y, axis=1) > 0).sum(axis=1)
    rows = [
        (*k, s, d, float(g), int(n), float(np.mean(c)))
        for k, s, d, g, n, c in zip(names, sizes, diverged, rough, rises, curves, strict=True)
    ]
    return pd.DataFrame(rows, columns=cols)


def _claim9(settings: Settings, runs):
    return new_claim(
        9,
        "per run: roughness = sd of log(train loss) around its local trend (a quadratic "
        f"over every {TREND_WINDOW} epochs; 0 for a smooth curve however it bends, and it "
        "sees jagged curves that never rise); convergence = mean log(train loss) over "
        "epochs. Per trial: log(mean roughness NumPy / mean roughness TensorFlow) over the "
        "cells, and the mean over cells of mean log loss NumPy - TensorFlow. A diverged run "
        "counts as a curve that jumps to the worst loss of the study and stays",
        f"material direction for both: smoother = NumPy's curves significantly more than "
        f"{settings.smoothness_margin} times as rough as TensorFlow's (a ratio: the margin "
        f"scales with the curves' own noise; 'not by much' is still more than that); faster "
        f"= mean log loss significantly more than {settings.convergence_margin} lower (1 % "
        f"of the loss); each contradicted if significantly short of its margin",
        [figure("loss_curves.png")],
        runs,
    )


def claim_tensorflow_smoother(histories, settings: Settings = DEFAULTS, runs=None):
    r = _claim9(settings, runs)
    r.notes += start_notes(runs) if runs is not None else []
    needed = {"backend", "learning_rate", "batch_size", "trial", "epoch", "train_loss"}
    if histories is None or histories.empty or not needed <= set(histories.columns):
        r.parts.append(inconclusive_part("loss curves", "no training histories"))
        return decide(r, settings)
    have = set(histories["backend"].astype(str).unique())
    missing = ", ".join(f"backend {b} not in this run" for b in STUDY_BACKENDS if b not in have)
    if missing:
        r.parts.append(inconclusive_part("loss curves", missing))
        r.reason = missing
        return decide(r, settings)
    epochs = None
    if runs is not None and "epochs" in runs.columns and runs["epochs"].notna().any():
        epochs = int(pd.to_numeric(runs["epochs"]).max())
    f = curve_features(histories.assign(backend=histories["backend"].astype(str)), epochs)
    keys = ["learning_rate", "batch_size", "trial"]
    both = f[f["backend"] == NUMPY].merge(
        f[f["backend"] == TENSORFLOW], on=keys, suffixes=("_np", "_tf")
    )
    both["speed"] = both["mean_log_loss_np"] - both["mean_log_loss_tf"]
    per_trial = both.groupby("trial").agg(
        rough_np=("roughness_np", "mean"),
        rough_tf=("roughness_tf", "mean"),
        speed=("speed", "mean"),
    )
    eps = LOSS_RESOLUTION
    per_trial["rough"] = np.log(per_trial["rough_np"] + eps) - np.log(per_trial["rough_tf"] + eps)
    n_epochs = int(f["epochs"].max()) if len(f) else 0
    smooth = Part(
        name="smoother",
        kind="",
        ratio=True,
        statistic="log(roughness NumPy / roughness TensorFlow), means over the cells",
    )
    if n_epochs < settings.min_epochs_smoothness:
        smooth.reason = f"{n_epochs} epoch(s); the roughness of a curve needs >= " + str(
            settings.min_epochs_smoothness
        )
    else:
        # the log ratio's resolution: one float32 step of log loss against the typical roughness
        floor = eps / (float(np.nanmedian(f["roughness"])) + eps)
        m = float(np.log(settings.smoothness_margin))
        direction_part(smooth, per_trial["rough"], +1, settings, m, floor)
    faster = Part(name="converges faster", kind="", statistic="mean log loss NumPy - TensorFlow")
    if n_epochs < MIN_EPOCHS_SPEED:
        faster.reason = f"{n_epochs} epoch(s); a loss curve needs >= {MIN_EPOCHS_SPEED}"
    else:
        direction_part(
            faster, per_trial["speed"], +1, settings, settings.convergence_margin, LOSS_RESOLUTION
        )
    r.parts += [smooth, faster]
    for b in STUDY_BACKENDS:
        fb = f[f["backend"] == b]
        r.numbers[f"diverged runs, {b} (counted as curves that jump to the worst loss)"] = int(
            fb["diverged"].sum()
        )
        r.numbers[f"runs whose loss ever rises, {b}"] = (
            f"{int((fb['rises'] > 0).sum())} of {len(fb)}"
        )
        r.numbers[f"median roughness (sd of log loss around its trend), {b}"] = float(
            fb["roughness"].median()
        )
    return decide(r, settings)
