"""The study's figures, each a function ``plot_<name>(table, out_path, ...)`` that writes one PNG.

Which figures exist, and which are drawn per backend, is :mod:`.registry`'s to say.

Tables come in as paths or DataFrames (see :mod:`.transforms`); all averaging goes through
:func:`.transforms.summarise`, so every mean is shown with its 95 % Student-t interval and
every run stays visible as a point.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from . import style
from .transforms import heatmap_matrix, loss_curves, read_histories, read_runs, summarise

CONFIDENCE = 0.95
_CI = f"{CONFIDENCE:.0%} t-interval"


def _save(fig: Figure, out_path: str | os.PathLike) -> Figure:
    """Write the PNG and close the figure; the closed Figure is returned so that tests can
    check what was drawn (its axes and lines stay readable)."""
    out_path = os.fspath(out_path)
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    fig.savefig(out_path, dpi=style.DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return fig


def _data_ylim(ax, values, lower: float | None = None, upper: float | None = None) -> None:
    """Fit the y axis to the runs and means, not to the intervals: with three trials one
    outlier can make a t-interval many times wider than the data (the band then runs off
    the panel, which is the honest picture)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return
    lo, hi = v.min(), v.max()
    pad = 0.06 * (hi - lo) if hi > lo else max(abs(hi) * 0.05, 1e-3)
    lo, hi = lo - pad, hi + pad
    if lower is not None:
        lo = max(lo, lower)
    if upper is not None:
        hi = min(hi, upper)
    ax.set_ylim(lo, hi)


def _backends(frame: pd.DataFrame) -> list[str]:
    """The table's backends in the registry's order (see :func:`.style.backend_order`)."""
    return style.backend_order(frame["backend"].unique())


def _one_backend(runs: pd.DataFrame, backend: str | None) -> tuple[pd.DataFrame, str]:
    if backend is not None:
        runs = runs[runs["backend"] == backend]
    names = sorted(runs["backend"].unique())
    if len(names) != 1:
        raise ValueError(
            f"this figure shows one backend; the table has {names or 'no rows'}"
            + (f" for backend {backend!r}" if backend else "")
        )
    return runs, names[0]


def _trials_note(summary: pd.DataFrame) -> str:
    n = summary["n"]
    if n.empty:
        return "no runs"
    lo, hi = int(n.min()), int(n.max())
    if hi < 2:
        return "one run per point (1 trial: no confidence interval)"
    trials = f"n = {hi}" if lo == hi else f"n = {lo}\u2013{hi}"
    return f"mean over trials ({trials}) with {_CI}"


def _facet_axes(n: int, ncols: int = 3, width: float = 4.2, height: float = 3.3, **kw):
    """n panels in rows of ``ncols``; returns (fig, panel axes, a spare axis or None)."""
    ncols = max(1, min(n, ncols))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kw
    )
    flat = list(axes.flat)
    spare = flat[n] if len(flat) > n else None
    for ax in flat[n + 1 :]:
        ax.set_visible(False)
    return fig, flat[:n], spare


def _backend_legend_handles(backends: Sequence[str], points: bool, diverged: bool) -> list:
    handles = [
        Line2D(
            [],
            [],
            color=style.backend_color(b),
            linestyle=style.backend_linestyle(b),
            marker=style.backend_marker(b),
            markerfacecolor=style.marker_face(b, backends),
            label=style.backend_label(b),
        )
        for b in backends
    ]
    handles.append(Patch(facecolor="0.6", alpha=0.35, label=f"{_CI} of the mean"))
    if points:
        handles.append(
            Line2D(
                [],
                [],
                color="0.3",
                marker="o",
                linestyle="none",
                markersize=4,
                alpha=0.6,
                label="one run",
            )
        )
    if diverged:
        handles.append(
            Line2D(
                [],
                [],
                color="0.3",
                marker="x",
                linestyle="none",
                markersize=6,
                label="diverged run",
            )
        )
    return handles


def _place_legend(fig, spare, handles) -> None:
    if spare is not None:
        spare.axis("off")
        spare.legend(handles=handles, loc="center", fontsize=10, title="Backend", title_fontsize=10)
    else:
        fig.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=min(len(handles), 5),
        )


def _metric_vs(runs, out_path, value: str, x: str, facet: str, title: str) -> Figure:
    """Mean +/- CI of ``value`` against ``x``, one line per backend, one panel per ``facet``."""
    runs = read_runs(runs)
    if runs.empty:
        raise ValueError("the run table has no rows")
    scale = style.SCALE.get(value, 1.0)
    backends = _backends(runs)
    summary = summarise(runs, value, confidence=CONFIDENCE)
    facets = sorted(runs[facet].unique())
    xs = sorted(runs[x].unique())
    set_x = style.log2_batch_axis if x == "batch_size" else style.log_lr_axis
    # Spread the backends' run points a little around each x so they do not hide each other.
    step = 2**0.12 if x == "batch_size" else 10**0.05
    offsets = {b: step ** (i - (len(backends) - 1) / 2) for i, b in enumerate(backends)}
    any_diverged = bool(runs["diverged"].any())

    style.apply_theme()
    fig, axes, spare = _facet_axes(len(facets), sharex=True, sharey=True)
    for ax, level in zip(axes, facets):
        for b in backends:
            color = style.backend_color(b)
            cell = summary[(summary["backend"] == b) & (summary[facet] == level)].sort_values(x)
            ax.fill_between(
                cell[x],
                cell["ci_low"] * scale,
                cell["ci_high"] * scale,
                color=color,
                alpha=0.2,
                linewidth=0,
            )
            ax.plot(
                cell[x],
                cell["mean"] * scale,
                color=color,
                linestyle=style.backend_linestyle(b),
                marker=style.backend_marker(b),
                markersize=5,
                markerfacecolor=style.marker_face(b, backends),
                linewidth=1.8,
            )
            pts = runs[(runs["backend"] == b) & (runs[facet] == level)]
            for div, marker in ((False, "o"), (True, "x")):
                sel = pts[pts["diverged"] == div]
                ax.scatter(
                    sel[x] * offsets[b],
                    sel[value] * scale,
                    color=color,
                    marker=marker,
                    s=14 if not div else 30,
                    alpha=0.55,
                    linewidths=1.2 if div else 0,
                    zorder=3,
                )
        label = "learning rate" if facet == "learning_rate" else "batch size"
        ax.set_title(f"{label} = {style.number(level)}")
        set_x(ax, xs)
        ax.set_ylabel(style.UNITS[value])
    for ax in axes:
        ax.label_outer()
    upper = 100.5 if value == "test_accuracy" else None
    _data_ylim(axes[0], [*(runs[value] * scale), *(summary["mean"] * scale)], 0.0, upper)
    _place_legend(fig, spare, _backend_legend_handles(backends, True, any_diverged))
    names = " vs ".join(style.backend_label(b) for b in backends)
    fig.suptitle(f"{title}: {names}\n{_trials_note(summary)}")
    fig.tight_layout()
    return _save(fig, out_path)


def plot_accuracy_vs_batch_size(runs, out_path) -> Figure:
    """Figure 3: test accuracy against batch size, one panel per learning rate."""
    return _metric_vs(
        runs,
        out_path,
        "test_accuracy",
        "batch_size",
        "learning_rate",
        "Test accuracy vs batch size",
    )


def plot_accuracy_vs_learning_rate(runs, out_path) -> Figure:
    """Figure 4: test accuracy against learning rate, one panel per batch size."""
    return _metric_vs(
        runs,
        out_path,
        "test_accuracy",
        "learning_rate",
        "batch_size",
        "Test accuracy vs learning rate",
    )


def plot_time_vs_batch_size(runs, out_path) -> Figure:
    """Figure 5: training time against batch size, one panel per learning rate."""
    return _metric_vs(
        runs,
        out_path,
        "training_time_s",
        "batch_size",
        "learning_rate",
        "Training time vs batch size",
    )


def plot_time_vs_learning_rate(runs, out_path) -> Figure:
    """Figure 6: training time against learning rate, one panel per batch size."""
    return _metric_vs(
        runs,
        out_path,
        "training_time_s",
        "learning_rate",
        "batch_size",
        "Training time vs learning rate",
    )


def plot_speed_accuracy(runs, out_path, backend: str | None = None) -> Figure:
    """Figures 1-2: one point per run, training time against test accuracy, for one backend.

    Colour encodes the learning rate (viridis, ordered), marker the batch size; diverged
    runs are drawn as crosses.
    """
    runs, backend = _one_backend(read_runs(runs), backend)
    lrs = sorted(runs["learning_rate"].unique())
    bss = sorted(runs["batch_size"].unique())
    style.apply_theme()
    lr_colors = dict(zip(lrs, plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(lrs)))))
    markers = ["o", "s", "^", "D", "v", "P", "*", "h", "<", ">"]
    bs_markers = {bs: markers[i % len(markers)] for i, bs in enumerate(bss)}

    fig, ax = plt.subplots(figsize=(8.0, 5.5), layout="constrained")
    for (lr, bs), cell in runs.groupby(["learning_rate", "batch_size"]):
        ok = cell[~cell["diverged"]]
        ax.scatter(
            ok["training_time_s"],
            ok["test_accuracy"] * 100,
            color=lr_colors[lr],
            marker=bs_markers[bs],
            s=42,
            alpha=0.85,
            edgecolors="white",
            linewidths=0.5,
        )
        bad = cell[cell["diverged"]]
        ax.scatter(
            bad["training_time_s"],
            bad["test_accuracy"] * 100,
            color=lr_colors[lr],
            marker="x",
            s=48,
            linewidths=1.5,
        )
    ax.set_xlabel(style.UNITS["training_time_s"])
    ax.set_ylabel(style.UNITS["test_accuracy"])
    lr_handles = [
        Line2D([], [], color=lr_colors[lr], marker="o", linestyle="none", label=style.number(lr))
        for lr in lrs
    ]
    bs_handles = [
        Line2D(
            [], [], color="0.35", marker=bs_markers[bs], linestyle="none", label=style.number(bs)
        )
        for bs in bss
    ]
    fig.legend(handles=lr_handles, title="Learning rate", loc="outside right upper")
    extra = []
    if runs["diverged"].any():
        extra = [Line2D([], [], color="0.35", marker="x", linestyle="none", label="diverged")]
    fig.legend(handles=bs_handles + extra, title="Batch size", loc="outside right lower")
    n_trials = runs.groupby(["learning_rate", "batch_size"]).size().max()
    ax.set_title(
        f"Speed vs accuracy, {style.backend_label(backend)}: one point per run\n"
        f"({len(lrs)} learning rates \u00d7 {len(bss)} batch sizes \u00d7 up to "
        f"{n_trials} trials)",
        color=style.backend_color(backend),
    )
    return _save(fig, out_path)


def cell_number(x: float) -> str:
    """Heatmap labels: one decimal from 1 up (97.1 %, 15.2 s), two significant digits
    below (0.43 s, 0.0023 s), so that short runs do not all read 0.0."""
    return f"{x:.1f}" if abs(x) >= 1 else f"{x:.2g}"


def _heatmap(runs, out_path, value: str, backend: str | None, what: str) -> Figure:
    import seaborn as sns

    runs, backend = _one_backend(read_runs(runs), backend)
    scale = style.SCALE.get(value, 1.0)
    mean = heatmap_matrix(runs, value, backend) * scale
    half = heatmap_matrix(runs, value, backend, stat="ci_half") * scale
    n = heatmap_matrix(runs, value, backend, stat="n")
    diverged = heatmap_matrix(runs, value, backend, stat="n_diverged")
    labels = np.full(mean.shape, "", dtype=object)
    for i in range(mean.shape[0]):
        for j in range(mean.shape[1]):
            m, h = mean.iat[i, j], half.iat[i, j]
            if not np.isfinite(m):
                continue  # masked below and labelled "no data"
            text = cell_number(m)
            if np.isfinite(h):
                text += f"\n\u00b1{cell_number(h)}"
            if diverged.iat[i, j] > 0:
                text += f"\n{int(diverged.iat[i, j])} div."
            labels[i, j] = text

    style.apply_theme()
    fig, ax = plt.subplots(figsize=(1.3 * mean.shape[1] + 3.0, 1.0 * mean.shape[0] + 2.2))
    finite = np.isfinite(mean.to_numpy(dtype=float))
    sns.heatmap(
        mean.astype(float),
        annot=labels,
        fmt="",
        ax=ax,
        cmap=style.backend_cmap(backend),
        linewidths=0.8,
        linecolor="white",
        annot_kws={"fontsize": 9},
        mask=~finite,
        vmin=None if finite.any() else 0,
        vmax=None if finite.any() else 1,
        cbar_kws={"label": f"Mean {style.UNITS[value][0].lower()}{style.UNITS[value][1:]}"},
    )
    for i, j in zip(*np.nonzero(~finite)):
        ax.add_patch(Rectangle((j, i), 1, 1, facecolor="0.92", hatch="//", edgecolor="0.75"))
        ax.text(j + 0.5, i + 0.5, "no data", ha="center", va="center", fontsize=9, color="0.3")
    ax.invert_yaxis()  # learning rate grows upwards, like a plot's y axis
    ax.set_xticklabels([style.number(c) for c in mean.columns], rotation=0)
    ax.set_yticklabels([style.number(r) for r in mean.index], rotation=0)
    ax.set_xlabel("Batch size")
    ax.set_ylabel("Learning rate")
    counts = n.to_numpy(dtype=float)
    counts = counts[np.isfinite(counts) & (counts > 0)]
    n_lo, n_hi = (int(counts.min()), int(counts.max())) if counts.size else (0, 0)
    trials = f"{n_hi}" if n_lo == n_hi else f"{n_lo}\u2013{n_hi}"
    if n_hi < 2:
        how = "cell = the single run (1 trial: no confidence interval)"
    else:
        how = f"cell = mean over {trials} trials, \u00b1 half-width of the {_CI}"
    ax.set_title(
        f"{what}, {style.backend_label(backend)}: learning rate \u00d7 batch size\n{how}",
        color=style.backend_color(backend),
    )
    ax.grid(False)
    fig.tight_layout()
    return _save(fig, out_path)


def plot_accuracy_heatmap(runs, out_path, backend: str | None = None) -> Figure:
    """Figures 7-8: mean test accuracy (%) per learning rate x batch size, one backend."""
    return _heatmap(runs, out_path, "test_accuracy", backend, "Test accuracy (%)")


def plot_time_heatmap(runs, out_path, backend: str | None = None) -> Figure:
    """Figures 9-10: mean training time (s) per learning rate x batch size, one backend."""
    return _heatmap(runs, out_path, "training_time_s", backend, "Training time (s)")


def plot_loss_curves(histories, out_path) -> Figure:
    """Figure 11: mean training loss per epoch, one panel per (batch size, learning rate).

    Rows are batch sizes, columns learning rates; each panel overlays the backends (colour
    and line style) with their 95 % t-interval band. The loss axis is logarithmic and
    shared, so panels compare directly. Non-finite losses (diverged runs) are left out of
    the mean and the panel says how many runs diverged.
    """
    hist = read_histories(histories)
    if hist.empty:
        raise ValueError("the history table has no rows")
    curves = loss_curves(hist, confidence=CONFIDENCE)
    backends = _backends(hist)
    lrs = sorted(hist["learning_rate"].unique())
    bss = sorted(hist["batch_size"].unique())
    finite = np.isfinite(hist["train_loss"].astype(float))
    bad_runs = (
        hist.assign(bad=~finite)
        .groupby(["backend", "learning_rate", "batch_size", "trial"])["bad"]
        .any()
        .groupby(["backend", "learning_rate", "batch_size"])
        .agg(["sum", "size"])
    )

    style.apply_theme()
    fig, axes = plt.subplots(
        len(bss),
        len(lrs),
        figsize=(2.7 * len(lrs) + 0.8, 2.1 * len(bss) + 1.4),
        sharex=True,
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    positive = hist.loc[finite & (hist["train_loss"] > 0), "train_loss"]
    log_y = not positive.empty and positive.max() / positive.min() > 10
    # Backends that agree exactly (shared start) must not hide each other: every backend
    # after the first has open markers, and with a single epoch (no line to see) the
    # backends' points are set side by side.
    single = hist["epoch"].nunique() == 1
    dodge = {b: 0.2 * (k - (len(backends) - 1) / 2) * single for k, b in enumerate(backends)}
    for i, bs in enumerate(bss):
        for j, lr in enumerate(lrs):
            ax = axes[i, j]
            notes = []
            for b in backends:
                cell = curves[
                    (curves["backend"] == b)
                    & (curves["learning_rate"] == lr)
                    & (curves["batch_size"] == bs)
                ].sort_values("epoch")
                color = style.backend_color(b)
                ax.fill_between(
                    cell["epoch"],
                    cell["ci_low"],
                    cell["ci_high"],
                    color=color,
                    alpha=0.2,
                    linewidth=0,
                )
                ax.plot(
                    cell["epoch"] + dodge[b],
                    cell["mean"],
                    color=color,
                    linestyle=style.backend_linestyle(b),
                    linewidth=1.6,
                    marker=style.backend_marker(b),
                    markersize=4,  # a one-epoch run is a single point
                    markerfacecolor=style.marker_face(b, backends),
                )
                if len(cell) == 1:  # a band needs two epochs; show the interval as a bar
                    ax.errorbar(
                        cell["epoch"] + dodge[b],
                        cell["mean"],
                        yerr=cell["ci_half"],
                        color=color,
                        linewidth=1.2,
                        capsize=3,
                    )
                key = (b, lr, bs)
                if key in bad_runs.index and bad_runs.loc[key, "sum"] > 0:
                    notes.append(
                        f"{style.backend_label(b)}: {int(bad_runs.loc[key, 'sum'])}/"
                        f"{int(bad_runs.loc[key, 'size'])} diverged"
                    )
            if notes:
                ax.text(
                    0.97,
                    0.95,
                    "\n".join(notes),
                    transform=ax.transAxes,
                    ha="right",
                    va="top",
                    fontsize=7,
                    color="0.25",
                )
            if i == 0:
                ax.set_title(f"lr = {style.number(lr)}", fontsize=10)
            if j == 0:
                ax.set_ylabel(f"batch {style.number(bs)}\nloss", fontsize=10)
            if i == len(bss) - 1:
                ax.set_xlabel(style.UNITS["epoch"])
    # Fit the shared y axis to the mean curves; a wide band runs off the panel.
    means = curves["mean"][np.isfinite(curves["mean"])]
    if log_y:
        means = means[means > 0]
        if not means.empty:
            style.log_y_axis(axes[0, 0], means.min() / 1.3, means.max() * 1.3)
    else:
        _data_ylim(axes[0, 0], means, lower=0.0)
    epochs = sorted(hist["epoch"].unique())
    axes[0, 0].set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
    if len(epochs) <= 12:
        axes[0, 0].set_xticks(epochs)
    handles = [
        Line2D(
            [],
            [],
            color=style.backend_color(b),
            linestyle=style.backend_linestyle(b),
            linewidth=2,
            marker=style.backend_marker(b),
            markersize=5,
            markerfacecolor=style.marker_face(b, backends),
            label=style.backend_label(b),
        )
        for b in backends
    ] + [Patch(facecolor="0.6", alpha=0.35, label=f"{_CI} over trials")]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=10)
    names = " vs ".join(style.backend_label(b) for b in backends)
    fig.suptitle(
        f"Training loss per epoch, mean over trials: {names}\n"
        f"columns: learning rate, rows: batch size" + (" (loss on a log scale)" if log_y else "")
    )
    return _save(fig, out_path)
