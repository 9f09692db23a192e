"""One training job of the sweep: load the parquet data, train, write the run's files.

A run directory holds ``history.csv`` (one row per epoch) and ``metrics.json``
(final metrics, every timing, seed, threads, diverged flag, the environment). Both are
written atomically, the metrics last, so a run whose ``metrics.json`` exists is finished.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from typing import Any

from mlpstudy import dataset, machine
from mlpstudy.atomic import atomic_path, write_text
from mlpstudy.backends.base import HISTORY_COLUMNS, TrainSpec

log = logging.getLogger("mlpstudy.train")


def log_epoch(row: dict[str, Any], epochs: int) -> None:
    log.info(
        "epoch %d/%d  train_loss=%.4f  train_accuracy=%.4f  test_accuracy=%.4f  (%.2f s)",
        row["epoch"],
        epochs,
        row["train_loss"],
        row["train_accuracy"],
        row["test_accuracy"],
        row["epoch_s"],
    )


def _json_safe(value):
    """NaN/inf are not JSON: store them as null (the history CSV keeps the raw values)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_history(rows: list[dict[str, Any]], path: str) -> None:
    """history.csv, one row per epoch (plain csv: a NumPy job never pays pandas' import)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def run_job(
    backend: str,
    spec: TrainSpec,
    train_path: str,
    test_path: str,
    history_path: str,
    metrics_path: str,
    dataset_name: str,
    timing_mode: str | None = None,
) -> dict[str, Any]:
    """Train ``spec`` with ``backend`` on the parquet splits; write history and metrics.

    ``dataset_name`` is recorded with the run (the spec does not know its data);
    ``timing_mode`` ("strict" | "throughput" | None) is how the timed loop gets its
    cores (``mlpstudy.cores``).
    """
    from mlpstudy import training  # imports the backend registry only, never a framework

    started = time.perf_counter()
    x_train, y_train = dataset.load(train_path)
    x_test, y_test = dataset.load(test_path)
    log.info(
        "%s on %s: optimizer=%s start=%s lr=%s batch=%d trial=%d epochs=%d seed=%d "
        "threads=%d, %d train / %d test rows",
        backend,
        dataset_name,
        spec.optimizer,
        spec.start,
        spec.learning_rate,
        spec.batch_size,
        spec.trial,
        spec.epochs,
        spec.seed,
        spec.threads,
        len(x_train),
        len(x_test),
    )
    load_s = time.perf_counter() - started
    result = training.run_training(
        backend,
        spec,
        x_train,
        y_train,
        x_test,
        y_test,
        on_epoch=lambda row: log_epoch(row, spec.epochs),
        timing_mode=timing_mode,
    )
    metrics = {
        "model": backend,
        "dataset": dataset_name,
        **result.metrics,
        # the options as the config asked for them ("options" holds what the backend
        # resolved them to, e.g. Keras' jit_compile="auto" -> False on this machine)
        "requested_options": dict(spec.options),
        "data_load_s": load_s,
        "environment": machine.environment(),
    }
    write_history(result.history, history_path)
    write_text(metrics_path, json.dumps(_json_safe(metrics), indent=2, sort_keys=True) + "\n")
    if metrics.get("diverged"):
        log.warning("diverged in epoch %s: recorded as a result", metrics.get("diverged_epoch"))
    log.info(
        "done: test_accuracy=%s training_time_s=%.2f",
        metrics.get("test_accuracy"),
        metrics["training_time_s"],
    )
    return metrics
