"""The sweep through the real snakemake: the table, the histories, resume after kill -9."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from e2e_utils import env, make_tiny_workdir, snakemake, snakemake_cmd
from mlpstudy.aggregate import DETERMINISTIC_COLUMNS as DETERMINISTIC
from mlpstudy.aggregate import TABLE_COLUMNS

pytestmark = pytest.mark.e2e


def run_dirs(work: Path) -> list[Path]:
    return sorted(p.parent for p in (work / "results/runs").glob("*/*/*/*/metrics.json"))


def test_table_has_one_row_per_run_consistent_with_run_dirs(tiny_sweep):
    table = pd.read_csv(tiny_sweep / "results/tf_vs_np.csv")
    assert len(table) == 16
    assert list(table.columns[: len(TABLE_COLUMNS)]) == TABLE_COLUMNS
    assert sorted(table["model"].unique()) == ["numpy", "tensorflow"]
    assert sorted(table["learning_rate"].unique()) == [0.01, 0.1]
    assert sorted(table["batch_size"].unique()) == [16, 64]
    dirs = run_dirs(tiny_sweep)
    assert len(dirs) == 16
    for d in dirs:
        metrics = json.loads((d / "metrics.json").read_text())
        row = table[(table.model == metrics["model"])
                    & (table.learning_rate == metrics["learning_rate"])
                    & (table.batch_size == metrics["batch_size"])
                    & (table.trial == metrics["trial"])]
        assert len(row) == 1
        assert row["test_accuracy"].item() == pytest.approx(metrics["test_accuracy"])
        assert row["training_time_s"].item() == pytest.approx(metrics["training_time_s"])
        # one log line per epoch, for `tail -f`
        assert (d / "train.log").read_text().count("epoch 1/1") == 1
    assert (table["epochs"] == 1).all() and (table["threads"] == 1).all()
    assert table["training_time_s"].gt(0).all() and table["job_wall_s"].gt(0).all()


def test_histories_have_one_row_per_run_and_epoch(tiny_sweep):
    hist = pd.read_parquet(tiny_sweep / "results/histories.parquet")
    assert len(hist) == 16
    assert not hist.duplicated(["model", "learning_rate", "batch_size", "trial", "epoch"]).any()
    assert set(hist.columns) >= {"train_loss", "train_accuracy", "test_accuracy", "epoch_s"}


def test_shared_start_gives_both_backends_the_same_result(tiny_sweep):
    table = pd.read_csv(tiny_sweep / "results/tf_vs_np.csv").set_index(
        ["learning_rate", "batch_size", "trial"])
    np_, tf = table[table.model == "numpy"], table[table.model == "tensorflow"]
    pd.testing.assert_series_equal(
        np_["final_train_loss"], tf["final_train_loss"], rtol=1e-4, check_names=False)


def test_nothing_to_do_on_rerun(tiny_sweep):
    proc = snakemake(tiny_sweep, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changed_epochs_reruns_every_run_and_new_lr_only_new_runs(tiny_sweep):
    # one new learning rate: 2 batch sizes x 2 trials x 2 backends new runs, nothing else
    new_lr = snakemake(tiny_sweep, "-n", "--config", "learning_rates=[0.1,0.01,0.03]").stdout
    assert _jobs(new_lr)["train"] == 8
    assert _jobs(snakemake(tiny_sweep, "-n", "--config", "epochs=2").stdout)["train"] == 16
    assert _jobs(snakemake(tiny_sweep, "-n", "--config", "trials=3").stdout)["train"] == 8


def _jobs(text: str) -> dict[str, int]:
    counts, in_table = {}, False
    for line in text.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
        elif in_table and len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
        elif in_table and parts and parts[0] == "total":
            break
    return counts


def finished_train_runs(log_text: str) -> list[Path]:
    """Run dirs of the train jobs that Snakemake's own log reports as finished."""
    outputs, job_output, finished = {}, None, []
    for line in log_text.splitlines():
        line = line.strip()
        if line.startswith("output:") and "/metrics.json" in line:
            job_output = next(p for p in line[7:].split(", ") if p.endswith("metrics.json"))
        elif line.startswith("jobid:") and job_output:
            outputs[line.split()[1]] = Path(job_output.strip()).parent
            job_output = None
        elif line.startswith("Finished jobid:") and "(Rule: train)" in line:
            finished.append(outputs[line.split()[2]])
    return finished


def test_resume_after_kill_9(tiny_sweep, tmp_path):
    work = make_tiny_workdir(tmp_path)
    log_path = tmp_path / "first_attempt.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(snakemake_cmd(work), env=env(), start_new_session=True,
                                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        try:
            while not finished_train_runs(log_path.read_text()):
                assert proc.poll() is None, "snakemake ended before the first run finished"
                assert time.monotonic() < deadline
                time.sleep(0.1)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole process group, jobs included
            proc.wait()
    finished = [work / d for d in finished_train_runs(log_path.read_text())]
    stats = {d: [(f.stat().st_ino, f.stat().st_mtime_ns) for f in
                 (d / "metrics.json", d / "history.csv")] for d in finished}
    assert 1 <= len(finished) < 16
    assert not (work / "results/tf_vs_np.csv").exists()

    snakemake(work)  # the same command again, no extra flags

    for d, before in stats.items():  # finished runs untouched
        assert before == [(f.stat().st_ino, f.stat().st_mtime_ns) for f in
                          (d / "metrics.json", d / "history.csv")], d
    resumed = pd.read_csv(work / "results/tf_vs_np.csv")[DETERMINISTIC]
    reference = pd.read_csv(tiny_sweep / "results/tf_vs_np.csv")[DETERMINISTIC]
    pd.testing.assert_frame_equal(resumed, reference)
