"""The figures' data transforms on crafted tables, every plot function on a small sweep of
several backends, the registry of figures and their captions, and the overview across
studies. Tables carry the study columns (dataset, optimizer, start, threads) of the real
ones; two registry entries are added for the tests, so that four backends are drawn."""

import dataclasses
import itertools
import math
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import docutils.core
import jinja2
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from PIL import Image

from mlpstudy.backends import REGISTRY
from mlpstudy.figures import FIGURES, draw, figure_targets, registry, report, style
from mlpstudy.figures.overview import COLUMNS, overview_table, plot_overview, study_labels
from mlpstudy.figures.plots import cell_number
from mlpstudy.figures.transforms import (
    heatmap_matrix,
    loss_curves,
    read_runs,
    summarise,
    t_interval,
)

REPO = Path(__file__).resolve().parents[1]
STUDY = {"dataset": "mnist", "net": "mlp", "precision": "float32", "regularization": "none",
         "optimizer": "sgd", "start": "shared", "threads": 1}  # fmt: skip

# Two backends that exist only in these tests, registered like any other: the figures
# must draw them from their registry entries alone.
FAKES = {
    "fake-a": dict(label="Fake A", color="#E69F00", linestyle=":", marker="^"),
    "fake-b": dict(label="Fake B", color="#009E73", linestyle="-.", marker="D"),
}


@pytest.fixture(autouse=True)
def fake_backends(monkeypatch):
    template = next(iter(REGISTRY.values()))
    for name, look in FAKES.items():
        monkeypatch.setitem(REGISTRY, name, dataclasses.replace(template, name=name, **look))


#: The first two registered backends and the two fakes.
FOUR = (*list(REGISTRY)[:2], *FAKES)
FIRST, SECOND = FOUR[:2]

# t_{0.975, df} from printed tables, independent of scipy.
T975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 7: 2.3646}


def run_table(cells, backend=FIRST, extra_columns=True, **study):
    """Rows from {(lr, batch): [accuracy per trial]}; time = 10 * accuracy."""
    rows = []
    for (lr, bs), accs in cells.items():
        for trial, acc in enumerate(accs):
            rows.append(
                {
                    **STUDY,
                    **study,
                    "backend": backend,
                    "learning_rate": lr,
                    "batch_size": bs,
                    "trial": trial,
                    "training_time_s": 10 * acc,
                    "test_accuracy": acc,
                    "final_train_loss": 0.1,
                    "epochs": 10,
                    "diverged": False,
                    "diverged_epoch": None,
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
    both = pd.concat([run_table(CELLS), run_table(other, backend="fake-a")])
    matrix = heatmap_matrix(both, "test_accuracy", backend="fake-a")
    assert matrix.loc[0.1, 64] == pytest.approx(np.mean(CELLS[(0.1, 64)]) - 0.5)
    with pytest.raises(ValueError, match=f"exactly one backend.*fake-a.*{FIRST}"):
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


def history(trial_losses, backend=FIRST, lr=0.1, bs=32):
    rows = [
        {
            **STUDY,
            "backend": backend,
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


def test_a_registered_backend_is_drawn_with_its_registry_entrys_look():
    for name, entry in REGISTRY.items():
        assert style.backend_color(name) == entry.color
        assert style.backend_label(name) == entry.label
        assert style.backend_marker(name) == entry.marker
        assert style.backend_linestyle(name) == entry.linestyle
    assert style.backend_color("fake-b") == "#009E73" and style.backend_label("fake-b") == "Fake B"


def test_an_unregistered_name_gets_a_stable_colour_the_registry_leaves_free():
    taken = {entry.color.upper() for entry in REGISTRY.values()}
    for name in ("cupy", "mlx", "tinygrad"):
        colour = style.backend_color(name)
        assert colour == style.backend_color(name)
        assert colour in style.OKABE_ITO and colour.upper() not in taken
        assert style.backend_label(name) == name


def test_backends_are_ordered_as_in_the_registry_then_by_name():
    registered = list(REGISTRY)
    names = ["zeta", registered[-1], "alpha", registered[0]]
    assert style.backend_order(names) == [registered[0], registered[-1], "alpha", "zeta"]


# -- plots -------------------------------------------------------------------------------


def sweep(backends=FOUR, lrs=(0.001, 0.01, 0.1), bss=(32, 128, 512)):
    """A 3 x 3 grid, 3 trials, with one diverged run of the first backend (NaN loss,
    stopped early); the first backend takes 15 s, the others 2 + 200 / batch s."""
    rng = np.random.default_rng(0)
    runs, hists = [], []
    for b in backends:
        for lr in lrs:
            for bs in bss:
                cell = {
                    (lr, bs): list(np.clip(0.7 + 2 * lr - bs / 5000 + rng.normal(0, 0.01, 3), 0, 1))
                }
                table = run_table(cell, backend=b)
                table["training_time_s"] = (15 if b == FIRST else 2 + 200 / bs) + rng.normal(
                    0, 0.3, 3
                )
                losses = [list(2.3 * np.exp(-lr * 30 * np.arange(1, 5))) for _ in range(3)]
                if b == FIRST and lr == 0.1 and bs == 32:
                    table.loc[0, ["diverged", "test_accuracy", "diverged_epoch"]] = [True, 0.098, 2]
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
    if FIGURES[figure].per_backend:
        draw(figure, runs[runs["backend"] == FIRST], out, backend=FIRST)
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
    figure, x, facet, value, tables, tmp_path
):
    runs, _ = tables
    fig = draw(figure, runs, tmp_path / "f.png")
    scale = 100 if value == "test_accuracy" else 1
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 3
    assert len({style.backend_color(b) for b in FOUR}) == 4
    for ax, level in zip(panels, sorted(runs[facet].unique())):
        assert ax.get_title().endswith(f"= {level:g}")
        assert ax.get_xscale() == "log"
        for backend in FOUR:
            (line,) = backend_lines(ax, backend)
            assert line.get_marker() == style.backend_marker(backend)
            cells = runs[(runs["backend"] == backend) & (runs[facet] == level)]
            expected = cells.groupby(x)[value].mean() * scale
            assert list(line.get_xdata()) == list(expected.index)
            assert np.allclose(line.get_ydata(), expected.to_numpy())
    # one legend entry per backend, by its registry label, in registry order
    (legend,) = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[:4] == [style.backend_label(b) for b in FOUR]
    assert " vs ".join(style.backend_label(b) for b in FOUR) in fig.get_suptitle()


def test_batch_axis_is_base_2_and_learning_rate_axis_base_10(tables, tmp_path):
    runs, _ = tables
    by_batch = draw("accuracy_vs_batch_size", runs, tmp_path / "b.png").axes[0]
    by_lr = draw("accuracy_vs_learning_rate", runs, tmp_path / "l.png").axes[0]
    assert by_batch.xaxis.get_transform().base == 2
    assert by_lr.xaxis.get_transform().base == 10


def test_loss_curves_of_one_epoch_still_show_each_backend(tmp_path):
    hists = pd.concat([history([[2.0], [2.2]], backend=b) for b in FOUR])
    fig = draw("loss_curves", hists, tmp_path / "one_epoch.png")
    xs = []
    for backend in FOUR:
        # the mean's point (error bars add lines without the backend's marker)
        (line,) = [
            line
            for line in backend_lines(fig.axes[0], backend)
            if line.get_marker() == style.backend_marker(backend)
        ]
        assert list(line.get_ydata()) == pytest.approx([2.1])
        xs.append(line.get_xdata()[0])
    assert len(set(xs)) == 4  # equal values side by side, not on top of each other


def test_loss_curve_panels_show_every_backends_mean_curve(tables, tmp_path):
    _, hists = tables
    fig = draw("loss_curves", hists, tmp_path / "l.png")
    assert len(fig.axes) == 9
    assert [ax.get_title() for ax in fig.axes[:3]] == ["lr = 0.001", "lr = 0.01", "lr = 0.1"]
    # rows are batch sizes: the panel of (batch 128, lr 0.01) is the middle one
    panel = fig.axes[4]
    for backend in FOUR:
        (line,) = backend_lines(panel, backend)
        cell = hists[
            (hists["backend"] == backend)
            & (hists["learning_rate"] == 0.01)
            & (hists["batch_size"] == 128)
        ]
        expected = cell.groupby("epoch")["train_loss"].mean()
        assert list(line.get_xdata()) == list(expected.index)
        assert np.allclose(line.get_ydata(), expected.to_numpy())
    # the diverged run of the first backend (lr 0.1, batch 32) is named in its panel
    assert any(
        f"{style.backend_label(FIRST)}: 1/3 diverged" in t.get_text() for t in fig.axes[2].texts
    )


def test_heatmap_annotates_means_and_uses_the_backends_colour_map(tables, tmp_path):
    runs, _ = tables
    fig = draw("accuracy_heatmap", runs, tmp_path / "b.png", backend="fake-b")
    ax = fig.axes[0]
    cmap = ax.collections[0].get_cmap()
    assert cmap.name == "seq_fake-b" and to_hex(cmap(1.0)) == "#009e73"
    assert "Fake B" in ax.get_title()
    texts = [t.get_text() for t in ax.texts]
    means = heatmap_matrix(runs, "test_accuracy", backend="fake-b") * 100
    for mean in means.to_numpy().ravel():
        assert any(t.startswith(f"{mean:.1f}\n\u00b1") for t in texts), mean
    with pytest.raises(ValueError, match="one backend; the table has no rows for backend 'cupy'"):
        draw("time_heatmap", runs, tmp_path / "cupy.png", backend="cupy")
    assert not (tmp_path / "cupy.png").exists()


def test_speed_accuracy_draws_one_point_per_run_of_its_backend_only(tables, tmp_path):
    runs, _ = tables
    fig = draw("speed_accuracy", runs, tmp_path / "s.png", backend=SECOND)
    ax = fig.axes[0]
    points = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets())])
    mine = runs[runs["backend"] == SECOND]
    assert len(points) == len(mine) == 27
    assert sorted(points[:, 0]) == pytest.approx(sorted(mine["training_time_s"]))
    assert sorted(points[:, 1]) == pytest.approx(sorted(mine["test_accuracy"] * 100))
    assert style.backend_label(SECOND) in ax.get_title()


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
    heat = draw("accuracy_heatmap", runs, tmp_path / "h.png", backend=FIRST)
    assert "1 trial: no confidence interval" in heat.axes[0].get_title()
    assert "\u00b1" not in "".join(t.get_text() for t in heat.axes[0].texts)
    line = draw("accuracy_vs_batch_size", runs, tmp_path / "l.png")
    assert "1 trial: no confidence interval" in line.get_suptitle()


def test_heatmap_copes_with_a_cell_without_any_finite_value(tmp_path):
    runs = run_table(CELLS)
    runs.loc[runs["learning_rate"] == 0.1, "test_accuracy"] = np.nan
    fig = draw("accuracy_heatmap", runs, tmp_path / "h.png", backend=FIRST)
    assert [t.get_text() for t in fig.axes[0].texts].count("no data") == 2
    pixels, _ = read_png(tmp_path / "h.png")
    assert pixels.std() > 10


def test_draw_names_unknown_figures_and_misused_backend():
    with pytest.raises(ValueError, match="unknown figure 'pie'"):
        draw("pie", pd.DataFrame(), "x.png")
    with pytest.raises(ValueError, match="drawn per backend"):
        draw("speed_accuracy", pd.DataFrame(), "x.png")
    with pytest.raises(ValueError, match="shows every backend"):
        draw("loss_curves", pd.DataFrame(), "x.png", backend=FIRST)


# -- the registry of figures ---------------------------------------------------------------

STUDY_DIR = (
    "results/studies/dataset=mnist/net=mlp/precision=float32/regularization=none/optimizer=sgd/"
    "start=shared/threads=1"
)


def test_each_rules_wildcard_constraint_accepts_exactly_its_kinds_figures():
    per_backend, cross = registry.names(per_backend=True), registry.names(per_backend=False)
    assert sorted(per_backend + cross) == sorted(FIGURES) and not set(per_backend) & set(cross)
    for kind, mine in ((True, per_backend), (False, cross)):
        pattern = registry.constraint(per_backend=kind)
        for name in FIGURES:
            assert bool(re.fullmatch(pattern, name)) == (name in mine), (kind, name)
        # a per-backend file name must not parse as a cross-backend figure, or vice versa
        for name in FIGURES:
            assert not re.fullmatch(pattern, f"{name}_{FIRST}")


def test_a_studys_targets_are_every_registry_figure_for_every_backend():
    targets = figure_targets(STUDY_DIR + "/", FOUR)
    per_backend = registry.names(per_backend=True)
    assert (
        len(targets) == len(set(targets)) == 4 * len(per_backend) + len(FIGURES) - len(per_backend)
    )
    assert all(t.startswith(STUDY_DIR + "/figures/") and t.endswith(".png") for t in targets)
    stems = {t.removeprefix(STUDY_DIR + "/figures/").removesuffix(".png") for t in targets}
    for name, entry in FIGURES.items():
        want = {f"{name}_{b}" for b in FOUR} if entry.per_backend else {name}
        assert want <= stems, name
    assert figure_targets(STUDY_DIR, [FIRST]) == [
        *(f"{STUDY_DIR}/figures/{n}_{FIRST}.png" for n in per_backend),
        *(f"{STUDY_DIR}/figures/{n}.png" for n in registry.names(per_backend=False)),
    ]


def test_a_figure_path_names_a_figure_some_rule_makes():
    assert registry.figure_path(STUDY_DIR, "time_heatmap", FIRST) == (
        f"{STUDY_DIR}/figures/time_heatmap_{FIRST}.png"
    )
    with pytest.raises(ValueError, match="needs a backend"):
        registry.figure_path(STUDY_DIR, "time_heatmap")
    with pytest.raises(ValueError, match="no backend"):
        registry.figure_path(STUDY_DIR, "loss_curves", FIRST)
    with pytest.raises(ValueError, match="unknown figure 'pie'"):
        registry.figure_path(STUDY_DIR, "pie")


def test_report_labels_name_the_figure_and_the_backend_by_its_label():
    assert registry.report_labels("time_heatmap", "fake-a") == {
        "figure": "Training time heatmap",
        "backend": "Fake A",
    }
    assert registry.report_labels("loss_curves")["backend"] == "all"


def test_the_workflow_imports_the_registry_without_matplotlib_pandas_or_scipy():
    """Every snakemake call and every cluster job parses the Snakefile, which imports the
    registry and the report's helpers: they must not cost the plotting stack's import."""
    code = (
        "import sys, mlpstudy.figures.registry, mlpstudy.figures.report; "
        "print(sorted(m for m in ('matplotlib', 'pandas', 'scipy', 'seaborn') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert all(callable(entry.drawer()) for entry in FIGURES.values())


def test_no_workflow_file_lists_the_figures_by_hand():
    """The rules, targets and localrules come from the registry: no figure's name is
    spelled in the Snakefile or a rule file."""
    files = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    for path in files:
        text = path.read_text()
        for name in FIGURES:
            assert not re.search(rf"\b{name}\b", text), (path.name, name)


def test_no_report_category_is_a_name_snakemakes_report_already_uses():
    """Snakemake links "Workflow", "Statistics" and every category by name from the front
    page; a category called Statistics made the front page print "System Message:
    WARNING/2 ... Duplicate explicit target name: statistics"."""
    files = sorted((REPO / "workflow" / "rules").glob("*.smk"))
    literal = re.compile(r"""\bcategory\s*=\s*(["'])(.*?)\1""")
    found = [m.group(2) for path in files for m in literal.finditer(path.read_text())]
    found += [report.ACROSS_STUDIES, report.study_category(STUDY)]
    for name in found:
        assert name.strip().lower() not in report.RESERVED, name


def test_a_studys_results_are_grouped_under_its_name():
    wildcards = {**STUDY, "threads": "2", "figure": "time_heatmap", "backend": "fake-a"}
    label = "mnist · mlp · float32 · no regularization · sgd · shared start · 2 threads"
    assert report.study_category(wildcards) == label
    assert report.figure_subcategory(wildcards) == FIGURES["time_heatmap"].subcategory
    assert report.figure_labels(wildcards) == {
        "figure": "Training time heatmap",
        "backend": "Fake A",
    }
    del wildcards["backend"]
    assert report.figure_labels({**wildcards, "figure": "loss_curves"})["backend"] == "all"


def render_caption(figure, backend=None):
    """The caption of one figure as Snakemake renders it (its Jinja settings, a
    ``snakemake`` object with wildcards, config and output), then as HTML by docutils
    with any warning an error."""
    wildcards = {**{k: str(v) for k, v in STUDY.items()}, "figure": figure}
    if backend:
        wildcards["backend"] = backend
    snakemake = SimpleNamespace(
        wildcards=SimpleNamespace(**wildcards),
        config={"trials": 3, "epochs": 10},
        output=[f"{STUDY_DIR}/figures/{figure}.png"],
    )
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    template = (REPO / "workflow" / "report" / "figure.rst").read_text()
    text = env.from_string(template).render(snakemake=snakemake)
    html = docutils.core.publish_parts(
        text, writer="html", settings_overrides={"halt_level": 2, "report_level": 2}
    )["body"]
    return text, html


@pytest.mark.parametrize("figure", list(FIGURES))
def test_every_registry_figure_has_its_own_caption_starting_with_its_title(figure):
    backend = FIRST if FIGURES[figure].per_backend else None
    text, html = render_caption(figure, backend)
    assert text.startswith(f"**{FIGURES[figure].title}"), text[:80]
    assert "No caption" not in text and "{{" not in text
    assert "3 trials" in text
    assert f"``{STUDY['optimizer']}``" in text and STUDY_DIR + "/figures/" in text
    if backend:
        assert f"``{backend}``" in text
    assert "<strong>" in html and "system-message" not in html


def test_a_figure_without_a_caption_block_says_so():
    text, _ = render_caption("pie")
    assert text.startswith("**No caption for figure** ``pie``")


# -- the overview across studies -----------------------------------------------------------


def study_runs(backend, accs_by_cell, times, **study):
    """One backend's runs of one study: {(lr, batch): [accuracy per trial]}, and the
    training time of each run (same order), 10 epochs."""
    table = run_table(accs_by_cell, backend=backend, **study)
    table["training_time_s"] = times
    return table


def test_overview_averages_the_grid_per_trial_then_over_trials():
    cells = {(0.01, 32): [0.90, 0.92, 0.94], (0.1, 32): [0.96, 0.97, 0.99]}
    times = [10.0, 20.0, 30.0, 12.0, 22.0, 32.0]
    runs = pd.concat(
        [
            study_runs(FIRST, cells, times),
            study_runs(SECOND, cells, [t * 2 for t in times]),
            study_runs(FIRST, cells, times, optimizer="adam"),
        ]
    )
    table = overview_table(runs)
    assert list(table.columns) == COLUMNS
    assert table[["optimizer", "backend"]].values.tolist() == [
        ["adam", FIRST],
        ["sgd", FIRST],
        ["sgd", SECOND],
    ]
    row = table.iloc[1]
    assert (row["runs"], row["trials"], row["diverged_runs"]) == (6, 3, 0)
    # per trial, the grid mean: (0.93, 0.945, 0.965)
    per_trial = [0.93, 0.945, 0.965]
    mean, half = t_interval(per_trial)
    assert row["test_accuracy"] == pytest.approx(np.mean(per_trial))
    assert row["test_accuracy_ci_low"] == pytest.approx(mean - half)
    assert row["test_accuracy_ci_high"] == pytest.approx(mean + half)
    # best cell: lr 0.1, batch 32, mean of its three trials
    assert (row["best_learning_rate"], row["best_batch_size"]) == (0.1, 32)
    assert row["best_test_accuracy"] == pytest.approx(np.mean([0.96, 0.97, 0.99]))
    half = t_interval([0.96, 0.97, 0.99])[1]
    assert row["best_test_accuracy_ci_high"] - row["best_test_accuracy"] == pytest.approx(half)
    # time per epoch: 10 epochs; trial k's grid mean is (t_k + t'_k) / 2 / 10
    assert row["epoch_s"] == pytest.approx(np.mean([1.1, 2.1, 3.1]))
    assert table.iloc[2]["epoch_s"] == pytest.approx(2 * row["epoch_s"])


def test_overview_time_per_epoch_counts_only_the_epochs_a_diverged_run_trained():
    runs = study_runs(FIRST, {(0.1, 32): [0.9, 0.1]}, [10.0, 4.0])
    runs.loc[1, ["diverged", "diverged_epoch"]] = [True, 2]
    row = overview_table(runs).iloc[0]
    assert row["diverged_runs"] == 1
    assert row["epoch_s"] == pytest.approx(np.mean([10.0 / 10, 4.0 / 2]))
    assert row["test_accuracy"] == pytest.approx(0.5)  # a diverged run's accuracy counts


def test_overview_of_one_trial_has_means_but_no_intervals():
    row = overview_table(study_runs(FIRST, {(0.1, 32): [0.9]}, [10.0])).iloc[0]
    assert row["test_accuracy"] == pytest.approx(0.9) and row["epoch_s"] == pytest.approx(1.0)
    assert np.isnan(row["test_accuracy_ci_low"]) and np.isnan(row["epoch_s_ci_high"])


def test_overview_refuses_a_table_without_the_study_columns():
    runs = study_runs(FIRST, {(0.1, 32): [0.9]}, [10.0]).drop(columns="optimizer")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['optimizer'\]"):
        overview_table(runs)


def test_study_labels_name_only_the_axes_that_vary():
    one = pd.DataFrame([{**STUDY}])
    assert study_labels(one) == [
        "mnist · mlp · float32 · no regularization · sgd · shared start · 1 thread"
    ]
    many = pd.DataFrame(
        [{**STUDY, "dataset": d, "threads": t} for d in ("mnist", "kmnist") for t in (1, 2)]
    )
    assert study_labels(many) == [
        "mnist · 1 thread",
        "mnist · 2 threads",
        "kmnist · 1 thread",
        "kmnist · 2 threads",
    ]
    regularized = pd.DataFrame([{**STUDY, "regularization": r} for r in ("none", "dropout")])
    assert study_labels(regularized) == ["no regularization", "dropout"]


def test_overview_figure_has_one_marker_per_backend_and_study_at_its_value(tmp_path):
    cells = {(0.01, 32): [0.90, 0.92, 0.94], (0.1, 32): [0.96, 0.97, 0.99]}
    times = [10.0, 20.0, 30.0, 12.0, 22.0, 32.0]
    runs = pd.concat(
        [
            study_runs(b, cells, [t * (k + 1) for t in times], dataset=d)
            for k, b in enumerate(FOUR)
            for d in ("mnist", "fashion-mnist")
        ]
    )
    table = overview_table(runs)
    fig = plot_overview(table, tmp_path / "overview.png")
    assert (tmp_path / "overview.png").stat().st_size > 10_000
    accuracy, best, time = fig.axes[:3]
    assert time.get_xscale() == "log"
    assert [t.get_text() for t in accuracy.get_yticklabels()] == ["fashion-mnist", "mnist"]
    for ax, column, scale in ((accuracy, "test_accuracy", 100), (time, "epoch_s", 1)):
        for backend in FOUR:
            # the markers (the error bars' caps are lines in the same colour)
            (line,) = [
                line
                for line in backend_lines(ax, backend)
                if line.get_marker() == style.backend_marker(backend)
            ]
            rows = table[table["backend"] == backend]
            assert np.allclose(line.get_xdata(), rows[column] * scale)
            # each study's row at its own y, backends side by side within it
            assert np.allclose(np.round(np.asarray(line.get_ydata(), float)), [0, 1])
    ys = [
        line.get_ydata()[0]
        for b in FOUR
        for line in backend_lines(best, b)
        if line.get_marker() == style.backend_marker(b)
    ]
    assert ys == sorted(ys) and len(set(ys)) == 4
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [style.backend_label(b) for b in FOUR]
