"""Gather finished runs into the study's tables, after checking they belong together.

This module owns the tables' format. ``results/tf_vs_np.csv`` (study 6.2), each study's
``runs.csv`` and each backend's ``runs_<backend>.csv`` have one row per run and the same
``COLUMNS``: the study's six first, in its order, then ``dataset, net, precision,
regularization, optimizer, start``, then the rest. ``histories.parquet`` holds every run's
per-epoch history in long format (``KEYS`` + ``HISTORY_COLUMNS``).
Nothing is written unless every check passes; a failure names the offending runs.

A run, or a table, of a version before a column existed reads with the value every run
had then (``earlier``): regularization ``none``, and the training objective equal to the
data loss (there was no penalty).

The backend's column is ``backend`` everywhere but in the study's own table,
``tf_vs_np.csv``, which names it ``model`` as the study does (``PAPER_NAMES``,
``write_paper_csv``), as every table of the versions before this name did. Every stage
reads these tables through ``read_table`` and ``read_histories``, which name the column
``backend`` in all of them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from mlpstudy import regularization, runs, timing
from mlpstudy.atomic import atomic_path
from mlpstudy.backends import base
from mlpstudy.backends.loop import steady_epoch_s

#: The study's own columns (section 6.2), in its order (its table names the backend
#: ``model``: ``PAPER_NAMES``).
PAPER_COLUMNS = [
    "backend",
    "learning_rate",
    "batch_size",
    "trial",
    "training_time_s",
    "test_accuracy",
]
TABLE_COLUMNS = (
    PAPER_COLUMNS
    + ["dataset", "net", "precision", "regularization", "optimizer", "start"]
    + [
        "final_train_loss",
        "final_train_objective",
        "final_train_accuracy",
        "epochs",
        "seed",
        "step_time_s",
        "eval_time_s",
        "first_epoch_s",
        "steady_epoch_s",
        "steady_step_s",
        "cpu_time_s",
        "threads",
        "diverged",
    ]
)
#: The conditions of each timing (mlpstudy.timing, docs/timing.md): ``contended`` is
#: whether the published loop was still contended after re-timing (``timing_attempts``
#: loops timed, ``mlpstudy.jobs``); what the workflow cannot control is recorded too
#: (huge-page coverage of the data and of the process, the CPU's clock, the machine's
#: speed on the loop's core by fixed reference kernels, ``probe_*_s``).
TIMING_COLUMNS = [
    *timing.COLUMNS,
    "others_cpu_s",
    "core_wait_s",
    "contended",
    "timing_attempts",
    "major_faults",
    "cpu_mhz",
    "data_hugepage_share",
    "process_hugepage_share",
    "probe_blas_s",
    "probe_python_s",
]
EXTRA_COLUMNS = [
    "diverged_epoch",
    "import_time_s",
    *TIMING_COLUMNS,
    "job_wall_s",
    "job_max_rss_mb",
    "hostname",
    "cpu_model",
    "native_bfloat16",
    "slurm_job_id",
    "slurm_node",
]
#: The numbers a run's optimizer and regularisation used (``metrics.json``'s), as JSON
#: objects with sorted keys, e.g. ``{"lambda": 0.0005000000237487257}``.
SETTINGS_COLUMNS = ["optimizer_settings", "regularization_settings"]
EXTRA_COLUMNS += SETTINGS_COLUMNS
COLUMNS = TABLE_COLUMNS + EXTRA_COLUMNS
#: The columns that name a run (mlpstudy.runs.AXES), in sort order.
KEYS = runs.KEY_COLUMNS
#: What must not change between two runs of the same config, wherever they ran
#: (everything else measures time or memory, or names the machine).
DETERMINISTIC_COLUMNS = KEYS + [
    "test_accuracy",
    "final_train_loss",
    "final_train_objective",
    "final_train_accuracy",
    "epochs",
    "seed",
    "diverged",
]
#: A run's history columns (``base.HISTORY_COLUMNS``, what every backend writes).
HISTORY_COLUMNS = list(base.HISTORY_COLUMNS)
#: What a run of a version before the regularization axis ran (``earlier``).
EARLIER_REGULARIZATION = regularization.DEFAULT
#: Columns that runs and tables of versions before the axis lack -> the column they equal
#: there: without a penalty, the training objective is the data loss.
EARLIER_OBJECTIVES = {"train_objective": "train_loss", "final_train_objective": "final_train_loss"}
#: This module's column -> its name in the study's own table (``tf_vs_np.csv``), and in
#: every table of the previous versions.
PAPER_NAMES = {"backend": "model"}


class ConsistencyError(ValueError):
    """The runs do not form one complete, uniform sweep; the message lists every problem."""


def read_run(run_dir: str | os.PathLike) -> tuple[dict[str, Any], pd.DataFrame]:
    """One run's table row and its history (with the key columns added)."""
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    env = metrics.get("environment", {})
    row = {col: metrics.get(col) for col in COLUMNS}
    if "regularization" not in metrics:  # a run of a version before the axis
        row["regularization"] = EARLIER_REGULARIZATION
    if "final_train_objective" not in metrics:
        row["final_train_objective"] = row["final_train_loss"]
    row.update(
        hostname=env.get("hostname"),
        cpu_model=env.get("cpu_model"),
        native_bfloat16=env.get("native_bfloat16"),
        slurm_job_id=env.get("slurm_job_id"),
        slurm_node=env.get("slurm_node"),
        requested_options=metrics.get("requested_options", {}),
        optimizer_settings=metrics.get("optimizer_settings", {}),
        regularization_settings=metrics.get("regularization_settings", {}),
        run_dir=str(run_dir),
    )
    if row["contended"] is None:  # a run recorded before re-timing existed
        row["contended"] = timing.contended(metrics)
    if row["timing_attempts"] is None:
        row["timing_attempts"] = 1
    bench = run_dir / "benchmark.tsv"
    if bench.exists():
        b = pd.read_csv(bench, sep="\t").iloc[-1]
        row.update(job_wall_s=float(b["s"]), job_max_rss_mb=float(b["max_rss"]))
    history = earlier(pd.read_csv(run_dir / "history.csv"))
    if row["steady_epoch_s"] is None:
        row["steady_epoch_s"] = steady_epoch_s(list(history["epoch_s"]))
    for column in reversed(KEYS):
        history.insert(0, column, row[column])
    return row, history


def check(rows: list[dict], histories: list[pd.DataFrame], expected: dict) -> list[str]:
    """Every problem that stops these runs from being the sweep ``expected`` describes.

    ``expected``: ``runs``, the keys (``{column: value}``, ``mlpstudy.runs.key``) of every
    run the config asks for here, and ``spec`` (``mlpstudy.runs.settings``): ``epochs``,
    ``seed``, ``optimizer_settings``, ``regularization_settings`` and ``options`` (the
    backend options the config asks for).
    """
    problems = []
    seen: dict[tuple, str] = {}
    want_keys = {tuple(k[c] for c in KEYS) for k in expected["runs"]}
    spec = expected["spec"]
    for row, hist in zip(rows, histories):
        where = row["run_dir"]
        key = tuple(row.get(c) for c in KEYS)
        if key in seen:
            problems.append(f"{where}: duplicate run {key}, also in {seen[key]}")
        seen[key] = where
        try:
            path_key = tuple(runs.parse(where)[c] for c in KEYS)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if key != path_key:
            problems.append(f"{where}: metrics say {key}, directory says {path_key}")
        if key not in want_keys:
            problems.append(f"{where}: not in the configured grid")
        for name in ("epochs", "seed", "optimizer_settings", "regularization_settings"):
            if row.get(name) != spec[name]:
                problems.append(
                    f"{where}: run of another config: {name}={row.get(name)!r}, "
                    f"config has {spec[name]!r}"
                )
        for name, want in spec.get("options", {}).items():
            got = row["requested_options"].get(name)
            if got != want:
                problems.append(
                    f"{where}: run of another config: option {name}={got!r}, config has {want!r}"
                )
        want_rows = row["diverged_epoch"] if row.get("diverged") else spec["epochs"]
        if len(hist) != want_rows or list(hist["epoch"]) != list(range(1, len(hist) + 1)):
            problems.append(
                f"{where}: history has epochs {list(hist['epoch'])}, expected 1..{want_rows}"
            )
    for k in expected["runs"]:
        if tuple(k[c] for c in KEYS) not in seen:
            problems.append(f"missing run {runs.run_dir(_wildcards(k))}")
    return problems


def _wildcards(key: dict[str, Any]) -> dict[str, Any]:
    return {axis.name: key[axis.column] for axis in runs.AXES}


def contended(table: pd.DataFrame) -> pd.DataFrame:
    """The runs whose published timed loop was contended (``timing.contention``), after
    every re-timing attempt: their times are not clean measurements."""
    return table[table["contended"].astype(bool)]


def collect(run_dirs: list[str], expected: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The checked table and long histories of one backend's runs."""
    pairs = [read_run(d) for d in run_dirs]
    rows, histories = [p[0] for p in pairs], [p[1] for p in pairs]
    problems = check(rows, histories, expected)
    if problems:
        raise ConsistencyError(
            "consistency checks failed, nothing written:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
    table = pd.DataFrame(rows, columns=COLUMNS)
    for column in SETTINGS_COLUMNS:
        table[column] = [json.dumps(row[column], sort_keys=True) for row in rows]
    table = table.sort_values(KEYS, ignore_index=True)
    long = (
        pd.concat(histories, ignore_index=True)
        if histories
        else pd.DataFrame(columns=KEYS + HISTORY_COLUMNS)
    )
    return table, long.sort_values(KEYS + ["epoch"], ignore_index=True)


def combine(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate per-backend tables (or histories); refuse duplicate runs."""
    combined = pd.concat(tables, ignore_index=True)
    keys = KEYS + (["epoch"] if "epoch" in combined.columns else [])
    dup = combined[combined.duplicated(keys, keep=False)]
    if len(dup):
        raise ConsistencyError(f"duplicate runs across tables:\n{dup[keys].to_string()}")
    return combined


def renamed(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with this module's column names where it has the study's instead
    (``PAPER_NAMES``: ``tf_vs_np.csv``, and tables written by a previous version)."""
    old = {p: c for c, p in PAPER_NAMES.items() if p in frame.columns and c not in frame.columns}
    return frame.rename(columns=old) if old else frame


def earlier(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (a run table, a long history table or one run's history) with what one
    of a version before the regularization axis lacks: the ``regularization`` column
    (``none``, in a table that names its runs) and the objectives (``EARLIER_OBJECTIVES``:
    equal to the data loss), each where this module's order puts it (``COLUMNS``, or
    ``KEYS`` + ``HISTORY_COLUMNS``). A table of this version is returned unchanged."""
    missing = {
        column: frame[source]
        for column, source in EARLIER_OBJECTIVES.items()
        if column not in frame.columns and source in frame.columns
    }
    if "regularization" not in frame.columns and "dataset" in frame.columns:
        missing["regularization"] = EARLIER_REGULARIZATION
    if not missing:
        return frame
    frame = frame.copy()
    for column, values in missing.items():
        order = COLUMNS if column in COLUMNS else KEYS + HISTORY_COLUMNS
        before = [c for c in order[: order.index(column)] if c in frame.columns]
        frame.insert(frame.columns.get_loc(before[-1]) + 1 if before else 0, column, values)
    return frame


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A run table (``runs_<backend>.csv``, ``runs.csv``, ``tf_vs_np.csv``), its backend
    column named ``backend``, and what tables of earlier versions lack filled in
    (``earlier``)."""
    return earlier(renamed(pd.read_csv(path)))


def read_histories(path: str | os.PathLike) -> pd.DataFrame:
    """A long history table (``histories_<backend>.parquet``, ``histories.parquet``), its
    backend column named ``backend``, and what tables of earlier versions lack filled in
    (``earlier``)."""
    return earlier(renamed(pd.read_parquet(path)))


def write_csv(table: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def write_paper_csv(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """The study's own table (``tf_vs_np.csv``): ``write_csv`` with the study's names."""
    write_csv(table.rename(columns=PAPER_NAMES), path)


def write_parquet(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
