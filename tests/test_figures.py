"""The figures' data transforms on crafted tables, and every plot function on a small sweep."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from PIL import Image

from mlpstudy.figures import FIGURES, PER_BACKEND, draw, style
from mlpstudy.figures.plots import cell_number
from mlpstudy.figures.transforms import (
    heatmap_matrix,
    loss_curves,
    read_runs,
    summarise,
    t_interval,
)

# t_{0.975, df} from printed tables, independent of scipy.
T975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 7: 2.3646}


def run_table(cells, backend="numpy", extra_columns=True):
    """Rows from {(lr, batch): [accuracy per trial]}; time = 10 * accuracy."""
    rows = []
    for (lr, bs), accs in cells.items():
        for trial, acc in enumerate(accs):
            rows.append(
                {
                    "model": backend,
                    "learning_rate": lr,
                    "batch_size": bs,
                    "trial": trial,
                    "training_time_s": 10 * acc,
                    "test_accuracy": acc,
                    "final_train_loss": 0.1,
                    "diverged": False,
                }
            )
    frame = pd.DataFrame(rows)
    if extra_columns:
        frame["some_future_column"] = "ignored"
    return frame


CELLS = {
    (0.01, 32): [0.90, 0.92, 0.97],
    (0.01, 64): [0.80, 0.81, 0.85],
    (0.1, 32): [0.95, 0.96, 0.94],
    (0.1, 64): [0.91, 0.93, 0.99],
}


# -- transforms --------------------------------------------------------------------------


def test_heatmap_is_mean_over_trials_per_cell_rows_lr_columns_batch():
    matrix = heatmap_matrix(run_table(CELLS), "test_accuracy")
    assert list(matrix.index) == [0.01, 0.1]
    assert list(matrix.columns) == [32, 64]
    for (lr, bs), accs in CELLS.items():
        assert matrix.loc[lr, bs] == pytest.approx(np.mean(accs), abs=1e-12)


def test_heatmap_takes_one_backend_of_a_combined_table():
    other = {cell: [a - 0.5 for a in accs] for cell, accs in CELLS.items()}
    both = pd.concat([run_table(CELLS), run_table(other, backend="tensorflow")])
    matrix = heatmap_matrix(both, "test_accuracy", backend="tensorflow")
    assert matrix.loc[0.1, 64] == pytest.approx(np.mean(CELLS[(0.1, 64)]) - 0.5)
    with pytest.raises(ValueError, match="exactly one backend.*numpy.*tensorflow"):
        heatmap_matrix(both, "test_accuracy")


def test_interval_equals_hand_computed_t_interval():
    values = [0.90, 0.92, 0.97]
    mean = sum(values) / 3
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    m, half = t_interval(values)
    assert m == pytest.approx(mean)
    assert half == pytest.approx(T975[2] * s / math.sqrt(3), rel=1e-4)
    row = summarise(run_table(CELLS), "test_accuracy").iloc[0]
    assert (row["learning_rate"], row["batch_size"], row["n"]) == (0.01, 32, 3)
    assert row["ci_low"] == pytest.approx(mean - half) and row["ci_high"] == pytest.approx(
        mean + half
    )
    assert row["std"] == pytest.approx(s) and row["sem"] == pytest.approx(s / math.sqrt(3))


def test_interval_narrows_with_more_trials_of_the_same_spread():
    halves = [t_interval([0.90, 0.94] * k)[1] for k in (1, 2, 4, 8)]
    assert all(a > b for a, b in itertools.pairwise(halves)), halves
    # n=2: t_{0.975,1} * s / sqrt(2) with s = 0.04 / sqrt(2)
    assert halves[0] == pytest.approx(T975[1] * 0.02, rel=1e-4)


def test_one_trial_has_a_mean_but_no_interval_and_none_has_neither():
    assert t_interval([0.7])[0] == 0.7 and math.isnan(t_interval([0.7])[1])
    assert all(math.isnan(v) for v in t_interval([]))
    assert all(math.isnan(v) for v in t_interval([float("nan"), float("inf")]))


def test_non_finite_values_are_left_out_and_counted():
    frame = run_table({(0.1, 32): [0.5, 0.6, 0.7, 0.9]})
    frame.loc[1, "test_accuracy"] = np.nan
    frame.loc[2, "test_accuracy"] = np.inf
    frame.loc[1, "diverged"] = True
    row = summarise(frame, "test_accuracy").iloc[0]
    assert (row["n"], row["n_missing"], row["n_diverged"]) == (2, 2, 1)
    assert row["mean"] == pytest.approx(0.7)


def test_run_table_is_checked_typed_and_unknown_columns_ignored():
    frame = run_table(CELLS)
    frame["diverged"] = ["True", "False", "false"] * 4  # as a CSV round trip may give
    runs = read_runs(frame)
    assert runs["diverged"].tolist() == [True, False, False] * 4
    assert runs["batch_size"].dtype.kind == "i" and runs["learning_rate"].dtype.kind == "f"
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['test_accuracy'\]"):
        read_runs(frame.drop(columns="test_accuracy"))


def history(trial_losses, backend="numpy", lr=0.1, bs=32):
    rows = [
        {
            "model": backend,
            "learning_rate": lr,
            "batch_size": bs,
            "trial": trial,
            "epoch": epoch,
            "train_loss": loss,
            "train_accuracy": 0.5,
            "test_accuracy": 0.5,
            "epoch_s": 1.0,
        }
        for trial, losses in enumerate(trial_losses)
        for epoch, loss in enumerate(losses, start=1)
    ]
    return pd.DataFrame(rows)


def test_loss_curves_average_each_epoch_over_trials_skipping_diverged_epochs():
    # trial 2 diverged at epoch 2 (NaN) and stopped there.
    hist = history([[2.0, 1.0, 0.5], [2.2, 1.2, 0.7], [2.4, np.nan]])
    curves = loss_curves(hist).set_index("epoch")
    assert curves.loc[1, "mean"] == pytest.approx(2.2) and curves.loc[1, "n"] == 3
    assert curves.loc[2, "mean"] == pytest.approx(1.1) and curves.loc[2, "n_missing"] == 1
    assert curves.loc[3, "n"] == 2 and curves.loc[3, "n_missing"] == 0
    assert curves.loc[1, "ci_half"] == pytest.approx(T975[2] * 0.2 / math.sqrt(3), rel=1e-4)


# -- style -------------------------------------------------------------------------------


def test_each_backend_has_one_fixed_colour_and_new_backends_get_a_stable_distinct_one():
    assert style.backend_color("numpy") == "#0072B2"
    assert style.backend_color("tensorflow") == "#D55E00"
    for name in ("jax", "torch", "cupy"):
        colour = style.backend_color(name)
        assert colour == style.backend_color(name)
        assert colour in style.OKABE_ITO.values()
        assert colour not in {"#0072B2", "#D55E00"}


# -- plots -------------------------------------------------------------------------------


def sweep(backends=("numpy", "tensorflow"), lrs=(0.001, 0.01, 0.1), bss=(32, 128, 512)):
    """A 3 x 3 grid, 3 trials, with one diverged NumPy run (NaN loss, stopped early)."""
    rng = np.random.default_rng(0)
    runs, hists = [], []
    for b in backends:
        for lr in lrs:
            for bs in bss:
                cell = {
                    (lr, bs): list(np.clip(0.7 + 2 * lr - bs / 5000 + rng.normal(0, 0.01, 3), 0, 1))
                }
                table = run_table(cell, backend=b)
                table["training_time_s"] = (15 if b == "numpy" else 2 + 200 / bs) + rng.normal(
                    0, 0.3, 3
                )
                losses = [list(2.3 * np.exp(-lr * 30 * np.arange(1, 5))) for _ in range(3)]
                if b == "numpy" and lr == 0.1 and bs == 32:
                    table.loc[0, ["diverged", "test_accuracy"]] = [True, 0.098]
                    losses[0] = [2.3, np.nan]
                runs.append(table)
                hists.append(history(losses, backend=b, lr=lr, bs=bs))
    return pd.concat(runs, ignore_index=True), pd.concat(hists, ignore_index=True)


def read_png(path):
    with Image.open(path) as img:
        dpi = img.info.get("dpi", (0, 0))
        return np.asarray(img.convert("RGB")), dpi


# figure -> minimum (width, height) in pixels for the 3 x 3 sweep at 150 dpi
MIN_SIZE = {
    "speed_accuracy": (1000, 700),
    "accuracy_heatmap": (800, 650),
    "time_heatmap": (800, 650),
    "accuracy_vs_batch_size": (1500, 450),
    "accuracy_vs_learning_rate": (1500, 450),
    "time_vs_batch_size": (1500, 450),
    "time_vs_learning_rate": (1500, 450),
    "loss_curves": (1000, 800),
}


@pytest.fixture(scope="module")
def tables():
    return sweep()


@pytest.mark.parametrize("figure", sorted(FIGURES))
def test_every_figure_writes_a_non_blank_png_of_the_expected_size(figure, tables, tmp_path):
    runs, hists = tables
    out = tmp_path / "sub" / f"{figure}.png"
    if figure in PER_BACKEND:
        draw(figure, runs[runs["model"] == "numpy"], out, backend="numpy")
    else:
        draw(figure, hists if figure == "loss_curves" else runs, out)
    pixels, dpi = read_png(out)
    height, width, _ = pixels.shape
    min_width, min_height = MIN_SIZE[figure]
    assert width >= min_width and height >= min_height, (width, height)
    assert round(dpi[0]) >= 150
    not_white = (pixels < 245).any(axis=2).mean()
    assert pixels.std() > 10 and 0.02 < not_white < 0.9, not_white


def backend_lines(ax, backend):
    """The data lines (not legend handles) an axis draws in ``backend``'s colour."""
    colour = style.backend_color(backend).lower()
    return [line for line in ax.get_lines() if to_hex(line.get_color()) == colour]


@pytest.mark.parametrize(
    "figure, x, facet, value",
    [
        ("accuracy_vs_batch_size", "batch_size", "learning_rate", "test_accuracy"),
        ("accuracy_vs_learning_rate", "learning_rate", "batch_size", "test_accuracy"),
        ("time_vs_batch_size", "batch_size", "learning_rate", "training_time_s"),
        ("time_vs_learning_rate", "learning_rate", "batch_size", "training_time_s"),
    ],
)
def test_cross_backend_panels_plot_each_backends_trial_means_in_its_colour(
    figure, x, facet, value, tmp_path
):
    runs, _ = sweep(backends=("numpy", "tensorflow", "jax"))
    fig = draw(figure, runs, tmp_path / "f.png")
    scale = 100 if value == "test_accuracy" else 1
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 3
    for ax, level in zip(panels, sorted(runs[facet].unique())):
        assert ax.get_title().endswith(f"= {level:g}")
        assert ax.get_xscale() == "log"
        for backend in ("numpy", "tensorflow", "jax"):
            (line,) = backend_lines(ax, backend)
            cells = runs[(runs["model"] == backend) & (runs[facet] == level)]
            expected = cells.groupby(x)[value].mean() * scale
            assert list(line.get_xdata()) == list(expected.index)
            assert np.allclose(line.get_ydata(), expected.to_numpy())


def test_batch_axis_is_base_2_and_learning_rate_axis_base_10(tables, tmp_path):
    runs, _ = tables
    by_batch = draw("accuracy_vs_batch_size", runs, tmp_path / "b.png").axes[0]
    by_lr = draw("accuracy_vs_learning_rate", runs, tmp_path / "l.png").axes[0]
    assert by_batch.xaxis.get_transform().base == 2
    assert by_lr.xaxis.get_transform().base == 10


def test_loss_curves_of_one_epoch_still_show_each_backend(tmp_path):
    hists = pd.concat([history([[2.0], [2.2]], backend=b) for b in ("numpy", "tensorflow")])
    fig = draw("loss_curves", hists, tmp_path / "one_epoch.png")
    xs = []
    for backend in ("numpy", "tensorflow"):
        # the mean's point (error bars add lines without the backend's marker)
        (line,) = [
            line
            for line in backend_lines(fig.axes[0], backend)
            if line.get_marker() == style.backend_marker(backend)
        ]
        assert list(line.get_ydata()) == pytest.approx([2.1])
        xs.append(line.get_xdata()[0])
    assert xs[0] != xs[1]  # equal values side by side, not on top of each other


def test_loss_curve_panels_are_learning_rate_columns_and_batch_size_rows(tables, tmp_path):
    _, hists = tables
    fig = draw("loss_curves", hists, tmp_path / "l.png")
    assert len(fig.axes) == 9
    assert [ax.get_title() for ax in fig.axes[:3]] == ["lr = 0.001", "lr = 0.01", "lr = 0.1"]
    # the diverged NumPy run (lr 0.1, batch 32) is named in its panel
    assert any("1/3 diverged" in t.get_text() for t in fig.axes[2].texts)


def test_heatmap_annotates_means_and_uses_the_backends_colour_map(tables, tmp_path):
    runs, _ = tables
    fig = draw("accuracy_heatmap", runs, tmp_path / "tf.png", backend="tensorflow")
    ax = fig.axes[0]
    assert ax.collections[0].get_cmap().name == "seq_tensorflow"
    texts = [t.get_text() for t in ax.texts]
    means = heatmap_matrix(runs, "test_accuracy", backend="tensorflow") * 100
    for mean in means.to_numpy().ravel():
        assert any(t.startswith(f"{mean:.1f}\n\u00b1") for t in texts), mean
    with pytest.raises(ValueError, match="one backend; the table has no rows for backend 'jax'"):
        draw("time_heatmap", runs, tmp_path / "jax.png", backend="jax")
    assert not (tmp_path / "jax.png").exists()


def test_heatmap_numbers_keep_short_times_readable():
    assert [cell_number(x) for x in (97.14, 79.0, 15.25, 0.4321, 0.002354)] == [
        "97.1",
        "79.0",
        "15.2",
        "0.43",
        "0.0024",
    ]


def test_one_trial_figures_say_there_is_no_interval(tmp_path):
    runs = run_table({cell: accs[:1] for cell, accs in CELLS.items()})
    heat = draw("accuracy_heatmap", runs, tmp_path / "h.png", backend="numpy")
    assert "1 trial: no confidence interval" in heat.axes[0].get_title()
    assert "\u00b1" not in "".join(t.get_text() for t in heat.axes[0].texts)
    line = draw("accuracy_vs_batch_size", runs, tmp_path / "l.png")
    assert "1 trial: no confidence interval" in line.get_suptitle()


def test_heatmap_copes_with_a_cell_without_any_finite_value(tmp_path):
    runs = run_table(CELLS)
    runs.loc[runs["learning_rate"] == 0.1, "test_accuracy"] = np.nan
    draw("accuracy_heatmap", runs, tmp_path / "h.png", backend="numpy")
    pixels, _ = read_png(tmp_path / "h.png")
    assert pixels.std() > 10


def test_draw_names_unknown_figures_and_misused_backend():
    with pytest.raises(ValueError, match="unknown figure 'pie'"):
        draw("pie", pd.DataFrame(), "x.png")
    with pytest.raises(ValueError, match="drawn per backend"):
        draw("speed_accuracy", pd.DataFrame(), "x.png")
    with pytest.raises(ValueError, match="shows every backend"):
        draw("loss_curves", pd.DataFrame(), "x.png", backend="numpy")
