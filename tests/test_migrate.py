"""Finished runs of the earlier layouts (no ``net=``, no ``precision=``, no
``regularization=`` in the path) are kept, in one pass: for net=mlp, for the precision
their ``dtype`` option (or its default) says, and for regularization=none."""

from __future__ import annotations

import json

import pandas as pd

from mlpstudy import aggregate, migrate, runs

OLD = "results/runs/dataset=mnist/optimizer={optimizer}/start=shared/threads=1/backend={backend}/lr=0.1/batch=32/trial=0"  # noqa: E501
#: The layout with a net and no precision.
NET = "results/runs/dataset=mnist/net={net}/optimizer={optimizer}/start=shared/threads=1/backend={backend}/lr=0.1/batch=32/trial=0"  # noqa: E501
#: The layout with a net and a precision and no regularization.
PRECISION = "results/runs/dataset=mnist/net={net}/precision={precision}/optimizer={optimizer}/start=shared/threads=1/backend={backend}/lr=0.1/batch=32/trial=0"  # noqa: E501
#: This version's layout: where each of them belongs.
CURRENT = "results/runs/dataset=mnist/net={net}/precision={precision}/regularization=none/optimizer={optimizer}/start=shared/threads=1/backend={backend}/lr=0.1/batch=32/trial=0"  # noqa: E501
#: A history of before the regularization axis: no train_objective.
HISTORY = "epoch,train_loss,train_accuracy,test_accuracy,epoch_s\n1,0.5,0.8,0.75,2.0\n"


def old_run(root, optimizer="sgd", backend="numpy", settings=None, options=None, finished=True,
            layout=OLD, net="mlp", precision="float32", extra=None):  # fmt: skip
    run = root / layout.format(optimizer=optimizer, backend=backend, net=net, precision=precision)
    run.mkdir(parents=True)
    (run / "history.csv").write_text(HISTORY)
    (run / "train.log").write_text("epoch 1\n")
    if finished:
        # the backend under both names, as the previous version recorded it
        metrics = {"backend": backend, "model": backend, "dataset": "mnist", "optimizer": optimizer,
                   "optimizer_settings": settings or {}, "requested_options": options or {},
                   "options": dict(options or {}), **(extra or {})}  # fmt: skip
        (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def new_dir(root, optimizer="sgd", backend="numpy", net="mlp", precision="float32"):
    return root / CURRENT.format(optimizer=optimizer, backend=backend, net=net, precision=precision)


def test_finished_runs_move_to_net_mlp_with_what_this_version_records(tmp_path):
    numpy_run = old_run(tmp_path, options={"dtype": "float32"})
    keras_run = old_run(tmp_path, backend="tensorflow", options={"deterministic": True})
    mtime = (keras_run / "metrics.json").stat().st_mtime_ns
    moved, left = migrate.migrate(tmp_path / "results")
    keras_dest = new_dir(tmp_path, backend="tensorflow")
    assert sorted(moved) == sorted([new_dir(tmp_path), keras_dest])
    assert left == [] and not numpy_run.exists() and not keras_run.exists()
    for dest in moved:
        key = runs.parse(dest)
        assert key["net"] == "mlp" and key["dataset"] == "mnist"
        assert key["precision"] == "float32" and key["regularization"] == "none"
        assert sorted(p.name for p in dest.iterdir()) == [
            "history.csv",
            "metrics.json",
            "train.log",
        ]
    metrics = json.loads((keras_dest / "metrics.json").read_text())
    assert metrics["net"] == "mlp" and metrics["input_shape"] == [28, 28, 1]
    # the precision it did not record is the one it ran with; its options are kept
    assert metrics["precision"] == "float32" and "dtype" not in metrics["requested_options"]
    assert metrics["requested_options"]["deterministic"] is True
    assert (metrics["regularization"], metrics["regularization_settings"]) == ("none", {})
    assert (keras_dest / "metrics.json").stat().st_mtime_ns == mtime
    assert migrate.migrate(tmp_path / "results") == ([], [])  # a second run moves nothing


def test_runs_whose_numbers_changed_or_that_never_finished_stay_to_be_computed_anew(tmp_path):
    adam = old_run(tmp_path, optimizer="adam",
                   settings={"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7})  # fmt: skip
    unfinished = old_run(tmp_path, backend="torch", finished=False)
    moved, left = migrate.migrate(tmp_path / "results")
    assert moved == [] and left == [adam]
    assert adam.exists() and unfinished.exists()
    assert not new_dir(tmp_path, optimizer="adam").exists()


def test_runs_without_the_precision_axis_move_to_the_precision_of_their_dtype(tmp_path):
    """A run of the net layout computed in its ``dtype`` option (float32 by default):
    that is its precision now, and the option is gone from what it records."""
    plain = old_run(tmp_path, layout=NET, net="cnn-small", options={"dtype": "float32"})
    double = old_run(tmp_path, layout=NET, backend="jax", options={"dtype": "float64"})
    unrecorded = old_run(tmp_path, layout=NET, backend="torch", options={"compile": False})
    unfinished = old_run(tmp_path, layout=NET, backend="tensorflow", finished=False)
    mtime = (double / "metrics.json").stat().st_mtime_ns
    moved, left = migrate.migrate(tmp_path / "results")
    assert left == [] and unfinished.exists()
    assert not any(r.exists() for r in (plain, double, unrecorded))
    want = {new_dir(tmp_path, net="cnn-small"): ("cnn-small", "float32"),
            new_dir(tmp_path, backend="jax", precision="float64"): ("mlp", "float64"),
            new_dir(tmp_path, backend="torch"): ("mlp", "float32")}  # fmt: skip
    assert sorted(moved) == sorted(want)
    for dest, (net, precision) in want.items():
        key = runs.parse(dest)
        assert (key["net"], key["precision"], key["regularization"]) == (net, precision, "none")
        metrics = json.loads((dest / "metrics.json").read_text())
        assert metrics["precision"] == precision and metrics["regularization"] == "none"
        assert "dtype" not in metrics["options"] and "dtype" not in metrics["requested_options"]
    kept = json.loads((new_dir(tmp_path, backend="torch") / "metrics.json").read_text())
    assert kept["options"] == {"compile": False}
    double_dest = new_dir(tmp_path, backend="jax", precision="float64")
    assert (double_dest / "metrics.json").stat().st_mtime_ns == mtime
    assert migrate.migrate(tmp_path / "results") == ([], [])  # a second run moves nothing


def test_runs_without_the_regularization_axis_move_to_none_and_read_without_a_penalty(tmp_path):
    """A run of the precision layout trained without regularisation: it moves to
    ``regularization=none`` with its files' numbers and times as they were, and its
    metrics gain ``regularization`` and its settings; the tables read its objective as
    its data loss."""
    recorded = {"net": "mlp", "precision": "float64", "learning_rate": 0.1, "batch_size": 32,
                "trial": 0, "start": "shared", "threads": 1, "epochs": 1, "seed": 0,
                "final_train_loss": 0.5, "test_accuracy": 0.75, "training_time_s": 2.0}  # fmt: skip
    run = old_run(tmp_path, layout=PRECISION, precision="float64", extra=recorded)
    before = json.loads((run / "metrics.json").read_text())
    times = {f: (run / f).stat().st_mtime_ns for f in ("history.csv", "metrics.json")}
    moved, left = migrate.migrate(tmp_path / "results")
    dest = new_dir(tmp_path, precision="float64")
    assert (moved, left) == ([dest], []) and not run.exists()
    assert {f: (dest / f).stat().st_mtime_ns for f in times} == times
    assert (dest / "history.csv").read_text() == HISTORY
    metrics = json.loads((dest / "metrics.json").read_text())
    # only the axis' step: what it recorded is as it was (its precision included)
    assert metrics == {**before, "regularization": "none", "regularization_settings": {}}
    assert {k: metrics[k] for k in recorded} == recorded
    row, history = aggregate.read_run(dest)
    assert (row["regularization"], row["precision"]) == ("none", "float64")
    assert row["final_train_objective"] == row["final_train_loss"] == 0.5
    assert history["train_objective"].tolist() == history["train_loss"].tolist() == [0.5]
    assert list(history.columns) == aggregate.KEYS + aggregate.HISTORY_COLUMNS
    assert list(pd.read_csv(dest / "history.csv").columns) == aggregate.HISTORY_COLUMNS[:-1]
    assert migrate.migrate(tmp_path / "results") == ([], [])  # a second run moves nothing


def test_one_pass_moves_the_runs_of_every_earlier_layout_and_nothing_else(tmp_path):
    """Runs of the three earlier layouts side by side: one call moves each to its path
    with every axis; a run of this layout, a path that is no run, and a run whose new
    path is already taken stay where they are."""
    first = old_run(tmp_path, backend="jax")
    with_net = old_run(tmp_path, layout=NET, backend="torch", options={"dtype": "float64"})
    with_precision = old_run(tmp_path, layout=PRECISION, net="cnn-small")
    current = new_dir(tmp_path, backend="tensorflow")
    current.mkdir(parents=True)
    (current / "metrics.json").write_text("{}")
    stray = tmp_path / "results/runs/dataset=mnist/scratch/trial=0"
    stray.mkdir(parents=True)
    (stray / "metrics.json").write_text("{}")
    taken = old_run(tmp_path, layout=PRECISION, backend="tensorflow")  # its new path: current
    moved, left = migrate.migrate(tmp_path / "results")
    assert sorted(moved) == sorted(
        [
            new_dir(tmp_path, backend="jax"),
            new_dir(tmp_path, backend="torch", precision="float64"),
            new_dir(tmp_path, net="cnn-small"),
        ]
    )
    assert left == [taken] and taken.exists()
    assert not any(r.exists() for r in (first, with_net, with_precision))
    assert (current / "metrics.json").read_text() == "{}" and stray.exists()
    for dest in moved:
        assert json.loads((dest / "metrics.json").read_text())["regularization"] == "none"
    assert migrate.migrate(tmp_path / "results") == ([], [taken])
