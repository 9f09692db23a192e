"""Aggregation's consistency checks (study 6.2), each triggered by a crafted bad set of runs."""

import json

import pandas as pd
import pytest

from mlpstudy import aggregate, runs

CONFIG = {
    "datasets": ["mnist"],
    "nets": ["mlp"],
    "precision": ["float32"],
    "regularization": ["none"],
    "optimizers": ["sgd"],
    "starts": ["shared"],
    "threads": [1],
    "backends": ["numpy"],
    "learning_rates": [0.1, 0.01],
    "batch_sizes": [32],
    "trials": 2,
    "epochs": 2,
    "seed": 0,
    "optimizer_settings": {},
}
EXPECTED = {
    "runs": [runs.key(r) for r in runs.grid(CONFIG)],
    "spec": {
        "epochs": 2,
        "seed": 0,
        "optimizer_settings": {},
        "options": {},
        "regularization_settings": {},
    },
}
#: What a run of the version before the regularization axis did not record.
NEW_IN_METRICS = ("regularization", "regularization_settings", "final_train_objective")


def write_run(root, lr="0.1", batch="32", trial="0", backend="numpy", epochs=2,
              earlier=False, **overrides):  # fmt: skip
    """A finished run's files; ``earlier``: as the version before the regularization axis
    wrote them (no regularisation in metrics.json, no ``train_objective`` in the history)."""
    wildcards = {
        "dataset": "mnist",
        "net": "mlp",
        "precision": "float32",
        "regularization": "none",
        "optimizer": "sgd",
        "start": "shared",
        "threads": "1",
        "backend": backend,
        "lr": lr,
        "batch": batch,
        "trial": trial,
    }
    run = root / runs.run_dir(wildcards)
    run.mkdir(parents=True, exist_ok=True)
    n_rows = overrides.pop("n_rows", epochs)
    metrics = {
        "backend": backend,
        "dataset": "mnist",
        "net": "mlp",
        "precision": "float32",
        "regularization": "none",
        "regularization_settings": {},
        "optimizer": "sgd",
        "start": "shared",
        "learning_rate": float(lr),
        "batch_size": int(batch),
        "optimizer_settings": {},
        "trial": int(trial),
        "epochs": epochs,
        "seed": 0,
        "threads": 1,
        "training_time_s": 1.5,
        "test_accuracy": 0.9,
        "final_train_loss": 0.3,
        "final_train_objective": 0.3,
        "final_train_accuracy": 0.91,
        "step_time_s": 1.0,
        "eval_time_s": 0.4,
        "first_epoch_s": 0.8,
        "cpu_time_s": 1.5,
        "import_time_s": 0.1,
        "diverged": False,
        "diverged_epoch": None,
        "requested_options": {},
        "timing_mode": "strict",
        "wall_cpu_ratio": 1.0,
        "steal_s": 0.0,
        "pinned_cpus": "1",
        "overlapping_runs": 0,
        "environment": {"hostname": "h", "cpu_model": "AMD EPYC"},
    }
    metrics.update(overrides)
    history = pd.DataFrame(
        {
            "epoch": range(1, n_rows + 1),
            "train_loss": 0.5,
            "train_accuracy": 0.8,
            "test_accuracy": 0.8,
            "epoch_s": 0.7,
            "train_objective": 0.5,
        }
    )
    if earlier:
        metrics = {k: v for k, v in metrics.items() if k not in NEW_IN_METRICS}
        history = history.drop(columns="train_objective")
    (run / "metrics.json").write_text(json.dumps(metrics))
    history.to_csv(run / "history.csv", index=False)
    return str(run)


def complete_sweep(root):
    return [write_run(root, lr=lr, trial=t) for lr in ("0.1", "0.01") for t in ("0", "1")]


def test_complete_sweep_gives_the_study_columns_first_then_the_axes(tmp_path):
    table, histories = aggregate.collect(complete_sweep(tmp_path), EXPECTED)
    assert list(table.columns) == aggregate.COLUMNS
    assert list(table.columns[:12]) == [
        "backend",
        "learning_rate",
        "batch_size",
        "trial",
        "training_time_s",
        "test_accuracy",
        "dataset",
        "net",
        "precision",
        "regularization",
        "optimizer",
        "start",
    ]
    assert len(table) == 4 and len(histories) == 8
    assert list(histories.columns[: len(runs.KEY_COLUMNS)]) == runs.KEY_COLUMNS
    assert table["timing_mode"].tolist() == ["strict"] * 4
    assert table["cpu_model"].tolist() == ["AMD EPYC"] * 4


def problems_for(tmp_path, runs):
    with pytest.raises(aggregate.ConsistencyError) as err:
        aggregate.collect(runs, EXPECTED)
    return str(err.value)


def test_missing_trial_is_named(tmp_path):
    runs = complete_sweep(tmp_path)[:-1]
    text = problems_for(tmp_path, runs)
    assert (
        "missing run results/runs/dataset=mnist/net=mlp/precision=float32/regularization=none/"
        "optimizer=sgd/"
        "start=shared/threads=1/"
        "backend=numpy/lr=0.01/batch=32/trial=1" in text
    )


def test_short_history_is_named(tmp_path):
    runs = complete_sweep(tmp_path)
    runs[0] = write_run(tmp_path, lr="0.1", trial="0", n_rows=1)
    assert f"{runs[0]}: history has epochs [1], expected 1..2" in problems_for(tmp_path, runs)


def test_run_of_another_config_is_named(tmp_path):
    runs = complete_sweep(tmp_path)
    runs[1] = write_run(tmp_path, lr="0.1", trial="1", seed=7)
    assert f"{runs[1]}: run of another config: seed=7, config has 0" in problems_for(tmp_path, runs)


def test_other_epochs_is_named(tmp_path):
    runs = complete_sweep(tmp_path)
    runs[2] = write_run(tmp_path, lr="0.01", trial="0", epochs=3)
    assert "epochs=3, config has 2" in problems_for(tmp_path, runs)


def test_backend_option_mismatch_is_named(tmp_path):
    expected = dict(EXPECTED, spec={**EXPECTED["spec"], "options": {"jit_compile": "auto"}})
    runs = complete_sweep(tmp_path)
    with pytest.raises(aggregate.ConsistencyError, match="option jit_compile=None"):
        aggregate.collect(runs, expected)


def test_duplicate_run_is_named(tmp_path):
    runs = complete_sweep(tmp_path)
    runs.append(runs[0])
    duplicate = (
        "duplicate run ('mnist', 'mlp', 'float32', 'none', 'sgd', 'shared', 1, 'numpy', 0.1, 32, 0)"
    )
    assert duplicate in problems_for(tmp_path, runs)


def test_metrics_that_disagree_with_their_directory(tmp_path):
    runs = complete_sweep(tmp_path)
    runs[3] = write_run(tmp_path, lr="0.01", trial="1", learning_rate=0.5)
    said = (
        "metrics say ('mnist', 'mlp', 'float32', 'none', 'sgd', 'shared', 1, 'numpy', 0.5, 32, 1)"
    )
    assert said in problems_for(tmp_path, runs)


@pytest.mark.parametrize(
    "field, value",
    [
        ("optimizer", "adam"),
        ("start", "independent"),
        ("dataset", "kmnist"),
        ("threads", 2),
        ("regularization", "l2"),
    ],
)
def test_a_run_whose_metrics_name_another_axis_value_is_named(tmp_path, field, value):
    runs_ = complete_sweep(tmp_path)
    runs_[0] = write_run(tmp_path, lr="0.1", trial="0", **{field: value})
    assert f"{runs_[0]}: metrics say" in problems_for(tmp_path, runs_)


def test_other_optimizer_settings_are_named(tmp_path):
    runs_ = complete_sweep(tmp_path)
    runs_[0] = write_run(tmp_path, lr="0.1", trial="0", optimizer_settings={"momentum": 0.5})
    assert "optimizer_settings={'momentum': 0.5}" in problems_for(tmp_path, runs_)


def test_other_regularization_settings_are_named(tmp_path):
    runs_ = complete_sweep(tmp_path)
    runs_[0] = write_run(tmp_path, lr="0.1", trial="0", regularization_settings={"rate": 0.2})
    text = problems_for(tmp_path, runs_)
    assert "run of another config: regularization_settings={'rate': 0.2}, config has {}" in text


def test_runs_recorded_before_the_regularization_axis_read_as_none_without_a_penalty(tmp_path):
    """A metrics.json without ``regularization`` and a history without
    ``train_objective``: a run of no regularisation, whose objective is its data loss."""
    runs_ = complete_sweep(tmp_path)
    runs_[0] = write_run(tmp_path, lr="0.1", trial="0", earlier=True, final_train_loss=0.25)
    table, histories = aggregate.collect(runs_, EXPECTED)
    assert table["regularization"].tolist() == ["none"] * 4
    row = table.set_index(["learning_rate", "trial"]).loc[(0.1, 0)]
    assert row["final_train_objective"] == row["final_train_loss"] == 0.25
    assert list(histories.columns) == aggregate.KEYS + aggregate.HISTORY_COLUMNS
    assert (histories["train_objective"] == histories["train_loss"]).all()


def test_contended_runs_are_reported(tmp_path):
    runs_ = complete_sweep(tmp_path)
    runs_[0] = write_run(tmp_path, lr="0.1", trial="0", wall_cpu_ratio=1.3)
    table, _ = aggregate.collect(runs_, EXPECTED)
    assert aggregate.contended(table)["wall_cpu_ratio"].tolist() == [1.3]


def test_run_outside_the_grid(tmp_path):
    runs = complete_sweep(tmp_path) + [write_run(tmp_path, lr="0.3", trial="0")]
    assert "not in the configured grid" in problems_for(tmp_path, runs)


def test_diverged_run_with_short_history_is_a_result(tmp_path):
    runs = complete_sweep(tmp_path)
    runs[0] = write_run(
        tmp_path,
        lr="0.1",
        trial="0",
        n_rows=1,
        diverged=True,
        diverged_epoch=1,
        test_accuracy=0.1,
        final_train_loss=None,
    )
    table, _ = aggregate.collect(runs, EXPECTED)
    assert table["diverged"].sum() == 1


def test_combine_refuses_duplicates():
    key = runs.parse(
        "results/runs/dataset=mnist/net=mlp/precision=float32/regularization=none/optimizer=sgd/"
        "start=shared/threads=1/backend=numpy/lr=0.1/batch=32/trial=0"
    )
    t = pd.DataFrame({c: [v] for c, v in key.items()})
    with pytest.raises(aggregate.ConsistencyError, match="duplicate runs"):
        aggregate.combine([t, t])


def test_the_steady_state_contention_and_attempts_are_columns(tmp_path):
    runs_ = complete_sweep(tmp_path)
    runs_[0] = write_run(
        tmp_path,
        lr="0.1",
        trial="0",
        steady_epoch_s=0.42,
        contended=True,
        timing_attempts=3,
        wall_cpu_ratio=1.2,
        data_hugepage_share=1.0,
        process_hugepage_share=0.6,
        cpu_mhz=2596.1,
        major_faults=0,
    )
    runs_[1] = write_run(tmp_path, lr="0.1", trial="1", contended=False, timing_attempts=2)
    table, _ = aggregate.collect(runs_, EXPECTED)
    row = table.set_index(["learning_rate", "trial"]).loc[(0.1, 0)]
    assert row["steady_epoch_s"] == 0.42 and bool(row["contended"]) is True
    assert row["timing_attempts"] == 3 and row["data_hugepage_share"] == 1.0
    assert row["process_hugepage_share"] == 0.6 and row["cpu_mhz"] == 2596.1
    assert aggregate.contended(table)["trial"].tolist() == [0]
    assert table["timing_attempts"].tolist() == [1, 1, 3, 2]  # sorted by lr, then trial
    assert table["steady_epoch_s"].dtype == float and table["timing_attempts"].dtype == int


def test_runs_recorded_before_retiming_get_the_rule_and_the_steady_state_from_history(
    tmp_path,
):
    """Older metrics.json (no ``contended``, ``steady_epoch_s``, ``timing_attempts``): the
    same rule and definition, from what they recorded."""
    runs_ = complete_sweep(tmp_path)
    runs_[0] = write_run(tmp_path, lr="0.1", trial="0", others_cpu_s=0.5)
    table, _ = aggregate.collect(runs_, EXPECTED)
    assert table["contended"].tolist() == [False, False, True, False]
    assert table["steady_epoch_s"].tolist() == [0.7] * 4  # every epoch took 0.7 s
    assert table["timing_attempts"].tolist() == [1] * 4


def test_the_study_table_names_the_backend_model_and_older_tables_read_as_backend(tmp_path):
    """``tf_vs_np.csv`` keeps the study's name for the backend column (``model``); every
    other table names it ``backend``. A table or history of a previous version (``model``),
    still on disk when a workflow resumes, reads as this version's and combines with it."""
    from mlpstudy import stats
    from mlpstudy.figures import read_histories

    table, histories = aggregate.collect(complete_sweep(tmp_path), EXPECTED)
    aggregate.write_paper_csv(table, tmp_path / "tf_vs_np.csv")
    aggregate.write_csv(table, tmp_path / "runs.csv")
    header = (tmp_path / "tf_vs_np.csv").read_text().splitlines()[0].split(",")
    assert header == ["model", *aggregate.COLUMNS[1:]] and aggregate.COLUMNS[0] == "backend"
    assert (tmp_path / "runs.csv").read_text().splitlines()[0].split(",") == aggregate.COLUMNS
    paper = aggregate.read_table(tmp_path / "tf_vs_np.csv")
    pd.testing.assert_frame_equal(paper, aggregate.read_table(tmp_path / "runs.csv"))

    old_table, old_hist = tmp_path / "runs_numpy.csv", tmp_path / "histories_numpy.parquet"
    table.rename(columns={"backend": "model"}).to_csv(old_table, index=False)
    histories.rename(columns={"backend": "model"}).to_parquet(old_hist, index=False)
    aggregate.write_csv(table.assign(backend="tensorflow"), tmp_path / "runs_tensorflow.csv")
    aggregate.write_parquet(histories, tmp_path / "histories.parquet")
    combined = aggregate.combine(
        [aggregate.read_table(old_table), aggregate.read_table(tmp_path / "runs_tensorflow.csv")]
    )
    assert list(combined.columns) == aggregate.COLUMNS and len(combined) == 8
    assert combined["backend"].tolist() == ["numpy"] * 4 + ["tensorflow"] * 4
    pd.testing.assert_frame_equal(
        aggregate.read_histories(old_hist), aggregate.read_histories(tmp_path / "histories.parquet")
    )
    # the stages' readers: statistics and claims (run table), figures (histories)
    assert set(stats.load_runs(old_table)["backend"]) == {"numpy"}
    assert set(read_histories(old_hist)["backend"]) == {"numpy"}


def test_tables_of_the_version_before_the_regularization_axis_read_as_this_versions(tmp_path):
    """A run table without ``regularization`` and ``final_train_objective``, a history
    table without ``regularization`` and ``train_objective``: the columns of this version,
    in its order, as no regularisation (objective = data loss); they combine with new ones."""
    from mlpstudy import stats
    from mlpstudy.figures import read_histories, read_runs

    table, histories = aggregate.collect(complete_sweep(tmp_path), EXPECTED)
    old_table, old_hist = tmp_path / "runs_numpy.csv", tmp_path / "histories_numpy.parquet"
    table.drop(columns=["regularization", "final_train_objective"]).to_csv(old_table, index=False)
    histories.drop(columns=["regularization", "train_objective"]).to_parquet(old_hist, index=False)
    read = aggregate.read_table(old_table)
    pd.testing.assert_frame_equal(read, aggregate.read_table(_written(table, tmp_path)))
    assert read["regularization"].tolist() == ["none"] * 4
    pd.testing.assert_frame_equal(aggregate.read_histories(old_hist), histories)
    combined = aggregate.combine([read, aggregate.read_table(_written(table, tmp_path, "jax"))])
    assert list(combined.columns) == aggregate.COLUMNS and len(combined) == 8
    # the stages' readers: statistics and claims, figures
    assert set(stats.load_runs(old_table)["regularization"]) == {"none"}
    assert set(read_runs(old_table)["regularization"]) == {"none"}
    assert list(read_histories(old_hist).columns) == aggregate.KEYS + aggregate.HISTORY_COLUMNS


def _written(table, root, backend="numpy"):
    path = root / f"new_{backend}.csv"
    aggregate.write_csv(table.assign(backend=backend), path)
    return path


def test_the_tables_carry_each_runs_optimizer_and_regularisation_settings(tmp_path):
    """The numbers a run used (its metrics.json's) reach the table, as JSON objects."""
    table, _ = aggregate.collect(complete_sweep(tmp_path), EXPECTED)
    assert set(aggregate.SETTINGS_COLUMNS) <= set(table.columns)
    assert (table["optimizer_settings"] == "{}").all()
    assert (table["regularization_settings"] == "{}").all()
    written = tmp_path / "t.csv"
    aggregate.write_csv(table, written)
    assert aggregate.read_table(written)["regularization_settings"].tolist() == ["{}"] * 4
