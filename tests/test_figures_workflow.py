"""The figure rules, the overview and the HTML report through the real Snakemake."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from e2e_utils import TINY, TINY_STUDY, make_tiny_workdir, snakemake
from PIL import Image

from mlpstudy import aggregate, nets, runs
from mlpstudy.figures import FIGURES, figure_targets, registry, report

pytestmark = pytest.mark.e2e

BACKENDS = TINY["backends"]
FIGURE_TARGETS = figure_targets(TINY_STUDY, BACKENDS)
OVERVIEW = [
    "results/overview.csv",
    "results/figures/overview.png",
    "results/scaling.csv",
    "results/scaling_points.csv",
    "results/figures/scaling.png",
]
TINY_STUDY_AXES = {
    "dataset": "tiny",
    "net": "mlp",
    "precision": "float32",
    "regularization": "none",
    "optimizer": "sgd",
    "start": "shared",
    "threads": 1,
}
# Minimum (width, height) at 150 dpi for the tiny 2 x 2 grid.
MIN_SIZE = {"speed_accuracy": (900, 600), "heatmap": (650, 500), "loss_curves": (700, 600)}


def min_size(path):
    for key, size in MIN_SIZE.items():
        if key in path:
            return size
    return (1000, 400)  # a row of small multiples


def stem(target):
    return target.rsplit("/", 1)[1].removesuffix(".png")


def report_data(html):
    """The report's categories and results, as the page's own scripts hold them."""
    categories = re.search(r"var categories = (\{.*?\});\n", html).group(1)
    results = re.search(r"var results = (\{.*?\});\n", html, re.S).group(1)
    return json.loads(categories), json.loads(results)


@pytest.fixture(scope="module")
def all_figures(tiny_sweep):
    """The session's tiny sweep, with every registry figure and the overview asked for
    (a figure missing from the default target would be built here and still checked)."""
    snakemake(tiny_sweep, *FIGURE_TARGETS, *OVERVIEW)
    return tiny_sweep


@pytest.mark.parametrize("target", FIGURE_TARGETS)
def test_each_figure_of_the_study_is_a_non_blank_png_of_the_expected_size(all_figures, target):
    with Image.open(all_figures / target) as img:
        width, height = img.size
        dpi = img.info["dpi"][0]
        pixels = np.asarray(img.convert("RGB"))
    min_width, min_height = min_size(target)
    assert width >= min_width and height >= min_height, (width, height)
    assert round(dpi) >= 150
    assert pixels.std() > 10 and (pixels < 245).any(axis=2).mean() > 0.02
    log = all_figures / f"logs/figures/{TINY_STUDY}/{stem(target)}.log"
    assert f"wrote {target}" in log.read_text()


def test_the_default_target_holds_every_registry_figure_of_every_backend(all_figures):
    summary = snakemake(all_figures, "--summary").stdout.splitlines()
    files = {line.split("\t")[0] for line in summary}
    assert set(FIGURE_TARGETS) <= files, set(FIGURE_TARGETS) - files


@pytest.mark.parametrize(
    "name",
    [
        "pie.png",  # not in the registry
        f"loss_curves_{BACKENDS[0]}.png",  # drawn with every backend, not per backend
        "speed_accuracy.png",  # drawn per backend
        "speed_accuracy_jaxx.png",  # not a configured backend
    ],
)
def test_no_rule_makes_a_figure_the_registry_does_not_have(all_figures, name):
    proc = snakemake(all_figures, "-n", f"{TINY_STUDY}/figures/{name}", check=False)
    assert proc.returncode != 0
    assert "MissingRuleException" in proc.stdout + proc.stderr


def test_overview_table_summarises_the_table_of_all_runs(all_figures):
    table = aggregate.read_table(all_figures / "results/tf_vs_np.csv")
    overview = pd.read_csv(all_figures / "results/overview.csv")
    assert overview["backend"].tolist() == BACKENDS
    assert overview[runs.STUDY_COLUMNS].drop_duplicates().to_dict("records") == [TINY_STUDY_AXES]
    for _, row in overview.iterrows():
        mine = table[table["backend"] == row["backend"]]
        assert row["runs"] == len(mine) == 8 and row["trials"] == TINY["trials"]
        per_trial = mine.groupby("trial")["test_accuracy"].mean()
        assert row["test_accuracy"] == pytest.approx(per_trial.mean())
        cells = mine.groupby(["learning_rate", "batch_size"])["test_accuracy"].mean()
        assert row["best_test_accuracy"] == pytest.approx(cells.max())
        epoch_s = (mine["training_time_s"] / TINY["epochs"]).groupby(mine["trial"]).mean()
        if not mine["diverged"].any():
            assert row["epoch_s"] == pytest.approx(epoch_s.mean())


def test_scaling_points_and_crossovers_come_with_the_overview(all_figures):
    """Beside the overview: time per step against FLOPs per step (the tiny dataset's 240
    training images, the config's batch sizes), and one crossover row per framework."""
    table = aggregate.read_table(all_figures / "results/tf_vs_np.csv")
    points = pd.read_csv(all_figures / "results/scaling_points.csv")
    assert sorted(set(points["batch_size"])) == sorted(TINY["batch_sizes"])
    assert points["backend"].drop_duplicates().tolist() == BACKENDS
    per_image = sum(nets.CATALOG["mlp"].flops((28, 28, 1)))
    assert (points["flops_per_step"] == points["batch_size"] * per_image).all()
    for _, row in points.iterrows():
        mine = table[
            (table["backend"] == row["backend"])
            & (table["batch_size"] == row["batch_size"])
            & ~table["diverged"].astype(bool)
            & ~table["contended"].astype(bool)
        ]
        steps = TINY["epochs"] * -(-240 // row["batch_size"])
        per_trial = (mine["step_time_s"] / steps).groupby(mine["trial"]).mean()
        # a point whose every run was contended (a loaded machine) has no time: NaN both
        assert row["time_per_step_s"] == pytest.approx(per_trial.mean(), nan_ok=True)
    crossovers = pd.read_csv(all_figures / "results/scaling.csv")
    assert crossovers["backend"].tolist() == [b for b in BACKENDS if b != "numpy"]
    assert crossovers["cells_compared"].tolist() == [len(TINY["batch_sizes"])]
    with Image.open(all_figures / "results/figures/scaling.png") as img:
        assert np.asarray(img.convert("RGB")).std() > 10


def test_report_is_organised_by_study_with_each_figures_own_caption(all_figures):
    snakemake(all_figures, *FIGURE_TARGETS, *OVERVIEW, "--report", "results/report.html")
    html = (all_figures / "results/report.html").read_text()
    assert 'src="http' not in html  # no external resources to fetch
    # the front page and every caption render without docutils complaints
    assert "System Message" not in html and "Duplicate explicit target" not in html
    categories, results = report_data(html)
    study = runs.study_label(TINY_STUDY_AXES)
    assert study in categories and report.ACROSS_STUDIES in categories
    shown = {f for files in categories[study].values() for f in files}
    assert set(FIGURE_TARGETS) <= shown
    for target in FIGURE_TARGETS:
        name = next(n for n in FIGURES if stem(target) in (n, *(f"{n}_{b}" for b in BACKENDS)))
        caption = results[target]["caption"]
        assert caption.startswith(f"<p><strong>{FIGURES[name].title}"), (target, caption[:80])
        assert target in caption  # the caption names its own file
        assert target in categories[study][FIGURES[name].subcategory]
    assert set(OVERVIEW) <= {
        f for files in categories[report.ACROSS_STUDIES].values() for f in files
    }


def test_figures_per_study_and_the_overview_across_studies(tmp_path):
    """Two optimizers, one backend: each study gets every figure under its own path, the
    overview has one row per study, the report one category per study."""
    work = make_tiny_workdir(
        tmp_path, backends=BACKENDS[:1], optimizers=["sgd", "adam"], learning_rates=[0.1]
    )
    config = yaml.safe_load((work / "config.yaml").read_text())
    studies = [runs.study_dir(s) for s in runs.studies(config)]
    assert len(studies) == 2
    targets = [t for s in studies for t in figure_targets(s, BACKENDS[:1])]
    snakemake(work, *targets, *OVERVIEW)
    snakemake(work, *targets, *OVERVIEW, "--report", "results/report.html")
    assert all((work / t).stat().st_size > 10_000 for t in targets)
    overview = pd.read_csv(work / "results/overview.csv")
    assert sorted(overview["optimizer"]) == ["adam", "sgd"]
    assert set(overview["backend"]) == {BACKENDS[0]}
    for _, row in overview.iterrows():
        study = runs.study_dir({**row[runs.STUDY_COLUMNS].to_dict()})
        own = pd.read_csv(work / study / "runs.csv")
        assert row["test_accuracy"] == pytest.approx(
            own.groupby("trial")["test_accuracy"].mean().mean()
        )
    html = (work / "results/report.html").read_text()
    assert "System Message" not in html
    categories, _ = report_data(html)
    labels = {runs.study_label(s): s["optimizer"] for s in runs.studies(config)}
    assert set(categories) == set(labels) | {report.ACROSS_STUDIES}
    for label, optimizer in labels.items():
        files = {f for fs in categories[label].values() for f in fs}
        assert files == {t for t in targets if f"optimizer={optimizer}/" in t}


def test_one_backends_targets_train_only_it_and_l2_is_a_study_that_records_its_penalty(tmp_path):
    """The smallest grid (the check is which run directories exist) with regularization
    [none, l2], asking for NumPy's figures of the none study and NumPy's table of the l2
    study: only NumPy trains. The two studies come out under their regularization= paths,
    each run records its regularisation and its settings (the config's lambda, as its
    float32 number), and the l2 run's objective is its data loss plus a penalty."""
    lam = 0.01
    work = make_tiny_workdir(tmp_path, learning_rates=[0.1], batch_sizes=[64], trials=1,
                             regularization=["none", "l2"],
                             regularization_settings={"l2": {"lambda": lam}})  # fmt: skip
    config = yaml.safe_load((work / "config.yaml").read_text())
    studies = {s["regularization"]: runs.study_dir(s) for s in runs.studies(config)}
    assert list(studies) == ["none", "l2"] and studies["none"] == TINY_STUDY
    first, other = BACKENDS[:2]
    mine = [registry.figure_path(TINY_STUDY, n, first) for n in registry.names(per_backend=True)]
    l2_table = f"{studies['l2']}/tables/runs_{first}.csv"
    snakemake(work, *mine, l2_table, f"{studies['l2']}/tables/histories_{first}.parquet")
    assert all((work / t).exists() for t in mine)
    backends = {p.name for p in (work / "results/runs").glob("**/backend=*")}
    assert backends == {f"backend={first}"}
    assert not (work / TINY_STUDY / f"tables/runs_{other}.csv").exists()
    want = {"none": {}, "l2": {"lambda": float(np.float32(lam))}}
    final = {}
    for kind, study in studies.items():
        table = aggregate.read_table(work / study / f"tables/runs_{first}.csv")
        assert table["regularization"].tolist() == [kind]
        (found,) = (work / "results/runs").glob(f"**/regularization={kind}/**/metrics.json")
        metrics = json.loads(found.read_text())
        assert (metrics["regularization"], metrics["regularization_settings"]) == (kind, want[kind])
        history = pd.read_csv(found.parent / "history.csv")
        final[kind] = table.iloc[0]
        assert table["final_train_objective"].tolist() == history["train_objective"].tolist()[-1:]
        if kind == "none":
            assert (history["train_objective"] == history["train_loss"]).all()
        else:  # lambda/2 sum(W**2) > 0 on top of the data loss
            assert (history["train_objective"] > history["train_loss"]).all()
    # the penalty's gradient changed the training: another data loss
    assert final["l2"]["final_train_loss"] != final["none"]["final_train_loss"]
