"""The sweep through the real snakemake: the table, the histories, resume after kill -9."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from e2e_utils import TINY_STUDY, env, make_tiny_workdir, snakemake, snakemake_cmd, write_config
from synthetic import write_mirror

from mlpstudy import aggregate, runs
from mlpstudy.aggregate import COLUMNS, KEYS
from mlpstudy.aggregate import DETERMINISTIC_COLUMNS as DETERMINISTIC

pytestmark = pytest.mark.e2e


def run_dirs(work: Path) -> list[Path]:
    return sorted(p.parent for p in (work / "results/runs").rglob("metrics.json"))


def test_table_has_one_row_per_run_consistent_with_run_dirs(tiny_sweep):
    # the study's own table names the backend as the study does; the study's runs.csv not
    paper = pd.read_csv(tiny_sweep / "results/tf_vs_np.csv")
    assert list(paper.columns) == ["model", *COLUMNS[1:]] and COLUMNS[0] == "backend"
    assert list(pd.read_csv(tiny_sweep / TINY_STUDY / "runs.csv").columns) == COLUMNS
    table = aggregate.read_table(tiny_sweep / "results/tf_vs_np.csv")
    pd.testing.assert_frame_equal(table, paper.rename(columns={"model": "backend"}))
    assert len(table) == 16
    assert (table[["dataset", "optimizer", "start"]] == ["tiny", "sgd", "shared"]).all().all()
    assert set(table["timing_mode"]) == {"strict"}
    assert sorted(table["backend"].unique()) == ["numpy", "tensorflow"]
    assert sorted(table["learning_rate"].unique()) == [0.01, 0.1]
    assert sorted(table["batch_size"].unique()) == [16, 64]
    dirs = run_dirs(tiny_sweep)
    assert len(dirs) == 16
    for d in dirs:
        metrics = json.loads((d / "metrics.json").read_text())
        key = runs.parse(str(d.relative_to(tiny_sweep)))
        assert {c: metrics[c] for c in KEYS} == key
        row = table[(table[KEYS] == pd.Series(key)).all(axis=1)]
        assert len(row) == 1
        assert row["test_accuracy"].item() == pytest.approx(metrics["test_accuracy"])
        assert row["training_time_s"].item() == pytest.approx(metrics["training_time_s"])
        # one log line per epoch, for `tail -f`
        # one log line per epoch of each timing attempt (a contended loop is re-timed)
        attempts = metrics.get("timing_attempts", 1)
        assert (d / "train.log").read_text().count("epoch 1/1") == attempts
    assert (table["epochs"] == 1).all() and (table["threads"] == 1).all()
    assert table["training_time_s"].gt(0).all() and table["job_wall_s"].gt(0).all()


def test_histories_have_one_row_per_run_and_epoch(tiny_sweep):
    hist = pd.read_parquet(tiny_sweep / "results/histories.parquet")
    assert len(hist) == 16
    assert list(hist.columns[: len(KEYS)]) == KEYS
    assert not hist.duplicated([*KEYS, "epoch"]).any()
    study = pd.read_parquet(tiny_sweep / TINY_STUDY / "histories.parquet")
    pd.testing.assert_frame_equal(study, hist)
    assert set(hist.columns) >= {"train_loss", "train_accuracy", "test_accuracy", "epoch_s"}


def test_shared_start_gives_both_backends_the_same_result(tiny_sweep):
    table = aggregate.read_table(tiny_sweep / "results/tf_vs_np.csv").set_index(
        ["learning_rate", "batch_size", "trial"]
    )
    np_, tf = table[table.backend == "numpy"], table[table.backend == "tensorflow"]
    pd.testing.assert_series_equal(
        np_["final_train_loss"], tf["final_train_loss"], rtol=1e-4, check_names=False
    )


def test_nothing_to_do_on_rerun(tiny_sweep):
    proc = snakemake(tiny_sweep, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changed_epochs_reruns_every_run_and_new_lr_only_new_runs(tiny_sweep):
    # one new learning rate: 2 batch sizes x 2 trials x 2 backends new runs, nothing else
    new_lr = snakemake(tiny_sweep, "-n", "--config", "learning_rates=[0.1,0.01,0.03]").stdout
    assert _jobs(new_lr)["train"] == 8
    assert _jobs(snakemake(tiny_sweep, "-n", "--config", "epochs=2").stdout)["train"] == 16
    assert _jobs(snakemake(tiny_sweep, "-n", "--config", "trials=3").stdout)["train"] == 8
    # a new value of a study axis: only its runs (another study of 16 runs)
    for axis in ("optimizers=[sgd,adam]", "starts=[shared,independent]", "threads=[1,2]"):
        assert _jobs(snakemake(tiny_sweep, "-n", "--config", axis).stdout)["train"] == 16, axis


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
    """kill -9 of the whole process group once a run has finished, then the same command
    again: the finished runs are kept as they are, nothing half-written is taken, and the
    table is the uninterrupted sweep's. The command asks for the table (every run and its
    aggregation, not the figures and statistics after it: what the kill can interrupt)."""
    work = make_tiny_workdir(tmp_path)
    log_path = tmp_path / "first_attempt.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            snakemake_cmd(work, "results/tf_vs_np.csv"),
            env=env(),
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
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
    stats = {
        d: [
            (f.stat().st_ino, f.stat().st_mtime_ns) for f in (d / "metrics.json", d / "history.csv")
        ]
        for d in finished
    }
    assert 1 <= len(finished) < 16
    assert not (work / "results/tf_vs_np.csv").exists()
    assert not list((work / "results").rglob("*.part"))  # nothing half-written in place

    snakemake(work, "results/tf_vs_np.csv")  # the same command again, no extra flags

    for d, before in stats.items():  # finished runs untouched
        assert before == [
            (f.stat().st_ino, f.stat().st_mtime_ns) for f in (d / "metrics.json", d / "history.csv")
        ], d
    resumed = aggregate.read_table(work / "results/tf_vs_np.csv")[DETERMINISTIC]
    reference = aggregate.read_table(tiny_sweep / "results/tf_vs_np.csv")[DETERMINISTIC]
    pd.testing.assert_frame_equal(resumed, reference)


def test_every_axis_as_a_sweep_axis(tmp_path):
    """2 datasets x 2 optimizers x 2 starts on a one-run grid: 8 studies, the table keys,
    per-study tables; shared starts agree across backends, independent ones do not."""
    work = make_tiny_workdir(tmp_path)
    config = yaml.safe_load((work / "config.yaml").read_text())
    md5 = write_mirror(work / "mirror2", n_train=200, n_test=40)
    write_config(
        work,
        {
            **config,
            "datasets": ["tiny", "tiny2"],
            "extra_datasets": {**config["extra_datasets"], "tiny2": {"md5": md5}},
            "data_mirrors": {**config["data_mirrors"], "tiny2": [str(work / "mirror2")]},
            "optimizers": ["sgd", "momentum"],
            "starts": ["shared", "independent"],
            "learning_rates": [0.1],
            "batch_sizes": [64],
            "trials": 1,
        },
    )
    snakemake(work, "results/tf_vs_np.csv")
    table = aggregate.read_table(work / "results/tf_vs_np.csv")
    assert len(table) == 2 * 2 * 2 * 2
    assert list(table.columns[6:12]) == [
        "dataset",
        "net",
        "precision",
        "regularization",
        "optimizer",
        "start",
    ]
    assert not table.duplicated(KEYS).any()
    counts = table.groupby(["dataset", "optimizer", "start"]).size()
    assert len(counts) == 8 and (counts == 2).all()
    for (ds, opt, start), group in table.groupby(["dataset", "optimizer", "start"]):
        study = work / runs.study_dir(
            {
                "dataset": ds,
                "net": "mlp",
                "precision": "float32",
                "regularization": "none",
                "optimizer": opt,
                "start": start,
                "threads": 1,
            }
        )
        per_study = pd.read_csv(study / "runs.csv")
        assert len(per_study) == 2 and set(per_study["backend"]) == {"numpy", "tensorflow"}
        by_backend = group.set_index(["trial", "backend"])["final_train_loss"].unstack()
        diff = (by_backend["numpy"] - by_backend["tensorflow"]).abs() / by_backend["numpy"]
        if start == "shared":
            assert (diff < 1e-4).all(), (ds, opt)
        else:
            assert (diff > 1e-4).all(), (ds, opt)
    # the two datasets really are different data
    a = table[(table.dataset == "tiny")]["final_train_loss"].to_numpy()
    b = table[(table.dataset == "tiny2")]["final_train_loss"].to_numpy()
    assert not (a == b).all()
