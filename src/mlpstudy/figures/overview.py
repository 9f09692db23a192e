"""Across studies: final accuracy and time per epoch of every backend in every study.

:func:`overview_table` turns the table of all runs (``results/tf_vs_np.csv``) into one row
per study x backend (``results/overview.csv``); :func:`plot_overview` draws that table
(``results/figures/overview.png``). Every study has the same learning-rate x batch-size
grid for every backend, so each number is taken over the whole grid:

- ``test_accuracy``: the final test accuracy averaged over the grid's cells, per trial;
  its mean and 95 % Student-t interval are over the trials (the independent replicates;
  trial k of every cell shares its seed). Diverged runs count with the accuracy they
  reached: that is their outcome.
- ``best_test_accuracy``: the cell (learning rate, batch size) with the highest mean
  accuracy over trials, its mean and t-interval, and which cell it is. Picking the
  best cell favours it a little; read it as "what the grid can reach", not as a test.
- ``epoch_s``: seconds of training per epoch (``training_time_s`` over the epochs the run
  trained: ``diverged_epoch`` for a diverged run, else ``epochs``) averaged over the
  grid's cells per trial, then mean and t-interval over trials. The mean over the grid is
  dominated by the small batches, which take the most steps.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mlpstudy.atomic import atomic_path
from mlpstudy.runs import STUDY_COLUMNS, label

from . import style
from .plots import _save
from .transforms import read_runs, t_interval

CONFIDENCE = 0.95

#: The columns of ``overview.csv``, in order.
COLUMNS = [
    *STUDY_COLUMNS,
    "backend",
    "runs",
    "diverged_runs",
    "trials",
    "test_accuracy",
    "test_accuracy_ci_low",
    "test_accuracy_ci_high",
    "best_test_accuracy",
    "best_test_accuracy_ci_low",
    "best_test_accuracy_ci_high",
    "best_learning_rate",
    "best_batch_size",
    "epoch_s",
    "epoch_s_ci_low",
    "epoch_s_ci_high",
]

#: (column, title, axis label, scale) of the figure's panels.
PANELS = (
    ("test_accuracy", "Test accuracy, mean over the grid", "Test accuracy (%)", 100.0),
    ("best_test_accuracy", "Test accuracy of the best cell", "Test accuracy (%)", 100.0),
    ("epoch_s", "Time per epoch, mean over the grid", "Seconds per epoch (log scale)", 1.0),
)


def _interval(values) -> tuple[float, float, float]:
    mean, half = t_interval(values, CONFIDENCE)
    return mean, mean - half, mean + half


def _epochs_trained(runs: pd.DataFrame) -> pd.Series:
    epochs = pd.to_numeric(runs["epochs"], errors="coerce")
    if "diverged_epoch" in runs:
        stopped = pd.to_numeric(runs["diverged_epoch"], errors="coerce")
        epochs = epochs.where(~(runs["diverged"] & stopped.notna()), stopped)
    return epochs


def _one(study_backend: pd.DataFrame) -> dict:
    """The overview row of one backend in one study."""
    per_trial = study_backend.groupby("trial").agg(
        test_accuracy=("test_accuracy", "mean"), epoch_s=("epoch_s", "mean")
    )
    cells = (
        study_backend.groupby(["learning_rate", "batch_size"])["test_accuracy"]
        .agg(["mean", list])
        .sort_index()
    )
    best = cells["mean"].idxmax() if cells["mean"].notna().any() else (np.nan, np.nan)
    row = {
        "runs": len(study_backend),
        "diverged_runs": int(study_backend["diverged"].sum()),
        "trials": study_backend["trial"].nunique(),
    }
    for name in ("test_accuracy", "epoch_s"):
        row.update(zip((name, f"{name}_ci_low", f"{name}_ci_high"), _interval(per_trial[name])))
    best_values = cells.loc[best, "list"] if best in cells.index else []
    row.update(
        zip(
            ("best_test_accuracy", "best_test_accuracy_ci_low", "best_test_accuracy_ci_high"),
            _interval(best_values),
        )
    )
    row["best_learning_rate"], row["best_batch_size"] = best
    return row


def overview_table(runs) -> pd.DataFrame:
    """One row per study and backend (columns :data:`COLUMNS`), studies in the order of
    their axes, backends in the registry's order within a study."""
    runs = read_runs(runs)
    missing = [c for c in (*STUDY_COLUMNS, "epochs") if c not in runs]
    if missing:
        raise ValueError(f"run table lacks column(s) {missing}; it has {list(runs.columns)}")
    runs = runs.assign(epoch_s=runs["training_time_s"] / _epochs_trained(runs))
    rows = []
    for study, frame in runs.groupby(STUDY_COLUMNS, sort=True):
        for backend in style.backend_order(frame["backend"].unique()):
            one = frame[frame["backend"] == backend]
            rows.append({**dict(zip(STUDY_COLUMNS, study)), "backend": backend, **_one(one)})
    return pd.DataFrame(rows, columns=COLUMNS)


def study_labels(table: pd.DataFrame) -> list[str]:
    """One label per row's study, naming only the axes that vary between studies (all
    of them when there is one study), e.g. ``fashion-mnist · adam``."""
    return axis_labels(table, STUDY_COLUMNS)


def axis_labels(table: pd.DataFrame, columns) -> list[str]:
    """One label per row from ``columns``, naming only those that vary between rows (all
    of them when none does), each value as ``mlpstudy.runs.label`` says it, e.g.
    ``mnist · sgd · shared start · 1 thread``."""
    varying = [c for c in columns if table[c].nunique() > 1] or list(columns)
    return [" · ".join(label(c, row[c]) for c in varying) for _, row in table.iterrows()]


def plot_overview(table, out_path) -> Figure:
    """Three panels sharing one row per study: mean accuracy over the grid, the best
    cell's accuracy, time per epoch (log axis); one marker per backend with its 95 %
    t-interval over trials as a bar."""
    if not isinstance(table, pd.DataFrame):
        table = pd.read_csv(table)
    if table.empty:
        raise ValueError("the overview table has no rows")
    table = table.assign(study=study_labels(table))
    studies = list(dict.fromkeys(table["study"]))
    backends = style.backend_order(table["backend"].unique())
    width = 0.7 / max(len(backends), 1)
    offset = {b: (i - (len(backends) - 1) / 2) * width for i, b in enumerate(backends)}
    y = {s: i for i, s in enumerate(studies)}

    style.apply_theme()
    fig, axes = plt.subplots(
        1,
        len(PANELS),
        figsize=(4.2 * len(PANELS), 1.2 + 0.32 * len(studies) * max(len(backends), 2)),
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    for ax, (column, title, xlabel, scale) in zip(axes[0], PANELS):
        for b in backends:
            rows = table[table["backend"] == b]
            ys = [y[s] + offset[b] for s in rows["study"]]
            mean = rows[column] * scale
            low = (rows[column] - rows[f"{column}_ci_low"]) * scale
            high = (rows[f"{column}_ci_high"] - rows[column]) * scale
            ax.errorbar(
                mean,
                ys,
                xerr=[low.fillna(0), high.fillna(0)],
                color=style.backend_color(b),
                marker=style.backend_marker(b),
                markerfacecolor=style.marker_face(b, backends),
                linestyle="none",
                capsize=2.5,
                markersize=6,
            )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(False, axis="y")
        for i in range(1, len(studies)):  # a line between studies, none through them
            ax.axhline(i - 0.5, color="0.8", linewidth=0.8)
        if column == "epoch_s":
            values = table[[column, f"{column}_ci_low", f"{column}_ci_high"]].to_numpy(float)
            values = values[np.isfinite(values) & (values > 0)]
            if values.size:
                style.log_x_axis(ax, values.min() / 1.2, values.max() * 1.2)
    axes[0, 0].set_yticks(range(len(studies)), studies)
    axes[0, 0].set_ylim(len(studies) - 0.5, -0.5)  # first study on top
    handles = [
        Line2D(
            [],
            [],
            color=style.backend_color(b),
            marker=style.backend_marker(b),
            markerfacecolor=style.marker_face(b, backends),
            linestyle="none",
            label=style.backend_label(b),
        )
        for b in backends
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles))
    trials = table["trials"].max()
    how = (
        "1 trial: no confidence interval"
        if trials < 2
        else f"bars: {CONFIDENCE:.0%} t-interval over {trials} trials"
    )
    fig.suptitle(f"Across studies: every backend in every study\n{how}")
    return _save(fig, out_path)


def write_overview(runs_path, table_path, figure_path) -> pd.DataFrame:
    """``results/tf_vs_np.csv`` -> ``results/overview.csv`` and its figure."""
    table = overview_table(runs_path)
    with atomic_path(table_path) as tmp:
        table.to_csv(tmp, index=False)
    plot_overview(table, figure_path)
    return table
