"""Pure data transforms behind the figures: tables in, tables out, no plotting.

Every figure that averages over trials does it through :func:`summarise`, which gives the
mean, the sample standard deviation and a two-sided Student-t confidence interval per
group. Values that are not finite (a diverged run's NaN or inf loss) are left out of a
group's statistics and counted in ``n_missing``; a group with fewer than two finite
values has a mean (if it has one value) but no interval.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlpstudy import aggregate
from mlpstudy.stats import mean_ci

#: Columns that identify one hyperparameter cell of one backend.
CELL = ("backend", "learning_rate", "batch_size")

#: Columns of the run table the figures read (the aggregation contract has more).
RUN_COLUMNS = (
    "backend",
    "learning_rate",
    "batch_size",
    "trial",
    "training_time_s",
    "test_accuracy",
    "diverged",
)

#: Columns of the long-format history table the figures read.
HISTORY_COLUMNS = ("backend", "learning_rate", "batch_size", "trial", "epoch", "train_loss")


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {list(frame.columns)}")


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Give the key columns the types the figures sort and label by."""
    frame = frame.copy()
    frame["backend"] = frame["backend"].astype(str)
    frame["learning_rate"] = frame["learning_rate"].astype(float)
    frame["batch_size"] = frame["batch_size"].astype(int)
    if "trial" in frame:
        frame["trial"] = frame["trial"].astype(int)
    if "epoch" in frame:
        frame["epoch"] = frame["epoch"].astype(int)
    if "diverged" in frame:
        frame["diverged"] = frame["diverged"].map(_as_bool).astype(bool)
    return frame


def _as_bool(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return False
    return bool(value)


def read_runs(path_or_frame: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """The run table (``runs_{backend}.csv`` or ``tf_vs_np.csv``), checked and typed."""
    if isinstance(path_or_frame, pd.DataFrame):
        frame = path_or_frame
    else:
        frame = aggregate.read_table(path_or_frame)
    _require(frame, RUN_COLUMNS[:-1], "run table")
    if "diverged" not in frame:
        frame = frame.assign(diverged=False)
    return _normalise(frame)


def read_histories(path_or_frame: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """The long-format per-epoch histories (``histories.parquet``), checked and typed."""
    if isinstance(path_or_frame, pd.DataFrame):
        frame = path_or_frame
    else:
        frame = aggregate.read_histories(path_or_frame)
    _require(frame, HISTORY_COLUMNS, "history table")
    return _normalise(frame)


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the two-sided Student-t interval of the finite values.

    The half-width is NaN for fewer than two finite values (the mean is NaN for none).
    The interval is the statistics' own (``mlpstudy.stats.mean_ci``), so a figure's band
    and comparison.csv's interval are the same numbers.
    """
    mean, _, low, high = mean_ci(values, confidence)
    return mean, (high - low) / 2


def summarise(
    frame: pd.DataFrame,
    value: str,
    by: Sequence[str] = CELL,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Per group of ``by``: n, mean, std, sem, t-interval (ci_low, ci_high, ci_half).

    ``n`` counts the finite values; ``n_missing`` the rows whose value was NaN/inf; where the
    frame has a ``diverged`` column, ``n_diverged`` counts the diverged runs in the group.
    Groups are sorted by ``by``.
    """
    by = list(by)
    _require(frame, [*by, value], "table")
    work = frame.copy()
    work[value] = pd.to_numeric(work[value], errors="coerce").astype(float)
    work.loc[~np.isfinite(work[value]), value] = np.nan

    rows = []
    for key, group in work.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        values = group[value].to_numpy()
        mean, half = t_interval(values, confidence)
        finite = values[np.isfinite(values)]
        row = dict(zip(by, key))
        row.update(
            n=int(finite.size),
            n_missing=int(values.size - finite.size),
            mean=mean,
            std=float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
            sem=float(finite.std(ddof=1) / np.sqrt(finite.size))
            if finite.size > 1
            else float("nan"),
            ci_half=half,
            ci_low=mean - half,
            ci_high=mean + half,
        )
        if "diverged" in group:
            row["n_diverged"] = int(group["diverged"].astype(bool).sum())
        rows.append(row)
    columns = [*by, "n", "n_missing", "mean", "std", "sem", "ci_half", "ci_low", "ci_high"]
    if "diverged" in work:
        columns.append("n_diverged")
    return pd.DataFrame(rows, columns=columns)


def heatmap_matrix(
    runs: pd.DataFrame, value: str, backend: str | None = None, stat: str = "mean"
) -> pd.DataFrame:
    """Learning rate (rows, ascending) x batch size (columns, ascending) of ``stat``.

    ``stat`` is any column of :func:`summarise` ("mean", "ci_half", "n", "n_diverged", ...).
    With ``backend`` given, only that backend's rows are used; otherwise the table must hold
    exactly one backend.
    """
    runs = read_runs(runs)
    if backend is not None:
        runs = runs[runs["backend"] == backend]
    backends = sorted(runs["backend"].unique())
    if len(backends) != 1:
        raise ValueError(f"heatmap needs exactly one backend, the table has {backends}")
    summary = summarise(runs, value)
    matrix = summary.pivot(index="learning_rate", columns="batch_size", values=stat)
    return matrix.sort_index(axis=0).sort_index(axis=1)


def loss_curves(
    histories: pd.DataFrame, value: str = "train_loss", confidence: float = 0.95
) -> pd.DataFrame:
    """Per backend, hyperparameter pair and epoch: mean and t-interval of ``value`` over trials.

    Diverged epochs (NaN/inf) drop out of the mean and are counted in ``n_missing``; a run
    that stopped early simply contributes to fewer epochs.
    """
    histories = read_histories(histories)
    return summarise(histories, value, by=[*CELL, "epoch"], confidence=confidence)
