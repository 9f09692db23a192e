"""Time per step against FLOPs per step and the crossover against NumPy
(mlpstudy.figures.scaling), on run tables whose truth is known: each run's step time is
written from a chosen time per step, so every number the module returns can be checked."""

import math

import numpy as np
import pandas as pd
import pytest

from mlpstudy import nets
from mlpstudy.comparison import paired
from mlpstudy.figures import scaling, style
from mlpstudy.figures.transforms import t_interval

STUDY = {"dataset": "mnist", "precision": "float32", "regularization": "none", "optimizer": "sgd",
         "start": "shared", "threads": 1}  # fmt: skip
N_TRAIN = {"mnist": 1000, "kmnist": 1000}
SHAPES = {"mnist": (28, 28, 1), "kmnist": (28, 28, 1)}
EPOCHS = 2
LRS = (0.01, 0.1)
TRIALS = 3
# The grid's cells in order of FLOPs per step (mlp: 204,544 per image; cnn-small: 1,055,040)
CELLS = [("mlp", 32), ("mlp", 128), ("cnn-small", 32), ("cnn-small", 128)]


def flops(net, batch):
    return batch * sum(nets.CATALOG[net].flops((28, 28, 1)))


def numpy_time(net, batch):
    """NumPy's seconds per step: proportional to the work."""
    return flops(net, batch) / 5e9


def runs(times, **study):
    """Rows of every (backend, cell, lr, trial); ``times[backend](net, batch, trial)`` is
    the time per step the run's step_time_s is written from."""
    rows = []
    for backend, time_of in times.items():
        for net, batch in CELLS:
            for lr in LRS:
                for trial in range(TRIALS):
                    steps = EPOCHS * math.ceil(N_TRAIN[study.get("dataset", "mnist")] / batch)
                    rows.append(
                        {
                            **STUDY,
                            **study,
                            "net": net,
                            "backend": backend,
                            "learning_rate": lr,
                            "batch_size": batch,
                            "trial": trial,
                            "epochs": EPOCHS,
                            "step_time_s": time_of(net, batch, trial) * steps,
                            "training_time_s": 1.0,
                            "test_accuracy": 0.9,
                            "diverged": False,
                        }
                    )
    return pd.DataFrame(rows)


def per_trial(table):
    return scaling.per_trial(table, N_TRAIN, SHAPES)


def numpy_times(net, batch, trial):
    return numpy_time(net, batch) * (1.0, 1.1, 0.9)[trial]


def ratio_times(ratios):
    """A backend whose time per step is NumPy's times ``ratios[(net, batch)][trial]``."""
    return lambda net, batch, trial: numpy_times(net, batch, trial) * ratios[net, batch][trial]


FASTER = (0.5, 0.55, 0.45)  # interval far below 1
SLOWER = (1.5, 1.6, 1.4)
STRADDLES = (0.7, 1.3, 0.9)  # mean below 1, interval across it


def test_time_per_step_is_the_steps_time_over_the_steps_and_flops_the_batchs_work():
    table = runs({"numpy": numpy_times})
    # the second learning rate's runs take twice as long: the trial's value is the mean
    table.loc[table["learning_rate"] == 0.1, "step_time_s"] *= 2
    trials = per_trial(table)
    assert len(trials) == len(CELLS) * TRIALS
    one = trials[(trials["net"] == "mlp") & (trials["batch_size"] == 128)].set_index("trial")
    # 1000 images at batch 128: 8 steps per epoch (the last one partial)
    expected = [numpy_times("mlp", 128, k) * 1.5 for k in range(TRIALS)]
    assert one["time_per_step_s"].tolist() == pytest.approx(expected)
    assert (one["flops_per_step"] == 128 * (101632 + 102912)).all()
    points = scaling.scaling_table(trials)
    assert list(points.columns) == scaling.POINT_COLUMNS
    assert points["flops_per_step"].tolist() == [flops(n, b) for n, b in CELLS]
    row = points.iloc[1]
    mean, half = t_interval(expected)
    assert row["time_per_step_s"] == pytest.approx(mean)
    assert row["time_per_step_s_ci_high"] - row["time_per_step_s"] == pytest.approx(half)
    assert row["trials"] == TRIALS


def test_the_time_per_step_is_the_steady_state_where_the_table_has_it():
    """A first epoch that traces and compiles does not count against a framework: with
    ``steady_step_s`` (the steps' time of the median epoch after the first) the time per
    step is it over one epoch's steps; a run recorded before the column (NaN) falls back
    on the mean over every epoch, and a contended run has neither."""
    table = runs({"numpy": numpy_times})
    per_epoch = np.ceil(N_TRAIN["mnist"] / table["batch_size"])
    table["steady_step_s"] = table["step_time_s"] / EPOCHS  # the steady state...
    table["step_time_s"] *= 3  # ...and a sum over the epochs that a slow first epoch inflated
    older = (table["trial"] == 1) & (table["net"] == "mlp") & (table["batch_size"] == 32)
    table.loc[older, "steady_step_s"] = np.nan
    table["contended"] = False
    table.loc[table["trial"] == 2, "contended"] = True
    trials = per_trial(table).set_index(["net", "batch_size", "trial"])["time_per_step_s"]
    steady = (
        (table["steady_step_s"] / per_epoch)
        .groupby([table["net"], table["batch_size"], table["trial"]])
        .mean()
    )
    assert trials[("mlp", 128, 0)] == pytest.approx(steady[("mlp", 128, 0)])
    assert trials[("mlp", 128, 0)] == pytest.approx(numpy_times("mlp", 128, 0))
    assert trials[("mlp", 32, 1)] == pytest.approx(3 * numpy_times("mlp", 32, 1))  # the mean
    assert trials.xs(2, level="trial").isna().all()


def test_diverged_and_contended_runs_have_no_time():
    table = runs({"numpy": numpy_times})
    table["contended"] = False
    lr01 = table["learning_rate"] == 0.1
    table.loc[lr01, "step_time_s"] *= 100  # what these runs' times would have said
    table.loc[lr01 & (table["trial"] == 0), "diverged"] = True
    table.loc[lr01 & (table["trial"] > 0), "contended"] = True
    trials = per_trial(table)
    expected = [numpy_times("mlp", 32, k) for k in range(TRIALS)]
    got = trials[(trials["net"] == "mlp") & (trials["batch_size"] == 32)]["time_per_step_s"]
    assert got.tolist() == pytest.approx(expected)


def test_a_net_from_the_configs_definitions_counts_its_own_flops():
    table = runs({"numpy": numpy_times})
    table = table[table["net"] == "mlp"].assign(net="tiny-mlp")
    definitions = {
        "tiny-mlp": [{"type": "flatten"}, {"type": "dense", "units": 10, "activation": "softmax"}]
    }
    trials = scaling.per_trial(table, N_TRAIN, SHAPES, definitions)
    # forward 2 x 7840, backward: the kernel's gradient only (no input gradient)
    assert set(trials["flops_per_step"]) == {32 * 4 * 7840, 128 * 4 * 7840}


def test_crossover_is_the_first_cell_by_flops_where_the_interval_is_below_one():
    ratios = {
        ("mlp", 32): SLOWER,
        ("mlp", 128): FASTER,
        ("cnn-small", 32): FASTER,
        ("cnn-small", 128): FASTER,
    }
    never = {cell: SLOWER for cell in CELLS}
    table = runs(
        {"numpy": numpy_times, "tensorflow": ratio_times(never), "torch": ratio_times(ratios)}
    )
    out = scaling.crossover_table(per_trial(table))
    assert list(out.columns) == scaling.CROSSOVER_COLUMNS
    assert out["backend"].tolist() == ["tensorflow", "torch"]  # the registry's order
    tf, torch = out.iloc[0], out.iloc[1]
    assert tf["crossover"] == scaling.NOT_WITHIN and pd.isna(tf["net"])
    assert tf["cells_compared"] == len(CELLS)
    assert torch["crossover"] == "net=mlp, batch 128"
    assert torch["cells_compared"] == len(CELLS)  # all it ran, not only those up to there
    assert (torch["net"], torch["batch_size"]) == ("mlp", 128)
    assert torch["flops_per_step"] == flops("mlp", 128)
    # the ratio and its 90 % interval are the paired log-scale comparison's
    a = pd.Series([numpy_times("mlp", 128, k) * FASTER[k] for k in range(TRIALS)])
    b = pd.Series([numpy_times("mlp", 128, k) for k in range(TRIALS)])
    p = paired(a, b, confidence=0.90, log=True)
    assert torch["ratio"] == pytest.approx(np.exp(p["mean_diff"]))
    assert torch["ratio"] == pytest.approx(np.exp(np.mean(np.log(FASTER))))
    assert torch["ratio_ci_high"] == pytest.approx(np.exp(p["ci_high_diff"]))
    assert torch["ratio_ci_high"] < 1
    assert (torch["n_pairs"], torch["confidence"]) == (TRIALS, 0.90)
    assert torch["time_per_step_s"] == pytest.approx(a.mean())
    assert torch["reference_time_per_step_s"] == pytest.approx(b.mean())


def test_an_interval_that_straddles_one_is_not_a_crossover():
    ratios = {
        ("mlp", 32): SLOWER,
        ("mlp", 128): STRADDLES,
        ("cnn-small", 32): FASTER,
        ("cnn-small", 128): STRADDLES,
    }
    table = runs({"numpy": numpy_times, "torch": ratio_times(ratios)})
    (row,) = scaling.crossover_table(per_trial(table)).to_dict("records")
    assert row["crossover"] == "net=cnn-small, batch 32"
    # with only the straddling cells below 1 on average, there is none
    ratios[("cnn-small", 32)] = STRADDLES
    table = runs({"numpy": numpy_times, "torch": ratio_times(ratios)})
    (row,) = scaling.crossover_table(per_trial(table)).to_dict("records")
    assert row["crossover"] == scaling.NOT_WITHIN


def test_trials_pair_by_index():
    """A backend 0.9x NumPy in every trial while NumPy's trials spread widely: paired by
    trial the ratio is exact; the same times with the backend's trials relabelled are not
    below NumPy's with any confidence."""

    def spread(net, batch, trial):
        return numpy_time(net, batch) * (1.0, 1.5, 0.6)[trial]

    table = runs({"numpy": spread, "torch": lambda n, b, k: 0.9 * spread(n, b, k)})
    (row,) = scaling.crossover_table(per_trial(table)).to_dict("records")
    assert row["crossover"] == "net=mlp, batch 32"
    assert row["ratio"] == pytest.approx(0.9)
    torch = table["backend"] == "torch"
    table.loc[torch, "trial"] = table.loc[torch, "trial"].map({0: 1, 1: 2, 2: 0})
    (row,) = scaling.crossover_table(per_trial(table)).to_dict("records")
    assert row["crossover"] == scaling.NOT_WITHIN


def test_one_trial_gives_no_interval_so_no_crossover():
    ratios = {cell: FASTER for cell in CELLS}
    table = runs({"numpy": numpy_times, "torch": ratio_times(ratios)})
    table = table[table["trial"] == 0]
    (row,) = scaling.crossover_table(per_trial(table)).to_dict("records")
    assert row["crossover"] == scaling.NOT_WITHIN
    assert row["cells_compared"] == len(CELLS)


def test_one_panel_per_dataset_and_a_crossover_per_panel():
    faster = ratio_times({cell: FASTER for cell in CELLS})
    table = pd.concat(
        [
            runs({"numpy": numpy_times, "torch": faster}),
            runs(
                {"numpy": numpy_times, "torch": ratio_times({c: SLOWER for c in CELLS})},
                dataset="kmnist",
            ),
        ]
    )
    out = scaling.crossover_table(per_trial(table))
    assert out[["dataset", "crossover"]].values.tolist() == [
        ["kmnist", scaling.NOT_WITHIN],
        ["mnist", "net=mlp, batch 32"],
    ]


def _lines(ax, prefix):
    return [line for line in ax.get_lines() if str(line.get_gid()).startswith(prefix)]


def test_figure_has_a_line_per_backend_markers_per_batch_and_a_panel_per_dataset(tmp_path):
    ratios = {("mlp", 32): SLOWER, **{cell: FASTER for cell in CELLS[1:]}}
    table = pd.concat(
        [
            runs({"numpy": numpy_times, "torch": ratio_times(ratios), "jax": numpy_times}),
            runs({"numpy": numpy_times, "torch": ratio_times(ratios)}, dataset="kmnist"),
        ]
    )
    trials = per_trial(table)
    points, crossovers = scaling.scaling_table(trials), scaling.crossover_table(trials)
    fig = scaling.plot_scaling(points, tmp_path / "scaling.png", crossovers=crossovers)
    assert (tmp_path / "scaling.png").stat().st_size > 10_000
    kmnist, mnist = fig.axes[:2]
    assert [kmnist.get_title(), mnist.get_title()] == ["kmnist", "mnist"]
    assert kmnist.get_xscale() == mnist.get_xscale() == "log" == mnist.get_yscale()
    assert [line.get_gid() for line in _lines(mnist, "scaling:")] == [
        "scaling:numpy",
        "scaling:jax",
        "scaling:torch",
    ]
    assert len(_lines(kmnist, "scaling:")) == 2
    (torch,) = _lines(mnist, "scaling:torch")
    expected = points[(points["dataset"] == "mnist") & (points["backend"] == "torch")]
    assert np.allclose(torch.get_xdata(), [flops(n, b) for n, b in CELLS])
    assert np.allclose(torch.get_ydata(), expected["time_per_step_s"])
    batch_markers = {line.get_gid(): line.get_marker() for line in _lines(mnist, "batch:")}
    assert len(batch_markers) == 3 * 2 and len(set(batch_markers.values())) == 2
    assert batch_markers["batch:numpy:32"] == batch_markers["batch:torch:32"]
    assert not _lines(mnist, "bound")  # the workflow measures no bound
    (ring,) = _lines(mnist, "crossover:")
    assert ring.get_gid() == "crossover:torch"
    assert ring.get_xdata()[0] == flops("mlp", 128)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    labels = [style.backend_label(b) for b in ("numpy", "jax", "torch")]
    assert legend == [*labels, "batch 32", "batch 128", "crossover vs NumPy"]


def test_the_benchmarks_bound_is_a_dashed_line(tmp_path):
    trials = per_trial(runs({"numpy": numpy_times}))
    points = scaling.scaling_table(trials)
    bound = points[["flops_per_step"]].assign(time_per_step_s=points["flops_per_step"] / 1e11)
    fig = scaling.plot_scaling(points, tmp_path / "s.png", bound=bound)
    (line,) = _lines(fig.axes[0], "bound")
    assert line.get_linestyle() == "--"
    assert np.allclose(line.get_ydata(), sorted(bound["time_per_step_s"]))


def test_train_sizes_read_the_parquet_files_metadata(tmp_path):
    from mlpstudy import dataset

    x = np.zeros((7, 784), np.float32)
    y = np.zeros(7, np.uint8)
    path = tmp_path / "train.parquet"
    import pyarrow.parquet as pq

    table = dataset.to_table(x, y).replace_schema_metadata({"dataset": "tiny"})
    pq.write_table(table, path)
    assert scaling.train_sizes([path]) == {"tiny": 7}


def test_a_table_without_step_time_is_refused():
    table = runs({"numpy": numpy_times}).drop(columns="step_time_s")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['step_time_s'\]"):
        per_trial(table)
