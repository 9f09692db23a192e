"""Finished runs of the previous layout (no ``net=`` in the path) are kept for net=mlp."""

from __future__ import annotations

import json

from mlpstudy import migrate, runs

OLD = "results/runs/dataset=mnist/optimizer={optimizer}/start=shared/threads=1/backend={backend}/lr=0.1/batch=32/trial=0"  # noqa: E501


def old_run(root, optimizer="sgd", backend="numpy", settings=None, options=None, finished=True):
    run = root / OLD.format(optimizer=optimizer, backend=backend)
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


def test_finished_runs_move_to_net_mlp_with_what_this_version_records(tmp_path):
    numpy_run = old_run(tmp_path, options={"dtype": "float32"})
    keras_run = old_run(tmp_path, backend="tensorflow", options={"deterministic": True})
    mtime = (keras_run / "metrics.json").stat().st_mtime_ns
    moved, left = migrate.migrate(tmp_path / "results")
    assert sorted(moved) == sorted(migrate.new_dir(r) for r in (numpy_run, keras_run))
    assert left == [] and not numpy_run.exists() and not keras_run.exists()
    for dest in moved:
        key = runs.parse(dest)
        assert key["net"] == "mlp" and key["dataset"] == "mnist"
        assert sorted(p.name for p in dest.iterdir()) == [
            "history.csv",
            "metrics.json",
            "train.log",
        ]
    metrics = json.loads((migrate.new_dir(keras_run) / "metrics.json").read_text())
    assert metrics["net"] == "mlp" and metrics["input_shape"] == [28, 28, 1]
    # the option it did not have is the one it ran with; the one it had is kept
    assert metrics["requested_options"]["dtype"] == "float32"
    assert metrics["requested_options"]["deterministic"] is True
    assert (migrate.new_dir(keras_run) / "metrics.json").stat().st_mtime_ns == mtime
    assert migrate.migrate(tmp_path / "results") == ([], [])  # a second run moves nothing


def test_runs_whose_numbers_changed_or_that_never_finished_stay_to_be_computed_anew(tmp_path):
    adam = old_run(tmp_path, optimizer="adam",
                   settings={"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7})  # fmt: skip
    unfinished = old_run(tmp_path, backend="torch", finished=False)
    moved, left = migrate.migrate(tmp_path / "results")
    assert moved == [] and left == [adam]
    assert adam.exists() and unfinished.exists()
    assert not migrate.new_dir(adam).exists()
