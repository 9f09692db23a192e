"""Gather finished runs into the study's tables, after checking they belong together.

``results/tf_vs_np.csv`` (study 6.2) has one row per run: ``TABLE_COLUMNS`` first, in
the study's order, then ``EXTRA_COLUMNS``. ``results/histories.parquet`` holds every
run's per-epoch history in long format (``KEYS`` + the history columns).
Nothing is written unless every check passes; a failure names the offending runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from mlpstudy.atomic import atomic_path

TABLE_COLUMNS = [
    "model", "learning_rate", "batch_size", "trial", "training_time_s", "test_accuracy",
    "final_train_loss", "final_train_accuracy", "epochs", "seed", "step_time_s",
    "eval_time_s", "first_epoch_s", "cpu_time_s", "threads", "diverged",
]
EXTRA_COLUMNS = [
    "diverged_epoch", "import_time_s", "shared_start", "job_wall_s", "job_max_rss_mb",
    "hostname", "slurm_job_id", "slurm_node",
]
KEYS = ["model", "learning_rate", "batch_size", "trial"]
#: What must not change between two runs of the same config, wherever they ran
#: (everything else measures time or memory, or names the machine).
DETERMINISTIC_COLUMNS = KEYS + [
    "test_accuracy", "final_train_loss", "final_train_accuracy", "epochs", "seed", "diverged",
]
HISTORY_COLUMNS = ["epoch", "train_loss", "train_accuracy", "test_accuracy", "epoch_s"]


class ConsistencyError(ValueError):
    """The runs do not form one complete, uniform sweep; the message lists every problem."""


def parse_run_dir(path: str | os.PathLike) -> dict[str, str]:
    """``.../backend=numpy/lr=0.01/batch=128/trial=0[/file]`` -> its hive-style fields."""
    fields = dict(part.split("=", 1) for part in Path(path).parts if "=" in part)
    missing = {"backend", "lr", "batch", "trial"} - set(fields)
    if missing:
        raise ConsistencyError(f"{path}: not a run directory (missing {sorted(missing)})")
    return fields


def read_run(run_dir: str | os.PathLike) -> tuple[dict[str, Any], pd.DataFrame]:
    """One run's table row and its history (with the key columns added)."""
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    env = metrics.get("environment", {})
    row = {col: metrics.get(col) for col in TABLE_COLUMNS + EXTRA_COLUMNS}
    row.update(
        model=metrics.get("model"),
        hostname=env.get("hostname"),
        slurm_job_id=env.get("slurm_job_id"),
        slurm_node=env.get("slurm_node"),
        requested_options=metrics.get("requested_options", {}),
        run_dir=str(run_dir),
    )
    bench = run_dir / "benchmark.tsv"
    if bench.exists():
        b = pd.read_csv(bench, sep="\t").iloc[-1]
        row.update(job_wall_s=float(b["s"]), job_max_rss_mb=float(b["max_rss"]))
    history = pd.read_csv(run_dir / "history.csv")
    for key in reversed(KEYS):
        history.insert(0, key, row[key])
    return row, history


def check(rows: list[dict], histories: list[pd.DataFrame], expected: dict) -> list[str]:
    """Every problem that stops these runs from being one sweep of ``expected``.

    ``expected``: backend, learning_rates, batch_sizes, trials, epochs, seed,
    shared_start, options (the backend options the config asks for).
    """
    problems = []
    seen: dict[tuple, str] = {}
    for row, hist in zip(rows, histories):
        where = row["run_dir"]
        fields = parse_run_dir(where)
        key = (row["model"], row["learning_rate"], row["batch_size"], row["trial"])
        if key in seen:
            problems.append(f"{where}: duplicate run {key}, also in {seen[key]}")
        seen[key] = where
        path_values = (fields["backend"], float(fields["lr"]), int(fields["batch"]), int(fields["trial"]))
        if key != path_values:
            problems.append(f"{where}: metrics say {key}, directory says {path_values}")
        for name in ("epochs", "seed", "shared_start"):
            if row.get(name) != expected[name]:
                problems.append(
                    f"{where}: run of another config: {name}={row.get(name)!r}, "
                    f"config has {expected[name]!r}"
                )
        for name, want in expected.get("options", {}).items():
            got = row["requested_options"].get(name)
            if got != want:
                problems.append(
                    f"{where}: run of another config: option {name}={got!r}, config has {want!r}"
                )
        want_rows = row["diverged_epoch"] if row.get("diverged") else expected["epochs"]
        if len(hist) != want_rows or list(hist["epoch"]) != list(range(1, len(hist) + 1)):
            problems.append(
                f"{where}: history has epochs {list(hist['epoch'])}, expected 1..{want_rows}"
            )
    for lr in expected["learning_rates"]:
        for batch in expected["batch_sizes"]:
            trials = sorted(k[3] for k in seen if k[:3] == (expected["backend"], lr, batch))
            if trials != list(range(expected["trials"])):
                problems.append(
                    f"backend={expected['backend']} lr={lr} batch={batch}: trials {trials}, "
                    f"expected {list(range(expected['trials']))}"
                )
    grid = {(expected["backend"], lr, b) for lr in expected["learning_rates"]
            for b in expected["batch_sizes"]}
    for key, where in seen.items():
        if key[:3] not in grid:
            problems.append(f"{where}: not in the configured grid")
    return problems


def collect(run_dirs: list[str], expected: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The checked table and long histories of one backend's runs."""
    pairs = [read_run(d) for d in run_dirs]
    rows, histories = [p[0] for p in pairs], [p[1] for p in pairs]
    problems = check(rows, histories, expected)
    if problems:
        raise ConsistencyError(
            "consistency checks failed, nothing written:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS + EXTRA_COLUMNS)
    table = table.sort_values(KEYS, ignore_index=True)
    long = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame(
        columns=KEYS + HISTORY_COLUMNS)
    return table, long.sort_values(KEYS + ["epoch"], ignore_index=True)


def combine(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate per-backend tables (or histories); refuse duplicate runs."""
    combined = pd.concat(tables, ignore_index=True)
    keys = KEYS + (["epoch"] if "epoch" in combined.columns else [])
    dup = combined[combined.duplicated(keys, keep=False)]
    if len(dup):
        raise ConsistencyError(f"duplicate runs across tables:\n{dup[keys].to_string()}")
    return combined


def write_csv(table: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def write_parquet(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
