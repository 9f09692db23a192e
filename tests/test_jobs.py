"""One training job (mlpstudy.jobs.run_job) in a fresh process, as Snakemake runs it."""

import json
import subprocess
import sys

import pandas as pd
from synthetic import make_split

from mlpstudy import dataset

JOB = """
import json, sys
from mlpstudy.backends.base import TrainSpec
from mlpstudy.jobs import run_job
spec = TrainSpec(learning_rate=0.1, batch_size=16, epochs=2, seed=0, trial=0)
run_job("numpy", spec, {train!r}, {test!r}, {history!r}, {metrics!r}, dataset_name="mnist")
print(json.dumps(sorted(m for m in ("pandas", "tensorflow", "keras") if m in sys.modules)))
"""


def test_numpy_job_writes_its_files_and_imports_no_heavier_library(tmp_path):
    for split, n, seed in (("train", 64, 1), ("test", 32, 2)):
        x, y = make_split(n, seed)
        dataset.write_split(
            *(p for p in _idx_pair(tmp_path, split, x, y)), tmp_path / f"{split}.parquet"
        )
    run = tmp_path / "run"
    code = JOB.format(
        train=str(tmp_path / "train.parquet"),
        test=str(tmp_path / "test.parquet"),
        history=str(run / "history.csv"),
        metrics=str(run / "metrics.json"),
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    # a NumPy job pays for neither pandas' nor TensorFlow's import (per-job overhead)
    assert json.loads(out.stdout.splitlines()[-1]) == []
    history = pd.read_csv(run / "history.csv")
    assert list(history.columns) == [
        "epoch",
        "train_loss",
        "train_accuracy",
        "test_accuracy",
        "epoch_s",
    ]
    assert list(history["epoch"]) == [1, 2]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"] == "numpy" and metrics["epochs"] == 2 and not metrics["diverged"]
    assert (metrics["dataset"], metrics["optimizer"], metrics["start"]) == (
        "mnist",
        "sgd",
        "shared",
    )
    assert metrics["test_accuracy"] == history["test_accuracy"].iloc[-1]
    assert metrics["requested_options"] == {} and metrics["environment"]["python"]
    assert "slurm_job_id" not in metrics["environment"]  # not under SLURM here
    assert sorted(p.name for p in run.iterdir()) == ["history.csv", "metrics.json"]


def _idx_pair(tmp_path, split, x, y):
    from synthetic import write_idx_gz

    return (
        write_idx_gz(tmp_path / f"{split}-images.gz", x),
        write_idx_gz(tmp_path / f"{split}-labels.gz", y),
    )
