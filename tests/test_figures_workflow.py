"""The figure rules through the real Snakemake on a tiny synthetic sweep."""

import numpy as np
import pytest
from e2e_utils import make_tiny_workdir, snakemake
from PIL import Image

pytestmark = pytest.mark.e2e

PER_BACKEND = ["speed_accuracy", "accuracy_heatmap", "time_heatmap"]
CROSS_BACKEND = [
    "accuracy_vs_batch_size",
    "accuracy_vs_learning_rate",
    "time_vs_batch_size",
    "time_vs_learning_rate",
    "loss_curves",
]
BACKENDS = ["numpy", "tensorflow"]
FIGURES = [f"results/figures/{f}_{b}.png" for f in PER_BACKEND for b in BACKENDS] + [
    f"results/figures/{f}.png" for f in CROSS_BACKEND
]
# Minimum (width, height) at 150 dpi for the tiny 2 x 2 grid.
MIN_SIZE = {"speed_accuracy": (900, 600), "heatmap": (650, 500), "loss_curves": (700, 600)}


def min_size(path):
    for key, size in MIN_SIZE.items():
        if key in path:
            return size
    return (1000, 400)  # a row of small multiples


@pytest.fixture(scope="module")
def all_figures(tiny_sweep):
    """The session's tiny sweep: its default target built every figure (asked again
    here, so a figure missing from the default target would be built and still checked)."""
    snakemake(tiny_sweep, *FIGURES)
    return tiny_sweep


@pytest.mark.parametrize("target", FIGURES)
def test_each_figure_rule_writes_a_non_blank_png_of_the_expected_size(all_figures, target):
    with Image.open(all_figures / target) as img:
        width, height = img.size
        dpi = img.info["dpi"][0]
        pixels = np.asarray(img.convert("RGB"))
    min_width, min_height = min_size(target)
    assert width >= min_width and height >= min_height, (width, height)
    assert round(dpi) >= 150
    assert pixels.std() > 10 and (pixels < 245).any(axis=2).mean() > 0.02
    name = target.removeprefix("results/figures/").removesuffix(".png")
    assert "wrote" in (all_figures / f"logs/figures/{name}.log").read_text()


def test_report_is_self_contained_and_holds_every_figure(all_figures):
    snakemake(all_figures, *FIGURES, "--report", "results/report.html")
    html = (all_figures / "results/report.html").read_text()
    for target in FIGURES:
        assert target.rsplit("/", 1)[1] in html
    assert 'src="http' not in html  # no external resources to fetch


def test_one_backends_figures_train_only_that_backend(tmp_path):
    # the smallest grid will do: the check is which run directories exist
    work = make_tiny_workdir(tmp_path, learning_rates=[0.1], batch_sizes=[64])
    numpy_only = [f"results/figures/{f}_numpy.png" for f in PER_BACKEND]
    snakemake(work, *numpy_only)
    assert all((work / t).exists() for t in numpy_only)
    assert (work / "results/runs/backend=numpy").is_dir()
    assert not (work / "results/runs/backend=tensorflow").exists()
    assert not (work / "results/tables/runs_tensorflow.csv").exists()
