"""Cost as the work grows: time per optimisation step against FLOPs per step, and where
each framework overtakes hand-written NumPy.

- :func:`per_trial`: one row per (panel, backend, net, batch size, trial): the time of one
  optimisation step in the steady state, ``steady_step_s / ceil(n_train / batch_size)``
  (the steps' time of the median epoch after the first, which carries tracing and
  compilation; evaluation and shuffling left out; for a run recorded before the column,
  ``step_time_s / (epochs * ceil(n_train / batch_size))``), averaged over the learning
  rates of that trial (the work of a step does not depend on the learning rate), and the
  work of one step, ``batch_size * sum(net.flops(image_shape))`` (forward and backward FLOPs per
  image, ``mlpstudy.nets``; a partial last batch is counted as a full one). Diverged
  and contended runs have no time (``mlpstudy.stats.check_runs``, the statistics' rule).
- :func:`scaling_table`: the mean and 95 % Student-t interval of the time per step over
  trials, per (panel, backend, net, batch size): ``results/scaling_points.csv``.
- :func:`crossover_table`: per panel and non-NumPy backend, the crossover (below).
- :func:`plot_scaling`: the log-log figure, one line per backend through its points in
  order of FLOPs per step, one marker per batch size, one panel per panel.

A *panel* is one value of the study axes other than the net (dataset, optimizer, start,
threads): only the net and the batch size change the work of a step inside one.

**The crossover rule.** For each backend other than NumPy (:data:`REFERENCE`), its
crossover is the (net, batch size) with the fewest FLOPs per step at which it is faster
than NumPy: the per-trial ratio of its time per step to NumPy's (trials paired by index:
trial k of every backend shares its seed) has a 90 % Student-t interval, on the log
scale as every time comparison here (``mlpstudy.comparison.paired``), entirely below 1.
If no cell of the grid qualifies the backend's row says "not within the grid"; so does a
grid with one trial (no interval). The crossover says where the backend first wins, not
that it wins at every larger cell.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from mlpstudy import aggregate
from mlpstudy import nets as nets_module
from mlpstudy.atomic import atomic_path
from mlpstudy.runs import STUDY_COLUMNS

from . import style
from .overview import axis_labels
from .plots import _save
from .transforms import t_interval

#: The hand-written network every framework is compared with.
REFERENCE = "numpy"
#: The interval of the crossover rule, and that of the points' bars.
CROSSOVER_CONFIDENCE = 0.90
CONFIDENCE = 0.95
#: The study axes that make a panel: all but the net.
PANEL = [c for c in STUDY_COLUMNS if c != "net"]
CELL = ["net", "batch_size"]
NOT_WITHIN = "not within the grid"

#: The columns of :func:`scaling_table`.
POINT_COLUMNS = [
    *PANEL,
    "backend",
    *CELL,
    "flops_per_step",
    "trials",
    "time_per_step_s",
    "time_per_step_s_ci_low",
    "time_per_step_s_ci_high",
]
#: The columns of :func:`crossover_table` (``results/scaling.csv``).
CROSSOVER_COLUMNS = [
    *PANEL,
    "backend",
    "reference",
    "crossover",
    *CELL,
    "flops_per_step",
    "time_per_step_s",
    "reference_time_per_step_s",
    "ratio",
    "ratio_ci_low",
    "ratio_ci_high",
    "n_pairs",
    "confidence",
    "cells_compared",
]


def train_sizes(paths: Iterable[str | os.PathLike]) -> dict[str, int]:
    """dataset -> training images, from the preprocessed ``train.parquet`` files' metadata
    (``mlpstudy.dataset``'s ``dataset`` key and the row count), without reading them."""
    import pyarrow.parquet as pq

    out = {}
    for path in paths:
        meta = pq.ParquetFile(path).metadata
        out[meta.metadata[b"dataset"].decode()] = meta.num_rows
    return out


def _time_columns(runs: pd.DataFrame) -> pd.DataFrame:
    """The table with the times of diverged and contended runs blanked, study by study
    (the statistics' rule, ``mlpstudy.stats.check_runs``)."""
    from mlpstudy.stats import check_runs

    missing = [c for c in (*STUDY_COLUMNS, "epochs", "step_time_s") if c not in runs]
    if missing:
        raise ValueError(f"run table lacks column(s) {missing}; it has {list(runs.columns)}")
    return pd.concat(
        [check_runs(frame) for _, frame in runs.groupby(STUDY_COLUMNS, sort=True)],
        ignore_index=True,
    )


def per_trial(
    runs,
    n_train: Mapping[str, int],
    image_shapes: Mapping[str, Iterable[int]],
    definitions: Mapping | None = None,
) -> pd.DataFrame:
    """Time and FLOPs per step of every (panel, backend, net, batch size, trial)
    (module docstring); ``n_train`` and ``image_shapes`` by dataset, ``definitions`` the
    config's ``net_definitions`` (the catalog's nets need none)."""
    if not isinstance(runs, pd.DataFrame):
        runs = aggregate.read_table(runs)
    runs = _time_columns(runs)
    known = nets_module.networks(definitions)
    flops = {
        (d, n): sum(known[n].flops(tuple(image_shapes[d])))
        for d, n in runs[["dataset", "net"]].drop_duplicates().itertuples(index=False)
    }
    per_epoch = np.asarray(
        [math.ceil(n_train[d] / b) for d, b in runs[["dataset", "batch_size"]].values], float
    )
    mean_step = runs["step_time_s"] / (runs["epochs"].to_numpy(float) * per_epoch)
    steady = runs["steady_step_s"] / per_epoch if "steady_step_s" in runs else np.nan
    runs = runs.assign(
        time_per_step_s=np.where(np.isfinite(steady), steady, mean_step),
        flops_per_step=[
            b * flops[d, n] for d, n, b in runs[["dataset", "net", "batch_size"]].values
        ],
    )
    keys = [*PANEL, "backend", *CELL, "trial"]
    return (
        runs.groupby(keys, sort=True)
        .agg(
            flops_per_step=("flops_per_step", "first"), time_per_step_s=("time_per_step_s", "mean")
        )
        .reset_index()
    )


def scaling_table(trials: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Mean and t-interval over trials of the time per step (columns :data:`POINT_COLUMNS`),
    in order of panel, backend (the registry's) and FLOPs per step."""
    rows = []
    for key, frame in trials.groupby([*PANEL, "backend", *CELL], sort=False):
        mean, half = t_interval(frame["time_per_step_s"].to_numpy(float), confidence)
        rows.append(
            {
                **dict(zip([*PANEL, "backend", *CELL], key)),
                "flops_per_step": frame["flops_per_step"].iloc[0],
                "trials": int(np.isfinite(frame["time_per_step_s"]).sum()),
                "time_per_step_s": mean,
                "time_per_step_s_ci_low": mean - half,
                "time_per_step_s_ci_high": mean + half,
            }
        )
    table = pd.DataFrame(rows, columns=POINT_COLUMNS)
    order = {b: i for i, b in enumerate(style.backend_order(table["backend"].unique()))}
    table = table.assign(_order=table["backend"].map(order))
    table = table.sort_values([*PANEL, "_order", "flops_per_step", *CELL], kind="stable")
    return table.drop(columns="_order").reset_index(drop=True)


def _ratio(a: pd.Series, b: pd.Series, confidence: float) -> dict:
    """Geometric mean of the per-trial ratios a / b and its t-interval (log scale)."""
    from mlpstudy.comparison import paired

    p = paired(a, b, confidence=confidence, log=True)
    return {
        "ratio": math.exp(p["mean_diff"]) if p["n_pairs"] else np.nan,
        "ratio_ci_low": math.exp(p["ci_low_diff"]) if np.isfinite(p["ci_low_diff"]) else np.nan,
        "ratio_ci_high": math.exp(p["ci_high_diff"]) if np.isfinite(p["ci_high_diff"]) else np.nan,
        "n_pairs": p["n_pairs"],
    }


def crossover_table(
    trials: pd.DataFrame, confidence: float = CROSSOVER_CONFIDENCE, reference: str = REFERENCE
) -> pd.DataFrame:
    """Per panel and backend other than ``reference``: its crossover (the rule in the
    module docstring), columns :data:`CROSSOVER_COLUMNS`. ``crossover`` is ``net=N, batch
    B`` or "not within the grid" (then the cell's columns are empty); ``cells_compared``
    counts the cells both backends ran; a panel without ``reference`` runs has no rows."""
    rows = []
    for panel, frame in trials.groupby(PANEL, sort=True):
        panel = dict(zip(PANEL, panel if isinstance(panel, tuple) else (panel,)))
        ref = frame[frame["backend"] == reference]
        if ref.empty:
            continue
        ref_cells = {k: g.set_index("trial")["time_per_step_s"] for k, g in ref.groupby(CELL)}
        for backend in style.backend_order(set(frame["backend"]) - {reference}):
            mine = frame[frame["backend"] == backend]
            cells = (
                mine.groupby(CELL)
                .agg(flops_per_step=("flops_per_step", "first"))
                .reset_index()
                .sort_values(["flops_per_step", *CELL], kind="stable")
            )
            row = {**panel, "backend": backend, "reference": reference, "crossover": NOT_WITHIN}
            both = [tuple(c) for c in cells.itertuples(index=False) if tuple(c[:2]) in ref_cells]
            row.update(confidence=confidence, cells_compared=len(both))
            for net, batch, flops_per_step in both:
                times = mine[(mine["net"] == net) & (mine["batch_size"] == batch)]
                times = times.set_index("trial")["time_per_step_s"]
                ratio = _ratio(times, ref_cells[net, batch], confidence)
                if ratio["ratio_ci_high"] < 1:  # NaN (no interval) is not below 1
                    row.update(
                        crossover=f"net={net}, batch {batch}",
                        net=net,
                        batch_size=batch,
                        flops_per_step=flops_per_step,
                        time_per_step_s=times.mean(),
                        reference_time_per_step_s=ref_cells[net, batch].mean(),
                        **ratio,
                    )
                    break
            rows.append(row)
    return pd.DataFrame(rows, columns=CROSSOVER_COLUMNS)


def panel_labels(table: pd.DataFrame) -> list[str]:
    """One title per row's panel, naming only the axes that vary between panels (all of
    them with one panel), e.g. ``mnist · sgd · shared start · 1 thread``."""
    return axis_labels(table, PANEL)


def flops_label(value: float) -> str:
    """FLOPs as people write them: 1M, 30M, 2G."""
    for power, prefix in ((12, "T"), (9, "G"), (6, "M"), (3, "k")):
        if value >= 10**power:
            return f"{value / 10**power:g}{prefix}"
    return f"{value:g}"


#: Markers of the batch sizes, smallest first (repeated beyond seven sizes).
BATCH_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def plot_scaling(
    points: pd.DataFrame,
    out_path,
    bound: pd.DataFrame | None = None,
    crossovers: pd.DataFrame | None = None,
) -> Figure:
    """Time per step against FLOPs per step, both log: per panel, one line per backend
    through its points in order of FLOPs (``gid`` ``scaling:<backend>``), one marker per
    batch size, the 95 % t-interval over trials as a bar; ``bound`` (columns
    ``flops_per_step``, ``time_per_step_s``; the benchmark's measured compute bound) as a
    dashed black line (``gid`` ``bound``) in every panel; each backend's crossover
    (``crossovers``, :func:`crossover_table`) ringed (``gid`` ``crossover:<backend>``)."""
    if points.empty:
        raise ValueError("the scaling table has no rows")
    points = points.assign(panel=panel_labels(points))
    panels = list(dict.fromkeys(points["panel"]))
    backends = style.backend_order(points["backend"].unique())
    batches = sorted(points["batch_size"].unique())
    marker = {b: BATCH_MARKERS[i % len(BATCH_MARKERS)] for i, b in enumerate(batches)}
    if crossovers is not None and len(crossovers):
        crossovers = crossovers.assign(panel=panel_labels(crossovers))

    style.apply_theme()
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(max(7.5, 5.6 * len(panels)), 5.2),
        squeeze=False,
        layout="constrained",
    )
    for ax, panel in zip(axes[0], panels):
        here = points[points["panel"] == panel]
        # the axis fits the means (and the bound), not the intervals: with few trials an
        # interval can reach below zero; its bar then runs off the panel
        shown = here["time_per_step_s"].to_numpy(float)
        if bound is not None and len(bound):
            shown = np.concatenate([shown, bound["time_per_step_s"].to_numpy(float)])
        shown = shown[np.isfinite(shown) & (shown > 0)]
        room = 8 if here["net"].nunique() > 1 else 2  # above the points: the nets' names
        bottom, top = (shown.min() / 2, shown.max() * room) if shown.size else (1e-6, 1.0)
        for backend in backends:
            rows = here[here["backend"] == backend].sort_values("flops_per_step", kind="stable")
            if rows.empty:
                continue
            color = style.backend_color(backend)
            ax.plot(
                rows["flops_per_step"],
                rows["time_per_step_s"],
                color=color,
                linestyle=style.backend_linestyle(backend),
                linewidth=1.4,
                gid=f"scaling:{backend}",
            )
            for batch, group in rows.groupby("batch_size"):
                ax.plot(
                    group["flops_per_step"],
                    group["time_per_step_s"],
                    linestyle="none",
                    marker=marker[batch],
                    color=color,
                    markerfacecolor=style.marker_face(backend, backends),
                    markersize=6,
                    gid=f"batch:{backend}:{batch}",
                )
            low = rows["time_per_step_s_ci_low"].to_numpy(float)
            high = rows["time_per_step_s_ci_high"].to_numpy(float)
            ok = np.isfinite(low) & np.isfinite(high)
            if ok.any():
                ax.vlines(
                    rows["flops_per_step"][ok],
                    np.maximum(low[ok], bottom),
                    np.minimum(high[ok], top),
                    color=color,
                    linewidth=1.0,
                )
        if bound is not None and len(bound):
            b = bound.sort_values("flops_per_step", kind="stable")
            ax.plot(
                b["flops_per_step"],
                b["time_per_step_s"],
                color="black",
                linestyle="--",
                linewidth=1.0,
                gid="bound",
            )
        if crossovers is not None and len(crossovers):
            for _, c in crossovers[crossovers["panel"] == panel].iterrows():
                if pd.isna(c["flops_per_step"]):
                    continue
                ax.plot(
                    [c["flops_per_step"]],
                    [c["time_per_step_s"]],
                    linestyle="none",
                    marker="o",
                    markersize=14,
                    markerfacecolor="none",
                    markeredgewidth=1.5,
                    color=style.backend_color(c["backend"]),
                    gid=f"crossover:{c['backend']}",
                )
        ax.set_xscale("log")
        x = here["flops_per_step"].to_numpy(float)
        ax.set_xlim(x.min() / 1.5, x.max() * 1.5)
        subs = (1.0, 2.0, 5.0) if x.max() / x.min() <= 100 else (1.0,)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: flops_label(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        style.log_y_axis(ax, bottom, top)
        ax.set_xlabel("FLOPs per step (forward + backward, log scale)")
        ax.set_ylabel("Seconds per step (log scale)")
        names = list(dict.fromkeys(here["net"]))
        if len(names) == 1:
            ax.set_title(f"{panel} · {names[0]}", fontsize=10)
        else:  # name the net of every point, at the top of the panel
            ax.set_title(panel, fontsize=10)
            for (net, _), cell in here.groupby(CELL, sort=False):
                ax.annotate(
                    net,
                    (cell["flops_per_step"].iloc[0], top),
                    rotation=90,
                    fontsize=6,
                    color="0.35",
                    ha="center",
                    va="top",
                    xytext=(0, -2),
                    textcoords="offset points",
                )
    handles = [
        Line2D(
            [],
            [],
            color=style.backend_color(b),
            linestyle=style.backend_linestyle(b),
            label=style.backend_label(b),
        )
        for b in backends
    ]
    handles += [
        Line2D([], [], color="0.4", marker=marker[b], linestyle="none", label=f"batch {b}")
        for b in batches
    ]
    if bound is not None and len(bound):
        handles.append(
            Line2D([], [], color="black", linestyle="--", label="compute bound (measured)")
        )
    if crossovers is not None and crossovers["flops_per_step"].notna().any():
        handles.append(
            Line2D(
                [],
                [],
                color="0.4",
                marker="o",
                markersize=10,
                markerfacecolor="none",
                linestyle="none",
                label="crossover vs NumPy",
            )
        )
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4))
    trials = int(points["trials"].max())
    how = (
        "1 trial: no interval"
        if trials < 2
        else f"bars: {CONFIDENCE:.0%} t-interval over {trials} trials"
    )
    fig.suptitle(f"Time per step against the work of a step\n{how}")
    return _save(fig, out_path)


def write_scaling(
    runs_path,
    train_paths: Iterable[str | os.PathLike],
    image_shapes: Mapping[str, Iterable[int]],
    points_path,
    crossover_path,
    figure_path,
    definitions: Mapping | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``results/tf_vs_np.csv`` -> the points, the crossover table and the figure."""
    trials = per_trial(runs_path, train_sizes(train_paths), image_shapes, definitions)
    points, crossovers = scaling_table(trials), crossover_table(trials)
    for table, path in ((points, points_path), (crossovers, crossover_path)):
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False)
    plot_scaling(points, figure_path, crossovers=crossovers)
    return points, crossovers
