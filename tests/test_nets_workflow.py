"""The network and the precision as study axes through the real snakemake, and the old
layouts migrated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from e2e_utils import make_tiny_workdir, snakemake, write_config

from mlpstudy import aggregate, machine, migrate, runs

pytestmark = pytest.mark.e2e

#: A user-defined net with 'same' padding and stride 2, beside two of the catalog's.
MINE = [
    {"type": "conv2d", "filters": 4, "kernel": 3, "stride": 2, "padding": "same"},
    {"type": "maxpool2d", "pool": 2},
    {"type": "flatten"},
    {"type": "dense", "units": 10, "activation": "softmax"},
]


def test_every_net_is_a_study_and_the_backends_agree_from_the_shared_start(tmp_path):
    work = make_tiny_workdir(tmp_path)
    config = yaml.safe_load((work / "config.yaml").read_text())
    write_config(
        work,
        {**config, "nets": ["mlp", "cnn-small", "mine"], "net_definitions": {"mine": MINE},
         "learning_rates": [0.1], "batch_sizes": [32], "trials": 1},
    )  # fmt: skip
    snakemake(work, "results/tf_vs_np.csv", "results/overview.csv")
    table = aggregate.read_table(work / "results/tf_vs_np.csv")
    assert sorted(table["net"].unique()) == ["cnn-small", "mine", "mlp"]
    assert len(table) == 3 * 2
    for net, group in table.groupby("net"):
        study = work / runs.study_dir(
            {
                "dataset": "tiny",
                "net": net,
                "precision": "float32",
                "regularization": "none",
                "optimizer": "sgd",
                "start": "shared",
                "threads": 1,
            }
        )
        assert len(pd.read_csv(study / "runs.csv")) == 2
        loss = group.set_index("backend")["final_train_loss"]
        assert loss["numpy"] == pytest.approx(loss["tensorflow"], rel=1e-4), net
        found = next((work / "results/runs").glob(f"*/net={net}/**/metrics.json"))
        metrics = json.loads(found.read_text())
        assert metrics["net"] == net and metrics["input_shape"] == [28, 28, 1]
    # the nets are different computations
    assert table.groupby("net")["final_train_loss"].first().nunique() == 3
    assert set(pd.read_csv(work / "results/overview.csv")["net"]) == {"mlp", "cnn-small", "mine"}


def test_finished_runs_of_the_old_layout_are_kept_after_migrating(tiny_sweep, tmp_path):
    """The tiny sweep's runs, put back into the first layout (no net=, no precision=, no
    regularization=; no precision, regularisation or objective in metrics.json and
    history.csv; no Snakemake metadata), are kept by ``mlpstudy.migrate`` in one pass: a
    dry run trains nothing, and the tables read them as runs without regularisation."""
    work = tmp_path / "work"
    shutil.copytree(tiny_sweep, work, symlinks=True)
    shutil.rmtree(work / ".snakemake", ignore_errors=True)
    for metrics_path in sorted((work / "results/runs").rglob("metrics.json")):
        run = metrics_path.parent
        metrics = json.loads(metrics_path.read_text())
        for key in ("net", "net_definition", "input_shape", "precision", "regularization",
                    "regularization_settings", "final_train_objective"):  # fmt: skip
            metrics.pop(key)
        history = pd.read_csv(run / "history.csv").drop(columns="train_objective")
        history.to_csv(run / "history.csv", index=False)
        metrics_path.write_text(json.dumps(metrics))
        old = Path(str(run).replace("/net=mlp/precision=float32/regularization=none/", "/"))
        old.parent.mkdir(parents=True, exist_ok=True)
        run.rename(old)
    shutil.rmtree(work / "results/studies")
    dry = snakemake(work, "-n", "results/tf_vs_np.csv").stdout
    assert "train" in dry  # without migrating, every run is missing
    moved, left = migrate.migrate(work / "results")
    assert len(moved) == 16 and left == []
    dry = snakemake(work, "-n", "results/tf_vs_np.csv").stdout
    assert "rule train" not in dry and "aggregate" in dry
    snakemake(work, "results/tf_vs_np.csv")
    table = pd.read_csv(work / "results/tf_vs_np.csv")
    assert len(table) == 16 and set(table["net"]) == {"mlp"}
    assert set(table["precision"]) == {"float32"} and set(table["regularization"]) == {"none"}
    assert (table["final_train_objective"] == table["final_train_loss"]).all()
    histories = aggregate.read_histories(work / "results/histories.parquet")
    assert (histories["train_objective"] == histories["train_loss"]).all()


def test_every_precision_is_a_study_and_float64_backends_agree(tmp_path):
    """precision: [float32, float64] gives two studies of the same runs; in float64 NumPy
    and Keras agree to 1e-10 from the shared start, and each float64 run is not its
    float32 twin. Every run records its precision and whether the CPU has bfloat16."""
    work = make_tiny_workdir(tmp_path)
    config = yaml.safe_load((work / "config.yaml").read_text())
    write_config(work, {**config, "precision": ["float32", "float64"],
                        "learning_rates": [0.1], "batch_sizes": [32], "trials": 1})  # fmt: skip
    snakemake(work, "results/tf_vs_np.csv")
    table = aggregate.read_table(work / "results/tf_vs_np.csv")
    assert len(table) == 2 * 2 and sorted(table["precision"].unique()) == ["float32", "float64"]
    loss = table.set_index(["precision", "backend"])["final_train_loss"]
    assert loss["float64", "numpy"] == pytest.approx(loss["float64", "tensorflow"], rel=1e-10)
    assert loss["float64", "numpy"] != loss["float32", "numpy"]
    native = machine.native_bfloat16()  # None where /proc/cpuinfo lists no x86 flags
    assert table["native_bfloat16"].tolist() == [native] * 4 or native is None
    for precision in ("float32", "float64"):
        study = work / runs.study_dir(
            {"dataset": "tiny", "net": "mlp", "precision": precision, "regularization": "none",
             "optimizer": "sgd", "start": "shared", "threads": 1}
        )  # fmt: skip
        assert set(pd.read_csv(study / "runs.csv")["precision"]) == {precision}
        found = next((work / "results/runs").glob(f"*/*/precision={precision}/**/metrics.json"))
        assert json.loads(found.read_text())["precision"] == precision
