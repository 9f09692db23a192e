"""Shaping a study's run table for the claims: one backend's metric as an array
[trial, learning rate, batch size], slopes per trial, the accuracy's resolution, the start
mode, and the runs whose times count (not contended)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlpstudy import stats
from mlpstudy.defaults import STUDY_BACKENDS

NUMPY, TENSORFLOW = STUDY_BACKENDS


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
    sub = runs[runs["backend"] == backend]
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


def time_grid(runs: pd.DataFrame, backend: str, metric: str = "training_time_s") -> Grid:
    return grid(runs, backend, metric, log=True)


def slope(x: np.ndarray, y: np.ndarray) -> float:
    """OLS slope of y on x over the finite points; NaN with < 2 distinct x."""
    ok = np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return np.nan
    xs, ys = x[ok], y[ok]
    xc = xs - xs.mean()
    return float((xc * (ys - ys.mean())).sum() / (xc**2).sum())


def sxx(x: np.ndarray) -> float:
    return float(((x - x.mean()) ** 2).sum())


def nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    ok = np.isfinite(a)
    total = np.where(ok, a, 0.0).sum(axis=axis)
    count = ok.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def log_lrs(g: Grid) -> np.ndarray:
    return np.log10(g.lrs)


def log_batches(g: Grid) -> np.ndarray:
    return np.log2(g.batches.astype(float))


def lr_slopes(g: Grid) -> np.ndarray:
    """[trial, batch]: slope of the value against log10(learning rate)."""
    x = log_lrs(g)
    return np.array(
        [[slope(x, g.values[t, :, j]) for j in range(g.batches.size)] for t in range(g.trials.size)]
    ).reshape(g.trials.size, g.batches.size)


def batch_slopes(g: Grid) -> np.ndarray:
    """[trial, lr]: slope of the value against log2(batch size)."""
    x = log_batches(g)
    return np.array(
        [[slope(x, g.values[t, i, :]) for i in range(g.lrs.size)] for t in range(g.trials.size)]
    ).reshape(g.trials.size, g.lrs.size)


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


def backends(runs: pd.DataFrame) -> list[str]:
    return sorted(runs["backend"].unique())


def present(runs: pd.DataFrame) -> list[str]:
    return [b for b in STUDY_BACKENDS if b in set(runs["backend"])]


def missing(runs: pd.DataFrame, *needed: str) -> str:
    have = set(backends(runs))
    return ", ".join(f"backend {b} not in this run" for b in needed if b not in have)


def has(runs: pd.DataFrame, metric: str) -> bool:
    return metric in runs.columns and runs[metric].notna().any()


def mean_by(runs: pd.DataFrame, backend: str, by: str, metric: str) -> dict:
    sub = runs[runs["backend"] == backend]
    return {_fmt_key(k): float(v) for k, v in sub.groupby(by)[metric].mean().items()}


def _fmt_key(k) -> str:
    return f"{k:g}" if isinstance(k, float) else str(k)


def resolution(runs: pd.DataFrame, settings) -> float:
    """The accuracy's resolution 1 / N_test (a setting, or inferred from the table)."""
    if settings.accuracy_step is not None:
        return float(settings.accuracy_step)
    step = stats.accuracy_step(runs["test_accuracy"])
    return step if np.isfinite(step) else 0.0


start_modes = stats.start_modes
start_of = stats.start_of


def contended_count(runs: pd.DataFrame) -> int | None:
    """Runs whose timed loop was contended (``contended`` column; None without it)."""
    if "contended" not in runs.columns:
        return None
    return int(runs["contended"].map(stats._as_bool).sum())


def contended_note(runs: pd.DataFrame) -> str:
    n = contended_count(runs)
    if n is None:
        return "contended runs: not recorded (no `contended` column): every time counts"
    if n == 0:
        return "contended runs: none; every run's time counts"
    return (
        f"contended runs: {n} of {len(runs)} left out of the time statistics (their timed "
        "loop was contended even after re-timing)"
    )
