"""Finished runs of the earlier layouts (no ``net=``, no ``precision=`` in the path) are
kept: for net=mlp, and for the precision their ``dtype`` option (or its default) says."""

from __future__ import annotations

import json

from mlpstudy import migrate, runs

OLD = "results/runs/dataset=mnist/optimizer={optimizer}/start=shared/threads=1/backend={backend}/lr=0.1/batch=32/trial=0"  # noqa: E501
#: The layout with a net and no precision.
NET = "results/runs/dataset=mnist/net={net}/optimizer={optimizer}/start=shared/threads=1/backend={backend}/lr=0.1/batch=32/trial=0"  # noqa: E501


def old_run(root, optimizer="sgd", backend="numpy", settings=None, options=None, finished=True,
            layout=OLD, net="mlp"):  # fmt: skip
    run = root / layout.format(optimizer=optimizer, backend=backend, net=net)
    run.mkdir(parents=True)
    (run / "history.csv").write_text("epoch,train_loss,train_accuracy,test_accuracy,epoch_s\n")
    (run / "train.log").write_text("epoch 1\n")
    if finished:
        # the backend under both names, as the previous version recorded it
        metrics = {"backend": backend, "model": backend, "dataset": "mnist", "optimizer": optimizer,
                   "optimizer_settings": settings or {}, "requested_options": options or {},
                   "options": dict(options or {})}  # fmt: skip
        (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def new_dir(run, precision="float32"):
    return migrate.precision_dir(migrate.new_dir(run), precision)


def test_finished_runs_move_to_net_mlp_with_what_this_version_records(tmp_path):
    numpy_run = old_run(tmp_path, options={"dtype": "float32"})
    keras_run = old_run(tmp_path, backend="tensorflow", options={"deterministic": True})
    mtime = (keras_run / "metrics.json").stat().st_mtime_ns
    moved, left = migrate.migrate(tmp_path / "results")
    assert sorted(moved) == sorted(new_dir(r) for r in (numpy_run, keras_run))
    assert left == [] and not numpy_run.exists() and not keras_run.exists()
    for dest in moved:
        key = runs.parse(dest)
        assert key["net"] == "mlp" and key["dataset"] == "mnist"
        assert key["precision"] == "float32"
        assert sorted(p.name for p in dest.iterdir()) == [
            "history.csv",
            "metrics.json",
            "train.log",
        ]
    metrics = json.loads((new_dir(keras_run) / "metrics.json").read_text())
    assert metrics["net"] == "mlp" and metrics["input_shape"] == [28, 28, 1]
    # the precision it did not record is the one it ran with; its options are kept
    assert metrics["precision"] == "float32" and "dtype" not in metrics["requested_options"]
    assert metrics["requested_options"]["deterministic"] is True
    assert (new_dir(keras_run) / "metrics.json").stat().st_mtime_ns == mtime
    assert migrate.migrate(tmp_path / "results") == ([], [])  # a second run moves nothing


def test_runs_whose_numbers_changed_or_that_never_finished_stay_to_be_computed_anew(tmp_path):
    adam = old_run(tmp_path, optimizer="adam",
                   settings={"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7})  # fmt: skip
    unfinished = old_run(tmp_path, backend="torch", finished=False)
    moved, left = migrate.migrate(tmp_path / "results")
    assert moved == [] and left == [adam]
    assert adam.exists() and unfinished.exists()
    assert not new_dir(adam).exists()


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
    want = {migrate.precision_dir(plain, "float32"): ("cnn-small", "float32"),
            migrate.precision_dir(double, "float64"): ("mlp", "float64"),
            migrate.precision_dir(unrecorded, "float32"): ("mlp", "float32")}  # fmt: skip
    assert sorted(moved) == sorted(want)
    for dest, (net, precision) in want.items():
        key = runs.parse(dest)
        assert (key["net"], key["precision"]) == (net, precision)
        metrics = json.loads((dest / "metrics.json").read_text())
        assert metrics["precision"] == precision
        assert "dtype" not in metrics["options"] and "dtype" not in metrics["requested_options"]
    kept = json.loads((migrate.precision_dir(unrecorded, "float32") / "metrics.json").read_text())
    assert kept["options"] == {"compile": False}
    assert (migrate.precision_dir(double, "float64") / "metrics.json").stat().st_mtime_ns == mtime
    assert migrate.migrate(tmp_path / "results") == ([], [])  # a second run moves nothing
